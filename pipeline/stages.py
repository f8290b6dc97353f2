"""The stages of ``cohort run``: ingest -> features -> fit/validate -> report.

Every stage's output is stored under a content key (:func:`pipeline.cache.stage_key`): the
hash of its inputs' keys, its own parameters and the code it runs. A stage whose key is
complete is reused, so

- an unchanged second run only re-checks the source files' fingerprints;
- a changed model parameter re-runs fit/validate and report;
- a changed window or feature re-runs the features (every recording) and what follows;
- a new subject's files add recordings whose features are computed, then the model is refit.

Features are one stage per recording (the key holds the recording's own fingerprint),
computed in parallel on the cluster and committed one by one: a run killed halfway keeps
the recordings it finished. Each writes one file of the feature-table format
(:mod:`pipeline.table.parquet`), and the fit stage reads them with
:func:`pipeline.table.read_feature_table`, as it would read a ``cohort features`` output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from pipeline._fs import atomic_write_json, sha256_json
from pipeline.cache import Run, StageCache, module_code_version, stage_key
from pipeline.check import check_cohort, check_model, check_task, load_checked_task
from pipeline.cluster import n_workers
from pipeline.spec import TaskSpec
from pipeline.table import FeatureTableSpec

__all__ = ["RunSummary", "StageOutcome", "run_task", "task_feature_spec"]

log = logging.getLogger(__name__)

FEATURES_FILE = "features.parquet"
BUNDLE_FILE = "model.skops"


@dataclass
class StageOutcome:
    """What one stage (or group of per-recording stages) did in a run."""

    name: str
    key: str
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    path: Path | None = None
    detail: str = ""

    @property
    def state(self) -> str:
        """Return ``reused``, ``computed`` or ``partly reused``."""
        if self.computed and self.reused:
            return f"computed {self.computed}, reused {self.reused}"
        return "computed" if self.computed else "reused"


@dataclass
class RunSummary:
    """The outcome of ``cohort run``: stages, where the report and bundle are."""

    task: str
    out: Path
    stages: list[StageOutcome] = field(default_factory=list)
    store: Path | None = None
    report_html: Path | None = None
    report_json: Path | None = None
    bundle: Path | None = None
    features: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    dashboard: str | None = None
    seconds: float = 0.0

    def table(self) -> str:
        """Return the stages as an aligned text table."""
        rows = [("STAGE", "KEY", "STATE", "SECONDS", "DETAIL")]
        for s in self.stages:
            rows.append((s.name, s.key[:12], s.state, f"{s.seconds:.1f}", s.detail))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        )


def task_feature_spec(task: TaskSpec) -> FeatureTableSpec:
    """Return the :class:`pipeline.table.FeatureTableSpec` of a task."""
    return FeatureTableSpec.from_task(task)


#: The modules whose source a stage's output depends on: editing one re-runs the stage.
#: The spec modules hold the defaults and normalisation of the stages' parameters.
_FEATURE_MODULES = (
    "pipeline.features",
    "pipeline.features._kernels",
    "pipeline.features.compute",
    "pipeline.features.covariance",
    "pipeline.features.registry",
    "pipeline.labels",
    "pipeline.preprocessing",
    "pipeline.windows",
    "pipeline.table.build",
    "pipeline.table.parquet",
    "pipeline.table.spec",
    "pipeline.spec.features",
    "pipeline.spec.preprocess",
    "pipeline.spec.windows",
)
_LEARN_MODULES = (
    "pipeline.learn",
    "pipeline.learn.bundle",
    "pipeline.learn.calibrate",
    "pipeline.learn.distributed",
    "pipeline.learn.estimators",
    "pipeline.learn.fit",
    "pipeline.learn.metrics",
    "pipeline.learn.model",
    "pipeline.learn.outofcore",
    "pipeline.learn.permutation",
    "pipeline.learn.prep",
    "pipeline.learn.presets",
    "pipeline.learn.report",
    "pipeline.learn.riemann",
    "pipeline.learn.sufficient",
    "pipeline.learn.trust",
    "pipeline.learn.validation",
    "pipeline.quality",
    "pipeline.spec.learn",
)


def _code(modules: tuple[str, ...]) -> str:
    # read from the source files: a rerun decides what is cached without importing them
    return module_code_version(*modules)


def _feature_code() -> str:
    return _code(_FEATURE_MODULES)


def _learn_code() -> str:
    return _code(_LEARN_MODULES)


def _report_code() -> str:
    return module_code_version("pipeline.learn.report")


# ----------------------------------------------------------------------------- stages


def _store_path(task: TaskSpec, out: Path) -> Path:
    # One store per source: reader options and cohort size change recordings, not stores.
    data = task.data.model_dump()
    name = f"{task.name}-{sha256_json([data['source'], data['format']])[:12]}.zarr"
    return out / "stores" / name


def _feature_keys(task: TaskSpec, cohort: Any) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Return ``(feature params, feature code version, stage key by recording id)``."""
    params = task_feature_spec(task).to_dict()
    code = _feature_code()
    keys = {
        rid: stage_key("features", params, [cohort.recording_fingerprint(rid)], code)
        for rid in cohort.recording_ids
    }
    return params, code, keys


def _fit_params(task: TaskSpec) -> dict[str, Any]:
    return {"model": _model_cfg(task), "validation": _validation_cfg(task), "seed": task.seed}


def _report_key(task: TaskSpec, fit_key: str) -> str:
    return stage_key("report", {"task": task.name}, [fit_key], _report_code())


def all_cached(task: TaskSpec, out: Path, cache: StageCache) -> bool:
    """Return whether every stage of ``task`` is complete in ``out``'s cache.

    Decided from the stage graph's keys alone, before any cluster starts: no source file
    whose stat changed since it was hashed (:func:`pipeline.ingest.pending_files`), every
    recording's feature stage, the fit stage and the report stage complete. Nothing is
    imported that only computing needs (numba kernels, scikit-learn, distributed).

    Parameters
    ----------
    task : TaskSpec
    out : Path
        The run's output folder.
    cache : StageCache
        Its stage cache.

    Returns
    -------
    bool
        True when a run would reuse every stage.
    """
    from pipeline.ingest import pending_files
    from pipeline.store import open_cohort

    data = task.data.model_dump()
    store = _store_path(task, out)
    pending = pending_files(data["source"], data["format"], store, **data["options"])
    if pending is None or pending:
        return False
    cohort = open_cohort(store)
    params, code, keys = _feature_keys(task, cohort)
    if not keys or not all(cache.is_complete(k) for k in keys.values()):
        return False
    table_key = stage_key("feature-table", params, sorted(keys.values()), code)
    fit_key = stage_key("fit", _fit_params(task), [table_key], _learn_code())
    return cache.is_complete(fit_key) and cache.is_complete(_report_key(task, fit_key))


def _stage_ingest(task: TaskSpec, out: Path, client: Any, progress: bool) -> StageOutcome:
    """Bring the store up to date with the source (idempotent, incremental)."""
    from pipeline.ingest import ingest
    from pipeline.store import open_cohort

    data = task.data.model_dump()
    store = _store_path(task, out)
    t0 = time.perf_counter()
    store.parent.mkdir(parents=True, exist_ok=True)
    # One writer per store: a second run on the same --out waits here, then finds every
    # recording unchanged instead of racing the first one's writes.
    with FileLock(f"{store}.lock"):
        result = ingest(
            data["source"],
            data["format"],
            store,
            chunk_samples=data["chunk_samples"],
            allow_mixed_channels=data["allow_mixed_channels"],
            client=client,
            progress=progress,
            **data["options"],
        )
    cohort = open_cohort(store)
    changed = len(result.added) + len(result.replaced)
    outcome = StageOutcome(
        "ingest",
        cohort.fingerprint,
        computed=changed,
        reused=len(result.unchanged),
        seconds=time.perf_counter() - t0,
        path=store,
        detail=f"{len(cohort)} recordings, {cohort.index['subject'].nunique()} subjects",
    )
    return outcome


def _stage_features(
    task: TaskSpec, cache: StageCache, run: Run, store: Path, client: Any, progress: bool
) -> tuple[StageOutcome, list[Path]]:
    """One cached stage per recording; the missing ones are computed in parallel."""
    from pipeline.store import open_cohort

    spec = task_feature_spec(task)
    cohort = open_cohort(store)
    params, code, keys = _feature_keys(task, cohort)
    todo = [rid for rid, key in keys.items() if not cache.is_complete(key)]
    if todo and progress:
        from tqdm.auto import tqdm
    else:  # no bar to draw: tqdm.auto would import asyncio and look for a notebook for nothing
        from tqdm.std import tqdm
    t0 = time.perf_counter()

    def compute(rid: str) -> Path:
        def write(tmp: Path) -> dict[str, Any]:
            from pipeline.table import write_recording_features

            rows = write_recording_features(cohort, rid, spec, tmp / FEATURES_FILE)
            return {"rows": rows, "recording": rid}

        return cache.run(
            "features",
            keys[rid],
            write,
            {"recording": rid},
            params=params,
            input_keys=[cohort.recording_fingerprint(rid)],
            run=run,
        )

    # Each thread submits one recording's graph to the cluster and commits its output.
    n_threads = max(2, 2 * n_workers(client)) if todo else 1
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        futures = [pool.submit(compute, rid) for rid in todo]
        bar = tqdm(total=len(todo), desc="features", unit="rec", disable=not progress or not todo)
        try:
            for fut in as_completed(futures):
                fut.result()
                bar.update()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        finally:
            bar.close()
    # the computed ones are already recorded; the others are recorded as reused here
    computed = set(todo)
    paths = [
        (
            cache.path(keys[rid])
            if rid in computed
            else cache.run("features", keys[rid], _never, run=run)
        )
        / FEATURES_FILE
        for rid in cohort.recording_ids
    ]
    outcome = StageOutcome(
        "features",
        stage_key("feature-table", params, sorted(keys.values()), code),
        computed=len(todo),
        reused=len(keys) - len(todo),
        seconds=time.perf_counter() - t0,
        detail=f"{len(spec.features)} feature kinds, {len(keys)} recordings",
    )
    return outcome, paths


def _never(tmp: Path) -> None:  # pragma: no cover - only called for complete keys
    msg = "internal error: a feature stage was not complete after computing it"
    raise RuntimeError(msg)


def _model_cfg(task: TaskSpec) -> dict[str, Any]:
    return task.model.model_dump(exclude_none=True)


def _validation_cfg(task: TaskSpec) -> dict[str, Any]:
    return task.validation.config()


def _stage_fit(
    task: TaskSpec,
    cache: StageCache,
    run: Run,
    features: StageOutcome,
    feature_paths: list[Path],
    store: Path,
) -> StageOutcome:
    params = _fit_params(task)
    key = stage_key("fit", params, [features.key], _learn_code())
    t0 = time.perf_counter()
    state = {"computed": 0}

    def fit(tmp: Path) -> dict[str, Any]:
        # imported here: a reused fit stage needs none of scikit-learn
        from pipeline.learn import bundle_metadata, fit_and_validate, save_bundle
        from pipeline.learn.distributed import resolve_engine, table_nbytes
        from pipeline.learn.report import attach_quality, cohort_quality, provenance
        from pipeline.store import open_cohort
        from pipeline.table import read_feature_table

        state["computed"] = 1
        engine = resolve_engine(task.model, table_nbytes(feature_paths))
        table = read_feature_table(feature_paths)[0]
        if engine == "memory":  # the in-memory engine fits on pandas: collected here
            table = table.compute().reset_index(drop=True)
        cohort = open_cohort(store)
        model, report = fit_and_validate(
            table,
            params["model"],
            params["validation"],
            task.seed,
            specificity=task.validation.specificity or 0.9,
            predictions_dir=tmp / "predictions",  # out-of-fold, one file per partition
            # seconds; in samples the slowest recording's (the longest span) is the safe one
            window_length=task.windows.length
            if task.windows.unit == "seconds"
            else task.windows.length / float(cohort.index["sampling_rate"].min()),
        )
        first = cohort.index.iloc[0]
        spec = task_feature_spec(task)
        meta = bundle_metadata(
            model,
            report,
            task=task.model_dump(),
            window_plan=spec.window.to_dict(),
            feature_specs=[dict(f) for f in spec.features],
            preprocessing=spec.steps(),
            channels=list(spec.channels or first["channels"]),
            sampling_rate=float(first["sampling_rate"]),
            units=list(first["units"]),
            store_fingerprint=cohort.fingerprint,
        )
        report["provenance"] = provenance(
            task.model_dump(),
            preprocessing=spec.steps(),
            windows=spec.window.to_dict(),
            features=[dict(f) for f in spec.features],
            store_fingerprint=cohort.fingerprint,
            cohort_index=cohort.index,
        )
        attach_quality(report, cohort_quality(cohort, spec.steps(), spec.channels))
        save_bundle(tmp / BUNDLE_FILE, model, meta)
        atomic_write_json(tmp / "report.json", report)
        return {"metrics": _headline(report)}

    path = cache.run("fit", key, fit, params=params, input_keys=[features.key], run=run)
    manifest = cache.manifest(key)
    metrics = (manifest.get("result") or {}).get("metrics", {})
    return StageOutcome(
        "fit/validate",
        key,
        computed=state["computed"],
        reused=1 - state["computed"],
        seconds=time.perf_counter() - t0,
        path=path,
        detail=", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)),
    )


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    overall = report.get("overall", {})
    return {
        k: overall[k]
        for k in ("balanced_accuracy", "accuracy", "f1_macro", "roc_auc")
        if isinstance(overall.get(k), float)
    }


def _stage_report(task: TaskSpec, cache: StageCache, run: Run, fit: StageOutcome) -> StageOutcome:
    key = _report_key(task, fit.key)
    t0 = time.perf_counter()
    state = {"computed": 0}

    def render(tmp: Path) -> None:
        from pipeline.learn.report import write_report

        state["computed"] = 1
        assert fit.path is not None
        report = json.loads((fit.path / "report.json").read_text())
        write_report(report, tmp, title=f"{task.name}: {task.description or task.model.name}")

    path = cache.run(
        "report", key, render, params={"task": task.name}, input_keys=[fit.key], run=run
    )
    return StageOutcome(
        "report",
        key,
        computed=state["computed"],
        reused=1 - state["computed"],
        seconds=time.perf_counter() - t0,
        path=path,
    )


# ----------------------------------------------------------------------------- the run


def run_task(
    task: str | os.PathLike[str] | TaskSpec,
    out: str | os.PathLike[str],
    *,
    cluster: Any = None,
    progress: bool = True,
    on_cluster: Callable[[Any], None] | None = None,
    client: Any = None,
    workers: int | None = None,
) -> RunSummary:
    """Run a task's stages, reusing every stage whose key is already complete.

    Parameters
    ----------
    task : path or TaskSpec
        A task spec (YAML file) or a loaded spec.
    out : path
        Output folder: ``stages/`` (the cache), ``runs/`` (run manifests), ``stores/``,
        ``logs/``, ``dask-report.html`` and ``latest/`` (links to this run's report and
        model bundle).
    cluster : str, mapping or None
        Cluster profile (see :func:`pipeline.cluster.load_profile`); None: local. Not read
        when every stage is cached: no cluster starts then.
    progress : bool
        Show progress bars.
    on_cluster : callable, optional
        Called with the client once the cluster is up (the CLI prints the dashboard link).
    client : distributed.Client, optional
        Run on this client instead of starting the cluster of ``cluster``.
    workers : int, optional
        Worker processes of a local cluster (``n-workers`` of the profile).

    Returns
    -------
    RunSummary
    """
    from pipeline.cluster import (
        connect,
        describe_workers,
        load_profile,
        performance_report,
        with_workers,
    )
    from pipeline.store import open_cohort

    t0 = time.perf_counter()
    task_path = None if isinstance(task, TaskSpec) else Path(task)
    if isinstance(task, TaskSpec):
        spec = task
        source_name = spec.source or spec.name
        check_task(spec, source_name, model=False)
    else:
        spec, _ = load_checked_task(task, model=False)
        source_name = str(Path(task))
    out = Path(out)
    # A rerun with nothing to compute starts no cluster (seconds of start-up, and the
    # imports of distributed): the keys are checked first, then the stages reuse them.
    cached = client is None and (out / "stages").is_dir() and all_cached(spec, out, StageCache(out))
    profile: dict[str, Any] = {}
    if not cached:
        # a complete fit stage was fitted with these very parameters (they are in its key):
        # scikit-learn is imported to check them only when they may be fitted now
        check_model(spec.model, source_name)
        if client is None:
            # read only when a cluster starts: validating a profile imports distributed and
            # dask-jobqueue to learn the keys their classes take
            profile = with_workers(load_profile(cluster), workers)
    out.mkdir(parents=True, exist_ok=True)
    cache = StageCache(out)
    summary = RunSummary(task=str(task_path or spec.name), out=out)
    if cached:
        log.info("every stage is cached: no cluster started")
        cluster_cm: Any = contextlib.nullcontext(None)
        source = "none (every stage cached)"
    elif client is not None:
        cluster_cm = contextlib.nullcontext(client)
        source = f"client {client.scheduler.address}"
    else:
        cluster_cm = connect(profile, log_directory=out / "logs")
        source = profile["source"]
    with (
        cluster_cm as client,
        cache.start_run(
            t0=t0, task=summary.task, task_spec=spec.model_dump(), cluster=source
        ) as run,
    ):
        run.data["cluster_started"] = not cached
        if not cached:
            summary.dashboard = getattr(client, "dashboard_link", None)
            if on_cluster is not None:
                on_cluster(client)
            run.data["workers"] = describe_workers(client)
        # with no cluster nothing is computed: the previous run's dask report stays
        report_cm = (
            contextlib.nullcontext() if cached else performance_report(out / "dask-report.html")
        )
        with report_cm:
            ingest = _stage_ingest(spec, out, client, progress)
            summary.stages.append(ingest)
            summary.store = ingest.path
            # the checks that need the cohort's entities, durations and labels, before the
            # first feature is computed
            check_cohort(spec, source_name, open_cohort(ingest.path).index)
            features, paths = _stage_features(spec, cache, run, ingest.path, client, progress)
            summary.stages.append(features)
            summary.features = paths
            fit = _stage_fit(spec, cache, run, features, paths, ingest.path)
            summary.stages.append(fit)
            report = _stage_report(spec, cache, run, fit)
            summary.stages.append(report)
        run.data["summary"] = {s.name: {"key": s.key, "state": s.state} for s in summary.stages}
    assert fit.path is not None and report.path is not None
    summary.bundle = fit.path / BUNDLE_FILE
    summary.report_json = fit.path / "report.json"
    summary.report_html = report.path / "report.html"
    summary.metrics = cache.manifest(fit.key).get("result", {}).get("metrics", {})
    with cache.lock("latest"):  # two runs ending together would rename one another's links
        _link_latest(out, summary)
    summary.seconds = time.perf_counter() - t0
    return summary


def _link_latest(out: Path, summary: RunSummary) -> None:
    """Point ``out/latest/`` at this run's bundle and report (replaced atomically)."""
    tmp = out / f".latest.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, target in (
        (BUNDLE_FILE, summary.bundle),
        ("report.json", summary.report_json),
        ("report.html", summary.report_html),
        ("dask-report.html", out / "dask-report.html"),
    ):
        if target is not None and target.exists():
            os.symlink(os.path.relpath(target, out / "latest"), tmp / name)
    old = out / "latest"
    if old.exists() or old.is_symlink():
        trash = out / f".latest.old.{os.getpid()}"
        os.rename(old, trash)
        os.rename(tmp, old)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, old)
