"""Every configuration model (pydantic) and the one error formatter.

- :mod:`pipeline.spec.errors`: :func:`parse` / :func:`parse_list` and
  :func:`format_validation_error` (file, key path, what was expected, what was found, the
  closest key for a typo), used by every model below;
- :mod:`pipeline.spec.task`: the task spec (:class:`TaskSpec`, :func:`load_task`);
- :mod:`pipeline.spec.preprocess`: preprocessing steps, one model per ``op``;
- :mod:`pipeline.spec.windows`: window plans and label policies;
- :mod:`pipeline.spec.features`: the parameters of every feature, one model per name;
- :mod:`pipeline.spec.learn`: the model, its feature preparation and the validation scheme;
- :mod:`pipeline.spec.cluster`: cluster profiles (dask-jobqueue's conventions).

The modules here import nothing of the package but :mod:`pipeline.exceptions`: every layer
below validates its configuration with them.
"""

from pipeline.spec.errors import Strict, closest, format_validation_error, parse, parse_list
from pipeline.spec.learn import ModelSpec, PrepSpec, ValidationSpec
from pipeline.spec.task import DataSpec, TaskSpec, WindowSpec, load_task

__all__ = [
    "DataSpec",
    "ModelSpec",
    "PrepSpec",
    "Strict",
    "TaskSpec",
    "ValidationSpec",
    "WindowSpec",
    "closest",
    "format_validation_error",
    "load_task",
    "parse",
    "parse_list",
]
