"""The one error formatter of every configuration model: file, key path, expected, found.

Every configuration (task spec, preprocessing steps, features, labels, windows, model,
validation, cluster profiles) is a pydantic model; :func:`parse` validates a mapping against
one and turns pydantic's errors into one :class:`~pipeline.exceptions.SpecError` whose lines
each name the source, the key path, what was expected and what was found, and for a misspelt
key the closest valid one.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.exceptions import SpecError

__all__ = ["Strict", "closest", "format_validation_error", "parse"]

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every configuration model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def closest(word: str, options: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the option closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _models_in(tp: Any) -> list[type[BaseModel]]:
    return [a for a in _leaves(tp) if isinstance(a, type) and issubclass(a, BaseModel)]


def _tag_of(model: type[BaseModel]) -> set[str]:
    """Return the literal values of ``model``'s tag field (``op``, ``name``), if it has one."""
    out: set[str] = set()
    for f in model.model_fields.values():
        args = typing.get_args(f.annotation)
        if typing.get_origin(f.annotation) is typing.Literal:
            out.update(str(a) for a in args)
    return out


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Return the pydantic model class that holds the last key of ``loc``."""
    candidates: list[type[BaseModel]] = [model]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        tagged = [c for c in candidates if str(part) in _tag_of(c)]
        if len(candidates) > 1 and tagged:  # a discriminated union's tag
            candidates = tagged[:1]
            continue
        nxt: list[type[BaseModel]] = []
        for c in candidates:
            field = c.model_fields.get(str(part))
            if field is not None:
                nxt.extend(_models_in(field.annotation))
        if not nxt:
            return None
        candidates = nxt
    return candidates[0] if len(candidates) == 1 else None


def format_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel], prefix: str = ""
) -> str:
    """Return one line per problem: source, key path, what was expected, what was found.

    Parameters
    ----------
    exc : pydantic.ValidationError
    source : str
        The file (or object) the configuration came from.
    model : pydantic model class
        The model that was validated (to list the valid keys where one is unknown).
    prefix : str
        Key path of the validated mapping inside its file.
    """
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        # discriminated unions add the tag ("bandpass") to the path: not a key of the file
        keys = tuple(p for p in loc if not (isinstance(p, str) and p in _union_tags(model)))
        path = ".".join(str(p) for p in (*([prefix] if prefix else []), *keys)) or "(top level)"
        found = err.get("input")
        if err["type"] == "extra_forbidden":
            holder = _model_at(model, loc)
            valid = sorted(holder.model_fields) if holder else []
            hint = closest(str(loc[-1]), valid)
            lines.append(
                f"{source}: unknown key {path!r}{hint} (valid keys here: {', '.join(valid)})"
            )
        elif err["type"] == "missing":
            lines.append(f"{source}: missing required key {path!r}")
        else:
            msg = err["msg"]
            msg = msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg
            lines.append(
                f"{source}: key {path!r}: expected {msg[:1].lower()}{msg[1:]}; found {found!r}"
            )
    return "\n".join(lines)


def _union_tags(model: type[BaseModel]) -> frozenset[str]:
    """Return the tags of the discriminated unions reachable from ``model``."""
    tags: set[str] = set()
    seen: set[type] = set()

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                return
            seen.add(tp)
            for f in tp.model_fields.values():
                if f.discriminator:
                    for arg in _leaves(f.annotation):
                        if isinstance(arg, type) and issubclass(arg, BaseModel):
                            fld = arg.model_fields.get(str(f.discriminator))
                            if fld is not None:
                                tags.update(str(a) for a in typing.get_args(fld.annotation))
                for arg in _leaves(f.annotation):
                    walk(arg)

    walk(model)
    return frozenset(tags)


def _leaves(tp: Any) -> list[Any]:
    args = typing.get_args(tp)
    if not args:
        return [tp]
    out = []
    for a in args:
        out.extend(_leaves(a))
    return out


def parse(model: type[M], data: Any, source: str, prefix: str = "") -> M:
    """Validate ``data`` against ``model``; raise one :class:`SpecError` listing every problem.

    Parameters
    ----------
    model : pydantic model class
    data : mapping or model instance
        An instance of ``model`` is returned as is.
    source : str
        Where the data came from (the file name, or ``FeaturePrep(...)``), first on every line.
    prefix : str
        Key path of ``data`` inside its file (``model.prep``), prepended to every key path.

    Returns
    -------
    instance of ``model``
    """
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source, model, prefix)) from None
