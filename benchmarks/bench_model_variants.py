"""Model variants on a run's cached feature table (the ablation rows of "Models").

Run from the repository root, after `cohort run` has computed the features::

    .venv/bin/python benchmarks/bench_model_variants.py runs/emg --dataset emg
    .venv/bin/python benchmarks/bench_model_variants.py runs/eeg --dataset eeg
    # the rows needing more EMG features (skipped on the table of tasks/emg_gestures.yaml)
    .venv/bin/cohort run benchmarks/tasks/emg_gestures_extra_features.yaml --out runs/emg-extra
    .venv/bin/python benchmarks/bench_model_variants.py runs/emg-extra --dataset emg --only Hjorth
    # the EEG rows needing fb_cov, coh and glasso (skipped on tasks/eeg_arithmetic.yaml's table)
    .venv/bin/cohort run benchmarks/tasks/eeg_arithmetic_extra_features.yaml --out runs/eeg-extra
    .venv/bin/python benchmarks/bench_model_variants.py runs/eeg-extra --dataset eeg

Reads the feature stages of the run's latest manifest and cross-validates each variant
leave-one-subject-out with :func:`pipeline.learn.fit_and_validate`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.learn import fit_and_validate

EMG_LOG = ["mav", "wl", "rms", "var", "iav", "log"]
# tasks/emg_gestures.yaml's kinds, named so that the rows read the same columns on a table
# with more (benchmarks/tasks/emg_gestures_extra_features.yaml)
EMG_KINDS = [*EMG_LOG, "zc", "ssc", "wamp", "ar1", "ar2", "ar3", "ar4"]
EMG_EXTRA = ["hjorth_mobility", "hjorth_complexity", "mnf", "mdf", "skewness"]
EMG_BASE = {
    "name": "lda",
    "params": {"solver": "lsqr", "shrinkage": "auto"},
    "prep": {"features": EMG_KINDS, "log": EMG_LOG, "normalize": "recording"},
}
# logvar is a log already (negative in the store's V^2): not logged twice.
EEG_LOG = ["delta", "theta", "alpha", "beta", "gamma"]
FB = [f"fbcov_{b}" for b in EEG_LOG[1:]]  # fb_cov's default bands
FB9 = [f"fbcov_{lo}_{lo + 4}" for lo in range(4, 40, 4)]
VARIANTS = {
    "emg": {
        "default, smoothing over 15 windows": {**EMG_BASE, "smooth": 15},
        "default, smoothing over 10 windows": {**EMG_BASE, "smooth": 10},
        "default, no smoothing": EMG_BASE,
        "default, no per-recording normalisation": {
            **EMG_BASE,
            "prep": {"features": EMG_KINDS, "log": EMG_LOG},
            "smooth": 15,
        },
        "default, z-scored per subject": {
            **EMG_BASE,
            "prep": {"features": EMG_KINDS, "log": EMG_LOG, "normalize": "subject"},
            "smooth": 15,
        },
        # on the table of benchmarks/tasks/emg_gestures_extra_features.yaml only
        "default + Hjorth mobility and complexity, MNF, MDF, skewness": {
            **EMG_BASE,
            "prep": {"features": EMG_KINDS + EMG_EXTRA, "log": EMG_LOG, "normalize": "recording"},
            "smooth": 15,
        },
        "Hudgins TD + AR(4) + LD": {
            **EMG_BASE,
            "prep": {
                "features": ["mav", "wl", "zc", "ssc", "ar1", "ar2", "ar3", "ar4", "log"],
                "log": ["mav", "wl", "log"],
                "normalize": "recording",
            },
            "smooth": 15,
        },
        "default, smoothing over 25 windows": {**EMG_BASE, "smooth": 25},
        "Hudgins TD (MAV, WL, ZC, SSC)": {
            **EMG_BASE,
            "prep": {
                "features": ["mav", "wl", "zc", "ssc"],
                "log": ["mav", "wl"],
                "normalize": "recording",
            },
            "smooth": 15,
        },
        "default features, logistic regression (C = 1)": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": EMG_BASE["prep"],
            "smooth": 15,
        },
        "default, LDA without shrinkage": {
            **EMG_BASE,
            "params": {"solver": "lsqr", "shrinkage": None},
            "smooth": 15,
        },
        # the loso_calibrated rows (CALIBRATED below): tasks/emg_gestures_calibrated.yaml
        "default, calibrated with k labeled repetitions per gesture": {
            **EMG_BASE,
            "smooth": 15,
            "engine": "memory",
        },
        "default, calibrated, unweighted (calibration_weight 1)": {
            **EMG_BASE,
            "smooth": 15,
            "engine": "memory",
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
        # tasks/eeg_arithmetic.yaml and tasks/eeg_arithmetic_calibrated.yaml (TS+LR)
        "tangent space of OAS covariances + LR": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {"features": ["cov_oas"], "tangent_space": "cov_oas"},
        },
        "same, re-centred per subject (unlabeled)": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {"features": ["cov_oas"], "tangent_space": "cov_oas", "recenter": "riemann"},
        },
        # issue 13's zero-shot candidates (on the table of
        # benchmarks/tasks/eeg_arithmetic_extra_features.yaml)
        "TS of OAS, log-Euclidean mean + LR": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {
                "features": ["cov_oas"],
                "tangent_space": "cov_oas",
                "tangent_mean": "logeuclid",
            },
        },
        "TS of OAS, Euclidean mean + LR": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {"features": ["cov_oas"], "tangent_space": "cov_oas", "tangent_mean": "euclid"},
        },
        "TS of OAS + LR, C chosen in the fold (logreg_cv)": {
            "name": "logreg_cv",
            "prep": {"features": ["cov_oas"], "tangent_space": "cov_oas"},
        },
        "log band power + TS of OAS + LR": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {
                "features": ["cov_oas", *EEG_LOG],
                "log": EEG_LOG,
                "log_offset": 1e-24,
                "tangent_space": "cov_oas",
            },
        },
        "filter-bank TS (theta, alpha, beta, gamma) + LR": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {"features": FB, "tangent_space": FB},
        },
        "filter-bank TS + LR, C chosen in the fold (logreg_cv)": {
            "name": "logreg_cv",
            "prep": {"features": FB, "tangent_space": FB},
        },
        "filter-bank TS, 9 bands of 4 Hz (4-40 Hz, FBCSP) + LR": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {"features": FB9, "tangent_space": FB9},
        },
        "coherence (5 bands) + LR": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {"features": [f"coh_{b}" for b in EEG_LOG]},
        },
        "graphical-lasso precision + LR": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {"features": ["glasso"]},
        },
        "filter-bank TS + LR, re-centred per subject (unlabeled)": {
            "name": "logreg",
            "params": {"C": 1.0},
            "prep": {"features": FB, "tangent_space": FB, "recenter": "riemann"},
        },
    },
}


EEG_BASE = "tangent space of OAS covariances + LR"  # the EEG rows' paired reference
EMG_DEFAULT = "default, smoothing over 15 windows"  # tasks/emg_gestures.yaml: EMG reference
CALIBRATED = {  # row -> its loso_calibrated keys (k = 0 of each is plain LOSO)
    "default, calibrated with k labeled repetitions per gesture": {
        "calibration_weight": "balanced"
    },
    "default, calibrated, unweighted (calibration_weight 1)": {"calibration_weight": 1},
}
WINDOW_S = {"emg": 0.2, "eeg": 4.0}  # the tasks' window lengths (loso_calibrated's overlaps)


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
    parser.add_argument("--only", help="run the variants whose name contains this text")
    args = parser.parse_args()
    table = _table(args.run)
    print(f"{len(table)} windows, {table['label'].notna().sum()} labelled")
    base_auc: dict[str, float] | None = None  # per subject, the EEG_BASE row's
    base_bacc: dict[str, float] | None = None  # per subject, the EMG_DEFAULT row's
    for name, cfg in VARIANTS[args.dataset].items():
        if args.only and args.only not in name and name not in (EEG_BASE, EMG_DEFAULT):
            continue  # the base rows stay: the others are paired against them
        kinds = {c.split("__", 1)[1] for c in table.columns if "__" in c}
        need = set((cfg.get("prep") or {}).get("features") or ()) - kinds
        if need:
            print(f"{name:45s} skipped: the table has no {sorted(need)}", flush=True)
            continue
        t0 = time.perf_counter()
        # the ablation rows compare point estimates: no permutation test (each refits all folds)
        scheme = {"scheme": "loso", "n_permutations": 0}
        if name in CALIBRATED:  # tasks/emg_gestures_calibrated.yaml's scheme
            scheme = {"scheme": "loso_calibrated", "calibration": [0, 1, 2, 3], "report_k": 1}
            scheme |= {"n_permutations": 0, **CALIBRATED[name]}
        _, report = fit_and_validate(
            table, cfg, scheme, 0, n_jobs=2, window_length=WINDOW_S[args.dataset]
        )
        worst = report["per_subject_summary"]["balanced_accuracy"]
        o, thr = report["overall"], report.get("threshold") or {}
        print(
            f"{name:45s} bacc {o['balanced_accuracy']:.3f}  auc {o['roc_auc']:.3f}  "
            f"sens@0.9spec {thr.get('sensitivity', float('nan')):.3f}  "
            f"worst subject {worst['min']:.3f} ({worst['worst_subject']})  "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        bacc = {s: m["balanced_accuracy"] for s, m in report["per_subject"].items()}
        if name == EMG_DEFAULT:
            base_bacc = bacc
        elif base_bacc is not None and name not in CALIBRATED:
            # paired per subject: each subject against its own in the shipped default's row
            gain = [bacc[s] - base_bacc[s] for s in base_bacc if s in bacc]
            print(
                f"  per-subject balanced accuracy against '{EMG_DEFAULT}': median "
                f"{np.median(gain):+.3f}, min {np.min(gain):+.3f}, max {np.max(gain):+.3f}, "
                f"{sum(g > 0 for g in gain)}/{len(gain)} subjects better",
                flush=True,
            )
        auc = {s: m.get("roc_auc") for s, m in report["per_subject"].items()}
        if name == EEG_BASE:
            base_auc = auc
        elif args.dataset == "eeg" and base_auc is not None:
            # paired per subject: each subject's AUC against its own in the EEG_BASE row
            gain = [auc[s] - base_auc[s] for s in base_auc if auc.get(s) is not None]
            if gain:
                print(
                    f"  per-subject ROC AUC against '{EEG_BASE}': median "
                    f"{np.median(gain):+.3f}, min {np.min(gain):+.3f}, "
                    f"{sum(g > 0 for g in gain)}/{len(gain)} subjects better",
                    flush=True,
                )
        for point in report.get("calibration_curve", {}).get("points", []):
            # paired per subject: each subject's k against its own k = 0 (plain LOSO)
            base = report["calibration_curve"]["points"][0]["per_subject"]
            gain = [
                v["balanced_accuracy"] - base[s]["balanced_accuracy"]
                for s, v in point["per_subject"].items()
            ]
            w = point["worst_subject"]
            print(
                f"  k={point['k']:g}: bacc {point['overall']['balanced_accuracy']:.3f}  "
                f"worst subject {w['min']:.3f} ({w['worst_subject']})  paired gain over k=0: "
                f"median {np.median(gain):+.3f}, min {np.min(gain):+.3f}, "
                f"{sum(g > 0 for g in gain)}/{len(gain)} subjects better",
                flush=True,
            )


if __name__ == "__main__":
    main()
