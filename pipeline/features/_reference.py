"""Plain NumPy/SciPy reference implementation of every registered feature.

Slow and obvious on purpose: windows come from ``sliding_window_view``, each feature is
written from its definition in `pipeline.features.registry` (SSC removes repeated values
explicitly, spectra come from ``scipy.signal.periodogram``, AR from
``scipy.linalg.solve_toeplitz``). The tests compare the Numba kernels against it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.signal
import scipy.stats
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.features.registry import EEG_BANDS, FeatureSpec

__all__ = ["reference_features", "windows_of"]


def windows_of(block: np.ndarray, length: int, step: int) -> np.ndarray:
    """Return the windows of ``block`` as an array of shape (n_windows, n_channels, length)."""
    x = np.asarray(block, dtype=np.float64)
    if x.shape[0] < length:
        return np.empty((0, x.shape[1], length))
    return sliding_window_view(x, length, axis=0)[::step]


def _ssc(w: np.ndarray, thr: float) -> np.ndarray:
    res = np.zeros(w.shape[:2])
    for k in range(w.shape[0]):
        for c in range(w.shape[1]):
            row = w[k, c]
            y = row[np.concatenate(([True], row[1:] != row[:-1]))]
            if y.size < 3:
                continue
            mid, left, right = y[1:-1], y[:-2], y[2:]
            turn = ((mid > left) & (mid > right)) | ((mid < left) & (mid < right))
            big = np.maximum(np.abs(mid - left), np.abs(mid - right)) >= thr
            res[k, c] = np.sum(turn & big)
    return res


def _ssc_hudgins(w: np.ndarray, thr: float) -> np.ndarray:
    mid, left, right = w[..., 1:-1], w[..., :-2], w[..., 2:]
    return np.sum((mid - left) * (mid - right) >= thr, axis=-1).astype(float)


def _window_step(w: np.ndarray) -> np.ndarray:
    """Greatest common divisor of each window's nonzero ``|dx|`` (0 if constant)."""
    d = np.abs(np.diff(w, axis=-1))
    out = np.zeros(w.shape[:-1])
    for idx in np.ndindex(out.shape):
        row = d[idx]
        tol = 1e-9 * row.max(initial=0.0)
        g = 0.0
        for v in row[row > tol]:
            hi, lo = max(g, v), min(g, v)
            while lo > tol:
                hi, lo = lo, np.fmod(hi, lo)
            g = hi
        out[idx] = g
    return out


def _ar(w: np.ndarray, order: int, demean: bool = True) -> np.ndarray:
    n_win, n_ch, length = w.shape
    res = np.zeros((n_win, n_ch, order))
    for k in range(n_win):
        for c in range(n_ch):
            if np.ptp(w[k, c]) == 0:
                continue
            xm = w[k, c] - w[k, c].mean() if demean else w[k, c]
            r = np.array(
                [np.dot(xm[lag:], xm[: length - lag]) / length for lag in range(order + 1)]
            )
            res[k, c] = scipy.linalg.solve_toeplitz(r[:order], r[1:])
    return res


def _spectral(w: np.ndarray, spec: FeatureSpec, fs: float, constant: np.ndarray) -> np.ndarray:
    p = spec.params
    length = w.shape[-1]
    nfft = length if p["nfft"] is None else p["nfft"]
    detrend = "constant" if p["detrend"] == "constant" else False
    f, pxx = scipy.signal.periodogram(
        w, fs, window=p["window"], nfft=nfft, detrend=detrend, scaling="density", axis=-1
    )
    fmax = fs / 2 if p["fmax"] is None else p["fmax"]
    sel = (f >= p["fmin"]) & (f <= fmax)
    fr, pr = f[sel], pxx[..., sel]
    total = pr.sum(axis=-1)
    bad = constant | ~(total > 0)
    safe = np.where(bad, 1.0, total)
    name = spec.name
    if name == "mnf":
        cols = [np.sum(pr * fr, axis=-1) / safe]
    elif name == "mdf":
        cum = np.cumsum(pr, axis=-1)
        cols = [fr[np.argmax(cum >= 0.5 * total[..., None], axis=-1)]]
    elif name == "peak_freq":
        cols = [fr[np.argmax(pr, axis=-1)]]
    elif name == "spectral_entropy":
        q = pr / safe[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.sum(np.where(q > 0, q * np.log(q), 0.0), axis=-1)
        if p["normalize"]:
            h = h / np.log(fr.size) if fr.size > 1 else np.zeros_like(h)
        cols = [h]
    else:
        bands = p["bands"] if "bands" in p else EEG_BANDS
        df = f[1] - f[0]
        cols = []
        for _, lo, hi in bands:
            band = pxx[..., (f >= lo) & (f < hi)].sum(axis=-1)
            cols.append(band / safe if "rel" in name else band * df)
        if "rel" not in name:
            return np.stack(cols, axis=-1)
    return np.where(bad[..., None], 0.0, np.stack(cols, axis=-1))


def _one(w: np.ndarray, spec: FeatureSpec, fs: float) -> np.ndarray:
    p: Mapping[str, Any] = spec.params
    name = spec.name
    constant = np.ptp(w, axis=-1) == 0
    d = np.diff(w, axis=-1)
    var = np.where(constant, 0.0, np.var(w, axis=-1))
    if name == "mav":
        out = np.mean(np.abs(w), axis=-1)
    elif name == "iav":
        out = np.sum(np.abs(w), axis=-1)
    elif name == "rms":
        out = np.sqrt(np.mean(w**2, axis=-1))
    elif name == "var":
        out = np.where(constant, 0.0, np.var(w, axis=-1, ddof=p["ddof"]))
    elif name == "hjorth_activity":
        out = var
    elif name == "wl":
        out = np.sum(np.abs(d), axis=-1)
    elif name == "zc":
        a, b = w[..., :-1], w[..., 1:]
        cross = ((a < 0) & (b > 0)) | ((a > 0) & (b < 0))
        out = np.sum(cross & (np.abs(d) >= p["threshold"]), axis=-1).astype(float)
    elif name == "wamp":
        out = np.sum(np.abs(d) > p["threshold"], axis=-1).astype(float)
    elif name == "ssc" and p["convention"] == "hudgins":
        out = _ssc_hudgins(w, p["threshold"])
    elif name == "ssc":
        out = _ssc(w, p["threshold"])
    elif name == "log":
        if p["eps"] == "step":
            eps = _window_step(w)[..., None]
        else:
            eps = p["eps"]
        a = np.abs(w) + eps
        with np.errstate(divide="ignore"):
            out = np.where((a == 0).any(axis=-1), 0.0, np.exp(np.mean(np.log(a), axis=-1)))
    elif name == "logvar":
        with np.errstate(divide="ignore"):
            out = np.log(var + p["eps"])
    elif name in ("hjorth_mobility", "hjorth_complexity"):
        vd = np.var(d, axis=-1)
        vdd = np.var(np.diff(w, n=2, axis=-1), axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mob = np.sqrt(vd / var)
            out = mob if name == "hjorth_mobility" else np.sqrt(vdd / vd) / mob
        out = np.where(constant, 0.0, out)
    elif name in ("skewness", "kurtosis", "excess_kurtosis"):
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant windows, zeroed below
            if name == "skewness":
                val = scipy.stats.skew(w, axis=-1)
            else:
                val = scipy.stats.kurtosis(w, axis=-1, fisher=name == "excess_kurtosis")
            out = np.where(constant, 0.0, val)
    elif name == "ar":
        res = _ar(w, p["order"], p["demean"])
        if p["sign"] == "lpc":
            res = -res
        return np.where(constant[..., None], 0.0, res)
    else:
        return _spectral(w, spec, fs, constant)
    return out[..., None]


def reference_features(
    block: np.ndarray,
    length: int,
    step: int,
    specs: Sequence[FeatureSpec | Mapping[str, Any] | str],
    sampling_rate: float,
) -> np.ndarray:
    """Compute features the slow way, in the layout of `compute_features`.

    Returns
    -------
    ndarray of shape (n_windows, n_channels, n_features)
    """
    w = windows_of(block, length, step)
    parsed = [FeatureSpec.coerce(s) for s in specs]
    if w.shape[0] == 0:
        return np.empty((0, w.shape[1], sum(len(s.columns()) for s in parsed)))
    return np.concatenate([_one(w, s, float(sampling_rate)) for s in parsed], axis=-1)
