"""Validation schemes as scikit-learn splitters that keep test subjects, sessions and runs out
of training.

Each scheme of a :class:`pipeline.spec.learn.ValidationSpec` is a
``sklearn.model_selection.BaseCrossValidator``, usable with ``cross_validate`` and
``GridSearchCV``:

:class:`WithinSubjectSplit` (``within_subject``)
    Per subject, train on one run (or session) and test on another:
    ``{"scheme": "within_subject", "by": "run", "train": "run-1", "test": "run-2"}``
    (``train``/``test`` default to the subject's first and last value of ``by``).
:class:`CrossSessionSplit` (``cross_session``)
    Per subject, each session is tested once, trained on that subject's other sessions.
:class:`LeaveSubjectOut` (``loso``)
    One fold per subject, trained on every other subject.
:class:`SubjectKFold` (``group_kfold``)
    ``{"scheme": "group_kfold", "n_splits": 5}``: k folds of whole subjects.
:class:`RandomWindowSplit` (``random``)
    Window-level shuffled k-fold. Refused unless ``"allow_window_leakage": true``.

The splitters read ``subject``, ``session`` and ``run`` from the identifier columns of ``X``
(a feature table); the subject-level ones also take ``groups`` (the subject of every row)
with a plain matrix. Splits are computed over *all* rows given (unlabeled windows included)
so that the per-recording normalisation of each side sees only that side's windows. Every
fold is checked (:func:`check_fold`) before it is yielded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator, GroupKFold, KFold

from pipeline.exceptions import LeakageError, SpecError
from pipeline.spec.errors import parse
from pipeline.spec.learn import ValidationSpec
from pipeline.table import ID_COLUMNS

__all__ = [
    "RANDOM_SPLIT_MESSAGE",
    "CrossSessionSplit",
    "Fold",
    "LeaveSubjectOut",
    "RandomWindowSplit",
    "SubjectKFold",
    "WithinSubjectSplit",
    "check_fold",
    "make_folds",
    "make_splitter",
    "validation_spec",
]

RANDOM_SPLIT_MESSAGE = (
    "validation scheme 'random' splits windows at random, so overlapping windows of one "
    "recording (200 ms windows every 50 ms share 75% of their samples) fall on both sides of "
    "the split: the test set is nearly a copy of the training set. On the EMG gesture data "
    "(random forest, Hudgins features) this inflates balanced accuracy from 0.82 "
    "(leave-one-subject-out) to 0.97, a figure no new user will ever see. Use 'loso', "
    "'group_kfold', 'within_subject' or 'cross_session'. "
    "If you really want window-level splits (e.g. to reproduce a paper), ask for them "
    'explicitly: {"scheme": "random", "allow_window_leakage": true}.'
)


@dataclass(frozen=True)
class Fold:
    """One train/test split of a feature table.

    Attributes
    ----------
    name : str
        E.g. ``"test=sub-03"`` or ``"sub-03:run-1->run-2"``.
    train : numpy.ndarray of int, shape (n_train_rows,)
        Positional row indices (into the table) of the training side, unlabeled included.
    test : numpy.ndarray of int, shape (n_test_rows,)
        Positional row indices of the test side.
    level : str
        The identifier that must not straddle the split: ``"subject"``, ``"session"``,
        ``"run"`` (within-subject) or ``"window"`` (random, leaky by construction).
    """

    name: str
    train: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    level: str

    def describe(self, table: pd.DataFrame) -> dict[str, Any]:
        """Return a JSON-ready summary: name, level, subjects and recordings per side."""
        tr, te = table.iloc[self.train], table.iloc[self.test]
        return {
            "name": self.name,
            "level": self.level,
            "train_subjects": sorted(map(str, tr["subject"].unique())),
            "test_subjects": sorted(map(str, te["subject"].unique())),
            "train_recordings": sorted(map(str, tr["recording"].unique())),
            "test_recordings": sorted(map(str, te["recording"].unique())),
            "n_train_windows": int(tr["label"].notna().sum()),
            "n_test_windows": int(te["label"].notna().sum()),
        }


def _ids(X: Any, groups: Any, columns: tuple[str, ...], splitter: str) -> pd.DataFrame:
    """Return the identifier columns of ``X`` as strings, or ``groups`` as ``subject``."""
    if isinstance(X, pd.DataFrame) and all(c in X.columns for c in columns):
        return X.loc[:, list(columns)].astype(str).reset_index(drop=True)
    if groups is not None and columns == ("subject",):
        subjects = np.asarray(groups).astype(str)
        if X is not None and len(subjects) != _n_rows(X):
            msg = f"{splitter}: groups has {len(subjects)} entries for {_n_rows(X)} rows of X"
            raise SpecError(msg)
        return pd.DataFrame({"subject": subjects})
    have = list(X.columns) if isinstance(X, pd.DataFrame) else type(X).__name__
    msg = (
        f"{splitter}: needs the identifier columns {list(columns)} of a feature table in X"
        + (" (or the subjects as groups=...)" if columns == ("subject",) else "")
        + f"; got {have!r}"
    )
    raise SpecError(msg)


def _n_rows(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


class _Splitter(BaseCrossValidator):
    """A scheme's folds, checked for leaks; :meth:`split` yields their row indices."""

    _columns: tuple[str, ...] = ("subject",)

    def folds(self, X: Any, y: Any = None, groups: Any = None) -> list[Fold]:
        """Return the named folds of ``X``, each checked with :func:`check_fold`.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_windows, n_columns) or array-like
            Feature table with identifier columns (a plain matrix with ``groups`` for the
            subject-level schemes).
        y : ignored
        groups : array-like of shape (n_windows,), optional
            The subject of every row, when ``X`` has no ``subject`` column.

        Raises
        ------
        SpecError
            If the rows yield no fold, or too few subjects for the scheme.
        LeakageError
            If a fold would leak (or for :class:`RandomWindowSplit` not explicitly allowed).
        """
        ids = _ids(X, groups, self._columns, type(self).__name__)
        folds = self._folds(ids)
        if not folds:
            msg = f"validation {self!r}: the table yields no fold (too few runs/sessions?)"
            raise SpecError(msg)
        for fold in folds:
            check_fold(ids, fold)
        return folds

    def _folds(self, ids: pd.DataFrame) -> list[Fold]:
        raise NotImplementedError

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[Any, Any]]:
        """Yield ``(train, test)`` positional row indices of every fold."""
        for fold in self.folds(X, y, groups):
            yield fold.train, fold.test

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Return the number of folds of ``X``."""
        return len(self.folds(X, y, groups))


class LeaveSubjectOut(_Splitter):
    """Leave one subject out: one fold per subject, trained on every other subject."""

    def _folds(self, ids: pd.DataFrame) -> list[Fold]:
        subjects = ids["subject"].to_numpy()
        names = np.unique(subjects)
        if len(names) < 2:
            msg = f"validation 'loso' needs at least 2 subjects, the table has {len(names)}"
            raise SpecError(msg)
        rows = np.arange(len(ids))
        return [
            Fold(f"test={s}", rows[subjects != s], rows[subjects == s], "subject")
            for s in sorted(names)
        ]


class SubjectKFold(_Splitter):
    """``n_splits`` folds of whole subjects (scikit-learn's shuffled ``GroupKFold``).

    Parameters
    ----------
    n_splits : int, default 5
    random_state : int, default 0
        Seed of the shuffling of subjects.
    """

    def __init__(self, n_splits: int = 5, random_state: int = 0) -> None:
        self.n_splits = n_splits
        self.random_state = random_state

    def _folds(self, ids: pd.DataFrame) -> list[Fold]:
        subjects = ids["subject"].to_numpy()
        n_subjects = len(np.unique(subjects))
        k = int(self.n_splits)
        if n_subjects < k:
            msg = (
                f"validation.n_splits: {k} folds need at least {k} subjects, the table has "
                f"{n_subjects}; lower n_splits or use 'loso'"
            )
            raise SpecError(msg)
        rows = np.arange(len(ids))
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=self.random_state)
        folds = []
        for i, (tr, te) in enumerate(splitter.split(rows, groups=subjects)):
            names = ",".join(sorted(np.unique(subjects[te])))
            folds.append(Fold(f"fold{i}:test={names}", tr, te, "subject"))
        return folds


class WithinSubjectSplit(_Splitter):
    """Per subject, train on one run (or session) and test on another.

    Parameters
    ----------
    by : {"run", "session"}, default "run"
    train, test : str, optional
        The value of ``by`` trained and tested on; default the subject's first and last.
        A subject lacking one of them is left out.
    """

    def __init__(self, by: str = "run", train: str | None = None, test: str | None = None) -> None:
        self.by = by
        self.train = train
        self.test = test

    _columns = ("subject", "session", "run")

    def _folds(self, ids: pd.DataFrame) -> list[Fold]:
        by = str(self.by)
        folds = []
        rows = np.arange(len(ids))
        subj = ids["subject"].to_numpy()
        val = ids[by].to_numpy()
        for s in sorted(np.unique(subj)):
            mine = subj == s
            values = sorted(np.unique(val[mine]))
            tr_v = str(self.train) if self.train is not None else values[0]
            te_v = str(self.test) if self.test is not None else values[-1]
            if tr_v == te_v:
                msg = f"validation within_subject: train and test {by} are both {tr_v!r}"
                raise SpecError(msg)
            if tr_v not in values or te_v not in values:
                continue  # this subject lacks one side (e.g. only one run recorded)
            train = rows[mine & (val == tr_v)]
            test = rows[mine & (val == te_v)]
            folds.append(Fold(f"{s}:{tr_v}->{te_v}", train, test, by))
        return folds


class CrossSessionSplit(_Splitter):
    """Per subject, test each session once, trained on that subject's other sessions."""

    _columns = ("subject", "session")

    def _folds(self, ids: pd.DataFrame) -> list[Fold]:
        folds = []
        rows = np.arange(len(ids))
        subj = ids["subject"].to_numpy()
        ses = ids["session"].to_numpy()
        for s in sorted(np.unique(subj)):
            mine = subj == s
            sessions = sorted(np.unique(ses[mine]))
            if len(sessions) < 2:
                continue
            for held in sessions:
                test = mine & (ses == held)
                folds.append(Fold(f"{s}:test={held}", rows[mine & ~test], rows[test], "session"))
        return folds


class RandomWindowSplit(_Splitter):
    """Window-level shuffled k-fold: leaky on overlapping windows, so refused by default.

    Parameters
    ----------
    n_splits : int, default 5
    allow_window_leakage : bool, default False
        Must be True to get any split (see :data:`RANDOM_SPLIT_MESSAGE`).
    random_state : int, default 0
    """

    _columns = ()

    def __init__(
        self, n_splits: int = 5, allow_window_leakage: bool = False, random_state: int = 0
    ) -> None:
        self.n_splits = n_splits
        self.allow_window_leakage = allow_window_leakage
        self.random_state = random_state

    def folds(self, X: Any, y: Any = None, groups: Any = None) -> list[Fold]:
        """Return the window-level folds of ``X`` (see :meth:`_Splitter.folds`).

        Raises
        ------
        LeakageError
            Unless ``allow_window_leakage`` is True.
        """
        if self.allow_window_leakage is not True:
            raise LeakageError(RANDOM_SPLIT_MESSAGE)
        rows = np.arange(_n_rows(X))
        splitter = KFold(n_splits=int(self.n_splits), shuffle=True, random_state=self.random_state)
        folds = [
            Fold(f"random{i}", tr, te, "window") for i, (tr, te) in enumerate(splitter.split(rows))
        ]
        for fold in folds:
            check_fold(None, fold)
        return folds


def validation_spec(
    cfg: ValidationSpec | Mapping[str, Any], source: str = "validation config"
) -> ValidationSpec:
    """Return ``cfg`` validated as a :class:`~pipeline.spec.learn.ValidationSpec`."""
    return parse(ValidationSpec, cfg, source, "validation")


def make_splitter(cfg: ValidationSpec | Mapping[str, Any], seed: int = 0) -> _Splitter:
    """Return the splitter of a validation config.

    Parameters
    ----------
    cfg : ValidationSpec or mapping
        ``{"scheme": ..., ...}`` (see the module docstring).
    seed : int
        Shuffling seed of ``group_kfold`` and ``random``.
    """
    spec = validation_spec(cfg)
    if spec.scheme == "loso":
        return LeaveSubjectOut()
    if spec.scheme == "group_kfold":
        return SubjectKFold(spec.n_splits or 5, random_state=seed)
    if spec.scheme == "within_subject":
        return WithinSubjectSplit(spec.by or "run", spec.train, spec.test)
    if spec.scheme == "cross_session":
        return CrossSessionSplit()
    return RandomWindowSplit(spec.n_splits or 5, bool(spec.allow_window_leakage), seed)


def make_folds(
    table: pd.DataFrame, cfg: ValidationSpec | Mapping[str, Any], seed: int = 0
) -> list[Fold]:
    """Split a feature table into folds according to a validation config.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        Feature table with identifier columns; rows with ``label`` None are kept (they carry
        no target but take part in the per-recording normalisation of their side).
    cfg : ValidationSpec or mapping
        Validation config (see the module docstring).
    seed : int
        Shuffling seed of ``group_kfold`` and ``random``.

    Returns
    -------
    list of Fold
        Every fold is checked with :func:`check_fold` before it is returned.

    Raises
    ------
    LeakageError
        For ``random`` without ``allow_window_leakage``, or if a fold would leak.
    SpecError
        If the config is invalid or the table has too few subjects/runs for the scheme.
    """
    return make_splitter(cfg, seed).folds(table)


def check_fold(table: pd.DataFrame | None, fold: Fold) -> None:
    """Raise :class:`LeakageError` if a test unit of ``fold.level`` also appears in training.

    For ``level="subject"`` no test subject may have a training window; for ``"session"``
    and ``"run"`` no (subject, session[, run]) of the test side may appear in training;
    train and test rows are always disjoint. ``"window"`` folds are only checked for
    disjoint rows (``table`` may then be None).
    """
    overlap = np.intersect1d(fold.train, fold.test)
    if overlap.size:
        msg = f"fold {fold.name!r}: {overlap.size} rows are on both sides (e.g. row {overlap[0]})"
        raise LeakageError(msg)
    if fold.level == "window" or table is None:
        return
    keys = {"subject": ["subject"], "session": ["subject", "session"]}.get(
        fold.level, ["subject", "session", fold.level]
    )
    ident = table.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    shared = np.intersect1d(ident[fold.train], ident[fold.test])
    if shared.size:
        first = table.iloc[int(np.flatnonzero(ident == shared[0])[0])]
        unit = "/".join(str(first[k]) for k in keys)
        msg = (
            f"fold {fold.name!r}: {'/'.join(keys)} {unit!r} (and {shared.size - 1} more) has "
            "windows in both training and test; a test unit must never reach training"
        )
        raise LeakageError(msg)


def check_dask_table(ddf: Any, vspec: ValidationSpec, where: str) -> None:
    """Refuse what a lazy (dask) feature table cannot be validated with.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The feature table; its identifier columns are checked on its metadata only.
    vspec : ValidationSpec
    where : str
        The engine, for the message (``"out of core"``, ``"by the distributed engine"``).

    Raises
    ------
    LeakageError
        A random window split without ``allow_window_leakage``.
    SpecError
        A random split (not supported on a lazy table), or missing identifier columns.
    """
    if vspec.scheme == "random":
        if vspec.allow_window_leakage is not True:
            raise LeakageError(RANDOM_SPLIT_MESSAGE)
        msg = f"validation scheme 'random' is not supported {where}; use a subject-level scheme"
        raise SpecError(msg)
    missing = [c for c in ID_COLUMNS if c not in ddf.columns]
    if missing:
        msg = f"feature table: missing identifier columns {missing}; expected {list(ID_COLUMNS)}"
        raise SpecError(msg)
