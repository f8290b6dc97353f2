"""Model fitting, subject-aware validation, metrics, reports and model bundles."""

from pipeline.learn.bundle import Bundle, bundle_metadata, load_bundle, save_bundle
from pipeline.learn.estimators import available_estimators, make_estimator, register_estimator
from pipeline.learn.fit import FittedModel, fit_and_validate, fit_model, predict_table
from pipeline.learn.metrics import (
    classification_metrics,
    per_subject_metrics,
    threshold_at_specificity,
)
from pipeline.learn.normalize import FeaturePrep, feature_columns
from pipeline.learn.presets import preset
from pipeline.learn.validation import Fold, make_folds

__all__ = [
    "Bundle",
    "FeaturePrep",
    "FittedModel",
    "Fold",
    "available_estimators",
    "bundle_metadata",
    "classification_metrics",
    "feature_columns",
    "fit_and_validate",
    "fit_model",
    "load_bundle",
    "make_estimator",
    "make_folds",
    "per_subject_metrics",
    "predict_table",
    "preset",
    "register_estimator",
    "save_bundle",
    "threshold_at_specificity",
]
