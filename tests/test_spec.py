"""Task specs: shipped specs load; bad keys, types and values get precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.exceptions import SpecError
from pipeline.spec import load_task

REPO = Path(__file__).resolve().parents[1]

GOOD = """
name: t
data: {source: demo, format: synthetic}
windows: {length: 0.2, step: 0.05}
features: [mav, {name: zc, threshold: 1.0e-5}]
model: {name: lda}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "task.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "tasks").glob("*.yaml")))
def test_shipped_tasks_load(name: str):
    spec = load_task(REPO / "tasks" / name)
    assert spec.features and spec.model.name


def test_good_spec(tmp_path: Path):
    spec = load_task(_write(tmp_path, GOOD))
    assert spec.feature_specs() == [{"name": "mav"}, {"name": "zc", "threshold": 1e-5}]
    assert spec.validation.scheme == "loso"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            ("windows: {", "windows: {lenght: 3, "),
            r"task\.yaml: unknown key 'windows\.lenght'; did you mean 'length'\?",
        ),
        (
            ("model: {name: lda}", "modle: {name: lda}"),
            r"unknown key 'modle'; did you mean 'model'",
        ),
        (
            ("step: 0.05", "step: -1"),
            r"key 'windows\.step': expected a value greater than 0; found -1",
        ),
        (
            ("features: [mav, ", "features: [mavv, "),
            r"key 'features\.0': unknown name 'mavv'; did you mean 'mav'\?",
        ),
        (
            ("threshold: 1.0e-5", "treshold: 1.0e-5"),
            r"unknown key 'features\.1\.treshold'; did you mean 'threshold'\?",
        ),
        (
            ("threshold: 1.0e-5", "threshold: -1"),
            r"key 'features\.1\.threshold': expected a value greater than or equal to 0",
        ),
        (
            ("model: {name: lda}", "model: {name: lda}\npreprocess: [{op: bandpas, low: 1}]"),
            r"key 'preprocess\.0': unknown op 'bandpas'; did you mean 'bandpass'\?",
        ),
        (
            ("model: {name: lda}", "model: {name: lda}\npreprocess: [{op: highpass, cutof: 1}]"),
            r"unknown key 'preprocess\.0\.cutof'; did you mean 'cutoff'\?",
        ),
        (
            (
                "windows: {length: 0.2, step: 0.05}",
                "windows: {length: 0.5, step: 1, unit: samples}",
            ),
            r"integer number of samples for 'length', found 0.5",
        ),
        (
            (
                "windows: {length: 0.2, step: 0.05}",
                "windows: {length: 0.2, step: 0.05, exclude_labels: rest}",
            ),
            r"key 'windows\.exclude_labels': expected a list of strings; found 'rest'",
        ),
        (("features: [mav, {name: zc, threshold: 1.0e-5}]", "features: []"), r"key 'features'"),
        (("step: 0.05", "step: fast"), r"key 'windows\.step': expected .*number.*found 'fast'"),
        (
            ("{source: demo, format: synthetic}", "{format: synthetic}"),
            r"missing required key 'data\.source'",
        ),
    ],
)
def test_bad_spec_errors(tmp_path: Path, change, match):
    with pytest.raises(SpecError, match=match):
        load_task(_write(tmp_path, GOOD.replace(*change)))


def test_env_expansion_and_relative_source(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MY_DATA", "/abs/data")
    spec = load_task(_write(tmp_path, GOOD.replace("source: demo", "source: ${MY_DATA}/x")))
    assert spec.data.source == "/abs/data/x"
    spec = load_task(_write(tmp_path, GOOD.replace("source: demo", "source: ${NOPE_X:-rel}/x")))
    assert spec.data.source == str(tmp_path / "rel" / "x")


def test_not_yaml_or_not_mapping(tmp_path: Path):
    with pytest.raises(SpecError, match="not valid YAML"):
        load_task(_write(tmp_path, "a: [b"))
    with pytest.raises(SpecError, match="expected a mapping"):
        load_task(_write(tmp_path, "- a"))
    with pytest.raises(SpecError, match="not found"):
        load_task(tmp_path / "none.yaml")
