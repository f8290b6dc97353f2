"""The public API and the `cohort` command's plumbing."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pipeline
from pipeline.cli import main


@pytest.mark.parametrize("name", [n for n in pipeline.__all__ if n != "__version__"])
def test_public_names_resolve(name: str):
    assert getattr(pipeline, name) is not None


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        pipeline.nope  # noqa: B018


def test_info_prints_index_table(make_store, capsys):
    store = make_store([{"subject": "01", "run": "1"}, {"subject": "02", "run": "2"}])
    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "sub-01_run-1" in out and "sub-02_run-2" in out
    assert "2 subjects, 2 recordings" in out and "1000 Hz" in out


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.zarr")]) == 2
    assert "error: no cohort store at" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "none.yaml")]) == 2
    assert "task spec" in capsys.readouterr().err


def test_help_is_fast_and_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("ingest", "info", "features", "run", "demo", "predict", "status", "clean"):
        assert command in out
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, pipeline.cli; print('xarray' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "False"  # the CLI imports the heavy libraries only when a command runs
