"""Lossless JSON encoding of values: whatever `encode` accepts, `decode` gives back exactly.

Plain JSON data (str, int, float, bool, None, list, dict with str keys) is written as itself.
Every other value is a JSON object with exactly one key, which starts with "$" and names its
kind; a dict of the user's whose only key starts with "$" is written as `$dict` pairs instead,
so the two never meet:

    {"$tuple": [1, 2]}    {"$set": [...]}    {"$frozenset": [...]}   (sets in canonical order)
    {"$tuples": [[1, "a"], [2, "b"]]}       a list of tuples of JSON scalars (database rows)
    {"$dict": [[key, value], ...]}          a dict with any non-str key, or a "$" key alone
    {"$bytes": "<base64>"}  {"$bytearray": "<base64>"}
    {"$int": "<digits>"}    beyond 64 bits (hex "0x..." beyond 4300 digits)
    {"$float": "nan" | "inf" | "-inf"}
    {"$str": "<base64>"}    a str with lone surrogates, as UTF-8 with surrogatepass
    {"$decimal": "1.50"}    {"$uuid": "<hex>" | ["<hex>", is_safe]}
    {"$datetime": [iso, tz, fold]}   {"$date": iso}   {"$time": [iso, tz, fold]}
    {"$timedelta": [days, seconds, microseconds]}
    {"$timezone": [[days, seconds, microseconds], name | null]}   {"$zoneinfo": key}
    {"$pydantic_tzinfo": seconds}           pydantic_core.TzInfo (pydantic's parsed offsets)
    {"$path": ["PurePosixPath", "a/b"]}     the four concrete pathlib classes
    {"$enum": ["module:Qualname", name]}    or ["module:Qualname", null, value] (composite flag)
    {"$namedtuple": ["module:Qualname", [items]]}
    {"$model": {"type": "module:Qualname", "dict": {...}, "extra"?, "private"?, "set"?}}
    {"$dataclass": {"type": "module:Qualname", "fields": {...}, "extra"?}}

Decoding never imports: a stored class name resolves only to a class of an allowed kind
(pydantic model, dataclass, enum, named tuple) in a module already in `sys.modules`, looked up
through namespaces so that no module `__getattr__` runs.

Plain JSON data takes a fast path: orjson writes it, and one breadth-first pass over the
containers (`gc.get_referents`, in C) proves that nothing in it is a type JSON would lose.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import decimal
import enum
import gc
import hashlib
import itertools
import math
import pathlib
import reprlib
import sys
import types
import uuid
import zoneinfo
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias, cast

import orjson
import pydantic
import pydantic_core

__all__ = ["UndecodableValue", "UnencodableValue", "decode", "digest", "encode"]

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"


class UnencodableValue(TypeError):
    """A value that cannot be written so that it comes back exactly; the message says where."""


class UndecodableValue(ValueError):
    """Data that is not a valid encoding, or names a type this process may not restore."""


# --- fast path: plain JSON data ---------------------------------------------------------------

# Without a `default`, orjson raises for every type it would not write natively, except the
# ones it writes lossily (tuples, enums, UUIDs, NaN as null), which the type pass catches.
_FAST = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
_FAST |= orjson.OPT_PASSTHROUGH_DATACLASS
_NONE = type(None)
_PLAIN = frozenset({str, int, float, bool, _NONE, list, dict})
_is_float = float.__instancecheck__


def _plain_json(value: object, out: bytes) -> bool:
    """True if `out` (orjson's output for `value`) decodes back to exactly `value`."""
    if b"$" in out and b'{"$' in out:
        return False  # a key like one of our tags: the slow path escapes it
    nulls = b"null" in out  # NaN and infinities are written as null
    level: list[Any] = [value]
    while level:
        if not _PLAIN.issuperset(map(type, level)):
            return False
        if nulls and not _finite(level):
            return False
        # For exact lists and dicts this is every item and value; str keys of a dict may be
        # skipped, and orjson has already refused any key that is not an exact str.
        level = gc.get_referents(*level)
    return True


def _fast(value: object, option: int) -> bytes | None:
    try:
        out = orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        return None
    return out if _plain_json(value, out) else None


# --- the tagged encoder -----------------------------------------------------------------------

_MAX_DEPTH = 80  # levels of values; each can take 3 JSON levels and orjson stops at 254
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson writes and reads as an exact int


class _Refusal(Exception):
    """Raised inside the encoder; containers add where they are as it passes through them."""

    def __init__(self, obj: object, reason: str) -> None:
        self.obj = obj
        self.reason = reason
        self.path: list[str] = []
        self.chain: list[object] = [obj]

    def at(self, segment: str, container: object) -> _Refusal:
        self.path.append(segment)
        self.obj = container
        self.chain.append(container)
        return self

    def message(self, name: str) -> str:
        path = self.path[::-1]
        chain = self.chain[::-1]
        seen: dict[int, int] = {}
        for depth, obj in enumerate(chain):
            first = seen.setdefault(id(obj), depth)
            if first != depth:
                outer = name + "".join(path[:first])
                inner = name + "".join(path[:depth])
                return (
                    f"{outer}: a {_type_label(type(obj))} that contains itself (at {inner}); "
                    "a recursive structure cannot be encoded"
                )
        return f"{name}{''.join(path)}: {self.reason}"


class _Context:
    """How one encoding pass runs.

    The first pass passes str and int through untouched, since orjson refuses the rare ones it
    cannot write exactly (lone surrogates, beyond 64 bits); a `careful` second pass tags those.
    `raw` holds the types a container copies without calling `_enc`.
    """

    __slots__ = ("canonical", "careful", "option", "raw")

    def __init__(self, canonical: bool, careful: bool) -> None:
        self.canonical = canonical
        self.careful = careful
        self.option = orjson.OPT_SORT_KEYS if canonical else 0
        self.raw = frozenset({bool, _NONE} if careful else {str, int, bool, _NONE})


def _type_label(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _enc(v: Any, ctx: _Context, depth: int) -> Json:
    """The JSON tree for `v`, which may be any object (Any: the exact-type tests narrow it)."""
    t = type(v)
    if t in ctx.raw:
        return v  # type: ignore[no-any-return]  # an exact str, int, bool or None
    if t is float:
        return v if math.isfinite(v) else {"$float": str(v)}
    if t is str:
        return _enc_str_careful(v)
    if t is int:
        return v if _INT_MIN <= v <= _INT_MAX else _enc_big_int(v)
    if depth >= _MAX_DEPTH:
        raise _Refusal(v, f"nested more than {_MAX_DEPTH} levels deep")
    encoder = _ENCODERS.get(t)
    if encoder is None:
        encoder = _class_encoder(v, t)
    return encoder(v, ctx, depth + 1)


def _enc_str_careful(v: str) -> Json:
    if v.isascii():
        return v
    try:
        v.encode()
    except UnicodeEncodeError:
        return {"$str": _b64(v.encode("utf-8", "surrogatepass"))}
    return v


# Ints with more digits than CPython's default int/str limit (sys.int_info.
# default_max_str_digits) are written in hex, which no limit applies to, whatever limit the
# writing process has set: any process can read them back.
_DECIMAL_BELOW = 10**4300


def _enc_big_int(v: int) -> Json:
    if not -_DECIMAL_BELOW < v < _DECIMAL_BELOW:
        return {"$int": hex(v)}
    try:
        return {"$int": str(v)}
    except ValueError:  # this process limits int/str below the default; Decimal is not limited
        return {"$int": str(decimal.Decimal(v))}


def _b64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


def _enc_list(v: list[Any], ctx: _Context, depth: int) -> Json:
    if v and not ctx.careful and _flat_tuples(v):
        # Rows from a database cursor: orjson writes the tuples as arrays in one C call.
        return {"$tuples": cast("Json", v)}
    raw = ctx.raw
    try:
        return [x if type(x) in raw else _enc(x, ctx, depth) for x in v]
    except _Refusal as r:
        raise r.at(_index_of(v, r.obj), v) from None


_FLAT = frozenset({str, int, float, bool, _NONE})


def _flat_tuples(v: list[Any]) -> bool:
    """True if `v` holds only tuples of str, int, finite float, bool and None."""
    if set(map(type, v)) != {tuple}:
        return False
    types = set(map(type, itertools.chain.from_iterable(v)))
    if not types <= _FLAT:
        return False
    return float not in types or _finite(itertools.chain.from_iterable(v))


def _finite(items: Iterable[Any]) -> bool:
    """False if a float among `items` is NaN or infinite (or they overflow when summed)."""
    return math.isfinite(sum(filter(_is_float, items), 0.0))


def _index_of(items: list[object] | tuple[object, ...], obj: object) -> str:
    return next((f"[{i}]" for i, x in enumerate(items) if x is obj), "[?]")


def _str_keys(d: dict[Any, object], ctx: _Context) -> bool:
    """True if `d` can be a JSON object: str keys only, and not one "$" key alone."""
    if not d:
        return True
    if set(map(type, d)) != {str}:
        return False
    if len(d) == 1 and next(iter(d)).startswith("$"):
        return False
    return not ctx.careful or all(k.isascii() or _utf8(k) for k in d)


def _utf8(s: str) -> bool:
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


def _enc_dict(v: dict[Any, Any], ctx: _Context, depth: int) -> Json:
    raw = ctx.raw
    try:
        if _str_keys(v, ctx):
            return {k: x if type(x) in raw else _enc(x, ctx, depth) for k, x in v.items()}
        pairs: list[Json] = [[_enc(k, ctx, depth), _enc(x, ctx, depth)] for k, x in v.items()]
    except _Refusal as r:
        raise r.at(_key_of(v, r.obj), v) from None
    if ctx.canonical:  # a dict's digest ignores its order (two NaN keys differ by value)
        pairs.sort(key=lambda pair: orjson.dumps(pair, option=ctx.option))
    return {"$dict": pairs}


def _key_of(d: dict[Any, object], obj: object) -> str:
    for k, x in d.items():
        if x is obj:
            return f"[{reprlib.repr(k)}]"
        if k is obj:
            return f"[{reprlib.repr(k)}]<key>"
    return "[?]"


def _enc_tuple(v: tuple[Any, ...], ctx: _Context, depth: int) -> Json:
    raw = ctx.raw
    try:
        return {"$tuple": [x if type(x) in raw else _enc(x, ctx, depth) for x in v]}
    except _Refusal as r:
        raise r.at(_index_of(v, r.obj), v) from None


def _sorted_elements(v: set[object] | frozenset[object], ctx: _Context, depth: int) -> list[Json]:
    try:
        items = [_enc(x, ctx, depth) for x in v]
    except _Refusal as r:
        raise r.at("<element>", v) from None
    # The order of a set's elements depends on PYTHONHASHSEED; their encodings do not.
    keyed = sorted((orjson.dumps(item, option=ctx.option), n) for n, item in enumerate(items))
    return [items[n] for _, n in keyed]


def _enc_set(v: set[object], ctx: _Context, depth: int) -> Json:
    return {"$set": _sorted_elements(v, ctx, depth)}


def _enc_frozenset(v: frozenset[object], ctx: _Context, depth: int) -> Json:
    return {"$frozenset": _sorted_elements(v, ctx, depth)}


def _enc_bytes(v: bytes, ctx: _Context, depth: int) -> Json:
    return {"$bytes": _b64(v)}


def _enc_bytearray(v: bytearray, ctx: _Context, depth: int) -> Json:
    return {"$bytearray": _b64(v)}


def _enc_decimal(v: decimal.Decimal, ctx: _Context, depth: int) -> Json:
    return {"$decimal": str(v)}


def _enc_uuid(v: uuid.UUID, ctx: _Context, depth: int) -> Json:
    if v.is_safe is uuid.SafeUUID.unknown:
        return {"$uuid": str(v)}
    return {"$uuid": [str(v), v.is_safe.value]}


def _enc_tzinfo(tz: datetime.tzinfo | None, owner: object) -> Json:
    if tz is None:
        return None
    if type(tz) is datetime.timezone:
        offset, *name = tz.__getinitargs__()  # type: ignore[attr-defined]
        return {"$timezone": [_timedelta(offset), name[0] if name else None]}
    if type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        return {"$zoneinfo": tz.key}
    if type(tz) is _PYDANTIC_TZINFO:  # what pydantic gives a datetime parsed from text
        offset = tz.utcoffset(None)
        if offset is not None and not offset.microseconds:
            return {"$pydantic_tzinfo": offset.days * 86400 + offset.seconds}
    raise _Refusal(
        owner,
        f"a {_type_label(type(owner))} with tzinfo {tz!r} ({_type_label(type(tz))}) cannot be "
        "restored exactly; use datetime.timezone or zoneinfo.ZoneInfo(key)",
    )


def _pydantic_tzinfo() -> type[pydantic_core.TzInfo] | None:
    """pydantic_core.TzInfo, if this version has it and makes it from an offset in seconds."""
    cls: type[pydantic_core.TzInfo] | None = getattr(pydantic_core, "TzInfo", None)
    try:
        ok = cls is not None and cls(-3600).utcoffset(None) == datetime.timedelta(hours=-1)
    except Exception:  # a version whose TzInfo is made differently
        ok = False
    return cls if ok else None


_PYDANTIC_TZINFO = _pydantic_tzinfo()


def _timedelta(v: datetime.timedelta) -> list[Json]:
    return [v.days, v.seconds, v.microseconds]


def _enc_datetime(v: datetime.datetime, ctx: _Context, depth: int) -> Json:
    naive = v.replace(tzinfo=None, fold=0).isoformat()
    return {"$datetime": [naive, _enc_tzinfo(v.tzinfo, v), v.fold]}


def _enc_date(v: datetime.date, ctx: _Context, depth: int) -> Json:
    return {"$date": v.isoformat()}


def _enc_time(v: datetime.time, ctx: _Context, depth: int) -> Json:
    naive = v.replace(tzinfo=None, fold=0).isoformat()
    return {"$time": [naive, _enc_tzinfo(v.tzinfo, v), v.fold]}


def _enc_timedelta_value(v: datetime.timedelta, ctx: _Context, depth: int) -> Json:
    return {"$timedelta": _timedelta(v)}


def _enc_timezone(v: datetime.timezone, ctx: _Context, depth: int) -> Json:
    return _enc_tzinfo(v, v)


def _enc_zoneinfo(v: zoneinfo.ZoneInfo, ctx: _Context, depth: int) -> Json:
    return _enc_tzinfo(v, v)


def _enc_pydantic_tzinfo(v: datetime.tzinfo, ctx: _Context, depth: int) -> Json:
    return _enc_tzinfo(v, v)


_PATHS: dict[str, type[pathlib.PurePath]] = {
    cls.__name__: cls
    for cls in (
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        pathlib.PosixPath,
        pathlib.WindowsPath,
    )
}


def _enc_path(v: pathlib.PurePath, ctx: _Context, depth: int) -> Json:
    text = str(v)
    back = type(v)(text)
    if back != v or (back.drive, back.root, back.parts) != (v.drive, v.root, v.parts):
        # Python 3.11 does not parse the str() of some Windows paths back to the same path
        raise _Refusal(
            v,
            f"a {_type_label(type(v))} {v!r} cannot be restored exactly: its text {text!r} "
            f"reads back as {back!r}",
        )
    return {"$path": [type(v).__name__, text]}


_Encoder: TypeAlias = Callable[[Any, _Context, int], Json]

_ENCODERS: dict[type, _Encoder] = {
    list: _enc_list,
    dict: _enc_dict,
    tuple: _enc_tuple,
    set: _enc_set,
    frozenset: _enc_frozenset,
    bytes: _enc_bytes,
    bytearray: _enc_bytearray,
    decimal.Decimal: _enc_decimal,
    uuid.UUID: _enc_uuid,
    datetime.datetime: _enc_datetime,
    datetime.date: _enc_date,
    datetime.time: _enc_time,
    datetime.timedelta: _enc_timedelta_value,
    datetime.timezone: _enc_timezone,
    zoneinfo.ZoneInfo: _enc_zoneinfo,
    **dict.fromkeys(_PATHS.values(), _enc_path),
}
if _PYDANTIC_TZINFO is not None:
    _ENCODERS[_PYDANTIC_TZINFO] = _enc_pydantic_tzinfo

# Classes of the allowed kinds seen so far, with the name that finds them again.
_NAMES: dict[type, str] = {}


def _class_encoder(v: object, t: type) -> _Encoder:
    """The encoder for an instance of a class of an allowed kind; refuses anything else."""
    encoder: _Encoder
    if issubclass(t, enum.Enum):
        encoder = _enc_enum
    elif issubclass(t, pydantic.BaseModel):
        _refuse_builtin_base(v, t, "pydantic model")
        _MODELS[t] = (frozenset(t.model_fields), _hidden_slots(t, set(_MODEL_SLOTS)))
        encoder = _enc_model
    elif dataclasses.is_dataclass(t):
        _refuse_builtin_base(v, t, "dataclass")
        _DATACLASSES[t] = _DataclassLayout(t)
        encoder = _enc_dataclass
    elif issubclass(t, tuple) and isinstance(getattr(t, "_fields", None), tuple):
        encoder = _enc_namedtuple
    else:
        raise _Refusal(v, _unsupported(t))
    _NAMES[t] = _class_name(v, t)
    _ENCODERS[t] = encoder
    return encoder


# Bases whose instances keep their content outside any field a model or dataclass writes.
_VALUE_BASES = (
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
    pathlib.PurePath,
)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE; a static C type whose instances are bigger holds state


def _refuse_builtin_base(v: object, t: type, kind: str) -> None:
    """Refuse a model or dataclass class that is also a dict, list, int, str, ... whose
    builtin content (the items, the number, the text) is none of its fields."""
    for base in t.__mro__[1:]:
        if base is object:
            continue
        c_state = not base.__flags__ & _HEAPTYPE and (
            base.__basicsize__ != object.__basicsize__ or base.__itemsize__
        )
        if base.__module__ == "builtins" or c_state or issubclass(base, _VALUE_BASES):
            raise _Refusal(
                v,
                f"a {_type_label(t)} (a {kind} and a subclass of {_type_label(base)}) would "
                f"come back without its {_type_label(base)} content, which is not one of its "
                f"fields; hold the {_type_label(base)} in a field instead of subclassing it",
            )


def _hidden_slots(t: type, written: set[str]) -> tuple[Any, ...]:
    """The slots of `t`'s instances (as member descriptors) other than the ones named in
    `written`: state that the encoder would not write, so it refuses an instance that sets one."""
    return tuple(
        attr
        for cls in t.__mro__
        for name, attr in vars(cls).items()
        if type(attr) is types.MemberDescriptorType
        and attr.__objclass__ is cls  # a slot of this class, not one copied from another
        and name not in written
    )


def _refuse_hidden_state(v: object, slots: tuple[Any, ...]) -> None:
    for slot in slots:
        try:
            slot.__get__(v, type(v))
        except AttributeError:
            continue  # not set: nothing is lost
        raise _Refusal(
            v,
            f"a {_type_label(type(v))} has its slot {slot.__name__!r} set, which is not one of "
            "its fields, so it would not come back; make it a field, or leave it unset",
        )


def _unsupported(t: type) -> str:
    bases = (dict, list, tuple, set, frozenset, str, int, float, bytes, datetime.datetime)
    base = next((b for b in (*bases, datetime.date, pathlib.PurePath) if issubclass(t, b)), None)
    if base is not None:
        return (
            f"a {_type_label(t)} (a subclass of {base.__name__}) would come back as a plain "
            f"{base.__name__}; convert it to {base.__name__} before returning it"
        )
    return (
        f"cannot encode a {_type_label(t)} value losslessly; use JSON data, tuples, sets, bytes, "
        "datetime, Decimal, UUID, pathlib paths, enums, named tuples, pydantic models or "
        "dataclasses"
    )


def _class_name(v: object, t: type) -> str:
    name = f"{t.__module__}:{t.__qualname__}"
    if "<locals>" in t.__qualname__:
        raise _Refusal(
            v,
            f"{_type_label(t)} is defined inside a function, so another process cannot find it; "
            "define the class at module level",
        )
    try:
        found = _resolve(name)
    except UndecodableValue:
        found = None
    if found is not t:
        raise _Refusal(
            v,
            f"{_type_label(t)} cannot be found again as {name}; define the class at module "
            "level under its own name (a generic pydantic model like Model[int] must be "
            "parametrized at module level, or subclassed)",
        )
    return name


def _enc_enum(v: enum.Enum, ctx: _Context, depth: int) -> Json:
    t = type(v)
    name = v._name_
    if name is not None and t.__members__.get(name) is v:
        return {"$enum": [_NAMES[t], name]}
    try:  # a composite flag has no member name: its value rebuilds it
        return {"$enum": [_NAMES[t], None, _enc(v._value_, ctx, depth)]}
    except _Refusal as r:
        raise r.at(".value", v) from None


def _enc_namedtuple(v: tuple[object, ...], ctx: _Context, depth: int) -> Json:
    if type(v).__dictoffset__ and vars(v):  # a subclass without __slots__ has a __dict__
        raise _Refusal(
            v,
            f"a {_type_label(type(v))} has attributes {sorted(vars(v))} besides its fields, "
            "which would not come back; make them fields, or leave them unset",
        )
    try:
        items = [_enc(x, ctx, depth) for x in v]
    except _Refusal as r:
        raise r.at(_field_of(v, r.obj), v) from None
    return {"$namedtuple": [_NAMES[type(v)], items]}


def _field_of(v: tuple[object, ...], obj: object) -> str:
    fields: tuple[str, ...] = v._fields  # type: ignore[attr-defined]
    return next((f".{f}" for f, x in zip(fields, v, strict=False) if x is obj), "[?]")


def _attrs(v: object, values: dict[str, Any], ctx: _Context, depth: int) -> Json:
    """A model's or dataclass's attributes as a codec dict; refusals say `.name`."""
    if not _str_keys(values, ctx):  # extras named like a tag, or with lone surrogates
        return _enc_dict(values, ctx, depth)
    try:
        raw = ctx.raw
        return {k: x if type(x) in raw else _enc(x, ctx, depth) for k, x in values.items()}
    except _Refusal as r:
        attr = next((k for k, x in values.items() if x is r.obj), "?")
        raise r.at(f".{attr}", v) from None


# Per model class: its field names, and the slots (besides pydantic's) the encoder does not write.
_MODELS: dict[type, tuple[frozenset[str], tuple[Any, ...]]] = {}
_MODEL_SLOTS: frozenset[str] = frozenset(vars(pydantic.BaseModel)["__slots__"])


def _enc_model(v: pydantic.BaseModel, ctx: _Context, depth: int) -> Json:
    t = type(v)
    fields = v.__dict__
    names, hidden = _MODELS[t]
    if not fields.keys() >= names:  # model_construct() without a required field, or del
        unset = sorted(n for n in names if n not in fields)
        raise _Refusal(v, _never_set(t, unset))
    if hidden:
        _refuse_hidden_state(v, hidden)
    extra = v.__pydantic_extra__
    private = v.__pydantic_private__
    payload: dict[str, Json] = {"type": _NAMES[t], "dict": _attrs(v, fields, ctx, depth)}
    if extra is not None:
        payload["extra"] = _attrs(v, extra, ctx, depth)
    if private is not None:
        payload["private"] = _attrs(v, private, ctx, depth)
    fields_set = v.__pydantic_fields_set__
    if fields_set != _default_fields_set(fields, extra):
        payload["set"] = [*sorted(fields_set)]
    return {"$model": payload}


def _default_fields_set(fields: dict[str, Any], extra: dict[str, Any] | None) -> set[str]:
    return set(fields) | set(extra or ())


class _DataclassLayout:
    """What the encoder needs to know about a dataclass, worked out once per class."""

    __slots__ = ("class_defaults", "fields", "hidden", "slots")

    def __init__(self, t: type) -> None:
        self.fields = tuple(f.name for f in dataclasses.fields(t))
        # The fields kept in slots (member descriptors), and those not kept in slots whose
        # class gives a value (a plain default) that reads the same here and where decoded.
        self.slots: dict[str, Any] = {}
        self.class_defaults: set[str] = set()
        for name in self.fields:
            attr = _class_attr(t, name)
            if type(attr) is types.MemberDescriptorType:
                self.slots[name] = attr
            elif attr is not _ABSENT:
                self.class_defaults.add(name)
        self.hidden = _hidden_slots(t, set(self.fields))


_DATACLASSES: dict[type, _DataclassLayout] = {}
_ABSENT = object()


def _class_attr(t: type, name: str) -> object:
    """`name` as the class `t` defines it (not through descriptors), or _ABSENT."""
    for cls in t.__mro__:
        namespace = vars(cls)
        if name in namespace:
            return namespace[name]
    return _ABSENT


def _never_set(t: type, names: list[str]) -> str:
    fields = ", ".join(f"{_type_label(t)}.{name}" for name in names)
    return (
        f"{fields} {'was' if len(names) == 1 else 'were'} never set, so the value could not be "
        "restored; set every field before returning it"
    )


def _enc_dataclass(v: object, ctx: _Context, depth: int) -> Json:
    t = type(v)
    layout = _DATACLASSES[t]
    # The instance's own state, as copy and pickle see it: its __dict__ (which also holds
    # attributes set outside the fields, and lacks fields left at a class-level default),
    # then the fields kept in slots.
    values = dict(getattr(v, "__dict__", {}))
    for name in layout.fields:
        if name in values or name in layout.class_defaults:
            continue
        slot = layout.slots.get(name)
        try:
            if slot is None:
                raise AttributeError(name)
            values[name] = slot.__get__(v, t)
        except AttributeError:  # an init=False field without a default, or deleted
            raise _Refusal(v, _never_set(t, [name])) from None
    if layout.hidden:
        _refuse_hidden_state(v, layout.hidden)
    return {"$dataclass": {"type": _NAMES[t], "fields": _attrs(v, values, ctx, depth)}}


def _encode_slow(value: object, name: str, canonical: bool) -> bytes:
    try:
        try:
            return _dump(value, _Context(canonical, careful=False))
        except orjson.JSONEncodeError:
            # orjson refused a str with lone surrogates or an int beyond 64 bits; the careful
            # pass tags those. What it refuses after that is nesting deeper than JSON allows.
            return _dump(value, _Context(canonical, careful=True))
    except _Refusal as r:
        raise UnencodableValue(r.message(name)) from None
    except RecursionError:
        raise UnencodableValue(f"{name}: nested too deeply to encode") from None
    except orjson.JSONEncodeError as exc:
        raise UnencodableValue(f"{name}: cannot be written as JSON: {exc}") from None


def _dump(value: object, ctx: _Context) -> bytes:
    return orjson.dumps(_enc(value, ctx, 0), option=ctx.option)


def encode(value: object, *, name: str = "value") -> bytes:
    """Encode `value` as UTF-8 JSON that `decode` turns back into an identical value.

    Raises UnencodableValue, naming the type and where it is inside `value` (starting from
    `name`), for anything that could not come back exactly.
    """
    out = _fast(value, _FAST)
    return out if out is not None else _encode_slow(value, name, canonical=False)


def digest(value: object, *, name: str = "value") -> str:
    """The sha256 hex digest of `value`'s encoding with every dict's order ignored.

    Equal values give equal digests in every process (the encoding of sets and dicts does not
    depend on PYTHONHASHSEED or insertion order). Raises UnencodableValue like `encode`.
    """
    out = _fast(value, _FAST | orjson.OPT_SORT_KEYS)
    if out is None:
        out = _encode_slow(value, name, canonical=True)
    return hashlib.sha256(out).hexdigest()


# --- decoding ---------------------------------------------------------------------------------


def decode(data: bytes | bytearray | memoryview) -> object:
    """The value that `encode` wrote as `data`; raises UndecodableValue if it is not one."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    try:
        tree = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UndecodableValue(f"not valid JSON: {exc}") from None
    if b"$" not in data or b'{"$' not in data:  # no tagged value anywhere: plain JSON data
        return tree
    try:
        return _dec(tree)
    except UndecodableValue:
        raise
    except RecursionError:
        raise UndecodableValue("nested too deeply to decode") from None
    except Exception as exc:  # a class's own constructor may raise anything on corrupt data
        raise UndecodableValue(f"corrupt data: {type(exc).__name__}: {exc}") from None


_ATOMS = frozenset({str, int, float, bool, _NONE})


def _dec(o: Any) -> object:
    """The value for a JSON tree `o` (Any: orjson.loads output, tested by exact type)."""
    t = type(o)
    if t is list:
        return [x if type(x) in _ATOMS else _dec(x) for x in o]
    if t is dict:
        if len(o) == 1:
            ((key, payload),) = o.items()
            if key.startswith("$"):
                decoder = _DECODERS.get(key)
                if decoder is None:
                    raise UndecodableValue(f"unknown tag {key!r}")
                return decoder(payload)
        return {k: v if type(v) in _ATOMS else _dec(v) for k, v in o.items()}
    return o


def _expect(payload: Json, kind: type, tag: str) -> Any:
    if type(payload) is not kind:
        raise UndecodableValue(f"{tag} holds a {type(payload).__name__}, not a {kind.__name__}")
    return payload


def _expect_list(payload: Json, length: int, tag: str) -> list[Json]:
    items: list[Json] = _expect(payload, list, tag)
    if len(items) != length:
        raise UndecodableValue(f"{tag} holds {len(items)} items, not {length}")
    return items


def _dec_dict_of(payload: Json, tag: str) -> dict[str, Any]:
    value = _dec(_expect(payload, dict, tag))
    if type(value) is not dict:
        raise UndecodableValue(f"{tag} holds a {type(value).__name__}, not a dict")
    return value


def _dec_items(p: Json, tag: str) -> list[object]:
    return [x if type(x) in _ATOMS else _dec(x) for x in _expect(p, list, tag)]


def _dec_tuples(p: Json) -> object:
    rows = _expect(p, list, "$tuples")
    if not {list}.issuperset(map(type, rows)) or not _ATOMS.issuperset(
        map(type, itertools.chain.from_iterable(rows))
    ):
        raise UndecodableValue("$tuples holds something other than lists of JSON scalars")
    return list(map(tuple, rows))


def _dec_tuple(p: Json) -> object:
    return tuple(_dec_items(p, "$tuple"))


def _dec_set(p: Json) -> object:
    return set(_dec_items(p, "$set"))


def _dec_frozenset(p: Json) -> object:
    return frozenset(_dec_items(p, "$frozenset"))


def _dec_pairs(p: Json) -> object:
    pairs = _expect(p, list, "$dict")
    return {_dec(k): _dec(v) for k, v in (_expect_list(pair, 2, "$dict pair") for pair in pairs)}


def _unb64(p: Json, tag: str) -> bytes:
    try:
        return base64.b64decode(_expect(p, str, tag), validate=True)
    except binascii.Error as exc:
        raise UndecodableValue(f"{tag}: {exc}") from None


def _dec_bytes(p: Json) -> object:
    return _unb64(p, "$bytes")


def _dec_bytearray(p: Json) -> object:
    return bytearray(_unb64(p, "$bytearray"))


def _dec_str(p: Json) -> object:
    return _unb64(p, "$str").decode("utf-8", "surrogatepass")


def _dec_int(p: Json) -> object:
    text: str = _expect(p, str, "$int")
    try:
        return int(text, 0)
    except ValueError:
        # Decimal digits beyond this process's int/str limit (an older version wrote them
        # under a raised limit): decimal.Decimal is not limited.
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()) or digits.startswith("0"):
            raise
        return int(decimal.Decimal(text))


def _dec_float(p: Json) -> object:
    text = _expect(p, str, "$float")
    if text not in ("nan", "inf", "-inf"):
        raise UndecodableValue(f"$float holds {text!r}, not nan, inf or -inf")
    return float(text)


def _dec_decimal(p: Json) -> object:
    try:
        return decimal.Decimal(_expect(p, str, "$decimal"))
    except decimal.InvalidOperation:
        raise UndecodableValue(f"$decimal holds {p!r}") from None


def _dec_uuid(p: Json) -> object:
    if type(p) is str:
        return uuid.UUID(p)
    text, safe = _expect_list(p, 2, "$uuid")
    return uuid.UUID(_expect(text, str, "$uuid"), is_safe=uuid.SafeUUID(safe))


def _dec_tzinfo(p: Json) -> datetime.tzinfo | None:
    tz = _dec(p)
    if tz is not None and type(tz) not in (datetime.timezone, zoneinfo.ZoneInfo, _PYDANTIC_TZINFO):
        raise UndecodableValue(f"a time zone must be a timezone or ZoneInfo, not {tz!r}")
    return tz  # type: ignore[return-value]


def _dec_datetime(p: Json) -> object:
    iso, tz, fold = _expect_list(p, 3, "$datetime")
    dt = datetime.datetime.fromisoformat(_expect(iso, str, "$datetime"))
    return dt.replace(tzinfo=_dec_tzinfo(tz), fold=_expect(fold, int, "$datetime fold"))


def _dec_date(p: Json) -> object:
    return datetime.date.fromisoformat(_expect(p, str, "$date"))


def _dec_time(p: Json) -> object:
    iso, tz, fold = _expect_list(p, 3, "$time")
    t = datetime.time.fromisoformat(_expect(iso, str, "$time"))
    return t.replace(tzinfo=_dec_tzinfo(tz), fold=_expect(fold, int, "$time fold"))


def _dec_timedelta(p: Json) -> datetime.timedelta:
    days, seconds, micro = (_expect(x, int, "$timedelta") for x in _expect_list(p, 3, "$timedelta"))
    return datetime.timedelta(days, seconds, micro)


def _dec_timezone(p: Json) -> object:
    offset, name = _expect_list(p, 2, "$timezone")
    if name is None:
        return datetime.timezone(_dec_timedelta(offset))
    return datetime.timezone(_dec_timedelta(offset), _expect(name, str, "$timezone name"))


def _dec_zoneinfo(p: Json) -> object:
    return zoneinfo.ZoneInfo(_expect(p, str, "$zoneinfo"))


def _dec_pydantic_tzinfo(p: Json) -> object:
    seconds: int = _expect(p, int, "$pydantic_tzinfo")
    if _PYDANTIC_TZINFO is None:
        raise UndecodableValue("$pydantic_tzinfo needs a pydantic_core with TzInfo(seconds)")
    return _PYDANTIC_TZINFO(seconds)


def _dec_path(p: Json) -> object:
    kind, text = _expect_list(p, 2, "$path")
    cls = _PATHS.get(_expect(kind, str, "$path"))
    if cls is None:
        raise UndecodableValue(f"$path names {kind!r}, not one of {sorted(_PATHS)}")
    return cls(_expect(text, str, "$path"))


def _dec_enum(p: Json) -> object:
    items = _expect(p, list, "$enum")
    cls = _allowed(items[0], "$enum")
    if len(items) == 2:
        member = cls.__members__.get(_expect(items[1], str, "$enum name"))
        if member is None:
            raise UndecodableValue(f"{items[0]} has no member {items[1]!r}")
        return member
    _, none, value = _expect_list(items, 3, "$enum")
    if none is not None:
        raise UndecodableValue(f"$enum by value holds {none!r} where null belongs")
    return cls(_dec(value))


def _dec_namedtuple(p: Json) -> object:
    name, items = _expect_list(p, 2, "$namedtuple")
    cls = _allowed(name, "$namedtuple")
    values = _dec_items(items, "$namedtuple")
    if len(values) != len(cls._fields):
        raise UndecodableValue(f"{name} has fields {cls._fields}, the data {len(values)} items")
    return tuple.__new__(cls, values)


def _dec_model(p: Json) -> object:
    payload = _expect(p, dict, "$model")
    cls = _allowed(payload.get("type"), "$model")
    fields = _dec_dict_of(payload.get("dict"), "$model dict")
    missing = set(cls.model_fields) - set(fields)
    if missing:
        raise UndecodableValue(
            f"{payload['type']} has fields {sorted(missing)} that the data lacks; was the "
            "class changed since the value was encoded?"
        )
    extra = _dec_dict_of(payload["extra"], "$model extra") if "extra" in payload else None
    private = _dec_dict_of(payload["private"], "$model private") if "private" in payload else None
    if "set" in payload:
        fields_set = set(_expect(payload["set"], list, "$model set"))
    else:
        fields_set = _default_fields_set(fields, extra)
    model = cls.__new__(cls)
    # pydantic's own pickle state: fields, extras and private attributes as they were
    model.__setstate__(
        {
            "__dict__": fields,
            "__pydantic_extra__": extra,
            "__pydantic_fields_set__": fields_set,
            "__pydantic_private__": private,
        }
    )
    return model


def _dec_dataclass(p: Json) -> object:
    payload = _expect(p, dict, "$dataclass")
    cls = _allowed(payload.get("type"), "$dataclass")
    values = _dec_dict_of(payload.get("fields"), "$dataclass fields")
    # A field the data lacks (the class gained it since) takes the field's default; one
    # without a default cannot be made up.
    defaults: dict[str, object] = {}
    missing: list[str] = []
    for field in dataclasses.fields(cls):
        name = field.name
        if name in values:
            continue
        if field.default_factory is not dataclasses.MISSING:
            defaults[name] = field.default_factory()
        elif field.default is dataclasses.MISSING:
            missing.append(name)
        elif _class_attr(cls, name) is not field.default:  # a slot, which unset has no value
            defaults[name] = field.default
        # else the class attribute is the default, read as when the value was encoded
    if missing:
        raise UndecodableValue(
            f"{payload['type']} has fields {missing} that the data lacks and that have no "
            "default; was the class changed since the value was encoded?"
        )
    # Set as they were, without __init__ or __post_init__ (which ran when it was made); this
    # is how copy and pickle rebuild dataclasses, frozen and slotted ones included.
    obj = cls.__new__(cls)
    for key, value in itertools.chain(values.items(), defaults.items()):
        object.__setattr__(obj, key, value)
    return obj


_DECODERS: dict[str, Callable[[Json], object]] = {
    "$tuple": _dec_tuple,
    "$tuples": _dec_tuples,
    "$set": _dec_set,
    "$frozenset": _dec_frozenset,
    "$dict": _dec_pairs,
    "$bytes": _dec_bytes,
    "$bytearray": _dec_bytearray,
    "$str": _dec_str,
    "$int": _dec_int,
    "$float": _dec_float,
    "$decimal": _dec_decimal,
    "$uuid": _dec_uuid,
    "$datetime": _dec_datetime,
    "$date": _dec_date,
    "$time": _dec_time,
    "$timedelta": _dec_timedelta,
    "$timezone": _dec_timezone,
    "$zoneinfo": _dec_zoneinfo,
    "$pydantic_tzinfo": _dec_pydantic_tzinfo,
    "$path": _dec_path,
    "$enum": _dec_enum,
    "$namedtuple": _dec_namedtuple,
    "$model": _dec_model,
    "$dataclass": _dec_dataclass,
}


# --- finding classes without importing --------------------------------------------------------

_KINDS: dict[str, Callable[[type], bool]] = {
    "$enum": lambda cls: issubclass(cls, enum.Enum),
    "$model": lambda cls: issubclass(cls, pydantic.BaseModel),
    "$dataclass": lambda cls: (
        dataclasses.is_dataclass(cls) and not issubclass(cls, pydantic.BaseModel)
    ),
    "$namedtuple": lambda cls: (
        issubclass(cls, tuple) and isinstance(type.__getattribute__(cls, "_fields"), tuple)
    ),
}

_type_dict = type.__dict__["__dict__"].__get__


def _allowed(name: Json, tag: str) -> Any:
    """The class `name` refers to, if it is loaded and of the kind `tag` stores."""
    cls = _resolve(_expect(name, str, f"{tag} type"))
    try:
        ok = _KINDS[tag](cls)
    except AttributeError:
        ok = False
    if not ok:
        raise UndecodableValue(f"{name} is not a class that {tag} may restore")
    return cls


def _resolve(name: str) -> type:
    """The class at `module:qualname` among modules already imported, looked up in namespaces.

    Never imports, and never calls getattr on a module (a module `__getattr__` may import)
    or touches an unloaded lazy module (reading its `__dict__` attribute would load it).
    """
    module_name, sep, qualname = name.partition(":")
    module = sys.modules.get(module_name)
    if not sep or not qualname:
        raise UndecodableValue(f"{name!r} is not a module:qualname class name")
    if module is None or not issubclass(type(module), types.ModuleType):
        raise UndecodableValue(
            f"{name} is in module {module_name!r}, which this process has not imported; "
            "import it before decoding (decoding never imports)"
        )
    found = _find_class(object.__getattribute__(module, "__dict__"), qualname)
    if found is None:
        raise UndecodableValue(f"{name} is not a class in the loaded module {module_name}")
    return found


def _find_class(namespace: Any, qualname: str) -> type | None:
    """The class at `qualname` in a module's or class's namespace: each "." in turn, from the
    left, is tried as a step into a class, and then the whole name as one key (a generic
    model parametrized at module level is kept under a name like Page[Catalog.Item])."""
    dot = qualname.find(".")
    while dot != -1:
        outer = namespace.get(qualname[:dot])
        if isinstance(outer, type):
            found = _find_class(_type_dict(outer), qualname[dot + 1 :])
            if found is not None:
                return found
        dot = qualname.find(".", dot + 1)
    obj = namespace.get(qualname)
    return obj if isinstance(obj, type) else None


def resolve_class(name: str) -> type:
    """The class at `module:qualname` among modules already imported (never imports); for
    readers of older checkpoint formats, which name types the same way."""
    return _resolve(name)
