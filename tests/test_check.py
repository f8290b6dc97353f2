"""One loader for every command that takes a task: same checks, same message, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.check import check_task, load_checked_task
from pipeline.cli import main
from pipeline.exceptions import SpecError
from pipeline.spec import load_task

GOOD = """
name: t
data: {source: demo, format: synthetic}
windows: {length: 0.2, step: 0.05}
features: [mav, {name: zc, threshold: 1.0e-5}]
model: {name: lda}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(text)
    return path


def test_good_task_gives_its_feature_table_spec(tmp_path: Path) -> None:
    spec, table = load_checked_task(_write(tmp_path, GOOD))
    assert spec.source == str(tmp_path / "task.yaml")
    assert [f["name"] for f in table.features] == ["mav", "zc"]
    assert table.features[1]["threshold"] == 1e-5
    assert table.window.in_samples(1000.0) == (200, 50)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            ("format: synthetic", "format: synthetc"),
            r"task\.yaml: key 'data\.format': expected a reader name \(csv, edf, synthetic, "
            r"uci-emg\); found 'synthetc'",
        ),
        (
            ("features: [mav, ", "features: [mav, mav, "),
            r"task\.yaml: Output column 'mav' is produced by both",
        ),
        (
            (
                "windows: {length: 0.2, step: 0.05}",
                "windows: {length: 2, step: 0.5, unit: samples}",
            ),
            r"task\.yaml: key 'windows': expected an integer number of samples for 'step'",
        ),
    ],
)
def test_checks_name_the_file_and_key(tmp_path: Path, change, match) -> None:
    with pytest.raises(SpecError, match=match):
        load_checked_task(_write(tmp_path, GOOD.replace(*change)))


def test_check_task_on_a_spec_built_in_code(tmp_path: Path) -> None:
    spec = load_task(_write(tmp_path, GOOD))
    assert (
        check_task(spec, "here").features == load_checked_task(tmp_path / "task.yaml")[1].features
    )


@pytest.mark.parametrize(
    "change",
    [
        ("windows: {", "windows: {lenght: 3, "),  # schema: a typo in a key
        ("threshold: 1.0e-5", "threshold: -1"),  # schema: a value
        ("format: synthetic", "format: synthetc"),  # a check the schema cannot make
        ("features: [mav, ", "features: [mav, mav, "),
    ],
)
def test_run_and_features_report_a_mistake_alike(tmp_path: Path, capsys, change) -> None:
    task = _write(tmp_path, GOOD.replace(*change))
    store = tmp_path / "missing.zarr"  # never reached: the task is checked first
    assert main(["run", str(task), "--out", str(tmp_path / "out")]) == 2
    run_err = capsys.readouterr().err.strip()
    assert main(["features", str(store), "--spec", str(task), "--out", str(tmp_path / "f")]) == 2
    features_err = capsys.readouterr().err.strip()
    assert run_err == features_err
    assert str(task) in run_err
    assert not (tmp_path / "out").exists()  # nothing was started or written
