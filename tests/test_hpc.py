"""The HPC path for real: the demo task on a single-node SLURM cluster (marker `slurm`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slurm


def _squeue_ids() -> set[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@contextlib.contextmanager
def _holding_8787() -> Iterator[None]:
    """Listen on 8787 for the duration (SO_REUSEADDR: a port in TIME_WAIT is free to bind)."""
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        taken.bind(("", 8787))
        taken.listen()
    except OSError:
        pass  # another process holds it: the same situation
    try:
        yield
    finally:
        taken.close()


def test_demo_with_workers_submitted_by_dask_jobqueue(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # 8787 held, as by another run's dashboard: the scheduler takes a free port, quietly
    with _holding_8787():
        result = _run_demo_on_slurm(tmp_path, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "already in use" not in result.stderr
    (port,) = re.findall(r"^Dask dashboard: http://[^\s/]+:(\d+)/status$", result.stdout, re.M)
    assert port != "8787"
    run = json.loads(max((out / "runs").glob("*.json")).read_text())
    assert run["status"] == "finished"
    workers = run["workers"]
    assert workers and all(str(w["slurm_job_id"]).isdigit() for w in workers)
    assert (out / "latest" / "model.skops").exists() and (out / "latest" / "report.html").exists()
    assert (out / "dask-report.html").exists()


def _run_demo_on_slurm(tmp_path: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "demo",  # the shipped demo task and profile, by name, from outside the checkout
            "--cluster",
            "slurm",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )


def test_sbatch_job_script_runs_the_demo(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    env = {**os.environ, "COHORT_VENV": str(venv)}
    out = tmp_path / "out"
    submitted = subprocess.run(
        [
            "sbatch",
            "--wait",
            "--parsable",
            "-c",
            "2",
            "--mem=6G",
            f"--output={tmp_path}/job-%j.out",
            str(REPO / "cluster" / "slurm.sbatch"),
            str(REPO / "tasks" / "demo.yaml"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=tmp_path,
    )
    log = "\n".join(p.read_text() for p in tmp_path.glob("job-*.out"))
    assert submitted.returncode == 0, submitted.stderr + log[-3000:]
    job_id = submitted.stdout.strip().split(";")[0]
    assert job_id.isdigit() and job_id not in _squeue_ids()  # finished
    assert f"cohort-run: job {job_id}" in log
    run = json.loads(max((out / "runs").glob("*.json")).read_text())
    assert run["status"] == "finished"
    assert all(str(w.get("slurm_job_id")) == job_id for w in run["workers"])  # inside the job
    assert (out / "latest" / "model.skops").exists() and (out / "latest" / "report.html").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return not stat.stdout.strip().startswith("Z")  # a zombie has exited


def test_stopped_controller_fails_the_run_at_once(tmp_path: Path) -> None:
    import signal
    import time

    pid = int(Path("/run/slurmctld.pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(pid), "slurmctld did not stop"
        t0 = time.monotonic()
        result = subprocess.run(
            [
                *(sys.executable, "-m", "pipeline.cli", "demo", "--cluster", "slurm"),
                *("--out", str(tmp_path / "out"), "--no-progress"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            # distributed's port-in-use warning (8787 held by another run) is not the run's
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        seconds = time.monotonic() - t0
    finally:
        # later tests need the controller: .ci/slurm.sh start restarts only what is down
        subprocess.run(["bash", str(REPO / ".ci" / "slurm.sh"), "start"], check=True, timeout=300)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    # not the profile's 300-s wait-timeout: sbatch's own retries take about 9 s here, the
    # rest is start-up (115 s in all once at load average 40 on 2 cores)
    assert seconds < 240, seconds
    assert "wait-timeout" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        r"error: Job submission failed \(profile .*slurm.*\): sbatch said: .*"
        r"Unable to contact slurm controller.*",
        lines[0],
    ), lines[0]
