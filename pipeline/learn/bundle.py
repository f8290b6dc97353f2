"""The model bundle: one skops file with a fitted Pipeline and what is needed to use it.

Saved with :mod:`skops.io`, never with bare pickle: loading reconstructs only types on an
allow-list of what this package produces (the scikit-learn estimators we build, NumPy
arrays, :class:`~pipeline.learn.prep.FeaturePrep`), so a file holding anything else is
refused before any object is built. The metadata is stored as one JSON string, so it can
hold no object at all; the file is a plain scikit-learn ``Pipeline`` plus that string.

Integrity covers the whole file: the member ``cohort-integrity.json`` of the zip holds the
SHA-256 of every other member (the schema, the metadata and every weight array) and a digest
over them all; :func:`load_bundle` checks them before anything is loaded, so swapping two
rows of ``coef_`` is refused like an edited label. A site that needs a keyed signature sets
``COHORT_BUNDLE_KEY``: bundles are then saved with an HMAC-SHA256 of that digest, and only
bundles signed with that key load (a digest alone can be recomputed by whoever edits the
file; an HMAC cannot without the key).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import skops.io as sio
from sklearn.pipeline import Pipeline

from pipeline._fs import atomic_write, canonical_json, package_versions, sha256_text
from pipeline.exceptions import BundleError
from pipeline.learn.model import Bundle

__all__ = [
    "ALLOWED_TYPES",
    "BUNDLE_FORMAT",
    "Bundle",
    "bundle_metadata",
    "load_bundle",
    "save_bundle",
]

logger = logging.getLogger(__name__)

#: The zip member holding every other member's SHA-256, their digest and the optional HMAC.
INTEGRITY_MEMBER = "cohort-integrity.json"
#: The environment variable holding the HMAC key of sites that sign their bundles.
KEY_ENV = "COHORT_BUNDLE_KEY"

BUNDLE_FORMAT = 2
"""2: the model is a scikit-learn Pipeline (1 held this package's own model class)."""
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
REQUIRED_METADATA = ("feature_names", "classes", "prep", "smooth")
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
        "pipeline.learn.prep.FeaturePrep",
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
        # the same Cython classes as scikit-learn < 1.8 names them (module "_loss")
        "_loss.CyHalfMultinomialLoss",
        "_loss.CyHalfBinomialLoss",
        "sklearn.preprocessing._label.LabelEncoder",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.float64",
        "numpy.int64",
        "builtins.tuple",
        "collections.OrderedDict",
    }
)


def bundle_metadata(
    model: Bundle, report: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """Assemble bundle metadata from a fitted model, its validation report and extras.

    Parameters
    ----------
    model : Bundle
        From :func:`pipeline.learn.fit_model` or :func:`pipeline.learn.fit_and_validate`;
        its metadata (feature names, classes, prep, smooth) is kept.
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
    if not isinstance(model, Bundle):
        msg = f"bundle_metadata: model must be a Bundle, got {type(model).__name__}"
        raise BundleError(msg)
    meta: dict[str, Any] = {
        **model.metadata,
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
    path: str | os.PathLike[str], model: Bundle | Pipeline, metadata: Mapping[str, Any]
) -> Path:
    """Write a model bundle atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path : path-like
        Destination file (conventionally ``*.skops``).
    model : Bundle or sklearn.pipeline.Pipeline
        The fitted Pipeline ``(prep, scale, clf)`` (of a Bundle); the file holds it and
        ``metadata``.
    metadata : mapping
        JSON-serialisable; must hold :data:`REQUIRED_METADATA` (use :func:`bundle_metadata`).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    pipeline = model.model if isinstance(model, Bundle) else model
    if not isinstance(pipeline, Pipeline) or "prep" not in pipeline.named_steps:
        msg = (
            "save_bundle: model must be a Bundle or a fitted Pipeline whose first step is "
            f"'prep', got {type(model).__name__}"
        )
        raise BundleError(msg)
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        msg = (
            f"save_bundle({str(path)!r}): metadata lacks keys {missing}; "
            "build it with bundle_metadata()"
        )
        raise BundleError(msg)
    if list(metadata["feature_names"]) != list(getattr(pipeline["prep"], "columns_", [])):
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
        "model": pipeline,
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
    atomic_write(path, _with_integrity(sio.dumps(payload)))
    logger.info("saved model bundle %s", path)
    return path


def _member_hashes(archive: zipfile.ZipFile) -> dict[str, str]:
    return {
        name: hashlib.sha256(archive.read(name)).hexdigest()
        for name in sorted(archive.namelist())
        if name != INTEGRITY_MEMBER
    }


def _signature(digest: str) -> str | None:
    key = os.environ.get(KEY_ENV)
    if not key:
        return None
    return hmac.new(key.encode("utf-8"), digest.encode("ascii"), hashlib.sha256).hexdigest()


def _with_integrity(data: bytes) -> bytes:
    """Return the skops zip ``data`` with :data:`INTEGRITY_MEMBER` added."""
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        members = _member_hashes(archive)
        digest = sha256_text(canonical_json(members))
        record = {"members": members, "sha256": digest, "hmac_sha256": _signature(digest)}
        archive.writestr(INTEGRITY_MEMBER, canonical_json(record))
    return buffer.getvalue()


def _check_integrity(path: Path) -> None:
    """Check every member of the bundle against its recorded SHA-256 (and HMAC, if keyed).

    Raises
    ------
    BundleError
        Naming the file, the members that changed, appeared or disappeared, or the
        missing or wrong signature.
    """
    where = f"model bundle {str(path)!r}"
    with zipfile.ZipFile(path) as archive:
        try:
            record = json.loads(archive.read(INTEGRITY_MEMBER))
            recorded = dict(record["members"])
        except (KeyError, ValueError, TypeError) as err:
            msg = (
                f"{where} has no valid {INTEGRITY_MEMBER} ({type(err).__name__}: {err}): it "
                "was written before whole-file digests, or edited; refusing to load it. "
                "Re-run `cohort run` to write a new bundle"
            )
            raise BundleError(msg) from None
        found = _member_hashes(archive)
    changed = sorted(n for n in recorded.keys() & found.keys() if recorded[n] != found[n])
    added, removed = sorted(found.keys() - recorded), sorted(recorded.keys() - found)
    digest = sha256_text(canonical_json(recorded))
    if changed or added or removed or digest != record.get("sha256"):
        parts = [
            f"{label} {names}"
            for label, names in (("changed", changed), ("added", added), ("removed", removed))
            if names
        ] or ["the digest over the members"]
        msg = (
            f"{where} does not match its digest ({'; '.join(parts)}): the file was modified "
            "after it was saved (weights, metadata or structure); refusing to load it"
        )
        raise BundleError(msg)
    expected = _signature(digest)
    if expected is not None:
        signed = record.get("hmac_sha256")
        if not isinstance(signed, str) or not hmac.compare_digest(signed, expected):
            state = "is not signed" if not signed else "is signed with another key"
            msg = (
                f"{where} {state}: {KEY_ENV} is set, so only bundles signed with that key "
                "load; re-save it with the key set, or unset the variable"
            )
            raise BundleError(msg)


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load a model bundle, refusing files that hold types outside :data:`ALLOWED_TYPES`.

    Raises
    ------
    BundleError
        If the file is missing, not a skops bundle, corrupted, holds a type not on the
        allow-list (named in the message), or any member differs from its recorded digest
        (weights included), or ``COHORT_BUNDLE_KEY`` is set and the bundle is not signed
        with it.
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
    _check_integrity(path)
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
    if not isinstance(model, Pipeline):
        msg = f"model bundle {str(path)!r}: expected a Pipeline, got {type(model).__name__}"
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
