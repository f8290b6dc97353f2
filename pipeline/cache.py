"""Content-addressed stage cache: the joblib.Memory idea applied to whole pipeline stages.

A stage's output lives in ``<root>/stages/<key>/`` where ``key`` is the SHA-256 of its name,
parameters, input stage keys and code version (:func:`stage_key`). A stage is computed into
a private temporary directory ``<root>/tmp/<key>.<host>.<pid>.<token>/``, its manifest is
written there, and the directory is renamed into place: a rename is atomic on POSIX
filesystems, so ``stages/<key>`` either does not exist or is complete. A run killed at any
moment leaves at most a temporary directory, which is never read and is removed by the next
run once its owner process is gone.

Each run records the stage keys it uses in ``<root>/runs/<timestamp>-<token>.json`` *before*
computing them, so :meth:`StageCache.clean` never removes a stage a live run is producing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import platform
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

from pipeline._fs import (
    atomic_write_json,
    canonical_json,
    fsync_dir,
    jsonable,
    owned_name,
    owner_gone,
    package_versions,
    pid_alive,
    sha256_json,
)
from pipeline.exceptions import CacheError

logger = logging.getLogger(__name__)

__all__ = [
    "MANIFEST",
    "Run",
    "StageCache",
    "canonical_json",
    "code_version",
    "format_status",
    "package_versions",
    "stage_key",
]

MANIFEST = "manifest.json"
#: The names ``cohort run`` prints for the stages whose cache name is shorter.
STAGE_TITLES = {"fit": "fit/validate"}
_PENDING = "pending.json"
_KEY_CHARS = frozenset("0123456789abcdef")


def stage_key(
    name: str, params: Mapping[str, Any], input_keys: Iterable[str], code_version: str
) -> str:
    """Return the cache key of a stage: SHA-256 of its name, parameters, inputs and code.

    Parameters
    ----------
    name : str
        The stage name (``"ingest"``, ``"features"``, ...).
    params : mapping
        The stage's own parameters (JSON-like, see :func:`canonical_json`).
    input_keys : iterable of str
        Keys (or content fingerprints) of the stage's inputs, in a meaningful order: sort
        them first if the order carries no meaning.
    code_version : str
        Changes whenever the stage's code changes its output.

    Returns
    -------
    str
        64 lowercase hexadecimal characters.
    """
    return sha256_json(
        {"name": name, "params": params, "inputs": list(input_keys), "code": code_version},
        "stage parameter params",
    )


def _versioned(digest: Any) -> str:
    """``<package version>+<first 16 hex digits>``: the form of every stage code version."""
    try:
        pkg = metadata.version("cohort-pipeline")
    except metadata.PackageNotFoundError:
        pkg = "0+unknown"
    return f"{pkg}+{digest.hexdigest()[:16]}"


def code_version(*objects: Any) -> str:
    """Return a version string that changes when the source of ``objects`` changes.

    Parameters
    ----------
    *objects : module, class or function
        The code a stage's output depends on (e.g. the stage function and its kernels'
        module). Objects without retrievable source contribute their qualified name.

    Returns
    -------
    str
        ``"<package version>+<first 16 hex digits of the SHA-256 of the sources>"``.
    """
    import hashlib
    import inspect

    digest = hashlib.sha256()
    for obj in objects:
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            source = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)!r}"
        digest.update(source.encode("utf-8"))
        digest.update(b"\0")
    return _versioned(digest)


def module_code_version(*names: str) -> str:
    """Return :func:`code_version` of the modules ``names`` without importing them.

    A rerun checks every stage's key before it imports the stages' code (numba kernels,
    scikit-learn): a module not yet imported is read from its source file, which is the
    text :func:`inspect.getsource` gives for an imported one, so both digests agree.

    Parameters
    ----------
    *names : str
        Dotted module names (``"pipeline.features.compute"``).

    Returns
    -------
    str
        As :func:`code_version`.
    """
    import hashlib
    import importlib
    import sys

    digest = hashlib.sha256()
    for name in names:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) if module is not None else None
        if origin is None:
            origin = _module_file(name)
        if origin is None or not origin.endswith(".py"):
            digest.update(inspect_source(importlib.import_module(name)).encode("utf-8"))
        else:
            digest.update(Path(origin).read_bytes())
        digest.update(b"\0")
    return _versioned(digest)


def _module_file(name: str) -> str | None:
    """Return the source file of module ``name`` without importing it or its packages.

    ``importlib.util.find_spec`` would import the parent packages (``pipeline.learn``'s
    ``__init__`` imports scikit-learn); this package's own modules are found by path.
    """
    import importlib.util

    top, _, rest = name.partition(".")
    if top == "pipeline":
        base = Path(__file__).resolve().parent.joinpath(*rest.split(".")) if rest else None
        if base is not None:
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return str(candidate)
    spec = importlib.util.find_spec(name)
    return spec.origin if spec is not None else None


def inspect_source(obj: Any) -> str:
    """Return the source :func:`code_version` hashes for ``obj``."""
    import inspect

    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)!r}"


def format_status(rows: Iterable[Mapping[str, Any]]) -> str:
    """Return :meth:`StageCache.status` rows as an aligned text table (for ``cohort status``).

    Parameters
    ----------
    rows : iterable of mapping
        As returned by :meth:`StageCache.status`.

    Returns
    -------
    str
        One header line, then one line per stage: name (as ``cohort run`` prints it), the
        recording of a per-recording stage, key prefix, state, wall time, size and finish
        time. An incomplete stage is ``running`` while its owner process lives, else
        ``interrupted``.
    """
    table = [("STAGE", "RECORDING", "KEY", "STATE", "WALL", "SIZE", "FINISHED")]
    for r in rows:
        wall = "-" if r.get("wall_s") is None else f"{r['wall_s']:.2f}s"
        size = "-" if r.get("bytes") is None else _human_bytes(int(r["bytes"]))
        if r.get("complete"):
            state = "complete"
        elif r.get("pid") is not None and not _process_gone(r):
            state = f"running (pid {r['pid']})"
        else:
            state = "interrupted"
        name = str(r.get("name") or "?")
        table.append(
            (
                STAGE_TITLES.get(name, name),
                str(r.get("recording") or "-"),
                str(r.get("key") or "?")[:12],
                state,
                wall,
                size,
                str(r.get("finished") or "-"),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - unreachable


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _process_gone(run: Mapping[str, Any]) -> bool:
    """Return whether a run manifest's process is known to be gone (only on this host)."""
    pid = run.get("pid")
    if run.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return not pid_alive(pid)


def _dir_size(path: Path) -> tuple[int, int]:
    n_files = n_bytes = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                n_bytes += os.lstat(os.path.join(dirpath, name)).st_size
                n_files += 1
    return n_files, n_bytes


def _check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) != 64 or not set(key) <= _KEY_CHARS:
        message = f"Invalid stage key {key!r}: expected 64 lowercase hex characters (a SHA-256)."
        raise CacheError(message)
    return key


class StageCache:
    """A directory of committed stage outputs, keyed by :func:`stage_key`.

    Parameters
    ----------
    root : str or path
        The cache directory (created if missing), typically the run's ``--out``. Temporary
        directories live under it too, so the commit rename never crosses filesystems.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.stages_dir = self.root / "stages"
        self.tmp_dir = self.root / "tmp"
        self.runs_dir = self.root / "runs"
        self.locks_dir = self.root / "locks"
        for d in (self.stages_dir, self.tmp_dir, self.runs_dir, self.locks_dir):
            d.mkdir(parents=True, exist_ok=True)

    def lock(self, name: str) -> FileLock:
        """Return the inter-process lock ``name`` of this cache (a stage key, ``latest``).

        Runs sharing one output directory hold it while they write what it names, so one
        computes a stage and the others then find it complete.
        """
        return FileLock(str(self.locks_dir / f"{name}.lock"))

    def __repr__(self) -> str:
        return f"StageCache({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """Return the directory where the stage ``key`` is (or would be) committed."""
        return self.stages_dir / _check_key(key)

    def manifest(self, key: str) -> dict:
        """Return the manifest of the committed stage ``key``.

        Raises
        ------
        CacheError
            If the stage is not complete.
        """
        path = self.path(key) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            message = f"Stage {key[:12]} in {str(self.root)!r} is not complete: {exc}"
            raise CacheError(message) from exc
        return data

    def is_complete(self, key: str) -> bool:
        """Return whether the stage ``key`` is committed with a manifest naming that key."""
        try:
            return self.manifest(key).get("key") == key
        except CacheError:
            return False

    def run(
        self,
        name: str,
        key: str,
        fn: Callable[[Path], Mapping[str, Any] | None],
        manifest_extra: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        input_keys: Iterable[str] = (),
        run: Run | None = None,
    ) -> Path:
        """Return the committed output directory of a stage, computing it if needed.

        Parameters
        ----------
        name : str
            The stage name, recorded in the manifest.
        key : str
            From :func:`stage_key`.
        fn : callable
            ``fn(tmp_dir)`` writes the stage outputs into the empty directory ``tmp_dir``;
            it may return a dict stored as ``"result"`` in the manifest (row counts, ...).
            It is not called when ``key`` is already complete.
        manifest_extra : mapping, optional
            More manifest fields (input fingerprints, task file, ...).
        params, input_keys : optional
            The stage's parameters and input keys, recorded in the manifest.
        run : Run, optional
            The run that uses this stage: the key is recorded in its manifest before
            computing (so :meth:`clean` keeps it) and marked reused or computed after.

        Returns
        -------
        pathlib.Path
            ``self.path(key)``, complete.

        Raises
        ------
        Exception
            Whatever ``fn`` raises; its temporary directory is removed and nothing is
            committed.
        """
        _check_key(key)
        if run is not None:
            run._record(name, key, "pending")
        if self.is_complete(key):
            return self._reused(name, key, run)
        # One writer per stage: another run computing this key finishes it first and this
        # one reuses it (the check is repeated once the lock is held).
        with self.lock(key):
            if self.is_complete(key):
                return self._reused(name, key, run)
            return self._compute(name, key, fn, manifest_extra, params, input_keys, run)

    def _reused(self, name: str, key: str, run: Run | None) -> Path:
        logger.info("stage %s [%s]: reused", name, key[:12])
        if run is not None:
            run._record(name, key, "reused", self.manifest(key).get("timings"))
        return self.path(key)

    def _compute(
        self,
        name: str,
        key: str,
        fn: Callable[[Path], Mapping[str, Any] | None],
        manifest_extra: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        input_keys: Iterable[str],
        run: Run | None,
    ) -> Path:
        final = self.path(key)
        self.clean_tmp()
        if final.exists():  # a directory without a valid manifest is never trusted
            logger.warning("stage %s [%s]: discarding an invalid directory", name, key[:12])
            self._discard(final)
        host, pid = socket.gethostname(), os.getpid()
        tmp = self.tmp_dir / owned_name(key)
        tmp.mkdir()
        started, t0, c0 = _now(), time.perf_counter(), time.process_time()
        pending = {**dict(manifest_extra or {}), "name": name, "key": key}
        # a marker of the stage's owner, read leniently (status); the stage dir it sits in is
        # discarded after a crash, so it is not flushed to disk
        atomic_write_json(tmp / _PENDING, pending | {"host": host, "pid": pid}, fsync=False)
        logger.info("stage %s [%s]: computing", name, key[:12])
        try:
            result = fn(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if run is not None:
                run._record(name, key, "failed")
            raise
        wall = time.perf_counter() - t0
        (tmp / _PENDING).unlink()
        n_files, n_bytes = _dir_size(tmp)
        manifest = {
            "name": name,
            "key": key,
            "params": jsonable(params or {}, "stage parameter params", strict=True),
            "input_keys": list(input_keys),
            "packages": package_versions(),
            "timings": {
                "started": started,
                "finished": _now(),
                "wall_s": round(wall, 6),
                "process_cpu_s": round(time.process_time() - c0, 6),
            },
            "host": {"name": host, "pid": pid, "platform": platform.platform()},
            "outputs": {"files": n_files, "bytes": n_bytes},
            "result": dict(result) if isinstance(result, Mapping) else None,
        }
        manifest.update(manifest_extra or {})
        atomic_write_json(tmp / MANIFEST, manifest)
        fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process committed the same key first: its output is equivalent.
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.is_complete(key):
                raise
            logger.info("stage %s [%s]: committed concurrently by another run", name, key[:12])
        fsync_dir(self.stages_dir)
        logger.info("stage %s [%s]: committed in %.2f s", name, key[:12], wall)
        if run is not None:
            run._record(name, key, "computed", manifest["timings"])
        return final

    def clean_tmp(self) -> list[Path]:
        """Remove temporary directories whose owner is gone; return what was removed.

        A directory is removed when its owner process (encoded in the name) was on this host
        and is no longer alive, or was on another host and the directory is older than a day.
        """
        removed = []
        for entry in sorted(self.tmp_dir.iterdir()):
            if entry.name.startswith(".trash-"):
                stale = True
            elif len(entry.name.split(".")) >= 4:
                stale = owner_gone(entry)
            else:
                continue
            if stale:
                logger.info("removing incomplete stage directory %s", entry)
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        return removed

    def status(self) -> list[dict]:
        """List the committed and in-progress stages.

        Returns
        -------
        list of dict
            One per stage directory, committed first then in progress, each with ``key``,
            ``name``, ``complete`` (bool), ``started``, ``finished``, ``wall_s``, ``bytes``,
            and for in-progress ones the owner ``host``/``pid``. Sorted by start time.
        """
        rows: list[dict] = []
        for entry in self.stages_dir.iterdir():
            if not entry.is_dir():
                continue
            complete = self.is_complete(entry.name)
            info = self.manifest(entry.name) if complete else {}
            timings = info.get("timings", {})
            rows.append(
                {
                    "key": entry.name,
                    "name": info.get("name"),
                    "recording": info.get("recording"),
                    "complete": complete,
                    "started": timings.get("started"),
                    "finished": timings.get("finished"),
                    "wall_s": timings.get("wall_s"),
                    "bytes": info.get("outputs", {}).get("bytes"),
                }
            )
        rows.sort(key=lambda r: r["started"] or "")
        for entry in sorted(self.tmp_dir.iterdir()):
            pending = entry / _PENDING
            if not pending.is_file():
                continue
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(pending.read_text(encoding="utf-8"))
                rows.append(
                    {
                        "key": info.get("key"),
                        "name": info.get("name"),
                        "recording": info.get("recording"),
                        "complete": False,
                        "started": None,
                        "finished": None,
                        "wall_s": None,
                        "bytes": None,
                        "host": info.get("host"),
                        "pid": info.get("pid"),
                    }
                )
        return rows

    def runs(self) -> list[dict]:
        """Return the run manifests, oldest first.

        A manifest still saying ``"running"`` whose process (``host``, ``pid``) is gone from
        this host is returned with ``status`` ``"interrupted"``: a run killed with ``kill -9``
        never wrote its end, and must not look as if it were still going.
        """
        out = []
        for path in sorted(self.runs_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                message = f"Run manifest {str(path)!r} is not valid JSON: {exc}"
                raise CacheError(message) from exc
            if data.get("status") == "running" and _process_gone(data):
                data["status"] = "interrupted"
            out.append(data)
        return out

    def referenced_keys(self) -> set[str]:
        """Return the stage keys listed by any run manifest."""
        return {s["key"] for run in self.runs() for s in run.get("stages", [])}

    def clean(
        self, referenced_keys: Iterable[str] | None = None, *, dry_run: bool = False
    ) -> list[str]:
        """Remove stage outputs that no run references, and stale temporary directories.

        Parameters
        ----------
        referenced_keys : iterable of str, optional
            Keys to keep; default: those listed by any run manifest (:meth:`referenced_keys`).
        dry_run : bool, default False
            Only report what would be removed.

        Returns
        -------
        list of str
            The removed (or removable) stage keys, sorted.
        """
        keep = set(self.referenced_keys() if referenced_keys is None else referenced_keys)
        doomed = sorted(p.name for p in self.stages_dir.iterdir() if p.name not in keep)
        if dry_run:
            return doomed
        for key in doomed:
            self._discard(self.stages_dir / key)
            logger.info("removed unreferenced stage %s", key[:12])
        self.clean_tmp()
        return doomed

    def _discard(self, path: Path) -> None:
        # Rename first: a half-deleted stage must never look committed.
        trash = self.tmp_dir / f".trash-{path.name}-{secrets.token_hex(4)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def start_run(self, *, t0: float | None = None, **info: Any) -> Iterator[Run]:
        """Record a run: yield a :class:`Run` whose manifest lists the stages it uses.

        Parameters
        ----------
        t0 : float, optional
            :func:`time.perf_counter` when the run began (before its cluster started), so
            that ``wall_s`` is the time the user waited; default: now.
        **info
            JSON-like fields stored in the run manifest (task, profile, command line, ...).

        Yields
        ------
        Run
            Pass it as ``run=`` to :meth:`run`. Its manifest ends with ``status`` set to
            ``"finished"`` or ``"failed"``.
        """
        run = Run(self, info, t0)
        try:
            yield run
        except BaseException as exc:
            run._finish("failed", f"{type(exc).__name__}: {exc}")
            raise
        run._finish("finished", None)


class Run:
    """The manifest of one run: ``<root>/runs/<timestamp>-<token>.json``.

    Created by :meth:`StageCache.start_run`; rewritten atomically whenever a stage starts or
    ends, so it is valid JSON at every moment.
    """

    def __init__(self, cache: StageCache, info: Mapping[str, Any], t0: float | None = None) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self.id = f"{stamp}-{secrets.token_hex(3)}"
        self.path = cache.runs_dir / f"{self.id}.json"
        self._t0 = time.perf_counter() if t0 is None else t0
        # Stages may run in parallel threads (one per recording); one writer at a time.
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {
            "id": self.id,
            "status": "running",
            "started": _now(),
            "finished": None,
            "wall_s": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "argv": list(sys.argv),
            "packages": package_versions(),
            "info": jsonable(dict(info), "run info", strict=True),
            "stages": [],
            "error": None,
        }
        atomic_write_json(self.path, self.data)

    @property
    def stages(self) -> list[dict]:
        """Return the stage records: ``name``, ``key``, ``state`` and ``timings``."""
        return self.data["stages"]

    def _record(
        self, name: str, key: str, state: str, timings: Mapping[str, Any] | None = None
    ) -> None:
        with self._lock:
            for entry in self.data["stages"]:
                if entry["key"] == key:
                    entry.update(state=state, timings=dict(timings or {}) or entry.get("timings"))
                    break
            else:
                self.data["stages"].append(
                    {"name": name, "key": key, "state": state, "timings": dict(timings or {})}
                )
            # not fsynced: the rename keeps the progress record valid JSON at every moment,
            # and the start and the end of the run are synced (an unchanged rerun records
            # two states for each of its stages, ~100 fsyncs for the EMG task's 51 recordings)
            atomic_write_json(self.path, self.data, fsync=False)

    def _finish(self, status: str, error: str | None) -> None:
        self.data.update(
            status=status,
            finished=_now(),
            wall_s=round(time.perf_counter() - self._t0, 6),
            error=error,
        )
        try:
            atomic_write_json(self.path, self.data)
        except OSError:
            # A full disk refuses the temporary file; rewriting the manifest in place
            # reuses its own blocks, so the failure is still recorded (a crash mid-write
            # would leave it unreadable, the lesser harm than a run that reads "running").
            text = json.dumps(jsonable(self.data, default=str), sort_keys=True)  # compact
            with contextlib.suppress(OSError), open(self.path, "r+", encoding="utf-8") as fh:
                fh.write(text + "\n")
                fh.truncate()
