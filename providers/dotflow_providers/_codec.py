"""TEMPORARY stand-in codec (replaced by the real one): tagged JSON, slow, for wiring tests."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import hashlib
import pathlib
import sys
import uuid
from typing import Any

import orjson
import pydantic


class UnencodableValue(TypeError):
    pass


class UndecodableValue(ValueError):
    pass


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve_class(path: str) -> type:
    module, _, qualname = path.partition(":")
    obj: Any = sys.modules.get(module)
    if obj is None:
        raise UndecodableValue(f"{path}: module not loaded")
    for part in qualname.split("."):
        obj = vars(obj).get(part)
        if obj is None:
            raise UndecodableValue(f"{path}: not found")
    if not isinstance(obj, type):
        raise UndecodableValue(f"{path}: not a class")
    return obj


def _tag(v: Any) -> Any:
    t = type(v)
    if v is None or t in (str, bool):
        return v
    if t is int:
        return v if abs(v) < 2**53 else {"$int": str(v)}
    if t is float:
        return v if v == v and v not in (float("inf"), float("-inf")) else {"$float": repr(v)}
    if t is list:
        return [_tag(x) for x in v]
    if t is dict:
        if all(type(k) is str and not k.startswith("$") for k in v):
            return {k: _tag(x) for k, x in v.items()}
        return {"$dict": [[_tag(k), _tag(x)] for k, x in v.items()]}
    if t is tuple:
        return {"$tuple": [_tag(x) for x in v]}
    if t in (set, frozenset):
        items = sorted((_tag(x) for x in v), key=lambda e: orjson.dumps(e))
        return {"$" + t.__name__: items}
    if t is bytes:
        return {"$bytes": base64.b64encode(v).decode()}
    if t in (datetime.datetime, datetime.date, datetime.time):
        return {"$" + t.__name__: v.isoformat()}
    if t is datetime.timedelta:
        return {"$timedelta": [v.days, v.seconds, v.microseconds]}
    if t is decimal.Decimal:
        return {"$decimal": str(v)}
    if t is uuid.UUID:
        return {"$uuid": str(v)}
    if isinstance(v, pathlib.PurePath):
        return {"$path": [t.__name__, str(v)]}
    if isinstance(v, enum.Enum):
        return {"$enum": _path(t), "v": _tag(v.value)}
    if isinstance(v, pydantic.BaseModel):
        return {"$model": _path(t), "v": {k: _tag(getattr(v, k)) for k in type(v).model_fields}}
    if dataclasses.is_dataclass(v):
        return {
            "$dc": _path(t),
            "v": {f.name: _tag(getattr(v, f.name)) for f in dataclasses.fields(v)},
        }
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        return {"$nt": _path(t), "v": [_tag(x) for x in v]}
    raise UnencodableValue(f"{t.__module__}.{t.__qualname__} cannot be restored")


def _untag(v: Any) -> Any:
    if isinstance(v, list):
        return [_untag(x) for x in v]
    if not isinstance(v, dict):
        return v
    if len(v) >= 1 and next(iter(v), "").startswith("$"):
        tag, value = next(iter(v.items()))
        if tag == "$int":
            return int(value)
        if tag == "$float":
            return float(value)
        if tag == "$dict":
            return {_untag(k): _untag(x) for k, x in value}
        if tag == "$tuple":
            return tuple(_untag(x) for x in value)
        if tag == "$set":
            return {_untag(x) for x in value}
        if tag == "$frozenset":
            return frozenset(_untag(x) for x in value)
        if tag == "$bytes":
            return base64.b64decode(value)
        if tag == "$datetime":
            return datetime.datetime.fromisoformat(value)
        if tag == "$date":
            return datetime.date.fromisoformat(value)
        if tag == "$time":
            return datetime.time.fromisoformat(value)
        if tag == "$timedelta":
            return datetime.timedelta(*value)
        if tag == "$decimal":
            return decimal.Decimal(value)
        if tag == "$uuid":
            return uuid.UUID(value)
        if tag == "$path":
            return getattr(pathlib, value[0])(value[1])
        cls = resolve_class(value)
        if tag == "$enum":
            return cls(_untag(v["v"]))  # type: ignore[call-arg]
        if tag == "$model":
            return cls.model_validate({k: _untag(x) for k, x in v["v"].items()})  # type: ignore[attr-defined]
        if tag == "$dc":
            return cls(**{k: _untag(x) for k, x in v["v"].items()})
        if tag == "$nt":
            return cls(*[_untag(x) for x in v["v"]])
        raise UndecodableValue(tag)
    return {k: _untag(x) for k, x in v.items()}


def encode(value: object) -> bytes:
    try:
        return orjson.dumps(_tag(value))
    except RecursionError as exc:
        raise UnencodableValue("recursive") from exc


def decode(data: bytes | memoryview) -> object:
    try:
        return _untag(orjson.loads(data))
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UndecodableValue(str(exc)) from exc


def digest(value: object) -> str:
    return hashlib.sha256(orjson.dumps(_tag(value), option=orjson.OPT_SORT_KEYS)).hexdigest()
