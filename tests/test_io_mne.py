"""Reader ``mne``: every foreign file equals mne.io.read_raw, or is refused by name."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mne
import numpy as np
import pytest

from pipeline.exceptions import InputError, SpecError
from pipeline.ingest import ingest
from pipeline.io import get_reader
from pipeline.store import open_cohort

FOREIGN = Path(os.environ.get("COHORT_DATA", Path(__file__).parents[1] / ".." / "shared" / "data"))
FOREIGN = FOREIGN / "foreign"
SUFFIXES = (".edf", ".bdf", ".vhdr", ".fif")
FILES = sorted(
    p for p in FOREIGN.rglob("*") if p.suffix.lower() in SUFFIXES and "sourcedata" not in p.parts
)
# What MNE itself cannot give samples for, and why (each is refused with the file named).
REFUSED = {
    "sub-01_task-pullstand_eeg.edf": "mne.io.read_raw cannot read this file: ValueError",
    "sub-01_task-pullstand_emg.edf": "mne.io.read_raw cannot read this file: ValueError",
    "SC4001EC-Hypnogram.bdf": r"no signal channels \(only annotations",
    "SC4001EC-Hypnogram.edf": r"no signal channels \(only annotations",
    **{f"sub-{k:02d}_task-matchingpennies_eeg.vhdr": "no samples" for k in range(5, 12)},
}

pytestmark = pytest.mark.skipif(not FILES, reason="foreign test files not found")


def _mne_raw(path: Path) -> mne.io.BaseRaw:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mne.io.read_raw(path, preload=True, verbose="error")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FOREIGN)))
def test_foreign_file_equals_mne_or_is_refused_by_name(path: Path) -> None:
    reader = get_reader("mne")
    sf = reader.discover(path)[0]
    if path.name in REFUSED:
        with pytest.raises(InputError, match=rf"{path.name}: .*{REFUSED[path.name]}"):
            reader.read(sf)
        return
    src = reader.read(sf, block_samples=777)  # blocks that do not divide the file
    got = np.concatenate(list(src.blocks()))
    raw = _mne_raw(path)
    types = raw.get_channel_types()
    stim = [n for n, t in zip(raw.ch_names, types, strict=True) if t == "stim"]
    assert src.channels == [n for n in raw.ch_names if n not in stim]
    np.testing.assert_array_equal(got, raw.get_data(picks=src.channels).T.astype(np.float32))
    assert src.sampling_rate == raw.info["sfreq"] and src.n_samples == raw.n_times
    volts = [u for u, t in zip(src.units, src.channel_types, strict=True) if t in ("eeg", "emg")]
    assert set(volts) <= {"V"}
    # events: the annotations (seconds from the first sample), then every stim change
    ann = raw.annotations
    expected = [
        (round(float(o), 6), round(float(d), 6), str(s))
        for o, d, s in zip(ann.onset, ann.duration, ann.description, strict=True)
    ]
    for name in stim:
        ev = mne.find_events(
            raw,
            stim_channel=name,
            consecutive=True,
            shortest_event=1,
            initial_event=True,
            verbose="error",
        )
        prefix = f"{name}/" if len(stim) > 1 else ""
        expected += [
            (round(s / raw.info["sfreq"], 6), 0.0, f"{prefix}{v}") for s, _, v in ev if v != 0
        ]
    found = (
        []
        if src.events is None
        else [
            (round(o, 6), round(d, 6), s)
            for o, d, s in src.events[["onset", "duration", "description"]].itertuples(index=False)
        ]
    )
    assert sorted(found) == sorted(expected)


def test_known_refusals_are_all_among_the_files() -> None:
    """The refusal list names real files (a renamed file must not pass unnoticed)."""
    assert set(REFUSED) <= {p.name for p in FILES}


def test_brainvision_ingests_with_events_units_and_types(tmp_path: Path) -> None:
    vhdr = FOREIGN / "mne-python" / "brainvision" / "test.vhdr"
    ingest(vhdr, "mne", tmp_path / "s.zarr", progress=False)
    ds = open_cohort(tmp_path / "s.zarr").recording("sub-test")
    raw = _mne_raw(vhdr)
    np.testing.assert_array_equal(ds.signal.values, raw.get_data().T.astype(np.float32))
    assert ds.channel.values.tolist() == raw.ch_names
    assert ds.channel_type.values.tolist() == raw.get_channel_types()
    assert set(ds.unit.values[ds.channel_type.values == "eeg"].tolist()) == {"V"}
    assert ds.event_description.values.tolist() == [str(d) for d in raw.annotations.description]
    np.testing.assert_allclose(ds.event_onset.values, raw.annotations.onset - raw.first_time)


def test_stim_channels_kept_as_signal_on_request() -> None:
    path = FOREIGN / "mne-python" / "edf" / "test_bdf_stim_channel.bdf"
    reader = get_reader("mne")
    src = reader.read(reader.discover(path)[0], stim_events=False)
    assert "Status" in src.channels and src.channel_types[src.channels.index("Status")] == "misc"
    with_events = reader.read(reader.discover(path)[0])
    assert "Status" not in with_events.channels and with_events.attrs["stim_channels"] == ["Status"]


def test_folder_discovery_and_options(tmp_path: Path) -> None:
    reader = get_reader("mne")
    files = reader.discover(FOREIGN / "mne-python" / "brainvision")
    folder = FOREIGN / "mne-python" / "brainvision"
    headers = sorted(p for p in folder.iterdir() if p.suffix in (".vhdr", ".fif"))
    assert [f.path for f in files] == headers and len(headers) == 14  # no .eeg, .vmrk
    with pytest.raises(SpecError, match=r"reader 'mne' options: unknown key 'rate'"):
        reader.discover(FOREIGN / "mne-python" / "brainvision", rate=100)
    with pytest.raises(InputError, match=r"option 'channels' names \['Nope'\], not in the file"):
        reader.read(files[0], channels=["Nope"])
    with pytest.raises(InputError, match=r"no files with suffix \.xyz found \(reader 'mne'\)"):
        reader.discover(tmp_path, suffixes=".xyz")


def test_recording_round_trips_through_mne_raw_array(tmp_path: Path) -> None:
    """Store -> RawArray -> store keeps values, names, types, units and annotations."""
    from pipeline.io.base import SourceFile
    from pipeline.io.mne import from_mne, to_mne
    from pipeline.store import write_recording

    vhdr = FOREIGN / "mne-python" / "brainvision" / "test.vhdr"
    ingest(vhdr, "mne", tmp_path / "a.zarr", progress=False)
    ds = open_cohort(tmp_path / "a.zarr").recording("sub-test")
    raw = to_mne(ds)
    ref = _mne_raw(vhdr)
    np.testing.assert_array_equal(raw.get_data().astype(np.float32), ds.signal.values.T)
    np.testing.assert_allclose(raw.get_data(), ref.get_data(), rtol=1e-6, atol=0)
    assert raw.ch_names == ref.ch_names and raw.get_channel_types() == ref.get_channel_types()
    assert list(raw.annotations.description) == list(ref.annotations.description)
    np.testing.assert_allclose(raw.annotations.onset, ref.annotations.onset)
    sf = SourceFile(path=vhdr, subject="back")
    write_recording(
        tmp_path / "b.zarr", sf, from_mne(raw, sf), sha256="0", reader="mne", reader_version="1"
    )
    back = open_cohort(tmp_path / "b.zarr").recording("sub-back")
    np.testing.assert_array_equal(back.signal.values, ds.signal.values)
    for name in ("channel", "channel_type", "unit", "event_description"):
        assert back[name].values.tolist() == ds[name].values.tolist()
    np.testing.assert_array_equal(back.event_onset.values, ds.event_onset.values)
    np.testing.assert_array_equal(back.event_duration.values, ds.event_duration.values)


def test_to_mne_scales_microvolts_and_types_unknown_kinds_misc(make_store) -> None:
    from pipeline.io.mne import to_mne

    store = make_store([{"subject": "01", "n_samples": 300, "modality": "ref"}])
    ds = open_cohort(store).recording(open_cohort(store).recording_ids[0])
    ds = ds.assign_coords(unit=("channel", ["uV", "mV", "V"]))
    raw = to_mne(ds)
    assert raw.get_channel_types() == ["misc"] * 3
    np.testing.assert_allclose(
        raw.get_data().T, ds.signal.values * np.array([1e-6, 1e-3, 1.0]), rtol=1e-7
    )
