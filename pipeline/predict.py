"""Apply a model bundle to recordings: its own preprocessing, windows and features."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline._fs import atomic_path, atomic_write_json, canonical_json
from pipeline.exceptions import BundleError
from pipeline.windows import n_windows

__all__ = [
    "bundle_feature_spec",
    "predict_recordings",
    "training_overlap_warning",
    "write_predictions",
]

log = logging.getLogger(__name__)


def bundle_feature_spec(bundle: Any) -> Any:
    """Return the :class:`pipeline.table.FeatureTableSpec` a bundle was trained with.

    The label policy is the validation's own: windows it drops (mixed windows when
    ``windows.mixed`` is ``drop``, excluded labels) are left out or unlabeled exactly as in
    validation, so :func:`predict_recordings` scores the windows validation scored.
    """
    from pipeline.spec import TaskSpec
    from pipeline.table import FeatureTableSpec

    task = bundle.metadata.get("task")
    if not isinstance(task, dict):
        msg = f"model bundle {bundle._name()} holds no task spec: cannot rebuild its features"
        raise BundleError(msg)
    return FeatureTableSpec.from_task(TaskSpec.model_validate(task))


def _planned_windows(ds: Any, spec: Any) -> int | None:
    """Return how many windows the plan lays on a recording, before the label policy.

    None after a ``resample`` step: the resampled length is the filter's to decide.
    """
    if any(step.get("op") == "resample" for step in spec.steps()):
        return None
    length, stride = spec.window.in_samples(float(ds.attrs["sampling_rate"]))
    return n_windows(int(ds.sizes["time"]), length, stride)


def training_overlap_warning(subjects: Sequence[str], training: Sequence[str]) -> str | None:
    """Return the warning for recordings whose subject the model was trained on, or None."""
    seen = sorted(set(map(str, subjects)) & set(map(str, training)))
    if not seen:
        return None
    return (
        f"subject(s) {', '.join(seen)} were in the model's training set: their predictions "
        "are not an estimate of performance on a new person (the validation report's "
        "held-out figures are)"
    )


def predict_recordings(
    bundle: Any,
    store: str | os.PathLike[str],
    recordings: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Return per-window predictions and class probabilities for recordings of a store.

    Parameters
    ----------
    bundle : pipeline.learn.Bundle or path
        A loaded bundle or the path of one.
    store : path
        A cohort store.
    recordings : sequence of str, optional
        Recording ids (default: all).

    Returns
    -------
    pandas.DataFrame
        ``recording, subject, session, run, start, label`` (the true label, if known), then
        ``prediction`` and ``proba__<class>`` per class, and ``subject_in_training``; one
        row per scored window: of a recording with labels, the windows validation scored
        (the policy's dropped windows take part in the normalisation only); of one
        without, every window. ``frame.attrs
        ["predict"]`` holds what was scored: ``label_policy``, per recording
        ``{"windows_planned", "windows_scored", "windows_dropped"}``, the
        ``training_subjects_scored`` and the ``warnings`` (also logged).

    Raises
    ------
    BundleError
        If a recording's channels, sampling rate or units differ from the bundle's; the
        message names the recording and each difference.
    """
    from pipeline.learn import load_bundle
    from pipeline.store import open_cohort
    from pipeline.table import recording_features

    if not hasattr(bundle, "metadata"):
        bundle = load_bundle(bundle)
    cohort = open_cohort(store)
    rids = list(recordings or cohort.recording_ids)
    datasets = [cohort.recording(rid) for rid in rids]
    for ds in datasets:  # refuse before computing anything
        # per-channel names and units are the recording's coordinates, not attributes
        channels = {"channels": ds["channel"].values.tolist(), "units": ds["unit"].values.tolist()}
        bundle.check_compatible({**ds.attrs, **channels})
    spec = bundle_feature_spec(bundle)
    training = [str(s) for s in bundle.metadata.get("training_subjects") or []]
    warnings = []
    if not bundle.metadata.get("training_subjects"):
        warnings.append(
            "the bundle records no training subjects: cannot tell whether these recordings' "
            "subjects were in training"
        )
    subjects = [str(ds.attrs.get("subject", "")) for ds in datasets]
    overlap = training_overlap_warning(subjects, training)
    if overlap:
        warnings.append(overlap)
    for w in warnings:
        log.warning("predict: %s", w)
    frames, scored = [], {}
    for rid, ds in zip(rids, datasets, strict=True):
        table = recording_features(ds, spec)
        planned = _planned_windows(ds, spec)
        # With dropped: unlabel the policy's dropped windows stay in the table with label
        # None, counted in the recording's normalisation as in validation, but not scored.
        labeled = bool(table["label"].notna().any())
        keep = table["label"].notna().to_numpy() if labeled else np.ones(len(table), bool)
        n_scored = int(keep.sum())
        scored[rid] = {
            "labels": "known" if labeled else "none (every window scored)",
            "windows_planned": planned,
            "windows_scored": n_scored,
            "windows_dropped": None if planned is None else planned - n_scored,
        }
        log.info("predict %s: %d of %s windows scored", rid, n_scored, planned)
        frame = bundle.predict(table)
        frame = frame.loc[keep].reset_index(drop=True)
        frame["subject_in_training"] = frame["subject"].astype(str).isin(training)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["predict"] = {
        "label_policy": spec.labels.to_dict(),
        "windows": spec.window.to_dict(),
        "recordings": scored,
        "training_subjects_scored": sorted(set(subjects) & set(training)),
        "warnings": warnings,
    }
    return out


def write_predictions(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write predictions as CSV or Parquet (by extension), atomically, with what was scored.

    ``frame.attrs["predict"]`` (see :func:`predict_recordings`) goes into the Parquet
    file's metadata (key ``cohort_predict``) or, for CSV/TSV, into ``<path>.json`` beside
    it.

    Returns
    -------
    Path
    """
    path = Path(path)
    if path.suffix not in (".parquet", ".csv", ".tsv"):
        msg = f"--out {str(path)!r}: expected a .csv, .tsv or .parquet file name"
        raise BundleError(msg)
    meta = frame.attrs.get("predict")
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrow = pa.Table.from_pandas(frame, preserve_index=False)
            if meta is not None:
                extra = {b"cohort_predict": canonical_json(meta).encode()}
                arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **extra})
            pq.write_table(arrow, tmp)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    if meta is not None and path.suffix != ".parquet":
        atomic_write_json(path.with_name(path.name + ".json"), meta)
    return path
