"""Ingestion of eeg-arithmetic through reader ``mne`` against reader ``edf``, same files.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ingest_mne.py [--data ../shared/data] [--repeats 3]

For each reader, in one process (local threads, no cluster: the readers are compared, not
the scheduler), after one warm-up pass that loads the libraries and fills the OS page
cache:

- reader alone: ``discover`` then ``read`` and every block of every file;
- ingest: the whole :func:`pipeline.ingest.ingest` path into a fresh store.

The best of ``--repeats`` runs is printed, with the ratio mne / edf. The issue's target is
a ratio of at most 1.5.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _reader_alone(fmt: str, data: Path) -> float:
    from pipeline.io import get_reader

    reader = get_reader(fmt)
    t0 = time.perf_counter()
    for sf in reader.discover(data, pattern=r"Subject(?P<subject>\d+)_(?P<run>\d)"):
        for _ in reader.read(sf).blocks():
            pass
    return time.perf_counter() - t0


def _ingest(fmt: str, data: Path, out: Path) -> float:
    from pipeline.ingest import ingest

    t0 = time.perf_counter()
    ingest(data, fmt, out, progress=False, pattern=r"Subject(?P<subject>\d+)_(?P<run>\d)")
    return time.perf_counter() - t0


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
        for fmt in ("edf", "mne"):
            _reader_alone(fmt, data)  # warm-up: imports, page cache
            alone = min(_reader_alone(fmt, data) for _ in range(args.repeats))
            runs = [_ingest(fmt, data, Path(tmp) / f"{fmt}-{k}.zarr") for k in range(args.repeats)]
            results[fmt] = {"reader": alone, "ingest": min(runs)}
    for what in ("reader", "ingest"):
        edf, mne = results["edf"][what], results["mne"][what]
        print(f"{what:>7}: edf {edf:6.2f} s   mne {mne:6.2f} s   mne/edf {mne / edf:4.2f}")


if __name__ == "__main__":
    main()
