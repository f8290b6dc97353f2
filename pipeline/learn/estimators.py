"""Unfitted models built from a model config: feature prep, scaling and a named classifier.

A model config is a :class:`pipeline.spec.learn.ModelSpec` or a mapping validated into one::

    {"name": "soft_vote",
     "params": {},                     # passed to the estimator (not to the scaler)
     "estimators": [{"name": "lda"}, {"name": "random_forest", "params": {"n_estimators": 200}}],
     "prep": {"features": ["mav", "wl"], "log": ["mav", "wl"], "normalize": "recording"}}

It becomes a scikit-learn ``Pipeline([("prep", FeaturePrep), ("scale", StandardScaler),
("clf", classifier)])``, with ``class_weight="balanced"`` where the classifier supports it;
``soft_vote`` is a ``VotingClassifier(voting="soft")`` of its members after the one scaler.
``smooth`` (trailing mean of probabilities over that many windows of a recording) acts on
the predictions, outside the Pipeline (:mod:`pipeline.learn.model`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sklearn.base import ClassifierMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.exceptions import SpecError
from pipeline.learn.prep import FeaturePrep
from pipeline.spec.errors import parse
from pipeline.spec.learn import (
    MemberSpec,
    ModelSpec,
    estimator_names,
    register_estimator_name,
    unregister_estimator_name,
)

__all__ = [
    "available_estimators",
    "make_classifier",
    "make_estimator",
    "model_spec",
    "register_estimator",
    "unregister_estimator",
]

Factory = Callable[[dict[str, Any], int], ClassifierMixin]


def _lda(params: dict[str, Any], seed: int) -> ClassifierMixin:
    # "lsqr" works on the (n_features, n_features) covariance: far cheaper than "svd" on
    # (n_windows, n_features) and equal predictions without shrinkage.
    return LinearDiscriminantAnalysis(**({"solver": "lsqr"} | params))


def _gaussian_nb(params: dict[str, Any], seed: int) -> ClassifierMixin:
    return GaussianNB(**params)


def _logreg(params: dict[str, Any], seed: int) -> ClassifierMixin:
    kw = {"max_iter": 2000, "class_weight": "balanced", "random_state": seed} | params
    return LogisticRegression(**kw)


def _logreg_cv(params: dict[str, Any], seed: int) -> ClassifierMixin:
    # C chosen inside the training rows (scikit-learn's grid of 10 values, 1e-4 .. 1e4, and
    # 5 stratified folds), so a validation fold's held-out subjects never choose it
    kw = {"max_iter": 2000, "class_weight": "balanced", "random_state": seed} | params
    return LogisticRegressionCV(**kw)


def _random_forest(params: dict[str, Any], seed: int) -> ClassifierMixin:
    kw = {
        "n_estimators": 200,
        "min_samples_leaf": 2,
        "class_weight": "balanced",
        "n_jobs": 1,
        "random_state": seed,
    } | params
    return RandomForestClassifier(**kw)


def _gradient_boosting(params: dict[str, Any], seed: int) -> ClassifierMixin:
    kw = {"max_iter": 200, "class_weight": "balanced", "random_state": seed} | params
    return HistGradientBoostingClassifier(**kw)


def _sgd(params: dict[str, Any], seed: int) -> ClassifierMixin:
    # partial_fit refuses class_weight="balanced"; the out-of-core path passes a dict.
    kw = {"loss": "log_loss", "alpha": 1e-4, "random_state": seed} | params
    return SGDClassifier(**kw)


_REGISTRY: dict[str, Factory] = {
    "lda": _lda,
    "gaussian_nb": _gaussian_nb,
    "logreg": _logreg,
    "logreg_cv": _logreg_cv,
    "random_forest": _random_forest,
    "gradient_boosting": _gradient_boosting,
    "sgd": _sgd,
}


def register_estimator(name: str, factory: Factory) -> None:
    """Register ``factory(params, seed) -> classifier`` under ``name``.

    The name becomes valid in model configs (:func:`pipeline.spec.learn.estimator_names`).

    Raises
    ------
    SpecError
        If ``name`` is already registered or is the reserved ``"soft_vote"``.
    """
    register_estimator_name(name)
    _REGISTRY[name] = factory


def unregister_estimator(name: str) -> None:
    """Remove an estimator added with :func:`register_estimator` (built-ins stay)."""
    unregister_estimator_name(name)
    _REGISTRY.pop(name, None)


def available_estimators() -> list[str]:
    """Return the estimator names a model config may use."""
    return estimator_names()


def model_spec(cfg: ModelSpec | Mapping[str, Any], source: str = "model config") -> ModelSpec:
    """Return ``cfg`` validated as a :class:`~pipeline.spec.learn.ModelSpec`.

    Raises
    ------
    SpecError
        Naming ``source``, the key path (``model.estimators.1.name``), what was expected and
        what was found.
    """
    return parse(ModelSpec, cfg, source, "model")


def make_classifier(member: MemberSpec, seed: int = 0) -> ClassifierMixin:
    """Return the unfitted classifier of a model or member config (no prep, no scaler).

    Raises
    ------
    SpecError
        If the estimator refuses a parameter of ``params``.
    """
    name = member.name
    params = dict(member.params or {})
    if name == "soft_vote":
        members = [
            (f"{m.name}_{i}", make_classifier(m, seed))
            for i, m in enumerate(member.estimators or [])
        ]
        return VotingClassifier(members, voting="soft", **params)
    try:
        return _REGISTRY[name](params, seed)
    except TypeError as err:
        msg = f"model.params for {name!r}: {err}"
        raise SpecError(msg) from err


def make_estimator(cfg: ModelSpec | Mapping[str, Any], seed: int = 0) -> Pipeline:
    """Build the unfitted model of a model config.

    Parameters
    ----------
    cfg : ModelSpec or mapping
        ``{"name": ..., "params": {...}, "prep": {...}}``; ``soft_vote`` also takes
        ``"estimators"``. ``smooth`` is not part of the Pipeline.
    seed : int
        Random state of every stochastic member.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``Pipeline([("prep", FeaturePrep), ("scale", StandardScaler()), ("clf", clf)])``;
        input ``X`` is a feature table of shape (n_windows, n_columns) (or a plain matrix
        of shape (n_windows, n_features) when ``prep`` selects nothing by name).
    """
    spec = model_spec(cfg)
    return Pipeline(
        [
            ("prep", FeaturePrep.from_spec(spec.prep, "model config")),
            ("scale", StandardScaler()),
            ("clf", make_classifier(spec, seed)),
        ]
    )
