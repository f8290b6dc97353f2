"""Untidy input: every case is refused with the file, channel and sample, never silenced."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.exceptions import InputError
from pipeline.ingest import ingest
from pipeline.io import get_reader
from pipeline.io.base import RecordingSource, SourceFile
from pipeline.store import open_cohort, write_recording

ROWS = "x,y\n" + "1,2\n" * 50


def _source(x: np.ndarray) -> RecordingSource:
    return RecordingSource(
        n_samples=len(x),
        sampling_rate=100.0,
        channels=["a", "b"],
        units=["V", "V"],
        channel_types=["emg", "emg"],
        modality="emg",
        blocks=lambda: iter([x[:40], x[40:]]),
    )


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (np.nan, r"nan is not finite"),
        (-np.inf, r"-inf is not finite"),
        (1e39, r"1e\+39 overflows float32"),
    ],
)
def test_nonfinite_and_overflowing_samples_are_refused_with_channel_and_sample(
    tmp_path: Path, bad: float, what: str
) -> None:
    x = np.zeros((100, 2))
    x[57, 1] = bad
    x[90, 0] = bad
    sf = SourceFile(path=tmp_path / "rec.csv", subject="01")
    with pytest.raises(
        InputError,
        match=rf"rec\.csv: channel 'b', sample 57: value {what} \(2 such value\(s\) in samples "
        r"40-99\); expected finite float32",
    ):
        write_recording(
            tmp_path / "s.zarr", sf, _source(x), sha256="0", reader="t", reader_version="1"
        )
    assert not list((tmp_path / "s.zarr" / ".staging").iterdir())  # nothing half-written left


def test_nan_in_a_csv_file_is_refused_at_ingest_by_name(tmp_path: Path) -> None:
    src = tmp_path / "csv"
    src.mkdir()
    (src / "a.csv").write_text("x,y\n" + "1,2\n" * 20 + "1,nan\n" + "1,2\n" * 5)
    with pytest.raises(InputError, match=r"a\.csv: channel 'y', sample 20: value nan"):
        ingest(src, "csv", tmp_path / "s.zarr", progress=False, sampling_rate=100.0)


def test_edf_longer_than_its_header_declares_is_refused(tmp_path: Path, eeg_dir: Path) -> None:
    path = tmp_path / "Subject00_2.edf"
    shutil.copy(eeg_dir / "Subject00_2.edf", path)
    with open(path, "ab") as f:
        f.write(b"\0" * 1000)
    reader = get_reader("edf")
    with pytest.raises(
        InputError,
        match=r"Subject00_2\.edf: the header declares 62 data records \(\d+ bytes\) but the "
        r"file has \d+ bytes: 0 more complete record\(s\) and 1000 byte\(s\) after them",
    ):
        reader.read(reader.discover(path)[0])


def test_symlinked_subject_folders_are_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    for subject in ("s1", "s2"):
        (elsewhere / subject).mkdir(parents=True)
        (elsewhere / subject / f"{subject}.csv").write_text(ROWS)
    root = tmp_path / "root"
    root.mkdir()
    for subject in ("s1", "s2"):
        (root / subject).symlink_to(elsewhere / subject, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # searched once, not forever
    result = ingest(root, "csv", tmp_path / "s.zarr", progress=False, sampling_rate=100.0)
    assert sorted(result.added) == ["sub-s1", "sub-s2"]
    assert open_cohort(tmp_path / "s.zarr").recording_ids == ["sub-s1", "sub-s2"]


def test_symlinked_folders_followed_by_the_edf_and_uci_emg_readers(
    tmp_path: Path, eeg_dir: Path, emg_dir: Path
) -> None:
    (tmp_path / "eeg").mkdir()
    (tmp_path / "eeg" / "linked").symlink_to(eeg_dir, target_is_directory=True)
    assert len(get_reader("edf").discover(tmp_path / "eeg")) == 32
    (tmp_path / "emg").mkdir()
    (tmp_path / "emg" / "01").symlink_to(emg_dir / "01", target_is_directory=True)
    assert len(get_reader("uci-emg").discover(tmp_path / "emg")) == 2


def test_broken_link_is_reported_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(ROWS)
    (tmp_path / "b.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises(
        InputError, match=r"b\.csv: cannot be read \(1 of 2 matching file\(s\) are unreadable"
    ):
        get_reader("csv").discover(tmp_path, sampling_rate=100.0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file and folder")
def test_unreadable_folder_is_reported_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.csv").write_text(ROWS)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.csv").write_text(ROWS)
    locked.chmod(0)
    try:
        with pytest.raises(InputError, match=r"cannot list 1 folder\(s\) under it .*locked"):
            get_reader("csv").discover(tmp_path, sampling_rate=100.0)
    finally:
        locked.chmod(0o755)


def test_flat_channel_is_ingested_with_a_warning_naming_file_and_channel(tmp_path: Path) -> None:
    src = tmp_path / "csv"
    src.mkdir()
    (src / "a.csv").write_text("x,y\n" + "".join(f"{k % 7},0\n" for k in range(50)))
    with pytest.warns(
        UserWarning, match=r"a\.csv: flat channel\(s\) 'y' \(every sample is 0\); ingested"
    ):
        result = ingest(src, "csv", tmp_path / "s.zarr", progress=False, sampling_rate=100.0)
    assert result.added == ["sub-a"]
