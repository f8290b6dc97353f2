"""Ingestion of eeg-arithmetic through readers ``mne`` and ``bids`` against reader ``edf``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ingest_mne.py [--data ../shared/data] [--repeats 3]

For each reader, in one process (local threads, no cluster: the readers are compared, not
the scheduler), after one warm-up pass that loads the libraries and fills the OS page
cache:

- reader alone: ``discover`` then ``read`` and every block of every file;
- ingest: the whole :func:`pipeline.ingest.ingest` path into a fresh store.

Readers ``edf`` and ``mne`` read the 32 EDF files in place; reader ``bids`` reads a BIDS copy
of them that ``mne_bids.write_raw_bids`` writes first (EDF kept as EDF, task ``arith``,
run 1 or 2; not timed). The best of ``--repeats`` runs is printed, with the ratio to
``edf``. The issue's target is a ratio of at most 1.5.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

PATTERN = r"Subject(?P<subject>\d+)_(?P<run>\d)"


def _options(fmt: str) -> dict[str, str]:
    return {"datatype": "eeg"} if fmt == "bids" else {"pattern": PATTERN}


def _reader_alone(fmt: str, data: Path) -> float:
    from pipeline.io import get_reader

    reader = get_reader(fmt)
    t0 = time.perf_counter()
    for sf in reader.discover(data, **_options(fmt)):
        for _ in reader.read(sf, **_options(fmt)).blocks():
            pass
    return time.perf_counter() - t0


def _ingest(fmt: str, data: Path, out: Path) -> float:
    from pipeline.ingest import ingest

    t0 = time.perf_counter()
    ingest(data, fmt, out, progress=False, **_options(fmt))
    return time.perf_counter() - t0


def _bids_copy(data: Path, root: Path) -> None:
    import re
    import warnings

    import mne
    import mne_bids

    for path in sorted(data.glob("*.edf")):
        m = re.fullmatch(PATTERN, path.stem)
        raw = mne.io.read_raw_edf(path, verbose="error")
        bp = mne_bids.BIDSPath(
            subject=m["subject"], task="arith", run=int(m["run"]), datatype="eeg", root=root
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mne_bids.write_raw_bids(raw, bp, overwrite=True, verbose="error")


def main() -> None:
    """Print the best-of-N times of both readers and their ratio."""
    default = Path(
        os.environ.get("COHORT_DATA", Path(__file__).parents[1] / ".." / "shared" / "data")
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = args.data / "eeg-arithmetic"
    n_files = len(list(data.glob("*.edf")))
    size = sum(p.stat().st_size for p in data.glob("*.edf")) / 2**20
    print(f"eeg-arithmetic: {n_files} EDF files, {size:.0f} MiB; best of {args.repeats}")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        _bids_copy(data, bids)
        for fmt in ("edf", "mne", "bids"):
            source = bids if fmt == "bids" else data
            _reader_alone(fmt, source)  # warm-up: imports, page cache
            alone = min(_reader_alone(fmt, source) for _ in range(args.repeats))
            runs = [
                _ingest(fmt, source, Path(tmp) / f"{fmt}-{k}.zarr") for k in range(args.repeats)
            ]
            results[fmt] = {"reader": alone, "ingest": min(runs)}
    for what in ("reader", "ingest"):
        edf = results["edf"][what]
        line = "   ".join(
            f"{fmt} {results[fmt][what]:6.2f} s ({results[fmt][what] / edf:4.2f}x)"
            for fmt in ("mne", "bids")
        )
        print(f"{what:>7}: edf {edf:6.2f} s   {line}")


if __name__ == "__main__":
    main()
