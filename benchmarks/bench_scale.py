"""Larger-than-RAM benchmark: features of a synthetic cohort to Parquet on 1 and 2 workers.

A synthetic EMG cohort (``pipeline.io.synthetic``: 8 channels, 1 kHz, float32, generated
block by block) of ``--gb`` GB of signal is ingested into a Zarr store under ``--root``
(outside the repository), then its feature table (window 200 samples, step 50; MAV, IAV,
RMS, VAR, WL, ZC, SSC, MNF, MDF, the set of ``bench_store_to_parquet.py``) is computed and
written to Parquet, first on a local cluster (``pipeline.cluster.make_cluster``) of 1 worker
process, then of 2, each with
1 thread and ``--memory-limit`` per worker. Reported per run: wall time, throughput (input
channel-samples/s and GB/s of float32 signal), worker CPU time, and the peak RSS of every
worker process (sampled with psutil every ``--sample`` s from a thread of this process)
and of this (client + scheduler) process; then the speedup of 2 workers over 1.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scale.py --gb 2            # quick check
    nohup .venv/bin/python benchmarks/bench_scale.py --gb 30 --cleanup &> scale.log &

The store is kept between runs (ingestion is incremental: an existing store of the same
size is reused) unless ``--cleanup`` is given; the Parquet outputs are always deleted.
One thread per process (NUMBA/OMP/MKL/OPENBLAS_NUM_THREADS=1).
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: one thread per process)

# isort: split
import argparse
import datetime
import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store_to_parquet import make_spec

from pipeline.store import open_cohort
from pipeline.table import plan_table, write_feature_table

FS, N_CHANNELS, N_RUNS = 1000.0, 8, 2
BYTES_PER_SECOND = FS * N_CHANNELS * 4  # float32


def cohort_shape(gb: float, duration: float) -> tuple[int, float]:
    """Return ``(n_subjects, duration)`` giving at least ``gb`` GB of float32 signal."""
    per_recording = duration * BYTES_PER_SECOND
    return max(1, math.ceil(gb * 1e9 / (N_RUNS * per_recording))), duration


class RssSampler:
    """Sample the RSS of some processes in a background thread; keep the maximum of each."""

    def __init__(self, pids: dict[str, int], interval: float) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                try:
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _profile(workers: int, memory_limit: str | None = None) -> dict:
    """The product's local cluster (``pipeline.cluster.make_cluster``) with these workers."""
    local = {"n-workers": workers, "threads-per-worker": 1, "dashboard-address": ":0"}
    if memory_limit is not None:
        local["memory-limit"] = memory_limit
    return {"local": local}


def ingest_cohort(store: Path, n_subjects: int, duration: float, workers: int) -> None:
    """Generate and ingest the synthetic cohort (incremental: existing recordings are kept)."""
    from pipeline.cluster import make_cluster
    from pipeline.ingest import ingest

    cluster, client = make_cluster(_profile(workers))
    with cluster, client:
        t0 = time.perf_counter()
        result = ingest(
            "scale",
            "synthetic",
            store,
            client=client,
            progress=False,
            n_subjects=n_subjects,
            n_runs=N_RUNS,
            duration=duration,
            modality="emg",
            n_channels=N_CHANNELS,
            sampling_rate=FS,
            seed=0,
        )
        wall = time.perf_counter() - t0
    print(f"ingest ({workers} workers): {result.summary()}; wall {wall:.1f} s", flush=True)


def _warm_worker() -> None:
    import numpy as np
    import pyarrow.parquet  # noqa: F401
    from bench_store_to_parquet import FEATURES

    from pipeline.features import make_block_function

    make_block_function(FEATURES, FS)[0](np.zeros((1000, N_CHANNELS), np.float32), 200, 50)


def features_run(
    store: Path, out: Path, workers: int, memory_limit: str, interval: float
) -> dict[str, float]:
    """Compute the feature table to Parquet on ``workers`` workers; return the figures."""
    from pipeline.cluster import make_cluster

    spec = make_spec()
    cohort = open_cohort(store)
    cluster, client = make_cluster(_profile(workers, memory_limit))
    with cluster, client:
        # warm-up: imports and Numba kernels loaded (from the cache) on every worker, then
        # one recording through the whole path
        client.run(_warm_worker)
        first = cohort.recording_ids[:1]
        warm = out.with_name(out.name + ".warmup")
        write_feature_table(cohort, spec, warm, first, overwrite=True)
        shutil.rmtree(warm, ignore_errors=True)
        pids = {f"worker {i + 1}": pid for i, pid in enumerate(client.run(os.getpid).values())}
        pids["client+scheduler"] = os.getpid()
        cpu0 = client.run(_cpu_seconds)
        disk0 = psutil.disk_io_counters()
        client_cpu0 = _cpu_seconds()
        with RssSampler(pids, interval) as rss:
            t0 = time.perf_counter()
            plan_table(cohort, spec)  # the graph alone, timed; the writer builds it again
            t_graph = time.perf_counter() - t0
            t0 = time.perf_counter()  # the wall time includes the writer's own graph
            write_feature_table(cohort, spec, out, overwrite=True)
            wall = time.perf_counter() - t0
        cpu = sum(v - cpu0[k] for k, v in client.run(_cpu_seconds).items())
        client_cpu = _cpu_seconds() - client_cpu0
        disk1 = psutil.disk_io_counters()
    rows = sum(1 for _ in out.glob("*.parquet"))
    out_gb = sum(f.stat().st_size for f in out.glob("*.parquet")) / 1e9
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall": wall,
        "graph": t_graph,
        "cpu": cpu,
        "files": rows,
        "out_gb": out_gb,
        "client_cpu": client_cpu,
        "disk_read_gb": (disk1.read_bytes - disk0.read_bytes) / 1e9,
        "disk_write_gb": (disk1.write_bytes - disk0.write_bytes) / 1e9,
        **{f"rss {k}": v for k, v in rss.peak.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0, help="GB of float32 signal")
    ap.add_argument("--duration", type=float, default=1800.0, help="seconds per recording")
    # beside the checkout: outside the repository, and the same wherever it is cloned
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "bench-data")
    ap.add_argument("--memory-limit", default="4GiB")
    ap.add_argument("--ingest-workers", type=int, default=2)
    ap.add_argument(
        "--workers", default="1,2", help="comma-separated worker counts to run; 'none': ingest only"
    )
    ap.add_argument("--sample", type=float, default=0.2, help="RSS sampling interval, s")
    ap.add_argument(
        "--no-ingest", action="store_true", help="use the store as it is (no generation)"
    )
    ap.add_argument("--cleanup", action="store_true", help="delete the store at the end")
    args = ap.parse_args()

    n_subjects, duration = cohort_shape(args.gb, args.duration)
    store = args.root / f"synthetic-{args.gb:g}gb.zarr"
    out = args.root / f"synthetic-{args.gb:g}gb-features.parquet"
    ram = psutil.virtual_memory().total
    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')}  load "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}  RAM {ram / 2**30:.1f} GiB  "
        f"{' '.join(sys.argv)}",
        flush=True,
    )
    args.root.mkdir(parents=True, exist_ok=True)
    try:
        if args.no_ingest:
            print(f"--no-ingest: using {store} as it is", flush=True)
        else:
            ingest_cohort(store, n_subjects, duration, args.ingest_workers)
        cohort = open_cohort(store)
        n_samples = int(cohort.index["n_samples"].sum())
        ch_samples = n_samples * N_CHANNELS
        signal_gb = ch_samples * 4 / 1e9
        disk_gb = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e9
        chunk = int(cohort.recording(cohort.recording_ids[0])["signal"].data.chunksize[0])
        print(
            f"store {store}: {len(cohort)} recordings ({n_subjects} subjects x {N_RUNS} runs"
            f" x {duration:g} s), {signal_gb:.2f} GB float32 signal ({signal_gb * 1e9 / ram:.2f}"
            f" x RAM), {disk_gb:.2f} GB on disk; chunks {chunk} samples x {N_CHANNELS} ch "
            f"= {chunk * N_CHANNELS * 4 / 2**20:.1f} MiB",
            flush=True,
        )
        results = {}
        counts = [] if args.workers == "none" else [int(w) for w in args.workers.split(",")]
        for workers in counts:
            load = os.getloadavg()[0]
            r = features_run(store, out, workers, args.memory_limit, args.sample)
            results[workers] = r
            rss = ", ".join(
                f"{k[4:]} {v / 2**20:.0f} MiB" for k, v in r.items() if k.startswith("rss")
            )
            print(
                f"{workers} worker(s): wall {r['wall']:.1f} s (graph {r['graph']:.1f} s), "
                f"{ch_samples / r['wall'] / 1e6:.1f} M ch-samples/s, "
                f"{signal_gb / r['wall']:.3f} GB/s, worker CPU {r['cpu']:.1f} s "
                f"({ch_samples / r['cpu'] / 1e6:.1f} M ch-samples/s per CPU-s); peak RSS: "
                f"{rss}; client+scheduler CPU {r['client_cpu']:.1f} s; read from disk "
                f"{r['disk_read_gb']:.2f} GB ({r['disk_read_gb'] * 1e3 / r['wall']:.0f} MB/s), "
                f"written {r['disk_write_gb']:.2f} GB; "
                f"{r['files']} Parquet files, {r['out_gb']:.2f} GB; "
                f"load at start {load:.2f}",
                flush=True,
            )
        if 1 in results and 2 in results:
            print(
                f"speedup 2 vs 1 workers: {results[1]['wall'] / results[2]['wall']:.2f}x "
                "(wall)  [target >= 1.7x]"
            )
        print(f"load at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if args.cleanup:
            shutil.rmtree(store, ignore_errors=True)
            print(f"deleted {store}")


if __name__ == "__main__":
    main()
