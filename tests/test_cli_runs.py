"""``cohort run`` as real processes: concurrent runs on one --out, kill -9, the CLI's output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cache import StageCache
from pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]

TASK = """
name: small
data: {source: demo, format: synthetic, options: {seed: 0, n_subjects: 2, n_runs: 1,
       duration: 30.0}}
windows: {length: 0.2, step: 0.05, exclude_labels: [unmarked]}
features: [mav, {name: zc, threshold: 1.0e-5}]
model: {name: lda}
"""


def _task(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(TASK)
    return path


def _cohort(*args: str | Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "pipeline.cli", *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_two_runs_on_one_out_both_finish_alike(tmp_path: Path) -> None:
    task, out = _task(tmp_path), tmp_path / "out"
    argv = ("run", task, "--out", out, "--no-progress", "--workers", "1")
    first = _cohort(*argv)
    time.sleep(1.0)  # the second starts while the first ingests
    second = _cohort(*argv)
    results = [p.communicate(timeout=300) for p in (first, second)]
    for proc, (stdout, stderr) in zip((first, second), results, strict=True):
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr and "interrupted" not in stderr
    lines = [re.findall(r"^validation: .*$", o, re.M) for o, _ in results]
    assert lines[0] == lines[1] and len(lines[0]) == 1
    runs = StageCache(out).runs()
    assert [r["status"] for r in runs] == ["finished", "finished"]
    fits = [{s["key"] for s in r["stages"] if s["name"] == "fit"} for r in runs]
    assert fits[0] == fits[1] and len(fits[0]) == 1
    # each stage was computed by one run and reused by the other
    states = {}
    for r in runs:
        for s in r["stages"]:
            states.setdefault(s["key"], []).append(s["state"])
    assert all(sorted(v) == ["computed", "reused"] for v in states.values()), states
    assert json.loads((out / "latest" / "report.json").read_text())["overall"]
