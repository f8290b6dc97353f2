"""The feature-table graph: one row per window, one column per (channel, feature).

:func:`feature_table` builds a lazy dask DataFrame from a cohort store: per recording,
channel selection and preprocessing (:mod:`pipeline.preprocessing`), chunk-exact windows
(:func:`pipeline.windows.map_windows`) through the fused feature kernels, and window labels
(:mod:`pipeline.labels`). Feature blocks are separate tasks, so the work runs in parallel
across recordings and across the chunks of a long recording; each recording gives one
partition (more when its table would exceed ``max_partition_bytes``).

Columns: ``recording, subject, session, run`` (str, null when absent), ``start`` (window
start in seconds, float64), ``label`` (class name, str, null when the window has none), then
``<channel>__<feature>`` float64, in channel-major order.

:func:`plan_table` is the one graph construction: the Parquet writer
(:mod:`pipeline.table.parquet`) and :func:`feature_table` both start from its partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import xarray as xr
from dask._task_spec import Task, convert_legacy_graph, cull
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from pipeline._fs import canonical_json
from pipeline.cluster import n_workers
from pipeline.exceptions import SpecError, StoreError
from pipeline.features.registry import FeatureSpec, table_columns
from pipeline.labels import LabelPolicy, event_targets, sample_label_stats
from pipeline.preprocessing import apply_preprocessing
from pipeline.store import label_names
from pipeline.table.spec import FeatureTableSpec
from pipeline.windows import map_windows, window_blocks

if TYPE_CHECKING:
    from pipeline.store import Cohort

__all__ = ["ID_COLUMNS", "TablePlan", "feature_table", "plan_table", "recording_features"]

log = logging.getLogger(__name__)

ID_COLUMNS = ("recording", "subject", "session", "run", "start", "label")
_STR = pd.StringDtype(na_value=np.nan)
_MAX_PARTITION_BYTES = 64 * 2**20


def _make_block_function(
    specs: list[dict[str, Any]], sampling_rate: float, n_channels: int | None = None
) -> tuple[Callable[[np.ndarray, int, int], np.ndarray], list[str]]:
    # Indirection so tests can substitute an independent NumPy block function.
    from pipeline.features import make_block_function

    return make_block_function(specs, sampling_rate, n_channels)


_REBUILT: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {}  # per process, by token
_MAX_REBUILT = 64


class _TokenizedBlockFunction:
    """A block function that dask tokenizes by its spec instead of by pickling it, and that
    pickles as its spec when it was made by :func:`pipeline.features.make_block_function`.

    Tokenizing the fused closure makes dask cloudpickle it (Numba dispatchers included),
    which cost ~25 ms per recording when building the graph; the spec, the sampling rate and
    the function's qualified name identify it as well. Sent to a worker, the closure was
    pickled by value once per recording (by the client, and again by the scheduler); as
    ``rebuild = (specs, sampling_rate, n_channels)`` it is rebuilt once per worker process
    and token (:func:`_rebuilt_block_function`). Any other function (a test's NumPy
    stand-in) is pickled by value, as before.
    """

    def __init__(
        self,
        func: Callable[[np.ndarray, int, int], np.ndarray],
        token: str,
        rebuild: tuple[list[dict[str, Any]], float, int | None] | None = None,
    ) -> None:
        self.func = func
        self.token = token
        self.rebuild = rebuild
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, block: np.ndarray, length: int, step: int) -> np.ndarray:
        return self.func(block, length, step)

    def __dask_tokenize__(self) -> str:
        return self.token

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.rebuild is None:
            return _TokenizedBlockFunction, (self.func, self.token)
        return _rebuilt_block_function, (*self.rebuild, self.token)


def _rebuilt_block_function(
    specs: list[dict[str, Any]], sampling_rate: float, n_channels: int | None, token: str
) -> _TokenizedBlockFunction:
    """Return the block function of ``specs``, built once per process and token (unpickling)."""
    func = _REBUILT.get(token)
    if func is None:
        from pipeline.features import make_block_function

        func = make_block_function(specs, sampling_rate, n_channels)[0]
        if len(_REBUILT) >= _MAX_REBUILT:
            _REBUILT.clear()
        _REBUILT[token] = func
    return _TokenizedBlockFunction(func, token, (specs, sampling_rate, n_channels))


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
    keep: np.ndarray | None = None  # flat indices kept (pairwise: the upper triangle)


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
    if nw and ctx.keep is not None:  # the upper triangle of pairwise features
        flat = flat[:, ctx.keep]
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


def _empty_frame(columns: Sequence[str]) -> pd.DataFrame:
    data: dict[str, Any] = {c: pd.array([], dtype=_STR) for c in ID_COLUMNS}
    data["start"] = np.zeros(0, dtype=np.float64)
    for c in columns:
        data[c] = np.zeros(0, dtype=np.float64)
    return pd.DataFrame(data)


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
    channels = [str(c) for c in pre["channel"].values]
    if any(FeatureSpec.coerce(f).info.family == "pairwise" for f in feature_specs):
        block_channels: int | None = len(channels)
        func, names = _make_block_function(feature_specs, fs, block_channels)
    else:  # per-channel features only: the block function serves any channel count
        block_channels = None
        func, names = _make_block_function(feature_specs, fs)
    func_id = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', type(func))}"
    # the features' own block functions are rebuilt from their spec on the worker; any other
    # (a substituted one) travels by value
    own = func_id.startswith("pipeline.features.")
    rebuild = (feature_specs, fs, block_channels) if own else None
    func = _TokenizedBlockFunction(
        func,
        canonical_json([feature_specs, fs, func_id], "feature specs", strict=False),
        rebuild,
    )
    columns, keep = table_columns(channels, names)
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
                # The store's strings are StringDType, which has no cast to a fixed-width str.
                desc = pre["event_description"].values.tolist()
                sel = np.array([str(d) == policy.event_description for d in desc], dtype=bool)
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
        keep=None if keep is None else np.asarray(keep, np.intp),
        label_kind=kind,
        label_names=label_names(pre),
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


def fuse_delayed(obj: Delayed, name: str) -> Delayed:
    """Return ``obj`` with its whole graph fused into one task named ``name``.

    dask's own task fusion (:meth:`dask._task_spec.Task.fuse`, the mechanism of its array
    optimiser): the scheduler sees, schedules and reports one task, which runs the culled
    subgraph inline, in dependency order, without starting a scheduler of its own.
    """
    graph = convert_legacy_graph(dict(obj.__dask_graph__()))
    tasks = cull(graph, [obj.key])
    fused = Task.fuse(*tasks.values(), key=name)
    return Delayed(name, HighLevelGraph.from_collections(name, {name: fused}))


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
        out = Delayed(name, graph)
        if not self.fused:
            return out
        # The partition's reads, preprocessing, features, labels and frame as one task, its
        # chunks one after the other: always for one block of windows (a recording of one
        # chunk), where five tasks cost the scheduler and the worker more than the features
        # did; for longer partitions when there are enough of them to keep every worker busy
        # (see _fuse_parts), which also keeps a partition's feature blocks on one worker.
        return fuse_delayed(out, f"fused-{name}")

    @property
    def fused(self) -> bool:
        """Whether :meth:`delayed` gives one task for the whole partition."""
        return self.fuse or len(self.feats) <= 1

    def token(self) -> str:
        """Return a token of the partition's inputs (block keys, first window, context)."""
        keys = [d.key for d in (*self.feats, *self.stats)]
        return tokenize(keys, self.k0, self.ctx)

    def frame(self) -> Delayed:
        """Return the delayed DataFrame of this partition."""
        return self.delayed(_frame, f"_frame-{self.token()}")


def _should_fuse(n_parts: int, fuse: bool | None) -> bool:
    """Return ``fuse``, or (None) whether there are at least four partitions per worker."""
    if fuse is None:
        return n_parts >= 4 * n_workers()
    return fuse


def _fuse_parts(parts: list[_Part], fuse: bool | None) -> list[_Part]:
    """Return ``parts``, each run as one task if ``fuse`` (None: if there are at least four
    partitions per worker; fewer keep one task per chunk, for parallelism within them)."""
    return [replace(p, fuse=True) for p in parts] if _should_fuse(len(parts), fuse) else parts


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


@dataclass(frozen=True)
class TablePlan:
    """The partitions of a feature table, recording by recording (built, not computed).

    Attributes
    ----------
    parts : dict of str to list of _Part
        Per recording id, in table order, its partitions in time order.
    columns : tuple of str
        The feature columns ``<channel>__<feature>``, the same for every recording.
    """

    parts: dict[str, list[_Part]]
    columns: tuple[str, ...]

    @property
    def recordings(self) -> list[str]:
        """Return the recording ids, in table order."""
        return list(self.parts)

    def all_parts(self) -> list[_Part]:
        """Return every partition, recording after recording."""
        return [p for parts in self.parts.values() for p in parts]

    def meta(self) -> pd.DataFrame:
        """Return the empty DataFrame with the table's columns and dtypes."""
        return _empty_frame(self.columns)


def plan_table(
    cohort: Cohort,
    spec: FeatureTableSpec,
    recordings: Sequence[str] | None = None,
    *,
    max_partition_bytes: int = _MAX_PARTITION_BYTES,
    fuse: bool | None = None,
) -> TablePlan:
    """Return the partitions of a cohort's feature table, per recording.

    Parameters are those of :func:`feature_table`.

    Raises
    ------
    StoreError
        If there is no recording to process.
    SpecError
        If a step or window does not fit a recording, or recordings end up with different
        feature columns.
    """
    rids = list(cohort.recording_ids if recordings is None else recordings)
    if not rids:
        msg = f"feature_table: no recordings to process in {str(cohort.path)!r}"
        raise StoreError(msg)
    per_recording: dict[str, list[_Part]] = {}
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
        per_recording[rid] = rec_parts
    assert columns is not None
    n_parts = sum(len(p) for p in per_recording.values())
    do_fuse = _should_fuse(n_parts, fuse)
    if do_fuse:
        per_recording = {r: [replace(p, fuse=True) for p in ps] for r, ps in per_recording.items()}
    log.info("feature table: %d recordings, %d partitions", len(rids), n_parts)
    return TablePlan(per_recording, tuple(columns))


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
    pandas.DataFrame of shape (n_windows, 6 + n_channels * n_features)
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

    To write it, use :func:`pipeline.table.write_feature_table` (same arguments), which
    builds the same partitions and writes one Parquet file per recording.

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
    plan = plan_table(cohort, spec, recordings, max_partition_bytes=max_partition_bytes, fuse=fuse)
    frames = [p.frame() for p in plan.all_parts()]
    return dd.from_delayed(frames, meta=plan.meta(), verify_meta=False)
