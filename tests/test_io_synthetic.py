"""Tests of the ``synthetic`` cohort generator."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import welch

from pipeline.exceptions import SpecError
from pipeline.io import get_reader
from pipeline.io.synthetic import SEGMENT

reader = get_reader("synthetic")


def concat(source) -> np.ndarray:
    return np.concatenate(list(source.blocks()), axis=0)


@pytest.fixture(scope="module")
def demo() -> list[tuple]:
    """The demo cohort: (SourceFile, RecordingSource, signal) per recording."""
    out = []
    for f in reader.discover("demo"):
        src = reader.read(f)
        out.append((f, src, concat(src)))
    return out


def test_demo_cohort_layout(demo: list[tuple]) -> None:
    assert len(demo) == 12
    assert [f.recording_id for f, _, _ in demo[:3]] == [
        "sub-01_run-1",
        "sub-01_run-2",
        "sub-02_run-1",
    ]
    assert {f.subject for f, _, _ in demo} == {f"{i:02d}" for i in range(1, 7)}
    f, src, x = demo[0]
    assert str(f.path) == "synthetic:demo/sub-01_run-1"
    assert src.n_samples == 60_000 and x.shape == (60_000, 8) and x.dtype == np.float32
    assert src.sampling_rate == 1000.0 and src.modality == "emg"
    assert src.channels == [f"channel{i}" for i in range(1, 9)]
    assert src.units == ["V"] * 8 and src.channel_types == ["emg"] * 8
    assert src.label_names[0] == "unmarked" and src.label_names[2] == "fist"
    assert src.labels.shape == (60_000,) and src.labels.dtype == np.int16
    # EMG amplitudes of tens of microvolts, like the MYO armband recordings.
    assert 1e-6 < np.std(x) < 5e-4


def test_gestures_held_with_rests_between(demo: list[tuple]) -> None:
    _, src, _ = demo[0]
    labels = src.labels
    edges = np.flatnonzero(np.diff(labels)) + 1
    runs = np.split(labels, edges)
    gestures = [r for r in runs if r[0] != 0]
    pauses = [r for r in runs[1:-1] if r[0] == 0]
    assert set(np.unique(labels)) == set(range(7))
    assert all(2550 <= len(r) <= 3450 for r in gestures)
    assert all(2550 <= len(r) <= 3450 for r in pauses)
    assert len(pauses) == len(gestures) - 1 or len(pauses) == len(gestures)


def test_signal_band_limited_and_class_dependent_pattern(demo: list[tuple]) -> None:
    _, src, x = demo[0]
    active = x[src.labels == 2].astype(np.float64)
    f, p = welch(active, fs=1000, axis=0, nperseg=1024)
    total = p.sum(axis=0)
    in_band = p[(f >= 20) & (f <= 450)].sum(axis=0)
    assert np.all(in_band / total > 0.9)
    rms = np.array([np.sqrt((x[src.labels == k] ** 2).mean(axis=0)) for k in range(7)])
    # Gestures are well above the pauses; spatial patterns differ between gesture classes.
    assert np.all(rms[2:].max(axis=1) > 3 * rms[0].max())
    patterns = rms[2:] / np.linalg.norm(rms[2:], axis=1, keepdims=True)
    cos = patterns @ patterns.T
    assert np.all(cos[~np.eye(5, dtype=bool)] < 0.99)


def test_cross_subject_learnable_but_not_trivial(demo: list[tuple]) -> None:
    # Nearest-centroid on log-RMS patterns of 200 ms windows, leave-one-subject-out.
    feats, labels, groups = [], [], []
    for f, src, x in demo:
        n = x.shape[0] // 200
        w = x[: n * 200].reshape(n, 200, -1)
        lab = src.labels[: n * 200].reshape(n, 200)
        keep = (lab == lab[:, :1]).all(axis=1) & (lab[:, 0] > 0)
        v = np.log(np.sqrt((w[keep].astype(np.float64) ** 2).mean(axis=1)))
        feats.append(v - v.mean(axis=1, keepdims=True))
        labels.append(lab[keep, 0])
        groups += [f.subject] * int(keep.sum())
    X, y, g = np.concatenate(feats), np.concatenate(labels), np.array(groups)
    correct = 0
    for s in np.unique(g):
        train, test = g != s, g == s
        classes = np.unique(y[train])
        centroids = np.array([X[train][y[train] == k].mean(axis=0) for k in classes])
        pred = classes[np.argmin(((X[test][:, None] - centroids) ** 2).sum(-1), axis=1)]
        correct += int((pred == y[test]).sum())
    accuracy = correct / len(y)
    assert 1 / 6 + 0.15 < accuracy < 0.95


def test_deterministic_and_block_size_independent() -> None:
    (f,) = reader.discover("demo", n_subjects=1, n_runs=1, duration=5.0, seed=3)
    a = concat(reader.read(f))
    b = concat(reader.read(f, block_samples=999))
    c = concat(
        reader.read(reader.discover("demo", n_subjects=1, n_runs=1, duration=5.0, seed=3)[0])
    )
    blocks = list(reader.read(f, block_samples=999).blocks())
    assert [len(x) for x in blocks[:-1]] == [999] * (len(blocks) - 1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    (g,) = reader.discover("demo", n_subjects=1, n_runs=1, duration=5.0, seed=4)
    assert not np.allclose(a, concat(reader.read(g)))


@pytest.fixture(scope="module")
def long_emg() -> tuple:
    """A 70 s recording (three generator segments) generated in one block."""
    (f,) = reader.discover("demo", n_subjects=1, n_runs=1, duration=70.0, n_channels=3)
    return f, concat(reader.read(f, block_samples=10**6))


@settings(max_examples=6, deadline=None)
@given(block=st.integers(1_000, 80_000))
def test_blocks_independent_of_block_size(long_emg: tuple, block: int) -> None:
    f, whole = long_emg
    np.testing.assert_array_equal(concat(reader.read(f, block_samples=block)), whole)


def test_recordings_independent_of_cohort_size() -> None:
    small = reader.discover("demo", n_subjects=2, n_runs=1, duration=3.0)
    large = reader.discover("demo", n_subjects=5, n_runs=3, duration=3.0)
    assert reader.fingerprint(small[1]) == reader.fingerprint(large[3])
    assert small[1].recording_id == large[3].recording_id == "sub-02_run-1"
    np.testing.assert_array_equal(concat(reader.read(small[1])), concat(reader.read(large[3])))


def test_fingerprint_hashes_parameters_and_version() -> None:
    files = reader.discover("demo", n_subjects=2, n_runs=1)
    fp = reader.fingerprint(files[0])
    assert len(fp) == 64 and fp == reader.fingerprint(
        reader.discover("demo", n_subjects=2, n_runs=1)[0]
    )
    assert fp != reader.fingerprint(files[1])
    assert fp != reader.fingerprint(reader.discover("demo", n_subjects=2, n_runs=1, seed=1)[0])
    assert fp != reader.fingerprint(reader.discover("demo", n_subjects=2, n_runs=1, duration=61)[0])
    other = type(reader)()
    other.version = "9.9"
    assert other.fingerprint(files[0]) != fp


def test_memory_bounded_for_long_recording() -> None:
    (f,) = reader.discover("demo", n_subjects=1, n_runs=1, duration=1200.0, n_channels=4)
    src = reader.read(f, block_samples=SEGMENT)
    total = 0
    tracemalloc.start()
    try:
        for block in src.blocks():
            total += block.nbytes
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 1_200_000 * 4 * 4
    assert peak < total / 2


def test_eeg_recording_labels_and_band_power() -> None:
    files = reader.discover("eeg", modality="eeg", n_subjects=4, n_runs=2, duration=40.0)
    assert [f.extra["label"] for f in files[:2]] == ["rest", "task"]
    alpha = {"rest": [], "task": []}
    for f in files:
        src = reader.read(f)
        x = concat(src).astype(np.float64)
        assert src.sampling_rate == 250.0 and src.units == ["V"] * 16 and src.modality == "eeg"
        # volts: scalp EEG is tens of microvolts
        assert 2e-6 < float(np.sqrt(np.mean(x**2))) < 1e-4
        assert src.channels[:3] == ["Fp1", "Fp2", "F7"] and "O1" in src.channels
        assert not {"Fz", "Cz", "Pz"} & set(src.channels)
        assert src.labels is None and src.label == f.extra["label"]
        fr, p = welch(x, fs=250, axis=0, nperseg=500)
        o1 = src.channels.index("O1")
        # 1/f background: more power at 2-3 Hz than at 35-45 Hz on every channel.
        low = p[(fr >= 2) & (fr <= 3)].mean(axis=0)
        high = p[(fr >= 35) & (fr <= 45)].mean(axis=0)
        assert np.all(low > 5 * high)
        alpha[src.label].append(np.log(p[(fr >= 8) & (fr <= 12), o1].mean()))
    assert np.mean(alpha["rest"]) > np.mean(alpha["task"])


def test_eeg_per_sample_labels() -> None:
    (f,) = reader.discover(
        "eeg",
        modality="eeg",
        n_subjects=1,
        n_runs=1,
        duration=50.0,
        label_mode="sample",
        trial_duration=10,
    )
    src = reader.read(f)
    assert src.label is None and src.label_names == {0: "rest", 1: "task"}
    changes = np.flatnonzero(np.diff(src.labels)) + 1
    assert list(changes) == [2500, 5000, 7500, 10000]


def test_yaml_source(tmp_path: Path) -> None:
    cfg = tmp_path / "big.yaml"
    cfg.write_text("n_subjects: 3\nn_runs: 1\nduration: 2.5\nseed: 11\n")
    files = reader.discover(cfg)
    assert len(files) == 3 and str(files[0].path) == "synthetic:big/sub-01_run-1"
    assert concat(reader.read(files[0])).shape == (2500, 8)
    override = reader.discover(cfg, n_subjects=1)
    assert len(override) == 1
    cfg.write_text("n_subject: 3\n")
    with pytest.raises(
        SpecError, match=r"unknown key\(s\) \['n_subject'\]; accepted keys: .*n_subjects"
    ):
        reader.discover(cfg)


def test_bad_options() -> None:
    with pytest.raises(SpecError, match=r"'modality': expected 'emg' or 'eeg', found 'ecg'"):
        reader.discover("demo", modality="ecg")
    with pytest.raises(SpecError, match=r"'n_subjects': expected an integer >= 1, found 0"):
        reader.discover("demo", n_subjects=0)
    with pytest.raises(
        SpecError, match=r"'duration': expected a positive number of seconds, found -1"
    ):
        reader.discover("demo", duration=-1)
    with pytest.raises(
        SpecError,
        match=r"reader 'synthetic' options: unknown key 'subjects'; did you mean 'n_subjects'\?",
    ):
        reader.discover("demo", subjects=3)


def test_demo_eeg_follows_modality_defaults() -> None:
    files = reader.discover("demo", modality="eeg", n_subjects=1, n_runs=1, duration=2.0)
    src = reader.read(files[0])
    assert src.sampling_rate == 250.0 and len(src.channels) == 16
    (small,) = reader.discover("x", modality="eeg", n_channels=8, n_subjects=1, n_runs=1)
    assert reader.read(small).channels == ["F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2"]
