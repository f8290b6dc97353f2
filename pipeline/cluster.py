"""Cluster profiles: where a run executes (local, SLURM/PBS via dask-jobqueue, or an address).

A profile is a small YAML file in ``cluster/`` that follows dask-jobqueue's configuration
conventions (one section per scheduler type, kebab-case keys)::

    jobqueue:
      slurm:
        cores: 1
        memory: "2GB"
        walltime: "00:30:00"
        queue: debug
        job-script-prologue: ["export OMP_NUM_THREADS=1"]
        local-directory: "$TMPDIR"
    scale:
      jobs: 1

or ``local:`` (a :class:`distributed.LocalCluster`), or ``address: tcp://host:8786`` for a
scheduler that is already running. Every key is checked against the parameters that the
cluster class accepts; an unknown key is a :class:`~pipeline.exceptions.SpecError` naming
the file, the key, the accepted keys and the closest match.

Workers get ``NUMBA_CACHE_DIR`` pointing at node-local disk (the worker's local directory,
else ``$TMPDIR``), so compiled feature kernels are cached per node instead of on a shared
filesystem where concurrent writers corrupt each other's cache files.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.exceptions import ClusterError, SpecError

logger = logging.getLogger(__name__)

__all__ = [
    "PROFILE_DIR",
    "allocation_resources",
    "connect",
    "describe_workers",
    "job_script",
    "load_profile",
    "make_cluster",
    "performance_report",
]

#: Where profile names (``"local"``, ``"slurm"``) are looked up: the repository's ``cluster/``.
PROFILE_DIR = Path(__file__).resolve().parents[1] / "cluster"

JOBQUEUE_KINDS: dict[str, str] = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
    "htcondor": "HTCondorCluster",
    "moab": "MoabCluster",
    "oar": "OARCluster",
}
TOP_LEVEL_KEYS = ("jobqueue", "local", "address", "scale", "numba-cache-dir")
SCALE_KEYS = ("jobs", "workers", "minimum-jobs", "maximum-jobs", "wait-timeout")

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
# dask-jobqueue refuses these two as cluster arguments; they go in ``scheduler-options``.
_JOBQUEUE_REFUSED = {"dashboard-address", "host"}
_DEFAULT_WAIT_TIMEOUT = 300.0
_CONNECT_TIMEOUT = "30s"

# glibc allocator settings for worker processes. distributed's default
# (MALLOC_TRIM_THRESHOLD_=65536) returns freed memory to the OS at once; it also fixes the
# mmap threshold at 128 KiB, so every array above that is a fresh mapping whose pages fault
# in on first touch. Ingesting an emg-gestures file then cost 1.7x as much
# (benchmarks/README.md, "Ingestion"). Up to 16 MiB of freed memory is kept for reuse instead.
WORKER_MALLOC_ENV: dict[str, str] = {
    "MALLOC_TRIM_THRESHOLD_": str(16 * 2**20),
    "MALLOC_MMAP_THRESHOLD_": str(16 * 2**20),
}


def n_workers(client: Any = None) -> int:
    """Return the number of workers of ``client`` (default: the current distributed client),
    or this machine's cores when there is no client."""
    try:
        if client is None:
            from distributed import get_client

            client = get_client()
        return max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    except (ImportError, ValueError, AttributeError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def worker_malloc_config() -> Iterator[None]:
    """Give the nannies started inside this context :data:`WORKER_MALLOC_ENV`.

    A nanny sets ``distributed.nanny.pre-spawn-environ`` before it spawns its worker (an
    allocator reads these variables once, at process start), preferring values already in
    ``os.environ``, where any earlier nanny of this process left distributed's defaults:
    both are set here, and the environment restored on exit.
    """
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    saved = {k: os.environ.get(k) for k in WORKER_MALLOC_ENV}
    os.environ.update(WORKER_MALLOC_ENV)
    try:
        with dask.config.set({f"{key}.{k}": v for k, v in WORKER_MALLOC_ENV.items()}):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _snake(name: str) -> str:
    return name.replace("-", "_")


def _params(*callables: Any) -> set[str]:
    """Return the kebab-case names of the explicit parameters of ``callables``."""
    names: set[str] = set()
    for fn in callables:
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in _INTERNAL:
                continue
            names.add(_kebab(p.name))
    return names


def accepted_keys(kind: str) -> list[str]:
    """Return the profile keys accepted for a cluster ``kind``, sorted.

    Parameters
    ----------
    kind : str
        ``"local"`` or a dask-jobqueue scheduler name (``"slurm"``, ``"pbs"``, ...).

    Returns
    -------
    list of str
        Kebab-case keys: for dask-jobqueue, the keys of its default configuration section
        plus the cluster and job class parameters; for ``local``, the parameters of
        :class:`distributed.LocalCluster`, :class:`distributed.Nanny` and
        :class:`distributed.Worker`.
    """
    if kind == "local":
        from distributed import LocalCluster, Nanny, Worker

        keys = _params(LocalCluster.__init__, Nanny.__init__, Worker.__init__)
        keys -= {"nthreads", "name"}  # set per worker by LocalCluster
        return sorted(keys)
    import dask
    import dask_jobqueue
    from dask_jobqueue.core import Job, JobQueueCluster

    cluster_cls = getattr(dask_jobqueue, JOBQUEUE_KINDS[kind])
    keys = set(dask.config.get(f"jobqueue.{kind}", {}))
    keys |= _params(JobQueueCluster.__init__, cluster_cls.job_cls.__init__, Job.__init__)
    # Job's ``name`` is the worker name; the YAML ``name`` key is the batch job name.
    # ``nanny`` is a bool for dask-jobqueue (an object for Worker, hence in _INTERNAL).
    keys |= {"name", "nanny"}
    keys -= _JOBQUEUE_REFUSED
    return sorted(keys)


def _unknown_key_error(source: str, where: str, key: str, accepted: list[str]) -> SpecError:
    close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    message = (
        f"Invalid cluster profile {source}: key {where}{key!r} is not accepted.{hint} "
        f"Accepted keys: {', '.join(accepted)}."
    )
    return SpecError(message)


def _check_keys(source: str, where: str, section: Mapping[str, Any], accepted: list[str]) -> dict:
    if not isinstance(section, Mapping):
        message = (
            f"Invalid cluster profile {source}: {where.rstrip('.') or 'the file'} must be a "
            f"mapping of keys to values, found {section!r}."
        )
        raise SpecError(message)
    out: dict[str, Any] = {}
    for raw_key, value in section.items():
        key = _kebab(str(raw_key))
        if key not in accepted:
            if key in _JOBQUEUE_REFUSED:
                message = (
                    f"Invalid cluster profile {source}: key {where}{key!r} must go in "
                    f"'scheduler-options', for example: scheduler-options: "
                    f"{{{_snake(key)}: {value!r}}}."
                )
                raise SpecError(message)
            raise _unknown_key_error(source, where, key, accepted)
        out[key] = value
    return out


def _find_profile(path_or_name: str | os.PathLike[str]) -> Path:
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    candidate = PROFILE_DIR / f"{path_or_name}.yaml"
    if path.suffix == "" and candidate.is_file():
        return candidate
    known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")) if PROFILE_DIR.is_dir() else []
    message = (
        f"Cluster profile {str(path_or_name)!r} not found: expected a YAML file, a profile "
        f"name from {str(PROFILE_DIR)!r} ({', '.join(known) or 'none'}), or a scheduler "
        f"address like 'tcp://host:8786'."
    )
    raise SpecError(message)


def load_profile(path_or_name: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> dict:
    """Load and validate a cluster profile.

    Parameters
    ----------
    path_or_name : str, path, mapping or None
        A YAML file, a profile name from ``cluster/`` (``"local"``, ``"slurm"``, ``"pbs"``),
        a scheduler address (``"tcp://host:8786"``), an already parsed mapping, or None
        for the default: a local cluster with one single-threaded worker per core.

    Returns
    -------
    dict
        ``kind`` (``"local"``, ``"address"`` or a dask-jobqueue name such as ``"slurm"``),
        ``source`` (the file or ``"<default>"``), ``options`` (validated kebab-case keys of
        the cluster class), ``scale`` (our ``jobs``/``workers``/... keys), ``address``
        (str or None) and ``numba_cache_dir`` (str or None).

    Raises
    ------
    SpecError
        If the file is missing or not YAML, or a key is not accepted (the message names the
        file, the key, the accepted keys and the closest match).
    """
    if path_or_name is None:
        return _validate({"local": {}}, "<default>")
    if isinstance(path_or_name, Mapping):
        return _validate(path_or_name, "<mapping>")
    text = str(path_or_name)
    if "://" in text:
        return _validate({"address": text}, "<address>")
    path = _find_profile(path_or_name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        message = f"Invalid cluster profile {str(path)!r}: not valid YAML: {exc}"
        raise SpecError(message) from exc
    return _validate(raw if raw is not None else {}, repr(str(path)))


def _validate(raw: Any, source: str) -> dict:
    top = _check_keys(source, "", raw, list(TOP_LEVEL_KEYS))
    kinds = [k for k in ("jobqueue", "local", "address") if k in top]
    if len(kinds) != 1:
        message = (
            f"Invalid cluster profile {source}: expected exactly one of 'jobqueue', 'local' "
            f"or 'address', found {kinds or 'none'}."
        )
        raise SpecError(message)
    profile: dict[str, Any] = {
        "kind": "",
        "source": source,
        "options": {},
        "scale": _check_keys(source, "scale.", top.get("scale") or {}, list(SCALE_KEYS)),
        "address": None,
        "numba_cache_dir": top.get("numba-cache-dir"),
    }
    if "address" in top:
        address = top["address"]
        if not isinstance(address, str) or "://" not in address:
            message = (
                f"Invalid cluster profile {source}: 'address' must be a scheduler address "
                f"like 'tcp://host:8786', found {address!r}."
            )
            raise SpecError(message)
        profile.update(kind="address", address=address)
    elif "local" in top:
        options = _check_keys(source, "local.", top["local"] or {}, accepted_keys("local"))
        profile.update(kind="local", options=options)
    else:
        sections = top["jobqueue"]
        if not isinstance(sections, Mapping) or len(sections) != 1:
            message = (
                f"Invalid cluster profile {source}: 'jobqueue' must hold exactly one scheduler "
                f"section (one of {', '.join(JOBQUEUE_KINDS)}), found {sections!r}."
            )
            raise SpecError(message)
        ((kind, section),) = sections.items()
        if kind not in JOBQUEUE_KINDS:
            raise _unknown_key_error(source, "jobqueue.", str(kind), list(JOBQUEUE_KINDS))
        options = _check_keys(source, f"jobqueue.{kind}.", section or {}, accepted_keys(kind))
        profile.update(kind=kind, options=options)
    if profile["kind"] in ("local", "address") and profile["scale"]:
        message = (
            f"Invalid cluster profile {source}: 'scale' applies to dask-jobqueue profiles "
            f"only; for a local cluster set local.n-workers instead."
        )
        raise SpecError(message)
    for key in ("jobs", "workers", "minimum-jobs", "maximum-jobs"):
        value = profile["scale"].get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            message = (
                f"Invalid cluster profile {source}: key scale.{key} must be a non-negative "
                f"integer, found {value!r}."
            )
            raise SpecError(message)
    return profile


def allocation_resources() -> tuple[int, int | None]:
    """Return the cores and memory (bytes) this process may use.

    Inside a SLURM or PBS allocation these come from the scheduler's environment
    (``SLURM_CPUS_PER_TASK``/``SLURM_CPUS_ON_NODE``, ``SLURM_MEM_PER_NODE``; ``NCPUS`` or
    ``PBS_NUM_PPN``), so a local cluster started inside a batch job is sized to the
    allocation rather than to the whole node. Elsewhere: the CPUs this process may run on
    and None (let Dask use the system memory).

    Returns
    -------
    cores : int
    memory : int or None
    """
    env = os.environ
    cores: int | None = None
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE", "NCPUS", "PBS_NUM_PPN"):
        if env.get(var, "").isdigit() and int(env[var]) > 0:
            cores = int(env[var])
            break
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    memory = None
    if env.get("SLURM_MEM_PER_NODE", "").isdigit():
        memory = int(env["SLURM_MEM_PER_NODE"]) * 2**20
    elif env.get("SLURM_MEM_PER_CPU", "").isdigit():
        memory = int(env["SLURM_MEM_PER_CPU"]) * 2**20 * cores
    return max(cores, 1), memory


def _numba_cache_dir(profile: Mapping[str, Any], local_directory: str | None) -> str:
    if profile.get("numba_cache_dir"):
        return str(profile["numba_cache_dir"])
    if local_directory:
        return f"{local_directory}/numba-cache"
    if profile["kind"] == "local":
        return str(Path(tempfile.gettempdir()) / "cohort-numba-cache")
    # Expanded by the job script's shell on the compute node.
    return "${TMPDIR:-/tmp}/cohort-numba-cache"


def _local_kwargs(profile: Mapping[str, Any]) -> dict[str, Any]:
    options = {_snake(k): v for k, v in profile["options"].items() if v is not None}
    options.setdefault("processes", True)
    options.setdefault("threads_per_worker", 1)
    cores, memory = allocation_resources()
    threads = int(options["threads_per_worker"])
    options.setdefault("n_workers", max(cores // max(threads, 1), 1))
    # "auto" would divide the whole node's memory, not the allocation's.
    if memory is not None and options.get("memory_limit", "auto") == "auto":
        options["memory_limit"] = memory // int(options["n_workers"])
    if options.get("local_directory"):
        options["local_directory"] = os.path.expandvars(str(options["local_directory"]))
    env = dict(options.get("env") or {})
    env.setdefault("NUMBA_CACHE_DIR", _numba_cache_dir(profile, options.get("local_directory")))
    options["env"] = env
    return options


def _jobqueue_kwargs(profile: Mapping[str, Any], log_directory: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in profile["options"].items():
        if value is None:
            continue
        # The YAML ``name`` is the batch job name; the Job argument ``name`` is the worker's.
        options["job_name" if key == "name" else _snake(key)] = value
    prologue = list(options.get("job_script_prologue") or [])
    if not any("NUMBA_CACHE_DIR" in line for line in prologue):
        cache = _numba_cache_dir(profile, options.get("local_directory"))
        prologue.append(f'export NUMBA_CACHE_DIR="{cache}"')
    for name, value in WORKER_MALLOC_ENV.items():  # see WORKER_MALLOC_ENV
        if not any(name in line for line in prologue):
            prologue.append(f"export {name}=${{{name}:-{value}}}")
    options["job_script_prologue"] = prologue
    if log_directory is not None and "log_directory" not in options:
        options["log_directory"] = str(log_directory)
    return options


def job_script(profile: Mapping[str, Any] | str | os.PathLike[str]) -> str:
    """Render the batch script a dask-jobqueue profile would submit, without a scheduler.

    Parameters
    ----------
    profile : mapping, str or path
        A profile from :func:`load_profile`, or anything :func:`load_profile` accepts.

    Returns
    -------
    str
        The job script (header directives, prologue, worker command), with a placeholder
        scheduler address.
    """
    import dask_jobqueue

    prof = profile if isinstance(profile, Mapping) and "kind" in profile else None
    prof = prof or load_profile(profile)
    if prof["kind"] not in JOBQUEUE_KINDS:
        message = (
            f"Cluster profile {prof['source']} is {prof['kind']!r}: only dask-jobqueue "
            f"profiles ({', '.join(JOBQUEUE_KINDS)}) have a job script."
        )
        raise SpecError(message)
    cluster_cls = getattr(dask_jobqueue, JOBQUEUE_KINDS[prof["kind"]])
    job_only = set(_params(cluster_cls.job_cls.__init__, dask_jobqueue.core.Job.__init__))
    kwargs = {
        k: v
        for k, v in _jobqueue_kwargs(prof, None).items()
        if _kebab(k) in job_only or k == "job_name"
    }
    job = cluster_cls.job_cls("tcp://scheduler-address:8786", name="dask-worker", **kwargs)
    return job.job_script()


def make_cluster(
    profile: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    log_directory: str | os.PathLike[str] | None = None,
) -> tuple[Any, Any]:
    """Start (or reach) the cluster a profile describes and return a client to it.

    Parameters
    ----------
    profile : mapping, str, path or None
        A profile from :func:`load_profile`, or anything :func:`load_profile` accepts.
    log_directory : str or path, optional
        Where dask-jobqueue writes the worker jobs' stdout/stderr when the profile does not
        set ``log-directory`` (e.g. ``<out>/logs``); otherwise the batch system's default.

    Returns
    -------
    cluster : distributed.LocalCluster, dask_jobqueue.JobQueueCluster or None
        None for a scheduler address (the cluster is not ours to close).
    client : distributed.Client
        Connected; for dask-jobqueue, after ``scale.jobs`` jobs' workers have arrived.
        Its ``dashboard_link`` is logged at INFO level.

    Raises
    ------
    ClusterError
        If the scheduler cannot be reached, or workers do not arrive within
        ``scale.wait-timeout`` seconds (default 300).
    """
    from distributed import Client

    prof = profile if isinstance(profile, Mapping) and "kind" in profile else None
    prof = prof or load_profile(profile)
    kind = prof["kind"]
    cluster: Any = None
    if kind == "address":
        try:
            client = Client(prof["address"], timeout=_CONNECT_TIMEOUT)
        except OSError as exc:
            message = (
                f"Cannot reach the Dask scheduler at {prof['address']!r} (profile "
                f"{prof['source']}): {exc}. Is the scheduler running and the address right?"
            )
            raise ClusterError(message) from exc
    elif kind == "local":
        from distributed import LocalCluster

        kwargs = _local_kwargs(prof)
        with worker_malloc_config():
            cluster = LocalCluster(**kwargs)
        client = Client(cluster)
    else:
        import dask_jobqueue

        cluster_cls = getattr(dask_jobqueue, JOBQUEUE_KINDS[kind])
        submit = cluster_cls.job_cls.submit_command.split()[0]
        if shutil.which(submit) is None:
            message = (
                f"Cannot start {cluster_cls.__name__} from profile {prof['source']}: the "
                f"submit command {submit!r} is not on PATH. Run on a login node of the "
                f"{kind.upper()} cluster, or use --cluster cluster/local.yaml."
            )
            raise ClusterError(message)
        kwargs = _jobqueue_kwargs(prof, None if log_directory is None else str(log_directory))
        try:
            cluster = cluster_cls(**kwargs)
        except (TypeError, ValueError) as exc:
            message = f"Cannot start {cluster_cls.__name__} from profile {prof['source']}: {exc}"
            raise ClusterError(message) from exc
        client = Client(cluster)
        _scale(cluster, client, prof)
    logger.info("Dask dashboard: %s", client.dashboard_link)
    return cluster, client


def _scale(cluster: Any, client: Any, prof: Mapping[str, Any]) -> None:
    scale = prof["scale"]
    per_job = int(cluster._dummy_job.worker_processes)
    if "minimum-jobs" in scale or "maximum-jobs" in scale:
        low, high = scale.get("minimum-jobs", 0), scale.get("maximum-jobs", 1)
        cluster.adapt(minimum_jobs=low, maximum_jobs=high)
        expected = low * per_job
    elif "workers" in scale:
        cluster.scale(n=scale["workers"])
        expected = scale["workers"]
    elif "jobs" not in scale and prof["options"].get("n-workers"):
        expected = int(prof["options"]["n-workers"])  # already requested by the cluster
    else:
        jobs = scale.get("jobs", 1)
        cluster.scale(jobs=jobs)
        expected = jobs * per_job
    if expected == 0:
        return
    timeout = float(scale.get("wait-timeout", _DEFAULT_WAIT_TIMEOUT))
    logger.info("waiting up to %.0f s for %d worker(s) to start", timeout, expected)
    try:
        client.wait_for_workers(expected, timeout=timeout)
    except TimeoutError as exc:
        client.close()
        cluster.close()
        message = (
            f"Only {len(client.scheduler_info(n_workers=-1)['workers'])} of {expected} "
            f"worker(s) arrived within {timeout:.0f} s (profile {prof['source']}); check the "
            f"queue (e.g. squeue/qstat) and the job logs, or raise scale.wait-timeout."
        )
        raise ClusterError(message) from exc


def _worker_identity() -> dict[str, Any]:
    import socket

    env = os.environ
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": env.get("SLURM_JOB_ID"),
        "pbs_job_id": env.get("PBS_JOBID"),
        "numba_cache_dir": env.get("NUMBA_CACHE_DIR"),
        "omp_num_threads": env.get("OMP_NUM_THREADS"),
    }


def describe_workers(client: Any) -> list[dict[str, Any]]:
    """Return where each worker runs, for the run manifest.

    Parameters
    ----------
    client : distributed.Client

    Returns
    -------
    list of dict
        One per worker, sorted by address: ``address``, ``nthreads``, ``memory_limit``
        (bytes), and from the worker process itself ``host``, ``pid``, ``slurm_job_id`` /
        ``pbs_job_id`` (None outside a batch job), ``numba_cache_dir`` and
        ``omp_num_threads``.
    """
    info = client.scheduler_info(n_workers=-1)["workers"]
    identity = client.run(_worker_identity)
    rows = []
    for address in sorted(identity):
        w = info.get(address, {})
        row = {"address": address, "nthreads": w.get("nthreads")}
        row["memory_limit"] = w.get("memory_limit")
        row.update(identity[address])
        rows.append(row)
    return rows


@contextlib.contextmanager
def connect(
    profile: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    log_directory: str | os.PathLike[str] | None = None,
) -> Iterator[Any]:
    """Yield a client to the cluster a profile describes; close what was started on exit.

    Parameters
    ----------
    profile, log_directory
        As for :func:`make_cluster`.

    Yields
    ------
    distributed.Client
        Its ``dashboard_link`` is the link to print.
    """
    cluster, client = make_cluster(profile, log_directory=log_directory)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def performance_report(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Record a Dask performance report (HTML) of everything computed inside the block.

    Parameters
    ----------
    path : str or path
        The HTML file to write; parent directories are created.

    Yields
    ------
    pathlib.Path
        ``path``, written when the block exits (also when it raises).
    """
    from distributed import performance_report as _report

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _report(filename=str(target)):
        yield target
    logger.info("Dask performance report: %s", target)
