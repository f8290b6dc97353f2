"""The distributed engine: fit and validate with the feature table left on the cluster.

``model.engine: distributed`` (or ``auto`` on a table above ``model.memory_budget``) runs
here. The table is a dask DataFrame whose partitions hold whole recordings (one Parquet
file per recording, :func:`pipeline.table.read_feature_table`); it is never collected.

Two passes over it, each one task per partition (named ``statistics_pass`` and
``prediction_pass`` on the dashboard):

1. **Statistics.** Each partition is prepared by the model's
   :class:`~pipeline.learn.prep.FeaturePrep` (the per-recording z-score uses the
   recording's own windows, which are all in the partition, so the moments are those of
   the normalised features the memory engine sees) and reduced to per (fold unit, class)
   :class:`~pipeline.learn.sufficient.Moments`; the partitions' moments are summed in a
   tree on the cluster. The fold unit is the subject for ``loso`` and ``group_kfold``, the
   recording otherwise.
2. **Held-out predictions.** Every fold's model is built from its training statistics
   (the total minus the held-out units' for the subject-level schemes) with algebra only
   (:mod:`pipeline.learn.sufficient`); each partition predicts its recordings with the
   model of the fold that tests them, smooths per recording, and returns the labeled
   windows' identifiers and class probabilities. Metrics are computed from those (one
   row of probabilities per labeled window, not the feature columns).

Models that need their data in memory (``random_forest``, ``gradient_boosting``,
``soft_vote``) fit on a subsample drawn in one more pass: per (recording, class), a share of
``model.max_train_windows`` proportional to its windows, drawn with a generator seeded by
the task seed and the recording name (reproducible whatever the partitioning); the report
lists the windows drawn per subject and class. They predict every held-out window in the
prediction pass like the others.

The final model is built from the total statistics (or the whole subsample). Both engines
return the same report schema and the same :class:`~pipeline.learn.model.Bundle` (a plain
scikit-learn ``Pipeline``). ``sgd`` goes to the dask-ml stream of :mod:`pipeline.learn.outofcore`.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from pipeline.exceptions import SpecError
from pipeline.learn.calibrate import (
    calibrated_stats,
    calibration_pass,
    curve_point,
    joint_prepare,
    subject_calibration,
)
from pipeline.learn.estimators import make_estimator, model_spec
from pipeline.learn.metrics import (
    auc_from_scores,
    metrics_from_confusion,
    oof_frame,
    roc_curves_from_codes,
    rows_by_code,
    summarize_subjects,
    threshold_at_specificity,
    write_oof,
)
from pipeline.learn.model import Bundle, config_json, model_metadata
from pipeline.learn.outofcore import OUT_OF_CORE_ESTIMATORS, fit_and_validate_dask
from pipeline.learn.permutation import (
    DEFAULT_PERMUTATIONS,
    permuted_recording_labels,
    summarize_nulls,
)
from pipeline.learn.permutation import skipped as skipped_permutation
from pipeline.learn.prep import ID_COLUMNS, FeaturePrep, _tangent_kinds, trailing_mean
from pipeline.learn.riemann import RiemannMean, mean_from_sum, mean_sum
from pipeline.learn.sufficient import (
    SUFFICIENT_ESTIMATORS,
    Moments,
    class_moments,
    gaussian_nb_from_moments,
    lda_from_moments,
    needs_fourth_moments,
    scaler_from_moments,
)
from pipeline.learn.trust import trust_sections_from_codes
from pipeline.learn.validation import (
    CalibratedLeaveSubjectOut,
    check_dask_table,
    make_folds,
    make_splitter,
    validation_spec,
)
from pipeline.spec.learn import DISTRIBUTED_ESTIMATORS, ModelSpec, ValidationSpec

__all__ = [
    "DISTRIBUTED_ESTIMATORS",
    "default_memory_budget",
    "fit_and_validate_distributed",
    "resolve_engine",
    "table_nbytes",
]

logger = logging.getLogger(__name__)


_Key = tuple[str, str]  # (fold unit, class)


def table_nbytes(paths: Sequence[str | os.PathLike[str]]) -> int:
    """Return the in-memory size of a feature table estimated from its Parquet footers.

    Eight bytes per value of a numeric column, 64 per value of a string column (the
    pandas object and its characters); no data page is read.

    Parameters
    ----------
    paths : sequence of path
        The table's Parquet files.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    total = 0
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        schema = meta.schema.to_arrow_schema()
        per_row = sum(64 if pa.types.is_string(f.type) else 8 for f in schema)
        total += meta.num_rows * per_row
    return int(total)


def default_memory_budget() -> int:
    """Return half the smallest worker's ``memory_limit`` (half the RAM without a cluster)."""
    try:
        from distributed import default_client

        workers = default_client().scheduler_info()["workers"].values()
        limits = [int(w["memory_limit"]) for w in workers if w.get("memory_limit")]
        if limits:
            return min(limits) // 2
    except (ImportError, ValueError):
        pass
    import psutil

    return int(psutil.virtual_memory().total // 2)


def resolve_engine(spec: ModelSpec, nbytes: int | None) -> str:
    """Return ``"memory"`` or ``"distributed"`` for a model spec and a table size.

    Parameters
    ----------
    spec : ModelSpec
    nbytes : int or None
        The table's in-memory size (:func:`table_nbytes`); None with ``auto`` means memory.

    Raises
    ------
    SpecError
        If ``auto`` finds the table above the budget and the model has no distributed fit.
    """
    if spec.engine != "auto":
        return spec.engine
    if nbytes is None:
        return "memory"
    budget = spec.memory_budget or default_memory_budget()
    if nbytes <= budget:
        return "memory"
    if spec.name not in DISTRIBUTED_ESTIMATORS:
        msg = (
            f"model.engine 'auto': the feature table takes about {nbytes / 1e9:.2f} GB in "
            f"memory, above model.memory_budget {budget / 1e9:.2f} GB, and model.name "
            f"{spec.name!r} has no distributed fit (expected one of "
            f"{list(DISTRIBUTED_ESTIMATORS)}); pick one of them, or raise model.memory_budget"
        )
        raise SpecError(msg)
    return "distributed"


def _check_finite(df: pd.DataFrame, cols: list[str]) -> None:
    vals = df.loc[:, cols].to_numpy(dtype="float64")
    bad = ~np.isfinite(vals)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        first = df.iloc[row]
        msg = (
            f"feature table: recording {first['recording']!r}, column {cols[col]!r}, window "
            f"start {float(first['start'])!r} s holds {float(vals[row, col])!r}; expected finite "
            f"feature values ({int(bad.sum())} non-finite in this partition); check the "
            "recording's signal or the feature's parameters"
        )
        raise SpecError(msg)


class Prepared(NamedTuple):
    """A partition's identifier columns and its prepared features (kept on a worker).

    Attributes
    ----------
    ids : pandas.DataFrame of shape (n_windows, n_ids)
        The :data:`~pipeline.learn.prep.ID_COLUMNS`, with the partition's index.
    X : numpy.ndarray of shape (n_windows, n_prepared)
        ``prep.transform`` of the partition.
    """

    ids: pd.DataFrame
    X: np.ndarray


def prepare_partition(df: pd.DataFrame, prep: FeaturePrep) -> Prepared:
    """Return a partition prepared once for every pass (checked for non-finite values).

    The prep is label-free and fitted on no window (per-recording statistics come from
    the recording's own windows, all in the partition), so the statistics, subsample and
    prediction passes can share one preparation: held between the passes when the table
    is (:func:`_keep_on_workers`).
    """
    if len(df):
        _check_finite(df, list(prep.columns_))
        X = np.asarray(prep.transform(df), dtype=float)
    else:
        X = np.zeros((0, len(prep.columns_)))
    return Prepared(df.loc[:, list(ID_COLUMNS)], X)


def _unpack(df: pd.DataFrame | Prepared, prep: FeaturePrep) -> tuple[pd.DataFrame, Any]:
    """Return the identifier table and a function giving the prepared features."""
    if isinstance(df, Prepared):
        return df.ids, lambda: df.X

    def transform() -> np.ndarray:
        _check_finite(df, list(prep.columns_))
        return prep.transform(df)

    return df, transform


def statistics_pass(
    df: pd.DataFrame | Prepared, prep: FeaturePrep, unit: str, fourth: bool
) -> tuple[pd.DataFrame, dict[_Key, Moments]]:
    """Return one partition's window counts and per (unit, class) moments.

    Parameters
    ----------
    df : pandas.DataFrame of shape (n_windows, n_columns), or Prepared
        Whole recordings (or whole subjects for ``normalize: subject``), raw or already
        prepared (:func:`prepare_partition`).
    prep : FeaturePrep
        Fitted (it knows its columns).
    unit : {"subject", "recording"}
    fourth : bool
        Accumulate the fourth moments (Ledoit-Wolf).

    Returns
    -------
    counts : pandas.DataFrame
        ``recording, subject, session, run, label, n`` (label "" for unlabeled windows).
    moments : dict
        ``{(unit, class): Moments}`` of the prepared labeled windows.
    """
    df, features = _unpack(df, prep)
    ids = ["recording", "subject", "session", "run"]
    labels = df["label"].astype(object).where(df["label"].notna(), "").astype(str)
    frame = df.loc[:, ids].astype(object).where(df.loc[:, ids].notna(), "").astype(str)
    counts = (
        frame.assign(label=labels.to_numpy()).value_counts(dropna=False).rename("n")
    ).reset_index()
    if len(df) == 0:
        return counts, {}
    X = features()
    lab = (labels != "").to_numpy()
    keys = pd.DataFrame({"u": df[unit].astype(str).to_numpy()[lab], "c": labels.to_numpy()[lab]})
    Xl = X[lab]
    # (n, p) x (n, p) products with p ~ 100: BLAS threads cost more than they save
    with threadpool_limits(1):
        out = {
            (u, c): class_moments(Xl[rows], fourth)
            for (u, c), rows in keys.groupby(["u", "c"], sort=True).indices.items()
        }
    return counts, out


def _item(pair: tuple[Any, Any], i: int) -> Any:
    return pair[i]


def _merge(*parts: dict[_Key, Moments]) -> dict[_Key, Moments]:
    out: dict[_Key, Moments] = {}
    for part in parts:
        for key, m in part.items():
            out[key] = out[key] + m if key in out else m
    return out


def _tree_sum(parts: list[Any], width: int = 8) -> Any:
    """Sum the partitions' moments on the cluster, ``width`` at a time (no single wide task)."""
    merge = dask.delayed(_merge, pure=True)
    while len(parts) > 1:
        parts = [merge(*parts[i : i + width]) for i in range(0, len(parts), width)]
    return parts[0]


def run_statistics(
    parts: list[Any], prep: FeaturePrep, unit: str, fourth: bool
) -> tuple[list[pd.DataFrame], dict[_Key, Moments]]:
    """Run the statistics pass: every partition's counts, and the moments summed on the cluster.

    Parameters
    ----------
    parts : list of dask.delayed
        The table's partitions (:func:`_batches`), raw or prepared.
    prep : FeaturePrep
    unit : {"subject", "recording"}
    fourth : bool
        Accumulate the fourth moments (Ledoit-Wolf).

    Returns
    -------
    counts : list of pandas.DataFrame
        One per partition, as :func:`statistics_pass`.
    moments : dict
        ``{(unit, class): Moments}`` of the whole table.
    """
    done = _compute_pass(
        "statistics",
        [
            dask.delayed(statistics_pass)(
                p, prep, unit, fourth, dask_key_name=_key("statistics", i)
            )
            for i, p in enumerate(parts)
        ],
    )
    count_list, moments = dask.compute(
        [dask.delayed(_item, pure=True)(d, 0) for d in done],
        _tree_sum([dask.delayed(_item, pure=True)(d, 1) for d in done]),
    )
    return list(count_list), moments


MAX_BATCH = 8
"""Most partitions (recordings) one task of a pass handles."""


def _n_workers() -> int:
    try:
        from distributed import default_client

        return max(1, len(default_client().scheduler_info()["workers"]))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


BATCH_BYTES = 128 * 2**20
"""Most in-memory bytes of table (:func:`table_nbytes`) one task of a pass handles."""


def _batches(parts: list[Any], nbytes: int | None = None) -> list[Any]:
    """Group partitions into about four tasks per worker (at most :data:`MAX_BATCH` each).

    A recording's table is small (about 1 MB for an EMG recording): per-task and
    per-pandas-call overheads outweigh the work, so a pass handles several at once. With
    the table's in-memory size ``nbytes`` known, a task also holds at most about
    :data:`BATCH_BYTES` of it: a task's peak is a few times its table (raw, prepared,
    the groups' copies), and eight 10-minute recordings (420 MB) took a 4 GiB worker over
    its limit in the prediction pass (measured).
    """
    k = max(1, min(MAX_BATCH, -(-len(parts) // (4 * _n_workers()))))
    if nbytes and parts:
        k = max(1, min(k, BATCH_BYTES * len(parts) // nbytes))
    if k == 1:
        return list(parts)
    groups = [parts[i : i + k] for i in range(0, len(parts), k)]
    own = _own_graphs(parts)
    if own is not None:
        # each batch reads its own files in its task: read as separate tasks, a batch's
        # partitions were spread over the workers and 5 of 8 batches of a 2-worker pass
        # fetched some from the other worker (measured), pickled both ways
        read = dask.delayed(_read_batch, pure=True)
        return [
            read(_Subgraph(own[i : i + k], [p.key for p in g]))
            for i, g in zip(range(0, len(parts), k), groups, strict=True)
        ]
    concat = dask.delayed(_concat, pure=True)
    return [concat(*g) for g in groups]


class _Subgraph:
    """The tasks computing some partitions, carried into one task as an opaque argument.

    dask traverses lists, tuples and dicts of a delayed call's arguments; it leaves an
    object of another class as it is, so these tasks run where the task that holds them
    runs (:func:`_read_batch`), not on the scheduler's choice of worker.
    """

    __slots__ = ("graph", "keys")

    def __init__(self, graphs: list[dict[Any, Any]], keys: list[Any]) -> None:
        self.graph = {key: task for g in graphs for key, task in g.items()}
        self.keys = keys


def _own_graphs(parts: list[Any]) -> list[dict[Any, Any]] | None:
    """Return each partition's own tasks, or None when a partition needs another's.

    A table read one file per partition (:func:`pipeline.table.read_feature_table`) needs
    a task or two a partition, none shared; a shuffled table's partitions share the whole
    shuffle, which is left to the scheduler.
    """
    out: list[dict[Any, Any]] = []
    seen: set[Any] = set()
    for p in parts:
        graph = getattr(p, "__dask_graph__", None)
        if graph is None or not hasattr(graph(), "cull"):
            return None
        own = dict(graph().cull({p.key}))
        if len(own) > 4 or seen & own.keys():
            return None
        seen |= own.keys()
        out.append(own)
    return out


def _read_batch(sub: _Subgraph) -> pd.DataFrame:
    """Return the partitions of ``sub`` computed in this task, concatenated."""
    from dask.local import get_sync

    return _concat(*get_sync(sub.graph, sub.keys))


def _compute_pass(name: str, tasks: list[Any]) -> list[Any]:
    """Compute one pass's tasks, with a progress bar fed by their futures' completion.

    The bar (``<name> pass``, one step a task) shows on the client when its stderr is a
    terminal (tqdm's ``disable=None``). Without a ``distributed.Client`` the tasks run on
    dask's default scheduler, without a bar. The results stay futures on the cluster
    until gathered: the moments are summed there (:func:`_tree_sum`).
    """
    client = _active_client()
    if client is None:
        return list(dask.compute(*tasks))
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = client.compute(tasks)
    with tqdm(total=len(futures), desc=f"{name} pass", unit="task", disable=None) as bar:
        for _ in as_completed(futures):
            bar.update()
    return futures


def _gather(results: list[Any]) -> list[Any]:
    """Return the values of :func:`_compute_pass` results (futures or values)."""
    try:
        from distributed import Future
    except ImportError:
        return results
    if results and isinstance(results[0], Future):
        return results[0].client.gather(results)
    return results


_PRED_KEYS = ("fold", "subject", "label", "proba", "confusion", "confusion_of")


def _rows(part: dict[str, np.ndarray]) -> tuple[int, int]:
    return (len(part["fold"]), len(part["confusion"])) if part else (0, 0)


def _collect(results: list[Any]) -> dict[str, np.ndarray]:
    """Return the prediction pass's outputs concatenated, holding one partition's at a time.

    With futures, their sizes come first (a small task each), the arrays are allocated
    once, and each partition's output is copied in and released: the client's peak is the
    result plus one partition's, not twice the result (9.6 M windows x 6 classes of
    probabilities are 460 MB).
    """
    try:
        from distributed import Future
    except ImportError:
        Future = ()
    if not results or not isinstance(results[0], Future):
        got = [p for p in results if p]
        return {k: np.concatenate([p[k] for p in got]) for k in _PRED_KEYS}
    client = results[0].client
    sizes = client.gather(client.map(_rows, results, pure=False))
    first = next((f for f, (n, _) in zip(results, sizes, strict=True) if n), None)
    if first is None:
        msg = "prediction pass: no held-out window was scored"
        raise SpecError(msg)
    head = first.result()
    n, m = (sum(x[i] for x in sizes) for i in (0, 1))
    out = {
        k: np.empty((n if k in ("fold", "subject", "label", "proba") else m, *v.shape[1:]), v.dtype)
        for k, v in head.items()
    }
    del head
    at = [0, 0]
    for fut, (rows, pairs) in zip(results, sizes, strict=True):
        if rows:
            part = fut.result()
            for k, v in part.items():
                i = 0 if k in ("fold", "subject", "label", "proba") else 1
                out[k][at[i] : at[i] + len(v)] = v
            del part
            at[0], at[1] = at[0] + rows, at[1] + pairs
        fut.release()
    return out


def _concat(*frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)


def _key(name: str, i: int) -> str:
    """Return a unique task key that the dashboard groups under ``<name>-pass``.

    Dask groups keys by the prefix before the hexadecimal token, so every task of a pass
    shows as one named group on the dashboard's task stream and progress panels.
    """
    return f"{name}-pass-{uuid.uuid4().hex}-{i}"


def source_nbytes(ddf: dd.DataFrame) -> int | None:
    """Return :func:`table_nbytes` of the Parquet files a table was read from, else None.

    Known for a table of :func:`pipeline.table.read_feature_table` (``dd.from_map`` over its
    files); None for any other (nothing is read to find out).
    """
    paths = None
    try:
        for node in ddf.expr.walk():  # the FromMap node, under any dtype conversion
            if "iterables" in node._parameters:
                paths = node.operand("iterables")[0]
                break
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return None
    if not paths or not all(isinstance(p, str) and p.endswith(".parquet") for p in paths):
        return None
    try:
        return table_nbytes(paths)
    except OSError:
        return None


def _keep_on_workers(nbytes: int | None, spec: ModelSpec, persist: bool | None) -> bool:
    """Whether to hold the table's partitions in worker memory between the passes.

    Holding them saves reading and decoding every Parquet file a second time (about half of
    the prediction pass, measured on the EMG task), at the cost of the table's size in the
    workers' memory: done when it takes at most ``memory_budget`` x workers / 2, i.e. a
    quarter of the workers' memory with the default budget. ``nbytes`` is the table's
    in-memory size (:func:`source_nbytes`), None when unknown (then not held).
    """
    if persist is not None:
        return persist
    if nbytes is None:
        return False
    budget = spec.memory_budget or default_memory_budget()
    return nbytes <= budget * _n_workers() // 2


def prediction_pass(
    df: pd.DataFrame,
    models: list[Bundle],
    tested_by: Mapping[str, list[int]],
    subjects: Sequence[str],
    out_file: tuple[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Return the held-out class probabilities of one partition's labeled windows.

    Parameters
    ----------
    df : pandas.DataFrame of shape (n_windows, n_columns), or Prepared
        Whole recordings.
    models : list of Bundle
        One per fold (every one with the same ``classes``).
    tested_by : mapping
        Recording -> indices of the folds that test it.
    subjects : sequence of str
        Every subject of the table, sorted (the ``subject`` codes index it).
    out_file : (str, int), optional
        A folder and this partition's number: its out-of-fold predictions are written
        there by this task (:func:`pipeline.learn.metrics.write_oof`, one file a partition
        that scored a window), so no window's identifiers travel to the client.

    Returns
    -------
    dict
        ``confusion`` (int64, shape (m, n_classes, n_classes)) and ``confusion_of`` (int32,
        shape (m, 2): fold, subject code): the confusion counts of every (fold, subject) of
        the partition, which add across partitions. The scores the exact ROC AUC needs
        (its rank statistic pairs windows across partitions): one entry per labeled window
        and fold testing it, ``fold`` (int32), ``subject`` and ``label`` (int32 codes into
        ``subjects`` and the classes), ``proba`` (float64, shape (n, n_classes)).
    """
    df, features = _unpack(df, models[0].model["prep"])
    rec = df["recording"].astype(str).to_numpy()
    folds = sorted({f for r in np.unique(rec) for f in tested_by.get(r, [])})
    out: dict[str, list[np.ndarray]] = {"fold": [], "subject": [], "label": [], "proba": []}
    scored: list[np.ndarray] = []
    # the folds share the label-free prep (prepare the partition once) unless each fold's
    # tangent space is at its own training mean (fold_references)
    shared = all(_same_prep(models[f].model["prep"], models[0].model["prep"]) for f in folds)
    X = features() if folds and shared else None
    for f in folds:
        rows = np.flatnonzero(
            np.isin(rec, [r for r in np.unique(rec) if f in tested_by.get(r, [])])
        )
        sub = df.iloc[rows]
        model = models[f]
        Xf = X[rows] if X is not None else np.asarray(model.model["prep"].transform(sub), float)
        proba = _fold_proba(model, Xf, sub)
        lab = sub["label"].notna().to_numpy()
        out["fold"].append(np.full(int(lab.sum()), f, dtype=np.int32))
        subj = sub["subject"].astype(str).to_numpy()[lab]
        out["subject"].append(np.searchsorted(subjects, subj).astype(np.int32))
        label = sub["label"].astype(str).to_numpy()[lab]
        out["label"].append(np.searchsorted(model.classes, label).astype(np.int32))
        out["proba"].append(proba[lab])
        scored.append(rows[lab])
    if not folds:
        return {}
    got = {k: np.concatenate(v) for k, v in out.items()}
    if out_file is not None and len(got["fold"]):
        ids = df.iloc[np.concatenate(scored)]
        classes = models[folds[0]].classes
        write_oof(oof_frame(ids, got["fold"], got["label"], got["proba"], classes), *out_file)
    k = len(models[folds[0]].classes)
    pred = got["proba"].argmax(1)
    # one confusion matrix per (fold, subject): flat index ((fold, subject), true, predicted)
    pair, inverse = np.unique(np.c_[got["fold"], got["subject"]], axis=0, return_inverse=True)
    flat = (inverse.ravel() * k + got["label"]) * k + pred
    got["confusion"] = np.bincount(flat, minlength=len(pair) * k * k).reshape(len(pair), k, k)
    got["confusion_of"] = pair.astype(np.int32)
    return got


def calibrated_prediction_pass(
    df: pd.DataFrame,
    models: list[Bundle],
    tested: Mapping[tuple[str, float], int],
    splitter: CalibratedLeaveSubjectOut,
    subjects: Sequence[str],
    out_file: tuple[str, int] | None = None,
    headline: Sequence[int] = (),
) -> dict[str, np.ndarray]:
    """Return :func:`prediction_pass`'s output for a ``loso_calibrated`` partition.

    The fold of (subject, k) scores the subject's windows left after its calibration
    windows and those overlapping them, prepared together with the calibration windows
    (:func:`pipeline.learn.calibrate.joint_prepare`), as the memory engine does; at k = 0,
    every window of the subject.

    Parameters
    ----------
    df : pandas.DataFrame of shape (n_windows, n_columns)
        Whole subjects, raw features.
    models : list of Bundle
    tested : mapping
        ``(subject, k) -> fold index``.
    splitter : CalibratedLeaveSubjectOut
    subjects : sequence of str
    out_file : (str, int), optional
        As :func:`prediction_pass`: the predictions of the ``headline`` folds are written,
        their fold numbered by its place in ``headline`` (the report's folds).
    headline : sequence of int
        The folds of the headline k, in the report's order.
    """
    got: list[dict[str, np.ndarray]] = []
    scored: list[pd.DataFrame] = []
    prep = models[0].model["prep"]
    subj = df["subject"].astype(str).to_numpy()
    for s in np.unique(subj) if len(df) else []:
        sub = df.iloc[np.flatnonzero(subj == s)]
        every = np.arange(len(sub))
        split = {0.0: (every[:0], every), **subject_calibration(sub, splitter)}
        for k, (own, test) in split.items():
            if (s, k) not in tested:
                continue
            f = tested[(s, k)]
            ids = sub.iloc[test].loc[:, list(ID_COLUMNS)]
            block = Prepared(ids, joint_prepare(prep, sub, own, test)[1])
            tested_by = {r: [f] for r in ids["recording"].astype(str).unique()}
            part = prediction_pass(block, models, tested_by, subjects)
            if part:
                got.append(part)
                if f in headline:
                    scored.append(ids[ids["label"].notna().to_numpy()])
    if not got:
        return {}
    out = {k: np.concatenate([g[k] for g in got]) for k in _PRED_KEYS}
    if out_file is not None and scored:
        place = {f: i for i, f in enumerate(headline)}
        keep = np.isin(out["fold"], list(place))
        folds = np.array([place[f] for f in out["fold"][keep]], dtype=np.int32)
        frame = oof_frame(
            pd.concat(scored), folds, out["label"][keep], out["proba"][keep], models[0].classes
        )
        write_oof(frame, *out_file)
    return out


def _same_prep(a: FeaturePrep, b: FeaturePrep) -> bool:
    """Whether two folds' preps prepare alike: they differ only in their tangent means."""
    ra, rb = getattr(a, "reference_", None), getattr(b, "reference_", None)
    if ra is None or rb is None:
        return ra is rb
    return len(ra) == len(rb) and all(np.array_equal(x, y) for x, y in zip(ra, rb, strict=True))


def _fold_proba(model: Bundle, X: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """Return :func:`pipeline.learn.model.predict_proba` of prepared features ``X``."""
    classes = model.classes
    proba = np.asarray(model.model[1:].predict_proba(X), dtype=float)
    est = [str(c) for c in model.model.classes_]
    if est != classes:  # a class absent from this fold's training side: probability 0
        full = np.zeros((len(proba), len(classes)))
        full[:, [classes.index(c) for c in est]] = proba
        proba = full
    smooth = int(model.metadata.get("smooth", 1))
    if smooth > 1:
        proba = trailing_mean(pd.DataFrame(proba, index=table.index), table, smooth).to_numpy()
    return proba


def subsample_pass(
    df: pd.DataFrame, prep: FeaturePrep, quota: Mapping[tuple[str, str], int], seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return a seeded sample of one partition's prepared labeled windows.

    Parameters
    ----------
    df : pandas.DataFrame
        Whole recordings (prepared here, so a sampled window is normalised with its whole
        recording, as in the memory engine).
    prep : FeaturePrep
    quota : mapping
        ``(recording, class) -> windows to draw``.
    seed : int
        With the recording's name, seeds the draw: the sample does not depend on the
        partitioning or on the order of the tasks.

    Returns
    -------
    ids : pandas.DataFrame
        ``recording, subject, label`` of the sampled windows.
    X : numpy.ndarray of shape (n_sampled, n_features)
    """
    import zlib

    df, features = _unpack(df, prep)
    X = features()
    rec = df["recording"].astype(str).to_numpy()
    labels = df["label"].astype(object).where(df["label"].notna(), "").astype(str).to_numpy()
    picked = []
    for r in np.unique(rec):
        rng = np.random.default_rng([seed, zlib.crc32(r.encode())])
        for c in sorted(set(labels[rec == r]) - {""}):
            rows = np.flatnonzero((rec == r) & (labels == c))
            k = min(len(rows), int(quota.get((r, c), 0)))
            picked.append(np.sort(rng.choice(rows, size=k, replace=False)))
    rows = np.concatenate(picked) if picked else np.array([], dtype=int)
    ids = pd.DataFrame(
        {
            "recording": rec[rows],
            "subject": df["subject"].astype(str).to_numpy()[rows],
            "label": labels[rows],
        }
    )
    return ids, X[rows]


def _quota(counts: pd.DataFrame, cap: int) -> dict[tuple[str, str], int]:
    """Return windows to draw per (recording, class): proportional, in all at most ``cap``."""
    lab = counts[counts["label"] != ""]
    total = int(lab["n"].sum())
    if total <= cap:
        return {(r, c): int(n) for r, c, n in lab[["recording", "label", "n"]].itertuples(False)}
    return {
        (r, c): int(n) * cap // total
        for r, c, n in lab[["recording", "label", "n"]].itertuples(index=False)
    }


def _sample_model(
    spec: ModelSpec,
    prep: FeaturePrep,
    ids: pd.DataFrame,
    X: np.ndarray,
    rows: np.ndarray,
    classes: list[str],
    seed: int,
) -> Bundle:
    """Fit the scaler and classifier of ``spec`` on the sampled rows ``rows``."""
    pipe = make_estimator(spec, seed)
    Xt, y = X[rows], ids["label"].to_numpy()[rows].astype(str)
    for _, step in pipe.steps[1:-1]:
        Xt = step.fit_transform(Xt, y)
    pipe.steps[-1][1].fit(Xt, y)
    pipe.steps[0] = ("prep", prep)
    return Bundle(pipe, model_metadata(pipe, spec.smooth or 1, classes))


def _draw(
    parts: list[Any], prep: FeaturePrep, counts: pd.DataFrame, spec: ModelSpec, seed: int
) -> dict[str, Any]:
    """Draw the training subsample of a model that needs its data in memory (one pass)."""
    cap = int(spec.max_train_windows)
    budget = spec.memory_budget or default_memory_budget()
    # the sample, the scaled copy and the estimator's own copy
    per_window = 3 * 8 * len(prep.columns_)
    if cap * per_window > budget:
        msg = (
            f"model.max_train_windows {cap}: a subsample of that many windows of "
            f"{len(prep.columns_)} features takes about {cap * per_window / 1e9:.2f} GB, above "
            f"model.memory_budget {budget / 1e9:.2f} GB; a cap of {budget // per_window} "
            "windows would fit"
        )
        raise SpecError(msg)
    quota = _quota(counts, cap)
    t0 = time.perf_counter()
    drawn = _compute_pass(
        "subsample",
        [
            dask.delayed(subsample_pass)(p, prep, quota, seed, dask_key_name=_key("subsample", i))
            for i, p in enumerate(parts)
        ],
    )
    # the identifiers come to the client (the report, the folds' rows); the features stay
    # on the cluster, where the folds are fitted
    ids = pd.concat(
        dask.compute(*[dask.delayed(_item, pure=True)(d, 0) for d in drawn]), ignore_index=True
    )
    X = dask.delayed(_stack, pure=True)(
        [dask.delayed(_item, pure=True)(d, 1) for d in drawn], len(prep.columns_)
    )
    X = dask.persist(X)[0] if _active_client() is not None else X
    per = ids.groupby(["subject", "label"]).size()
    windows = {str(s): {} for s in per.index.get_level_values(0)}
    for (subj, c), n in per.items():
        windows[str(subj)][str(c)] = int(n)
    return {
        "ids": ids,
        "X": X,
        "pass": {"name": "subsample", "seconds": round(time.perf_counter() - t0, 3)},
        "report": {
            "max_train_windows": cap,
            "seed": int(seed),
            "stratified_by": ["recording", "label"],
            "n_windows": len(ids),
            "windows": windows,
        },
    }


def _stack(parts: list[np.ndarray], n_features: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, n_features))


def _active_client() -> Any:
    """Return the ``distributed.Client`` dask computes on now, else None.

    None also when a client exists but ``dask.config`` picks another scheduler (e.g.
    ``scheduler="sync"``): the passes then run where ``dask.compute`` would run them.
    """
    from dask.base import get_scheduler

    client = getattr(get_scheduler(), "__self__", None)
    try:
        from distributed import Client
    except ImportError:
        return None
    return client if isinstance(client, Client) else None


KIB_MB = 1e6 / 1024
"""KiB (``ru_maxrss``'s unit on Linux) per MB (10**6 bytes, psutil's RSS / 1e6)."""


def _memory_mb() -> dict[str, Any]:
    """Return the client's and each worker's RSS now and its lifetime peak (MB)."""
    import resource

    import psutil

    out: dict[str, Any] = {
        "client_rss_mb": round(psutil.Process().memory_info().rss / 1e6, 1),
        # ru_maxrss is in KiB on Linux: the peak over the client process's whole life
        "client_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_MB, 1),
    }
    try:
        from distributed import default_client

        client = default_client()
        rss = client.run(lambda: psutil.Process().memory_info().rss)
        out["worker_rss_mb"] = {w: round(v / 1e6, 1) for w, v in sorted(rss.items())}
        peak = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        out["worker_peak_rss_mb"] = {w: round(v / KIB_MB, 1) for w, v in sorted(peak.items())}
    except (ImportError, ValueError):
        pass
    return out


def reference_pass(
    df: pd.DataFrame,
    prep: FeaturePrep,
    unit: str,
    train_units: Sequence[set[str]],
    term: str,
    refs: Sequence[Sequence[np.ndarray | None]] | None = None,
) -> dict[tuple[int, int], tuple[float, np.ndarray]]:
    """Return one partition's share of every fold's tangent-space reference mean.

    Parameters
    ----------
    df : pandas.DataFrame of shape (n_windows, n_columns)
        Whole units (recordings, or subjects), raw features.
    prep : FeaturePrep
        Fitted (it rebuilds the matrices, re-centred if it says so).
    unit : {"subject", "recording"}
    train_units : sequence of set of str
        Per fold (the last: the final model), the units of its training side.
    term : {"euclid", "logeuclid", "riemann"}
        :func:`pipeline.learn.riemann.mean_sum`'s term.
    refs : sequence, optional
        ``"riemann"``: per fold and tangent kind, the iteration's current mean (None:
        converged, skipped).

    Returns
    -------
    dict
        ``{(fold, kind index): (n_windows, sum)}`` over the partition's windows of the
        fold's training units (every window, labeled or not, as ``FeaturePrep.fit`` sees).
    """
    out: dict[tuple[int, int], tuple[float, np.ndarray]] = {}
    if not len(df):
        return out
    spec = prep.spec()
    units = df[unit].astype(str).to_numpy()
    for j, kind in enumerate(_tangent_kinds(spec)):
        mats = prep._matrices(spec, df, kind)[0]
        for u in np.unique(units):
            sel = mats[units == u]
            folds = [
                f
                for f, tr in enumerate(train_units)
                if u in tr and (refs is None or refs[f][j] is not None)
            ]
            # a fold-independent term is computed once per unit and added to every fold
            same = mean_sum(sel, term) if refs is None and folds else None
            for f in folds:
                add = same if same is not None else mean_sum(sel, term, refs[f][j])
                n, acc = out.get((f, j), (0.0, 0.0))
                out[(f, j)] = (n + len(sel), acc + add)
    return out


def fold_statistics_pass(
    df: pd.DataFrame,
    preps: Sequence[FeaturePrep],
    unit: str,
    train_units: Sequence[set[str]],
    fourth: bool,
) -> dict[tuple[int, str], Moments]:
    """Return one partition's per (fold, class) moments, each fold's windows prepared with
    that fold's prep (its tangent space at its own training mean).

    Parameters
    ----------
    df : pandas.DataFrame of shape (n_windows, n_columns)
        Whole units, raw features.
    preps : sequence of FeaturePrep
        Per fold (the last: the final model).
    unit : {"subject", "recording"}
    train_units : sequence of set of str
    fourth : bool
    """
    out: dict[tuple[int, str], Moments] = {}
    if not len(df):
        return out
    units = df[unit].astype(str)
    for f, (prep, tr) in enumerate(zip(preps, train_units, strict=True)):
        rows = np.flatnonzero(units.isin(tr).to_numpy())
        if not len(rows):
            continue
        sub = df.iloc[rows]
        lab = sub["label"].notna().to_numpy()
        X = np.asarray(prep.transform(sub), dtype=float)[lab]
        y = sub["label"].astype(str).to_numpy()[lab]
        with threadpool_limits(1):
            for c in np.unique(y):
                out[(f, str(c))] = class_moments(X[y == c], fourth)
    return out


def fold_references(
    parts: list[Any],
    prep: FeaturePrep,
    mean: str,
    unit: str,
    train_units: Sequence[set[str]],
    fourth: bool,
) -> tuple[list[FeaturePrep], list[dict[str, Moments]], list[dict[str, Any]]]:
    """Return every fold's prep at its training windows' tangent mean, and its moments.

    The log-Euclidean and arithmetic means come from one pass of sums per unit (the
    fold's are its training units'); the Riemannian mean iterates as pyriemann's
    ``mean_riemann`` (:class:`pipeline.learn.riemann.RiemannMean`), one pass per step for
    every fold still moving. A last pass prepares each fold's training windows with its
    prep and sums their moments (the tangent vectors at a fold's mean are its own, so the
    moments are per fold: each window is mapped once per fold that trains on it).

    Parameters
    ----------
    parts : list of dask.delayed
        Raw partitions holding whole units.
    prep : FeaturePrep
        Fitted at ``tangent_mean: identity`` (the folds' copies get their means).
    mean : {"riemann", "logeuclid", "euclid"}
    unit : {"subject", "recording"}
    train_units : sequence of set of str
        Per fold, then the final model (every unit).
    fourth : bool

    Returns
    -------
    preps : list of FeaturePrep
    stats : list of dict
        ``{class: Moments}`` per fold.
    passes : list of dict
        Each pass's name and seconds (and the Riemannian steps).
    """
    passes = []

    def run(name: str, term: str, refs: Any = None) -> dict[tuple[int, int], Any]:
        t0 = time.perf_counter()
        done = _gather(
            _compute_pass(
                name,
                [
                    dask.delayed(reference_pass)(
                        p, prep, unit, train_units, term, refs, dask_key_name=_key(name, i)
                    )
                    for i, p in enumerate(parts)
                ],
            )
        )
        total: dict[tuple[int, int], Any] = {}
        for part in done:
            for key, (n, acc) in part.items():
                n0, a0 = total.get(key, (0.0, 0.0))
                total[key] = (n0 + n, a0 + acc)
        passes.append({"name": name, "seconds": round(time.perf_counter() - t0, 3)})
        return total

    n_kinds = len(prep.reference_)
    keys = [(f, j) for f in range(len(train_units)) for j in range(n_kinds)]
    first = run("reference", "logeuclid" if mean == "logeuclid" else "euclid")
    missing = [k for k in keys if k not in first]
    if missing:
        msg = (
            f"Tangent space at the training windows' {mean!r} mean: fold {missing[0][0]} has "
            "no training window"
        )
        raise SpecError(msg)
    if mean == "riemann":
        state = {k: RiemannMean(first[k][1], first[k][0]) for k in keys}
        step = 0
        while not all(m.done for m in state.values()):
            refs = [
                [None if state[(f, j)].done else state[(f, j)].M for j in range(n_kinds)]
                for f in range(len(train_units))
            ]
            sums = run(f"riemann-{step}", "riemann", refs)
            for k, (_, acc) in sums.items():
                state[k].step(acc)
            step += 1
        refs_final = {k: m.M for k, m in state.items()}
    else:
        refs_final = {k: mean_from_sum(first[k][1], first[k][0], mean) for k in keys}
    preps = []
    for f in range(len(train_units)):
        p = copy.copy(prep)
        p.tangent_mean = mean
        p.reference_ = [refs_final[(f, j)] for j in range(n_kinds)]
        preps.append(p)
    t0 = time.perf_counter()
    done = _compute_pass(
        "fold-statistics",
        [
            dask.delayed(fold_statistics_pass)(
                p, preps, unit, train_units, fourth, dask_key_name=_key("fold-statistics", i)
            )
            for i, p in enumerate(parts)
        ],
    )
    moments = dask.compute(_tree_sum(list(done)))[0]
    passes.append({"name": "fold-statistics", "seconds": round(time.perf_counter() - t0, 3)})
    stats: list[dict[str, Moments]] = [{} for _ in train_units]
    for (f, c), m in moments.items():
        stats[f][c] = m
    return preps, stats, passes


def permutation_pass(
    df: pd.DataFrame,
    models: list[list[Bundle]],
    tested_by: Mapping[str, list[int]],
    codes: Mapping[str, np.ndarray],
    binary: bool,
) -> dict[str, np.ndarray]:
    """Return one partition's pooled confusion counts (and binary scores) per permutation.

    Parameters
    ----------
    df : pandas.DataFrame of shape (n_windows, n_columns), or Prepared
        Whole recordings.
    models : list of list of Bundle
        ``models[p][f]``: fold ``f``'s model fitted on the labels of permutation ``p``.
    tested_by : mapping
        Recording -> the folds that test it.
    codes : mapping
        Labeled recording -> its class code in every permutation, shape (n_permutations,).
    binary : bool
        Also return the class-1 scores and permuted codes of the scored windows.

    Returns
    -------
    dict
        ``cm`` (int64, shape (n_permutations, k, k)); binary: ``scores`` (float64) and
        ``labels`` (int16), shape (n_permutations, n_scored).
    """
    n_perm = len(models)
    k = len(models[0][0].classes)
    df, features = _unpack(df, models[0][0].model["prep"])
    rec = df["recording"].astype(str).to_numpy()
    folds = sorted({f for r in np.unique(rec) for f in tested_by.get(r, [])})
    cm = np.zeros((n_perm, k, k), dtype=np.int64)
    scores: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    X = features() if folds else None
    for f in folds:
        rows = np.flatnonzero(
            np.isin(rec, [r for r in np.unique(rec) if f in tested_by.get(r, [])])
        )
        sub = df.iloc[rows]
        lab = sub["label"].notna().to_numpy()
        y = np.stack([codes[r] for r in rec[rows][lab]], axis=1)  # (n_perm, n_labeled)
        s = np.empty(y.shape)
        for p in range(n_perm):
            proba = _fold_proba(models[p][f], X[rows], sub)[lab]
            np.add.at(cm[p], (y[p], proba.argmax(1)), 1)
            if binary:
                s[p] = proba[:, 1]
        if binary:
            scores.append(s)
            labels.append(y)
    out: dict[str, np.ndarray] = {"cm": cm}
    if binary:
        out["scores"] = np.concatenate(scores, axis=1) if scores else np.zeros((n_perm, 0))
        out["labels"] = (
            np.concatenate(labels, axis=1) if labels else np.zeros((n_perm, 0), np.int16)
        )
    return out


def _permutation(
    parts: list[Any],
    prep: FeaturePrep,
    spec: ModelSpec,
    counts: pd.DataFrame,
    ids: pd.DataFrame,
    folds: list[Any],
    tested_by: Mapping[str, list[int]],
    classes: list[str],
    overall: Mapping[str, Any],
    n_permutations: int,
    seed: int,
    fourth: bool,
    rec_moments: Mapping[tuple[str, str], Moments] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the permutation test of the memory engine, recordings' labels permuted.

    With labels constant per recording, a permutation within subject moves whole
    recordings' labels (:func:`pipeline.learn.permutation.permuted_recording_labels`, the
    memory engine's draws), so a permuted fold's class moments are its training
    recordings' moments regrouped under their new classes: one pass of per-recording
    moments, every permutation's fold models by algebra, and one pass scoring every
    test window with each permutation's model of its fold.

    ``rec_moments``, the statistics pass's ``{(recording, class): Moments}`` when its unit
    was the recording, saves the pass of per-recording moments.

    Returns
    -------
    section : dict
        As :func:`pipeline.learn.permutation.permutation_test`'s.
    passes : list of dict
    """
    passes = []
    if rec_moments is None:  # the statistics pass's unit was the subject
        t0 = time.perf_counter()
        _, rec_moments = run_statistics(parts, prep, "recording", fourth)
        seconds = round(time.perf_counter() - t0, 3)
        passes.append({"name": "permutation-statistics", "seconds": seconds})
    lab = counts[counts["label"] != ""]
    label_of = dict(zip(lab["recording"], lab["label"], strict=True))
    perm = permuted_recording_labels(
        counts["subject"].to_numpy(),
        counts["recording"].to_numpy(),
        label_of,
        classes,
        n_permutations,
        seed,
    )
    # each fold's labeled training recordings, the same for every permutation
    train_recs = [
        [r for r in sorted(set(ids["recording"].iloc[fold.train])) if r in label_of]
        for fold in folds
    ]
    models: list[list[Bundle]] = []
    for p in range(n_permutations):
        row = []
        for fold, recs in zip(folds, train_recs, strict=True):
            stats: dict[str, Moments] = {}
            for r in recs:
                c = classes[perm[r][p]]
                m = rec_moments[(r, label_of[r])]
                stats[c] = stats[c] + m if c in stats else m
            if len(stats) < 2:  # a permutation cannot change a subject's classes
                msg = f"fold {fold.name!r}: the training side has fewer than 2 classes"
                raise SpecError(msg)
            row.append(_fold_model(spec, prep, stats, classes))
        models.append(row)
    t0 = time.perf_counter()
    binary = len(classes) == 2
    models_d = dask.delayed(models, traverse=False)
    done = _gather(
        _compute_pass(
            "permutation",
            [
                dask.delayed(permutation_pass)(
                    p, models_d, tested_by, perm, binary, dask_key_name=_key("permutation", i)
                )
                for i, p in enumerate(parts)
            ],
        )
    )
    passes.append({"name": "permutation", "seconds": round(time.perf_counter() - t0, 3)})
    cm = sum(d["cm"] for d in done)
    scores = np.concatenate([d["scores"] for d in done], axis=1) if binary else None
    labels = np.concatenate([d["labels"] for d in done], axis=1) if binary else None
    observed = {
        "balanced_accuracy": overall["balanced_accuracy"],
        "roc_auc": overall.get("roc_auc"),
    }
    section = summarize_nulls(
        cm, scores, labels, observed, "recording", seed, n_permutations * len(folds)
    )
    section["seconds"] = round(sum(p["seconds"] for p in passes), 3)
    return section, passes


def _fold_model(
    spec: ModelSpec, prep: FeaturePrep, stats: Mapping[str, Moments], classes: list[str]
) -> Bundle:
    present = {c: m for c, m in stats.items() if m.n > 0}
    scaler = scaler_from_moments(present)
    # (p, p) algebra: a threaded BLAS is ~50x slower here on a busy machine (measured)
    with threadpool_limits(1):
        if spec.name == "lda":
            clf = lda_from_moments(present, scaler, spec.params)
        else:
            clf = gaussian_nb_from_moments(present, scaler, spec.params)
    pipe = Pipeline([("prep", prep), ("scale", scaler), ("clf", clf)])
    return Bundle(pipe, model_metadata(pipe, spec.smooth or 1, classes))


def _by_class(moments: Mapping[_Key, Moments], units: set[str]) -> dict[str, Moments]:
    out: dict[str, Moments] = {}
    for (u, c), m in moments.items():
        if u in units:
            out[c] = out[c] + m if c in out else m
    return out


def _minus(total: dict[str, Moments], held: dict[str, Moments]) -> dict[str, Moments]:
    return {c: (m - held[c] if c in held else m) for c, m in total.items()}


def _reduced_metrics(
    pred: Mapping[str, np.ndarray], subjects: Sequence[str], classes: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[int, dict[str, Any]]]:
    """Return per-subject, overall and per-fold metrics from the prediction pass's output.

    The confusion-based figures come from the partitions' summed confusion counts; only the
    ROC AUC reads the scores (ranks pair windows across partitions: no partial sum of a
    partition gives it exactly).

    Returns
    -------
    per_subject : dict
        ``{subject: metrics}`` as :func:`pipeline.learn.metrics.per_subject_metrics`.
    overall : dict
        Every scored window's metrics.
    per_fold : dict
        ``{fold index: metrics}`` of the folds that scored a window.
    """
    k = len(classes)
    cms, of = pred["confusion"], pred["confusion_of"]
    label, proba = pred["label"], pred["proba"]
    subj_rows = rows_by_code(pred["subject"], len(subjects))
    per_subject: dict[str, dict[str, Any]] = {}
    for s, rows in enumerate(subj_rows):
        if not len(rows):
            continue
        m = metrics_from_confusion(cms[of[:, 1] == s].sum(0), classes)
        m["roc_auc"] = auc_from_scores(label[rows], proba[rows], k)
        per_subject[str(subjects[s])] = m
    overall = metrics_from_confusion(cms.sum(0), classes)
    overall["roc_auc"] = auc_from_scores(label, proba, k)
    n_folds = int(of[:, 0].max()) + 1 if len(of) else 0
    per_fold: dict[int, dict[str, Any]] = {}
    for f, rows in enumerate(rows_by_code(pred["fold"], n_folds)):
        if not len(rows):
            continue
        in_fold = of[:, 0] == f
        if in_fold.sum() == 1:  # one subject tested: its figures (a LOSO fold)
            only = str(subjects[of[in_fold, 1][0]])
            if cms[in_fold].sum() == per_subject[only]["n_windows"]:
                per_fold[f] = per_subject[only]
                continue
        m = metrics_from_confusion(cms[in_fold].sum(0), classes)
        m["roc_auc"] = auc_from_scores(label[rows], proba[rows], k)
        per_fold[f] = m
    return per_subject, overall, per_fold


def _of_folds(pred: Mapping[str, np.ndarray], folds: Sequence[int]) -> dict[str, np.ndarray]:
    """Return the prediction pass's output restricted to the windows ``folds`` scored."""
    rows = np.isin(pred["fold"], folds)
    pairs = np.isin(pred["confusion_of"][:, 0], folds)
    return {k: v[pairs] if k in ("confusion", "confusion_of") else v[rows] for k, v in pred.items()}


def _union(parts: list[Any]) -> dict[Any, Any]:
    """Return the union of the calibration pass's per-partition dicts (keys are disjoint)."""
    out: dict[Any, Any] = {}
    for part in _gather(parts):
        out.update(part)
    return out


def _fold_ids(counts: pd.DataFrame) -> pd.DataFrame:
    """Return the identifier rows the splitters see: one per recording.

    Every scheme the engine runs splits by recording or subject; ``group_kfold``'s shuffled
    ``GroupKFold`` deals out the permuted unique subjects and reads no row count (a row
    per window gave the same folds and held 9.6 M rows and 5 x 9.6 M fold indices on the
    client at the full size: measured, the random forest's client peak).
    """
    per_rec = counts.groupby(["recording", "subject", "session", "run"], sort=True)["n"].sum()
    return per_rec.reset_index().drop(columns="n").assign(start=0.0, label="window")


def fit_and_validate_distributed(
    ddf: dd.DataFrame,
    model_cfg: ModelSpec | Mapping[str, Any],
    validation_cfg: ValidationSpec | Mapping[str, Any],
    seed: int = 0,
    *,
    specificity: float = 0.9,
    persist: bool | None = None,
    predictions_dir: str | os.PathLike[str] | None = None,
    window_length: float | None = None,
) -> tuple[Bundle, dict[str, Any]]:
    """Cross-validate and fit a model on a dask feature table without collecting it.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame of shape (n_windows, n_columns)
        Each partition holds whole recordings (as :func:`pipeline.table.read_feature_table`
        gives them).
    model_cfg : ModelSpec or mapping
        ``name`` one of :data:`DISTRIBUTED_ESTIMATORS`.
    validation_cfg : ValidationSpec or mapping
        Any scheme but ``random``.
    seed : int
    specificity : float
        Binary tasks: the report's threshold reaches it.
    persist : bool or None
        Hold the table's partitions in worker memory between the passes (read each Parquet
        file once); None decides from the table's size (:func:`_keep_on_workers`).
    predictions_dir : path, optional
        Folder of the out-of-fold predictions: the prediction pass's tasks write one
        Parquet file per partition there (:func:`pipeline.learn.metrics.oof_frame`'s
        schema, as the memory engine's). The folder must be reachable from the workers.
    window_length : float, optional
        Seconds; ``loso_calibrated`` (LDA only) needs it, as
        :func:`pipeline.learn.fit.fit_and_validate` does. Its calibrated folds' statistics
        are the other subjects' plus ``w`` times the calibration windows' (a calibration
        pass, :func:`pipeline.learn.calibrate.calibration_pass`).

    Returns
    -------
    Bundle, dict
        As :func:`pipeline.learn.fit.fit_and_validate`, the report adding ``engine``
        (name, passes and their seconds, ``persisted``).

    Raises
    ------
    SpecError
        For a model without a distributed fit, non-finite feature values (naming the
        recording, column and window start), a recording split across partitions, or a
        fold whose training side has fewer than two classes.
    LeakageError
        For the ``random`` scheme.
    """
    t_start = time.perf_counter()
    spec = model_spec(model_cfg)
    vspec = validation_spec(validation_cfg)
    if spec.name in OUT_OF_CORE_ESTIMATORS:
        return fit_and_validate_dask(
            ddf, spec, vspec, seed, specificity=specificity, predictions_dir=predictions_dir
        )
    subsampled = spec.name not in SUFFICIENT_ESTIMATORS
    if spec.name not in DISTRIBUTED_ESTIMATORS:
        msg = (
            f"model.name {spec.name!r} with model.engine 'distributed': expected one of "
            f"{list(DISTRIBUTED_ESTIMATORS)} (fitted without collecting the table); use "
            "model.engine: memory for the others"
        )
        raise SpecError(msg)
    calibrated = vspec.scheme == "loso_calibrated"
    if calibrated and spec.name != "lda":
        msg = (
            f"model.name {spec.name!r} with validation.scheme 'loso_calibrated' and "
            "model.engine 'distributed': expected 'lda' (its weighted fit is a sum of "
            "moments); use model.engine: memory for the others"
        )
        raise SpecError(msg)
    check_dask_table(ddf, vspec, "by the distributed engine", calibrated_ok=calibrated)
    pspec = spec.prep
    # a tangent space at each fold's training mean (not re-centred: that one is at the
    # identity): the statistics pass runs at the identity, then fold_references
    per_fold = (
        pspec is not None
        and pspec.tangent_space is not None
        and pspec.recenter is None
        and pspec.tangent_mean != "identity"
    )
    if per_fold and (subsampled or calibrated):
        msg = (
            f"model.prep.tangent_mean {pspec.tangent_mean!r} with model.engine 'distributed': "
            "each fold's mean is computed for lda and gaussian_nb under loso, group_kfold, "
            f"within_subject or cross_session; got model.name {spec.name!r}, validation.scheme "
            f"{vspec.scheme!r}; use tangent_mean: identity, recenter, or model.engine: memory"
        )
        raise SpecError(msg)
    if per_fold:
        pspec = pspec.model_copy(update={"tangent_mean": "identity"})
    prep = FeaturePrep.from_spec(pspec, "model config").fit(ddf._meta)
    recentred = spec.prep is not None and spec.prep.recenter is not None
    if recentred and vspec.scheme not in ("loso", "group_kfold", "loso_calibrated"):
        msg = (
            f"model.prep.recenter {spec.prep.recenter!r} with validation.scheme "
            f"{vspec.scheme!r} and model.engine 'distributed': expected a scheme that keeps "
            "each subject whole on one side (loso, group_kfold, loso_calibrated), as the "
            "engine re-centres a subject with all its windows; use model.engine: memory"
        )
        raise SpecError(msg)
    whole_subject = recentred or (spec.prep is not None and spec.prep.normalize == "subject")
    group = "subject" if whole_subject else "recording"
    # a subject's recordings must share a partition to be z-scored or re-centred together,
    # or for its first k repetitions (in time over its recordings) to be found on one worker
    if group == "subject" or calibrated:
        ddf = ddf.shuffle(on="subject")
    ddf = ddf.loc[:, [*ID_COLUMNS, *prep.columns_]]
    unit = "subject" if vspec.scheme in ("loso", "group_kfold", "loso_calibrated") else "recording"
    fourth = spec.name == "lda" and needs_fourth_moments(spec.name, spec.params)
    passes: list[dict[str, Any]] = []

    memory_start = _memory_mb()
    t0 = time.perf_counter()
    nbytes = source_nbytes(ddf)
    parts = _batches(ddf.to_delayed(), nbytes)
    persisted = _keep_on_workers(nbytes, spec, persist)
    if persisted and (calibrated or per_fold):  # held raw: prepared again per fold
        parts = list(dask.persist(*parts))
    elif persisted:  # held prepared: the prediction pass neither reads nor prepares again
        parts = list(
            dask.persist(
                *[
                    dask.delayed(prepare_partition)(p, prep, dask_key_name=_key("prepare", i))
                    for i, p in enumerate(parts)
                ]
            )
        )
    count_list, moments = run_statistics(parts, prep, unit, fourth)
    passes.append({"name": "statistics", "seconds": round(time.perf_counter() - t0, 3)})
    counts = pd.concat(count_list, ignore_index=True)
    per_part = pd.concat(
        [c[["recording"]].drop_duplicates() for c in count_list], ignore_index=True
    )["recording"].value_counts()
    split = per_part[per_part > 1]
    if len(split):
        msg = (
            f"feature table: recording {split.index[0]!r} spans {int(split.iloc[0])} "
            f"partitions; the distributed engine needs each recording whole in one partition "
            "(read the table with pipeline.table.read_feature_table, one file per recording)"
        )
        raise SpecError(msg)
    counts = counts.groupby(
        ["recording", "subject", "session", "run", "label"], as_index=False, sort=True
    )["n"].sum()
    classes = sorted(c for c in counts["label"].unique() if c != "")
    if not classes:
        msg = "feature table: every window has label None; nothing to fit"
        raise SpecError(msg)

    sample: dict[str, Any] | None = None
    if subsampled:
        sample = _draw(parts, prep, counts, spec, seed)
        passes.append(sample.pop("pass"))
    t0 = time.perf_counter()
    ids = _fold_ids(counts)
    cal: dict[tuple[str, float], dict[str, Any]] = {}
    splitter: CalibratedLeaveSubjectOut | None = None
    if calibrated:
        splitter = make_splitter(vspec, seed, window_length)
        folds = splitter.recording_folds(ids)
        if any(f.calibration for f in folds):
            t1 = time.perf_counter()
            cal = _union(
                _compute_pass(
                    "calibration",
                    [
                        dask.delayed(calibration_pass)(
                            p, prep, splitter, fourth, dask_key_name=_key("calibration", i)
                        )
                        for i, p in enumerate(parts)
                    ],
                )
            )
            passes.append({"name": "calibration", "seconds": round(time.perf_counter() - t1, 3)})
    else:
        folds = make_folds(ids, vspec, seed)
    units_all = {u for u, _ in moments}
    total = _by_class(moments, units_all)
    rec_unit = counts.drop_duplicates("recording").set_index("recording", drop=False)[unit]
    fold_preps: list[FeaturePrep] | None = None
    if per_fold:
        train_units = [
            set(rec_unit.loc[sorted(set(ids["recording"].iloc[f.train]))]) for f in folds
        ]
        fold_preps, fold_stats, ref_passes = fold_references(
            parts, prep, spec.prep.tangent_mean, unit, [*train_units, set(rec_unit)], fourth
        )
        passes.extend(ref_passes)
    models, fold_reports = [], []
    tested_by: dict[str, list[int]] = {}
    tested: dict[tuple[str, float], int] = {}
    labeled = counts[counts["label"] != ""]
    for i, fold in enumerate(folds):
        train_recs = sorted(set(ids["recording"].iloc[fold.train]))
        test_recs = sorted(set(ids["recording"].iloc[fold.test]))
        train_units = set(rec_unit.loc[train_recs])
        test_units = set(rec_unit.loc[test_recs])
        if train_units | test_units == units_all and not train_units & test_units:
            stats = _minus(total, _by_class(moments, test_units))
        else:
            stats = _by_class(moments, train_units)
        if fold_preps is not None:
            stats = fold_stats[i]
        own = cal.get((next(iter(test_units), ""), float(fold.calibration or 0.0)))
        if own is not None:  # k > 0: + w x the held-out subject's calibration windows
            stats = calibrated_stats(
                {c: m for c, m in stats.items() if m.n > 0},
                own["moments"],
                vspec.calibration_weight,
            )
        if sample is not None:
            train_rows = np.flatnonzero(sample["ids"]["recording"].isin(train_recs).to_numpy())
            present = sorted(set(sample["ids"]["label"].to_numpy()[train_rows]))
        else:
            present = sorted(c for c, m in stats.items() if m.n > 0)
        if len(present) < 2:
            msg = (
                f"fold {fold.name!r}: the training side has classes {present}; expected at "
                "least 2 to fit a classifier"
            )
            raise SpecError(msg)
        if sample is not None:  # fitted on the cluster, every fold at once (below)
            models.append(
                dask.delayed(_sample_model)(
                    spec,
                    prep,
                    sample["ids"],
                    sample["X"],
                    train_rows,
                    classes,
                    seed,
                    dask_key_name=_key("fold-fit", i),
                )
            )
        else:
            models.append(
                _fold_model(spec, prep if fold_preps is None else fold_preps[i], stats, classes)
            )
        for r in test_recs:
            tested_by.setdefault(r, []).append(i)
        if calibrated:
            tested[(next(iter(test_units)), float(fold.calibration or 0.0))] = i
        tr = counts[counts["recording"].isin(train_recs)]
        te = counts[counts["recording"].isin(test_recs)]
        desc: dict[str, Any] = {
            "name": fold.name,
            "level": fold.level,
            "train_subjects": sorted(set(tr["subject"])),
            "test_subjects": sorted(set(te["subject"])),
            "train_recordings": train_recs,
            "test_recordings": test_recs,
            "n_train_windows": int(labeled[labeled["recording"].isin(train_recs)]["n"].sum()),
            "n_test_windows": int(labeled[labeled["recording"].isin(test_recs)]["n"].sum()),
        }
        if own is not None:
            desc["n_train_windows"] += int(sum(m.n for m in own["moments"].values()))
            desc["n_test_windows"] = own["n_test"]
            desc["n_calibration_windows"] = int(sum(m.n for m in own["moments"].values()))
        absent = sorted(set(classes) - set(present))
        if absent:
            desc["classes_absent_from_training"] = absent
            logger.warning("fold %s: classes %s have no training window", fold.name, absent)
        fold_reports.append(desc)
    final_task = None
    if sample is not None:
        # the final model's fit joins the folds' on the workers (its result is needed last)
        every = np.arange(len(sample["ids"]))
        final_task = dask.delayed(_sample_model)(
            spec,
            prep,
            sample["ids"],
            sample["X"],
            every,
            classes,
            seed,
            dask_key_name=_key("fold-fit", len(models)),
        )
        fitted = _compute_pass("fold-fit", [*models, final_task])
        final_task = fitted[-1]
        # the fold models stay where they were fitted, the prediction tasks fetch them:
        # gathered, six 50-tree forests took the client from 0.7 to 2.6 GB at full size
        # (the objects, their pickles in the graph and the scheduler's copy, measured)
        models = fitted[:-1]
        passes.append({"name": "fold-fit", "seconds": round(time.perf_counter() - t0, 3)})
    algebra_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    # futures (or fitted values without a client) as they are; the algebra's Bundles in one
    # graph node, not copied into every task
    models_d = models if sample is not None else dask.delayed(models, traverse=False)
    subject_names = sorted(map(str, counts["subject"].unique()))
    if predictions_dir is not None:
        os.makedirs(predictions_dir, exist_ok=True)
    head = vspec.headline_k()
    headline = [i for i, f in enumerate(folds) if not calibrated or f.calibration == head]
    pred_parts = [
        dask.delayed(calibrated_prediction_pass)(
            p,
            models_d,
            tested,
            splitter,
            subject_names,
            None if predictions_dir is None else (os.fspath(predictions_dir), i),
            headline,
            dask_key_name=_key("prediction", i),
        )
        if calibrated
        else dask.delayed(prediction_pass)(
            p,
            models_d,
            tested_by,
            subject_names,
            None if predictions_dir is None else (os.fspath(predictions_dir), i),
            dask_key_name=_key("prediction", i),
        )
        for i, p in enumerate(parts)
    ]
    pred = _collect(_compute_pass("prediction", pred_parts))
    passes.append({"name": "prediction", "seconds": round(time.perf_counter() - t0, 3)})
    t_cv = time.perf_counter() - t_start

    curve = None
    if calibrated:  # every k's point; the report's other figures are the headline k's
        curve = []
        for k in sorted({float(f.calibration or 0.0) for f in folds}):
            idx = [i for i, f in enumerate(folds) if float(f.calibration or 0.0) == k]
            ps, ov, _ = _reduced_metrics(_of_folds(pred, idx), subject_names, classes)
            curve.append(
                curve_point(
                    k,
                    sum(fold_reports[i]["n_test_windows"] for i in idx),
                    sum(fold_reports[i].get("n_calibration_windows", 0) for i in idx),
                    ov,
                    ps,
                    summarize_subjects(ps),
                )
            )
        pred = _of_folds(pred, headline)
    per_subject, overall, fold_metrics = _reduced_metrics(pred, subject_names, classes)
    # codes end to end (class and subject names only in the report's keys): a per-window
    # object array is 8 bytes a window, 77 MB each on the 9.6 M-window cohort
    del pred["fold"]
    proba_all, y_all = pred["proba"], pred["label"]
    summary = summarize_subjects(per_subject)
    for i, desc in enumerate(fold_reports):
        if i in fold_metrics:
            fm = fold_metrics[i]
            desc["metrics"] = {
                k: fm[k] for k in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
            }
    t0 = time.perf_counter()
    if final_task is not None:
        final = _gather([final_task])[0]
    else:
        final = (
            _fold_model(spec, prep, total, classes)
            if fold_preps is None
            else _fold_model(spec, fold_preps[-1], fold_stats[-1], classes)
        )
    fold_reports = [fold_reports[i] for i in headline]
    report: dict[str, Any] = {
        "model": config_json(model_cfg),
        "validation": config_json(validation_cfg),
        "seed": int(seed),
        "classes": classes,
        "n_windows": int(counts["n"].sum()),
        "n_labeled_windows": int(labeled["n"].sum()),
        "subjects": sorted(map(str, counts["subject"].unique())),
        "folds": fold_reports,
        "overall": overall,
        "per_subject": per_subject,
        "per_subject_summary": summary,
        "roc": roc_curves_from_codes(y_all, proba_all, classes),
    }
    if curve is not None:
        report["calibration_curve"] = {
            "headline_k": vspec.headline_k(),
            "unit": vspec.calibration_unit or "repetitions",
            "points": curve,
        }
    if len(classes) == 2:
        report["threshold"] = threshold_at_specificity(y_all == 1, proba_all[:, 1], specificity)
    report.update(
        trust_sections_from_codes(
            pred["subject"],
            len(subject_names),
            y_all,
            proba_all.argmax(1).astype(np.int32),
            proba_all,
            classes,
            per_subject,
            vspec,
            spec.prep,
            seed,
        )
    )
    del pred, proba_all, y_all
    n_perm = DEFAULT_PERMUTATIONS if vspec.n_permutations is None else vspec.n_permutations
    per_rec = labeled.groupby("recording")["label"].nunique()
    why = (
        "validation.n_permutations is 0"
        if n_perm == 0
        else "not computed by the distributed engine for models fitted on a subsample, "
        "calibrated folds or a tangent space at each fold's mean (model.engine: memory "
        "computes it)"
        if sample is not None or calibrated or fold_preps is not None
        else "not computed by the distributed engine where a recording holds several classes "
        "(window labels permuted within subject follow the table's row order, which the "
        "engine does not hold; model.engine: memory computes it)"
        if (per_rec > 1).any()
        else None
    )
    if why is None:
        report["permutation"], perm_passes = _permutation(
            parts,
            prep,
            spec,
            counts,
            ids,
            folds,
            tested_by,
            classes,
            overall,
            n_perm,
            seed,
            fourth,
            rec_moments=moments if unit == "recording" else None,
        )
        passes.extend(perm_passes)
    else:
        report["permutation"] = skipped_permutation(why)
    report["timing"] = {
        "cross_validation_s": round(t_cv, 3),
        "final_fit_s": round(time.perf_counter() - t0, 3),
        "folds_s": [],
        "backend": "dask",
    }
    report["engine"] = {
        "name": "distributed",
        "unit": unit,
        "persisted": persisted,
        "passes": passes,
        "fold_models_s": round(algebra_s, 3),
        "memory": {"start": memory_start, "end": _memory_mb()},
    }
    if sample is not None:
        report["engine"]["subsample"] = sample["report"]
    report["feature_names"] = final.feature_names
    report["prep"] = final.metadata["prep"]
    logger.info(
        "%s (distributed): balanced accuracy %.3f",
        vspec.scheme,
        report["overall"]["balanced_accuracy"],
    )
    return final, report
