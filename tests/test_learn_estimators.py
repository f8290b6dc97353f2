"""Estimators built from model configs."""

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.exceptions import SpecError
from pipeline.learn.estimators import (
    available_estimators,
    make_estimator,
    model_spec,
    register_estimator,
    unregister_estimator,
)
from pipeline.learn.fit import fit_and_validate
from pipeline.learn.prep import FeaturePrep
from pipeline.learn.synthetic import synthetic_feature_table
from pipeline.learn.validation import LeaveSubjectOut


@pytest.mark.parametrize(
    ("name", "cls", "balanced"),
    [
        ("lda", LinearDiscriminantAnalysis, False),
        ("logreg", LogisticRegression, True),
        ("random_forest", RandomForestClassifier, True),
        ("gradient_boosting", HistGradientBoostingClassifier, True),
    ],
)
def test_named_estimators_are_prep_scale_clf_pipelines(name, cls, balanced):
    est = make_estimator({"name": name, "prep": {"normalize": "recording"}}, seed=3)
    assert isinstance(est, Pipeline)
    assert list(est.named_steps) == ["prep", "scale", "clf"]
    assert isinstance(est.named_steps["prep"], FeaturePrep)
    assert est.named_steps["prep"].normalize == "recording"
    assert isinstance(est.named_steps["scale"], StandardScaler)
    clf = est.named_steps["clf"]
    assert type(clf) is cls
    if balanced:
        assert clf.get_params()["class_weight"] == "balanced"
        assert clf.get_params()["random_state"] == 3


def test_params_reach_the_estimator_not_the_scaler():
    est = make_estimator({"name": "random_forest", "params": {"n_estimators": 7}})
    assert est.named_steps["clf"].n_estimators == 7


def test_soft_vote_of_members_fits_and_averages_probabilities():
    cfg = {
        "name": "soft_vote",
        "estimators": [{"name": "lda"}, {"name": "logreg"}],
    }
    model = make_estimator(cfg, seed=0)
    vote = model.named_steps["clf"]
    assert isinstance(vote, VotingClassifier)
    assert vote.voting == "soft"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=120) > 0, "a", "b")
    model.fit(X, y)  # a plain matrix: the prep passes it through
    Xs = model[:-1].transform(X)
    members = [est.predict_proba(Xs) for est in vote.estimators_]
    np.testing.assert_allclose(model.predict_proba(X), np.mean(members, axis=0))


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"name": "svm"}, r"key 'model.name': expected one of \[.*'lda'.*\]; found 'svm'"),
        ({"name": "lda", "paramz": {}}, r"unknown key 'model.paramz'; did you mean 'params'"),
        ({"name": "lda", "params": [1]}, r"key 'model.params': expected a valid dictionary"),
        (
            {"name": "soft_vote", "estimators": [{"name": "lda"}]},
            r"key 'model.estimators': expected a list of at least 2 member configs",
        ),
        (
            {"name": "soft_vote", "estimators": [{"name": "lda"}, {"name": "nope"}]},
            r"key 'model.estimators.1.name': expected one of",
        ),
        ({"name": "lda", "estimators": []}, r"only 'soft_vote' takes them, not 'lda'"),
        (
            {"name": "soft_vote", "estimators": [{"name": "lda", "smooth": 3}, {"name": "lda"}]},
            r"unknown key 'model.estimators.0.smooth' \(valid keys here: estimators, name, "
            r"params\)",
        ),
        ({"name": "logreg", "params": {"bogus": 1}}, r"model.params for 'logreg'"),
        ("lda", r"key 'model': expected a valid dictionary"),
    ],
)
def test_bad_configs_name_the_key(cfg, match):
    with pytest.raises(SpecError, match=match):
        make_estimator(cfg)


def test_register_custom_estimator():
    register_estimator("lr_small", lambda params, seed: LogisticRegression(C=0.1, **params))
    try:
        assert "lr_small" in available_estimators()
        est = make_estimator({"name": "lr_small"})
        assert est.named_steps["clf"].C == 0.1
        with pytest.raises(SpecError, match="already registered"):
            register_estimator("lr_small", lambda p, s: LogisticRegression())
    finally:
        unregister_estimator("lr_small")
    assert "lr_small" not in available_estimators()


def test_emg_preset_is_a_valid_config_and_a_copy():
    from pipeline.learn import preset

    cfg = preset("emg_gestures")
    assert model_spec(cfg).prep.normalize == "recording"
    est = make_estimator(cfg)
    assert est.named_steps["clf"].shrinkage == "auto"
    cfg["smooth"] = 99
    assert preset("emg_gestures")["smooth"] == 10
    with pytest.raises(
        SpecError, match=r"model preset 'eeg' is unknown; available: \['emg_gestures'\]"
    ):
        preset("eeg")


@pytest.fixture(scope="module")
def labeled():
    t = synthetic_feature_table(n_subjects=4, n_runs=2, subject_gain=1.2, seed=7)
    return t[t.label.notna()].reset_index(drop=True)


def test_model_works_in_cross_validate_with_the_subject_splitter(labeled):
    """cross_validate on the Pipeline equals fit_and_validate's folds on a labeled table."""
    from sklearn.model_selection import cross_validate

    cfg = {"name": "lda", "prep": {"log": ["mav"], "normalize": "recording"}}
    y = labeled.label.astype(str)
    cv = cross_validate(
        make_estimator(cfg), labeled, y, cv=LeaveSubjectOut(), scoring="balanced_accuracy"
    )
    _, report = fit_and_validate(labeled, cfg, {"scheme": "loso"}, n_jobs=1)
    expected = [f["metrics"]["balanced_accuracy"] for f in report["folds"]]
    np.testing.assert_allclose(cv["test_score"], expected, rtol=0, atol=1e-12)


def test_model_works_in_grid_search_over_prep_parameters(labeled):
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(
        make_estimator({"name": "lda", "prep": {"log": ["mav"]}}),
        {"prep__normalize": [None, "recording"], "prep__context": [1, 3]},
        cv=LeaveSubjectOut(),
        scoring="balanced_accuracy",
    )
    search.fit(labeled, labeled.label.astype(str))
    assert len(search.cv_results_["params"]) == 4
    # per-recording normalisation removes the subject gains: it must win
    assert search.best_params_["prep__normalize"] == "recording"
    assert search.best_estimator_.named_steps["prep"].columns_ == [
        c for c in labeled.columns if "__" in c
    ]


TASK = """
name: t
data: {source: demo, format: synthetic}
windows: {length: 0.2, step: 0.05}
features: [mav]
"""


@pytest.mark.parametrize(
    ("section", "match"),
    [
        (
            "model: {name: lda, prep: {contxt: 2}}",
            r"task.yaml: unknown key 'model.prep.contxt'; did you mean 'context'",
        ),
        (
            "model: {name: ldaa}",
            r"task.yaml: key 'model.name': expected one of \[.*\]; found 'ldaa'",
        ),
        (
            "model: {name: lda}\nvalidation: {scheme: loso, by: run}",
            r"task.yaml: key 'validation.by': expected no 'by' for scheme 'loso'",
        ),
    ],
)
def test_task_spec_model_and_validation_errors_name_file_and_key(tmp_path, section, match):
    from pipeline.spec import load_task

    path = tmp_path / "task.yaml"
    path.write_text(TASK + section + "\n")
    with pytest.raises(SpecError, match=match):
        load_task(path)


def test_registered_estimator_is_a_valid_task_model_name(tmp_path):
    from pipeline.spec import load_task

    path = tmp_path / "task.yaml"
    path.write_text(TASK + "model: {name: lr_task, smooth: 3}\n")
    register_estimator("lr_task", lambda params, seed: LogisticRegression(**params))
    try:
        spec = load_task(path)
        assert spec.model.name == "lr_task" and spec.model.smooth == 3
        assert isinstance(make_estimator(spec.model).named_steps["clf"], LogisticRegression)
    finally:
        unregister_estimator("lr_task")
    with pytest.raises(SpecError, match=r"key 'model.name': expected one of"):
        load_task(path)
