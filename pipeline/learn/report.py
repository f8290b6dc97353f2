"""Validation reports: ``report.json`` with every figure and a self-contained ``report.html``.

The HTML embeds its plots (confusion matrix, per-subject bar chart, ROC curves) as base64 PNG
rendered with Matplotlib's Agg backend, so the file can be mailed or archived alone.
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

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on clusters
import matplotlib.pyplot as plt
import numpy as np

from pipeline._fs import atomic_write, atomic_write_json
from pipeline.exceptions import SpecError

_REQUIRED = ("overall", "per_subject", "per_subject_summary", "classes", "folds")


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_confusion(report: Mapping[str, Any]) -> plt.Figure:
    """Return a figure of the pooled confusion matrix, rows normalised to recall."""
    cm = np.asarray(report["overall"]["confusion_matrix"], dtype=float)
    classes = report["classes"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = cm / cm.sum(1, keepdims=True)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.1 * n + 2.5, 1.0 * n + 1.8))
    im = ax.imshow(np.nan_to_num(rec), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            color = "white" if np.nan_to_num(rec[i, j]) > 0.6 else "black"
            ax.text(
                j,
                i,
                f"{np.nan_to_num(rec[i, j]):.2f}\n({int(cm[i, j])})",
                ha="center",
                va="center",
                fontsize=8,
                color=color,
            )
    ax.set_xticks(range(n), classes, rotation=35, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (row = recall, count)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def plot_per_subject(report: Mapping[str, Any], metric: str = "balanced_accuracy") -> plt.Figure:
    """Return a bar chart of ``metric`` per subject with the median as a line."""
    per = report["per_subject"]
    subjects = sorted(per, key=lambda s: per[s][metric] if per[s][metric] is not None else -1)
    vals = [per[s][metric] if per[s][metric] is not None else np.nan for s in subjects]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.32 * len(subjects) + 2), 3.6))
    colors = ["#d62728" if v < np.nanmedian(vals) - 0.15 else "#1f77b4" for v in vals]
    ax.bar(range(len(subjects)), vals, color=colors)
    ax.axhline(
        np.nanmedian(vals), color="k", ls="--", lw=1, label=f"median {np.nanmedian(vals):.3f}"
    )
    ax.set_xticks(range(len(subjects)), subjects, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{metric.replace('_', ' ')} per subject (red: > 0.15 below median)")
    ax.legend(loc="lower right")
    return fig


def plot_roc(report: Mapping[str, Any]) -> plt.Figure | None:
    """Return one-vs-rest ROC curves of the pooled out-of-fold predictions, or None."""
    curves = report.get("roc") or {}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for cls, c in curves.items():
        ax.plot(c["fpr"], c["tpr"], lw=1.4, label=f"{cls} (AUC {c['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    thr = report.get("threshold")
    if thr:
        ax.plot(
            1 - thr["specificity"],
            thr["sensitivity"],
            "ko",
            label=f"spec {thr['specificity']:.2f} → sens {thr['sensitivity']:.2f}",
        )
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC (one vs rest, out-of-fold)")
    ax.legend(fontsize=7, loc="lower right")
    return fig


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
        ("Confusion matrix", _png(plot_confusion(report))),
        ("Per subject", _png(plot_per_subject(report))),
    ]
    roc = plot_roc(report)
    if roc is not None:
        imgs.append(("ROC", _png(roc)))
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
