"""Leave-one-subject-out of a task's model: statistics engine vs in-memory refits.

Usage (from the repository root)::

    .venv/bin/cohort features STORE --spec tasks/emg_gestures.yaml --out TABLE
    .venv/bin/python benchmarks/bench_learn_engine.py --table TABLE \\
        --task tasks/emg_gestures.yaml --workers 2

Both engines run on one ``LocalCluster`` (``--workers`` processes, one thread each): the
memory engine collects the table and refits every fold with scikit-learn (folds in
parallel on the workers, joblib's dask backend); the distributed engine leaves the table
on the workers and fits every fold from sufficient statistics. Each is run ``--repeat``
times; the best wall time counts. Prints one JSON line: times, ratio, and the largest
difference between the two engines' balanced accuracies (overall and per subject).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml


def _run(table: Any, cfg: dict[str, Any], validation: dict[str, Any], seed: int) -> Any:
    from pipeline.learn import fit_and_validate

    t0 = time.perf_counter()
    _, report = fit_and_validate(table, cfg, validation, seed)
    return time.perf_counter() - t0, report


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="feature table folder (cohort features)")
    ap.add_argument("--task", default="tasks/emg_gestures.yaml")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from distributed import Client, LocalCluster

    from pipeline.table import read_feature_table

    task = yaml.safe_load(Path(args.task).read_text())
    model = dict(task["model"])
    # the permutation test refits every fold n times (memory engine only): not what is timed
    validation = dict(task.get("validation") or {"scheme": "loso"}) | {"n_permutations": 0}
    seed = int(task.get("seed", 0))
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as c,
        Client(c),
    ):
        ddf, _ = read_feature_table(args.table)
        mem_s, dist_s = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            pdf = ddf.compute().reset_index(drop=True)  # the memory engine's collect
            t, rep_m = _run(pdf, model | {"engine": "memory"}, validation, seed)
            mem_s.append(time.perf_counter() - t0)
            t, rep_d = _run(ddf, model | {"engine": "distributed"}, validation, seed)
            dist_s.append(t)
    per_m, per_d = rep_m["per_subject"], rep_d["per_subject"]
    line = {
        "task": task["name"],
        "scheme": validation["scheme"],
        "n_windows": rep_d["n_windows"],
        "n_features": len(rep_d["feature_names"]),
        "subjects": len(per_d),
        "workers": args.workers,
        "memory_s": round(min(mem_s), 2),
        "distributed_s": round(min(dist_s), 2),
        "ratio": round(min(mem_s) / min(dist_s), 2),
        "balanced_accuracy": rep_d["overall"]["balanced_accuracy"],
        "max_abs_diff_balanced_accuracy": max(
            abs(rep_m["overall"]["balanced_accuracy"] - rep_d["overall"]["balanced_accuracy"]),
            *(abs(per_m[s]["balanced_accuracy"] - per_d[s]["balanced_accuracy"]) for s in per_m),
        ),
        "passes": rep_d["engine"]["passes"],
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
