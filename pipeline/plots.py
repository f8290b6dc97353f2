"""Matplotlib figures for exploring cohorts, features and models.

Every function takes the tables the package computes (signal quality, label balance,
class spectra, snippets, feature tables, projections, validation reports, predictions) and
returns a :class:`matplotlib.figure.Figure`. Figures are built without pyplot, so no global
state is touched and nothing needs closing; Jupyter displays a returned figure, and
``fig.savefig(path)`` writes one to disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline.exceptions import SpecError

__all__ = [
    "calibration_curve",
    "class_snippets",
    "class_spectra",
    "confusion_matrix",
    "feature_distributions",
    "label_balance",
    "prediction_timeline",
    "projection",
    "quality_heatmap",
    "reliability_diagram",
    "roc_curves",
    "subject_metrics",
]

_LOG_METRICS = ("rms", "line_noise_ratio")


def _colors(names: Sequence[Any]) -> dict[Any, Any]:
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _need(df: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        msg = f"{where}: expected columns {list(columns)!r}, missing {missing!r}"
        raise SpecError(msg)


def quality_heatmap(
    quality: pd.DataFrame,
    metric: str = "rms",
    *,
    by: str = "subject",
    zscores: bool = False,
    outliers: pd.DataFrame | None = None,
) -> Figure:
    """Return a subjects (or recordings) x channels heat map of one quality metric.

    Parameters
    ----------
    quality : pandas.DataFrame
        From :func:`pipeline.quality.signal_quality` (values) or
        :func:`pipeline.quality.quality_zscores` (robust z-scores).
    metric : str, default "rms"
        Column to show; ``rms`` and ``line_noise_ratio`` values are shown as log10.
    by : {"subject", "recording"}
        Rows: subjects (median over their recordings) or recordings.
    zscores : bool, default False
        ``quality`` holds robust z-scores: draw them on a diverging scale centred on 0.
    outliers : pandas.DataFrame, optional
        From :func:`pipeline.quality.quality_outliers`; cells of this metric listed there
        are framed in red.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _need(quality, [by, "channel", metric], "quality_heatmap")
    channels = list(dict.fromkeys(quality["channel"]))
    grid = quality.pivot_table(index=by, columns="channel", values=metric, aggfunc="median")
    grid = grid.reindex(columns=channels)
    values = grid.to_numpy(dtype=float)
    label = f"robust z of {metric}" if zscores else metric
    if metric in _LOG_METRICS and not zscores:
        values = np.log10(np.clip(values, 1e-30, None))
        label = f"log10 {metric}"
    n_rows, n_cols = values.shape
    fig = Figure(
        figsize=(max(5.0, 0.5 * n_cols + 3), max(3.0, 0.3 * n_rows + 1.5)), layout="constrained"
    )
    ax = fig.subplots()
    finite = values[np.isfinite(values)]
    if zscores:
        top = max(3.5, float(np.abs(finite).max()) if finite.size else 3.5)
        cmap, vmin, vmax = "RdBu_r", -top, top
    else:
        lo, hi = np.percentile(finite, [0, 100]) if finite.size else (0.0, 1.0)
        cmap, vmin, vmax = "viridis", float(lo), float(hi if hi > lo else lo + 1.0)
    im = ax.imshow(values, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(n_cols), channels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n_rows), [str(i) for i in grid.index], fontsize=8)
    ax.set_xlabel("channel")
    ax.set_ylabel(by)
    ax.set_title(f"{label} per {by} and channel")
    fig.colorbar(im, ax=ax, label=label)
    if outliers is not None and len(outliers):
        sel = outliers[outliers["metric"] == metric]
        rows = {str(r): i for i, r in enumerate(grid.index)}
        for _, o in sel.iterrows():
            r, c = rows.get(str(o[by])), channels.index(o["channel"])
            if r is not None:
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=2))
    return fig


def label_balance(balance: pd.DataFrame, *, exclude: Sequence[str] = ()) -> Figure:
    """Return stacked bars of each subject's recorded seconds per class.

    Parameters
    ----------
    balance : pandas.DataFrame
        From :func:`pipeline.explore.label_balance`.
    exclude : sequence of str
        Classes not drawn (their seconds still count in the total printed per bar).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _need(balance, ["subject", "label", "seconds"], "label_balance")
    b = balance.assign(label=balance["label"].astype(str))
    table = b.pivot_table(index="subject", columns="label", values="seconds", aggfunc="sum")
    table = table.fillna(0.0)
    totals = table.sum(axis=1)
    table = table[[c for c in table.columns if c not in set(exclude)]]
    colors = _colors(list(table.columns))
    fig = Figure(figsize=(max(5.0, 0.35 * len(table) + 3), 3.8), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros(len(table))
    x = np.arange(len(table))
    for label in table.columns:
        ax.bar(x, table[label], bottom=bottom, color=colors[label], label=label)
        bottom += table[label].to_numpy()
    for xi, top, tot in zip(x, bottom, totals, strict=True):
        ax.text(xi, top, f"{tot:.0f}s", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [str(s) for s in table.index], rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("subject")
    ax.set_ylabel("seconds")
    ax.set_title("Recorded time per class and subject (total above each bar)")
    ax.legend(fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def class_spectra(
    spectra: pd.DataFrame,
    *,
    channels: Sequence[str] | None = None,
    max_channels: int = 8,
    fmax: float | None = None,
) -> Figure:
    """Return per-channel power spectra, one line per class (log power).

    Parameters
    ----------
    spectra : pandas.DataFrame
        From :func:`pipeline.spectra.class_spectra`.
    channels : sequence of str, optional
        Channels to draw (default: the first ``max_channels``).
    max_channels : int, default 8
    fmax : float, optional
        Upper frequency limit of the axes (Hz).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _need(spectra, ["label", "channel", "frequency", "power"], "class_spectra")
    chans = list(channels) if channels is not None else list(dict.fromkeys(spectra["channel"]))
    chans = chans[:max_channels]
    labels = list(dict.fromkeys(spectra["label"]))
    colors = _colors(labels)
    ncols = min(4, len(chans))
    nrows = -(-len(chans) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.5 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, squeeze=False)).ravel()
    for ax, ch in zip(axes, chans, strict=False):
        sub = spectra[spectra["channel"] == ch]
        for label in labels:
            s = sub[(sub["label"] == label) & (sub["frequency"] > 0)]
            if fmax is not None:
                s = s[s["frequency"] <= fmax]
            ax.semilogy(s["frequency"], s["power"], color=colors[label], lw=1, label=label)
        ax.set_title(ch, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(chans) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.supxlabel("frequency (Hz)")
    fig.supylabel("power density")
    fig.suptitle("Mean power spectrum per class")
    return fig


def class_snippets(snippets: Mapping[str, xr.DataArray], *, max_channels: int = 8) -> Figure:
    """Return raw signal snippets side by side, one panel per class, channels stacked.

    All panels share one vertical scale, so amplitude differences between classes show.

    Parameters
    ----------
    snippets : mapping of str to xarray.DataArray
        From :func:`pipeline.explore.class_snippets`: dims ("time", "channel").
    max_channels : int, default 8

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not snippets:
        msg = "class_snippets: expected at least one snippet, found none"
        raise SpecError(msg)
    names = list(snippets)
    first = next(iter(snippets.values()))
    chans = [str(c) for c in first["channel"].values][:max_channels]
    spread = max(
        float(np.nanmax(np.abs(s.sel(channel=chans).values))) if s.size else 0.0
        for s in snippets.values()
    )
    offset = 2 * spread if spread > 0 else 1.0
    fig = Figure(figsize=(2.6 * len(names) + 1, 0.45 * len(chans) + 1.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=True):
        s = snippets[name].sel(channel=chans)
        t = s["time"].values
        for i, ch in enumerate(chans):
            ax.plot(t - t[0], s.sel(channel=ch).values - i * offset, lw=0.5, color="k")
        ax.set_title(f"{name}\n{s.attrs.get('recording', '')}", fontsize=8)
        ax.set_xlabel("s", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks([-i * offset for i in range(len(chans))], chans, fontsize=7)
    fig.suptitle("Raw signal per class (same scale in every panel)")
    return fig


def feature_distributions(
    table: pd.DataFrame,
    column: str,
    *,
    log: bool = False,
    exclude: Sequence[str] = (),
    bins: int = 40,
) -> Figure:
    """Return one feature's distribution by class (pooled) and by subject and class.

    The left panel pools every subject; the right one shows, per subject, each class's
    median and interquartile range. When the per-subject levels move more than the classes
    differ, a model trained on some subjects misplaces the boundaries for a new one: the
    subject-to-subject shift that makes cross-subject validation hard.

    Parameters
    ----------
    table : pandas.DataFrame
        Feature table with ``subject`` and ``label``.
    column : str
        A ``<channel>__<feature>`` column.
    log : bool
        Show ``log10`` of the (positive) feature.
    exclude : sequence of str
        Classes to leave out.
    bins : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    _need(table, ["subject", "label", column], "feature_distributions")
    t = table[table["label"].notna() & ~table["label"].isin(list(exclude))]
    v = t[column].astype(float)
    if log:
        v = np.log10(v.clip(lower=1e-30))
    labels = sorted(t["label"].astype(str).unique())
    subjects = sorted(t["subject"].astype(str).unique())
    colors = _colors(labels)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 2])
    finite = v[np.isfinite(v)]
    edges = np.linspace(finite.min(), finite.max(), bins + 1) if len(finite) else bins
    lab = t["label"].astype(str)
    subj = t["subject"].astype(str)
    for label in labels:
        ax1.hist(v[lab == label], bins=edges, histtype="step", color=colors[label], label=label)
    ax1.set_xlabel(("log10 " if log else "") + column)
    ax1.set_ylabel("windows")
    ax1.set_title("All subjects pooled", fontsize=10)
    ax1.legend(fontsize=7)
    width = 0.8 / max(len(labels), 1)
    for j, label in enumerate(labels):
        for i, s in enumerate(subjects):
            vals = v[(lab == label) & (subj == s)]
            if len(vals) == 0:
                continue
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            x = i - 0.4 + (j + 0.5) * width
            ax2.errorbar(x, med, yerr=[[med - q1], [q3 - med]], fmt="o", ms=3, color=colors[label])
    ax2.set_xticks(range(len(subjects)), subjects, rotation=60, ha="right", fontsize=8)
    ax2.set_xlabel("subject")
    ax2.set_ylabel(("log10 " if log else "") + column)
    ax2.set_title("Per subject: median and quartiles of each class", fontsize=10)
    return fig


def projection(proj: pd.DataFrame, *, point_size: float = 4.0) -> Figure:
    """Return a 2-D projection of windows coloured by class (left) and by subject (right).

    Parameters
    ----------
    proj : pandas.DataFrame
        From :func:`pipeline.explore.project_features` (columns ``pc1``, ``pc2``, ``label``,
        ``subject``).
    point_size : float

    Returns
    -------
    matplotlib.figure.Figure
    """
    _need(proj, ["pc1", "pc2", "label", "subject"], "projection")
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    ev = proj.attrs.get("explained_variance")
    for ax, key in zip(axes, ("label", "subject"), strict=True):
        groups = sorted(proj[key].astype(str).unique())
        colors = _colors(groups)
        for g in groups:
            sel = proj[key].astype(str) == g
            ax.scatter(
                proj.loc[sel, "pc1"],
                proj.loc[sel, "pc2"],
                s=point_size,
                color=colors[g],
                alpha=0.6,
                label=g,
                rasterized=True,
            )
        ax.set_title(f"coloured by {key}", fontsize=10)
        ax.legend(fontsize=7, markerscale=3, ncols=1 + len(groups) // 12)
        ax.set_xlabel("PC1" + (f" ({ev[0]:.0%})" if ev else ""))
    axes[0].set_ylabel("PC2" + (f" ({ev[1]:.0%})" if ev and len(ev) > 1 else ""))
    return fig


def subject_metrics(report: Mapping[str, Any], metric: str = "balanced_accuracy") -> Figure:
    """Return a bar chart of a validation metric per test subject, with the median.

    Parameters
    ----------
    report : mapping
        A validation report (``report.json`` of a run, or from
        :func:`pipeline.learn.fit_and_validate`) with ``per_subject``.
    metric : str, default "balanced_accuracy"

    Returns
    -------
    matplotlib.figure.Figure
    """
    per = report.get("per_subject") or {}
    if not per or metric not in next(iter(per.values())):
        msg = f"subject_metrics: report has no per-subject metric {metric!r}"
        raise SpecError(msg)
    subjects = sorted(per)
    vals = np.array([np.nan if per[s][metric] is None else per[s][metric] for s in subjects])
    med = float(np.nanmedian(vals))
    fig = Figure(figsize=(max(5.0, 0.35 * len(subjects) + 2.5), 3.6), layout="constrained")
    ax = fig.subplots()
    colors = ["#d62728" if v < med - 0.1 else "#1f77b4" for v in vals]
    ax.bar(range(len(subjects)), vals, color=colors)
    ax.axhline(med, color="k", ls="--", lw=1, label=f"median {med:.3f}")
    chance = 1.0 / max(len(report.get("classes") or [1]), 1)
    if metric in ("balanced_accuracy", "accuracy"):
        ax.axhline(chance, color="grey", ls=":", lw=1, label=f"chance {chance:.2f}")
    ax.set_xticks(range(len(subjects)), subjects, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("test subject")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{metric.replace('_', ' ')} per test subject (red: > 0.1 below median)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def confusion_matrix(report: Mapping[str, Any], *, normalize: bool = True) -> Figure:
    """Return the pooled out-of-fold confusion matrix of a validation report.

    Parameters
    ----------
    report : mapping
        With ``classes`` and ``overall["confusion_matrix"]`` (rows true, columns predicted).
    normalize : bool, default True
        Colour by row fraction (recall); counts are printed in every cell.

    Returns
    -------
    matplotlib.figure.Figure
    """
    try:
        cm = np.asarray(report["overall"]["confusion_matrix"], dtype=float)
        classes = [str(c) for c in report["classes"]]
    except (KeyError, TypeError) as exc:
        msg = f"confusion_matrix: report lacks 'classes' or overall.confusion_matrix ({exc})"
        raise SpecError(msg) from exc
    with np.errstate(invalid="ignore", divide="ignore"):
        shown = np.nan_to_num(cm / cm.sum(1, keepdims=True)) if normalize else cm
    n = len(classes)
    fig = Figure(figsize=(0.9 * n + 3, 0.8 * n + 2), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    top = shown.max() if shown.size else 1.0
    for i in range(n):
        for j in range(n):
            text = f"{shown[i, j]:.2f}\n{int(cm[i, j])}" if normalize else f"{int(cm[i, j])}"
            color = "white" if shown[i, j] > 0.6 * top else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(n), classes, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix" + (" (row fraction, count)" if normalize else ""))
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def roc_curves(report: Mapping[str, Any]) -> Figure:
    """Return the one-vs-rest ROC curves of a validation report's out-of-fold predictions.

    Parameters
    ----------
    report : mapping
        With ``roc``: ``{class: {"fpr": [...], "tpr": [...], "auc": float}}``, and
        optionally ``threshold`` (``specificity``, ``sensitivity``), drawn as a point.

    Returns
    -------
    matplotlib.figure.Figure
    """
    curves = report.get("roc") or {}
    if not curves:
        msg = "roc_curves: report has no 'roc' curves (fpr, tpr, auc per class)"
        raise SpecError(msg)
    fig = Figure(figsize=(4.8, 4.4), layout="constrained")
    ax = fig.subplots()
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


def reliability_diagram(report: Mapping[str, Any]) -> Figure:
    """Return the reliability diagram of a validation report's out-of-fold probabilities.

    Parameters
    ----------
    report : mapping
        With ``calibration`` from :func:`pipeline.learn.metrics.calibration_metrics`:
        ``reliability`` bins (``low, high, n, confidence, accuracy``), ``ece``, ``brier``.

    Returns
    -------
    matplotlib.figure.Figure
        Accuracy against mean top-label confidence per bin (bars span the bin, their width
        is the bin's; the diagonal is perfect calibration), and a histogram of the windows
        per bin below.
    """
    cal = report.get("calibration") or {}
    bins = cal.get("reliability") or []
    if not bins:
        msg = "reliability_diagram: report has no 'calibration.reliability' bins"
        raise SpecError(msg)
    fig = Figure(figsize=(4.8, 5.2), layout="constrained")
    ax, hx = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    lows = np.array([b["low"] for b in bins])
    widths = np.array([b["high"] - b["low"] for b in bins])
    acc = np.array([b["accuracy"] for b in bins])
    conf = np.array([b["confidence"] for b in bins])
    ax.bar(
        lows, acc, width=widths, align="edge", color="#4c72b0", edgecolor="white", label="accuracy"
    )
    ax.plot(conf, acc, "ko", ms=3, label="mean confidence")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in bin")
    ax.set_title(f"Reliability (ECE {cal['ece']:.3f}, Brier {cal['brier']:.3f})")
    ax.legend(fontsize=7, loc="upper left")
    hx.bar(lows, [b["n"] for b in bins], width=widths, align="edge", color="#999999")
    hx.set_xlim(0, 1)
    hx.set_xlabel("top-label confidence")
    hx.set_ylabel("windows")
    return fig


def prediction_timeline(
    predictions: pd.DataFrame, recording: str | None = None, *, classes: Sequence[str] | None = None
) -> Figure:
    """Return one recording's per-window predictions drawn over its true labels.

    Parameters
    ----------
    predictions : pandas.DataFrame
        From :func:`pipeline.predict.predict_recordings` or
        :func:`pipeline.learn.predict_table`: ``recording, start, label, prediction`` and
        ``proba__<class>`` columns.
    recording : str, optional
        Which recording (default: the first one).
    classes : sequence of str, optional
        Order of the classes on the vertical axis (default: the ``proba__`` columns' order).

    Returns
    -------
    matplotlib.figure.Figure
        Top: true label (grey line) and prediction (dots: green where it agrees, red where
        it does not, grey where the true label is not a class of the model, e.g.
        ``unmarked``, or unknown); bottom: probability of each class. The accuracy in the
        title counts the scored (green and red) windows only.
    """
    _need(predictions, ["recording", "start", "label", "prediction"], "prediction_timeline")
    rid = recording if recording is not None else str(predictions["recording"].iloc[0])
    p = predictions[predictions["recording"] == rid].sort_values("start")
    if p.empty:
        msg = f"prediction_timeline: no predictions for recording {rid!r}"
        raise SpecError(msg)
    proba_cols = [c for c in p.columns if c.startswith("proba__")]
    model_classes = [c[len("proba__") :] for c in proba_cols]
    if not model_classes:
        model_classes = sorted(p["prediction"].astype(str).unique())
    order = list(classes) if classes is not None else list(model_classes)
    for extra in pd.concat([p["label"].dropna(), p["prediction"]]).astype(str).unique():
        if extra not in order:
            order.append(extra)
    pos = {c: i for i, c in enumerate(order)}
    t = p["start"].to_numpy(dtype=float)
    true = np.array([pos.get(str(v), np.nan) if pd.notna(v) else np.nan for v in p["label"]])
    pred = np.array([pos[str(v)] for v in p["prediction"]])
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax, axp = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    ax.step(t, true, where="post", color="grey", lw=3, alpha=0.6, label="true label")
    known = {pos[c] for c in model_classes}
    scored = np.array([v in known for v in true])  # true label is a class the model knows
    ok = scored & (pred == true)
    bad = scored & ~ok
    other = ~scored
    ax.scatter(t[ok], pred[ok], s=6, color="#2ca02c", label="prediction (correct)")
    ax.scatter(t[bad], pred[bad], s=6, color="#d62728", label="prediction (wrong)")
    ax.scatter(t[other], pred[other], s=4, color="#999999", label="prediction (not scored)")
    ax.set_yticks(range(len(order)), order, fontsize=8)
    acc = float(ok[scored].mean()) if scored.any() else float("nan")
    ax.set_title(f"{rid}: predictions over true labels (accuracy {acc:.2f} on scored windows)")
    ax.legend(fontsize=7, loc="upper right")
    colors = _colors(order)
    for c in proba_cols:
        name = c[len("proba__") :]
        axp.plot(t, p[c], lw=0.8, color=colors[name], label=name)
    axp.set_ylim(0, 1)
    axp.set_ylabel("probability")
    axp.set_xlabel("time (s)")
    if proba_cols:
        axp.legend(fontsize=6, ncols=min(len(proba_cols), 7), loc="upper right")
    return fig


def calibration_curve(report: Mapping[str, Any], metric: str = "balanced_accuracy") -> Figure:
    """Return the ``loso_calibrated`` curve: ``metric`` against k, pooled and per subject.

    Parameters
    ----------
    report : mapping
        With ``calibration_curve`` from :func:`pipeline.learn.fit.calibration_curve`:
        ``points`` (``k``, ``overall``, ``per_subject``), ``unit``, ``headline_k``.
    metric : str
        A key of every point's ``overall``.

    Returns
    -------
    matplotlib.figure.Figure
        One grey line per subject, the pooled figure in bold, the headline k marked.
    """
    curve = report.get("calibration_curve") or {}
    points = curve.get("points") or []
    if not points:
        msg = "calibration_curve: report has no 'calibration_curve.points'"
        raise SpecError(msg)
    ks = [p["k"] for p in points]
    fig = Figure(figsize=(4.8, 3.6), layout="constrained")
    ax = fig.subplots()
    for s in sorted(points[0]["per_subject"]):
        ys = [p["per_subject"].get(s, {}).get(metric) for p in points]
        ax.plot(ks, [np.nan if y is None else y for y in ys], color="#bbbbbb", lw=0.8)
    ax.plot(ks, [p["overall"][metric] for p in points], "o-", color="#c44e52", lw=2, label="pooled")
    ax.axvline(curve.get("headline_k", ks[0]), color="grey", ls=":", lw=0.8)
    ax.set_xticks(ks)
    ax.set_xlabel(f"calibration k ({curve.get('unit', 'repetitions')} per class)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title("Calibration curve (grey: each held-out subject)")
    ax.legend(fontsize=7, loc="lower right")
    return fig
