"""Small I/O helpers, one copy each: atomic writes, canonical JSON, hashing, package versions.

Everything that writes a file the package later trusts goes through :func:`atomic_path`
(a temporary name in the same folder, fsync, rename, fsync of the folder), so a process
killed at any moment leaves either the old file or the new one, never half of one. A writer
of many derived files may skip the per-file flush (``fsync=False``: still renamed into place)
and make the whole set durable at once with :func:`fsync_paths` before it reports success.
Everything that hashes a JSON-like value goes through :func:`canonical_json`, so that equal
values always give equal keys.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import platform
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from pipeline.exceptions import CacheError

__all__ = [
    "RESULT_PACKAGES",
    "atomic_path",
    "atomic_write",
    "atomic_write_json",
    "canonical_json",
    "file_sha256",
    "fsync_dir",
    "fsync_paths",
    "jsonable",
    "package_versions",
    "sha256_json",
    "sha256_text",
]

#: The distributions whose versions shape results (recorded in manifests and bundles).
RESULT_PACKAGES: tuple[str, ...] = (
    "cohort-pipeline",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "dask",
    "distributed",
    "xarray",
    "zarr",
    "numba",
    "scikit-learn",
    "dask-ml",
    "skops",
)


def jsonable(
    value: Any,
    where: str = "value",
    *,
    strict: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> Any:
    """Return ``value`` as plain JSON types (dict with str keys, list, str, int, float, ...).

    Parameters
    ----------
    value : JSON-like
        Nested mappings, lists/tuples, sets (sorted), str, int, float, bool, None, paths,
        NumPy scalars and arrays, pandas missing values and pydantic models.
    where : str
        Name of the value, for error messages (``params.model.C``).
    strict : bool
        For hashing: refuse non-finite floats, missing values and non-str keys
        (:class:`~pipeline.exceptions.CacheError`). Otherwise non-finite floats and pandas
        missing values become ``None`` and keys are turned into str.
    default : callable, optional
        Applied to a value of any other type (``str``, say); without it such a value is
        refused (``CacheError`` when ``strict``, else ``TypeError``).

    Returns
    -------
    JSON-like
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        if strict:
            message = f"Cannot hash {where}: expected a finite number, found {value!r}."
            raise CacheError(message)
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                if strict:
                    message = f"Cannot hash {where}: keys must be str, found {k!r}."
                    raise CacheError(message)
                k = str(k.item() if hasattr(k, "item") else k)
            out[k] = jsonable(v, f"{where}.{k}", strict=strict, default=default)
        return out
    if isinstance(value, list | tuple):
        return [
            jsonable(v, f"{where}[{i}]", strict=strict, default=default)
            for i, v in enumerate(value)
        ]
    if isinstance(value, set | frozenset):
        return sorted(jsonable(v, f"{where}{{}}", strict=strict, default=default) for v in value)
    # NumPy scalars and arrays without importing NumPy here.
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return jsonable(value.tolist(), where, strict=strict, default=default)
    if hasattr(value, "model_dump"):  # pydantic models (task specs)
        return jsonable(value.model_dump(mode="json"), where, strict=strict, default=default)
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas missing values
        if strict:
            message = f"Cannot hash {where}: expected a value, found a missing value {value!r}."
            raise CacheError(message)
        return None
    if default is not None:
        return jsonable(default(value), where, strict=strict)
    message = (
        f"{where}: expected JSON-like values (str, int, float, bool, None, list, dict, path, "
        f"NumPy value), found {type(value).__name__} {value!r}."
    )
    if strict:
        raise CacheError(f"Cannot hash {message}")
    raise TypeError(message)


def canonical_json(value: Any, where: str = "value", *, strict: bool = True) -> str:
    """Return the canonical JSON text of ``value`` (sorted keys, no spaces, UTF-8).

    Parameters
    ----------
    value : JSON-like
        As :func:`jsonable` with ``strict=True``.
    where : str
        Name of the value, for error messages.
    strict : bool
        Refuse non-finite floats and unknown types (for cache keys); with ``False`` they
        become ``null`` and their ``str`` (for metadata that may hold a NaN metric).

    Returns
    -------
    str
        Equal values give equal text; ``1`` and ``1.0`` differ (int vs float).
    """
    plain = jsonable(value, where, strict=strict)
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    """Return the hex SHA-256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(value: Any, where: str = "value", *, strict: bool = True) -> str:
    """Return the hex SHA-256 of :func:`canonical_json` of ``value``."""
    return sha256_text(canonical_json(value, where, strict=strict))


def file_sha256(path: str | os.PathLike[str], block_size: int = 1 << 22) -> str:
    """Return the hex SHA-256 of a file's bytes, read in blocks of ``block_size``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block_size):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_paths(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Flush files to disk, then each of their folders once (their renames).

    The durability step of a set of files written with ``atomic_path(..., fsync=False)``:
    flushing them together, after the last one is written, keeps the writers from waiting
    for a journal commit per file and per folder (on ext4 a commit also writes out other
    processes' pending data, so its cost grows with whatever else the disk is doing).

    Parameters
    ----------
    paths : iterable of path
        Files (folders are accepted too, and flushed as such).

    Raises
    ------
    OSError
        If a file cannot be opened or flushed (a folder that cannot be is skipped, as in
        :func:`fsync_dir`).
    """
    folders: dict[str, None] = {}
    for path in paths:
        _fsync_file(path)
        folders[os.path.dirname(os.path.abspath(path))] = None
    for folder in folders:
        fsync_dir(folder)


def _fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush one file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The caller writes the temporary file (with any library: pyarrow, skops, ...). On a
    clean exit it is fsynced and renamed onto ``path`` (replacing it), then the folder is
    fsynced; on an exception it is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : path
        The final file. Its folder is created if needed.
    fsync : bool
        Flush the file and the folder to disk. Off for scratch files, and for a set of
        derived files that its writer flushes together with :func:`fsync_paths` before
        it reports them written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[IO[bytes]], Any],
    *,
    fsync: bool = True,
) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : path
    data : bytes, str or callable
        The content (str is encoded as UTF-8), or a function that writes it to the open
        binary file it is given.
    fsync : bool
        Flush to disk before the rename.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as fh:
        if callable(data):
            data(fh)
        else:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1, fsync: bool = True
) -> Path:
    """Write ``obj`` as JSON (sorted keys; :func:`jsonable`, other types as str) atomically."""
    text = json.dumps(jsonable(obj, default=str), indent=indent, sort_keys=True, ensure_ascii=False)
    return atomic_write(path, text + "\n", fsync=fsync)


def package_versions(names: Iterable[str] = RESULT_PACKAGES) -> dict[str, str]:
    """Return the versions of Python and of the installed distributions ``names``.

    A distribution that is not installed is reported as ``"not installed"``.
    """
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


#: The errors of an output that cannot be written (disk full, quota, read-only): the
#: output's fault, never the input's, and reported as one line (``cohort``'s exit code 2).
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


#: A temporary name from another host cannot be checked for a live owner: it is taken as
#: abandoned only once this old.
FOREIGN_OWNER_MAX_AGE_S = 24 * 3600.0


def pid_alive(pid: int) -> bool:
    """Return whether process ``pid`` of this host is alive (signal 0, nothing is sent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def owned_name(stem: str) -> str:
    """Return ``<stem>.<host>.<pid>.<token>``: a temporary name that says who writes it.

    :func:`owner_gone` reads the owner back, so that a leftover is removed only once the
    process that made it is gone, never while another run is still writing it.
    """
    return f"{stem}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"


def owner_gone(path: str | os.PathLike[str], max_age_s: float = FOREIGN_OWNER_MAX_AGE_S) -> bool:
    """Return whether the process named in ``path`` (an :func:`owned_name`) is gone.

    The owner is on this host: whether its pid is alive. On another host: whether the
    entry is older than ``max_age_s``. A name without an owner (written before owners were
    recorded) counts as gone.
    """
    path = Path(path)
    head, _, rest = path.name.rpartition(".")  # rest: the token
    head, _, pid = head.rpartition(".")
    if not rest or not pid.isdigit():
        return True
    if head.endswith("." + socket.gethostname()):
        return not pid_alive(int(pid))
    try:
        return time.time() - path.lstat().st_mtime > max_age_s
    except FileNotFoundError:
        return True
