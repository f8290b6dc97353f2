"""Feature preparation applied identically at fitting and at prediction time.

A feature table holds identifier columns (``recording, subject, session, run, start, label``)
followed by float feature columns named ``<channel>__<feature>``. :class:`FeaturePrep` turns
such a table into the float matrix an estimator sees: it selects feature kinds, optionally
log-transforms amplitude-like features, and optionally z-scores every feature within each
recording (or subject) using that group's own windows only, without labels.

Per-group normalisation is *unsupervised* and *self-contained*: the statistics applied to a
window come from the rows handed to :meth:`FeaturePrep.apply` that share its group, and from
nothing else. Nothing is fitted or stored, so no statistic can travel from test data to
training data as long as training rows and test rows are prepared in separate calls, which is
what :func:`pipeline.learn.fit.fit_and_validate` does for every fold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.exceptions import SpecError

logger = logging.getLogger(__name__)

ID_COLUMNS: tuple[str, ...] = ("recording", "subject", "session", "run", "start", "label")
"""Identifier columns every feature table carries, in this order."""

NORMALIZE_CHOICES: tuple[str | None, ...] = (None, "recording", "subject")
MIN_GROUP_WINDOWS = 20
"""Below this many windows a group's mean and standard deviation are noisy; we warn."""

_EPS = 1e-12


def feature_columns(table: pd.DataFrame) -> list[str]:
    """Return the feature columns of a feature table, in table order.

    Parameters
    ----------
    table : pandas.DataFrame or dask.dataframe.DataFrame
        Feature table; feature columns are those whose name contains ``"__"``.

    Returns
    -------
    list of str
        Column names ``<channel>__<feature>``.
    """
    return [str(c) for c in table.columns if "__" in str(c)]


def feature_kind(column: str) -> str:
    """Return the feature part of a ``<channel>__<feature>`` column name."""
    return column.split("__", 1)[1]


@dataclass(frozen=True)
class FeaturePrep:
    """Selection, log transform and per-group z-scoring of feature columns.

    Parameters
    ----------
    features : sequence of str or None
        Feature kinds to keep (the part after ``"__"``, e.g. ``"mav"``, ``"ar1"``); ``None``
        keeps every feature column.
    log : sequence of str
        Feature kinds replaced by ``log(x + log_offset)``; they must be non-negative.
    log_offset : float
        Added before the logarithm so silent channels (x == 0) stay finite.
    context : int
        Replace every feature by its trailing mean over the last ``context`` window steps of
        the same recording (by ``start``; 1 = off). Causal, so usable in real time.
    normalize : {None, "recording", "subject"}
        Z-score every feature within each group, with the group's own mean and standard
        deviation over the rows given to :meth:`apply` (labels are not used).
    """

    features: tuple[str, ...] | None = None
    log: tuple[str, ...] = field(default_factory=tuple)
    log_offset: float = 1e-12
    context: int = 1
    normalize: str | None = None

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE_CHOICES:
            msg = (
                f"FeaturePrep: key 'normalize' must be one of {list(NORMALIZE_CHOICES)}, "
                f"got {self.normalize!r}"
            )
            raise SpecError(msg)
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "log", tuple(self.log))
        if not isinstance(self.context, int | np.integer) or self.context < 1:
            msg = f"FeaturePrep: key 'context' must be an integer >= 1, got {self.context!r}"
            raise SpecError(msg)
        if not np.isfinite(self.log_offset) or self.log_offset < 0:
            msg = (
                f"FeaturePrep: key 'log_offset' must be a finite value >= 0, "
                f"got {self.log_offset!r}"
            )
            raise SpecError(msg)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> FeaturePrep:
        """Build from a mapping with keys ``features, log, log_offset, normalize``."""
        if cfg is None:
            return cls()
        if not isinstance(cfg, Mapping):
            msg = f"model config key 'prep' must be a mapping, got {cfg!r}"
            raise SpecError(msg)
        allowed = {"features", "log", "log_offset", "context", "normalize"}
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            msg = f"model config key 'prep': unknown keys {unknown}; allowed: {sorted(allowed)}"
            raise SpecError(msg)
        return cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description, the inverse of :meth:`from_config`."""
        d = asdict(self)
        d["features"] = None if self.features is None else list(self.features)
        d["log"] = list(self.log)
        return d

    def select(self, table: pd.DataFrame) -> list[str]:
        """Return the feature columns this prep uses from ``table``.

        Raises
        ------
        SpecError
            If a requested feature kind (or a log feature) has no column in the table.
        """
        cols = feature_columns(table)
        kinds = {feature_kind(c) for c in cols}
        wanted = self.features
        if wanted is not None:
            missing = sorted(set(wanted) - kinds)
            if missing:
                msg = (
                    f"FeaturePrep: feature kinds {missing} requested in key 'features' have no "
                    f"column '<channel>__<kind>' in the table; available kinds: {sorted(kinds)}"
                )
                raise SpecError(msg)
            cols = [c for c in cols if feature_kind(c) in set(wanted)]
        missing_log = sorted(set(self.log) - {feature_kind(c) for c in cols})
        if missing_log:
            msg = (
                f"FeaturePrep: feature kinds {missing_log} in key 'log' are not among the "
                f"selected features {sorted({feature_kind(c) for c in cols})}"
            )
            raise SpecError(msg)
        if not cols:
            msg = "FeaturePrep: the table has no feature column (names containing '__')"
            raise SpecError(msg)
        return cols

    def apply(self, table: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Return the prepared float features of ``table``.

        Parameters
        ----------
        table : pandas.DataFrame of shape (n_windows, n_columns)
            Feature table with identifier columns. For ``normalize`` set, every group must
            be complete (all windows of a recording), as at prediction time.
        columns : sequence of str, optional
            Feature columns to use (default: :meth:`select`). Passing the training columns
            at prediction time guarantees the same order.

        Returns
        -------
        pandas.DataFrame of shape (n_windows, n_features)
            Same index as ``table``; float64.
        """
        cols = list(columns) if columns is not None else self.select(table)
        X = table.loc[:, cols].astype("float64")
        if self.log:
            log_cols = [c for c in cols if feature_kind(c) in set(self.log)]
            vals = X[log_cols].to_numpy()
            if np.nanmin(vals, initial=0.0) < 0:
                bad = [c for c in log_cols if (X[c] < 0).any()]
                msg = (
                    f"FeaturePrep: log transform needs non-negative features; columns {bad} "
                    f"hold negative values (min {float(np.nanmin(vals))!r})"
                )
                raise SpecError(msg)
            X[log_cols] = np.log(vals + self.log_offset)
        if self.context > 1:
            X = trailing_mean(X, table, self.context)
        if self.normalize is not None:
            X = zscore_by_group(X, table[self.normalize])
        return X


def zscore_by_group(X: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Z-score every column within each group, using only that group's rows.

    Parameters
    ----------
    X : pandas.DataFrame of shape (n_windows, n_features)
    groups : pandas.Series of shape (n_windows,)
        Group key of every row (recording or subject), aligned with ``X``.

    Returns
    -------
    pandas.DataFrame of shape (n_windows, n_features)
        ``(x - mean_g) / std_g`` (population std; a constant column gives 0).
    """
    g = X.groupby(groups.to_numpy(), sort=False)
    sizes = g.size()
    small = sizes[sizes < MIN_GROUP_WINDOWS]
    if len(small):
        logger.warning(
            "per-group normalisation: groups %s have fewer than %d windows; their statistics "
            "are noisy (normalise whole recordings)",
            list(small.index)[:5],
            MIN_GROUP_WINDOWS,
        )
    mean = g.transform("mean")
    std = g.transform("std", ddof=0)
    return (X - mean) / (std + _EPS)


def trailing_mean(X: pd.DataFrame, table: pd.DataFrame, n: int) -> pd.DataFrame:
    """Return the mean of each row and the windows of its recording in the ``n - 1`` steps before.

    Time-based, not row-based: with the recording's window step ``step`` (median difference
    of ``start``), a row starting at ``s`` averages the rows of its recording with start in
    ``(s - n * step, s]``, so windows missing from the table (dropped, or a gap in the
    recording) are not replaced by older ones.

    Parameters
    ----------
    X : pandas.DataFrame of shape (n_windows, n_features)
    table : pandas.DataFrame
        Aligned with ``X``; supplies ``recording`` and ``start`` (seconds).
    n : int
        Number of window steps averaged (fewer rows at the start of a recording or after
        a gap).

    Returns
    -------
    pandas.DataFrame of shape (n_windows, n_features), same index and row order as ``X``.
    """
    vals = X.to_numpy(dtype="float64")
    out = np.empty_like(vals)
    rec = table["recording"].astype(str).to_numpy()
    start = table["start"].to_numpy(dtype="float64")
    for r in np.unique(rec):
        pos = np.flatnonzero(rec == r)
        pos = pos[np.argsort(start[pos], kind="stable")]
        t = start[pos]
        steps = np.diff(t)
        steps = steps[steps > 0]
        step = float(np.median(steps)) if steps.size else 1.0
        # first row inside (t - n*step, t]; half a step of slack absorbs float rounding
        first = np.searchsorted(t, t - (n - 0.5) * step, side="left")
        csum = np.vstack([np.zeros((1, vals.shape[1])), np.cumsum(vals[pos], axis=0)])
        last = np.arange(1, len(pos) + 1)
        out[pos] = (csum[last] - csum[first]) / (last - first)[:, None]
    return pd.DataFrame(out, index=X.index, columns=X.columns)


def group_statistics(
    table: pd.DataFrame, by: str, columns: Sequence[str]
) -> dict[str, dict[str, np.ndarray]]:
    """Return each group's mean and std of ``columns`` (for inspection and tests).

    Returns
    -------
    dict
        ``{group: {"mean": array (n_features,), "std": array (n_features,)}}``.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, sub in table.groupby(by, sort=True):
        vals = sub.loc[:, list(columns)].to_numpy(dtype="float64")
        out[str(key)] = {"mean": vals.mean(0), "std": vals.std(0)}
    return out
