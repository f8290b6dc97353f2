"""Feature preparation: selection, log, context and per-recording z-scoring."""

import numpy as np
import pandas as pd
import pytest

from pipeline.exceptions import SpecError
from pipeline.learn.normalize import FeaturePrep, feature_columns, group_statistics
from pipeline.learn.synthetic import synthetic_feature_table


@pytest.fixture(scope="module")
def table():
    return synthetic_feature_table(n_subjects=3, n_runs=2, seed=1)


def test_feature_columns_are_those_with_double_underscore(table):
    cols = feature_columns(table)
    assert cols == [c for c in table.columns if "__" in c]
    assert "label" not in cols and len(cols) == 6


def test_select_and_log(table):
    prep = FeaturePrep(features=("mav",), log=("mav",))
    X = prep.apply(table)
    assert list(X.columns) == ["ch0__mav", "ch1__mav", "ch2__mav"]
    np.testing.assert_allclose(X.to_numpy(), np.log(table[list(X.columns)].to_numpy() + 1e-12))


def test_zscore_per_recording_matches_numpy(table):
    X = FeaturePrep(normalize="recording").apply(table)
    for _, sub in table.groupby("recording"):
        raw = sub[feature_columns(table)].to_numpy()
        expected = (raw - raw.mean(0)) / (raw.std(0) + 1e-12)
        np.testing.assert_allclose(X.loc[sub.index].to_numpy(), expected, atol=1e-9)


def test_normalisation_uses_only_the_groups_own_rows(table):
    """A recording's prepared values do not depend on any other row of the input."""
    prep = FeaturePrep(log=("mav",), normalize="recording", context=3)
    alone = table[table.recording == "sub-01_ses-1_run-2"]
    together = prep.apply(table).loc[alone.index]
    np.testing.assert_allclose(prep.apply(alone).to_numpy(), together.to_numpy())
    # Perturbing every other recording changes nothing for this one.
    other = table.copy()
    mask = other.recording != "sub-01_ses-1_run-2"
    other.loc[mask, feature_columns(table)] *= 1000.0
    np.testing.assert_allclose(prep.apply(other).loc[alone.index].to_numpy(), together.to_numpy())


def test_subject_normalisation_pools_a_subjects_recordings(table):
    X = FeaturePrep(normalize="subject").apply(table)
    stats = group_statistics(table, "subject", feature_columns(table))
    sub = table[table.subject == "sub-02"]
    raw = sub[feature_columns(table)].to_numpy()
    expected = (raw - stats["sub-02"]["mean"]) / (stats["sub-02"]["std"] + 1e-12)
    np.testing.assert_allclose(X.loc[sub.index].to_numpy(), expected, atol=1e-9)


def test_context_is_a_causal_trailing_mean_per_recording(table):
    shuffled = table.sample(frac=1.0, random_state=0)  # row order must not matter
    X = FeaturePrep(features=("zc",), context=4).apply(shuffled)
    for _, sub in table.groupby("recording"):
        sub = sub.sort_values("start")
        raw = sub[["ch0__zc", "ch1__zc", "ch2__zc"]].to_numpy()
        exp = np.array([raw[max(0, i - 3) : i + 1].mean(0) for i in range(len(raw))])
        np.testing.assert_allclose(X.loc[sub.index].to_numpy(), exp, rtol=1e-10)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (
            {"normalize": "session"},
            r"key 'normalize' must be one of \[None, 'recording', 'subject'\]",
        ),
        ({"features": ["mav", "rms"]}, r"feature kinds \['rms'\] requested in key 'features'"),
        ({"features": ["mav"], "log": ["zc"]}, r"feature kinds \['zc'\] in key 'log'"),
        ({"context": 0}, r"key 'context' must be an integer >= 1, got 0"),
        ({"scale": True}, r"unknown keys \['scale'\]"),
    ],
)
def test_bad_prep_configs(table, cfg, match):
    with pytest.raises(SpecError, match=match):
        FeaturePrep.from_config(cfg).apply(table)


def test_log_of_negative_feature_is_refused(table):
    bad = table.copy()
    bad.loc[bad.index[5], "ch1__zc"] = -1.0
    with pytest.raises(SpecError, match=r"columns \['ch1__zc'\] hold negative"):
        FeaturePrep(log=("zc",)).apply(bad)


def test_round_trip_dict():
    prep = FeaturePrep(features=("mav",), log=("mav",), context=2, normalize="subject")
    assert FeaturePrep.from_config(prep.to_dict()) == prep
    assert isinstance(pd.Series(prep.to_dict()).to_json(), str)


def test_context_does_not_reach_across_missing_windows():
    """With windows 2-5 dropped, window 6 averages only itself and 5 (absent): just itself."""
    t = pd.DataFrame(
        {
            "recording": "r",
            "subject": "s",
            "session": "a",
            "run": "1",
            "start": np.array([0, 1, 6, 7, 8]) * 0.05,
            "label": "x",
            "ch__mav": [1.0, 2.0, 10.0, 20.0, 30.0],
        }
    )
    X = FeaturePrep(context=2).apply(t)
    np.testing.assert_allclose(X["ch__mav"], [1.0, 1.5, 10.0, 15.0, 25.0])
