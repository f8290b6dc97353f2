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
:class:`CalibratedLeaveSubjectOut` (``loso_calibrated``)
    Leave one subject out, with the first k labeled repetitions per class of the held-out
    subject (or its first k seconds per class) added to training, for every k of
    ``"calibration": [0, 1, 2, 3]``: one fold per (subject, k). k = 0 is plain ``loso``.
    The fit weights those windows (``"calibration_weight"``, default ``"balanced"``: as
    much as all other subjects' windows together) and prepares them with the subject's
    test windows (:mod:`pipeline.learn.calibrate`).

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
    "UNLABELED_SUBJECT_NOTE",
    "CalibratedLeaveSubjectOut",
    "CrossSessionSplit",
    "Fold",
    "LeaveSubjectOut",
    "RandomWindowSplit",
    "SubjectKFold",
    "WithinSubjectSplit",
    "calibration_rows",
    "calibration_segments",
    "calibration_windows",
    "check_calibrated_fold",
    "check_fold",
    "make_folds",
    "make_splitter",
    "unlabeled_calibration_note",
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
        ``"run"`` (within-subject), ``"window"`` (random, leaky by construction) or
        ``"calibrated"`` (the held-out subject's calibration windows train, the rest tests).
    calibration : float or None
        ``loso_calibrated`` only: the k of the fold (repetitions or seconds per class).
    """

    name: str
    train: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    level: str
    calibration: float | None = None

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


def calibration_segments(table: pd.DataFrame) -> pd.DataFrame:
    """Return the labeled repetitions of a table: runs of one class, in recording time order.

    A repetition is a maximal run of consecutive windows (by ``start``, within one
    recording) carrying the same label; an unlabeled window (a mixed or excluded one) ends
    it. Recordings are ordered by session, run, then name, so "the first k" are the first k
    a new user would record.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        With ``recording, session, run, start, label`` (positional rows).

    Returns
    -------
    pandas.DataFrame of shape (n_segments, 6)
        ``label, recording, order, first, last, rows``: ``order`` is the segment's rank in
        time among the segments of its class, ``first``/``last`` the starts (s) of its first
        and last window, ``rows`` the positional rows (numpy array) in time order.
    """
    keys = pd.DataFrame(
        {
            "session": table["session"].astype(str).to_numpy(),
            "run": table["run"].astype(str).to_numpy(),
            "recording": table["recording"].astype(str).to_numpy(),
            "start": table["start"].to_numpy(dtype=float),
        }
    )
    order = np.lexsort((keys["start"].to_numpy(), keys["recording"], keys["run"], keys["session"]))
    labels = table["label"].to_numpy(dtype=object)[order]
    recs = keys["recording"].to_numpy()[order]
    starts = keys["start"].to_numpy()[order]
    lab = pd.notna(labels)
    # a new segment starts where the recording or the label changes, or after an unlabeled row
    prev_lab = np.r_[False, lab[:-1]]
    same = np.r_[False, (recs[1:] == recs[:-1]) & (labels[1:] == labels[:-1])]
    begins = lab & ~(same & prev_lab)
    seg_id = np.cumsum(begins) - 1
    out = []
    for sid in np.unique(seg_id[lab]):
        members = np.flatnonzero(lab & (seg_id == sid))
        out.append(
            {
                "label": str(labels[members[0]]),
                "recording": str(recs[members[0]]),
                "first": float(starts[members[0]]),
                "last": float(starts[members[-1]]),
                "rows": order[members],
            }
        )
    segs = pd.DataFrame(out, columns=["label", "recording", "first", "last", "rows"])
    segs.insert(2, "order", segs.groupby("label").cumcount().astype(int))
    return segs


class CalibratedLeaveSubjectOut(_Splitter):
    """Leave one subject out, calibrated with k labeled repetitions (or seconds) per class.

    For every subject and every k of ``calibration``, the fold trains on every other
    subject plus the held-out subject's first k repetitions of each class
    (:func:`calibration_segments`; with ``unit="seconds"`` its first k seconds of each
    class, in time order), and tests on the held-out subject's other windows, except those
    whose span ``[start, start + window_length)`` overlaps a calibration segment's span (the
    overlapping windows share samples with training windows). k = 0 gives exactly the folds
    of :class:`LeaveSubjectOut`. A subject with fewer than k repetitions of a class
    calibrates with what it has (the fold's test side is then what remains).

    Parameters
    ----------
    calibration : sequence of float, default (0, 1, 2, 3)
        The k values (repetitions per class, or seconds per class).
    unit : {"repetitions", "seconds"}, default "repetitions"
    window_length : float, optional
        Window length in seconds; needed as soon as a k is above 0.
    """

    _columns = ("subject", "session", "run", "recording", "start", "label")

    def __init__(
        self,
        calibration: tuple[float, ...] = (0, 1, 2, 3),
        unit: str = "repetitions",
        window_length: float | None = None,
    ) -> None:
        self.calibration = calibration
        self.unit = unit
        self.window_length = window_length

    def folds(self, X: Any, y: Any = None, groups: Any = None) -> list[Fold]:
        """Return one checked fold per (subject, k) (see :meth:`_Splitter.folds`).

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_windows, n_columns)
            Feature table with ``subject, session, run, recording, start`` and ``label``
            (or the labels as ``y``).
        y : array-like of shape (n_windows,), optional
            Labels, when ``X`` has no ``label`` column (None/NaN for an unlabeled window).

        Raises
        ------
        SpecError
            Fewer than 2 subjects, identifier columns missing, or no ``window_length``
            with a k above 0.
        LeakageError
            If a fold would leak (:func:`check_calibrated_fold`).
        """
        if isinstance(X, pd.DataFrame) and "label" not in X.columns and y is not None:
            X = X.assign(label=np.asarray(y, dtype=object))
        need = [c for c in self._columns if not (isinstance(X, pd.DataFrame) and c in X)]
        if need:
            have = list(X.columns) if isinstance(X, pd.DataFrame) else type(X).__name__
            msg = (
                f"validation 'loso_calibrated': needs the columns {list(self._columns)} of a "
                f"feature table in X (labels may come as y); missing {need}, got {have!r}"
            )
            raise SpecError(msg)
        ks = self._ks()
        table = X.reset_index(drop=True)
        subjects = table["subject"].astype(str).to_numpy()
        names = self._subjects(subjects)
        rows = np.arange(len(table))
        folds = []
        for s in names:
            mine = subjects == s
            segs = calibration_segments(table.iloc[rows[mine]]) if any(ks) else None
            for k in ks:
                if k == 0:
                    fold = Fold(f"test={s},k=0", rows[~mine], rows[mine], "calibrated", 0.0)
                else:
                    local, spans = self._calibration(segs, k)
                    calib = rows[mine][local]
                    test = rows[mine][~self._overlaps(table.iloc[rows[mine]], spans)]
                    train = np.sort(np.r_[rows[~mine], calib])
                    fold = Fold(f"test={s},k={k:g}", train, test, "calibrated", k)
                check_calibrated_fold(table, fold, self.window_length or 0.0)
                folds.append(fold)
        return folds

    def recording_folds(self, ids: pd.DataFrame) -> list[Fold]:
        """Return the folds over a table's recordings (one row each), as the workers need.

        The distributed engine's fold list: one fold per (subject, k), named and ordered
        as :meth:`folds` names them, after the same checks; ``train`` holds the other
        subjects' recordings and ``test`` the held-out subject's (which windows of them
        calibrate and which are scored is
        :func:`pipeline.learn.calibrate.subject_calibration`'s, on the workers).

        Parameters
        ----------
        ids : pandas.DataFrame of shape (n_recordings, n_ids)
            With ``subject``.

        Raises
        ------
        SpecError
            Fewer than 2 subjects, or no ``window_length`` with a k above 0.
        """
        ks = self._ks()
        subjects = ids["subject"].astype(str).to_numpy()
        rows = np.arange(len(ids))
        return [
            Fold(f"test={s},k={k:g}", rows[subjects != s], rows[subjects == s], "calibrated", k)
            for s in self._subjects(subjects)
            for k in ks
        ]

    def _ks(self) -> list[float]:
        """Return the k values, checked against the window length they need."""
        ks = [float(k) for k in self.calibration]
        if any(k > 0 for k in ks) and not (self.window_length and self.window_length > 0):
            msg = (
                "validation 'loso_calibrated': the window length in seconds is needed to drop "
                "test windows overlapping a calibration segment; got window_length="
                f"{self.window_length!r} (cohort run passes the task's windows.length)"
            )
            raise SpecError(msg)
        return ks

    @staticmethod
    def _subjects(subjects: np.ndarray) -> list[str]:
        """Return the sorted subject names, at least 2 of them."""
        names = sorted(np.unique(subjects))
        if len(names) < 2:
            msg = (
                "validation 'loso_calibrated' needs at least 2 subjects, the table has "
                f"{len(names)}"
            )
            raise SpecError(msg)
        return names

    def _calibration(
        self, segs: pd.DataFrame, k: float
    ) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
        """Return the local calibration rows and their spans ``(recording, from, to)``."""
        length = float(self.window_length or 0.0)
        chosen: list[np.ndarray] = []
        spans: list[tuple[str, float, float]] = []
        for _, group in segs.groupby("label", sort=True):
            if self.unit == "repetitions":
                for seg in group.itertuples():
                    if seg.order < k:
                        chosen.append(seg.rows)
                        spans.append((seg.recording, seg.first, seg.last + length))
                continue
            left = k  # seconds of this class still to take, whole windows only
            for seg in group.itertuples():
                n = len(seg.rows)
                # windows of a segment cover first..start_i + length; keep those within `left`
                step = (seg.last - seg.first) / (n - 1) if n > 1 else length
                covered = (np.arange(n) * step) + length
                take = int(np.sum(covered <= left + 1e-9))
                if take == 0:
                    break
                chosen.append(seg.rows[:take])
                spans.append((seg.recording, seg.first, seg.first + covered[take - 1]))
                left -= covered[take - 1]
                if take < n or left <= 0:
                    break
        rows = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)
        return rows, spans

    def _overlaps(self, part: pd.DataFrame, spans: list[tuple[str, float, float]]) -> np.ndarray:
        """Return a mask of ``part``'s windows whose span overlaps any calibration span."""
        length = float(self.window_length or 0.0)
        recs = part["recording"].astype(str).to_numpy()
        start = part["start"].to_numpy(dtype=float)
        hit = np.zeros(len(part), dtype=bool)
        for rec, lo, hi in spans:
            # 1e-9 s: windows that only touch (start + length == lo) share no sample
            hit |= (recs == rec) & (start < hi - 1e-9) & (start + length > lo + 1e-9)
        return hit


def calibration_rows(table: pd.DataFrame, fold: Fold) -> np.ndarray:
    """Return the training rows of a fold's held-out subject (its calibration windows).

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        With ``subject``; the fold's positional rows index it.
    fold : Fold

    Returns
    -------
    numpy.ndarray of int, shape (n_calibration_rows,)
        Positional rows, in the order of ``fold.train``; empty at k = 0.
    """
    if not len(fold.test):
        return np.zeros(0, dtype=int)
    subjects = table["subject"].astype(str).to_numpy()
    return fold.train[subjects[fold.train] == subjects[fold.test[0]]]


def calibration_windows(table: pd.DataFrame, fold: Fold) -> int:
    """Return how many labeled windows of the held-out subject a fold trains on."""
    return int(table["label"].iloc[calibration_rows(table, fold)].notna().sum())


UNLABELED_SUBJECT_NOTE = (
    "Unlabeled calibration: prep.normalize 'subject' z-scores each subject with its own "
    "windows, and here every recording holds one class only (labels are constant per "
    "recording), so the figure presumes unlabeled data of the new subject in every class "
    "(both states) before predicting; with one state only the normalisation shifts the class."
)


def unlabeled_calibration_note(table: pd.DataFrame, prep: Any) -> str | None:
    """Return the report line a per-subject normalisation needs on one-class recordings.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        With ``recording`` and ``label``.
    prep : PrepSpec or None

    Returns
    -------
    str or None
        :data:`UNLABELED_SUBJECT_NOTE` when ``prep.normalize`` is ``"subject"`` and every
        recording's labeled windows carry one class; None otherwise.
    """
    if prep is None or prep.normalize != "subject":
        return None
    per_rec = table.dropna(subset=["label"]).groupby("recording", observed=True)["label"]
    return UNLABELED_SUBJECT_NOTE if len(per_rec) and per_rec.nunique().max() == 1 else None


def check_calibrated_fold(table: pd.DataFrame, fold: Fold, window_length: float) -> None:
    """Raise :class:`LeakageError` if a calibrated fold tests on or next to its training.

    Train and test rows must be disjoint, every test row belongs to the one held-out
    subject, and no test window may overlap in time (``[start, start + window_length)``,
    same recording) a training window of that subject.
    """
    check_fold(None, fold)
    subjects = table["subject"].astype(str).to_numpy()
    held = np.unique(subjects[fold.test])
    if len(held) > 1:
        msg = f"fold {fold.name!r}: tests {len(held)} subjects {sorted(held)}; expected one"
        raise LeakageError(msg)
    if not len(held):
        return
    own = fold.train[subjects[fold.train] == held[0]]
    if not len(own):
        return
    recs = table["recording"].astype(str).to_numpy()
    start = table["start"].to_numpy(dtype=float)
    for rec in np.unique(recs[own]):
        tr = np.sort(start[own[recs[own] == rec]])
        te_rows = fold.test[recs[fold.test] == rec]
        te = start[te_rows]
        # the nearest training start on either side decides an overlap
        i = np.searchsorted(tr, te)
        before = tr[np.clip(i - 1, 0, len(tr) - 1)]
        after = tr[np.clip(i, 0, len(tr) - 1)]
        gap = np.minimum(np.abs(te - before), np.abs(after - te))
        bad = gap < window_length - 1e-9
        if bad.any():
            msg = (
                f"fold {fold.name!r}: test window at {te[bad][0]:g} s of {rec!r} overlaps a "
                f"calibration window used in training (window length {window_length:g} s); "
                "a test window must share no sample with training"
            )
            raise LeakageError(msg)


def validation_spec(
    cfg: ValidationSpec | Mapping[str, Any], source: str = "validation config"
) -> ValidationSpec:
    """Return ``cfg`` validated as a :class:`~pipeline.spec.learn.ValidationSpec`."""
    return parse(ValidationSpec, cfg, source, "validation")


def make_splitter(
    cfg: ValidationSpec | Mapping[str, Any], seed: int = 0, window_length: float | None = None
) -> _Splitter:
    """Return the splitter of a validation config.

    Parameters
    ----------
    cfg : ValidationSpec or mapping
        ``{"scheme": ..., ...}`` (see the module docstring).
    seed : int
        Shuffling seed of ``group_kfold`` and ``random``.
    window_length : float, optional
        Window length in seconds (``loso_calibrated`` drops test windows overlapping a
        calibration segment).
    """
    spec = validation_spec(cfg)
    if spec.scheme == "loso":
        return LeaveSubjectOut()
    if spec.scheme == "loso_calibrated":
        return CalibratedLeaveSubjectOut(
            tuple(spec.calibration if spec.calibration is not None else (0, 1, 2, 3)),
            spec.calibration_unit or "repetitions",
            window_length,
        )
    if spec.scheme == "group_kfold":
        return SubjectKFold(spec.n_splits or 5, random_state=seed)
    if spec.scheme == "within_subject":
        return WithinSubjectSplit(spec.by or "run", spec.train, spec.test)
    if spec.scheme == "cross_session":
        return CrossSessionSplit()
    return RandomWindowSplit(spec.n_splits or 5, bool(spec.allow_window_leakage), seed)


def make_folds(
    table: pd.DataFrame,
    cfg: ValidationSpec | Mapping[str, Any],
    seed: int = 0,
    window_length: float | None = None,
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
    window_length : float, optional
        Window length in seconds, for ``loso_calibrated``.

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
    return make_splitter(cfg, seed, window_length).folds(table)


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
    if fold.level in ("window", "calibrated") or table is None:
        return  # calibrated folds: check_calibrated_fold
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


def check_dask_table(
    ddf: Any, vspec: ValidationSpec, where: str, calibrated_ok: bool = False
) -> None:
    """Refuse what a lazy (dask) feature table cannot be validated with.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The feature table; its identifier columns are checked on its metadata only.
    vspec : ValidationSpec
    where : str
        The engine, for the message (``"out of core"``, ``"by the distributed engine"``).
    calibrated_ok : bool
        The engine fits ``loso_calibrated`` folds (the distributed engine's LDA).

    Raises
    ------
    LeakageError
        A random window split without ``allow_window_leakage``.
    SpecError
        A random split (not supported on a lazy table), or missing identifier columns.
    """
    if vspec.scheme == "loso_calibrated" and not calibrated_ok:
        msg = (
            f"validation scheme 'loso_calibrated' is not supported {where}: the engine "
            "subtracts a held-out subject's statistics whole, and a calibrated fold needs "
            "the statistics of that subject's calibration windows added back; use "
            "model.engine: memory"
        )
        raise SpecError(msg)
    if vspec.scheme == "random":
        if vspec.allow_window_leakage is not True:
            raise LeakageError(RANDOM_SPLIT_MESSAGE)
        msg = f"validation scheme 'random' is not supported {where}; use a subject-level scheme"
        raise SpecError(msg)
    missing = [c for c in ID_COLUMNS if c not in ddf.columns]
    if missing:
        msg = f"feature table: missing identifier columns {missing}; expected {list(ID_COLUMNS)}"
        raise SpecError(msg)
