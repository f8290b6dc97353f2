"""Model fitting, subject-aware validation, metrics, reports and model bundles.

Imports inside the package run one way: ``prep``, ``estimators``, ``validation``, ``metrics``
-> ``model`` (a fitted Pipeline and its metadata; prediction) -> ``sufficient`` (LDA and
Gaussian NB from moments) -> ``outofcore`` -> ``distributed`` (the engine that leaves the
table on the cluster) -> ``fit`` -> ``bundle`` (the skops file).
"""

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
