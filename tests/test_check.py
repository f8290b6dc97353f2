"""One loader for every command that takes a task: same checks, same message, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.check import check_cohort, check_task, load_checked_task
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
            # the registered readers, sorted (others may be registered beside these)
            r"task\.yaml: key 'data\.format': expected a reader name \([^)]*csv, edf, [^)]*"
            r"synthetic, uci-emg[^)]*\); found 'synthetc'",
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


# ----------------------------------------------------------- model parameters (scikit-learn)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (
            "{name: lda, params: {solver: foo}}",
            r"task\.yaml: key 'model\.params\.solver': expected a str among \{.*'lsqr'.*\} "
            r"\(LinearDiscriminantAnalysis\); found 'foo'$",
        ),
        (
            "{name: random_forest, params: {n_estimators: -5}}",
            r"task\.yaml: key 'model\.params\.n_estimators': expected an int in the range "
            r"\[1, inf\) \(RandomForestClassifier\); found -5$",
        ),
        (
            "{name: lda, params: {shrinkge: auto}}",
            r"task\.yaml: key 'model\.params\.shrinkge': expected a parameter of "
            r"LinearDiscriminantAnalysis \(.*\); found 'shrinkge'; did you mean 'shrinkage'\?$",
        ),
        (
            "{name: soft_vote, estimators: [{name: lda}, {name: logreg, params: {C: -1}}]}",
            r"key 'model\.estimators\.1\.params\.C': expected a float in the range \(0\.0, inf\]"
            r" \(LogisticRegression\); found -1$",
        ),
    ],
)
def test_model_parameters_through_sklearn_validation(tmp_path: Path, model, match) -> None:
    task = _write(tmp_path, GOOD.replace("{name: lda}", model))
    with pytest.raises(SpecError, match=match):
        load_checked_task(task)


def test_bad_model_parameter_exits_2_before_anything_starts(tmp_path: Path, capsys) -> None:
    task = _write(tmp_path, GOOD.replace("{name: lda}", "{name: lda, params: {solver: foo}}"))
    assert main(["run", str(task), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'model.params.solver'" in err[0] and "found 'foo'" in err[0]
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------- the task against the cohort

INDEX = pd.DataFrame(
    {
        "recording": ["sub-1_run-1", "sub-1_run-2", "sub-2_run-1"],
        "subject": ["1", "1", "2"],
        "session": [None, None, None],
        "run": ["1", "2", "1"],
        "sampling_rate": [1000.0] * 3,
        "duration": [30.0, 12.0, 25.0],
        "labels": [["rest", "fist"], ["rest"], ["rest", "unmarked"]],
        "label": [None] * 3,
    }
)


def _spec(tmp_path: Path, text: str = GOOD):
    return load_task(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            ("windows: {length: 0.2,", "windows: {length: 31.0,"),
            r"^x\.yaml: key 'windows\.length': expected a window no longer than the longest "
            r"recording, 30 s \(sub-1_run-1\), else no recording has a window; found '31 s'$",
        ),
        (
            ("step: 0.05}", "step: 0.05, exclude_labels: [unmarked, fsit]}"),
            r"^x\.yaml: key 'windows\.exclude_labels\.1': expected a label the data has "
            r"\(fist, rest, unmarked\); found 'fsit'; did you mean 'fist'\?$",
        ),
        (
            ("model: {name: lda}", "model: {name: lda}\nvalidation: {scheme: cross_session}"),
            r"^x\.yaml: key 'validation\.scheme': expected a scheme the cohort supports: "
            r"'cross_session' needs a subject recorded in at least 2 sessions.*"
            r"found 'cross_session'$",
        ),
        (
            (
                "model: {name: lda}",
                "model: {name: lda}\nvalidation: {scheme: group_kfold, n_splits: 3}",
            ),
            r"key 'validation\.n_splits': expected at most the cohort's number of subjects "
            r"\(2\); found 3$",
        ),
        (
            (
                "model: {name: lda}",
                "model: {name: lda}\nvalidation: {scheme: within_subject, train: '1', test: '3'}",
            ),
            r"key 'validation\.test': expected one of the cohort's runs \['1', '2'\]; found '3'",
        ),
    ],
)
def test_task_against_the_cohort(tmp_path: Path, change, match) -> None:
    spec = _spec(tmp_path, GOOD.replace(*change))
    with pytest.raises(SpecError, match=match):
        check_cohort(spec, "x.yaml", INDEX)


def test_a_task_the_cohort_supports_passes(tmp_path: Path) -> None:
    text = GOOD.replace("step: 0.05}", "step: 0.05, exclude_labels: [unmarked]}")
    within = text + "validation: {scheme: within_subject, train: '1', test: '2'}\n"
    for t in (text, within):
        check_cohort(_spec(tmp_path, t), "x.yaml", INDEX)
    # a window of 1000 samples fits the 30 s recording at 1 kHz, 40000 samples does not
    samples = text.replace("length: 0.2, step: 0.05", "length: 1000, step: 500, unit: samples")
    check_cohort(_spec(tmp_path, samples), "x.yaml", INDEX)
    too_long = samples.replace("length: 1000", "length: 40000")
    with pytest.raises(SpecError, match=r"found '40000 samples'"):
        check_cohort(_spec(tmp_path, too_long), "x.yaml", INDEX)


SMALL = """
name: t
data: {source: demo, format: synthetic, options: {seed: 0, n_subjects: 2, n_runs: 1,
       duration: 30.0}}
windows: {length: 0.2, step: 0.05, exclude_labels: [unmarkd]}
features: [mav]
model: {name: lda}
"""


def test_cohort_checks_exit_2_after_ingest_before_features(tmp_path: Path, capsys, client):
    task = _write(tmp_path, SMALL)
    out = tmp_path / "out"
    argv = ["run", str(task), "--out", str(out), "--no-progress"]
    assert main([*argv, "--cluster", client.scheduler.address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {task}: key 'windows.exclude_labels.0': expected a label the data has "
        "(fist, radial_deviation, rest, ulnar_deviation, unmarked, wrist_extension, "
        "wrist_flexion); found 'unmarkd'; did you mean 'unmarked'?"
    ]
    assert list((out / "stores").iterdir())  # ingest ran ...
    stages = out / "stages"
    assert not stages.exists() or not any(stages.iterdir())  # ... no stage computed
    # ... and cohort features checks the same store the same way
    store = next((out / "stores").glob("*.zarr"))
    argv = ["features", str(store), "--spec", str(task), "--out", str(tmp_path / "f")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == err
