"""The one error formatter of every configuration model: file, key path, expected, found.

Every configuration (task spec, preprocessing steps, features, labels, windows, model,
validation, cluster profiles) is a pydantic model; :func:`parse` validates a mapping against
one and turns pydantic's errors into one :class:`~pipeline.exceptions.SpecError` whose lines
each name the source, the key path, what was expected and what was found, and for a misspelt
key the closest valid one.
"""

from __future__ import annotations

import difflib
import functools
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from pipeline.exceptions import SpecError

__all__ = ["Strict", "closest", "format_validation_error", "key_error", "parse", "parse_list"]

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


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[Any], type[BaseModel] | None]:
    """Return the key path of ``loc`` without union tags, and the model holding its last key.

    Discriminated unions add the member's tag (``bandpass``) to pydantic's error location:
    it is not a key of the file, so it is left out of the path.
    """
    keys: list[Any] = []
    candidates: list[type[BaseModel]] = [model]
    holder: type[BaseModel] | None = model
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int):
            keys.append(part)
            continue
        tagged = [c for c in candidates if str(part) in _tag_of(c)]
        if len(candidates) > 1 and tagged:
            candidates = tagged[:1]
            holder = candidates[0]
            continue
        keys.append(part)
        if last:
            holder = candidates[0] if len(candidates) == 1 else None
            break
        nxt: list[type[BaseModel]] = []
        for c in candidates:
            field = c.model_fields.get(str(part))
            if field is not None:
                nxt.extend(_models_in(field.annotation))
        candidates = nxt
        holder = candidates[0] if len(candidates) == 1 else None
    return keys, holder


def format_validation_error(
    exc: ValidationError,
    source: str,
    model: type[BaseModel],
    prefix: str = "",
    *,
    strip_root: bool = False,
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
    strip_root : bool
        The first key of every location is a wrapper's (see :func:`parse_list`): replace it
        by ``prefix``.
    """
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        keys, holder = _walk(model, loc)
        if strip_root:
            keys = keys[1:]
        path = ".".join(str(p) for p in (*([prefix] if prefix else []), *keys)) or "(top level)"
        found = err.get("input")
        if err["type"] == "extra_forbidden":
            valid = sorted(holder.model_fields) if holder else []
            hint = closest(str(loc[-1]), valid)
            lines.append(
                f"{source}: unknown key {path!r}{hint} (valid keys here: {', '.join(valid)})"
            )
        elif err["type"] == "missing":
            lines.append(f"{source}: missing required key {path!r}")
        elif err["type"] == "union_tag_invalid":
            ctx = err.get("ctx") or {}
            tags = sorted(_union_tag_values(model, str(ctx.get("discriminator", "")).strip("'")))
            tag = ctx.get("tag")
            lines.append(
                f"{source}: key {path!r}: unknown {str(ctx.get('discriminator')).strip(chr(39))} "
                f"{tag!r}{closest(str(tag), tags)} (expected one of {', '.join(tags)})"
            )
        elif err["type"] == "union_tag_not_found":
            ctx = err.get("ctx") or {}
            key = str(ctx.get("discriminator", "")).strip("'")
            lines.append(
                f"{source}: key {path!r}: expected a mapping with key {key!r}; found {found!r}"
            )
        else:
            expected = _expected(err["msg"])
            where = f"{source}: " if path == "(top level)" else f"{source}: key {path!r}: "
            if err["type"] == "value_error" and ", found " in expected:
                lines.append(f"{where}expected {expected}")  # a check across keys says it all
            else:
                lines.append(f"{where}expected {expected}; found {found!r}")
    return "\n".join(lines)


def _expected(msg: str) -> str:
    """Turn a pydantic message into what was expected: ``Input should be > 0`` -> ``> 0``."""
    for head in ("Value error, ", "Assertion failed, "):
        if msg.startswith(head):
            msg = msg[len(head) :]
    if msg.startswith("Input should be "):
        msg = msg[len("Input should be ") :]
        if msg.startswith(("greater", "less")):
            msg = "a value " + msg
    elif msg.startswith("Input should have "):
        msg = "a value with " + msg[len("Input should have ") :]
    return msg[:1].lower() + msg[1:]


def _union_tag_values(model: type[BaseModel], discriminator: str) -> set[str]:
    """Return every tag value of the unions on ``discriminator`` reachable from ``model``."""
    out: set[str] = set()
    seen: set[type] = set()

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in seen:
            seen.add(tp)
            fld = tp.model_fields.get(discriminator)
            if fld is not None and typing.get_origin(fld.annotation) is typing.Literal:
                out.update(str(a) for a in typing.get_args(fld.annotation))
            for f in tp.model_fields.values():
                for arg in _leaves(f.annotation):
                    walk(arg)

    walk(model)
    return out


def _leaves(tp: Any) -> list[Any]:
    args = typing.get_args(tp)
    if not args:
        return [tp]
    out = []
    for a in args:
        out.extend(_leaves(a))
    return out


def parse(
    model: type[M],
    data: Any,
    source: str,
    prefix: str = "",
    *,
    error: type[SpecError] | type[Exception] = SpecError,
) -> M:
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
    error : exception class
        Raised with the message (:class:`SpecError` unless the caller's contract names a
        more specific one, such as ``WindowError``).

    Returns
    -------
    instance of ``model``
    """
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(format_validation_error(exc, source, model, prefix)) from None


@functools.cache
def _list_model(item_type: Any) -> type[BaseModel]:
    return create_model("ListOf", __base__=Strict, items=(list[item_type], ...))


def parse_list(item_type: Any, data: Any, source: str, prefix: str) -> list[Any]:
    """Validate a list whose items are ``item_type`` (a model or a discriminated union).

    Parameters
    ----------
    item_type : type
    data : list
    source : str
        The file (or object) the list came from.
    prefix : str
        Key path of the list inside its file (``preprocess``).

    Returns
    -------
    list of validated items
    """
    wrapper = _list_model(item_type)
    try:
        return list(wrapper.model_validate({"items": data}).items)  # type: ignore[attr-defined]
    except ValidationError as exc:
        text = format_validation_error(exc, source, wrapper, prefix, strip_root=True)
        raise SpecError(text) from None


def key_error(source: str, path: str, expected: str, found: Any) -> SpecError:
    """Return a :class:`SpecError` in the formatter's words, for checks made outside pydantic.

    Checks that need the data (a frequency against the recording's Nyquist frequency, a
    label against the labels the cohort has) report like the models do.
    """
    return SpecError(f"{source}: key {path!r}: expected {expected}; found {found!r}")
