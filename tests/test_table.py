"""Tests of pipeline.table on tiny stores written with pipeline.store.write_recording."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.signal as sps

import pipeline.table.build as table_mod
from pipeline.exceptions import SpecError, StoreError
from pipeline.labels import LabelPolicy
from pipeline.store import open_cohort
from pipeline.table import (
    ID_COLUMNS,
    METADATA_KEY,
    FeatureTableSpec,
    feature_table,
    feature_table_metadata,
    plan_table,
    read_feature_table,
    recording_features,
    run_features,
    write_feature_table,
    write_recording_features,
)
from pipeline.windows import WindowPlan, n_windows

FS = 1000.0
_REAL_MAKE_BLOCK_FUNCTION = table_mod._make_block_function


def _mav(v, axis=-1):
    return np.mean(np.abs(v), axis=axis)


def _rms(v, axis=-1):
    return np.sqrt(np.mean(v * v, axis=axis))


def _iav(v, axis=-1):
    return np.sum(np.abs(v), axis=axis)


def _numpy_block_function(specs, sampling_rate):
    """Independent NumPy block function: MAV, RMS and IAV by their definitions."""
    ops = {"mav": _mav, "rms": _rms, "iav": _iav}
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
    features=("mav", "rms"),
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
                op = {"mav": _mav, "rms": _rms}[f["name"]]
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
        plan = plan_table(open_cohort(store), SPEC)
        fused = [p.frame().key.startswith("fused-") for p in plan.all_parts()]
        assert fused == [3700 <= chunk, 2500 <= chunk, True]
        assert tuple(ddf.columns[:6]) == ID_COLUMNS
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
    fused_plan = plan_table(cohort, SPEC, fuse=True, max_partition_bytes=4000)
    chunk_plan = plan_table(cohort, SPEC, fuse=False, max_partition_bytes=4000)
    assert all(p.frame().key.startswith("fused-") for p in fused_plan.all_parts())
    assert not any(p.frame().key.startswith("fused-") for p in chunk_plan.all_parts()[:2])
    # a fused partition is one task of dask's own (no scheduler run inside it)
    graph = dict(fused_plan.all_parts()[0].frame().__dask_graph__())
    assert len(graph) == 1
    pd.testing.assert_frame_equal(per_chunk.compute(), fused.compute())
    write_feature_table(cohort, SPEC, tmp_path / "t", fuse=True, max_partition_bytes=4000)
    back, _ = read_feature_table(tmp_path / "t")
    pd.testing.assert_frame_equal(
        back.compute().reset_index(drop=True), per_chunk.compute().reset_index(drop=True)
    )
    # default: fused only with at least four partitions per worker (here: per core)
    many = table_mod._fuse_parts(chunk_plan.all_parts() * 8, None)
    assert all(p.fuse for p in many)
    few = table_mod._fuse_parts(chunk_plan.all_parts()[:1], None)
    assert not few[0].fuse


def test_filtered_table_is_chunk_invariant_to_tolerance(make_store):
    spec = FeatureTableSpec(
        window=WindowPlan(100, 100),
        features=("mav", "rms"),
        preprocess=({"op": "highpass", "cutoff": 2.0}, {"op": "resample", "rate": 500}),
        channels=("ch3", "ch1"),
    )
    a = feature_table(open_cohort(make_store(SPECS[:2], chunk_samples=90, name="a")), spec)
    b = feature_table(open_cohort(make_store(SPECS[:2], chunk_samples=4000, name="b")), spec)
    a, b = a.compute(), b.compute()
    assert list(a.columns[6:]) == ["ch3__mav", "ch3__rms", "ch1__mav", "ch1__rms"]
    feats = list(a.columns[6:])
    np.testing.assert_allclose(a[feats].to_numpy(), b[feats].to_numpy(), atol=1e-5)
    # the start is in seconds at the resampled rate: 100 samples at 500 Hz
    np.testing.assert_allclose(a["start"].to_numpy()[:3], [0.0, 0.2, 0.4])
    # reference for the first recording: filter + resample the whole signal with SciPy
    x = open_cohort(make_store(SPECS[:1], name="r")).recording("sub-01_run-1")["signal"].values
    x = x.astype(np.float64)[:, [2, 0]]
    y = sps.sosfiltfilt(sps.butter(4, 2.0, "highpass", fs=FS, output="sos"), x, axis=0)
    y = sps.resample_poly(y, 1, 2, axis=0)
    ref = np.abs(y[: (len(y) // 100) * 100]).reshape(-1, 100, 2).mean(axis=1)
    rec = a[a["recording"] == "sub-01_run-1"]
    np.testing.assert_allclose(rec["ch3__mav"], ref[:, 0], atol=1e-5)
    np.testing.assert_allclose(rec["ch1__mav"], ref[:, 1], atol=1e-5)


def test_mixed_windows_dropped_and_excluded_labels(make_store):
    store = make_store(SPECS[:1], chunk_samples=333)
    spec = FeatureTableSpec(
        window=WindowPlan(200, 50),
        features=("mav",),
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
                features=("mav",),
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
        features=("mav",),
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
    """One file per recording, the spec and fingerprints in each; read back exactly."""
    store = make_store(SPECS, chunk_samples=500)
    cohort = open_cohort(store)
    ddf = feature_table(cohort, SPEC)
    meta = feature_table_metadata(cohort, SPEC)
    out = write_feature_table(cohort, SPEC, tmp_path / "table")
    assert sorted(p.name for p in out.iterdir()) == [f"{r}.parquet" for r in cohort.recording_ids]
    kv = json.loads(pq.read_schema(out / "sub-01_run-2.parquet").metadata[METADATA_KEY])
    assert kv["recording"] == "sub-01_run-2"
    assert kv["recording_fingerprint"] == cohort.recording_fingerprint("sub-01_run-2")
    assert kv["store_fingerprint"] == cohort.fingerprint and kv["format"] == 1
    assert kv["columns"] == list(ddf.columns[6:])
    # min/max statistics for the identifier columns and start, none for the features
    row_group = pq.ParquetFile(out / "sub-01_run-2.parquet").metadata.row_group(0)
    stats = {
        row_group.column(i).path_in_schema: row_group.column(i).is_stats_set
        for i in range(row_group.num_columns)
    }
    assert [c for c, has in stats.items() if has] == list(ID_COLUMNS)
    back, meta_back = read_feature_table(out)
    assert meta_back == json.loads(json.dumps(meta))
    assert FeatureTableSpec.from_dict(meta_back["spec"]) == SPEC
    assert back.npartitions == 3
    pd.testing.assert_frame_equal(
        back.compute().reset_index(drop=True), ddf.compute().reset_index(drop=True)
    )
    with pytest.raises(StoreError, match=r"already exists \(3 files\); pass overwrite=True"):
        write_feature_table(cohort, SPEC, out)
    write_feature_table(cohort, SPEC, out, ["sub-01_run-2"], overwrite=True)
    back, meta_back = read_feature_table(out)
    assert list(meta_back["recordings"]) == ["sub-01_run-2"] and back.npartitions == 1
    assert [p.name for p in out.iterdir()] == ["sub-01_run-2.parquet"]


def test_run_stage_files_read_like_a_table(make_store, tmp_path):
    """Per-recording files (cohort run's feature stages) open with the same reader."""
    store = make_store(SPECS, chunk_samples=500)
    cohort = open_cohort(store)
    paths = []
    for i, rid in enumerate(cohort.recording_ids):
        paths.append(tmp_path / f"stage{i}" / "features.parquet")
        rows = write_recording_features(cohort, rid, SPEC, paths[-1])
        assert rows == len(recording_features(cohort.recording(rid), SPEC))
    back, meta = read_feature_table(paths)
    whole = feature_table(cohort, SPEC).compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(back.compute().reset_index(drop=True), whole)
    assert meta["recordings"] == feature_table_metadata(cohort, SPEC)["recordings"]
    assert meta["store"] is None and meta["store_fingerprint"] is None  # not in a stage key
    # files computed with another spec do not mix
    other = tmp_path / "other.parquet"
    spec = FeatureTableSpec(window=WindowPlan(100, 100), features=("mav", "rms"))
    write_recording_features(cohort, cohort.recording_ids[0], spec, other)
    with pytest.raises(StoreError, match=r"other.parquet'.*key 'spec' differs from that of"):
        read_feature_table([paths[0], other])
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1.0]}), plain)
    with pytest.raises(StoreError, match=r"plain.parquet'.*expected 'cohort_pipeline'"):
        read_feature_table(plain)
    with pytest.raises(StoreError, match=r"expected a .parquet file or a folder of them"):
        read_feature_table(tmp_path / "nothing")


def test_failed_write_leaves_nothing(make_store, tmp_path, monkeypatch):
    store = make_store(SPECS[:1])

    def boom(specs, fs):
        def func(block, length, step):
            raise RuntimeError("kernel failed")

        return func, ["mav"]

    monkeypatch.setattr(table_mod, "_make_block_function", boom)
    with pytest.raises(RuntimeError, match="kernel failed"):
        write_feature_table(open_cohort(store), SPEC, tmp_path / "out" / "t")
    assert [p for p in (tmp_path / "out").rglob("*") if not p.is_dir()] == []


def test_table_files_are_flushed_together_after_the_last_write(make_store, tmp_path, monkeypatch):
    """The write tasks rename their files into place unflushed; every file and the folder
    are flushed once all are written, before write_feature_table returns."""
    import pipeline._fs as fs

    events: list[tuple[str, object]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", (st.st_dev, st.st_ino)))
        real_fsync(fd)

    def replace(src, dst):
        real_replace(src, dst)
        events.append(("replace", Path(dst).name))

    cohort = open_cohort(make_store(SPECS))
    monkeypatch.setattr(fs.os, "fsync", fsync)
    monkeypatch.setattr(fs.os, "replace", replace)
    out = write_feature_table(cohort, SPEC, tmp_path / "t")
    files = sorted(out.glob("*.parquet"))
    kinds = [kind for kind, _ in events]
    assert kinds == ["replace"] * 3 + ["fsync"] * 4
    assert sorted(name for kind, name in events if kind == "replace") == [f.name for f in files]
    inodes = [(os.stat(p).st_dev, os.stat(p).st_ino) for p in [*files, out]]
    assert sorted(ino for kind, ino in events if kind == "fsync") == sorted(inodes)


def test_block_function_pickles_as_its_spec(make_store, monkeypatch):
    """The graph's block function travels as (specs, rate, channels) and is rebuilt once per
    process and token; a substituted function still travels by value."""
    import pickle

    import cloudpickle

    monkeypatch.setattr(table_mod, "_make_block_function", _REAL_MAKE_BLOCK_FUNCTION)
    monkeypatch.setattr(table_mod, "_REBUILT", {})
    spec = FeatureTableSpec(window=WindowPlan(200, 50), features=("mav", "wl", "mnf", "mdf"))
    ds = open_cohort(make_store(SPECS[:1])).recording("sub-01_run-1")

    def block_function(spec):
        parts, _ = table_mod._recording_partitions(ds, spec, 2**26)
        found = []

        def walk(obj, depth=0):
            if isinstance(obj, table_mod._TokenizedBlockFunction):
                found.append(obj)
            elif isinstance(obj, tuple | list):
                for o in obj:
                    walk(o, depth + 1)
            elif isinstance(obj, dict):
                for o in obj.values():
                    walk(o, depth + 1)
            elif depth < 8 and hasattr(obj, "args"):  # tasks, partials, windows._Bound
                walk(getattr(obj, "func", None), depth + 1)
                walk(obj.args, depth + 1)
                walk(getattr(obj, "kwargs", None) or {}, depth + 1)

        walk(dict(parts[0].feats[0].__dask_graph__()))
        assert len(found) == 1
        return found[0]

    func = block_function(spec)
    assert func.rebuild == ([{"name": n} for n in ("mav", "wl", "mnf", "mdf")], FS, None)
    blob = pickle.dumps(func)  # plain pickle: no closure inside
    assert len(blob) < 1000
    first, second = pickle.loads(blob), pickle.loads(blob)
    assert first.token == func.token and first.func is second.func  # built once
    x = np.random.default_rng(0).standard_normal((1000, 3))
    np.testing.assert_array_equal(first(x, 200, 50), func(x, 200, 50))

    monkeypatch.setattr(table_mod, "_make_block_function", _numpy_block_function)
    stand_in = block_function(SPEC)  # mav, rms
    assert stand_in.rebuild is None
    back = cloudpickle.loads(cloudpickle.dumps(stand_in))
    np.testing.assert_array_equal(back(x, 200, 50)[0, :, 0], _mav(x[:200], axis=0))


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
        features=("mav",),
        preprocess=({"op": "lowpass", "cutoff": 600},),
    )
    with pytest.raises(SpecError, match=r"'sub-01_run-1': preprocessing.*Nyquist"):
        feature_table(open_cohort(store), bad, recordings=["sub-01_run-1"])
    with pytest.raises(SpecError, match=r"key 'features': expected a non-empty list"):
        FeatureTableSpec(window=WindowPlan(1, 1), features=())


def test_run_features_reads_a_task_spec(make_store, tmp_path):
    """cohort features --spec takes a task spec, loaded as cohort run loads it."""
    task = {
        "name": "t",
        "data": {"source": "demo", "format": "synthetic"},
        "preprocess": [{"op": "highpass", "cutoff": 1}],
        "channels": ["ch1", "ch2"],
        "windows": {"length": 0.2, "step": 0.1, "label": "centre", "mixed": "drop"},
        "features": ["mav", "rms"],
        "model": {"name": "lda"},
        "validation": {"scheme": "loso"},
    }
    spec_file = tmp_path / "task.yaml"
    spec_file.write_text(json.dumps(task))
    store = make_store(SPECS[:2])
    out = run_features(store, spec_file, tmp_path / "out")
    ddf, meta = read_feature_table(out)
    assert list(ddf.columns[6:]) == ["ch1__mav", "ch1__rms", "ch2__mav", "ch2__rms"]
    assert meta["spec"]["preprocess"][0]["op"] == "highpass"
    assert meta["spec"]["window"]["step"] == 0.1
    assert set(meta["recordings"]) == {"sub-01_run-1", "sub-01_run-2"}
    from pipeline.spec import load_task

    task["windows"]["size"] = 3
    spec_file.write_text(json.dumps(task))
    with pytest.raises(SpecError) as features_error:
        run_features(store, spec_file, tmp_path / "out2")
    with pytest.raises(SpecError) as run_error:
        load_task(spec_file)
    assert str(features_error.value) == str(run_error.value)
    assert "task.yaml" in str(features_error.value) and "size" in str(features_error.value)


def test_features_command_writes_the_table_and_refuses_to_overwrite(
    make_store, tmp_path, client, capsys
):
    """`cohort features STORE --spec TASK --out DIR`, run on a cluster given by address."""
    from pipeline.cli import main

    task = {
        "name": "t",
        "data": {"source": "demo", "format": "synthetic"},
        "windows": {"length": 0.2, "step": 0.05},
        "features": ["mav"],
        "model": {"name": "lda"},
        "validation": {"scheme": "loso"},
    }
    spec_file = tmp_path / "task.yaml"
    spec_file.write_text(json.dumps(task))
    store = make_store(SPECS[1:])
    out = tmp_path / "features"
    argv = ["features", str(store), "--spec", str(spec_file), "--out", str(out)]
    argv += ["--cluster", client.scheduler.address]
    assert main(argv) == 0
    assert f"feature table: {out}" in capsys.readouterr().out
    ddf, meta = read_feature_table(out)
    assert sorted(meta["recordings"]) == ["sub-01_run-2", "sub-02_run-1"]
    assert list(ddf.columns[6:]) == ["ch1__mav", "ch2__mav", "ch3__mav"]
    assert len(ddf.compute()) == n_windows(2500, 200, 50)  # the 150-sample one has none
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1  # one line (the dashboard link may precede it)
    assert errors[0].startswith("error: feature table") and "pass overwrite=True" in errors[0]
    assert main([*argv, "--overwrite"]) == 0


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
        features=("mav", "iav"),
        preprocess=({"op": "bandpass", "low": 20, "high": 450},),
    )
    store = make_store(SPECS, chunk_samples=700)
    cohort = open_cohort(store)
    with dask.config.set(scheduler=client):
        out = write_feature_table(cohort, spec, tmp_path / "t")
        got = read_feature_table(out)[0].compute()
    with dask.config.set(scheduler="sync"):
        local = feature_table(cohort, spec).compute()
    np.testing.assert_allclose(got.iloc[:, 6:].to_numpy(), local.iloc[:, 6:].to_numpy(), rtol=1e-12)
    assert got["recording"].tolist() == local["recording"].tolist()


def test_long_recordings_are_one_file_of_several_row_groups(make_store, tmp_path):
    """Recordings split into partitions still give one file each, rows and dtypes exact."""
    store = make_store(SPECS, chunk_samples=250)
    cohort = open_cohort(store)
    spec = FeatureTableSpec(
        window=WindowPlan(200, 50),
        features=("mav", "rms"),
        labels=LabelPolicy(mode="centre", mixed="drop", exclude=("pinch",)),
    )
    ddf = feature_table(cohort, spec, max_partition_bytes=1000)
    assert ddf.npartitions > 10
    out = write_feature_table(cohort, spec, tmp_path / "t", max_partition_bytes=1000)
    files = sorted(out.glob("*.parquet"))
    assert len(files) == 3
    assert pq.ParquetFile(files[0]).metadata.num_row_groups > 1
    a = read_feature_table(out)[0].compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(a, ddf.compute().reset_index(drop=True))
    assert "pinch" not in set(a["label"].dropna())
    assert a["session"].isna().all()
