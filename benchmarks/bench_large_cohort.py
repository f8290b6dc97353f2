"""Large synthetic cohort through ``cohort run`` with ``model.engine: distributed``.

A synthetic EMG cohort (``pipeline.io.synthetic``: ``--subjects`` x ``--runs`` x
``--duration`` s, 8 channels at 1 kHz) is windowed every ``--step`` samples (windows of 200
samples) into the feature set of ``tasks/emg_gestures.yaml`` (104 float64 columns), so at
the default size (80 x 2 x 600 s, step 10) the feature table holds 9.6 M windows, 8.0 GB
of float64 feature values (the identifier columns come on top; the run prints
``pipeline.learn.distributed.table_nbytes`` of the table). Three measurements:

1. ``cohort run`` of the task with shrinkage LDA, ``model.engine: distributed``, leave-one-
   subject-out, on a local cluster of ``--workers`` processes x 1 thread with
   ``--memory-limit`` each. The peak RSS of the ``cohort`` process (client, scheduler and
   nannies) and of each of its descendant processes (the workers) is sampled with psutil
   every ``--sample`` s.
2. The same run with a random forest on a subsample capped at ``--max-train-windows``
   (group k-fold, ``--rf-splits`` folds; the store and feature table are reused from the
   stage cache, so only the fit stage runs).
3. The statistics pass of the distributed engine (LDA) alone over the run's feature table
   on a ``LocalCluster`` of 1 worker and of 2 workers (``--memory-limit`` each): its
   seconds, the ratio, and per worker the tasks it ran (task stream), their compute
   seconds, its CPU seconds and bytes read from storage and from the page cache (``--pin``:
   also with every worker's thread pools at one thread).

Prints one JSON line per measurement and a final summary line. Run from the repository root::

    .venv/bin/python benchmarks/bench_large_cohort.py --subjects 4 --duration 60   # quick
    nice -n 10 .venv/bin/python benchmarks/bench_large_cohort.py &> large.log

The run folder goes to ``--root`` (default ``../bench-data/large-cohort``, outside the
repository); ``--cleanup`` deletes it at the end.

``--files GLOB`` skips ``cohort run``: measurements 1-3 run in this process (the client) on
a ``LocalCluster`` over the feature files the glob matches (e.g. the first ``--max-files``
of a run's ``stages/*/features.parquet``), calling the distributed engine directly; the
peak RSS is this process's and its descendants' (the workers)::

    nice -n 10 .venv/bin/python benchmarks/bench_large_cohort.py \
        --files '../bench-data/large-cohort/run/stages/*/features.parquet' --max-files 40
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
COHORT = str(Path(sys.executable).with_name("cohort"))


class TreeRss:
    """Sample the RSS of a process and each of its descendants; keep every one's peak."""

    def __init__(self, pid: int, interval: float) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    name = " ".join(p.cmdline()[:3])[-60:]
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                if rss > self.peak.get(p.pid, ("", 0))[1]:
                    self.peak[p.pid] = (name, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        """Client peak and the descendants' peaks (MB), largest first."""
        client = self.peak.get(self.root.pid, ("", 0))[1]
        others = sorted(
            (rss for pid, (_, rss) in self.peak.items() if pid != self.root.pid), reverse=True
        )
        return {
            "client_peak_rss_mb": round(client / 1e6, 1),
            "descendant_peak_rss_mb": [round(r / 1e6, 1) for r in others],
        }


def write_task(
    root: Path, args: argparse.Namespace, model: dict[str, Any], validation: dict[str, Any]
) -> Path:
    """Write the task YAML of one run (the shipped EMG task's features on synthetic data)."""
    emg = yaml.safe_load((REPO / "tasks" / "emg_gestures.yaml").read_text())
    task = {
        "name": "large_cohort",
        "description": "synthetic EMG cohort for the distributed learning engine benchmark",
        "data": {
            "source": "large",
            "format": "synthetic",
            "options": {
                "n_subjects": args.subjects,
                "n_runs": args.runs,
                "duration": args.duration,
                "seed": 0,
            },
        },
        "windows": {
            "length": 200,
            "step": args.step,
            "unit": "samples",
            "label": "majority",
            "mixed": "drop",
            "exclude_labels": ["unmarked"],
        },
        "features": emg["features"],
        "model": model,
        "validation": validation,
        "seed": 0,
    }
    path = root / f"task_{model['name']}.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def cohort_run(task: Path, out: Path, profile: Path, interval: float) -> dict[str, Any]:
    """Run ``cohort run`` in a subprocess, sampling its process tree's RSS."""
    t0 = time.perf_counter()
    cmd = [COHORT, "run", str(task), "--out", str(out), "--cluster", str(profile), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    with TreeRss(proc.pid, interval) as rss:
        output, _ = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(output, file=sys.stderr)
        raise SystemExit(f"cohort run {task} failed with exit code {proc.returncode}")
    report = json.loads((out / "latest" / "report.json").read_text())
    engine = report["engine"]
    return {
        "wall_s": round(wall, 1),
        "stages": [line for line in output.splitlines() if line.strip()][-8:],
        "n_windows": report["n_windows"],
        "balanced_accuracy": report["overall"]["balanced_accuracy"],
        "engine": {k: engine[k] for k in ("name", "passes", "memory") if k in engine},
        "subsample_windows": engine.get("subsample", {}).get("n_windows"),
        **rss.summary(),
    }


def _worker_usage() -> dict[str, Any]:
    """This worker process's CPU seconds, storage reads, threads and pyarrow pools."""
    import pyarrow as pa

    proc = psutil.Process()
    cpu = proc.cpu_times()
    io = proc.io_counters()
    with open(f"/proc/{proc.pid}/stat") as f:  # after the parenthesised name: minflt, majflt
        fields = f.read().rsplit(")", 1)[1].split()
    return {
        "cpu_s": cpu.user + cpu.system,
        "sys_s": cpu.system,
        "minor_faults": int(fields[7]),
        "read_bytes": io.read_bytes,
        "read_chars": io.read_chars,
        "threads": proc.num_threads(),
        "arrow_cpu": pa.cpu_count(),
        "arrow_io": pa.io_thread_count(),
    }


def _pin_worker() -> None:
    """One thread for every pool of this worker (pyarrow's CPU and I/O pools, BLAS, OpenMP)."""
    import pyarrow as pa
    from threadpoolctl import threadpool_limits

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    threadpool_limits(1)


def statistics_pass(
    files: list[str], workers: int, memory_limit: str, model: dict, pin: bool = False
) -> dict[str, Any]:
    """Time the distributed engine's statistics pass alone on ``workers`` workers.

    The pass is the engine's own (:func:`pipeline.learn.distributed.run_statistics` over the
    partitions it batches); around it each worker's CPU seconds and storage reads
    (``/proc/<pid>/io``) are taken, and the task stream says which worker ran which task
    and for how long. ``pin`` first limits every worker's thread pools to one thread.
    """
    from distributed import Client, LocalCluster, get_task_stream

    from pipeline.cluster import worker_malloc_config
    from pipeline.learn.distributed import _batches, run_statistics, source_nbytes
    from pipeline.learn.estimators import model_spec
    from pipeline.learn.prep import ID_COLUMNS, FeaturePrep
    from pipeline.table import read_feature_table

    with (
        worker_malloc_config(),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            memory_limit=memory_limit,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        # imports on the workers (scikit-learn, pyarrow) before the timed pass
        client.run(lambda: __import__("pipeline.learn.distributed"))
        if pin:
            client.run(_pin_worker)
        spec = model_spec(model)
        ddf, _ = read_feature_table(files)
        prep = FeaturePrep.from_spec(spec.prep, "model config").fit(ddf._meta)
        ddf = ddf.loc[:, [*ID_COLUMNS, *prep.columns_]]
        before = client.run(_worker_usage)
        client_cpu = sum(os.times()[:2])
        t0 = time.perf_counter()
        with get_task_stream(client) as stream:
            run_statistics(_batches(ddf.to_delayed(), source_nbytes(ddf)), prep, "subject", True)
        wall = time.perf_counter() - t0
        client_cpu = sum(os.times()[:2]) - client_cpu
        after = client.run(_worker_usage)
    busy: dict[str, float] = {}
    tasks: dict[str, int] = {}
    for rec in stream.data:
        if not str(rec["key"]).startswith("statistics-pass"):
            continue
        w = rec["worker"]
        tasks[w] = tasks.get(w, 0) + 1
        busy[w] = busy.get(w, 0.0) + sum(
            s["stop"] - s["start"] for s in rec["startstops"] if s["action"] == "compute"
        )
    # every task of the pass by key prefix (reads, batch concatenations, the pass, the
    # tree sum): its count, compute seconds, and seconds and count of inter-worker transfers
    groups: dict[str, dict[str, float]] = {}
    for rec in stream.data:
        key = rec["key"][0] if isinstance(rec["key"], tuple) else rec["key"]
        g = groups.setdefault(str(key).rsplit("-", 1)[0].split("-pass-")[0][:40], {})
        g["tasks"] = g.get("tasks", 0) + 1
        for st in rec["startstops"]:
            g[st["action"] + "_s"] = g.get(st["action"] + "_s", 0.0) + st["stop"] - st["start"]
            if st["action"] == "transfer":
                g["transfers"] = g.get("transfers", 0) + 1
    per_worker = []
    for i, w in enumerate(sorted(after)):
        a, b = after[w], before[w]
        per_worker.append(
            {
                "worker": i,
                "tasks": tasks.get(w, 0),
                "compute_s": round(busy.get(w, 0.0), 1),
                "cpu_s": round(a["cpu_s"] - b["cpu_s"], 1),
                "sys_s": round(a["sys_s"] - b["sys_s"], 1),
                "minor_faults_m": round((a["minor_faults"] - b["minor_faults"]) / 1e6, 2),
                "storage_read_gb": round((a["read_bytes"] - b["read_bytes"]) / 1e9, 2),
                "read_gb": round((a["read_chars"] - b["read_chars"]) / 1e9, 2),
                "threads": a["threads"],
                "arrow_cpu_threads": a["arrow_cpu"],
                "arrow_io_threads": a["arrow_io"],
            }
        )
    return {
        "workers": workers,
        "pinned": pin,
        "seconds": round(wall, 2),
        "client_cpu_s": round(client_cpu, 1),
        "load": [round(x, 2) for x in os.getloadavg()],
        "per_worker": per_worker,
        "task_groups": {k: {n: round(v, 1) for n, v in g.items()} for k, g in groups.items()},
    }


def _subsample_summary(windows: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The report's windows drawn per subject and class, summarised (fewest, most, total)."""
    cells = [n for per in windows.values() for n in per.values()]
    return {
        "subjects": len(windows),
        "classes": len({c for per in windows.values() for c in per}),
        "per_subject_class_min": min(cells),
        "per_subject_class_max": max(cells),
        "total": sum(cells),
    }


def direct_run(
    files: list[str],
    model: dict[str, Any],
    validation: dict[str, Any],
    args: argparse.Namespace,
    predictions: Path,
) -> dict[str, Any]:
    """Fit and validate on ``files`` in this process (``--files``), sampling the RSS.

    The out-of-fold predictions are written to ``predictions`` as the fit stage writes
    them (by the workers, one file per partition); their files and rows are counted from
    the Parquet footers, then the folder is deleted.
    """
    import pyarrow.parquet as pq
    from distributed import Client, LocalCluster

    from pipeline.cluster import worker_malloc_config
    from pipeline.learn.distributed import fit_and_validate_distributed
    from pipeline.table import read_feature_table

    t0 = time.perf_counter()
    with (
        TreeRss(os.getpid(), args.sample) as rss,
        worker_malloc_config(),
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            memory_limit=args.memory_limit,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        # imports on the workers (scikit-learn, pyarrow) before the timed passes
        client.run(lambda: __import__("pipeline.learn.distributed"))
        ddf, _ = read_feature_table(files)
        _, report = fit_and_validate_distributed(
            ddf, model, validation, 0, predictions_dir=predictions
        )
    written = sorted(predictions.glob("*.parquet"))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in written)
    shutil.rmtree(predictions)
    engine = report["engine"]
    sample = engine.get("subsample")
    return {
        "wall_s": round(time.perf_counter() - t0, 1),
        "n_windows": report["n_windows"],
        "balanced_accuracy": report["overall"]["balanced_accuracy"],
        "engine": {k: engine[k] for k in ("name", "passes", "memory", "persisted") if k in engine},
        "subsample_windows": None if sample is None else sample["n_windows"],
        "subsample": None if sample is None else _subsample_summary(sample["windows"]),
        "predictions": {"files": len(written), "rows": rows},
        **rss.summary(),
    }


def scaling(files: list[str], args: argparse.Namespace, model: dict) -> dict[str, Any]:
    """Measurement 3: the statistics pass on 1 and 2 workers (``--pin``: pinned and not)."""
    out: dict[str, Any] = {}
    for pin in (False, True) if args.pin else (False,):
        runs = {}
        for w in (1, 2):
            runs[w] = statistics_pass(files, w, args.memory_limit, model, pin)
            print(json.dumps({"statistics_pass": runs[w]}), flush=True)
        ratio = round(runs[1]["seconds"] / runs[2]["seconds"], 2)
        key = "pinned" if pin else "default"
        out[key] = {"seconds": {w: r["seconds"] for w, r in runs.items()}, "speedup": ratio}
        print(json.dumps({"speedup_2_over_1": ratio, "pinned": pin}), flush=True)
    return out


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=80)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--duration", type=float, default=600.0, help="seconds per recording")
    ap.add_argument("--step", type=int, default=10, help="window step, samples")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="4GiB", help="per worker")
    ap.add_argument("--max-train-windows", type=int, default=50_000)
    ap.add_argument("--rf-splits", type=int, default=5)
    ap.add_argument("--sample", type=float, default=0.5, help="RSS sampling interval, s")
    ap.add_argument("--skip", default="", help="comma list of: lda, rf, scaling")
    ap.add_argument("--root", type=Path, default=REPO.parent / "bench-data" / "large-cohort")
    ap.add_argument("--cleanup", action="store_true", help="delete --root at the end")
    ap.add_argument("--files", help="glob of feature files: measure on them, no cohort run")
    ap.add_argument("--max-files", type=int, default=None, help="with --files: the first N")
    ap.add_argument(
        "--pin", action="store_true", help="scaling also with every worker pool at one thread"
    )
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    out = root / "run"
    profile = root / "cluster.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "local": {
                    "n-workers": args.workers,
                    "threads-per-worker": 1,
                    "processes": True,
                    "memory-limit": args.memory_limit,
                    "dashboard-address": ":0",
                }
            }
        )
    )
    lda = {
        "name": "lda",
        "params": {"solver": "lsqr", "shrinkage": "auto"},
        "prep": {"log": ["mav", "wl", "rms", "var", "iav", "log"], "normalize": "recording"},
        "engine": "distributed",
    }
    rf = {
        "name": "random_forest",
        "params": {"n_estimators": 50, "n_jobs": 1},
        "prep": lda["prep"],
        "engine": "distributed",
        "max_train_windows": args.max_train_windows,
    }
    shape = {
        "subjects": args.subjects,
        "runs": args.runs,
        "duration_s": args.duration,
        "step": args.step,
        "workers": args.workers,
        "memory_limit": args.memory_limit,
    }
    results: dict[str, Any] = {"shape": shape}
    if args.files:
        files = sorted(glob.glob(args.files))[: args.max_files]
        if not files:
            raise SystemExit(f"--files {args.files!r}: no file matches")
        from pipeline.learn.distributed import table_nbytes

        results["shape"] = {"files": len(files), "workers": args.workers}
        results["table"] = {"files": len(files), "nbytes_gb": round(table_nbytes(files) / 1e9, 2)}
        print(json.dumps({"table": results["table"]}), flush=True)
        loso = {"scheme": "loso", "n_permutations": 0}
        kfold = {"scheme": "group_kfold", "n_splits": args.rf_splits, "n_permutations": 0}
        for run, model, validation in (("lda", lda, loso), ("rf", rf, kfold)):
            if run not in skip:
                results[run] = direct_run(files, model, validation, args, root / f"oof-{run}")
                print(json.dumps({"run": run, **results[run]}), flush=True)
        if "scaling" not in skip:
            results["scaling"] = scaling(files, args, lda)
        print(json.dumps({"summary": results}, default=str))
        return
    if "lda" not in skip:
        task = write_task(root, args, lda, {"scheme": "loso", "n_permutations": 0})
        results["lda"] = cohort_run(task, out, profile, args.sample)
        print(json.dumps({"run": "lda", **results["lda"]}), flush=True)
    # the feature stage's outputs: one stages/<key>/features.parquet per recording
    files = sorted(glob.glob(str(out / "stages" / "*" / "features.parquet")))
    if files:
        from pipeline.learn.distributed import table_nbytes

        results["table"] = {"files": len(files), "nbytes_gb": round(table_nbytes(files) / 1e9, 2)}
        print(json.dumps({"table": results["table"]}), flush=True)
    if "rf" not in skip:
        task = write_task(
            root,
            args,
            rf,
            {"scheme": "group_kfold", "n_splits": args.rf_splits, "n_permutations": 0},
        )
        results["rf"] = cohort_run(task, out, profile, args.sample)
        print(json.dumps({"run": "rf", **results["rf"]}), flush=True)
    if "scaling" not in skip and files:
        results["scaling"] = scaling(files, args, lda)
    for run in ("lda", "rf"):
        results.get(run, {}).pop("stages", None)
    print(json.dumps({"summary": results}, default=str))
    if args.cleanup:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
