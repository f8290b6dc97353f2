"""The package as installed from a wheel: shipped files, declared dependencies, lower bounds.

CI's wheel job (``.ci/wheel_smoke.sh``) installs the wheel into a fresh virtualenv and runs
``cohort demo`` outside the checkout; these tests check the same things quickly: the wheel
holds the profiles and the demo task, and the package unpacked from it resolves them with
no checkout around.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from pipeline import _data
from pipeline.spec import load_task

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipeline"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SHIPPED = {
    "cluster/local.yaml": "cluster/local.yaml",
    "cluster/pbs.yaml": "cluster/pbs.yaml",
    "cluster/slurm.yaml": "cluster/slurm.yaml",
    "tasks/demo.yaml": "tasks/demo.yaml",
}

sys.path.insert(0, str(REPO / ".ci"))
from lower_bounds import lower_bound_pins  # noqa: E402


def _name(requirement: str) -> str:
    """Return the normalised distribution name of a requirement string."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- package data


def test_shipped_files_are_one_copy_linked_from_the_checkout() -> None:
    for top, shipped in SHIPPED.items():
        link = REPO / top
        assert link.is_symlink(), f"{top} should link to pipeline/_data/{shipped}"
        assert link.resolve() == (PACKAGE / "_data" / shipped).resolve()


def test_package_data_is_read_with_importlib_resources() -> None:
    assert _data.profile_names() == ["local", "pbs", "slurm"]
    assert _data.cluster_profile("nope") is None
    slurm = yaml.safe_load(_data.cluster_profile("slurm").read_text())
    assert set(slurm["jobqueue"]) == {"slurm"}
    task = load_task(str(_data.demo_task()))
    assert task.name == "demo" and task.data.format == "synthetic"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the project's wheel (no dependencies) and return its path."""
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out)]
    subprocess.run([*build, str(REPO)], check=True, capture_output=True, timeout=600)
    (path,) = out.glob("cohort_pipeline-*.whl")
    return path


def test_wheel_holds_the_profiles_and_the_demo_task(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in SHIPPED.values():
        assert f"pipeline/_data/{shipped}" in names
    assert "pipeline/_data/__init__.py" in names
    assert not any(n.startswith(("cluster/", "tasks/", "tests/")) for n in names)


def test_unpacked_wheel_resolves_shipped_files_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import json, pipeline\n"
        "from pipeline.cluster import job_script, load_profile\n"
        "from pipeline._data import demo_task\n"
        "from pipeline.spec import load_task\n"
        "p = load_profile('slurm')\n"
        "print(json.dumps({'package': pipeline.__file__, 'source': p['source'],\n"
        "    'kind': p['kind'], 'demo': load_task(str(demo_task())).name,\n"
        "    'script': job_script('slurm').splitlines()[2]}))\n"
    )
    # -I: no current directory, user site or PYTHON* variables; the unpacked wheel first
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n{code}"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    got = yaml.safe_load(out.stdout)
    assert Path(got["package"]).is_relative_to(site)
    assert got["source"] == str(site / "pipeline" / "_data" / "cluster" / "slurm.yaml")
    assert (got["kind"], got["demo"]) == ("slurm", "demo")
    assert got["script"] == "#SBATCH -J cohort-worker"


# --------------------------------------------------------------------------- dependencies


def _third_party_imports() -> set[str]:
    """Return the top-level names of every non-stdlib module the package imports."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "pipeline"}


# Imported directly but installed, at the one version that works, by a declared dependency.
_PINNED_BY = {"pydantic-core": "pydantic"}  # pydantic requires pydantic-core==<its build>


def test_every_imported_package_is_declared() -> None:
    declared = {_name(d) for d in PYPROJECT["project"]["dependencies"]}
    declared |= {dep for dep, by in _PINNED_BY.items() if by in declared}
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in sorted(_third_party_imports()):
        dists = {_name(d) for d in providers.get(module, [module])}
        if not dists & declared:
            undeclared[module] = sorted(dists)
    assert not undeclared, f"imported but not in [project].dependencies: {undeclared}"


def test_bench_extra_does_not_pull_libemg() -> None:
    # libemg pins numpy < 2: installing it beside the package downgrades numpy and breaks it
    for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items():
        assert "libemg" not in {_name(r) for r in reqs}, extra


def test_lower_bounds_are_pinned_from_pyproject() -> None:
    pins = lower_bound_pins(REPO / "pyproject.toml")
    assert len(pins) == len(PYPROJECT["project"]["dependencies"])
    # the bounds the code needs (issue 10): StringDtype(na_value=), GroupKFold(shuffle=True),
    # numpy.dtypes.StringDType
    for pin in ("pandas==2.3", "joblib==1.2"):
        assert pin in pins
    versions = dict(p.split("==") for p in pins)
    assert int(versions["numpy"].split(".")[0]) >= 2
    names = set(versions)
    assert {"numcodecs", "joblib"} <= names  # imported by the package, so declared
    assert "dask==2025.1" in pins  # the extras are not part of a pin
    assert any(re.fullmatch(r"scikit-learn==1\.6(\.\d+)?", p) for p in pins)


def test_lower_bounds_refuse_a_dependency_without_one(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\ndependencies = ["numpy>=2.0", "pandas"]\n')
    with pytest.raises(SystemExit, match=r"dependency 'pandas' has no lower bound"):
        lower_bound_pins(path)
    path.write_text('[project]\ndependencies = ["numpy >=2.0, <3", "dask[array] >= 2025.1"]\n')
    assert lower_bound_pins(path) == ["numpy==2.0", "dask==2025.1"]
