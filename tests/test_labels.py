"""Tests of pipeline.labels: window labels from samples and events, chunk invariance."""

from __future__ import annotations

from collections import Counter

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.exceptions import SpecError
from pipeline.labels import LabelPolicy, event_targets, sample_label_stats, window_sample_labels
from pipeline.windows import n_windows


def _reference(labels: np.ndarray, length: int, step: int, policy: LabelPolicy):
    """Plain Python: Counter per window, ties to the smallest code."""
    codes, keep = [], []
    for k in range(n_windows(len(labels), length, step)):
        w = labels[k * step : k * step + length].tolist()
        counts = Counter(w)
        top = max(counts.values())
        majority = min(c for c, v in counts.items() if v == top)
        code = majority if policy.mode == "majority" else w[length // 2]
        codes.append(code)
        pure = top / length >= policy.min_purity
        keep.append(pure or policy.mixed == "keep")
    return np.array(codes, dtype=np.int64), np.array(keep, dtype=bool)


@st.composite
def labelled(draw):
    n = draw(st.integers(0, 300))
    # runs of classes, like real per-sample labels
    runs = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 60)), min_size=1))
    labels = np.concatenate([np.full(r, c) for c, r in runs])
    labels = np.resize(labels, n).astype(np.int16)
    cuts = draw(st.lists(st.integers(1, 80), min_size=1, max_size=10))
    chunks, left = [], n
    for c in cuts:
        if left <= 0:
            break
        chunks.append(min(c, left))
        left -= chunks[-1]
    if left:
        chunks.append(left)
    return labels, tuple(chunks) or (0,)


@settings(max_examples=60, deadline=None)
@given(
    labelled(),
    st.integers(1, 50),
    st.integers(1, 70),
    st.sampled_from(["majority", "centre"]),
    st.sampled_from(["keep", "drop"]),
    st.sampled_from([1.0, 0.75, 0.5]),
)
def test_window_labels_match_reference_for_any_chunking(problem, length, step, mode, mixed, pur):
    labels, chunks = problem
    policy = LabelPolicy(mode=mode, mixed=mixed, min_purity=pur)
    codes, keep = window_sample_labels(da.from_array(labels, chunks=chunks), length, step, policy)
    ref_codes, ref_keep = _reference(labels, length, step, policy)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(codes.compute(), ref_codes)
        np.testing.assert_array_equal(keep.compute(), ref_keep)


def test_sample_label_stats_values():
    block = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 0])[:, None]
    out = sample_label_stats(block, 4, 3)
    # windows [0,0,1,1] tie -> 0 (smaller code), [1,1,2,2] tie -> 1, [2,2,2,0]
    np.testing.assert_array_equal(out[:, 0, 0], [0, 1, 2])
    np.testing.assert_array_equal(out[:, 0, 1], [0.5, 0.5, 0.75])
    np.testing.assert_array_equal(out[:, 0, 2], [1, 2, 2])  # sample start + 2


@pytest.mark.parametrize("by_class", [False, True])
@pytest.mark.parametrize("span", [5, 10_000])  # dense codes, and codes too sparse to index
@pytest.mark.parametrize(("length", "step"), [(200, 50), (7, 3), (5, 5), (1, 1), (10, 20)])
def test_sample_label_stats_match_counting_each_window(monkeypatch, by_class, span, length, step):
    import pipeline.labels as labels_mod

    if by_class:  # the one-class-at-a-time path taken when the counts would be too large
        monkeypatch.setattr(labels_mod, "_MAX_COUNTS", 0)
    rng = np.random.default_rng(length * 31 + step)
    codes = rng.choice(rng.integers(-3, span, 6), 997)
    out = sample_label_stats(codes[:, None], length, step)
    for k in range(out.shape[0]):
        w = codes[k * step : k * step + length]
        values, counts = np.unique(w, return_counts=True)  # sorted: argmax takes the smallest
        assert out[k, 0, 0] == values[counts.argmax()]
        assert out[k, 0, 1] == counts.max() / length
        assert out[k, 0, 2] == w[length // 2]


def _event_reference(starts, window, onsets, durations, min_overlap):
    """Brute force on a fine time grid (1e-4 s), merged events by set union."""
    grid = np.arange(0, 20, 1e-4) + 5e-5
    covered = np.zeros_like(grid, dtype=bool)
    for o, d in zip(onsets, durations, strict=True):
        covered |= (grid >= o) & (grid < o + d)
    out = []
    for s in starts:
        inside = (grid >= s) & (grid < s + window)
        frac = covered[inside].mean()
        point = any(d == 0 and s <= o < s + window for o, d in zip(onsets, durations, strict=True))
        out.append(point or (frac > 0 if min_overlap == 0 else frac >= min_overlap - 1e-3))
    return np.array(out)


@pytest.mark.parametrize("min_overlap", [0.0, 0.3, 0.5, 1.0])
def test_event_targets_against_brute_force(min_overlap):
    onsets = np.array([1.0, 1.2, 4.05, 9.0, 12.33])
    durations = np.array([0.5, 0.6, 0.3, 0.0, 2.0])  # first two overlap; one point event
    starts = np.arange(0, 15, 0.25)
    got = event_targets(starts, 0.5, onsets, durations, min_overlap)
    ref = _event_reference(starts, 0.5, onsets, durations, min_overlap)
    np.testing.assert_array_equal(got, ref)


def test_event_targets_no_events_and_errors():
    assert not event_targets(np.arange(3.0), 1.0, [], []).any()
    with pytest.raises(SpecError, match=r"same shape, found \(2,\) and \(1,\)"):
        event_targets(np.arange(3.0), 1.0, [1.0, 2.0], [1.0])
    with pytest.raises(SpecError, match=r"durations >= 0"):
        event_targets(np.arange(3.0), 1.0, [1.0], [-1.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "median"}, r"key 'mode': expected 'majority' or 'centre'; found 'median'"),
        ({"mixed": "skip"}, r"key 'mixed': expected 'keep' or 'drop'; found 'skip'"),
        ({"min_purity": 0}, r"key 'min_purity': expected a value greater than 0; found 0"),
        ({"min_overlap": 2}, r"key 'min_overlap': expected a value less than or equal to 1"),
        ({"source": "file"}, r"key 'source': expected 'auto', 'samples'"),
        ({"exclude": "rest"}, r"key 'exclude': expected a list of label names; found 'rest'"),
    ],
)
def test_label_policy_validation(kwargs, match):
    with pytest.raises(SpecError, match=match):
        LabelPolicy(**kwargs)


def test_label_policy_round_trip():
    p = LabelPolicy(mode="centre", mixed="drop", min_purity=0.8, exclude=("rest",))
    assert LabelPolicy.from_dict(p.to_dict()) == p
    with pytest.raises(SpecError, match=r"unknown key 'purity'; did you mean 'min_purity'\?"):
        LabelPolicy.from_dict({"purity": 0.5})
