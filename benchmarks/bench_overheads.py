"""Fixed costs per recording on emg-gestures: the figures behind the store and cluster choices.

Run from the repository root (about 1 min)::

    .venv/bin/python benchmarks/bench_overheads.py

In one process, warm (imports, Numba cache and page cache), each figure per recording:

1. ingest one file (fingerprint, parse, resample, write, no commit) with ``_ingest_one``,
   under this project's worker allocator settings (``WORKER_MALLOC_ENV``) and under
   distributed's default (``MALLOC_TRIM_THRESHOLD_=65536``), each in a fresh subprocess;
2. write a recording: the store's direct writer (``write_recording``) against xarray's
   ``Dataset.to_zarr`` of the same Dataset (the reference of ``tests/test_zarr_v3.py``);
3. open a recording: ``Cohort.recording`` against ``xr.open_zarr`` plus loading the
   per-channel coordinates (the previous implementation);
4. write a 1 200 x 78 partition to Parquet: dictionary encoding on every column (pyarrow's
   default) against the identifier columns only (``pipeline.table``);
5. a batch of 4 096 256-point real FFTs: ``numpy.fft.rfft`` against ``scipy.fft.rfft``.
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: one thread per process)

# isort: split
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COHORT_DATA", ROOT.parent / "shared" / "data")) / "emg-gestures"


def _per_call(func: Callable[[], object], n: int) -> float:
    func()  # warm
    t0 = time.perf_counter()
    for _ in range(n):
        func()
    return (time.perf_counter() - t0) / n


def ingest_per_file() -> float:
    """Seconds per file of ``_ingest_one`` over all emg-gestures files (second pass)."""
    from pipeline.ingest import _ingest_one
    from pipeline.io import get_reader
    from pipeline.store import create_store

    files = get_reader("uci-emg").discover(DATA)
    with tempfile.TemporaryDirectory() as tmp:
        store = str(create_store(Path(tmp) / "s.zarr"))
        for sf in files:  # warm: Numba cache, page cache, allocator
            _ingest_one("uci-emg", sf, {}, store, None, None, None)
        t0 = time.perf_counter()
        for sf in files:
            _ingest_one("uci-emg", sf, {}, store, None, None, None)
        return (time.perf_counter() - t0) / len(files)


def _ingest_in_subprocess(env: dict[str, str]) -> float:
    code = "import bench_overheads as b; print(b.ingest_per_file())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


def main() -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import scipy.fft
    import xarray as xr

    from pipeline.cluster import WORKER_MALLOC_ENV
    from pipeline.io import get_reader
    from pipeline.store import RECORDINGS, open_cohort, write_recording

    rows: list[tuple[str, float, float]] = []
    default = {"MALLOC_TRIM_THRESHOLD_": "65536"}
    rows.append(
        (
            "ingest a file: allocator of distributed's default / of WORKER_MALLOC_ENV",
            _ingest_in_subprocess(default),
            _ingest_in_subprocess(WORKER_MALLOC_ENV),
        )
    )

    reader = get_reader("uci-emg")
    files = reader.discover(DATA)[:10]
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s.zarr"
        sources = [(sf, reader.read(sf)) for sf in files]

        def ours() -> None:
            for sf, src in sources:
                write_recording(store, sf, src, sha256="x", reader="uci-emg", reader_version="1")

        cohort_rows = [sf.recording_id for sf, _ in sources]
        ours()
        cohort = open_cohort(store)
        datasets = [cohort.recording(r).load() for r in cohort_rows]

        def xarray_writes() -> None:
            for i, ds in enumerate(datasets):
                out = Path(tmp) / f"x{i}.zarr"
                ds.to_zarr(str(out), mode="w", zarr_format=3, consolidated=False)

        rows.append(
            (
                "write a recording: xarray to_zarr / the store's writer",
                _per_call(xarray_writes, 3) / len(datasets),
                _per_call(ours, 3) / len(sources),
            )
        )

        def via_xarray() -> None:
            for r in cohort_rows:
                ds = xr.open_zarr(str(store / RECORDINGS / r), consolidated=False, zarr_format=3)
                ds.assign_coords(channel_type=ds.channel_type.load(), unit=ds.unit.load())

        def via_store() -> None:
            for r in cohort_rows:
                cohort.recording(r)

        rows.append(
            (
                "open a recording: xr.open_zarr + coordinates / Cohort.recording",
                _per_call(via_xarray, 5) / len(cohort_rows),
                _per_call(via_store, 5) / len(cohort_rows),
            )
        )

        rng = np.random.default_rng(0)
        n = 1200
        ids = ["recording", "subject", "session", "run", "label"]
        arrays = [pa.array(["sub-01_run-1"] * n) for _ in ids[:4]]
        arrays += [pa.array(np.arange(n) * 0.05), pa.array(["rest"] * n)]
        arrays += [pa.array(rng.standard_normal(n)) for _ in range(72)]
        names = [*ids[:4], "start", "label", *(f"c{i}" for i in range(72))]
        table = pa.Table.from_arrays(arrays, names=names)
        path = Path(tmp) / "p.parquet"
        rows.append(
            (
                "write a 1200 x 78 Parquet partition: dictionary on all / on identifiers",
                _per_call(lambda: pq.write_table(table, path), 20),
                _per_call(lambda: pq.write_table(table, path, use_dictionary=ids), 20),
            )
        )

    x = np.random.default_rng(1).standard_normal((4096, 256))
    rows.append(
        (
            "4096 x 256-point rfft: numpy / scipy.fft",
            _per_call(lambda: np.fft.rfft(x, axis=-1), 50),
            _per_call(lambda: scipy.fft.rfft(x, axis=-1, workers=1), 50),
        )
    )
    same = np.array_equal(np.fft.rfft(x, axis=-1), scipy.fft.rfft(x, axis=-1))

    print(f"load average {os.getloadavg()[0]:.2f}; milliseconds per call, one process")
    print(f"{'what (A / B)':<76}{'A ms':>8}{'B ms':>8}{'A/B':>7}")
    for label, a, b in rows:
        print(f"{label:<76}{a * 1e3:>8.2f}{b * 1e3:>8.2f}{a / b:>7.2f}")
    print(f"numpy and scipy rfft results identical: {same}")


if __name__ == "__main__":
    main()
