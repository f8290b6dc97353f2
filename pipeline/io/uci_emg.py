"""Reader ``uci-emg``: the UCI "EMG data for gestures" archive (MYO armband, 8 channels).

Layout: ``<subject>/<series>_raw_data_<HH-MM>_<DD.MM.YY>.txt``; each file is a header line
``time channel1 ... channel8 class`` then tab-separated rows. ``time`` is in integer
milliseconds and irregular (about 3% of the steps are longer than 1 ms).

Resampling
----------
The signal is stored on a uniform 1 kHz grid from the first to the last timestamp of the
file: grid sample ``i`` is at ``t0 + i`` ms, where ``t0`` is the first timestamp (kept in
``attrs["time_offset_ms"]``). Each channel is **linearly interpolated** between the two
original samples that surround a grid point, so at every original timestamp the stored value
equals the file's value (cast to float32). The class is **held from the previous original
sample** (a gap never invents a class change). The attributes record the method, the number
of gaps (steps longer than 1 ms), the longest step, the number of original samples and the
number of interpolated grid samples.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.exceptions import InputError, SpecError
from pipeline.io._options import check_options, check_unique_ids, list_files
from pipeline.io._text import convert_options, locate_error, read_header
from pipeline.io.base import RecordingSource, SourceFile, register_reader

__all__ = ["COLUMNS", "LABEL_NAMES", "UciEmgReader"]

logger = logging.getLogger(__name__)

CHANNELS = [f"channel{i}" for i in range(1, 9)]
MAX_GAP_MS = 1000.0
COLUMNS = ["time", *CHANNELS, "class"]
LABEL_NAMES = {
    0: "unmarked",
    1: "rest",
    2: "fist",
    3: "wrist_flexion",
    4: "wrist_extension",
    5: "radial_deviation",
    6: "ulnar_deviation",
    7: "extended_palm",
}
RESAMPLING = (
    "linear interpolation onto a uniform 1 kHz grid from the first to the last timestamp "
    "(original samples kept exactly), class held from previous sample"
)
FILE_NAME = re.compile(
    r"(?P<series>\d+)_raw_data_(?P<hour>\d{2})-(?P<minute>\d{2})_"
    r"(?P<day>\d{2})\.(?P<month>\d{2})\.(?P<year>\d{2})\.txt"
)
LAYOUT = "<subject>/<series>_raw_data_<HH-MM>_<DD.MM.YY>.txt"
_COLUMN_TYPES = {"time": pa.int64(), "class": pa.int64(), **{c: pa.float64() for c in CHANNELS}}
_KINDS = {"time": "int", "class": "int", **{c: "float" for c in CHANNELS}}
BLOCK_SAMPLES = 1 << 20


def parse_name(path: Path) -> SourceFile:
    """Return the :class:`SourceFile` of one archive file, identifiers parsed from its path.

    Raises
    ------
    InputError
        If the file name or its folder does not follow the archive layout.
    """
    m = FILE_NAME.fullmatch(path.name)
    subject = path.parent.name
    if m is None or not subject.isdigit():
        msg = (
            f"{path}: file name does not match the uci-emg layout {LAYOUT} "
            f"(found folder {subject!r}, file {path.name!r})"
        )
        raise InputError(msg, path=str(path))
    try:
        start = datetime(
            2000 + int(m["year"]),
            int(m["month"]),
            int(m["day"]),
            int(m["hour"]),
            int(m["minute"]),
        )
    except ValueError as exc:
        msg = f"{path}: the date/time in the file name is not valid: {exc}"
        raise InputError(msg, path=str(path)) from exc
    return SourceFile(
        path=path,
        subject=subject,
        session=None,
        run=str(int(m["series"])),
        extra={"start_time": start.isoformat()},
    )


def resample_uniform(
    time_ms: np.ndarray, values: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Resample irregular 1 ms-based samples onto the uniform 1 kHz grid.

    Parameters
    ----------
    time_ms : ndarray of shape (n,)
        Strictly increasing integer timestamps (ms).
    values : ndarray of shape (n, n_channels)
        Signal at those timestamps.
    classes : ndarray of shape (n,)
        Class at those timestamps.

    Returns
    -------
    signal : ndarray of shape (time_ms[-1] - time_ms[0] + 1, n_channels), float32
        Linear interpolation between the surrounding original samples.
    labels : ndarray of shape (time_ms[-1] - time_ms[0] + 1,), int16
        Class of the last original sample at or before each grid point.

    Notes
    -----
    The reader uses :func:`pipeline.io._fastparse.resample_rows`, a Numba kernel that the
    tests check is bit-identical to this NumPy reference.
    """
    steps = np.diff(time_ms)
    # Grid point g lies in [t_k, t_k+1): sample k repeated over its step, plus the last one.
    prev = np.repeat(np.arange(time_ms.size), np.append(steps, 1))
    signal = values.astype(np.float32)[prev]
    gap = np.flatnonzero(steps > 1)
    if gap.size:
        # Only grid points inside gaps need interpolating (about 3% of them); at original
        # timestamps the stored value is the file's value exactly.
        rel = time_ms - time_ms[0]
        rows = np.flatnonzero(np.arange(prev.size) != rel[prev])
        k = prev[rows]
        weight = (rows - rel[k]) / steps[k]
        v0 = values[k]
        signal[rows] = (v0 + weight[:, None] * (values[k + 1] - v0)).astype(np.float32)
    return signal, classes[prev].astype(np.int16)


def parse_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse one archive file and validate it.

    The rows are parsed by a Numba kernel (:mod:`pipeline.io._fastparse`, exact and about
    twice as fast as ``pandas.read_csv``); a file it does not accept (CRLF line ends, an
    unusual number format, a bad line) goes through :func:`pyarrow.csv.read_csv`, which
    parses the general case, or :func:`pipeline.io._text.locate_error`, which names the bad
    line and column.

    Returns
    -------
    time_ms : ndarray of shape (n,), int64
    values : ndarray of shape (n, 8), float64
    classes : ndarray of shape (n,), int64

    Raises
    ------
    InputError
        Empty file, wrong header, wrong field count, non-numeric value, truncated last line,
        non-increasing timestamp or unknown class, naming the line and the column.
    """
    header = read_header(path, "\t")
    if header != COLUMNS:
        msg = (
            f"{path}: line 1: expected the header columns {COLUMNS!r} (tab-separated), "
            f"found {header!r}"
        )
        raise InputError(msg, path=str(path))
    # numba: imported to parse a file, not to discover the source's files
    from pipeline.io._fastparse import parse_rows

    data = Path(path).read_bytes()
    fast = parse_rows(data, len(CHANNELS))
    if fast is not None:
        time_ms, values, classes = fast
    else:
        try:
            # Single-threaded: ingestion parallelises over files, nested threads only contend.
            table = pacsv.read_csv(
                pa.BufferReader(data),
                read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 24),
                parse_options=pacsv.ParseOptions(delimiter="\t", ignore_empty_lines=False),
                convert_options=convert_options(_COLUMN_TYPES),
            )
        except pa.ArrowInvalid as exc:
            raise locate_error(path, "\t", header, _KINDS, cause=exc) from exc
        time_ms = table.column("time").to_numpy()
        values = np.column_stack([table.column(c).to_numpy() for c in CHANNELS])
        classes = table.column("class").to_numpy()
    if time_ms.size == 0:
        msg = f"{path}: no data rows after the header line: expected at least one row"
        raise InputError(msg, path=str(path))
    steps = np.diff(time_ms)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        msg = (
            f"{path}: line {i + 2}, column 'time': timestamps must increase strictly; "
            f"found {int(time_ms[i])} after {int(time_ms[i - 1])} (line {i + 1})"
        )
        raise InputError(msg, path=str(path))
    unknown = np.flatnonzero((classes < 0) | (classes > max(LABEL_NAMES)))
    if unknown.size:
        i = int(unknown[0])
        msg = (
            f"{path}: line {i + 2}, column 'class': expected a class in "
            f"0..{max(LABEL_NAMES)}, found {int(classes[i])}"
        )
        raise InputError(msg, path=str(path))
    return time_ms, values, classes


@register_reader("uci-emg")
class UciEmgReader:
    """Read the UCI "EMG data for gestures" archive (see the module docstring).

    Option ``max_gap_ms`` (default ``MAX_GAP_MS``, 1000): a step between timestamps longer
    than this is refused with its lines (a clock jump, or two sessions in one file), since
    resampling would fill it with interpolated signal; the archive's longest step is 36 ms.
    """

    name = "uci-emg"
    version = "1.0"

    def discover(self, source: Path, **options: Any) -> list[SourceFile]:
        """List the archive files under ``source`` (the archive root, a subject folder or a file).

        Files named ``README*`` are skipped; every other ``.txt`` file must follow the layout.

        Returns
        -------
        list of SourceFile
            Sorted by path: subject from the folder, run = series, start time from the name.
        """
        check_options(self.name, options)
        source = Path(source)
        paths = list_files(source, ["*.txt"], self.name)
        if source.is_dir():
            paths = [p for p in paths if not p.name.lower().startswith("readme")]
        if not paths:
            msg = f"{source}: no .txt files found; expected the layout {LAYOUT}"
            raise InputError(msg, path=str(source))
        files = [parse_name(p) for p in paths]
        check_unique_ids(files)
        logger.debug("uci-emg: %d files under %s", len(files), source)
        return files

    def read(self, file: SourceFile, **options: Any) -> RecordingSource:
        """Parse one file and return it resampled on the uniform 1 kHz grid.

        The whole file is parsed (the archive's files are a few MB); ``blocks()`` yields
        float32 slices of at most 2**20 rows.
        """
        check_options(self.name, options)
        max_gap = float(options.get("max_gap_ms", MAX_GAP_MS))
        if not max_gap > 0:
            msg = f"reader 'uci-emg': option 'max_gap_ms' must be > 0, found {max_gap!r}"
            raise SpecError(msg)
        path = Path(file.path)
        from pipeline.io._fastparse import resample_rows

        time_ms, values, classes = parse_file(path)
        jumps = np.flatnonzero(np.diff(time_ms) > max_gap)
        if jumps.size:
            i = int(jumps[0])
            msg = (
                f"{path}: line {i + 3}, column 'time': a gap of {int(time_ms[i + 1] - time_ms[i])} "
                f"ms after {int(time_ms[i])} ms (line {i + 2}), {jumps.size} such gap(s) in the "
                f"file; expected steps of at most max_gap_ms={max_gap:g} ms, since resampling "
                "would fill a gap with interpolated signal: split the file, or raise max_gap_ms"
            )
            raise InputError(msg, path=str(path))
        signal, labels = resample_rows(time_ms, values, classes)  # == resample_uniform
        steps = np.diff(time_ms)
        gaps = steps[steps > 1]
        attrs = {
            "resampling": RESAMPLING,
            "n_original_samples": int(time_ms.size),
            "n_gaps": int(gaps.size),
            "longest_gap_ms": int(gaps.max()) if gaps.size else 0,
            "n_interpolated_samples": int(signal.shape[0] - time_ms.size),
            "time_offset_ms": int(time_ms[0]),
        }

        def blocks() -> Iterator[np.ndarray]:
            for start in range(0, signal.shape[0], BLOCK_SAMPLES):
                yield signal[start : start + BLOCK_SAMPLES]

        return RecordingSource(
            n_samples=int(signal.shape[0]),
            sampling_rate=1000.0,
            channels=list(CHANNELS),
            units=["V"] * len(CHANNELS),
            channel_types=["emg"] * len(CHANNELS),
            modality="emg",
            blocks=blocks,
            labels=labels,
            label_names=dict(LABEL_NAMES),
            label=None,
            events=None,
            start_time=file.extra.get("start_time") or parse_name(path).extra["start_time"],
            attrs=attrs,
        )
