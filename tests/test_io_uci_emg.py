"""Tests of the ``uci-emg`` reader: real archive files and every bad-input error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.exceptions import InputError, SpecError
from pipeline.io import get_reader
from pipeline.io._fastparse import parse_rows, parse_rows_reference, resample_rows
from pipeline.io.uci_emg import COLUMNS, LABEL_NAMES, parse_file, resample_uniform

NAME = "1_raw_data_13-12_22.03.16.txt"


@pytest.fixture(scope="session")
def emg_files(emg_dir: Path) -> list:
    return get_reader("uci-emg").discover(emg_dir)


def concat(source) -> np.ndarray:
    return np.concatenate(list(source.blocks()), axis=0)


def write(tmp_path: Path, text: str, name: str = NAME, subject: str = "01") -> Path:
    folder = tmp_path / subject
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


HEADER = "\t".join(COLUMNS) + "\n"


def row(t: int, cls: int = 0, v: str = "1e-05") -> str:
    return "\t".join([str(t), *[v] * 8, str(cls)]) + "\n"


def read(path: Path):
    reader = get_reader("uci-emg")
    (file,) = reader.discover(path)
    return reader.read(file)


def test_discover_every_file_and_subject(emg_dir: Path, emg_files: list) -> None:
    on_disk = sorted(emg_dir.glob("*/*.txt"))
    assert len(emg_files) == len(on_disk) == 51
    assert [f.path for f in emg_files] == on_disk
    assert {f.subject for f in emg_files} == {p.name for p in emg_dir.iterdir() if p.is_dir()}
    assert {f.run for f in emg_files} == {"1", "2"}
    assert all(f.session is None for f in emg_files)
    # Subject 02 has only series 2, as the archive's README says.
    assert [f.run for f in emg_files if f.subject == "02"] == ["2"]
    first = next(f for f in emg_files if f.path.name == NAME and f.subject == "01")
    assert first.recording_id == "sub-01_run-1"
    assert first.extra["start_time"] == "2016-03-22T13:12:00"


def test_all_files_equal_source_at_original_timestamps(emg_files: list) -> None:
    reader = get_reader("uci-emg")
    for file in emg_files:
        ref = pd.read_csv(file.path, sep="\t")
        t = ref["time"].to_numpy()
        src = reader.read(file)
        signal = concat(src)
        idx = t - t[0]
        assert src.n_samples == signal.shape[0] == t[-1] - t[0] + 1
        expected = ref[COLUMNS[1:9]].to_numpy().astype(np.float32)
        np.testing.assert_array_equal(signal[idx], expected, err_msg=str(file.path))
        np.testing.assert_array_equal(src.labels[idx], ref["class"].to_numpy())
        steps = np.diff(t)
        assert src.attrs["n_gaps"] == int((steps > 1).sum())
        assert src.attrs["longest_gap_ms"] == int(steps.max())
        assert src.attrs["n_original_samples"] == len(t)
        assert src.attrs["time_offset_ms"] == t[0]


def test_metadata_and_interpolation_of_one_file(emg_files: list) -> None:
    file = emg_files[0]
    src = get_reader("uci-emg").read(file)
    assert src.sampling_rate == 1000.0
    assert src.channels == [f"channel{i}" for i in range(1, 9)]
    assert src.units == ["V"] * 8 and src.channel_types == ["emg"] * 8
    assert src.modality == "emg" and src.label is None
    assert src.label_names == LABEL_NAMES
    assert src.start_time == "2016-03-22T13:12:00"
    assert "linear interpolation" in src.attrs["resampling"]
    assert "previous sample" in src.attrs["resampling"]
    blocks = list(src.blocks())
    assert all(b.dtype == np.float32 and b.shape[1] == 8 for b in blocks)
    ref = pd.read_csv(file.path, sep="\t")
    t = ref["time"].to_numpy()
    grid = np.arange(t[0], t[-1] + 1)
    signal = concat(src)
    for c in range(8):
        expected = np.interp(grid, t, ref[f"channel{c + 1}"].to_numpy())
        np.testing.assert_allclose(signal[:, c], expected.astype(np.float32), rtol=1e-6, atol=1e-12)
    held = ref["class"].to_numpy()[np.searchsorted(t, grid, side="right") - 1]
    np.testing.assert_array_equal(src.labels, held)


def test_resample_uniform_reference() -> None:
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.choice([1, 1, 1, 2, 5], size=200)) + 3
    values = rng.normal(size=(200, 3))
    classes = rng.integers(0, 7, size=200)
    signal, labels = resample_uniform(t, values, classes)
    grid = np.arange(t[0], t[-1] + 1)
    for c in range(3):
        np.testing.assert_allclose(signal[:, c], np.interp(grid, t, values[:, c]), rtol=1e-6)
    np.testing.assert_array_equal(signal[t - t[0]], values.astype(np.float32))
    prev = np.array([classes[t <= g][-1] for g in grid])
    np.testing.assert_array_equal(labels, prev)


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.integers(1, 15), min_size=1, max_size=60),
    start=st.integers(0, 10_000),
    seed=st.integers(0, 2**16),
)
def test_resample_uniform_property(steps: list[int], start: int, seed: int) -> None:
    t = start + np.concatenate([[0], np.cumsum(steps)])
    rng = np.random.default_rng(seed)
    values = rng.normal(scale=1e-4, size=(t.size, 2))
    classes = rng.integers(0, 8, size=t.size)
    signal, labels = resample_uniform(t, values, classes)
    grid = np.arange(t[0], t[-1] + 1)
    assert signal.shape == (grid.size, 2) and labels.shape == (grid.size,)
    np.testing.assert_array_equal(signal[t - t[0]], values.astype(np.float32))
    for c in range(2):
        ref = np.interp(grid, t, values[:, c])
        np.testing.assert_allclose(signal[:, c], ref.astype(np.float32), rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(labels, classes[np.searchsorted(t, grid, side="right") - 1])
    kernel_signal, kernel_labels = resample_rows(t, values, classes)
    assert kernel_signal.tobytes() == signal.tobytes()  # Numba kernel == NumPy reference
    np.testing.assert_array_equal(kernel_labels, labels)


def test_fast_parser_equals_pyarrow_on_real_files(emg_files: list) -> None:
    import pyarrow.csv as pacsv

    for file in emg_files[:3]:
        data = file.path.read_bytes()
        fast = parse_rows(data, 8)
        assert fast is not None
        table = pacsv.read_csv(file.path, parse_options=pacsv.ParseOptions(delimiter="\t"))
        np.testing.assert_array_equal(fast[0], table.column("time").to_numpy())
        ref = np.column_stack([table.column(f"channel{i}").to_numpy() for i in range(1, 9)])
        assert fast[1].tobytes() == ref.astype(np.float64).tobytes()  # bit-identical
        np.testing.assert_array_equal(fast[2], table.column("class").to_numpy())


FLOAT_FORMATS = ["{!r}", "{:g}", "{:.3e}", "{:.6f}", "{:E}", "{:.0f}"]


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=3,
        max_size=30,
    ),
    fmt=st.sampled_from(FLOAT_FORMATS),
)
def test_fast_parser_exact_against_python_float(values: list[float], fmt: str) -> None:
    rows = [f"{i}\t{fmt.format(v)}\t{fmt.format(-v / 7)}\t{i % 8}\n" for i, v in enumerate(values)]
    data = ("time\ta\tb\tclass\n" + "".join(rows)).encode()
    fast = parse_rows(data, 2)
    ref = parse_rows_reference(data, 2)
    # Outside the exact fast path (17 significant digits, tiny exponents) the caller falls
    # back to pyarrow; hypothesis fails the test if that happens for most inputs.
    assume(fast is not None)
    for a, b in zip(fast, ref, strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "text",
    [
        "1\t1e-05\t0\t0\t0\t0\t0\t0\t0\t0\r\n",  # CRLF
        "1\t1.00000000000000000000001\t0\t0\t0\t0\t0\t0\t0\t0\n",  # long mantissa
        "1\t1e-300\t0\t0\t0\t0\t0\t0\t0\t0\n",  # exponent beyond 10**22
        "1\t1e-05\t0\t0\t0\t0\t0\t0\t0\t0",  # no final newline
    ],
)
def test_fallback_to_pyarrow_gives_same_values(tmp_path: Path, text: str) -> None:
    data = HEADER.encode() + text.encode()
    assert parse_rows(data, 8) is None
    path = write(tmp_path, HEADER + text)
    time_ms, values, classes = parse_file(path)
    fields = text.strip().split("\t")
    assert time_ms.tolist() == [1] and classes.tolist() == [0]
    assert values[0, 0] == float(fields[1])


def test_small_file_roundtrip(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + row(1, 0, "0") + row(2, 1, "2e-05") + row(5, 2, "-4e-05"))
    src = read(path)
    signal = concat(src)
    assert signal.shape == (5, 8)
    np.testing.assert_allclose(signal[:, 0], [0, 2e-5, 0, -2e-5, -4e-5], atol=1e-12)
    np.testing.assert_array_equal(src.labels, [0, 1, 1, 1, 2])
    assert src.attrs["n_gaps"] == 1 and src.attrs["longest_gap_ms"] == 3
    assert src.attrs["n_interpolated_samples"] == 2


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(InputError, match=r"empty file"):
        read(path)


def test_header_only(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER)
    with pytest.raises(InputError, match=r"no data rows"):
        read(path)


def test_wrong_header(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER.replace("channel3", "chan3") + row(1))
    with pytest.raises(
        InputError, match=r"line 1: expected the header columns .*'channel3'.* found .*'chan3'"
    ):
        read(path)


def test_wrong_column_count(tmp_path: Path) -> None:
    bad = "\t".join(["3", *["0"] * 7, "0"]) + "\n"
    path = write(tmp_path, HEADER + row(1) + row(2) + bad + row(4))
    with pytest.raises(InputError, match=r"line 4: expected 10 fields .* found 9"):
        read(path)


def test_non_numeric_value(tmp_path: Path) -> None:
    bad = row(3).replace("1e-05", "abc", 3).replace("abc", "1e-05", 2)
    path = write(tmp_path, HEADER + row(1) + row(2) + bad + row(4))
    with pytest.raises(
        InputError, match=r"line 4, column 'channel3': expected a number, found 'abc'"
    ):
        read(path)


def test_non_integer_time(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + row(1) + row(2).replace("2", "2.5", 1))
    with pytest.raises(
        InputError, match=r"line 3, column 'time': expected an integer, found '2.5'"
    ):
        read(path)


def test_truncated_last_line(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + row(1) + row(2) + row(3)[:12])
    with pytest.raises(InputError, match=r"truncated last line 4 .*expected 10 fields"):
        read(path)


def test_non_increasing_timestamps(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + row(1) + row(2) + row(2) + row(3))
    with pytest.raises(
        InputError,
        match=r"line 4, column 'time': timestamps must increase strictly; found 2 after 2",
    ):
        read(path)


def test_unknown_class(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + row(1) + row(2, 9))
    with pytest.raises(
        InputError, match=r"line 3, column 'class': expected a class in 0..7, found 9"
    ):
        read(path)


def test_file_name_not_matching_layout(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + row(1), name="session1.txt")
    with pytest.raises(InputError, match=r"does not match the uci-emg layout .*'session1.txt'"):
        get_reader("uci-emg").discover(tmp_path)
    path = write(tmp_path / "x", HEADER + row(1), subject="ab")
    with pytest.raises(InputError, match=r"found folder 'ab'"):
        get_reader("uci-emg").discover(path)


def test_unknown_option(tmp_path: Path) -> None:
    write(tmp_path, HEADER + row(1))
    with pytest.raises(
        SpecError,
        match=r"reader 'uci-emg' options: unknown key 'rate' \(valid keys here: max_gap_ms\)",
    ):
        get_reader("uci-emg").discover(tmp_path, rate=1000)


def test_clock_jump_is_refused_not_interpolated(tmp_path: Path) -> None:
    """An hour's jump would become an hour of interpolated signal: refused by line."""
    text = HEADER + "".join(row(t) for t in range(5)) + row(3_600_004) + row(3_600_005)
    path = write(tmp_path, text)
    reader = get_reader("uci-emg")
    (file,) = reader.discover(path)
    with pytest.raises(
        InputError,
        match=r"line 7, column 'time': a gap of 3600000 ms after 4 ms \(line 6\), 1 such gap\(s\) "
        r"in the file; expected steps of at most max_gap_ms=1000 ms",
    ):
        reader.read(file)
    src = reader.read(file, max_gap_ms=4e6)  # the documented way to accept it
    assert src.n_samples == 3_600_006 and src.attrs["longest_gap_ms"] == 3_600_000
    with pytest.raises(
        SpecError, match=r"options: key 'max_gap_ms': expected a value greater than 0; found 0"
    ):
        reader.read(file, max_gap_ms=0)
