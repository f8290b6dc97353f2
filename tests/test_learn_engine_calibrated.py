"""``loso_calibrated`` on ``model.engine: distributed`` equals ``model.engine: memory``.

One ``cohort run`` of ``tasks/emg_gestures_calibrated.yaml`` (k = 0, 1) with the distributed
engine (real ``LocalCluster``, real Parquet feature files), then the memory engine on the
same files. A calibrated fold's statistics there are the other subjects' moments plus
``w`` times the held-out subject's calibration windows' (a calibration pass on the
workers); the memory engine fits the weighted scaler and LDA on the windows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.learn import fit_and_validate
from pipeline.learn.distributed import fit_and_validate_distributed
from pipeline.learn.synthetic import synthetic_feature_table
from pipeline.stages import run_task
from pipeline.table import read_feature_table

REPO = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, emg_dir, client):
    task = yaml.safe_load((REPO / "tasks" / "emg_gestures_calibrated.yaml").read_text())
    task["data"]["source"] = str(emg_dir)
    task["model"]["engine"] = "distributed"
    task["validation"] |= {"calibration": [0, 1], "report_k": 1, "n_permutations": 0}
    folder = tmp_path_factory.mktemp("emg_calibrated_engine")
    path = folder / "emg_gestures_calibrated.yaml"
    path.write_text(yaml.safe_dump(task))
    summary = run_task(path, folder / "out", progress=False, client=client)
    report_d = json.loads(summary.report_json.read_text())
    table = read_feature_table(summary.features)[0].compute().reset_index(drop=True)
    _, report_m = fit_and_validate(
        table,
        task["model"] | {"engine": "memory"},
        task["validation"],
        task["seed"],
        window_length=task["windows"]["length"],
        predictions_dir=folder / "memory_predictions",
    )
    return summary, report_d, report_m, folder


def test_distributed_calibrated_run_gives_the_memory_engines_metrics(runs):
    _, report_d, report_m, _ = runs
    assert report_d["engine"]["name"] == "distributed"
    passes = [p["name"] for p in report_d["engine"]["passes"]]
    assert passes == ["statistics", "calibration", "prediction"]
    for name in METRICS:
        assert report_d["overall"][name] == pytest.approx(report_m["overall"][name], abs=1e-9)
    assert report_d["overall"]["confusion_matrix"] == report_m["overall"]["confusion_matrix"]
    assert sorted(report_d["per_subject"]) == sorted(report_m["per_subject"])
    for s, m in report_m["per_subject"].items():
        d = report_d["per_subject"][s]
        assert d["confusion_matrix"] == m["confusion_matrix"], s
        for name in METRICS:
            assert d[name] == pytest.approx(m[name], abs=1e-9), (s, name)
    assert [f["name"] for f in report_d["folds"]] == [f["name"] for f in report_m["folds"]]
    for fd, fm in zip(report_d["folds"], report_m["folds"], strict=True):
        assert fd["n_test_windows"] == fm["n_test_windows"], fd["name"]
        assert fd["n_train_windows"] == fm["n_train_windows"], fd["name"]


def test_every_point_of_the_calibration_curve_agrees(runs):
    _, report_d, report_m, _ = runs
    curve_d, curve_m = report_d["calibration_curve"], report_m["calibration_curve"]
    assert curve_d["headline_k"] == curve_m["headline_k"] == 1.0
    assert [p["k"] for p in curve_d["points"]] == [0.0, 1.0]
    for pd_, pm in zip(curve_d["points"], curve_m["points"], strict=True):
        assert pd_["n_test_windows"] == pm["n_test_windows"]
        assert pd_["n_calibration_windows"] == pm["n_calibration_windows"]
        for name in METRICS:
            assert pd_["overall"][name] == pytest.approx(pm["overall"][name], abs=1e-9)
        for s, m in pm["per_subject"].items():
            for name in METRICS:
                assert pd_["per_subject"][s][name] == pytest.approx(m[name], abs=1e-9), s
        assert pd_["worst_subject"]["min"] == pytest.approx(pm["worst_subject"]["min"], abs=1e-9)
    # the weight moves the model: k = 1 is not the k = 0 figure
    k0, k1 = (p["overall"]["balanced_accuracy"] for p in curve_d["points"])
    assert k1 > k0 + 0.02


def test_out_of_fold_files_are_the_memory_engines(runs):
    summary, report_d, _, folder = runs
    key = ["recording", "start"]
    got = pd.read_parquet(summary.report_json.parent / "predictions").sort_values(key)
    want = pd.read_parquet(folder / "memory_predictions").sort_values(key)
    assert len(got) == sum(f["n_test_windows"] for f in report_d["folds"]) == len(want)
    assert list(got.columns) == list(want.columns)
    for col in got.columns:
        if col.startswith("proba"):
            np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), atol=1e-9)
        else:
            assert (got[col].to_numpy() == want[col].to_numpy()).all(), col


@pytest.mark.parametrize("normalize", ["recording", "subject"])
def test_synthetic_calibrated_folds_equal_across_partitionings(normalize) -> None:
    import dask.dataframe as dd

    table = synthetic_feature_table(n_subjects=4, n_runs=2, blocks_per_class=2, seed=3)
    model = {
        "name": "lda",
        "params": {"solver": "lsqr", "shrinkage": "auto"},
        "prep": {"normalize": normalize},
        "smooth": 3,
    }
    val = {"scheme": "loso_calibrated", "calibration": [0, 1, 2], "n_permutations": 0}
    _, m = fit_and_validate(table, model | {"engine": "memory"}, val, window_length=0.2, n_jobs=1)
    _, d = fit_and_validate_distributed(
        dd.from_pandas(table, npartitions=3, sort=False), model, val, window_length=0.2
    )
    points = zip(d["calibration_curve"]["points"], m["calibration_curve"]["points"], strict=True)
    for pd_, pm in points:
        assert pd_["n_calibration_windows"] == pm["n_calibration_windows"]
        for s, v in pm["per_subject"].items():
            for name in METRICS:
                assert pd_["per_subject"][s][name] == pytest.approx(v[name], abs=1e-9)
    assert d["calibration_curve"]["points"][2]["n_calibration_windows"] > 0


def test_other_models_refused_with_the_reason() -> None:
    import dask.dataframe as dd

    from pipeline.exceptions import SpecError

    table = synthetic_feature_table(n_subjects=3, n_runs=1, blocks_per_class=2, seed=1)
    with pytest.raises(
        SpecError, match=r"model.name 'gaussian_nb' with validation.scheme 'loso_calibrated'"
    ):
        fit_and_validate_distributed(
            dd.from_pandas(table, npartitions=1),
            {"name": "gaussian_nb"},
            {"scheme": "loso_calibrated", "calibration": [0, 1], "n_permutations": 0},
            window_length=0.2,
        )
