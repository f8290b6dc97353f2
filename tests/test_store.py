"""The cohort store: round trip, index without signal reads, atomic commits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.exceptions import CohortError, RecordingNotFoundError, StoreError
from pipeline.io.base import RecordingSource, SourceFile
from pipeline.preprocessing import apply_preprocessing
from pipeline.store import (
    RECORDINGS,
    STAGING,
    SampleTimeIndex,
    clean_staging,
    default_chunk_samples,
    label_names,
    netcdf_attrs,
    open_cohort,
    sample_times,
    write_recording,
)


def _source(x: np.ndarray, block: int = 777, **kw) -> RecordingSource:
    n, c = x.shape
    return RecordingSource(
        n_samples=n,
        sampling_rate=kw.pop("sampling_rate", 500.0),
        channels=[f"c{i}" for i in range(c)],
        units=["uV"] * c,
        channel_types=["eeg"] * c,
        modality="eeg",
        blocks=lambda: iter([x[i : i + block] for i in range(0, n, block)]),
        **kw,
    )


@pytest.mark.parametrize("block", [777, 1000, 9000])
def test_round_trip_values_labels_events_attrs(
    tmp_path: Path, events_frame: pd.DataFrame, block: int
):
    """Blocks shorter than, equal to and longer than a chunk give the same recording."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9000, 4)).astype(np.float32)
    labels = (np.arange(9000) // 1500 % 3).astype(np.int16)
    src = _source(
        x,
        block=block,
        labels=labels,
        label_names={0: "a", 1: "b", 2: "c"},
        events=events_frame,
        attrs={"filters": "HP:0.5Hz"},
    )
    sf = SourceFile(
        Path("/data/s01.edf"), "01", session="2", run="3", extra={"metadata": {"age": 30}}
    )
    row = write_recording(
        tmp_path / "c.zarr",
        sf,
        src,
        sha256="abc",
        reader="t",
        reader_version="9",
        chunk_samples=1000,
    )
    assert row["recording"] == "sub-01_ses-2_run-3"
    cohort = open_cohort(tmp_path / "c.zarr")
    ds = cohort.recording("sub-01_ses-2_run-3")
    assert ds.signal.dtype == np.float32
    assert ds.signal.chunks == ((1000,) * 9, (4,))
    np.testing.assert_array_equal(ds.signal.values, x)
    np.testing.assert_array_equal(ds.label.values, labels)
    assert list(ds.event_description.values) == ["a", "b"]
    np.testing.assert_array_equal(ds.event_onset.values, [1.0, 3.5])
    assert list(ds.channel.values) == ["c0", "c1", "c2", "c3"]
    assert list(ds.channel_type.values) == ["eeg"] * 4
    assert list(ds.unit.values) == ["uV"] * 4
    a = ds.attrs
    assert (a["subject"], a["session"], a["run"], a["sampling_rate"]) == ("01", "2", "3", 500.0)
    assert (a["source"], a["sha256"], a["reader_version"], a["filters"]) == (
        "s01.edf",
        "abc",
        "9",
        "HP:0.5Hz",
    )
    idx = cohort.index.iloc[0]
    assert idx["n_samples"] == 9000 and idx["duration"] == 18.0 and idx["age"] == 30
    assert idx["labels"] == ["a", "b", "c"]


def test_index_reads_no_signal_chunk(make_store):
    store = make_store([{"subject": "01"}, {"subject": "02"}], chunk_samples=512)
    for chunk_dir in store.glob(f"{RECORDINGS}/*/signal/c"):
        for f in chunk_dir.rglob("*"):
            if f.is_file():
                f.unlink()
    (store / "index.json").unlink()  # force a rebuild from metadata alone
    cohort = open_cohort(store)
    assert cohort.recording_ids == ["sub-01_run-1", "sub-02_run-1"]
    assert cohort.index["n_samples"].tolist() == [5000, 5000]


def test_stale_index_is_rebuilt(make_store):
    store = make_store([{"subject": "01"}, {"subject": "02"}])
    (store / "index.json").write_text(json.dumps([]))
    assert open_cohort(store).recording_ids == ["sub-01_run-1", "sub-02_run-1"]


def test_fingerprint_changes_with_content(make_store):
    store = make_store([{"subject": "01"}])
    before = open_cohort(store).fingerprint
    make_store([{"subject": "02"}])
    after = open_cohort(store).fingerprint
    assert before != after
    assert open_cohort(store).fingerprint == after


def test_default_chunk_is_a_few_mib():
    assert default_chunk_samples(8) * 8 * 4 == 8 * 2**20


def test_open_errors(tmp_path: Path):
    with pytest.raises(StoreError, match="no cohort store at"):
        open_cohort(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(StoreError, match="not a cohort store"):
        write_recording(
            tmp_path / "other",
            SourceFile(Path("a"), "1"),
            _source(np.zeros((10, 1), "f4")),
            sha256="x",
            reader="t",
            reader_version="1",
        )


def test_unknown_recording_suggests(make_store):
    cohort = open_cohort(make_store([{"subject": "01"}, {"subject": "02"}]))
    with pytest.raises(RecordingNotFoundError) as err:
        cohort.recording("sub-01_run-2")
    assert isinstance(err.value, KeyError) and isinstance(err.value, CohortError)
    assert err.value.closest == ["sub-01_run-1", "sub-02_run-1"]
    # readable: KeyError's own __str__ would wrap the message in quotes
    assert str(err.value) == (
        f"no recording 'sub-01_run-2' in cohort store {str(cohort.path)!r} (2 recordings); "
        "did you mean 'sub-01_run-1', 'sub-02_run-1'?"
    )
    with pytest.raises(RecordingNotFoundError, match=r"no recording 'x' .*\(2 recordings\)$"):
        cohort.recording_fingerprint("x")


def _rate_recording(make_store, n: int = 2600, fs: float = 250.0, chunk: int = 1000):
    store = make_store([{"subject": "01", "n_samples": n, "sampling_rate": fs}], chunk)
    return open_cohort(store).recording("sub-01_run-1")


def test_time_coordinate_in_seconds_without_reading_it(make_store):
    ds = _rate_recording(make_store)
    stored = Path(ds.signal.data.dask[(ds.signal.data.name, 0, 0)][1]).parents[3] / "time"
    assert len(list((stored / "c").iterdir())) == 3  # stored for xarray.open_zarr, ...
    for chunk in (stored / "c").iterdir():
        chunk.unlink()  # ... but never read by Cohort.recording
    assert isinstance(ds.xindexes["time"], SampleTimeIndex)
    assert ds["time"].attrs == {"units": "s", "long_name": "time from the recording start"}
    np.testing.assert_array_equal(ds["time"].values, np.arange(2600) / 250.0, strict=True)
    second = ds.sel(time=slice(0, 1.0))  # label slices include both ends, as in pandas
    assert second.sizes["time"] == 251 and second["time"].values[-1] == 1.0
    np.testing.assert_array_equal(second.signal.values, ds.signal.values[:251])
    # a contiguous selection keeps the index and the exact same values
    part = ds.isel(time=slice(300, 900))
    assert isinstance(part.xindexes["time"], SampleTimeIndex)
    np.testing.assert_array_equal(part["time"].values, ds["time"].values[300:900], strict=True)
    np.testing.assert_array_equal(
        part.sel(time=slice(2.0, 2.02)).signal.values, ds.signal.values[500:506]
    )
    assert part.sel(time=slice(None, 1.2001)).sizes["time"] == 1  # only t = 1.2 s
    assert part.sel(time=slice(9.0, 10.0)).sizes["time"] == 0
    assert part.sel(time=slice(-5.0, np.inf)).sizes["time"] == 600
    # exact labels, nearest, and a readable miss
    np.testing.assert_array_equal(ds.sel(time=2.0).signal.values, ds.signal.values[500])
    assert ds.sel(time=[0.004, 0.008]).signal.shape == (2, 3)
    assert float(ds.sel(time=2.0013, method="nearest")["time"]) == 2.0
    with pytest.raises(KeyError, match=r"time: no sample at \[2.001\] s \(use method='nearest'\)"):
        ds.sel(time=[2.001])
    with pytest.raises(KeyError, match=r"no sample at 99.0 s"):
        ds.sel(time=99.0)
    with pytest.raises(KeyError, match=r"neither a step nor a method, found slice\(0, 1, 0.5\)"):
        ds.sel(time=slice(0, 1, 0.5))
    # a strided selection becomes a pandas index of the selected times
    stride = ds.isel(time=slice(0, 10, 3))
    assert stride["time"].values.tolist() == [0.0, 0.012, 0.024, 0.036]
    assert stride.sel(time=0.024).signal.shape == (3,)


def test_time_coordinate_follows_resampling(make_store):
    ds = _rate_recording(make_store, n=4000, fs=1000.0)
    out = apply_preprocessing(ds, [{"op": "resample", "rate": 250}])
    assert out.sizes["time"] == 1000 and isinstance(out.xindexes["time"], SampleTimeIndex)
    np.testing.assert_array_equal(out["time"].values, np.arange(1000) / 250.0, strict=True)
    assert out.sel(time=slice(0, 1.0)).sizes["time"] == 251


def test_label_names_on_the_variable_and_netcdf(make_store, tmp_path: Path):
    """CF flags on ``label``; every attribute netCDF-safe; the lazy recording as netCDF."""
    labels = (np.arange(5000) // 1000 % 3).astype(np.int16)
    store = make_store(
        [
            {
                "subject": "01",
                "labels": labels,
                "label_names": {0: "rest", 1: "wrist flexion", 2: "fist", 7: "unused"},
            }
        ]
    )
    ds = open_cohort(store).recording("sub-01_run-1")
    assert ds["label"].attrs == {
        "long_name": "class label",
        "flag_values": [0, 1, 2, 7],
        "flag_meanings": "rest wrist_flexion fist unused",  # CF: blank-separated words
    }
    assert label_names(ds) == {0: "rest", 1: "wrist flexion", 2: "fist", 7: "unused"}
    flags_only = ds.copy()
    del flags_only.attrs["label_names"]  # a file from another tool: CF flags alone
    assert label_names(flags_only) == {0: "rest", 1: "wrist_flexion", 2: "fist", 7: "unused"}
    assert open_cohort(store).index.loc[0, "labels"] == ["rest", "wrist flexion", "fist"]
    assert "session" not in ds.attrs and ds.attrs.get("session") is None  # None: left out
    # scipy (NETCDF3, the strictest format) refuses dask's distributed scheduler, which
    # another module's client may have made the default
    with dask.config.set(scheduler="synchronous"):
        ds.to_netcdf(tmp_path / "r.nc")  # the lazy recording, as opened
    with xr.open_dataset(tmp_path / "r.nc") as back:
        xr.testing.assert_equal(back.load(), ds.load())
        assert back.label.attrs["flag_meanings"] == "rest wrist_flexion fist unused"
        assert json.loads(back.attrs["labels_present"]) == ["rest", "wrist flexion", "fist"]


def test_netcdf_attrs():
    attrs = {
        "none": None,
        "flag": True,
        "small": 7,
        "big": 2**40,
        "x": 0.5,
        "s": "é",
        "nums": [1, 2.5],
        "wide": [1, 2**33],
        "names": ["a", "b"],
        "nested": {"b": [1, None], "a": "x"},
        "empty": [],
    }
    assert netcdf_attrs(attrs) == {
        "flag": 1,
        "small": 7,
        "big": float(2**40),
        "x": 0.5,
        "s": "é",
        "nums": [1, 2.5],
        "wide": [1.0, float(2**33)],
        "names": '["a","b"]',
        "nested": '{"a":"x","b":[1,null]}',
        "empty": [],
    }
    xr.Dataset(attrs=netcdf_attrs(attrs)).to_netcdf(Path(os.devnull))  # NETCDF3 accepts them
    assert sample_times(2, 5, 4.0).tolist() == [0.5, 0.75, 1.0]


@pytest.mark.parametrize(
    ("blocks", "match"),
    [
        (lambda: iter([np.zeros((10, 3), "f4")]), r"blocks of shape \(n, 2\), found \(10, 3\)"),
        (lambda: iter([np.zeros((10, 2), "f4")]), "declared 100 samples but yielded 10"),
        (lambda: iter([np.zeros((101, 2), "f4")]), "more than the 100 samples"),
    ],
)
def test_bad_blocks_leave_nothing(tmp_path: Path, blocks, match):
    src = _source(np.zeros((100, 2), "f4"))
    src.blocks = blocks
    with pytest.raises(StoreError, match=match):
        write_recording(
            tmp_path / "c.zarr",
            SourceFile(Path("f"), "01"),
            src,
            sha256="x",
            reader="t",
            reader_version="1",
        )
    assert list((tmp_path / "c.zarr" / STAGING).iterdir()) == []
    assert open_cohort(tmp_path / "c.zarr").recording_ids == []


def test_failure_mid_write_keeps_previous_version(make_store):
    store = make_store([{"subject": "01", "seed": 5}])
    before = open_cohort(store).recording("sub-01_run-1").signal.values

    def exploding():
        yield np.ones((1000, 3), "f4")
        raise OSError("disk full")

    src = _source(np.ones((5000, 3), "f4"))
    src.blocks = exploding
    with pytest.raises(OSError, match="disk full"):
        write_recording(
            store,
            SourceFile(Path("01_1.txt"), "01", run="1"),
            src,
            sha256="new",
            reader="t",
            reader_version="1",
        )
    cohort = open_cohort(store)
    np.testing.assert_array_equal(cohort.recording("sub-01_run-1").signal.values, before)
    assert cohort.index["sha256"].tolist() == ["sha-01-None"]


def test_kill_9_mid_write_leaves_valid_store(tmp_path: Path):
    """A process killed while writing a large recording leaves no trace that is trusted."""
    store = tmp_path / "c.zarr"
    script = textwrap.dedent(
        f"""
        import sys, time, numpy as np
        from pathlib import Path
        from pipeline.io.base import RecordingSource, SourceFile
        from pipeline.store import write_recording
        def blocks():
            for i in range(10_000):
                if i == 3:
                    print("writing", flush=True)
                time.sleep(0.01)
                yield np.full((1000, 2), i, "f4")
        src = RecordingSource(n_samples=10_000_000, sampling_rate=1000.0, channels=["a", "b"],
            units=["V", "V"], channel_types=["emg", "emg"], modality="emg", blocks=blocks)
        write_recording({str(store)!r}, SourceFile(Path("x"), "02"), src, sha256="s",
            reader="t", reader_version="1", chunk_samples=1000)
        """
    )
    ok = SourceFile(Path("ok"), "01")
    write_recording(
        store, ok, _source(np.ones((100, 2), "f4")), sha256="o", reader="t", reader_version="1"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any((store / STAGING).iterdir())  # the half-written recording is in staging
    cohort = open_cohort(store)
    assert cohort.recording_ids == ["sub-01"]
    assert clean_staging(store) == 1
    assert not any((store / STAGING).iterdir())


def test_store_written_before_opens_alike(make_store, tmp_path: Path):
    """A recording in the earlier layout: no time array, list/dict/None attributes."""
    labels = (np.arange(5000) // 1000 % 2).astype(np.int16)
    store = make_store([{"subject": "01", "labels": labels, "label_names": {0: "a", 1: "b"}}])
    group = store / RECORDINGS / "sub-01_run-1"
    shutil.rmtree(group / "time")
    meta = json.loads((group / "zarr.json").read_text())
    meta["attributes"].update(
        {
            "channels": ["ch1", "ch2", "ch3"],
            "units": ["V"] * 3,
            "channel_types": ["emg"] * 3,
            "label_names": {"0": "a", "1": "b"},
            "labels_present": ["a", "b"],
            "metadata": {"age": 30, "sex": None},
            "session": None,
        }
    )
    (group / "zarr.json").write_text(json.dumps(meta))
    (store / "index.json").unlink()
    cohort = open_cohort(store)
    assert cohort.index.loc[0, "labels"] == ["a", "b"] and cohort.index.loc[0, "age"] == 30
    ds = cohort.recording("sub-01_run-1")
    assert isinstance(ds.xindexes["time"], SampleTimeIndex) and ds.sizes["time"] == 5000
    assert label_names(ds) == {0: "a", 1: "b"}
    assert ds.attrs["channels"] == '["ch1","ch2","ch3"]' and "session" not in ds.attrs
    with dask.config.set(scheduler="synchronous"):  # scipy refuses distributed
        ds.to_netcdf(tmp_path / "old.nc")


def test_time_index_concat_and_alignment(make_store):
    ds = _rate_recording(make_store)
    again = xr.concat([ds.isel(time=slice(0, 100)), ds.isel(time=slice(100, 300))], dim="time")
    assert isinstance(again.xindexes["time"], SampleTimeIndex)  # one grid, still lazy
    xr.testing.assert_identical(again.load(), ds.isel(time=slice(0, 300)).load())
    overlap = xr.concat([ds.isel(time=slice(0, 10)), ds.isel(time=slice(5, 10))], dim="time")
    assert overlap["time"].values.tolist() == [*(np.arange(10) / 250), *(np.arange(5, 10) / 250)]
    a, b = ds.signal.isel(time=slice(0, 100)), ds.signal.isel(time=slice(50, 150))
    total = a + b  # aligned on the times both hold
    assert total["time"].values.tolist() == (np.arange(50, 100) / 250).tolist()
    np.testing.assert_array_equal(total.values, 2 * ds.signal.values[50:100])
    outer, _ = xr.align(a, b, join="outer")
    assert outer.sizes["time"] == 150 and np.isnan(outer.values[100:]).all()


def test_opening_and_slicing_materialise_no_time(make_store, monkeypatch):
    """No per-sample time array is built to open, slice or select a recording."""
    store = make_store([{"subject": "01", "n_samples": 5000, "sampling_rate": 250.0}])

    def refuse(self):
        raise AssertionError("the time index was materialised")

    monkeypatch.setattr(SampleTimeIndex, "to_pandas_index", refuse)
    ds = open_cohort(store).recording("sub-01_run-1")
    part = ds.sel(time=slice(1.0, 2.0)).isel(time=slice(10, 20))
    assert part.sizes["time"] == 10 and isinstance(part.xindexes["time"], SampleTimeIndex)
