"""The store's direct Zarr writer writes exactly what ``xarray.Dataset.to_zarr`` writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from zarr.codecs import BloscCodec

from pipeline import _zarr_v3
from pipeline.io.base import RecordingSource, SourceFile
from pipeline.store import (
    RECORDINGS,
    TIME_ATTRS,
    SampleTimeIndex,
    open_cohort,
    write_recording,
)


def _tree(root: Path) -> dict[str, object]:
    """Every file under ``root``: parsed JSON for metadata, bytes for chunks."""
    out: dict[str, object] = {}
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        key = str(f.relative_to(root))
        out[key] = json.loads(f.read_text()) if f.name == "zarr.json" else f.read_bytes()
    return out


def _reference(path: Path, ds: xr.Dataset, chunk: int) -> None:
    """The recording written by xarray and zarr-python, as the store wrote it before."""
    encoding = {
        "signal": {"chunks": (chunk, ds.sizes["channel"])},
        # a time axis compresses ten times better byte-shuffled
        "time": {"chunks": (chunk,), "compressors": BloscCodec(**_zarr_v3.BLOSC_LZ4)},
    }
    if "label" in ds:
        encoding["label"] = {"chunks": (chunk,)}
    ds.to_zarr(str(path), mode="w", zarr_format=3, consolidated=False, encoding=encoding)


CASES = {
    # n, chunk, with labels, with events, zero-label chunk
    "one chunk longer than the recording": (2500, 4096, True, False, False),
    "exact chunks": (4000, 1000, True, True, False),
    "edge chunk padded": (4321, 1000, True, True, False),
    # the store refuses NaN samples (store._checked), so only the label's fill value (0) can
    # make a whole chunk skipped
    "all-zero label chunk skipped": (5000, 1000, True, False, True),
    "no labels": (3000, 700, False, False, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_files_identical_to_xarray_to_zarr(tmp_path: Path, case: str):
    n, chunk, with_labels, with_events, zero_chunk = CASES[case]
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    labels = rng.integers(1, 4, n).astype(np.int16)
    if zero_chunk:
        labels[3000:4000] = 0
    events = (
        pd.DataFrame(
            {"onset": [0.5, 2.0, 3.25], "duration": [0.0, 1.5, 0.1], "description": ["a", "", "é"]}
        )
        if with_events
        else None
    )
    src = RecordingSource(
        n_samples=n,
        sampling_rate=250.0,
        channels=["Fz", "Cz", "ECG"],
        units=["uV", "uV", "mV"],
        channel_types=["eeg", "eeg", "ecg"],
        modality="eeg",
        blocks=lambda: iter([x[i : i + 333] for i in range(0, n, 333)]),
        labels=labels if with_labels else None,
        label_names={1: "a", 2: "b", 3: "c"},
        events=events,
        attrs={"filters": "HP:0.5Hz", "nan": float("nan")},
        channel_attrs={"prefilter": ["HP:0.5Hz", "", "é"], "original_label": ["EEG Fz"] * 3},
    )
    store = tmp_path / "c.zarr"
    row = write_recording(
        store,
        SourceFile(Path("/d/s1.edf"), "01", run="2"),
        src,
        sha256="abc",
        reader="t",
        reader_version="1",
        chunk_samples=chunk,
    )
    ours = store / RECORDINGS / row["recording"]
    attrs = json.loads((ours / "zarr.json").read_text())["attributes"]

    ds = xr.Dataset(
        {"signal": (("time", "channel"), x)},
        coords={
            "time": ("time", np.arange(n) / 250.0, TIME_ATTRS),
            "channel": np.array(src.channels, dtype=object),
            "channel_type": ("channel", np.array(src.channel_types, dtype=object)),
            "unit": ("channel", np.array(src.units, dtype=object)),
            "prefilter": ("channel", np.array(["HP:0.5Hz", "", "é"], dtype=object)),
            "original_label": ("channel", np.array(["EEG Fz"] * 3, dtype=object)),
        },
        attrs=attrs,
    )
    if with_labels:
        # Every named code and every code present; an unnamed code is named by its value.
        values, meanings = ([0, 1, 2, 3], "0 a b c") if zero_chunk else ([1, 2, 3], "a b c")
        flags = {"long_name": "class label", "flag_values": values, "flag_meanings": meanings}
        ds["label"] = ("time", labels, flags)
    if with_events:
        ds["event_onset"] = ("event", events["onset"].to_numpy(np.float64))
        ds["event_duration"] = ("event", events["duration"].to_numpy(np.float64))
        ds["event_description"] = ("event", events["description"].to_numpy(object))
    ref = tmp_path / "ref.zarr"
    _reference(ref, ds, min(chunk, n))  # a short recording is one chunk of its length

    got, want = _tree(ours), _tree(ref)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
    if zero_chunk:
        assert "label/c/3" not in got

    back = open_cohort(store).recording(row["recording"])
    # read directly, not through xarray (time is computed by the store, never read)
    assert _zarr_v3.read_dataset(ours, "t", skip={"time"}) is not None
    np.testing.assert_array_equal(back.signal.values, x)
    assert back.signal.chunks[0][0] == min(chunk, n)
    reference = xr.open_zarr(str(ref), zarr_format=3, consolidated=False)
    # The stored times are never read back: the index computes the same float64 values.
    assert isinstance(back.xindexes["time"], SampleTimeIndex)
    np.testing.assert_array_equal(back["time"].values, reference["time"].values, strict=True)
    xr.testing.assert_identical(
        back.load().drop_indexes("time"), reference.load().drop_indexes("time")
    )


def test_array_writer_rejects_a_chunk_of_the_wrong_shape(tmp_path: Path):
    w = _zarr_v3.ArrayWriter(tmp_path / "a", (10, 2), np.float32, 4, ("time", "channel"))
    with pytest.raises(ValueError, match=r"chunk 2 expected shape \(2, 2\), found \(4, 2\)"):
        w.write_chunk(2, np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="float or integer"):
        _zarr_v3.ArrayWriter(tmp_path / "b", (3,), "U4", 3, ("x",))


def test_groups_in_another_layout_are_read_through_xarray(tmp_path: Path):
    """A recording rewritten by another tool (here: no compression) still opens, via xarray."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 2)).astype(np.float32)
    src = RecordingSource(
        n_samples=3000,
        sampling_rate=100.0,
        channels=["a", "b"],
        units=["uV", "uV"],
        channel_types=["eeg", "eeg"],
        modality="eeg",
        blocks=lambda: iter([x]),
        labels=np.arange(3000, dtype=np.int16) % 3,
        label_names={0: "x", 1: "y", 2: "z"},
    )
    store = tmp_path / "c.zarr"
    row = write_recording(
        store, SourceFile(Path("s.csv"), "01"), src, sha256="x", reader="t", reader_version="1"
    )
    group = store / RECORDINGS / row["recording"]
    direct = open_cohort(store).recording(row["recording"]).load()
    rewritten = xr.open_zarr(str(group), consolidated=False, zarr_format=3).load()
    for var in rewritten.variables.values():
        var.encoding = {}
    tmp = tmp_path / "rewritten.zarr"
    rewritten.to_zarr(
        str(tmp),
        zarr_format=3,
        consolidated=False,
        encoding={v: {"compressors": None} for v in rewritten.variables},
    )
    shutil.rmtree(group)
    tmp.rename(group)
    assert _zarr_v3.read_dataset(group, "t", skip={"time"}) is None
    again = open_cohort(store).recording(row["recording"])
    assert isinstance(again.xindexes["time"], SampleTimeIndex)  # its times are the grid
    xr.testing.assert_identical(again.load(), direct)
    assert again.channel_type.values.tolist() == ["eeg", "eeg"]


def test_same_recording_in_two_stores_has_distinct_dask_keys(tmp_path: Path):
    """Same source and fingerprint, other store and chunking: no shared dask keys."""
    x = np.arange(6000, dtype=np.float32).reshape(3000, 2)
    names = []
    for chunk in (1000, 700):
        src = RecordingSource(
            n_samples=3000,
            sampling_rate=100.0,
            channels=["a", "b"],
            units=["uV", "uV"],
            channel_types=["eeg", "eeg"],
            modality="eeg",
            blocks=lambda: iter([x]),
        )
        store = tmp_path / f"c{chunk}.zarr"
        row = write_recording(
            store,
            SourceFile(Path("s.csv"), "01"),
            src,
            sha256="same",
            reader="t",
            reader_version="1",
            chunk_samples=chunk,
        )
        ds = open_cohort(store).recording(row["recording"])
        names.append(ds.signal.data.name)
        np.testing.assert_array_equal(ds.signal.values, x)
    assert names[0] != names[1]
