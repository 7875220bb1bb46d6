"""The output codec: exact round trips, deterministic bytes, clear refusals, safe decoding."""

from __future__ import annotations

import collections
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
from typing import Any, NamedTuple

import pydantic
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
    Color,
    Frozen,
    Holder,
    Inner,
    Level,
    Mode,
    Nest,
    OddZone,
    Outer,
    Pair,
    Perm,
    Point,
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
