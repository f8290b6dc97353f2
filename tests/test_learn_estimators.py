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
    register_estimator,
    unregister_estimator,
)


@pytest.mark.parametrize(
    ("name", "cls", "balanced"),
    [
        ("lda", LinearDiscriminantAnalysis, False),
        ("logreg", LogisticRegression, True),
        ("random_forest", RandomForestClassifier, True),
        ("gradient_boosting", HistGradientBoostingClassifier, True),
    ],
)
def test_named_estimators_are_scaled_pipelines(name, cls, balanced):
    est = make_estimator({"name": name}, seed=3)
    assert isinstance(est, Pipeline)
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
    vote = make_estimator(cfg, seed=0)
    assert isinstance(vote, VotingClassifier)
    assert vote.voting == "soft"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=120) > 0, "a", "b")
    vote.fit(X, y)
    members = [est.predict_proba(X) for est in vote.estimators_]
    np.testing.assert_allclose(vote.predict_proba(X), np.mean(members, axis=0))


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"name": "svm"}, r"model.name: expected one of .*'lda'.* got 'svm'"),
        ({"name": "lda", "paramz": {}}, r"unknown keys \['paramz'\]"),
        ({"name": "lda", "params": [1]}, r"model.params: expected a mapping"),
        ({"name": "soft_vote", "estimators": [{"name": "lda"}]}, r"at least 2 member"),
        (
            {"name": "soft_vote", "estimators": [{"name": "lda"}, {"name": "nope"}]},
            r"model.estimators\[1\].name: expected one of",
        ),
        ({"name": "lda", "estimators": []}, r"only 'soft_vote' takes member"),
        (
            {"name": "soft_vote", "estimators": [{"name": "lda", "smooth": 3}, {"name": "lda"}]},
            r"model.estimators\[0\].smooth: 'smooth' is set once on the top-level",
        ),
        ({"name": "logreg", "params": {"bogus": 1}}, r"model.params for 'logreg'"),
        ("lda", r"expected a mapping with key 'name'"),
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
    from pipeline.learn.estimators import validate_model_config

    cfg = preset("emg_gestures")
    validate_model_config(cfg)
    est = make_estimator(cfg)
    assert est.named_steps["clf"].shrinkage == "auto"
    cfg["smooth"] = 99
    assert preset("emg_gestures")["smooth"] == 10
    with pytest.raises(
        SpecError, match=r"model preset 'eeg' is unknown; available: \['emg_gestures'\]"
    ):
        preset("eeg")
