"""Every configuration model (pydantic) and the one error formatter.

- :mod:`pipeline.spec.errors`: :func:`parse` and :func:`format_validation_error` (file, key
  path, what was expected, what was found, the closest key for a typo);
- :mod:`pipeline.spec.task`: the task spec (:class:`TaskSpec`, :func:`load_task`).
"""

from pipeline.spec.errors import Strict, closest, format_validation_error, parse
from pipeline.spec.task import DataSpec, TaskSpec, load_task

__all__ = [
    "DataSpec",
    "Strict",
    "TaskSpec",
    "closest",
    "format_validation_error",
    "load_task",
    "parse",
]
