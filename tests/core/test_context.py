"""`Context`: what a step receives. Its value is `.value`; `.storage` is a deprecated alias."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from dotflow_providers import Context, MemoryStore, Workflow, action
from dotflow_providers._format import Layout, load_step


@action(version="1")
def extract(initial_context: Context) -> dict[str, Any]:
    return {"day": initial_context.value["day"], "rows": [1, 2, 3]}


@action(version="1")
def total(previous_context: Context) -> int:
    return int(sum(previous_context.value["rows"]))


def test_checkpoint_identity_is_what_it_was_before_context_value() -> None:
    """A Context is never encoded: a step's input digest, upstream token and output checksum are
    those written before `.value` existed (pinned here), so existing checkpoints restore."""
    store = MemoryStore()
    workflow = (
        Workflow("pinned/context", store=store)
        .add(extract, name="extract", initial_context={"day": "2026-11-01"})
        .add(total, name="total")
    )
    assert workflow.start().output == 6
    stored = {}
    for name in ("extract", "total"):
        key = Layout("pinned/context").step(name)
        document = load_step(key, store.get(key) or b"")
        stored[name] = (document.input, document.upstream, document.checksum)
    assert stored == {
        "extract": (
            "c3f32112944357348ff689531b77096cd63c36ccd403ebd165f9136df938d8cc",
            "none",
            "62317a54481ee10c64307717b0eed656",
        ),
        # it receives extract's output: its upstream token is that output's checksum
        "total": ("none", "62317a54481ee10c64307717b0eed656", "d4c0473feca7a8da3a323d15ba6ed8a1"),
    }


def test_value_is_what_the_step_receives() -> None:
    seen = []

    def step(initial_context: Context, previous_context: Context) -> None:
        seen.append((initial_context.value, previous_context.value))

    Workflow(store=MemoryStore()).add(step, initial_context={"a": 1}).start()
    assert seen == [({"a": 1}, None)]


def test_equality_and_repr_go_by_value() -> None:
    assert Context(1) == Context(value=1)
    assert Context(1) != Context(2)
    assert Context(1) != 1
    assert repr(Context([1])) == "Context(value=[1])"
    with pytest.raises(TypeError):
        hash(Context(1))


def test_a_context_is_pickled_by_value() -> None:
    assert pickle.loads(pickle.dumps(Context({"a": [1]}))) == Context({"a": [1]})


def test_a_context_pickled_before_value_existed_still_loads() -> None:
    # pickle.dumps(Context(3)) when its one slot was `storage`
    old = (
        b"\x80\x04\x95?\x00\x00\x00\x00\x00\x00\x00\x8c\x19dotflow_providers._action\x94"
        b"\x8c\x07Context\x94\x93\x94)\x81\x94N}\x94\x8c\x07storage\x94K\x03s\x86\x94b."
    )
    with pytest.warns(DeprecationWarning, match=r"Context\.value"):
        assert pickle.loads(old) == Context(3)


def test_storage_still_reads_and_sets_the_value_and_warns_naming_value() -> None:
    context = Context(5)
    with pytest.warns(DeprecationWarning, match=r"Context\.value") as caught:
        assert context.storage == 5
    assert caught[0].filename == __file__  # the line that reads it is named, not ours
    with pytest.warns(DeprecationWarning, match=r"Context\.value"):
        context.storage = 6
    assert context.value == 6


def test_the_storage_keyword_still_builds_a_context_and_warns() -> None:
    with pytest.warns(DeprecationWarning, match=r"Context\.value") as caught:
        context = Context(storage=[1])
    assert caught[0].filename == __file__
    assert context == Context([1])
    with pytest.raises(TypeError, match="not both"):
        Context(1, storage=2)


def test_a_step_reading_storage_still_runs_and_warns_at_its_line() -> None:
    def step(initial_context: Context) -> int:
        return int(initial_context.storage) + 1

    with pytest.warns(DeprecationWarning, match=r"use Context\.value") as caught:
        run = Workflow(store=MemoryStore()).add(step, initial_context=1).start()
    assert run.output == 2
    assert caught[0].filename == __file__
