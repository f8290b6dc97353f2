"""Fit and validate models on feature tables; predict with a fitted model or a bundle.

The main entry points are :func:`fit_and_validate` and :func:`predict_table`. Folds run in
parallel with joblib, on the Dask cluster when a ``distributed.Client`` is active (joblib's
``"dask"`` backend) and on local processes otherwise. Tables given as dask DataFrames (larger
than memory) go through :mod:`pipeline.learn.outofcore`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from pipeline._fs import jsonable
from pipeline.exceptions import BundleError, SpecError
from pipeline.learn.estimators import make_estimator, validate_model_config
from pipeline.learn.metrics import (
    classification_metrics,
    per_subject_metrics,
    predictions_frame,
    roc_curves,
    threshold_at_specificity,
)
from pipeline.learn.normalize import ID_COLUMNS, FeaturePrep
from pipeline.learn.validation import Fold, make_folds

if TYPE_CHECKING:
    from pipeline.learn.bundle import Bundle

logger = logging.getLogger(__name__)


@dataclass
class FittedModel:
    """A fitted estimator with the feature preparation and post-processing it needs.

    Attributes
    ----------
    estimator : sklearn estimator
        Fitted on the prepared features, input of shape (n_windows, n_features).
    prep : FeaturePrep
        Applied to a feature table before the estimator.
    feature_names : list of str
        Table columns the estimator was fitted on, in order.
    classes : list of str
        ``estimator.classes_`` as strings; probability columns follow this order.
    smooth : int
        Trailing mean of probabilities over this many windows per recording (1 = off).
    """

    estimator: BaseEstimator
    prep: FeaturePrep
    feature_names: list[str]
    classes: list[str]
    smooth: int = 1

    def predict_frame(self, table: pd.DataFrame) -> pd.DataFrame:
        """Return per-window predictions and class probabilities of a feature table.

        Parameters
        ----------
        table : pandas.DataFrame of shape (n_windows, n_columns)
            Feature table holding whole recordings (normalisation uses each recording's
            own windows).

        Returns
        -------
        pandas.DataFrame of shape (n_windows, n_ids + 1 + n_classes)
            Identifier columns, ``prediction`` and ``proba__<class>``, in table row order.
        """
        missing = [c for c in self.feature_names if c not in table.columns]
        if missing:
            msg = (
                f"feature table lacks {len(missing)} feature columns the model was trained "
                f"on, e.g. {missing[:5]}; compute the features of the bundle's feature specs"
            )
            raise BundleError(msg)
        proba = _predict_proba(self, table)
        pred = np.asarray(self.classes, dtype=object)[proba.argmax(1)]
        return predictions_frame(table, pred, proba, self.classes)


def _predict_proba(model: FittedModel, table: pd.DataFrame) -> np.ndarray:
    X = model.prep.apply(table, columns=model.feature_names).to_numpy()
    proba = np.asarray(model.estimator.predict_proba(X), dtype=float)
    est_classes = [str(c) for c in model.estimator.classes_]
    if est_classes != model.classes:  # a fold may miss a class: align columns
        full = np.zeros((len(X), len(model.classes)))
        for j, c in enumerate(est_classes):
            full[:, model.classes.index(c)] = proba[:, j]
        proba = full
    if model.smooth > 1:
        proba = _smooth(proba, table, model.smooth)
    return proba


def _smooth(proba: np.ndarray, table: pd.DataFrame, n: int) -> np.ndarray:
    from pipeline.learn.normalize import trailing_mean

    df = pd.DataFrame(proba, index=table.index)
    return trailing_mean(df, table, n).to_numpy()


def _check_table(table: pd.DataFrame) -> None:
    missing = [c for c in ID_COLUMNS if c not in table.columns]
    if missing:
        msg = (
            f"feature table: missing identifier columns {missing}; expected {list(ID_COLUMNS)} "
            f"followed by '<channel>__<feature>' columns, got {list(table.columns)[:10]}"
        )
        raise SpecError(msg)
    if table["label"].notna().sum() == 0:
        msg = "feature table: every window has label None; nothing to fit"
        raise SpecError(msg)


def _fit(
    table: pd.DataFrame, model_cfg: Mapping[str, Any], seed: int, classes: list[str]
) -> FittedModel:
    prep = FeaturePrep.from_config(model_cfg.get("prep"))
    cols = prep.select(table)
    X = prep.apply(table, columns=cols)
    labeled = table["label"].notna().to_numpy()
    est = make_estimator(model_cfg, seed)
    y = table["label"].to_numpy()[labeled].astype(str)
    est.fit(X.to_numpy()[labeled], y)
    return FittedModel(est, prep, cols, classes, int(model_cfg.get("smooth", 1)))


def fit_model(table: pd.DataFrame, model_cfg: Mapping[str, Any], seed: int = 0) -> FittedModel:
    """Fit a model on every labeled window of a feature table (no validation).

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        Feature table; rows with ``label`` None take part in normalisation only.
    model_cfg : mapping
        Model config (see :mod:`pipeline.learn.estimators`) with optional ``prep`` and
        ``smooth``.
    seed : int

    Returns
    -------
    FittedModel
    """
    _validate_model_cfg(model_cfg)
    _check_table(table)
    classes = sorted(map(str, table["label"].dropna().unique()))
    return _fit(table, model_cfg, seed, classes)


def _validate_model_cfg(model_cfg: Mapping[str, Any]) -> None:
    validate_model_config(model_cfg)
    FeaturePrep.from_config(model_cfg.get("prep"))
    smooth = model_cfg.get("smooth", 1)
    if not isinstance(smooth, int) or isinstance(smooth, bool) or smooth < 1:
        msg = f"model.smooth: expected an integer >= 1 (windows averaged), got {smooth!r}"
        raise SpecError(msg)


def _run_fold(
    table: pd.DataFrame, fold: Fold, model_cfg: Mapping[str, Any], seed: int, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit on the training side, predict the test side; sides are prepared separately."""
    t0 = time.perf_counter()
    train = table.iloc[fold.train]
    test = table.iloc[fold.test]
    model = _fit(train, model_cfg, seed, classes)
    proba = _predict_proba(model, test)
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
    model_cfg: Mapping[str, Any],
    validation_cfg: Mapping[str, Any],
    seed: int = 0,
    *,
    n_jobs: int = -1,
    specificity: float = 0.9,
    backend: str | None = None,
) -> tuple[FittedModel, dict[str, Any]]:
    """Cross-validate a model config on a feature table, then fit it on all labeled windows.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns) or dask.dataframe.DataFrame
        Feature table (identifier columns then ``<channel>__<feature>`` columns). Windows
        with ``label`` None are not fitted or scored but take part in the per-recording
        normalisation of their side. A dask DataFrame is fitted out of core.
    model_cfg : mapping
        ``{"name", "params", "estimators", "prep", "smooth"}``.
    validation_cfg : mapping
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

    Returns
    -------
    fitted_model : FittedModel
        Fitted on every labeled window of ``table``.
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
    if not isinstance(table, pd.DataFrame):
        from pipeline.learn.outofcore import fit_and_validate_dask

        return fit_and_validate_dask(table, model_cfg, validation_cfg, seed)
    t_start = time.perf_counter()
    _validate_model_cfg(model_cfg)
    _check_table(table)
    cols = FeaturePrep.from_config(model_cfg.get("prep")).select(table)
    # Ship only what the folds use to the workers.
    table = table.loc[:, [*ID_COLUMNS, *cols]].reset_index(drop=True)
    classes = sorted(map(str, table["label"].dropna().unique()))
    folds = make_folds(table, validation_cfg, seed)
    if n_jobs == 1:  # in this process: joblib's dask backend would ship folds to workers
        backend = "local"
    with _parallel_backend(backend) as backend:
        logger.info("running %d folds with joblib backend %r", len(folds), backend)
        results = joblib.Parallel(n_jobs=n_jobs)(
            joblib.delayed(_run_fold)(table, f, model_cfg, seed, classes) for f in folds
        )
    t_cv = time.perf_counter() - t_start
    report = _build_report(table, folds, results, classes, model_cfg, validation_cfg, seed)
    if len(classes) == 2:
        oof = report.pop("_oof")
        report["threshold"] = threshold_at_specificity(
            oof["y"] == classes[1], oof["proba"][:, 1], specificity
        )
    else:
        report.pop("_oof")
    t0 = time.perf_counter()
    model = _fit(table, model_cfg, seed, classes)
    report["timing"] = {
        "cross_validation_s": round(t_cv, 3),
        "final_fit_s": round(time.perf_counter() - t0, 3),
        "folds_s": [round(r[2], 3) for r in results],
        "backend": backend,
    }
    report["feature_names"] = model.feature_names
    report["prep"] = model.prep.to_dict()
    logger.info(
        "%s: balanced accuracy %.3f (per subject median %s)",
        validation_cfg["scheme"],
        report["overall"]["balanced_accuracy"],
        report["per_subject_summary"]["balanced_accuracy"]["median"],
    )
    return model, report


def _build_report(
    table: pd.DataFrame,
    folds: list[Fold],
    results: list[tuple[np.ndarray, np.ndarray, float]],
    classes: list[str],
    model_cfg: Mapping[str, Any],
    validation_cfg: Mapping[str, Any],
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
        "model": jsonable(dict(model_cfg)),
        "validation": jsonable(dict(validation_cfg)),
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
        "_oof": {"y": y_all, "proba": proba_all},
    }


def predict_table(bundle: Bundle | FittedModel, table: pd.DataFrame) -> pd.DataFrame:
    """Return per-window predictions and per-class probabilities of a feature table.

    Parameters
    ----------
    bundle : Bundle or FittedModel
        A loaded model bundle (:func:`pipeline.learn.bundle.load_bundle`) or a fitted model.
    table : pandas.DataFrame of shape (n_windows, n_columns) or dask.dataframe.DataFrame
        Feature table of whole recordings, with the bundle's feature columns.

    Returns
    -------
    pandas.DataFrame of shape (n_windows, n_ids + 1 + n_classes)
        Identifier columns, ``prediction`` and ``proba__<class>`` for every window, in the
        table's row order. A dask input gives a dask DataFrame, predicted per recording.
    """
    model = bundle.model if hasattr(bundle, "metadata") else bundle
    if not isinstance(model, FittedModel):
        msg = f"predict_table: expected a Bundle or FittedModel, got {type(bundle).__name__}"
        raise BundleError(msg)
    if not isinstance(table, pd.DataFrame):
        from pipeline.learn.outofcore import predict_dask

        return predict_dask(model, table)
    return model.predict_frame(table)
