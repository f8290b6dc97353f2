"""Tests of the ``edf`` reader: all of eeg-arithmetic, written EDF+/BDF files, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyedflib
import pytest

from pipeline.exceptions import InputError, SpecError
from pipeline.io import get_reader
from pipeline.io.edf import channel_name_and_type

PATTERN = r"Subject(?P<subject>\d+)_(?P<run>\d)"
EEG_NAMES = "Fp1 Fp2 F3 F4 F7 F8 T3 T4 C3 C4 T5 T6 P3 P4 O1 O2 Fz Cz Pz".split()


def arithmetic_options(eeg_dir: Path) -> dict:
    return {
        "pattern": PATTERN,
        "label_from": "run",
        "label_map": {"1": "rest", "2": "task"},
        "metadata": eeg_dir / "subject-info.csv",
        "metadata_key": "Subject",
    }


def concat(source) -> np.ndarray:
    return np.concatenate(list(source.blocks()), axis=0)


def write_edf(
    path: Path,
    labels: list[str],
    rates: list[int],
    seconds: int = 4,
    file_type: int = pyedflib.FILETYPE_EDFPLUS,
    annotations: list[tuple[float, float, str]] = (),
    dimension: str = "uV",
) -> list[np.ndarray]:
    """Write a small file with pyedflib; return the signals written (physical values)."""
    rng = np.random.default_rng(len(labels))
    signals = [rng.uniform(-100, 100, size=rate * seconds) for rate in rates]
    writer = pyedflib.EdfWriter(str(path), len(labels), file_type=file_type)
    try:
        writer.setSignalHeaders(
            [
                {
                    "label": label,
                    "dimension": dimension,
                    "sample_frequency": rate,
                    "physical_max": 200.0,
                    "physical_min": -200.0,
                    "digital_max": 8388607 if file_type in (2, 3) else 32767,
                    "digital_min": -8388608 if file_type in (2, 3) else -32768,
                    "prefilter": "HP:0.1Hz",
                    "transducer": "AgCl",
                }
                for label, rate in zip(labels, rates, strict=True)
            ]
        )
        writer.writeSamples(signals)
        for onset, duration, text in annotations:
            writer.writeAnnotation(onset, duration, text)
    finally:
        writer.close()
    return signals


def test_eeg_arithmetic_all_files(eeg_dir: Path) -> None:
    reader = get_reader("edf")
    options = arithmetic_options(eeg_dir)
    files = reader.discover(eeg_dir, **options)
    assert len(files) == 32
    assert {f.subject for f in files} == {f"{i:02d}" for i in range(16)}
    info = pd.read_csv(eeg_dir / "subject-info.csv").set_index("Subject")
    for file in files:
        assert file.run in {"1", "2"}
        assert file.extra["label"] == {"1": "rest", "2": "task"}[file.run]
        row = info.loc[f"Subject{file.subject}"]
        meta = file.extra["metadata"]
        assert meta == {
            "age": int(row["Age"]),
            "gender": row["Gender"],
            "recording_year": int(row["Recording year"]),
            "number_of_subtractions": float(row["Number of subtractions"]),
            "count_quality": int(row["Count quality"]),
        }
        src = reader.read(file, **options)
        assert src.sampling_rate == 500.0
        assert src.channels == [*EEG_NAMES, "A2-A1", "ECG"]
        assert src.channel_types == ["eeg"] * 19 + ["ref", "ecg"]
        assert src.units == ["V"] * 21
        assert src.channel_attrs["source_unit"] == ["uV"] * 20 + ["mV"]
        assert src.modality == "eeg" and src.label == file.extra["label"]
        assert src.attrs["age"] == meta["age"] and src.attrs["gender"] == meta["gender"]
        signal = concat(src)
        with pyedflib.EdfReader(str(file.path)) as edf:
            prefilters = [h["prefilter"] for h in edf.getSignalHeaders()]
            assert src.channel_attrs["prefilter"] == prefilters
            assert src.start_time == edf.getStartdatetime().isoformat()
            assert signal.shape == (edf.getNSamples()[0], 21) == (src.n_samples, 21)
            for c, factor in ((0, 1e-6), (7, 1e-6), (19, 1e-6), (20, 1e-3)):
                expected = (edf.readSignal(c) * factor).astype(np.float32)
                np.testing.assert_array_equal(signal[:, c], expected)


def test_eeg_arithmetic_volts_equal_mne_within_float32_rounding(eeg_dir: Path) -> None:
    """The store's volts are MNE's volts to float32 rounding: one unit for every reader."""
    import mne

    reader = get_reader("edf")
    path = eeg_dir / "Subject03_2.edf"
    got = concat(reader.read(reader.discover(path)[0]))
    expected = mne.io.read_raw_edf(path, verbose="error").get_data().T
    assert got.dtype == np.float32 and got.shape == expected.shape
    # float32 keeps 24 bits: a relative error of 2**-24, plus the value next to zero.
    np.testing.assert_allclose(got, expected, rtol=2**-23, atol=1e-12)
    assert np.abs(expected).max() > 1e-5  # volts, not microvolts


def test_blocks_stream_in_requested_size(eeg_dir: Path) -> None:
    reader = get_reader("edf")
    (file,) = reader.discover(eeg_dir / "Subject03_2.edf", pattern=PATTERN)
    whole = concat(reader.read(file))
    blocks = list(reader.read(file, block_samples=7000).blocks())
    assert [b.shape[0] for b in blocks[:-1]] == [7000] * (len(blocks) - 1)
    assert all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_metadata_missing_subject(eeg_dir: Path, tmp_path: Path) -> None:
    table = tmp_path / "info.csv"
    table.write_text("Subject,Age\nSubject01,20\n")
    with pytest.raises(InputError, match=r"subject '00' not found in metadata table .*'Subject'"):
        get_reader("edf").discover(
            eeg_dir / "Subject00_1.edf", pattern=PATTERN, metadata=table, metadata_key="Subject"
        )
    with pytest.raises(
        SpecError, match=r"key column 'Name' not found; columns are \['Subject', 'Age'\]"
    ):
        get_reader("edf").discover(eeg_dir, pattern=PATTERN, metadata=table, metadata_key="Name")


def test_pattern_not_matching(eeg_dir: Path) -> None:
    with pytest.raises(
        InputError, match=r"stem 'Subject00_1' does not match pattern 'S\(\?P<subject>"
    ):
        get_reader("edf").discover(eeg_dir / "Subject00_1.edf", pattern=r"S(?P<subject>\d+)")
    with pytest.raises(SpecError, match=r"has no named group 'subject'"):
        get_reader("edf").discover(eeg_dir, pattern=r"Subject\d+_\d")
    with pytest.raises(InputError, match=r"group 'run' is '1', which 'label_map' does not map"):
        get_reader("edf").discover(
            eeg_dir / "Subject00_1.edf", pattern=PATTERN, label_from="run", label_map={"2": "t"}
        )


def test_unknown_option(eeg_dir: Path) -> None:
    with pytest.raises(
        SpecError, match=r"reader 'edf' options: unknown key 'sep' \(valid keys here: .*pattern"
    ):
        get_reader("edf").discover(eeg_dir, sep=",")
    # the closest valid option is named: rat= for rate=
    with pytest.raises(
        SpecError,
        match=r"reader 'edf' options: unknown key 'rat'; did you mean 'rate'\? \(valid keys here: "
        r"block_samples, channels, label_from, .*, rate, resample, status_events\)",
    ):
        get_reader("edf").discover(eeg_dir, rat=256)
    with pytest.raises(
        SpecError,
        match=r"reader 'edf' options: key 'rate': expected a value greater than 0; found -1",
    ):
        get_reader("edf").discover(eeg_dir, rate=-1)
    with pytest.raises(
        SpecError, match=r"key 'status_events': expected a valid boolean, .*; found 'maybe'"
    ):
        get_reader("edf").read(get_reader("edf").discover(eeg_dir)[0], status_events="maybe")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("EEG Fp1", ("Fp1", "eeg")),
        ("EEG A2-A1", ("A2-A1", "ref")),
        ("ECG ECG", ("ECG", "ecg")),
        ("EKG II", ("II", "ecg")),
        ("EMG chin", ("chin", "emg")),
        ("EOG left", ("left", "eog")),
        ("Resp nasal", ("nasal", "resp")),
        ("Cz", ("Cz", "eeg")),
        ("Fp1-F3", ("Fp1-F3", "eeg")),
        ("M1", ("M1", "ref")),
        ("Status", ("Status", "misc")),
        ("Fc5.", ("Fc5.", "eeg")),  # PhysioNet eegmmidb pads labels with dots
        ("Iz..", ("Iz..", "eeg")),
        ("EMG0", ("EMG0", "emg")),  # BIDS-EMG examples
        ("ECG_2", ("ECG_2", "ecg")),
        ("EMGx", ("EMGx", "misc")),
    ],
)
def test_channel_types(label: str, expected: tuple[str, str]) -> None:
    assert channel_name_and_type(label) == expected


def test_edf_plus_annotations(tmp_path: Path) -> None:
    path = tmp_path / "rec.edf"
    notes = [(0.5, 1.0, "stim A"), (2.25, 0.0, "blink"), (3.0, -1, "note")]
    signals = write_edf(path, ["EEG Cz", "EEG Pz", "EMG chin"], [256] * 3, annotations=notes)
    src = get_reader("edf").read(get_reader("edf").discover(path)[0])
    assert src.channels == ["Cz", "Pz", "chin"] and src.modality == "eeg"
    assert src.channel_types == ["eeg", "eeg", "emg"]
    assert src.attrs["file_type"] == "EDF+" and src.channel_attrs["transducer"] == ["AgCl"] * 3
    assert src.channel_attrs["original_label"] == ["EEG Cz", "EEG Pz", "EMG chin"]
    events = src.events
    np.testing.assert_allclose(events["onset"], [0.5, 2.25, 3.0])
    np.testing.assert_allclose(events["duration"], [1.0, 0.0, np.nan])
    assert list(events["description"]) == ["stim A", "blink", "note"]
    signal = concat(src)
    assert src.units == ["V"] * 3 and src.channel_attrs["source_unit"] == ["uV"] * 3
    # 16-bit digitisation of +-200 uV: one step is 400 / 65535 uV, stored in volts.
    for c in range(3):
        np.testing.assert_allclose(signal[:, c], signals[c] * 1e-6, atol=400 / 65535 * 1e-6)


def test_bdf(tmp_path: Path) -> None:
    path = tmp_path / "sub7.bdf"
    signals = write_edf(path, ["EEG O1", "EEG O2"], [512, 512], file_type=pyedflib.FILETYPE_BDF)
    (file,) = get_reader("edf").discover(tmp_path)
    assert file.subject == "sub7"
    src = get_reader("edf").read(file)
    assert src.attrs["file_type"] == "BDF" and src.n_samples == 512 * 4
    signal = concat(src)
    np.testing.assert_allclose(signal[:, 1], signals[1] * 1e-6, atol=(400 / 2**24 + 1e-5) * 1e-6)


def test_multi_rate_refused_unless_selected(tmp_path: Path) -> None:
    path = tmp_path / "multi.edf"
    signals = write_edf(path, ["EEG C3", "EEG C4", "ECG I"], [256, 256, 128])
    reader = get_reader("edf")
    (file,) = reader.discover(path)
    with pytest.raises(
        InputError, match=r"different sampling rates \(C3=256 Hz, C4=256 Hz, I=128 Hz\)"
    ):
        reader.read(file)
    src = reader.read(file, rate=256)
    assert src.channels == ["C3", "C4"] and src.sampling_rate == 256
    assert src.attrs["dropped_channels"] == ["I"]
    src = reader.read(file, channels=["I"])
    assert src.channels == ["I"] and src.sampling_rate == 128 and src.modality == "ecg"
    np.testing.assert_allclose(concat(src)[:, 0], signals[2] * 1e-6, atol=400 / 65535 * 1e-6)
    with pytest.raises(InputError, match=r"different sampling rates \(C3=256 Hz, I=128 Hz\)"):
        reader.read(file, channels=["C3", "ECG I"])
    with pytest.raises(InputError, match=r"'channels' names \['Oz'\], not in the file"):
        reader.read(file, channels=["Oz"])
    with pytest.raises(
        InputError, match=r"'rate' is 500 Hz; no channel has it \(rates: \[128.0, 256.0\]\)"
    ):
        reader.read(file, rate=500)


def test_multi_rate_resampled_to_one_rate_on_request(tmp_path: Path) -> None:
    """``resample=`` brings every channel to one rate with resample_poly, never silently."""
    from scipy.signal import resample_poly

    path = tmp_path / "multi.edf"
    write_edf(path, ["EEG C3", "EEG C4", "ECG I"], [256, 256, 128])
    reader = get_reader("edf")
    (file,) = reader.discover(path)
    src = reader.read(file, resample=256, block_samples=300)
    assert src.channels == ["C3", "C4", "I"] and src.sampling_rate == 256.0
    assert src.n_samples == 1024 and src.attrs["original_rates"] == [256.0, 256.0, 128.0]
    got = concat(src)
    with pyedflib.EdfReader(str(path)) as edf:
        c3, ecg = edf.readSignal(0) * 1e-6, edf.readSignal(2) * 1e-6
    np.testing.assert_array_equal(got[:, 0], c3.astype(np.float32))
    np.testing.assert_array_equal(got[:, 2], resample_poly(ecg, 2, 1).astype(np.float32))
    down = reader.read(file, resample=128)
    assert down.n_samples == 512
    np.testing.assert_array_equal(concat(down)[:, 2], ecg.astype(np.float32))
    with pytest.raises(InputError, match=r"'resample' 100 Hz is not a small rational"):
        reader.read(file, resample=100.0001)
    with pytest.raises(InputError, match=r"or resample them all with 'resample=<Hz>'"):
        reader.read(file)


def test_truncated_file(eeg_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "Subject00_1.edf"
    shutil.copyfile(eeg_dir / "Subject00_1.edf", path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    (file,) = get_reader("edf").discover(path, pattern=PATTERN)
    with pytest.raises(
        InputError,
        match=r"truncated file: the header declares 182 data records \(3848636 bytes\), "
        r"found 3847636 bytes \(181 complete records\)",
    ):
        get_reader("edf").read(file)


def test_empty_and_not_edf(tmp_path: Path) -> None:
    empty = tmp_path / "empty.edf"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty file"):
        get_reader("edf").read(get_reader("edf").discover(empty)[0])
    text = tmp_path / "text.edf"
    text.write_text("time,value\n" * 40)
    with pytest.raises(InputError, match=r"not an EDF or BDF file: expected the version field"):
        get_reader("edf").read(get_reader("edf").discover(text)[0])


def test_blocks_memory_bounded(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "long.edf"
    write_edf(path, ["EEG C3", "EEG C4"], [1000, 1000], seconds=1200)
    src = get_reader("edf").read(get_reader("edf").discover(path)[0], block_samples=10_000)
    total = 0
    tracemalloc.start()
    try:
        for block in src.blocks():
            total += block.nbytes
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 1_200_000 * 2 * 4
    assert peak < total / 5


def test_session_and_run_from_pattern(tmp_path: Path) -> None:
    write_edf(tmp_path / "p12_s2_r3.edf", ["EEG Cz"], [128], seconds=1)
    (file,) = get_reader("edf").discover(
        tmp_path,
        pattern=r"p(?P<subject>\d+)_s(?P<session>\d)_r(?P<run>\d)",
        label_from="session",
    )
    assert file.recording_id == "sub-12_ses-2_run-3" and file.extra["label"] == "2"


def test_duplicate_labels_renamed_as_mne_does() -> None:
    """Duplicated labels get MNE's -0, -1 suffixes; values stay those of the file."""
    import os

    import mne

    data = Path(os.environ.get("COHORT_DATA", Path(__file__).parents[1] / ".." / "shared" / "data"))
    path = data / "foreign" / "mne-python" / "edf" / "duplicate_channel_labels.edf"
    if not path.exists():
        pytest.skip("foreign test files not found")
    reader = get_reader("edf")
    src = reader.read(reader.discover(path)[0])
    raw = mne.io.read_raw_edf(path, verbose="error")
    assert src.channels == ["EEG F1-Ref-0", "F2-Ref", "EEG F1-Ref-1"]
    assert raw.ch_names == ["EEG F1-Ref-0", "EEG F2-Ref", "EEG F1-Ref-1"]
    assert src.channel_attrs["original_label"] == ["EEG F1-Ref", "EEG F2-Ref", "EEG F1-Ref"]
    got = np.concatenate(list(src.blocks()))
    # both in volts: pyedflib's physical uV scaled in float64, then cast to float32
    np.testing.assert_allclose(got, raw.get_data().T, rtol=2**-23, atol=1e-12)


@pytest.mark.parametrize("name", ["mne-python/edf/test_bdf_stim_channel.bdf", "edfio/mne_test.bdf"])
def test_bdf_status_channel_decoded_into_events_as_mne_finds_them(name: str) -> None:
    import os

    import mne

    data = Path(os.environ.get("COHORT_DATA", Path(__file__).parents[1] / ".." / "shared" / "data"))
    path = data / "foreign" / name
    if not path.exists():
        pytest.skip("foreign test files not found")
    reader = get_reader("edf")
    (file,) = reader.discover(path)
    src = reader.read(file)
    raw = mne.io.read_raw(path, verbose="error")
    found = mne.find_events(
        raw, consecutive=True, initial_event=True, shortest_event=1, verbose="error"
    )
    found = found[found[:, 2] != 0]
    assert "Status" not in src.channels
    codes = src.events[src.events["description"].str.isdigit()]
    assert codes["description"].tolist() == [str(v) for v in found[:, 2]]
    np.testing.assert_allclose(codes["onset"], found[:, 0] / raw.info["sfreq"])
    assert "Status" in reader.read(file, status_events=False).channels


def test_plain_edf_annotation_signal_kept_as_events() -> None:
    """A plain EDF with an 'EDF Annotations' signal: annotations as MNE reads them."""
    import os

    import mne

    data = Path(os.environ.get("COHORT_DATA", Path(__file__).parents[1] / ".." / "shared" / "data"))
    path = data / "foreign" / "pyedflib" / "test_legacy.edf"
    if not path.exists():
        pytest.skip("foreign test files not found")
    reader = get_reader("edf")
    src = reader.read(reader.discover(path)[0])
    raw = mne.io.read_raw_edf(path, verbose="error")
    assert "EDF Annotations" not in src.channels and src.channels == raw.ch_names
    assert src.events["description"].tolist() == list(raw.annotations.description)
    np.testing.assert_allclose(src.events["onset"], raw.annotations.onset)
    np.testing.assert_allclose(concat(src), raw.get_data().T, rtol=2**-23, atol=1e-12)


def _as_discontinuous(path: Path, out: Path, onsets: dict[int, bytes] | None = None) -> Path:
    """Copy an EDF+C/BDF+C file as EDF+D/BDF+D, rewriting record onsets given as bytes."""
    data = bytearray(path.read_bytes())
    data[192:197] = data[192:197].replace(b"+C", b"+D")
    header = int(data[184:192])
    for record, (old, new) in (onsets or {}).items():
        # the time-keeping TAL of each record: "+<onset>\x14\x14"
        start = data.index(b"+" + old + b"\x14\x14", header)
        assert len(old) == len(new) and start > header + record  # past earlier records
        data[start + 1 : start + 1 + len(old)] = new
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("file_type", [pyedflib.FILETYPE_EDFPLUS, pyedflib.FILETYPE_BDFPLUS])
def test_discontinuous_file_with_contiguous_records_is_read(tmp_path: Path, file_type) -> None:
    """EDF+D/BDF+D whose records follow each other: the samples and events of the +C file."""
    import mne

    suffix = ".bdf" if file_type == pyedflib.FILETYPE_BDFPLUS else ".edf"
    plain = tmp_path / f"c{suffix}"
    notes = [(0.5, 1.0, "stim A"), (2.25, 0.0, "blink")]
    write_edf(
        plain,
        ["EEG Cz", "EEG Pz", "ECG I"],
        [256, 256, 128],
        file_type=file_type,
        annotations=notes,
    )
    disc = _as_discontinuous(plain, tmp_path / f"d{suffix}")
    with pytest.raises(OSError, match="discontinuous"):
        pyedflib.EdfReader(str(disc))  # why the reader reads these bytes itself
    reader = get_reader("edf")
    a = reader.read(reader.discover(plain)[0], rate=256, block_samples=300)
    b = reader.read(reader.discover(disc)[0], rate=256, block_samples=300)
    assert b.channels == a.channels == ["Cz", "Pz"] and b.n_samples == a.n_samples == 1024
    assert b.units == ["V", "V"] and b.sampling_rate == 256.0
    assert b.channel_attrs == a.channel_attrs and b.start_time == a.start_time
    np.testing.assert_array_equal(concat(b), concat(a))
    pd.testing.assert_frame_equal(b.events, a.events)
    ecg = reader.read(reader.discover(disc)[0], channels=["I"], block_samples=77)
    np.testing.assert_array_equal(
        concat(ecg), concat(reader.read(reader.discover(plain)[0], channels=["I"]))
    )
    # and MNE's volts (MNE reads an EDF+D as continuous), to float32 rounding
    read_raw = mne.io.read_raw_bdf if suffix == ".bdf" else mne.io.read_raw_edf
    raw = read_raw(disc, verbose="error")
    np.testing.assert_allclose(concat(b), raw.get_data(picks=[0, 1]).T, rtol=2**-23, atol=1e-12)


def test_discontinuous_file_with_a_gap_is_refused_with_its_position(tmp_path: Path) -> None:
    plain = tmp_path / "c.edf"
    write_edf(plain, ["EEG Cz", "EEG Pz"], [256, 256], seconds=5)
    disc = _as_discontinuous(plain, tmp_path / "d.edf", {3: (b"3", b"7")})
    reader = get_reader("edf")
    (file,) = reader.discover(disc)
    with pytest.raises(
        InputError,
        match=r"d\.edf: discontinuous recording: data record 3 starts at 7 s, expected 3 s "
        r"\(record 2 at 2 s \+ 1 s\): a gap of 4 s \(1 record\(s\) off the contiguous grid\); "
        r"expected contiguous records",
    ):
        reader.read(file)


def _no_client() -> None:
    raise ValueError("No global client found")


def test_a_store_of_the_microvolt_reader_is_re_ingested_in_volts(tmp_path, monkeypatch) -> None:
    """edf 1.0 stored uV; its recordings' ingest keys differ from 2.0's, so none is kept."""
    from pipeline.ingest import ingest
    from pipeline.io import edf as edf_module
    from pipeline.store import open_cohort

    src = tmp_path / "src"
    src.mkdir()
    signals = write_edf(src / "s1.edf", ["EEG Cz", "EEG Pz"], [128, 128])
    store = tmp_path / "s.zarr"
    with monkeypatch.context() as m:  # the 1.0 reader: the header's unit, samples as read
        # in this process: a session's Client (another test's) would run the unpatched reader
        m.setattr("distributed.get_client", _no_client)
        m.setattr(edf_module.EdfReader, "version", "1.0")
        m.setattr(edf_module, "store_units", lambda u: (list(u), np.ones(len(u))))
        first = ingest(src, "edf", store, progress=False)
    assert first.added == ["sub-s1"]
    assert list(open_cohort(store).recording("sub-s1").unit.values) == ["uV", "uV"]
    again = ingest(src, "edf", store, progress=False)
    assert again.replaced == ["sub-s1"] and again.unchanged == []
    ds = open_cohort(store).recording("sub-s1")
    assert list(ds.unit.values) == ["V", "V"] and list(ds.source_unit.values) == ["uV", "uV"]
    np.testing.assert_allclose(ds.signal.values[:, 0], signals[0] * 1e-6, atol=400 / 65535 * 1e-6)
    assert ingest(src, "edf", store, progress=False).unchanged == ["sub-s1"]
