"""Feature preparation applied identically at fitting and at prediction time.

A feature table holds identifier columns (``recording, subject, session, run, start, label``)
followed by float feature columns named ``<channel>__<feature>``. :class:`FeaturePrep` is a
scikit-learn transformer that turns such a table into the float matrix an estimator sees: it
selects feature kinds, optionally log-transforms amplitude-like features, optionally averages
each feature over the preceding windows of its recording, and optionally z-scores every
feature within each recording (or subject) using that group's own windows only, without
labels.

Per-group normalisation is *unsupervised* and *self-contained*: the statistics applied to a
window come from the rows handed to :meth:`FeaturePrep.transform` that share its group, and
from nothing else. :meth:`FeaturePrep.fit` learns only which columns to read, so no statistic
can travel from test data to training data as long as training rows and test rows are
transformed in separate calls, which is what a scikit-learn ``Pipeline`` inside
``cross_validate`` does, and what :func:`pipeline.learn.fit.fit_and_validate` does for every
fold. The flip side: a group must be complete in one call (all windows of a recording), as
it is at prediction time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from pipeline.exceptions import SpecError
from pipeline.features.covariance import is_pairwise_kind
from pipeline.learn.riemann import (
    recenter,
    reference_point,
    spd_matrices,
    tangent_names,
    tangent_vectors,
)
from pipeline.spec.errors import parse
from pipeline.spec.learn import PrepSpec
from pipeline.table import ID_COLUMNS

__all__ = [
    "ID_COLUMNS",
    "FeaturePrep",
    "feature_columns",
    "feature_kind",
    "group_statistics",
    "trailing_mean",
    "zscore_by_group",
]

logger = logging.getLogger(__name__)

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


def is_feature_table(X: Any) -> bool:
    """Return whether ``X`` is a DataFrame with ``<channel>__<feature>`` columns."""
    return isinstance(X, pd.DataFrame) and bool(feature_columns(X))


def select_columns(spec: PrepSpec, table: pd.DataFrame) -> list[str]:
    """Return the feature columns of ``table`` that ``spec`` uses, in table order.

    Raises
    ------
    SpecError
        If a requested feature kind (or a log feature) has no column in the table.
    """
    cols = feature_columns(table)
    kinds = {feature_kind(c) for c in cols}
    if spec.features is not None:
        missing = sorted(set(spec.features) - kinds)
        if missing:
            msg = (
                f"FeaturePrep: feature kinds {missing} requested in key 'features' have no "
                f"column '<channel>__<kind>' in the table; available kinds: {sorted(kinds)}"
            )
            raise SpecError(msg)
        cols = [c for c in cols if feature_kind(c) in set(spec.features)]
    missing_log = sorted(set(spec.log) - {feature_kind(c) for c in cols})
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


class FeaturePrep(TransformerMixin, BaseEstimator):
    """Selection, log transform, causal context and per-group z-scoring of features.

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
        deviation over the rows given to :meth:`transform` (labels are not used).
    tangent_space : str or sequence of str, optional
        A pairwise feature kind (``cov_oas``, ``cov_lw``, ``cov``, a filter-bank band
        ``fbcov_alpha``), or several (a filter bank): the upper-triangle columns of each are
        rebuilt into SPD matrices and replaced by their tangent vectors
        ``<ch_i>:<ch_j>__ts_<kind>`` at the ``tangent_mean`` of the training windows
        (fitted in :meth:`fit`, so inside each fold), one tangent space per kind,
        concatenated in the order given; the other selected features pass through
        ``log``/``context``/``normalize`` as usual. Needs a feature table.
    tangent_mean : {"riemann", "logeuclid", "euclid", "identity"}
        The reference point of each tangent space: the Riemannian (affine-invariant) mean,
        the log-Euclidean mean or the arithmetic mean of the training matrices, or the
        identity (the log-Euclidean map ``logm(C)``: nothing fitted, so the distributed
        engine runs it too; :func:`pipeline.learn.riemann.reference_point`); the map itself
        is pyriemann's Riemannian log at that point.
    recenter : {None, "riemann", "euclid"}
        With ``tangent_space``: whiten each subject's matrices by that subject's own mean
        (Riemannian or arithmetic) over the rows given to :meth:`fit` or :meth:`transform`,
        without labels; the reference point is then the identity. A held-out subject is
        re-centred with all its own (unlabeled) windows.

    Attributes
    ----------
    columns_ : list of str
        The columns read from ``X``, in order: the selected ``<channel>__<kind>`` columns of
        a feature table, or every column of an array.
    table_input_ : bool
        Whether :meth:`fit` saw a feature table (a DataFrame with ``__`` columns, whose
        identifier columns give the groups) rather than a plain matrix (one group, rows in
        time order).
    n_features_in_ : int
        Number of columns read.
    feature_names_in_ : numpy.ndarray of str, shape (n_features_in_,)
        Their names, when ``X`` was a DataFrame.

    Notes
    -----
    Parameters are checked in :meth:`fit` against :class:`pipeline.spec.learn.PrepSpec`,
    so a bad value is reported with its key, what was expected and what was found. With a
    plain matrix ``X`` (no column names), every row belongs to one recording and one
    subject, and the row order is the time order; ``features`` and ``log`` need column
    names and are refused.
    """

    def __init__(
        self,
        *,
        features: Sequence[str] | None = None,
        log: Sequence[str] = (),
        log_offset: float = 1e-12,
        context: int = 1,
        normalize: str | None = None,
        tangent_space: str | Sequence[str] | None = None,
        tangent_mean: str = "riemann",
        recenter: str | None = None,
    ) -> None:
        self.features = features
        self.log = log
        self.log_offset = log_offset
        self.context = context
        self.normalize = normalize
        self.tangent_space = tangent_space
        self.tangent_mean = tangent_mean
        self.recenter = recenter

    @classmethod
    def from_spec(
        cls, spec: PrepSpec | Mapping[str, Any] | None, source: str = "FeaturePrep"
    ) -> FeaturePrep:
        """Return an unfitted transformer with the (validated) parameters of ``spec``."""
        spec = parse(PrepSpec, {} if spec is None else spec, source, "prep")
        return cls(**dict(spec))

    def spec(self) -> PrepSpec:
        """Return the parameters as a validated :class:`~pipeline.spec.learn.PrepSpec`.

        Raises
        ------
        SpecError
            Naming the parameter, what was expected and what was found.
        """
        return parse(PrepSpec, self.get_params(), "FeaturePrep", "prep")

    def fit(self, X: Any, y: Any = None) -> FeaturePrep:
        """Check the parameters and learn which columns to read from ``X``.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_windows, n_columns) or array-like of shape \
(n_windows, n_features)
            A feature table (identifier columns and ``<channel>__<feature>`` columns), or a
            plain feature matrix.
        y : ignored

        Returns
        -------
        self
        """
        spec = self.spec()
        if spec.recenter is not None and spec.tangent_space is None:
            msg = (
                f"FeaturePrep: key 'recenter' ({spec.recenter!r}) re-centres the matrices of "
                f"'tangent_space', expected a pairwise kind there (e.g. 'cov_oas'), found None"
            )
            raise SpecError(msg)
        self.table_input_ = is_feature_table(X)
        if self.table_input_:
            _check_id_columns(spec, X)
            self.columns_ = select_columns(spec, X)
            self.feature_names_in_ = np.asarray(self.columns_, dtype=object)
            self.n_features_in_ = len(self.columns_)
            if spec.tangent_space is not None:
                centred = spec.recenter is not None
                self.reference_, self.ts_channels_ = [], []
                for kind in _tangent_kinds(spec):
                    mats, channels = self._matrices(spec, X, kind)
                    self.reference_.append(reference_point(mats, centred, spec.tangent_mean))
                    self.ts_channels_.append(channels)
            return self
        if spec.features is not None or spec.log or spec.tangent_space is not None:
            msg = (
                f"FeaturePrep: keys 'features' and 'log' pick columns by feature kind (and "
                f"'tangent_space' reads '<ch_i>:<ch_j>__<kind>' columns), from "
                f"column names '<channel>__<kind>'; X has no such column (got "
                f"{type(X).__name__}); pass the feature table or leave them unset"
            )
            raise SpecError(msg)
        validate_data(self, X, dtype="float64", ensure_all_finite=False)
        self.columns_ = [str(c) for c in _check_feature_names_in(self, None)]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Return the prepared features of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_windows, n_columns) or array-like of shape \
(n_windows, n_features)
            Of the kind given to :meth:`fit`. For ``normalize`` or ``context`` set, every
            group must be complete (all windows of a recording).

        Returns
        -------
        numpy.ndarray of shape (n_windows, n_features_in_)
            float64, rows in the order of ``X``.
        """
        check_is_fitted(self)
        spec = self.spec()
        if self.table_input_:
            if not isinstance(X, pd.DataFrame):
                msg = (
                    f"FeaturePrep was fitted on a feature table; transform needs one too "
                    f"(a DataFrame with columns {self.columns_[:3]}...), got {type(X).__name__}"
                )
                raise SpecError(msg)
            missing = [c for c in self.columns_ if c not in X.columns]
            if missing:
                msg = (
                    f"FeaturePrep: the table lacks {len(missing)} of the feature columns it "
                    f"was fitted on, e.g. {missing[:5]}"
                )
                raise SpecError(msg)
            _check_id_columns(spec, X)
            frame, ids = X.loc[:, self.columns_].astype("float64"), X
            if spec.tangent_space is not None:
                return self._with_tangent_space(spec, frame, ids)
        else:
            arr = validate_data(self, X, reset=False, dtype="float64", ensure_all_finite=False)
            frame = pd.DataFrame(arr, columns=self.columns_)
            n = len(frame)
            ids = pd.DataFrame(  # one recording of one subject, rows in time order
                {"recording": np.zeros(n, int), "subject": np.zeros(n, int), "start": np.arange(n)}
            )
        return prepare(frame, ids, spec).to_numpy()

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Return the names of the output columns (the input columns read, in order)."""
        check_is_fitted(self)
        if self.table_input_:
            if self.tangent_space is not None:
                kinds = _tangent_kinds(self.spec())
                kept = [c for c in self.columns_ if feature_kind(c) not in kinds]
                ts = [
                    n
                    for kind, chans in zip(kinds, self.ts_channels_, strict=True)
                    for n in tangent_names(kind, chans)
                ]
                return np.asarray(kept + ts, dtype=object)
            return np.asarray(self.columns_, dtype=object)
        return _check_feature_names_in(self, input_features)

    def _matrices(self, spec: PrepSpec, X: pd.DataFrame, kind: str) -> tuple[np.ndarray, list[str]]:
        """The (re-centred) SPD matrices of pairwise kind ``kind`` in the rows of ``X``."""
        cols = [c for c in self.columns_ if feature_kind(c) == kind]
        if not is_pairwise_kind(kind) or not cols:
            msg = (
                f"FeaturePrep: key 'tangent_space' expected a pairwise feature kind among the "
                f"selected columns (e.g. 'cov_oas', columns '<ch_i>:<ch_j>__cov_oas'), found "
                f"{kind!r} with no column; kinds: {sorted(set(map(feature_kind, self.columns_)))}"
            )
            raise SpecError(msg)
        mats, channels = spd_matrices(X.loc[:, cols].to_numpy(np.float64), cols, kind)
        if spec.recenter is not None:
            if "subject" not in X.columns:
                msg = "FeaturePrep: key 'recenter' needs the table's 'subject' column, found none"
                raise SpecError(msg)
            mats = recenter(mats, X["subject"].astype(str).to_numpy(), spec.recenter)
        return mats, channels

    def _with_tangent_space(
        self, spec: PrepSpec, frame: pd.DataFrame, ids: pd.DataFrame
    ) -> np.ndarray:
        kinds = _tangent_kinds(spec)
        rest = [c for c in self.columns_ if feature_kind(c) not in kinds]
        ts = np.hstack(
            [
                tangent_vectors(self._matrices(spec, ids, kind)[0], ref)
                for kind, ref in zip(kinds, self.reference_, strict=True)
            ]
        )
        if not rest:
            return ts
        other = prepare(frame.loc[:, rest], ids, spec).to_numpy()
        return np.hstack([other, ts])

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # missing feature values pass through (as NaN) rather than being refused
        tags.input_tags.allow_nan = True
        return tags


def _tangent_kinds(spec: PrepSpec) -> tuple[str, ...]:
    """The pairwise kinds of ``spec.tangent_space``, in order (none when unset)."""
    ts = spec.tangent_space
    if ts is None:
        return ()
    kinds = (ts,) if isinstance(ts, str) else tuple(ts)
    if not kinds or len(set(kinds)) != len(kinds):
        msg = (
            f"FeaturePrep: key 'tangent_space' expected a pairwise kind or a list of distinct "
            f"ones (e.g. ['fbcov_theta', 'fbcov_alpha']), found {list(kinds)!r}"
        )
        raise SpecError(msg)
    return kinds


def _check_id_columns(spec: PrepSpec, table: pd.DataFrame) -> None:
    need = [spec.normalize] if spec.normalize else []
    need += ["recording", "start"] if spec.context > 1 else []
    missing = [c for c in dict.fromkeys(need) if c not in table.columns]
    if missing:
        msg = (
            f"FeaturePrep(normalize={spec.normalize!r}, context={spec.context}): the table has "
            f"no column {missing}; pass the feature table with its identifier columns "
            f"{list(ID_COLUMNS)}"
        )
        raise SpecError(msg)


def prepare(X: pd.DataFrame, table: pd.DataFrame, spec: PrepSpec) -> pd.DataFrame:
    """Return the log-transformed, context-averaged and z-scored features ``X``.

    Parameters
    ----------
    X : pandas.DataFrame of shape (n_windows, n_features)
        float64 features, columns named ``<channel>__<kind>`` when ``spec.log`` is set.
    table : pandas.DataFrame
        Aligned with ``X``; supplies the group column and ``recording``/``start``.
    spec : PrepSpec

    Returns
    -------
    pandas.DataFrame of shape (n_windows, n_features)
    """
    if spec.log:
        log_cols = [c for c in X.columns if feature_kind(c) in set(spec.log)]
        vals = X[log_cols].to_numpy()
        if np.nanmin(vals, initial=0.0) < 0:
            bad = [c for c in log_cols if (X[c] < 0).any()]
            msg = (
                f"FeaturePrep: log transform needs non-negative features; columns {bad} "
                f"hold negative values (min {float(np.nanmin(vals))!r})"
            )
            raise SpecError(msg)
        X[log_cols] = np.log(vals + spec.log_offset)
    if spec.context > 1:
        X = trailing_mean(X, table, spec.context)
    if spec.normalize is not None:
        X = zscore_by_group(X, table[spec.normalize])
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
