"""Strict typed tables (pydantic) and error messages that name the dotted key.

Every table of the configuration is a :class:`Table`: no unknown keys, no type coercion (``"3"`` is not 3,
``true`` is not 1; an integer is accepted where a number is), no NaN or infinity. A failed validation is
turned into one line per key, e.g. ``learning.lr: must be >= 0, got -1.0``, by :func:`error_lines`.
"""

from __future__ import annotations

import types
import typing
from pathlib import PurePath
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, ValidationError


class Table(BaseModel):
    """A table of a configuration: strict types, unknown keys refused, no NaN/inf, a description per key."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


_TOML_NAMES = {int: "integer", float: "integer or number", str: "string", bool: "boolean", dict: "table",
               list: "array", tuple: "array", PurePath: "string", type(None): "nothing"}
_ERROR_NAMES = {"int_type": "integer", "float_type": "integer or number", "string_type": "string",
                "bool_type": "boolean", "dict_type": "table", "list_type": "array", "tuple_type": "array"}


def type_text(annotation: Any) -> str:
    """How a value of this type is written in TOML, e.g. ``"integer or number"`` for float."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return type_text(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if float in members:  # "integer or number" already says int
            members = [a for a in members if a is not int]
        return " or ".join(dict.fromkeys(type_text(a) for a in members))
    if origin is Literal:
        return f"one of {list(typing.get_args(annotation))}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    base = origin if origin is not None else annotation
    for python_type, name in _TOML_NAMES.items():
        if isinstance(base, type) and issubclass(base, python_type) and not (python_type is int and base is bool):
            return name
    return getattr(base, "__name__", str(base))


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    name = {int: "integer", float: "number", str: "string", dict: "table", list: "array"}.get(type(value))
    return f"{name or type(value).__name__} {value!r}"


def _walk(model: type[BaseModel] | None, loc: tuple) -> tuple[str, Any]:
    """Dotted key of an error location and the annotation of the field it ends at (None if unknown).

    pydantic puts union member tags (``'int'``, ``'list[int]'``) into locations: the walk stops at a union.
    """
    key, annotation, node = "", None, model
    for position, part in enumerate(loc):
        if isinstance(part, int):
            key += f"[{part}]"
            annotation = typing.get_args(annotation)[0] if typing.get_args(annotation) else None
            node = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
            continue
        if node is None:
            if typing.get_origin(annotation) is dict:  # a free-form table: the part is its key
                key += f".{part}"
                annotation = typing.get_args(annotation)[1]
            break
        if part not in node.model_fields:
            key += f".{part}" if key else str(part)
            break
        key += f".{part}" if key else str(part)
        annotation = node.model_fields[part].annotation
        inner = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
        node = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
        if typing.get_origin(inner) in (Union, types.UnionType) and not (
                len(typing.get_args(inner)) == 2 and type(None) in typing.get_args(inner)):
            # next comes a union member tag ('int', 'list[int]'); then only list positions can follow
            rest = [p for p in loc[position + 2:] if isinstance(p, int)]
            if rest:
                key += "".join(f"[{i}]" for i in rest)
                annotation = None  # the element's type: said by the error's kind
            break
    return key, annotation


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def error_lines(exc: ValidationError, model: type[BaseModel] | None, prefix: str = "") -> list[str]:
    """One message per bad key of a failed validation, each starting with the dotted key.

    Parameters
    ----------
    exc : ValidationError
    model : type of BaseModel or None
        The model validated (to find field types and to tell keys from pydantic's union tags).
    prefix : str
        Prepended to every key, e.g. ``"data.params"``.
    """
    lines: dict[str, str] = {}
    unknown: dict[str, list[str]] = {}
    for error in exc.errors():
        kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
        key, annotation = _walk(model, tuple(error["loc"]))
        if kind == "keyed":  # a validator's own message, naming its key itself
            lines.setdefault(str(ctx["key"]), str(ctx["message"]))
            continue
        if prefix:
            key = f"{prefix}.{key}" if key and not key.startswith("[") else f"{prefix}{key}"
        if kind == "extra_forbidden":
            parent, _, leaf = key.rpartition(".")
            unknown.setdefault(parent, []).append(key)
            continue
        if key in lines:
            continue  # one message per key (a union reports each member)
        if kind == "missing":
            text = "missing"
        elif kind.endswith("_type") or kind in ("model_type", "dataclass_type", "is_instance_of", "union_tag_invalid"):
            expected = (type_text(annotation) if annotation is not None
                        else _ERROR_NAMES.get(kind, kind.removesuffix("_type")))
            text = f"expected {expected}, got {_value_text(value)}"
        elif kind == "finite_number":
            text = f"must be a finite number, got {value}"
        elif kind in _BOUNDS:
            bound = ctx[next(k for k in ("gt", "ge", "lt", "le") if k in ctx)]
            text = f"must be {_BOUNDS[kind]} {bound}, got {value!r}"
        elif kind == "literal_error":
            choices = list(typing.get_args(annotation)) if typing.get_origin(annotation) is Literal else ctx
            text = f"{value!r} is not one of {choices}"
        elif kind in ("value_error", "assertion_error") and "error" in ctx:
            text = str(ctx["error"])
        elif kind == "too_short":
            text = f"needs at least {ctx.get('min_length')} item(s), got {value!r}"
        else:
            text = f"{error['msg']}, got {value!r}"
        lines[key] = f"{key}: {text}" if key else text
    # a union reports every member: keep the most specific message (recording.neurons[1] over recording.neurons)
    lines = {key: line for key, line in lines.items() if not any(k.startswith(f"{key}[") for k in lines)}
    out = []
    for parent, keys in unknown.items():
        node = _node(model, parent.removeprefix(prefix).lstrip(".")) if model is not None else None
        valid = f"; valid keys{' in [' + parent + ']' if parent else ''}: {sorted(node.model_fields)}" if node else ""
        out.append(f"unknown key(s) {sorted(keys)}{valid}")
    return out + list(lines.values())


def _node(model: type[BaseModel], dotted: str) -> type[BaseModel] | None:
    node: Any = model
    for part in filter(None, dotted.split(".")):
        field = node.model_fields.get(part) if isinstance(node, type) and issubclass(node, BaseModel) else None
        if field is None:
            return None
        node = field.annotation
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None
