"""The report sections that say how far a validation figure can be trusted.

Both engines call :func:`trust_sections` with the out-of-fold predictions they already
hold (one row per scored window: subject, true class, probabilities), so the memory and the
distributed engine give the same keys: ``baseline``, ``ci95``, ``calibration``,
``inverted`` (and an ``inverted`` flag in every ``per_subject`` entry) and ``leakage``.
The ``permutation`` section needs refits and is added by the engine
(:mod:`pipeline.learn.permutation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.learn.metrics import (
    baseline_from_codes,
    bootstrap_ci_from_codes,
    calibration_from_codes,
    class_codes,
    inverted_subjects,
)
from pipeline.spec.learn import PrepSpec, ValidationSpec

__all__ = ["leakage_statement", "trust_sections", "trust_sections_from_codes"]

_HELD_OUT = {
    "loso": (
        "Leave-one-subject-out: every fold holds out one subject whole; no window, recording "
        "or session of the test subject is in its training side."
    ),
    "group_kfold": (
        "Subject k-fold: every fold holds out whole subjects; no window of a test subject "
        "is in its training side."
    ),
    "within_subject": (
        "Within subject: per subject, training and test are different {by}s of the same "
        "subject. The figure says how well a model calibrated on this person transfers to "
        "another {by}, not how it does on a new person."
    ),
    "cross_session": (
        "Cross session: per subject, one session is held out and the model trains on the "
        "same subject's other sessions; it does not measure transfer to a new person."
    ),
    "loso_calibrated": (
        "Calibrated leave-one-subject-out: every fold holds out one subject, except its "
        "first k labeled repetitions (or seconds) per class, which train; the subject is "
        "scored on the rest of its windows, none of which shares a sample with a "
        "calibration window. The calibration windows are weighted "
        "(validation.calibration_weight) and prepared with the subject's test windows "
        "(one label-free normalisation per recording); no test label reaches training. "
        "The figure is that of a new user who recorded k labeled repetitions per class first."
    ),
    "random": (
        "Random window split: windows of one recording fall on both sides, so overlapping "
        "windows of the test set are nearly copies of training windows. This figure is "
        "optimistic by construction and says nothing about new recordings or subjects."
    ),
}

_PREP = {
    None: "No per-group normalisation: features enter the model as computed.",
    "recording": (
        "Per-recording normalisation uses each recording's own windows (labels unused), "
        "test recordings included, as prediction on a new recording does."
    ),
    "subject": (
        "Per-subject normalisation uses each subject's own windows (labels unused), the "
        "test subject's included: it presumes unlabeled data of a new subject before "
        "prediction."
    ),
}


def leakage_statement(validation: ValidationSpec, prep: PrepSpec | None) -> dict[str, str]:
    """Return what the scheme guarantees: the held-out grouping and the preparation statistics.

    Returns
    -------
    dict
        ``held_out`` (which grouping never meets training), ``preparation`` (what the
        label-free preparation statistics may use), ``fitted`` (what the scaler and
        classifier see).
    """
    by = validation.by or "run"
    preparation = _PREP[prep.normalize if prep else None]
    recenter = getattr(prep, "recenter", None)  # absent from specs written before it existed
    if recenter:
        preparation += (
            f" {recenter.capitalize()} re-centring uses each subject's own unlabeled windows, "
            "the test subject's included: it presumes unlabeled data of a new subject."
        )
    return {
        "scheme": validation.scheme,
        "held_out": _HELD_OUT[validation.scheme].format(by=by),
        "preparation": preparation,
        "fitted": (
            "The scaler and classifier are fitted on each fold's labeled training windows "
            "only; no test label is used before scoring."
        ),
    }


def trust_sections(
    subjects: Sequence[Any],
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    proba: np.ndarray | None,
    classes: Sequence[Any],
    per_subject: dict[str, dict[str, Any]],
    validation: ValidationSpec,
    prep: PrepSpec | None,
    seed: int,
) -> dict[str, Any]:
    """Return the ``baseline, ci95, calibration, inverted, leakage`` sections of a report.

    Marks ``per_subject[s]["inverted"]`` in place.

    Parameters
    ----------
    subjects, y_true, y_pred : sequence of shape (n_windows,)
        Out-of-fold scored windows.
    proba : numpy.ndarray of shape (n_windows, n_classes) or None
    classes : sequence of shape (n_classes,)
    per_subject : dict
        ``{subject: classification_metrics(...)}`` of the same windows.
    validation : ValidationSpec
    prep : PrepSpec or None
    seed : int
        Seed of the bootstrap.
    """
    names, sid = np.unique(np.asarray(subjects).astype(str), return_inverse=True)
    return trust_sections_from_codes(
        sid,
        len(names),
        class_codes(y_true, classes),
        class_codes(y_pred, classes),
        proba,
        classes,
        per_subject,
        validation,
        prep,
        seed,
    )


def trust_sections_from_codes(
    subject: np.ndarray,
    n_subjects: int,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any],
    per_subject: dict[str, dict[str, Any]],
    validation: ValidationSpec,
    prep: PrepSpec | None,
    seed: int,
) -> dict[str, Any]:
    """Return :func:`trust_sections` from integer codes (no per-window object array).

    Parameters
    ----------
    subject : numpy.ndarray of shape (n_windows,)
        Codes 0 .. n_subjects - 1 of the sorted subject names.
    n_subjects : int
    y_true, y_pred : numpy.ndarray of shape (n_windows,)
        Class codes (:func:`pipeline.learn.metrics.class_codes`).
    proba, classes, per_subject, validation, prep, seed
        As :func:`trust_sections`.
    """
    inverted = inverted_subjects(per_subject)
    for s, d in per_subject.items():
        d["inverted"] = s in inverted
    return {
        "baseline": baseline_from_codes(y_true, classes),
        "ci95": bootstrap_ci_from_codes(
            subject, n_subjects, y_true, y_pred, proba, len(classes), seed=seed
        ),
        "calibration": None if proba is None else calibration_from_codes(y_true, proba, classes),
        "inverted": inverted,
        "leakage": leakage_statement(validation, prep),
    }
