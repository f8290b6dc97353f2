"""Wall time of a first ``cohort run`` against an unchanged rerun (issue 14 item 6).

Each repeat runs ``cohort run TASK --out OUT --no-progress`` in a fresh process on an empty
output folder (the first run: ingest, features, fit/validate, report), then again on the
same folder (the rerun: every stage cached, no cluster started). Wall time is measured
around the whole process, start-up and imports included, as ``time`` would.

    .venv/bin/python benchmarks/bench_rerun.py                      # tasks/emg_gestures.yaml
    .venv/bin/python benchmarks/bench_rerun.py --task tasks/demo.yaml --repeats 1
    .venv/bin/python benchmarks/bench_rerun.py --permutations 0   # first run without the test
    .venv/bin/python benchmarks/bench_rerun.py --repeats 1 --reruns 5   # five reruns of one

``--permutations N`` runs a copy of the task with ``validation.n_permutations: N`` (the
permutation test refits every fold N times: only the first run's time changes, and with
0 the 10 % ratio is the harder one to meet). ``$COHORT_DATA`` (default ``../shared/data``)
is passed on, so the copy finds the same data.

Target: rerun <= 1.5 s and <= 10 % of the first run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("COHORT_DATA", ROOT.parent / "shared" / "data")).resolve()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(task: Path, out: Path) -> tuple[float, float]:
    """Return the wall and CPU seconds (user + system) of one ``cohort run`` process."""
    cohort = Path(sys.executable).with_name("cohort")
    cmd = [str(cohort), "run", str(task), "--out", str(out), "--no-progress"]
    env = {**os.environ, "COHORT_DATA": str(DATA)}
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        msg = f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        raise SystemExit(msg)
    return seconds, cpu


def _cluster_started(out: Path) -> bool:
    manifests = sorted((out / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return bool(json.loads(manifests[-1].read_text()).get("cluster_started", True))


def _with_permutations(task: Path, n: int, folder: Path) -> Path:
    import yaml

    doc = yaml.safe_load(task.read_text())
    doc.setdefault("validation", {})["n_permutations"] = n
    copy = folder / task.name
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print each repeat and the medians' ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, default=ROOT / "tasks" / "emg_gestures.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--permutations", type=int, default=None, help="validation.n_permutations of a copy"
    )
    parser.add_argument(
        "--reruns", type=int, default=1, help="unchanged reruns timed after each first run"
    )
    args = parser.parse_args(argv)
    print(f"load {os.getloadavg()[0]:.1f} at the start; {' '.join(sys.argv)}", flush=True)
    firsts: list[float] = []
    reruns: list[float] = []
    rerun_cpu: list[float] = []
    for i in range(args.repeats):
        out = Path(tempfile.mkdtemp(prefix="bench-rerun-"))
        task = args.task
        if args.permutations is not None:
            task = _with_permutations(args.task, args.permutations, out)
        try:
            firsts.append(_run(task, out / "out")[0])
            for _ in range(args.reruns):
                wall, cpu = _run(task, out / "out")
                reruns.append(wall)
                rerun_cpu.append(cpu)
            started = _cluster_started(out / "out")
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(
            f"repeat {i + 1}: first run {firsts[-1]:.2f} s, rerun "
            + " / ".join(f"{w:.2f}" for w in reruns[-args.reruns :])
            + " s (CPU "
            + " / ".join(f"{c:.2f}" for c in rerun_cpu[-args.reruns :])
            + " s) "
            f"(cluster started on rerun: {started}; load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    first, rerun = statistics.median(firsts), statistics.median(reruns)
    print(
        f"median: first run {first:.2f} s, rerun {rerun:.2f} s "
        f"(CPU {statistics.median(rerun_cpu):.2f} s), "
        f"ratio {rerun / first:.3f} (target <= 1.5 s and <= 0.10)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
