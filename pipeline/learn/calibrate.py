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
from pipeline.learn.sufficient import (
    Moments,
    class_moments,
    identity_scaler,
    lda_from_moments,
    needs_fourth_moments,
)
from pipeline.learn.validation import (
    CalibratedLeaveSubjectOut,
    Fold,
    calibration_rows,
    calibration_segments,
)
from pipeline.spec.learn import ModelSpec

__all__ = [
    "calibrated_fold_proba",
    "calibrated_stats",
    "calibration_pass",
    "calibration_sample_weight",
    "calibration_weight_value",
    "curve_point",
    "fit_weighted",
    "fit_weighted_lda",
    "joint_prepare",
    "lda_from_weighted_moments",
    "subject_calibration",
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
    w = calibration_weight_value(len(is_calibration) - n_cal, n_cal, weight)
    return np.where(is_calibration, w, 1.0)


def calibration_weight_value(n_pooled: float, n_calibration: float, weight: Any) -> float:
    """Return ``w``, the weight of a calibration window (a pooled one weighs 1).

    Parameters
    ----------
    n_pooled, n_calibration : float
        Labeled training windows of the other subjects, and of the held-out subject.
    weight : float, "balanced" or None
        As :func:`calibration_sample_weight`.
    """
    if weight is None or weight == "balanced":
        return n_pooled / n_calibration if n_calibration and n_pooled else 1.0
    return float(weight)


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
        weighted_class_moments(X, y, w, needs_fourth_moments("lda", lda.get_params())),
        lda.get_params(),
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
    X_own, X_test = joint_prepare(prep, table, own, fold.test)
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


def joint_prepare(
    prep: Any, table: pd.DataFrame, own: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Prepare a held-out subject's calibration and test windows in one call.

    A per-recording normalisation then gives both the statistics of the two together (see
    the module docstring), on either engine.

    Parameters
    ----------
    prep : FeaturePrep
        Fitted.
    table : pandas.DataFrame of shape (n_windows, n_columns)
    own, test : numpy.ndarray of int
        Positional rows of the calibration and of the test windows.

    Returns
    -------
    X_own : numpy.ndarray of shape (len(own), n_prepared)
    X_test : numpy.ndarray of shape (len(test), n_prepared)
    """
    joint = np.asarray(prep.transform(table.iloc[np.r_[own, test]]), dtype=float)
    return joint[: len(own)], joint[len(own) :]


def subject_calibration(
    table: pd.DataFrame, splitter: CalibratedLeaveSubjectOut
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Return a held-out subject's calibration and test rows for every k above 0.

    The same selection as :meth:`CalibratedLeaveSubjectOut.folds` makes from the whole
    table, made from the subject's windows alone (its first k repetitions per class are
    its own), so a worker holding the subject computes it.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        Every window of one subject, with ``recording, session, run, start, label``.
    splitter : CalibratedLeaveSubjectOut
        With ``window_length``.

    Returns
    -------
    dict
        ``{k: (calibration rows, test rows)}``, positional into ``table``, sorted.
    """
    ks = [float(k) for k in splitter.calibration if float(k) > 0]
    if not ks:
        return {}
    cols = table.loc[:, ["recording", "session", "run", "start"]]
    # a dask partition's labels may be pandas strings, whose missing value (pd.NA) does not
    # compare: as the memory engine's, None
    label = table["label"].astype(object)
    segs = calibration_segments(cols.assign(label=label.where(label.notna(), None)))
    out = {}
    for k in ks:
        own, spans = splitter._calibration(segs, k)
        out[k] = (own, np.flatnonzero(~splitter._overlaps(table, spans)))
    return out


def calibration_pass(
    df: pd.DataFrame, prep: Any, splitter: CalibratedLeaveSubjectOut, fourth: bool
) -> dict[tuple[str, float], dict[str, Any]]:
    """Return the calibration windows' class moments of every subject of a partition, per k.

    The distributed engine's pass for ``loso_calibrated``: a calibrated fold's training
    statistics are the other subjects' (the total minus the held-out subject's) plus ``w``
    times these (:func:`calibrated_stats`); the windows are prepared with the subject's
    test windows (:func:`joint_prepare`), as :func:`calibrated_fold_proba` does.

    Parameters
    ----------
    df : pandas.DataFrame of shape (n_windows, n_columns)
        Whole subjects (raw features).
    prep : FeaturePrep
        Fitted.
    splitter : CalibratedLeaveSubjectOut
    fourth : bool
        Accumulate the fourth moments (Ledoit-Wolf).

    Returns
    -------
    dict
        ``{(subject, k): {"moments": {class: Moments}, "n_test": int}}``: the labeled
        calibration windows' moments and the number of labeled windows the fold scores.
    """
    out: dict[tuple[str, float], dict[str, Any]] = {}
    if not len(df):
        return out
    subjects = df["subject"].astype(str).to_numpy()
    for s in np.unique(subjects):
        sub = df.iloc[np.flatnonzero(subjects == s)]
        labels = sub["label"].to_numpy(dtype=object)
        for k, (own, test) in subject_calibration(sub, splitter).items():
            X_own, _ = joint_prepare(prep, sub, own, test)
            y = labels[own]
            lab = pd.notna(y)
            out[(str(s), k)] = {
                "moments": {
                    str(c): class_moments(X_own[lab][y[lab] == c], fourth)
                    for c in np.unique(y[lab].astype(str))
                },
                "n_test": int(pd.notna(labels[test]).sum()),
            }
    return out


def calibrated_stats(
    pooled: dict[str, Moments], calibration: dict[str, Moments], weight: Any
) -> dict[str, Moments]:
    """Return a calibrated fold's training moments: pooled + ``w`` x calibration windows'.

    With these, :func:`~pipeline.learn.sufficient.scaler_from_moments` and
    :func:`~pipeline.learn.sufficient.lda_from_moments` give the weighted scaler and LDA
    :func:`calibrated_fold_proba` fits (every statistic is a weighted sum).

    Parameters
    ----------
    pooled : dict
        ``{class: Moments}`` of the other subjects' labeled windows.
    calibration : dict
        ``{class: Moments}`` of the held-out subject's labeled calibration windows.
    weight : float, "balanced" or None
        ``validation.calibration_weight``.
    """
    n_pool = sum(m.n for m in pooled.values())
    n_cal = sum(m.n for m in calibration.values())
    w = calibration_weight_value(n_pool, n_cal, weight)
    out = dict(pooled)
    for c, m in calibration.items():
        scaled = Moments(
            w * m.n,
            w * m.s1,
            w * m.s2,
            None if m.s3 is None else w * m.s3,
            None if m.s4 is None else w * m.s4,
        )
        out[c] = out[c] + scaled if c in out else scaled
    return out


def curve_point(
    k: float,
    n_test: int,
    n_calibration: int,
    overall: dict[str, Any],
    per_subject: dict[str, dict[str, Any]],
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Return one k's point of the ``loso_calibrated`` curve (either engine's report)."""
    names = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
    return {
        "k": k,
        "n_test_windows": int(n_test),
        "n_calibration_windows": int(n_calibration),
        "overall": {m: overall[m] for m in names},
        "per_subject": {s: {m: v[m] for m in names} for s, v in per_subject.items()},
        "worst_subject": summary["balanced_accuracy"],
    }
