"""Feature conventions against the peers a user compares with: libemg and mne-features.

libemg's MATLAB reference values (``matlab_<FEATURE>.csv`` in libemg's ``tests/data``, kept in
``${COHORT_DATA}/foreign/libemg``) were written by MATLAB ``csvwrite`` on
``emg_data_myo.csv`` (Myo armband, integer ADC counts) with 200-sample windows, step 25: 13
windows x 8 channels, five significant digits. Each feature both projects have is ported
here; a value matches when ours, rounded to five significant digits, is the printed value.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from pipeline.exceptions import SpecError
from pipeline.features import FeatureSpec, compute_features, make_block_function
from pipeline.features._reference import reference_features, windows_of

DATA = Path(os.environ.get("COHORT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
LIBEMG = DATA / "foreign" / "libemg"
LENGTH, STEP, FS = 200, 25, 1000.0  # get_feature_values.m; libemg's MNF/MDF default fs


@pytest.fixture(scope="module")
def myo() -> np.ndarray:
    path = LIBEMG / "emg_data_myo.csv"
    if not path.exists():
        pytest.skip(f"libemg's test data not found at {path} (set COHORT_DATA)")
    return np.loadtxt(path, delimiter=",")


def _matlab(name: str) -> np.ndarray:
    return np.loadtxt(LIBEMG / f"matlab_{name}.csv", delimiter=",", ndmin=2)


def _assert_five_digits(got: np.ndarray, printed: np.ndarray, name: str) -> None:
    """``printed`` is ``got`` to five significant digits: within half a unit of the fifth."""
    magnitude = np.floor(np.log10(np.abs(np.where(printed == 0, 1.0, printed))))
    half_unit = 0.5 * 10.0 ** (magnitude - 4)
    err = np.abs(got - printed)
    assert np.all(err <= half_unit * (1 + 1e-9)), (name, float(np.max(err / half_unit)))


def _ours(x: np.ndarray, spec) -> np.ndarray:
    out = compute_features(x, LENGTH, STEP, [spec], FS)
    return out.reshape(out.shape[0], -1)  # channel-major, as libemg's AR columns


# (MATLAB name, our spec): every feature of libemg's MATLAB reference that we also compute.
PORTED = [
    ("MAV", "mav"),
    ("IAV", "iav"),
    ("RMS", "rms"),
    ("WL", "wl"),
    ("ZC", "zc"),
    ("SSC", {"name": "ssc", "convention": "hudgins", "threshold": 0.0}),
    ("WAMP", {"name": "wamp", "threshold": 0.5}),  # any nonzero step of integer counts
    ("LD", "log"),  # the default eps: one quantisation step, +1 on counts as libemg
    ("SKEW", "skewness"),
    ("KURT", "kurtosis"),
    ("AR", {"name": "ar", "order": 4, "sign": "lpc", "demean": False}),
]


@pytest.mark.parametrize(("matlab", "spec"), PORTED, ids=[m for m, _ in PORTED])
def test_matches_libemg_matlab_reference(myo: np.ndarray, matlab: str, spec) -> None:
    ref = _matlab(matlab)
    got = _ours(myo, spec)
    assert got.shape == ref.shape == (13, ref.shape[1])
    _assert_five_digits(got, ref, matlab)


def test_matlab_var_is_the_mean_square_not_our_variance(myo: np.ndarray) -> None:
    # MATLAB's VAR of the reference is mean(x**2) (EMG taken as zero-mean); ours removes the
    # window mean, like libemg's numpy.var, so the two differ by the squared window mean.
    ref = _matlab("VAR")
    _assert_five_digits(_ours(myo, "rms") ** 2, ref, "VAR")
    w = windows_of(myo, LENGTH, STEP)
    var = _ours(myo, "var")
    np.testing.assert_allclose(var, np.var(w, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(var, ref - np.mean(w, axis=-1) ** 2, rtol=1e-3)
    assert not np.allclose(var, ref, rtol=1e-2)


def test_variance_ddof_one_is_mne_features(myo: np.ndarray) -> None:
    # mne-features' compute_variance is numpy.var(data, axis=-1, ddof=1).
    w = windows_of(myo, LENGTH, STEP)
    got = _ours(myo, {"name": "var", "ddof": 1})
    np.testing.assert_allclose(got, np.var(w, axis=-1, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(got, _ours(myo, "var") * LENGTH / (LENGTH - 1), rtol=1e-12)
    with pytest.raises(SpecError, match=r"ddof.*less than or equal to 1"):
        FeatureSpec("var", {"ddof": 2})


def test_kurtosis_is_pearson_and_excess_kurtosis_subtracts_three(myo: np.ndarray) -> None:
    w = windows_of(myo, LENGTH, STEP)
    pearson = _ours(myo, "kurtosis")
    np.testing.assert_allclose(pearson, scipy.stats.kurtosis(w, axis=-1, fisher=False))
    np.testing.assert_allclose(_ours(myo, "excess_kurtosis"), pearson - 3.0, atol=1e-12)


def test_log_detector_default_survives_exact_zeros() -> None:
    # Quantised in steps of 1e-5 V with exact zeros in every window: eps=0 gives 0 (the old
    # default), the step default is exp(mean(log(|x| + 1e-5))).
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(0, 3, size=(1000, 2))) * 1e-5
    x[::50] = 0.0
    w = windows_of(x, 100, 20)
    assert (w == 0).any(axis=-1).all()
    assert np.all(compute_features(x, 100, 20, [{"name": "log", "eps": 0.0}], FS) == 0.0)
    got = compute_features(x, 100, 20, ["log"], FS)[..., 0]
    np.testing.assert_allclose(got, np.exp(np.mean(np.log(np.abs(w) + 1e-5), axis=-1)))
    # scale-free: the same counts in other units give the same LD in those units
    np.testing.assert_allclose(compute_features(x * 1e5, 100, 20, ["log"], FS)[..., 0], got * 1e5)


def test_log_detector_step_of_a_window_without_the_common_step() -> None:
    # Channel 0 moves in steps of 1 except one window in steps of 3; constant windows give |c|.
    x = np.zeros((60, 2))
    x[:, 0] = np.tile([0.0, 1.0, 2.0, 1.0], 15)
    x[20:40, 0] = np.tile([0.0, 3.0, 6.0, 3.0], 5)
    x[:, 1] = -2.0
    specs = ["log"]
    got = compute_features(x, 20, 20, specs, FS)
    np.testing.assert_allclose(got, reference_features(x, 20, 20, specs, FS))
    np.testing.assert_allclose(got[1, 0, 0], np.exp(np.mean(np.log(np.abs(x[20:40, 0]) + 3))))
    np.testing.assert_allclose(got[:, 1, 0], 2.0, rtol=1e-15)


def test_log_detector_step_is_the_common_divisor_of_the_steps() -> None:
    # Held samples (as the UCI Myo data, each value repeated) move by 2 and 3 steps of 1e-3:
    # the smallest step is 2e-3, the quantisation step 1e-3.
    x = np.repeat([0.0, 2.0, 5.0, 3.0, 0.0, -2.0, -5.0, -3.0], 5)[:, None] * 1e-3
    got = compute_features(x, 40, 40, ["log"], FS)[0, 0, 0]
    np.testing.assert_allclose(got, np.exp(np.mean(np.log(np.abs(x) + 1e-3))), rtol=1e-12)


def test_ssc_conventions_differ_on_plateaus() -> None:
    # 0 1 1 0 2 2 2 0: collapsed -> runs 0 1 0 2 0, turning points 1, 0, 2 -> 3.
    # Hudgins at 0: products at i=1..6: (1)(0)=0, (0)(1)=0, (-1)(-2)=2, (2)(0)=0, 0, (0)(2)=0 -> 6.
    x = np.array([0, 1, 1, 0, 2, 2, 2, 0], float)[:, None]
    collapsed = compute_features(x, 8, 1, ["ssc"], FS)[0, 0, 0]
    hudgins = compute_features(x, 8, 1, [{"name": "ssc", "convention": "hudgins"}], FS)
    assert collapsed == 3.0
    assert hudgins[0, 0, 0] == 6.0
    # the threshold is on the product (squared units): 2 >= 1.5 counts, the zeros do not
    big = compute_features(
        x, 8, 1, [{"name": "ssc", "convention": "hudgins", "threshold": 1.5}], FS
    )
    assert big[0, 0, 0] == 1.0
    with pytest.raises(SpecError, match=r"convention.*'collapsed' or 'hudgins'"):
        FeatureSpec("ssc", {"convention": "libemg"})


def test_ar_sign_and_mean_conventions(myo: np.ndarray) -> None:
    ar = _ours(myo, "ar")
    lpc = _ours(myo, {"name": "ar", "sign": "lpc"})
    np.testing.assert_array_equal(lpc, -ar)
    # the default removes the window mean: an offset changes nothing
    np.testing.assert_allclose(_ours(myo + 100.0, "ar"), ar, rtol=1e-6, atol=1e-9)
    raw = {"name": "ar", "demean": False}
    assert not np.allclose(_ours(myo + 100.0, raw), _ours(myo, raw), atol=1e-2)


def _libemg_spectrum(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """libemg's getMNFfeat/getMDFfeat spectrum: |FFT|**2 with nextpow2 zero padding, bins
    below Nyquist, every bin (DC included) weighted alike."""
    nfft = 2 ** int(np.ceil(np.log2(w.shape[-1])))
    spec = np.fft.fft(w, nfft, axis=-1)[..., : nfft // 2] / w.shape[-1]
    return np.real(spec * np.conj(spec)), np.arange(nfft // 2) * FS / nfft


def test_mnf_mdf_match_libemg_on_mean_removed_windows(myo: np.ndarray) -> None:
    # libemg keeps the DC bin with the weight of every other bin, so the window mean enters
    # its MNF/MDF (and MATLAB's); a one-sided PSD halves it. On mean-removed windows the DC
    # bin is 0 and ours, with libemg's FFT settings, equals libemg exactly.
    w = windows_of(myo, LENGTH, STEP)
    p, f = _libemg_spectrum(w - w.mean(axis=-1, keepdims=True))
    mnf = np.sum(p * f, axis=-1) / np.sum(p, axis=-1)
    cum, tot = np.cumsum(p, axis=-1), np.sum(p, axis=-1)
    mdf = f[np.argmax(cum > tot[..., None] / 2, axis=-1)]
    like = {"window": "boxcar", "nfft": 256, "detrend": "constant", "fmax": FS / 2 - 1}
    np.testing.assert_allclose(_ours(myo, {"name": "mnf", **like}), mnf, rtol=1e-10)
    np.testing.assert_array_equal(_ours(myo, {"name": "mdf", **like}), mdf)


def test_spectral_entropy_base_against_mne_features(myo: np.ndarray) -> None:
    # mne-features' spect_entropy: -sum q log2 q over the bins above 0 Hz, q = P / total.
    import scipy.signal

    w = windows_of(myo, LENGTH, STEP)
    f, p = scipy.signal.periodogram(w, FS, window="hann", axis=-1)
    q = p[..., 1:] / p[..., 1:].sum(axis=-1, keepdims=True)
    bits = -np.sum(q * np.log2(q), axis=-1)
    nats = _ours(myo, {"name": "spectral_entropy", "normalize": False, "fmin": f[1]})
    np.testing.assert_allclose(nats / np.log(2.0), bits, rtol=1e-10)
    normalized = _ours(myo, {"name": "spectral_entropy", "fmin": f[1]})
    np.testing.assert_allclose(normalized, bits / np.log2(f.size - 1), rtol=1e-10)


@pytest.mark.parametrize(
    "spec",
    [
        "log",
        {"name": "ssc", "convention": "hudgins", "threshold": 1.0},
        {"name": "var", "ddof": 1},
        {"name": "ar", "order": 3, "sign": "lpc", "demean": False},
        "excess_kurtosis",
    ],
    ids=["log-step", "ssc-hudgins", "var-ddof1", "ar-lpc-raw", "excess-kurtosis"],
)
def test_new_options_match_reference_and_are_chunk_exact(spec) -> None:
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(0, 4, size=(3000, 3)) + 2.0)
    x[500:900, 1] = 3.0  # constant windows
    x[::7, 2] = 0.0
    func, names = make_block_function([spec], FS)
    whole = func(x, 100, 30)
    np.testing.assert_allclose(
        whole, reference_features(x, 100, 30, [spec], FS), rtol=1e-7, atol=1e-12
    )
    # two blocks cut on a window boundary give the same windows
    first = func(x[: 30 * 40 + 70], 100, 30)
    second = func(x[30 * 40 :], 100, 30)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-7, atol=1e-12)
    assert names
