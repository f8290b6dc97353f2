"""Feature preparation: selection, log, context and per-recording z-scoring, as a
scikit-learn transformer."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline.exceptions import SpecError
from pipeline.learn.prep import FeaturePrep, feature_columns, group_statistics
from pipeline.learn.synthetic import synthetic_feature_table
from pipeline.spec.learn import PrepSpec


@pytest.fixture(scope="module")
def table():
    return synthetic_feature_table(n_subjects=3, n_runs=2, seed=1)


def apply(prep: FeaturePrep, table: pd.DataFrame) -> pd.DataFrame:
    """Fit and transform, as a DataFrame with the table's index and the feature names."""
    return clone(prep).set_output(transform="pandas").fit_transform(table)


# With a plain matrix every row is one recording, in time order: a per-group z-score or a
# trailing mean then depends on which rows (and in which order) are transformed together,
# by design (statistics come from the rows given, never from fitting).
_ROW_SET_DEPENDENT = {
    "check_methods_subset_invariance": "per-group statistics come from the rows given",
}
_ROW_ORDER_DEPENDENT = {
    **_ROW_SET_DEPENDENT,
    "check_methods_sample_order_invariance": "context averages the preceding rows (time order)",
}


def _expected_failures(est):
    if est.context > 1:
        return _ROW_ORDER_DEPENDENT
    return _ROW_SET_DEPENDENT if est.normalize else {}


@parametrize_with_checks(
    [
        FeaturePrep(),
        FeaturePrep(normalize="recording"),
        FeaturePrep(context=3, normalize="subject"),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_feature_columns_are_those_with_double_underscore(table):
    cols = feature_columns(table)
    assert cols == [c for c in table.columns if "__" in c]
    assert "label" not in cols and len(cols) == 6


def test_select_and_log(table):
    X = apply(FeaturePrep(features=("mav",), log=("mav",)), table)
    assert list(X.columns) == ["ch0__mav", "ch1__mav", "ch2__mav"]
    np.testing.assert_allclose(X.to_numpy(), np.log(table[list(X.columns)].to_numpy() + 1e-12))


def test_fit_learns_columns_only_and_attributes_end_in_underscore(table):
    prep = FeaturePrep(features=["zc"], normalize="recording")
    assert not [k for k in vars(prep) if k.endswith("_")]  # __init__ stores parameters only
    prep.fit(table)
    assert prep.columns_ == ["ch0__zc", "ch1__zc", "ch2__zc"] and prep.table_input_
    assert prep.n_features_in_ == 3
    assert list(prep.get_feature_names_out()) == prep.columns_
    # transform reads the fitted columns by name, whatever the table's column order
    shuffled = table[list(reversed(table.columns))]
    np.testing.assert_array_equal(prep.transform(shuffled), prep.transform(table))


def test_zscore_per_recording_matches_numpy(table):
    X = apply(FeaturePrep(normalize="recording"), table)
    for _, sub in table.groupby("recording"):
        raw = sub[feature_columns(table)].to_numpy()
        expected = (raw - raw.mean(0)) / (raw.std(0) + 1e-12)
        np.testing.assert_allclose(X.loc[sub.index].to_numpy(), expected, atol=1e-9)


def test_plain_matrix_is_one_group_in_row_order(table):
    raw = table[feature_columns(table)].to_numpy()
    Z = FeaturePrep(normalize="subject").fit_transform(raw)
    np.testing.assert_allclose(Z, (raw - raw.mean(0)) / (raw.std(0) + 1e-12), atol=1e-9)
    C = FeaturePrep(context=2).fit_transform(raw[:4])
    np.testing.assert_allclose(C, np.vstack([raw[:1], (raw[:3] + raw[1:4]) / 2]))


def test_normalisation_uses_only_the_groups_own_rows(table):
    """A recording's prepared values do not depend on any other row of the input."""
    prep = FeaturePrep(log=("mav",), normalize="recording", context=3)
    alone = table[table.recording == "sub-01_ses-1_run-2"]
    together = apply(prep, table).loc[alone.index]
    np.testing.assert_allclose(apply(prep, alone).to_numpy(), together.to_numpy())
    # Perturbing every other recording changes nothing for this one.
    other = table.copy()
    mask = other.recording != "sub-01_ses-1_run-2"
    other.loc[mask, feature_columns(table)] *= 1000.0
    np.testing.assert_allclose(apply(prep, other).loc[alone.index].to_numpy(), together.to_numpy())


def test_subject_normalisation_pools_a_subjects_recordings(table):
    X = apply(FeaturePrep(normalize="subject"), table)
    stats = group_statistics(table, "subject", feature_columns(table))
    sub = table[table.subject == "sub-02"]
    raw = sub[feature_columns(table)].to_numpy()
    expected = (raw - stats["sub-02"]["mean"]) / (stats["sub-02"]["std"] + 1e-12)
    np.testing.assert_allclose(X.loc[sub.index].to_numpy(), expected, atol=1e-9)


def test_context_is_a_causal_trailing_mean_per_recording(table):
    shuffled = table.sample(frac=1.0, random_state=0)  # row order must not matter
    X = apply(FeaturePrep(features=("zc",), context=4), shuffled)
    for _, sub in table.groupby("recording"):
        sub = sub.sort_values("start")
        raw = sub[["ch0__zc", "ch1__zc", "ch2__zc"]].to_numpy()
        exp = np.array([raw[max(0, i - 3) : i + 1].mean(0) for i in range(len(raw))])
        np.testing.assert_allclose(X.loc[sub.index].to_numpy(), exp, rtol=1e-10)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"normalize": "session"},
            r"FeaturePrep: key 'prep.normalize': expected 'recording' or 'subject'; "
            r"found 'session'",
        ),
        ({"features": ["mav", "rms"]}, r"feature kinds \['rms'\] requested in key 'features'"),
        ({"features": ["mav"], "log": ["zc"]}, r"feature kinds \['zc'\] in key 'log'"),
        (
            {"context": 0},
            r"key 'prep.context': expected a value greater than or equal to 1; found 0",
        ),
        ({"context": True}, r"key 'prep.context': expected a number, not true/false"),
        ({"log": "mav"}, r"key 'prep.log': expected a list of feature kinds, e.g. \['mav'\]"),
        ({"log_offset": -1.0}, r"key 'prep.log_offset': expected a value greater than"),
    ],
)
def test_bad_parameters_are_refused_at_fit(table, params, match):
    prep = FeaturePrep(**params)  # __init__ only stores
    with pytest.raises(SpecError, match=match):
        prep.fit(table)


def test_unknown_key_of_a_config_names_the_closest(table):
    with pytest.raises(SpecError, match=r"unknown key 'prep.contxt'; did you mean 'context'"):
        FeaturePrep.from_spec({"contxt": 2})


def test_names_of_kinds_need_a_feature_table(table):
    with pytest.raises(SpecError, match=r"'features' and 'log' pick columns by feature kind"):
        FeaturePrep(log=["mav"]).fit(np.ones((5, 2)))
    prep = FeaturePrep(normalize="recording").fit(table)
    with pytest.raises(SpecError, match=r"no column \['recording'\]; pass the feature table"):
        prep.transform(table.drop(columns="recording"))
    with pytest.raises(SpecError, match=r"lacks 3 of the feature columns it was fitted on"):
        prep.transform(table.drop(columns=["ch0__zc", "ch1__zc", "ch2__zc"]))


def test_log_of_negative_feature_is_refused(table):
    bad = table.copy()
    bad.loc[bad.index[5], "ch1__zc"] = -1.0
    with pytest.raises(SpecError, match=r"columns \['ch1__zc'\] hold negative"):
        FeaturePrep(log=("zc",)).fit_transform(bad)


def test_spec_round_trip():
    prep = FeaturePrep(features=("mav",), log=("mav",), context=2, normalize="subject")
    spec = prep.spec()
    assert isinstance(spec, PrepSpec)
    assert FeaturePrep.from_spec(spec.model_dump(mode="json")).get_params() == prep.get_params()
    assert spec.model_dump(mode="json") == {
        "features": ["mav"],
        "log": ["mav"],
        "log_offset": 1e-12,
        "context": 2,
        "normalize": "subject",
        "tangent_space": None,
        "tangent_mean": "riemann",
        "recenter": None,
    }


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
    X = apply(FeaturePrep(context=2), t)
    np.testing.assert_allclose(X["ch__mav"], [1.0, 1.5, 10.0, 15.0, 25.0])
