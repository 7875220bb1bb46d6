"""Module-level types and hypothesis strategies for the codec tests (and a subprocess sample).

The classes live at module level because the codec refuses classes another process could
not find; `assert_identical` is the codec's definition of "comes back exactly".
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import functools
import math
import pathlib
import uuid
import zoneinfo
from typing import Annotated, Any, Generic, Literal, NamedTuple, TypeVar

import pydantic
import pydantic_core
from hypothesis import strategies as st

# --- sample types -----------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = (0, 255, 0)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    READ = "r"
    WRITE = "w"


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


class Bits(enum.IntFlag):
    A = 1
    B = 2


Pair = collections.namedtuple("Pair", "left right")


class Typed(NamedTuple):
    a: Any
    b: int = 0


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    a: Any
    b: tuple[Any, ...] = ()


@dataclasses.dataclass
class Nest:
    point: Point
    frozen: Frozen
    cache: Any = dataclasses.field(default=None, init=False)


class Inner(pydantic.BaseModel):
    when: datetime.datetime
    tags: frozenset[str] = frozenset()


class Outer(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")

    anything: Any = None
    inner: Inner | None = None
    amounts: dict[str, Annotated[decimal.Decimal, pydantic.Field(allow_inf_nan=True)]] = {}


class WithPrivate(pydantic.BaseModel):
    name: str
    _seen: Any = pydantic.PrivateAttr(default=None)


T = TypeVar("T")


class Holder(pydantic.BaseModel, Generic[T]):
    item: T


class Catalog(pydantic.BaseModel):
    class Item(pydantic.BaseModel):
        sku: str


# Parametrized at module level, with a "." in the parameter's name: pydantic keeps them in
# globals() as "Holder[Catalog.Item]" and "Holder[Literal[0.5, 1.5]]".
ItemHolder = Holder[Catalog.Item]
RateHolder = Holder[Literal[0.5, 1.5]]


@dataclasses.dataclass(slots=True)
class Listing:
    """A slotted dataclass with defaults of both kinds (a slot has no class-level default)."""

    name: Any
    tags: list[Any] = dataclasses.field(default_factory=list)
    rank: int = 0


class Cached:
    __slots__ = ("cache",)


@dataclasses.dataclass(slots=True)
class Record(Cached):
    """A slotted dataclass whose base declares a slot that is not a field."""

    a: Any


class Labeled(Typed):
    """A named tuple's subclass without __slots__: its instances have a __dict__."""


class Scratch(pydantic.BaseModel):
    """A model with a slot that is not a field."""

    __slots__ = ("scratch",)

    a: int = 1


class Box(pydantic.BaseModel):
    """A model whose field may hold another Box (for a recursive structure)."""

    model_config = pydantic.ConfigDict(validate_assignment=False)

    content: Any = None


class OddZone(datetime.tzinfo):
    """A tzinfo of a kind the codec cannot rebuild."""

    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=1)

    def dst(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(0)

    def tzname(self, dt: datetime.datetime | None) -> str:
        return "ODD"


# --- strategies -------------------------------------------------------------------------------

TAG_LIKE = ["$tuple", "$dict", "$", "$bytes", "$x", "$model"]

texts = st.text(max_size=8) | st.sampled_from(["", "\ud800", "a\udfffb", "é", *TAG_LIKE])
ints = (
    st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.sampled_from([2**63 - 1, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64])
    # around the default int/str limit of 4300 digits, beyond which the codec writes hex
    | st.builds(
        lambda digits, sign, offset: sign * (10**digits + offset),
        st.sampled_from([4299, 4300, 5070]),
        st.sampled_from([1, -1]),
        st.integers(-2, 2),
    )
)
floats = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0])
decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [decimal.Decimal(s) for s in ("NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "-0", "1E+5")]
    + [decimal.Decimal("1.500"), decimal.Decimal("-1.23E-30"), decimal.Decimal("NaN123")]
)
offsets = st.builds(
    datetime.timezone,
    st.timedeltas(min_value=datetime.timedelta(hours=-23), max_value=datetime.timedelta(hours=23)),
) | st.builds(
    datetime.timezone,
    st.timedeltas(min_value=datetime.timedelta(hours=-23), max_value=datetime.timedelta(hours=23)),
    st.text(min_size=1, max_size=5),
)
# pydantic's own tzinfo, which it gives a datetime parsed from text with an offset
pydantic_offsets = st.builds(pydantic_core.TzInfo, st.integers(-86399, 86399))
zones = st.none() | offsets | st.timezones() | st.just(datetime.UTC) | pydantic_offsets
folds = st.sampled_from([0, 1])
datetimes = st.builds(
    lambda dt, fold: dt.replace(fold=fold), st.datetimes(timezones=zones), folds
) | st.just(
    datetime.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
)
times = st.builds(
    lambda t, fold: t.replace(fold=fold),
    st.times(timezones=st.none() | offsets | pydantic_offsets),
    folds,
)


def reads_back(path: pathlib.PurePath) -> bool:
    """True if `path`'s text parses back to the same path (Python 3.11 has exceptions)."""
    back = type(path)(str(path))
    return back == path and (back.drive, back.root, back.parts) == (
        path.drive,
        path.root,
        path.parts,
    )


paths = st.builds(
    lambda cls, parts: cls(*parts),
    st.sampled_from([pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.Path]),
    st.lists(
        st.sampled_from(
            ["a", "b c", "..", ".", "/", "é", "x.txt", "C:\\", "//", "\\\\srv", "./C:", "c:"]
        ),
        max_size=4,
    ),
).filter(reads_back)  # the codec refuses the rest (see test_codec)

enums = st.sampled_from(
    [*Color, *Level, *Mode, *Perm, Perm.R | Perm.W, Perm(0), *Bits, Bits.A | Bits.B]
)
uuids = st.uuids() | st.builds(
    lambda u, safe: uuid.UUID(str(u), is_safe=safe), st.uuids(), st.sampled_from(uuid.SafeUUID)
)

hashable_leaves = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    texts,
    st.binary(max_size=8) | st.builds(lambda: bytes(range(256))),
    decimals.filter(lambda d: not d.is_snan()),  # a signalling NaN cannot be hashed
    uuids,
    datetimes,
    st.dates(),
    times,
    st.timedeltas(),
    paths,
    enums,
)
leaves = hashable_leaves | decimals | st.binary(max_size=8).map(bytearray)


def hashables(depth: int) -> st.SearchStrategy[Any]:
    """Values that can be set elements and dict keys, nested `depth` levels."""
    # deferred: the strategy's repr stays short (hypothesis warns about huge ones)
    return st.deferred(lambda: _hashables(depth))


@functools.cache
def _hashables(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return hashable_leaves
    inner = hashables(depth - 1)
    return st.one_of(
        hashable_leaves,
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
        st.builds(Pair, inner, inner),
        st.builds(Frozen, inner, st.lists(inner, max_size=2).map(tuple)),
    )


def values(depth: int = 4) -> st.SearchStrategy[Any]:
    """Every kind of value the codec must round-trip, nested up to `depth` levels."""
    return st.deferred(lambda: _values(depth))


@functools.cache
def _values(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return leaves
    inner = values(depth - 1)
    keys = hashables(min(depth - 1, 2))
    return st.one_of(
        leaves,
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(texts, inner, max_size=4),
        st.dictionaries(keys, inner, max_size=3),
        st.sets(keys, max_size=3),
        st.frozensets(keys, max_size=3),
        st.builds(Pair, inner, inner),
        st.builds(Typed, inner, st.integers(-5, 5)),
        st.builds(Point, inner, inner),
        st.builds(Frozen, inner, st.lists(inner, max_size=2).map(tuple)),
        st.builds(Nest, st.builds(Point, inner), st.builds(Frozen, inner)),
        st.builds(Listing, inner, st.lists(inner, max_size=2), st.integers(-5, 5)),
        st.builds(Record, inner),
        st.builds(Labeled, inner, st.integers(-5, 5)),
        st.builds(lambda sku: ItemHolder(item=Catalog.Item(sku=sku)), st.text(max_size=3)),
        st.builds(lambda rate: RateHolder(item=rate), st.sampled_from([0.5, 1.5])),
        models(inner),
    )


def models(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Outer]:
    extras = st.dictionaries(st.sampled_from(["note", "$tuple", "$", "extra_1"]), inner, max_size=2)
    inners = st.none() | st.builds(
        Inner, when=datetimes, tags=st.frozensets(st.text(max_size=3), max_size=3)
    )
    amounts = st.dictionaries(
        st.text(max_size=3), decimals.filter(lambda d: not d.is_snan()), max_size=2
    )
    return st.builds(
        lambda anything, inner_, amounts_, extra: Outer(
            anything=anything, inner=inner_, amounts=amounts_, **extra
        ),
        inner,
        inners,
        amounts,
        extras,
    )


# --- what "identical" means ---------------------------------------------------------------------


def assert_identical(a: Any, b: Any, path: str = "value") -> None:
    """Assert that `b` is `a` rebuilt exactly: same types all the way down, NaN equal to NaN."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} came back as {type(b).__name__}"
    if isinstance(a, enum.Enum):
        assert a is b, f"{path}: {a!r} != {b!r}"
    elif isinstance(a, pydantic.BaseModel):
        assert_identical(a.__dict__, b.__dict__, f"{path}.__dict__")
        assert_identical(a.__pydantic_extra__, b.__pydantic_extra__, f"{path}.<extra>")
        assert_identical(a.__pydantic_private__, b.__pydantic_private__, f"{path}.<private>")
        assert a.__pydantic_fields_set__ == b.__pydantic_fields_set__, f"{path}: fields set"
    elif dataclasses.is_dataclass(a):
        for field in dataclasses.fields(a):
            assert_identical(getattr(a, field.name), getattr(b, field.name), f"{path}.{field.name}")
        assert_identical(getattr(a, "__dict__", None), getattr(b, "__dict__", None), path)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: {len(a)} items came back as {len(b)}"
        for n, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{path}[{n}]")
    elif isinstance(a, dict):
        assert len(a) == len(b), f"{path}: {len(a)} items came back as {len(b)}"
        for (k, x), (j, y) in zip(a.items(), b.items(), strict=True):  # order is kept too
            assert_identical(k, j, f"{path}<key {_show(k)}>")
            assert_identical(x, y, f"{path}[{_show(k)}]")
    elif isinstance(a, set | frozenset):
        assert len(a) == len(b), f"{path}: {len(a)} elements came back as {len(b)}"
        unmatched = list(b)
        for x in a:
            match = next((y for y in unmatched if _identical(x, y)), _MISSING)
            assert match is not _MISSING, f"{path}: element {_show(x)} did not come back"
            unmatched.remove(match)
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        ), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, decimal.Decimal):
        assert str(a) == str(b), f"{path}: {a!r} != {b!r}"  # sign, exponent and NaN kind
    elif isinstance(a, datetime.datetime | datetime.time):
        assert a.replace(tzinfo=None) == b.replace(tzinfo=None), f"{path}: {a!r} != {b!r}"
        assert a.fold == b.fold, f"{path}: fold {a.fold} != {b.fold}"
        assert_identical(a.tzinfo, b.tzinfo, f"{path}.tzinfo")
    elif isinstance(a, datetime.timezone):
        assert a.__getinitargs__() == b.__getinitargs__(), f"{path}: {a!r} != {b!r}"  # type: ignore[attr-defined]
    elif isinstance(a, zoneinfo.ZoneInfo):
        assert a.key == b.key, f"{path}: {a!r} != {b!r}"
    elif isinstance(a, pathlib.PurePath):
        assert (str(a), a.drive, a.root, a.parts) == (str(b), b.drive, b.root, b.parts), (
            f"{path}: {a!r} != {b!r}"
        )
    elif isinstance(a, uuid.UUID):
        assert (a, a.is_safe) == (b, b.is_safe), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {_show(a)} != {_show(b)}"


_MISSING = object()


def _show(value: object) -> str:
    """repr(value), which raises for an int beyond the int/str digit limit."""
    try:
        return repr(value)
    except ValueError:
        return f"<a {type(value).__name__} too big to show>"


def _identical(a: Any, b: Any) -> bool:
    try:
        assert_identical(a, b)
    except AssertionError:
        return False
    return True


# --- a fixed sample, encoded here and in other processes ---------------------------------------


def sample() -> dict[str, Any]:
    """Values whose encoding could depend on the process (set order, string hashing)."""
    words = [f"word{n}" for n in range(40)]
    return {
        "strings": set(words),
        "frozen": frozenset(words[:20]),
        "nested": {frozenset({"a", "b", "c"}): {("x", 1), ("y", 2), ("z", 3)}},
        "tuple keys": {("k", n): n for n in range(5)},
        "enum keys": {Mode.READ: 1, Level.HIGH: {Perm.R | Perm.X}},
        "model": Outer(
            anything=(1, {"s", "t", "u"}),
            inner=Inner(when=datetime.datetime(2024, 3, 1, tzinfo=zoneinfo.ZoneInfo("UTC"))),
            amounts={"a": decimal.Decimal("NaN")},
            **{"note": frozenset(words[:5])},
        ),
        "dataclass": Nest(Point({"p", "q"}), Frozen(frozenset({1.5, 2.5, math.inf}))),
        "bytes": bytes(range(256)),
        "when": datetime.datetime(
            2024, 11, 3, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")
        ),
    }
