"""Cross-channel window features: spatial covariance (empirical, OAS, Ledoit-Wolf) and
correlation, one ``(n_channels, n_channels)`` matrix per window.

Definitions (window of ``L`` samples ``x_t`` in ``R^C``, mean removed, ``S = X^T X / L``
the empirical covariance with ``ddof=0``, ``mu = trace(S) / C``):

``cov``
    ``S`` (``sklearn.covariance.empirical_covariance``).
``cov_oas``
    Oracle Approximating Shrinkage (Chen et al. 2010) in scikit-learn's formulation
    (``sklearn.covariance.oas``): ``alpha = mean(S**2)``,
    ``s = min((alpha + mu**2) / ((L + 1) (alpha - mu**2 / C)), 1)`` (1 if the denominator is
    0), ``(1 - s) S + s mu I``; pyriemann's ``Covariances(estimator="oas")`` is this estimate.
``cov_lw``
    Ledoit-Wolf shrinkage (``sklearn.covariance.ledoit_wolf``): ``(1 - s) S + s mu I`` with
    ``s = min(beta, delta) / delta``, ``delta = (sum S**2 - 2 mu trace S + C mu**2) / C``,
    ``beta = (sum_t |x_t|**4 / L - sum S**2) / (C L)`` (0 if ``beta`` is 0).
``corr``
    Pearson correlation ``S_ij / sqrt(S_ii S_jj)``; 0 where a channel is constant in the
    window (1 on the diagonal only where the channel varies).

Layout: the block function of :mod:`pipeline.features.compute` gives every channel ``i`` one
slot per channel ``j`` (``<name>~<j>``), so the fused output stays
``(n_windows, n_channels, n_features)`` and is chunk-exact like every other feature;
:func:`pipeline.features.registry.table_columns` keeps the upper triangle ``j >= i`` as
columns ``<ch_i>:<ch_j>__<name>`` (e.g. ``Fp1:Fp2__cov_oas``), and
:func:`pairwise_matrices` rebuilds the symmetric matrices from those columns.

Per band (``bands`` in Hz, ``lo <= f < hi``; one matrix per band, columns
``<ch_i>:<ch_j>__<prefix><band>``: ``fbcov_alpha``, or ``fbcov_8_13`` for unnamed bands):

``fb_cov`` (filter-bank covariance, as FBCSP / filter-bank tangent space use it)
    The window's mean is removed, its band-passed copy is
    ``irfft(rfft(x) * [lo <= f_k < hi])`` (a zero-phase ideal band-pass of the window alone,
    so the feature depends on the window's samples only and is chunk-exact like the
    others), and ``estimator`` (``oas`` default, ``lw``, ``empirical``) is applied to that
    copy exactly as ``sklearn.covariance.oas`` / ``ledoit_wolf`` / ``empirical_covariance``
    would (``L`` samples). By Parseval the empirical part is the real cross-spectrum summed
    over the band's bins (the band's integrated co-spectrum, as pyriemann's
    ``CospCovariances`` with one boxcar segment). Where the peers differ: FBCSP band-passes
    the continuous recording with an IIR filter; here the window is filtered circularly, so
    its two ends leak into each other (the price of chunk-exactness without a halo).
``coh`` (magnitude-squared coherence)
    ``scipy.signal.coherence(x_i, x_j, fs, window="hann", nperseg=n, noverlap=n // 2)``
    inside the window (Welch segments of ``segment`` seconds, each detrended by its mean),
    averaged over the band's frequency bins; 1 on the diagonal of a varying channel, 0 for
    a constant channel.
``glasso`` (sparse inverse covariance)
    The precision matrix of ``sklearn.covariance.graphical_lasso`` applied to the window's
    correlation matrix (scale-free, so one ``alpha`` suits every channel's unit; a constant
    channel gets correlation 0 with the others and 1 with itself), penalty ``alpha``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numba
import numpy as np
import scipy.signal

from pipeline.exceptions import SpecError

__all__ = [
    "BANDED",
    "PAIRWISE",
    "coherence_windows",
    "cov_windows",
    "fb_cov_windows",
    "glasso_windows",
    "is_pairwise_kind",
    "pairwise_call",
    "pairwise_matrices",
    "shrunk_covariances",
    "split_pairwise_column",
]

logger = logging.getLogger(__name__)

#: The cross-channel features of the Numba kernel and their kernel code.
PAIRWISE = {"cov": 0, "cov_oas": 1, "cov_lw": 2, "corr": 3}
#: The banded cross-channel features and the prefix of their per-band column kinds.
BANDED = {"fb_cov": "fbcov_", "coh": "coh_"}
_BATCH_FLOATS = 2**21  # float64 values of one batch of windows (16 MiB)


@numba.njit(cache=True, nogil=True)
def _cov_windows(x, length, step, kind, col, out):  # pragma: no cover - compiled
    nw = out.shape[0]
    c = x.shape[1]
    xc = np.empty((length, c))
    s = np.empty((c, c))
    for w in range(nw):
        t0 = w * step
        for j in range(c):
            m = 0.0
            for t in range(length):
                m += x[t0 + t, j]
            m /= length
            for t in range(length):
                xc[t, j] = x[t0 + t, j] - m
        for i in range(c):
            for j in range(i, c):
                acc = 0.0
                for t in range(length):
                    acc += xc[t, i] * xc[t, j]
                s[i, j] = acc / length
                s[j, i] = s[i, j]
        if kind == 1 or kind == 2:
            tr = 0.0
            sq = 0.0
            for i in range(c):
                tr += s[i, i]
                for j in range(c):
                    sq += s[i, j] * s[i, j]
            mu = tr / c
            shrink = 0.0
            if c == 1:
                shrink = 0.0
            elif kind == 1:
                alpha = sq / (c * c)
                den = (length + 1) * (alpha - mu * mu / c)
                shrink = 1.0 if den == 0.0 else min((alpha + mu * mu) / den, 1.0)
            else:
                b4 = 0.0
                for t in range(length):
                    r = 0.0
                    for i in range(c):
                        r += xc[t, i] * xc[t, i]
                    b4 += r * r
                beta = (b4 / length - sq) / (c * length)
                delta = (sq - 2.0 * mu * tr + c * mu * mu) / c
                beta = min(beta, delta)
                shrink = 0.0 if beta == 0.0 else beta / delta
            for i in range(c):
                for j in range(c):
                    s[i, j] *= 1.0 - shrink
                s[i, i] += shrink * mu
        if kind == 3:
            for i in range(c):
                for j in range(c):
                    d = s[i, i] * s[j, j]
                    out[w, i, col + j] = s[i, j] / np.sqrt(d) if d > 0.0 else 0.0
        else:
            for i in range(c):
                for j in range(c):
                    out[w, i, col + j] = s[i, j]


def cov_windows(x: np.ndarray, length: int, step: int, kind: str, col: int, out: np.ndarray):
    """Write the ``kind`` matrix of every window of ``x`` into ``out[:, i, col + j]``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_channels)
        float32 or float64 block, any memory layout.
    length, step : int
        Window length and step in samples.
    kind : {"cov", "cov_oas", "cov_lw", "corr"}
    col : int
        First of the ``n_channels`` feature slots of this feature.
    out : ndarray of shape (n_windows, n_channels, n_features)
        float64, written in place.
    """
    if kind not in PAIRWISE:
        raise SpecError(f"Pairwise feature: expected one of {sorted(PAIRWISE)}, found {kind!r}")
    _cov_windows(x, length, step, PAIRWISE[kind], col, out)


def is_pairwise_kind(kind: str) -> bool:
    """Return whether ``kind`` (the part of a column after ``__``) is a cross-channel one."""
    if kind in PAIRWISE or kind == "glasso":
        return True
    return any(kind.startswith(p) and len(kind) > len(p) for p in BANDED.values())


def _windows(x: np.ndarray, length: int, step: int, w0: int, nb: int) -> np.ndarray:
    """Windows ``w0 .. w0 + nb - 1`` of ``x`` as float64 ``(nb, length, n_channels)``."""
    view = np.lib.stride_tricks.sliding_window_view(x, length, axis=0)  # (n, C, L)
    seg = view[w0 * step : (w0 + nb - 1) * step + 1 : step]
    return seg.transpose(0, 2, 1).astype(np.float64, order="C")  # a copy: written in place


def _band_bins(freqs: np.ndarray, bands: Sequence[tuple[float, float]], what: str) -> list:
    masks = []
    for lo, hi in bands:
        m = (freqs >= lo) & (freqs < hi)
        if not m.any():
            msg = (
                f"{what}: expected at least one frequency bin in the band [{lo:g}, {hi:g}) Hz, "
                f"found none (bins {freqs[1] - freqs[0]:g} Hz apart); use longer windows "
                f"(segments) or a wider band"
            )
            raise SpecError(msg)
        masks.append(m)
    return masks


def shrunk_covariances(xc: np.ndarray, estimator: str) -> np.ndarray:
    """Return the ``estimator`` covariance of every window of mean-free ``xc``.

    Parameters
    ----------
    xc : ndarray of shape (n_windows, n_samples, n_channels)
        Windows whose channel means are 0 (as ``sklearn.covariance`` centres them).
    estimator : {"oas", "lw", "empirical"}
        ``sklearn.covariance.oas``, ``ledoit_wolf`` or ``empirical_covariance``.

    Returns
    -------
    ndarray of shape (n_windows, n_channels, n_channels)
    """
    _, length, c = xc.shape
    s = np.einsum("wtc,wtd->wcd", xc, xc, optimize=True) / length
    if estimator == "empirical" or c == 1:
        return s
    tr = np.trace(s, axis1=1, axis2=2)
    mu = tr / c
    sq = np.sum(s * s, axis=(1, 2))
    if estimator == "oas":
        alpha = sq / (c * c)
        den = (length + 1) * (alpha - mu * mu / c)
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.where(den == 0.0, 1.0, np.minimum((alpha + mu * mu) / den, 1.0))
    else:
        b4 = np.sum(np.sum(xc * xc, axis=2) ** 2, axis=1)
        beta = (b4 / length - sq) / (c * length)
        delta = (sq - 2.0 * mu * tr + c * mu * mu) / c
        beta = np.minimum(beta, delta)
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.where(beta == 0.0, 0.0, beta / delta)
    out = s * (1.0 - shrink)[:, None, None]
    out[:, np.arange(c), np.arange(c)] += (shrink * mu)[:, None]
    return out


def fb_cov_windows(
    x: np.ndarray,
    length: int,
    step: int,
    fs: float,
    bands: Sequence[tuple[float, float]],
    estimator: str,
    col: int,
    out: np.ndarray,
) -> None:
    """Write the filter-bank covariances of every window into ``out[:, i, col + b C + j]``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_channels)
    length, step : int
        Window length and step in samples.
    fs : float
        Sampling rate, Hz.
    bands : sequence of (low, high)
        Hz, each ``low <= f < high`` holding at least one bin of the window's FFT.
    estimator : {"oas", "lw", "empirical"}
    col : int
        First of the ``len(bands) * n_channels`` slots.
    out : ndarray of shape (n_windows, n_channels, n_features)
        float64, written in place.
    """
    nw, c = out.shape[0], x.shape[1]
    masks = _band_bins(np.fft.rfftfreq(length, 1.0 / fs), bands, "Feature 'fb_cov'")
    batch = max(1, _BATCH_FLOATS // (length * c))
    for w0 in range(0, nw, batch):
        nb = min(batch, nw - w0)
        seg = _windows(x, length, step, w0, nb)
        seg -= seg.mean(axis=1, keepdims=True)
        spec = np.fft.rfft(seg, axis=1)
        for b, m in enumerate(masks):
            xb = np.fft.irfft(spec * m[None, :, None], n=length, axis=1)
            out[w0 : w0 + nb, :, col + b * c : col + (b + 1) * c] = shrunk_covariances(
                xb, estimator
            )


def coherence_windows(
    x: np.ndarray,
    length: int,
    step: int,
    fs: float,
    bands: Sequence[tuple[float, float]],
    nperseg: int,
    col: int,
    out: np.ndarray,
) -> None:
    """Write the band-averaged magnitude-squared coherence of every window into
    ``out[:, i, col + b C + j]`` (``scipy.signal.coherence`` inside each window).

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_channels)
    length, step : int
        Window length and step in samples.
    fs : float
        Sampling rate, Hz.
    bands : sequence of (low, high)
        Hz, each holding at least one bin of an ``nperseg``-point FFT.
    nperseg : int
        Welch segment length in samples (overlap ``nperseg // 2``, Hann taper).
    col : int
        First of the ``len(bands) * n_channels`` slots.
    out : ndarray of shape (n_windows, n_channels, n_features)
        float64, written in place.

    Raises
    ------
    SpecError
        A segment longer than the window, or a band without a frequency bin.
    """
    if not 1 <= nperseg <= length:
        msg = (
            f"Feature 'coh': expected a segment of 1 to {length} samples (the window), "
            f"found {nperseg} samples; use a shorter 'segment' or longer windows"
        )
        raise SpecError(msg)
    nw, c = out.shape[0], x.shape[1]
    hop = nperseg - nperseg // 2
    nseg = (length - nperseg) // hop + 1
    taper = scipy.signal.get_window("hann", nperseg)
    masks = _band_bins(np.fft.rfftfreq(nperseg, 1.0 / fs), bands, "Feature 'coh'")
    starts = np.arange(nseg) * hop
    batch = max(1, _BATCH_FLOATS // (nseg * nperseg * c))
    for w0 in range(0, nw, batch):
        nb = min(batch, nw - w0)
        win = _windows(x, length, step, w0, nb)
        segs = win[:, starts[:, None] + np.arange(nperseg)[None, :], :]  # (nb, S, n, C)
        segs -= segs.mean(axis=2, keepdims=True)
        segs *= taper[None, None, :, None]
        spec = np.fft.rfft(segs, axis=2)
        for b, m in enumerate(masks):
            f = spec[:, :, m, :]
            sxy = np.einsum("wskc,wskd->wkcd", f.conj(), f, optimize=True) / nseg
            p = np.real(np.einsum("wkcc->wkc", sxy))
            den = p[..., :, None] * p[..., None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                msc = np.where(den > 0.0, np.abs(sxy) ** 2 / den, 0.0)
            out[w0 : w0 + nb, :, col + b * c : col + (b + 1) * c] = msc.mean(axis=1)


def glasso_windows(
    x: np.ndarray, length: int, step: int, alpha: float, col: int, out: np.ndarray
) -> None:
    """Write the graphical-lasso precision of every window's correlation matrix into
    ``out[:, i, col + j]`` (``sklearn.covariance.graphical_lasso(corr, alpha)``).

    Raises
    ------
    SpecError
        The lasso did not converge on a window (naming it; a larger ``alpha`` helps).
    """
    from sklearn.covariance import graphical_lasso  # scikit-learn only where it is used
    from sklearn.exceptions import ConvergenceWarning

    nw, c = out.shape[0], x.shape[1]
    corr = np.empty((nw, c, c))
    _cov_windows(x, length, step, PAIRWISE["corr"], 0, corr)
    corr[:, np.arange(c), np.arange(c)] = 1.0  # a constant channel: independent of the rest
    unconverged = 0
    for w in range(nw):
        # one log line per block rather than one warning per window (thousands per run)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                out[w, :, col : col + c] = graphical_lasso(corr[w], alpha=alpha)[1]
            except FloatingPointError as exc:
                msg = (
                    f"Feature 'glasso': the graphical lasso failed on window {w} of the block "
                    f"(alpha={alpha!r}): {exc}; expected a well-conditioned correlation "
                    f"matrix, try a larger alpha"
                )
                raise SpecError(msg) from None
        unconverged += any(issubclass(m.category, ConvergenceWarning) for m in caught)
    if unconverged:
        logger.info(
            "glasso: %d of %d windows did not converge in scikit-learn's 100 iterations "
            "(alpha=%g); their precision is the last iterate",
            unconverged,
            nw,
            alpha,
        )


def pairwise_call(name: str, params: Mapping[str, Any], fs: float, col: int) -> Callable:
    """Return the call ``f(x, xt, length, step, out)`` of cross-channel feature ``name``
    writing its slots from ``col`` (the form of :mod:`pipeline.features.compute`'s calls)."""
    if name in PAIRWISE:

        def call(x, xt, length, step, out):
            cov_windows(x, length, step, name, col, out)

    elif name == "fb_cov":
        bands = [(float(lo), float(hi)) for _, lo, hi in params["bands"]]
        estimator = str(params["estimator"])

        def call(x, xt, length, step, out):
            fb_cov_windows(x, length, step, fs, bands, estimator, col, out)

    elif name == "coh":
        bands = [(float(lo), float(hi)) for _, lo, hi in params["bands"]]
        nperseg = round(float(params["segment"]) * fs)

        def call(x, xt, length, step, out):
            coherence_windows(x, length, step, fs, bands, nperseg, col, out)

    elif name == "glasso":
        alpha = float(params["alpha"])

        def call(x, xt, length, step, out):
            glasso_windows(x, length, step, alpha, col, out)

    else:
        known = sorted([*PAIRWISE, *BANDED, "glasso"])
        raise SpecError(f"Pairwise feature: expected one of {known}, found {name!r}")
    call.__name__ = name
    call.channel_major = False
    return call


def split_pairwise_column(column: str) -> tuple[str, str, str] | None:
    """Return ``(ch_i, ch_j, name)`` of a ``<ch_i>:<ch_j>__<name>`` column, else None."""
    head, sep, name = column.partition("__")
    if not sep or not is_pairwise_kind(name) or head.count(":") != 1:
        return None
    a, b = head.split(":")
    return a, b, name


def pairwise_matrices(
    X: np.ndarray, columns: Sequence[str], name: str
) -> tuple[np.ndarray, list[str]]:
    """Rebuild the symmetric per-window matrices of feature ``name`` from its columns.

    Parameters
    ----------
    X : ndarray of shape (n_windows, n_columns)
        Feature values, columns named as in ``columns``.
    columns : sequence of str
        Column names; those ``<ch_i>:<ch_j>__<name>`` are read.
    name : str
        A pairwise feature, e.g. ``"cov_oas"``.

    Returns
    -------
    mats : ndarray of shape (n_windows, n_channels, n_channels)
    channels : list of str
        The channels in matrix order (order of first appearance).

    Raises
    ------
    SpecError
        No column of ``name``, or a pair of the upper triangle missing.
    """
    pairs = [(k, split_pairwise_column(str(c))) for k, c in enumerate(columns)]
    pairs = [(k, p) for k, p in pairs if p is not None and p[2] == name]
    if not pairs:
        raise SpecError(
            f"Pairwise feature {name!r}: expected columns '<ch_i>:<ch_j>__{name}', found none "
            f"among {list(columns)[:5]!r}..."
        )
    channels: list[str] = []
    for _, (a, b, _n) in pairs:
        for ch in (a, b):
            if ch not in channels:
                channels.append(ch)
    idx = {ch: i for i, ch in enumerate(channels)}
    c = len(channels)
    X = np.asarray(X, dtype=np.float64)
    mats = np.full((X.shape[0], c, c), np.nan)
    for k, (a, b, _n) in pairs:
        mats[:, idx[a], idx[b]] = X[:, k]
        mats[:, idx[b], idx[a]] = X[:, k]
    if np.isnan(mats).any():
        missing = [
            (a, b) for a in channels for b in channels if np.isnan(mats[:, idx[a], idx[b]]).all()
        ]
        raise SpecError(
            f"Pairwise feature {name!r}: expected every channel pair of {channels!r}, "
            f"found no column for {missing[:3]!r}"
        )
    return mats, channels
