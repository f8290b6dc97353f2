"""Model fitting, subject-aware validation, metrics, reports and model bundles.

Imports inside the package run one way: ``prep``, ``estimators``, ``validation``, ``metrics``
-> ``model`` (a fitted Pipeline and its metadata; prediction) -> ``sufficient`` (LDA and
Gaussian NB from moments) -> ``outofcore`` -> ``distributed`` (the engine that leaves the
table on the cluster) -> ``fit`` -> ``bundle`` (the skops file).
"""

from typing import TYPE_CHECKING

from pipeline._lazy import lazy_exports

# The names below are imported on first use (PEP 562): importing one submodule, e.g.
# ``pipeline.learn.estimators`` for the task check, does not import the bundle format (skops)
# or the distributed engine, which an unchanged rerun never needs.
_EXPORTS = {
    "Bundle": "pipeline.learn.bundle",
    "CrossSessionSplit": "pipeline.learn.validation",
    "FeaturePrep": "pipeline.learn.prep",
    "Fold": "pipeline.learn.validation",
    "LeaveSubjectOut": "pipeline.learn.validation",
    "RandomWindowSplit": "pipeline.learn.validation",
    "SubjectKFold": "pipeline.learn.validation",
    "WithinSubjectSplit": "pipeline.learn.validation",
    "available_estimators": "pipeline.learn.estimators",
    "bundle_metadata": "pipeline.learn.bundle",
    "classification_metrics": "pipeline.learn.metrics",
    "feature_columns": "pipeline.learn.prep",
    "fit_and_validate": "pipeline.learn.fit",
    "fit_model": "pipeline.learn.fit",
    "load_bundle": "pipeline.learn.bundle",
    "make_classifier": "pipeline.learn.estimators",
    "make_estimator": "pipeline.learn.estimators",
    "make_folds": "pipeline.learn.validation",
    "make_splitter": "pipeline.learn.validation",
    "per_subject_metrics": "pipeline.learn.metrics",
    "predict_frame": "pipeline.learn.model",
    "predict_table": "pipeline.learn.model",
    "preset": "pipeline.learn.presets",
    "register_estimator": "pipeline.learn.estimators",
    "save_bundle": "pipeline.learn.bundle",
    "threshold_at_specificity": "pipeline.learn.metrics",
}

if TYPE_CHECKING:  # the static view of the same names
    from pipeline.learn.bundle import Bundle, bundle_metadata, load_bundle, save_bundle
    from pipeline.learn.estimators import (
        available_estimators,
        make_classifier,
        make_estimator,
        register_estimator,
    )
    from pipeline.learn.fit import fit_and_validate, fit_model
    from pipeline.learn.metrics import (
        classification_metrics,
        per_subject_metrics,
        threshold_at_specificity,
    )
    from pipeline.learn.model import predict_frame, predict_table
    from pipeline.learn.prep import FeaturePrep, feature_columns
    from pipeline.learn.presets import preset
    from pipeline.learn.validation import (
        CrossSessionSplit,
        Fold,
        LeaveSubjectOut,
        RandomWindowSplit,
        SubjectKFold,
        WithinSubjectSplit,
        make_folds,
        make_splitter,
    )


__getattr__, __dir__ = lazy_exports("pipeline.learn", _EXPORTS, globals())


__all__ = [
    "Bundle",
    "CrossSessionSplit",
    "FeaturePrep",
    "Fold",
    "LeaveSubjectOut",
    "RandomWindowSplit",
    "SubjectKFold",
    "WithinSubjectSplit",
    "available_estimators",
    "bundle_metadata",
    "classification_metrics",
    "feature_columns",
    "fit_and_validate",
    "fit_model",
    "load_bundle",
    "make_classifier",
    "make_estimator",
    "make_folds",
    "make_splitter",
    "per_subject_metrics",
    "predict_frame",
    "predict_table",
    "preset",
    "register_estimator",
    "save_bundle",
    "threshold_at_specificity",
]
