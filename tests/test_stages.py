"""`cohort run`: stages are reused, recomputed exactly when their inputs change, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.learn import load_bundle
from pipeline.spec import load_task
from pipeline.stages import run_task, task_feature_spec
from pipeline.store import open_cohort
from pipeline.table import read_feature_table, write_feature_table

REPO = Path(__file__).resolve().parents[1]

TASK = {
    "name": "tiny",
    "data": {
        "source": "demo",
        "format": "synthetic",
        "options": {"n_subjects": 3, "n_runs": 2, "duration": 20.0, "seed": 3},
    },
    "preprocess": [{"op": "bandpass", "low": 20.0, "high": 450.0, "order": 4}],
    "windows": {"length": 0.2, "step": 0.1, "exclude_labels": ["unmarked"]},
    "features": ["mav", "wl", "rms"],
    "model": {"name": "lda", "prep": {"normalize": "recording"}},
    "validation": {"scheme": "loso"},
}


def _task(tmp_path: Path, **changes) -> Path:
    task = json.loads(json.dumps(TASK))
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = task
        for p in parents:
            node = node[p]
        node[last] = value
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def _states(summary) -> dict[str, tuple[int, int]]:
    return {s.name: (s.computed, s.reused) for s in summary.stages}


def test_stages_reuse_and_recompute_exactly_what_changed(tmp_path: Path, client):
    out = tmp_path / "out"
    first = run_task(_task(tmp_path), out, client=client, progress=False)
    assert _states(first) == {
        "ingest": (6, 0),
        "features": (6, 0),
        "fit/validate": (1, 0),
        "report": (1, 0),
    }
    assert first.bundle.exists() and first.report_html.exists()
    assert (out / "latest" / "model.skops").resolve() == first.bundle.resolve()
    assert 0.0 <= first.metrics["balanced_accuracy"] <= 1.0
    # the feature stages' files are the feature-table format: cohort features gives the same
    stage_table, meta = read_feature_table(first.features)
    spec = task_feature_spec(load_task(_task(tmp_path)))
    assert meta["spec"] == spec.to_dict() and len(meta["recordings"]) == 6
    with dask.config.set(scheduler=client):
        table = write_feature_table(open_cohort(first.store), spec, tmp_path / "features")
        pd.testing.assert_frame_equal(
            read_feature_table(table)[0].compute().reset_index(drop=True),
            stage_table.compute().reset_index(drop=True),
        )

    again = run_task(_task(tmp_path), out, client=client, progress=False)
    assert _states(again) == {
        "ingest": (0, 6),
        "features": (0, 6),
        "fit/validate": (0, 1),
        "report": (0, 1),
    }
    assert again.bundle == first.bundle

    model = run_task(
        _task(tmp_path, **{"model.name": "logreg"}), out, client=client, progress=False
    )
    assert _states(model) == {
        "ingest": (0, 6),
        "features": (0, 6),
        "fit/validate": (1, 0),
        "report": (1, 0),
    }

    window = run_task(_task(tmp_path, **{"windows.step": 0.05}), out, client=client, progress=False)
    assert _states(window) == {
        "ingest": (0, 6),
        "features": (6, 0),
        "fit/validate": (1, 0),
        "report": (1, 0),
    }

    more = run_task(
        _task(tmp_path, **{"windows.step": 0.05, "data.options.n_subjects": 4}),
        out,
        client=client,
        progress=False,
    )
    assert _states(more) == {
        "ingest": (2, 6),
        "features": (2, 6),
        "fit/validate": (1, 0),
        "report": (1, 0),
    }
    bundle = load_bundle(more.bundle)
    assert sorted(bundle.metadata["training_subjects"]) == ["01", "02", "03", "04"]
    assert bundle.metadata["window_plan"]["step"] == 0.05

    # every run has a manifest listing its stage keys; status lists them as complete
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 5
    assert all(json.loads(r.read_text())["status"] == "finished" for r in runs)
    assert main(["status", str(out)]) == 0
    # clean removes stages that no kept run references (the first runs' model and features)
    assert main(["clean", str(out), "--keep-runs", "1"]) == 0
    assert len(list((out / "runs").glob("*.json"))) == 1
    assert more.bundle.exists() and not first.bundle.exists()


def test_predict_cli_matches_bundle_and_refuses_mismatch(tmp_path: Path, client, make_store):
    out = tmp_path / "out"
    summary = run_task(_task(tmp_path), out, client=client, progress=False)
    pred = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                str(summary.bundle),
                "--store",
                str(summary.store),
                "--recording",
                "sub-01_run-1",
                "--out",
                str(pred),
            ]
        )
        == 0
    )
    import pandas as pd

    frame = pd.read_csv(pred)
    assert set(frame["recording"]) == {"sub-01_run-1"}
    assert {"prediction", "start", "label"} <= set(frame.columns)
    assert all(c.startswith("proba__") for c in frame.columns[7:-1])
    assert frame.columns[-1] == "subject_in_training"
    other = make_store([{"subject": "09", "n_channels": 3, "sampling_rate": 500.0}])
    from pipeline.exceptions import BundleError
    from pipeline.predict import predict_recordings

    with pytest.raises(
        BundleError,
        match=r"sub-09_run-1 does not match .*channels: .*"
        r"sampling_rate: bundle expects 1000.0 Hz, got 500.0",
    ):
        predict_recordings(summary.bundle, other)


def test_killed_run_resumes(tmp_path: Path):
    """kill -9 in the middle of the features stage; the next run trusts nothing half-done."""
    out = tmp_path / "out"
    task = _task(tmp_path, **{"data.options.n_subjects": 4, "data.options.duration": 30.0})
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "run",
        str(task),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        done = (
            [p for p in (out / "stages").glob("*/manifest.json")]
            if (out / "stages").exists()
            else []
        )
        if any(json.loads(p.read_text())["name"] == "features" for p in done):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert [r["status"] for r in runs] == ["running"]  # it never finished
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "features" in result.stdout and "report" in result.stdout
    manifest = max((out / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    states = [s["state"] for s in json.loads(manifest.read_text())["stages"]]
    assert "reused" in states and "computed" in states  # resumed, did not start over
    assert not list((out / "tmp").iterdir())  # no stale temporary directory survives


def test_demo_task_spec_is_the_readme_demo():
    readme = (REPO / "README.md").read_text()
    assert ".venv/bin/cohort demo" in readme
    assert (REPO / "tasks" / "demo.yaml").exists()
