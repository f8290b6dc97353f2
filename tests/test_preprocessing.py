"""Tests of pipeline.preprocessing against SciPy on the whole recording."""

from __future__ import annotations

import json

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.signal as sps
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.exceptions import PreprocessingError, SpecError
from pipeline.preprocessing import (
    apply_preprocessing,
    common_average,
    design_filter,
    envelope,
    filter_halo,
    filter_signal,
    resample,
    resample_labels,
    resample_ratio,
    validate_steps,
)

FS = 1000.0
# The bound stated in the module docstring for the halo tolerance.
FILTER_RTOL = 1e-6


def _signal(n: int = 12_000, c: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # random walk + noise + offset: low frequencies make the halo matter for high-passes
    return rng.standard_normal((n, c)).cumsum(0) * 0.05 + rng.standard_normal((n, c)) + 3.0


FILTER_STEPS = [
    {"op": "bandpass", "low": 20, "high": 450, "order": 4},
    {"op": "highpass", "cutoff": 0.5, "order": 2},
    {"op": "lowpass", "cutoff": 5, "order": 8},
    {"op": "notch", "freq": 50, "quality": 30, "harmonics": 3},
]


@pytest.mark.parametrize("step", FILTER_STEPS, ids=lambda s: s["op"])
@pytest.mark.parametrize("zero_phase", [True, False])
@pytest.mark.parametrize("chunk", [150, 1000, 5000])
def test_filter_matches_whole_recording(step, zero_phase, chunk):
    x = _signal()
    sos = design_filter(validate_steps([step], FS)[0], FS)
    ref = sps.sosfiltfilt(sos, x, axis=0) if zero_phase else sps.sosfilt(sos, x, axis=0)
    out = filter_signal(da.from_array(x, chunks=(chunk, 3)), sos, zero_phase=zero_phase)
    assert out.chunks == da.from_array(x, chunks=(chunk, 3)).chunks  # never rechunked
    got = out.compute(scheduler="sync")
    assert np.abs(got - ref).max() <= FILTER_RTOL * np.abs(x).max()


def test_filter_design_matches_scipy_butter_and_iirnotch():
    step = validate_steps([{"op": "bandpass", "low": 20, "high": 450}], FS)[0]
    np.testing.assert_array_equal(
        design_filter(step, FS), sps.butter(4, [20, 450], "bandpass", fs=FS, output="sos")
    )
    notch = validate_steps([{"op": "notch", "freq": 50, "harmonics": 20}], FS)[0]
    sos = design_filter(notch, FS)
    assert sos.shape == (9, 6)  # 50..450 Hz, harmonics at/above Nyquist skipped
    _, h = sps.sosfreqz(sos, worN=[50, 150, 450, 75], fs=FS)
    assert np.all(np.abs(h[:3]) < 1e-6) and abs(abs(h[3]) - 1) < 0.05


def test_filter_halo_decays_and_is_capped():
    sharp = sps.butter(2, 0.5, "highpass", fs=FS, output="sos")
    loose = sps.butter(4, [20, 450], "bandpass", fs=FS, output="sos")
    assert filter_halo(sharp) > 10 * filter_halo(loose)
    assert filter_halo(sharp, cap=500) == 500
    # the response beyond the halo really is below the tolerance
    d = filter_halo(loose, 1e-9)
    h = np.abs(sps.sosfilt(loose, np.r_[1.0, np.zeros(20_000)]))
    assert h[d:].sum() <= 1e-9 * h.sum()


def test_float32_signal_keeps_dtype_and_tolerance():
    x = _signal().astype(np.float32)
    sos = sps.butter(4, [20, 450], "bandpass", fs=FS, output="sos")
    out = filter_signal(da.from_array(x, chunks=(800, 3)), sos)
    assert out.dtype == np.float32
    ref = sps.sosfiltfilt(sos, x.astype(np.float64), axis=0)
    assert np.abs(out.compute() - ref).max() <= 1e-6 * np.abs(x).max()


def test_zero_phase_too_short_recording():
    sos = sps.butter(4, [20, 450], "bandpass", fs=FS, output="sos")
    x = da.zeros((20, 2), chunks=(10, 2))
    with pytest.raises(PreprocessingError, match=r"more than 27 samples, found .* of 20"):
        filter_signal(x, sos).compute()


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([(1000.0, 250.0), (1000.0, 1500.0), (2048.0, 256.0), (250.0, 100.0)]),
    st.integers(300, 3000),
    st.lists(st.integers(1, 900), min_size=1, max_size=8),
)
def test_resample_exact_for_any_chunking(rates, n, cuts):
    fs, target = rates
    up, down = resample_ratio(fs, target)
    x = np.random.default_rng(n).standard_normal((n, 2))
    chunks, left = [], n
    for c in cuts:
        if left <= 0:
            break
        chunks.append(min(c, left))
        left -= chunks[-1]
    if left:
        chunks.append(left)
    out = resample(da.from_array(x, chunks=(tuple(chunks), 2)), up, down)
    ref = sps.resample_poly(x, up, down, axis=0)
    assert out.shape == ref.shape
    with dask.config.set(scheduler="sync"):
        np.testing.assert_allclose(out.compute(), ref, rtol=0, atol=1e-12)
    labels = np.repeat(np.arange(n // 10 + 1), 10)[:n]
    lab = resample_labels(da.from_array(labels, chunks=tuple(chunks)), up, down, out.chunks[0])
    idx = np.minimum(np.floor(np.arange(ref.shape[0]) * fs / target + 0.5).astype(int), n - 1)
    np.testing.assert_array_equal(lab.compute(scheduler="sync"), labels[idx])


def test_resample_ratio():
    assert resample_ratio(1000.0, 250.0) == (1, 4)
    assert resample_ratio(2048.0, 1000.0) == (125, 256)
    with pytest.raises(PreprocessingError, match=r"ratio 9997/10000, expected terms <= 1000"):
        resample_ratio(1000.0, 999.7)


def test_common_average_only_eeg():
    x = _signal(500, 4)
    types = ["eeg", "eeg", "ecg", "eeg"]
    out = common_average(da.from_array(x, chunks=(100, 2)), types).compute()
    expected = x.copy()
    eeg = [0, 1, 3]
    expected[:, eeg] = x[:, eeg] - x[:, eeg].mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_array_equal(out[:, 2], x[:, 2])
    with pytest.raises(PreprocessingError, match=r"type 'eeg', found types \['emg'\]"):
        common_average(da.from_array(x), ["emg"] * 4)


def test_envelope_is_rectified_lowpass():
    x = _signal(4000, 2)
    out = envelope(da.from_array(x, chunks=(700, 2)), FS, 6.0).compute()
    sos = sps.butter(4, 6.0, "lowpass", fs=FS, output="sos")
    np.testing.assert_allclose(out, sps.sosfiltfilt(sos, np.abs(x), axis=0), atol=1e-6 * 10)


def _dataset(n: int = 6000, chunk: int = 700, labels: bool = True) -> xr.Dataset:
    x = _signal(n, 4).astype(np.float32)
    ds = xr.Dataset(
        {"signal": (("time", "channel"), da.from_array(x, chunks=(chunk, 4)))},
        coords={
            "channel": ["Fz", "Cz", "ECG", "Pz"],
            "channel_type": ("channel", ["eeg", "eeg", "ecg", "eeg"]),
            "unit": ("channel", ["uV", "uV", "mV", "uV"]),
        },
        attrs={
            "sampling_rate": FS,
            "units": ["uV", "uV", "mV", "uV"],
            "channel_types": ["eeg", "eeg", "ecg", "eeg"],
        },
    )
    if labels:
        lab = (np.arange(n) // 1000 % 3).astype(np.int16)
        ds["label"] = ("time", da.from_array(lab, chunks=chunk))
    return ds


def test_apply_preprocessing_chain_matches_numpy():
    ds = _dataset()
    steps = [
        {"op": "select", "types": ["eeg"]},
        {"op": "car"},
        {"op": "bandpass", "low": 1, "high": 40},
        {"op": "resample", "rate": 250},
    ]
    out = apply_preprocessing(ds, steps)
    assert list(out["channel"].values) == ["Fz", "Cz", "Pz"]
    assert out.attrs["units"] == ["uV", "uV", "uV"]
    assert out.attrs["sampling_rate"] == 250.0
    assert [s["op"] for s in json.loads(out.attrs["preprocessing"])] == [s["op"] for s in steps]
    assert isinstance(out["signal"].data, da.Array)
    x = ds["signal"].values.astype(np.float64)[:, [0, 1, 3]]
    x = x - x.mean(axis=1, keepdims=True)
    x = sps.sosfiltfilt(sps.butter(4, [1, 40], "bandpass", fs=FS, output="sos"), x, axis=0)
    x = sps.resample_poly(x, 1, 4, axis=0)
    np.testing.assert_allclose(out["signal"].values, x, atol=1e-5 * np.abs(x).max())
    lab = out["label"].values
    assert lab.shape == (1500,)
    np.testing.assert_array_equal(lab, ds["label"].values[::4])
    assert out["label"].chunks == out["signal"].chunks[:1]


def test_apply_preprocessing_select_by_name_order_and_rectify():
    ds = _dataset(labels=False)
    out = apply_preprocessing(ds, [{"op": "select", "channels": ["Pz", "Fz"]}, {"op": "rectify"}])
    assert list(out["channel"].values) == ["Pz", "Fz"]
    assert list(out["channel_type"].values) == ["eeg", "eeg"]
    np.testing.assert_array_equal(out["signal"].values, np.abs(ds["signal"].values[:, [3, 0]]))
    with pytest.raises(PreprocessingError, match=r"channel\(s\) \['Oz'\] not in the recording"):
        apply_preprocessing(ds, [{"op": "select", "channels": ["Oz"]}])


@pytest.mark.parametrize(
    ("steps", "match"),
    [
        (
            [{"op": "bandpas", "low": 1, "high": 2}],
            r"key 'preprocess.0': unknown op 'bandpas'; did you mean 'bandpass'\?",
        ),
        (
            [{"op": "car"}, {"op": "bandpass", "low": 20, "high": 500}],
            r"key 'preprocess.1.high': expected a frequency below the Nyquist frequency "
            r"500.0 Hz; found 500",
        ),
        (
            [{"op": "resample", "rate": 100}, {"op": "lowpass", "cutoff": 60}],
            r"key 'preprocess.1.cutoff': .*Nyquist frequency 50.0 Hz; found 60",
        ),
        ([{"op": "bandpass", "low": 40, "high": 20}], r"expected low < high, found low=40.0"),
        (
            [{"op": "highpass", "cutoff": 1, "order": 2.5}],
            r"key 'preprocess.0.order': expected a valid integer",
        ),
        ([{"op": "highpass", "cutoff": 1, "order": 13}], r"less than or equal to 12; found 13"),
        ([{"op": "highpass"}], r"missing required key 'preprocess.0.cutoff'"),
        ([{"op": "rectify", "gain": 2}], r"unknown key 'preprocess.0.gain'"),
        (
            [{"op": "notch", "freq": 50, "zero_phase": "yes"}],
            r"key 'preprocess.0.zero_phase': expected a valid boolean; found 'yes'",
        ),
        ([{"op": "select"}], r"expected key 'channels' or 'types'"),
        ([{"low": 1}], r"key 'preprocess.0': expected a mapping with key 'op'"),
        ([{"op": "resample", "rate": 999.7}], r"key 'preprocess.0.rate': .*9997/10000"),
        ("bandpass", r"key 'preprocess': expected a list of steps; found 'bandpass'"),
    ],
)
def test_validate_steps_errors(steps, match):
    with pytest.raises(SpecError, match=match):
        validate_steps(steps, FS)


def test_validate_steps_fills_defaults():
    (step,) = validate_steps([{"op": "bandpass", "low": 20, "high": 450}])
    assert step == {"op": "bandpass", "low": 20.0, "high": 450.0, "order": 4, "zero_phase": True}
