"""Validation schemes: folds, leakage refusal, and what reaches training."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from pipeline.exceptions import LeakageError, SpecError
from pipeline.learn.estimators import register_estimator, unregister_estimator
from pipeline.learn.fit import fit_and_validate
from pipeline.learn.prep import FeaturePrep
from pipeline.learn.synthetic import synthetic_feature_table
from pipeline.learn.validation import (
    CrossSessionSplit,
    Fold,
    LeaveSubjectOut,
    RandomWindowSplit,
    SubjectKFold,
    WithinSubjectSplit,
    check_fold,
    make_folds,
    make_splitter,
)


@pytest.fixture(scope="module")
def table():
    t = synthetic_feature_table(n_subjects=4, n_sessions=2, n_runs=2, blocks_per_class=2, seed=2)
    return t


def _units(table, rows, cols):
    return set(map(tuple, table.iloc[rows][cols].astype(str).to_numpy()))


def test_loso_one_fold_per_subject_and_disjoint(table):
    folds = make_folds(table, {"scheme": "loso"})
    assert [f.name for f in folds] == [f"test=sub-0{i}" for i in range(4)]
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == list(range(len(table)))  # every window tested exactly once
    for f in folds:
        assert _units(table, f.train, ["subject"]).isdisjoint(_units(table, f.test, ["subject"]))
        assert len(_units(table, f.test, ["subject"])) == 1


def test_group_kfold_keeps_subjects_whole(table):
    folds = make_folds(table, {"scheme": "group_kfold", "n_splits": 2}, seed=1)
    assert len(folds) == 2
    for f in folds:
        assert _units(table, f.train, ["subject"]).isdisjoint(_units(table, f.test, ["subject"]))
    assert sorted(np.concatenate([f.test for f in folds])) == list(range(len(table)))


def test_within_subject_run_to_run(table):
    folds = make_folds(
        table, {"scheme": "within_subject", "by": "run", "train": "run-1", "test": "run-2"}
    )
    assert len(folds) == 4
    for f in folds:
        tr, te = table.iloc[f.train], table.iloc[f.test]
        assert tr.subject.nunique() == 1 and set(tr.subject) == set(te.subject)
        assert set(tr.run) == {"run-1"} and set(te.run) == {"run-2"}


def test_cross_session_tests_each_session_once_per_subject(table):
    folds = make_folds(table, {"scheme": "cross_session"})
    assert len(folds) == 4 * 2
    for f in folds:
        tr, te = table.iloc[f.train], table.iloc[f.test]
        assert te.session.nunique() == 1 and te.session.iloc[0] not in set(tr.session)
        assert set(tr.subject) == set(te.subject)


def test_random_split_is_refused_with_explanation(table):
    with pytest.raises(LeakageError, match=r"from 0\.82 .* to 0\.97.*allow_window_leakage\": true"):
        make_folds(table, {"scheme": "random"})
    folds = make_folds(table, {"scheme": "random", "allow_window_leakage": True, "n_splits": 3})
    assert len(folds) == 3 and folds[0].level == "window"


def test_random_split_inflates_accuracy_on_autocorrelated_windows():
    t = synthetic_feature_table(n_subjects=5, subject_gain=1.5, noise=0.6, drift=0.97, seed=4)
    cfg = {"name": "lda"}
    _, loso = fit_and_validate(t, cfg, {"scheme": "loso"}, n_jobs=1)
    _, rnd = fit_and_validate(t, cfg, {"scheme": "random", "allow_window_leakage": True}, n_jobs=1)
    assert rnd["overall"]["accuracy"] > loso["overall"]["accuracy"] + 0.1


def test_check_fold_catches_a_leaking_fold(table):
    rows = np.arange(len(table))
    sub0 = np.flatnonzero(table.subject == "sub-00")
    leaky = Fold("bad", rows[sub0[0] : sub0[0] + 5], sub0[10:], "subject")
    with pytest.raises(LeakageError, match=r"fold 'bad': subject 'sub-00' .* in both"):
        check_fold(table, leaky)
    overlap = Fold("dup", rows[:10], rows[5:20], "window")
    with pytest.raises(LeakageError, match=r"fold 'dup': 5 rows are on both sides"):
        check_fold(table, overlap)
    same_run = Fold("run", sub0[:3], sub0[3:6], "run")
    with pytest.raises(LeakageError, match=r"subject/session/run 'sub-00/ses-1/run-1'"):
        check_fold(table, same_run)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (
            {"scheme": "holdout"},
            r"key 'validation.scheme': expected 'loso', 'group_kfold', .* found 'holdout'",
        ),
        (
            {"scheme": "loso", "n_splits": 3},
            r"key 'validation.n_splits': expected no 'n_splits' for scheme 'loso' \(it takes no "
            r"other key; 'n_splits' is a key of \['group_kfold', 'random'\]\); found 3",
        ),
        (
            {"scheme": "group_kfold", "n_splits": 1},
            r"key 'validation.n_splits': expected a value greater than or equal to 2; found 1",
        ),
        (
            {"scheme": "group_kfold", "n_splits": 9},
            r"9 folds need at least 9 subjects, the table has 4",
        ),
        (
            {"scheme": "within_subject", "by": "day"},
            r"key 'validation.by': expected 'run' or 'session'; found 'day'",
        ),
        (
            {"scheme": "within_subject", "train": "run-1", "test": "run-1"},
            r"key 'validation.test': expected a run other than the training one",
        ),
        ("loso", r"key 'validation': expected a valid dictionary"),
    ],
)
def test_bad_validation_configs(table, cfg, match):
    with pytest.raises(SpecError, match=match):
        make_folds(table, cfg)


class SpyLDA(ClassifierMixin, BaseEstimator):
    """LDA that records every training matrix it is fitted on (class-level list)."""

    seen: list[np.ndarray] = []  # noqa: RUF012 - shared on purpose, test-local

    def fit(self, X, y):
        SpyLDA.seen.append(np.array(X, copy=True))
        self.lda_ = LinearDiscriminantAnalysis().fit(X, y)
        self.classes_ = self.lda_.classes_
        return self

    def predict_proba(self, X):
        return self.lda_.predict_proba(X)

    def predict(self, X):
        return self.lda_.predict(X)


@pytest.fixture
def spy():
    SpyLDA.seen = []
    register_estimator("spy_lda", lambda params, seed: SpyLDA())
    yield SpyLDA
    unregister_estimator("spy_lda")


@pytest.mark.parametrize(
    ("validation", "unit"),
    [
        ({"scheme": "loso"}, ["subject"]),
        (
            {"scheme": "within_subject", "train": "run-1", "test": "run-2"},
            ["subject", "session", "run"],
        ),
        ({"scheme": "cross_session"}, ["subject", "session"]),
    ],
)
@pytest.mark.parametrize("normalize", ["recording", "subject"])
def test_no_test_window_or_statistic_reaches_training(table, spy, validation, unit, normalize):
    """What the estimator is fitted on equals the prep of the training rows alone.

    The spy sees the exact training matrix (after scaling inside the Pipeline we see
    the scaled matrix, so compare against an independently scaled reference).
    """
    prep = {"log": ["mav"], "normalize": normalize}
    # no permutation test: its refits (same folds, permuted labels) would add to the count
    no_perm = {**validation, "n_permutations": 0}
    fit_and_validate(table, {"name": "spy_lda", "prep": prep}, no_perm, n_jobs=1)
    folds = make_folds(table, validation)
    assert len(spy.seen) == len(folds) + 1  # one fit per fold, plus the final fit
    for fold, X_seen in zip(folds, spy.seen, strict=False):
        train = table.iloc[fold.train]
        test_units = _units(table, fold.test, unit)
        assert _units(table, fold.train, unit).isdisjoint(test_units)
        ref = _prep(prep, train)
        ref = ref[train.label.notna().to_numpy()]
        ref = (ref - ref.mean(0)) / ref.std(0)
        assert X_seen.shape == ref.shape
        np.testing.assert_allclose(X_seen, ref, atol=1e-8)
        # Stronger: poisoning every test window leaves the training matrix unchanged.
        poisoned = table.copy()
        cols = [c for c in table.columns if "__" in c]
        poisoned.loc[poisoned.index[fold.test], cols] = 1e6
        ref2 = _prep(prep, poisoned.iloc[fold.train])
        np.testing.assert_array_equal(
            ref2[train.label.notna().to_numpy()],
            _prep(prep, train)[train.label.notna().to_numpy()],
        )


def test_poisoned_test_subject_does_not_change_the_other_folds_models(table, spy):
    """End to end: scaling one subject's features by 1e3 changes no training matrix of its
    test fold (per-recording normalisation makes it invisible, and it is not in training)."""
    prep = {"normalize": "recording"}
    fit_and_validate(table, {"name": "spy_lda", "prep": prep}, {"scheme": "loso"}, n_jobs=1)
    before = list(spy.seen)
    spy.seen.clear()
    poisoned = table.copy()
    cols = [c for c in table.columns if "__" in c]
    poisoned.loc[poisoned.subject == "sub-00", cols] *= 1e3
    fit_and_validate(poisoned, {"name": "spy_lda", "prep": prep}, {"scheme": "loso"}, n_jobs=1)
    # fold 0 tests sub-00: its training matrix must be bit-identical
    np.testing.assert_array_equal(before[0], spy.seen[0])


def _prep(cfg, table):
    return FeaturePrep.from_spec(cfg).fit_transform(table)


@pytest.mark.parametrize(
    ("cfg", "cls"),
    [
        ({"scheme": "loso"}, LeaveSubjectOut),
        ({"scheme": "group_kfold", "n_splits": 2}, SubjectKFold),
        ({"scheme": "within_subject", "train": "run-1", "test": "run-2"}, WithinSubjectSplit),
        ({"scheme": "cross_session"}, CrossSessionSplit),
        ({"scheme": "random", "allow_window_leakage": True, "n_splits": 3}, RandomWindowSplit),
    ],
)
def test_schemes_are_sklearn_splitters_equal_to_the_folds(table, cfg, cls):
    from sklearn.model_selection import BaseCrossValidator

    splitter = make_splitter(cfg, seed=1)
    assert isinstance(splitter, cls) and isinstance(splitter, BaseCrossValidator)
    folds = make_folds(table, cfg, seed=1)
    splits = list(splitter.split(table))
    assert splitter.get_n_splits(table) == len(folds) == len(splits)
    for fold, (train, test) in zip(folds, splits, strict=True):
        np.testing.assert_array_equal(fold.train, train)
        np.testing.assert_array_equal(fold.test, test)


@pytest.mark.parametrize(
    "splitter",
    [
        LeaveSubjectOut(),
        SubjectKFold(n_splits=2, random_state=3),
        WithinSubjectSplit(by="session"),
        CrossSessionSplit(),
    ],
)
def test_cross_validate_with_splitters_never_tests_a_training_unit(table, splitter):
    """cross_validate with the splitters: each fold's score equals a hand refit, and no
    test subject/session/run is in the fold's training rows."""
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labeled = table[table.label.notna()].reset_index(drop=True)
    X, y = labeled, labeled.label.astype(str)
    model = make_pipeline(FeaturePrep(normalize="recording"), StandardScaler(), SpyLDA())
    cv = cross_validate(model, X, y, cv=splitter, return_indices=True, scoring="accuracy")
    level = {"LeaveSubjectOut": ["subject"], "SubjectKFold": ["subject"]}.get(
        type(splitter).__name__, ["subject", "session"]
    )
    for score, train, test in zip(
        cv["test_score"], cv["indices"]["train"], cv["indices"]["test"], strict=True
    ):
        assert _units(labeled, train, level).isdisjoint(_units(labeled, test, level))
        ref = make_pipeline(FeaturePrep(normalize="recording"), StandardScaler(), SpyLDA())
        ref.fit(X.iloc[train], y.iloc[train])
        assert score == accuracy_score(y.iloc[test], ref.predict(X.iloc[test]))


def test_subject_splitters_take_groups_with_a_plain_matrix(table):
    X = table[[c for c in table.columns if "__" in c]].to_numpy()
    by_groups = list(LeaveSubjectOut().split(X, groups=table.subject.to_numpy()))
    by_columns = list(LeaveSubjectOut().split(table))
    assert len(by_groups) == 4
    for (a, b), (c, d) in zip(by_groups, by_columns, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    with pytest.raises(SpecError, match=r"CrossSessionSplit: needs the identifier columns"):
        list(CrossSessionSplit().split(X, groups=table.subject.to_numpy()))
    with pytest.raises(SpecError, match=r"LeaveSubjectOut: groups has 3 entries for"):
        list(LeaveSubjectOut().split(X, groups=["a", "b", "c"]))


def test_random_splitter_refuses_unless_leakage_is_allowed(table):
    from sklearn.model_selection import cross_validate

    with pytest.raises(LeakageError, match=r"from 0\.82 .* to 0\.97"):
        RandomWindowSplit().get_n_splits(table)
    labeled = table[table.label.notna()]
    with pytest.raises(LeakageError, match=r"allow_window_leakage\": true"):
        cross_validate(
            LinearDiscriminantAnalysis(),
            labeled[["ch0__mav"]],
            labeled.label.astype(str),
            cv=RandomWindowSplit(),
        )
