"""Validation reports: ``report.json`` with every figure and a self-contained ``report.html``.

The HTML embeds its plots (confusion matrix, per-subject bar chart, ROC curves) as base64 PNG.
The figures are :class:`matplotlib.figure.Figure` objects from :mod:`pipeline.plots`, drawn
without pyplot: nothing here selects a backend or touches pyplot's global state, so importing
this module in a notebook leaves inline plotting as it was, and a cluster without a display
renders the same PNGs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from pipeline import plots
from pipeline._fs import atomic_write, atomic_write_json
from pipeline.exceptions import SpecError

_REQUIRED = ("overall", "per_subject", "per_subject_summary", "classes", "folds")


def _png(fig: Figure) -> str:
    """Return ``fig`` rendered as PNG, base64-encoded for an ``<img src="data:...">``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def render_html(report: Mapping[str, Any], title: str = "Validation report") -> str:
    """Return a self-contained HTML page of a report (plots embedded as base64 PNG)."""
    missing = [k for k in _REQUIRED if k not in report]
    if missing:
        msg = f"render_html: report lacks keys {missing}; pass the dict fit_and_validate returned"
        raise SpecError(msg)
    ov = report["overall"]
    summ = report["per_subject_summary"]
    imgs = [
        ("Confusion matrix", _png(plots.confusion_matrix(report))),
        ("Per subject", _png(plots.subject_metrics(report))),
    ]
    if report.get("roc"):
        imgs.append(("ROC", _png(plots.roc_curves(report))))
    rows_overall = "".join(
        f"<tr><td>{k.replace('_', ' ')}</td><td>{_fmt(ov[k])}</td>"
        f"<td>{_fmt(summ[k]['min'])}</td><td>{_fmt(summ[k]['median'])}</td>"
        f"<td>{_fmt(summ[k]['max'])}</td><td>{_fmt(summ[k].get('worst_subject'))}</td></tr>"
        for k in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
    )
    rows_class = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{_fmt(d['sensitivity'])}</td>"
        f"<td>{_fmt(d['specificity'])}</td><td>{d['support']}</td></tr>"
        for c, d in ov["per_class"].items()
    )
    rows_subj = "".join(
        f"<tr><td>{html.escape(s)}</td><td>{d['n_windows']}</td><td>{_fmt(d['accuracy'])}</td>"
        f"<td>{_fmt(d['balanced_accuracy'])}</td><td>{_fmt(d['f1_macro'])}</td>"
        f"<td>{_fmt(d['roc_auc'])}</td></tr>"
        for s, d in sorted(report["per_subject"].items())
    )
    thr = report.get("threshold")
    thr_html = (
        f"<p>Binary threshold for specificity ≥ {thr['target_specificity']:.2f}: "
        f"<b>{thr['threshold']:.4f}</b> gives sensitivity <b>{thr['sensitivity']:.3f}</b> "
        f"(specificity {thr['specificity']:.3f}).</p>"
        if thr
        else ""
    )
    timing = report.get("timing", {})
    cfg = html.escape(
        json.dumps(
            {
                "model": report.get("model"),
                "validation": report.get("validation"),
                "seed": report.get("seed"),
            },
            indent=1,
        )
    )
    figs = "".join(
        f'<figure><img alt="{t}" src="data:image/png;base64,{b}">'
        f"<figcaption>{t}</figcaption></figure>"
        for t, b in imgs
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:0.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}th{{background:#f2f2f2}}
figure{{display:inline-block;margin:0.5em;vertical-align:top}}pre{{background:#f7f7f7;padding:0.6em}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Scheme <b>{html.escape(str(report.get("validation", {}).get("scheme")))}</b>,
{len(report["folds"])} folds, {len(report["per_subject"])} subjects,
{ov["n_windows"]} scored windows.
Cross-validation took {_fmt(timing.get("cross_validation_s"))} s.</p>
<h2>Summary (pooled out-of-fold; per subject min / median / max)</h2>
<table><tr><th>metric</th><th>pooled</th><th>min</th><th>median</th><th>max</th>
<th>worst subject</th></tr>
{rows_overall}</table>
{thr_html}
{figs}
<h2>Per class (pooled)</h2>
<table><tr><th>class</th><th>sensitivity</th><th>specificity</th><th>support</th></tr>{rows_class}</table>
<h2>Per subject</h2>
<table><tr><th>subject</th><th>windows</th><th>accuracy</th><th>balanced acc.</th><th>macro F1</th>
<th>ROC AUC</th></tr>{rows_subj}</table>
<h2>Configuration</h2><pre>{cfg}</pre>
</body></html>
"""


def write_report(
    report: Mapping[str, Any], out_dir: str | os.PathLike[str], title: str = "Validation report"
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (each atomically).

    Returns
    -------
    (json_path, html_path) : tuple of pathlib.Path
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, hpath = out / "report.json", out / "report.html"
    atomic_write_json(jpath, report)
    atomic_write(hpath, render_html(report, title))
    return jpath, hpath
