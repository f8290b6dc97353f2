"""Configuration models of learning: the model, its feature preparation, the validation scheme.

Validated through :func:`pipeline.spec.errors.parse`, so a bad key or value gets one
:class:`~pipeline.exceptions.SpecError` naming the source, the key path (``model.prep.context``),
what was expected and what was found. This module sits above :mod:`pipeline.learn`: it knows
the estimator *names* (:func:`estimator_names`), and :mod:`pipeline.learn.estimators` registers
the factories behind them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from pipeline.exceptions import SpecError
from pipeline.spec.errors import Strict
from pipeline.spec.types import Integer, Number

__all__ = [
    "BUILTIN_ESTIMATORS",
    "DISTRIBUTED_ESTIMATORS",
    "SCHEMES",
    "MemberSpec",
    "ModelSpec",
    "PrepSpec",
    "ValidationSpec",
    "estimator_names",
    "register_estimator_name",
    "unregister_estimator_name",
]

BUILTIN_ESTIMATORS: tuple[str, ...] = (
    "lda",
    "gaussian_nb",
    "logreg",
    "logreg_cv",
    "random_forest",
    "gradient_boosting",
    "sgd",
)
"""Estimators :mod:`pipeline.learn.estimators` ships; ``soft_vote`` combines members."""

_NAMES: set[str] = set(BUILTIN_ESTIMATORS)


def estimator_names() -> list[str]:
    """Return the estimator names a model config may use, ``soft_vote`` included."""
    return sorted([*_NAMES, "soft_vote"])


def register_estimator_name(name: str) -> None:
    """Make ``name`` a valid ``model.name`` (called by ``pipeline.learn.register_estimator``).

    Raises
    ------
    SpecError
        If ``name`` is already taken or is the reserved ``"soft_vote"``.
    """
    if name in _NAMES or name == "soft_vote":
        msg = f"estimator name {name!r} is already registered; pick another name"
        raise SpecError(msg)
    _NAMES.add(name)


def unregister_estimator_name(name: str) -> None:
    """Remove a name added with :func:`register_estimator_name` (built-ins stay)."""
    if name in BUILTIN_ESTIMATORS:
        msg = f"cannot unregister built-in estimator {name!r}"
        raise SpecError(msg)
    _NAMES.discard(name)


class PrepSpec(Strict):
    """Parameters of :class:`pipeline.learn.FeaturePrep` (``model.prep`` in a task spec).

    ``features`` keeps feature kinds (the part of a column name after ``"__"``; None keeps
    all), ``log`` replaces kinds by ``log(x + log_offset)``, ``context`` averages every
    feature over the last ``context`` window steps of its recording (causal, 1 = off), and
    ``normalize`` z-scores within each recording or subject with that group's own windows.
    """

    features: tuple[str, ...] | None = None
    log: tuple[str, ...] = ()
    log_offset: Number = Field(default=1e-12, ge=0)
    context: Integer = Field(default=1, ge=1)
    normalize: Literal["recording", "subject"] | None = None
    # pairwise feature kind (e.g. cov_oas), or several (a filter bank: fbcov_theta, ...),
    # whose per-window matrices are mapped to the tangent space (pipeline.learn.riemann),
    # one per kind, concatenated; the mean the tangent space sits at; the label-free
    # per-subject re-centring
    tangent_space: str | tuple[str, ...] | None = None
    tangent_mean: Literal["riemann", "logeuclid", "euclid", "identity"] = "riemann"
    recenter: Literal["riemann", "euclid"] | None = None

    @field_validator("features", "log", mode="before")
    @classmethod
    def _list_not_string(cls, value: Any) -> Any:
        # a lone string would otherwise be read as a tuple of its letters
        if isinstance(value, str):
            msg = f"a list of feature kinds, e.g. [{value!r}]"
            raise ValueError(msg)
        return value


class MemberSpec(Strict):
    """An estimator by name with its parameters (a ``soft_vote`` member has no prep/smooth)."""

    name: str
    params: dict[str, Any] | None = None
    estimators: list[MemberSpec] | None = Field(default=None, validate_default=True)

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        if value not in estimator_names():
            msg = f"one of {estimator_names()}"
            raise ValueError(msg)
        return value

    @field_validator("estimators")
    @classmethod
    def _members(cls, value: list[MemberSpec] | None, info: ValidationInfo) -> Any:
        name = info.data.get("name")
        if name == "soft_vote" and (value is None or len(value) < 2):
            msg = (
                "a list of at least 2 member configs for soft_vote, "
                'e.g. [{"name": "lda"}, {"name": "random_forest"}]'
            )
            raise ValueError(msg)
        if name is not None and name != "soft_vote" and value is not None:
            msg = f"no member estimators: only 'soft_vote' takes them, not {name!r}"
            raise ValueError(msg)
        return value

    def estimator_config(self) -> dict[str, Any]:
        """Return ``{"name", "params", "estimators"}`` without the keys left unset."""
        return self.model_dump(exclude_none=True, include={"name", "params", "estimators"})


DISTRIBUTED_ESTIMATORS: tuple[str, ...] = (
    "lda",
    "gaussian_nb",
    "sgd",
    "random_forest",
    "gradient_boosting",
    "soft_vote",
)
"""Model names ``model.engine: distributed`` fits without collecting the table."""


class ModelSpec(MemberSpec):
    """The estimator, its feature preparation and post-processing (``model`` in a task spec).

    ``name`` is one of :func:`estimator_names` (``lda``, ``logreg``, ``random_forest``,
    ``gradient_boosting``, ``sgd``, or ``soft_vote`` of ``estimators``); ``prep`` is a
    :class:`PrepSpec`; ``smooth`` averages class probabilities over the last ``smooth``
    windows of a recording (causal).

    ``engine`` says where the model is fitted and validated: ``memory`` collects the
    feature table into one pandas DataFrame on the client (fastest for small tables);
    ``distributed`` keeps it on the cluster as a dask DataFrame and fits ``lda`` and
    ``gaussian_nb`` exactly from per-subject sufficient statistics
    (:mod:`pipeline.learn.distributed`); ``auto`` (default) picks ``distributed`` when
    the table's in-memory size exceeds ``memory_budget``. ``memory_budget`` is bytes or a
    size string (``"4GB"``, ``"512MiB"``); unset, it is half the smallest worker's
    ``memory_limit`` (half of the machine's memory without a cluster). The distributed
    engine fits ``random_forest``, ``gradient_boosting`` and ``soft_vote`` on a seeded
    subsample stratified by recording x class of at most ``max_train_windows`` windows.
    """

    prep: PrepSpec | None = None
    smooth: Integer | None = Field(default=None, ge=1)
    engine: Literal["auto", "memory", "distributed"] = "auto"
    memory_budget: Integer | str | None = None
    max_train_windows: Integer = Field(default=200_000, ge=1)

    @field_validator("engine")
    @classmethod
    def _engine_fits_the_model(cls, value: str, info: ValidationInfo) -> str:
        name = info.data.get("name")
        if value == "distributed" and name is not None and name not in DISTRIBUTED_ESTIMATORS:
            msg = (
                f"'memory' or 'auto' for model.name {name!r}: the distributed engine fits "
                f"{list(DISTRIBUTED_ESTIMATORS)} only"
            )
            raise ValueError(msg)
        return value

    @field_validator("memory_budget")
    @classmethod
    def _size(cls, value: int | str | None) -> int | None:
        if value is None:
            return None
        from dask.utils import parse_bytes

        try:
            size = int(parse_bytes(value)) if isinstance(value, str) else int(value)
        except ValueError:
            size = -1
        if size <= 0:
            msg = f'a positive size in bytes or a size string such as "4GB", not {value!r}'
            raise ValueError(msg)
        return size


_SCHEME_KEYS: dict[str, frozenset[str]] = {
    "within_subject": frozenset({"by", "train", "test"}),
    "cross_session": frozenset(),
    "loso": frozenset(),
    "group_kfold": frozenset({"n_splits"}),
    "random": frozenset({"n_splits", "allow_window_leakage"}),
    "loso_calibrated": frozenset(
        {"calibration", "calibration_unit", "report_k", "calibration_weight"}
    ),
}
SCHEMES: tuple[str, ...] = tuple(_SCHEME_KEYS)


class ValidationSpec(Strict):
    """The validation scheme (see :mod:`pipeline.learn.validation`) and the figures.

    ``n_splits`` belongs to ``group_kfold`` and ``random``; ``by``, ``train``, ``test`` to
    ``within_subject``; ``allow_window_leakage`` to ``random``; ``specificity`` (binary
    tasks: the threshold reaching it is reported) and ``n_permutations`` (the report's
    permutation test; each permutation refits every fold) to every scheme; ``calibration``,
    ``calibration_unit``, ``report_k`` and ``calibration_weight`` to ``loso_calibrated``.
    """

    scheme: Literal[
        "loso", "group_kfold", "within_subject", "cross_session", "random", "loso_calibrated"
    ] = "loso"
    n_splits: Integer | None = Field(default=None, ge=2)
    by: Literal["run", "session"] | None = None
    train: str | None = Field(default=None, description="run/session used for training")
    test: str | None = Field(default=None, description="run/session used for testing")
    allow_window_leakage: bool | None = None
    specificity: Number | None = Field(
        default=None, gt=0, lt=1, description="binary tasks: report sensitivity here"
    )
    n_permutations: Integer | None = Field(
        default=None, ge=0, description="permutation test refits (default 20; 0 skips it)"
    )
    # loso_calibrated: k labeled repetitions (or seconds) per class of the held-out subject
    calibration: tuple[Annotated[Number, Field(ge=0)], ...] | None = Field(
        default=None, min_length=1, description="k values of the calibration curve"
    )
    calibration_unit: Literal["repetitions", "seconds"] | None = None
    report_k: Number | None = Field(
        default=None, ge=0, description="the k of the headline metrics (a calibration entry)"
    )
    # loso_calibrated: how much each calibration window counts in the fit (sample_weight);
    # "balanced" (None): the new subject's windows weigh as much as all pooled windows
    calibration_weight: float | str | None = None

    @field_validator(
        "n_splits",
        "by",
        "train",
        "test",
        "allow_window_leakage",
        "calibration",
        "calibration_unit",
        "report_k",
        "calibration_weight",
    )
    @classmethod
    def _key_of_the_scheme(cls, value: Any, info: ValidationInfo) -> Any:
        scheme = info.data.get("scheme")
        if value is None or scheme is None or info.field_name in _SCHEME_KEYS[scheme]:
            return value
        takes = sorted(_SCHEME_KEYS[scheme])
        owners = sorted(s for s, keys in _SCHEME_KEYS.items() if info.field_name in keys)
        msg = (
            f"no {info.field_name!r} for scheme {scheme!r} (it takes "
            f"{takes or 'no other key'}; {info.field_name!r} is a key of {owners})"
        )
        raise ValueError(msg)

    @field_validator("calibration_weight", mode="before")
    @classmethod
    def _weight(cls, value: Any) -> Any:
        if value is None or value == "balanced":
            return value
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not 0 < value < float("inf"):
            msg = '"balanced" or a positive number (times a calibration window counts; 1: none)'
            raise ValueError(msg)
        return float(value)

    @field_validator("test")
    @classmethod
    def _test_is_not_train(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == info.data.get("train"):
            msg = f"a {info.data.get('by') or 'run'} other than the training one ({value!r})"
            raise ValueError(msg)
        return value

    @field_validator("calibration")
    @classmethod
    def _distinct_ks(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and len(set(value)) != len(value):
            msg = f"distinct k values, e.g. [0, 1, 2, 3]; found {list(value)!r}"
            raise ValueError(msg)
        return value

    @field_validator("report_k")
    @classmethod
    def _report_k_listed(cls, value: float | None, info: ValidationInfo) -> float | None:
        ks = info.data.get("calibration") or (0, 1, 2, 3)
        if value is not None and value not in ks:
            msg = f"one of the calibration k values {list(ks)}; found {value!r}"
            raise ValueError(msg)
        return value

    def headline_k(self) -> float:
        """Return the k of ``loso_calibrated``'s headline metrics: ``report_k``, else the
        smallest k above 0 (the least calibration data), else 0."""
        if self.report_k is not None:
            return float(self.report_k)
        ks = sorted(float(k) for k in (self.calibration or (0, 1, 2, 3)))
        return next((k for k in ks if k > 0), 0.0)

    def config(self) -> dict[str, Any]:
        """Return the scheme's keys that are set (``specificity`` excluded)."""
        return self.model_dump(exclude_none=True, exclude={"specificity"})
