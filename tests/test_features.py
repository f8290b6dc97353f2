"""Feature kernels against the NumPy/SciPy reference, window counts, registry errors."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.exceptions import SpecError
from pipeline.features import (
    FEATURES,
    FeatureSpec,
    compute,
    compute_features,
    feature_names,
    make_block_function,
)
from pipeline.features._reference import reference_features

DATA = Path(os.environ.get("COHORT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
EMG_FILE = DATA / "emg-gestures" / "01" / "1_raw_data_13-12_22.03.16.txt"

FS = 1000.0
# Every registered feature, with non-default thresholds and periodogram settings where they
# matter; the second periodogram group (boxcar, no detrend, zero padding, band limits)
# exercises a separate FFT pass.
SPECS: list = [
    "mav", "iav", "rms", "var", "wl",
    {"name": "zc", "threshold": 0.15},
    {"name": "ssc", "threshold": 0.15},
    {"name": "wamp", "threshold": 0.1},
    {"name": "log", "eps": 0.01},
    "hjorth_activity", "hjorth_mobility", "hjorth_complexity",
    "skewness", "kurtosis", "excess_kurtosis",
    {"name": "ar", "order": 3},
    "logvar",
    "mnf", "mdf", "peak_freq",
    {"name": "spectral_entropy", "window": "boxcar", "nfft": 512, "detrend": "none",
     "fmin": 5, "fmax": 300, "normalize": False},
    {"name": "band_power", "bands": [[20, 100], [100, 250]]},
    {"name": "rel_band_power", "bands": {"low": [0, 100], "high": [100, 500]}},
    "eeg_band_power", "eeg_rel_band_power",
]  # fmt: skip


def _assert_match(got: np.ndarray, ref: np.ndarray, names: list[str], scale: float) -> None:
    assert got.shape == ref.shape
    for j, name in enumerate(names):
        a, b = got[..., j], ref[..., j]
        finite = np.isfinite(b)
        assert np.array_equal(np.isfinite(a), finite), name
        tol = 1e-9 * max(1.0, float(np.abs(b[finite]).max(initial=0.0)), scale)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-7, atol=tol, err_msg=name)


def test_every_registered_feature_is_tested() -> None:
    tested = {FeatureSpec.coerce(s).name for s in SPECS}
    assert len(feature_names(SPECS)) == 37
    # the pairwise features (cov, cov_oas ...) are tested in tests/test_features_covariance.py
    assert tested == {n for n, f in FEATURES.items() if f.family != "pairwise"}


@st.composite
def blocks(draw):
    """Quantised signals with flat repeated-value runs, constant channels and zeros."""
    n = draw(st.integers(0, 700))
    nch = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((n, nch)) * draw(st.sampled_from([3, 20]))) / 10
    if n:
        hold = draw(st.integers(1, 12))  # repeat each value `hold` times, like the MYO band
        x = np.repeat(x[::hold], hold, axis=0)[:n]
        x += draw(st.sampled_from([0.0, 0.05, 5.0]))  # offsets, so zero is not special
        if draw(st.booleans()):
            lo = draw(st.integers(0, n - 1))
            x[lo : lo + draw(st.integers(1, 300)), 0] = draw(st.sampled_from([0.0, 0.3]))
    length = draw(st.integers(40, 260))
    step = draw(st.integers(1, 120))
    return x, length, step


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks())
def test_kernels_match_reference_on_random_blocks(case) -> None:
    x, length, step = case
    func, names = make_block_function(SPECS, FS)
    got = func(x, length, step)
    ref = reference_features(x, length, step, SPECS, FS)
    _assert_match(got, ref, names, float(np.abs(x).max(initial=0.0)) ** 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference_on_real_emg(dtype) -> None:
    if not EMG_FILE.exists():
        pytest.skip(f"real data not found at {EMG_FILE} (set COHORT_DATA)")
    df = pd.read_csv(EMG_FILE, sep="\t", nrows=6000)
    x = df[[f"channel{i}" for i in range(1, 9)]].to_numpy(dtype)
    specs = [
        "mav", "iav", "rms", "var", "wl", "zc", "ssc", {"name": "wamp", "threshold": 1e-5},
        {"name": "log", "eps": 1e-6}, "hjorth_activity", "hjorth_mobility", "hjorth_complexity",
        "skewness", "kurtosis", "ar", "mnf", "mdf", "peak_freq", "spectral_entropy",
        "band_power", "rel_band_power",
    ]  # fmt: skip
    func, names = make_block_function(specs, FS)
    got = func(x, 200, 50)
    ref = reference_features(x, 200, 50, specs, FS)
    assert got.shape == (117, 8, len(names))
    _assert_match(got, ref, names, float(np.abs(x).max()) ** 2)
    # Real EMG repeats values: flat runs must not be counted as slope sign changes.
    assert got[..., names.index("ssc")].max() < 199


def test_memory_layouts_and_batches_give_identical_features(monkeypatch) -> None:
    # The kernels read C-ordered blocks through a channel-major copy, Fortran-ordered float64
    # blocks through a transposed view and other layouts as they are: every layout must give
    # the same bits. 733 windows of 64 samples span two spectral FFT batches (397 windows).
    rng = np.random.default_rng(7)
    x = np.repeat(np.round(rng.standard_normal((800, 5)) * 20) / 10, 5, axis=0)[:3724]
    x[100:400, 1] = 0.3  # a flat stretch: constant windows
    x32 = x.astype(np.float32)
    func, names = make_block_function(SPECS, FS)
    ref = func(np.ascontiguousarray(x), 64, 5)
    assert ref.shape == (733, 5, len(names))
    wide = np.zeros((x.shape[0], 10))
    wide[:, ::2] = x
    for block in (np.asfortranarray(x), wide[:, ::2]):
        np.testing.assert_array_equal(func(block, 64, 5), ref)
    monkeypatch.setattr(compute, "_SCRATCH_MAX", 100)  # large blocks: a transient copy
    np.testing.assert_array_equal(func(np.ascontiguousarray(x), 64, 5), ref)
    np.testing.assert_array_equal(
        func(np.asfortranarray(x32), 64, 5), func(np.ascontiguousarray(x32), 64, 5)
    )
    _assert_match(ref, reference_features(x, 64, 5, SPECS, FS), names, float(np.abs(x).max()) ** 2)


def test_block_function_is_thread_safe() -> None:
    # C-ordered blocks go through a per-thread scratch copy; the kernels release the GIL.
    rng = np.random.default_rng(3)
    blocks = [np.round(rng.standard_normal((n, 4)) * 30) / 10 for n in (5000, 3100, 4400, 900)]
    func, _ = make_block_function(["mav", "var", "zc", "ssc", "mnf", "mdf"], FS)
    expected = [func(b, 100, 25) for b in blocks]
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(lambda b: func(b, 100, 25), blocks * 8))
    for k, res in enumerate(got):
        np.testing.assert_array_equal(res, expected[k % len(blocks)])


def test_flat_runs_are_not_counted() -> None:
    # A flat-topped peak counts once; a plateau and flat steps never count.
    x = np.array([0, 1, 1, 1, 0, 0, 2, 2, 3, 3, 3, -1, -1, -1], float)[:, None]
    out = compute_features(x, 14, 1, ["ssc", "zc", "wamp", "wl"], FS)
    # deduplicated: 0 1 0 2 3 -1 -> turning points 1, 0, 3 ; zero crossing 3 -> -1 only
    np.testing.assert_array_equal(out[0, 0], [3, 1, 5, 1 + 1 + 2 + 1 + 4])
    flat = np.full((50, 2), 0.25)
    res = compute_features(flat, 20, 5, ["ssc", "zc", "wamp", "var", "mnf", "skewness"], FS)
    assert res.shape == (7, 2, 6)
    assert not res.any()


@pytest.mark.parametrize(
    ("n", "length", "step", "expected"),
    [
        (0, 10, 1, 0),
        (9, 10, 3, 0),
        (10, 10, 3, 1),
        (12, 10, 3, 1),
        (13, 10, 3, 2),
        (100, 10, 10, 10),
    ],
)
def test_number_of_windows(n, length, step, expected) -> None:
    x = np.random.default_rng(1).standard_normal((n, 2))
    func, names = make_block_function(["mav", "ssc", "mnf", "ar"], 100.0)
    out = func(x, length, step)
    assert out.shape == (expected, 2, len(names))
    assert out.dtype == np.float64


def test_window_k_covers_its_samples() -> None:
    x = np.arange(40, dtype=float)[:, None]
    out = compute_features(x, 8, 5, ["iav"], 1.0)
    np.testing.assert_array_equal(out[:, 0, 0], [sum(range(5 * k, 5 * k + 8)) for k in range(7)])


def test_names_and_columns() -> None:
    _, names = make_block_function(
        ["mav", {"name": "ar", "order": 2}, {"name": "band_power", "bands": [[8, 13]]},
         {"name": "rel_band_power", "bands": {"alpha": [8, 13]}}, "eeg_band_power"], 250.0
    )  # fmt: skip
    assert names == ["mav", "ar1", "ar2", "bp_8_13", "rel_alpha",
                     "delta", "theta", "alpha", "beta", "gamma"]  # fmt: skip


def test_spec_resolves_defaults_and_round_trips() -> None:
    spec = FeatureSpec.coerce({"name": "ZC", "params": {"threshold": "1e-5"}})
    assert spec.name == "zc"
    assert spec.params["threshold"] == 1e-5
    assert FeatureSpec.coerce(spec.to_dict()) == spec
    assert FeatureSpec("mnf").params["window"] == "hann"
    assert hash(FeatureSpec("mav")) == hash(FeatureSpec.coerce({"name": "mav"}))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("mavv", r"Unknown feature 'mavv'; did you mean 'mav'\?.*Known features: ar, band_power"),
        (
            {"name": "zc", "treshold": 1},
            r"feature 'zc': unknown key 'treshold'; did you mean 'threshold'\?",
        ),
        (
            {"name": "zc", "threshold": -1},
            r"feature 'zc': key 'threshold': expected a value greater than or equal to 0; "
            r"found -1",
        ),
        ({"name": "zc", "threshold": True}, r"key 'threshold': expected a number, not true"),
        ({"name": "ar", "order": 2.5}, r"feature 'ar': key 'order': expected a valid integer"),
        ({"name": "mnf", "window": "hanning"}, r"key 'window': expected 'hann', 'hamming'"),
        ({"name": "mnf", "fmin": 50, "fmax": 10}, r"expected fmin < fmax, found fmin=50.0"),
        (
            {"name": "band_power", "bands": [[13, 8]]},
            r"expected a value with 0 <= low < high in every band, found \[13.0, 8.0\]",
        ),
        ({"name": "band_power", "bands": "alpha"}, r"key 'bands': expected a list of"),
        ({"threshold": 1}, r"expected a 'name' key"),
        (3, r"expected a name, a mapping or a FeatureSpec, found 3"),
        ({"name": "zc", "params": {}, "threshold": 1}, r"not both"),
    ],
)
def test_registry_errors(spec, match) -> None:
    with pytest.raises(SpecError, match=match):
        make_block_function([spec], 1000.0)


def test_block_function_errors() -> None:
    with pytest.raises(SpecError, match=r"'mav' is produced by both"):
        feature_names(["mav", "mav"])
    with pytest.raises(SpecError, match=r"expected at least one feature"):
        make_block_function([], 100.0)
    with pytest.raises(SpecError, match=r"expected a list of feature specs, found 'mav'"):
        make_block_function("mav", 100.0)
    with pytest.raises(SpecError, match=r"sampling_rate: expected a positive number"):
        make_block_function(["mav"], 0)
    with pytest.raises(SpecError, match=r"\[1, 45\] Hz exceeds the Nyquist frequency 40 Hz"):
        make_block_function(["eeg_band_power"], 80.0)
    func, _ = make_block_function([{"name": "ar", "order": 6}], 100.0)
    with pytest.raises(SpecError, match=r"expected at least 7 samples.*found 5"):
        func(np.zeros((20, 1)), 5, 1)
    with pytest.raises(SpecError, match=r"Window step: expected an integer >= 1 sample, found 0"):
        func(np.zeros((20, 1)), 10, 0)
    with pytest.raises(SpecError, match=r"expected a 2-D array .* found shape \(20,\)"):
        func(np.zeros(20), 10, 1)
    func, _ = make_block_function([{"name": "mnf", "fmin": 10, "fmax": 11}], 100.0)
    with pytest.raises(SpecError, match=r"no frequency bin in \[10, 11\] Hz"):
        func(np.zeros((20, 1)), 8, 1)
