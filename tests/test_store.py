"""The cohort store: round trip, index without signal reads, atomic commits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.exceptions import StoreError
from pipeline.io.base import RecordingSource, SourceFile
from pipeline.store import (
    RECORDINGS,
    STAGING,
    clean_staging,
    default_chunk_samples,
    open_cohort,
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
    cohort = open_cohort(make_store([{"subject": "01"}]))
    with pytest.raises(KeyError, match="did you mean 'sub-01_run-1'"):
        cohort.recording("sub-01_run-2")


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
