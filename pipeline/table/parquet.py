"""The one feature-table format: Parquet, one file per recording, self-describing.

Every file holds one recording's rows (its partitions as row groups, in time order) and,
in the Parquet key-value metadata under ``cohort_pipeline``, a JSON object::

    {"format": 1, "recording": "sub-01_run-1", "recording_fingerprint": "...",
     "spec": {...FeatureTableSpec.to_dict()...}, "columns": ["ch1__mav", ...],
     "store": "/data/emg.zarr", "store_fingerprint": "...", "pipeline_version": "..."}

``cohort features`` writes a folder of such files, ``<recording>.parquet``
(:func:`write_feature_table`); ``cohort run`` writes one per feature stage
(:func:`write_recording_features`, without the store's path and fingerprint, which its
cache key does not hold). :func:`read_feature_table` opens either, as one dask DataFrame
with the combined metadata. Every file is written through :func:`pipeline._fs.atomic_path`
(a temporary name renamed into place); :func:`write_feature_table` flushes its files to disk
together once the last is written (:func:`pipeline._fs.fsync_paths`), not one by one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from pipeline._fs import atomic_path, fsync_paths, jsonable
from pipeline.exceptions import StoreError
from pipeline.table.build import (
    _MAX_PARTITION_BYTES,
    _STR,
    _Context,
    _empty_frame,
    _Part,
    _partition_values,
    _recording_partitions,
    _should_fuse,
    fuse_delayed,
    plan_table,
)
from pipeline.table.spec import FeatureTableSpec

if TYPE_CHECKING:
    from pipeline.store import Cohort

__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "feature_table_metadata",
    "read_feature_table",
    "run_features",
    "table_schema",
    "table_writes",
    "write_feature_table",
    "write_recording_features",
]

log = logging.getLogger(__name__)

METADATA_KEY = b"cohort_pipeline"
FORMAT_VERSION = 1
# Parquet dictionary encoding for the repetitive identifier columns only: tried on every
# float feature column it made writing a partition 1.4-1.7x slower, for nothing.
_DICTIONARY_COLUMNS = ["recording", "subject", "session", "run", "label"]
_STR_COLUMNS = ("recording", "subject", "session", "run", "label")
# Column statistics (min/max) for the identifier columns and ``start`` only: no reader filters
# on a feature's range, and computing them for every float column of every row group was
# part of the encoding cost.
_STATISTICS_COLUMNS = [*_STR_COLUMNS, "start"]


def table_schema(columns: Sequence[str], metadata: Mapping[str, Any]) -> pa.Schema:
    """Return the Arrow schema of a feature-table file, ``metadata`` under ``cohort_pipeline``.

    Parameters
    ----------
    columns : sequence of str
        The feature columns ``<channel>__<feature>`` (float64), after :data:`ID_COLUMNS`.
    metadata : mapping
        JSON-serialisable, see the module docstring.
    """
    schema = _base_schema(tuple(columns))
    payload = json.dumps(jsonable(dict(metadata), default=str), sort_keys=True).encode()
    return schema.with_metadata({**(schema.metadata or {}), METADATA_KEY: payload})


def _file_metadata(
    spec: FeatureTableSpec,
    columns: Sequence[str],
    recording: str,
    recording_fingerprint: str,
    store: Cohort | None,
) -> dict[str, Any]:
    from pipeline import __version__

    return {
        "format": FORMAT_VERSION,
        "recording": recording,
        "recording_fingerprint": recording_fingerprint,
        "spec": spec.to_dict(),
        "columns": list(columns),
        "store": None if store is None else str(store.path),
        "store_fingerprint": None if store is None else store.fingerprint,
        "pipeline_version": __version__,
    }


def feature_table_metadata(
    cohort: Cohort, spec: FeatureTableSpec, recordings: Sequence[str] | None = None
) -> dict[str, Any]:
    """Return the metadata :func:`read_feature_table` gives for a table written from ``cohort``.

    Keys: ``spec`` (:meth:`FeatureTableSpec.to_dict`), ``store`` (path),
    ``store_fingerprint``, ``recordings`` (id to fingerprint), ``pipeline_version``.
    """
    from pipeline import __version__

    rids = list(cohort.recording_ids if recordings is None else recordings)
    return {
        "spec": spec.to_dict(),
        "store": str(cohort.path),
        "store_fingerprint": cohort.fingerprint,
        "recordings": {r: cohort.recording_fingerprint(r) for r in rids},
        "pipeline_version": __version__,
    }


# ------------------------------------------------------------------------------ writing


@functools.lru_cache(maxsize=32)
def _base_schema(columns: tuple[str, ...]) -> pa.Schema:
    # built once per column set: pandas' conversion of the empty frame took 15-60 ms, paid
    # for every file of a table (the schema is immutable, so sharing it is safe)
    return pa.Schema.from_pandas(_empty_frame(columns), preserve_index=False)


def _arrow_partition(
    feat_blocks: Sequence[np.ndarray],
    stat_blocks: Sequence[np.ndarray],
    k0: int,
    ctx: _Context,
    schema: pa.Schema,
) -> pa.Table:
    """Return one partition as an Arrow table with ``schema`` (no DataFrame built).

    Same rows and types as ``pipeline.table.build._frame`` converted with ``schema``: the
    identifier columns are repeated scalars, each feature column a contiguous float64 array.
    """
    starts, label, flat = _partition_values(feat_blocks, stat_blocks, k0, ctx)
    nw = len(starts)

    def constant(name: str, value: str | None) -> pa.Array:
        kind = schema.field(name).type
        return pa.nulls(nw, kind) if value is None else pa.repeat(pa.scalar(value, kind), nw)

    columns = np.ascontiguousarray(flat.T, dtype=np.float64)  # each row a contiguous column
    arrays = [
        constant("recording", ctx.recording),
        constant("subject", ctx.subject),
        constant("session", ctx.session),
        constant("run", ctx.run),
        pa.array(starts, type=pa.float64()),
        pa.array(label, type=schema.field("label").type, from_pandas=True),
        *(pa.array(c) for c in columns),
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _write_file(
    tables: Sequence[pa.Table], path: str, schema: pa.Schema, fsync: bool = True
) -> int:
    """Write a recording's partitions, in order, as one Parquet file; return its rows.

    The file is renamed into place complete; with ``fsync`` false it is not flushed to
    disk here (the caller flushes the table's files together, see
    :func:`write_feature_table`).
    """
    rows = 0
    with atomic_path(path, fsync=fsync) as tmp:
        with pq.ParquetWriter(
            tmp,
            schema,
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=_STATISTICS_COLUMNS,
        ) as writer:
            for table in tables:
                writer.write_table(table)
                rows += table.num_rows
    return rows


def _recording_write(
    parts: Sequence[_Part], path: Path, schema: pa.Schema, fsync: bool = True
) -> Delayed:
    """Return the task that computes one recording's partitions and writes its file
    (flushed to disk by the task if ``fsync``).

    A partition task returns an Arrow table; the write task takes them all, so a recording's
    whole table (36 000 windows x 72 features: 21 MB) is in one worker's memory while it is
    written. A recording of one fused partition is one task from the chunk reads to the file.
    """
    token = tokenize(str(path), [p.token() for p in parts])
    tables = [
        p.delayed(_arrow_partition, f"arrow-partition-{token}-{i}", schema=schema)
        for i, p in enumerate(parts)
    ]
    name = f"write-features-{token}"
    task = (_write_file, [t.key for t in tables], str(path), schema, fsync)
    write = Delayed(name, HighLevelGraph.from_collections(name, {name: task}, tables))
    if len(parts) == 1 and parts[0].fused:
        return fuse_delayed(write, f"fused-{name}")
    return write


def _file_name(recording: str) -> str:
    if not recording or recording.startswith(".") or "/" in recording or os.sep in recording:
        msg = (
            f"feature table: recording id {recording!r} cannot name a file; expected no "
            f"'/' and no leading '.'"
        )
        raise StoreError(msg)
    return f"{recording}.parquet"


def table_writes(
    cohort: Cohort,
    spec: FeatureTableSpec,
    path: Path,
    recordings: Sequence[str] | None = None,
    *,
    max_partition_bytes: int = _MAX_PARTITION_BYTES,
    fuse: bool | None = None,
    fsync: bool = True,
) -> tuple[list[Path], list[Delayed]]:
    """Return the files of a table and the tasks writing them (one per recording), uncomputed.

    The graph of :func:`write_feature_table`, which checks ``path`` first, computes it with
    ``fsync=False`` (the tasks do not flush their files) and flushes every file once all are
    written. ``fsync=True``: each task flushes its own file.
    """
    plan = plan_table(cohort, spec, recordings, max_partition_bytes=max_partition_bytes, fuse=fuse)
    files, writes = [], []
    for rid, parts in plan.parts.items():
        files.append(path / _file_name(rid))
        fp = cohort.recording_fingerprint(rid)
        schema = table_schema(plan.columns, _file_metadata(spec, plan.columns, rid, fp, cohort))
        writes.append(_recording_write(parts, files[-1], schema, fsync))
    return files, writes


def write_feature_table(
    cohort: Cohort,
    spec: FeatureTableSpec,
    path: str | os.PathLike[str],
    recordings: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
    max_partition_bytes: int = _MAX_PARTITION_BYTES,
    fuse: bool | None = None,
) -> Path:
    """Compute a cohort's feature table and write it: one Parquet file per recording.

    The graph is :func:`pipeline.table.build.plan_table`'s, the same partitions
    :func:`pipeline.table.feature_table` gives; each recording's task(s) end in writing
    ``path/<recording>.parquet`` through :func:`pipeline._fs.atomic_path`, so a file is
    either complete or absent. A write killed midway leaves the recordings it finished
    (each a valid file); write again with ``overwrite=True``. The tasks do not flush their
    files to disk: once the last is written, every file and ``path`` are flushed together
    (:func:`pipeline._fs.fsync_paths`), and only then does the function return (the files
    survive a power loss once it has).

    Parameters
    ----------
    cohort : pipeline.store.Cohort
        An open cohort store.
    spec : FeatureTableSpec
        Preprocessing, windows, features, labels and channel selection.
    path : path
        Destination folder.
    recordings : sequence of str, optional
        Recording ids (default: all).
    overwrite : bool
        Replace an existing table at ``path`` (its other recordings' files are removed).
    max_partition_bytes, fuse
        As for :func:`pipeline.table.feature_table`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    StoreError
        If ``path`` already holds Parquet files and ``overwrite`` is false.
    """
    path = Path(path)
    existing = sorted(path.glob("*.parquet")) if path.is_dir() else []
    if existing and not overwrite:
        msg = (
            f"feature table {str(path)!r} already exists ({len(existing)} files); pass "
            f"overwrite=True (cohort features --overwrite) to replace it"
        )
        raise StoreError(msg)
    files, writes = table_writes(
        cohort,
        spec,
        path,
        recordings,
        max_partition_bytes=max_partition_bytes,
        fuse=fuse,
        fsync=False,
    )
    path.mkdir(parents=True, exist_ok=True)
    dask.compute(*writes)
    # One flush of the whole table once every file is in place: a flush per file and per
    # rename in the tasks made each wait for its own journal commit.
    fsync_paths(files)
    keep = set(files)
    for old in existing:
        if old not in keep:
            old.unlink()
    log.info("feature table: %d recordings written to %s", len(files), path)
    return path


def write_recording_features(
    cohort: Cohort,
    recording: str,
    spec: FeatureTableSpec,
    path: str | os.PathLike[str],
    *,
    with_store: bool = False,
    max_partition_bytes: int = _MAX_PARTITION_BYTES,
    fuse: bool | None = None,
) -> int:
    """Compute one recording's features and write them as a feature-table file; return rows.

    The file is that of :func:`write_feature_table` for this recording (the feature stage of
    ``cohort run`` writes one per recording).

    Parameters
    ----------
    cohort : pipeline.store.Cohort
    recording : str
        Recording id.
    spec : FeatureTableSpec
    path : path
        The ``.parquet`` file to write.
    with_store : bool
        Record the store's path and fingerprint (off for a stage output, whose cache key
        holds the recording's fingerprint only: the file stays a function of its key).
    max_partition_bytes, fuse
        As for :func:`pipeline.table.feature_table` (``fuse`` judged within the recording).
    """
    parts, columns = _recording_partitions(cohort.recording(recording), spec, max_partition_bytes)
    if _should_fuse(len(parts), fuse):
        parts = [replace(p, fuse=True) for p in parts]
    metadata = _file_metadata(
        spec,
        columns,
        recording,
        cohort.recording_fingerprint(recording),
        cohort if with_store else None,
    )
    (rows,) = dask.compute(_recording_write(parts, Path(path), table_schema(columns, metadata)))
    return int(rows)


# ------------------------------------------------------------------------------ reading


def _read_file(path: str) -> pd.DataFrame:
    """Return one feature-table file as a DataFrame with :func:`feature_table`'s dtypes."""
    frame = pq.read_table(path).to_pandas()
    for col in _STR_COLUMNS:
        if frame[col].dtype != _STR:
            frame[col] = frame[col].astype(_STR)
    return frame


def _files(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(path, str | os.PathLike):
        path = Path(path)
        if path.is_dir():
            return sorted(path.glob("*.parquet"))
        return [path] if path.is_file() else []
    return [Path(p) for p in path]


def read_feature_table(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> tuple[dd.DataFrame, dict[str, Any]]:
    """Return a written feature table (one partition per file) and its metadata.

    Parameters
    ----------
    path : path or sequence of paths
        A folder written by :func:`write_feature_table` (``cohort features``), whose files
        are read in name (recording id) order; one file; or files in the order given (a
        run's feature stage outputs, :attr:`pipeline.stages.RunSummary.features`).

    Returns
    -------
    dask.dataframe.DataFrame
        The columns and dtypes of :func:`pipeline.table.feature_table`.
    dict
        ``spec``, ``recordings`` (id to fingerprint), and ``store``, ``store_fingerprint``
        and ``pipeline_version`` when every file records the same (else None).

    Raises
    ------
    StoreError
        If there is no file, a file carries no feature-table metadata, or the files were
        written with different feature specs or columns.
    """
    files = _files(path)
    if not files:
        where = os.fspath(path) if isinstance(path, str | os.PathLike) else "(no files given)"
        msg = f"feature table {where!r}: expected a .parquet file or a folder of them, found none"
        raise StoreError(msg)
    metas = []
    for f in files:
        if not f.is_file():
            msg = f"feature table file {str(f)!r} not found"
            raise StoreError(msg)
        kv = pq.read_schema(f).metadata or {}
        if METADATA_KEY not in kv:
            msg = (
                f"feature table file {str(f)!r}: expected {METADATA_KEY.decode()!r} key-value "
                f"metadata, found keys {sorted(k.decode() for k in kv)!r}; write it with "
                f"write_feature_table (cohort features) or cohort run"
            )
            raise StoreError(msg)
        metas.append(json.loads(kv[METADATA_KEY]))
    first = metas[0]
    for f, meta in zip(files, metas, strict=True):
        if meta.get("format") != FORMAT_VERSION:
            msg = (
                f"feature table file {str(f)!r}: expected format {FORMAT_VERSION}, found "
                f"{meta.get('format')!r}"
            )
            raise StoreError(msg)
        for key in ("spec", "columns"):
            if meta[key] != first[key]:
                msg = (
                    f"feature table file {str(f)!r}: key {key!r} differs from that of "
                    f"{str(files[0])!r} (expected {first[key]!r}, found {meta[key]!r}); a table "
                    f"holds recordings computed with one feature spec"
                )
                raise StoreError(msg)

    def common(key: str) -> Any:
        values = {json.dumps(m.get(key)) for m in metas}
        return first.get(key) if len(values) == 1 else None

    metadata = {
        "spec": first["spec"],
        "store": common("store"),
        "store_fingerprint": common("store_fingerprint"),
        "recordings": {m["recording"]: m["recording_fingerprint"] for m in metas},
        "pipeline_version": common("pipeline_version"),
    }
    meta_frame = _empty_frame(first["columns"])
    # dask would turn the str columns into string[pyarrow] (NA for missing): keep the
    # dtypes of feature_table, so that a table read back equals the one computed.
    with dask.config.set({"dataframe.convert-string": False}):
        ddf = dd.from_map(
            _read_file, [str(f) for f in files], meta=meta_frame, enforce_metadata=False
        )
    return ddf, metadata


def run_features(
    store: str | os.PathLike[str],
    spec: FeatureTableSpec | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    recordings: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Compute a cohort's feature table from a task spec and write it (``cohort features``).

    Parameters
    ----------
    store : path
        The cohort store.
    spec : FeatureTableSpec or path
        What defines the table, or a task spec (YAML) loaded with
        :func:`pipeline.spec.load_task` as ``cohort run`` does (the CLI loads it with
        :func:`pipeline.check.load_checked_task` for both commands).
    out : path
        Destination folder of the table.
    recordings : sequence of str, optional
        Subset of recordings.
    overwrite : bool
        Replace an existing table.

    Returns
    -------
    Path
        ``out``.
    """
    from pipeline.spec import load_task
    from pipeline.store import open_cohort

    if not isinstance(spec, FeatureTableSpec):
        spec = FeatureTableSpec.from_task(load_task(spec))
    cohort = open_cohort(store)
    return write_feature_table(cohort, spec, out, recordings, overwrite=overwrite)
