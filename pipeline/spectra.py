"""Power spectra of recordings: chunk-exact Welch estimates and spectra per class.

Both functions here average Hann-windowed periodograms of segments ``[k*step, k*step+nperseg)``
(constant detrend, one-sided density in ``unit**2/Hz``), exactly as
:func:`scipy.signal.welch` with ``noverlap = nperseg - step`` and ``average="mean"``. The
segments are laid out with the chunk-exact machinery of :mod:`pipeline.windows`: a segment
straddling chunk boundaries is computed once from the samples of every chunk it spans, so
the estimate does not depend on the chunking of the store (to float rounding), and each task
returns only a small sum, so memory stays bounded by a few chunks whatever the duration.

- :func:`welch_psd`: the Welch PSD of a (time, channel) dask array, lazily.
- :func:`class_spectra`: the mean PSD of a cohort's windows grouped by class, the class of a
  window coming from the per-sample labels (majority class of pure windows only) or from the
  recording's label.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy import signal as sps

from pipeline.exceptions import SpecError
from pipeline.labels import LabelPolicy, window_sample_labels
from pipeline.store import label_names
from pipeline.windows import map_ranges, map_windows, n_windows, window_blocks

if TYPE_CHECKING:
    from pipeline.store import Cohort

__all__ = ["class_spectra", "periodograms", "welch_psd"]

log = logging.getLogger(__name__)


def _window_and_scale(nperseg: int, fs: float) -> tuple[np.ndarray, float]:
    win = sps.get_window("hann", nperseg)
    return win, 1.0 / (fs * float((win * win).sum()))


def periodograms(block: np.ndarray, length: int, step: int, fs: float) -> np.ndarray:
    """Return the one-sided periodogram of every segment of a block.

    Parameters
    ----------
    block : numpy.ndarray of shape (n_samples, n_channels)
        Signal; segments start at ``0, step, 2*step, ...``.
    length, step : int
        Segment length (``nperseg``) and step in samples.
    fs : float
        Sampling rate (Hz).

    Returns
    -------
    numpy.ndarray of shape (n_segments, n_channels, length // 2 + 1)
        Hann window, constant detrend, density scaling (``unit**2/Hz``), as one segment of
        :func:`scipy.signal.welch`.
    """
    n, n_channels = block.shape
    nw = n_windows(n, length, step)
    nfreq = length // 2 + 1
    if nw == 0:
        return np.zeros((0, n_channels, nfreq))
    win, scale = _window_and_scale(length, fs)
    segs = np.lib.stride_tricks.sliding_window_view(block, length, axis=0)[::step][:nw]
    segs = segs.astype(np.float64)  # (nw, n_channels, length)
    segs = segs - segs.mean(axis=-1, keepdims=True)
    spec = np.abs(np.fft.rfft(segs * win, axis=-1)) ** 2 * scale
    if length % 2:
        spec[..., 1:] *= 2
    else:
        spec[..., 1:-1] *= 2
    return spec


def _summed_periodograms(block: np.ndarray, length: int, step: int, fs: float) -> np.ndarray:
    return periodograms(block, length, step, fs).sum(axis=0, keepdims=True)


def welch_psd(
    x: da.Array, fs: float, nperseg: int, step: int | None = None
) -> tuple[np.ndarray, da.Array]:
    """Return the Welch power spectral density of every channel, lazily and chunk-exactly.

    Parameters
    ----------
    x : dask.array.Array of shape (n_samples, n_channels)
        Signal, dims ("time", "channel"), any chunking along time.
    fs : float
        Sampling rate (Hz).
    nperseg : int
        Segment length in samples; shortened to ``n_samples`` for a shorter recording.
    step : int, optional
        Segment step in samples (default ``nperseg // 2``, i.e. 50 % overlap).

    Returns
    -------
    freqs : numpy.ndarray of shape (nperseg // 2 + 1,)
    psd : dask.array.Array of shape (n_channels, nperseg // 2 + 1)
        Equal (to float rounding) to ``scipy.signal.welch(x, fs, nperseg=nperseg,
        noverlap=nperseg - step, axis=0)[1].T``; NaN for an empty recording.
    """
    n, n_channels = x.shape
    nperseg = int(min(nperseg, n)) if n > 0 else int(nperseg)
    if nperseg < 1:
        msg = f"welch_psd: expected nperseg >= 1, found {nperseg!r}"
        raise SpecError(msg)
    step = max(1, nperseg // 2) if step is None else int(step)
    freqs = np.fft.rfftfreq(nperseg, 1.0 / fs)
    if n == 0:
        return freqs, da.full((n_channels, len(freqs)), np.nan)
    x = x.rechunk({1: -1}) if len(x.chunks[1]) != 1 else x
    chunks = tuple(c for c in x.chunks[0] if c > 0)
    blocks = window_blocks(chunks, nperseg, step)
    ranges = [(k0 * step, (k1 - 1) * step + nperseg) for k0, k1 in blocks]
    sums = map_ranges(
        x,
        ranges,
        [1] * len(blocks),
        _summed_periodograms,
        dtype=np.float64,
        trailing_shape=(n_channels, len(freqs)),
        args=[(nperseg, step, float(fs))] * len(blocks),
        name="welch-sums",
    )
    total = n_windows(n, nperseg, step)
    return freqs, sums.sum(axis=0) / total


def _class_sums(
    ds: xr.Dataset,
    nperseg: int,
    step: int,
    channels: Sequence[str] | None,
    policy: LabelPolicy,
) -> tuple[Any, dict[int, str]]:
    """Return lazy ``(codes, sums (K, C, F), counts (K,))`` and code names of a recording."""
    sig = ds["signal"] if channels is None else ds["signal"].sel(channel=list(channels))
    x = sig.data if isinstance(sig.data, da.Array) else da.from_array(np.asarray(sig.data))
    fs = float(ds.attrs["sampling_rate"])
    pgram = map_windows(
        x, nperseg, step, _PeriodogramFunc(fs), nperseg // 2 + 1, dtype=np.float64
    )  # (nw, C, F)
    names: dict[int, str]
    if "label" in ds.variables:
        lab = ds["label"].data
        lab = lab if isinstance(lab, da.Array) else da.from_array(np.asarray(lab))
        lab = lab.rechunk((x.chunks[0],))
        codes, keep = window_sample_labels(lab, nperseg, step, policy)
        names = label_names(ds)
    elif ds.attrs.get("label") is not None and str(ds.attrs.get("label")) != "nan":
        nw = pgram.shape[0]
        codes = da.zeros(nw, dtype=np.int64, chunks=(pgram.chunks[0],))
        keep = da.ones(nw, dtype=bool, chunks=(pgram.chunks[0],))
        names = {0: str(ds.attrs["label"])}
    else:
        return None, {}
    present = sorted(names)
    onehot = (codes[:, None] == da.from_array(np.array(present))[None, :]) & keep[:, None]
    onehot = onehot.astype(np.float64).rechunk({1: -1})
    sums = da.tensordot(onehot, pgram, axes=(0, 0))  # (K, C, F)
    counts = onehot.sum(axis=0)
    return [present, sums, counts], names  # a list: a tuple could read as a dask task


class _PeriodogramFunc:
    """Picklable block function ``(block, length, step) -> periodograms``."""

    def __init__(self, fs: float) -> None:
        self.fs = fs

    def __call__(self, block: np.ndarray, length: int, step: int) -> np.ndarray:
        return periodograms(block, length, step, self.fs)


def class_spectra(
    cohort: Cohort,
    recordings: Sequence[str] | None = None,
    *,
    window: float = 1.0,
    step: float | None = None,
    channels: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> pd.DataFrame:
    """Return the mean power spectrum of each class, per channel, over a cohort's windows.

    A window's class is the class of all its samples (windows that mix classes are left
    out) or, for recordings labelled as a whole, the recording's label. All windows of a
    class, from every recording, are averaged with equal weight. Computed in one pass with
    dask (on the current cluster, if any).

    Parameters
    ----------
    cohort : pipeline.store.Cohort
    recordings : sequence of str, optional
        Recording ids (default: all). Recordings without any label are skipped.
    window : float, default 1.0
        Window (periodogram segment) length in seconds; sets the resolution ``1/window`` Hz.
    step : float, optional
        Window step in seconds (default ``window / 2``).
    channels : sequence of str, optional
        Channels to use (default: all; every recording must then have the same channels).
    exclude : sequence of str
        Class names to leave out (e.g. ``["unmarked"]``).

    Returns
    -------
    pandas.DataFrame
        Long format, one row per (label, channel, frequency): columns ``label`` (str),
        ``channel`` (str), ``frequency`` (Hz), ``power`` (``unit**2/Hz``), ``n_windows``.

    Raises
    ------
    SpecError
        If recordings differ in sampling rate or channels, or the window is shorter than
        two samples or longer than every recording.
    """
    rids = list(cohort.recording_ids if recordings is None else recordings)
    idx = cohort.index.set_index("recording").loc[rids]
    rates = sorted(set(idx["sampling_rate"].astype(float)))
    if len(rates) != 1:
        msg = (
            f"class_spectra: recordings of {str(cohort.path)!r} have sampling rates {rates!r}; "
            "expected one rate (select recordings with `recordings=`)"
        )
        raise SpecError(msg)
    fs = rates[0]
    nperseg = round(window * fs)
    nstep = round((window / 2 if step is None else step) * fs)
    if nperseg < 2 or nstep < 1:
        msg = (
            f"class_spectra: window {window!r} s and step {step!r} s give {nperseg} and {nstep} "
            f"samples at {fs} Hz; expected a window of at least 2 samples and a step of 1"
        )
        raise SpecError(msg)
    policy = LabelPolicy(mode="majority", mixed="drop", min_purity=1.0)
    parts, all_names, chans = [], [], None
    for rid in rids:
        ds = cohort.recording(rid)
        got = [str(c) for c in (ds["channel"].values if channels is None else channels)]
        if chans is None:
            chans = got
        elif got != chans:
            msg = (
                f"class_spectra: recording {rid!r} has channels {got!r}, expected {chans!r} "
                "like the first recording; pass `channels=` to select common channels"
            )
            raise SpecError(msg)
        part, names = _class_sums(ds, nperseg, nstep, channels, policy)
        if part is not None:
            parts.append(part)
            all_names.append(names)
    if not parts:
        msg = f"class_spectra: none of {len(rids)} recordings has labels or a long enough window"
        raise SpecError(msg)
    (computed,) = dask.compute(parts)
    freqs = np.fft.rfftfreq(nperseg, 1.0 / fs)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, float] = {}
    for (present, s, c), names in zip(computed, all_names, strict=True):
        for j, code in enumerate(present):
            name = names[code]
            if name in exclude or c[j] == 0:
                continue
            sums[name] = sums.get(name, 0.0) + s[j]
            counts[name] = counts.get(name, 0.0) + c[j]
    assert chans is not None
    rows = []
    for name in sums:
        mean = sums[name] / counts[name]  # (C, F)
        for ci, ch in enumerate(chans):
            rows.append(
                pd.DataFrame(
                    {
                        "label": name,
                        "channel": ch,
                        "frequency": freqs,
                        "power": mean[ci],
                        "n_windows": int(counts[name]),
                    }
                )
            )
    if not rows:
        return pd.DataFrame(columns=["label", "channel", "frequency", "power", "n_windows"])
    return pd.concat(rows, ignore_index=True)
