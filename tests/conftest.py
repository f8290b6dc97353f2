"""Shared fixtures: the real-data folder, one LocalCluster per session, tiny stores."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COHORT_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("COHORT_SLURM") == "1":
        return
    skip = pytest.mark.skip(
        reason="needs a SLURM cluster: run .ci/slurm.sh start, set COHORT_SLURM=1"
    )
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(skip)


#: Skip reasons that mean "the data this test needs is missing" (real data, foreign files).
_MISSING_DATA = "not found"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """With ``CI=true``, a test skipped for missing data fails: CI must never pass blind."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() != "true" or not report.skipped:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _MISSING_DATA in reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true and the data this test needs is missing: {reason}"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real recordings (env COHORT_DATA, default ../shared/data)."""
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA} (set COHORT_DATA)")
    return DATA


@pytest.fixture(scope="session")
def emg_dir(data_dir: Path) -> Path:
    return data_dir / "emg-gestures"


@pytest.fixture(scope="session")
def eeg_dir(data_dir: Path) -> Path:
    return data_dir / "eeg-arithmetic"


@pytest.fixture(scope="session")
def client() -> Iterator[object]:
    """One real distributed LocalCluster (2 worker processes) for the whole session."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit="4GiB",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """Return a factory writing a tiny cohort store of synthetic recordings.

    ``make_store(specs, chunk_samples=...)`` where each spec is a dict with keys subject,
    run, n_samples, n_channels, sampling_rate, and optionally labels (array), label (str),
    seed. Signals are seeded random noise; returns the store path.
    """
    from pipeline.io.base import RecordingSource, SourceFile
    from pipeline.store import write_recording

    def factory(specs: list[dict], chunk_samples: int | None = None, name: str = "s") -> Path:
        store = tmp_path / f"{name}.zarr"
        for spec in specs:
            n, c = spec.get("n_samples", 5000), spec.get("n_channels", 3)
            rng = np.random.default_rng(spec.get("seed", 0))
            x = rng.standard_normal((n, c)).astype(np.float32)
            src = RecordingSource(
                n_samples=n,
                sampling_rate=spec.get("sampling_rate", 1000.0),
                channels=[f"ch{i + 1}" for i in range(c)],
                units=["V"] * c,
                channel_types=[spec.get("modality", "emg")] * c,
                modality=spec.get("modality", "emg"),
                blocks=lambda x=x: iter([x[i : i + 1000] for i in range(0, len(x), 1000)]),
                labels=spec.get("labels"),
                label_names=spec.get("label_names", {}),
                label=spec.get("label"),
                events=spec.get("events"),
            )
            sf = SourceFile(
                Path(f"{spec['subject']}_{spec.get('run', '1')}.txt"),
                spec["subject"],
                run=spec.get("run", "1"),
            )
            write_recording(
                store,
                sf,
                src,
                sha256=f"sha-{spec['subject']}-{spec.get('run')}",
                reader="test",
                reader_version="1",
                chunk_samples=chunk_samples,
            )
        return store

    return factory


@pytest.fixture
def events_frame() -> pd.DataFrame:
    return pd.DataFrame({"onset": [1.0, 3.5], "duration": [0.5, 1.0], "description": ["a", "b"]})
