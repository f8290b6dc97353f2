"""The model bundle: one skops file with a fitted model and what is needed to use it.

Saved with :mod:`skops.io`, never with bare pickle: loading reconstructs only types on an
allow-list of what this package produces (scikit-learn estimators we build, NumPy arrays,
our two model classes), so a file holding anything else is refused before any object is
built. The metadata is stored as one JSON string, so it can hold no object at all.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio

from pipeline._fs import atomic_write, canonical_json, package_versions, sha256_text
from pipeline.exceptions import BundleError
from pipeline.learn.fit import FittedModel

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
#: The distributions a bundle's model depends on (recorded, and compared at load).
BUNDLE_PACKAGES = (
    "cohort-pipeline",
    "scikit-learn",
    "numpy",
    "scipy",
    "skops",
    "pandas",
    "dask-ml",
)
REQUIRED_METADATA = ("feature_names", "classes", "prep")
"""Keys :func:`save_bundle` requires; :func:`bundle_metadata` fills them from a report."""

METADATA_KEYS = (
    "task",
    "preprocessing",
    "window_plan",
    "feature_specs",
    "feature_names",
    "prep",
    "smooth",
    "channels",
    "sampling_rate",
    "units",
    "classes",
    "label_mapping",
    "training_subjects",
    "validation",
    "store_fingerprint",
    "versions",
    "seed",
)

# Types a bundle may contain beyond skops' own defaults. Keep in sync with the estimators
# of pipeline.learn.estimators; a type outside this list makes load_bundle refuse the file.
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "pipeline.learn.fit.FittedModel",
        "pipeline.learn.normalize.FeaturePrep",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.discriminant_analysis.LinearDiscriminantAnalysis",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._stochastic_gradient.SGDClassifier",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._voting.VotingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn.utils._bunch.Bunch",
        "sklearn.linear_model._sgd_fast.Hinge",
        "sklearn.linear_model._sgd_fast.Log",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn.preprocessing._label.LabelEncoder",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.float64",
        "numpy.int64",
        "builtins.tuple",
        "collections.OrderedDict",
    }
)


@dataclass(frozen=True)
class Bundle:
    """A loaded model bundle.

    Attributes
    ----------
    model : FittedModel
    metadata : dict
        Task spec, preprocessing, window plan, feature specs and names, channels, sampling
        rate and units, label mapping, training subjects, validation metrics, store
        fingerprint, package versions, seed.
    path : pathlib.Path or None
    """

    model: FittedModel
    metadata: dict[str, Any]
    path: Path | None = None

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

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """Return per-window predictions and probabilities (see :func:`predict_table`)."""
        from pipeline.learn.fit import predict_table

        return predict_table(self, table)

    def _name(self) -> str:
        return repr(str(self.path)) if self.path else "(in memory)"


def _as_list(units: Any, n: int) -> list[str] | None:
    if units is None:
        return None
    if isinstance(units, str):
        return [units] * n
    return [str(u) for u in units]


def bundle_metadata(
    model: FittedModel, report: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """Assemble bundle metadata from a fitted model, its validation report and extras.

    Parameters
    ----------
    model : FittedModel
    report : mapping, optional
        Report of :func:`pipeline.learn.fit.fit_and_validate`; its summary metrics, folds
        and subjects are kept (not the per-window figures).
    **extra
        Any of :data:`METADATA_KEYS` (task, window_plan, feature_specs, channels,
        sampling_rate, units, store_fingerprint, ...).

    Returns
    -------
    dict
        JSON-serialisable metadata.
    """
    unknown = sorted(set(extra) - set(METADATA_KEYS))
    if unknown:
        msg = f"bundle_metadata: unknown keys {unknown}; allowed: {list(METADATA_KEYS)}"
        raise BundleError(msg)
    meta: dict[str, Any] = {
        "feature_names": list(model.feature_names),
        "classes": list(model.classes),
        "label_mapping": {c: i for i, c in enumerate(model.classes)},
        "prep": model.prep.to_dict(),
        "smooth": int(model.smooth),
        "versions": package_versions(BUNDLE_PACKAGES),
    }
    if report is not None:
        meta["training_subjects"] = list(report.get("subjects", []))
        meta["seed"] = report.get("seed")
        meta["validation"] = {
            "config": report.get("validation"),
            "overall": {
                k: report["overall"][k]
                for k in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
            },
            "per_subject_summary": report.get("per_subject_summary"),
            "threshold": report.get("threshold"),
        }
    meta.update(extra)
    return meta


def save_bundle(
    path: str | os.PathLike[str], model: FittedModel, metadata: Mapping[str, Any]
) -> Path:
    """Write a model bundle atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path : path-like
        Destination file (conventionally ``*.skops``).
    model : FittedModel
    metadata : mapping
        JSON-serialisable; must hold :data:`REQUIRED_METADATA` (use :func:`bundle_metadata`).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not isinstance(model, FittedModel):
        msg = f"save_bundle: model must be a FittedModel, got {type(model).__name__}"
        raise BundleError(msg)
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        msg = (
            f"save_bundle({str(path)!r}): metadata lacks keys {missing}; "
            "build it with bundle_metadata()"
        )
        raise BundleError(msg)
    if list(metadata["feature_names"]) != list(model.feature_names):
        msg = f"save_bundle({str(path)!r}): metadata 'feature_names' differ from the model's"
        raise BundleError(msg)
    try:
        meta_json = canonical_json(dict(metadata), "bundle metadata", strict=False)
    except TypeError as err:
        msg = f"save_bundle({str(path)!r}): metadata is not JSON-serialisable: {err}"
        raise BundleError(msg) from err
    payload = {
        "format": BUNDLE_FORMAT,
        "metadata_json": meta_json,
        "metadata_sha256": sha256_text(meta_json),
        "model": model,
    }
    untrusted = set(sio.get_untrusted_types(data=sio.dumps(payload)))
    unknown = sorted(untrusted - ALLOWED_TYPES)
    if unknown:
        msg = (
            f"save_bundle({str(path)!r}): the model holds types {unknown} that load_bundle "
            "would refuse; add them to pipeline.learn.bundle.ALLOWED_TYPES if they are safe"
        )
        raise BundleError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: sio.dump(payload, fh))
    logger.info("saved model bundle %s", path)
    return path


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load a model bundle, refusing files that hold types outside :data:`ALLOWED_TYPES`.

    Raises
    ------
    BundleError
        If the file is missing, not a skops bundle, corrupted, tampered with (metadata
        checksum), or holds a type not on the allow-list (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"model bundle {str(path)!r} does not exist"
        raise BundleError(msg)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError, json.JSONDecodeError, OSError) as err:
        msg = (
            f"model bundle {str(path)!r} is not a readable skops file ({type(err).__name__}: {err})"
        )
        raise BundleError(msg) from err
    unknown = sorted(set(untrusted) - ALLOWED_TYPES)
    if unknown:
        msg = (
            f"model bundle {str(path)!r} holds types this package does not produce: {unknown}; "
            "refusing to load it (it may have been tampered with, or was written by another tool)"
        )
        raise BundleError(msg)
    try:
        payload = sio.load(path, trusted=list(untrusted))
    except Exception as err:
        msg = f"model bundle {str(path)!r} cannot be loaded ({type(err).__name__}: {err})"
        raise BundleError(msg) from err
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        msg = f"model bundle {str(path)!r}: expected bundle format {BUNDLE_FORMAT}, got {got!r}"
        raise BundleError(msg)
    meta_json = payload.get("metadata_json", "")
    if sha256_text(str(meta_json)) != payload.get("metadata_sha256"):
        msg = f"model bundle {str(path)!r}: metadata checksum mismatch (file was modified)"
        raise BundleError(msg)
    model = payload.get("model")
    if not isinstance(model, FittedModel):
        msg = f"model bundle {str(path)!r}: expected a FittedModel, got {type(model).__name__}"
        raise BundleError(msg)
    metadata = json.loads(meta_json)
    _warn_versions(path, metadata.get("versions", {}))
    return Bundle(model=model, metadata=metadata, path=path)


def _warn_versions(path: Path, saved: Mapping[str, str]) -> None:
    now = package_versions(BUNDLE_PACKAGES)
    for name in ("scikit-learn", "numpy"):
        if name in saved and saved[name] != now.get(name):
            logger.warning(
                "model bundle %s was saved with %s %s, running %s %s",
                path,
                name,
                saved[name],
                name,
                now.get(name),
            )
