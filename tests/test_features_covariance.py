"""Cross-channel features: per-window covariance (empirical, OAS, Ledoit-Wolf), correlation."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from pyriemann.estimation import Covariances
from sklearn.covariance import empirical_covariance, ledoit_wolf, oas

from pipeline.exceptions import SpecError
from pipeline.features import make_block_function
from pipeline.features.covariance import PAIRWISE, pairwise_matrices
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
    assert {n for n, f in FEATURES.items() if f.family == "pairwise"} == set(PAIRWISE)


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
