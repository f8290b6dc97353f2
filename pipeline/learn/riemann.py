"""Riemannian geometry of per-window spatial covariances: label-free per-subject
re-centring and the tangent-space map (pyriemann), used by :class:`pipeline.learn.FeaturePrep`.

Re-centring (Zanini et al. 2018, "Transfer learning: a Riemannian geometry framework with
applications to brain-computer interfaces"): every subject's matrices ``C`` become
``M^{-1/2} C M^{-1/2}`` with ``M`` the Riemannian (affine-invariant) mean of that subject's
own matrices, so each subject is centred at the identity. It reads matrices only, never
labels; on a held-out subject it uses that subject's unlabeled windows, all of them, which
is what "calibrated (unlabeled)" means in a task (on eeg-arithmetic they hold both the rest
and the task state of the new subject). The tangent space at the training matrices' mean
(at the identity after re-centring) then gives Euclidean vectors for a linear classifier
(Barachant et al. 2012).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np

from pipeline.exceptions import SpecError
from pipeline.features.covariance import pairwise_matrices


@functools.cache
def _geometry() -> SimpleNamespace:
    """pyriemann's geometry functions, imported on first use.

    Importing pyriemann imports ``matplotlib.pyplot`` (its plotting helpers), which would
    select a backend for every ``import pipeline``; only a fit that uses the tangent space
    or re-centring pays for it.
    """
    try:  # pyriemann >= 0.12 moved these (the old modules warn, and go in 0.14)
        from pyriemann.geometry.base import expm, invsqrtm, logm, sqrtm
        from pyriemann.geometry.mean import mean_euclid, mean_logeuclid, mean_riemann
        from pyriemann.geometry.tangentspace import tangent_space
    except ImportError:  # pragma: no cover - pyriemann < 0.12
        from pyriemann.utils.base import expm, invsqrtm, logm, sqrtm
        from pyriemann.utils.mean import mean_euclid, mean_logeuclid, mean_riemann
        from pyriemann.utils.tangentspace import tangent_space
    return SimpleNamespace(
        expm=expm,
        logm=logm,
        sqrtm=sqrtm,
        invsqrtm=invsqrtm,
        means={"riemann": mean_riemann, "logeuclid": mean_logeuclid, "euclid": mean_euclid},
        tangent_space=tangent_space,
    )


__all__ = [
    "RiemannMean",
    "mean_from_sum",
    "mean_sum",
    "recenter",
    "reference_point",
    "spd_matrices",
    "tangent_names",
    "tangent_vectors",
]


def spd_matrices(X: np.ndarray, columns: Sequence[str], name: str) -> tuple[np.ndarray, list[str]]:
    """Rebuild the SPD matrices of pairwise feature ``name`` and check they are SPD.

    Returns
    -------
    mats : ndarray of shape (n_windows, n_channels, n_channels)
    channels : list of str

    Raises
    ------
    SpecError
        A matrix holding NaN or one that is not positive definite (a flat or duplicated
        channel without shrinkage), naming the first offending row.
    """
    mats, channels = pairwise_matrices(X, columns, name)
    bad = ~np.isfinite(mats).all(axis=(1, 2))
    if not bad.any():
        bad = np.linalg.eigvalsh(mats)[:, 0] <= 0
    if bad.any():
        msg = (
            f"Tangent space of {name!r}: expected positive definite matrices, found "
            f"{int(bad.sum())} that are not (first at row {int(np.argmax(bad))}); use a "
            f"shrinkage estimate (cov_oas, cov_lw) or drop flat channels"
        )
        raise SpecError(msg)
    return mats, channels


def recenter(mats: np.ndarray, groups: np.ndarray, metric: str = "riemann") -> np.ndarray:
    """Whiten each group's matrices by the group's own mean (no labels).

    Parameters
    ----------
    mats : ndarray of shape (n_windows, n_channels, n_channels)
        SPD matrices.
    groups : ndarray of shape (n_windows,)
        Group (subject) of every row.
    metric : str
        pyriemann mean: ``"riemann"`` (Riemannian alignment) or ``"euclid"`` (the
        arithmetic mean: Euclidean alignment, He & Wu 2019).

    Returns
    -------
    ndarray of shape (n_windows, n_channels, n_channels)
        ``M_g^{-1/2} C M_g^{-1/2}`` for each row of group ``g``.
    """
    out = np.empty_like(mats)
    groups = np.asarray(groups)
    for g in dict.fromkeys(groups.tolist()):
        sel = groups == g
        geo = _geometry()
        w = geo.invsqrtm(geo.means[metric](mats[sel]))
        out[sel] = w @ mats[sel] @ w
    return out


def tangent_names(name: str, channels: Sequence[str]) -> list[str]:
    """Names of the tangent vector's ``n(n+1)/2`` coordinates (pyriemann's upper-triangle
    order, off-diagonal ones weighted by sqrt 2): ``<ch_i>:<ch_j>__ts_<name>``."""
    c = len(channels)
    return [f"{channels[i]}:{channels[j]}__ts_{name}" for i in range(c) for j in range(i, c)]


def reference_point(mats: np.ndarray, centred: bool, mean: str = "riemann") -> np.ndarray:
    """Return the tangent space's reference point: the ``mean`` of the training matrices
    ``mats``, or the identity when :func:`recenter` centred them already.

    Parameters
    ----------
    mats : ndarray of shape (n_windows, n_channels, n_channels)
        SPD matrices.
    centred : bool
        Whether :func:`recenter` whitened them (the reference is then the identity).
    mean : {"riemann", "logeuclid", "euclid", "identity"}
        pyriemann's ``mean_riemann`` (affine-invariant, iterative), ``mean_logeuclid``
        (``expm`` of the mean of ``logm``: closed form), ``mean_euclid`` (arithmetic), or
        the identity whatever the matrices: the tangent vector is then ``logm(C)``'s upper
        triangle (off-diagonal times sqrt 2), the log-Euclidean vector up to the constant
        ``logm`` of the log-Euclidean mean, which a scaler and a linear model absorb. It
        fits nothing, so it is a per-window map and runs on the distributed engine.

    Returns
    -------
    ndarray of shape (n_channels, n_channels)
    """
    if centred or mean == "identity":
        return np.eye(mats.shape[1])
    if len(mats) == 0:
        msg = (
            f"Tangent space at the training windows' {mean!r} mean: expected at least one "
            f"training window, found none (the distributed engine, also under engine: auto, "
            f"fits the prep on no rows: use tangent_mean: identity there, or engine: memory)"
        )
        raise SpecError(msg)
    return _geometry().means[mean](mats)


def tangent_vectors(mats: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Return the tangent vectors ``(n_windows, n(n+1)/2)`` of ``mats`` at ``reference``
    (``pyriemann.utils.tangentspace.tangent_space``, the map of ``TangentSpace``)."""
    if mats.shape[1:] != reference.shape:
        msg = (
            f"Tangent space: expected {reference.shape[0]} channels (as fitted), found "
            f"matrices of shape {mats.shape[1:]!r}"
        )
        raise SpecError(msg)
    return _geometry().tangent_space(mats, reference, metric="riemann")


def mean_sum(mats: np.ndarray, term: str, reference: np.ndarray | None = None) -> np.ndarray:
    """Return the sum over windows of what a reference mean averages (one pass's share).

    The means of :func:`reference_point` from sums that add across partitions (the
    distributed engine's per-fold means: the sums of a fold's training windows):
    ``"euclid"``, the matrices (also the start of the Riemannian iteration);
    ``"logeuclid"``, their ``logm`` (the mean is ``expm`` of the average); ``"riemann"``,
    ``logm(M^-1/2 C M^-1/2)`` at the iteration's current ``reference`` ``M``
    (:class:`RiemannMean`).

    Parameters
    ----------
    mats : ndarray of shape (n_windows, n_channels, n_channels)
    term : {"euclid", "logeuclid", "riemann"}
    reference : ndarray of shape (n_channels, n_channels), optional
        ``"riemann"`` only.

    Returns
    -------
    ndarray of shape (n_channels, n_channels)
    """
    geo = _geometry()
    if term == "euclid":
        return mats.sum(0)
    if term == "logeuclid":
        return geo.logm(mats).sum(0)
    w = geo.invsqrtm(reference)
    return geo.logm(w @ mats @ w).sum(0)


def mean_from_sum(total: np.ndarray, n: float, term: str) -> np.ndarray:
    """Return the ``"euclid"`` or ``"logeuclid"`` mean from :func:`mean_sum`'s sum of ``n``."""
    return _geometry().expm(total / n) if term == "logeuclid" else total / n


class RiemannMean:
    """pyriemann's ``mean_riemann`` (defaults: tol 1e-8, maxiter 50), one step per pass.

    Each step takes the sum over the windows of ``logm(M^-1/2 C M^-1/2)`` at the current
    ``M`` (:func:`mean_sum` with ``"riemann"``) and updates ``M``, the step size and the
    stopping test as ``mean_riemann`` does; the start is the arithmetic mean. The sums are
    pyriemann's averages times ``n`` summed in another order, so the result agrees with
    ``mean_riemann`` to rounding unless a stopping test falls within rounding of its
    threshold (one more or fewer step then moves ``M`` by less than ``tol``).

    Parameters
    ----------
    total : ndarray of shape (n_channels, n_channels)
        Sum of the matrices.
    n : float
        Number of matrices.
    """

    tol = 1e-8
    maxiter = 50

    def __init__(self, total: np.ndarray, n: float) -> None:
        self.M = total / n
        self.n = n
        self.nu = 1.0
        self.tau = np.finfo(np.float64).max
        self.steps = 0
        self.done = n == 0

    def step(self, log_sum: np.ndarray) -> None:
        """Update ``M`` from the pass's sum of ``logm(M^-1/2 C M^-1/2)``."""
        geo = _geometry()
        J = log_sum / self.n
        m12 = geo.sqrtm(self.M)
        self.M = m12 @ geo.expm(self.nu * J) @ m12
        crit = float(np.linalg.norm(J, ord="fro"))
        h = self.nu * crit
        if h < self.tau:
            self.nu, self.tau = 0.95 * self.nu, h
        else:
            self.nu = 0.5 * self.nu
        self.steps += 1
        if crit <= self.tol or self.nu <= self.tol or self.steps >= self.maxiter:
            self.done = True
