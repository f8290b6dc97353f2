"""``cohort predict``: the windows validation scored, and a warning for training subjects."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.learn import load_bundle
from pipeline.predict import predict_recordings, training_overlap_warning, write_predictions
from pipeline.stages import run_task
from pipeline.table import read_feature_table

TASK = {
    "name": "tiny-predict",
    "data": {
        "source": "demo",
        "format": "synthetic",
        "options": {"n_subjects": 3, "n_runs": 1, "duration": 20.0, "seed": 4},
    },
    "preprocess": [{"op": "bandpass", "low": 20.0, "high": 450.0, "order": 4}],
    # mixed windows dropped and 'unmarked' excluded: the policy prediction must repeat
    "windows": {"length": 0.25, "step": 0.07, "mixed": "drop", "exclude_labels": ["unmarked"]},
    "features": ["mav", "wl"],
    "model": {"name": "lda", "prep": {"normalize": "recording"}},
    "validation": {"scheme": "loso", "n_permutations": 0},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, client):
    tmp = tmp_path_factory.mktemp("predict")
    task = tmp / "task.yaml"
    task.write_text(yaml.safe_dump(TASK))
    return run_task(task, tmp / "out", client=client, progress=False)


def test_the_overlap_warning_names_the_training_subjects() -> None:
    assert training_overlap_warning(["07", "08"], ["01", "02"]) is None
    assert training_overlap_warning(["02", "07", "01"], ["01", "02"]) == (
        "subject(s) 01, 02 were in the model's training set: their predictions are not an "
        "estimate of performance on a new person (the validation report's held-out figures "
        "are)"
    )


def test_predict_scores_exactly_the_windows_validation_scored(trained, caplog) -> None:
    rid = "sub-01_run-1"
    with caplog.at_level(logging.WARNING, logger="pipeline.predict"):
        frame = predict_recordings(trained.bundle, trained.store, [rid])
    table = read_feature_table(trained.features)[0].compute()
    scored = table[(table["recording"] == rid) & table["label"].notna()]
    assert len(scored) < (table["recording"] == rid).sum()  # some were dropped (unlabeled)
    np.testing.assert_array_equal(frame["start"].to_numpy(), scored["start"].to_numpy())
    assert list(frame["label"]) == list(scored["label"])
    meta = frame.attrs["predict"]
    rec = meta["recordings"][rid]
    assert rec["windows_scored"] == len(scored)
    # 20 s at 1 kHz, 250-sample windows every 70: (20000 - 250) // 70 + 1 = 283 laid
    assert rec["windows_planned"] == 283
    assert rec["windows_dropped"] == 283 - len(scored) > 0
    assert meta["label_policy"]["mixed"] == "drop"
    assert meta["label_policy"]["exclude"] == ["unmarked"]
    assert "unmarked" not in set(frame["label"])
    # the training subject is warned about, on screen (log) and in the metadata
    assert frame["subject_in_training"].all()
    assert meta["training_subjects_scored"] == ["01"]
    warning = (
        "subject(s) 01 were in the model's training set: their predictions are not an "
        "estimate of performance on a new person"
    )
    assert any(warning in r.getMessage() for r in caplog.records)
    assert warning in meta["warnings"][0]


def test_predictions_files_carry_what_was_scored(trained, tmp_path: Path) -> None:
    frame = predict_recordings(trained.bundle, trained.store, ["sub-02_run-1"])
    csv = write_predictions(frame, tmp_path / "p.csv")
    side = json.loads((tmp_path / "p.csv.json").read_text())
    assert side["training_subjects_scored"] == ["02"]
    assert "subject(s) 02 were in the model's training set" in side["warnings"][0]
    assert pd.read_csv(csv)["subject_in_training"].all()
    parquet = write_predictions(frame, tmp_path / "p.parquet")
    meta = json.loads(pq.read_schema(parquet).metadata[b"cohort_predict"])
    assert meta == side


def test_a_subject_outside_training_is_not_warned_about(trained, caplog) -> None:
    bundle = load_bundle(trained.bundle)
    bundle.metadata["training_subjects"] = ["01", "02"]  # as if 03 had been held out
    with caplog.at_level(logging.WARNING, logger="pipeline.predict"):
        frame = predict_recordings(bundle, trained.store, ["sub-03_run-1"])
    assert not frame["subject_in_training"].any()
    assert frame.attrs["predict"]["warnings"] == []
    assert not [r for r in caplog.records if "training set" in r.getMessage()]
