"""Shared helpers of the delimited-text readers (``uci-emg``, ``csv``).

The fast path parses with :mod:`pyarrow.csv`, whose errors do not say on which line the
problem is. When it fails, :func:`locate_error` rescans the file line by line in Python and
raises an :class:`InputError` naming the line, the column, what was expected and what was
found. It runs only on the error path, so its speed does not matter.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.exceptions import InputError

__all__ = ["convert_options", "locate_error", "read_header"]

_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf|nan)", re.I)
_INT = re.compile(r"[+-]?\d+")


def read_header(path: Path, delimiter: str) -> list[str]:
    """Return the column names of the first line of ``path``.

    Raises
    ------
    InputError
        If the file is empty (no bytes, or only white space).
    """
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        first = f.readline()
        if not first.strip():
            rest = f.read(1 << 16)
            if not (first + rest).strip():
                msg = f"{path}: empty file: expected a header line and data rows, found nothing"
                raise InputError(msg, path=str(path))
            msg = f"{path}: line 1 is blank: expected a header line with the column names"
            raise InputError(msg, path=str(path))
    return [c.strip() for c in next(csv.reader([first.rstrip("\r\n")], delimiter=delimiter))]


def convert_options(
    column_types: Mapping[str, pa.DataType], include: Sequence[str] | None = None
) -> pacsv.ConvertOptions:
    """Return strict pyarrow conversion options: no null values, declared types only."""
    return pacsv.ConvertOptions(
        column_types=dict(column_types),
        include_columns=list(include) if include is not None else None,
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def locate_error(
    path: Path,
    delimiter: str,
    header: Sequence[str],
    kinds: Mapping[str, str],
    cause: BaseException | None = None,
) -> InputError:
    """Scan ``path`` and return an :class:`InputError` describing its first bad line.

    Parameters
    ----------
    path : Path
        The delimited text file; line 1 is the header.
    delimiter : str
        Field separator.
    header : sequence of str
        The column names found on line 1 (their number is the expected field count).
    kinds : mapping of str to {"int", "float"}
        Columns whose values must parse as integers or floats; others are not checked.
    cause : exception, optional
        The pyarrow error that triggered the scan, quoted if no bad line is found.

    Returns
    -------
    InputError
        To be raised by the caller (``raise locate_error(...) from exc``).
    """
    n_fields = len(header)
    checks = [
        (i, name, _INT if kinds[name] == "int" else _FLOAT)
        for i, name in enumerate(header)
        if name in kinds
    ]
    with open(path, "rb") as f:
        raw_lines = iter(f)
        next(raw_lines, None)
        for lineno, raw in enumerate(raw_lines, start=2):
            complete = raw.endswith(b"\n")
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            fields = next(csv.reader([text], delimiter=delimiter)) if text else []
            problem = None
            if len(fields) != n_fields:
                problem = (
                    f"line {lineno}: expected {n_fields} fields ({delimiter!r}-separated: "
                    f"{', '.join(header)}), found {len(fields)}: {text[:80]!r}"
                )
            else:
                for i, name, regex in checks:
                    if not regex.fullmatch(fields[i].strip()):
                        kind = "an integer" if regex is _INT else "a number"
                        problem = (
                            f"line {lineno}, column {name!r}: expected {kind}, found {fields[i]!r}"
                        )
                        break
            if problem is not None:
                if not complete:
                    problem = (
                        f"truncated last line {lineno} (the file does not end with a newline; "
                        f"was it cut short?): {problem}"
                    )
                return InputError(f"{path}: {problem}", path=str(path))
    detail = f": {cause}" if cause is not None else ""
    return InputError(f"{path}: cannot parse as delimited text{detail}", path=str(path))
