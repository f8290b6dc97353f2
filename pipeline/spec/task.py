"""Task specs: what to run, as YAML, validated on load.

A task spec names a data source, the preprocessing, the window plan, the features, the
model and the validation scheme. Every key is checked: a bad key, type or value gets a
:class:`~pipeline.exceptions.SpecError` naming the file, the key path, what was expected and
what was found, and for a misspelt key the closest valid one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, StrictBool, StrictStr

from pipeline.exceptions import SpecError
from pipeline.spec.errors import Strict, parse
from pipeline.spec.features import FeatureItem
from pipeline.spec.learn import ModelSpec, ValidationSpec
from pipeline.spec.preprocess import Step
from pipeline.spec.types import Integer, Number, StrList
from pipeline.spec.windows import WindowPlanSpec

__all__ = ["DataSpec", "TaskSpec", "load_task"]


_Strict = Strict


class DataSpec(_Strict):
    """Where the recordings come from and how to read them."""

    source: StrictStr = Field(description="file or folder; 'demo' for the synthetic demo cohort")
    format: StrictStr = Field(
        description="reader name: uci-emg, edf, mne, bids, wfdb, csv, synthetic"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="reader options")
    chunk_samples: Integer | None = Field(default=None, gt=0)
    allow_mixed_channels: StrictBool = False


class WindowSpec(WindowPlanSpec):
    """Window plan (in seconds unless ``unit: samples``) and how windows get their labels."""

    unit: Literal["samples", "seconds"] = "seconds"
    label: Literal["majority", "centre"] = "majority"
    mixed: Literal["keep", "drop"] = "drop"
    purity: Number | None = Field(default=None, gt=0, le=1)
    exclude_labels: StrList = Field(default_factory=list)
    dropped: Literal["remove", "unlabel"] = Field(
        default="unlabel",
        description="mixed/excluded windows: left out, or kept unlabeled (they then count "
        "in per-recording normalisation, as at prediction time)",
    )


class TaskSpec(_Strict):
    """A whole task: data -> preprocessing -> windows/features -> model -> validation."""

    name: StrictStr
    description: StrictStr = ""
    data: DataSpec
    preprocess: list[Step] = Field(default_factory=list)
    channels: StrList | None = Field(default=None, description="channels to keep, in order")
    channel_types: StrList | None = Field(default=None, description="e.g. [eeg]")
    windows: WindowSpec
    features: list[FeatureItem] = Field(min_length=1)
    model: ModelSpec
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    seed: Integer = 0
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file this spec was loaded from (None when built in code)."""
        return self._source

    def feature_specs(self) -> list[dict[str, Any]]:
        """Return the features as ``{"name": ..., **params}`` dicts, with the parameters given."""
        return [f.model_dump(exclude_unset=True) | {"name": f.name} for f in self.features]

    def preprocess_steps(self) -> list[dict[str, Any]]:
        """Return the preprocessing steps as dicts, every parameter present."""
        return [s.model_dump() for s in self.preprocess]


_ENV = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _expand(text: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` from the environment."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m["name"])
        if value is None:
            if m["default"] is None:
                msg = f"environment variable {m['name']!r} is not set and has no default"
                raise SpecError(msg)
            return m["default"]
        return value

    return _ENV.sub(sub, text)


def load_task(path: str | os.PathLike[str]) -> TaskSpec:
    """Load and validate a task spec from YAML.

    Relative paths in ``data.source`` and in reader options that name files are resolved
    against the spec file's folder; ``${VAR:-default}`` is expanded from the environment.

    Parameters
    ----------
    path : path
        The YAML file.

    Returns
    -------
    TaskSpec

    Raises
    ------
    SpecError
        If the file is missing or not YAML, or a key, type or value is wrong.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"task spec {str(path)!r} not found"
        raise SpecError(msg)
    try:
        raw = yaml.safe_load(_expand(path.read_text()))
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML: {exc}"
        raise SpecError(msg) from exc
    if not isinstance(raw, dict):
        msg = f"{path}: expected a mapping of keys (name, data, windows, ...), found {raw!r}"
        raise SpecError(msg)
    data = raw.get("data")
    if isinstance(data, dict):
        data = dict(data)
        source = data.get("source")
        if isinstance(source, str) and source != "demo" and not Path(source).is_absolute():
            data["source"] = str((path.parent / source).resolve())
        opts = dict(data.get("options") or {})
        for key in ("metadata",):
            if isinstance(opts.get(key), str) and not Path(opts[key]).is_absolute():
                opts[key] = str((path.parent / opts[key]).resolve())
        data["options"] = opts
        raw = {**raw, "data": data}
    spec = parse(TaskSpec, raw, str(path))
    spec._source = str(path)
    return spec
