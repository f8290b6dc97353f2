"""Reader ``wfdb``: records written with the wfdb package read back exactly, in volts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from pipeline.exceptions import InputError
from pipeline.ingest import ingest
from pipeline.io import get_reader
from pipeline.store import open_cohort


@pytest.fixture
def record(tmp_path: Path) -> Path:
    """A 2-signal 250 Hz record in mV (ECG, EEG) with an .atr annotator."""
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((2500, 2)), axis=0) * 0.01
    wfdb.wrsamp(
        "rec01",
        fs=250,
        units=["mV", "uV"],
        sig_name=["ECG", "EEG Fpz-Cz"],
        p_signal=x,
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    wfdb.wrann(
        "rec01",
        "atr",
        np.array([10, 500, 2000]),
        symbol=["N", "V", "+"],
        aux_note=["", "", "(AFIB"],
        write_dir=str(tmp_path),
    )
    return tmp_path / "rec01.hea"


def test_signals_equal_rdrecord_in_volts_with_annotations(record: Path) -> None:
    reader = get_reader("wfdb")
    (sf,) = reader.discover(record.parent)
    src = reader.read(sf, block_samples=999)
    got = np.concatenate(list(src.blocks()))
    ref = wfdb.rdrecord(str(record.with_suffix(""))).p_signal * np.array([1e-3, 1e-6])
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    assert src.units == ["V", "V"] and src.channel_types == ["ecg", "eeg"]
    assert src.sampling_rate == 250.0 and src.n_samples == 2500
    assert src.events["onset"].tolist() == [10 / 250, 500 / 250, 2000 / 250]
    assert src.events["description"].tolist() == ["N", "V", "+ (AFIB"]


def test_ingest_stores_events(record: Path, tmp_path: Path) -> None:
    ingest(record, "wfdb", tmp_path / "s.zarr", progress=False)
    ds = open_cohort(tmp_path / "s.zarr").recording("sub-rec01")
    assert ds.event_description.values.tolist() == ["N", "V", "+ (AFIB"]
    assert ds.unit.values.tolist() == ["V", "V"]


def test_missing_annotator_and_multifrequency_are_refused(record: Path, tmp_path: Path) -> None:
    reader = get_reader("wfdb")
    (sf,) = reader.discover(record)
    with pytest.raises(InputError, match=r"option 'annotations' names 'qrs', but .*rec01\.qrs"):
        reader.read(sf, annotations=["qrs"])
    x = np.zeros((200, 2))
    wfdb.wrsamp(
        "multi",
        fs=100,
        units=["mV", "mV"],
        sig_name=["a", "b"],
        e_p_signal=[x[:, 0], x[:100, 1]],
        samps_per_frame=[2, 1],
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    (multi,) = reader.discover(tmp_path / "multi.hea")
    with pytest.raises(InputError, match=r"multi\.hea: signals have different sampling rates"):
        reader.read(multi)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no \.hea files found: expected WFDB records"):
        reader.discover(tmp_path / "empty")
