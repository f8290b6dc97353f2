"""The feature table's hand-built graph against a plain ``dask.delayed`` graph, same run.

Both write the same Parquet files (checked: every table read back equal) from the same
per-chunk feature and label tasks (:func:`pipeline.table.build.plan_table`); they differ in
how the partition and write tasks are made:

- ``hand-built``: :func:`pipeline.table.write_feature_table`'s graph as shipped
  (:func:`pipeline.table.parquet.table_writes`). Partition tasks
  are written as graph entries by hand (``_Part.delayed``), and a recording of one block
  of windows, or every partition when there are at least four per worker, is fused into
  one task with dask's own task fusion (``dask._task_spec.Task.fuse``): chunk reads,
  halo, features, labels, Arrow table and file write run inline in one task.
- ``delayed``: ``dask.delayed(_arrow_partition)(...)`` per partition and
  ``dask.delayed(_write_file)(...)`` per recording, no fusion: every chunk read, halo,
  feature block, label block, partition and write is a task the scheduler sees.

Timed per run: building the graph (client), the whole write (graph included), client CPU
and worker CPU; the number of tasks. On the product's local cluster
(``pipeline.cluster.make_cluster``), one worker process with one thread, after a warm-up of
each variant; the variants alternate. Run from the repository root::

    .venv/bin/python benchmarks/bench_table_graph.py [--repeats 3] [--store PATH]

Data: ``$COHORT_DATA/emg-gestures`` (default ``../shared/data``), all 51 files, window 200,
step 50, the 9 features of ``bench_store_to_parquet.py``. The store goes to ``--store``
(default ``../bench-data/emg-gestures.zarr`` beside the checkout, outside it), ingested if
missing.
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: one thread per process)

# isort: split
import argparse
import datetime
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import dask
import pandas as pd
from dask.highlevelgraph import HighLevelGraph

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store_to_parquet import ingest_store, make_spec

from pipeline._fs import fsync_paths
from pipeline.store import open_cohort
from pipeline.table import FeatureTableSpec, plan_table, read_feature_table, table_writes
from pipeline.table.parquet import _arrow_partition, _file_metadata, _write_file, table_schema


def _cpu_seconds() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def delayed_writes(cohort: Any, spec: FeatureTableSpec, out: Path) -> list[Any]:
    """Return the plain ``dask.delayed`` graph writing the table (one task per step)."""
    plan = plan_table(cohort, spec, fuse=False)
    writes = []
    for rid, parts in plan.parts.items():
        meta = _file_metadata(spec, plan.columns, rid, cohort.recording_fingerprint(rid), cohort)
        schema = table_schema(plan.columns, meta)
        tables = [
            dask.delayed(_arrow_partition)(list(p.feats), list(p.stats), p.k0, p.ctx, schema)
            for p in parts
        ]
        path = str(out / f"{rid}.parquet")
        writes.append(dask.delayed(_write_file)(tables, path, schema, fsync=False))
    return writes


def run_variant(name: str, store: Path, out: Path, spec: FeatureTableSpec) -> dict[str, float]:
    """Write the table with variant ``name``; return its timings (current client)."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    cohort = open_cohort(store)
    # both as write_feature_table does: the files unflushed, then flushed together
    if name == "hand-built":
        files, writes = table_writes(cohort, spec, out, fsync=False)
    else:
        writes = delayed_writes(cohort, spec, out)
        files = []
    graph_s = time.perf_counter() - t0
    out.mkdir(parents=True)
    dask.compute(*writes)
    fsync_paths(files or sorted(out.glob("*.parquet")))
    wall = time.perf_counter() - t0
    n_tasks = len(HighLevelGraph.merge(*[w.__dask_graph__() for w in writes]).to_dict())
    return {"wall": wall, "graph": graph_s, "tasks": n_tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    bench_data = Path(__file__).resolve().parents[2] / "bench-data"
    parser.add_argument("--store", type=Path, default=bench_data / "emg-gestures.zarr")
    parser.add_argument("--out", type=Path, default=bench_data / "table-graph")
    args = parser.parse_args()
    if not args.store.exists():
        ingest_store(args.store)
    from pipeline.cluster import make_cluster

    spec = make_spec()
    names = ("hand-built", "delayed")
    outs = {n: args.out / n for n in names}
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{stamp}, load {os.getloadavg()[0]:.1f}; store {args.store}")
    profile = {"local": {"n-workers": 1, "threads-per-worker": 1, "dashboard-address": ":0"}}
    cluster, client = make_cluster(profile)
    with cluster, client:
        for n in names:  # warm-up: imports, Numba cache, page cache
            run_variant(n, args.store, outs[n], spec)
        a = read_feature_table(outs["hand-built"])[0].compute().reset_index(drop=True)
        b = read_feature_table(outs["delayed"])[0].compute().reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        print(f"tables equal: {len(a)} rows x {a.shape[1]} columns, both variants")
        for _ in range(args.repeats):
            for n in names:
                w0 = sum(client.run(_cpu_seconds).values())
                c0 = _cpu_seconds()
                r = run_variant(n, args.store, outs[n], spec)
                r["client_cpu"] = _cpu_seconds() - c0
                r["worker_cpu"] = sum(client.run(_cpu_seconds).values()) - w0
                runs[n].append(r)
                print(
                    f"{n:>10}: wall {r['wall']:.2f} s (graph {r['graph']:.2f} s), client CPU "
                    f"{r['client_cpu']:.2f} s, worker CPU {r['worker_cpu']:.2f} s, "
                    f"{r['tasks']:.0f} tasks",
                    flush=True,
                )
    best = {n: min(r["wall"] for r in runs[n]) for n in names}
    cpu = {n: min(r["client_cpu"] + r["worker_cpu"] for r in runs[n]) for n in names}
    # On a shared machine the wall time waits for the CPU; the CPU time does not.
    print(
        f"best wall: hand-built {best['hand-built']:.2f} s, delayed {best['delayed']:.2f} s "
        f"({best['delayed'] / best['hand-built']:.2f}x); best client+worker CPU: hand-built "
        f"{cpu['hand-built']:.2f} s, delayed {cpu['delayed']:.2f} s "
        f"({cpu['delayed'] / cpu['hand-built']:.2f}x); load {os.getloadavg()[0]:.1f}"
    )
    shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
