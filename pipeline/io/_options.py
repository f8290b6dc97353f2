"""Option checking and file-name entity parsing shared by the readers.

Private: the readers validate their options once, at their public boundary, with
:func:`check_options` (against the reader's model in :mod:`pipeline.spec.io`), and derive
subject/session/run from a file name with :func:`match_entities`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.exceptions import InputError, SpecError
from pipeline.io.base import SourceFile
from pipeline.spec.io import parse_reader_options

ENTITY_GROUPS = ("subject", "session", "run")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")


def check_options(reader: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`SpecError` unless ``options`` are valid options of ``reader``.

    Validated through the one schema layer, :func:`pipeline.spec.io.parse_reader_options`:
    the message names the option, what was expected and what was found, and for an unknown
    option the closest valid one (``rat`` -> ``rate``).

    Parameters
    ----------
    reader : str
        Reader name (a key of :data:`pipeline.spec.io.READER_OPTIONS`).
    options : mapping
        The keyword options given to ``discover``/``read``.
    """
    parse_reader_options(reader, options)


def compile_pattern(pattern: str | re.Pattern[str] | None, reader: str) -> re.Pattern[str] | None:
    """Compile a file-name pattern and check that it has a ``subject`` group.

    Raises
    ------
    SpecError
        If the regex does not compile, has no ``subject`` group, or has a group other than
        subject/session/run plus free extra groups (extra groups are allowed, e.g. for labels).
    """
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    except re.error as exc:
        msg = f"reader {reader!r}: option 'pattern' {pattern!r} is not a valid regex: {exc}"
        raise SpecError(msg) from exc
    if "subject" not in compiled.groupindex:
        msg = (
            f"reader {reader!r}: option 'pattern' {compiled.pattern!r} has no named group "
            "'subject'; expected e.g. r'Subject(?P<subject>\\d+)_(?P<run>\\d)'"
        )
        raise SpecError(msg)
    return compiled


def sanitize_entity(value: str) -> str:
    """Return ``value`` with every non-alphanumeric character removed (BIDS labels)."""
    return _NOT_ALNUM.sub("", value)


def match_entities(path: Path, pattern: re.Pattern[str] | None) -> dict[str, str | None]:
    """Return subject/session/run (and any other named group) parsed from ``path.stem``.

    Without a pattern the subject is the file stem with non-alphanumeric characters removed
    (BIDS entity labels are alphanumeric), session and run are None. With a pattern the
    whole stem must match (``re.fullmatch``).

    Raises
    ------
    InputError
        If the stem does not match the pattern, or an entity group captured a value that is
        not alphanumeric or empty.
    """
    if pattern is None:
        subject = sanitize_entity(path.stem)
        if not subject:
            msg = f"{path}: cannot derive a subject id from file stem {path.stem!r}"
            raise InputError(msg, path=str(path))
        return {"subject": subject, "session": None, "run": None}
    m = pattern.fullmatch(path.stem)
    if m is None:
        msg = (
            f"{path}: file name stem {path.stem!r} does not match pattern "
            f"{pattern.pattern!r} (the whole stem must match)"
        )
        raise InputError(msg, path=str(path))
    groups: dict[str, str | None] = {"session": None, "run": None}
    groups.update(m.groupdict())
    for name in ENTITY_GROUPS:
        value = groups.get(name)
        if value is not None and not re.fullmatch(r"[0-9A-Za-z]+", value):
            msg = (
                f"{path}: group {name!r} of pattern {pattern.pattern!r} captured {value!r}; "
                "expected a non-empty alphanumeric value"
            )
            raise InputError(msg, path=str(path))
    return groups


def check_unique_ids(files: Iterable[Any]) -> None:
    """Raise :class:`InputError` if two source files map to the same recording id."""
    seen: dict[str, Path] = {}
    for f in files:
        rid = f.recording_id
        if rid in seen:
            msg = (
                f"files {str(seen[rid])!r} and {str(f.path)!r} both map to recording {rid!r}; "
                "give a 'pattern' with subject/session/run groups that tell them apart"
            )
            raise InputError(msg, path=str(f.path))
        seen[rid] = f.path


def source_files(paths: Iterable[Path], pattern: re.Pattern[str] | None) -> list[SourceFile]:
    """Return one :class:`SourceFile` per path, its entities parsed from the file name.

    Raises
    ------
    InputError
        A name the pattern does not match (:func:`match_entities`), or two files that map to
        one recording id (:func:`check_unique_ids`).
    """
    files = []
    for path in paths:
        g = match_entities(path, pattern)
        files.append(
            SourceFile(path=path, subject=str(g["subject"]), session=g["session"], run=g["run"])
        )
    check_unique_ids(files)
    return files


def snake_case(name: str) -> str:
    """Return ``name`` in snake_case (``"Recording year"`` -> ``"recording_year"``)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    s = re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_").lower()
    return s or "column"


def per_channel(
    value: Any, channels: list[str], option: str, reader: str, default: str
) -> list[str]:
    """Expand a per-channel option given as one string, a list or a ``{channel: value}`` dict.

    Raises
    ------
    SpecError
        If a list has the wrong length or a dict names an unknown channel.
    """
    if value is None:
        return [default] * len(channels)
    if isinstance(value, str):
        return [value] * len(channels)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(channels))
        if unknown:
            msg = (
                f"reader {reader!r}: option {option!r} names unknown channel(s) {unknown!r}; "
                f"channels are {channels!r}"
            )
            raise SpecError(msg)
        return [str(value.get(c, default)) for c in channels]
    values = [str(v) for v in value]
    if len(values) != len(channels):
        msg = (
            f"reader {reader!r}: option {option!r} has {len(values)} values, expected one per "
            f"channel ({len(channels)}: {channels!r})"
        )
        raise SpecError(msg)
    return values


def list_files(source: Path, patterns: Iterable[str], reader: str) -> list[Path]:
    """Return the files of ``source`` whose name matches one of ``patterns``, sorted.

    A folder is searched recursively and symlinked folders and files are followed, since
    HPC users often lay a data root out as links to subject folders elsewhere; a folder
    reached twice through links is searched once.

    Parameters
    ----------
    source : Path
        A file (returned as is, whatever its suffix) or a folder.
    patterns : iterable of str
        Glob patterns of file names (``"*.edf"``), matched case-insensitively.
    reader : str
        Reader name, for the messages.

    Returns
    -------
    list of Path
        Possibly empty: the caller says what it expected to find.

    Raises
    ------
    InputError
        If ``source`` does not exist, a folder under it cannot be listed (named, with the
        reason), or a matching file cannot be opened for reading (an unreadable file or a
        broken link is reported, never dropped).
    """
    source = Path(source)
    wanted = [p.lower() for p in patterns]
    if source.is_file():
        paths = [source]
    elif source.is_dir():
        errors: list[OSError] = []
        seen: set[str] = set()
        paths = []
        for root, dirs, names in os.walk(source, onerror=errors.append, followlinks=True):
            real = os.path.realpath(root)
            if real in seen:  # a link back up the tree, or two links to one folder
                dirs[:] = []
                continue
            seen.add(real)
            dirs.sort()
            paths.extend(
                Path(root) / n
                for n in names
                if any(fnmatch.fnmatchcase(n.lower(), w) for w in wanted)
            )
        if errors:
            listed = "; ".join(f"{e.filename}: {e.strerror}" for e in errors)
            msg = (
                f"{source}: reader {reader!r} cannot list {len(errors)} folder(s) under it "
                f"({listed}); expected readable folders: fix their permissions"
            )
            raise InputError(msg, path=str(errors[0].filename))
        paths.sort()
    else:
        msg = f"{source}: no such file or folder"
        raise InputError(msg, path=str(source))
    unreadable = [p for p in paths if not os.access(p, os.R_OK) or not p.is_file()]
    if unreadable:
        msg = (
            f"{unreadable[0]}: cannot be read ({len(unreadable)} of {len(paths)} matching "
            f"file(s) are unreadable or broken links, e.g. {[str(p) for p in unreadable[:3]]}); "
            "expected readable files: fix their permissions or links"
        )
        raise InputError(msg, path=str(unreadable[0]))
    return paths
