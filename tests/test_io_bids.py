"""Reader ``bids``: mne-bids datasets in, every entity, events, participants, bad channels."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest

from pipeline.exceptions import InputError, SpecError
from pipeline.ingest import ingest
from pipeline.io import get_reader
from pipeline.store import open_cohort

DATA = Path(os.environ.get("COHORT_DATA", Path(__file__).parents[1] / ".." / "shared" / "data"))
EXAMPLES = DATA / "foreign" / "bids-examples"
EEG = DATA / "eeg-arithmetic"


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory) -> Path:
    """Two subjects x two runs of eeg-arithmetic written as BIDS EEG by mne-bids."""
    mne_bids = pytest.importorskip("mne_bids")
    root = tmp_path_factory.mktemp("bids") / "arith"
    for subject in ("00", "01"):
        for run in (1, 2):
            raw = mne.io.read_raw_edf(EEG / f"Subject{subject}_{run}.edf", verbose="error")
            raw.set_annotations(mne.Annotations([1.0, 2.5], [0.5, 0.0], ["count", "blink"]))
            raw.info["line_freq"] = 50.0
            raw.info["bads"] = ["EEG A2-A1"]
            bp = mne_bids.BIDSPath(
                subject=subject, task="arith", run=run, datatype="eeg", root=root
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mne_bids.write_raw_bids(raw, bp, overwrite=True, verbose="error")
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    table["count_quality"] = [1, 0]
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def test_bids_eeg_dataset_ingests_with_entities_events_participants(
    bids_root: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.zarr"
    ingest(bids_root, "bids", store, progress=False, datatype="eeg")
    cohort = open_cohort(store)
    assert cohort.recording_ids == [
        f"sub-{s}_task-arith_run-{r}" for s in ("00", "01") for r in (1, 2)
    ]
    index = cohort.index.set_index("recording")
    assert index["count_quality"].tolist() == [1, 1, 0, 0]
    assert index["run"].tolist() == ["1", "2", "1", "2"]
    assert index["task"].tolist() == ["arith"] * 4  # the BIDS task entity is in the index
    assert index["acquisition"].isna().all()
    ds = cohort.recording("sub-01_task-arith_run-2")
    assert ds.attrs["task"] == "arith" and ds.attrs["line_frequency"] == 50
    assert ds.event_description.values.tolist() == ["count", "blink"]
    np.testing.assert_allclose(ds.event_onset.values, [1.0, 2.5])
    np.testing.assert_allclose(ds.event_duration.values, [0.5, 0.0])
    # the bad channel (channels.tsv status) is left out and listed
    src = mne.io.read_raw_edf(EEG / "Subject01_2.edf", verbose="error")
    kept = [n for n in src.ch_names if n != "EEG A2-A1"]
    assert ds.channel.values.tolist() == kept
    assert "EEG A2-A1" in ds.attrs["excluded_channels"]
    np.testing.assert_array_equal(ds.signal.values, src.get_data(picks=kept).T.astype(np.float32))
    assert set(ds.unit.values.tolist()) == {"V"}


def test_task_subject_selection_and_keep_bad(bids_root: Path) -> None:
    reader = get_reader("bids")
    files = reader.discover(bids_root, datatype="eeg", subjects=["01"], task="arith")
    assert [f.recording_id for f in files] == ["sub-01_task-arith_run-1", "sub-01_task-arith_run-2"]
    src = reader.read(files[0], datatype="eeg", keep_bad=True)
    assert "EEG A2-A1" in src.channels
    with pytest.raises(
        InputError, match=r"no eeg data files match \(task='rest'.*datatypes present: \['eeg'\]"
    ):
        reader.discover(bids_root, datatype="eeg", task="rest")
    with pytest.raises(
        SpecError, match=r"option 'datatype' is None; expected one of \['eeg', 'emg', 'ieeg'\]"
    ):
        reader.discover(bids_root)
    with pytest.raises(InputError, match=r"not a BIDS root: expected a dataset_description\.json"):
        reader.discover(bids_root / "sub-00", datatype="eeg")


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="bids-examples not found")
def test_cli_selects_datatype_task_and_subjects(bids_root: Path, tmp_path: Path, capsys) -> None:
    from pipeline.cli import main

    store = tmp_path / "s.zarr"
    argv = ["ingest", str(bids_root), "--format", "bids", "--out", str(store)]
    assert main([*argv, "--datatype", "eeg", "--task", "arith", "--subjects", "01"]) == 0
    index = open_cohort(store).index
    assert index["recording"].tolist() == ["sub-01_task-arith_run-1", "sub-01_task-arith_run-2"]
    capsys.readouterr()
    assert main([*argv, "--datatype", "eeg", "--task", "rest"]) == 2
    assert "no eeg data files match (task='rest'" in capsys.readouterr().err


def test_bids_examples_ingest_or_are_refused_by_name() -> None:
    """Every BIDS-EMG example reads with MNE's values; placeholders and bad EDFs are refused."""
    reader = get_reader("bids")
    read, refused = [], []
    for root in sorted(EXAMPLES.iterdir()):
        datatype = "eeg" if root.name.startswith("eeg_") else "emg"
        for sf in reader.discover(root, datatype=datatype):
            try:
                src = reader.read(sf, datatype=datatype)
            except InputError as exc:
                assert sf.path.name in str(exc)
                refused.append((sf.path.name, str(exc).split(": ", 1)[1]))
                continue
            got = np.concatenate(list(src.blocks()))
            raw = mne.io.read_raw(sf.path, verbose="error")
            np.testing.assert_array_equal(
                got, raw.get_data(picks=src.channels).T.astype(np.float32)
            )
            assert set(src.channel_types) == {"emg"}  # typed by channels.tsv, not guessed
            read.append(sf.recording_id)
    assert len(read) == 8
    expected = {f"sub-{k:02d}_task-matchingpennies_eeg.vhdr": "no samples" for k in range(5, 12)}
    expected["sub-01_task-pullstand_emg.edf"] = "mne_bids.read_raw_bids cannot read it: ValueError"
    assert sorted(name for name, _ in refused) == sorted(expected)
    assert all(reason.startswith(expected[name]) for name, reason in refused)
