"""Signal quality per recording and channel, and the channels that stand out in a cohort.

:func:`signal_quality` computes four metrics per (recording, channel) in one pass over the
store's chunks with dask (one small summary per chunk, merged in a tree, plus a chunk-exact
Welch spectrum), so a cohort larger than memory is scanned with a few chunks per worker:

``rms``
    Root mean square of the raw signal, ``sqrt(mean(x**2))`` (signal units; offsets count).
``flat_fraction``
    Fraction of samples that lie in a *flat run*: a maximal run of consecutive, exactly
    equal samples at least ``flat_samples`` long, with ``flat_samples =
    max(2, ceil(flat_seconds * sampling_rate))``. A disconnected or saturated electrode gives
    long runs; the short repeats of a quantised or up-sampled stream do not count. Runs
    that cross chunk boundaries are measured whole.
``clip_fraction``
    Fraction of samples within ``clip_tolerance`` (signal units, inclusive) of the channel's
    minimum or maximum over the recording; with ``adc_range=(low, high)``, of those limits
    instead. With the default tolerance 0 it counts samples *equal* to the extreme values:
    a clipped stretch sits on one identical value, a healthy signal touches its extremes
    about twice.
``line_noise_ratio``
    Power within ``line_bandwidth`` Hz of ``line_frequency`` (inclusive) divided by the power
    in ``reference_band`` (its upper edge capped at the Nyquist frequency), both summed over
    the bins of a Welch spectrum with ``welch_seconds`` segments and 50 % overlap (see
    :mod:`pipeline.spectra`); NaN when the line frequency is above Nyquist.

:func:`quality_outliers` then compares each channel with the same channel in the other
recordings of the cohort through robust z-scores (median and MAD), so a dead channel, a
loose or misplaced electrode or a noisy cable stands out without any absolute threshold.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.exceptions import SpecError
from pipeline.spectra import welch_psd

if TYPE_CHECKING:
    from pipeline.store import Cohort

__all__ = [
    "METRICS",
    "QualitySummary",
    "merge_summaries",
    "quality_outliers",
    "quality_zscores",
    "recording_quality",
    "signal_quality",
    "summarize_block",
]

log = logging.getLogger(__name__)

METRICS = ("rms", "flat_fraction", "clip_fraction", "line_noise_ratio")
QUALITY_COLUMNS = ("subject", "recording", "channel", *METRICS)

# How each metric is compared across recordings: transform, MAD floor (in transformed units,
# so that near-constant metrics do not turn rounding into huge z-scores) and which side is bad.
_ZSPEC: dict[str, tuple[str, float, str]] = {
    "rms": ("log10", 0.05, "both"),
    "flat_fraction": ("identity", 0.01, "high"),
    "clip_fraction": ("identity", 0.01, "high"),
    "line_noise_ratio": ("log10", 0.1, "high"),
}
_LOG_FLOOR = 1e-30
_SPLIT_EVERY = 8


# ------------------------------------------------------------------- per-chunk summaries


@dataclass
class QualitySummary:
    """Mergeable statistics of a contiguous stretch of samples, per channel.

    Attributes
    ----------
    n : int
        Number of samples.
    total, sumsq : numpy.ndarray of shape (n_channels,)
        Sum and sum of squares (float64).
    low, high : numpy.ndarray of shape (n_channels,)
        Minimum and maximum.
    extremes : list of (numpy.ndarray, numpy.ndarray)
        Per channel, the distinct values within the clipping tolerance of ``low`` or
        ``high`` and their counts; exactly what the clip count of any longer stretch
        holding this one needs.
    first, last : numpy.ndarray of shape (n_channels,)
        First and last sample.
    lead, trail : numpy.ndarray of shape (n_channels,) int64
        Length of the run of equal samples at the start and at the end (``n`` if the whole
        stretch is one run).
    inner : numpy.ndarray of shape (n_channels,) int64
        Samples in flat runs (length >= ``flat_samples``) that touch neither end.
    """

    n: int
    total: np.ndarray
    sumsq: np.ndarray
    low: np.ndarray
    high: np.ndarray
    extremes: list[tuple[np.ndarray, np.ndarray]]
    first: np.ndarray
    last: np.ndarray
    lead: np.ndarray
    trail: np.ndarray
    inner: np.ndarray


def _runs(column: np.ndarray) -> np.ndarray:
    """Return the lengths of the maximal runs of equal values, in order."""
    breaks = np.flatnonzero(column[1:] != column[:-1]) + 1
    return np.diff(np.concatenate(([0], breaks, [len(column)])))


def _extremes(
    column: np.ndarray, low: float, high: float, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    sel = column[(column <= low + tol) | (column >= high - tol)]
    return np.unique(sel, return_counts=True)


def summarize_block(
    block: np.ndarray,
    flat_samples: int,
    clip_tolerance: float = 0.0,
    adc_range: tuple[float, float] | None = None,
) -> QualitySummary | None:
    """Return the :class:`QualitySummary` of one block of samples (None if empty).

    Parameters
    ----------
    block : numpy.ndarray of shape (n_samples, n_channels)
    flat_samples : int
        Minimum length of a flat run.
    clip_tolerance : float
        Clipping tolerance in signal units.
    adc_range : (float, float), optional
        Fixed clipping limits; the extremes list then stays empty (counted directly).

    Returns
    -------
    QualitySummary or None
    """
    m, n_channels = block.shape
    if m == 0:
        return None
    x = np.asarray(block)
    x64 = x.astype(np.float64)
    lead = np.empty(n_channels, dtype=np.int64)
    trail = np.empty(n_channels, dtype=np.int64)
    inner = np.zeros(n_channels, dtype=np.int64)
    extremes = []
    low, high = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    for c in range(n_channels):
        runs = _runs(x[:, c])
        lead[c], trail[c] = runs[0], runs[-1]
        middle = runs[1:-1]
        inner[c] = int(middle[middle >= flat_samples].sum())
        if adc_range is None:
            extremes.append(_extremes(x64[:, c], low[c], high[c], clip_tolerance))
        else:
            lo, hi = adc_range
            hits = int(
                ((x64[:, c] <= lo + clip_tolerance) | (x64[:, c] >= hi - clip_tolerance)).sum()
            )
            extremes.append((np.array([np.nan]), np.array([hits])))
    return QualitySummary(
        n=m,
        total=x64.sum(axis=0),
        sumsq=(x64 * x64).sum(axis=0),
        low=low,
        high=high,
        extremes=extremes,
        first=x64[0].copy(),
        last=x64[-1].copy(),
        lead=lead,
        trail=trail,
        inner=inner,
    )


def _prune(
    vals: np.ndarray, counts: np.ndarray, low: float, high: float, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    if len(vals) and np.isnan(vals[0]):  # ADC mode: one running count
        return np.array([np.nan]), np.array([counts.sum()])
    keep = (vals <= low + tol) | (vals >= high - tol)
    vals, counts = vals[keep], counts[keep]
    uniq, inv = np.unique(vals, return_inverse=True)
    return uniq, np.bincount(inv, weights=counts, minlength=len(uniq)).astype(np.int64)


def merge_summaries(
    left: QualitySummary | None,
    right: QualitySummary | None,
    flat_samples: int,
    clip_tolerance: float = 0.0,
) -> QualitySummary | None:
    """Return the summary of ``left`` immediately followed by ``right`` (associative).

    Parameters
    ----------
    left, right : QualitySummary or None
        Summaries of adjacent stretches, ``left`` first; None is an empty stretch.
    flat_samples : int
        Minimum length of a flat run (as given to :func:`summarize_block`).
    clip_tolerance : float
        As given to :func:`summarize_block`.

    Returns
    -------
    QualitySummary or None
    """
    if left is None:
        return right
    if right is None:
        return left
    join = left.last == right.first
    lw = left.lead == left.n
    rw = right.lead == right.n
    inner = left.inner + right.inner
    middle = left.trail + right.lead
    closed = join & ~lw & ~rw
    inner = inner + np.where(closed & (middle >= flat_samples), middle, 0)
    apart = ~join
    inner = inner + np.where(apart & ~lw & (left.trail >= flat_samples), left.trail, 0)
    inner = inner + np.where(apart & ~rw & (right.lead >= flat_samples), right.lead, 0)
    low = np.minimum(left.low, right.low)
    high = np.maximum(left.high, right.high)
    extremes = []
    for c, ((lv, lc), (rv, rc)) in enumerate(zip(left.extremes, right.extremes, strict=True)):
        extremes.append(
            _prune(
                np.concatenate((lv, rv)),
                np.concatenate((lc, rc)),
                low[c],
                high[c],
                clip_tolerance,
            )
        )
    return QualitySummary(
        n=left.n + right.n,
        total=left.total + right.total,
        sumsq=left.sumsq + right.sumsq,
        low=low,
        high=high,
        extremes=extremes,
        first=left.first,
        last=right.last,
        lead=np.where(join & lw, left.n + right.lead, left.lead),
        trail=np.where(join & rw, right.n + left.trail, right.trail),
        inner=inner,
    )


def _merge_many(
    parts: Sequence[QualitySummary | None], flat_samples: int, clip_tolerance: float
) -> QualitySummary | None:
    out = None
    for p in parts:
        out = merge_summaries(out, p, flat_samples, clip_tolerance)
    return out


def _finish(s: QualitySummary | None, flat_samples: int, clip_tolerance: float) -> dict:
    """Return rms, flat_fraction and clip_fraction (arrays over channels) of a summary."""
    if s is None:
        return {"rms": None, "flat_fraction": None, "clip_fraction": None}
    whole = s.lead == s.n
    flat = s.inner + np.where(s.lead >= flat_samples, s.lead, 0)
    flat = flat + np.where(~whole & (s.trail >= flat_samples), s.trail, 0)
    clip = np.empty(len(s.extremes))
    for c, (vals, counts) in enumerate(s.extremes):
        if len(vals) and np.isnan(vals[0]):
            clip[c] = counts.sum()
        else:
            hit = (vals <= s.low[c] + clip_tolerance) | (vals >= s.high[c] - clip_tolerance)
            clip[c] = counts[hit].sum()
    return {
        "rms": np.sqrt(s.sumsq / s.n),
        "flat_fraction": flat / s.n,
        "clip_fraction": clip / s.n,
    }


# ------------------------------------------------------------------------- one recording


def _check_params(
    flat_seconds: float,
    clip_tolerance: float,
    adc_range: tuple[float, float] | None,
    line_frequency: float,
    line_bandwidth: float,
    reference_band: tuple[float, float],
    welch_seconds: float,
) -> None:
    checks = [
        ("flat_seconds", flat_seconds, flat_seconds > 0, "a positive number of seconds"),
        ("clip_tolerance", clip_tolerance, clip_tolerance >= 0, "a number >= 0"),
        ("line_frequency", line_frequency, line_frequency > 0, "a positive frequency (Hz)"),
        ("line_bandwidth", line_bandwidth, line_bandwidth >= 0, "a number >= 0 (Hz)"),
        ("welch_seconds", welch_seconds, welch_seconds > 0, "a positive number of seconds"),
        (
            "reference_band",
            reference_band,
            len(reference_band) == 2 and 0 <= reference_band[0] < reference_band[1],
            "(low, high) with 0 <= low < high (Hz)",
        ),
        (
            "adc_range",
            adc_range,
            adc_range is None or (len(adc_range) == 2 and adc_range[0] < adc_range[1]),
            "None or (low, high) with low < high",
        ),
    ]
    for key, value, ok, expected in checks:
        if not ok:
            msg = f"signal_quality: parameter {key!r} expected {expected}, found {value!r}"
            raise SpecError(msg)


def _tree(parts: list[Any], flat_samples: int, clip_tolerance: float) -> Any:
    merge = dask.delayed(_merge_many, pure=True)
    while len(parts) > 1:
        parts = [
            merge(parts[i : i + _SPLIT_EVERY], flat_samples, clip_tolerance)
            for i in range(0, len(parts), _SPLIT_EVERY)
        ]
    return parts[0]


def _line_ratio(
    freqs: np.ndarray,
    psd: np.ndarray,
    fs: float,
    line_frequency: float,
    line_bandwidth: float,
    reference_band: tuple[float, float],
) -> np.ndarray:
    """Return line-band power over reference-band power per channel, from (C, F) PSD."""
    nyquist = fs / 2
    if line_frequency > nyquist:
        return np.full(psd.shape[0], np.nan)
    line = np.abs(freqs - line_frequency) <= line_bandwidth
    ref = (freqs >= reference_band[0]) & (freqs <= min(reference_band[1], nyquist))
    with np.errstate(invalid="ignore", divide="ignore"):
        return psd[:, line].sum(axis=1) / psd[:, ref].sum(axis=1)


def _recording_graph(
    ds: xr.Dataset,
    flat_seconds: float,
    clip_tolerance: float,
    adc_range: tuple[float, float] | None,
    welch_seconds: float,
) -> tuple[Any, int, np.ndarray, Any]:
    """Return (delayed summary, flat_samples, freqs, lazy PSD) of one recording."""
    x = ds["signal"].data
    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x))
    x = x.rechunk({1: -1}) if len(x.chunks[1]) != 1 else x
    fs = float(ds.attrs["sampling_rate"])
    flat_samples = max(2, math.ceil(flat_seconds * fs - 1e-9))
    leaf = dask.delayed(summarize_block, pure=True)
    parts = [leaf(b, flat_samples, clip_tolerance, adc_range) for b in x.to_delayed().ravel()]
    summary = _tree(parts, flat_samples, clip_tolerance) if parts else None
    freqs, psd = welch_psd(x, fs, max(1, round(welch_seconds * fs)))
    return summary, flat_samples, freqs, psd


def _rows(
    ds: xr.Dataset,
    summary: QualitySummary | None,
    flat_samples: int,
    freqs: np.ndarray,
    psd: np.ndarray,
    params: Mapping[str, Any],
) -> pd.DataFrame:
    fs = float(ds.attrs["sampling_rate"])
    channels = [str(c) for c in ds["channel"].values]
    stats = _finish(summary, flat_samples, params["clip_tolerance"])
    nan = np.full(len(channels), np.nan)
    ratio = _line_ratio(
        freqs,
        np.asarray(psd),
        fs,
        params["line_frequency"],
        params["line_bandwidth"],
        params["reference_band"],
    )
    return pd.DataFrame(
        {
            "subject": str(ds.attrs.get("subject")),
            "recording": str(ds.attrs.get("recording")),
            "channel": channels,
            "rms": nan if stats["rms"] is None else stats["rms"],
            "flat_fraction": nan if stats["flat_fraction"] is None else stats["flat_fraction"],
            "clip_fraction": nan if stats["clip_fraction"] is None else stats["clip_fraction"],
            "line_noise_ratio": ratio,
        }
    )


def recording_quality(
    ds: xr.Dataset,
    *,
    flat_seconds: float = 0.1,
    clip_tolerance: float = 0.0,
    adc_range: tuple[float, float] | None = None,
    line_frequency: float = 50.0,
    line_bandwidth: float = 1.0,
    reference_band: tuple[float, float] = (1.0, 100.0),
    welch_seconds: float = 2.0,
) -> pd.DataFrame:
    """Return the quality metrics of every channel of one recording, computed now.

    Parameters are those of :func:`signal_quality`.

    Parameters
    ----------
    ds : xarray.Dataset
        A recording: ``signal`` (time, channel), ``attrs["sampling_rate"]``; dask- or
        NumPy-backed.

    Returns
    -------
    pandas.DataFrame of shape (n_channels, 7)
        Columns ``subject, recording, channel, rms, flat_fraction, clip_fraction,
        line_noise_ratio``.
    """
    params = _params(
        flat_seconds,
        clip_tolerance,
        adc_range,
        line_frequency,
        line_bandwidth,
        reference_band,
        welch_seconds,
    )
    summary, flat_samples, freqs, psd = _recording_graph(
        ds, flat_seconds, clip_tolerance, adc_range, welch_seconds
    )
    summary, psd = dask.compute(summary, psd)
    return _rows(ds, summary, flat_samples, freqs, psd, params)


def _params(
    flat_seconds: float,
    clip_tolerance: float,
    adc_range: tuple[float, float] | None,
    line_frequency: float,
    line_bandwidth: float,
    reference_band: tuple[float, float],
    welch_seconds: float,
) -> dict[str, Any]:
    _check_params(
        flat_seconds,
        clip_tolerance,
        adc_range,
        line_frequency,
        line_bandwidth,
        tuple(reference_band),
        welch_seconds,
    )
    return {
        "clip_tolerance": float(clip_tolerance),
        "line_frequency": float(line_frequency),
        "line_bandwidth": float(line_bandwidth),
        "reference_band": (float(reference_band[0]), float(reference_band[1])),
    }


def signal_quality(
    cohort: Cohort,
    recordings: Sequence[str] | None = None,
    *,
    flat_seconds: float = 0.1,
    clip_tolerance: float = 0.0,
    adc_range: tuple[float, float] | None = None,
    line_frequency: float = 50.0,
    line_bandwidth: float = 1.0,
    reference_band: tuple[float, float] = (1.0, 100.0),
    welch_seconds: float = 2.0,
) -> pd.DataFrame:
    """Return signal-quality metrics per recording and channel (see the module docstring).

    All recordings are computed in one dask graph (on the current ``distributed`` client
    if one is active), reading every chunk once.

    Parameters
    ----------
    cohort : pipeline.store.Cohort
        An open cohort store.
    recordings : sequence of str, optional
        Recording ids (default: all, in index order).
    flat_seconds : float, default 0.1
        Minimum duration of a flat run (converted to ``flat_samples`` per recording).
    clip_tolerance : float, default 0.0
        Distance from the extreme (or ADC limit), in signal units, counted as clipped.
    adc_range : (float, float), optional
        Fixed clipping limits in signal units instead of each channel's min/max.
    line_frequency : float, default 50.0
        Mains frequency (Hz): 50 in most of the world, 60 in the Americas.
    line_bandwidth : float, default 1.0
        Half-width (Hz) of the line band.
    reference_band : (float, float), default (1.0, 100.0)
        Band (Hz) whose power normalises the line power.
    welch_seconds : float, default 2.0
        Welch segment length (s), i.e. a resolution of ``1 / welch_seconds`` Hz.

    Returns
    -------
    pandas.DataFrame of shape (n_recordings * n_channels, 7)
        Columns ``subject, recording, channel, rms, flat_fraction, clip_fraction,
        line_noise_ratio``; rows in recording then channel order.

    Raises
    ------
    SpecError
        If a parameter is out of range (the message names it).
    """
    params = _params(
        flat_seconds,
        clip_tolerance,
        adc_range,
        line_frequency,
        line_bandwidth,
        reference_band,
        welch_seconds,
    )
    rids = list(cohort.recording_ids if recordings is None else recordings)
    datasets = [cohort.recording(rid) for rid in rids]
    graphs = [
        _recording_graph(ds, flat_seconds, clip_tolerance, adc_range, welch_seconds)
        for ds in datasets
    ]
    # Two flat lists: a tuple holding a Delayed would read as a task to dask.
    summaries, psds = dask.compute([g[0] for g in graphs], [g[3] for g in graphs])
    frames = [
        _rows(ds, summary, g[1], g[2], psd, params)
        for ds, g, summary, psd in zip(datasets, graphs, summaries, psds, strict=True)
    ]
    if not frames:
        return pd.DataFrame(columns=list(QUALITY_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    log.info("signal quality: %d recordings, %d channels", len(rids), len(out))
    return out


# ------------------------------------------------------------------------------ outliers


def quality_zscores(df: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Return robust z-scores of each metric, per channel, across the cohort's recordings.

    For each channel and metric, over all recordings: ``z = (t - median(t)) / max(1.4826 *
    MAD(t), floor)`` where ``t`` is ``log10`` of ``rms`` and ``line_noise_ratio`` (floored at
    1e-30, so a dead channel gets a large negative z) and the raw value of the fractions.
    The floors (0.05 decade for rms, 0.1 decade for line noise, 0.01 for the fractions) keep
    a metric that barely varies across the cohort from turning noise into large z-scores.

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`signal_quality`.
    metrics : sequence of str
        Metrics to score (default: all four).

    Returns
    -------
    pandas.DataFrame
        ``subject, recording, channel`` then one ``<metric>`` column of z-scores per metric,
        same rows as ``df``.
    """
    unknown = [m for m in metrics if m not in _ZSPEC]
    missing = [c for c in ("subject", "recording", "channel", *metrics) if c not in df.columns]
    if unknown or missing:
        msg = (
            f"quality_zscores: expected metrics among {list(_ZSPEC)} and columns from "
            f"signal_quality; unknown metrics {unknown!r}, missing columns {missing!r}"
        )
        raise SpecError(msg)
    out = df.loc[:, ["subject", "recording", "channel"]].copy()
    for m in metrics:
        transform, floor, _ = _ZSPEC[m]
        t = df[m].astype(float)
        if transform == "log10":
            t = np.log10(t.clip(lower=_LOG_FLOOR))
        grouped = t.groupby(df["channel"])
        med = grouped.transform("median")
        mad = (t - med).abs().groupby(df["channel"]).transform("median")
        out[m] = (t - med) / np.maximum(1.4826 * mad, floor)
    return out


def quality_outliers(
    df: pd.DataFrame, z: float = 3.5, metrics: Sequence[str] = METRICS
) -> pd.DataFrame:
    """Return the (recording, channel, metric) cells that stand out from the cohort.

    A cell is an outlier when its robust z-score (:func:`quality_zscores`) exceeds ``z`` on
    the bad side of the metric: either side for ``rms`` (dead or attenuated channel,
    misplaced or loose electrode), above for ``flat_fraction``, ``clip_fraction`` and
    ``line_noise_ratio``.

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`signal_quality`.
    z : float, default 3.5
        Threshold on the robust z-score (3.5 is Iglewicz and Hoaglin's usual cut-off).
    metrics : sequence of str
        Metrics to check.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, recording, channel, metric, value, cohort_median, z``, one row
        per outlying cell, largest ``|z|`` first; empty if none.
    """
    if not z > 0:
        msg = f"quality_outliers: parameter 'z' expected a positive threshold, found {z!r}"
        raise SpecError(msg)
    scores = quality_zscores(df, metrics)
    rows = []
    for m in metrics:
        side = _ZSPEC[m][2]
        s = scores[m]
        hit = (s.abs() > z) if side == "both" else (s > z)
        med = df[m].groupby(df["channel"]).transform("median")
        for i in np.flatnonzero(hit.to_numpy()):
            rows.append(
                {
                    "subject": df["subject"].iloc[i],
                    "recording": df["recording"].iloc[i],
                    "channel": df["channel"].iloc[i],
                    "metric": m,
                    "value": float(df[m].iloc[i]),
                    "cohort_median": float(med.iloc[i]),
                    "z": float(s.iloc[i]),
                }
            )
    columns = ["subject", "recording", "channel", "metric", "value", "cohort_median", "z"]
    out = pd.DataFrame(rows, columns=columns)
    if len(out):
        out = out.reindex(out["z"].abs().sort_values(ascending=False).index)
        out = out.reset_index(drop=True)
    return out
