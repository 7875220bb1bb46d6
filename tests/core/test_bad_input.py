"""Bad-input harness: every kind of bad input gets its named error, and nothing already
committed is lost or rewritten."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dotflow_providers import (
    CheckpointError,
    ConfigurationError,
    Context,
    CorruptCheckpoint,
    DotflowError,
    FileStore,
    InputChanged,
    UnknownStoreURL,
    UnsupportedCheckpointFormat,
    Workflow,
    WorkflowDefinitionChanged,
    store_from_url,
)
from dotflow_providers._format import Layout


def first(initial_context: Context) -> dict[str, Any]:
    return {"first": initial_context.value}


def second() -> list[int]:
    return [1, 2, 3]


def third() -> str:
    return "third"


def build(
    root: Path,
    last: Callable[[], Any] = third,
    value: int = 1,
    swap: bool = False,
    on_change: Any = "rerun",
) -> Workflow:
    wf = Workflow("bad", store=FileStore(root), on_change=on_change)
    steps: list[tuple[Any, str]] = [(first, "first"), (second, "second")]
    for step, name in reversed(steps) if swap else steps:
        wf.add(step, name=name, initial_context=value)
    wf.add(last, name="third")
    return wf


def committed(root: Path) -> Workflow:
    def fails() -> None:
        raise RuntimeError("not yet")

    build(root, fails).start()
    return build(root)


def corrupt(path: Path, content: bytes) -> Callable[[Path], None]:
    def inject(root: Path) -> None:
        (root / path).write_bytes(content)

    return inject


SECOND = Path(Layout("bad").step("second"))


def future_format(root: Path) -> None:
    path = root / SECOND
    path.write_bytes(path.read_bytes().replace(b'"format":2', b'"format":7'))


CASES: dict[str, tuple[Callable[[Path], None], type[DotflowError]]] = {
    "garbage step": (
        corrupt(SECOND, b"\x00\xff\xfe"),
        CorruptCheckpoint,
    ),
    "truncated step": (
        corrupt(SECOND, b'{"format": 2, "work'),
        CorruptCheckpoint,
    ),
    "future format": (future_format, UnsupportedCheckpointFormat),
    "truncated manifest": (
        corrupt(Path(Layout("bad").manifest), b'{"steps": ["first"'),
        CorruptCheckpoint,
    ),
    "garbage lease": (corrupt(Path(Layout("bad").lock), b"not json"), CorruptCheckpoint),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_stored_data_is_named_and_nothing_committed_is_lost(tmp_path: Path, case: str) -> None:
    inject, error = CASES[case]
    workflow = committed(tmp_path)
    inject(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(error):
        workflow.start()
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {p: after.get(p) for p in before} == before  # nothing rewritten or deleted


def test_changed_inputs_and_steps_are_named_and_keep_the_checkpoints(tmp_path: Path) -> None:
    committed(tmp_path)
    steps = tmp_path / Layout("bad").steps
    keep = {p: p.read_bytes() for p in steps.iterdir()}
    with pytest.raises(InputChanged, match="'first'"):
        build(tmp_path, value=2, on_change="raise").start()
    with pytest.raises(WorkflowDefinitionChanged, match="moved"):
        build(tmp_path, swap=True, on_change="raise").start()
    assert {p: p.read_bytes() for p in steps.iterdir()} == keep


def test_unserialisable_output_fails_that_step_only(tmp_path: Path) -> None:
    committed(tmp_path)

    def an_event() -> threading.Event:
        return threading.Event()

    run = build(tmp_path, last=an_event).start()
    assert isinstance(run.steps[2].exception, CheckpointError)
    assert "third" in str(run.steps[2].exception)
    assert [s.restored for s in run.steps] == [True, True, False]
    assert build(tmp_path).start().output == "third"  # the run can still finish later


def test_huge_outputs_round_trip(tmp_path: Path) -> None:
    huge = {"rows": list(range(1_000_000)), "blob": b"\x00\x01" * 2_000_000}

    def big() -> Any:
        return huge

    Workflow("huge", store=FileStore(tmp_path)).add(big, name="big").start()
    run = Workflow("huge", store=FileStore(tmp_path)).add(big, name="big").start()
    assert run.steps[0].restored
    assert run.output == huge


@pytest.mark.parametrize("url", ["ftp://x/y", "s3:/bucket", "gs://", "file://", "", "memory"])
def test_unknown_or_incomplete_store_urls(url: str) -> None:
    with pytest.raises(UnknownStoreURL):
        store_from_url(url)


@pytest.mark.parametrize("value", [float("nan"), 0, -1])
def test_timeouts_must_be_positive_numbers(value: float) -> None:
    from dotflow_providers import InvalidStep, action

    with pytest.raises(InvalidStep, match="timeout"):
        action(timeout=value)(lambda: None)


def test_async_steps_under_start_in_a_running_loop_are_refused_up_front() -> None:
    import asyncio

    async def fetch() -> int:
        return 1

    async def inside_a_loop() -> None:
        Workflow().add(fetch, name="fetch").start()

    with pytest.raises(ConfigurationError, match="start_async"):
        asyncio.run(inside_a_loop())


def returns_a_lock() -> Any:
    return threading.Lock()


def test_an_unpicklable_process_mode_output_fails_for_good_without_retries() -> None:
    from dotflow_providers import action

    step = action(retry=3, timeout=30, timeout_mode="process")(returns_a_lock)
    run = Workflow().add(step, name="lock").start()
    record = run.steps[0]
    assert record.status.value == "FAILED"
    assert record.attempts == 1  # no retry can make it picklable
    assert record.retryable is False
    assert "cannot be pickled" in (record.error or "")
