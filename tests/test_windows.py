"""Tests of pipeline.windows: window plans and chunk-exact windowing."""

from __future__ import annotations

import dataclasses

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.exceptions import WindowError
from pipeline.windows import (
    WindowPlan,
    map_ranges,
    map_windows,
    n_windows,
    window_blocks,
    window_starts,
)


def stats_block(block: np.ndarray, length: int, step: int) -> np.ndarray:
    """Window mean, max, first and last sample per channel: (n_windows, n_channels, 4)."""
    nw = n_windows(block.shape[0], length, step)
    out = np.empty((nw, block.shape[1], 4))
    for k in range(nw):
        w = block[k * step : k * step + length]
        out[k, :, 0] = w.mean(axis=0)
        out[k, :, 1] = w.max(axis=0)
        out[k, :, 2] = w[0]
        out[k, :, 3] = w[-1]
    return out


def reference(x: np.ndarray, length: int, step: int) -> np.ndarray:
    """Independent reference: sliding_window_view over the whole array."""
    nw = n_windows(x.shape[0], length, step)
    if nw == 0:
        return np.zeros((0, x.shape[1], 4))
    views = np.lib.stride_tricks.sliding_window_view(x, length, axis=0)[::step][:nw]
    # views: (nw, n_channels, length)
    return np.stack([views.mean(-1), views.max(-1), views[..., 0], views[..., -1]], axis=-1)


@st.composite
def chunked_problem(draw):
    n = draw(st.integers(0, 400))
    length = draw(st.integers(1, 60))
    step = draw(st.integers(1, 80))
    chunks = []
    left = n
    while left > 0:
        c = draw(st.integers(1, max(1, min(left, draw(st.sampled_from([3, 17, 90, 400]))))))
        chunks.append(c)
        left -= c
    return n, length, step, tuple(chunks) or (0,)


@settings(max_examples=60, deadline=None)
@given(chunked_problem(), st.integers(1, 3))
def test_map_windows_matches_single_array_reference(problem, n_channels):
    n, length, step, chunks = problem
    rng = np.random.default_rng(n + 7 * length + step)
    x = rng.standard_normal((n, n_channels))
    xd = da.from_array(x, chunks=(chunks, n_channels))
    out = map_windows(xd, length, step, stats_block, 4)
    expected = reference(x, length, step)
    assert out.shape == expected.shape
    with dask.config.set(scheduler="sync"):
        got = out.compute()
    # first/last sample columns prove each window is exactly the right samples
    np.testing.assert_array_equal(got[..., 1:], expected[..., 1:])
    np.testing.assert_allclose(got[..., 0], expected[..., 0], rtol=1e-12, atol=1e-12)


def test_map_windows_each_window_computed_once():
    """Count window evaluations: every window exactly once for awkward chunkings."""
    calls: list[int] = []

    def counting(block: np.ndarray, length: int, step: int) -> np.ndarray:
        nw = n_windows(block.shape[0], length, step)
        calls.append(nw)
        return stats_block(block, length, step)

    x = da.from_array(np.arange(1000.0).reshape(-1, 1), chunks=((7, 3, 200, 1, 89, 700), 1))
    out = map_windows(x, 64, 10, counting, 4).compute(scheduler="sync")
    assert sum(calls) == n_windows(1000, 64, 10) == out.shape[0]
    np.testing.assert_array_equal(out[:, 0, 2], window_starts(1000, 64, 10))


def test_map_windows_graph_is_linear_in_chunks_and_not_rechunked():
    x = da.zeros((100_000, 2), chunks=(50, 2))
    out = map_windows(x, 20, 5, stats_block, 4)
    layer = dict(out.dask.layers[out.name])
    assert len(layer) == 2000  # one task per input chunk holding a window start
    assert out.chunks[0] == tuple([10] * 1999 + [n_windows(100_000, 20, 5) - 19990])


def test_map_windows_channel_chunks_and_short_recording():
    x = da.from_array(np.arange(40.0).reshape(20, 2), chunks=(6, 1))
    out = map_windows(x, 5, 5, stats_block, 4)
    np.testing.assert_array_equal(out.compute(), reference(x.compute(), 5, 5))
    empty = map_windows(x[:3], 5, 5, stats_block, 4)
    assert empty.shape == (0, 2, 4)
    assert empty.compute().shape == (0, 2, 4)


def test_map_windows_wrong_block_shape_is_reported():
    def bad(block, length, step):
        return np.zeros((1, 1, 1))

    x = da.zeros((100, 2), chunks=(50, 2))
    # which block fails first is the scheduler's order (dask 2025.1 runs the 9-window one first)
    with pytest.raises(WindowError, match=r"returned shape \(1, 1, 1\).*expected \((9|10), 2, 3\)"):
        map_windows(x, 10, 5, bad, 3).compute(scheduler="sync")
    with pytest.raises(WindowError, match=r"2-D \(time, channel\).*\(100,\)"):
        map_windows(x[:, 0], 10, 5, bad, 3)


def test_map_windows_runs_on_distributed():
    distributed = pytest.importorskip("distributed")
    x = np.random.default_rng(0).standard_normal((3000, 3))
    xd = da.from_array(x, chunks=(70, 3))
    with distributed.Client(n_workers=1, threads_per_worker=2, processes=False):
        got = map_windows(xd, 200, 50, stats_block, 4).compute()
    np.testing.assert_allclose(got, reference(x, 200, 50), rtol=1e-12)


def test_window_blocks_assign_by_start():
    assert window_blocks((10, 10, 10), 5, 4) == [(0, 3), (3, 5), (5, 7)]
    # chunk without a start is skipped; last windows limited by the length
    assert window_blocks((3, 2, 25), 10, 4) == [(0, 1), (1, 2), (2, 6)]


def test_map_ranges_arbitrary_ranges():
    x = np.arange(50.0)
    xd = da.from_array(x, chunks=7)
    out = map_ranges(
        xd,
        [(0, 3), (5, 49), (49, 50)],
        [3, 44, 1],
        lambda b: b * 2,
        dtype=float,
        trailing_shape=(),
    )
    np.testing.assert_array_equal(out.compute(), np.concatenate([x[:3], x[5:49], x[49:]]) * 2)


def test_n_windows():
    assert n_windows(10, 3, 2) == 4
    assert n_windows(2, 3, 2) == 0
    assert n_windows(3, 3, 100) == 1
    with pytest.raises(WindowError, match="length >= 1"):
        n_windows(10, 0, 1)


def test_window_plan_seconds_and_samples():
    assert WindowPlan(0.2, 0.05, unit="seconds").in_samples(1000.0) == (200, 50)
    assert WindowPlan(0.1, 1 / 3, unit="seconds").in_samples(300.0) == (30, 100)
    assert WindowPlan(200, 50).in_samples(123.4) == (200, 50)
    plan = WindowPlan(0.25, 0.125, unit="seconds")
    assert WindowPlan.from_dict(plan.to_dict()) == plan
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.length = 3  # frozen


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"length": 0, "step": 1}, r"key 'length': expected a value greater than 0; found 0"),
        ({"length": 10, "step": -1}, r"key 'step': expected a value greater than 0; found -1"),
        ({"length": 10.5, "step": 1}, r"integer number of samples for 'length', found 10.5"),
        ({"length": 10, "step": 1, "unit": "ms"}, r"'samples' or 'seconds'; found 'ms'"),
        ({"length": "ten", "step": 1}, r"key 'length': expected a valid number.*found 'ten'"),
        ({"length": True, "step": 1}, r"key 'length': expected a number, not true/false"),
    ],
)
def test_window_plan_validation(kwargs, match):
    with pytest.raises(WindowError, match=match):
        WindowPlan(**kwargs)


def test_window_plan_non_integer_seconds():
    with pytest.raises(WindowError, match=r"length 0.0333 s at 1000.0 Hz is 33.3.* samples"):
        WindowPlan(0.0333, 0.01, unit="seconds").in_samples(1000.0)
    with pytest.raises(WindowError, match=r"unknown key 'size'; did you mean 'step'\?"):
        WindowPlan.from_dict({"length": 1, "step": 1, "size": 2})
