#!/usr/bin/env bash
# CI job: the package as a user gets it. Build the wheel, install it (not editable) into a fresh
# virtualenv, and from a directory outside the checkout run `cohort demo` and resolve the
# shipped SLURM profile by its bare name, so nothing may be read from the repository.
#
#   bash .ci/wheel_smoke.sh [WORKDIR]     (default: a new temporary directory, removed on exit)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
if [ -z "${1:-}" ]; then
  trap 'rm -rf "$work"' EXIT
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "== wheel: build"
python3 -m venv "$work/build-venv"
"$work/build-venv/bin/python" -m pip install --quiet --upgrade pip
"$work/build-venv/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$repo"
wheel=$(ls "$work"/dist/cohort_pipeline-*.whl)
echo "built $wheel"

echo "== wheel: install into a fresh virtualenv"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "$wheel"

echo "== wheel: run from outside the checkout"
mkdir -p "$work/elsewhere"
cd "$work/elsewhere"
# the installed package, not the checkout, must be what runs
"$work/venv/bin/python" - "$repo" <<'EOF'
import sys
from pathlib import Path

import pipeline
from pipeline.cluster import job_script, load_profile

repo = Path(sys.argv[1]).resolve()
where = Path(pipeline.__file__).resolve()
if repo in where.parents:
    sys.exit(f"pipeline imported from the checkout ({where}), not from the installed wheel")
profile = load_profile("slurm")
if profile["kind"] != "slurm" or repo in Path(profile["source"]).resolve().parents:
    sys.exit(f"--cluster slurm resolved to {profile['source']!r}, not the shipped profile")
script = job_script("slurm")
assert "#SBATCH -J cohort-worker" in script, script
print(f"--cluster slurm -> {profile['source']}")
EOF
"$work/venv/bin/cohort" demo --out "$work/elsewhere/demo-out" --no-progress
for f in latest/report.json latest/report.html latest/model.skops; do
  if [ ! -s "$work/elsewhere/demo-out/$f" ]; then
    echo "cohort demo (installed wheel) did not write $f" >&2
    exit 1
  fi
done
echo "wheel smoke test: OK"
