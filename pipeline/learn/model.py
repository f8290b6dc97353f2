"""A fitted model: a scikit-learn ``Pipeline`` plus its metadata, and prediction with it.

The Pipeline is ``(prep, scale, clf)`` (:func:`pipeline.learn.estimators.make_estimator`);
the metadata says what the Pipeline alone cannot: the class order of the probability
columns, the feature columns, the causal smoothing of probabilities, and, in a saved
bundle, the task, preprocessing, window plan, channels and validation figures.
:class:`Bundle` holds the two; :func:`predict_frame` is prediction over (pipeline,
metadata, table), with each recording's probabilities smoothed over its previous windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from pipeline._fs import jsonable
from pipeline.exceptions import BundleError, SpecError
from pipeline.learn.metrics import predictions_frame
from pipeline.learn.prep import ID_COLUMNS, trailing_mean

__all__ = [
    "Bundle",
    "align_proba",
    "check_table",
    "config_json",
    "model_metadata",
    "predict_frame",
    "predict_proba",
    "predict_table",
]


def check_table(table: pd.DataFrame) -> None:
    """Raise :class:`SpecError` unless ``table`` has the identifier columns and a label.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
    """
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


def config_json(cfg: Any) -> Any:
    """Return a config for a report: as the user gave it (a mapping), or a model's set keys."""
    if isinstance(cfg, Mapping):
        return jsonable(dict(cfg))
    return cfg.model_dump(mode="json", exclude_none=True)


def model_metadata(pipeline: Pipeline, smooth: int, classes: list[str]) -> dict[str, Any]:
    """Return what prediction needs beside a fitted Pipeline.

    Returns
    -------
    dict
        ``feature_names`` (the table columns the prep reads, in order), ``classes`` (order
        of the probability columns), ``label_mapping``, ``prep`` (its parameters) and
        ``smooth``; JSON-serialisable.
    """
    return {
        "feature_names": list(pipeline["prep"].columns_),
        "classes": list(classes),
        "label_mapping": {c: i for i, c in enumerate(classes)},
        "prep": pipeline["prep"].spec().model_dump(mode="json"),
        "smooth": int(smooth),
    }


def predict_proba(
    pipeline: Pipeline, metadata: Mapping[str, Any], table: pd.DataFrame
) -> np.ndarray:
    """Return class probabilities of every window, smoothed per recording.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted; its classifier may know fewer classes than ``metadata["classes"]`` (a fold
        whose training side misses one): those columns are 0.
    metadata : mapping
        ``classes`` and ``smooth`` (see :func:`model_metadata`).
    table : pandas.DataFrame of shape (n_windows, n_columns)
        Feature table of whole recordings.

    Returns
    -------
    numpy.ndarray of shape (n_windows, n_classes)
        Columns in the order of ``metadata["classes"]``.
    """
    raw = np.asarray(pipeline.predict_proba(table), dtype=float)
    return align_proba(raw, [str(c) for c in pipeline.classes_], metadata, table)


def align_proba(
    proba: np.ndarray, est_classes: list[str], metadata: Mapping[str, Any], table: pd.DataFrame
) -> np.ndarray:
    """Return a classifier's probabilities in the order of ``metadata["classes"]``, smoothed.

    Parameters
    ----------
    proba : numpy.ndarray of shape (n_windows, len(est_classes))
        ``predict_proba`` of the classifier, columns in the order of ``est_classes``.
    est_classes : list of str
        The classes the classifier knows (a subset of ``metadata["classes"]``).
    metadata : mapping
        ``classes`` and ``smooth`` (see :func:`model_metadata`).
    table : pandas.DataFrame of shape (n_windows, n_columns)
        The windows' ``recording`` and ``start`` (whole recordings), for the smoothing.

    Returns
    -------
    numpy.ndarray of shape (n_windows, n_classes)
    """
    classes = list(metadata["classes"])
    if est_classes != classes:
        full = np.zeros((len(proba), len(classes)))
        for j, c in enumerate(est_classes):
            full[:, classes.index(c)] = proba[:, j]
        proba = full
    smooth = int(metadata.get("smooth", 1))
    if smooth > 1:
        proba = trailing_mean(pd.DataFrame(proba, index=table.index), table, smooth).to_numpy()
    return proba


def predict_frame(
    pipeline: Pipeline, metadata: Mapping[str, Any], table: pd.DataFrame
) -> pd.DataFrame:
    """Return per-window predictions and class probabilities of a feature table.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
    metadata : mapping
        ``feature_names``, ``classes`` and ``smooth``.
    table : pandas.DataFrame of shape (n_windows, n_columns)
        Feature table holding whole recordings (normalisation uses each recording's
        own windows).

    Returns
    -------
    pandas.DataFrame of shape (n_windows, n_ids + 1 + n_classes)
        Identifier columns, ``prediction`` and ``proba__<class>``, in table row order.

    Raises
    ------
    BundleError
        If the table lacks feature columns the model was trained on.
    """
    missing = [c for c in metadata["feature_names"] if c not in table.columns]
    if missing:
        msg = (
            f"feature table lacks {len(missing)} feature columns the model was trained "
            f"on, e.g. {missing[:5]}; compute the features of the bundle's feature specs"
        )
        raise BundleError(msg)
    classes = list(metadata["classes"])
    proba = predict_proba(pipeline, metadata, table)
    pred = np.asarray(classes, dtype=object)[proba.argmax(1)]
    return predictions_frame(table, pred, proba, classes)


@dataclass(frozen=True)
class Bundle:
    """A fitted model: a scikit-learn Pipeline and its metadata (what a bundle file holds).

    Attributes
    ----------
    model : sklearn.pipeline.Pipeline
        ``(prep, scale, clf)``, fitted; input a feature table.
    metadata : dict
        At least ``feature_names``, ``classes``, ``prep``, ``smooth`` (see
        :func:`model_metadata`); a saved bundle adds the task spec, preprocessing, window
        plan, feature specs, channels, sampling rate and units, training subjects,
        validation metrics, store fingerprint, package versions, seed.
    path : pathlib.Path or None
        The file it was loaded from.
    """

    model: Pipeline
    metadata: dict[str, Any]
    path: Path | None = None

    @property
    def classes(self) -> list[str]:
        """Return the classes, in the order of the probability columns."""
        return list(self.metadata["classes"])

    @property
    def feature_names(self) -> list[str]:
        """Return the feature columns the model reads, in order."""
        return list(self.metadata["feature_names"])

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """Return per-window predictions and probabilities (see :func:`predict_table`)."""
        return predict_table(self, table)

    def check_compatible(self, recording_attrs: Mapping[str, Any]) -> None:
        """Raise :class:`BundleError` naming each difference in channels, rate or units.

        Parameters
        ----------
        recording_attrs : mapping
            A recording's attributes: ``channels`` (sequence of names), ``sampling_rate``
            (Hz) and ``units`` (one string or one per channel), plus optionally
            ``recording`` or ``source`` used to name it in the message. Keys the bundle
            does not record are not checked.
        """
        where = recording_attrs.get("recording") or recording_attrs.get("source") or "recording"
        problems = []
        want_ch = self.metadata.get("channels")
        if want_ch is not None:
            got_ch = recording_attrs.get("channels")
            got_ch = None if got_ch is None else [str(c) for c in got_ch]
            if got_ch != [str(c) for c in want_ch]:
                missing = [c for c in want_ch if got_ch is None or c not in got_ch]
                extra = [c for c in (got_ch or []) if c not in want_ch]
                detail = (
                    f" (missing {missing}, unexpected {extra})"
                    if (missing or extra)
                    else " (order differs)"
                )
                problems.append(f"channels: bundle expects {list(want_ch)}, got {got_ch!r}{detail}")
        want_fs = self.metadata.get("sampling_rate")
        if want_fs is not None:
            got_fs = recording_attrs.get("sampling_rate")
            if got_fs is None or not np.isclose(float(got_fs), float(want_fs), rtol=1e-6):
                problems.append(f"sampling_rate: bundle expects {want_fs!r} Hz, got {got_fs!r}")
        want_u = self.metadata.get("units")
        if want_u is not None:
            got_u = recording_attrs.get("units")
            n = len(want_ch) if want_ch else 1
            if _as_list(got_u, n) != _as_list(want_u, n):
                problems.append(f"units: bundle expects {want_u!r}, got {got_u!r}")
        if problems:
            msg = f"{where} does not match the model bundle {self._name()}: " + "; ".join(problems)
            raise BundleError(msg)

    def _name(self) -> str:
        return repr(str(self.path)) if self.path else "(in memory)"


def _as_list(units: Any, n: int) -> list[str] | None:
    if units is None:
        return None
    if isinstance(units, str):
        return [units] * n
    return [str(u) for u in units]


def predict_table(bundle: Bundle, table: Any) -> Any:
    """Return per-window predictions and per-class probabilities of a feature table.

    Parameters
    ----------
    bundle : Bundle
        From :func:`pipeline.learn.fit_model`, :func:`pipeline.learn.fit_and_validate` or
        :func:`pipeline.learn.load_bundle`.
    table : pandas.DataFrame of shape (n_windows, n_columns) or dask.dataframe.DataFrame
        Feature table of whole recordings, with the bundle's feature columns.

    Returns
    -------
    pandas.DataFrame of shape (n_windows, n_ids + 1 + n_classes)
        Identifier columns, ``prediction`` and ``proba__<class>`` for every window, in the
        table's row order. A dask input gives a lazy dask DataFrame, predicted per
        recording (each partition holds whole recordings; the order of rows across
        recordings may change).
    """
    if not isinstance(bundle, Bundle):
        msg = (
            f"predict_table: expected a Bundle (a fitted Pipeline and its metadata), got "
            f"{type(bundle).__name__}; a bare Pipeline lacks the class order and smoothing: "
            "wrap it as Bundle(pipeline, metadata)"
        )
        raise BundleError(msg)
    if isinstance(table, pd.DataFrame):
        return predict_frame(bundle.model, bundle.metadata, table)
    classes = bundle.classes
    meta = predictions_frame(
        table._meta, np.array([], dtype=object), np.zeros((0, len(classes))), classes
    )

    def part(df: pd.DataFrame) -> pd.DataFrame:
        if len(df) == 0:
            return meta
        return predict_frame(bundle.model, bundle.metadata, df)

    return table.shuffle(on="recording").map_partitions(part, meta=meta)
