"""Signal-quality metrics, outliers, class spectra, exploration summaries and plots."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from scipy import signal as sps

from pipeline import plots
from pipeline.exceptions import SpecError
from pipeline.explore import class_snippets, label_balance, project_features
from pipeline.quality import (
    merge_summaries,
    quality_outliers,
    quality_zscores,
    recording_quality,
    signal_quality,
    summarize_block,
)
from pipeline.spectra import class_spectra, welch_psd
from pipeline.store import Cohort, open_cohort

matplotlib.use("Agg")

FS = 250.0


# ------------------------------------------------------------------ NumPy references


def ref_flat_fraction(col: np.ndarray, min_run: int) -> float:
    """Fraction of samples in maximal runs of equal values of length >= min_run."""
    flat, i, n = 0, 0, len(col)
    while i < n:
        j = i
        while j + 1 < n and col[j + 1] == col[i]:
            j += 1
        if j - i + 1 >= min_run:
            flat += j - i + 1
        i = j + 1
    return flat / n


def ref_clip_fraction(col: np.ndarray, tol: float, rails: tuple[float, float] | None) -> float:
    lo, hi = rails if rails is not None else (col.min(), col.max())
    return float(np.mean((col <= lo + tol) | (col >= hi - tol)))


def ref_line_ratio(col: np.ndarray, fs: float, nperseg: int, f0: float) -> float:
    f, p = sps.welch(col.astype(np.float64), fs, nperseg=nperseg, noverlap=nperseg - nperseg // 2)
    line = np.abs(f - f0) <= 1.0
    ref = (f >= 1.0) & (f <= min(100.0, fs / 2))
    return float(p[line].sum() / p[ref].sum())


def dataset(x: np.ndarray, chunk: int, fs: float = FS) -> xr.Dataset:
    c = x.shape[1]
    return xr.Dataset(
        {"signal": (("time", "channel"), da.from_array(x, chunks=(chunk, c)))},
        coords={"channel": [f"ch{i + 1}" for i in range(c)]},
        attrs={"sampling_rate": fs, "subject": "01", "recording": "sub-01_run-1"},
    )


def faulty_signal(seed: int = 0, n: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    x = rng.standard_normal((n, 4)) + 0.8 * np.sin(2 * np.pi * 50.0 * t)[:, None]
    x = np.round(x * 8) / 8  # quantised: short repeats that must not count as flat
    x[500:600, 0] = 0.25  # flat run of 100 samples
    x[1000:1012, 0] = 0.5  # 12 samples: below 25 (0.1 s at 250 Hz), not flat
    x[2000:2200, 1] = x[:, 1].max() + 1  # clipped at the maximum
    x[3000:3050, 2] = x[:, 2].min() - 1  # clipped at the minimum
    return x.astype(np.float32)


# ---------------------------------------------------------------- metrics vs NumPy


@pytest.mark.parametrize("chunk", [4000, 1000, 333, 17])
def test_recording_quality_matches_numpy(chunk: int) -> None:
    x = faulty_signal()
    q = recording_quality(dataset(x, chunk), flat_seconds=0.1, welch_seconds=1.0)
    x64 = x.astype(np.float64)
    for c in range(x.shape[1]):
        row = q.iloc[c]
        assert row["channel"] == f"ch{c + 1}"
        assert row["rms"] == pytest.approx(np.sqrt(np.mean(x64[:, c] ** 2)), rel=1e-12)
        assert row["flat_fraction"] == pytest.approx(ref_flat_fraction(x[:, c], 25), abs=1e-15)
        assert row["clip_fraction"] == pytest.approx(ref_clip_fraction(x[:, c], 0, None))
        assert row["line_noise_ratio"] == pytest.approx(
            ref_line_ratio(x[:, c], FS, 250, 50.0), rel=1e-9
        )
    # the injected faults are where they were put
    assert q["flat_fraction"].iloc[0] == pytest.approx(100 / 4000)
    assert q["clip_fraction"].iloc[1] >= 200 / 4000
    assert q["clip_fraction"].iloc[2] >= 50 / 4000


def test_clip_tolerance_and_adc_range() -> None:
    x = faulty_signal(1)
    for tol, rails in [(0.2, None), (0.0, (-2.0, 2.0)), (0.25, (-3.0, 3.0))]:
        q = recording_quality(dataset(x, 300), clip_tolerance=tol, adc_range=rails)
        want = [ref_clip_fraction(x[:, c].astype(np.float64), tol, rails) for c in range(4)]
        np.testing.assert_allclose(q["clip_fraction"], want, rtol=0, atol=1e-15)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 400),
    seed=st.integers(0, 10_000),
    min_run=st.integers(2, 30),
    cuts=st.lists(st.integers(1, 399), max_size=6),
    tol=st.sampled_from([0.0, 1.0]),
)
def test_summaries_merge_exactly_for_any_split(
    n: int, seed: int, min_run: int, cuts: list[int], tol: float
) -> None:
    rng = np.random.default_rng(seed)
    # few distinct values and long repeats: runs cross every kind of boundary
    x = np.repeat(rng.integers(-3, 4, size=(n, 2)), rng.integers(1, 40, size=n), axis=0)[:n]
    x = x.astype(np.float32)
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    merged = None
    for a, b in itertools.pairwise(bounds):
        merged = merge_summaries(merged, summarize_block(x[a:b], min_run, tol), min_run, tol)
    whole = summarize_block(x, min_run, tol)
    assert merged is not None and whole is not None
    for field in ("total", "sumsq", "low", "high", "lead", "trail", "inner"):
        np.testing.assert_array_equal(getattr(merged, field), getattr(whole, field))
    ds = dataset(x, max(1, n // 3 + 1))
    q = recording_quality(ds, flat_seconds=min_run / FS, clip_tolerance=tol)
    for c in range(2):
        assert q["flat_fraction"].iloc[c] == pytest.approx(ref_flat_fraction(x[:, c], min_run))
        assert q["clip_fraction"].iloc[c] == pytest.approx(
            ref_clip_fraction(x[:, c].astype(np.float64), tol, None)
        )


@pytest.mark.parametrize("chunk", [1000, 97, 10])
def test_welch_psd_equals_scipy_whatever_the_chunking(chunk: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1003, 3)).astype(np.float32)
    freqs, psd = welch_psd(da.from_array(x, chunks=(chunk, 3)), FS, 128, 48)
    f_ref, p_ref = sps.welch(x.astype(np.float64), FS, nperseg=128, noverlap=80, axis=0)
    np.testing.assert_allclose(freqs, f_ref)
    np.testing.assert_allclose(psd.compute(), p_ref.T, rtol=1e-10, atol=0)


def test_line_noise_above_nyquist_is_nan() -> None:
    x = faulty_signal()
    q = recording_quality(dataset(x, 1000, fs=90.0), line_frequency=50.0)
    assert q["line_noise_ratio"].isna().all()


def test_bad_parameters_are_named() -> None:
    ds = dataset(faulty_signal(), 1000)
    with pytest.raises(SpecError, match=r"'flat_seconds' expected a positive.*found -1"):
        recording_quality(ds, flat_seconds=-1)
    with pytest.raises(SpecError, match=r"'adc_range' expected None or \(low, high\).*\(2, 1\)"):
        recording_quality(ds, adc_range=(2, 1))
    with pytest.raises(SpecError, match=r"'reference_band'.*found \(100, 1\)"):
        recording_quality(ds, reference_band=(100, 1))


# ------------------------------------------------------------ a cohort with faults


def _faulty_cohort(tmp_path: Path, chunk: int | None = None) -> tuple[Cohort, list[str]]:
    """Ten subjects' noise with channel gains; sub 03 ch2 dead, sub 07 ch4 amplified x6."""
    from pipeline.io.base import RecordingSource, SourceFile
    from pipeline.store import create_store, write_recording

    store = create_store(tmp_path / f"faulty-{chunk}.zarr")
    rng = np.random.default_rng(42)
    for s in range(1, 11):
        x = rng.standard_normal((3000, 4)) * rng.uniform(0.8, 1.25, size=4)
        if s == 3:
            x[:, 1] = 0.0
        if s == 7:
            x[:, 3] *= 6.0
        x = x.astype(np.float32)
        labels = np.repeat(np.array([0, 1, 2], dtype=np.int16), 1000)
        src = RecordingSource(
            n_samples=len(x),
            sampling_rate=FS,
            channels=["ch1", "ch2", "ch3", "ch4"],
            units=["V"] * 4,
            channel_types=["emg"] * 4,
            modality="emg",
            blocks=lambda x=x: iter([x]),
            labels=labels,
            label_names={0: "unmarked", 1: "rest", 2: "fist"},
        )
        write_recording(
            store,
            SourceFile(Path(f"s{s}.txt"), f"{s:02d}", run="1"),
            src,
            sha256=f"sha{s}",
            reader="test",
            reader_version="1",
            chunk_samples=chunk,
        )
    cohort = open_cohort(store)
    return cohort, cohort.recording_ids


def test_dead_and_scaled_channels_are_flagged(tmp_path: Path) -> None:
    cohort, rids = _faulty_cohort(tmp_path, chunk=700)
    q = signal_quality(cohort, rids)
    assert list(q.columns) == [
        "subject",
        "recording",
        "channel",
        "rms",
        "flat_fraction",
        "clip_fraction",
        "line_noise_ratio",
    ]
    assert len(q) == 40
    out = quality_outliers(q)
    flagged = {(r.subject, r.channel, r.metric) for r in out.itertuples()}
    assert ("03", "ch2", "rms") in flagged
    assert ("03", "ch2", "flat_fraction") in flagged
    assert ("07", "ch4", "rms") in flagged
    assert {(s, c) for s, c, _ in flagged} == {("03", "ch2"), ("07", "ch4")}
    dead = out[(out.subject == "03") & (out.metric == "rms")].iloc[0]
    assert dead["z"] < -3.5 and dead["value"] == 0.0
    assert out[(out.subject == "07") & (out.metric == "rms")]["z"].iloc[0] > 3.5
    # z-scores against an independent median/MAD computation
    zs = quality_zscores(q)
    t = np.log10(q.loc[q.channel == "ch4", "rms"].to_numpy())
    mad = np.median(np.abs(t - np.median(t)))
    np.testing.assert_allclose(
        zs.loc[q.channel == "ch4", "rms"], (t - np.median(t)) / max(1.4826 * mad, 0.05)
    )


def test_signal_quality_is_chunking_invariant(tmp_path: Path) -> None:
    a, rids = _faulty_cohort(tmp_path, chunk=3000)
    qa = signal_quality(a, rids)
    ds = a.recording(rids[2])
    for chunk in (1000, 123):
        q1 = recording_quality(ds.chunk({"time": chunk}))
        pd.testing.assert_frame_equal(
            q1,
            qa[qa.recording == rids[2]].reset_index(drop=True),
            check_exact=False,
            rtol=1e-12,
        )


def test_quality_outliers_rejects_bad_input() -> None:
    df = pd.DataFrame({"subject": ["1"], "recording": ["r"], "channel": ["c"], "rms": [1.0]})
    with pytest.raises(SpecError, match=r"missing columns \['flat_fraction'"):
        quality_outliers(df)
    with pytest.raises(SpecError, match="'z' expected a positive threshold, found 0"):
        quality_outliers(df, z=0, metrics=["rms"])


# ------------------------------------------------------- spectra, balance, snippets


def test_class_spectra_average_the_pure_windows(make_store: Callable[..., Path]) -> None:
    labels = np.repeat(np.array([1, 2, 1, 2], dtype=np.int16), [700, 600, 500, 700])
    store = make_store(
        [
            {
                "subject": "01",
                "n_samples": 2500,
                "labels": labels,
                "seed": 1,
                "label_names": {1: "rest", 2: "fist"},
                "sampling_rate": FS,
            },
        ],
        chunk_samples=333,
    )
    cohort = open_cohort(store)
    spec = class_spectra(cohort, window=0.4, step=0.2)
    x = cohort.recording(cohort.recording_ids[0])["signal"].values.astype(np.float64)
    # reference: periodograms of the windows lying inside one class, averaged per class
    n, step = 100, 50
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for k in range((len(x) - n) // step + 1):
        seg = labels[k * step : k * step + n]
        if (seg == seg[0]).all():
            _, p = sps.periodogram(x[k * step : k * step + n], FS, window="hann", axis=0)
            sums[int(seg[0])] = sums.get(int(seg[0]), 0) + p
            counts[int(seg[0])] = counts.get(int(seg[0]), 0) + 1
    for code, name in ((1, "rest"), (2, "fist")):
        got = spec[(spec.label == name) & (spec.channel == "ch2")]
        assert got["n_windows"].iloc[0] == counts[code]
        np.testing.assert_allclose(got["power"], sums[code][:, 1] / counts[code], rtol=1e-8)


def test_label_balance_and_snippets(make_store: Callable[..., Path]) -> None:
    labels = np.repeat(np.array([0, 1, 2], dtype=np.int16), [1000, 1500, 500])
    store = make_store(
        [
            {
                "subject": "01",
                "n_samples": 3000,
                "labels": labels,
                "label_names": {0: "unmarked", 1: "rest", 2: "fist"},
            },
            {"subject": "02", "n_samples": 2000, "label": "task"},
        ],
        chunk_samples=700,
    )
    cohort = open_cohort(store)
    bal = label_balance(cohort)
    one = bal[bal.subject == "01"].set_index("label")
    assert one.loc["rest", "seconds"] == pytest.approx(1.5)
    assert one.loc["fist", "fraction"] == pytest.approx(500 / 3000)
    two = bal[bal.subject == "02"]
    assert two["label"].tolist() == ["task"] and two["seconds"].iloc[0] == pytest.approx(2.0)
    snips = class_snippets(cohort, "01", seconds=0.4, exclude=["unmarked"])
    assert list(snips) == ["rest", "fist"]
    rid = cohort.recording_ids[0]
    full = cohort.recording(rid)["signal"].values
    a = 1000 + (1500 - 400) // 2
    np.testing.assert_array_equal(snips["rest"].values, full[a : a + 400])
    assert snips["rest"]["time"].values[0] == pytest.approx(a / 1000.0)
    with pytest.raises(KeyError, match=r"no subject '09'.*subjects are \['01', '02'\]"):
        class_snippets(cohort, "09")


def test_class_spectra_refuses_mixed_rates(make_store: Callable[..., Path]) -> None:
    store = make_store(
        [
            {"subject": "01", "label": "rest", "sampling_rate": 250.0},
            {"subject": "02", "label": "rest", "sampling_rate": 500.0},
        ]
    )
    with pytest.raises(SpecError, match=r"sampling rates \[250.0, 500.0\]"):
        class_spectra(open_cohort(store))


# -------------------------------------------------------------------------- plots


def _feature_table(n_subjects: int = 4, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for s in range(n_subjects):
        lab = np.where(np.arange(n) % 2, "fist", "rest")
        shift = rng.normal(0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "recording": f"sub-{s}_run-1",
                    "subject": str(s),
                    "session": None,
                    "run": "1",
                    "start": np.arange(n) * 0.05,
                    "label": lab,
                    "ch1__mav": np.exp(rng.normal(shift + (lab == "fist"), 0.3)),
                    "ch2__mav": np.exp(rng.normal(shift, 0.3, n)),
                    "ch1__zc": rng.poisson(5, n).astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_project_features_matches_sklearn_pca() -> None:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    table = _feature_table()
    proj = project_features(table, prep={"log": ["mav"]}, max_windows=None)
    X = table[["ch1__mav", "ch2__mav", "ch1__zc"]].to_numpy().copy()
    X[:, :2] = np.log(X[:, :2] + 1e-12)
    ref = PCA(2, random_state=0).fit_transform(StandardScaler().fit_transform(X))
    np.testing.assert_allclose(np.abs(proj[["pc1", "pc2"]].to_numpy()), np.abs(ref), atol=1e-8)
    assert len(project_features(table, max_windows=50)) == 50
    with pytest.raises(SpecError, match="'n_components' expected an integer >= 1, found 0"):
        project_features(table, n_components=0)


def test_plots_return_figures(tmp_path: Path) -> None:
    cohort, rids = _faulty_cohort(tmp_path)
    q = signal_quality(cohort, rids)
    outliers = quality_outliers(q)
    table = _feature_table()
    report = {
        "classes": ["fist", "rest"],
        "overall": {"confusion_matrix": [[50, 10], [5, 55]]},
        "per_subject": {"0": {"balanced_accuracy": 0.9}, "1": {"balanced_accuracy": 0.6}},
    }
    pred = table[["recording", "subject", "start", "label"]].copy()
    pred["prediction"] = np.where(np.arange(len(pred)) % 7, pred["label"], "rest")
    pred["proba__fist"] = (pred["prediction"] == "fist") * 0.8 + 0.1
    pred["proba__rest"] = 1 - pred["proba__fist"]
    figures = [
        plots.quality_heatmap(q, "rms", outliers=outliers),
        plots.quality_heatmap(quality_zscores(q), "flat_fraction", zscores=True, by="recording"),
        plots.label_balance(label_balance(cohort, rids), exclude=["unmarked"]),
        plots.class_spectra(class_spectra(cohort, rids, window=0.5), fmax=100),
        plots.class_snippets(class_snippets(cohort, "03", seconds=0.5)),
        plots.feature_distributions(table, "ch1__mav", log=True),
        plots.projection(project_features(table)),
        plots.subject_metrics(report),
        plots.confusion_matrix(report),
        plots.prediction_timeline(pred, "sub-1_run-1"),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        assert fig.axes
        fig.canvas.draw()  # renders without error (Agg)
    heat = figures[0].axes[0]
    assert len(heat.patches) == 2  # the two rms outliers are framed
    with pytest.raises(SpecError, match="no per-subject metric 'auc'"):
        plots.subject_metrics(report, "auc")
    with pytest.raises(SpecError, match="no predictions for recording 'nope'"):
        plots.prediction_timeline(pred, "nope")
    assert math.isfinite(float(heat.images[0].get_array().mean()))
