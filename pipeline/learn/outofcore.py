"""Out-of-core fitting and prediction for feature tables larger than memory (dask-ml).

The unit that must fit in memory is one recording: the table is shuffled so each partition
holds whole recordings, feature preparation (per-recording normalisation, context) runs per
partition, then dask-ml's ``StandardScaler`` and ``Incremental(SGDClassifier)`` stream over
the labeled windows, and one task per prepared partition predicts (and writes its
out-of-fold predictions file). The fitted model is converted to a
plain scikit-learn ``Pipeline`` so bundles hold no dask object.

``sgd`` covers the iterative linear models: ``params: {loss: log_loss}`` is logistic
regression, ``loss: hinge`` (the default) a linear SVM, fitted by stochastic gradient
descent over the table's blocks (one ``partial_fit`` per block, blocks in an order shuffled
with the task seed): the same model as scikit-learn's ``SGDClassifier.partial_fit`` called
on the same blocks in that order (tested: equal coefficients).

dask-ml pieces used: ``dask_ml.preprocessing.StandardScaler`` (the scaler's moments in one
pass), the block-sequential ``partial_fit`` graph of ``dask_ml.wrappers.Incremental``
(built lazily through ``dask_ml._partial.fit(..., compute=False)``, which ``Incremental.fit``
computes at once, so every fold's graph and the final model's are submitted together and
run concurrently on the cluster). The held-out predictions are one task per prepared
partition (``predict_proba`` of the plain fold model, as ``ParallelPostFit`` would run per
block, with the partition's out-of-fold file written from the same probabilities: wrapping
it would score every window twice or realign array blocks with partitions).
Avoided: dask-ml's adaptive searches (Hyperband, SuccessiveHalving, IncrementalSearchCV),
which fail on current dask (dask/dask-ml#1016), and ``dask_ml.linear_model`` (its
admm/lbfgs solvers are not scikit-learn's LogisticRegression: the memory engine's
``logreg`` would not be reproduced).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask_ml._partial import fit as partial_fit_graph
from dask_ml.preprocessing import StandardScaler as DaskStandardScaler
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.exceptions import SpecError
from pipeline.learn.estimators import make_classifier, model_spec
from pipeline.learn.metrics import (
    classification_metrics,
    oof_frame,
    per_subject_metrics,
    roc_curves,
    threshold_at_specificity,
    write_oof,
)
from pipeline.learn.model import Bundle, config_json, model_metadata
from pipeline.learn.permutation import skipped as skipped_permutation
from pipeline.learn.prep import ID_COLUMNS, FeaturePrep
from pipeline.learn.trust import trust_sections
from pipeline.learn.validation import check_dask_table, make_folds, validation_spec
from pipeline.spec.learn import ModelSpec, ValidationSpec

__all__ = [
    "OUT_OF_CORE_ESTIMATORS",
    "fit_and_validate_dask",
    "fit_incremental",
    "incremental_graph",
]

logger = logging.getLogger(__name__)

OUT_OF_CORE_ESTIMATORS = ("sgd",)


def _prepare(ddf: dd.DataFrame, prep: FeaturePrep) -> dd.DataFrame:
    """Return identifiers + features prepared by a fitted prep, each recording whole in one
    partition."""
    by_rec = ddf.shuffle(on="recording")
    cols = list(prep.columns_)

    def part(df: pd.DataFrame) -> pd.DataFrame:
        ids = df.loc[:, list(ID_COLUMNS)]
        if len(df) == 0:
            return pd.concat([ids, pd.DataFrame(columns=cols, dtype="float64")], axis=1)
        X = pd.DataFrame(prep.transform(df), index=df.index, columns=cols)
        return pd.concat([ids, X], axis=1)

    meta = pd.concat(
        [ddf._meta.loc[:, list(ID_COLUMNS)], pd.DataFrame(columns=cols, dtype="float64")], axis=1
    )
    return by_rec.map_partitions(part, meta=meta)


def fit_incremental(
    ddf: dd.DataFrame, model_cfg: ModelSpec | Mapping[str, Any], seed: int, classes: list[str]
) -> Bundle:
    """Fit a model out of core on every labeled window of a dask feature table.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame of shape (n_windows, n_columns)
    model_cfg : ModelSpec or mapping
        ``{"name": "sgd", "params": {...}, "prep": {...}}``; the estimator must support
        ``partial_fit``. Classes are weighted "balanced" from the label counts.
    seed : int
    classes : list of str

    Returns
    -------
    Bundle
        Holding ``Pipeline([("prep", FeaturePrep), ("scale", StandardScaler), ("clf",
        SGDClassifier)])``, plain scikit-learn.
    """
    lazy = incremental_graph(ddf, model_cfg, seed, classes)
    return lazy.bundle(dask.compute(lazy.estimator)[0])


class _LazyFit:
    """A fold's scaler (fitted) and its classifier's ``partial_fit`` chain (a Delayed)."""

    def __init__(
        self, estimator: Any, prep: FeaturePrep, scaler: StandardScaler, spec: ModelSpec
    ) -> None:
        self.estimator = estimator
        self.prep = prep
        self.scaler = scaler
        self.spec = spec

    def bundle(self, clf: Any, classes: list[str] | None = None) -> Bundle:
        """Return the plain scikit-learn Bundle of the computed classifier ``clf``."""
        pipe = Pipeline([("prep", self.prep), ("scale", self.scaler), ("clf", clf)])
        names = classes if classes is not None else [str(c) for c in clf.classes_]
        return Bundle(pipe, model_metadata(pipe, self.spec.smooth or 1, names))


def incremental_graph(
    ddf: dd.DataFrame, model_cfg: ModelSpec | Mapping[str, Any], seed: int, classes: list[str]
) -> _LazyFit:
    """Return the lazy out-of-core fit of :func:`fit_incremental` (the scaler computed).

    The classifier's block-by-block ``partial_fit`` chain is left as a Delayed, so several
    folds' chains can be computed at once.
    """
    spec = model_spec(model_cfg)
    prep = FeaturePrep.from_spec(spec.prep).fit(ddf._meta)  # fit reads column names only
    cols = list(prep.columns_)
    prepared = _prepare(ddf, prep)
    labeled = prepared[prepared["label"].notnull()]
    # One pass for class counts and partition lengths (the prep is not cached).
    counts, lengths = dask.compute(labeled["label"].value_counts(), labeled.map_partitions(len))
    n = float(counts.sum())
    weights = {str(c): n / (len(counts) * float(k)) for c, k in counts.items()}
    lengths = tuple(int(v) for v in lengths)
    X = labeled[cols].to_dask_array(lengths=lengths)
    y = labeled["label"].astype(str).to_dask_array(lengths=lengths)
    X, y = _drop_empty_blocks(X, y)
    scaler = DaskStandardScaler().fit(X)
    clf = make_classifier(spec, seed)
    clf.set_params(class_weight=weights)
    # what Incremental(clf, shuffle_blocks=True, random_state=seed).fit computes, not computed
    chain = partial_fit_graph(
        clone(clf),
        scaler.transform(X),
        y,
        compute=False,
        shuffle_blocks=True,
        random_state=seed,
        classes=np.asarray(classes, dtype=object),
    )
    plain = StandardScaler()
    for attr in ("mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"):
        if hasattr(scaler, attr):
            val = getattr(scaler, attr)
            setattr(plain, attr, np.asarray(val) if attr != "n_features_in_" else int(val))
    plain.n_samples_seen_ = int(np.asarray(plain.n_samples_seen_).max())
    return _LazyFit(chain, prep, plain, spec)


def _drop_empty_blocks(X: da.Array, y: da.Array) -> tuple[da.Array, da.Array]:
    """Remove zero-length row blocks (partitions without labeled windows): partial_fit
    refuses empty input."""
    keep = [i for i, n in enumerate(X.chunks[0]) if n > 0]
    if not keep:
        msg = "out-of-core fit/validate: a fold side has no labeled window"
        raise SpecError(msg)
    X = da.concatenate([X.blocks[i] for i in keep], axis=0)
    y = da.concatenate([y.blocks[i] for i in keep], axis=0)
    return X, y


def _score_part(
    part: pd.DataFrame,
    tail: Any,
    feature_names: list[str],
    classes: list[str],
    fold: int,
    directory: str | None,
    number: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score one prepared partition of a fold's test side (on the worker holding it).

    What ``ParallelPostFit.predict_proba`` does per block, plus, with ``directory``, the
    partition's out-of-fold predictions file written from the same probabilities.

    Parameters
    ----------
    part : pandas.DataFrame of shape (n_windows, n_ids + n_features)
        Identifiers and prepared features of labeled test windows of one fold.
    tail : sklearn estimator
        The fold model after its ``prep`` step.
    feature_names : list of str of shape (n_features,)
    classes : list of str of shape (n_classes,)
    fold, number : int
        The fold's index in the report and the file's number.
    directory : str or None
        Where to write ``part-<number>.parquet``; None writes nothing.

    Returns
    -------
    subject, label : numpy.ndarray of shape (n_windows,)
        Strings.
    proba : numpy.ndarray of shape (n_windows, n_classes)
    """
    subject = part["subject"].astype(str).to_numpy()
    label = part["label"].astype(str).to_numpy()
    if len(part) == 0:
        return subject, label, np.empty((0, len(classes)))
    proba = np.asarray(tail.predict_proba(part[feature_names].to_numpy()), dtype=float)
    if directory is not None:
        true = np.searchsorted(np.asarray(classes), label)
        fold_of = np.full(len(part), fold, dtype=np.int32)
        write_oof(oof_frame(part, fold_of, true, proba, classes), directory, number)
    return subject, label, proba


def fit_and_validate_dask(
    ddf: dd.DataFrame,
    model_cfg: ModelSpec | Mapping[str, Any],
    validation_cfg: ValidationSpec | Mapping[str, Any],
    seed: int = 0,
    *,
    specificity: float = 0.9,
    predictions_dir: str | os.PathLike[str] | None = None,
) -> tuple[Bundle, dict[str, Any]]:
    """Out-of-core counterpart of :func:`pipeline.learn.fit.fit_and_validate`.

    Folds are computed on the recording index (one row per recording), so every scheme but
    ``random`` works; each fold fits with :func:`fit_incremental` and predicts its test
    recordings with one task per prepared partition. Only per-window labels and
    probabilities of the test side are brought into memory. With ``predictions_dir``, each
    of those tasks also writes its partition's out-of-fold predictions there, one Parquet
    file each, on the workers (:func:`pipeline.learn.metrics.oof_frame`'s schema).
    """
    t_start = time.perf_counter()
    spec = model_spec(model_cfg)
    vspec = validation_spec(validation_cfg)
    if spec.name not in OUT_OF_CORE_ESTIMATORS:
        msg = (
            f"model.name {spec.name!r} cannot be fitted out of core; a dask "
            "feature table needs an estimator with partial_fit: one of "
            f"{list(OUT_OF_CORE_ESTIMATORS)}, "
            'e.g. {"name": "sgd"}; or pass a pandas table (table.compute()) if it fits in memory'
        )
        raise SpecError(msg)
    check_dask_table(ddf, vspec, "out of core")
    index = (
        ddf[["recording", "subject", "session", "run"]]
        .drop_duplicates()
        .compute()
        .sort_values("recording")
        .reset_index(drop=True)
    )
    index["start"] = 0.0
    index["label"] = "recording"
    classes = sorted(map(str, ddf["label"].dropna().unique().compute()))
    folds = make_folds(index, vspec, seed)
    ys, probas, subjects, fold_reports, secs = [], [], [], [], []
    # every fold's scaler (one pass each), then every fold's partial_fit chain and the
    # final model's at once: the chains are sequential within a fold, not across folds
    t0 = time.perf_counter()
    lazy = [
        incremental_graph(
            ddf[ddf["recording"].isin(index["recording"].iloc[fold.train].tolist())],
            spec,
            seed,
            classes,
        )
        for fold in folds
    ]
    lazy_final = incremental_graph(ddf, spec, seed, classes)
    *fitted, fitted_final = dask.compute(*[f.estimator for f in lazy], lazy_final.estimator)
    fits_s = time.perf_counter() - t0
    if predictions_dir is not None:
        os.makedirs(predictions_dir, exist_ok=True)
    n_files = 0
    for i, (fold, fold_lazy, clf) in enumerate(zip(folds, lazy, fitted, strict=True)):
        t0 = time.perf_counter()
        test_recs = index["recording"].iloc[fold.test].tolist()
        model = fold_lazy.bundle(clf, classes)
        test = ddf[ddf["recording"].isin(test_recs)]
        prepared = _prepare(test, model.model["prep"])
        prepared = prepared[prepared["label"].notnull()]
        score = dask.delayed(_score_part, pure=False)
        out_dir = None if predictions_dir is None else os.fspath(predictions_dir)
        args = (model.model[1:], model.feature_names, classes, i, out_dir)
        scored = dask.compute(
            *[score(d, *args, n_files + j) for j, d in enumerate(prepared.to_delayed())]
        )
        n_files += prepared.npartitions
        ident = pd.DataFrame(
            {
                "subject": np.concatenate([sub for sub, _, _ in scored]),
                "label": np.concatenate([lab for _, lab, _ in scored]),
            }
        )
        proba = np.concatenate([p for _, _, p in scored])
        desc = fold.describe(index)
        desc.pop("n_train_windows")
        desc["n_test_windows"] = len(ident)
        y = ident["label"].astype(str).to_numpy()
        pred = np.asarray(classes, dtype=object)[proba.argmax(1)]
        m = classification_metrics(y, pred, proba, classes)
        desc["metrics"] = {
            k: m[k] for k in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
        }
        secs.append(time.perf_counter() - t0)
        desc["seconds"] = round(secs[-1], 3)
        fold_reports.append(desc)
        ys.append(y)
        probas.append(proba)
        subjects.append(ident["subject"].astype(str).to_numpy())
    y_all, proba_all = np.concatenate(ys), np.concatenate(probas)
    pred_all = np.asarray(classes, dtype=object)[proba_all.argmax(1)]
    subjects_all = np.concatenate(subjects)
    per, summary = per_subject_metrics(subjects_all, y_all, pred_all, proba_all, classes)
    trust = trust_sections(
        subjects_all, y_all, pred_all, proba_all, classes, per, vspec, spec.prep, seed
    )
    t_cv = time.perf_counter() - t_start
    t0 = time.perf_counter()
    final = lazy_final.bundle(fitted_final, classes)
    report: dict[str, Any] = {
        "model": config_json(model_cfg),
        "validation": config_json(validation_cfg),
        "seed": int(seed),
        "classes": classes,
        "out_of_core": True,
        "n_labeled_windows": len(y_all),
        "subjects": sorted(map(str, index["subject"].unique())),
        "folds": fold_reports,
        "overall": classification_metrics(y_all, pred_all, proba_all, classes),
        "per_subject": per,
        "per_subject_summary": summary,
        "roc": roc_curves(y_all, proba_all, classes),
        "timing": {
            "cross_validation_s": round(t_cv, 3),
            "final_fit_s": round(time.perf_counter() - t0, 3),
            "folds_s": [round(s, 3) for s in secs],
            "concurrent_fits_s": round(fits_s, 3),
            "backend": "dask",
        },
        "feature_names": final.feature_names,
        "prep": final.metadata["prep"],
    }
    if len(classes) == 2:
        report["threshold"] = threshold_at_specificity(
            y_all == classes[1], proba_all[:, 1], specificity
        )
    report.update(trust)
    report["permutation"] = skipped_permutation(
        "not computed by the out-of-core engine (model.engine: memory computes it)"
    )
    return final, report
