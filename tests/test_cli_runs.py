"""``cohort run`` as real processes: concurrent runs on one --out, kill -9, the CLI's output."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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
validation: {n_permutations: 0}   # no test here counts permutations
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
    for proc, (_, stderr) in zip((first, second), results, strict=True):
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


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs (needs mount rights: root in a container, else the test is skipped)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_one_line_exit_2_and_recorded(tmp_path: Path, small_disk: Path) -> None:
    out = small_disk / "out"
    proc = _cohort("run", _task(tmp_path), "--out", out, "--no-progress", "--workers", "1")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert stderr.strip().splitlines() == [stderr.strip()]  # one line, no traceback
    assert re.fullmatch(
        rf"error: cannot write '{re.escape(str(out))}[^']*': No space left on device "
        rf"\(\d+\.\d MiB free of 1\.0 MiB at '{re.escape(str(out))}[^']*'\); free some space.*",
        stderr.strip(),
    ), stderr
    (run,) = StageCache(out).runs()
    assert run["status"] == "failed" and "No space left on device" in run["error"]


def test_read_only_output_is_one_line_exit_2(tmp_path: Path, small_disk: Path) -> None:
    (small_disk / "out").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    proc = _cohort("run", _task(tmp_path), "--out", small_disk / "out", "--no-progress")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert re.fullmatch(r"error: cannot write '[^']+': Read-only file system \(.*", stderr.strip())


def test_killed_run_shows_as_interrupted(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "pipeline.cli", "run", str(_task(tmp_path)), "--out", str(out)]
    proc = subprocess.Popen(
        [*argv, "--no-progress", "--workers", "1"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its cluster's processes die with it
    )
    try:
        deadline = time.monotonic() + 120
        while not list((out / "runs").glob("*.json")):  # the run has started
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert main(["status", str(out)]) == 0
        assert "running" in capsys.readouterr().out.splitlines()[-1]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert main(["status", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r"last run \S+: interrupted", last), last


@contextlib.contextmanager
def _holding_8787() -> Iterator[None]:
    """Listen on 8787 for the duration, as another cluster's dashboard would."""
    import socket

    taken = socket.socket()
    # a dashboard closed by an earlier test leaves 8787 in TIME_WAIT: without SO_REUSEADDR the
    # bind fails although nobody listens, and the run rightly takes the free port
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 30
    while True:  # a killed run of an earlier test may still be releasing the port
        try:
            taken.bind(("", 8787))
            taken.listen()
            break
        except OSError:
            if time.monotonic() > deadline:
                break  # someone else holds it for good: the same situation
            time.sleep(0.5)
    try:
        yield
    finally:
        taken.close()


def test_run_is_quiet_with_the_dashboard_port_taken(tmp_path: Path) -> None:
    with _holding_8787():
        argv = [sys.executable, "-m", "pipeline.cli", "run", str(_task(tmp_path)), "--out"]
        done = subprocess.run(
            [*argv, str(tmp_path / "out"), "--no-progress", "--workers", "1"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no port-in-use block, no distributed.sizeof warnings
    (link,) = re.findall(r"^Dask dashboard: http://[\d.]+:(\d+)/status$", done.stdout, re.M)
    assert link != "8787"


def test_job_queue_cluster_takes_a_free_dashboard_port_without_a_warning() -> None:
    # The scheduler of a SLURM/PBS cluster runs in this process: built from the shipped
    # profile's arguments with 8787 held, it must not print distributed's port-in-use block.
    # No job is submitted (the cluster is never scaled), so no scheduler is needed.
    import warnings

    import dask_jobqueue

    from pipeline.cluster import _jobqueue_kwargs, load_profile

    with _holding_8787(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kwargs = _jobqueue_kwargs(load_profile("slurm"), None)
        with dask_jobqueue.SLURMCluster(**kwargs) as cluster:
            link = cluster.dashboard_link
    in_use = [str(w.message) for w in caught if "already in use" in str(w.message)]
    assert in_use == []
    port = re.fullmatch(r"http://[^/]+:(\d+)/status", link)
    assert port is not None and port[1] != "8787", link


def test_version_and_workers_arguments(capsys) -> None:
    from pipeline import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"cohort {__version__}\n"
    with pytest.raises(SystemExit):
        main(["run", "t.yaml", "--workers", "0"])
    assert "--workers/-w: expected a positive number of worker processes, e.g. 4; found '0'" in (
        capsys.readouterr().err
    )


def test_workers_is_for_a_local_cluster() -> None:
    from pipeline.cluster import load_profile, with_workers
    from pipeline.exceptions import SpecError

    assert with_workers(load_profile(None), 3)["options"]["n-workers"] == 3
    with pytest.raises(SpecError, match=r"--workers: expected a local cluster profile; found"):
        with_workers(load_profile("tcp://127.0.0.1:8786"), 3)


def test_submit_failure_is_kept_and_its_traceback_dropped() -> None:
    import logging

    from pipeline.cluster import _SubmitFailures

    watch = _SubmitFailures()
    err = RuntimeError(
        "Command exited with non-zero exit code.\nExit code: 1\nCommand:\nsbatch /tmp/x.sh\n"
        "stdout:\n\nstderr:\nsbatch: error: Unable to contact slurm controller (connect "
        "failure)\n\n"
    )
    record = logging.LogRecord(
        "tornado.application", 40, "", 0, "cb", (), (RuntimeError, err, None)
    )
    assert watch.filter(record) is False  # dropped: no traceback block
    other = logging.LogRecord("tornado.application", 40, "", 0, "other", (), None)
    assert watch.filter(other) is True
    assert watch.pop() == "sbatch: error: Unable to contact slurm controller (connect failure)"
    assert watch.pop() is None


@pytest.mark.slurm
def test_failed_sbatch_stops_the_run_at_once(tmp_path: Path) -> None:
    profile = tmp_path / "bad.yaml"
    profile.write_text(
        "jobqueue:\n  slurm:\n    queue: no-such-partition\n    cores: 1\n    memory: 1GB\n"
        "    walltime: '00:05:00'\nscale:\n  jobs: 1\n  wait-timeout: 300\n"
    )
    t0 = time.monotonic()
    proc = _cohort("run", _task(tmp_path), "--out", tmp_path / "out", "--cluster", profile)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert time.monotonic() - t0 < 60  # not the 300 s wait-timeout
    assert re.fullmatch(
        r"error: Job submission failed \(profile .*bad\.yaml\): sbatch said: sbatch: error: "
        r".*[Pp]artition.*; check the profile's queue, account and walltime.*",
        stderr.strip(),
    ), stderr


def test_every_argument_has_help_and_every_subcommand_an_example() -> None:
    import argparse

    from pipeline.cli import EXAMPLES, build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(EXAMPLES)
    for name, p in sub.choices.items():
        missing = [a.dest for a in p._actions if not a.help]
        assert not missing, f"cohort {name}: arguments without help: {missing}"
        assert p.format_help().rstrip().endswith(f"example:\n  {EXAMPLES[name]}")
        assert EXAMPLES[name].startswith(f"cohort {name}")
        # the example parses (its files need not exist to be parsed)
        args = parser.parse_args(EXAMPLES[name].split()[1:])
        assert args.command == name


def test_unchanged_rerun_starts_no_cluster_and_gives_the_same_report(tmp_path: Path) -> None:
    task, out = _task(tmp_path), tmp_path / "out"
    argv = ("run", task, "--out", out, "--no-progress", "--workers", "1")
    _, stderr = (first := _cohort(*argv)).communicate(timeout=600)
    assert first.returncode == 0, stderr
    report = (out / "latest" / "report.json").resolve()
    before = report.read_bytes()
    stdout, stderr = (rerun := _cohort(*argv)).communicate(timeout=600)
    assert rerun.returncode == 0, stderr
    assert "Dask dashboard" not in stdout
    runs = StageCache(out).runs()
    assert [r["status"] for r in runs] == ["finished", "finished"]
    last = max(runs, key=lambda r: r["started"])
    # decided from the keys before any cluster: none started, no workers described
    assert last["cluster_started"] is False and "workers" not in last
    assert last["info"]["cluster"] == "none (every stage cached)"
    assert {s["state"] for s in last["stages"]} == {"reused"}
    assert (out / "latest" / "report.json").resolve() == report
    assert report.read_bytes() == before
    # and it imports nothing that only computing needs (issue 14: a rerun in about a second)
    code = (
        "import sys; from pipeline.cli import main; "
        f"rc = main(['run', {str(task)!r}, '--out', {str(out)!r}, '--no-progress']); "
        f"print(rc, sorted(m for m in {COMPUTE_ONLY!r} if m in sys.modules))"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[-1] == "0 []"


#: Modules an unchanged rerun must not import: the cluster, the kernels, the signal and
#: array libraries, Parquet, scikit-learn and the bundle format, plotting, and the readers
#: of the formats the task does not use (their libraries).
COMPUTE_ONLY = (
    "dask.array",
    "dask.dataframe",
    "dask_jobqueue",
    "distributed",
    "matplotlib",
    "mne",
    "numba",
    "pipeline.io.edf",
    "pyedflib",
    "pyarrow.parquet",
    "scipy.signal",
    "skops",
    "sklearn",
    "xarray",
    "zarr",
)
