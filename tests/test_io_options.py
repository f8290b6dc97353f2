"""Tests of reader options through the one schema layer (``pipeline.spec.io``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.check import load_checked_task
from pipeline.exceptions import SpecError
from pipeline.io import READERS
from pipeline.spec.io import READER_OPTIONS, EdfOptions, parse_reader_options

TASK = """
name: t
data: {source: demo, format: synthetic, options: OPTIONS}
windows: {length: 0.2, step: 0.05}
features: [mav]
model: {name: lda}
"""


def test_every_registered_reader_has_an_options_model() -> None:
    assert set(READER_OPTIONS) <= set(READERS)
    assert {"edf", "mne", "bids", "wfdb", "uci-emg", "csv", "synthetic"} <= set(READER_OPTIONS)


def test_valid_options_keep_their_values() -> None:
    pattern = re.compile(r"Subject(?P<subject>\d+)_(?P<run>\d)")
    o = parse_reader_options(
        "edf", {"pattern": pattern, "rate": "256", "channels": "Cz", "metadata": None}
    )
    assert isinstance(o, EdfOptions)
    assert o.pattern is pattern and o.rate == 256.0 and o.channels == "Cz"
    assert o.status_events is True and o.metadata is None


@pytest.mark.parametrize(
    ("reader", "options", "match"),
    [
        ("edf", {"rat": 256}, r"reader 'edf' options: unknown key 'rat'; did you mean 'rate'\?"),
        ("edf", {"rate": True}, r"key 'rate': expected a number, not true/false; found True"),
        ("edf", {"block_samples": 0}, r"key 'block_samples': expected a value greater than 0"),
        ("mne", {"stim_events": "sometimes"}, r"key 'stim_events': expected a valid boolean"),
        ("bids", {"keep_bda": True}, r"unknown key 'keep_bda'; did you mean 'keep_bad'\?"),
        ("wfdb", {"annotation": "atr"}, r"unknown key 'annotation'; did you mean 'annotations'"),
        ("csv", {"time_unit": "h"}, r"key 'time_unit': expected 's', 'ms' or 'us'; found 'h'"),
        ("uci-emg", {"max_gap_ms": -5}, r"key 'max_gap_ms': expected a value greater than 0"),
    ],
)
def test_errors_name_the_option_expected_found_and_closest(reader, options, match) -> None:
    with pytest.raises(SpecError, match=match):
        parse_reader_options(reader, options)


def test_a_task_file_option_is_checked_before_any_cluster_starts(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(TASK.replace("OPTIONS", "{seed: 0, n_subject: 3}"))
    with pytest.raises(
        SpecError,
        match=r"task\.yaml: unknown key 'data\.options\.n_subject'; did you mean 'n_subjects'\?",
    ):
        load_checked_task(path)
    path.write_text(TASK.replace("OPTIONS", "{seed: 0, n_subjects: 3}"))
    spec, _ = load_checked_task(path)
    assert spec.data.options == {"seed": 0, "n_subjects": 3}
