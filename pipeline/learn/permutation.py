"""Permutation test of a cross-validated score, labels permuted within subject.

The null hypothesis is that a window's label carries nothing the features can predict
across the scheme's split. Each permutation relabels the table within every subject (the
grouping every scheme respects: a subject is either held out whole, or split by run or
session inside itself) and re-runs the whole cross-validation, refitting every fold's
model. When labels are constant per recording (a recording is one condition, as in
eeg-arithmetic), windows of one recording are not independent draws, so whole recordings'
labels are permuted among the subject's recordings instead of window labels.

What is reused: the preparation step (``prep``, :class:`~pipeline.learn.prep.FeaturePrep`)
is label-free, so each fold prepares its training and test sides once and only the
label-dependent steps (scaler, classifier) are refitted per permutation. Folds run as one
joblib task each, on the Dask cluster when a Client is active.

The p-value is ``(1 + #{null >= observed}) / (1 + n_permutations)`` (Phipson and Smyth
2010: never 0, exact under exchangeability).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from pipeline.exceptions import SpecError
from pipeline.learn.estimators import make_estimator
from pipeline.learn.metrics import _weighted_auc
from pipeline.learn.prep import trailing_mean
from pipeline.learn.validation import Fold
from pipeline.spec.learn import ModelSpec

__all__ = [
    "DEFAULT_PERMUTATIONS",
    "permutation_test",
    "permuted_codes",
    "permuted_recording_labels",
    "skipped",
    "summarize_nulls",
]

logger = logging.getLogger(__name__)

#: Permutations when ``validation.n_permutations`` is not set. Each one costs a whole
#: cross-validation (the fit stage takes about 1 + n times as long): 10 of them kept the
#: eeg-arithmetic random-forest fit stage busy for over 25 min on 2 shared cores, so the
#: default stays modest; its smallest p-value is 1/21 = 0.048. Set more in the spec.
DEFAULT_PERMUTATIONS = 20


def labels_constant_per_recording(table: pd.DataFrame) -> bool:
    """Return True when every recording's labeled windows share one label."""
    lab = table.loc[table["label"].notna(), ["recording", "label"]]
    return bool(len(lab)) and bool((lab.groupby("recording")["label"].nunique() <= 1).all())


def permuted_codes(
    table: pd.DataFrame, classes: list[str], n_permutations: int, seed: int
) -> tuple[np.ndarray, str]:
    """Return ``n_permutations`` relabelings of the table, permuted within subject.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        ``subject``, ``recording`` and ``label`` columns.
    classes : list of str
    n_permutations : int
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    codes : numpy.ndarray of int16, shape (n_permutations, n_windows)
        Class index per window, -1 where the label is None (unlabeled windows stay so).
    unit : {"recording", "window"}
        What was permuted: whole recordings' labels (labels constant per recording) or
        window labels.
    """
    if labels_constant_per_recording(table):
        per_rec = table.loc[table["label"].notna(), ["recording", "label"]].drop_duplicates()
        perm = permuted_recording_labels(
            table["subject"].astype(str).to_numpy(),
            table["recording"].astype(str).to_numpy(),
            dict(zip(per_rec["recording"].astype(str), per_rec["label"].astype(str), strict=True)),
            classes,
            n_permutations,
            seed,
        )
        rec = table["recording"].astype(str).to_numpy()
        labeled = table["label"].notna().to_numpy()
        out = np.full((n_permutations, len(table)), -1, dtype=np.int16)
        for r, codes in perm.items():
            rows = np.flatnonzero((rec == r) & labeled)
            out[:, rows] = codes[:, None]
        return out, "recording"
    code = {c: i for i, c in enumerate(classes)}
    labels = table["label"].to_numpy()
    base = np.array([-1 if pd.isna(v) else code[str(v)] for v in labels], dtype=np.int16)
    subjects = table["subject"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    out = np.repeat(base[None, :], n_permutations, axis=0)
    for s in np.unique(subjects):
        rows = np.flatnonzero((subjects == s) & (base >= 0))
        for p in range(n_permutations):
            out[p, rows] = base[rows[rng.permutation(len(rows))]]
    return out, "window"


def permuted_recording_labels(
    subjects: np.ndarray,
    recordings: np.ndarray,
    label_of: dict[str, str],
    classes: list[str],
    n_permutations: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Return each labeled recording's class code in every permutation (within subject).

    Whole recordings' labels permuted among the subject's labeled recordings, subject by
    subject in sorted order, one ``rng.permutation`` per subject and permutation: the
    draws :func:`permuted_codes` makes, from the recordings' identifiers alone (the
    distributed engine has no window table).

    Parameters
    ----------
    subjects, recordings : numpy.ndarray of str, shape (n,)
        Any rows naming every subject and its recordings (windows, or one per recording).
    label_of : dict
        Labeled recording -> its one class.
    classes : list of str
    n_permutations : int
    seed : int

    Returns
    -------
    dict
        Recording -> int16 codes of shape (n_permutations,).
    """
    code = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for s in np.unique(subjects):
        recs = np.unique([r for r in recordings[subjects == s] if r in label_of])
        rec_code = np.array([code[label_of[r]] for r in recs], dtype=np.int16)
        for p in range(n_permutations):
            new = rec_code[rng.permutation(len(recs))]
            for r, c in zip(recs, new, strict=True):
                out.setdefault(r, np.empty(n_permutations, dtype=np.int16))[p] = c
    return out


def _fit_tail(tail: Pipeline, X: np.ndarray, y: np.ndarray) -> Pipeline:
    # as fit.fit_pipeline after its prep step: the scaler and classifier see labels only
    for _, step in tail.steps[:-1]:
        X = step.fit_transform(X, y)
    tail.steps[-1][1].fit(X, y)
    return tail


def _fold_nulls(
    table: pd.DataFrame,
    fold: Fold,
    spec: ModelSpec,
    seed: int,
    classes: list[str],
    codes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, float]:
    """Return per-permutation confusion matrices (and binary scores) of one fold."""
    t0 = time.perf_counter()
    k = len(classes)
    pipe = make_estimator(spec, seed)
    train, test = table.iloc[fold.train], table.iloc[fold.test]
    Xtr = np.asarray(pipe[0].fit_transform(train))
    Xte = np.asarray(pipe[0].transform(test))
    tail = Pipeline(pipe.steps[1:])
    names = np.asarray(classes, dtype=object)
    p_count = codes.shape[0]
    cms = np.zeros((p_count, k, k), dtype=np.int64)
    scores = np.zeros((p_count, len(fold.test))) if k == 2 else None
    for p in range(p_count):
        ytr = codes[p, fold.train]
        m = ytr >= 0
        if len(np.unique(ytr[m])) < 2:  # a permutation cannot change a subject's classes
            msg = f"fold {fold.name!r}: the training side has fewer than 2 classes"
            raise SpecError(msg)
        model = _fit_tail(clone(tail), Xtr[m], names[ytr[m]].astype(str))
        raw = np.asarray(model.predict_proba(Xte), dtype=float)
        proba = np.zeros((len(Xte), k))
        for j, c in enumerate(map(str, model.classes_)):
            proba[:, classes.index(c)] = raw[:, j]
        if (spec.smooth or 1) > 1:
            frame = pd.DataFrame(proba, index=test.index)
            proba = trailing_mean(frame, test, int(spec.smooth)).to_numpy()
        yte = codes[p, fold.test]
        mt = yte >= 0
        np.add.at(cms[p], (yte[mt], proba[mt].argmax(1)), 1)
        if scores is not None:
            scores[p] = proba[:, 1]
    return cms, scores, fold.test, time.perf_counter() - t0


def _balanced_accuracy(cm: np.ndarray) -> float:
    support = cm.sum(1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def permutation_test(
    table: pd.DataFrame,
    folds: list[Fold],
    spec: ModelSpec,
    seed: int,
    classes: list[str],
    observed: dict[str, float | None],
    n_permutations: int,
    *,
    n_jobs: int = -1,
) -> dict[str, Any]:
    """Return permutation p-values of the pooled balanced accuracy (and binary ROC AUC).

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        The feature table the folds index.
    folds : list of Fold
    spec : ModelSpec
    seed : int
        Seed of the models (as in the validation) and of the permutations.
    classes : list of str
    observed : dict
        ``{"balanced_accuracy": ..., "roc_auc": ...}`` of the real labels.
    n_permutations : int
        0 skips the test.
    n_jobs : int
        joblib workers (the active backend: Dask when a Client is active).

    Returns
    -------
    dict
        ``n_permutations, permuted_within ("subject"), unit ("recording" | "window"),
        seed, seconds`` and per metric ``{"observed", "p_value", "null_mean", "null_q95"}``.
    """
    if n_permutations == 0:
        return skipped("validation.n_permutations is 0")
    t0 = time.perf_counter()
    codes, unit = permuted_codes(table, classes, n_permutations, seed)
    results = joblib.Parallel(n_jobs=n_jobs)(
        joblib.delayed(_fold_nulls)(table, f, spec, seed, classes, codes) for f in folds
    )
    k = len(classes)
    cm = np.zeros((n_permutations, k, k), dtype=np.int64)
    for fold_cm, _, _, _ in results:
        cm += fold_cm
    scores = labels = None
    if k == 2:
        rows = np.concatenate([r[2] for r in results])
        scores = np.concatenate([r[1] for r in results], axis=1)
        labels = codes[:, rows]
    out = summarize_nulls(cm, scores, labels, observed, unit, seed, n_permutations * len(folds))
    out["seconds"] = round(time.perf_counter() - t0, 3)
    logger.info(
        "permutation test: %d permutations x %d folds in %.1f s",
        n_permutations,
        len(folds),
        out["seconds"],
    )
    return out


def summarize_nulls(
    cm: np.ndarray,
    scores: np.ndarray | None,
    labels: np.ndarray | None,
    observed: dict[str, float | None],
    unit: str,
    seed: int,
    refits: int,
) -> dict[str, Any]:
    """Return the ``permutation`` section from the permutations' pooled results.

    Parameters
    ----------
    cm : numpy.ndarray of int, shape (n_permutations, n_classes, n_classes)
        Each permutation's pooled confusion counts.
    scores, labels : numpy.ndarray of shape (n_permutations, n_scored), or None
        Binary tasks: each permutation's class-1 scores and permuted class codes (-1
        unlabeled) of the scored windows (the ROC AUC's null).
    observed : dict
    unit : {"recording", "window"}
    seed : int
    refits : int
    """
    n_permutations = len(cm)
    nulls: dict[str, np.ndarray] = {
        "balanced_accuracy": np.array([_balanced_accuracy(c) for c in cm])
    }
    if scores is not None and labels is not None:
        auc = np.empty(n_permutations)
        for p in range(n_permutations):
            y = labels[p]
            m = y >= 0
            uniq, groups = np.unique(scores[p, m], return_inverse=True)
            auc[p] = _weighted_auc(groups, y[m] == 1, np.ones(int(m.sum())), len(uniq))
        nulls["roc_auc"] = auc
    out: dict[str, Any] = {
        "n_permutations": int(n_permutations),
        "permuted_within": "subject",
        "unit": unit,
        "seed": int(seed),
        "refits": int(refits),
    }
    for name, null in nulls.items():
        obs = observed.get(name)
        if obs is None:
            continue
        out[name] = {
            "observed": float(obs),
            "p_value": float((1 + np.sum(null >= obs - 1e-12)) / (1 + n_permutations)),
            "null_mean": float(null.mean()),
            "null_q95": float(np.quantile(null, 0.95)),
        }
    return out


def skipped(reason: str) -> dict[str, Any]:
    """Return the ``permutation`` section of a report whose test did not run, saying why."""
    return {"n_permutations": 0, "p_value": None, "skipped": reason}
