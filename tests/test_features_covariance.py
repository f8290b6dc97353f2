"""Cross-channel features: per-window covariance (empirical, OAS, Ledoit-Wolf), correlation."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.signal
from pyriemann.estimation import Covariances
from sklearn.covariance import empirical_covariance, graphical_lasso, ledoit_wolf, oas

from pipeline.exceptions import SpecError
from pipeline.features import make_block_function
from pipeline.features.covariance import BANDED, PAIRWISE, is_pairwise_kind, pairwise_matrices
from pipeline.features.registry import FEATURES, table_columns
from pipeline.windows import map_windows

REFERENCES = {
    "cov": empirical_covariance,
    "cov_oas": lambda w: oas(w)[0],
    "cov_lw": lambda w: ledoit_wolf(w)[0],
    "corr": lambda w: np.corrcoef(w.T),
}


def _signal(n: int = 1500, c: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)) @ rng.standard_normal((c, c)) * 1e-5  # volts


def test_every_pairwise_feature_is_registered_and_tested() -> None:
    assert set(REFERENCES) == set(PAIRWISE)
    pairwise = {n for n, f in FEATURES.items() if f.family == "pairwise"}
    assert pairwise == {*PAIRWISE, *BANDED, "glasso"}  # the banded ones: tests below


@pytest.mark.parametrize("name", sorted(PAIRWISE))
def test_matches_sklearn_per_window(name: str) -> None:
    x = _signal()
    length, step = 400, 150
    func, names = make_block_function([name], 250.0, n_channels=5)
    assert names == [f"{name}~{j}" for j in range(5)]
    out = func(x, length, step)
    assert out.shape == ((1500 - 400) // 150 + 1, 5, 5)
    for w in range(out.shape[0]):
        ref = REFERENCES[name](x[w * step : w * step + length])
        np.testing.assert_allclose(out[w], ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_oas_matches_pyriemann_and_float32_blocks() -> None:
    x = _signal(c=4, seed=3)
    func, _ = make_block_function(["cov_oas"], 250.0, n_channels=4)
    out = func(x, 500, 500)
    windows = np.stack([x[k * 500 : (k + 1) * 500].T for k in range(3)])
    ref = Covariances(estimator="oas").fit_transform(windows)
    np.testing.assert_allclose(out, ref, rtol=1e-10)
    out32 = func(x.astype(np.float32), 500, 500)
    np.testing.assert_allclose(out32, out, rtol=1e-5)


def test_constant_channel_gives_zero_correlation_not_nan() -> None:
    x = _signal(c=3)
    x[:, 1] = 0.25
    func, _ = make_block_function(["corr", "cov_oas"], 250.0, n_channels=3)
    out = func(x, 300, 300)
    assert np.isfinite(out).all()
    assert (out[:, 1, :3] == 0).all()
    assert (out[:, 0, 0] == 1).all()


def test_chunk_invariant_with_per_channel_features() -> None:
    x = _signal(n=2000, c=4, seed=1)
    specs = ["logvar", "cov_oas", "mav"]
    func, names = make_block_function(specs, 250.0, n_channels=4)
    whole = func(x, 250, 100)
    for chunks in [(2000,), (137,) * 14 + (82,), (600, 1, 1399)]:
        got = map_windows(da.from_array(x, chunks=(chunks, 4)), 250, 100, func, len(names))
        got = got.compute()
        # the covariance slots are bit-identical (each window computed whole, in one order);
        # the per-channel kernels are compared to rounding, as in tests/test_features.py
        np.testing.assert_array_equal(got[:, :, 1:5], whole[:, :, 1:5])
        np.testing.assert_allclose(got, whole, rtol=1e-13, atol=0)


def test_table_columns_keep_the_upper_triangle_and_round_trip() -> None:
    channels = ["Fp1", "Fp2", "Cz"]
    func, names = make_block_function(["logvar", "cov_oas"], 250.0, n_channels=3)
    columns, keep = table_columns(channels, names)
    assert columns == [
        "Fp1__logvar", "Fp1:Fp1__cov_oas", "Fp1:Fp2__cov_oas", "Fp1:Cz__cov_oas",
        "Fp2__logvar", "Fp2:Fp2__cov_oas", "Fp2:Cz__cov_oas",
        "Cz__logvar", "Cz:Cz__cov_oas",
    ]  # fmt: skip
    x = _signal(c=3)
    out = func(x, 500, 500)
    flat = out.reshape(out.shape[0], -1)[:, keep]
    mats, order = pairwise_matrices(flat, columns, "cov_oas")
    assert order == channels
    np.testing.assert_array_equal(mats, out[:, :, 1:])
    assert table_columns(channels, ["mav"]) == (["Fp1__mav", "Fp2__mav", "Cz__mav"], None)


def test_errors_name_what_is_missing() -> None:
    with pytest.raises(SpecError, match="expected n_channels"):
        make_block_function(["cov_oas"], 250.0)
    func, _ = make_block_function(["cov_oas"], 250.0, n_channels=3)
    with pytest.raises(SpecError, match="expected 3 channels, found shape"):
        func(np.zeros((600, 4)), 300, 300)
    with pytest.raises(SpecError, match="found no column for"):
        pairwise_matrices(np.zeros((2, 2)), ["a:a__cov_oas", "b:b__cov_oas"], "cov_oas")
    with pytest.raises(SpecError, match="found none"):
        pairwise_matrices(np.zeros((2, 1)), ["a__mav"], "cov_oas")


# --------------------------------------------------------------- filter bank, connectivity

FS = 250.0
BANDS = [[4.0, 8.0], [8.0, 13.0], [13.0, 30.0]]


def _band_passed(w: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The window's ideal zero-phase band-passed copy, written out with numpy.fft."""
    w = w - w.mean(axis=0)
    f = np.fft.rfftfreq(len(w), 1.0 / FS)
    return np.fft.irfft(np.fft.rfft(w, axis=0) * ((f >= lo) & (f < hi))[:, None], len(w), axis=0)


@pytest.mark.parametrize(
    ("estimator", "reference"),
    [
        ("oas", lambda w: oas(w)[0]),
        ("lw", lambda w: ledoit_wolf(w)[0]),
        ("empirical", empirical_covariance),
    ],
)
def test_filter_bank_covariance_is_sklearns_estimate_of_each_band_passed_copy(
    estimator, reference
) -> None:
    x = _signal(n=2000, c=5, seed=4)
    spec = {"name": "fb_cov", "bands": BANDS, "estimator": estimator}
    func, names = make_block_function([spec], FS, n_channels=5)
    assert names[:2] == ["fbcov_4_8~0", "fbcov_4_8~1"] and names[5] == "fbcov_8_13~0"
    length, step = 500, 300
    out = func(x, length, step)
    assert out.shape == ((2000 - 500) // 300 + 1, 5, 15)
    for w in range(out.shape[0]):
        win = x[w * step : w * step + length]
        for b, (lo, hi) in enumerate(BANDS):
            ref = reference(_band_passed(win, lo, hi))
            got = out[w, :, 5 * b : 5 * (b + 1)]
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_filter_bank_isolates_a_band_and_names_its_columns() -> None:
    # a 10 Hz source on channel 0 and a 20 Hz one on channel 1: each band sees its own
    t = np.arange(1000) / FS
    x = np.stack([np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 20 * t), 0 * t], 1)
    x[:, 2] = np.random.default_rng(0).standard_normal(1000) * 1e-3
    spec = {
        "name": "fb_cov",
        "bands": {"alpha": [8, 13], "beta": [13, 30]},
        "estimator": "empirical",
    }
    func, names = make_block_function([spec], FS, n_channels=3)
    out = func(x, 500, 500)
    alpha, beta = out[:, :, :3], out[:, :, 3:]
    np.testing.assert_allclose(alpha[:, 0, 0], 0.5, rtol=1e-9)  # all of the sine's power
    np.testing.assert_allclose(beta[:, 1, 1], 0.5, rtol=1e-9)
    assert np.abs(alpha[:, 1, 1]).max() < 1e-20 and np.abs(beta[:, 0, 0]).max() < 1e-20
    columns, _ = table_columns(["C3", "C4", "Cz"], names)
    assert columns[:4] == ["C3:C3__fbcov_alpha", "C3:C4__fbcov_alpha", "C3:Cz__fbcov_alpha",
                           "C3:C3__fbcov_beta"]  # fmt: skip
    assert is_pairwise_kind("fbcov_alpha") and not is_pairwise_kind("fbcov_")


def test_coherence_is_scipys_averaged_over_each_band() -> None:
    x = _signal(n=1500, c=4, seed=5)
    x[:, 3] = x[:, 0] + 0.5 * np.random.default_rng(1).standard_normal(1500) * 1e-5
    spec = {"name": "coh", "bands": {"theta": [4, 8], "beta": [13, 30]}, "segment": 0.5}
    func, names = make_block_function([spec], FS, n_channels=4)
    assert names[4] == "coh_beta~0"
    length, step = 500, 250
    out = func(x, length, step)
    for w in range(out.shape[0]):
        win = x[w * step : w * step + length]
        for b, (lo, hi) in enumerate([(4, 8), (13, 30)]):
            for i in range(4):
                for j in range(4):
                    f, cxy = scipy.signal.coherence(win[:, i], win[:, j], FS, nperseg=125)
                    ref = cxy[(f >= lo) & (f < hi)].mean()
                    assert out[w, i, 4 * b + j] == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert (out[:, 0, 3] > 0.5).all() and np.allclose(out[:, np.arange(4), np.arange(4)], 1)


def test_graphical_lasso_is_sklearns_precision_of_the_window_correlation() -> None:
    x = _signal(n=1200, c=5, seed=6)
    func, names = make_block_function([{"name": "glasso", "alpha": 0.05}], FS, n_channels=5)
    assert names == [f"glasso~{j}" for j in range(5)]
    out = func(x, 400, 400)
    for w in range(3):
        corr = np.corrcoef(x[w * 400 : (w + 1) * 400].T)
        ref = graphical_lasso(corr, alpha=0.05)[1]
        np.testing.assert_allclose(out[w], ref, rtol=1e-9, atol=1e-12)
    assert (out[:, 0, 1:] == 0).any()  # the penalty zeroes some partial dependence


@pytest.mark.parametrize("spec", [{"name": "fb_cov", "bands": BANDS}, {"name": "coh"}, "glasso"])
def test_banded_and_lasso_features_are_chunk_exact(spec) -> None:
    x = _signal(n=2000, c=4, seed=7)
    func, names = make_block_function([spec, "logvar"], FS, n_channels=4)
    whole = func(x, 250, 100)
    for chunks in [(137,) * 14 + (82,), (600, 1, 1399)]:
        got = map_windows(da.from_array(x, chunks=(chunks, 4)), 250, 100, func, len(names))
        np.testing.assert_allclose(got.compute(), whole, rtol=1e-12, atol=0)


def test_band_and_segment_errors_say_what_was_expected() -> None:
    x = _signal(n=1000, c=3)
    func, _ = make_block_function([{"name": "fb_cov", "bands": [[4.2, 4.8]]}], FS, n_channels=3)
    with pytest.raises(
        SpecError, match=r"fb_cov.*at least one frequency bin in the band \[4.2, 4.8\)"
    ):
        func(x, 250, 250)
    func, _ = make_block_function([{"name": "coh", "segment": 2.0}], FS, n_channels=3)
    with pytest.raises(SpecError, match=r"expected a segment of 1 to 250 samples.*found 500"):
        func(x, 250, 250)
    with pytest.raises(SpecError, match="estimator"):
        make_block_function([{"name": "fb_cov", "estimator": "mcd"}], FS, n_channels=3)
