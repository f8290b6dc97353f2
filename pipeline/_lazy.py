"""Names a package exports but imports on first use (PEP 562).

A package's ``__init__`` lists its public names and the modules defining them; an unchanged
rerun and the task check then import only what they touch (:mod:`pipeline.learn` without
scikit-learn and distributed, :mod:`pipeline.table` without dask.dataframe and pyarrow,
:mod:`pipeline.features` without the Numba kernels).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a package's module-level ``__getattr__`` and ``__dir__`` for ``exports``.

    Parameters
    ----------
    package : str
        The package's name, for the error of an unknown attribute.
    exports : mapping of str to str
        Each exported name and the module defining it.
    namespace : dict
        The package's ``globals()``: a name once imported is stored there, so later lookups
        do not reach ``__getattr__``.

    Returns
    -------
    (__getattr__, __dir__)
    """

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
