"""Validation reports: ``report.json`` with every figure and a self-contained ``report.html``.

The HTML embeds its plots (confusion matrix, per-subject bar chart, ROC curves) as base64 PNG.
The figures are :class:`matplotlib.figure.Figure` objects from :mod:`pipeline.plots`, drawn
without pyplot: nothing here selects a backend or touches pyplot's global state, so importing
this module in a notebook leaves inline plotting as it was, and a cluster without a display
renders the same PNGs.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from pipeline import plots
from pipeline._fs import atomic_write, atomic_write_json, package_versions
from pipeline.exceptions import SpecError

_REQUIRED = ("overall", "per_subject", "per_subject_summary", "classes", "folds")


def subject_quality(
    quality: pd.DataFrame, outliers: pd.DataFrame, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return each subject's signal-quality flags, for the report's ``quality`` section.

    Parameters
    ----------
    quality : pandas.DataFrame
        From :func:`pipeline.quality.signal_quality` (one row per recording and channel).
    outliers : pandas.DataFrame
        From :func:`pipeline.quality.quality_outliers` of ``quality``.
    params : mapping, optional
        The parameters the metrics were computed with (recorded as given).

    Returns
    -------
    dict
        ``{"params", "z", "subjects": {subject: {"flags": [...], "worst": {metric: value}}}}``;
        a flag reads ``"<recording> <channel>: <metric> <value> (cohort median <m>, z <z>)"``;
        ``worst`` is the subject's largest ``flat_fraction``, ``clip_fraction`` and
        ``line_noise_ratio`` over its channels.
    """
    subjects: dict[str, Any] = {}
    for s, g in quality.groupby(quality["subject"].astype(str), sort=True):
        worst = {
            m: (None if g[m].isna().all() else float(g[m].max()))
            for m in ("flat_fraction", "clip_fraction", "line_noise_ratio")
            if m in g
        }
        subjects[s] = {"flags": [], "worst": worst}
    for r in outliers.itertuples(index=False):
        flag = (
            f"{r.recording} {r.channel}: {r.metric} {r.value:.3g} "
            f"(cohort median {r.cohort_median:.3g}, z {r.z:+.1f})"
        )
        subjects.setdefault(str(r.subject), {"flags": [], "worst": {}})["flags"].append(flag)
    return {"params": dict(params or {}), "subjects": subjects}


def cohort_quality(
    cohort: Any,
    preprocessing: Sequence[Mapping[str, Any]] = (),
    channels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compute the cohort's signal quality now and return :func:`subject_quality` of it.

    The mains frequency is the task's notch frequency when it has one (else 50 Hz); only
    the task's ``channels`` are flagged when it names them.

    Parameters
    ----------
    cohort : pipeline.store.Cohort
    preprocessing : sequence of mapping
        The task's steps (a ``{"op": "notch", "freq": f}`` step sets the line frequency).
    channels : sequence of str, optional
    """
    from pipeline.quality import quality_outliers, signal_quality

    notch = [p for p in preprocessing if p.get("op") == "notch"]
    params = {"line_frequency": float(notch[0]["freq"]) if notch else 50.0, "z": 3.5}
    quality = signal_quality(cohort, line_frequency=params["line_frequency"])
    if channels:
        quality = quality[quality["channel"].isin(list(channels))].reset_index(drop=True)
    return subject_quality(quality, quality_outliers(quality, z=params["z"]), params)


def attach_quality(report: dict[str, Any], quality: Mapping[str, Any]) -> dict[str, Any]:
    """Put each subject's quality flags next to its score (``per_subject[s]["quality"]``).

    Returns
    -------
    dict
        ``report``, with ``quality`` set and every ``per_subject`` entry given its flags.
    """
    report["quality"] = dict(quality)
    for s, d in report.get("per_subject", {}).items():
        d["quality_flags"] = list(quality["subjects"].get(s, {}).get("flags", []))
    return report


def provenance(
    task: Mapping[str, Any],
    *,
    preprocessing: Sequence[Mapping[str, Any]],
    windows: Mapping[str, Any],
    features: Sequence[Mapping[str, Any]],
    store_fingerprint: str,
    cohort_index: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Return the full provenance of a validation: data, every step, versions, date, store.

    Parameters
    ----------
    task : mapping
        The task spec (``TaskSpec.model_dump()``).
    preprocessing, windows, features
        The steps, window plan and feature specs as the feature stage ran them.
    store_fingerprint : str
        :attr:`pipeline.store.Cohort.fingerprint` of the store the features came from.
    cohort_index : pandas.DataFrame, optional
        The cohort index: its recordings and subjects are counted.
    """
    out: dict[str, Any] = {
        "task": task.get("name"),
        "data": task.get("data"),
        "channels": task.get("channels"),
        "channel_types": task.get("channel_types"),
        "preprocessing": [dict(p) for p in preprocessing],
        "windows": dict(windows),
        "features": [dict(f) for f in features],
        "model": task.get("model"),
        "validation": task.get("validation"),
        "seed": task.get("seed"),
        "versions": package_versions(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "store_fingerprint": store_fingerprint,
    }
    if cohort_index is not None:
        out["n_recordings"] = len(cohort_index)
        out["n_subjects"] = int(cohort_index["subject"].nunique())
    return out


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
    base = report.get("baseline") or {}
    ci = report.get("ci95") or {}
    perm = report.get("permutation") or {}

    def ci_cell(k: str) -> str:
        c = ci.get(k) or {}
        return "–" if c.get("low") is None else f"{c['low']:.3f} – {c['high']:.3f}"

    def p_cell(k: str) -> str:
        d = perm.get(k)
        return _fmt(d["p_value"]) if isinstance(d, dict) else "–"

    rows_overall = "".join(
        f"<tr><td>{k.replace('_', ' ')}</td><td><b>{_fmt(ov[k])}</b></td><td>{ci_cell(k)}</td>"
        f"<td>{_fmt((base.get('majority') or {}).get(k))}</td>"
        f"<td>{_fmt((base.get('chance') or {}).get(k))}</td><td>{p_cell(k)}</td>"
        f"<td>{_fmt(summ[k]['min'])}</td><td>{_fmt(summ[k]['median'])}</td>"
        f"<td>{_fmt(summ[k]['max'])}</td><td>{_fmt(summ[k].get('worst_subject'))}</td></tr>"
        for k in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
    )
    rows_class = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{_fmt(d['sensitivity'])}</td>"
        f"<td>{_fmt(d['specificity'])}</td><td>{d['support']}</td></tr>"
        for c, d in ov["per_class"].items()
    )
    inverted = report.get("inverted") or {}
    inv_attr = ' class="inv"'
    rows_subj = "".join(
        f"<tr{inv_attr if s in inverted else ''}><td>{html.escape(s)}</td>"
        f"<td>{d['n_windows']}</td><td>{_fmt(d['accuracy'])}</td>"
        f"<td>{_fmt(d['balanced_accuracy'])}</td><td>{_fmt(d['f1_macro'])}</td>"
        f"<td>{_fmt(d['roc_auc'])}</td><td>{'INVERTED' if s in inverted else ''}</td>"
        f"<td>{'<br>'.join(html.escape(f) for f in d.get('quality_flags', [])) or '–'}</td></tr>"
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
    if (report.get("calibration") or {}).get("reliability"):
        imgs.append(("Reliability", _png(plots.reliability_diagram(report))))
    curve = report.get("calibration_curve") or {}
    curve_html = ""
    if curve.get("points"):
        imgs.append(("Calibration curve", _png(plots.calibration_curve(report))))
        curve_html = "<h2>Calibration curve (labeled calibration of the held-out subject)</h2>"
        curve_html += (
            "<table><tr><th>k</th><th>calibration windows</th><th>test windows</th>"
            "<th>balanced acc.</th><th>ROC AUC</th><th>worst subject</th></tr>"
            + "".join(
                f"<tr><td>{p['k']:g}</td><td>{p['n_calibration_windows']}</td>"
                f"<td>{p['n_test_windows']}</td>"
                f"<td>{_fmt(p['overall']['balanced_accuracy'])}</td>"
                f"<td>{_fmt(p['overall']['roc_auc'])}</td>"
                f"<td>{_fmt(p['worst_subject'].get('min'))} "
                f"({html.escape(str(p['worst_subject'].get('worst_subject')))})</td></tr>"
                for p in curve["points"]
            )
            + f"</table><p>Headline figures above: k = {curve['headline_k']:g} "
            f"{html.escape(curve['unit'])} per class.</p>"
        )
    if report.get("unlabeled_calibration"):
        curve_html += f'<p class="warn">{html.escape(report["unlabeled_calibration"])}</p>'
    cal = report.get("calibration")
    cal_html = (
        f"<p>Brier score <b>{cal['brier']:.4f}</b> ({html.escape(cal['brier_definition'])}); "
        f"expected calibration error <b>{cal['ece']:.4f}</b> over {cal['n_bins']} "
        "confidence bins (0 is perfectly calibrated; the reliability plot shows where "
        "the probabilities are over- or under-confident).</p>"
        if cal
        else "<p>No probabilities: calibration not assessed.</p>"
    )
    inv_html = (
        '<div class="warn"><b>Inverted subjects</b> (scored below chance: the model ranks '
        "their windows the wrong way round; pooled figures hide this):<ul>"
        + "".join(
            f"<li>{html.escape(s)}: {html.escape('; '.join(d['reasons']))}</li>"
            for s, d in sorted(inverted.items())
        )
        + "</ul></div>"
        if inverted
        else ""
    )
    perm_html = ""
    if perm.get("skipped"):
        perm_html = f"<p>Permutation test not run: {html.escape(perm['skipped'])}.</p>"
    elif perm:
        perm_html = (
            f"<p>Permutation test: {perm['n_permutations']} relabellings, labels permuted "
            f"within {html.escape(perm['permuted_within'])} (unit: "
            f"{html.escape(perm['unit'])}), every fold refitted each time. p-values: "
            + ", ".join(
                f"{k.replace('_', ' ')} {perm[k]['p_value']:.4f} (null mean "
                f"{perm[k]['null_mean']:.3f})"
                for k in ("balanced_accuracy", "roc_auc")
                if isinstance(perm.get(k), dict)
            )
            + f"; the smallest possible is {1 / (1 + perm['n_permutations']):.4f}.</p>"
        )
    ci_html = (
        f"<p>95 % intervals: percentile bootstrap over the {ci.get('n_subjects')} "
        f"subjects ({ci.get('n_boot')} replicates, seed {ci.get('seed')}). Majority: "
        f"always predicting {html.escape(str(base.get('majority_class')))}; chance: a "
        "random guess with the class frequencies.</p>"
        if ci
        else ""
    )
    leak = report.get("leakage") or {}
    leak_html = "".join(
        f"<li>{html.escape(leak[k])}</li>"
        for k in ("held_out", "preparation", "fitted")
        if k in leak
    )
    prov = report.get("provenance") or {
        "model": report.get("model"),
        "validation": report.get("validation"),
        "seed": report.get("seed"),
    }
    prov_rows = "".join(
        f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td><pre>"
        f"{html.escape(v if isinstance(v, str) else json.dumps(v, indent=1, default=str))}"
        "</pre></td></tr>"
        for k, v in prov.items()
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
figure{{display:inline-block;margin:0.5em;vertical-align:top}}pre{{background:#f7f7f7;padding:0.6em;margin:0;text-align:left}}
tr.inv td{{background:#fde2e2}}.warn{{border:2px solid #c33;padding:0.4em 1em;background:#fff4f4}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Scheme <b>{html.escape(str(report.get("validation", {}).get("scheme")))}</b>,
{len(report["folds"])} folds, {len(report["per_subject"])} subjects,
{ov["n_windows"]} scored windows.
Cross-validation took {_fmt(timing.get("cross_validation_s"))} s.</p>
{inv_html}
<h2>Summary (pooled out-of-fold; per subject min / median / max)</h2>
<table><tr><th>metric</th><th>pooled</th><th>95 % CI (subjects)</th><th>majority class</th>
<th>chance</th><th>permutation p</th><th>min</th><th>median</th><th>max</th>
<th>worst subject</th></tr>
{rows_overall}</table>
{ci_html}
{perm_html}
{thr_html}
<h2>What this validation guarantees</h2><ul>{leak_html}</ul>
{curve_html}
{figs}
<h2>Calibration</h2>{cal_html}
<h2>Per class (pooled)</h2>
<table><tr><th>class</th><th>sensitivity</th><th>specificity</th><th>support</th></tr>{rows_class}</table>
<h2>Per subject</h2>
<table><tr><th>subject</th><th>windows</th><th>accuracy</th><th>balanced acc.</th><th>macro F1</th>
<th>ROC AUC</th><th>inverted</th><th>signal-quality flags</th></tr>{rows_subj}</table>
<h2>Provenance</h2><table>{prov_rows}</table>
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
