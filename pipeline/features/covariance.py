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
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from pipeline.exceptions import SpecError

__all__ = ["PAIRWISE", "cov_windows", "pairwise_matrices", "split_pairwise_column"]

#: The cross-channel features and their kernel code.
PAIRWISE = {"cov": 0, "cov_oas": 1, "cov_lw": 2, "corr": 3}


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


def split_pairwise_column(column: str) -> tuple[str, str, str] | None:
    """Return ``(ch_i, ch_j, name)`` of a ``<ch_i>:<ch_j>__<name>`` column, else None."""
    head, sep, name = column.partition("__")
    if not sep or name not in PAIRWISE or head.count(":") != 1:
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
