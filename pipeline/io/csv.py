"""Reader ``csv``: generic delimited text with a column mapping.

Line 1 holds the column names. Options:

- ``delimiter`` (default ``","``);
- ``time_column`` (name) and/or ``sampling_rate`` (Hz), at least one. With a time column the
  steps must be uniform within ``time_tolerance`` (relative to the step, default 0.01) and
  ``time_unit`` (``"s"``, ``"ms"`` or ``"us"``, default ``"s"``) gives its unit; the rate is
  then ``(n - 1) / (t_last - t_first)`` unless ``sampling_rate`` is also given;
- ``signal_columns`` (default: every column but the time and label columns);
- ``label_column``: per-sample class, integer codes (named by ``label_names``, a
  ``{code: name}`` dict) or strings (coded 0, 1, ... in sorted order of the names);
- ``units``, ``channel_types``: one string, a list (one per signal column) or a
  ``{column: value}`` dict (defaults ``"a.u."`` and ``modality`` or ``"misc"``); a voltage
  unit (``mV``, ``uV``...) is converted to volts (:mod:`pipeline.io._units`) and kept as the
  channel's ``source_unit``;
  ``modality`` (default: the most common channel type);
- ``pattern``: a regex with named groups subject/session/run matched against the file stem
  (default: subject = the stem without non-alphanumeric characters);
- ``glob``: which files of a folder to take (default ``*.csv``, ``*.tsv`` and ``*.txt``).

Streaming
---------
The file is parsed with :func:`pyarrow.csv.open_csv` in blocks of ``block_size`` bytes
(default 16 MiB; multiplied by 4 until it holds the longest line).
``read`` makes one validating pass (row count, types, time steps, labels); ``blocks()``
streams a second pass, except for files smaller than ``cache_bytes`` (default 64 MB), whose
float32 blocks are kept from the first pass.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.exceptions import InputError, SpecError
from pipeline.io._options import (
    check_options,
    compile_pattern,
    list_files,
    per_channel,
    source_files,
)
from pipeline.io._text import convert_options, locate_error, read_header
from pipeline.io._units import store_units
from pipeline.io.base import RecordingSource, SourceFile, register_reader

__all__ = ["CsvReader"]

logger = logging.getLogger(__name__)

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
DEFAULT_GLOBS = ("*.csv", "*.tsv", "*.txt")


def _spec(options: dict[str, Any]) -> dict[str, Any]:
    """Validate the options once; return them with defaults filled in."""
    check_options("csv", options)
    o = {
        "delimiter": ",",
        "time_unit": "s",
        "time_tolerance": 0.01,
        "block_size": 16 << 20,
        "cache_bytes": 64 << 20,
        **{k: v for k, v in options.items() if v is not None},
    }
    if "time_column" not in o and "sampling_rate" not in o:
        msg = (
            "reader 'csv': give option 'time_column' (name of the time column) or "
            "'sampling_rate' (Hz), e.g. sampling_rate=1000"
        )
        raise SpecError(msg)
    if "sampling_rate" in o and not float(o["sampling_rate"]) > 0:
        msg = f"reader 'csv': option 'sampling_rate' must be > 0 Hz, found {o['sampling_rate']!r}"
        raise SpecError(msg)
    if o["time_unit"] not in TIME_UNITS:
        msg = (
            f"reader 'csv': option 'time_unit' must be one of {list(TIME_UNITS)}, "
            f"found {o['time_unit']!r}"
        )
        raise SpecError(msg)
    if not isinstance(o["delimiter"], str) or len(o["delimiter"]) != 1:
        msg = f"reader 'csv': option 'delimiter' must be one character, found {o['delimiter']!r}"
        raise SpecError(msg)
    if isinstance(o.get("signal_columns"), str):
        o["signal_columns"] = [o["signal_columns"]]
    return o


def _label_codes(names: list[str], label_names: dict | None) -> tuple[np.ndarray, dict[int, str]]:
    """Return (code per distinct name, {code: name}) for the label strings found."""
    stripped = [n.strip() for n in names]
    if stripped and all(s.lstrip("+-").isdigit() for s in stripped):
        codes = np.array([int(s) for s in stripped], dtype=np.int64)
        given = {int(k): str(v) for k, v in (label_names or {}).items()}
        return codes, {int(c): given.get(int(c), str(int(c))) for c in sorted(set(codes.tolist()))}
    order = sorted(set(stripped))
    index = {n: i for i, n in enumerate(order)}
    return np.array([index[s] for s in stripped], dtype=np.int64), dict(enumerate(order))


@dataclass
class _Scan:
    """State of the validating pass over one file."""

    step: float | None = None
    n: int = 0
    first_t: float | None = None
    last_t: float | None = None
    vocabulary: dict[str, int] = field(default_factory=dict)
    label_parts: list[np.ndarray] = field(default_factory=list)
    cached: list[np.ndarray] = field(default_factory=list)


def _check_time(sc: _Scan, t: np.ndarray, tol: float, path: Path, column: str) -> None:
    """Check the time steps of one batch (and across the previous batch); update ``sc``."""
    prev = np.concatenate([[sc.last_t], t]) if sc.last_t is not None else t
    if sc.first_t is None:
        sc.first_t = float(t[0])
    d = np.diff(prev)
    if sc.step is None and d.size:
        sc.step = float(np.median(d))  # robust to one bad early step
    if d.size:
        bad = np.flatnonzero(~(np.abs(d - sc.step) <= tol * abs(sc.step)) | (d <= 0))
        if bad.size:
            i = int(bad[0])
            row = sc.n + i + (0 if sc.last_t is not None else 1)
            msg = (
                f"{path}: line {row + 2}, column {column!r}: expected uniform time steps of "
                f"{sc.step!r} (tolerance {tol:g} of a step), found a step of {float(d[i])!r} "
                f"(from {float(prev[i])!r} to {float(prev[i + 1])!r})"
            )
            raise InputError(msg, path=str(path))
    sc.last_t = float(t[-1])


class _BlockTooSmall(Exception):
    """A line is longer than pyarrow's block: the pass is retried with larger blocks."""


@register_reader("csv")
class CsvReader:
    """Read generic delimited text files (see the module docstring for the options)."""

    name = "csv"
    version = "2.0"  # 2.0: voltages in volts (1.0 kept the declared unit)

    def discover(self, source: Path, **options: Any) -> list[SourceFile]:
        """List the delimited files of ``source`` (a file or a folder, recursively).

        Returns
        -------
        list of SourceFile
            Sorted by path, identifiers from ``pattern`` (default: subject = file stem).
        """
        o = _spec(options)
        pattern = compile_pattern(o.get("pattern"), self.name)
        globs = [o["glob"]] if "glob" in o else list(DEFAULT_GLOBS)
        paths = list_files(Path(source), globs, self.name)
        if not paths:
            msg = f"{source}: no files matching {o.get('glob', list(DEFAULT_GLOBS))!r}"
            raise InputError(msg, path=str(source))
        return source_files(paths, pattern)

    def read(self, file: SourceFile, **options: Any) -> RecordingSource:
        """Validate one file in a streaming pass and return it with a block iterator.

        Raises
        ------
        InputError
            Empty file, missing mapped column, wrong field count, non-numeric value,
            non-uniform or non-increasing time step, naming the line and the column.
        """
        o = _spec(options)
        path = Path(file.path)
        delimiter = o["delimiter"]
        header = read_header(path, delimiter)
        time_col, label_col = o.get("time_column"), o.get("label_column")
        mapped = [c for c in (time_col, label_col) if c is not None]
        signal_cols = list(o.get("signal_columns") or [c for c in header if c not in mapped])
        missing = [c for c in [*mapped, *signal_cols] if c not in header]
        if missing:
            msg = (
                f"{path}: line 1: mapped column(s) {missing!r} not found; found columns {header!r}"
            )
            raise InputError(msg, path=str(path))
        if not signal_cols:
            msg = f"{path}: no signal columns: found only {header!r}"
            raise InputError(msg, path=str(path))
        duplicates = sorted(c for c, n in Counter(header).items() if n > 1)
        if duplicates:
            msg = f"{path}: line 1: duplicate column names {duplicates!r}"
            raise InputError(msg, path=str(path))
        types = {c: pa.float64() for c in signal_cols}
        kinds = {c: "float" for c in signal_cols}
        if time_col is not None:
            types[time_col], kinds[time_col] = pa.float64(), "float"
        if label_col is not None:
            types[label_col] = pa.string()

        def batches(block_size: int) -> Iterator[pa.RecordBatch]:
            try:
                reader = pacsv.open_csv(
                    path,
                    read_options=pacsv.ReadOptions(use_threads=False, block_size=block_size),
                    parse_options=pacsv.ParseOptions(delimiter=delimiter, ignore_empty_lines=False),
                    convert_options=convert_options(types, include=list(types)),
                )
                for batch in reader:
                    if batch.num_rows:
                        yield batch
            except pa.ArrowInvalid as exc:
                if "straddl" in str(exc):  # a line longer than the block: retry with larger
                    raise _BlockTooSmall from exc
                raise locate_error(path, delimiter, header, kinds, cause=exc) from exc

        source_units = per_channel(o.get("units"), signal_cols, "units", self.name, "a.u.")
        units, factors = store_units(source_units)

        def to_block(batch: pa.RecordBatch) -> np.ndarray:
            out = np.empty((batch.num_rows, len(signal_cols)), dtype=np.float32)
            for j, c in enumerate(signal_cols):
                # to volts in float64, then the one cast to float32
                out[:, j] = batch.column(c).to_numpy() * factors[j]
            return out

        cache = path.stat().st_size <= int(o["cache_bytes"])
        tol = float(o["time_tolerance"])
        nominal_step = None
        if "sampling_rate" in o and time_col is not None:
            nominal_step = 1.0 / float(o["sampling_rate"]) / TIME_UNITS[o["time_unit"]]

        def scan(block_size: int) -> _Scan:
            """Validate every batch; collect row count, time range, labels (and blocks)."""
            sc = _Scan(step=nominal_step)
            for batch in batches(block_size):
                if time_col is not None:
                    _check_time(sc, batch.column(time_col).to_numpy(), tol, path, time_col)
                if label_col is not None:
                    values = batch.column(label_col).to_numpy(zero_copy_only=False)
                    uniq, inverse = np.unique(values, return_inverse=True)
                    voc = sc.vocabulary
                    lut = np.array([voc.setdefault(str(u), len(voc)) for u in uniq])
                    sc.label_parts.append(lut[inverse])
                if cache:  # (pyarrow has already validated every value of the batch)
                    sc.cached.append(to_block(batch))
                sc.n += batch.num_rows
            return sc

        block_size = max(int(o["block_size"]), 1)
        while True:
            try:
                sc = scan(block_size)
                break
            except _BlockTooSmall:
                if block_size > 1 << 30:
                    msg = f"{path}: a line is longer than 1 GiB: expected delimited text rows"
                    raise InputError(msg, path=str(path)) from None
                block_size *= 4
        n, first_t, last_t = sc.n, sc.first_t, sc.last_t
        vocabulary, label_parts, cached = sc.vocabulary, sc.label_parts, sc.cached
        if n == 0:
            msg = f"{path}: no data rows after the header line: expected at least one row"
            raise InputError(msg, path=str(path))

        attrs: dict[str, Any] = {"delimiter": delimiter, "signal_columns": signal_cols}
        if "sampling_rate" in o:
            rate = float(o["sampling_rate"])
        elif n < 2:
            msg = f"{path}: one data row: need two rows to derive the rate from {time_col!r}"
            raise InputError(msg, path=str(path))
        else:
            rate = (n - 1) / ((last_t - first_t) * TIME_UNITS[o["time_unit"]])
            if math.isclose(rate, round(rate), rel_tol=1e-6):
                rate = float(round(rate))
        if time_col is not None:
            attrs["time_column"] = time_col
            attrs["time_offset_s"] = first_t * TIME_UNITS[o["time_unit"]]

        labels = None
        label_names: dict[int, str] = {}
        if label_col is not None:
            names = sorted(vocabulary, key=vocabulary.__getitem__)
            codes, label_names = _label_codes(names, o.get("label_names"))
            raw = np.concatenate(label_parts)
            if codes.size and (codes.min() < -(2**15) or codes.max() >= 2**15):
                msg = (
                    f"{path}: column {label_col!r}: integer labels must fit int16, "
                    f"found {codes.min()}..{codes.max()}"
                )
                raise InputError(msg, path=str(path))
            labels = codes[raw].astype(np.int16)
            attrs["label_column"] = label_col

        channel_types = per_channel(
            o.get("channel_types"),
            signal_cols,
            "channel_types",
            self.name,
            o.get("modality", "misc"),
        )
        counts = Counter(channel_types)
        modality = o.get("modality") or max(
            counts, key=lambda t: (counts[t], -channel_types.index(t))
        )

        def blocks() -> Iterator[np.ndarray]:
            if cache:
                yield from cached
            else:
                for batch in batches(block_size):  # the block size the first pass settled on
                    yield to_block(batch)

        return RecordingSource(
            n_samples=n,
            sampling_rate=rate,
            channels=list(signal_cols),
            units=units,
            channel_types=channel_types,
            modality=modality,
            blocks=blocks,
            labels=labels,
            label_names=label_names,
            label=None,
            events=None,
            start_time=None,
            attrs=attrs,
            channel_attrs={"source_unit": source_units},
        )
