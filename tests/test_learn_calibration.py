"""Calibration as a validation axis: ``loso_calibrated`` folds, refusals, and a whole run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.check import check_cohort, check_task
from pipeline.exceptions import LeakageError, SpecError
from pipeline.learn import fit_and_validate
from pipeline.learn.synthetic import synthetic_feature_table
from pipeline.learn.validation import (
    UNLABELED_SUBJECT_NOTE,
    CalibratedLeaveSubjectOut,
    Fold,
    calibration_segments,
    check_calibrated_fold,
    check_dask_table,
    make_folds,
    unlabeled_calibration_note,
    validation_spec,
)
from pipeline.spec import load_task
from pipeline.spec.learn import PrepSpec

STEP, LENGTH = 0.05, 0.2  # the synthetic table's window step; a 200 ms window


def _table() -> pd.DataFrame:
    return synthetic_feature_table(n_subjects=4, n_runs=2, blocks_per_class=2, seed=3)


def _hand_table() -> pd.DataFrame:
    """One subject's recording, rows shuffled: a a . b b . a a a . b (then another subject)."""
    labels = ["a", "a", None, "b", "b", None, "a", "a", "a", None, "b"]
    mine = pd.DataFrame(
        {
            "recording": "r1",
            "subject": "s1",
            "session": "1",
            "run": "1",
            "start": np.arange(len(labels)) * STEP,
            "label": pd.Series(labels, dtype=object),
        }
    )
    other = mine.assign(recording="r2", subject="s2")
    table = pd.concat([mine, other], ignore_index=True)
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)


def test_k0_is_plain_loso_exactly() -> None:
    table = _table()
    loso = make_folds(table, {"scheme": "loso"})
    cal = make_folds(table, {"scheme": "loso_calibrated", "calibration": [0]}, window_length=0.2)
    assert [f.name for f in cal] == [f"{f.name},k=0" for f in loso]
    for a, b in zip(loso, cal, strict=True):
        np.testing.assert_array_equal(a.train, b.train)
        np.testing.assert_array_equal(a.test, b.test)


def test_segments_are_runs_of_one_class_in_time_order() -> None:
    table = _hand_table()
    mine = table[table["subject"] == "s1"]
    segs = calibration_segments(mine)
    segs[["first", "last"]] = segs[["first", "last"]].round(10)
    assert segs[["label", "order", "first", "last"]].values.tolist() == [
        ["a", 0, 0.0, 0.05],
        ["b", 0, 0.15, 0.2],
        ["a", 1, 0.3, 0.4],
        ["b", 1, 0.5, 0.5],
    ]
    # rows are positions into the table given, in time order
    starts = mine["start"].to_numpy().round(10)
    assert [starts[r].tolist() for r in segs["rows"]][2] == [0.3, 0.35, 0.4]


def test_first_k_repetitions_train_and_overlapping_windows_are_not_tested() -> None:
    table = _hand_table()
    splitter = CalibratedLeaveSubjectOut((0, 1), window_length=0.1)  # two steps long
    k1 = next(f for f in splitter.folds(table) if f.name == "test=s1,k=1")
    start = table["start"].to_numpy().round(2)
    subj = table["subject"].to_numpy()
    own_train = sorted(start[k1.train][subj[k1.train] == "s1"])
    assert own_train == [0.0, 0.05, 0.15, 0.2]  # the first repetition of a and of b
    assert np.all(subj[k1.train[subj[k1.train] == "s2"]] == "s2")
    assert len(k1.train) == 11 + 4
    # windows starting before 0.2 + 0.1 overlap a calibration window; 0.3 touches none
    assert sorted(start[k1.test]) == [0.3, 0.35, 0.4, 0.45, 0.5]
    assert set(subj[k1.test]) == {"s1"}


def test_k_seconds_per_class() -> None:
    table = _table()
    cfg = {"scheme": "loso_calibrated", "calibration": [0.5], "calibration_unit": "seconds"}
    fold = make_folds(table, cfg, window_length=LENGTH)[0]
    held = fold.name.split(",")[0].removeprefix("test=")
    own = table.iloc[fold.train][table["subject"].iloc[fold.train] == held]
    # whole windows covering at most 0.5 s: starts 0 .. 0.3 of the first block, per class
    assert own.groupby("label").size().to_dict() == {"c0": 7, "c1": 7, "c2": 7}
    spans = own.groupby("label")["start"].agg(lambda s: s.max() - s.min() + LENGTH)
    assert np.all(spans <= 0.5 + 1e-9)


def test_no_calibration_window_is_tested_nor_overlapped() -> None:
    table = _table()
    folds = make_folds(
        table, {"scheme": "loso_calibrated", "calibration": [0, 1, 2, 3]}, window_length=LENGTH
    )
    assert len(folds) == 4 * 4
    subj = table["subject"].to_numpy()
    rec = table["recording"].to_numpy()
    start = table["start"].to_numpy()
    sizes = {}
    for fold in folds:
        assert not np.intersect1d(fold.train, fold.test).size
        held = np.unique(subj[fold.test])
        assert len(held) == 1
        own = fold.train[subj[fold.train] == held[0]]
        assert table["label"].iloc[own].notna().all()
        for r in own:  # every calibration window is at least a window away from the tests
            near = fold.test[
                (rec[fold.test] == rec[r]) & (np.abs(start[fold.test] - start[r]) < LENGTH - 1e-9)
            ]
            assert not near.size
        sizes.setdefault(held[0], []).append((fold.calibration, len(own), len(fold.test)))
    for rows in sizes.values():  # more calibration, fewer tests, k = 0 none
        assert [r[0] for r in rows] == [0, 1, 2, 3]
        assert rows[0][1] == 0
        assert all(a[1] < b[1] and a[2] > b[2] for a, b in itertools.pairwise(rows))
    # 2 runs x 2 blocks per class: k=1 trains on one 12-window block of each of 3 classes
    assert sizes["sub-00"][1][1] == 3 * 12


def test_check_calibrated_fold_catches_an_overlap() -> None:
    table = _hand_table()
    s1 = np.flatnonzero(table["subject"].to_numpy() == "s1")
    start = table["start"].to_numpy()
    first, second = s1[np.argsort(start[s1])][:2]
    rest = np.setdiff1d(s1, [first])
    s2 = np.flatnonzero(table["subject"].to_numpy() == "s2")
    fold = Fold("bad", np.r_[s2, first], rest, "calibrated", 1.0)
    with pytest.raises(LeakageError, match=r"fold 'bad': test window at 0.05 s of 'r1' overlaps"):
        check_calibrated_fold(table, fold, 0.1)
    check_calibrated_fold(
        table, Fold("ok", np.r_[s2, first], np.setdiff1d(rest, [second]), "calibrated", 1.0), 0.1
    )


def test_refusals_name_key_and_why() -> None:
    with pytest.raises(SpecError, match=r"no 'calibration' for scheme 'loso'.*'loso_calibrated'"):
        validation_spec({"scheme": "loso", "calibration": [1]})
    with pytest.raises(SpecError, match=r"report_k.*one of the calibration k values"):
        validation_spec({"scheme": "loso_calibrated", "calibration": [0, 1], "report_k": 2})
    with pytest.raises(SpecError, match=r"window length in seconds is needed.*window_length=None"):
        make_folds(_table(), {"scheme": "loso_calibrated"})
    ddf = type("Lazy", (), {"columns": ["subject"]})()
    with pytest.raises(SpecError, match=r"'loso_calibrated' is not supported by the distributed"):
        check_dask_table(
            ddf, validation_spec({"scheme": "loso_calibrated"}), "by the distributed engine"
        )


TASK = """
name: t
data: {source: demo, format: synthetic}
windows: {length: 0.2, step: 0.05}
features: [mav]
model: {name: lda, prep: {normalize: recording}}
"""

INDEX = pd.DataFrame(
    {
        "recording": ["s1_1", "s1_2", "s2_1", "s2_2"],
        "subject": ["1", "1", "2", "2"],
        "session": [None] * 4,
        "run": ["1", "2", "1", "2"],
        "sampling_rate": [500.0] * 4,
        "duration": [60.0] * 4,
        "labels": [[]] * 4,
        "label": ["rest", "task", "rest", "task"],
    }
)


def _spec(tmp_path: Path, text: str):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return load_task(path)


def test_per_recording_normalisation_refused_on_one_class_recordings(tmp_path: Path) -> None:
    spec = _spec(tmp_path, TASK)
    with pytest.raises(
        SpecError,
        match=r"^x\.yaml: key 'model\.prep\.normalize': expected no per-recording normalisation"
        r".*labels are constant per recording.*removes the very difference between classes"
        r".*found 'recording'$",
    ):
        check_cohort(spec, "x.yaml", INDEX)
    gestures = INDEX.assign(labels=[["rest", "fist"]] * 4, label=[None] * 4)
    check_cohort(spec, "x.yaml", gestures)  # several classes per recording: allowed
    subject = _spec(tmp_path, TASK.replace("normalize: recording", "normalize: subject"))
    check_cohort(subject, "x.yaml", INDEX)  # allowed, and the report says what it presumes
    cal = _spec(
        tmp_path,
        TASK.replace("{normalize: recording}", "{}") + "validation: {scheme: loso_calibrated}\n",
    )
    with pytest.raises(
        SpecError, match=r"key 'validation\.scheme'.*a calibration repetition is a whole recording"
    ):
        check_cohort(cal, "x.yaml", INDEX)


def test_distributed_engine_refused_before_anything_runs(tmp_path: Path) -> None:
    text = TASK.replace("prep: {normalize: recording}", "engine: distributed")
    nb = _spec(tmp_path, text.replace("name: lda", "name: gaussian_nb") + CALIBRATED)
    with pytest.raises(
        SpecError,
        match=r"key 'model\.engine': expected 'memory' or 'auto' with validation\.scheme "
        r"'loso_calibrated' and model\.name 'gaussian_nb'.*for lda only.*found 'distributed'$",
    ):
        check_task(nb, "x.yaml")
    check_task(_spec(tmp_path, text + CALIBRATED), "x.yaml")  # lda: fitted from moments


CALIBRATED = "validation: {scheme: loso_calibrated}\n"


def test_unlabeled_subject_note_only_where_labels_are_per_recording() -> None:
    one_class = pd.DataFrame({"recording": ["a", "a", "b"], "label": ["x", "x", "y"]})
    mixed = pd.DataFrame({"recording": ["a", "a", "b"], "label": ["x", "y", "y"]})
    subject = PrepSpec(normalize="subject")
    assert unlabeled_calibration_note(one_class, subject) == UNLABELED_SUBJECT_NOTE
    assert unlabeled_calibration_note(mixed, subject) is None
    assert unlabeled_calibration_note(one_class, PrepSpec()) is None


def test_fit_and_validate_reports_the_curve() -> None:
    table = _table()
    cfg = {"scheme": "loso_calibrated", "calibration": [0, 1, 2], "n_permutations": 0}
    _, report = fit_and_validate(table, {"name": "lda"}, cfg, window_length=LENGTH, n_jobs=1)
    curve = report["calibration_curve"]
    assert curve["headline_k"] == 1.0 and [p["k"] for p in curve["points"]] == [0, 1, 2]
    _, loso = fit_and_validate(
        table, {"name": "lda"}, {"scheme": "loso", "n_permutations": 0}, n_jobs=1
    )
    assert curve["points"][0]["overall"] == {
        m: loso["overall"][m] for m in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")
    }
    one = curve["points"][1]
    assert report["overall"]["balanced_accuracy"] == one["overall"]["balanced_accuracy"]
    assert len(report["folds"]) == 4 and one["n_calibration_windows"] == 4 * 3 * 12
    assert sorted(one["per_subject"]) == sorted(report["per_subject"])


def test_cohort_run_with_loso_calibrated(tmp_path: Path) -> None:
    from pipeline.cli import main

    task = {
        "name": "tiny-cal",
        "data": {
            "source": "demo",
            "format": "synthetic",
            "options": {"n_subjects": 3, "n_runs": 2, "duration": 20.0, "seed": 3},
        },
        "windows": {"length": 0.2, "step": 0.1, "exclude_labels": ["unmarked"]},
        "features": ["mav", "wl"],
        "model": {"name": "lda", "prep": {"normalize": "recording"}, "engine": "memory"},
        "validation": {"scheme": "loso_calibrated", "calibration": [0, 1], "n_permutations": 0},
    }
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    report = json.loads((out / "latest" / "report.json").read_text())
    points = report["calibration_curve"]["points"]
    assert [p["k"] for p in points] == [0, 1]
    assert points[0]["n_calibration_windows"] == 0 < points[1]["n_calibration_windows"]
    assert points[1]["n_test_windows"] < points[0]["n_test_windows"]
    html = (out / "latest" / "report.html").read_text()
    assert "Calibration curve (labeled calibration of the held-out subject)" in html
    assert 'alt="Calibration curve"' in html


# --- calibration weights (pipeline.learn.calibrate) ------------------------------------


def _blobs(n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array([f"c{i}" for i in range(n_classes)]), 15)
    X = rng.normal(size=(len(y), 4)) @ rng.normal(size=(4, 4))
    X += np.repeat(rng.normal(size=(n_classes, 4)) * 2, 15, axis=0)
    return X, y, rng.integers(1, 5, size=len(y))


@pytest.mark.parametrize(
    ("n_classes", "shrinkage"), [(2, None), (3, None), (3, "auto"), (2, "auto"), (4, 0.3)]
)
def test_weighted_lda_equals_lda_on_repeated_rows(n_classes: int, shrinkage: Any) -> None:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis as LDA

    from pipeline.learn.calibrate import fit_weighted_lda

    X, y, w = _blobs(n_classes, seed=n_classes)
    ours = fit_weighted_lda(LDA(solver="lsqr", shrinkage=shrinkage), X, y, w.astype(float))
    ref = LDA(solver="lsqr", shrinkage=shrinkage).fit(np.repeat(X, w, 0), np.repeat(y, w))
    for name in ("priors_", "means_", "covariance_", "coef_", "intercept_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-9)


def test_weighted_ledoit_wolf_equals_sklearn_on_repeats() -> None:
    """Weighted moments give scikit-learn's LDA covariance (standardize, Ledoit-Wolf, back)."""
    from sklearn.discriminant_analysis import _cov

    from pipeline.learn.sufficient import _shrunk_cov, class_moments, identity_scaler

    X, _, w = _blobs(3, seed=7)
    weighted = class_moments(X, True, w.astype(float))
    repeated = class_moments(np.repeat(X, w, 0), True)
    for name in ("n", "s1", "s2", "s3", "s4"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-12)
    ours = _shrunk_cov(weighted, identity_scaler(X.shape[1]), "auto")
    np.testing.assert_allclose(ours, _cov(np.repeat(X, w, 0), "auto"), rtol=1e-10)
    assert not np.allclose(ours, _cov(X, "auto"), rtol=1e-3)  # the weights count


def test_balanced_weight_makes_both_sides_weigh_the_same() -> None:
    from pipeline.learn.calibrate import calibration_sample_weight

    is_cal = np.r_[np.zeros(90, bool), np.ones(10, bool)]
    w = calibration_sample_weight(is_cal, "balanced")
    assert w[~is_cal].sum() == w[is_cal].sum() == 90.0
    assert calibration_sample_weight(is_cal, None).tolist() == w.tolist()
    assert calibration_sample_weight(is_cal, 2.5)[is_cal].tolist() == [2.5] * 10


def test_weight_1_without_normalisation_is_the_unweighted_fold() -> None:
    from pipeline.learn.calibrate import calibrated_fold_proba
    from pipeline.learn.fit import _fit
    from pipeline.learn.model import predict_proba
    from pipeline.spec.learn import ModelSpec

    table = _table()
    classes = sorted(table["label"].dropna().unique())
    fold = make_folds(
        table, {"scheme": "loso_calibrated", "calibration": [1]}, window_length=LENGTH
    )[0]
    spec = ModelSpec(name="lda", params={"shrinkage": "auto"}, smooth=3)
    ours = calibrated_fold_proba(table, fold, spec, 0, classes, 1.0)
    plain = _fit(table.iloc[fold.train], spec, 0, classes)
    ref = predict_proba(plain.model, plain.metadata, table.iloc[fold.test])
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    weighted = calibrated_fold_proba(table, fold, spec, 0, classes, "balanced")
    assert np.abs(weighted - ref).max() > 1e-3  # the weight changes the model


def test_no_scored_window_nor_test_label_trains_a_calibrated_fold() -> None:
    """Relabel every window a calibrated fold scores: its probabilities do not move."""
    from pipeline.learn.calibrate import calibrated_fold_proba
    from pipeline.learn.validation import calibration_rows
    from pipeline.spec.learn import ModelSpec

    table = _table()
    classes = sorted(table["label"].dropna().unique())
    spec = ModelSpec(name="lda", prep=PrepSpec(normalize="recording"), smooth=3)
    fold = make_folds(
        table, {"scheme": "loso_calibrated", "calibration": [1]}, window_length=LENGTH
    )[1]
    base = calibrated_fold_proba(table, fold, spec, 0, classes)
    subject = table["subject"].iloc[fold.test[0]]
    own = calibration_rows(table, fold)
    assert len(own) and set(table["subject"].iloc[own]) == {subject}
    assert not np.intersect1d(own, fold.test).size
    relabeled = table.copy()
    labels = relabeled["label"].to_numpy(dtype=object).copy()
    rng = np.random.default_rng(0)
    scored = fold.test[pd.notna(labels[fold.test])]
    labels[scored] = rng.choice(classes, size=len(scored))  # every scored label scrambled
    relabeled["label"] = labels
    np.testing.assert_array_equal(calibrated_fold_proba(relabeled, fold, spec, 0, classes), base)
    # the fold does learn from its calibration windows: relabel them and it moves
    labels[own] = np.roll(labels[own], 7)
    relabeled["label"] = labels
    assert np.abs(calibrated_fold_proba(relabeled, fold, spec, 0, classes) - base).max() > 1e-3


def test_calibration_lifts_a_subject_unlike_the_others() -> None:
    """A held-out subject with its own gains: one weighted repetition beats none."""
    table = synthetic_feature_table(
        n_subjects=5, n_runs=2, blocks_per_class=3, seed=4, subject_gain=1.5
    )
    cfg = {"scheme": "loso_calibrated", "calibration": [0, 1], "n_permutations": 0}
    model = {"name": "lda", "params": {"shrinkage": "auto"}, "prep": {"log": ["mav"]}}
    _, rep = fit_and_validate(table, model, cfg, window_length=LENGTH, n_jobs=1)
    _, unweighted = fit_and_validate(
        table, model, {**cfg, "calibration_weight": 1}, window_length=LENGTH, n_jobs=1
    )
    k0, k1 = (p["overall"]["balanced_accuracy"] for p in rep["calibration_curve"]["points"])
    k1_unweighted = unweighted["calibration_curve"]["points"][1]["overall"]["balanced_accuracy"]
    assert k1 > max(k0, k1_unweighted)
    assert rep["permutation"]["p_value"] is None


def test_calibration_weight_errors_name_key_and_what_was_expected() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    from pipeline.learn.calibrate import fit_weighted

    with pytest.raises(SpecError, match=r"validation\.calibration_weight'.*for scheme 'loso'"):
        validation_spec({"scheme": "loso", "calibration_weight": 2})
    with pytest.raises(SpecError, match=r'expected "balanced" or a positive number.*found -1'):
        validation_spec({"scheme": "loso_calibrated", "calibration_weight": -1})
    X, y, w = _blobs(2, seed=1)
    with pytest.raises(SpecError, match=r"KNeighborsClassifier\.fit takes no sample_weight"):
        fit_weighted(KNeighborsClassifier(), X, y, w.astype(float))


def test_unweightable_names_why_a_model_cannot_take_the_weights() -> None:
    from pipeline.learn.calibrate import unweightable
    from pipeline.spec.learn import ModelSpec

    vote = ModelSpec(name="soft_vote", estimators=[{"name": "lda"}, {"name": "gaussian_nb"}])
    assert "LinearDiscriminantAnalysis" in str(unweightable(vote))
    assert "solver 'lsqr', got 'svd'" in str(
        unweightable(ModelSpec(name="lda", params={"solver": "svd"}))
    )
    for name in ("lda", "logreg", "random_forest", "gradient_boosting", "sgd", "gaussian_nb"):
        assert unweightable(ModelSpec(name=name)) is None, name


def test_unweightable_model_refused_before_anything_runs(tmp_path: Path) -> None:
    model = "model: {name: soft_vote, estimators: [{name: lda}, {name: gaussian_nb}]}\n"
    text = TASK.replace("model: {name: lda, prep: {normalize: recording}}\n", model)
    spec = _spec(tmp_path, text + "validation: {scheme: loso_calibrated}\n")
    with pytest.raises(
        SpecError,
        match=r"key 'validation\.calibration_weight': expected 1 \(unweighted\) for model\.name "
        r"'soft_vote': soft_vote passes sample_weight to LinearDiscriminantAnalysis.*"
        r"found 'balanced'$",
    ):
        check_task(spec, "x.yaml")
    unweighted = _spec(
        tmp_path, text + "validation: {scheme: loso_calibrated, calibration_weight: 1}\n"
    )
    check_task(unweighted, "x.yaml")
