"""Ingestion: source files to the cohort store, in parallel on Dask.

Ingestion is idempotent and incremental. Each file's fingerprint (its sha256, or the
generator parameters for synthetic cohorts) is compared with the one stored for its
recording: an unchanged file is not read again, a new file adds a recording, a changed file
replaces its recording (with a warning). Each recording is written to a staging folder by a
worker and committed by rename on the client, so the store never holds a half-written one.

A source file is re-hashed only when its stat changed, as git's index does: the store keeps
each file's size, ``mtime_ns``, ``ctime_ns``, inode and device with the sha256 they gave
(:data:`STAT_CACHE`, next to the index). A file whose stat is the same is taken as unchanged
without being read. An edit that keeps the size and restores the mtime (``touch -d``) still
changes the ctime, which no user call can set back; an edit within the same timestamp tick
as the cache write ("racily clean" in git's terms) is caught because entries whose mtime is
not older than the cache file's own write are re-hashed. As with git, a file rewritten by a
tool that also resets the ctime (a changed system clock, a restored file system image) is
not detected: ``cohort ingest`` after removing the cache file re-hashes everything.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline._fs import OUTPUT_ERRNOS, atomic_write_json, file_sha256, sha256_json
from pipeline.exceptions import CohortError, IngestError, InputError
from pipeline.io import get_reader
from pipeline.io._options import check_unique_ids
from pipeline.io.base import SourceFile
from pipeline.store import (
    INDEX,
    Cohort,
    clean_staging,
    commit_recording,
    create_store,
)

__all__ = ["STAT_CACHE", "IngestResult", "ingest", "pending_files"]

log = logging.getLogger(__name__)

OnError = Literal["fail", "skip"]

#: The store's stat cache (next to :data:`pipeline.store.INDEX`): for each source file its
#: stat fields and the sha256 they gave, so an unchanged file is not read again.
STAT_CACHE = "stat-cache.json"
_STAT_VERSION = 1


def _stat_entry(path: Path) -> dict[str, int] | None:
    """Return the stat fields git's index compares, or None for a non-file source."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
        "dev": st.st_dev,
    }


def _load_stat_cache(store: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Return ``(entries by absolute path, the cache's write time in ns)``; empty if unusable."""
    import json

    path = store / STAT_CACHE
    try:
        data = json.loads(path.read_text())
        written = int(data["written_ns"])
        if data.get("version") != _STAT_VERSION or not isinstance(data["files"], dict):
            return {}, 0
        return data["files"], written
    except (OSError, ValueError, KeyError, TypeError):
        return {}, 0  # missing or damaged: every file is hashed, and the cache rewritten


def _write_stat_cache(store: Path, files: dict[str, dict[str, Any]]) -> None:
    # written_ns is taken before the write: an entry is trusted only if its mtime is older
    written = time.time_ns()
    atomic_write_json(
        store / STAT_CACHE,
        {"version": _STAT_VERSION, "written_ns": written, "files": files},
        indent=None,
    )


def _cached_sha(
    entry: dict[str, Any] | None, stat: dict[str, int] | None, written_ns: int
) -> str | None:
    """Return the cached sha256 if the file's stat is the one it was hashed with."""
    if entry is None or stat is None:
        return None
    if any(entry.get(k) != v for k, v in stat.items()):
        return None
    # racily clean: modified in the same tick as (or after) the cache write
    if stat["mtime_ns"] >= written_ns or stat["ctime_ns"] >= written_ns:
        return None
    sha = entry.get("sha256")
    return sha if isinstance(sha, str) else None


def _ingest_key(reader: Any, sha: str, options: dict[str, Any]) -> str:
    key = {"sha256": sha, "reader_version": reader.version, "options": dict(options)}
    return sha256_json(key, "reader options", strict=False)


@dataclass
class IngestResult:
    """What an ingestion run did.

    Attributes
    ----------
    store : Path
    added, replaced, unchanged : list of str
        Recording ids.
    failed : list of (str, str)
        ``(file, error message)`` for each file that could not be ingested.
    seconds : float
        Wall-clock time of the run.
    """

    store: Path
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """Return a one-line summary."""
        return (
            f"{len(self.added)} added, {len(self.replaced)} replaced, "
            f"{len(self.unchanged)} unchanged, {len(self.failed)} failed "
            f"in {self.seconds:.1f} s"
        )


def _ingest_one(
    fmt: str,
    sf: SourceFile,
    options: dict[str, Any],
    store: str,
    known_sha: str | None,
    reference_channels: list[str] | None,
    chunk_samples: int | None,
) -> dict[str, Any]:
    """Fingerprint one file; if it is new or changed, read it and stage its recording."""
    from pipeline.store import write_recording

    reader = get_reader(fmt)
    try:
        sha, key = _fingerprints(reader, sf, options)
        if key == known_sha:
            return {"status": "unchanged", "recording": sf.recording_id, "sha256": sha}
        src = reader.read(sf, **options)
        if reference_channels is not None and list(src.channels) != list(reference_channels):
            raise _mismatch(sf.path, reference_channels, src.channels)
        ranges = _RangeTracker(src.blocks)
        src.blocks = ranges
        row = write_recording(
            store,
            sf,
            src,
            sha256=sha,
            reader=fmt,
            reader_version=str(reader.version),
            chunk_samples=chunk_samples,
            commit=False,
            ingest_key=key,
        )
    except CohortError:
        raise
    except Exception as exc:  # a parser's own error: say which file and which format
        if isinstance(exc, OSError) and exc.errno in OUTPUT_ERRNOS:
            raise  # the store's disk is full or read-only: not the source file's fault
        msg = f"{sf.path}: cannot be read as {fmt!r}: {type(exc).__name__}: {exc}"
        raise InputError(msg, path=str(sf.path)) from exc
    flat = ranges.flat(src.channels)
    return {"status": "written", "recording": sf.recording_id, "row": row, "flat": flat}


class _RangeTracker:
    """Wrap a reader's ``blocks`` and keep each channel's minimum and maximum as it streams.

    A flat channel (every sample equal: a disconnected electrode, a zero-filled channel) is
    legal data, so it is written; the client warns about it, naming the file and channel.
    """

    def __init__(self, blocks: Any) -> None:
        self._blocks = blocks
        self.low: Any = None
        self.high: Any = None

    def __call__(self) -> Any:
        import numpy as np

        self.low = self.high = None
        for block in self._blocks():
            b = np.asarray(block)
            if len(b):
                lo, hi = b.min(axis=0), b.max(axis=0)
                self.low = lo if self.low is None else np.minimum(self.low, lo)
                self.high = hi if self.high is None else np.maximum(self.high, hi)
            yield block

    def flat(self, channels: list[str]) -> list[tuple[str, float]]:
        """Return ``(channel, value)`` of every channel whose samples are all equal."""
        if self.low is None:
            return []
        return [
            (c, float(lo))
            for c, lo, hi in zip(channels, self.low, self.high, strict=True)
            if lo == hi
        ]


def _fingerprints(reader: Any, sf: SourceFile, options: dict[str, Any]) -> tuple[str, str]:
    """Return ``(source sha256, ingest key)`` of one file.

    The ingest key also covers the reader's options and version, so that changing, say,
    ``label_map`` re-ingests the recordings it changes. Readers with a ``fingerprint``
    method (the synthetic generator) compute both from their own parameters.
    """
    if hasattr(reader, "fingerprint"):
        sha = reader.fingerprint(sf, **options)
        return sha, sha
    sha = file_sha256(sf.path)
    return sha, _ingest_key(reader, sha, options)


@dataclass
class _Plan:
    """Which discovered files need a task, and the stat of each (taken before hashing)."""

    files: list[SourceFile]
    todo: list[SourceFile]
    unchanged: list[str]
    stats: dict[str, dict[str, int] | None]
    cache: dict[str, dict[str, Any]]


def _plan(
    reader: Any, files: list[SourceFile], store: Path, known: dict[str, str], options: dict
) -> _Plan:
    cache, written_ns = _load_stat_cache(store)
    use_stat = not hasattr(reader, "fingerprint")  # generated recordings have no file
    todo: list[SourceFile] = []
    unchanged: list[str] = []
    stats: dict[str, dict[str, int] | None] = {}
    for sf in files:
        stat = _stat_entry(sf.path) if use_stat else None
        stats[sf.recording_id] = stat
        if use_stat:
            sha = _cached_sha(cache.get(str(Path(sf.path).resolve())), stat, written_ns)
            key = None if sha is None else _ingest_key(reader, sha, options)
        else:  # the generator's parameters: hashed in microseconds, no file to stat
            key = reader.fingerprint(sf, **options)
        if key is not None and known.get(sf.recording_id) == key:
            unchanged.append(sf.recording_id)
        else:
            todo.append(sf)
    return _Plan(files, todo, unchanged, stats, cache)


def pending_files(
    source: str | os.PathLike[str],
    format: str,
    store: str | os.PathLike[str],
    **options: Any,
) -> list[str] | None:
    """Return the source files :func:`ingest` would read (new or changed), without reading any.

    Parameters
    ----------
    source, format, store, **options
        As for :func:`ingest`.

    Returns
    -------
    list of str or None
        The paths of the files whose stat is not the one cached with their ingested sha256
        (an empty list: ingest has nothing to do), or None when the store does not exist yet.
    """
    store = Path(store)
    if not (store / INDEX).exists():
        return None
    reader = get_reader(format)
    cohort = Cohort(store)
    known = dict(zip(cohort.index["recording"], cohort.index["ingest_key"], strict=True))
    src_path = source if str(source) == "demo" else Path(source)
    files = reader.discover(src_path, **options)
    return [str(sf.path) for sf in _plan(reader, files, store, known, options).todo]


def _mismatch(path: Path, expected: Iterable[str], found: Iterable[str]) -> InputError:
    msg = (
        f"{path}: mismatched channels: expected the cohort's channels {list(expected)}, "
        f"found {list(found)}. Ingest it into another store, select matching channels with "
        "the reader's options, or pass allow_mixed_channels=True (--allow-mixed-channels)."
    )
    return InputError(msg, path=str(path))


def ingest(
    source: str | os.PathLike[str],
    format: str,
    store: str | os.PathLike[str],
    *,
    on_error: OnError = "fail",
    chunk_samples: int | None = None,
    allow_mixed_channels: bool = False,
    client: Any = None,
    progress: bool = True,
    **options: Any,
) -> IngestResult:
    """Ingest a source (a file or a folder) into a cohort store.

    Parameters
    ----------
    source : path or str
        A file or folder of the given format (``"demo"`` or a YAML file for ``synthetic``).
    format : str
        Registered reader name: ``"uci-emg"``, ``"edf"``, ``"csv"``, ``"synthetic"``.
    store : path
        The cohort store; created if missing.
    on_error : {"fail", "skip"}, default "fail"
        ``"fail"`` stops at the first bad file; ``"skip"`` ingests the other files and then
        raises :class:`IngestError` listing the failures.
    chunk_samples : int, optional
        Chunk length along time (default about 8 MiB per chunk).
    allow_mixed_channels : bool, default False
        Accept recordings whose channels differ from the cohort's.
    client : distributed.Client, optional
        Where to run; default the current client if there is one, else local threads.
    progress : bool, default True
        Show a progress bar.
    **options
        Reader options (e.g. ``pattern``, ``label_from``, ``label_map``, ``metadata``).

    Returns
    -------
    IngestResult

    Raises
    ------
    InputError
        With ``on_error="fail"``, the first file that cannot be ingested.
    IngestError
        With ``on_error="skip"``, after the run, if any file failed.
    UnknownFormatError
        If ``format`` names no reader.
    """
    if on_error not in ("fail", "skip"):
        msg = f"on_error must be 'fail' or 'skip', got {on_error!r}"
        raise ValueError(msg)
    t0 = time.perf_counter()
    reader = get_reader(format)
    store = create_store(store)
    n_stale = clean_staging(store)
    if n_stale:
        log.warning("removed %d unfinished write(s) left by an interrupted run", n_stale)
    cohort = Cohort(store)
    known = dict(zip(cohort.index["recording"], cohort.index["ingest_key"], strict=True))
    src_path = source if str(source) == "demo" else Path(source)
    files = reader.discover(src_path, **options)
    check_unique_ids(files)  # also for readers that do not check it themselves
    # The cohort's channels: those of the store's recordings, else those of the first file
    # (in discovery order) once its task is done; results that arrive before it wait. Each
    # worker reads only its own file: parsing the first one here as well would cost the
    # client the reader's start-up (imports, compiled parser), more than a whole small file.
    reference = None
    if not allow_mixed_channels and len(cohort.index):
        reference = list(cohort.index["channels"].iloc[0])
    result = IngestResult(store=store)
    rows = {r["recording"]: r for r in cohort.index.to_dict("records")}
    plan = _plan(reader, files, store, known, options)
    todo = plan.todo
    decides = todo[0].recording_id if todo and not allow_mixed_channels else None
    if reference is not None:
        decides = None
    result.unchanged.extend(plan.unchanged)  # same stat as when hashed: not read again
    stat_cache = dict(plan.cache)

    def remember(rid: str, sha: str | None) -> None:
        stat = plan.stats.get(rid)
        if stat is not None and sha:
            stat_cache[str(Path(by_id[rid].path).resolve())] = {**stat, "sha256": sha}

    args = [
        (format, sf, options, str(store), known.get(sf.recording_id), reference, chunk_samples)
        for sf in plan.todo
    ]
    by_id = {sf.recording_id: sf for sf in files}
    last_index_write = 0.0

    def handle(sf_id: str, outcome: Any) -> None:
        nonlocal last_index_write
        if not isinstance(outcome, BaseException) and outcome["status"] == "written":
            found = outcome["row"]["channels"]
            if reference is not None and list(found) != list(reference):
                shutil.rmtree(outcome["row"]["_staging"], ignore_errors=True)
                outcome = _mismatch(by_id[sf_id].path, reference, found)
        if isinstance(outcome, BaseException):
            if on_error == "fail" or not isinstance(outcome, CohortError):
                raise outcome
            result.failed.append((str(by_id[sf_id].path), str(outcome)))
            log.error("%s", outcome)
            return
        rid = outcome["recording"]
        if outcome["status"] == "unchanged":
            result.unchanged.append(rid)
            remember(rid, outcome.get("sha256"))  # touched, same bytes: not hashed again
            return
        row = outcome["row"]
        flat = outcome.get("flat", [])
        if flat:
            listed = ", ".join(f"{c!r} (every sample is {v:g})" for c, v in flat)
            msg = (
                f"{by_id[rid].path}: flat channel(s) {listed}; ingested, and the report's "
                "quality flags (flat_fraction) will mark them"
            )
            log.warning("%s", msg)
            warnings.warn(msg, stacklevel=3)
        staging = Path(row.pop("_staging"))
        replacing = rid in known
        commit_recording(store, rid, staging)
        rows[rid] = row
        remember(rid, row.get("sha256"))
        if replacing:
            result.replaced.append(rid)
            msg = (
                f"{by_id[rid].path}: source changed since it was ingested "
                f"(now sha256 {row['sha256'][:12]}..., or other reader options); "
                f"recording {rid!r} replaced"
            )
            warnings.warn(msg, stacklevel=3)
        else:
            result.added.append(rid)
        # A stale index is detected (and rebuilt) from the listing when ids are missing,
        # but not when a replaced recording kept its id: write the index at once then.
        if replacing or time.monotonic() - last_index_write > 1.0:
            _write_index(store, rows)
            last_index_write = time.monotonic()

    waiting: list[tuple[str, Any]] = []
    try:
        for sf_id, outcome in _run_tasks(args, client, progress):
            if decides is None:
                handle(sf_id, outcome)
            elif sf_id != decides:
                waiting.append((sf_id, outcome))
            else:
                if not isinstance(outcome, BaseException) and outcome["status"] == "written":
                    reference = list(outcome["row"]["channels"])
                decides = None
                # Each item leaves ``waiting`` before it is handled: a committed recording
                # has no staging folder left for the clean-up below to remove.
                waiting.insert(0, (sf_id, outcome))
                while waiting:
                    handle(*waiting.pop(0))
    finally:
        for _, outcome in waiting:  # not committed: a failure stopped the run first
            if not isinstance(outcome, BaseException) and outcome["status"] == "written":
                shutil.rmtree(outcome["row"]["_staging"], ignore_errors=True)
        _write_index(store, rows)
        if plan.todo or not (store / STAT_CACHE).exists():
            _write_stat_cache(store, stat_cache)
    result.seconds = time.perf_counter() - t0
    log.info("ingest %s -> %s: %s", source, store, result.summary())
    if result.failed:
        lines = "\n".join(f"  {f}: {m}" for f, m in result.failed)
        msg = f"{len(result.failed)} of {len(files)} file(s) failed to ingest:\n{lines}"
        err = IngestError(msg, result.failed)
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result


def _write_index(store: Path, rows: dict[str, dict[str, Any]]) -> None:
    atomic_write_json(store / INDEX, [rows[k] for k in sorted(rows)])


BATCH_BYTES = 16 * 2**20  # small files are ingested several per task, up to this many bytes


def _ingest_batch(batch: list[tuple[Any, ...]]) -> list[tuple[str, Any]]:
    """Run ``_ingest_one`` on each file of ``batch``; return ``(id, result or exception)``."""
    out: list[tuple[str, Any]] = []
    for a in batch:
        try:
            out.append((a[1].recording_id, _ingest_one(*a)))
        except Exception as exc:  # reported per file; the batch's other files go on
            out.append((a[1].recording_id, exc))
    return out


def _batches(args: list[tuple[Any, ...]], n_workers: int) -> list[list[tuple[Any, ...]]]:
    """Group small files into tasks of up to ``BATCH_BYTES``, in order.

    A task costs the scheduler, the client and the worker a few milliseconds, as much as
    ingesting a small file; batches cut that cost, and are capped so that every worker still
    gets several tasks to balance the load. Files of unknown size (generated recordings)
    and large files get a task of their own.
    """
    cap = max(1, -(-len(args) // (4 * max(n_workers, 1))))
    batches: list[list[tuple[Any, ...]]] = []
    current: list[tuple[Any, ...]] = []
    size = 0
    for a in args:
        path = a[1].path
        nbytes = path.stat().st_size if path.is_file() else BATCH_BYTES
        if current and (size + nbytes > BATCH_BYTES or len(current) >= cap):
            batches.append(current)
            current, size = [], 0
        current.append(a)
        size += nbytes
    if current:
        batches.append(current)
    return batches


def _run_tasks(
    args: list[tuple[Any, ...]], client: Any, progress: bool
) -> Iterable[tuple[str, Any]]:
    """Run ``_ingest_one`` over ``args``; yield ``(recording id, result or exception)``."""
    if not args:  # every file unchanged by its stat: no client looked up, nothing imported
        return
    from tqdm.auto import tqdm

    if client is None:
        try:
            from distributed import get_client

            client = get_client()
        except (ImportError, ValueError):
            client = None
    bar = tqdm(total=len(args), desc="ingest", unit="file", disable=not progress)
    try:
        if client is not None:
            from distributed import as_completed

            from pipeline.cluster import n_workers

            run = uuid.uuid4().hex[:8]
            futures = {
                client.submit(_ingest_batch, b, key=f"ingest-{b[0][1].recording_id}-{run}"): b
                for b in _batches(args, n_workers(client))
            }
            try:
                for fut in as_completed(futures):
                    batch = futures[fut]
                    bar.update(len(batch))
                    if fut.status == "error":  # the task itself failed (e.g. a lost worker)
                        for a in batch:
                            yield a[1].recording_id, fut.exception()
                    else:
                        yield from fut.result()
            finally:
                for fut in futures:
                    fut.cancel()
        else:
            from concurrent.futures import ThreadPoolExecutor, as_completed

            n_threads = os.cpu_count() or 1
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                futs = {pool.submit(_ingest_batch, b): b for b in _batches(args, n_threads)}
                try:
                    for fut in as_completed(futs):
                        bar.update(len(futs[fut]))
                        yield from fut.result()
                finally:
                    for fut in futs:
                        fut.cancel()
    finally:
        bar.close()
