"""The shipped EMG task: ``model.engine: distributed`` equals ``model.engine: memory``.

One ``cohort run`` of ``tasks/emg_gestures.yaml`` with the distributed engine (real
``LocalCluster``, real Parquet feature files), then the memory engine on the same files;
every assertion reuses the two results.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.pipeline import Pipeline

from pipeline.learn import fit_and_validate, load_bundle
from pipeline.stages import run_task
from pipeline.table import read_feature_table

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, emg_dir, client):
    task = yaml.safe_load((REPO / "tasks" / "emg_gestures.yaml").read_text())
    task["data"]["source"] = str(emg_dir)
    task["model"]["engine"] = "distributed"
    folder = tmp_path_factory.mktemp("emg_engine")
    path = folder / "emg_gestures.yaml"
    path.write_text(yaml.safe_dump(task))
    summary = run_task(path, folder / "out", progress=False, client=client)
    report_d = json.loads(summary.report_json.read_text())
    table = read_feature_table(summary.features)[0].compute().reset_index(drop=True)
    model_m, report_m = fit_and_validate(
        # no permutation test here: the distributed engine reports it skipped, and its
        # refits (20 cross-validations) are not what this compares
        table,
        task["model"] | {"engine": "memory"},
        task["validation"] | {"n_permutations": 0},
        task["seed"],
    )
    return summary, report_d, table, model_m, report_m


def test_distributed_run_gives_the_memory_engines_loso_metrics(runs):
    _, report_d, _, _, report_m = runs
    assert report_d["engine"]["name"] == "distributed"
    assert [p["name"] for p in report_d["engine"]["passes"]] == ["statistics", "prediction"]
    assert report_d["overall"]["balanced_accuracy"] == pytest.approx(
        report_m["overall"]["balanced_accuracy"], abs=1e-9
    )
    assert report_d["overall"]["balanced_accuracy"] > 0.85
    assert report_d["overall"]["confusion_matrix"] == report_m["overall"]["confusion_matrix"]
    assert sorted(report_d["per_subject"]) == sorted(report_m["per_subject"])
    for s, m in report_m["per_subject"].items():
        d = report_d["per_subject"][s]
        assert d["confusion_matrix"] == m["confusion_matrix"], s
        assert d["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"], abs=1e-9), s
        assert d["roc_auc"] == pytest.approx(m["roc_auc"], abs=1e-9), s
    # the distributed engine's figures come from per-partition confusion counts and the
    # scores; the memory engine's from the collected windows
    assert report_d["overall"]["roc_auc"] == pytest.approx(report_m["overall"]["roc_auc"], abs=1e-9)
    for name in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc"):
        for end in ("low", "high"):
            got, want = report_d["ci95"][name][end], report_m["ci95"][name][end]
            assert got == pytest.approx(want, abs=1e-9), (name, end)
    assert report_d["calibration"]["ece"] == pytest.approx(report_m["calibration"]["ece"], abs=1e-9)
    folds_m = {f["name"]: f["metrics"] for f in report_m["folds"]}
    for f in report_d["folds"]:
        assert f["metrics"]["roc_auc"] == pytest.approx(folds_m[f["name"]]["roc_auc"], abs=1e-9)
    # the same report schema; the run's stage adds the store's quality and the provenance
    assert set(report_d) - {"quality", "provenance"} == set(report_m)


def test_distributed_bundle_is_a_plain_lda_pipeline_with_the_same_predictions(runs):
    summary, _, table, model_m, _ = runs
    bundle = load_bundle(summary.bundle)
    assert type(bundle.model) is Pipeline
    assert type(bundle.model[-1]) is LinearDiscriminantAnalysis
    pd_, pm = bundle.predict(table), model_m.predict(table)
    cols = [c for c in pm.columns if c.startswith("proba__")]
    np.testing.assert_allclose(pd_[cols].to_numpy(), pm[cols].to_numpy(), atol=1e-9)
    assert (pd_["prediction"] == pm["prediction"]).all()
