"""Tests of pipeline.table on tiny stores written with pipeline.store.write_recording."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import scipy.signal as sps

import pipeline.table as table_mod
from pipeline.exceptions import SpecError, StoreError
from pipeline.labels import LabelPolicy
from pipeline.store import open_cohort
from pipeline.table import (
    FeatureTableSpec,
    feature_table,
    feature_table_metadata,
    load_feature_spec,
    read_feature_table,
    recording_features,
    run_features,
    write_feature_table,
)
from pipeline.windows import WindowPlan, n_windows

FS = 1000.0
_REAL_MAKE_BLOCK_FUNCTION = table_mod._make_block_function


def _numpy_block_function(specs, sampling_rate):
    """Independent NumPy block function: window mean and max (one column per spec name)."""
    ops = {"mean": np.mean, "max": np.max, "std": np.std}
    names = [s["name"] for s in specs]

    def func(block, length, step):
        views = np.lib.stride_tricks.sliding_window_view(block, length, axis=0)[::step]
        nw = n_windows(block.shape[0], length, step)
        return np.stack([ops[n](views[:nw], axis=-1) for n in names], axis=-1)

    return func, names


@pytest.fixture(autouse=True)
def numpy_features(monkeypatch):
    monkeypatch.setattr(table_mod, "_make_block_function", _numpy_block_function)


@pytest.fixture(autouse=True)
def sync_scheduler():
    with dask.config.set(scheduler="sync"):
        yield


LABELS = np.repeat([0, 1, 2, 1], 1000)[:3700]
SPECS = [
    {
        "subject": "01",
        "run": "1",
        "n_samples": 3700,
        "seed": 1,
        "labels": LABELS,
        "label_names": {0: "rest", 1: "fist", 2: "pinch"},
    },
    {"subject": "01", "run": "2", "n_samples": 2500, "seed": 2, "label": "task"},
    {"subject": "02", "run": "1", "n_samples": 150, "seed": 3},
]
SPEC = FeatureTableSpec(
    window=WindowPlan(0.2, 0.05, unit="seconds"),
    features=("mean", "max"),
    labels=LabelPolicy(mode="majority", mixed="keep"),
)


def _expected(store: Path, spec: FeatureTableSpec) -> pd.DataFrame:
    """Reference: whole arrays in memory, sliding_window_view, plain Python labels."""
    cohort = open_cohort(store)
    frames = []
    for rid in cohort.recording_ids:
        ds = cohort.recording(rid)
        x = ds["signal"].values.astype(np.float64)
        length, step = spec.window.in_samples(FS)
        nw = n_windows(len(x), length, step)
        rows: dict = {
            "recording": [rid] * nw,
            "subject": [ds.attrs["subject"]] * nw,
            "session": [None] * nw,
            "run": [ds.attrs["run"]] * nw,
            "start": np.arange(nw) * step / FS,
        }
        if "label" in ds:
            names = (
                json.loads(ds.attrs["label_names"])
                if isinstance(ds.attrs["label_names"], str)
                else ds.attrs["label_names"]
            )
            lab = ds["label"].values
            rows["label"] = [
                names[str(np.bincount(lab[k * step : k * step + length]).argmax())]
                for k in range(nw)
            ]
        else:
            rows["label"] = [ds.attrs.get("label")] * nw
        for c, ch in enumerate(ds["channel"].values):
            for f in spec.features:
                op = {"mean": np.mean, "max": np.max}[f["name"]]
                rows[f"{ch}__{f['name']}"] = [
                    op(x[k * step : k * step + length, c]) for k in range(nw)
                ]
        frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True)


def test_feature_table_matches_reference_and_is_chunk_invariant(make_store):
    tables = []
    for chunk in (64, 997, 100_000):
        store = make_store(SPECS, chunk_samples=chunk, name=f"c{chunk}")
        ddf = feature_table(open_cohort(store), SPEC)
        assert ddf.npartitions == 3  # one per recording
        # a recording with one block of windows (or none) is one task; others one per chunk
        fused = [p.frame().key.startswith("fused-") for p in ddf._feature_table_parts]
        assert fused == [3700 <= chunk, 2500 <= chunk, True]
        assert tuple(ddf.columns[:6]) == table_mod.ID_COLUMNS
        tables.append(ddf.compute().reset_index(drop=True))
    for other in tables[1:]:
        pd.testing.assert_frame_equal(tables[0], other)
    expected = _expected(store, SPEC)
    got = tables[0]
    assert list(got.columns) == list(expected.columns)
    assert got.shape == (n_windows(3700, 200, 50) + n_windows(2500, 200, 50), 12)
    for col in ("recording", "subject", "run", "label"):
        assert got[col].tolist() == expected[col].tolist(), col
    assert got["session"].isna().all()
    np.testing.assert_allclose(got["start"], expected["start"], rtol=0, atol=1e-12)
    feats = [c for c in got.columns if "__" in c]
    # float32 signal: the NumPy block function averages in float32
    np.testing.assert_allclose(got[feats].to_numpy(), expected[feats].to_numpy(), atol=1e-6)


def test_fused_partitions_equal_one_task_per_chunk(make_store, tmp_path):
    """A partition run as one task (chunks in sequence) gives the per-chunk graph's rows."""
    store = make_store(SPECS, chunk_samples=97, name="c97")
    cohort = open_cohort(store)
    per_chunk = feature_table(cohort, SPEC, fuse=False, max_partition_bytes=4000)
    fused = feature_table(cohort, SPEC, fuse=True, max_partition_bytes=4000)
    assert per_chunk.npartitions == fused.npartitions > 3  # long recordings split
    assert all(p.frame().key.startswith("fused-") for p in fused._feature_table_parts)
    assert not any(p.frame().key.startswith("fused-") for p in per_chunk._feature_table_parts[:2])
    pd.testing.assert_frame_equal(per_chunk.compute(), fused.compute())
    write_feature_table(fused, tmp_path / "t", {})
    back, _ = read_feature_table(tmp_path / "t")
    pd.testing.assert_frame_equal(
        back.compute().reset_index(drop=True),
        per_chunk.compute().reset_index(drop=True),
        check_dtype=False,  # strings read back from Parquet: na_value NA instead of NaN
    )
    # default: fused only with at least four partitions per worker (here: per core)
    many = table_mod._fuse_parts(per_chunk._feature_table_parts * 8, None)
    assert all(p.fuse for p in many)
    few = table_mod._fuse_parts(per_chunk._feature_table_parts[:1], None)
    assert not few[0].fuse


def test_filtered_table_is_chunk_invariant_to_tolerance(make_store):
    spec = FeatureTableSpec(
        window=WindowPlan(100, 100),
        features=("mean", "max"),
        preprocess=({"op": "highpass", "cutoff": 2.0}, {"op": "resample", "rate": 500}),
        channels=("ch3", "ch1"),
    )
    a = feature_table(open_cohort(make_store(SPECS[:2], chunk_samples=90, name="a")), spec)
    b = feature_table(open_cohort(make_store(SPECS[:2], chunk_samples=4000, name="b")), spec)
    a, b = a.compute(), b.compute()
    assert list(a.columns[6:]) == ["ch3__mean", "ch3__max", "ch1__mean", "ch1__max"]
    feats = list(a.columns[6:])
    np.testing.assert_allclose(a[feats].to_numpy(), b[feats].to_numpy(), atol=1e-5)
    # the start is in seconds at the resampled rate: 100 samples at 500 Hz
    np.testing.assert_allclose(a["start"].to_numpy()[:3], [0.0, 0.2, 0.4])
    # reference for the first recording: filter + resample the whole signal with SciPy
    x = open_cohort(make_store(SPECS[:1], name="r")).recording("sub-01_run-1")["signal"].values
    x = x.astype(np.float64)[:, [2, 0]]
    y = sps.sosfiltfilt(sps.butter(4, 2.0, "highpass", fs=FS, output="sos"), x, axis=0)
    y = sps.resample_poly(y, 1, 2, axis=0)
    ref = y[: (len(y) // 100) * 100].reshape(-1, 100, 2).mean(axis=1)
    rec = a[a["recording"] == "sub-01_run-1"]
    np.testing.assert_allclose(rec["ch3__mean"], ref[:, 0], atol=1e-5)
    np.testing.assert_allclose(rec["ch1__mean"], ref[:, 1], atol=1e-5)


def test_mixed_windows_dropped_and_excluded_labels(make_store):
    store = make_store(SPECS[:1], chunk_samples=333)
    spec = FeatureTableSpec(
        window=WindowPlan(200, 50),
        features=("mean",),
        labels=LabelPolicy(mode="centre", mixed="drop", exclude=("rest",)),
    )
    got = feature_table(open_cohort(store), spec).compute()
    starts = (got["start"].to_numpy() * FS).round().astype(int)
    lab = LABELS
    for s, name in zip(starts, got["label"], strict=True):
        window = lab[s : s + 200]
        assert np.all(window == window[0])  # pure
        assert name == {1: "fist", 2: "pinch"}[window[0]]
    pure = [
        k * 50
        for k in range(n_windows(3700, 200, 50))
        if len(set(lab[k * 50 : k * 50 + 200])) == 1 and lab[k * 50] != 0
    ]
    assert starts.tolist() == pure


def test_dropped_windows_can_stay_unlabeled(make_store):
    """dropped="unlabel" keeps every window; the dropped ones get label None, same values."""
    store = make_store(SPECS[:1], chunk_samples=333)
    policy = {"mode": "centre", "mixed": "drop", "exclude": ("rest",)}
    tables = {
        how: feature_table(
            open_cohort(store),
            FeatureTableSpec(
                window=WindowPlan(200, 50),
                features=("mean",),
                labels=LabelPolicy(**policy, dropped=how),
            ),
        ).compute()
        for how in ("remove", "unlabel")
    }
    removed, unlabeled = tables["remove"], tables["unlabel"]
    assert len(unlabeled) == n_windows(3700, 200, 50) > len(removed)
    labeled = unlabeled[unlabeled["label"].notna()].reset_index(drop=True)
    pd.testing.assert_frame_equal(labeled, removed.reset_index(drop=True), check_dtype=False)
    assert unlabeled["label"].isna().sum() == len(unlabeled) - len(removed)


def test_event_labels(make_store, events_frame):
    store = make_store([{"subject": "03", "n_samples": 6000, "events": events_frame}])
    spec = FeatureTableSpec(
        window=WindowPlan(0.5, 0.25, unit="seconds"),
        features=("mean",),
        labels=LabelPolicy(source="events", min_overlap=0.5, event_labels=("on", "off")),
    )
    got = feature_table(open_cohort(store), spec).compute()
    starts = got["start"].to_numpy()
    # events [1.0, 1.5) and [3.5, 4.5): windows covered by at least half
    cover = np.maximum(0, np.minimum(starts + 0.5, 1.5) - np.maximum(starts, 1.0)) + np.maximum(
        0, np.minimum(starts + 0.5, 4.5) - np.maximum(starts, 3.5)
    )
    assert got["label"].tolist() == ["on" if c >= 0.25 else "off" for c in cover]


def test_parquet_round_trip_with_metadata(make_store, tmp_path):
    store = make_store(SPECS, chunk_samples=500)
    cohort = open_cohort(store)
    ddf = feature_table(cohort, SPEC)
    meta = feature_table_metadata(cohort, SPEC)
    out = write_feature_table(ddf, tmp_path / "table", meta)
    assert not list(tmp_path.glob(".table.tmp-*"))
    back, meta_back = read_feature_table(out)
    assert meta_back == json.loads(json.dumps(meta))
    assert meta_back["store_fingerprint"] == cohort.fingerprint
    assert FeatureTableSpec.from_dict(meta_back["spec"]) == SPEC
    pd.testing.assert_frame_equal(
        back.compute().reset_index(drop=True),
        ddf.compute().reset_index(drop=True),
        check_dtype=False,
    )
    with pytest.raises(StoreError, match=r"already exists; pass overwrite=True"):
        write_feature_table(ddf, out, meta)
    write_feature_table(ddf.partitions[:1], out, {"x": 1}, overwrite=True)
    back, meta_back = read_feature_table(out)
    assert meta_back == {"x": 1} and back.npartitions == 1


def test_failed_write_leaves_nothing(make_store, tmp_path, monkeypatch):
    store = make_store(SPECS[:1])

    def boom(specs, fs):
        def func(block, length, step):
            raise RuntimeError("kernel failed")

        return func, ["mean"]

    monkeypatch.setattr(table_mod, "_make_block_function", boom)
    ddf = feature_table(open_cohort(store), SPEC)
    with pytest.raises(RuntimeError, match="kernel failed"):
        write_feature_table(ddf, tmp_path / "out" / "t", {})
    assert list((tmp_path / "out").iterdir()) == []


def test_recording_features_in_memory_matches_table(make_store):
    store = make_store(SPECS[:2], chunk_samples=300)
    cohort = open_cohort(store)
    table = feature_table(cohort, SPEC).compute().reset_index(drop=True)
    ds = cohort.recording("sub-01_run-2").load()  # NumPy-backed
    one = recording_features(ds, SPEC)
    part = table[table["recording"] == "sub-01_run-2"].reset_index(drop=True)
    pd.testing.assert_frame_equal(one, part)


def test_partitions_split_long_recordings(make_store):
    store = make_store(SPECS[:1], chunk_samples=500)
    ddf = feature_table(open_cohort(store), SPEC, max_partition_bytes=8 * 8 * 20)
    assert ddf.npartitions > 1
    whole = feature_table(open_cohort(store), SPEC).compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(ddf.compute().reset_index(drop=True), whole)


def test_channel_mismatch_and_bad_spec(make_store):
    store = make_store([*SPECS[:1], {"subject": "09", "n_channels": 2}])
    with pytest.raises(SpecError, match=r"'sub-09_run-1' gives feature columns .* missing"):
        feature_table(open_cohort(store), SPEC)
    bad = FeatureTableSpec(
        window=WindowPlan(200, 50),
        features=("mean",),
        preprocess=({"op": "lowpass", "cutoff": 600},),
    )
    with pytest.raises(SpecError, match=r"'sub-01_run-1': preprocessing step 0 .*Nyquist"):
        feature_table(open_cohort(store), bad, recordings=["sub-01_run-1"])
    with pytest.raises(SpecError, match=r"key 'features' expected a non-empty list"):
        FeatureTableSpec(window=WindowPlan(1, 1), features=())


def test_load_feature_spec_and_run_features(make_store, tmp_path):
    spec_file = tmp_path / "features.yaml"
    spec_file.write_text(
        "preprocess:\n  - {op: highpass, cutoff: 1}\n"
        "channels: [ch1, ch2]\n"
        "windows: {length: 0.2, step: 0.1, label: centre, mixed: drop, purity: 0.9}\n"
        "features: [mean, {name: max}]\n"
    )
    spec = load_feature_spec(spec_file)
    assert spec.window == WindowPlan(0.2, 0.1, unit="seconds")
    assert spec.labels.mode == "centre" and spec.labels.min_purity == 0.9
    assert spec.channels == ("ch1", "ch2")
    assert spec.features == ({"name": "mean"}, {"name": "max"})
    store = make_store(SPECS[:2])
    out = run_features(store, spec_file, tmp_path / "out")
    ddf, meta = read_feature_table(out)
    assert list(ddf.columns[6:]) == ["ch1__mean", "ch1__max", "ch2__mean", "ch2__max"]
    assert meta["spec"]["preprocess"][0]["op"] == "highpass"
    assert set(meta["recordings"]) == {"sub-01_run-1", "sub-01_run-2"}

    spec_file.write_text("windows: {length: 0.2, step: 0.1, size: 3}\nfeatures: [mean]\n")
    with pytest.raises(SpecError, match=r"features.yaml: unknown key\(s\) \['size'\] in 'windows'"):
        load_feature_spec(spec_file)
    spec_file.write_text("windows: {length: 0.2, step: 0.1}\nfeatures: [mean]\nlabel: x\n")
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['label'\]"):
        load_feature_spec(spec_file)
    spec_file.write_text(
        "preprocess: [{op: hipass, cutoff: 1}]\nwindows: {length: 1, step: 1}\nfeatures: [mean]\n"
    )
    with pytest.raises(SpecError, match=r"unknown op 'hipass'.*did you mean 'highpass'"):
        load_feature_spec(spec_file)


def test_real_feature_kernels_chunk_invariant(make_store, monkeypatch):
    """With the Numba kernels: any chunking gives the same table; MAV/RMS match NumPy."""
    monkeypatch.setattr(table_mod, "_make_block_function", _REAL_MAKE_BLOCK_FUNCTION)
    spec = FeatureTableSpec(
        window=WindowPlan(200, 50),
        features=("mav", "rms", "wl", {"name": "zc", "threshold": 0.01}, "mnf", "mdf"),
    )
    tables = []
    for chunk in (77, 1000, 50_000):
        store = make_store(SPECS[:2], chunk_samples=chunk, name=f"k{chunk}")
        tables.append(feature_table(open_cohort(store), spec).compute().reset_index(drop=True))
    feats = [c for c in tables[0].columns if "__" in c]
    assert feats[:3] == ["ch1__mav", "ch1__rms", "ch1__wl"]
    for other in tables[1:]:
        pd.testing.assert_frame_equal(tables[0].drop(columns=feats), other.drop(columns=feats))
        np.testing.assert_allclose(other[feats], tables[0][feats], rtol=1e-9, atol=1e-12)
    x = open_cohort(store).recording("sub-01_run-1")["signal"].values.astype(np.float64)
    views = np.lib.stride_tricks.sliding_window_view(x[:, 1], 200)[::50]
    rec = tables[0][tables[0]["recording"] == "sub-01_run-1"]
    np.testing.assert_allclose(rec["ch2__mav"], np.abs(views).mean(-1), rtol=1e-6)
    np.testing.assert_allclose(rec["ch2__rms"], np.sqrt((views**2).mean(-1)), rtol=1e-6)


def test_feature_table_on_distributed_cluster(make_store, monkeypatch, client, tmp_path):
    """Worker processes compute and write the table (the tasks pickle)."""
    spec = FeatureTableSpec(
        window=WindowPlan(0.2, 0.05, unit="seconds"),
        features=("mean", "std"),
        preprocess=({"op": "bandpass", "low": 20, "high": 450},),
    )
    store = make_store(SPECS, chunk_samples=700)
    cohort = open_cohort(store)
    with dask.config.set(scheduler=client):
        out = write_feature_table(
            feature_table(cohort, spec), tmp_path / "t", feature_table_metadata(cohort, spec)
        )
        got = read_feature_table(out)[0].compute()
    with dask.config.set(scheduler="sync"):
        local = feature_table(cohort, spec).compute()
    np.testing.assert_allclose(got.iloc[:, 6:].to_numpy(), local.iloc[:, 6:].to_numpy(), rtol=1e-12)
    assert got["recording"].tolist() == local["recording"].tolist()


def test_direct_parquet_write_matches_dataframe_path(make_store, tmp_path):
    """The fused write path (straight from feature_table) equals the generic DataFrame path,
    dtypes, dropped windows and the order of more than ten files included."""
    store = make_store(SPECS, chunk_samples=250)
    cohort = open_cohort(store)
    spec = FeatureTableSpec(
        window=WindowPlan(200, 50),
        features=("mean", "max"),
        labels=LabelPolicy(mode="centre", mixed="drop", exclude=("pinch",)),
    )
    ddf = feature_table(cohort, spec, max_partition_bytes=1000)
    assert ddf.npartitions > 10
    direct = write_feature_table(ddf, tmp_path / "direct", {})
    generic = write_feature_table(ddf[list(ddf.columns)], tmp_path / "generic", {})
    a = read_feature_table(direct)[0].compute().reset_index(drop=True)
    b = read_feature_table(generic)[0].compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # read back, strings come as StringDtype(na_value=pd.NA) (as with ddf.to_parquet)
    pd.testing.assert_frame_equal(a, ddf.compute().reset_index(drop=True), check_dtype=False)
    assert "pinch" not in set(a["label"].dropna())
    assert a["session"].isna().all()
