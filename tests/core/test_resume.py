"""Resume: completed steps come back exactly as they went in, and are not run again."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest

from dotflow_providers import (
    CheckpointError,
    Context,
    FileStore,
    Status,
    Workflow,
    action,
)
from dotflow_providers._format import Layout
from dotflow_providers.testing import RecordingStore


class Order(pydantic.BaseModel):
    id: int
    placed: datetime.datetime
    tags: set[str]


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Color(enum.Enum):
    RED = "red"


OUTPUTS: list[Any] = [
    None,
    {"plain": [1, 2.5, "x", True, None]},
    Order(id=1, placed=datetime.datetime(2026, 11, 22, 6, 0, tzinfo=datetime.UTC), tags={"a"}),
    Point(1.5, -2.0),
    datetime.datetime(2026, 11, 22, 6, 30, 15, 123456),
    datetime.date(2026, 11, 22),
    (1, "two", datetime.timedelta(seconds=90)),
    {3, 1, 2},
    frozenset({"x"}),
    [Point(0, 0), (1, 2), {"nested": {datetime.date(2026, 1, 1)}}],
    {1: "int keys", 2: Decimal("1.25")},
    b"\x00\xffbinary",
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Color.RED,
    Path("/tmp/out.parquet"),
]


def run_twice(store: Any, output: Any) -> tuple[Any, Any]:
    """Run a one-step workflow, then resume it with a fresh Workflow on the same store."""
    calls: list[int] = []

    def produce() -> Any:
        calls.append(1)
        return output

    def consume(previous_context: Context) -> Any:
        return previous_context.value

    def build() -> Workflow:
        return (
            Workflow("roundtrip", store=store)
            .add(produce, name="produce")
            .add(action(consume), name="consume")
        )

    first = build().start()
    assert first.status is Status.COMPLETED
    # make the second step pending again so the restored output must be handed on
    store.delete(Layout("roundtrip").step("consume"))
    second = build().start()
    assert calls == [1], "a completed step ran twice"
    return second.steps[0].output, second.output


@pytest.mark.parametrize("output", OUTPUTS, ids=lambda o: type(o).__name__)
def test_outputs_round_trip_through_a_file_store(tmp_path: Path, output: Any) -> None:
    restored, handed_on = run_twice(FileStore(tmp_path), output)
    assert restored == output
    assert type(restored) is type(output)
    assert handed_on == output
    if isinstance(output, list):
        assert [type(v) for v in restored] == [type(v) for v in output]


def test_resume_in_a_new_workflow_object_skips_completed_steps(tmp_path: Path) -> None:
    ran: list[str] = []
    fail = {"c": True}

    def step(label: str) -> Any:
        def body(previous_context: Context) -> list[str]:
            ran.append(label)
            if fail.get(label):
                raise RuntimeError(f"{label} failed")
            return [*(previous_context.value or []), label]

        return body

    def build() -> Workflow:
        wf = Workflow("resume", store=FileStore(tmp_path))
        for label in "abcd":
            wf.add(step(label), name=label)
        return wf

    assert build().start().status is Status.FAILED
    fail.clear()
    run = build().start()
    assert run.status is Status.COMPLETED
    assert ran == ["a", "b", "c", "c", "d"]
    assert run.output == ["a", "b", "c", "d"]
    assert [s.restored for s in run.steps] == [True, True, False, False]


def test_resume_reads_one_list_and_one_get_per_step() -> None:
    store = RecordingStore()
    wf = Workflow("reads", store=store)

    def number(initial_context: Context) -> Any:
        return initial_context.value

    for n in range(20):
        wf.add(number, name=f"s{n}", initial_context=n)
    wf.start()
    store.calls.clear()
    run = wf.start()
    assert all(s.restored for s in run.steps)
    assert store.count("list") == 1
    assert store.count("get", "/steps/") == 20
    assert store.count("get", "/manifest") == 1
    assert store.count("put", "/steps/") == 0


def test_unserialisable_output_fails_the_step_with_a_checkpoint_error() -> None:
    @action
    def returns_a_lock() -> Any:
        return threading.Lock()

    store = RecordingStore()
    run = Workflow("bad", store=store).add(returns_a_lock, name="lock_step").start()
    assert run.status is Status.FAILED
    error = run.steps[0].exception
    assert isinstance(error, CheckpointError)
    assert "lock_step" in str(error)
    assert "lock" in str(error).lower()
    assert store.count("put", "/steps/") == 0


def test_an_object_that_cannot_be_restored_is_refused_up_front() -> None:
    class Opaque:
        pass

    def make_opaque() -> Opaque:
        return Opaque()

    run = Workflow().add(make_opaque, name="opaque").start()
    assert isinstance(run.steps[0].exception, CheckpointError)
    assert "cannot encode" in str(run.steps[0].exception)
    assert "Opaque" in str(run.steps[0].exception)
