"""Cohort Pipeline: multi-subject biomedical recordings to validated, deployable models.

The public API, imported lazily so that the ``cohort`` command starts fast::

    import pipeline
    cohort = pipeline.open_cohort("emg.zarr")        # .index, .recording(id)
    pipeline.ingest("../shared/data/emg-gestures", "uci-emg", "emg.zarr")
    summary = pipeline.run_task("tasks/demo.yaml", "demo-out")
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cohort-pipeline")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

_API = {
    "open_cohort": "pipeline.store",
    "Cohort": "pipeline.store",
    "ingest": "pipeline.ingest",
    "IngestResult": "pipeline.ingest",
    "load_task": "pipeline.spec",
    "TaskSpec": "pipeline.spec",
    "run_task": "pipeline.stages",
    "WindowPlan": "pipeline.windows",
    "LabelPolicy": "pipeline.labels",
    "apply_preprocessing": "pipeline.preprocessing",
    "FeatureTableSpec": "pipeline.table",
    "feature_table": "pipeline.table",
    "recording_features": "pipeline.table",
    "read_feature_table": "pipeline.table",
    "write_feature_table": "pipeline.table",
    "make_block_function": "pipeline.features",
    "compute_features": "pipeline.features",
    "fit_and_validate": "pipeline.learn",
    "load_bundle": "pipeline.learn",
    "save_bundle": "pipeline.learn",
    "predict_table": "pipeline.learn",
    "predict_recordings": "pipeline.predict",
    "connect": "pipeline.cluster",
    "signal_quality": "pipeline.quality",
    "quality_outliers": "pipeline.quality",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    msg = f"module 'pipeline' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(__all__)
