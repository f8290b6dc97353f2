"""Summaries for exploring a cohort: label balance, raw snippets per class, 2-D projections.

These return plain pandas/xarray objects for :mod:`pipeline.plots` (or any other plotting
tool); everything that touches signals runs through dask, reading only what it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.exceptions import SpecError
from pipeline.store import label_names

if TYPE_CHECKING:
    from pipeline.store import Cohort

__all__ = ["class_snippets", "label_balance", "project_features"]

log = logging.getLogger(__name__)

BALANCE_COLUMNS = ("subject", "recording", "label", "seconds", "fraction")


def _recording_label(attrs: Mapping[str, Any]) -> str | None:
    value = attrs.get("label")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def label_balance(cohort: Cohort, recordings: Sequence[str] | None = None) -> pd.DataFrame:
    """Return how long each class lasts in each recording.

    Per-sample labels are counted with ``dask.array.bincount`` (one pass, all recordings in
    one graph); a recording labelled as a whole counts all its duration for that label; a
    recording without labels gives one row with label ``None``.

    Parameters
    ----------
    cohort : pipeline.store.Cohort
    recordings : sequence of str, optional
        Recording ids (default: all).

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, recording, label, seconds, fraction`` (fraction of the
        recording's duration), one row per (recording, label present).
    """
    rids = list(cohort.recording_ids if recordings is None else recordings)
    lazy: list[Any] = []
    meta = []
    for rid in rids:
        ds = cohort.recording(rid)
        fs = float(ds.attrs["sampling_rate"])
        n = int(ds.sizes["time"])
        if "label" in ds.variables:
            lab = ds["label"].data
            lab = lab if isinstance(lab, da.Array) else da.from_array(np.asarray(lab))
            lazy.append(da.bincount(lab.astype(np.int64)))
        else:
            lazy.append(None)
        meta.append((rid, str(ds.attrs.get("subject")), fs, n, ds.attrs, label_names(ds)))
    (counts,) = dask.compute(lazy)
    rows = []
    for (rid, subject, fs, n, attrs, names), c in zip(meta, counts, strict=True):
        if c is not None:
            for code in np.flatnonzero(c):
                label = names.get(int(code), str(int(code)))
                rows.append((subject, rid, label, c[code] / fs, c[code] / max(n, 1)))
        else:
            rows.append((subject, rid, _recording_label(attrs), n / fs, 1.0))
    return pd.DataFrame(rows, columns=list(BALANCE_COLUMNS))


def _longest_run(codes: np.ndarray, code: int) -> tuple[int, int]:
    """Return ``(start, length)`` of the longest run of ``code`` in ``codes``."""
    hit = np.concatenate(([False], codes == code, [False]))
    edges = np.flatnonzero(hit[1:] != hit[:-1])
    starts, ends = edges[::2], edges[1::2]
    if len(starts) == 0:
        return 0, 0
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k] - starts[k])


def class_snippets(
    cohort: Cohort,
    subject: str,
    *,
    seconds: float = 1.0,
    exclude: Sequence[str] = (),
    channels: Sequence[str] | None = None,
) -> dict[str, xr.DataArray]:
    """Return one raw snippet of a subject's signal per class.

    For each class, the snippet is centred in the longest stretch of that class over the
    subject's recordings (per-sample labels), or in the middle of a recording labelled with
    it as a whole. Only the snippets' samples are read.

    Parameters
    ----------
    cohort : pipeline.store.Cohort
    subject : str
        Subject id as in ``cohort.index["subject"]``.
    seconds : float, default 1.0
        Snippet duration (shorter if the class never lasts that long).
    exclude : sequence of str
        Class names to skip (e.g. ``["unmarked"]``).
    channels : sequence of str, optional
        Channels to keep (default: all).

    Returns
    -------
    dict of str to xarray.DataArray
        Class name to ``signal`` of dims ("time", "channel"), ``time`` in seconds from the
        recording's start, with attrs ``recording`` and ``units``; in class order of first
        appearance (per-sample codes ascending).

    Raises
    ------
    KeyError
        If the cohort has no such subject (the message lists the subjects).
    """
    idx = cohort.index
    rids = idx.loc[idx["subject"].astype(str) == str(subject), "recording"].tolist()
    if not rids:
        msg = f"class_snippets: no subject {subject!r} in {str(cohort.path)!r}; " + (
            f"subjects are {cohort.subjects!r}"
        )
        raise KeyError(msg)
    best: dict[str, tuple[int, str, int, int]] = {}  # label -> (length, rid, start, order)
    for rid in rids:
        ds = cohort.recording(rid)
        n = int(ds.sizes["time"])
        if "label" in ds.variables:
            codes = np.asarray(ds["label"].values)
            names = label_names(ds)
            for code in np.unique(codes):
                name = names.get(int(code), str(int(code)))
                start, length = _longest_run(codes, int(code))
                if name not in best or length > best[name][0]:
                    best[name] = (length, rid, start, int(code))
        else:
            name = _recording_label(ds.attrs)
            if name is not None and (name not in best or n > best[name][0]):
                best[name] = (n, rid, 0, len(best))
    out: dict[str, xr.DataArray] = {}
    for name, (length, rid, start, _) in sorted(best.items(), key=lambda kv: kv[1][3]):
        if name in exclude or length == 0:
            continue
        ds = cohort.recording(rid)
        fs = float(ds.attrs["sampling_rate"])
        want = max(1, round(seconds * fs))
        take = min(want, length)
        a = start + (length - take) // 2
        sig = ds["signal"].isel(time=slice(a, a + take))
        if channels is not None:
            sig = sig.sel(channel=list(channels))
        sig = sig.load().assign_coords(time=np.arange(a, a + take) / fs)
        sig.attrs = {"recording": rid, "units": list(map(str, ds["unit"].values))}
        out[name] = sig
    return out


def project_features(
    table: pd.DataFrame,
    *,
    prep: Mapping[str, Any] | None = None,
    n_components: int = 2,
    max_windows: int | None = 5000,
    seed: int = 0,
) -> pd.DataFrame:
    """Return a PCA projection of a feature table's windows.

    The features go through :class:`pipeline.learn.FeaturePrep` (selection, log transform,
    per-recording or per-subject z-scoring: the same preparation a model sees), then are
    standardised across the table and projected on their first principal components.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        Feature table (identifier columns then ``<channel>__<feature>``).
    prep : PrepSpec or mapping, optional
        A model's ``prep`` config, e.g. ``{"log": ["mav"], "normalize": "recording"}``.
    n_components : int, default 2
    max_windows : int or None, default 5000
        Fit and return a random subset of at most this many windows (None: all).
    seed : int
        Seed of the subset.

    Returns
    -------
    pandas.DataFrame of shape (n_kept, n_ids + n_components)
        ``recording, subject, label`` then ``pc1 .. pc<n>``; ``attrs["explained_variance"]``
        holds the variance ratio of each component.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from pipeline.learn.prep import FeaturePrep

    if not isinstance(n_components, int) or n_components < 1:
        msg = f"project_features: 'n_components' expected an integer >= 1, found {n_components!r}"
        raise SpecError(msg)
    # group statistics use every window of the group
    X = FeaturePrep.from_spec(prep, "project_features").fit_transform(table)
    keep = np.isfinite(X).all(axis=1)
    rows = np.flatnonzero(keep)
    if max_windows is not None and len(rows) > max_windows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_windows, replace=False))
    if len(rows) <= n_components:
        msg = (
            f"project_features: {len(rows)} windows with finite features; expected more than "
            f"n_components={n_components}"
        )
        raise SpecError(msg)
    Z = StandardScaler().fit_transform(X[rows])
    pca = PCA(n_components=n_components, random_state=seed)
    pcs = pca.fit_transform(Z)
    ids = [c for c in ("recording", "subject", "label") if c in table.columns]
    out = table.iloc[rows][ids].reset_index(drop=True).copy()
    for j in range(n_components):
        out[f"pc{j + 1}"] = pcs[:, j]
    out.attrs["explained_variance"] = pca.explained_variance_ratio_.tolist()
    return out
