"""Window labels: per-sample classes, per-recording labels and event streams.

A window's label comes from one of three sources:

- per-sample classes (``label(time)`` in the store): the majority class of the window's
  samples (ties go to the smallest code) or the class of its centre sample
  ``start + length // 2``; a window whose majority class covers less than ``min_purity``
  of its samples is *mixed*, and mixed windows are kept or dropped;
- a per-recording label (``attrs["label"]``, e.g. rest/task), broadcast to every window;
- an event stream (onsets and durations in seconds): a window is positive when the events
  cover at least ``min_overlap`` of it (instantaneous events: when it contains the onset).

Per-sample labels are windowed with :func:`pipeline.windows.map_windows`, so they are
chunk-exact like the features.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipeline.exceptions import SpecError
from pipeline.spec.errors import parse
from pipeline.spec.windows import LABEL_SOURCES, LabelSpec
from pipeline.windows import map_windows, n_windows

if TYPE_CHECKING:  # imported where arrays are built: a label policy alone needs none of it
    import dask.array as da

__all__ = [
    "LabelPolicy",
    "event_targets",
    "sample_label_stats",
    "window_sample_labels",
]

_SOURCES = LABEL_SOURCES


@dataclass(frozen=True)
class LabelPolicy:
    """How windows get their label.

    Parameters
    ----------
    source : {"auto", "samples", "recording", "events", "none"}
        ``"auto"``: per-sample classes if the recording has them, else its per-recording
        label, else none (null labels).
    mode : {"majority", "centre"}
        Per-sample classes: majority class (ties to the smallest code) or the class of
        sample ``start + length // 2``.
    mixed : {"keep", "drop"}
        What to do with mixed windows (majority class covering < ``min_purity``).
    min_purity : float in (0, 1]
        Fraction of the window the majority class must cover for the window not to be
        mixed; 1.0 means any second class makes it mixed.
    min_overlap : float in [0, 1]
        Events: fraction of the window that events must cover for a positive window.
    event_description : str or None
        Events: only events with this description count (None: all events).
    event_labels : (str, str)
        Events: label of positive and of negative windows.
    exclude : tuple of str
        Label names whose windows are dropped from the table (e.g. ``"unmarked"``).
    dropped : {"remove", "unlabel"}
        What dropping a window (mixed, or an excluded label) means: ``"remove"`` leaves it
        out of the table; ``"unlabel"`` keeps it with label None, so that it is neither
        fitted nor scored but still counts in its recording's normalisation statistics,
        as it will at prediction time.
    """

    source: Literal["auto", "samples", "recording", "events", "none"] = "auto"
    mode: Literal["majority", "centre"] = "majority"
    mixed: Literal["keep", "drop"] = "keep"
    min_purity: float = 1.0
    min_overlap: float = 0.5
    event_description: str | None = None
    event_labels: tuple[str, str] = ("event", "background")
    exclude: tuple[str, ...] = ()
    dropped: Literal["remove", "unlabel"] = "remove"

    def __post_init__(self) -> None:
        spec = parse(LabelSpec, asdict(self), "LabelPolicy")
        object.__setattr__(self, "event_labels", spec.event_labels)
        object.__setattr__(self, "exclude", spec.exclude)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        d["event_labels"] = list(self.event_labels)
        d["exclude"] = list(self.exclude)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelPolicy:
        """Build a policy from a dict (as :meth:`to_dict` writes), rejecting unknown keys."""
        return cls(**parse(LabelSpec, data, "LabelPolicy").model_dump())


_MAX_COUNTS = 2**23  # (segment, class) counts held at once by sample_label_stats


def _dense_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the sorted codes present and each sample's index among them (np.unique's
    ``return_inverse``, without its sort when the codes span a small range)."""
    if codes.dtype.kind not in "iu":
        return np.unique(codes, return_inverse=True)
    lo, hi = int(codes.min()), int(codes.max())
    if hi - lo > 4 * codes.shape[0]:
        return np.unique(codes, return_inverse=True)
    shifted = codes - lo
    present = np.flatnonzero(np.bincount(shifted, minlength=hi - lo + 1))
    lut = np.zeros(hi - lo + 1, dtype=np.intp)
    lut[present] = np.arange(present.shape[0])
    return present + lo, lut[shifted]


def _sample_label_stats_by_class(
    codes: np.ndarray, length: int, step: int, out: np.ndarray
) -> np.ndarray:
    """:func:`sample_label_stats` one class at a time: O(n_samples) memory whatever the
    number of classes (for windows of many short segments and many classes)."""
    nw = out.shape[0]
    starts = np.arange(nw) * step
    best = np.full(nw, -1, dtype=np.int64)
    best_code = np.zeros(nw, dtype=np.float64)
    for c in np.unique(codes):
        cs = np.concatenate(([0], np.cumsum(codes == c, dtype=np.int64)))
        count = cs[starts + length] - cs[starts]
        better = count > best  # classes come in increasing order: ties keep the smaller
        best = np.where(better, count, best)
        best_code = np.where(better, float(c), best_code)
    out[:, 0, 0] = best_code
    out[:, 0, 1] = best / length
    out[:, 0, 2] = codes[starts + length // 2]
    return out


def sample_label_stats(block: np.ndarray, length: int, step: int) -> np.ndarray:
    """Return majority code, its purity and the centre code of every window of a block.

    Block function for :func:`pipeline.windows.map_windows`.

    Parameters
    ----------
    block : ndarray of shape (n_samples, 1)
        Integer class codes.
    length, step : int
        Window length and step in samples.

    Returns
    -------
    ndarray of shape (n_windows, 1, 3) float64
        ``[..., 0]`` majority code (ties to the smallest code), ``[..., 1]`` fraction of
        the window it covers, ``[..., 2]`` code of sample ``start + length // 2``.
    """
    codes = np.asarray(block)[:, 0]
    nw = n_windows(codes.shape[0], length, step)
    out = np.empty((nw, 1, 3), dtype=np.float64)
    if nw == 0:
        return out
    starts = np.arange(nw) * step
    # Windows are whole numbers of segments of gcd(length, step) samples: one bincount of
    # (segment, class) pairs and a cumulative sum over segments give every window's class
    # counts, in one pass over the samples (not one per class).
    g = math.gcd(length, step)
    m = (nw - 1) * step + length
    present, inverse = _dense_codes(codes[:m])
    n_cls = present.shape[0]
    if (m // g) * n_cls > _MAX_COUNTS:
        return _sample_label_stats_by_class(codes, length, step, out)
    seg = np.arange(m) // g
    counts = np.bincount(seg * n_cls + inverse, minlength=(m // g) * n_cls)
    cum = np.zeros((m // g + 1, n_cls), dtype=np.int64)
    np.cumsum(counts.reshape(m // g, n_cls), axis=0, out=cum[1:])
    window_counts = cum[(starts + length) // g] - cum[starts // g]
    best = window_counts.argmax(axis=1)  # the first maximum: ties keep the smaller code
    out[:, 0, 0] = present[best]
    out[:, 0, 1] = window_counts[np.arange(nw), best] / length
    out[:, 0, 2] = codes[starts + length // 2]
    return out


def window_sample_labels(
    labels: da.Array, length: int, step: int, policy: LabelPolicy
) -> tuple[da.Array, da.Array]:
    """Return the per-window class code and a keep mask from per-sample labels.

    Parameters
    ----------
    labels : dask.array.Array of shape (n_samples,)
        Integer class per sample, dims ("time",), any chunking.
    length, step : int
        Window length and step in samples.
    policy : LabelPolicy
        Majority or centre; mixed windows kept or dropped.

    Returns
    -------
    codes : dask.array.Array of shape (n_windows,) int64
    keep : dask.array.Array of shape (n_windows,) bool
        False for mixed windows when ``policy.mixed == "drop"``.
    """
    import dask.array as da

    if not isinstance(labels, da.Array):
        labels = da.from_array(np.asarray(labels))
    stats = map_windows(labels[:, None], length, step, sample_label_stats, 3)
    column = 0 if policy.mode == "majority" else 2
    codes = stats[:, 0, column].astype(np.int64)
    if policy.mixed == "drop":
        keep = stats[:, 0, 1] >= policy.min_purity - 1e-12
    else:
        keep = da.ones_like(codes, dtype=bool)
    return codes, keep


def _merge_intervals(onsets: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(onsets, kind="stable")
    merged_lo: list[float] = []
    merged_hi: list[float] = []
    for lo, hi in zip(onsets[order], ends[order], strict=True):
        if merged_hi and lo <= merged_hi[-1]:
            merged_hi[-1] = max(merged_hi[-1], hi)
        else:
            merged_lo.append(lo)
            merged_hi.append(hi)
    return np.asarray(merged_lo, dtype=np.float64), np.asarray(merged_hi, dtype=np.float64)


def event_targets(
    starts: np.ndarray,
    window: float,
    onsets: np.ndarray,
    durations: np.ndarray,
    min_overlap: float = 0.5,
) -> np.ndarray:
    """Return whether events cover at least ``min_overlap`` of each window.

    Parameters
    ----------
    starts : ndarray of shape (n_windows,)
        Window starts in seconds.
    window : float
        Window duration in seconds (``length / sampling_rate``).
    onsets, durations : ndarray of shape (n_events,)
        Events in seconds from the start of the recording; overlapping events are merged.
    min_overlap : float in [0, 1]
        Fraction of the window the events must cover. Events of zero duration mark every
        window ``[start, start + window)`` that contains their onset.

    Returns
    -------
    ndarray of shape (n_windows,) bool
    """
    starts = np.asarray(starts, dtype=np.float64)
    onsets = np.asarray(onsets, dtype=np.float64).ravel()
    durations = np.asarray(durations, dtype=np.float64).ravel()
    if onsets.shape != durations.shape:
        msg = (
            f"event_targets: expected onsets and durations of the same shape, found "
            f"{onsets.shape!r} and {durations.shape!r}"
        )
        raise SpecError(msg)
    if np.any(durations < 0) or not np.all(np.isfinite(onsets)):
        msg = "event_targets: expected finite onsets and durations >= 0"
        raise SpecError(msg)
    out = np.zeros(starts.shape, dtype=bool)
    if onsets.size == 0:
        return out
    point = durations == 0
    if np.any(point):
        p = np.sort(onsets[point])
        # first point onset >= start; positive when it is < start + window
        i = np.searchsorted(p, starts, side="left")
        has = i < p.size
        out[has] |= p[i[has]] < starts[has] + window
    if np.any(~point):
        lo, hi = _merge_intervals(onsets[~point], onsets[~point] + durations[~point])
        # Covered measure up to t, piecewise linear: exact interval overlaps via interp.
        knots = np.column_stack([lo, hi]).ravel()
        cover = np.column_stack([np.zeros_like(lo), hi - lo]).ravel()
        cum = np.cumsum(cover)
        covered = np.interp(starts + window, knots, cum) - np.interp(starts, knots, cum)
        if min_overlap == 0:
            out |= covered > 0
        else:
            out |= covered >= min_overlap * window - 1e-12 * max(window, 1.0)
    return out
