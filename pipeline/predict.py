"""Apply a model bundle to recordings: its own preprocessing, windows and features."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline._fs import atomic_path
from pipeline.exceptions import BundleError

__all__ = ["bundle_feature_spec", "predict_recordings", "write_predictions"]

log = logging.getLogger(__name__)


def bundle_feature_spec(bundle: Any) -> Any:
    """Return the :class:`pipeline.table.FeatureTableSpec` a bundle was trained with.

    Every window is kept (mixed and excluded labels too): predictions cover whole
    recordings, and the true label, where the recording has one, is reported beside them.
    """
    from pipeline.spec import TaskSpec
    from pipeline.table import FeatureTableSpec

    task = bundle.metadata.get("task")
    if not isinstance(task, dict):
        msg = f"model bundle {bundle._name()} holds no task spec: cannot rebuild its features"
        raise BundleError(msg)
    spec = FeatureTableSpec.from_task(TaskSpec.model_validate(task))
    labels = dataclasses.replace(spec.labels, mixed="keep", exclude=())
    return dataclasses.replace(spec, labels=labels)


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
        ``prediction`` and ``proba__<class>`` per class, one row per window.

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
    frames = []
    for rid, ds in zip(rids, datasets, strict=True):
        table = recording_features(ds, spec)
        log.info("predict %s: %d windows", rid, len(table))
        frames.append(bundle.predict(table))
    return pd.concat(frames, ignore_index=True)


def write_predictions(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write predictions as CSV or Parquet (by extension), atomically.

    Returns
    -------
    Path
    """
    path = Path(path)
    if path.suffix not in (".parquet", ".csv", ".tsv"):
        msg = f"--out {str(path)!r}: expected a .csv, .tsv or .parquet file name"
        raise BundleError(msg)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return path
