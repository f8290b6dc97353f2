"""Classification metrics, overall and per subject, and thresholds at a target specificity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

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
        present in ``y_true``.
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    classes = [c for c in classes]
    if len(y_true) == 0:
        msg = "classification_metrics: no window to score (y_true is empty)"
        raise SpecError(msg)
    present = [c for c in classes if np.any(y_true == c)]
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    sens, spec = sensitivity_specificity(cm)
    out: dict[str, Any] = {
        "n_windows": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(np.mean(sens[[classes.index(c) for c in present]])),
        "f1_macro": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "roc_auc": None,
        "classes": [str(c) for c in classes],
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": {
            str(c): {
                "sensitivity": _none_if_nan(sens[i]),
                "specificity": _none_if_nan(spec[i]),
                "support": int(cm[i].sum()),
            }
            for i, c in enumerate(classes)
        },
    }
    if proba is not None and len(present) >= 2:
        out["roc_auc"] = _roc_auc(y_true, np.asarray(proba, dtype=float), classes, present)
    return out


def _roc_auc(
    y_true: np.ndarray, proba: np.ndarray, classes: list[Any], present: list[Any]
) -> float | None:
    if len(classes) == 2:
        return float(roc_auc_score(y_true == classes[1], proba[:, 1]))
    # One-vs-rest, macro over the classes present in y_true (a class absent from a test
    # subject has no positive and its AUC is undefined).
    aucs = [roc_auc_score(y_true == c, proba[:, classes.index(c)]) for c in present]
    return _none_if_nan(float(np.mean(aucs)))


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
    per: dict[str, dict[str, Any]] = {}
    for s in sorted(np.unique(subjects)):
        m = subjects == s
        per[s] = classification_metrics(
            y_true[m], y_pred[m], None if proba is None else proba[m], classes
        )
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
    return per, summary


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
    y_true = np.asarray(y_true, dtype=object)
    classes = list(classes)
    targets = classes[1:] if len(classes) == 2 else classes
    out = {}
    for c in targets:
        pos = y_true == c
        if pos.all() or not pos.any():
            continue
        fpr, tpr, _ = roc_curve(pos, proba[:, classes.index(c)])
        if len(fpr) > max_points:
            idx = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
            fpr, tpr = fpr[idx], tpr[idx]
        out[str(c)] = {
            "fpr": fpr.round(5).tolist(),
            "tpr": tpr.round(5).tolist(),
            "auc": float(roc_auc_score(pos, proba[:, classes.index(c)])),
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
