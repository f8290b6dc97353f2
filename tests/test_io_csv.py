"""Tests of the generic ``csv`` reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.exceptions import InputError, SpecError
from pipeline.io import get_reader

reader = get_reader("csv")


def concat(source) -> np.ndarray:
    return np.concatenate(list(source.blocks()), axis=0)


def make_frame(n: int = 500, fs: float = 250.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "t": np.arange(n) / fs,
            "Fz": rng.normal(size=n),
            "Cz": rng.normal(size=n) * 1e-5,
            "EMG1": rng.normal(size=n),
            "state": rng.choice(["rest", "task", "move"], size=n),
        }
    )


def read_one(path: Path, **options):
    (file,) = reader.discover(path, **options)
    return reader.read(file, **options)


def test_time_column_labels_units_types(tmp_path: Path) -> None:
    df = make_frame()
    path = tmp_path / "subj-07.csv"
    df.to_csv(path, index=False)
    options = {
        "time_column": "t",
        "label_column": "state",
        "units": {"Fz": "uV", "Cz": "V", "EMG1": "mV"},
        "channel_types": ["eeg", "eeg", "emg"],
        "block_size": 4096,  # many streaming batches
    }
    (file,) = reader.discover(path, **options)
    assert file.subject == "subj07" and file.run is None
    src = reader.read(file, **options)
    assert src.sampling_rate == 250.0 and src.n_samples == 500
    assert src.channels == ["Fz", "Cz", "EMG1"]
    # one unit convention: voltages in volts, the declared unit kept per channel
    assert src.units == ["V", "V", "V"] and src.channel_types == ["eeg", "eeg", "emg"]
    assert src.channel_attrs == {"source_unit": ["uV", "V", "mV"]}
    assert src.modality == "eeg"
    blocks = list(src.blocks())
    assert len(blocks) > 1 and all(b.dtype == np.float32 for b in blocks)
    volts = df[["Fz", "Cz", "EMG1"]].to_numpy(np.float64) * [1e-6, 1.0, 1e-3]
    np.testing.assert_array_equal(np.concatenate(blocks), volts.astype(np.float32))
    assert src.label_names == {0: "move", 1: "rest", 2: "task"}
    names = np.array([src.label_names[c] for c in src.labels])
    np.testing.assert_array_equal(names, df["state"].to_numpy())


def test_streaming_without_cache_equals_cached(tmp_path: Path) -> None:
    df = make_frame(n=3000)
    path = tmp_path / "a.csv"
    df.to_csv(path, index=False)
    cached = read_one(path, sampling_rate=500, signal_columns=["Fz", "EMG1"])
    streamed = read_one(
        path, sampling_rate=500, signal_columns=["Fz", "EMG1"], cache_bytes=0, block_size=8192
    )
    assert streamed.sampling_rate == 500.0 and streamed.labels is None
    assert streamed.units == ["a.u."] * 2 and streamed.channel_types == ["misc"] * 2
    np.testing.assert_array_equal(concat(streamed), concat(cached))
    np.testing.assert_array_equal(concat(streamed), df[["Fz", "EMG1"]].to_numpy(np.float32))
    assert len(list(streamed.blocks())) > 1


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 400),
    n_channels=st.integers(1, 4),
    block_size=st.integers(64, 4096),
    cache=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_roundtrip_any_block_size(
    tmp_path: Path, n: int, n_channels: int, block_size: int, cache: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(scale=10.0 ** rng.integers(-6, 3), size=(n, n_channels))
    path = tmp_path / f"h{seed}_{n}.csv"
    pd.DataFrame(values, columns=[f"c{i}" for i in range(n_channels)]).to_csv(path, index=False)
    src = read_one(
        path, sampling_rate=100, block_size=block_size, cache_bytes=1 << 30 if cache else 0
    )
    assert src.n_samples == n
    np.testing.assert_array_equal(concat(src), values.astype(np.float32))


def test_integer_labels_tab_delimiter_and_pattern(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {"time_ms": np.arange(0, 200, 2), "x": rng.normal(size=100), "cls": rng.integers(0, 3, 100)}
    )
    path = tmp_path / "S03_R2.tsv"
    df.to_csv(path, sep="\t", index=False)
    options = {
        "delimiter": "\t",
        "time_column": "time_ms",
        "time_unit": "ms",
        "label_column": "cls",
        "label_names": {0: "rest", 1: "fist"},
        "pattern": r"S(?P<subject>\d+)_R(?P<run>\d+)",
        "modality": "emg",
    }
    (file,) = reader.discover(tmp_path, **options)
    assert file.recording_id == "sub-03_run-2"
    src = reader.read(file, **options)
    assert src.sampling_rate == 500.0 and src.channel_types == ["emg"] and src.modality == "emg"
    np.testing.assert_array_equal(src.labels, df["cls"].to_numpy())
    assert src.label_names == {0: "rest", 1: "fist", 2: "2"}
    assert src.attrs["time_offset_s"] == 0.0


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("")
    with pytest.raises(InputError, match=r"e.csv: empty file"):
        read_one(path, sampling_rate=100)


def test_missing_mapped_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    make_frame(n=10).to_csv(path, index=False)
    with pytest.raises(
        InputError,
        match=r"mapped column\(s\) \['time', 'Pz'\] not found; "
        r"found columns \['t', 'Fz', 'Cz', 'EMG1', 'state'\]",
    ):
        read_one(path, time_column="time", signal_columns=["Fz", "Pz"])


def test_non_numeric_value(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("t,a,b\n0,1,2\n0.5,1,2\n1.0,1,oops\n1.5,1,2\n")
    with pytest.raises(InputError, match=r"line 4, column 'b': expected a number, found 'oops'"):
        read_one(path, time_column="t")


def test_wrong_column_count(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("t,a,b\n0,1,2\n0.5,1,2,3\n1.0,1,2\n")
    with pytest.raises(InputError, match=r"line 3: expected 3 fields .* found 4"):
        read_one(path, time_column="t")


def test_non_uniform_time(tmp_path: Path) -> None:
    t = np.arange(50) * 0.01
    t[30:] += 0.005
    path = tmp_path / "u.csv"
    pd.DataFrame({"t": t, "a": np.ones(50)}).to_csv(path, index=False)
    with pytest.raises(
        InputError,
        match=r"line 32, column 't': expected uniform time steps of 0.01.* found a step of 0.015",
    ):
        read_one(path, time_column="t", block_size=256)


def test_time_step_disagrees_with_sampling_rate(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    pd.DataFrame({"t": np.arange(20) * 0.002, "a": np.ones(20)}).to_csv(path, index=False)
    with pytest.raises(
        InputError, match=r"line 3, column 't': expected uniform time steps of 0.001"
    ):
        read_one(path, time_column="t", sampling_rate=1000)


def test_option_errors(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    make_frame(n=10).to_csv(path, index=False)
    with pytest.raises(SpecError, match=r"give option 'time_column' .* or 'sampling_rate'"):
        reader.discover(path)
    with pytest.raises(
        SpecError, match=r"reader 'csv' options: unknown key 'sep' \(valid keys here: .*delimiter"
    ):
        reader.discover(path, sep=";", sampling_rate=10)
    with pytest.raises(
        SpecError,
        match=r"reader 'csv' options: key 'time_unit': expected 's', 'ms' or 'us'; found 'min'",
    ):
        reader.discover(path, sampling_rate=10, time_unit="min")
    with pytest.raises(
        SpecError,
        match=r"key 'delimiter': expected string should have at most 1 character; found ';;'",
    ):
        reader.discover(path, sampling_rate=10, delimiter=";;")
    with pytest.raises(SpecError, match=r"'units' has 2 values, expected one per channel \(3"):
        read_one(path, time_column="t", label_column="state", units=["V", "V"])
    with pytest.raises(InputError, match=r"o.csv: file name stem 'o' does not match pattern"):
        reader.discover(path, sampling_rate=10, pattern=r"sub(?P<subject>\d+)")
