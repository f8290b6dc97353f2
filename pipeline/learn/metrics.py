"""Classification metrics, overall and per subject, and thresholds at a target specificity."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from pipeline._fs import atomic_path
from pipeline.exceptions import SpecError

SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def sensitivity_specificity(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per-class sensitivity and specificity from a confusion matrix.

    Parameters
    ----------
    cm : numpy.ndarray of shape (n_classes, n_classes)
        Rows are true classes, columns predicted classes.

    Returns
    -------
    sensitivity, specificity : numpy.ndarray of shape (n_classes,)
        ``TP / (TP + FN)`` and ``TN / (TN + FP)`` one-vs-rest; NaN when undefined.
    """
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    fn = cm.sum(1) - tp
    fp = cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fn), tn / (tn + fp)


def class_codes(values: Sequence[Any], classes: Sequence[Any]) -> np.ndarray:
    """Return the index of each value in ``classes`` (-1 for a value not among them).

    Parameters
    ----------
    values : sequence of shape (n_windows,)
    classes : sequence of shape (n_classes,)
        Distinct.

    Returns
    -------
    numpy.ndarray of shape (n_windows,)
        int64 codes.
    """
    index = pd.Index(list(classes), dtype=object)
    return np.asarray(index.get_indexer(np.asarray(values, dtype=object)), dtype=np.int64)


def confusion_from_codes(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Return the confusion matrix of class codes (rows true); windows coded -1 are left out.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray of shape (n_windows,)
        Codes from :func:`class_codes`.
    n_classes : int

    Returns
    -------
    numpy.ndarray of shape (n_classes, n_classes)
        int64, as ``sklearn.metrics.confusion_matrix(..., labels=classes)``.
    """
    ok = (y_true >= 0) & (y_pred >= 0)
    flat = y_true[ok] * n_classes + y_pred[ok]
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def metrics_from_confusion(
    cm: np.ndarray,
    classes: Sequence[Any],
    *,
    n_windows: int | None = None,
    accuracy: float | None = None,
) -> dict[str, Any]:
    """Return the confusion-based part of :func:`classification_metrics` from counts.

    What the distributed engine reduces per partition is enough: confusion matrices add.

    Parameters
    ----------
    cm : numpy.ndarray of shape (n_classes, n_classes)
        Rows are true classes, columns predicted classes.
    classes : sequence of shape (n_classes,)
    n_windows, accuracy : int and float, optional
        When windows outside ``classes`` were scored (then not in ``cm``): their number and
        the accuracy over all of them; by default ``cm``'s total and trace / total.

    Returns
    -------
    dict
        As :func:`classification_metrics`, ``roc_auc`` None (it needs the scores).

    Raises
    ------
    SpecError
        If ``cm`` counts no window.
    """
    cm = np.asarray(cm, dtype=np.int64)
    classes = list(classes)
    total = int(cm.sum()) if n_windows is None else int(n_windows)
    if total == 0:
        msg = "classification_metrics: no window to score (y_true is empty)"
        raise SpecError(msg)
    support, predicted, tp = cm.sum(1), cm.sum(0), np.diag(cm)
    present = np.flatnonzero(support > 0)
    sens, spec = sensitivity_specificity(cm)
    # f1 of class c = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted), as scikit-learn
    f1 = 2.0 * tp[present] / (support[present] + predicted[present])
    return {
        "n_windows": total,
        "accuracy": float(tp.sum() / total) if accuracy is None else float(accuracy),
        "balanced_accuracy": float(np.mean(sens[present])) if len(present) else float("nan"),
        "f1_macro": float(np.mean(f1)) if len(present) else 0.0,
        "roc_auc": None,
        "classes": [str(c) for c in classes],
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": {
            str(c): {
                "sensitivity": _none_if_nan(sens[i]),
                "specificity": _none_if_nan(spec[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
    }


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Return the ROC AUC of scores (the Mann-Whitney statistic, ties counting one half).

    Equal to ``sklearn.metrics.roc_auc_score(positive, score)`` (the trapezoids of the ROC
    curve) up to float rounding; NaN when either side is empty.

    Parameters
    ----------
    positive : numpy.ndarray of shape (n_windows,)
        bool.
    score : numpy.ndarray of shape (n_windows,)
    """
    # sorted once, tie runs by their edges: about a third of np.unique(return_inverse)'s
    # temporaries (9.6 M scores a class on the large cohort); the sums are of integers and
    # half-integers far below 2**53, so the figure is the same to the last bit
    order = np.argsort(score, kind="stable")
    pos = np.asarray(positive, dtype=bool)[order]
    ordered = np.asarray(score)[order]
    del order
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    del ordered
    wp = np.add.reduceat(pos, starts, dtype=np.int64).astype(float) if len(pos) else np.zeros(0)
    wn = np.diff(np.r_[starts, len(pos)]).astype(float) - wp
    total_p, total_n = wp.sum(), wn.sum()
    if total_p == 0 or total_n == 0:
        return float("nan")
    below = np.cumsum(wn) - wn
    return float(np.sum(wp * (below + 0.5 * wn)) / (total_p * total_n))


def auc_from_scores(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> float | None:
    """Return :func:`classification_metrics`' ``roc_auc`` from class codes and scores.

    Parameters
    ----------
    y_true : numpy.ndarray of shape (n_windows,)
        Codes from :func:`class_codes` (-1 counts as a negative of every class).
    proba : numpy.ndarray of shape (n_windows, n_classes), or (n_windows,) for two
        classes (the second class's probability: the only column the AUC reads)
    n_classes : int

    Returns
    -------
    float or None
        Binary: the AUC of the second class; more classes: the one-vs-rest AUC averaged
        over the classes present in ``y_true``; None with fewer than two classes present.
    """
    present = np.flatnonzero(np.bincount(y_true[y_true >= 0], minlength=n_classes))
    if len(present) < 2:
        return None
    if n_classes == 2:
        score = proba if proba.ndim == 1 else proba[:, 1]
        return float(binary_auc(y_true == 1, score))
    # One-vs-rest, macro over the classes present in y_true (a class absent from a test
    # subject has no positive and its AUC is undefined).
    aucs = [binary_auc(y_true == j, proba[:, j]) for j in present]
    return _none_if_nan(float(np.mean(aucs)))


def classification_metrics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    proba: np.ndarray | None,
    classes: Sequence[Any],
) -> dict[str, Any]:
    """Return accuracy, balanced accuracy, macro F1, per-class figures, confusion and AUC.

    Parameters
    ----------
    y_true, y_pred : sequence of shape (n_windows,)
        Class names.
    proba : numpy.ndarray of shape (n_windows, n_classes) or None
        Probabilities, columns ordered as ``classes``.
    classes : sequence of shape (n_classes,)
        All classes of the model, fixing the order of every per-class figure.

    Returns
    -------
    dict
        ``accuracy, balanced_accuracy, f1_macro, roc_auc`` (float or None when undefined,
        e.g. a test subject holding one class), ``per_class`` {class: {sensitivity,
        specificity, support}}, ``confusion_matrix`` (list of lists, rows = true class),
        ``classes``, ``n_windows``. Balanced accuracy and macro F1 are over the classes
        present in ``y_true``. Computed from integer codes (:func:`metrics_from_confusion`,
        :func:`auc_from_scores`): the figures of scikit-learn's functions to float rounding.
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    if len(y_true) == 0:
        msg = "classification_metrics: no window to score (y_true is empty)"
        raise SpecError(msg)
    yt, yp = class_codes(y_true, classes), class_codes(y_pred, classes)
    return _code_metrics(yt, yp, proba, list(classes), float(np.mean(y_true == y_pred)))


def _code_metrics(
    yt: np.ndarray,
    yp: np.ndarray,
    proba: np.ndarray | None,
    classes: list[Any],
    accuracy: float | None = None,
) -> dict[str, Any]:
    cm = confusion_from_codes(yt, yp, len(classes))
    out = metrics_from_confusion(cm, classes, n_windows=len(yt), accuracy=accuracy)
    if proba is not None:
        out["roc_auc"] = auc_from_scores(yt, np.asarray(proba, dtype=float), len(classes))
    return out


def per_subject_metrics(
    subjects: Sequence[Any],
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    proba: np.ndarray | None,
    classes: Sequence[Any],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float | None]]]:
    """Return metrics per subject and their min/median/max/mean over subjects.

    Parameters
    ----------
    subjects, y_true, y_pred : sequence of shape (n_windows,)
    proba : numpy.ndarray of shape (n_windows, n_classes) or None
    classes : sequence of shape (n_classes,)

    Returns
    -------
    per_subject : dict
        ``{subject: classification_metrics(...)}``.
    summary : dict
        ``{metric: {"min", "median", "max", "mean", "worst_subject"}}`` for
        ``accuracy, balanced_accuracy, f1_macro, roc_auc`` (subjects with an undefined
        value are skipped).
    """
    subjects = np.asarray(subjects).astype(str)
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    classes = list(classes)
    yt, yp = class_codes(y_true, classes), class_codes(y_pred, classes)
    correct = y_true == y_pred
    names, sid = np.unique(subjects, return_inverse=True)
    per: dict[str, dict[str, Any]] = {}
    for s, rows in zip(names, rows_by_code(sid, len(names)), strict=True):
        per[str(s)] = _code_metrics(
            yt[rows],
            yp[rows],
            None if proba is None else proba[rows],
            classes,
            float(np.mean(correct[rows])),
        )
    return per, summarize_subjects(per)


def rows_by_code(codes: np.ndarray, n: int) -> list[np.ndarray]:
    """Return the row indices of each code 0 .. n - 1 (increasing within a code)."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n)]


def summarize_subjects(
    per: dict[str, dict[str, Any]],
) -> dict[str, dict[str, float | None]]:
    """Return ``{metric: {"min", "median", "max", "mean", "worst_subject"}}`` over subjects.

    Parameters
    ----------
    per : dict
        ``{subject: classification_metrics(...)}``; subjects with an undefined value of a
        metric are skipped for it.
    """
    summary: dict[str, dict[str, float | None]] = {}
    for name in SUMMARY_METRICS:
        vals = {s: d[name] for s, d in per.items() if d[name] is not None}
        if not vals:
            summary[name] = {"min": None, "median": None, "max": None, "mean": None}
            continue
        arr = np.array(list(vals.values()))
        summary[name] = {
            "min": float(arr.min()),
            "median": float(np.median(arr)),
            "max": float(arr.max()),
            "mean": float(arr.mean()),
            "worst_subject": min(vals, key=vals.get),
        }
    return summary


def threshold_at_specificity(
    y_true: Sequence[bool], score: Sequence[float], specificity: float = 0.9
) -> dict[str, float]:
    """Return the lowest threshold whose specificity reaches a target, and its sensitivity.

    A window is called positive when ``score >= threshold``. Among thresholds with
    specificity ``>= specificity`` the one with the highest sensitivity is chosen.

    Parameters
    ----------
    y_true : sequence of bool, shape (n_windows,)
        True for the positive class.
    score : sequence of float, shape (n_windows,)
        Positive-class probability or score.
    specificity : float
        Target specificity in (0, 1].

    Returns
    -------
    dict
        ``{"threshold", "sensitivity", "specificity", "target_specificity"}``.
    """
    if not 0 < specificity <= 1:
        msg = f"threshold_at_specificity: specificity must be in (0, 1], got {specificity!r}"
        raise SpecError(msg)
    y = np.asarray(y_true, dtype=bool)
    if y.all() or not y.any():
        msg = "threshold_at_specificity: y_true needs both positive and negative windows"
        raise SpecError(msg)
    fpr, tpr, thr = roc_curve(y, np.asarray(score, dtype=float))
    ok = (1 - fpr) >= specificity - 1e-12
    i = int(np.flatnonzero(ok)[np.argmax(tpr[ok])])
    threshold = float(thr[i]) if np.isfinite(thr[i]) else float(np.max(score)) + 1e-12
    return {
        "threshold": threshold,
        "sensitivity": float(tpr[i]),
        "specificity": float(1 - fpr[i]),
        "target_specificity": float(specificity),
    }


def roc_curves(
    y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any], max_points: int = 200
) -> dict[str, dict[str, list[float]]]:
    """Return one-vs-rest ROC curves (downsampled to ``max_points``) for plotting.

    Returns
    -------
    dict
        ``{class: {"fpr": [...], "tpr": [...], "auc": float}}``; for two classes only the
        second (positive) class.
    """
    return roc_curves_from_codes(class_codes(y_true, classes), proba, classes, max_points)


def roc_curves_from_codes(
    codes: np.ndarray, proba: np.ndarray, classes: Sequence[Any], max_points: int = 200
) -> dict[str, dict[str, list[float]]]:
    """Return :func:`roc_curves` from class codes (:func:`class_codes`) of the true classes.

    Parameters
    ----------
    codes : numpy.ndarray of shape (n_windows,)
        Integer codes into ``classes``.
    proba : numpy.ndarray of shape (n_windows, n_classes)
    classes : sequence of shape (n_classes,)
    max_points : int
    """
    classes = list(classes)
    targets = classes[1:] if len(classes) == 2 else classes
    out = {}
    for c in targets:
        pos = codes == classes.index(c)
        if pos.all() or not pos.any():
            continue
        fpr, tpr, _ = roc_curve(pos, proba[:, classes.index(c)])
        if len(fpr) > max_points:
            idx = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
            fpr, tpr = fpr[idx], tpr[idx]
        out[str(c)] = {
            "fpr": fpr.round(5).tolist(),
            "tpr": tpr.round(5).tolist(),
            "auc": binary_auc(pos, proba[:, classes.index(c)]),
        }
    return out


def predictions_frame(
    table: pd.DataFrame, y_pred: np.ndarray, proba: np.ndarray | None, classes: Sequence[Any]
) -> pd.DataFrame:
    """Return identifier columns of ``table`` plus ``prediction`` and ``proba__<class>``."""
    ids = [c for c in ("recording", "subject", "session", "run", "start", "label") if c in table]
    out = table.loc[:, ids].reset_index(drop=True).copy()
    out["prediction"] = np.asarray(y_pred, dtype=object)
    if proba is not None:
        for i, c in enumerate(classes):
            out[f"proba__{c}"] = proba[:, i]
    return out


OOF_COLUMNS = ("recording", "start", "subject", "fold", "true", "predicted")
"""The out-of-fold predictions files' leading columns; ``proba__<class>`` follow."""


def oof_frame(
    ids: pd.DataFrame,
    fold: np.ndarray,
    true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[Any],
) -> pd.DataFrame:
    """Return rows of the out-of-fold predictions files (the same schema on both engines).

    Parameters
    ----------
    ids : pandas.DataFrame of shape (n_rows, ...)
        ``recording, start, subject`` of each scored window.
    fold : numpy.ndarray of shape (n_rows,)
        Index of the fold (in the report's ``folds``) that scored it.
    true : numpy.ndarray of shape (n_rows,)
        Class codes into ``classes``.
    proba : numpy.ndarray of shape (n_rows, n_classes)
    classes : sequence of shape (n_classes,)

    Returns
    -------
    pandas.DataFrame
        :data:`OOF_COLUMNS` (strings, float64 start, int32 fold), then ``proba__<class>``
        float64 per class; ``predicted`` is the class of the largest probability.
    """
    names = np.asarray([str(c) for c in classes], dtype=object)
    out = pd.DataFrame(
        {
            "recording": ids["recording"].astype(str).to_numpy(dtype=object),
            "start": ids["start"].to_numpy(dtype=float),
            "subject": ids["subject"].astype(str).to_numpy(dtype=object),
            "fold": np.asarray(fold, dtype=np.int32),
            "true": names[np.asarray(true)],
            "predicted": names[np.asarray(proba).argmax(1)],
        }
    )
    for j, c in enumerate(names):
        out[f"proba__{c}"] = np.asarray(proba[:, j], dtype=float)
    return out


def write_oof(frame: pd.DataFrame, directory: str | os.PathLike[str], part: int) -> Path:
    """Write :func:`oof_frame` rows to ``directory/part-<part>.parquet`` (atomically)."""
    path = Path(directory) / f"part-{int(part):05d}.parquet"
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def baseline_scores(y_true: Sequence[Any], classes: Sequence[Any]) -> dict[str, Any]:
    """Return the scores of the majority-class predictor and of a chance-level guesser.

    Parameters
    ----------
    y_true : sequence of shape (n_windows,)
        Class names of the scored windows.
    classes : sequence of shape (n_classes,)

    Returns
    -------
    dict
        ``majority_class`` (the most frequent class, ties to the first in ``classes``),
        ``majority`` {metric: score} of predicting it for every window with the class
        frequencies as probabilities (so its ROC AUC is 0.5), and ``chance`` {metric: score}
        expected of a guess drawn at random with the class frequencies: accuracy
        ``sum(p_k**2)``, balanced accuracy and macro F1 ``1 / K`` (K classes present; each
        class's precision and recall are then ``p_k``), ROC AUC 0.5.
    """
    return baseline_from_codes(class_codes(y_true, classes), classes)


def baseline_from_codes(codes: np.ndarray, classes: Sequence[Any]) -> dict[str, Any]:
    """Return :func:`baseline_scores` from class codes (:func:`class_codes`, -1 outside).

    The majority predictor's figures come from its confusion matrix (every window predicted
    as the majority class) and its constant probabilities tie every window (ROC AUC 0.5):
    no per-window array is built.

    Parameters
    ----------
    codes : numpy.ndarray of shape (n_windows,)
    classes : sequence of shape (n_classes,)
    """
    classes = list(classes)
    codes = np.asarray(codes)
    counts = np.bincount(codes[codes >= 0], minlength=len(classes)).astype(float)
    if counts.sum() == 0:
        msg = "baseline_scores: no window to score (y_true is empty)"
        raise SpecError(msg)
    prior = counts / counts.sum()
    top = int(np.argmax(counts))
    majority = classes[top]
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    cm[:, top] = counts
    m = metrics_from_confusion(cm, classes, n_windows=len(codes), accuracy=counts[top] / len(codes))
    k = int(np.count_nonzero(counts))
    # all scores tie: the Mann-Whitney statistic of every class present is one half
    m["roc_auc"] = 0.5 if k >= 2 else None
    chance = {
        "accuracy": float(np.sum(prior**2)),
        "balanced_accuracy": 1.0 / k,
        "f1_macro": 1.0 / k,
        "roc_auc": 0.5 if k >= 2 else None,
    }
    return {
        "majority_class": str(majority),
        "majority": {name: m[name] for name in SUMMARY_METRICS},
        "chance": chance,
    }


def calibration_metrics(
    y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any], n_bins: int = 10
) -> dict[str, Any]:
    """Return the Brier score, the expected calibration error and reliability bins.

    Parameters
    ----------
    y_true : sequence of shape (n_windows,)
        Class names.
    proba : numpy.ndarray of shape (n_windows, n_classes)
        Probabilities, columns ordered as ``classes``.
    classes : sequence of shape (n_classes,)
    n_bins : int, default 10
        Equal-width confidence bins ``(i / n_bins, (i + 1) / n_bins]`` (the first closed).

    Returns
    -------
    dict
        ``brier``: for two classes ``mean((p_positive - y)**2)`` with the second class
        positive (as :func:`sklearn.metrics.brier_score_loss`); for more, Brier's original
        ``mean(sum_k (p_k - y_k)**2)`` (in [0, 2]); ``brier_definition`` says which.
        ``ece``: ``sum_b n_b / n * |accuracy_b - confidence_b|`` over bins of the top-label
        confidence (the predicted class's probability; Guo et al. 2017).
        ``reliability``: per non-empty bin ``low, high, n, confidence, accuracy``.
    """
    y_true = np.asarray(y_true, dtype=object)
    return calibration_from_codes(class_codes(y_true, classes), proba, classes, n_bins)


def calibration_from_codes(
    codes: np.ndarray, proba: np.ndarray, classes: Sequence[Any], n_bins: int = 10
) -> dict[str, Any]:
    """Return :func:`calibration_metrics` from class codes (:func:`class_codes`).

    Parameters
    ----------
    codes : numpy.ndarray of shape (n_windows,)
    proba : numpy.ndarray of shape (n_windows, n_classes)
    classes : sequence of shape (n_classes,)
    n_bins : int, default 10
    """
    proba = np.asarray(proba, dtype=float)
    classes = list(classes)
    if proba.shape != (len(codes), len(classes)):
        msg = (
            f"calibration_metrics: proba expected shape ({len(codes)}, {len(classes)}), "
            f"found {proba.shape}"
        )
        raise SpecError(msg)
    if len(codes) == 0:
        msg = "calibration_metrics: no window to score (y_true is empty)"
        raise SpecError(msg)
    # one class column at a time: no (n_windows, n_classes) temporaries (9.6 M windows x 6
    # classes are 460 MB each); the row sums add the columns in the same order as np.sum
    if len(classes) == 2:
        brier = float(np.mean((proba[:, 1] - (codes == 1)) ** 2))
        definition = f"mean((p[{classes[1]}] - y)^2), binary"
    else:
        total = np.zeros(len(codes))
        for j in range(len(classes)):
            total += (proba[:, j] - (codes == j)) ** 2
        brier = float(np.mean(total))
        del total
        definition = "mean(sum_k (p_k - y_k)^2), multi-class (Brier 1950), range [0, 2]"
    conf = proba.max(axis=1)
    correct = (proba.argmax(1) == codes).astype(float)
    # inner edges b / n_bins; a confidence on an edge belongs to the bin below it
    idx = np.searchsorted(np.arange(1, n_bins) / n_bins, conf, side="left")
    ece = 0.0
    bins = []
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        if not n:
            continue
        acc, cf = float(correct[m].mean()), float(conf[m].mean())
        ece += n / len(codes) * abs(acc - cf)
        bins.append(
            {"low": b / n_bins, "high": (b + 1) / n_bins, "n": n, "confidence": cf, "accuracy": acc}
        )
    return {
        "brier": brier,
        "brier_definition": definition,
        "ece": float(ece),
        "n_bins": int(n_bins),
        "reliability": bins,
    }


def _weighted_auc(
    groups: np.ndarray, pos: np.ndarray, w: np.ndarray | float, n_groups: int
) -> float:
    """Return the ROC AUC of windows weighted by ``w`` (ties count one half).

    ``groups`` numbers the distinct scores in increasing order; a weight of 2 counts a
    window twice, which is what drawing its subject twice in a bootstrap does.
    """
    wp = np.bincount(groups, weights=np.where(pos, w, 0.0), minlength=n_groups)
    wn = np.bincount(groups, weights=np.where(pos, 0.0, w), minlength=n_groups)
    total_p, total_n = wp.sum(), wn.sum()
    if total_p == 0 or total_n == 0:
        return float("nan")
    below = np.cumsum(wn) - wn
    return float(np.sum(wp * (below + 0.5 * wn)) / (total_p * total_n))


def pair_rank_sums(
    subject: np.ndarray, positive: np.ndarray, score: np.ndarray, n_subjects: int
) -> np.ndarray:
    """Return the Mann-Whitney counts of every (positive subject, negative subject) pair.

    ``U[s, t]`` = the number of (positive window of ``s``, negative window of ``t``) pairs
    whose positive scores higher, ties counting one half. The AUC of any weighting ``w`` of
    the subjects (a bootstrap replicate) is then ``w @ U @ w / ((w @ P) (w @ N))`` with
    ``P``, ``N`` the subjects' positive and negative counts: exact, without the windows.

    Parameters
    ----------
    subject : numpy.ndarray of shape (n_windows,)
        Subject codes 0 .. n_subjects - 1.
    positive : numpy.ndarray of shape (n_windows,)
        bool.
    score : numpy.ndarray of shape (n_windows,)
    n_subjects : int

    Returns
    -------
    numpy.ndarray of shape (n_subjects, n_subjects)
        float64 (half-integers: exact).
    """
    U = np.zeros((n_subjects, n_subjects))
    xp, sp = score[positive], subject[positive]
    if not len(xp):
        return U
    for t in range(n_subjects):
        neg = np.sort(score[~positive & (subject == t)])
        if not len(neg):
            continue
        lo = np.searchsorted(neg, xp, side="left")
        hi = np.searchsorted(neg, xp, side="right")
        U[:, t] = np.bincount(sp, weights=lo + 0.5 * (hi - lo), minlength=n_subjects)
    return U


def bootstrap_ci(
    subjects: Sequence[Any],
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    proba: np.ndarray | None,
    classes: Sequence[Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Return percentile bootstrap intervals over subjects of the pooled headline metrics.

    Each replicate draws as many subjects as there are, with replacement, and scores the
    pooled windows of the drawn subjects (a subject drawn twice counts twice), as
    :func:`classification_metrics` would score them concatenated. Only per-subject
    sufficient figures are used: a confusion matrix per subject, and for the ROC AUC the
    per-subject weight of each distinct score.

    Parameters
    ----------
    subjects, y_true, y_pred : sequence of shape (n_windows,)
    proba : numpy.ndarray of shape (n_windows, n_classes) or None
    classes : sequence of shape (n_classes,)
    n_boot : int, default 1000
    seed : int
        Seed of :func:`numpy.random.default_rng` drawing the subjects.
    level : float, default 0.95

    Returns
    -------
    dict
        ``{metric: {"low", "high"}}`` for ``accuracy, balanced_accuracy, f1_macro,
        roc_auc`` (None where no replicate defines it), plus ``n_boot``, ``seed``,
        ``level``, ``unit`` ("subject") and ``n_subjects``. Replicates where a metric is
        undefined (e.g. one class drawn only) are left out of that metric's interval.
    """
    subjects = np.asarray(subjects).astype(str)
    names, sid = np.unique(subjects, return_inverse=True)
    return bootstrap_ci_from_codes(
        sid,
        len(names),
        class_codes(y_true, classes),
        class_codes(y_pred, classes),
        proba,
        len(classes),
        n_boot=n_boot,
        seed=seed,
        level=level,
    )


def bootstrap_ci_from_codes(
    subject: np.ndarray,
    n_subjects: int,
    yt: np.ndarray,
    yp: np.ndarray,
    proba: np.ndarray | None,
    k: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Return :func:`bootstrap_ci` from subject and class codes.

    Parameters
    ----------
    subject : numpy.ndarray of shape (n_windows,)
        Codes 0 .. n_subjects - 1 of sorted subject names; a code no window holds is left
        out (the bootstrap draws among the subjects scored, as :func:`bootstrap_ci`).
    n_subjects : int
    yt, yp : numpy.ndarray of shape (n_windows,)
        True and predicted class codes (:func:`class_codes`; -1 counts in no confusion).
    proba : numpy.ndarray of shape (n_windows, n_classes) or None
    k : int
        The number of classes.
    n_boot, seed, level
        As :func:`bootstrap_ci`.
    """
    held = np.bincount(subject, minlength=n_subjects) > 0
    if not held.all():
        recode = np.cumsum(held) - 1
        subject, n_subjects = recode[subject], int(held.sum())
    sid = subject
    ok = (yt >= 0) & (yp >= 0)
    # counts add exactly in float64: the same matrices as np.add.at, without its index copies
    flat = (sid[ok].astype(np.int64) * k + yt[ok]) * k + yp[ok]
    cms = np.bincount(flat, minlength=n_subjects * k * k).reshape(n_subjects, k, k).astype(float)
    del flat, ok
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_subjects, size=(n_boot, n_subjects))
    weights = np.stack([np.bincount(d, minlength=n_subjects) for d in draws]).astype(float)
    cm = np.einsum("bs,sij->bij", weights, cms)
    tp = np.einsum("bii->bi", cm)
    support = cm.sum(2)
    predicted = cm.sum(1)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = tp.sum(1) / cm.sum((1, 2))
        recall = np.where(present, tp / support, 0.0)
        f1 = np.where(present, 2 * tp / (support + predicted), 0.0)
    n_present = present.sum(1)
    values: dict[str, np.ndarray] = {
        "accuracy": acc,
        "balanced_accuracy": recall.sum(1) / n_present,
        "f1_macro": f1.sum(1) / n_present,
        "roc_auc": np.full(n_boot, np.nan),
    }
    if proba is not None:
        proba = np.asarray(proba, dtype=float)
        targets = [1] if k == 2 else list(range(k))
        auc = np.empty((n_boot, len(targets)))
        for i, j in enumerate(targets):
            pos = yt == j
            U = pair_rank_sums(sid, pos, proba[:, j], n_subjects)
            P = np.bincount(sid[pos], minlength=n_subjects).astype(float)
            N = np.bincount(sid[~pos], minlength=n_subjects).astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                wp, wn = weights @ P, weights @ N
                num = np.einsum("bs,st,bt->b", weights, U, weights)
                auc[:, i] = np.where((wp > 0) & (wn > 0), num / (wp * wn), np.nan)
        # a class absent from a replicate's windows has no AUC and is left out of its mean
        used = present[:, targets] if k > 2 else np.ones_like(auc, dtype=bool)
        n_used = used.sum(1)
        undefined = (used & ~np.isfinite(auc)).any(1) | (n_used == 0) | (n_present < 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(used, auc, 0.0).sum(1) / n_used
        values["roc_auc"] = np.where(undefined, np.nan, mean)
    alpha = (1 - level) / 2
    out: dict[str, Any] = {}
    for name, v in values.items():
        v = v[np.isfinite(v) & (n_present >= (2 if name == "roc_auc" else 1))]
        out[name] = (
            {"low": float(np.quantile(v, alpha)), "high": float(np.quantile(v, 1 - alpha))}
            if len(v)
            else {"low": None, "high": None}
        )
    out.update({"n_boot": int(n_boot), "seed": int(seed), "level": float(level), "unit": "subject"})
    out["n_subjects"] = n_subjects
    return out


def inverted_subjects(
    per_subject: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Return the subjects scoring below chance, with why.

    A subject is *inverted* when its balanced accuracy is below chance (``1 / K`` with K the
    classes present among its windows) or its ROC AUC is below 0.5: the model ranks its
    windows the wrong way round, which a pooled figure hides.

    Parameters
    ----------
    per_subject : dict
        ``{subject: classification_metrics(...)}`` as :func:`per_subject_metrics` returns.

    Returns
    -------
    dict
        ``{subject: {"balanced_accuracy", "chance", "roc_auc", "reasons": [...]}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for s, d in sorted(per_subject.items()):
        k = sum(1 for c in d["per_class"].values() if c["support"] > 0)
        chance = 1.0 / max(k, 1)
        reasons = []
        if k >= 2 and d["balanced_accuracy"] < chance:
            reasons.append(f"balanced accuracy {d['balanced_accuracy']:.3f} < chance {chance:.3f}")
        if d.get("roc_auc") is not None and d["roc_auc"] < 0.5:
            reasons.append(f"ROC AUC {d['roc_auc']:.3f} < 0.5")
        if reasons:
            out[s] = {
                "balanced_accuracy": d["balanced_accuracy"],
                "chance": chance,
                "roc_auc": d.get("roc_auc"),
                "reasons": reasons,
            }
    return out
