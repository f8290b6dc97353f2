"""Load a task spec and check it against the layers below, before any stage runs.

:func:`pipeline.spec.load_task` validates the file against the schema (every key, type and
value). What the schema cannot know is checked here, once, for every command that takes a
task (``cohort run``, ``cohort features --spec``): the reader is registered, the features
write distinct columns, the window plan and preprocessing are consistent. Each error names the
file and the key path, what was expected and what was found.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.exceptions import UnknownFormatError
from pipeline.io import READERS, get_reader
from pipeline.spec import TaskSpec, load_task
from pipeline.spec.errors import key_error
from pipeline.table import FeatureTableSpec

__all__ = ["check_task", "load_checked_task"]


def check_task(spec: TaskSpec, source: str) -> FeatureTableSpec:
    """Check a validated task against the registered readers and features.

    Parameters
    ----------
    spec : TaskSpec
    source : str
        The task file, first on every error line.

    Returns
    -------
    FeatureTableSpec
        What the task's feature stages compute.

    Raises
    ------
    SpecError
        Naming ``source``, the key path, what was expected and what was found.
    """
    try:
        get_reader(spec.data.format)
    except UnknownFormatError:
        known = ", ".join(sorted(READERS))
        raise key_error(
            source, "data.format", f"a reader name ({known})", spec.data.format
        ) from None
    return FeatureTableSpec.from_task(spec)


def load_checked_task(path: str | os.PathLike[str]) -> tuple[TaskSpec, FeatureTableSpec]:
    """Load a task spec (:func:`pipeline.spec.load_task`) and :func:`check_task` it.

    The one loader of every command that takes a task, so that a mistake gets the same
    message whichever command meets it.

    Returns
    -------
    (TaskSpec, FeatureTableSpec)
    """
    spec = load_task(path)
    return spec, check_task(spec, str(Path(path)))
