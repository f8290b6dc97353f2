"""Model variants on a run's cached feature table (the ablation rows of "Models").

Run from the repository root, after `cohort run` has computed the features::

    .venv/bin/python benchmarks/bench_model_variants.py runs/emg --dataset emg
    .venv/bin/python benchmarks/bench_model_variants.py runs/eeg --dataset eeg

Reads the feature stages of the run's latest manifest and cross-validates each variant
leave-one-subject-out with :func:`pipeline.learn.fit_and_validate`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from pipeline.learn import fit_and_validate

EMG_LOG = ["mav", "wl", "rms", "var", "iav", "log"]
EMG_BASE = {
    "name": "lda",
    "params": {"solver": "lsqr", "shrinkage": "auto"},
    "prep": {"log": EMG_LOG, "normalize": "recording"},
}
# logvar is a log already (negative in the store's V^2): not logged twice.
EEG_LOG = ["delta", "theta", "alpha", "beta", "gamma"]
VARIANTS = {
    "emg": {
        "default, smoothing over 15 windows": {**EMG_BASE, "smooth": 15},
        "default, smoothing over 10 windows": {**EMG_BASE, "smooth": 10},
        "default, no smoothing": EMG_BASE,
        "default, no per-recording normalisation": {
            **EMG_BASE,
            "prep": {"log": EMG_LOG},
            "smooth": 15,
        },
    },
    "eeg": {
        "random forest (200 trees)": {"name": "random_forest", "params": {"n_estimators": 200}},
        "logistic regression, log features": {
            "name": "logreg",
            "params": {"C": 0.1},
            "prep": {"log": EEG_LOG, "log_offset": 1e-24},  # V^2 band powers: 1e-12 uV^2
        },
        "logistic regression, z-scored per subject": {
            "name": "logreg",
            "params": {"C": 0.1},
            "prep": {"log": EEG_LOG, "log_offset": 1e-24, "normalize": "subject"},
        },
    },
}


def _table(run_dir: Path) -> pd.DataFrame:
    manifest = json.loads(max((run_dir / "runs").glob("*.json")).read_text())
    paths = [
        run_dir / "stages" / s["key"] / "features.parquet"
        for s in manifest["stages"]
        if s["name"] == "features"
    ]
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="output folder of cohort run")
    parser.add_argument("--dataset", choices=sorted(VARIANTS), required=True)
    args = parser.parse_args()
    table = _table(args.run)
    print(f"{len(table)} windows, {table['label'].notna().sum()} labelled")
    for name, cfg in VARIANTS[args.dataset].items():
        t0 = time.perf_counter()
        _, report = fit_and_validate(table, cfg, {"scheme": "loso"}, 0, n_jobs=2)
        o, thr = report["overall"], report.get("threshold") or {}
        print(
            f"{name:45s} bacc {o['balanced_accuracy']:.3f}  auc {o['roc_auc']:.3f}  "
            f"sens@0.9spec {thr.get('sensitivity', float('nan')):.3f}  "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
