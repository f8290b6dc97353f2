"""The feature table: one row per window, one column per (channel, feature).

:func:`feature_table` builds a lazy dask DataFrame from a cohort store: per recording,
channel selection and preprocessing (:mod:`pipeline.preprocessing`), chunk-exact windows
(:func:`pipeline.windows.map_windows`) through the fused feature kernels, and window labels
(:mod:`pipeline.labels`). Feature blocks are separate tasks, so the work runs in parallel
across recordings and across the chunks of a long recording; each recording gives one
partition (more when its table would exceed ``max_partition_bytes``).

Columns: ``recording, subject, session, run`` (str, null when absent), ``start`` (window
start in seconds, float64), ``label`` (class name, str, null when the window has none), then
``<channel>__<feature>`` float64, in channel-major order.

:func:`write_feature_table` writes Parquet atomically (a temporary folder renamed into
place) with the spec and the store fingerprint in every file's key-value metadata under
``cohort_pipeline``; :func:`read_feature_table` returns the table and that metadata.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from pipeline.exceptions import SpecError, StoreError
from pipeline.labels import LabelPolicy, event_targets, sample_label_stats
from pipeline.preprocessing import apply_preprocessing, validate_steps
from pipeline.windows import WindowPlan, map_windows, window_blocks

if TYPE_CHECKING:
    from pipeline.store import Cohort

__all__ = [
    "ID_COLUMNS",
    "METADATA_KEY",
    "FeatureTableSpec",
    "feature_table",
    "feature_table_metadata",
    "load_feature_spec",
    "read_feature_table",
    "recording_features",
    "run_features",
    "write_feature_table",
]

log = logging.getLogger(__name__)

ID_COLUMNS = ("recording", "subject", "session", "run", "start", "label")
METADATA_KEY = b"cohort_pipeline"
_STR = pd.StringDtype(na_value=np.nan)
_MAX_PARTITION_BYTES = 64 * 2**20
# Parquet dictionary encoding for the repetitive identifier columns only: tried on every
# float feature column it made writing a partition 1.4-1.7x slower, for nothing.
_DICTIONARY_COLUMNS = ["recording", "subject", "session", "run", "label"]


def _make_block_function(
    specs: list[dict[str, Any]], sampling_rate: float
) -> tuple[Callable[[np.ndarray, int, int], np.ndarray], list[str]]:
    # Indirection so tests can substitute an independent NumPy block function.
    from pipeline.features import make_block_function

    return make_block_function(specs, sampling_rate)


class _TokenizedBlockFunction:
    """A block function that dask tokenizes by its spec instead of by pickling it.

    Tokenizing the fused closure makes dask cloudpickle it (Numba dispatchers included),
    which cost ~25 ms per recording when building the graph; the spec, the sampling rate and
    the function's qualified name identify it as well.
    """

    def __init__(self, func: Callable[[np.ndarray, int, int], np.ndarray], token: str) -> None:
        self.func = func
        self.token = token
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, block: np.ndarray, length: int, step: int) -> np.ndarray:
        return self.func(block, length, step)

    def __dask_tokenize__(self) -> str:
        return self.token


@dataclass(frozen=True)
class FeatureTableSpec:
    """Everything that defines a feature table, besides the recordings.

    Parameters
    ----------
    window : WindowPlan
        Window length and step.
    features : sequence of dict
        Feature specs for ``pipeline.features.make_block_function``, e.g.
        ``[{"name": "mav"}, {"name": "zc", "threshold": 0.01}]``.
    preprocess : sequence of dict
        Preprocessing steps (:func:`pipeline.preprocessing.validate_steps`), applied after
        the channel selection.
    labels : LabelPolicy
        How windows get their label.
    channels : sequence of str, optional
        Channels to keep, in this order (None: all).
    channel_types : sequence of str, optional
        Channel types to keep (None: all).
    """

    window: WindowPlan
    features: tuple[dict[str, Any], ...]
    preprocess: tuple[dict[str, Any], ...] = ()
    labels: LabelPolicy = field(default_factory=LabelPolicy)
    channels: tuple[str, ...] | None = None
    channel_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        features = tuple({"name": f} if isinstance(f, str) else dict(f) for f in self.features)
        if not features or not all(isinstance(f.get("name"), str) for f in features):
            msg = (
                f"FeatureTableSpec: key 'features' expected a non-empty list of feature names "
                f"or mappings with key 'name', found {self.features!r}"
            )
            raise SpecError(msg)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "preprocess", tuple(validate_steps(list(self.preprocess))))
        for key in ("channels", "channel_types"):
            value = getattr(self, key)
            if value is not None:
                if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                    msg = f"FeatureTableSpec: key {key!r} expected a list of str, found {value!r}"
                    raise SpecError(msg)
                object.__setattr__(self, key, tuple(value))

    def steps(self) -> list[dict[str, Any]]:
        """Return the preprocessing steps, the channel selection first."""
        select = []
        if self.channels or self.channel_types:
            select = [
                {
                    "op": "select",
                    "channels": list(self.channels or []),
                    "types": list(self.channel_types or []),
                }
            ]
        return select + [dict(s) for s in self.preprocess]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        return {
            "window": self.window.to_dict(),
            "features": [dict(f) for f in self.features],
            "preprocess": [dict(s) for s in self.preprocess],
            "labels": self.labels.to_dict(),
            "channels": list(self.channels) if self.channels is not None else None,
            "channel_types": list(self.channel_types) if self.channel_types else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureTableSpec:
        """Build a spec from :meth:`to_dict` output."""
        return cls(
            window=WindowPlan.from_dict(data["window"]),
            features=tuple(data["features"]),
            preprocess=tuple(data.get("preprocess") or ()),
            labels=LabelPolicy.from_dict(data.get("labels") or {}),
            channels=data.get("channels"),
            channel_types=data.get("channel_types"),
        )

    @classmethod
    def from_task(cls, task: Any) -> FeatureTableSpec:
        """Build a spec from a :class:`pipeline.spec.TaskSpec`."""
        w = task.windows
        labels = LabelPolicy(
            mode=w.label,
            mixed=w.mixed,
            min_purity=1.0 if w.purity is None else float(w.purity),
            exclude=tuple(w.exclude_labels),
            dropped=w.dropped,
        )
        return cls(
            window=WindowPlan(w.length, w.step, w.unit),
            features=tuple(task.feature_specs()),
            preprocess=tuple(task.preprocess),
            labels=labels,
            channels=tuple(task.channels) if task.channels else None,
            channel_types=tuple(task.channel_types) if task.channel_types else None,
        )


# ------------------------------------------------------------------------ one recording


@dataclass(frozen=True)
class _Context:
    """What a partition task needs besides the blocks (small, picklable)."""

    recording: str
    subject: str | None
    session: str | None
    run: str | None
    sampling_rate: float
    length: int
    step: int
    columns: tuple[str, ...]
    label_kind: str  # "codes", "recording", "events", "none"
    label_names: dict[int, str]
    recording_label: str | None
    onsets: np.ndarray
    durations: np.ndarray
    policy: LabelPolicy


def _partition_values(
    feat_blocks: Sequence[np.ndarray],
    stat_blocks: Sequence[np.ndarray],
    k0: int,
    ctx: _Context,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the window starts (s), labels (object) and features ``(n_windows, n_columns)``
    of one partition, from feature blocks and per-sample label statistics blocks, windows
    dropped by the label policy left out.

    ``stat_blocks`` come from :func:`pipeline.labels.sample_label_stats` (majority code,
    its purity, centre code); the label and the mixed-window policy are applied here, as
    :func:`pipeline.labels.window_sample_labels` does, so that the labels cost one task per
    block rather than four.
    """
    feats = np.concatenate(feat_blocks, axis=0) if feat_blocks else np.zeros((0, 0, 0))
    nw = feats.shape[0]
    k = np.arange(k0, k0 + nw, dtype=np.int64)
    starts = k * ctx.step / ctx.sampling_rate
    keep = np.ones(nw, dtype=bool)
    if ctx.label_kind == "codes":
        stats = np.concatenate(stat_blocks, axis=0)[:, 0, :]
        codes = stats[:, 0 if ctx.policy.mode == "majority" else 2].astype(np.int64)
        if ctx.policy.mixed == "drop":
            keep &= stats[:, 1] >= ctx.policy.min_purity - 1e-12
        present, inverse = np.unique(codes, return_inverse=True)
        names = np.array([ctx.label_names.get(int(c), str(int(c))) for c in present], dtype=object)
        label = names[inverse]
    elif ctx.label_kind == "recording":
        label = np.full(nw, ctx.recording_label, dtype=object)
    elif ctx.label_kind == "events":
        hit = event_targets(
            starts,
            ctx.length / ctx.sampling_rate,
            ctx.onsets,
            ctx.durations,
            ctx.policy.min_overlap,
        )
        pos, neg = ctx.policy.event_labels
        label = np.where(hit, pos, neg).astype(object)
    else:
        label = np.full(nw, None, dtype=object)
    if ctx.policy.exclude:
        keep &= ~np.isin(label.astype(str), list(ctx.policy.exclude))
    flat = feats.reshape(nw, -1) if nw else np.zeros((0, len(ctx.columns)))
    if not keep.all():
        if ctx.policy.dropped == "unlabel":
            label = label.copy()
            label[~keep] = None
        else:
            starts, label, flat = starts[keep], label[keep], flat[keep]
    return starts, label, flat


def _frame(
    feat_blocks: Sequence[np.ndarray],
    stat_blocks: Sequence[np.ndarray],
    k0: int,
    ctx: _Context,
) -> pd.DataFrame:
    """Return one partition of the table as a DataFrame (see :func:`_partition_values`)."""
    starts, label, flat = _partition_values(feat_blocks, stat_blocks, k0, ctx)
    nw = len(starts)
    ids = pd.DataFrame(
        {
            "recording": pd.array([ctx.recording] * nw, dtype=_STR),
            "subject": pd.array([ctx.subject] * nw, dtype=_STR),
            "session": pd.array([ctx.session] * nw, dtype=_STR),
            "run": pd.array([ctx.run] * nw, dtype=_STR),
            "start": starts,
            "label": pd.array(label, dtype=_STR),
        }
    )
    # One 2-D float64 block: building 70-odd columns one by one cost more than the features.
    values = pd.DataFrame(flat.astype(np.float64, copy=False), columns=list(ctx.columns))
    return pd.concat([ids, values], axis=1)


def _write_frame(
    feat_blocks: Sequence[np.ndarray],
    stat_blocks: Sequence[np.ndarray],
    k0: int,
    ctx: _Context,
    path: str,
    schema: Any,
) -> int:
    """Write one partition straight to a Parquet file (no DataFrame); return its rows.

    Same rows and schema as ``_frame`` written by :func:`_write_partition`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    starts, label, flat = _partition_values(feat_blocks, stat_blocks, k0, ctx)
    nw = len(starts)

    def constant(name: str, value: str | None) -> Any:
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
    table = pa.Table.from_arrays(arrays, schema=schema)
    pq.write_table(table, path, use_dictionary=_DICTIONARY_COLUMNS)
    return nw


def _empty_frame(columns: Sequence[str]) -> pd.DataFrame:
    data: dict[str, Any] = {c: pd.array([], dtype=_STR) for c in ID_COLUMNS}
    data["start"] = np.zeros(0, dtype=np.float64)
    for c in columns:
        data[c] = np.zeros(0, dtype=np.float64)
    return pd.DataFrame(data)


def _label_names(attrs: Mapping[str, Any]) -> dict[int, str]:
    raw = attrs.get("label_names") or {}
    if isinstance(raw, str):
        raw = json.loads(raw)
    return {int(k): str(v) for k, v in dict(raw).items()}


def _none_if_missing(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _recording_partitions(
    ds: xr.Dataset, spec: FeatureTableSpec, max_partition_bytes: int
) -> tuple[list[Any], list[str]]:
    """Return the delayed partitions of one recording and its feature column names."""
    rid = str(ds.attrs.get("recording", "recording"))
    try:
        pre = apply_preprocessing(ds, spec.steps())
    except SpecError as exc:
        raise SpecError(f"recording {rid!r}: {exc}") from None
    fs = float(pre.attrs["sampling_rate"])
    length, step = spec.window.in_samples(fs)
    feature_specs = [dict(f) for f in spec.features]
    func, names = _make_block_function(feature_specs, fs)
    func_id = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', type(func))}"
    func = _TokenizedBlockFunction(
        func, json.dumps([feature_specs, fs, func_id], sort_keys=True, default=str)
    )
    channels = [str(c) for c in pre["channel"].values]
    columns = [f"{ch}__{name}" for ch in channels for name in names]
    x = pre["signal"].data
    feats = map_windows(x, length, step, func, len(names))

    policy = spec.labels
    kind = policy.source
    has_codes = "label" in pre.variables
    rec_label = _none_if_missing(pre.attrs.get("label"))
    if kind == "auto":
        kind = "codes" if has_codes else ("recording" if rec_label is not None else "none")
    elif kind == "samples":
        kind = "codes"
        if not has_codes:
            msg = f"recording {rid!r}: labels source 'samples' but it has no per-sample labels"
            raise SpecError(msg)
    elif kind == "recording" and rec_label is None:
        msg = f"recording {rid!r}: labels source 'recording' but it has no attribute 'label'"
        raise SpecError(msg)
    onsets = np.zeros(0)
    durations = np.zeros(0)
    if kind == "events":
        if "event_onset" in pre.variables:
            onsets = np.asarray(pre["event_onset"].values, dtype=np.float64)
            durations = np.asarray(pre["event_duration"].values, dtype=np.float64)
            if policy.event_description is not None:
                desc = np.asarray(pre["event_description"].values).astype(str)
                sel = desc == policy.event_description
                onsets, durations = onsets[sel], durations[sel]

    blocks = window_blocks(_nonzero(x.chunks[0]), length, step)
    feat_delayed = feats.to_delayed().ravel().tolist() if blocks else []
    stat_delayed: list[Any] = []
    if kind == "codes" and blocks:
        lab = pre["label"].data
        if not isinstance(lab, da.Array):
            lab = da.from_array(np.asarray(lab))
        # same chunks as the signal, so the window blocks line up with the feature blocks
        lab = lab.rechunk((x.chunks[0],))
        stats = map_windows(lab[:, None], length, step, sample_label_stats, 3)
        stat_delayed = stats.to_delayed().ravel().tolist()
    ctx = _Context(
        recording=rid,
        subject=_none_if_missing(pre.attrs.get("subject")),
        session=_none_if_missing(pre.attrs.get("session")),
        run=_none_if_missing(pre.attrs.get("run")),
        sampling_rate=fs,
        length=length,
        step=step,
        columns=tuple(columns),
        label_kind=kind,
        label_names=_label_names(pre.attrs),
        recording_label=rec_label,
        onsets=onsets,
        durations=durations,
        policy=policy,
    )
    max_rows = max(1, max_partition_bytes // (8 * (len(columns) + len(ID_COLUMNS))))
    parts = []
    group: list[int] = []
    rows = 0
    for b, (k0, k1) in enumerate(blocks):
        if group and rows + (k1 - k0) > max_rows:
            parts.append(_group_part(group, blocks, feat_delayed, stat_delayed, ctx))
            group, rows = [], 0
        group.append(b)
        rows += k1 - k0
    if group:
        parts.append(_group_part(group, blocks, feat_delayed, stat_delayed, ctx))
    if not parts:  # no whole window: keep an (empty) partition for the recording
        parts.append(_group_part([], [], [], [], ctx))
    return parts, columns


class _Subgraph:
    """A small task graph run as one task, with dask's synchronous scheduler, on a worker.

    Held in an object so that dask does not read the graph's tasks as arguments.
    """

    def __init__(self, key: str, graph: dict[Any, Any]) -> None:
        from dask.optimization import cull

        self.key = key
        self.graph, _ = cull(graph, [key])

    def __call__(self) -> Any:
        from dask.local import get_sync

        return get_sync(self.graph, self.key)


@dataclass(frozen=True)
class _Part:
    """One partition to build: its feature and label-statistics blocks, first window, context."""

    feats: tuple[Delayed, ...]
    stats: tuple[Delayed, ...]
    k0: int
    ctx: _Context
    fuse: bool = False

    def delayed(self, func: Callable[..., Any], name: str, **kwargs: Any) -> Delayed:
        """Return ``func(feat_blocks, stat_blocks, k0=, ctx=, **kwargs)`` as one task.

        Built by hand rather than with ``dask.delayed(func)(...)``, whose tokenizing and
        unpacking of the arguments cost ~20 ms per partition when building the graph.
        """
        deps = [*self.feats, *self.stats]
        feat_keys = [d.key for d in self.feats]
        stat_keys = [d.key for d in self.stats]
        task = (partial(func, k0=self.k0, ctx=self.ctx, **kwargs), feat_keys, stat_keys)
        graph = HighLevelGraph.from_collections(name, {name: task}, dependencies=deps)
        if len(self.feats) > 1 and not self.fuse:
            return Delayed(name, graph)
        # The partition's reads, preprocessing, features, labels and frame as one task, its
        # chunks one after the other: always for one block of windows (a recording of one
        # chunk), where five tasks cost the scheduler and the worker more than the features
        # did; for longer partitions when there are enough of them to keep every worker busy
        # (see _fuse_parts), which also keeps a partition's feature blocks on one worker.
        sub = _Subgraph(name, dict(graph))
        fused = f"fused-{name}"
        return Delayed(fused, HighLevelGraph.from_collections(fused, {fused: (sub,)}))

    def frame(self) -> Delayed:
        """Return the delayed DataFrame of this partition."""
        keys = [d.key for d in (*self.feats, *self.stats)]
        return self.delayed(_frame, f"_frame-{tokenize(keys, self.k0, self.ctx)}")


def _fuse_parts(parts: list[_Part], fuse: bool | None) -> list[_Part]:
    """Return ``parts``, each run as one task if ``fuse`` (None: if there are at least four
    partitions per worker; fewer keep one task per chunk, for parallelism within them)."""
    if fuse is None:
        from pipeline.cluster import n_workers

        fuse = len(parts) >= 4 * n_workers()
    return [replace(p, fuse=fuse) for p in parts] if fuse else parts


def _group_part(
    group: list[int],
    blocks: list[tuple[int, int]],
    feats: list[Delayed],
    stats: list[Delayed],
    ctx: _Context,
) -> _Part:
    """Return the partition made of the window blocks in ``group``."""
    return _Part(
        feats=tuple(feats[b] for b in group),
        stats=tuple(stats[b] for b in group) if stats else (),
        k0=blocks[group[0]][0] if group else 0,
        ctx=ctx,
    )


def _nonzero(chunks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(c for c in chunks if c > 0)
    return out or (0,)


def recording_features(
    ds: xr.Dataset,
    spec: FeatureTableSpec,
    *,
    max_partition_bytes: int = _MAX_PARTITION_BYTES,
    fuse: bool | None = None,
) -> pd.DataFrame:
    """Return the feature table of one recording, computed now.

    Parameters
    ----------
    ds : xarray.Dataset
        A recording (``signal (time, channel)``, ``attrs["sampling_rate"]``...), dask- or
        NumPy-backed.
    spec : FeatureTableSpec
    max_partition_bytes : int
        The recording's rows are split into several partitions beyond this size.
    fuse : bool, optional
        Compute each partition as one task, its chunks in sequence (True), or one task per
        chunk (False). Default: fuse when there are at least four partitions per worker.

    Returns
    -------
    pandas.DataFrame
        One row per window (mixed windows dropped if the policy says so); columns as in
        :func:`feature_table`.
    """
    parts, columns = _recording_partitions(ds, spec, max_partition_bytes)
    frames = dask.compute(*[p.frame() for p in _fuse_parts(parts, fuse)])
    if not frames:
        return _empty_frame(columns)
    return pd.concat(frames, ignore_index=True)


def feature_table(
    cohort: Cohort,
    spec: FeatureTableSpec,
    recordings: Sequence[str] | None = None,
    *,
    max_partition_bytes: int = _MAX_PARTITION_BYTES,
    fuse: bool | None = None,
) -> dd.DataFrame:
    """Return the lazy feature table of a cohort: one row per window.

    Parameters
    ----------
    cohort : pipeline.store.Cohort
        An open cohort store.
    spec : FeatureTableSpec
        Preprocessing, windows, features, labels and channel selection.
    recordings : sequence of str, optional
        Recording ids (default: all, in index order).
    max_partition_bytes : int
        A recording's rows are split into several partitions beyond this size.
    fuse : bool, optional
        Compute each partition as one task, its chunks in sequence (True): parallel across
        partitions, few tasks, a partition's data on one worker. False: one task per chunk,
        parallel within long recordings too. Default: fuse when there are at least four
        partitions per worker (of the current distributed client, else per core). A
        recording of one chunk is always one task.

    Returns
    -------
    dask.dataframe.DataFrame
        Columns ``recording, subject, session, run, start, label`` then
        ``<channel>__<feature>`` (float64); at least one partition per recording, in
        recording order, windows in time order.

    Raises
    ------
    SpecError
        If a step or window does not fit a recording, or recordings end up with different
        feature columns (select common channels with ``channels``).
    """
    rids = list(cohort.recording_ids if recordings is None else recordings)
    if not rids:
        msg = f"feature_table: no recordings to process in {str(cohort.path)!r}"
        raise StoreError(msg)
    parts: list[Any] = []
    columns: list[str] | None = None
    first = None
    for rid in rids:
        rec_parts, rec_columns = _recording_partitions(
            cohort.recording(rid), spec, max_partition_bytes
        )
        if columns is None:
            columns, first = rec_columns, rid
        elif rec_columns != columns:
            extra = sorted(set(rec_columns) - set(columns))[:5]
            missing = sorted(set(columns) - set(rec_columns))[:5]
            msg = (
                f"recording {rid!r} gives feature columns that differ from those of {first!r}"
                f" (extra {extra!r}, missing {missing!r}); select the channels common to "
                f"all recordings with the spec key 'channels'"
            )
            raise SpecError(msg)
        parts.extend(rec_parts)
    assert columns is not None
    parts = _fuse_parts(parts, fuse)
    log.info("feature table: %d recordings, %d partitions", len(rids), len(parts))
    ddf = dd.from_delayed([p.frame() for p in parts], meta=_empty_frame(columns), verify_meta=False)
    # write_feature_table writes these partitions straight to Parquet when it gets this very
    # object (any operation on it returns a new object without the attribute).
    ddf._feature_table_parts = parts
    return ddf


# ------------------------------------------------------------------------ Parquet I/O


def feature_table_metadata(
    cohort: Cohort, spec: FeatureTableSpec, recordings: Sequence[str] | None = None
) -> dict[str, Any]:
    """Return the metadata kept with a feature table (JSON-serialisable).

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


def write_feature_table(
    ddf: dd.DataFrame,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write a feature table as Parquet, atomically, with ``metadata`` in every file.

    The files go to a temporary folder next to ``path``, renamed into place once complete;
    a run killed midway leaves no folder at ``path``.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        From :func:`feature_table`.
    path : path
        Destination folder.
    metadata : mapping
        JSON-serialisable; stored under the key-value metadata key ``cohort_pipeline``.
    overwrite : bool
        Replace an existing table at ``path`` (otherwise an error).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"feature table {str(path)!r} already exists; pass overwrite=True to replace it"
        raise StoreError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    payload = json.dumps(dict(metadata), sort_keys=True, default=str).encode()
    import pyarrow as pa

    schema = pa.Schema.from_pandas(ddf._meta, preserve_index=False)
    schema = schema.with_metadata({**(schema.metadata or {}), METADATA_KEY: payload})
    run = uuid.uuid4().hex[:12]
    # One task per partition writes it (rather than ``ddf.to_parquet``). For a table straight
    # from feature_table, that task also assembles the partition, as Arrow arrays: no
    # DataFrame is built, sized by the workers (dask's sizeof of a wide frame cost about as
    # much as its features) or converted, and the scheduler handles fewer tasks.
    parts = getattr(ddf, "_feature_table_parts", None)
    if parts is not None:
        writes = [
            p.delayed(
                _write_frame,
                f"write-feature-table-{run}-{i}",
                path=str(tmp / f"part.{i:05d}.parquet"),
                schema=schema,
            )
            for i, p in enumerate(parts)
        ]
    else:
        writes = [
            Delayed(
                name := f"write-feature-table-{run}-{i}",
                HighLevelGraph.from_collections(
                    name,
                    {
                        name: (
                            _write_partition,
                            part.key,
                            str(tmp / f"part.{i:05d}.parquet"),
                            schema,
                        )
                    },
                    dependencies=[part],
                ),
            )
            for i, part in enumerate(ddf.to_delayed())
        ]
    try:
        tmp.mkdir()
        dask.compute(*writes)
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("feature table written to %s", path)
    return path


def _write_partition(frame: pd.DataFrame, path: str, schema: Any) -> int:
    """Write one partition as a Parquet file with ``schema``; return its number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table, path, use_dictionary=_DICTIONARY_COLUMNS)
    return table.num_rows


def _part_number(path: Path) -> tuple[int, str]:
    stem = path.name.split(".")
    return (int(stem[1]) if len(stem) == 3 and stem[1].isdigit() else -1, path.name)


def read_feature_table(path: str | os.PathLike[str]) -> tuple[dd.DataFrame, dict[str, Any]]:
    """Return a written feature table and its metadata.

    Raises
    ------
    StoreError
        If ``path`` holds no Parquet file or the files carry no feature-table metadata.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    files = sorted(path.glob("*.parquet"), key=_part_number) if path.is_dir() else []
    if not files:
        msg = f"feature table {str(path)!r}: expected a folder of .parquet files, found none"
        raise StoreError(msg)
    kv = pq.read_schema(files[0]).metadata or {}
    if METADATA_KEY not in kv:
        msg = (
            f"feature table {str(files[0])!r}: no {METADATA_KEY.decode()!r} key-value "
            f"metadata; was it written by write_feature_table?"
        )
        raise StoreError(msg)
    metadata = json.loads(kv[METADATA_KEY])
    return dd.read_parquet([str(f) for f in files]), metadata


# --------------------------------------------------------------------- spec files / CLI

_SPEC_KEYS = ("preprocess", "channels", "channel_types", "windows", "labels", "features")


def load_feature_spec(path: str | os.PathLike[str]) -> FeatureTableSpec:
    """Load a feature spec from YAML.

    Either a task spec (keys ``data``, ``model``...: read with :func:`pipeline.spec.load_task`)
    or a feature spec::

        preprocess: [{op: bandpass, low: 20, high: 450}]
        channels: [ch1, ch2]            # optional; or channel_types: [emg]
        windows: {length: 0.2, step: 0.05, unit: seconds,
                  label: majority, mixed: drop, purity: 0.9, exclude_labels: [unmarked]}
        labels: {source: auto}          # optional: source, min_overlap, event_description...
        features: [mav, rms, {name: zc, threshold: 0.01}]

    Raises
    ------
    SpecError
        Naming the file and the key, what was expected and what was found.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        msg = f"feature spec {str(path)!r} not found"
        raise SpecError(msg)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        msg = f"{path}: expected a mapping with keys {list(_SPEC_KEYS)!r}, found {raw!r}"
        raise SpecError(msg)
    if "data" in raw or "model" in raw:
        from pipeline.spec import load_task

        return FeatureTableSpec.from_task(load_task(path))
    unknown = sorted(set(raw) - set(_SPEC_KEYS))
    if unknown:
        msg = f"{path}: unknown key(s) {unknown!r}; expected some of {list(_SPEC_KEYS)!r}"
        raise SpecError(msg)
    for key in ("windows", "features"):
        if key not in raw:
            msg = f"{path}: missing required key {key!r}"
            raise SpecError(msg)
    try:
        w = dict(raw["windows"])
        plan = {"unit": "seconds"} | {k: w.pop(k) for k in ("length", "step", "unit") if k in w}
        window = WindowPlan.from_dict(plan)
        policy = dict(raw.get("labels") or {})
        renames = {"label": "mode", "mixed": "mixed", "purity": "min_purity"}
        for old, new in renames.items():
            if old in w:
                policy[new] = w.pop(old)
        if policy.get("min_purity") is None:
            policy.pop("min_purity", None)
        if "exclude_labels" in w:
            policy["exclude"] = tuple(w.pop("exclude_labels"))
        if w:
            msg = (
                f"unknown key(s) {sorted(w)!r} in 'windows'; expected length, step, unit, "
                f"label, mixed, purity, exclude_labels"
            )
            raise SpecError(msg)
        features = raw["features"]
        if not isinstance(features, list):
            msg = f"key 'features' expected a list, found {features!r}"
            raise SpecError(msg)
        features = [{"name": f} if isinstance(f, str) else _flatten_feature(f) for f in features]
        channels = raw.get("channels")
        return FeatureTableSpec(
            window=window,
            features=tuple(features),
            preprocess=tuple(raw.get("preprocess") or ()),
            labels=LabelPolicy.from_dict(policy),
            channels=tuple(channels) if isinstance(channels, list) else channels,
            channel_types=raw.get("channel_types"),
        )
    except (SpecError, ValueError, TypeError) as exc:
        raise SpecError(f"{path}: {exc}") from None


def _flatten_feature(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or "name" not in item:
        msg = f"key 'features' expected names or mappings with key 'name', found {item!r}"
        raise SpecError(msg)
    params = dict(item.get("params") or {})
    return {"name": item["name"], **params, **{k: v for k, v in item.items() if k != "params"}}


def run_features(
    store: str | os.PathLike[str],
    spec_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    recordings: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Compute a cohort's feature table from a spec file and write it as Parquet.

    Parameters
    ----------
    store : path
        The cohort store.
    spec_path : path
        Feature or task spec (YAML), see :func:`load_feature_spec`.
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
    from pipeline.store import open_cohort

    spec = load_feature_spec(spec_path)
    cohort = open_cohort(store)
    ddf = feature_table(cohort, spec, recordings)
    metadata = feature_table_metadata(cohort, spec, recordings)
    return write_feature_table(ddf, out, metadata, overwrite=overwrite)
