"""The cohort store: one Zarr (v3) store per cohort, one xarray Dataset per recording.

Layout of a store directory::

    <store>/zarr.json                      root group (attributes: format version)
    <store>/recordings/<recording_id>/     one group per recording, as xarray.to_zarr writes it
    <store>/index.json                     cached cohort index (rebuilt if stale)
    <store>/.staging/                      recordings being written (never trusted)
    <store>/.trash/                        recordings being replaced (never trusted)

A recording is written completely under ``.staging`` and committed by renaming its
directory into ``recordings/``: a rename is atomic on POSIX file systems, so a run killed at
any moment leaves every recording in ``recordings/`` complete. The index is a cache of the
recordings' own attributes; it is rewritten atomically after every commit and rebuilt from
the recordings whenever it disagrees with the directory listing.

A recording (:meth:`Cohort.recording`) is what xarray users expect:

- ``time`` is a coordinate in seconds from the first sample, ``i / sampling_rate``. It is
  stored, so that ``xarray.open_zarr`` and other Zarr clients see it: float64 chunked like
  ``signal``, byte-shuffled LZ4 (2.8 % of its raw size, 0.3 ms of encoding per emg-gestures
  file; zstd kept 16 % in 1.4 ms). Measured on emg-gestures: the store grows 5.5 -> 6.2 MB
  and ``write_recording`` 6-10 -> 9-12 ms per file (the array's two directories and two
  files), within the noise of ``benchmarks/bench_ingest.py`` (0.52-1.10 s before,
  0.57-1.23 s after). :meth:`Cohort.recording` never reads it: a :class:`SampleTimeIndex`
  computes it from the rate, so opening costs no read and no memory per sample (1.4 ms per
  recording, 1.2 ms without a time coordinate; a pandas index of a 10 h recording at 2 kHz
  would hold 576 MB), and ``ds.sel(time=slice(0, 1.0))`` is one second.
- ``label`` carries its names as CF ``flag_values`` / ``flag_meanings``; the exact names are
  also the ``label_names`` attribute (JSON text; :func:`label_names` reads either).
- ``channel``, ``channel_type`` and ``unit`` are the per-channel coordinates (the only copy).
  Every reader stores a voltage in volts (``unit`` ``"V"``; the convention is stated once, in
  :mod:`pipeline.io._units`); the source's unit, where the reader knows it, is the
  ``source_unit`` coordinate. Reader versions are part of each recording's ingest key, so a
  recording stored under an earlier convention (``edf`` 1.0 kept microvolts) is re-ingested.
- attributes are netCDF-safe (:func:`netcdf_attrs`): ``ds.to_netcdf(path)`` works.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline import _zarr_v3
from pipeline._fs import (
    atomic_write_json,
    canonical_json,
    jsonable,
    owned_name,
    owner_gone,
    sha256_json,
)
from pipeline.exceptions import InputError, RecordingNotFoundError, StoreError
from pipeline.io.base import RecordingSource, SourceFile

# xarray, zarr and the time index are imported where a recording is written or opened: the
# cohort index alone (an unchanged rerun, ``cohort info``) needs none of them.
if TYPE_CHECKING:
    import xarray as xr

    from pipeline._time import TIME_ATTRS, SampleTimeIndex, sample_times, time_coordinate

__all__ = [
    "STORE_FORMAT_VERSION",
    "TIME_ATTRS",
    "Cohort",
    "SampleTimeIndex",
    "create_store",
    "default_chunk_samples",
    "label_names",
    "netcdf_attrs",
    "open_cohort",
    "sample_times",
    "time_coordinate",
    "write_recording",
]

log = logging.getLogger(__name__)

_TIME_EXPORTS = ("TIME_ATTRS", "SampleTimeIndex", "sample_times", "time_coordinate")


def __getattr__(name: str) -> Any:
    # the time index's names, re-exported on first use (PEP 562; see the imports above)
    if name in _TIME_EXPORTS:
        from pipeline import _time

        return getattr(_time, name)
    raise AttributeError(f"module 'pipeline.store' has no attribute {name!r}")


STORE_FORMAT_VERSION = 1
RECORDINGS = "recordings"
STAGING = ".staging"
TRASH = ".trash"
INDEX = "index.json"
DEFAULT_CHUNK_BYTES = 8 * 2**20
_INT32 = (-(2**31), 2**31 - 1)

INDEX_COLUMNS = [
    "recording",
    "subject",
    "session",
    "task",
    "acquisition",
    "run",
    "modality",
    "n_samples",
    "sampling_rate",
    "duration",
    "n_channels",
    "channels",
    "channel_types",
    "units",
    "labels",
    "label",
    "source",
    "sha256",
    "ingest_key",
    "reader",
    "reader_version",
]


def _pipeline_version() -> str:
    from pipeline import __version__

    return __version__


def default_chunk_samples(n_channels: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Return the default chunk length: about ``chunk_bytes`` of float32 per chunk.

    Parameters
    ----------
    n_channels : int
        Number of channels of the recording.
    chunk_bytes : int, default 8 MiB
        Target chunk size in bytes.
    """
    return max(1024, chunk_bytes // (4 * max(1, n_channels)))


def create_store(path: str | os.PathLike[str]) -> Path:
    """Create an empty cohort store at ``path`` (or check the one already there).

    Returns
    -------
    Path
        The store's path.

    Raises
    ------
    StoreError
        If ``path`` exists and is not a cohort store.
    """
    path = Path(path)
    if path.exists():
        _check_is_store(path)
        return path
    import zarr

    path.mkdir(parents=True)
    zarr.open_group(str(path), mode="w", zarr_format=3, attributes=_root_attrs())
    (path / RECORDINGS).mkdir()
    atomic_write_json(path / INDEX, [])
    return path


def _root_attrs() -> dict[str, Any]:
    return {"cohort_store": STORE_FORMAT_VERSION, "pipeline_version": _pipeline_version()}


def _check_is_store(path: Path) -> None:
    root_meta = path / "zarr.json"
    if not path.is_dir():
        msg = f"cohort store {str(path)!r}: expected a directory, found a file"
        raise StoreError(msg)
    if not root_meta.exists():
        if any(path.iterdir()):
            msg = (
                f"{str(path)!r} is not a cohort store: expected a Zarr v3 group with a "
                f"'zarr.json' and a '{RECORDINGS}/' folder, found neither. Choose an empty or "
                "new directory for --out."
            )
            raise StoreError(msg)
        return
    meta = json.loads(root_meta.read_text())
    if meta.get("attributes", {}).get("cohort_store") is None:
        msg = (
            f"{str(path)!r} is a Zarr store but not a cohort store: its zarr.json has no "
            "'cohort_store' attribute. Choose another directory."
        )
        raise StoreError(msg)


@dataclass
class _ChunkWriter:
    """Buffer incoming blocks into whole chunks and write them to a Zarr array."""

    array: _zarr_v3.ArrayWriter
    chunk: int
    n_channels: int
    buffer: np.ndarray = field(init=False)
    filled: int = 0
    written: int = 0

    def __post_init__(self) -> None:
        self.buffer = np.empty((self.chunk, self.n_channels), dtype=np.float32)

    def add(self, block: np.ndarray) -> None:
        pos = 0
        while pos < len(block):
            take = min(self.chunk - self.filled, len(block) - pos)
            self.buffer[self.filled : self.filled + take] = block[pos : pos + take]
            self.filled += take
            pos += take
            if self.filled == self.chunk:
                self.flush()

    def flush(self) -> None:
        if self.filled:
            self.array.write_chunk(self.written // self.chunk, self.buffer[: self.filled])
            self.written += self.filled
            self.filled = 0


def write_recording(
    store_path: str | os.PathLike[str],
    source_file: SourceFile,
    source: RecordingSource,
    *,
    sha256: str,
    reader: str,
    reader_version: str,
    chunk_samples: int | None = None,
    commit: bool = True,
    ingest_key: str | None = None,
) -> dict[str, Any]:
    """Write one recording to the store: to a staging folder, then commit by rename.

    Parameters
    ----------
    store_path : path
        The cohort store (created if missing).
    source_file : SourceFile
        Identifiers of the recording (subject, session, run) and its source path.
    source : RecordingSource
        Metadata and signal blocks from a reader.
    sha256 : str
        Fingerprint of the source (sha256 of the file, or of generator parameters).
    reader, reader_version : str
        Name and version of the reader that produced ``source``.
    chunk_samples : int, optional
        Chunk length along time; default about 8 MiB per chunk. A recording shorter than
        one chunk is stored as a single chunk of its own length.
    ingest_key : str, optional
        Hash of the source and everything that shaped the recording (reader options and
        version); re-ingestion compares it. Default: ``sha256``.
    commit : bool, default True
        If False, leave the complete recording in staging and return its path in the row's
        ``"_staging"`` key; :func:`commit_recording` commits it later.

    Returns
    -------
    dict
        The recording's index row.

    Raises
    ------
    StoreError
        If the blocks do not cover exactly ``n_samples`` rows of ``n_channels`` columns.
    """
    store = create_store(store_path)
    rid = source_file.recording_id
    n, c = int(source.n_samples), len(source.channels)
    chunk = int(chunk_samples or default_chunk_samples(c))
    if chunk <= 0:
        msg = f"chunk_samples must be a positive number of samples, got {chunk_samples!r}"
        raise StoreError(msg)
    # A recording shorter than a chunk is one chunk of its own length: padding it to the
    # full chunk (as zarr does for edge chunks) would compress megabytes of fill value.
    chunk = max(1, min(chunk, n))
    if not (len(source.units) == len(source.channel_types) == c):
        msg = (
            f"{source_file.path}: expected one unit and one channel type per channel "
            f"({c} channels), found {len(source.units)} units and "
            f"{len(source.channel_types)} types"
        )
        raise StoreError(msg)
    _check_channel_attrs(source_file, source, c)

    labels = None
    codes: list[int] = []
    if source.labels is not None:
        labels = np.asarray(source.labels)
        if labels.shape != (n,):
            msg = (
                f"{source_file.path}: expected {n} per-sample labels, found "
                f"{labels.shape[0] if labels.ndim else 0}"
            )
            raise StoreError(msg)
        codes = [int(k) for k in np.unique(labels)]
    staging = store / STAGING / owned_name(rid)  # host and pid: see clean_staging
    staging.parent.mkdir(exist_ok=True)
    try:
        attrs = _recording_attrs(source_file, source, codes, sha256, reader, reader_version, chunk)
        attrs["ingest_key"] = ingest_key or sha256
        label_attrs = _label_attrs(codes, source.label_names) if labels is not None else {}
        _write_dataset(staging, attrs, source, source_file, labels, label_attrs, n, c, chunk)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    row = _index_row(attrs, n, _Channels(source.channels, source.channel_types, source.units))
    if commit:
        commit_recording(store, rid, staging)
    else:
        row["_staging"] = str(staging)
    return row


_RESERVED = {"signal", "time", "channel", "channel_type", "unit", "label", "event"}


def _check_channel_attrs(source_file: SourceFile, source: RecordingSource, c: int) -> None:
    for name, values in source.channel_attrs.items():
        if name in _RESERVED or name.startswith("event_") or not name.isidentifier():
            msg = (
                f"{source_file.path}: channel attribute {name!r} is not a usable coordinate "
                f"name (expected an identifier other than {sorted(_RESERVED)})"
            )
            raise StoreError(msg)
        if len(values) != c:
            msg = (
                f"{source_file.path}: channel attribute {name!r}: expected one value per "
                f"channel ({c}), found {len(values)}"
            )
            raise StoreError(msg)


def _checked(
    block: Any, source_file: SourceFile, c: int, done: int, n: int, channels: list[str]
) -> np.ndarray:
    """Return ``block`` as float32 after checking its shape and that every value is finite.

    This is the one place every reader's samples pass, so the untidy-input policy lives
    here: a NaN, an infinity or a value beyond float32's range is refused with the file,
    channel and sample index, instead of surfacing later as a failed fit naming nothing.
    """
    raw = np.asarray(block)
    if raw.ndim != 2 or raw.shape[1] != c:
        msg = f"{source_file.path}: expected signal blocks of shape (n, {c}), found {raw.shape}"
        raise StoreError(msg)
    if done + len(raw) > n:
        msg = f"{source_file.path}: reader yielded more than the {n} samples it declared"
        raise StoreError(msg)
    block = raw.astype(np.float32, copy=False)
    bad = ~np.isfinite(block)
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        value = raw[i, j]
        what = "overflows float32" if np.isfinite(value) else "is not finite"
        msg = (
            f"{source_file.path}: channel {channels[j]!r}, sample {done + i}: value "
            f"{float(value)!r} {what} ({int(bad.sum())} such value(s) in samples "
            f"{done}-{done + len(raw) - 1}); expected finite float32 samples: repair or "
            "exclude the channel (NaN marks missing data in some formats)"
        )
        raise InputError(msg, path=str(source_file.path))
    return block


def _write_dataset(
    staging: Path,
    attrs: dict[str, Any],
    source: RecordingSource,
    source_file: SourceFile,
    labels: np.ndarray | None,
    label_attrs: dict[str, Any],
    n: int,
    c: int,
    chunk: int,
) -> None:
    """Write one recording's Dataset, as ``xarray.Dataset.to_zarr`` lays it out.

    ``signal`` is filled chunk by chunk as the reader's blocks arrive, so a recording never
    has to fit in memory; the metadata goes straight to ``zarr.json`` files
    (:mod:`pipeline._zarr_v3`), which is what makes ingesting many small files cheap.

    ``time`` is stored (float64, chunked like ``signal``), so that ``xarray.open_zarr`` and
    any other Zarr client see the coordinate; :meth:`Cohort.recording` never reads it but
    computes the same values from ``sampling_rate`` (:class:`SampleTimeIndex`).
    """
    from pipeline._time import TIME_ATTRS, sample_times

    _zarr_v3.write_group(staging, attrs)
    per_channel = ["channel_type", "unit", *source.channel_attrs]
    signal = _zarr_v3.ArrayWriter(
        staging / "signal",
        (n, c),
        np.float32,
        chunk,
        ("time", "channel"),
        {"coordinates": " ".join(sorted(per_channel))},  # xarray lists them sorted
    )
    writer = _ChunkWriter(signal, chunk, c)
    for block in source.blocks():
        done = writer.written + writer.filled
        writer.add(_checked(block, source_file, c, done, n, list(source.channels)))
    done = writer.written + writer.filled
    if done != n:
        raise StoreError(f"{source_file.path}: reader declared {n} samples but yielded {done}")
    writer.flush()
    fs = float(attrs["sampling_rate"])
    times = _zarr_v3.ArrayWriter(
        staging / "time", (n,), np.float64, chunk, ("time",), TIME_ATTRS, "blosc-lz4"
    )
    for k in range(times.n_chunks):
        times.write_chunk(k, sample_times(k * chunk, min(n, (k + 1) * chunk), fs))
    _zarr_v3.write_strings(staging / "channel", source.channels, ("channel",))
    _zarr_v3.write_strings(staging / "channel_type", source.channel_types, ("channel",))
    _zarr_v3.write_strings(staging / "unit", source.units, ("channel",))
    for name, values in source.channel_attrs.items():
        _zarr_v3.write_strings(staging / name, values, ("channel",))
    if labels is not None:
        _zarr_v3.ArrayWriter(
            staging / "label", (n,), np.int16, chunk, ("time",), label_attrs
        ).write(labels.astype(np.int16))
    if source.events is not None and len(source.events):
        ev = source.events
        m = len(ev)
        for name, values in (
            ("event_onset", ev["onset"].to_numpy(np.float64)),
            ("event_duration", ev["duration"].to_numpy(np.float64)),
        ):
            _zarr_v3.ArrayWriter(staging / name, (m,), np.float64, m, ("event",)).write(values)
        _zarr_v3.write_strings(
            staging / "event_description", ev["description"].astype(str).tolist(), ("event",)
        )


def _label_attrs(codes: list[int], names: Mapping[int, str]) -> dict[str, Any]:
    """Return the CF flag attributes of ``label``: every named code and every code present.

    ``flag_meanings`` is blank-separated (CF), so blanks inside a name become ``_``; the
    exact names stay in the dataset's ``label_names`` attribute (:func:`label_names`).
    """
    values = sorted({int(k) for k in names} | set(codes))
    words = [re.sub(r"\s+", "_", str(names.get(k, k)).strip()) or str(k) for k in values]
    return {"long_name": "class label", "flag_values": values, "flag_meanings": " ".join(words)}


def netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``attrs`` in the types every netCDF format accepts (NETCDF3 included).

    Strings and floats stay; a ``None`` is left out (so ``attrs.get(key)`` still reads
    None); a bool becomes 0/1; an int outside int32 becomes a float; a list of numbers
    stays a list; anything else (a list of strings, a mapping) becomes its canonical JSON
    text, which ``json.loads`` reads back. ``attrs`` must hold JSON types
    (:func:`pipeline._fs.jsonable`).

    Returns
    -------
    dict
    """
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = int(value)
        elif isinstance(value, int):
            out[key] = value if _INT32[0] <= value <= _INT32[1] else float(value)
        elif isinstance(value, float | str):
            out[key] = value
        elif isinstance(value, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            wide = any(isinstance(v, int) and not _INT32[0] <= v <= _INT32[1] for v in value)
            out[key] = [float(v) for v in value] if wide else value
        else:
            out[key] = canonical_json(value, f"attribute {key!r}", strict=False)
    return out


def _recording_attrs(
    sf: SourceFile,
    src: RecordingSource,
    codes: list[int],
    sha256: str,
    reader: str,
    reader_version: str,
    chunk: int,
) -> dict[str, Any]:
    present: list[str] = []
    if codes:
        present = [src.label_names.get(k, str(k)) for k in codes]
    elif src.label is not None:
        present = [src.label]
    # Per-channel names, types and units are the coordinates channel, channel_type and
    # unit (one copy, which channel selection keeps right); lists, mappings and None are
    # made netCDF-safe by netcdf_attrs.
    attrs: dict[str, Any] = {
        **src.attrs,
        "recording": sf.recording_id,
        "subject": sf.subject,
        "session": sf.session,
        "task": sf.task,
        "acquisition": sf.acquisition,
        "run": sf.run,
        "modality": src.modality,
        "sampling_rate": float(src.sampling_rate),
        "start_time": src.start_time,
        "label": src.label,
        "label_names": {str(k): v for k, v in src.label_names.items()},
        "labels_present": present,
        "source": sf.path.name,
        "source_path": str(sf.path),
        "sha256": sha256,
        "reader": reader,
        "reader_version": reader_version,
        "pipeline_version": _pipeline_version(),
        "chunk_samples": chunk,
        "metadata": sf.extra.get("metadata", {}),
    }
    return netcdf_attrs(jsonable(attrs, default=str))


def _decoded(value: Any) -> Any:
    """Read back a structured attribute: JSON text (this layout) or the value (older)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def label_names(ds: xr.Dataset) -> dict[int, str]:
    """Return the names of a recording's ``label`` codes, ``{code: name}``.

    Parameters
    ----------
    ds : xarray.Dataset
        A recording (:meth:`Cohort.recording`): read from its ``label_names`` attribute
        (JSON text, exact names), else from ``label``'s CF ``flag_values`` /
        ``flag_meanings``.

    Returns
    -------
    dict of int to str
        Empty when the recording has no per-sample labels.
    """
    raw = _decoded(ds.attrs.get("label_names"))
    if isinstance(raw, Mapping) and raw:
        return {int(k): str(v) for k, v in raw.items()}
    if "label" not in ds.variables:
        return {}
    attrs = ds["label"].attrs
    values = np.atleast_1d(attrs.get("flag_values", [])).tolist()
    meanings = str(attrs.get("flag_meanings", "")).split()
    return {int(k): m for k, m in zip(values, meanings, strict=False)}


@dataclass(frozen=True)
class _Channels:
    names: list[str]
    types: list[str]
    units: list[str]


def _index_row(attrs: dict[str, Any], n_samples: int, channels: _Channels) -> dict[str, Any]:
    fs = float(attrs["sampling_rate"])
    row = {
        "recording": attrs["recording"],
        "subject": attrs["subject"],
        "session": attrs.get("session"),
        "task": attrs.get("task"),
        "acquisition": attrs.get("acquisition"),
        "run": attrs.get("run"),
        "modality": attrs.get("modality"),
        "n_samples": int(n_samples),
        "sampling_rate": fs,
        "duration": n_samples / fs if fs else float("nan"),
        "n_channels": len(channels.names),
        "channels": list(channels.names),
        "channel_types": list(channels.types),
        "units": list(channels.units),
        "labels": list(_decoded(attrs.get("labels_present")) or []),
        "label": attrs.get("label"),
        "source": attrs.get("source"),
        "sha256": attrs["sha256"],
        "ingest_key": attrs.get("ingest_key", attrs["sha256"]),
        "reader": attrs.get("reader"),
        "reader_version": attrs.get("reader_version"),
    }
    for key, value in (_decoded(attrs.get("metadata")) or {}).items():
        row.setdefault(key, value)
    return row


def commit_recording(store: Path, rid: str, staging: Path) -> None:
    """Move a complete staged recording into place, replacing any previous version."""
    target = store / RECORDINGS / rid
    (store / RECORDINGS).mkdir(exist_ok=True)
    trash = None
    if target.exists():
        trash = store / TRASH / f"{rid}.{uuid.uuid4().hex[:12]}"
        trash.parent.mkdir(exist_ok=True)
        os.rename(target, trash)
    os.rename(staging, target)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _read_group_attrs(group_dir: Path) -> tuple[dict[str, Any], int, _Channels]:
    """Return a recording's attributes, length and channels without a signal read.

    The channels come from the three one-chunk string arrays (``channel``,
    ``channel_type``, ``unit``); a store written before they left the attributes has
    them in the attributes.
    """
    meta_path = group_dir / "zarr.json"
    sig_path = group_dir / "signal" / "zarr.json"
    try:
        attrs = json.loads(meta_path.read_text())["attributes"]
        shape = json.loads(sig_path.read_text())["shape"]
        lists = [
            attrs[old] if old in attrs else _zarr_v3.read_strings(group_dir / name)
            for name, old in (
                ("channel", "channels"),
                ("channel_type", "channel_types"),
                ("unit", "units"),
            )
        ]
    except (OSError, KeyError, ValueError) as exc:
        msg = (
            f"recording {group_dir.name!r} in {str(group_dir.parent.parent)!r} is unreadable: "
            f"expected zarr.json with attributes, a signal array and the channel, "
            f"channel_type and unit arrays ({exc})"
        )
        raise StoreError(msg) from exc
    channels = _Channels(*([str(v) for v in values] for values in lists))
    return attrs, int(shape[0]), channels


def _scan_rows(store: Path) -> list[dict[str, Any]]:
    rows = []
    rec_dir = store / RECORDINGS
    for group_dir in sorted(p for p in rec_dir.iterdir() if p.is_dir()):
        rows.append(_index_row(*_read_group_attrs(group_dir)))
    return rows


def _rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=INDEX_COLUMNS)
    extra = [c for c in frame.columns if c not in INDEX_COLUMNS]
    frame = frame[INDEX_COLUMNS + extra]
    return frame.sort_values("recording", ignore_index=True)


class Cohort:
    """A cohort store opened for reading.

    Opening reads only metadata (the index, or the recordings' ``zarr.json`` files when the
    cached index is stale); signals are read lazily through dask when computed.

    Parameters
    ----------
    path : path
        The store directory.

    Attributes
    ----------
    path : Path
    index : pandas.DataFrame
        One row per recording: recording, subject, session, run, modality, n_samples,
        sampling_rate, duration, n_channels, channels, channel_types, units, labels, label,
        source, sha256, reader, reader_version, then joined per-subject metadata.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").exists():
            msg = (
                f"no cohort store at {str(self.path)!r}: expected a directory with zarr.json "
                "and recordings/ (create one with `cohort ingest SOURCE --format NAME "
                "--out STORE`)"
            )
            raise StoreError(msg)
        _check_is_store(self.path)
        self.index = _rows_to_frame(self._load_rows())
        self._by_id = self.index.set_index("recording")
        self._fingerprints: dict[str, str] = {}

    def _load_rows(self) -> list[dict[str, Any]]:
        on_disk = sorted(p.name for p in (self.path / RECORDINGS).iterdir() if p.is_dir())
        try:
            rows = json.loads((self.path / INDEX).read_text())
        except (OSError, json.JSONDecodeError):
            rows = None
        if rows is None or sorted(r["recording"] for r in rows) != on_disk:
            log.info("cohort index of %s is stale; rebuilding from recordings", self.path)
            rows = _scan_rows(self.path)
            try:
                atomic_write_json(self.path / INDEX, rows)
            except OSError:  # read-only store: use the rebuilt rows without caching them
                pass
        return rows

    def __repr__(self) -> str:
        idx = self.index
        return (
            f"<Cohort {str(self.path)!r}: {idx['subject'].nunique()} subjects, "
            f"{len(idx)} recordings, {idx['duration'].sum() / 3600:.2f} h>"
        )

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[str]:
        return iter(self.recording_ids)

    @property
    def recording_ids(self) -> list[str]:
        """Return the recording ids, sorted."""
        return self.index["recording"].tolist()

    @property
    def subjects(self) -> list[str]:
        """Return the subject ids, sorted."""
        return sorted(self.index["subject"].unique().tolist())

    def recording(self, recording_id: str) -> xr.Dataset:
        """Return one recording as a lazy, dask-backed Dataset.

        Returns
        -------
        xarray.Dataset
            ``signal`` (time, channel) float32 chunked along time; coords ``time`` (seconds
            from the first sample, :class:`SampleTimeIndex`), ``channel``, ``channel_type``,
            ``unit``; optional ``label`` (time) int16 with CF ``flag_values`` /
            ``flag_meanings`` and ``event_*`` variables; the recording's attributes, all
            netCDF-safe (``ds.to_netcdf(path)`` works).

        Raises
        ------
        RecordingNotFoundError
            If the store holds no such recording (a ``KeyError`` whose message lists the
            closest ids).
        """
        import xarray as xr

        from pipeline._time import SampleTimeIndex, sample_times, time_coordinate

        self._check_known(recording_id)
        path = self.path / RECORDINGS / recording_id
        # The layout the store writes is read directly: metadata only, one dask task per
        # chunk (xarray's open_zarr cost 15-22 ms per recording, more than the features of
        # a short one). Anything else (a group rewritten by another tool) goes to xarray.
        # The stored time array is never read: the same values come from the sampling rate.
        row = self._by_id.loc[recording_id]
        times = time_coordinate(int(row["n_samples"]), float(row["sampling_rate"]))
        token = self.recording_fingerprint(recording_id)
        ds = _zarr_v3.read_dataset(path, token, skip={"time"}, coords=times)
        if ds is None:
            ds = xr.open_zarr(str(path), consolidated=False, zarr_format=3)
            # Per-channel metadata is tiny; load it so selections by type or unit stay cheap.
            ds = ds.assign_coords(
                channel_type=("channel", ds.channel_type.values), unit=("channel", ds.unit.values)
            )
        n, fs = ds.sizes["time"], float(ds.attrs["sampling_rate"])
        # Read directly, written before time was stored, or the regular grid read by xarray:
        # every recording gets the same kind of index, so recordings align alike.
        if "time" not in ds.xindexes or (
            not isinstance(ds.xindexes["time"], SampleTimeIndex)
            and np.array_equal(ds["time"].values, sample_times(0, n, fs))
        ):
            ds = ds.assign_coords(time_coordinate(n, fs))
        # A no-op on what this version writes; a store written before (lists, mappings and
        # None among the attributes) opens netCDF-safe too.
        ds.attrs = netcdf_attrs(ds.attrs)
        return ds

    def _check_known(self, recording_id: str) -> None:
        if recording_id in self._by_id.index:
            return
        close = difflib.get_close_matches(str(recording_id), self.recording_ids, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        msg = (
            f"no recording {recording_id!r} in cohort store {str(self.path)!r} "
            f"({len(self)} recordings){hint}"
        )
        raise RecordingNotFoundError(msg, recording=recording_id, closest=close)

    def recording_fingerprint(self, recording_id: str) -> str:
        """Return a hash of a recording's source and reader: it changes iff its data may.

        Raises
        ------
        RecordingNotFoundError
            If the store holds no such recording.
        """
        # memoised (the index never changes once opened): the feature table's writer asks for
        # the store's fingerprint once per file, and a row lookup costs about a millisecond
        done = self._fingerprints.get(recording_id)
        if done is not None:
            return done
        self._check_known(recording_id)
        row = self._by_id.loc[recording_id]
        fp = sha256_json([recording_id, row["ingest_key"], row["reader"], row["reader_version"]])
        self._fingerprints[recording_id] = fp
        return fp

    @property
    def fingerprint(self) -> str:
        """Return a hash over every recording's fingerprint."""
        return sha256_json([self.recording_fingerprint(r) for r in self.recording_ids])


def open_cohort(path: str | os.PathLike[str]) -> Cohort:
    """Open a cohort store for reading.

    Parameters
    ----------
    path : path
        The store directory written by :func:`pipeline.ingest`.

    Returns
    -------
    Cohort
        With ``.index`` (pandas DataFrame) and ``.recording(id)`` (lazy xarray Dataset).
    """
    return Cohort(path)


def clean_staging(store: str | os.PathLike[str]) -> int:
    """Remove leftovers of interrupted writes; return how many were removed.

    A staging folder is removed only once its writer process is gone
    (:func:`pipeline._fs.owner_gone`): another run writing to the same store keeps its own.
    """
    removed = 0
    for sub in (STAGING, TRASH):
        d = Path(store) / sub
        if d.exists():
            for p in d.iterdir():
                if sub == STAGING and not owner_gone(p):
                    continue
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
    return removed
