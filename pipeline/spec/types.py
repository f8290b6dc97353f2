"""Value types shared by the configuration models (numbers that refuse booleans, names).

Pydantic's lax mode reads ``true`` as 1 for a number; a YAML ``true`` where a number is meant
is a mistake, so these types refuse it. Numeric strings are accepted on purpose: PyYAML
reads ``1e-5`` (no dot) as a string.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

__all__ = ["Integer", "Lower", "Number", "StrList", "to_lower"]


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "Input should be a number, not true/false")
    return value


def to_lower(value: Any) -> Any:
    """Return a string stripped and lower-cased; any other value unchanged."""
    return value.strip().lower() if isinstance(value, str) else value


def _not_str(value: Any) -> Any:
    if isinstance(value, str):
        raise PydanticCustomError("list_type", "Input should be a list of strings")
    return value


#: A finite number (int or float; not a boolean).
Number = Annotated[float, BeforeValidator(_no_bool), Field(allow_inf_nan=False)]
#: An integer (``4.0`` is accepted, ``4.5`` and ``true`` are not).
Integer = Annotated[int, BeforeValidator(_no_bool)]
#: A string compared case-insensitively (stored lower-case).
Lower = Annotated[str, BeforeValidator(to_lower)]
#: A list of strings (a lone string is refused, not split into letters).
StrList = Annotated[list[str], BeforeValidator(_not_str)]
