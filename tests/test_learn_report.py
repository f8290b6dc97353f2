"""Tests of the validation report's HTML: its figures come from pipeline.plots, not pyplot."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

from pipeline import plots
from pipeline.exceptions import SpecError
from pipeline.learn.report import render_html

REPO = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


def _report(roc: bool = True) -> dict[str, Any]:
    """Return a small, complete report of two classes and three subjects."""
    per_subject = {
        s: {"n_windows": 10, **dict.fromkeys(METRICS, v)}
        for s, v in (("sub-01", 0.9), ("sub-02", 0.5), ("sub-03", 0.8))
    }
    report: dict[str, Any] = {
        "classes": ["rest", "task"],
        "folds": [{}, {}, {}],
        "overall": {
            "confusion_matrix": [[12, 3], [4, 11]],
            "n_windows": 30,
            "per_class": {
                "rest": {"sensitivity": 0.8, "specificity": 0.73, "support": 15},
                "task": {"sensitivity": 0.73, "specificity": 0.8, "support": 15},
            },
            **dict.fromkeys(METRICS, 0.77),
        },
        "per_subject": per_subject,
        "per_subject_summary": {
            m: {"min": 0.5, "median": 0.8, "max": 0.9, "worst_subject": "sub-02"} for m in METRICS
        },
        "validation": {"scheme": "loso"},
    }
    if roc:
        curve = {"fpr": [0.0, 0.2, 1.0], "tpr": [0.0, 0.7, 1.0], "auc": 0.75}
        report["roc"] = {"rest": curve, "task": curve}
    return report


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_figures_are_plots_figures() -> None:
    report = _report()
    for fig in (
        plots.confusion_matrix(report),
        plots.subject_metrics(report),
        plots.roc_curves(report),
    ):
        assert type(fig) is Figure  # built without pyplot: no figure manager, nothing to close
        assert fig.canvas.manager is None


def test_html_embeds_one_png_per_figure() -> None:
    with_roc = _pngs(render_html(_report(), title="t"))
    assert len(with_roc) == 3
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in with_roc)
    assert len(_pngs(render_html(_report(roc=False), title="t"))) == 2


def test_roc_curves_without_curves_is_an_error() -> None:
    with pytest.raises(SpecError, match=r"roc_curves: report has no 'roc' curves"):
        plots.roc_curves(_report(roc=False))


def test_rendering_a_report_touches_neither_backend_nor_pyplot() -> None:
    # in a fresh interpreter: pyplot is never imported and the chosen backend stays
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_learn_report import _report\n"
        "from pipeline.learn.report import render_html\n"
        "render_html(_report())\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.stdout.split() == ["svg", "False"]


# --- honest reports (issue 13 item 5): permutation, baselines, intervals, provenance ---


@pytest.fixture(scope="module")
def separable() -> Any:
    from pipeline.learn.synthetic import synthetic_feature_table

    return synthetic_feature_table(n_subjects=5, n_classes=2, n_channels=2, seed=3)


def test_permutation_p_value_is_small_on_separable_data(separable) -> None:
    from pipeline.learn.fit import fit_and_validate

    _, rep = fit_and_validate(
        separable, {"name": "lda"}, {"scheme": "loso", "n_permutations": 19}, 0, n_jobs=1
    )
    perm = rep["permutation"]
    assert perm["n_permutations"] == 19 and perm["refits"] == 19 * 5
    assert perm["unit"] == "window" and perm["permuted_within"] == "subject"
    assert rep["overall"]["balanced_accuracy"] > 0.8
    # no relabelling reaches the real score: the smallest p-value 19 permutations allow
    assert perm["balanced_accuracy"]["p_value"] == pytest.approx(1 / 20)
    assert perm["roc_auc"]["p_value"] == pytest.approx(1 / 20)
    assert abs(perm["balanced_accuracy"]["null_mean"] - 0.5) < 0.1


def test_permutation_p_values_are_near_uniform_on_shuffled_labels(separable) -> None:
    from pipeline.learn.fit import fit_and_validate

    pvals = []
    for seed in range(12):
        table = separable.copy()
        rng = np.random.default_rng(100 + seed)
        lab = table["label"].notna().to_numpy()
        table.loc[lab, "label"] = rng.permutation(table.loc[lab, "label"].to_numpy())
        val = {"scheme": "loso", "n_permutations": 9}
        _, rep = fit_and_validate(table, {"name": "lda"}, val, seed, n_jobs=1)
        pvals.append(rep["permutation"]["balanced_accuracy"]["p_value"])
    pvals = np.array(pvals)
    # under the null p is uniform on {0.1, ..., 1} (mean 0.55); these 12 give mean 0.38
    assert 0.3 < pvals.mean() < 0.8, pvals
    assert (pvals <= 0.1).sum() <= 3, pvals


def test_recording_labels_are_permuted_within_subject_when_constant_per_recording() -> None:
    import pandas as pd

    from pipeline.learn.permutation import permuted_codes

    rows = []
    for s in ("01", "02", "03"):
        for r, lab in enumerate(("rest", "task", "rest", "task")):
            rows += [{"subject": s, "recording": f"{s}-{r}", "label": lab}] * (3 + r)
    table = pd.DataFrame(rows)
    codes, unit = permuted_codes(table, ["rest", "task"], 30, seed=1)
    assert unit == "recording"
    base = (table["label"] == "task").to_numpy().astype(int)
    changed = False
    for p in codes:
        frame = table.assign(code=p)
        # each recording keeps one label, each subject keeps two rest and two task recordings
        assert (frame.groupby("recording")["code"].nunique() == 1).all()
        per_rec = frame.groupby(["subject", "recording"])["code"].first()
        assert (per_rec.groupby("subject").sum() == 2).all()
        changed |= bool((p != base).any())
    assert changed


def test_every_engine_writes_the_same_trust_sections(separable) -> None:
    import dask.dataframe as dd

    from pipeline.learn.fit import fit_and_validate

    val = {"scheme": "loso", "n_permutations": 0}
    parts = [g for _, g in separable.groupby("recording", sort=True)]
    ddf = dd.from_pandas(separable, npartitions=1, sort=False)
    ddf = dd.concat([dd.from_pandas(p, npartitions=1, sort=False) for p in parts])
    _, rep_m = fit_and_validate(separable, {"name": "lda", "engine": "memory"}, val, n_jobs=1)
    _, rep_d = fit_and_validate(ddf, {"name": "lda", "engine": "distributed"}, val)
    keys = ("baseline", "ci95", "calibration", "inverted", "leakage", "permutation")
    assert all(k in rep_m and k in rep_d for k in keys)
    assert rep_d["baseline"] == rep_m["baseline"]
    assert rep_d["leakage"] == rep_m["leakage"]
    assert rep_d["inverted"] == rep_m["inverted"]
    for m in METRICS:
        assert rep_d["ci95"][m]["low"] == pytest.approx(rep_m["ci95"][m]["low"], abs=1e-9)
        assert rep_d["ci95"][m]["high"] == pytest.approx(rep_m["ci95"][m]["high"], abs=1e-9)
    assert rep_d["calibration"]["ece"] == pytest.approx(rep_m["calibration"]["ece"], abs=1e-9)
    assert rep_d["calibration"]["brier"] == pytest.approx(rep_m["calibration"]["brier"], abs=1e-9)
    assert rep_m["permutation"]["skipped"] == "validation.n_permutations is 0"
    assert rep_d["permutation"]["skipped"] == "validation.n_permutations is 0"


def _full_report() -> dict[str, Any]:
    from pipeline.learn.metrics import calibration_metrics

    report = _report()
    report["per_subject"]["sub-02"]["quality_flags"] = [
        "sub-02_run-1 ch3: flat_fraction 0.41 (cohort median 0, z +12.0)"
    ]
    report["inverted"] = {
        "sub-02": {
            "balanced_accuracy": 0.4,
            "chance": 0.5,
            "roc_auc": 0.3,
            "reasons": ["ROC AUC 0.300 < 0.5"],
        }
    }
    report["baseline"] = {
        "majority_class": "rest",
        "majority": dict.fromkeys(METRICS, 0.5),
        "chance": dict.fromkeys(METRICS, 0.5),
    }
    report["ci95"] = {m: {"low": 0.61, "high": 0.88} for m in METRICS} | {
        "n_boot": 1000,
        "seed": 0,
        "n_subjects": 3,
    }
    report["permutation"] = {
        "n_permutations": 99,
        "permuted_within": "subject",
        "unit": "window",
        "balanced_accuracy": {"observed": 0.77, "p_value": 0.01, "null_mean": 0.5},
    }
    rng = np.random.default_rng(0)
    p = rng.uniform(size=50)
    report["calibration"] = calibration_metrics(
        np.where(p > 0.5, "task", "rest"), np.column_stack([1 - p, p]), ["rest", "task"]
    )
    report["leakage"] = {
        "held_out": "HELD-OUT TEXT",
        "preparation": "PREP TEXT",
        "fitted": "FIT TEXT",
    }
    report["provenance"] = {
        "data": {"source": "/data/eegmat"},
        "store_fingerprint": "abc123",
        "date": "2026-12-01T23:00:00+00:00",
        "versions": {"numpy": "2"},
    }
    return report


def test_html_shows_baselines_intervals_inversion_quality_and_provenance() -> None:
    page = render_html(_full_report(), title="t")
    assert "0.610 – 0.880" in page  # the interval next to the metric
    assert "Inverted subjects" in page and "ROC AUC 0.300 &lt; 0.5" in page
    assert '<tr class="inv"><td>sub-02</td>' in page
    assert "flat_fraction 0.41" in page
    assert "HELD-OUT TEXT" in page and "PREP TEXT" in page
    assert "abc123" in page and "/data/eegmat" in page and "2026-12-01T23:00" in page
    assert "Permutation test: 99 relabellings" in page and "0.0100" in page
    assert "Brier score" in page
    assert len(_pngs(page)) == 4  # confusion, per subject, ROC, reliability


def test_subject_quality_puts_outlier_cells_next_to_their_subject() -> None:
    import pandas as pd

    from pipeline.learn.report import attach_quality, subject_quality
    from pipeline.quality import quality_outliers

    rows = [
        {
            "subject": s,
            "recording": f"{s}_r",
            "channel": c,
            "rms": 1.0,
            "flat_fraction": 0.0,
            "clip_fraction": 0.001,
            "line_noise_ratio": 0.01,
        }
        for s in ("01", "02", "03", "04", "05")
        for c in ("a", "b")
    ]
    q = pd.DataFrame(rows)
    q.loc[(q["subject"] == "03") & (q["channel"] == "b"), "flat_fraction"] = 0.6
    out = subject_quality(q, quality_outliers(q), {"z": 3.5})
    # MAD 0 among the healthy channels: the z-score's floor sets the scale
    assert out["subjects"]["03"]["flags"] == [
        "03_r b: flat_fraction 0.6 (cohort median 0, z +60.0)"
    ]
    assert out["subjects"]["01"]["flags"] == []
    assert out["subjects"]["03"]["worst"]["flat_fraction"] == 0.6
    report = attach_quality({"per_subject": {"03": {}, "01": {}}}, out)
    assert report["per_subject"]["03"]["quality_flags"] == out["subjects"]["03"]["flags"]
    assert report["per_subject"]["01"]["quality_flags"] == []
