"""Ingestion throughput of emg-gestures: this project against pandas.read_csv + NumPy.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ingest.py [--data ../shared/data] [--workers 2]

Measured in one run on the same files (the OS page cache is warmed first, so both read
from memory):

- baseline: ``pandas.read_csv(sep="\\t")`` of every file, then ``to_numpy`` of the signal
  and class columns, in one process (the parse alone: nothing is resampled or written);
- reader alone: this project's ``uci-emg`` reader (parse + resampling onto the 1 kHz grid)
  in one process;
- ingest: the whole ``cohort ingest`` path (fingerprint, parse, resample, write a Zarr store,
  commit, index) on the local cluster ``cohort ingest`` starts (``pipeline.cluster.make_cluster``)
  with ``--workers`` single-threaded worker processes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _baseline(files: list[Path]) -> float:
    t0 = time.perf_counter()
    for f in files:
        frame = pd.read_csv(f, sep="\t")
        frame[[f"channel{i}" for i in range(1, 9)]].to_numpy(np.float32)
        frame["class"].to_numpy()
    return time.perf_counter() - t0


def _reader_alone(files: list[Path], data: Path) -> float:
    from pipeline.io import get_reader

    reader = get_reader("uci-emg")
    sfs = reader.discover(data)
    t0 = time.perf_counter()
    for sf in sfs:
        src = reader.read(sf)
        for _ in src.blocks():
            pass
    return time.perf_counter() - t0


def _warm_worker(data: str, out: str) -> None:
    import os

    from pipeline.ingest import _ingest_one
    from pipeline.io import get_reader
    from pipeline.store import create_store

    sf = get_reader("uci-emg").discover(Path(data) / "01")[0]
    store = f"{out}-{os.getpid()}.zarr"
    create_store(store)
    _ingest_one("uci-emg", sf, {}, store, None, None, None)


def _ingest(data: Path, workers: int) -> float:
    from pipeline.cluster import make_cluster
    from pipeline.ingest import ingest

    # The cluster `cohort ingest` starts (cluster/local.yaml's settings, worker allocator
    # settings included), with --workers single-threaded workers.
    profile = {"local": {"n-workers": workers, "threads-per-worker": 1, "dashboard-address": ":0"}}
    cluster, client = make_cluster(profile)
    with cluster, client, tempfile.TemporaryDirectory() as tmp:
        # Warm the workers as the page cache is warmed for the baseline: imports and the
        # parser's compiled kernels are loaded once per worker process, not per file.
        client.run(_warm_worker, str(data), str(Path(tmp) / "warm"))
        t0 = time.perf_counter()
        ingest(data, "uci-emg", Path(tmp) / "s.zarr", client=client, progress=False)
        return time.perf_counter() - t0


def main() -> None:
    default = Path(
        os.environ.get("COHORT_DATA", Path(__file__).resolve().parents[2] / "shared/data")
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    data = args.data / "emg-gestures"
    files = sorted(data.glob("*/*.txt"))
    mb = sum(f.stat().st_size for f in files) / 1e6
    for f in files:  # warm the page cache
        f.read_bytes()
    base = _baseline(files)
    alone = _reader_alone(files, data)
    full = _ingest(data, args.workers)
    print(f"emg-gestures: {len(files)} files, {mb:.1f} MB of text")
    print(f"{'path':<44}{'seconds':>9}{'MB/s':>9}{'x baseline':>12}")
    for name, sec in [
        ("pandas.read_csv + NumPy (1 process)", base),
        ("uci-emg reader alone (1 process)", alone),
        (f"cohort ingest to Zarr ({args.workers} workers)", full),
    ]:
        print(f"{name:<44}{sec:>9.2f}{mb / sec:>9.1f}{base / sec:>12.2f}")


if __name__ == "__main__":
    main()
