"""The notebooks run top to bottom on the demo cohort, and are committed without outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_explore_cohort.ipynb", "02_features_and_models.ipynb"]
KERNEL = "cohort-pipeline-test"
CELL_TIMEOUT = 300  # seconds per cell; the whole demo run of notebook 02 is one cell


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A kernelspec running *this* interpreter, whatever venv the tests run in.

    The kernelspec that ipykernel installs says ``python``, which in a fresh CI virtualenv
    that is not activated is some other interpreter without the package; this one names
    ``sys.executable``.
    """
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cohort-pipeline tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return {"JUPYTER_PATH": os.pathsep.join([str(root), os.environ.get("JUPYTER_PATH", "")])}


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name}: no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"{name}: code cell {i} has outputs; strip them"
        assert cell.execution_count is None, f"{name}: code cell {i} has an execution count"
    first = code[0].source
    assert 'DATASET = "demo"' in first, f"{name}: first code cell must select the demo data"


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("name", "large"),
    [(NAMES[0], False), (NAMES[1], False), (NAMES[1], True)],
    ids=["01", "02", "02-large-cohort"],
)
def test_notebook_runs_on_the_demo_cohort(
    name: str,
    large: bool,
    kernel_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbclient import NotebookClient

    for key, value in kernel_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("COHORT_NOTEBOOK_FAST", "1")
    if large:  # notebook 02's LARGE_COHORT branch: the table stays on the cluster
        monkeypatch.setenv("COHORT_NOTEBOOK_LARGE", "1")
    monkeypatch.setenv("COHORT_NOTEBOOK_DATA", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4, f"{name}: expected the figures to display, got {len(images)}"
    written = {p.name for p in tmp_path.iterdir()}
    want = "demo-fast.zarr" if name.startswith("01") else "run-demo-fast"
    want += "-large" if large else ""
    assert want in written, f"{name}: expected {want} in COHORT_NOTEBOOK_DATA, found {written}"
    if name.startswith("02"):
        report = json.loads((tmp_path / want / "latest" / "report.json").read_text())
        engine = report.get("engine", {}).get("name", "memory")
        assert engine == ("distributed" if large else "memory"), engine
