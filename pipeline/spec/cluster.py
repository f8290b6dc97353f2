"""Cluster profiles: the pydantic model of a profile file, in dask-jobqueue's conventions.

A profile has exactly one of three sections, plus optional ``scale`` and ``numba-cache-dir``::

    jobqueue:            # one section per scheduler, kebab-case keys as in dask-jobqueue's
      slurm:             # own configuration (cores, memory, walltime, queue, ...)
        cores: 1
        memory: "2GB"
    scale: {jobs: 1}     # our keys: jobs, workers, minimum-jobs, maximum-jobs, wait-timeout

    local: {n-workers: 2}          # distributed.LocalCluster / Nanny / Worker parameters

    address: tcp://host:8786       # a scheduler that is already running

The keys a section accepts are read from the installed dask-jobqueue and distributed (their
configuration and their classes' parameters), so the model follows the installed versions;
snake_case keys are accepted and read as kebab-case. A profile is validated by
:func:`pipeline.spec.errors.parse`, whose messages name the file, the key path, what was
expected, what was found and the closest valid key.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, create_model, model_validator

from pipeline.spec.errors import Strict

__all__ = ["JOBQUEUE_KINDS", "accepted_keys", "profile_model"]

JOBQUEUE_KINDS: dict[str, str] = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
    "htcondor": "HTCondorCluster",
    "moab": "MoabCluster",
    "oar": "OARCluster",
}

# Parameters that are Python objects or internal plumbing, never set from a YAML file.
_INTERNAL = {
    "self",
    "scheduler",
    "job_cls",
    "loop",
    "asynchronous",
    "config_name",
    "scheduler_cls",
    "security",
    "start",
    "services",
    "worker_services",
    "service_kwargs",
    "blocked_handlers",
    "worker_class",
    "scheduler_ip",
    "scheduler_port",
    "scheduler_file",
    "executor",
    "extensions",
    "metrics",
    "startup_information",
    "plugins",
    "data",
    "nanny",
    "WorkerStateClass",
    "contact_address",
    "listen_address",
    "config",
}
#: dask-jobqueue refuses these as cluster arguments; they go in ``scheduler-options``.
JOBQUEUE_REFUSED = ("dashboard-address", "host")


def kebab(name: str) -> str:
    """Return ``name`` with underscores as hyphens (``n_workers`` -> ``n-workers``)."""
    return name.replace("_", "-")


def snake(name: str) -> str:
    """Return ``name`` with hyphens as underscores (``n-workers`` -> ``n_workers``)."""
    return name.replace("-", "_")


def _params(*callables: Any) -> set[str]:
    """Return the kebab-case names of the explicit parameters of ``callables``."""
    names: set[str] = set()
    for fn in callables:
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in _INTERNAL:
                continue
            names.add(kebab(p.name))
    return names


def job_parameters(kind: str) -> set[str]:
    """Return the kebab-case parameters of dask-jobqueue's job class for scheduler ``kind``."""
    import dask_jobqueue
    from dask_jobqueue.core import Job

    cluster_cls = getattr(dask_jobqueue, JOBQUEUE_KINDS[kind])
    return _params(cluster_cls.job_cls.__init__, Job.__init__)


@functools.cache
def accepted_keys(kind: str) -> tuple[str, ...]:
    """Return the profile keys accepted for a cluster ``kind``, sorted.

    Parameters
    ----------
    kind : str
        ``"local"`` or a dask-jobqueue scheduler name (``"slurm"``, ``"pbs"``, ...).

    Returns
    -------
    tuple of str
        Kebab-case keys: for dask-jobqueue, the keys of its default configuration section
        plus the cluster and job class parameters; for ``local``, the parameters of
        :class:`distributed.LocalCluster`, :class:`distributed.Nanny` and
        :class:`distributed.Worker`.
    """
    if kind == "local":
        from distributed import LocalCluster, Nanny, Worker

        keys = _params(LocalCluster.__init__, Nanny.__init__, Worker.__init__)
        keys -= {"nthreads", "name"}  # set per worker by LocalCluster
        return tuple(sorted(keys))
    import dask
    from dask_jobqueue.core import JobQueueCluster

    keys = set(dask.config.get(f"jobqueue.{kind}", {}))
    keys |= _params(JobQueueCluster.__init__) | job_parameters(kind)
    # Job's ``name`` is the worker name; the YAML ``name`` key is the batch job name.
    # ``nanny`` is a bool for dask-jobqueue (an object for Worker, hence in _INTERNAL).
    keys |= {"name", "nanny"}
    keys -= set(JOBQUEUE_REFUSED)
    return tuple(sorted(keys))


class _Section(Strict):
    """A mapping of kebab-case keys; snake_case keys are read as kebab-case."""

    @model_validator(mode="before")
    @classmethod
    def _kebab_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {kebab(str(k)): v for k, v in data.items()}
        return data


def _refused(key: str) -> Any:
    def check(value: Any) -> Any:
        if value is not None:
            message = (
                f"no {key!r} here: dask-jobqueue takes it in 'scheduler-options', for "
                f"example: scheduler-options: {{{snake(key)}: {value!r}}}"
            )
            raise ValueError(message)
        return value

    return Annotated[Any, AfterValidator(check)]


def _options_model(kind: str) -> type[_Section]:
    """Return the model of a ``local`` or ``jobqueue.<kind>`` section: every accepted key."""
    fields: dict[str, Any] = {key: (Any, None) for key in accepted_keys(kind)}
    if kind != "local":
        fields.update({key: (_refused(key), None) for key in JOBQUEUE_REFUSED})
    name = "LocalOptions" if kind == "local" else f"{JOBQUEUE_KINDS[kind]}Options"
    with warnings.catch_warnings():
        # keys such as ``validate`` or ``json`` shadow BaseModel methods; only dumped, harmless
        warnings.filterwarnings("ignore", message="Field name .* shadows an attribute")
        return create_model(name, __base__=_Section, **fields)


class _OneScheduler(Strict):
    """The ``jobqueue`` mapping: exactly one scheduler section."""

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # ``slurm:`` with nothing under it means "all defaults", as in dask-jobqueue's config
        if isinstance(data, Mapping):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> _OneScheduler:
        if len(self.model_fields_set) != 1:
            message = (
                f"exactly one scheduler section, one of {', '.join(JOBQUEUE_KINDS)} (the "
                f"profile has {', '.join(sorted(self.model_fields_set)) or 'none'})"
            )
            raise ValueError(message)
        return self


def _address(value: Any) -> Any:
    if not isinstance(value, str) or "://" not in value:
        message = "a scheduler address like 'tcp://host:8786'"
        raise ValueError(message)
    return value


_Count = Annotated[int, Field(ge=0, strict=True)]
Address = Annotated[str, BeforeValidator(_address)]
#: Our ``scale`` keys: how many jobs (or workers) to start, or the adaptive range.
SCALE_FIELDS: dict[str, Any] = {
    "jobs": (_Count | None, None),
    "workers": (_Count | None, None),
    "minimum-jobs": (_Count | None, None),
    "maximum-jobs": (_Count | None, None),
    "wait-timeout": (Annotated[float, Field(gt=0)] | None, None),
}
Scale = create_model(
    "Scale",
    __base__=_Section,
    __doc__="How many dask-jobqueue jobs or workers to start before the run.",
    **SCALE_FIELDS,
)


class _Profile(Strict):
    """The checks across sections of a profile."""

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        # kebab-case keys; ``local:`` alone is the default local cluster, as ``local: {}``
        if isinstance(data, Mapping):
            data = {kebab(str(k)): v for k, v in data.items()}
            return {k: ({} if v is None and k != "address" else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> _Profile:
        kinds = [k for k in ("jobqueue", "local", "address") if k in self.model_fields_set]
        if len(kinds) != 1:
            message = (
                f"exactly one of 'jobqueue', 'local' or 'address' (the profile has "
                f"{', '.join(kinds) or 'none'})"
            )
            raise ValueError(message)
        scale = getattr(self, "scale", None)
        if kinds[0] != "jobqueue" and scale is not None and scale.model_fields_set:
            message = (
                "'scale' only beside a 'jobqueue' section; for a local cluster set "
                "local.n-workers instead"
            )
            raise ValueError(message)
        return self


@functools.cache
def profile_model() -> type[Strict]:
    """Return the pydantic model of a cluster profile (built once, from the installed versions).

    Returns
    -------
    pydantic model class
        Fields ``jobqueue`` (one section per scheduler of :data:`JOBQUEUE_KINDS`), ``local``,
        ``address``, ``scale`` and ``numba-cache-dir``; validate with
        ``pipeline.spec.errors.parse(profile_model(), data, source)``.
    """
    sections = {kind: (_options_model(kind) | None, None) for kind in JOBQUEUE_KINDS}
    jobqueue = create_model("Jobqueue", __base__=_OneScheduler, **sections)
    fields: dict[str, Any] = {
        "jobqueue": (jobqueue | None, None),
        "local": (_options_model("local") | None, None),
        "address": (Address, None),  # not Optional: ``address: null`` is an error
        "scale": (Scale | None, None),
        "numba-cache-dir": (str | None, None),
    }
    return create_model("ClusterProfile", __base__=_Profile, **fields)
