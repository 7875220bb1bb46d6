"""Checkpoints: what is written, what comes back on resume, and every way it can go wrong."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
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
    CorruptCheckpoint,
    FileStore,
    InputChanged,
    InvalidWorkflowId,
    Status,
    UnsupportedCheckpointFormat,
    Workflow,
    WorkflowDefinitionChanged,
    action,
)
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
        return previous_context.storage

    def build() -> Workflow:
        return (
            Workflow("roundtrip", store=store)
            .add(produce, name="produce")
            .add(action(consume), name="consume")
        )

    first = build().start()
    assert first.status is Status.COMPLETED
    # make the second step pending again so the restored output must be handed on
    for key in store.list("roundtrip/steps/00001"):
        store.delete(key)
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
            return [*(previous_context.storage or []), label]

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
    for n in range(20):
        wf.add(action(lambda n=n: n), name=f"s{n}")
    wf.start()
    store.calls.clear()
    run = wf.start()
    assert all(s.restored for s in run.steps)
    assert store.count("list") == 1
    assert store.count("get", "/steps/") == 20
    assert store.count("get", "/manifest") == 1
    assert store.count("put", "/steps/") == 0


def test_checkpoint_document_layout(tmp_path: Path) -> None:
    Workflow("layout", store=FileStore(tmp_path)).add(lambda: {"rows": 3}, name="load").start()
    doc = json.loads((tmp_path / "layout" / "steps" / "00000-load.json").read_text())
    assert doc["format"] == 1
    assert doc["status"] == "COMPLETED"
    assert doc["attempts"] == 1
    assert doc["output"] == {"rows": 3}
    assert doc["finished_at"] >= doc["started_at"]
    manifest = json.loads((tmp_path / "layout" / "manifest.json").read_text())
    assert manifest["steps"] == ["load"]
    assert len(manifest["fingerprint"]) == 64


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
    assert "cannot be restored" in str(run.steps[0].exception)


@pytest.mark.parametrize(
    "content",
    [
        b'{"format": 1, "workflow_id": "c", "ind',
        b"",
        b"\x00\x01garbage",
        b"[1, 2]",
        b'{"format": 1, "name": "a"}',
    ],
    ids=["truncated", "empty", "binary", "not-an-object", "missing-fields"],
)
def test_corrupt_checkpoint_is_named_with_its_key(tmp_path: Path, content: bytes) -> None:
    def build() -> Workflow:
        return Workflow("c", store=FileStore(tmp_path)).add(lambda: 1, name="a")

    build().start()
    path = tmp_path / "c" / "steps" / "00000-a.json"
    path.write_bytes(content)
    with pytest.raises(CorruptCheckpoint, match=r"c/steps/00000-a\.json") as info:
        build().start()
    assert info.value.key == "c/steps/00000-a.json"
    assert path.read_bytes() == content  # nothing was overwritten


def test_corrupt_manifest_is_named(tmp_path: Path) -> None:
    Workflow("m", store=FileStore(tmp_path)).add(lambda: 1, name="a").start()
    (tmp_path / "m" / "manifest.json").write_text('{"format": 1, "steps": ')
    with pytest.raises(CorruptCheckpoint, match=r"m/manifest\.json"):
        Workflow("m", store=FileStore(tmp_path)).add(lambda: 1, name="a").start()


def test_checkpoint_from_a_future_format_is_refused(tmp_path: Path) -> None:
    Workflow("f", store=FileStore(tmp_path)).add(lambda: 1, name="a").start()
    path = tmp_path / "f" / "steps" / "00000-a.json"
    doc = json.loads(path.read_text())
    doc["format"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(UnsupportedCheckpointFormat, match="upgrade dotflow-providers"):
        Workflow("f", store=FileStore(tmp_path)).add(lambda: 1, name="a").start()


def test_changed_step_list_is_refused(tmp_path: Path) -> None:
    Workflow("d", store=FileStore(tmp_path)).add(lambda: 1, name="a").start()
    wf = Workflow("d", store=FileStore(tmp_path)).add(lambda: 1, name="a").add(lambda: 2, name="b")
    with pytest.raises(WorkflowDefinitionChanged, match=r"\['a'\] but now has \['a', 'b'\]"):
        wf.start()
    wf.reset()
    assert wf.start().status is Status.COMPLETED


def _inputs_workflow(tmp_path: Path, value: int, policy: Any, calls: list[int]) -> Workflow:
    def first(initial_context: Context) -> int:
        calls.append(initial_context.storage)
        return int(initial_context.storage)

    return Workflow("inp", store=FileStore(tmp_path), on_input_change=policy).add(
        first, name="first", initial_context=value
    )


def test_changed_inputs_raise_by_default(tmp_path: Path) -> None:
    calls: list[int] = []
    _inputs_workflow(tmp_path, 1, "raise", calls).start()
    with pytest.raises(InputChanged, match="on_input_change='reset'"):
        _inputs_workflow(tmp_path, 2, "raise", calls).start()
    assert _inputs_workflow(tmp_path, 1, "raise", calls).start().output == 1
    assert calls == [1]


def test_changed_inputs_reset_reruns_everything(tmp_path: Path) -> None:
    calls: list[int] = []
    _inputs_workflow(tmp_path, 1, "raise", calls).start()
    run = _inputs_workflow(tmp_path, 2, "reset", calls).start()
    assert run.output == 2
    assert calls == [1, 2]


def test_changed_inputs_reuse_keeps_the_checkpoints(tmp_path: Path) -> None:
    calls: list[int] = []
    _inputs_workflow(tmp_path, 1, "raise", calls).start()
    run = _inputs_workflow(tmp_path, 2, "reuse", calls).start()
    assert run.output == 1
    assert calls == [1]


def test_derived_workflow_id_is_stable_and_input_dependent() -> None:
    def build(value: int) -> Workflow:
        return Workflow().add(lambda: 1, name="a", initial_context={"day": value})

    assert build(1).workflow_id == build(1).workflow_id
    assert build(1).workflow_id != build(2).workflow_id


@pytest.mark.parametrize("bad", ["", "../escape", "a//b", "/abs", "a/./b", "x" * 401, "a\nb"])
def test_unusable_workflow_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidWorkflowId):
        Workflow(bad)


def test_bad_on_input_change_is_refused() -> None:
    with pytest.raises(ValueError, match="on_input_change"):
        Workflow(on_input_change="ignore")  # type: ignore[arg-type]


def test_an_existing_checkpoint_is_never_overwritten(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    Workflow("keep", store=store).add(lambda: "original", name="a").start()
    key = "keep/steps/00000-a.json"
    original = store.get(key)
    # Another runner left a checkpoint for a step this runner thinks is pending:
    store.delete("keep/manifest.json")
    run = Workflow("keep", store=store).add(lambda: "second", name="a").start()
    assert run.status is Status.FAILED
    assert isinstance(run.steps[0].exception, CheckpointError)
    assert store.get(key) == original
