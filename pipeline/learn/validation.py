"""Validation schemes that keep test subjects, sessions and runs out of training.

A validation config is a mapping ``{"scheme": NAME, ...}``:

``within_subject``
    Per subject, train on one run (or session) and test on another:
    ``{"scheme": "within_subject", "by": "run", "train": "run-1", "test": "run-2"}``
    (``train``/``test`` default to the subject's first and last value of ``by``).
``cross_session``
    Per subject, each session is tested once, trained on that subject's other sessions.
``loso``
    Leave one subject out: one fold per subject, trained on every other subject.
``group_kfold``
    ``{"scheme": "group_kfold", "n_splits": 5}``: k folds of whole subjects.
``random``
    Window-level shuffled k-fold. Refused unless ``"allow_window_leakage": true``.

Splits are computed over *all* rows of the table (unlabeled windows included) so that the
per-recording normalisation of each side sees only that side's windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold

from pipeline.exceptions import LeakageError, SpecError

SCHEMES = ("within_subject", "cross_session", "loso", "group_kfold", "random")
_KEYS: dict[str, set[str]] = {
    "within_subject": {"by", "train", "test"},
    "cross_session": set(),
    "loso": set(),
    "group_kfold": {"n_splits"},
    "random": {"n_splits", "allow_window_leakage"},
}

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


def validate_validation_config(cfg: Mapping[str, Any]) -> None:
    """Check a validation config; raise :class:`SpecError` naming the bad key."""
    if not isinstance(cfg, Mapping) or "scheme" not in cfg:
        msg = (
            f"validation: expected a mapping with key 'scheme' (one of {list(SCHEMES)}), "
            f"got {cfg!r}"
        )
        raise SpecError(msg)
    scheme = cfg["scheme"]
    if scheme not in SCHEMES:
        msg = f"validation.scheme: expected one of {list(SCHEMES)}, got {scheme!r}"
        raise SpecError(msg)
    unknown = sorted(set(cfg) - {"scheme"} - _KEYS[scheme])
    if unknown:
        msg = (
            f"validation: unknown keys {unknown} for scheme {scheme!r}; "
            f"allowed: {sorted(_KEYS[scheme])}"
        )
        raise SpecError(msg)
    n = cfg.get("n_splits", 5)
    if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 2:
        msg = f"validation.n_splits: expected an integer >= 2, got {n!r}"
        raise SpecError(msg)
    if scheme == "within_subject" and cfg.get("by", "run") not in ("run", "session"):
        msg = f"validation.by: expected 'run' or 'session', got {cfg.get('by')!r}"
        raise SpecError(msg)


def make_folds(table: pd.DataFrame, cfg: Mapping[str, Any], seed: int = 0) -> list[Fold]:
    """Split a feature table into folds according to a validation config.

    Parameters
    ----------
    table : pandas.DataFrame of shape (n_windows, n_columns)
        Feature table with identifier columns; rows with ``label`` None are kept (they carry
        no target but take part in the per-recording normalisation of their side).
    cfg : mapping
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
    validate_validation_config(cfg)
    scheme = cfg["scheme"]
    if scheme == "random" and cfg.get("allow_window_leakage") is not True:
        raise LeakageError(RANDOM_SPLIT_MESSAGE)
    subjects = table["subject"].astype(str).to_numpy()
    n_subjects = len(np.unique(subjects))
    rows = np.arange(len(table))
    folds: list[Fold] = []
    if scheme == "loso":
        if n_subjects < 2:
            msg = f"validation 'loso' needs at least 2 subjects, the table has {n_subjects}"
            raise SpecError(msg)
        for s in sorted(np.unique(subjects)):
            test = subjects == s
            folds.append(Fold(f"test={s}", rows[~test], rows[test], "subject"))
    elif scheme == "group_kfold":
        k = int(cfg.get("n_splits", 5))
        if n_subjects < k:
            msg = (
                f"validation.n_splits: {k} folds need at least {k} subjects, the table has "
                f"{n_subjects}; lower n_splits or use 'loso'"
            )
            raise SpecError(msg)
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (tr, te) in enumerate(splitter.split(rows, groups=subjects)):
            names = ",".join(sorted(np.unique(subjects[te])))
            folds.append(Fold(f"fold{i}:test={names}", tr, te, "subject"))
    elif scheme == "within_subject":
        folds = _within_subject(table, str(cfg.get("by", "run")), cfg.get("train"), cfg.get("test"))
    elif scheme == "cross_session":
        folds = _cross_session(table)
    else:  # random, explicitly allowed
        k = int(cfg.get("n_splits", 5))
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (tr, te) in enumerate(splitter.split(rows)):
            folds.append(Fold(f"random{i}", tr, te, "window"))
    if not folds:
        msg = f"validation {dict(cfg)!r}: the table yields no fold (too few runs/sessions?)"
        raise SpecError(msg)
    for fold in folds:
        check_fold(table, fold)
    return folds


def _within_subject(table: pd.DataFrame, by: str, train_value: Any, test_value: Any) -> list[Fold]:
    folds = []
    rows = np.arange(len(table))
    subj = table["subject"].astype(str).to_numpy()
    val = table[by].astype(str).to_numpy()
    for s in sorted(np.unique(subj)):
        mine = subj == s
        values = sorted(np.unique(val[mine]))
        tr_v = str(train_value) if train_value is not None else values[0]
        te_v = str(test_value) if test_value is not None else values[-1]
        if tr_v == te_v:
            msg = f"validation within_subject: train and test {by} are both {tr_v!r}"
            raise SpecError(msg)
        if tr_v not in values or te_v not in values:
            continue  # this subject lacks one side (e.g. only one run recorded)
        train = rows[mine & (val == tr_v)]
        test = rows[mine & (val == te_v)]
        folds.append(Fold(f"{s}:{tr_v}->{te_v}", train, test, by))
    return folds


def _cross_session(table: pd.DataFrame) -> list[Fold]:
    folds = []
    rows = np.arange(len(table))
    subj = table["subject"].astype(str).to_numpy()
    ses = table["session"].astype(str).to_numpy()
    for s in sorted(np.unique(subj)):
        mine = subj == s
        sessions = sorted(np.unique(ses[mine]))
        if len(sessions) < 2:
            continue
        for held in sessions:
            test = mine & (ses == held)
            folds.append(Fold(f"{s}:test={held}", rows[mine & ~test], rows[test], "session"))
    return folds


def check_fold(table: pd.DataFrame, fold: Fold) -> None:
    """Raise :class:`LeakageError` if a test unit of ``fold.level`` also appears in training.

    For ``level="subject"`` no test subject may have a training window; for ``"session"``
    and ``"run"`` no (subject, session[, run]) of the test side may appear in training;
    train and test rows are always disjoint. ``"window"`` folds are only checked for
    disjoint rows.
    """
    overlap = np.intersect1d(fold.train, fold.test)
    if overlap.size:
        msg = f"fold {fold.name!r}: {overlap.size} rows are on both sides (e.g. row {overlap[0]})"
        raise LeakageError(msg)
    if fold.level == "window":
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
