"""Calibrated folds: the held-out subject's labeled windows, weighted, train the fold's model.

In a ``loso_calibrated`` fold with k > 0
(:class:`pipeline.learn.validation.CalibratedLeaveSubjectOut`) the held-out subject's first k
labeled repetitions per class join the other subjects' windows on the training side.
Unweighted, a few hundred such windows among ~18 000 pooled ones barely move a linear model
(on the EMG gesture data, k = 1 gave the k = 0 balanced accuracy). Two things make the fold
use them, as EMG and BCI practice does (weighting the new user's data; supervised adaptation
of an LDA's class means to the user, e.g. Vidaurre et al. 2011, IEEE TBME 58(3):587):

- **Weight** (``validation.calibration_weight``): each calibration window counts ``w`` times
  in the scaler's and the classifier's fit (``sample_weight``). ``"balanced"`` (default) sets
  ``w = n_pooled / n_calibration`` (labeled windows), so the new subject's windows weigh as
  much as all other subjects' together: a shrinkage LDA's class means and covariance become
  half the new subject's, half the population's, whatever k and the cohort size. ``1`` is
  the unweighted fold. LDA is fitted by :func:`fit_weighted_lda` (scikit-learn's has no
  ``sample_weight``); other classifiers take ``sample_weight`` in ``fit``.
- **One normalisation per recording**: the held-out subject's calibration windows are
  prepared (:class:`~pipeline.learn.prep.FeaturePrep`) in one call with its test windows, so
  a per-recording z-score gives both the same statistics, as it does for a user who
  calibrates at the start of a recording and keeps using the interface. Prepared alone,
  the calibration windows (one repetition of each gesture, none of the rest between them)
  would be z-scored with statistics no test window sees. The preparation is label-free and
  the test windows' own statistics already enter their normalisation at k = 0, so no label
  and no scored window trains the classifier (``tests/test_learn_calibration.py``).

At k = 0 the fold is plain leave-one-subject-out, fitted by
:func:`pipeline.learn.fit.fit_pipeline` (no weight, no joint preparation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import VotingClassifier
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import has_fit_parameter

from pipeline.exceptions import SpecError
from pipeline.learn.estimators import make_classifier, make_estimator
from pipeline.learn.model import align_proba
from pipeline.learn.sufficient import Moments, class_moments, identity_scaler, lda_from_moments
from pipeline.learn.validation import Fold, calibration_rows
from pipeline.spec.learn import ModelSpec

__all__ = [
    "calibrated_fold_proba",
    "calibration_sample_weight",
    "fit_weighted",
    "fit_weighted_lda",
    "lda_from_weighted_moments",
    "unweightable",
    "weighted_class_moments",
]


def calibration_sample_weight(is_calibration: np.ndarray, weight: float | str | None) -> np.ndarray:
    """Return the weight of every training window: 1 pooled, ``w`` for calibration windows.

    Parameters
    ----------
    is_calibration : numpy.ndarray of bool, shape (n_labeled_train,)
        True for the held-out subject's calibration windows.
    weight : float, "balanced" or None
        ``w`` itself, or ``"balanced"`` (None): ``n_pooled / n_calibration``, so both
        sides weigh the same in total.

    Returns
    -------
    numpy.ndarray of float, shape (n_labeled_train,)
    """
    n_cal = int(is_calibration.sum())
    n_pool = len(is_calibration) - n_cal
    if weight is None or weight == "balanced":
        w = n_pool / n_cal if n_cal and n_pool else 1.0
    else:
        w = float(weight)
    return np.where(is_calibration, w, 1.0)


def fit_weighted_lda(
    lda: LinearDiscriminantAnalysis, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray
) -> LinearDiscriminantAnalysis:
    """Fit a scikit-learn LDA (``solver="lsqr"``) with sample weights, in place.

    The LDA reads its training windows only through per-class moments, so a weighted fit
    is :func:`pipeline.learn.sufficient.lda_from_moments` of weighted moments (each row
    counted ``w`` times, :func:`~pipeline.learn.sufficient.class_moments`) with a scaler
    that changes nothing: the statistics engine's own fit. With integer weights the fitted
    ``priors_``, ``means_``, ``covariance_``, ``coef_`` and ``intercept_`` equal those of
    ``lda.fit`` on the rows repeated (tested). The result is a plain
    ``LinearDiscriminantAnalysis``, so bundles and prediction are unchanged.

    Parameters
    ----------
    lda : sklearn.discriminant_analysis.LinearDiscriminantAnalysis
        Unfitted, ``solver="lsqr"``, no ``covariance_estimator``.
    X : numpy.ndarray of shape (n_samples, n_features)
    y : numpy.ndarray of shape (n_samples,)
    sample_weight : numpy.ndarray of shape (n_samples,)
        Positive.

    Returns
    -------
    LinearDiscriminantAnalysis
        ``lda``, fitted.

    Raises
    ------
    SpecError
        For another solver, a ``covariance_estimator``, or a weight that is not positive.
    """
    if lda.solver != "lsqr" or lda.covariance_estimator is not None:
        msg = (
            "calibration weights: the weighted LDA needs model.params solver 'lsqr' and no "
            f"covariance_estimator; got solver {lda.solver!r}, covariance_estimator "
            f"{lda.covariance_estimator!r}"
        )
        raise SpecError(msg)
    X = np.asarray(X, dtype=float)
    w = np.asarray(sample_weight, dtype=float)
    if w.shape != (len(X),) or not np.all(w > 0):
        msg = f"sample_weight: {len(X)} positive weights expected, got {w.shape} min {w.min()!r}"
        raise SpecError(msg)
    y = np.asarray(y)
    fitted = lda_from_weighted_moments(
        weighted_class_moments(X, y, w, lda.shrinkage == "auto"), lda.get_params()
    )
    for name, value in vars(fitted).items():
        if name.endswith("_") and not name.startswith("__"):
            setattr(lda, name, value)
    lda._max_components = fitted._max_components
    lda._n_features_out = fitted._n_features_out
    return lda


def weighted_class_moments(
    X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, fourth: bool
) -> dict[str, Moments]:
    """Return each class's moments of the rows of ``X``, row ``i`` counted ``sample_weight[i]``.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
    y : numpy.ndarray of shape (n_samples,)
    sample_weight : numpy.ndarray of shape (n_samples,)
    fourth : bool
        Also the fourth moments (Ledoit-Wolf shrinkage).

    Returns
    -------
    dict
        ``{class: Moments}``, classes as ``unique_labels(y)`` orders them.
    """
    return {c: class_moments(X[y == c], fourth, sample_weight[y == c]) for c in unique_labels(y)}


def lda_from_weighted_moments(
    stats: dict[Any, Moments], params: dict[str, Any]
) -> LinearDiscriminantAnalysis:
    """Return the LDA of class moments taken in the space it sees (an identity scaler).

    Parameters
    ----------
    stats : dict
        ``{class: Moments}`` of the standardized features.
    params : dict
        The LDA's ``get_params()`` (solver, shrinkage, priors, tol are read).
    """
    keep = {k: params[k] for k in ("solver", "shrinkage", "priors", "tol") if k in params}
    if keep.get("priors") is not None:  # as scikit-learn: priors are normalised
        keep["priors"] = np.asarray(keep["priors"], dtype=float) / np.sum(keep["priors"])
    p = len(next(iter(stats.values())).s1)
    return lda_from_moments(stats, identity_scaler(p), keep)


def unweightable(estimator: Any) -> str | None:
    """Return why ``estimator`` cannot be fitted with sample weights, or None if it can.

    Parameters
    ----------
    estimator : classifier or ModelSpec
        A model config is turned into its classifier first (nothing is fitted).
    """
    if isinstance(estimator, ModelSpec):
        estimator = make_classifier(estimator)
    name = type(estimator).__name__
    if isinstance(estimator, LinearDiscriminantAnalysis):
        if estimator.solver != "lsqr" or estimator.covariance_estimator is not None:
            return f"the weighted LDA needs solver 'lsqr', got {estimator.solver!r}"
        return None
    if isinstance(estimator, VotingClassifier):  # scikit-learn passes the weights on
        reasons = [unweightable(e) for _, e in estimator.estimators]
        if any(isinstance(e, LinearDiscriminantAnalysis) for _, e in estimator.estimators):
            return (
                "soft_vote passes sample_weight to LinearDiscriminantAnalysis.fit, which has none"
            )
        return next((r for r in reasons if r is not None), None)
    if not has_fit_parameter(estimator, "sample_weight"):
        return f"{name}.fit takes no sample_weight"
    return None


def fit_weighted(estimator: Any, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> Any:
    """Fit ``estimator`` with ``sample_weight`` (LDA through :func:`fit_weighted_lda`).

    Raises
    ------
    SpecError
        If the estimator cannot take the weights (:func:`unweightable`).
    """
    reason = unweightable(estimator)
    if reason is not None:
        msg = (
            f"validation.calibration_weight: {reason}, so the calibration windows cannot be "
            "weighted; set validation.calibration_weight: 1 or use lda (solver lsqr), logreg, "
            "random_forest, gradient_boosting or sgd"
        )
        raise SpecError(msg)
    if isinstance(estimator, LinearDiscriminantAnalysis):
        return fit_weighted_lda(estimator, X, y, sample_weight)
    return estimator.fit(X, y, sample_weight=sample_weight)


def _fit_tail(tail: Pipeline, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> Pipeline:
    for _, step in tail.steps[:-1]:
        if has_fit_parameter(step, "sample_weight"):
            step.fit(X, y, sample_weight=sample_weight)
        else:
            step.fit(X, y)
        X = step.transform(X)
    fit_weighted(tail.steps[-1][1], X, y, sample_weight)
    return tail


def calibrated_fold_proba(
    table: pd.DataFrame,
    fold: Fold,
    spec: ModelSpec,
    seed: int,
    classes: list[str],
    weight: float | str | None = None,
) -> np.ndarray:
    """Fit a calibrated fold's model and return the class probabilities of its test side.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        The feature table the fold indexes (positional rows).
    fold : Fold
        A ``loso_calibrated`` fold; its training rows of the held-out subject are the
        calibration windows.
    spec : ModelSpec
    seed : int
    classes : list of str
        Order of the probability columns.
    weight : float, "balanced" or None
        ``validation.calibration_weight`` (None: ``"balanced"``).

    Returns
    -------
    numpy.ndarray of shape (len(fold.test), n_classes)
        Smoothed per recording as :func:`pipeline.learn.model.predict_proba` does.
    """
    own = calibration_rows(table, fold)
    pooled = np.setdiff1d(fold.train, own, assume_unique=True)
    pipe = make_estimator(spec, seed)
    prep = pipe[0].fit(table.iloc[fold.train])
    X_pool = prep.transform(table.iloc[pooled])
    joint = prep.transform(table.iloc[np.r_[own, fold.test]])
    X_own, X_test = joint[: len(own)], joint[len(own) :]
    labels = table["label"].to_numpy()
    lab_pool, lab_own = pd.notna(labels[pooled]), pd.notna(labels[own])
    X = np.r_[X_pool[lab_pool], X_own[lab_own]]
    y = np.r_[labels[pooled][lab_pool], labels[own][lab_own]].astype(str)
    is_cal = np.r_[np.zeros(int(lab_pool.sum()), bool), np.ones(int(lab_own.sum()), bool)]
    tail = _fit_tail(
        clone(Pipeline(pipe.steps[1:])), X, y, calibration_sample_weight(is_cal, weight)
    )
    raw = np.asarray(tail.predict_proba(X_test), dtype=float)
    metadata = {"classes": classes, "smooth": spec.smooth or 1}
    return align_proba(raw, [str(c) for c in tail.classes_], metadata, table.iloc[fold.test])
