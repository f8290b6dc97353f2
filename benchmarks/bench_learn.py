"""Validate the EMG default model on a feature table: LOSO and within-subject figures + time.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_learn.py --table TABLE.parquet --out /tmp/bench_learn

``TABLE`` is a feature table (Parquet folder or file, e.g. written by
``pipeline.table.write_feature_table``) of ``emg-gestures`` with windows of 200 ms, step
50 ms, holding the preset's features (``pipeline.learn.presets.EMG_GESTURES_FEATURES``) for
every channel. Keep unlabeled windows (``label`` null) in the table: the per-recording
normalisation uses all windows of a recording, as at prediction time.

Prints one JSON line per scheme and writes ``report.json`` / ``report.html`` per scheme.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd

from pipeline.learn import fit_and_validate, preset
from pipeline.learn.report import write_report

SCHEMES = {
    "loso": {"scheme": "loso"},
    "within_subject": {"scheme": "within_subject", "train": "run-1", "test": "run-2"},
}


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="feature table (Parquet)")
    ap.add_argument("--out", default="/tmp/bench_learn", help="folder for the reports")
    ap.add_argument("--model", default="emg_gestures", help="model preset name")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    table = pd.read_parquet(args.table)
    cfg = preset(args.model)
    for name, validation in SCHEMES.items():
        t0 = time.perf_counter()
        _, report = fit_and_validate(table, cfg, validation, seed=args.seed, n_jobs=args.n_jobs)
        wall = time.perf_counter() - t0
        write_report(report, Path(args.out) / name, title=f"{args.model}: {name}")
        ov, summ = report["overall"], report["per_subject_summary"]
        line = {
            "scheme": name,
            "n_windows": ov["n_windows"],
            "accuracy": round(ov["accuracy"], 4),
            "balanced_accuracy": round(ov["balanced_accuracy"], 4),
            "f1_macro": round(ov["f1_macro"], 4),
            "roc_auc": ov["roc_auc"] and round(ov["roc_auc"], 4),
            "per_subject_balanced_accuracy": {
                k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in summ["balanced_accuracy"].items()
            },
            "cv_seconds": report["timing"]["cross_validation_s"],
            "wall_seconds": round(wall, 1),
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
