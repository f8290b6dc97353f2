"""Ingestion of real recordings, idempotence, increments, bad input, crash safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.cli import main
from pipeline.exceptions import IngestError, InputError, UnknownFormatError
from pipeline.ingest import ingest
from pipeline.store import open_cohort

EEG_PATTERN = r"Subject(?P<subject>\d+)_(?P<run>\d)"


def _snapshot(store: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def emg_store(tmp_path_factory, emg_dir, client) -> Path:
    store = tmp_path_factory.mktemp("emg") / "emg.zarr"
    result = ingest(emg_dir, "uci-emg", store, client=client, progress=False)
    assert len(result.added) == 51 and not result.failed
    return store


@pytest.fixture(scope="module")
def eeg_store(tmp_path_factory, eeg_dir, client) -> Path:
    store = tmp_path_factory.mktemp("eeg") / "eeg.zarr"
    ingest(
        eeg_dir,
        "edf",
        store,
        client=client,
        progress=False,
        pattern=EEG_PATTERN,
        label_from="run",
        label_map={"1": "rest", "2": "task"},
        metadata=str(eeg_dir / "subject-info.csv"),
    )
    return store


def test_all_emg_files_ingested(emg_store: Path, emg_dir: Path):
    index = open_cohort(emg_store).index
    files = sorted(emg_dir.glob("*/*.txt"))
    assert len(index) == len(files) == 51
    assert sorted(index["subject"].unique()) == sorted({f.parent.name for f in files})
    assert sorted(index["source"]) == sorted(f.name for f in files)
    assert set(index["sampling_rate"]) == {1000.0}
    assert set(index["n_channels"]) == {8}


@pytest.mark.parametrize("subject_file", ["01/1_raw_data_13-12_22.03.16.txt", "28"])
def test_emg_samples_equal_file_at_original_timestamps(emg_store, emg_dir, subject_file):
    path = emg_dir / subject_file
    if path.is_dir():
        path = sorted(path.glob("2_*.txt"))[0]
    raw = pd.read_csv(path, sep="\t")
    series = path.name.split("_")[0]
    ds = open_cohort(emg_store).recording(f"sub-{path.parent.name}_run-{series}")
    t = raw["time"].to_numpy()
    pos = t - t[0]  # uniform 1 kHz grid starting at the first timestamp
    stored = ds.signal.values[pos]
    expected = raw[[f"channel{i}" for i in range(1, 9)]].to_numpy(np.float32)
    np.testing.assert_array_equal(stored, expected)
    np.testing.assert_array_equal(ds.label.values[pos], raw["class"].to_numpy())
    assert ds.attrs["n_gaps"] > 0 and ds.attrs["longest_gap_ms"] >= 2
    assert ds.signal.shape[0] == t[-1] - t[0] + 1
    # time: seconds from the first timestamp, so the file's own times select its rows
    np.testing.assert_array_equal(ds.time.values[pos], (t - t[0]) / 1000.0)
    np.testing.assert_array_equal(ds.sel(time=(t - t[0]) / 1000.0).signal.values, expected)
    assert ds.sel(time=slice(0, 1.0)).sizes["time"] == 1001  # 0 ms .. 1000 ms


def test_all_eeg_files_ingested(eeg_store: Path, eeg_dir: Path):
    import pyedflib

    cohort = open_cohort(eeg_store)
    index = cohort.index
    assert len(index) == 32 and index["subject"].nunique() == 16
    assert set(index["sampling_rate"]) == {500.0}
    assert dict(zip(index["run"], index["label"], strict=True)) == {"1": "rest", "2": "task"}
    ds = cohort.recording("sub-03_run-2")
    types = list(ds.channel_type.values)
    assert types.count("eeg") == 19 and "ecg" in types and len(types) == 21
    with pyedflib.EdfReader(str(eeg_dir / "Subject03_2.edf")) as f:
        for i, to_volts in ((0, 1e-6), (18, 1e-6), (20, 1e-3)):  # the store holds volts
            expected = (f.readSignal(i) * to_volts).astype("f4")
            np.testing.assert_array_equal(ds.signal.values[:, i], expected)
    assert set(ds.unit.values) == {"V"} and ds.source_unit.values[20] == "mV"
    info = pd.read_csv(eeg_dir / "subject-info.csv")
    age = info.loc[info["Subject"] == "Subject03", "Age"].item()
    # participant metadata: each column an attribute, and all of them as JSON text
    assert ds.attrs["age"] == age and json.loads(ds.attrs["metadata"])["age"] == age
    assert index.loc[index["subject"] == "03", "age"].unique().tolist() == [age]


@pytest.mark.parametrize(("which", "recording"), [("eeg", "sub-03_run-2"), ("emg", "sub-01_run-1")])
def test_real_recordings_write_to_netcdf(
    request: pytest.FixtureRequest, tmp_path: Path, which: str, recording: str
):
    """A real EDF recording with participant metadata, and a real EMG file, as netCDF."""
    store = request.getfixturevalue(f"{which}_store")
    ds = open_cohort(store).recording(recording)
    # scipy writes NETCDF3, the strictest format; it refuses dask's distributed scheduler
    # (this module's client), hence load() first.
    ds.load().to_netcdf(tmp_path / "r.nc")
    with xr.open_dataset(tmp_path / "r.nc") as back:
        np.testing.assert_array_equal(back.signal.values, ds.signal.values)
        np.testing.assert_array_equal(back.time.values, ds.time.values)
        assert list(back.channel.values) == list(ds.channel.values)
        assert back.attrs["subject"] == ds.attrs["subject"]
        assert back.attrs["sampling_rate"] == ds.attrs["sampling_rate"]
        if which == "eeg":
            assert back.attrs["label"] == "task" and back.attrs["age"] == ds.attrs["age"]
            assert json.loads(back.attrs["metadata"]) == json.loads(ds.attrs["metadata"])
            assert back.original_label.values[0] == "EEG Fp1"  # per channel: a coordinate
            assert ds.prefilter.sel(channel="Fp1").item() == "HP:0.500000Hz LP:45.000000Hz RF:50Hz"
        else:
            assert back.label.attrs["flag_meanings"].split()[:3] == ["unmarked", "rest", "fist"]
            assert back.label.attrs["flag_values"].tolist() == list(range(8))


def test_reingest_writes_nothing(emg_store: Path, emg_dir: Path, client):
    before = _snapshot(emg_store)
    result = ingest(emg_dir, "uci-emg", emg_store, client=client, progress=False)
    assert len(result.unchanged) == 51 and not result.added and not result.replaced
    after = _snapshot(emg_store)
    assert {k: v for k, v in after.items() if not k.endswith("index.json")} == {
        k: v for k, v in before.items() if not k.endswith("index.json")
    }


def test_add_and_replace_files(tmp_path: Path, emg_dir: Path):
    src = tmp_path / "src"
    files = sorted(emg_dir.glob("0[1-3]/*.txt"))[:3]
    for f in files[:2]:
        (src / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / f.parent.name / f.name)
    store = tmp_path / "s.zarr"
    assert len(ingest(src, "uci-emg", store, progress=False).added) == 2
    (src / files[2].parent.name).mkdir(exist_ok=True)
    shutil.copy(files[2], src / files[2].parent.name / files[2].name)
    result = ingest(src, "uci-emg", store, progress=False)
    assert len(result.added) == 1 and len(result.unchanged) == 2
    assert len(open_cohort(store).index) == 3
    # change one file: its recording is replaced, with a warning
    changed = src / files[0].parent.name / files[0].name
    lines = changed.read_text().splitlines()
    changed.write_text("\n".join(lines[:-100]) + "\n")  # the last 100 rows are gone
    old = open_cohort(store).index.iloc[0]
    with pytest.warns(UserWarning, match="source changed since it was ingested"):
        result = ingest(src, "uci-emg", store, progress=False)
    assert result.replaced == [old["recording"]] and len(result.unchanged) == 2
    new = open_cohort(store).index.set_index("recording").loc[old["recording"]]
    assert new["sha256"] != old["sha256"] and new["n_samples"] < old["n_samples"]
    ds = open_cohort(store).recording(old["recording"])
    assert ds.signal.shape[0] == new["n_samples"]


GOOD = (
    "time\tchannel1\tchannel2\tchannel3\tchannel4\tchannel5\tchannel6\tchannel7\tchannel8\tclass\n"
)


def _row(t: int, cls: int = 0) -> str:
    return f"{t}\t" + "\t".join(["1e-05"] * 8) + f"\t{cls}\n"


def _emg_source(tmp_path: Path, bad: dict[str, str]) -> Path:
    src = tmp_path / "src"
    (src / "01").mkdir(parents=True)
    (src / "01" / "1_raw_data_10-00_01.01.16.txt").write_text(
        GOOD + "".join(_row(t) for t in range(1, 200))
    )
    for name, text in bad.items():
        (src / "02").mkdir(exist_ok=True)
        (src / "02" / name).write_text(text)
    return src


BAD_EMG = {
    "empty": ("", "empty"),
    "non-numeric": (GOOD + _row(1) + "2\t1e-05\tabc" + "\t0" * 7 + "\n", r"line 3.*channel2"),
    "column-count": (GOOD + _row(1) + "2\t1e-05\t0\n", r"line 3"),
    "truncated": (GOOD + _row(1) + _row(2) + "3\t1e-05\t2e-0", r"line 4"),
}


@pytest.mark.parametrize("case", sorted(BAD_EMG))
def test_bad_emg_file_named_in_error(tmp_path: Path, case: str):
    text, match = BAD_EMG[case]
    src = _emg_source(tmp_path, {"1_raw_data_10-00_01.01.16.txt": text})
    with pytest.raises(InputError, match=match) as err:
        ingest(src, "uci-emg", tmp_path / "s.zarr", progress=False)
    assert "1_raw_data_10-00_01.01.16.txt" in str(err.value)
    # nothing of the bad file is committed; a good file finished in parallel may be, whole
    cohort = open_cohort(tmp_path / "s.zarr")
    assert set(cohort.recording_ids) <= {"sub-01_run-1"}
    for rid in cohort.recording_ids:
        assert cohort.recording(rid).signal.shape == (199, 8)
    # a file still being written when the run stopped stays in staging, never trusted
    assert ingest(src / "01", "uci-emg", tmp_path / "s.zarr", progress=False).failed == []
    assert open_cohort(tmp_path / "s.zarr").recording_ids == ["sub-01_run-1"]


def test_skip_ingests_the_others_and_lists_failures(tmp_path: Path):
    src = _emg_source(tmp_path, {"1_raw_data_10-00_01.01.16.txt": ""})
    with pytest.raises(IngestError, match=r"1 of 2 file\(s\) failed") as err:
        ingest(src, "uci-emg", tmp_path / "s.zarr", on_error="skip", progress=False)
    assert len(err.value.failures) == 1 and "02" in err.value.failures[0][0]
    assert open_cohort(tmp_path / "s.zarr").recording_ids == ["sub-01_run-1"]
    # the CLI exits non-zero and lists the failure
    code = main(
        [
            "ingest",
            str(src),
            "--format",
            "uci-emg",
            "--out",
            str(tmp_path / "c.zarr"),
            "--on-error",
            "skip",
            "--cluster",
            "local",
        ]
    )
    assert code == 1


def test_unknown_format(tmp_path: Path):
    with pytest.raises(UnknownFormatError, match=r"unknown format 'edff': expected one of .*edf"):
        ingest(tmp_path, "edff", tmp_path / "s.zarr")


def test_mismatched_channels(tmp_path: Path):
    src = tmp_path / "csv"
    src.mkdir()
    (src / "a.csv").write_text("x,y\n" + "1,2\n" * 50)
    (src / "b.csv").write_text("x,z\n" + "1,2\n" * 50)
    with pytest.raises(InputError, match=r"b\.csv: mismatched channels: expected .*'y'.*found"):
        ingest(src, "csv", tmp_path / "s.zarr", progress=False, sampling_rate=100.0)


def test_mismatched_channels_judged_against_the_first_file_whatever_finishes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The cohort's channels are the first file's, even when its task finishes last."""
    import pipeline.ingest as ingest_module

    src = tmp_path / "csv"
    src.mkdir()
    (src / "a.csv").write_text("x,y\n" + "1,2\n" * 50)
    for name in ("b", "c", "d"):
        (src / f"{name}.csv").write_text("x,z\n" + "1,2\n" * 50)
    run_tasks = ingest_module._run_tasks

    def first_file_last(args, client, progress):
        outcomes = list(run_tasks(args, client, progress))
        return sorted(outcomes, key=lambda o: o[0] == "sub-a")  # "sub-a" after the others

    monkeypatch.setattr(ingest_module, "_run_tasks", first_file_last)
    with pytest.raises(IngestError) as info:
        ingest(
            src, "csv", tmp_path / "s.zarr", progress=False, sampling_rate=100.0, on_error="skip"
        )
    failed = info.value.result.failed
    assert sorted(Path(f).name for f, _ in failed) == ["b.csv", "c.csv", "d.csv"]
    assert all(
        "mismatched channels: expected the cohort's channels ['x', 'y']" in m for _, m in failed
    )
    assert open_cohort(tmp_path / "s.zarr").recording_ids == ["sub-a"]
    assert not list((tmp_path / "s.zarr" / ".staging").iterdir())  # nothing left staged


def test_pattern_not_matching(tmp_path: Path, eeg_dir: Path):
    src = tmp_path / "edf"
    src.mkdir()
    shutil.copy(eeg_dir / "Subject00_2.edf", src / "Subject00_2.edf")
    shutil.copy(eeg_dir / "Subject00_2.edf", src / "S00-task.edf")
    with pytest.raises(InputError, match=r"S00-task\.edf.*Subject\(\?P<subject>"):
        ingest(src, "edf", tmp_path / "s.zarr", progress=False, pattern=EEG_PATTERN)


def test_killed_ingest_leaves_valid_store_and_resumes(tmp_path: Path, emg_dir: Path):
    store = tmp_path / "s.zarr"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "ingest",
            str(emg_dir),
            "--format",
            "uci-emg",
            "--out",
            str(store),
            "--cluster",
            "local",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = list((store / "recordings").glob("*")) if (store / "recordings").exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    cohort = open_cohort(store)  # valid: every listed recording opens and is complete
    assert 3 <= len(cohort) < 51
    for rid in cohort.recording_ids[:3]:
        ds = cohort.recording(rid)
        assert ds.signal.shape[0] == cohort.index.set_index("recording").loc[rid, "n_samples"]
        assert np.isfinite(ds.signal[-10:].values).all()
    result = ingest(emg_dir, "uci-emg", store, progress=False)
    assert len(result.unchanged) == len(cohort) and len(result.added) == 51 - len(cohort)


def test_changed_reader_option_reingests(tmp_path: Path, eeg_dir: Path):
    src = tmp_path / "edf"
    src.mkdir()
    for name in ("Subject00_1.edf", "Subject00_2.edf"):
        shutil.copy(eeg_dir / name, src / name)
    opts = {"pattern": EEG_PATTERN, "label_from": "run"}
    store = tmp_path / "s.zarr"
    ingest(src, "edf", store, progress=False, label_map={"1": "rest", "2": "task"}, **opts)
    again = ingest(src, "edf", store, progress=False, label_map={"1": "rest", "2": "task"}, **opts)
    assert sorted(again.unchanged) == ["sub-00_run-1", "sub-00_run-2"]
    with pytest.warns(UserWarning, match="or other reader options"):
        result = ingest(
            src, "edf", store, progress=False, label_map={"1": "baseline", "2": "task"}, **opts
        )
    assert sorted(result.replaced) == ["sub-00_run-1", "sub-00_run-2"]
    index = open_cohort(store).index
    assert index["label"].tolist() == ["baseline", "task"]
    assert index["sha256"].nunique() == 2  # still the files' own sha256


def test_small_files_are_batched_large_and_generated_ones_alone(tmp_path: Path):
    from pipeline.ingest import BATCH_BYTES, _batches
    from pipeline.io.base import SourceFile

    def arg(name: str, nbytes: int | None) -> tuple:
        path = tmp_path / name
        if nbytes is not None:
            with path.open("wb") as f:
                f.truncate(nbytes)
        return ("csv", SourceFile(path, name), {}, "s", None, None, None)

    small = [arg(f"s{i}", 2**20) for i in range(40)]
    args = [*small[:20], arg("big", BATCH_BYTES), arg("gen", None), *small[20:]]
    batches = _batches(args, n_workers=2)
    assert [a for b in batches for a in b] == args  # every file once, in order
    assert [len(b) for b in batches if b[0][1].subject in ("big", "gen")] == [1, 1]
    assert max(len(b) for b in batches) == 6  # ceil(42 / (4 * 2)): every worker gets tasks
    assert all(sum(2**20 for _ in b) <= BATCH_BYTES for b in batches)
    assert [len(b) for b in _batches(small[:3], n_workers=2)] == [1, 1, 1]


def test_cli_names_the_closest_recordings_on_a_wrong_id(
    emg_store: Path, tmp_path: Path, client, capsys: pytest.CaptureFixture[str]
):
    """A wrong --recording is one line on stderr and exit code 2, not a KeyError trace."""
    task = {
        "name": "t",
        "data": {"source": "demo", "format": "synthetic"},
        "windows": {"length": 0.2, "step": 0.1},
        "features": ["mav"],
        "model": {"name": "lda"},
        "validation": {"scheme": "loso"},
    }
    spec = tmp_path / "task.yaml"
    spec.write_text(json.dumps(task))
    argv = ["features", str(emg_store), "--spec", str(spec), "--out", str(tmp_path / "f")]
    argv += ["--recording", "sub-01_run-9", "--cluster", client.scheduler.address]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"error: no recording 'sub-01_run-9' in cohort store {str(emg_store)!r} "
        "(51 recordings); did you mean 'sub-01_run-2', 'sub-01_run-1', 'sub-21_run-2'?"
    )
    assert not any("Traceback" in line for line in err)


def test_mismatch_after_a_committed_waiting_file_is_the_mismatch_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A good file committed while waiting for the first one, then a bad one: its error.

    The clean-up of the files still waiting once used to read the staging path of the one
    already committed (``KeyError: '_staging'``), hiding the mismatched-channels error.
    """
    import pipeline.ingest as ingest_module

    src = tmp_path / "csv"
    src.mkdir()
    (src / "a.csv").write_text("x,y\n" + "1,2\n" * 50)
    (src / "b.csv").write_text("x,z\n" + "1,2\n" * 50)
    (src / "c.csv").write_text("x,y\n" + "1,2\n" * 50)
    run_tasks = ingest_module._run_tasks
    order = {"sub-c": 0, "sub-b": 1, "sub-a": 2}  # the first file's task finishes last

    def first_file_last(args, client, progress):
        return sorted(run_tasks(args, client, progress), key=lambda o: order[o[0]])

    monkeypatch.setattr(ingest_module, "_run_tasks", first_file_last)
    with pytest.raises(InputError, match=r"b\.csv: mismatched channels: expected .*\['x', 'y'\]"):
        ingest(src, "csv", tmp_path / "s.zarr", progress=False, sampling_rate=100.0)
    assert open_cohort(tmp_path / "s.zarr").recording_ids == ["sub-a", "sub-c"]
    assert not list((tmp_path / "s.zarr" / ".staging").iterdir())


def test_windows_labelled_by_one_event_description(make_store, events_frame):
    """``event_description`` selects events by their stored (StringDType) description."""
    from pipeline.labels import LabelPolicy
    from pipeline.table import FeatureTableSpec, feature_table
    from pipeline.windows import WindowPlan

    store = make_store([{"subject": "03", "n_samples": 6000, "events": events_frame}])
    spec = FeatureTableSpec(
        window=WindowPlan(0.5, 0.25, unit="seconds"),
        features=("mav",),
        labels=LabelPolicy(
            source="events", min_overlap=0.5, event_description="b", event_labels=("on", "off")
        ),
    )
    got = feature_table(open_cohort(store), spec).compute()
    starts = got["start"].to_numpy()
    # only event "b", [3.5, 4.5), counts: windows it covers by at least half are "on"
    cover = np.maximum(0, np.minimum(starts + 0.5, 4.5) - np.maximum(starts, 3.5))
    assert got["label"].tolist() == ["on" if c >= 0.25 else "off" for c in cover]
    assert got["label"].eq("on").sum() == 5  # starts 3.25 ... 4.25; none near event "a"
