"""Tests of the validation report's HTML: its figures come from pipeline.plots, not pyplot."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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
