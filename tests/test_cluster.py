"""Tests of cluster profiles (pipeline.cluster) and the batch job scripts in cluster/."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import dask
import pytest
import yaml
from dask.utils import format_bytes, parse_bytes

from pipeline import cluster as cl
from pipeline.exceptions import ClusterError, SpecError

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "cluster"


def _write(tmp_path: Path, text: str, name: str = "profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _fake_venv(root: Path) -> Path:
    """Make a virtualenv-like directory whose ``cohort`` records its arguments and env."""
    bin_dir = root / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\nexport FAKE_VENV=1\n')
    cohort = bin_dir / "cohort"
    cohort.write_text(
        textwrap.dedent(
            """\
            #!/usr/bin/env bash
            {
              printf '%s\\n' "$@"
              echo "PWD=$PWD"
              echo "FAKE_VENV=${FAKE_VENV:-}"
              echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-}"
              echo "NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-}"
              echo "SLURM_JOB_ID=${SLURM_JOB_ID:-}"
            } > "$RECORD"
            """
        )
    )
    cohort.chmod(cohort.stat().st_mode | stat.S_IEXEC)
    return root / "venv"


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize(
    ("name", "kind", "section"),
    [
        ("local", "local", ("local",)),
        ("slurm", "slurm", ("jobqueue", "slurm")),
        ("pbs", "pbs", ("jobqueue", "pbs")),
    ],
)
def test_shipped_profiles_load(name: str, kind: str, section: tuple[str, ...]) -> None:
    raw = yaml.safe_load((PROFILES / f"{name}.yaml").read_text())
    expected = raw
    for part in section:
        expected = expected[part]
    by_name = cl.load_profile(name)
    by_path = cl.load_profile(PROFILES / f"{name}.yaml")
    assert {**by_name, "source": ""} == {**by_path, "source": ""}
    assert by_name["kind"] == kind
    assert by_name["options"] == expected
    assert by_name["scale"] == raw.get("scale", {})


def test_jobqueue_profiles_have_the_required_settings() -> None:
    for name in ("slurm", "pbs"):
        options = cl.load_profile(name)["options"]
        for key in ("cores", "memory", "walltime", "queue", "local-directory"):
            assert options[key] is not None, (name, key)
        assert "export OMP_NUM_THREADS=1" in options["job-script-prologue"]
        assert any("NUMBA_CACHE_DIR" in line for line in options["job-script-prologue"])


# ids avoid the bare word "slurm", which the conftest would read as the marker
@pytest.mark.parametrize("kind", ["slurm", "pbs", "sge", "lsf"], ids=lambda k: f"{k}-config")
def test_accepted_keys_cover_dask_jobqueue_config(kind: str) -> None:
    config_keys = set(dask.config.get(f"jobqueue.{kind}"))
    assert config_keys <= set(cl.accepted_keys(kind))


def test_default_and_address_profiles() -> None:
    default = cl.load_profile(None)
    assert default["kind"] == "local" and default["options"] == {}
    addr = cl.load_profile("tcp://10.0.0.1:8786")
    assert addr["kind"] == "address" and addr["address"] == "tcp://10.0.0.1:8786"


def test_snake_case_keys_are_normalised(tmp_path: Path) -> None:
    path = _write(tmp_path, "local:\n  n_workers: 2\n  threads_per_worker: 1\n")
    assert cl.load_profile(path)["options"] == {"n-workers": 2, "threads-per-worker": 1}


# --------------------------------------------------------------------------- errors


def test_typo_in_jobqueue_key_names_file_key_and_closest(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        jobqueue:
          slurm:
            cores: 1
            memory: 2GB
            walltme: "00:10:00"
        """,
    )
    pattern = (
        rf"^{path}: unknown key 'jobqueue\.slurm\.walltme'; did you mean 'walltime'\? "
        r"\(valid keys here: account, cores, .*job-script-prologue, .*walltime"
    )
    with pytest.raises(SpecError, match=pattern):
        cl.load_profile(path)


def test_typo_in_local_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "local:\n  n-worker: 2\n")
    with pytest.raises(
        SpecError, match=r"unknown key 'local\.n-worker'; did you mean 'n-workers'\?"
    ):
        cl.load_profile(path)


def test_snake_case_typo_is_reported_in_kebab_case(tmp_path: Path) -> None:
    path = _write(tmp_path, "local:\n  threads_per_wroker: 2\n")
    with pytest.raises(
        SpecError,
        match=r"unknown key 'local\.threads-per-wroker'; did you mean 'threads-per-worker'\?",
    ):
        cl.load_profile(path)


def test_unknown_scheduler_section(tmp_path: Path) -> None:
    path = _write(tmp_path, "jobqueue:\n  slrum:\n    cores: 1\n")
    with pytest.raises(
        SpecError,
        match=r"unknown key 'jobqueue\.slrum'; did you mean 'slurm'\? "
        r"\(valid keys here: htcondor, lsf, moab, oar, pbs, sge, slurm\)",
    ):
        cl.load_profile(path)


def test_unknown_top_level_key_without_close_match(tmp_path: Path) -> None:
    path = _write(tmp_path, "local: {}\nfoo: 1\n")
    with pytest.raises(
        SpecError,
        match=r"unknown key 'foo' \(valid keys here: address, jobqueue, local, numba-cache-dir, "
        r"scale\)$",
    ):
        cl.load_profile(path)


def test_dashboard_address_must_go_in_scheduler_options(tmp_path: Path) -> None:
    path = _write(tmp_path, "jobqueue:\n  slurm:\n    dashboard-address: ':0'\n")
    with pytest.raises(
        SpecError,
        match=r"key 'jobqueue\.slurm\.dashboard-address': expected no 'dashboard-address' here: "
        r"dask-jobqueue takes it in 'scheduler-options', for example: scheduler-options: "
        r"\{dashboard_address: ':0'\}; found ':0'",
    ):
        cl.load_profile(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "local: {}\njobqueue: {slurm: {}}\n",
            r"expected exactly one of 'jobqueue', 'local' or 'address' "
            r"\(the profile has jobqueue, local\)",
        ),
        ("{}\n", r"expected exactly one of .* \(the profile has none\); found \{\}"),
        (
            "local: {}\nscale: {jobs: 2}\n",
            r"expected 'scale' only beside a 'jobqueue' section; for a local cluster set "
            r"local\.n-workers instead",
        ),
        (
            "jobqueue: {slurm: {cores: 1}}\nscale: {jobs: -1}\n",
            r"key 'scale\.jobs': expected .*greater than or equal to 0; found -1",
        ),
        (
            "jobqueue: {slurm: {cores: 1}}\nscale: {jobs: 1.5}\n",
            r"key 'scale\.jobs': expected .*integer; found 1\.5",
        ),
        (
            "jobqueue: {slurm: {}, pbs: {}}\n",
            r"key 'jobqueue': expected exactly one scheduler section, one of slurm, pbs, .* "
            r"\(the profile has pbs, slurm\)",
        ),
        (
            "address: 8786\n",
            r"key 'address': expected a scheduler address like 'tcp://host:8786'; found 8786",
        ),
        ("address:\n", r"key 'address': expected a scheduler address .*; found None"),
        ("local: [1, 2]\n", r"key 'local': expected a valid dictionary.*; found \[1, 2\]"),
        ("local: {n-workers: [\n", r"not valid YAML"),
    ],
)
def test_malformed_profiles(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SpecError, match=rf"^{path}: .*{match}"):
        cl.load_profile(path)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "jobqueue:\n  slurm: {walltme: 1, coers: 2}\nscale: {jobs: -1}\n")
    with pytest.raises(SpecError) as info:
        cl.load_profile(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert "did you mean 'walltime'?" in lines[0] and "did you mean 'cores'?" in lines[1]


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    assert cl.load_profile(_write(tmp_path, "local:\n"))["options"] == {}
    assert cl.load_profile(_write(tmp_path, "local:\nscale:\n"))["scale"] == {}
    prof = cl.load_profile(_write(tmp_path, "jobqueue:\n  slurm:\nscale: {maximum_jobs: 3}\n"))
    assert (prof["kind"], prof["options"], prof["scale"]) == ("slurm", {}, {"maximum-jobs": 3})


def test_missing_profile_lists_shipped_names() -> None:
    with pytest.raises(
        SpecError,
        match=r"'nope' not found: expected a YAML file, the name of a profile shipped with the "
        r"package \(local, pbs, slurm\)",
    ):
        cl.load_profile("nope")


def test_profile_names_resolve_to_the_package_data() -> None:
    import pipeline

    shipped = Path(pipeline.__file__).parent / "_data" / "cluster"
    for name in ("local", "slurm", "pbs"):
        assert cl.load_profile(name)["source"] == str(shipped / f"{name}.yaml")
        # the checkout's cluster/<name>.yaml is the same file, not a copy
        assert (PROFILES / f"{name}.yaml").resolve() == (shipped / f"{name}.yaml").resolve()


# --------------------------------------------------------------------------- job scripts


def test_slurm_job_script_renders_profile() -> None:
    options = yaml.safe_load((PROFILES / "slurm.yaml").read_text())["jobqueue"]["slurm"]
    script = cl.job_script("slurm")
    lines = script.splitlines()
    assert f"#SBATCH -J {options['name']}" in lines
    assert f"#SBATCH -p {options['queue']}" in lines
    assert f"#SBATCH --cpus-per-task={options['cores']}" in lines
    assert f"#SBATCH -t {options['walltime']}" in lines
    mem_gib = -(-parse_bytes(options["memory"]) // 2**30)
    assert f"#SBATCH --mem={mem_gib}G" in lines
    for line in options["job-script-prologue"]:
        assert line in lines
    worker = lines[-1]
    assert "distributed.cli.dask_worker" in worker
    assert f"--local-directory {options['local-directory']}" in worker
    assert f"--death-timeout {options['death-timeout']}" in worker


def test_pbs_profile_loads_into_pbscluster_and_renders() -> None:
    from dask_jobqueue import PBSCluster

    options = yaml.safe_load((PROFILES / "pbs.yaml").read_text())["jobqueue"]["pbs"]
    kwargs = cl._jobqueue_kwargs(cl.load_profile("pbs"), None)
    kwargs["scheduler_options"] = {"dashboard_address": ":0"}
    with PBSCluster(**kwargs) as cluster:  # starts a scheduler, submits no job
        script = cluster.job_script()
    assert (
        script.replace("dummy-name", "dask-worker").split("\n")[:-2]
        == cl.job_script("pbs").split("\n")[:-2]
    )
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert f"#PBS -N {options['name']}" in lines
    assert f"#PBS -q {options['queue']}" in lines
    assert f"#PBS -l {options['resource-spec']}" in lines
    assert f"#PBS -l walltime={options['walltime']}" in lines
    assert "#PBS -j oe" in lines
    assert "export OMP_NUM_THREADS=1" in lines
    worker = lines[-1]
    per_worker = format_bytes(parse_bytes(options["memory"]) / options["processes"]).replace(
        " ", ""
    )
    threads = options["cores"] // options["processes"]
    assert f"--nthreads {threads} --memory-limit {per_worker}" in worker
    assert f"--nworkers {options['processes']}" in worker
    assert f"--local-directory {options['local-directory']}" in worker


def test_numba_cache_dir_is_added_when_missing(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        jobqueue:
          slurm:
            cores: 1
            memory: 1GB
            local-directory: /scratch/local
            job-script-prologue: ["export OMP_NUM_THREADS=1"]
        """,
    )
    lines = cl.job_script(path).splitlines()
    assert 'export NUMBA_CACHE_DIR="/scratch/local/numba-cache"' in lines
    no_local = _write(tmp_path, "jobqueue: {pbs: {cores: 1, memory: 1GB}}\n", "p2.yaml")
    assert 'export NUMBA_CACHE_DIR="${TMPDIR:-/tmp}/cohort-numba-cache"' in cl.job_script(no_local)
    explicit = _write(
        tmp_path, "jobqueue: {pbs: {cores: 1, memory: 1GB}}\nnumba-cache-dir: /x\n", "p3.yaml"
    )
    assert 'export NUMBA_CACHE_DIR="/x"' in cl.job_script(explicit)


def test_job_script_refuses_local() -> None:
    with pytest.raises(SpecError, match=r"is 'local': only dask-jobqueue profiles .* have a job"):
        cl.job_script("local")


# --------------------------------------------------------------------------- local cluster


def test_local_kwargs_follow_the_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE", "NCPUS", "PBS_NUM_PPN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("SLURM_MEM_PER_NODE", raising=False)
    monkeypatch.delenv("SLURM_MEM_PER_CPU", raising=False)
    assert cl.allocation_resources() == (len(os.sched_getaffinity(0)), None)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "3000")
    assert cl.allocation_resources() == (6, 3000 * 2**20)
    kwargs = cl._local_kwargs(cl.load_profile({"local": {"threads-per-worker": 2}}))
    assert kwargs["n_workers"] == 3 and kwargs["threads_per_worker"] == 2
    assert kwargs["memory_limit"] == 1000 * 2**20
    assert kwargs["processes"] is True
    shipped = cl._local_kwargs(cl.load_profile("local"))  # memory-limit: auto
    assert shipped["n_workers"] == 6 and shipped["memory_limit"] == 500 * 2**20
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.delenv("SLURM_MEM_PER_NODE")
    monkeypatch.setenv("NCPUS", "4")
    monkeypatch.setenv("TMPDIR", "/node/scratch")
    kwargs = cl._local_kwargs(cl.load_profile({"local": {"local-directory": "$TMPDIR/dask"}}))
    assert kwargs["n_workers"] == 4
    assert kwargs["local_directory"] == "/node/scratch/dask"
    assert kwargs["env"]["NUMBA_CACHE_DIR"] == "/node/scratch/dask/numba-cache"


def test_local_cluster_and_address(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    profile = {
        "local": {
            "n-workers": 1,
            "threads-per-worker": 1,
            "memory-limit": "600MB",
            "dashboard-address": ":0",
            "local-directory": str(tmp_path / "scratch"),
        }
    }
    caplog.set_level(logging.INFO, logger="pipeline.cluster")
    cluster, client = cl.make_cluster(profile)
    try:
        assert f"Dask dashboard: {client.dashboard_link}" in caplog.text
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 1
        (info,) = workers.values()
        assert info["nthreads"] == 1
        assert info["memory_limit"] == parse_bytes("600MB")
        env = client.run(
            lambda: (os.environ.get("NUMBA_CACHE_DIR"), os.environ.get("OMP_NUM_THREADS"))
        )
        assert list(env.values()) == [(str(tmp_path / "scratch" / "numba-cache"), "1")]
        malloc = client.run(lambda: {k: os.environ.get(k) for k in cl.WORKER_MALLOC_ENV})
        assert list(malloc.values()) == [cl.WORKER_MALLOC_ENV]
        (row,) = cl.describe_workers(client)
        assert row["address"] == next(iter(workers))
        assert row["nthreads"] == 1 and row["memory_limit"] == parse_bytes("600MB")
        assert row["pid"] != os.getpid() and row["slurm_job_id"] is None
        assert row["numba_cache_dir"] == str(tmp_path / "scratch" / "numba-cache")
        # a second client through an address profile: nothing of ours to close
        with cl.connect(cluster.scheduler_address) as other:
            assert other.submit(sum, [1, 2, 3]).result() == 6
            assert other.dashboard_link == client.dashboard_link
        report = tmp_path / "reports" / "dask-report.html"
        with cl.performance_report(report):
            assert client.submit(pow, 2, 10).result() == 1024
        assert report.stat().st_size > 1000
        assert "<html" in report.read_text()[:2000].lower()
    finally:
        client.close()
        cluster.close()


def test_unreachable_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cl, "_CONNECT_TIMEOUT", "1s")
    with pytest.raises(
        ClusterError, match=r"Cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:9'"
    ):
        cl.make_cluster("tcp://127.0.0.1:9")


def test_missing_submit_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match=r"the submit command 'qsub' is not on PATH"):
        cl.make_cluster("pbs")


# --------------------------------------------------------------------------- batch scripts


def test_pbs_script_plumbing_outside_pbs(tmp_path: Path) -> None:
    """Run cluster/pbs.pbs with bash as PBS would (env vars, PBS_O_WORKDIR), fake cohort."""
    venv = _fake_venv(tmp_path)
    record = tmp_path / "record.txt"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COHORT_VENV": str(venv),
        "RECORD": str(record),
        "PBS_O_WORKDIR": str(tmp_path),
        "TASK": "tasks/demo.yaml",
        "TMPDIR": "/node/tmp",
    }
    proc = subprocess.run(
        ["bash", str(PROFILES / "pbs.pbs")], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().splitlines() == [
        "run",
        "tasks/demo.yaml",
        "--cluster",
        "local",
        "--out",
        "runs/demo",
        f"PWD={tmp_path}",
        "FAKE_VENV=1",
        "OMP_NUM_THREADS=1",
        "NUMBA_CACHE_DIR=/node/tmp/cohort-numba-cache",
        "SLURM_JOB_ID=",
    ]


def test_batch_scripts_refuse_missing_task(tmp_path: Path) -> None:
    for script, hint in (("pbs.pbs", "qsub -v TASK="), ("slurm.sbatch", "sbatch cluster/slurm")):
        proc = subprocess.run(
            ["bash", str(PROFILES / script)],
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 2
        assert "no task given" in proc.stderr and hint in proc.stderr


# --------------------------------------------------------------------------- real SLURM


@pytest.mark.slurm
def test_slurm_cluster_workers_run_as_slurm_jobs(tmp_path: Path) -> None:
    profile = cl.load_profile("slurm")
    profile["options"]["scheduler-options"] = {"dashboard_address": ":0"}
    profile["scale"]["wait-timeout"] = 120
    with cl.connect(profile, log_directory=tmp_path / "logs") as client:
        job_ids = client.run(lambda: os.environ.get("SLURM_JOB_ID"))
        assert len(job_ids) == 1
        (job_id,) = job_ids.values()
        assert job_id is not None and job_id.isdigit()
        assert [w["slurm_job_id"] for w in cl.describe_workers(client)] == [job_id]
        squeue = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%j %T"], capture_output=True, text=True
        )
        assert squeue.stdout.split() == ["cohort-worker", "RUNNING"]
        numba_dir = client.run(lambda: os.environ.get("NUMBA_CACHE_DIR"))
        assert next(iter(numba_dir.values())).endswith("/cohort-numba-cache")
        malloc = client.run(lambda: {k: os.environ.get(k) for k in cl.WORKER_MALLOC_ENV})
        assert list(malloc.values()) == [cl.WORKER_MALLOC_ENV]
        futures = client.map(lambda x: x**2, range(10))
        assert sum(client.gather(futures)) == sum(x**2 for x in range(10))
    assert list((tmp_path / "logs").glob(f"cohort-worker-{job_id}.err"))


@pytest.mark.slurm
def test_sbatch_script_runs_cohort_in_a_job(tmp_path: Path) -> None:
    assert shutil.which("sbatch"), "sbatch not on PATH"
    venv = _fake_venv(tmp_path)
    record = tmp_path / "record.txt"
    proc = subprocess.run(
        [
            "sbatch",
            "--wait",
            "--parsable",
            "-c",
            "1",
            "--mem=200M",
            "--time=00:05:00",
            f"--chdir={tmp_path}",
            f"--output={tmp_path}/job-%j.out",
            f"--export=ALL,COHORT_VENV={venv},RECORD={record}",
            str(PROFILES / "slurm.sbatch"),
            "tasks/demo.yaml",
            "runs/x",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    lines = record.read_text().splitlines()
    assert lines[:6] == [
        "run",
        "tasks/demo.yaml",
        "--cluster",
        "local",
        "--out",
        "runs/x",
    ]
    assert f"PWD={tmp_path}" in lines and "FAKE_VENV=1" in lines
    assert "OMP_NUM_THREADS=1" in lines
    assert f"SLURM_JOB_ID={job_id}" in lines
    log = (tmp_path / f"job-{job_id}.out").read_text()
    assert f"cohort-run: job {job_id}" in log and "with 1 CPUs" in log


_PATTERN_A = """\
import json, sys
from pipeline import cluster as cl

if __name__ == "__main__":
    profile = cl.load_profile({"local": {"dashboard-address": ":0"}})
    with cl.connect(profile) as client:
        workers = cl.describe_workers(client)
    with open(sys.argv[1], "w") as f:
        json.dump(workers, f)
"""


@pytest.mark.slurm
def test_local_cluster_inside_an_allocation_follows_it(tmp_path: Path) -> None:
    """Pattern A: a LocalCluster started in a batch job uses the job's CPUs and memory."""
    script = tmp_path / "pattern_a.py"
    script.write_text(_PATTERN_A)
    out = tmp_path / "workers.json"
    proc = subprocess.run(
        [
            "sbatch",
            "--wait",
            "--parsable",
            "-c",
            "2",
            "--mem=1G",
            "--time=00:05:00",
            f"--chdir={REPO}",
            f"--output={tmp_path}/job-%j.out",
            f"--wrap={sys.executable} {script} {out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    job_id = proc.stdout.strip().split(";")[0]
    log = tmp_path / f"job-{job_id}.out"
    assert proc.returncode == 0, (proc.stderr, log.read_text() if log.exists() else "")
    workers = json.loads(out.read_text())
    assert [w["slurm_job_id"] for w in workers] == [job_id, job_id]
    assert [w["nthreads"] for w in workers] == [1, 1]
    assert [w["memory_limit"] for w in workers] == [2**30 // 2, 2**30 // 2]


def test_job_script_sets_the_worker_allocator_whatever_this_process_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a nanny started earlier in this process leaves distributed's 64 KiB trim threshold in
    # os.environ, and batch jobs inherit the submitter's environment
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    lines = cl.job_script("slurm").splitlines()
    for name, value in cl.WORKER_MALLOC_ENV.items():
        assert f"export {name}={value}" in lines
    own = _write(
        tmp_path,
        "jobqueue: {slurm: {cores: 1, memory: 1GB, "
        "job-script-prologue: ['export MALLOC_TRIM_THRESHOLD_=1']}}\n",
        "own.yaml",
    )
    lines = cl.job_script(own).splitlines()
    assert "export MALLOC_TRIM_THRESHOLD_=1" in lines
    assert not any(line.startswith("export MALLOC_TRIM_THRESHOLD_=16") for line in lines)
