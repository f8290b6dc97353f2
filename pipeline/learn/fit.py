"""Fit and validate models on feature tables.

The main entry point is :func:`fit_and_validate`. Folds run in parallel with joblib, on the
Dask cluster when a ``distributed.Client`` is active (joblib's ``"dask"`` backend) and on
local processes otherwise. Tables given as dask DataFrames (larger than memory) go through
:mod:`pipeline.learn.outofcore`.

Every fitted model is a :class:`~pipeline.learn.model.Bundle`: the scikit-learn Pipeline
``(prep, scale, clf)`` and its metadata. The Pipeline is fitted step by step rather than
with ``Pipeline.fit``: the prep sees every window of the training side (unlabeled ones
count in the per-recording normalisation, as at prediction time), the scaler and the
classifier only the labeled ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import dask.dataframe as dd
import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from pipeline.exceptions import SpecError
from pipeline.learn.distributed import fit_and_validate_distributed
from pipeline.learn.estimators import make_estimator, model_spec
from pipeline.learn.metrics import (
    class_codes,
    classification_metrics,
    oof_frame,
    per_subject_metrics,
    roc_curves,
    threshold_at_specificity,
    write_oof,
)
from pipeline.learn.model import Bundle, check_table, config_json, model_metadata, predict_proba
from pipeline.learn.permutation import DEFAULT_PERMUTATIONS, permutation_test
from pipeline.learn.prep import ID_COLUMNS, FeaturePrep
from pipeline.learn.trust import trust_sections
from pipeline.learn.validation import (
    Fold,
    calibration_windows,
    make_folds,
    unlabeled_calibration_note,
    validation_spec,
)
from pipeline.spec.learn import ModelSpec, ValidationSpec

__all__ = ["calibration_curve", "fit_and_validate", "fit_model", "fit_pipeline"]

logger = logging.getLogger(__name__)


def fit_pipeline(pipeline: Pipeline, table: pd.DataFrame) -> Pipeline:
    """Fit ``pipeline`` in place on a feature table: prep on every row, the rest on labels.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        ``(prep, ..., clf)`` as built by :func:`pipeline.learn.estimators.make_estimator`.
    table : pandas.DataFrame of shape (n_windows, n_columns)
        Rows with ``label`` None take part in the prep (normalisation) only.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``pipeline``, fitted.
    """
    X = pipeline[0].fit_transform(table)
    labeled = table["label"].notna().to_numpy()
    y = table["label"].to_numpy()[labeled].astype(str)
    Xt = X[labeled]
    for _, step in pipeline.steps[1:-1]:
        Xt = step.fit_transform(Xt, y)
    pipeline.steps[-1][1].fit(Xt, y)
    return pipeline


def _fit(table: pd.DataFrame, spec: ModelSpec, seed: int, classes: list[str]) -> Bundle:
    pipeline = fit_pipeline(make_estimator(spec, seed), table)
    return Bundle(pipeline, model_metadata(pipeline, spec.smooth or 1, classes))


def fit_model(
    table: pd.DataFrame, model_cfg: ModelSpec | Mapping[str, Any], seed: int = 0
) -> Bundle:
    """Fit a model on every labeled window of a feature table (no validation).

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        Feature table; rows with ``label`` None take part in normalisation only.
    model_cfg : ModelSpec or mapping
        Model config (see :mod:`pipeline.learn.estimators`) with optional ``prep`` and
        ``smooth``.
    seed : int

    Returns
    -------
    Bundle
        The fitted Pipeline and its metadata (not saved; see :func:`save_bundle`).
    """
    spec = model_spec(model_cfg)
    check_table(table)
    classes = sorted(map(str, table["label"].dropna().unique()))
    return _fit(table, spec, seed, classes)


def _run_fold(
    table: pd.DataFrame,
    fold: Fold,
    spec: ModelSpec,
    seed: int,
    classes: list[str],
    calibration_weight: float | str | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit on the training side, predict the test side; sides are prepared separately."""
    t0 = time.perf_counter()
    if fold.calibration:  # k > 0: weighted calibration windows (pipeline.learn.calibrate)
        from pipeline.learn.calibrate import calibrated_fold_proba

        proba = calibrated_fold_proba(table, fold, spec, seed, classes, calibration_weight)
        return fold.test, proba, time.perf_counter() - t0
    train = table.iloc[fold.train]
    test = table.iloc[fold.test]
    model = _fit(train, spec, seed, classes)
    proba = predict_proba(model.model, model.metadata, test)
    return fold.test, proba, time.perf_counter() - t0


@contextlib.contextmanager
def _parallel_backend(backend: str | None = None) -> Iterator[str]:
    """Use the Dask cluster when a distributed Client is active, local processes otherwise."""
    if backend not in (None, "dask", "local"):
        msg = f"fit_and_validate: backend must be None (auto), 'dask' or 'local', got {backend!r}"
        raise SpecError(msg)
    if backend != "local":
        try:
            from distributed import default_client

            default_client()
        except (ImportError, ValueError) as err:
            if backend == "dask":
                msg = "fit_and_validate(backend='dask') needs an active distributed.Client"
                raise SpecError(msg) from err
        else:
            with joblib.parallel_backend("dask"):
                yield "dask"
            return
    yield "loky"


def fit_and_validate(
    table: pd.DataFrame,
    model_cfg: ModelSpec | Mapping[str, Any],
    validation_cfg: ValidationSpec | Mapping[str, Any],
    seed: int = 0,
    *,
    n_jobs: int = -1,
    specificity: float = 0.9,
    backend: str | None = None,
    window_length: float | None = None,
    predictions_dir: str | os.PathLike[str] | None = None,
) -> tuple[Bundle, dict[str, Any]]:
    """Cross-validate a model config on a feature table, then fit it on all labeled windows.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns) or dask.dataframe.DataFrame
        Feature table (identifier columns then ``<channel>__<feature>`` columns). Windows
        with ``label`` None are not fitted or scored but take part in the per-recording
        normalisation of their side. A dask DataFrame is fitted by the distributed engine
        (:mod:`pipeline.learn.distributed`) unless ``model.engine`` is ``memory``; a pandas
        one by the memory engine unless ``model.engine`` is ``distributed``.
    model_cfg : ModelSpec or mapping
        ``{"name", "params", "estimators", "prep", "smooth"}``.
    validation_cfg : ValidationSpec or mapping
        ``{"scheme": "loso" | "group_kfold" | "within_subject" | "cross_session" | "random"}``
        (see :mod:`pipeline.learn.validation`).
    seed : int
        Seed of the estimators and of shuffled splits.
    n_jobs : int
        Parallel folds (joblib; on the Dask cluster when a Client is active).
    specificity : float
        For binary tasks, the report gives the threshold reaching this specificity.
    backend : {None, "dask", "local"}
        Where folds run: None picks ``"dask"`` when a ``distributed.Client`` is active.
    window_length : float, optional
        Window length in seconds; ``loso_calibrated`` needs it to drop the test windows
        overlapping a calibration segment. Its report's headline metrics are those of
        ``validation.headline_k()``, and ``calibration_curve`` holds every k.
    predictions_dir : path, optional
        Folder to write the out-of-fold predictions to (one Parquet file; the distributed
        engine writes one per partition, same schema: :func:`pipeline.learn.metrics.oof_frame`).

    Returns
    -------
    fitted_model : Bundle
        The Pipeline fitted on every labeled window of ``table``, and its metadata.
    report : dict
        JSON-ready: configs, seed, classes, folds, pooled out-of-fold metrics
        (``overall``), ``per_subject`` metrics and their ``per_subject_summary``, ROC
        curves, binary ``threshold``, ``timing`` in seconds.

    Raises
    ------
    LeakageError
        For a window-level random split not explicitly allowed.
    SpecError
        For invalid configs or tables.
    """
    spec = model_spec(model_cfg)
    if not isinstance(table, pd.DataFrame) and spec.engine == "memory":
        table = table.compute().reset_index(drop=True)
    # a dask table given with engine auto: the caller chose not to collect it
    if not isinstance(table, pd.DataFrame) or spec.engine == "distributed":
        if isinstance(table, pd.DataFrame):
            # one partition holds whole recordings, which is all the engine needs
            table = dd.from_pandas(table, npartitions=1, sort=False)
        return fit_and_validate_distributed(
            table,
            model_cfg,
            validation_cfg,
            seed,
            specificity=specificity,
            predictions_dir=predictions_dir,
            window_length=window_length,
        )
    t_start = time.perf_counter()
    vspec = validation_spec(validation_cfg)
    check_table(table)
    cols = FeaturePrep.from_spec(spec.prep).fit(table).columns_
    # Ship only what the folds use to the workers.
    table = table.loc[:, [*ID_COLUMNS, *cols]].reset_index(drop=True)
    classes = sorted(map(str, table["label"].dropna().unique()))
    folds = make_folds(table, vspec, seed, window_length)
    if n_jobs == 1:  # in this process: joblib's dask backend would ship folds to workers
        backend = "local"
    with _parallel_backend(backend) as backend:
        logger.info("running %d folds with joblib backend %r", len(folds), backend)
        results = joblib.Parallel(n_jobs=n_jobs)(
            joblib.delayed(_run_fold)(table, f, spec, seed, classes, vspec.calibration_weight)
            for f in folds
        )
    t_cv = time.perf_counter() - t_start
    curve = None
    if vspec.scheme == "loso_calibrated":  # headline: one k; every k in the curve
        curve = calibration_curve(table, folds, results, classes, seed)
        head = vspec.headline_k()
        keep = [i for i, f in enumerate(folds) if f.calibration == head]
        folds, results = [folds[i] for i in keep], [results[i] for i in keep]
    report = _build_report(table, folds, results, classes, seed)
    if curve is not None:
        report["calibration_curve"] = {
            "headline_k": vspec.headline_k(),
            "unit": vspec.calibration_unit or "repetitions",
            "points": curve,
        }
    report = {"model": config_json(model_cfg), "validation": config_json(validation_cfg), **report}
    oof = report.pop("_oof")
    if predictions_dir is not None:
        ids = table.iloc[oof["rows"]]
        codes = class_codes(oof["y"], classes)
        write_oof(oof_frame(ids, oof["fold"], codes, oof["proba"], classes), predictions_dir, 0)
    if len(classes) == 2:
        report["threshold"] = threshold_at_specificity(
            oof["y"] == classes[1], oof["proba"][:, 1], specificity
        )
    report.update(
        trust_sections(
            oof["subjects"],
            oof["y"],
            oof["pred"],
            oof["proba"],
            classes,
            report["per_subject"],
            vspec,
            spec.prep,
            seed,
        )
    )
    note = unlabeled_calibration_note(table, spec.prep)
    if note is not None:
        report["unlabeled_calibration"] = note
    n_perm = DEFAULT_PERMUTATIONS if vspec.n_permutations is None else vspec.n_permutations
    if n_perm and any(f.calibration for f in folds):
        from pipeline.learn.permutation import skipped

        report["permutation"] = skipped(
            "not implemented for calibrated folds (k > 0): the permutation refits do not "
            "weight the calibration windows nor prepare them with the held-out subject's"
        )
    else:
        with _parallel_backend(backend if backend != "loky" else "local"):
            report["permutation"] = permutation_test(
                table, folds, spec, seed, classes, report["overall"], n_perm, n_jobs=n_jobs
            )
    t0 = time.perf_counter()
    model = _fit(table, spec, seed, classes)
    report["timing"] = {
        "cross_validation_s": round(t_cv, 3),
        "final_fit_s": round(time.perf_counter() - t0, 3),
        "folds_s": [round(r[2], 3) for r in results],
        "backend": backend,
    }
    report["engine"] = {
        "name": "memory",
        "passes": [{"name": "collect+refits", "seconds": round(t_cv, 3)}],
    }
    report["feature_names"] = model.feature_names
    report["prep"] = model.metadata["prep"]
    logger.info(
        "%s: balanced accuracy %.3f (per subject median %s)",
        vspec.scheme,
        report["overall"]["balanced_accuracy"],
        report["per_subject_summary"]["balanced_accuracy"]["median"],
    )
    return model, report


def calibration_curve(
    table: pd.DataFrame,
    folds: list[Fold],
    results: list[tuple[np.ndarray, np.ndarray, float]],
    classes: list[str],
    seed: int,
) -> list[dict[str, Any]]:
    """Return the ``loso_calibrated`` curve: per k, pooled and per-subject metrics.

    Each k is scored on its own test sides (the held-out subjects' windows left after
    their calibration windows and those overlapping them), so k = 0 is plain LOSO.
    """
    from pipeline.learn.calibrate import curve_point

    points = []
    for k in sorted({float(f.calibration or 0.0) for f in folds}):
        idx = [i for i, f in enumerate(folds) if float(f.calibration or 0.0) == k]
        part = _build_report(
            table, [folds[i] for i in idx], [results[i] for i in idx], classes, seed
        )
        points.append(
            curve_point(
                k,
                sum(f["n_test_windows"] for f in part["folds"]),
                sum(calibration_windows(table, folds[i]) for i in idx),
                part["overall"],
                part["per_subject"],
                part["per_subject_summary"],
            )
        )
    return points


def _build_report(
    table: pd.DataFrame,
    folds: list[Fold],
    results: list[tuple[np.ndarray, np.ndarray, float]],
    classes: list[str],
    seed: int,
) -> dict[str, Any]:
    labels = table["label"].to_numpy()
    rows, probas, fold_reports = [], [], []
    for fold, (test_rows, proba, secs) in zip(folds, results, strict=True):
        lab = pd.notna(labels[test_rows])
        desc = fold.describe(table)
        desc["seconds"] = round(secs, 3)
        if lab.any():
            y = labels[test_rows][lab].astype(str)
            pred = np.asarray(classes, dtype=object)[proba[lab].argmax(1)]
            m = classification_metrics(y, pred, proba[lab], classes)
            desc["metrics"] = {
                k: m[k] for k in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
            }
        fold_reports.append(desc)
        rows.append(test_rows[lab])
        probas.append(proba[lab])
    rows_all = np.concatenate(rows)
    proba_all = np.concatenate(probas)
    if len(np.unique(rows_all)) != len(rows_all):
        logger.warning("some windows are tested in several folds; pooled metrics count each")
    y_all = labels[rows_all].astype(str)
    pred_all = np.asarray(classes, dtype=object)[proba_all.argmax(1)]
    subjects = table["subject"].astype(str).to_numpy()[rows_all]
    per_subject, summary = per_subject_metrics(subjects, y_all, pred_all, proba_all, classes)
    return {
        "seed": int(seed),
        "classes": classes,
        "n_windows": len(table),
        "n_labeled_windows": int(pd.notna(labels).sum()),
        "subjects": sorted(map(str, table["subject"].unique())),
        "folds": fold_reports,
        "overall": classification_metrics(y_all, pred_all, proba_all, classes),
        "per_subject": per_subject,
        "per_subject_summary": summary,
        "roc": roc_curves(y_all, proba_all, classes),
        "_oof": {
            "y": y_all,
            "proba": proba_all,
            "subjects": subjects,
            "pred": pred_all,
            "rows": rows_all,
            "fold": np.repeat(np.arange(len(rows), dtype=np.int32), [len(r) for r in rows]),
        },
    }
