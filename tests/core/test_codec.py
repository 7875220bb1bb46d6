"""The output codec: exact round trips, deterministic bytes, clear refusals, safe decoding."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import decimal
import enum
import importlib.util
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import uuid
import zoneinfo
from collections.abc import Iterator
from typing import Any, NamedTuple

import pydantic
import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dotflow_providers._codec import (
    UndecodableValue,
    UnencodableValue,
    decode,
    digest,
    encode,
)

from .codec_values import (
    TAG_LIKE,
    Bits,
    Box,
    Catalog,
    Color,
    Frozen,
    Holder,
    Inner,
    ItemHolder,
    Labeled,
    Level,
    Listing,
    Mode,
    Nest,
    OddZone,
    Outer,
    Pair,
    Perm,
    Point,
    RateHolder,
    Record,
    Scratch,
    Typed,
    WithPrivate,
    assert_identical,
    hashables,
    sample,
    values,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The nested strategies' reprs are long; hypothesis builds them only for its statistics.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def round_trip(value: Any) -> Any:
    data = encode(value)
    assert isinstance(data, bytes)
    json.loads(data)  # it is JSON, readable by anything
    return decode(data)


# --- exact round trips --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(values(4))
def test_every_supported_value_comes_back_identical(value: Any) -> None:
    assert_identical(value, round_trip(value))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        2**64 - 1,
        2**64,
        -(2**63) - 1,
        10**5000,  # more digits than int(str) allows by default
        math.nan,
        -math.inf,
        -0.0,
        "",
        "\ud800",
        {"\udc00": 1},
        bytes(range(256)),
        bytearray(range(256)),
        decimal.Decimal("sNaN"),
        decimal.Decimal("-0E-7"),
        {"$tuple": [1, 2]},
        {"$": None},
        {"$a": 1, "b": 2},
        {"k": {"$dict": [[1, 2]]}},
        {(1, 2): "tuple key", Level.HIGH: "enum key", None: 0, 1.5: 1, frozenset({1}): 2},
        {datetime.datetime(2020, 1, 1): "datetime key", True: "bool key"},
        [(1, 2), [3, (4,)]],
        [(1, "a", 2.5, None, True), ()],
        [(1, math.nan)],
        [(2**64,)],
        [("\ud800",)],
        [(1,), [2]],
        Pair(1, (2, 3)),
        Typed({1, 2}),
        Color.GREEN,
        Level.LOW,
        Mode.WRITE,
        Perm.R | Perm.X,
        Perm(0),
        Bits.A | Bits.B,
        uuid.UUID(int=5, is_safe=uuid.SafeUUID.safe),
        datetime.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-3), "X")),
        datetime.time(23, 59, 59, 999999, tzinfo=datetime.UTC, fold=1),
        datetime.timedelta(days=-999999999),
        datetime.UTC,
        zoneinfo.ZoneInfo("Asia/Kolkata"),
        pathlib.PurePosixPath("//a/./b"),
        pathlib.PureWindowsPath("C:/x/y.txt"),
        pathlib.PureWindowsPath("//server/share/f"),
        pathlib.Path("relative/p"),
        Point(x=(1,), y={"a": {1, 2}}),
        Frozen(a=frozenset({1}), b=((),)),
        Nest(Point(1), Frozen(2)),
        Outer.model_validate(
            {"anything": (1, 2), "amounts": {"a": decimal.Decimal("NaN")}, "$tuple": (3,)}
        ),
        Outer(inner=Inner(when=datetime.datetime(2020, 2, 2, tzinfo=zoneinfo.ZoneInfo("UTC")))),
        Outer.model_construct(anything=[(1,)]),
        Holder[int](item=1),  # parametrized at module level: pydantic keeps it in globals()
    ],
    ids=lambda v: type(v).__name__,
)
def test_edge_cases_come_back_identical(value: Any) -> None:
    assert_identical(value, round_trip(value))


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(scalars, max_size=4).map(tuple), max_size=5))
def test_rows_of_tuples_come_back_identical(rows: list[tuple[Any, ...]]) -> None:
    assert_identical(rows, round_trip(rows))


def test_a_model_keeps_which_fields_were_set_and_its_private_attributes() -> None:
    model = WithPrivate(name="n")
    model._seen = (1, {2})
    back = round_trip(model)
    assert_identical(model, back)
    assert back._seen == (1, {2})
    assert round_trip(Outer(anything=1)).model_fields_set == {"anything"}


def test_a_dataclass_keeps_attributes_set_outside_its_fields() -> None:
    nest = Nest(Point(1), Frozen(2))
    nest.cache = ("computed",)
    vars(nest)["memo"] = {1: (2,)}
    back = round_trip(nest)
    assert_identical(nest, back)
    assert back.memo == {1: (2,)}


def test_decode_accepts_a_memoryview() -> None:
    value = {"a": (1, b"x")}
    assert_identical(value, decode(memoryview(encode(value))))


def test_plain_json_data_is_written_as_plain_json() -> None:
    rows = [{"id": i, "name": f"n{i}", "price": i * 1.5, "ok": None} for i in range(3)]
    assert json.loads(encode(rows)) == rows
    assert encode({"$a": 1, "b": 2}) == b'{"$a":1,"b":2}'


# --- determinism ----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.sets(hashables(2), max_size=8), st.data())
def test_equal_sets_built_in_any_order_encode_to_equal_bytes(
    forward: set[Any], data: st.DataObject
) -> None:
    # The same element objects inserted in another order (equal but distinct elements like
    # 0 and False would make two different sets).
    backward = set(data.draw(st.permutations(list(forward))))
    assert encode(forward) == encode(backward)
    assert encode(frozenset(forward)) == encode(frozenset(backward))
    assert digest(forward) == digest(backward)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(hashables(1) | st.text(max_size=3), values(1), min_size=2, max_size=6))
def test_digest_ignores_dict_order_and_encode_keeps_it(mapping: dict[Any, Any]) -> None:
    reordered = dict(reversed(mapping.items()))
    assert digest(mapping) == digest(reordered)
    assert digest({"outer": [mapping]}) == digest({"outer": [reordered]})
    keys = list(decode(encode(mapping)))  # type: ignore[call-overload]
    assert_identical(list(decode(encode(reordered))), keys[::-1])  # type: ignore[call-overload]


def test_different_values_have_different_digests() -> None:
    distinct = [1, 1.0, True, "1", (1,), [1], {1}, frozenset({1}), {"a": 1}, {"a": 1.0}, Level.LOW]
    assert len({digest(v) for v in distinct}) == len(distinct)


_OTHER_PROCESS = """
import sys
from dotflow_providers._codec import digest, encode
from tests.core.codec_values import sample

value = sample()
print(encode(value).hex())
print(digest(value))
"""


@pytest.mark.parametrize("seed", ["1", "12345"])
def test_a_value_encoded_in_another_process_decodes_here_with_the_same_digest(seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    data_hex, their_digest = result.stdout.split()
    data = bytes.fromhex(data_hex)
    assert_identical(sample(), decode(data))
    assert data == encode(sample())  # the same bytes, whatever the hash seed
    assert their_digest == digest(sample())


# --- refusals -------------------------------------------------------------------------------


class _Sub(dict):  # type: ignore[type-arg]
    pass


def _parametrized_in_a_function() -> object:
    return Holder[bytes](item=b"")  # pydantic names it Holder[bytes] but keeps it nowhere


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (object(), "object"),
        (lambda: 1, "function"),
        (print, "builtin_function_or_method"),
        (collections.OrderedDict(a=1), "collections.OrderedDict (a subclass of dict)"),
        (collections.defaultdict(list), "collections.defaultdict (a subclass of dict)"),
        (_Sub(), "test_codec._Sub (a subclass of dict)"),
        (collections.UserList(), "collections.UserList"),
        (memoryview(b"x"), "memoryview"),
        (1j, "complex"),
        (range(3), "range"),
        (type, "type"),
        (_parametrized_in_a_function(), "Holder[bytes]"),
        (datetime.datetime(2020, 1, 1, tzinfo=OddZone()), "OddZone"),
        (zoneinfo.ZoneInfo.no_cache("UTC"), None),
    ],
    ids=repr,
)
def test_what_cannot_come_back_exactly_is_refused_naming_its_type(
    value: object, named: str | None
) -> None:
    if named is None:  # a ZoneInfo made without the cache still has a key, so it is fine
        assert_identical(value, round_trip(value))
        return
    with pytest.raises(UnencodableValue, match=r"^value: .*" + _re(named)):
        encode(value)
    with pytest.raises(UnencodableValue):
        digest(value)


def _re(text: str) -> str:
    return re.escape(text)


def test_a_refusal_says_where_the_value_is() -> None:
    output = {"rows": [0, 0, 0, {"when": {lambda: 1}}]}
    with pytest.raises(UnencodableValue) as caught:
        encode(output, name="output")
    assert str(caught.value).startswith("output['rows'][3]['when']<element>: ")
    assert "function" in str(caught.value)

    model = Outer(anything=[1, Point(x=(1, object()))])
    with pytest.raises(UnencodableValue, match=r"^value\.anything\[1\]\.x\[1\]: .*object"):
        encode(model)
    with pytest.raises(UnencodableValue, match=r"^value\['a'\]\[Key\(\)\]<key>: .*_Key"):
        encode({"a": {_Key(): 1}})


class _Key:
    def __repr__(self) -> str:
        return "Key()"


def test_classes_defined_inside_a_function_are_refused_with_the_fix() -> None:
    class LocalModel(pydantic.BaseModel):
        a: int = 1

    @dataclasses.dataclass
    class LocalData:
        a: int = 1

    class LocalEnum(enum.Enum):
        A = 1

    class LocalTuple(NamedTuple):
        a: int

    for value in (LocalModel(), LocalData(), LocalEnum.A, LocalTuple(1), [{"x": LocalData()}]):
        with pytest.raises(UnencodableValue, match=r"defined inside a function.*module level"):
            encode(value)


def test_recursive_structures_are_refused_without_a_recursion_error() -> None:
    looped: list[Any] = [1]
    looped.append({"again": looped})
    with pytest.raises(
        UnencodableValue, match=r"^value: a list that contains itself \(at value\[1\]\['again'\]\)"
    ):
        encode(looped)
    with pytest.raises(UnencodableValue, match="contains itself"):
        digest(looped)

    box = Box()
    box.content = (box,)
    with pytest.raises(
        UnencodableValue, match=r"Box that contains itself \(at value\.content\[0\]\)"
    ):
        encode(box)


def test_values_nested_too_deeply_are_refused() -> None:
    deep: Any = (1,)
    for _ in range(200):
        deep = (deep,)
    with pytest.raises(UnencodableValue, match="nested more than"):
        encode(deep)


@dataclasses.dataclass
class _Bag(dict):  # type: ignore[type-arg]
    label: str = ""


@dataclasses.dataclass
class _Rows(list):  # type: ignore[type-arg]
    label: str = ""


@dataclasses.dataclass(frozen=True)
class _Amount(decimal.Decimal):
    currency: str = ""


@dataclasses.dataclass
class _Failure(Exception):
    code: int = 0


@dataclasses.dataclass
class _Window(collections.deque):  # type: ignore[type-arg]
    size: int = 0


def _filled(container: Any, *items: object, **pairs: object) -> Any:
    if pairs:
        container.update(pairs)
    if items:
        container.extend(items)
    return container


@pytest.mark.parametrize(
    ("value", "base"),
    [
        (_filled(_Bag(label="prices"), apple=1.5), "dict"),
        (_filled(_Rows(label="ids"), 1, 2), "list"),
        (_Amount(), "decimal.Decimal"),
        (_Failure(3), "Exception"),
        (_filled(_Window(), 1), "collections.deque"),
    ],
    ids=["dict", "list", "Decimal", "Exception", "deque"],
)
def test_a_dataclass_that_is_also_a_builtin_value_is_refused(value: object, base: str) -> None:
    # Its builtin content (the items, the number, the exception's args) is not a field.
    named = f"{type(value).__name__} (a dataclass and a subclass of {base}) would come back"
    with pytest.raises(UnencodableValue, match=_re(named)):
        encode(value)
    with pytest.raises(UnencodableValue, match=r"^output\[0\]: .*not one of its fields"):
        encode([value], name="output")


def test_state_outside_the_fields_that_would_be_lost_is_refused() -> None:
    record = Record(1)
    assert_identical(record, round_trip(record))  # the base's slot unset: nothing is lost
    record.cache = "computed"
    with pytest.raises(UnencodableValue, match=r"Record has its slot 'cache' set"):
        encode(record)

    labeled = Labeled(1, 2)
    assert_identical(labeled, round_trip(labeled))
    labeled.note = "x"  # type: ignore[attr-defined]
    with pytest.raises(UnencodableValue, match=r"Labeled has attributes \['note'\] besides"):
        encode(labeled)

    scratch = Scratch()
    assert_identical(scratch, round_trip(scratch))
    object.__setattr__(scratch, "scratch", 1)
    with pytest.raises(UnencodableValue, match=r"Scratch has its slot 'scratch' set"):
        encode(scratch)


@dataclasses.dataclass
class _Report:
    rows: int
    total: float = dataclasses.field(init=False)


def test_a_field_never_set_is_refused_when_encoding() -> None:
    with pytest.raises(UnencodableValue, match=r"^value: .*_Report\.total was never set"):
        encode(_Report(rows=3))  # init=False, and nothing set it yet
    listing = Listing("n")
    del listing.rank
    with pytest.raises(UnencodableValue, match=r"Listing\.rank was never set"):
        encode(listing)
    point = Point(1)
    del point.y  # it reads the class's default, which comes back the same
    assert_identical(point, round_trip(point))

    with pytest.raises(UnencodableValue, match=r"^value\.inner: .*Inner\.when was never set"):
        encode(Outer(inner=Inner.model_construct(tags=frozenset({"a"}))))
    model = Inner(when=datetime.datetime(2020, 1, 1))
    del model.when
    with pytest.raises(UnencodableValue, match=r"Inner\.when was never set"):
        encode(model)


@pytest.mark.parametrize(
    "path",
    [
        pathlib.PureWindowsPath("//fileserver/"),  # Python 3.11 reads it back as \\fileserver
        pathlib.PureWindowsPath("./C:/data/x.csv"),  # and this one with a drive C:
        pathlib.PureWindowsPath("//server/share/f"),
        pathlib.PurePosixPath("//a/b"),
    ],
    ids=str,
)
def test_a_path_that_its_text_does_not_give_back_is_refused(path: pathlib.PurePath) -> None:
    back = type(path)(str(path))
    if back == path and back.parts == path.parts:
        assert_identical(path, round_trip(path))
    else:
        with pytest.raises(UnencodableValue, match=r"cannot be restored exactly.*reads back as"):
            encode(path)


# --- what the codec accepts that needs care ---------------------------------------------------


def _field_lacking(type_name: str, fields: dict[str, Any]) -> bytes:
    return json.dumps({"$dataclass": {"type": type_name, "fields": fields}}).encode()


def test_a_field_the_data_lacks_takes_the_fields_default() -> None:
    # As when the class gained the field since the value was written; slotted classes too.
    frozen = decode(_field_lacking("tests.core.codec_values:Frozen", {"a": 1}))
    assert_identical(frozen, Frozen(1))
    listing = decode(_field_lacking("tests.core.codec_values:Listing", {"name": "n"}))
    assert_identical(listing, Listing("n"))
    assert repr(listing) == "Listing(name='n', tags=[], rank=0)"
    nest = decode(
        b'{"$dataclass": {"type": "tests.core.codec_values:Nest", "fields": {'
        b'"point": {"$dataclass": {"type": "tests.core.codec_values:Point", "fields": {"x": 1}}},'
        b'"frozen": {"$dataclass": {"type": "tests.core.codec_values:Frozen", "fields": {"a": 2}}}'
        b"}}}"
    )
    assert nest == Nest(Point(1), Frozen(2))
    with pytest.raises(UndecodableValue, match=r"\['name'\] that the data lacks"):
        decode(_field_lacking("tests.core.codec_values:Listing", {"tags": []}))


@contextlib.contextmanager
def _int_str_limit(digits: int) -> Iterator[None]:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(digits)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(before)


@pytest.mark.parametrize(
    "number", [7**6000, -(10**4300), 10**4300 - 1, 10**1000, 2**64], ids=lambda n: f"{n:x}"[:6]
)
def test_a_big_int_is_written_the_same_whatever_the_writers_int_str_limit(number: int) -> None:
    written = encode(number)
    for limit in (0, 640, 100_000):
        with _int_str_limit(limit):
            assert encode(number) == written
            assert digest(number) == digest(number)
    assert decode(written) == number
    with _int_str_limit(640):
        assert decode(written) == number


def test_a_big_int_written_in_decimal_beyond_the_limit_still_decodes() -> None:
    # What an older version wrote in a process that had raised the limit.
    with _int_str_limit(0):
        digits = str(7**6000)
    assert decode(b'{"$int": "-' + digits.encode() + b'"}') == -(7**6000)
    with pytest.raises(UndecodableValue):
        decode(b'{"$int": "0' + digits.encode() + b'"}')


class _Event(pydantic.BaseModel):
    at: datetime.datetime


def test_a_datetime_with_pydantics_tzinfo_comes_back_with_it() -> None:
    event = _Event.model_validate_json('{"at": "2026-11-22T10:00:00+01:00"}')
    assert type(event.at.tzinfo) is pydantic_core.TzInfo  # what pydantic gives it
    for value in (event, event.at, event.at.timetz(), event.at.tzinfo):
        back = round_trip(value)
        assert_identical(value, back)
        assert back == value
    back_event = round_trip(event)
    assert type(back_event.at.tzinfo) is pydantic_core.TzInfo
    assert back_event.at.utcoffset() == datetime.timedelta(hours=1)
    utc = round_trip(_Event.model_validate({"at": "2026-11-22T10:00:00Z"}).at)
    assert (type(utc.tzinfo), utc.utcoffset()) == (pydantic_core.TzInfo, datetime.timedelta(0))
    with pytest.raises(UndecodableValue):
        decode(b'{"$pydantic_tzinfo": 86400}')


def test_a_generic_model_whose_parameter_name_has_a_dot_comes_back() -> None:
    for value in (ItemHolder(item=Catalog.Item(sku="a")), RateHolder(item=0.5)):
        assert "." in type(value).__qualname__
        assert_identical(value, round_trip(value))
    for name in ("Holder[Catalog.Nope]", "Holder[Catalog.Item].x", "Catalog.Item.sku"):
        with pytest.raises(UndecodableValue, match="not a class in the loaded module"):
            decode(_tagged("$model", f"tests.core.codec_values:{name}"))


# --- safe decoding ----------------------------------------------------------------------------


def _tagged(tag: str, type_name: str) -> bytes:
    payloads = {
        "$dataclass": {"type": type_name, "fields": {}},
        "$model": {"type": type_name, "dict": {}},
        "$enum": [type_name, "A"],
        "$namedtuple": [type_name, []],
    }
    return json.dumps({tag: payloads[tag]}).encode()


@pytest.mark.parametrize("tag", ["$dataclass", "$model", "$enum", "$namedtuple"])
def test_decoding_never_imports_the_module_a_type_name_points_to(
    tag: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"codec_unimported_{tag[1:]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import dataclasses, enum
            IMPORTED = True

            @dataclasses.dataclass
            class Thing:
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.util.find_spec(name) is not None  # importable, so only the codec stops it
    assert name not in sys.modules
    with pytest.raises(UndecodableValue, match=f"module '{name}'.*not imported"):
        decode(_tagged(tag, f"{name}:Thing"))
    assert name not in sys.modules


def test_decoding_does_not_run_a_module_getattr(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "codec_side_effect.py").write_text("class Thing:\n    pass\n")
    (tmp_path / "codec_lazy_attrs.py").write_text(
        textwrap.dedent(
            """
            def __getattr__(name):
                import codec_side_effect
                return codec_side_effect.Thing
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.spec_from_file_location(
        "codec_lazy_attrs", tmp_path / "codec_lazy_attrs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "codec_lazy_attrs", module)
    assert module.Thing.__name__ == "Thing"  # the module __getattr__ would have found it
    del sys.modules["codec_side_effect"]  # so that the assertion below can see a new import
    with pytest.raises(UndecodableValue, match="not a class in the loaded module"):
        decode(_tagged("$dataclass", "codec_lazy_attrs:Thing"))
    assert "codec_side_effect" not in sys.modules


def test_decoding_does_not_load_a_lazily_imported_module(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "codec_lazy_module.py"
    path.write_text("import sys\nsys.codec_lazy_module_ran = True\nclass Thing:\n    pass\n")
    spec = importlib.util.spec_from_file_location("codec_lazy_module", path)
    assert spec is not None
    assert spec.loader is not None
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "codec_lazy_module", module)
    spec.loader.exec_module(module)  # registers it; the code runs on first attribute access
    with pytest.raises(UndecodableValue):
        decode(_tagged("$dataclass", "codec_lazy_module:Thing"))
    assert not hasattr(sys, "codec_lazy_module_ran")


@pytest.mark.parametrize(
    ("tag", "type_name"),
    [
        ("$dataclass", "subprocess:Popen"),  # a loaded class, not a dataclass
        ("$model", "os:system"),  # a function
        ("$enum", "builtins:int"),
        ("$namedtuple", "builtins:tuple"),
        ("$model", "tests.core.codec_values:Point"),  # a dataclass named as a model
        ("$dataclass", "tests.core.codec_values:Outer"),  # a model named as a dataclass
        ("$enum", "tests.core.codec_values"),
        ("$enum", "tests.core.codec_values:Nowhere"),
        ("$enum", "tests.core.codec_values:Color.RED.__class__"),
    ],
)
def test_decoding_restores_only_classes_of_the_kind_stored(tag: str, type_name: str) -> None:
    with pytest.raises(UndecodableValue, match=_re(type_name.partition(":")[0])):
        decode(_tagged(tag, type_name))


# --- corrupt data ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(values(3).filter(lambda v: encode(v)[:1] in (b"{", b"[")), st.data())
def test_truncated_data_is_undecodable(value: Any, data: st.DataObject) -> None:
    encoded = encode(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(UndecodableValue):
        decode(encoded[:cut])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff",
        b'{"$nope": 1}',
        b'{"$tuple": 5}',
        b'{"$tuple": {"a": 1}}',
        b'{"$set": [[1]]}',
        b'{"$tuples": "ab"}',
        b'{"$tuples": [1]}',
        b'{"$tuples": [[{"a": 1}]]}',
        b'{"$dict": [[[1], 2]]}',
        b'{"$dict": [[1]]}',
        b'{"$bytes": "!!"}',
        b'{"$bytes": "abc"}',
        b'{"$int": "12x"}',
        b'{"$int": 12}',
        b'{"$float": "1.5"}',
        b'{"$str": "7aCA7aCA7a"}',
        b'{"$decimal": "one"}',
        b'{"$uuid": "zz"}',
        b'{"$uuid": ["00000000-0000-0000-0000-000000000000", 7]}',
        b'{"$datetime": ["yesterday", null, 0]}',
        b'{"$datetime": ["2020-01-01T00:00:00", null, 2]}',
        b'{"$datetime": ["2020-01-01T00:00:00", 5, 0]}',
        b'{"$datetime": ["2020-01-01T00:00:00", {"$tuple": []}, 0]}',
        b'{"$time": ["25:00", null, 0]}',
        b'{"$date": "2020-13-01"}',
        b'{"$timedelta": [1, 2]}',
        b'{"$timezone": [[2, 0, 0], null]}',
        b'{"$zoneinfo": "../../etc/passwd"}',
        b'{"$zoneinfo": "No/Such_Zone"}',
        b'{"$path": ["Nope", "x"]}',
        b'{"$enum": ["tests.core.codec_values:Color", "BLUE"]}',
        b'{"$enum": ["tests.core.codec_values:Perm", null, 99]}',
        b'{"$namedtuple": ["tests.core.codec_values:Pair", [1]]}',
        b'{"$dataclass": {"type": "tests.core.codec_values:Point", "fields": {"y": 1}}}',
        b'{"$dataclass": {"type": "tests.core.codec_values:Point", "fields": [1]}}',
        b'{"$model": {"type": "tests.core.codec_values:Outer", "dict": {"anything": 1}}}',
        b'{"$model": {"type": "tests.core.codec_values:Inner"}}',
    ],
    ids=repr,
)
def test_corrupt_data_is_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableValue):
        decode(data)


def test_tag_like_keys_in_the_sample_strategy_are_real_tags() -> None:
    # The property test's tag-like keys only prove something if the decoder knows them.
    known = [t for t in TAG_LIKE if t in ("$tuple", "$dict", "$bytes", "$model")]
    for tag in known:
        with pytest.raises(UndecodableValue):
            decode(json.dumps({tag: "not a valid payload of any tag"}).encode())
