"""Estimators built from a model config: a name, parameters, and scaling in a Pipeline.

A model config is a mapping::

    {"name": "soft_vote",
     "params": {},                     # passed to the estimator (not to the scaler)
     "estimators": [{"name": "lda"}, {"name": "random_forest", "params": {"n_estimators": 200}}],
     "prep": {"features": ["mav", "wl"], "log": ["mav", "wl"], "normalize": "recording"}}

``prep`` is handled by :class:`pipeline.learn.normalize.FeaturePrep` outside the estimator
(it needs whole recordings), ``smooth`` (trailing mean of probabilities over that many
windows of a recording) by :class:`pipeline.learn.fit.FittedModel`; everything else
becomes a scikit-learn ``Pipeline`` of a ``StandardScaler`` and the classifier, with
``class_weight="balanced"`` where the classifier supports it.
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
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.exceptions import SpecError

MODEL_KEYS = frozenset({"name", "params", "estimators", "prep", "smooth"})

Factory = Callable[[dict[str, Any], int], ClassifierMixin]


def _lda(params: dict[str, Any], seed: int) -> ClassifierMixin:
    # "lsqr" works on the (n_features, n_features) covariance: far cheaper than "svd" on
    # (n_windows, n_features) and equal predictions without shrinkage.
    return LinearDiscriminantAnalysis(**({"solver": "lsqr"} | params))


def _logreg(params: dict[str, Any], seed: int) -> ClassifierMixin:
    kw = {"max_iter": 2000, "class_weight": "balanced", "random_state": seed} | params
    return LogisticRegression(**kw)


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
    "logreg": _logreg,
    "random_forest": _random_forest,
    "gradient_boosting": _gradient_boosting,
    "sgd": _sgd,
}


def register_estimator(name: str, factory: Factory) -> None:
    """Register ``factory(params, seed) -> classifier`` under ``name``.

    Raises
    ------
    SpecError
        If ``name`` is already registered or is the reserved ``"soft_vote"``.
    """
    if name in _REGISTRY or name == "soft_vote":
        msg = f"estimator name {name!r} is already registered; pick another name"
        raise SpecError(msg)
    _REGISTRY[name] = factory


def unregister_estimator(name: str) -> None:
    """Remove an estimator added with :func:`register_estimator` (built-ins stay)."""
    if name in {"lda", "logreg", "random_forest", "gradient_boosting", "sgd"}:
        msg = f"cannot unregister built-in estimator {name!r}"
        raise SpecError(msg)
    _REGISTRY.pop(name, None)


def available_estimators() -> list[str]:
    """Return the estimator names a model config may use."""
    return sorted([*_REGISTRY, "soft_vote"])


def validate_model_config(cfg: Mapping[str, Any], where: str = "model") -> None:
    """Check a model config's keys, names and types, recursively for ``soft_vote``.

    Raises
    ------
    SpecError
        Naming the key path (e.g. ``model.estimators[1].name``), what was expected and
        what was found.
    """
    if not isinstance(cfg, Mapping):
        msg = f"{where}: expected a mapping with key 'name', got {cfg!r}"
        raise SpecError(msg)
    unknown = sorted(set(cfg) - MODEL_KEYS)
    if unknown:
        msg = f"{where}: unknown keys {unknown}; allowed: {sorted(MODEL_KEYS)}"
        raise SpecError(msg)
    name = cfg.get("name")
    if name not in available_estimators():
        msg = f"{where}.name: expected one of {available_estimators()}, got {name!r}"
        raise SpecError(msg)
    params = cfg.get("params", {})
    if not isinstance(params, Mapping):
        msg = f"{where}.params: expected a mapping of estimator parameters, got {params!r}"
        raise SpecError(msg)
    if name == "soft_vote":
        members = cfg.get("estimators")
        if not isinstance(members, list | tuple) or len(members) < 2:
            msg = (
                f"{where}.estimators: soft_vote needs a list of at least 2 member configs, "
                f'e.g. [{{"name": "lda"}}, {{"name": "random_forest"}}], got {members!r}'
            )
            raise SpecError(msg)
        for i, member in enumerate(members):
            sub = f"{where}.estimators[{i}]"
            validate_model_config(member, sub)
            for key in ("prep", "smooth"):
                if isinstance(member, Mapping) and key in member:
                    msg = f"{sub}.{key}: '{key}' is set once on the top-level model config"
                    raise SpecError(msg)
    elif "estimators" in cfg:
        msg = f"{where}.estimators: only 'soft_vote' takes member estimators, not {name!r}"
        raise SpecError(msg)


def make_estimator(cfg: Mapping[str, Any], seed: int = 0) -> Pipeline | VotingClassifier:
    """Build an unfitted classifier from a model config.

    Parameters
    ----------
    cfg : mapping
        ``{"name": ..., "params": {...}}``; ``soft_vote`` also takes ``"estimators"``.
    seed : int
        Random state of every stochastic member.

    Returns
    -------
    sklearn.pipeline.Pipeline or sklearn.ensemble.VotingClassifier
        ``Pipeline([("scale", StandardScaler()), ("clf", estimator)])``, or for
        ``soft_vote`` a ``VotingClassifier(voting="soft")`` of such pipelines. Input is
        ``X`` of shape (n_windows, n_features).
    """
    validate_model_config(cfg)
    return _build({k: v for k, v in cfg.items() if k not in ("prep", "smooth")}, seed)


def _build(cfg: Mapping[str, Any], seed: int) -> Pipeline | VotingClassifier:
    name = cfg["name"]
    params = dict(cfg.get("params", {}))
    if name == "soft_vote":
        members = []
        for i, member in enumerate(cfg["estimators"]):
            members.append((f"{member['name']}_{i}", _build(member, seed)))
        return VotingClassifier(members, voting="soft", **params)
    try:
        clf = _REGISTRY[name](params, seed)
    except TypeError as err:
        msg = f"model.params for {name!r}: {err}"
        raise SpecError(msg) from err
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])
