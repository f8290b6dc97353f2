"""Shrinkage LDA and Gaussian naive Bayes fitted exactly from sufficient statistics.

A fold's training data enter these models only through per-class moments of the prepared
features: the count ``n``, the sum ``s1``, the sum of outer products ``s2`` and, for the
Ledoit-Wolf shrinkage (``shrinkage="auto"``), ``s3[i, j] = sum x_i**2 x_j`` and
``s4[i, j] = sum x_i**2 x_j**2``. Moments add, so the statistics of any union of
recordings (a leave-subject-out training side: the total minus the held-out subject) are
sums, and the fitted estimator is built from them with algebra only.

The result is a real, fitted scikit-learn ``StandardScaler`` and
``LinearDiscriminantAnalysis`` (``solver="lsqr"``) or ``GaussianNB``: their fitted
attributes are set to what ``fit`` on the labeled windows would compute, reproducing
scikit-learn's own steps (``discriminant_analysis._cov``: each class standardized, then
``ledoit_wolf`` on the standardized class data, then rescaled; the class covariances
weighted by the priors; ``lstsq`` for the coefficients). They agree with ``fit`` to float
rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import StandardScaler

from pipeline.exceptions import SpecError

__all__ = [
    "SUFFICIENT_ESTIMATORS",
    "Moments",
    "class_moments",
    "gaussian_nb_from_moments",
    "identity_scaler",
    "lda_from_moments",
    "needs_fourth_moments",
    "scaler_from_moments",
]

SUFFICIENT_ESTIMATORS = ("lda", "gaussian_nb")
"""Model names the statistics engine fits (``model.name``)."""


@dataclass
class Moments:
    """Per-class moments of features, summed over windows.

    Attributes
    ----------
    n : float
    s1 : numpy.ndarray of shape (n_features,)
        Sum of the feature vectors.
    s2 : numpy.ndarray of shape (n_features, n_features)
        Sum of outer products ``x x^T``.
    s3, s4 : numpy.ndarray of shape (n_features, n_features) or None
        ``sum x_i**2 x_j`` and ``sum x_i**2 x_j**2`` (Ledoit-Wolf only).
    """

    n: float
    s1: np.ndarray
    s2: np.ndarray
    s3: np.ndarray | None = None
    s4: np.ndarray | None = None

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            self.n + other.n,
            self.s1 + other.s1,
            self.s2 + other.s2,
            None if self.s3 is None or other.s3 is None else self.s3 + other.s3,
            None if self.s4 is None or other.s4 is None else self.s4 + other.s4,
        )

    def __sub__(self, other: Moments) -> Moments:
        return Moments(
            self.n - other.n,
            self.s1 - other.s1,
            self.s2 - other.s2,
            None if self.s3 is None or other.s3 is None else self.s3 - other.s3,
            None if self.s4 is None or other.s4 is None else self.s4 - other.s4,
        )


def class_moments(X: np.ndarray, fourth: bool, weight: np.ndarray | None = None) -> Moments:
    """Return the moments of the rows of ``X`` (each row counted ``weight`` times).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_windows, n_features)
        float64.
    fourth : bool
        Also accumulate ``s3`` and ``s4`` (Ledoit-Wolf shrinkage needs them).
    weight : numpy.ndarray of shape (n_windows,) or None
        Non-negative row weights (None: 1): with integer weights, the moments of the rows
        repeated that many times (``n`` is the sum of the weights).
    """
    X2 = X * X if fourth else None
    if weight is None:
        return Moments(
            float(len(X)),
            X.sum(0),
            X.T @ X,
            None if X2 is None else X2.T @ X,
            None if X2 is None else X2.T @ X2,
        )
    w = np.asarray(weight, dtype=float)
    Xw = X * w[:, None]
    X2w = None if X2 is None else X2 * w[:, None]
    return Moments(
        float(w.sum()),
        Xw.sum(0),
        Xw.T @ X,
        None if X2w is None else X2w.T @ X,
        None if X2w is None else X2w.T @ X2,
    )


def needs_fourth_moments(name: str, params: Mapping[str, Any] | None) -> bool:
    """Return whether the model of ``name`` and ``params`` needs ``s3`` and ``s4``."""
    return name == "lda" and (params or {}).get("shrinkage") == "auto"


def _mean_var(n: float, s1: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = s1 / n
    # population variance, as StandardScaler and GaussianNB compute it
    return mean, np.maximum(q / n - mean * mean, 0.0)


def _scale(var: np.ndarray, mean: np.ndarray, n: float) -> np.ndarray:
    """Return ``sqrt(var)`` with near-constant features given scale 1, as StandardScaler."""
    eps = np.finfo(np.float64).eps
    # sklearn.preprocessing._data._is_constant_feature: var below the rounding error bound
    bound = n * eps * var + (n * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[(var <= bound) | (scale < 10 * eps)] = 1.0
    return scale


def scaler_from_moments(stats: Mapping[str, Moments]) -> StandardScaler:
    """Return a fitted ``StandardScaler`` equal to one fitted on the windows of ``stats``.

    Parameters
    ----------
    stats : mapping of str to Moments
        The moments of each class (the scaler sees every labeled window).
    """
    total = _total(stats)
    mean, var = _mean_var(total.n, total.s1, np.diag(total.s2))
    scaler = StandardScaler()
    scaler.mean_ = mean
    scaler.var_ = var
    scaler.scale_ = _scale(var, mean, total.n)
    scaler.n_samples_seen_ = int(total.n)
    scaler.n_features_in_ = len(mean)
    return scaler


def identity_scaler(n_features: int) -> StandardScaler:
    """Return a fitted ``StandardScaler`` that leaves ``n_features`` features unchanged.

    :func:`lda_from_moments` with it fits the LDA on the features as they are (the
    weighted LDA of :mod:`pipeline.learn.calibrate`, whose features a weighted scaler
    has already standardized).
    """
    scaler = StandardScaler(with_mean=False, with_std=False)
    scaler.mean_ = np.zeros(n_features)
    scaler.var_ = np.ones(n_features)
    scaler.scale_ = np.ones(n_features)
    scaler.n_features_in_ = n_features
    return scaler


def _total(stats: Mapping[str, Moments]) -> Moments:
    it = iter(stats.values())
    total = next(it)
    for m in it:
        total = total + m
    return total


def _scaled_class(m: Moments, scaler: StandardScaler) -> tuple[np.ndarray, np.ndarray]:
    """Return a class's mean and centered covariance (population) in the scaled space."""
    mean = m.s1 / m.n
    cov = m.s2 / m.n - np.outer(mean, mean)
    s = scaler.scale_
    return (mean - scaler.mean_) / s, cov / np.outer(s, s)


def _ledoit_wolf_cov(m: Moments, scaler: StandardScaler) -> np.ndarray:
    """Return ``discriminant_analysis._cov(X_scaled, "auto")`` of one class from its moments."""
    if m.s3 is None or m.s4 is None:
        msg = "shrinkage='auto' needs the fourth moments (s3, s4) of every class"
        raise SpecError(msg)
    n = m.n
    mean = m.s1 / m.n
    q = np.diag(m.s2)
    cov = m.s2 / n - np.outer(mean, mean)
    var = np.maximum(np.diag(cov).copy(), 0.0)
    sd = _scale(var, mean, n)  # the class's own StandardScaler
    p = len(mean)
    # centered fourth moments sum_n (x_i - m_i)^2 (x_j - m_j)^2, expanded in raw moments
    mi, mj = mean[:, None], mean[None, :]
    c4 = (
        m.s4
        - 2 * mj * m.s3
        - 2 * mi * m.s3.T
        + mj**2 * q[:, None]
        + mi**2 * q[None, :]
        + 4 * mi * mj * m.s2
        - 2 * mi * mj**2 * m.s1[:, None]
        - 2 * mi**2 * mj * m.s1[None, :]
        + n * mi**2 * mj**2
    )
    outer_sd = np.outer(sd, sd)
    emp = cov / outer_sd  # empirical covariance of the standardized class data
    if p == 1:
        shrinkage = 0.0
    else:
        trace = np.diag(emp)
        mu = trace.sum() / p
        beta_ = float((c4 / outer_sd**2).sum())
        delta_ = float((emp**2).sum())
        beta = 1.0 / (p * n) * (beta_ / n - delta_)
        delta = (delta_ - 2.0 * mu * trace.sum() + p * mu**2) / p
        beta = min(beta, delta)
        shrinkage = 0.0 if beta == 0 else beta / delta
    mu = np.trace(emp) / p
    shrunk = (1.0 - shrinkage) * emp
    shrunk.flat[:: p + 1] += shrinkage * mu
    s = sd / scaler.scale_  # the class scale in the space the LDA sees
    return s[:, None] * shrunk * s[None, :]


def _shrunk_cov(m: Moments, scaler: StandardScaler, shrinkage: Any) -> np.ndarray:
    """Return ``discriminant_analysis._cov(X_scaled, shrinkage)`` of the windows of ``m``."""
    if shrinkage == "auto":
        return _ledoit_wolf_cov(m, scaler)
    _, cov = _scaled_class(m, scaler)
    if isinstance(shrinkage, Real) and not isinstance(shrinkage, bool):
        p = len(cov)
        mu = np.trace(cov) / p
        cov = (1.0 - shrinkage) * cov
        cov.flat[:: p + 1] += shrinkage * mu
    elif shrinkage not in (None, "empirical"):
        msg = f"model.params.shrinkage: None, 'auto' or a float in [0, 1], got {shrinkage!r}"
        raise SpecError(msg)
    return cov


def lda_from_moments(
    stats: Mapping[str, Moments], scaler: StandardScaler, params: Mapping[str, Any] | None
) -> LinearDiscriminantAnalysis:
    """Return a fitted ``LinearDiscriminantAnalysis`` (``lsqr`` or ``eigen``) from moments.

    Parameters
    ----------
    stats : mapping of str to Moments
        Moments of each class in the prepared (unscaled) feature space; classes with no
        window are left out (as ``fit`` would never see them).
    scaler : StandardScaler
        From :func:`scaler_from_moments` of the same ``stats``.
    params : mapping or None
        ``shrinkage`` (None, ``"auto"`` or a float in [0, 1]), ``priors``; ``solver``
        ``"lsqr"`` (the default here) or ``"eigen"``.

    Raises
    ------
    SpecError
        For a solver or parameter the statistics engine does not reproduce.
    """
    params = {"solver": "lsqr"} | dict(params or {})
    unknown = sorted(set(params) - {"solver", "shrinkage", "priors", "tol"})
    if params["solver"] not in ("lsqr", "eigen") or unknown:
        msg = (
            f"model.params {dict(params)!r}: the distributed engine fits LDA with "
            f"solver 'lsqr' or 'eigen' and parameters shrinkage, priors; got solver "
            f"{params['solver']!r}{f' and {unknown}' if unknown else ''}; use "
            "model.engine: memory for the others"
        )
        raise SpecError(msg)
    shrinkage = params.get("shrinkage")
    classes = sorted(c for c, m in stats.items() if m.n > 0)
    counts = np.array([stats[c].n for c in classes])
    priors = (
        counts / counts.sum()
        if params.get("priors") is None
        else np.asarray(params["priors"], dtype=float)
    )
    means_ = np.asarray([_scaled_class(stats[c], scaler)[0] for c in classes])
    covs = [_shrunk_cov(stats[c], scaler, shrinkage) for c in classes]
    covariance = sum(w * c for w, c in zip(priors, covs, strict=True))
    lda = LinearDiscriminantAnalysis(**params)
    lda.classes_ = np.asarray(classes)
    lda.priors_ = priors
    lda.means_ = means_
    lda.covariance_ = covariance
    n_comp = min(len(classes) - 1, means_.shape[1])
    if params["solver"] == "eigen":
        # discriminant_analysis._solve_eigen: total scatter from every window's moments
        total = _shrunk_cov(_total({c: stats[c] for c in classes}), scaler, shrinkage)
        evals, evecs = linalg.eigh(total - covariance, covariance)
        lda.explained_variance_ratio_ = np.sort(evals / np.sum(evals))[::-1][:n_comp]
        evecs = evecs[:, np.argsort(evals)[::-1]]
        lda.scalings_ = evecs
        coef = means_ @ evecs @ evecs.T
    else:
        coef = linalg.lstsq(covariance, means_.T)[0].T
    intercept = -0.5 * np.diag(means_ @ coef.T) + np.log(priors)
    if len(classes) == 2:
        coef = (coef[1, :] - coef[0, :]).reshape(1, -1)
        intercept = np.array([intercept[1] - intercept[0]])
    lda.coef_ = coef
    lda.intercept_ = intercept
    lda.n_features_in_ = means_.shape[1]
    lda._max_components = n_comp
    lda._n_features_out = lda._max_components
    return lda


def gaussian_nb_from_moments(
    stats: Mapping[str, Moments], scaler: StandardScaler, params: Mapping[str, Any] | None
) -> GaussianNB:
    """Return a fitted ``GaussianNB`` from class moments (see :func:`lda_from_moments`).

    Raises
    ------
    SpecError
        For a parameter other than ``var_smoothing`` and ``priors``.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - {"var_smoothing", "priors"})
    if unknown:
        msg = f"model.params {unknown} of gaussian_nb: only var_smoothing and priors are taken"
        raise SpecError(msg)
    nb = GaussianNB(**params)
    classes = sorted(c for c, m in stats.items() if m.n > 0)
    total = _total({c: stats[c] for c in classes})
    s = scaler.scale_
    # variance of the scaled features over every window, which sets epsilon
    _, var_all = _mean_var(total.n, total.s1, np.diag(total.s2))
    nb.epsilon_ = nb.var_smoothing * float(np.max(var_all / (s * s)))
    theta, var = [], []
    for c in classes:
        mean, cov = _scaled_class(stats[c], scaler)
        theta.append(mean)
        var.append(np.maximum(np.diag(cov), 0.0) + nb.epsilon_)
    counts = np.array([stats[c].n for c in classes])
    nb.classes_ = np.asarray(classes)
    nb.theta_ = np.asarray(theta)
    nb.var_ = np.asarray(var)
    nb.class_count_ = counts
    nb.class_prior_ = (
        counts / counts.sum() if nb.priors is None else np.asarray(nb.priors, dtype=float)
    )
    nb.n_features_in_ = len(s)
    return nb
