"""Cluster profiles: where a run executes (local, SLURM/PBS via dask-jobqueue, or an address).

A profile is a small YAML file that follows dask-jobqueue's configuration conventions (one
section per scheduler type, kebab-case keys)::

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
scheduler that is already running. The profiles ``local``, ``slurm`` and ``pbs`` ship inside
the package (``pipeline/_data/cluster/``, the checkout's ``cluster/*.yaml`` link there) and are
found by name. A profile is validated by its pydantic model
(:func:`pipeline.spec.cluster.profile_model`): every key is checked against the parameters
that the cluster class accepts, and a mistake is a :class:`~pipeline.exceptions.SpecError`
naming the file, the key path, what was expected, what was found and the closest key.

Workers get ``NUMBA_CACHE_DIR`` pointing at node-local disk (the worker's local directory,
else ``$TMPDIR``), so compiled feature kernels are cached per node instead of on a shared
filesystem where concurrent writers corrupt each other's cache files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline import _data
from pipeline.exceptions import ClusterError, SpecError
from pipeline.spec.cluster import (
    JOBQUEUE_KINDS,
    accepted_keys,
    job_parameters,
    kebab,
    profile_model,
    snake,
)
from pipeline.spec.errors import parse

logger = logging.getLogger(__name__)

__all__ = [
    "accepted_keys",
    "allocation_resources",
    "connect",
    "describe_workers",
    "job_script",
    "load_profile",
    "make_cluster",
    "performance_report",
    "with_workers",
]

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


def _find_profile(name_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    """Return the text of a profile file, or of a shipped profile by name, and its source."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.read_text(), str(path)
    shipped = _data.cluster_profile(str(name_or_path)) if path.suffix == "" else None
    if shipped is not None:
        return shipped.read_text(), str(shipped)
    message = (
        f"Cluster profile {str(name_or_path)!r} not found: expected a YAML file, the name of "
        f"a profile shipped with the package ({', '.join(_data.profile_names())}), or a "
        f"scheduler address like 'tcp://host:8786'."
    )
    raise SpecError(message)


def load_profile(path_or_name: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> dict:
    """Load and validate a cluster profile.

    Parameters
    ----------
    path_or_name : str, path, mapping or None
        A YAML file, the name of a profile shipped with the package (``"local"``,
        ``"slurm"``, ``"pbs"``), a scheduler address (``"tcp://host:8786"``), an already
        parsed mapping, or None for the default: a local cluster with one single-threaded
        worker per core.

    Returns
    -------
    dict
        ``kind`` (``"local"``, ``"address"`` or a dask-jobqueue name such as ``"slurm"``),
        ``source`` (the file or ``"<default>"``), ``options`` (validated kebab-case keys of
        the cluster class, as written), ``scale`` (our ``jobs``/``workers``/... keys),
        ``address`` (str or None) and ``numba_cache_dir`` (str or None).

    Raises
    ------
    SpecError
        If the file is missing or not YAML, or does not validate against
        :func:`pipeline.spec.cluster.profile_model` (the message names the file, the key
        path, what was expected, what was found and the closest key).
    """
    if path_or_name is None:
        return _validate({"local": {}}, "<default>")
    if isinstance(path_or_name, Mapping):
        return _validate(path_or_name, "<mapping>")
    text = str(path_or_name)
    if "://" in text:
        return _validate({"address": text}, "<address>")
    content, source = _find_profile(path_or_name)
    try:
        raw = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        message = f"{source}: not valid YAML: {exc}"
        raise SpecError(message) from exc
    return _validate(raw if raw is not None else {}, source)


def with_workers(profile: dict, workers: int | None) -> dict:
    """Return a loaded local ``profile`` with ``workers`` worker processes (None: as it is).

    Raises
    ------
    SpecError
        If ``workers`` is not a positive integer, or the profile is not a local cluster's.
    """
    if workers is None:
        return profile
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SpecError(f"--workers: expected a positive number of workers; found {workers!r}")
    if profile["kind"] != "local":
        msg = (
            f"--workers: expected a local cluster profile; found {profile['kind']!r} "
            f"({profile['source']}): set its scale (jobs, workers) in the profile instead"
        )
        raise SpecError(msg)
    return {**profile, "options": {**profile["options"], "n-workers": workers}}


def _validate(raw: Any, source: str) -> dict:
    """Return the profile dict of ``raw`` validated by the profile model."""
    model = parse(profile_model(), raw, source)
    profile: dict[str, Any] = {
        "kind": "",
        "source": source,
        "options": {},
        "scale": model.scale.model_dump(exclude_unset=True) if model.scale else {},
        "address": None,
        "numba_cache_dir": getattr(model, "numba-cache-dir"),
    }
    # exclude_unset: the keys as written (an explicit null stays, meaning "the default")
    if "address" in model.model_fields_set:
        profile.update(kind="address", address=model.address)
    elif "local" in model.model_fields_set:
        profile.update(kind="local", options=model.local.model_dump(exclude_unset=True))
    else:
        (kind,) = model.jobqueue.model_fields_set
        section = getattr(model.jobqueue, kind)
        profile.update(kind=kind, options=section.model_dump(exclude_unset=True))
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
    options = {snake(k): v for k, v in profile["options"].items() if v is not None}
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
    address = str(options.get("dashboard_address") or ":8787")  # distributed's default
    options["dashboard_address"] = free_dashboard_address(address)
    env = dict(options.get("env") or {})
    env.setdefault("NUMBA_CACHE_DIR", _numba_cache_dir(profile, options.get("local_directory")))
    options["env"] = env
    return options


def free_dashboard_address(address: str) -> str:
    """Return ``address`` if its port is free, else the same host with port 0 (any free one).

    distributed falls back to a random port itself, but with a four-line warning block;
    choosing first keeps ``cohort run`` quiet, and the link it prints has the real port.
    """
    import socket

    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return address
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host or "", int(port)))
        except OSError:
            return f"{host}:0"
    return address


def _jobqueue_kwargs(profile: Mapping[str, Any], log_directory: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in profile["options"].items():
        if value is None:
            continue
        # The YAML ``name`` is the batch job name; the Job argument ``name`` is the worker's.
        options["job_name" if key == "name" else snake(key)] = value
    prologue = list(options.get("job_script_prologue") or [])
    if not any("NUMBA_CACHE_DIR" in line for line in prologue):
        cache = _numba_cache_dir(profile, options.get("local_directory"))
        prologue.append(f'export NUMBA_CACHE_DIR="{cache}"')
    # Set, not defaulted: batch jobs inherit the submitting process's environment, where any
    # nanny this process started has left distributed's own 64 KiB trim threshold. A profile
    # that sets the variable in its prologue keeps its own value.
    for name, value in WORKER_MALLOC_ENV.items():  # see WORKER_MALLOC_ENV
        if not any(name in line for line in prologue):
            prologue.append(f"export {name}={value}")
    options["job_script_prologue"] = prologue
    options["scheduler_options"] = _scheduler_options(profile["kind"], options)
    if log_directory is not None and "log_directory" not in options:
        options["log_directory"] = str(log_directory)
    return options


def _scheduler_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Return the job queue's ``scheduler_options`` with a free dashboard port.

    The profile's ``scheduler-options`` (else dask's ``jobqueue.<kind>.scheduler-options``
    config, which dask-jobqueue would read), with ``dashboard_address`` (dask-jobqueue's
    default ``:8787``) replaced by a free port when it is held: the scheduler runs in this
    process, and distributed would otherwise take another port itself with a four-line
    "Port 8787 is already in use" warning, as on a local cluster.
    """
    import dask

    scheduler = options.get("scheduler_options")
    if scheduler is None:
        scheduler = dask.config.get(f"jobqueue.{kind}.scheduler-options", {}) or {}
    scheduler = dict(scheduler)
    address = str(scheduler.get("dashboard_address") or ":8787")  # dask-jobqueue's default
    scheduler["dashboard_address"] = free_dashboard_address(address)
    return scheduler


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
    job_only = job_parameters(prof["kind"])
    kwargs = {
        k: v
        for k, v in _jobqueue_kwargs(prof, None).items()
        if kebab(k) in job_only or k == "job_name"
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
                f"{kind.upper()} cluster, or use --cluster local."
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
    if kind != "address":  # a shared scheduler's workers are not ours to configure
        client.run(quiet_sizeof)
    logger.info("Dask dashboard: %s", client.dashboard_link)
    return cluster, client


def quiet_sizeof() -> None:
    """Raise this process's ``distributed.sizeof`` logger to ERROR (run on every worker).

    A worker's comm layer estimates each reply's size to decide whether to serialise it
    off the event loop; on a deeply nested reply the estimate hits Python's recursion
    limit and the worker offloads anyway (the safe choice). The warning it logs, twice per
    run, says nothing is wrong. Workers set up their logging before they receive this
    process's configuration, so it is set in each worker once the cluster is up (workers
    an adaptive cluster adds later keep the default).
    """
    logging.getLogger("distributed.sizeof").setLevel(logging.ERROR)


def _scale(cluster: Any, client: Any, prof: Mapping[str, Any]) -> None:
    """Request the profile's jobs and wait for their workers; stop at a failed submission."""
    watch = _SubmitFailures()
    tornado_log = logging.getLogger("tornado.application")
    tornado_log.addFilter(watch)
    try:
        _scale_and_wait(cluster, client, prof, watch)
    finally:
        tornado_log.removeFilter(watch)


def _scale_and_wait(
    cluster: Any, client: Any, prof: Mapping[str, Any], watch: _SubmitFailures
) -> None:
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
    submit = cluster.job_cls.submit_command.split()[0]
    deadline = time.monotonic() + timeout
    while (arrived := len(client.scheduler_info(n_workers=-1)["workers"])) < expected:
        failure = watch.pop()
        if failure is not None or time.monotonic() > deadline:
            jobs = [getattr(j, "job_id", None) for j in cluster.workers.values()]
            client.close()
            with contextlib.suppress(Exception):  # jobs that never started cannot be closed
                cluster.close(timeout=10)
            if failure is not None:
                message = (
                    f"Job submission failed (profile {prof['source']}): {submit} said: "
                    f"{failure}; check the profile's queue, account and walltime, and that "
                    f"the scheduler answers (sinfo / qstat -B)"
                )
            else:
                message = (
                    f"Only {arrived} of {expected} worker(s) arrived within {timeout:.0f} s "
                    f"(profile {prof['source']}); {_queue_state(kind_of(cluster), jobs)}; "
                    f"check the job logs, or raise scale.wait-timeout"
                )
            raise ClusterError(message)
        time.sleep(0.25)


def kind_of(cluster: Any) -> str:
    """Return the batch system of a dask-jobqueue cluster (``slurm``, ``pbs``, ...)."""
    return type(cluster).__name__.removesuffix("Cluster").lower()


def _queue_state(kind: str, job_ids: list[str | None]) -> str:
    """Return what the batch system says of ``job_ids``: their states and reasons."""
    import subprocess

    ids = [str(j) for j in job_ids if j]
    if not ids:
        return "no job was submitted"
    if kind != "slurm" or shutil.which("squeue") is None:
        return f"jobs {', '.join(ids)} submitted (check them with qstat)"
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %r"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"squeue failed ({exc})"
    states = [line.split(None, 2) for line in out if line.strip()]
    pending = [s for s in states if len(s) > 1 and s[1] == "PENDING"]
    reasons = sorted({s[2] for s in pending if len(s) > 2})
    return (
        f"{len(pending)} of {len(ids)} job(s) pending (squeue reason: "
        f"{', '.join(reasons) or 'none given'}), {len(states) - len(pending)} in another state"
    )


class _SubmitFailures(logging.Filter):
    """Catch the job-submission errors dask-jobqueue raises in its event loop.

    A failed ``sbatch``/``qsub`` raises inside a background task, which tornado logs as a
    traceback while the cluster waits on for workers that will never come. This filter on
    tornado's logger keeps the scheduler's own words (the command's stderr) for
    :func:`_scale` to stop at once with, and drops the traceback.
    """

    _MARK = "Command exited with non-zero exit code"

    def __init__(self) -> None:
        super().__init__()
        self._errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or self._MARK not in str(exc):
            return True
        text = str(exc)
        stderr = text.split("stderr:", 1)[-1]
        self._errors.append("; ".join(x.strip() for x in stderr.splitlines() if x.strip()))
        return False

    def pop(self) -> str | None:
        return self._errors.pop(0) if self._errors else None


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
