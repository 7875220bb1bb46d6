"""TaskEngine: one step's lifecycle, retry loop and exactly-once commit."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
import weakref
from pathlib import Path

import pytest

from dotflow_providers import (
    ConfigurationError,
    ExponentialBackoff,
    FileStore,
    FixedRetry,
    InvalidTransition,
    Run,
    Status,
    Tracer,
    Workflow,
    WorkflowDefinitionChanged,
    action,
)
from dotflow_providers.engine import StepRecord, TaskEngine
from dotflow_providers.testing import RecordingStore


def test_lifecycle_of_a_successful_step() -> None:
    record = StepRecord(index=0, name="ok")
    seen: list[Status] = []

    class Watch(Tracer):
        def step_started(self, step: StepRecord) -> None:
            seen.append(step.status)

        def step_finished(self, step: StepRecord) -> None:
            seen.append(step.status)

    with TaskEngine(action(lambda: 42), record, tracer=Watch()) as engine:
        assert record.status is Status.IN_PROGRESS
        assert engine.execute_with_retry({}) == 42
    assert seen == [Status.IN_PROGRESS, Status.COMPLETED]
    assert record.status is Status.COMPLETED
    assert record.output == 42
    assert record.attempts == 1
    assert record.duration is not None
    assert record.duration >= 0


def test_failure_is_recorded_not_raised() -> None:
    record = StepRecord(index=0, name="boom")

    def boom() -> None:
        raise KeyError("previous_context")  # dotflow 1.0.1 used to swallow exactly this one

    with TaskEngine(action(retry=2)(boom), record) as engine:
        engine.execute_with_retry({})
    assert record.status is Status.FAILED
    assert record.attempts == 2
    assert record.error == "KeyError: 'previous_context'"
    assert isinstance(record.exception, KeyError)


def test_transitions_outside_the_table_are_refused() -> None:
    record = StepRecord(index=0, name="x")
    with pytest.raises(InvalidTransition, match="NOT_STARTED to COMPLETED"):
        record.set_status(Status.COMPLETED)
    record.set_status(Status.IN_PROGRESS)
    record.set_status(Status.COMPLETED)
    with pytest.raises(InvalidTransition):
        record.set_status(Status.IN_PROGRESS)


def test_retry_statuses_and_policy_delays_are_applied() -> None:
    statuses: list[Status] = []
    decisions: list[float | None] = []
    attempts: list[float] = []

    class Watch(Tracer):
        def attempt_failed(
            self, step: StepRecord, error: BaseException, delay: float | None
        ) -> None:
            statuses.append(step.status)
            decisions.append(delay)

    @action(retry=FixedRetry(max_attempts=3, delay=0.05))
    def flaky() -> str:
        attempts.append(time.perf_counter())
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "done"

    record = StepRecord(index=0, name="flaky")
    with TaskEngine(flaky, record, tracer=Watch()) as engine:
        engine.execute_with_retry({})
    assert record.status is Status.COMPLETED
    assert record.attempts == 3
    assert decisions == [0.05, 0.05]
    assert statuses == [Status.IN_PROGRESS, Status.IN_PROGRESS]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.05 for gap in gaps)


def test_error_outside_retry_on_ends_the_loop_at_once() -> None:
    calls: list[int] = []

    @action(retry=ExponentialBackoff(max_attempts=5, initial=0.01, retry_on=(ConnectionError,)))
    def wrong_input() -> None:
        calls.append(1)
        raise ValueError("bad row")

    run = Workflow().add(wrong_input).start()
    assert run.status is Status.FAILED
    assert calls == [1]
    assert run.steps[0].attempts == 1


def test_write_counts_one_per_successful_step_plus_manifest() -> None:
    store = RecordingStore()
    wf = Workflow("counts", store=store)
    for n in range(5):
        wf.add(action(lambda n=n: n), name=f"s{n}")
    run = wf.start()
    assert run.status is Status.COMPLETED
    assert store.count("put", "/steps/") == 5
    assert store.count("put", "manifest") == 1
    assert store.count("put") - store.count("put", "/lock") == 6


def test_failing_twice_then_succeeding_writes_once() -> None:
    store = RecordingStore()
    tries: list[int] = []

    @action(retry=FixedRetry(max_attempts=3, delay=0))
    def third_time_lucky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise OSError("flaky disk")
        return "ok"

    run = Workflow("lucky", store=store).add(third_time_lucky).start()
    assert run.steps[0].attempts == 3
    assert store.count("put", "/steps/") == 1


def test_failed_step_writes_nothing() -> None:
    store = RecordingStore()
    run = Workflow("f", store=store).add(action(retry=3)(lambda: 1 / 0)).start()
    assert run.status is Status.FAILED
    assert store.count("put", "/steps/") == 0


def test_cancel_cuts_a_retry_wait_short() -> None:
    started = threading.Event()

    @action(retry=FixedRetry(max_attempts=5, delay=30))
    def always_down() -> None:
        started.set()
        raise ConnectionError("down")

    run = Workflow().add(always_down).add(lambda: "never").start(mode="background")
    assert started.wait(5)
    t0 = time.perf_counter()
    run.cancel()
    run.wait(5)
    assert time.perf_counter() - t0 < 2
    assert run.status is Status.CANCELLED
    assert [s.status for s in run.steps] == [Status.CANCELLED, Status.CANCELLED]
    assert run.steps[0].attempts == 1


class _FailingAtStart(Tracer):
    def workflow_started(self, run: Run) -> None:
        raise RuntimeError("tracer down")


@action
def _one() -> int:
    return 1


@action
async def _aone() -> int:
    return 1


@pytest.mark.parametrize("mode", ["sequential", "async_sequential"])
def test_a_run_that_fails_to_open_leaves_nothing_held(tmp_path: Path, mode: str) -> None:
    # a tracer failing as the run opens: the lease is released and the collector unfrozen (a
    # run freezes what it holds for its duration), so the next start runs at once
    store = FileStore(tmp_path)
    asynchronous = mode.startswith("async")
    step = _aone if asynchronous else _one

    def start(workflow: Workflow) -> Run:
        return asyncio.run(workflow.start_async(mode)) if asynchronous else workflow.start(mode)

    with pytest.raises(RuntimeError, match="tracer down"):
        start(Workflow("opens", store=store, tracer=_FailingAtStart()).add(step))
    assert gc.get_freeze_count() == 0
    assert start(Workflow("opens", store=store).add(step)).status is Status.COMPLETED


@action
def _item(item: int) -> int:
    return item


def _unavailable_items() -> list[int]:
    raise RuntimeError("items unavailable")


@pytest.mark.parametrize("collecting", [True, False])
@pytest.mark.parametrize("mode", ["sequential", "background", "async_sequential"])
def test_starting_leaves_the_cyclic_collector_as_it_found_it(
    tmp_path: Path, mode: str, collecting: bool
) -> None:
    # preparing a run turns the collector off for a while: it must be back on after a run and
    # after a start that fails while preparing, and stay off for a program that turned it off
    store = FileStore(tmp_path)
    step = _aone if mode.startswith("async") else _one

    def start(workflow: Workflow, rerun_from: str | None = None) -> Run:
        if mode.startswith("async"):
            return asyncio.run(workflow.start_async(mode, rerun_from=rerun_from))
        return workflow.start(mode, rerun_from=rerun_from).wait()

    was = gc.isenabled()
    (gc.enable if collecting else gc.disable)()
    try:
        assert start(Workflow("gc", store=store).add(step)).status is Status.COMPLETED
        assert (gc.isenabled(), gc.get_freeze_count()) == (collecting, 0)
        with pytest.raises(ConfigurationError, match="names no step"):
            start(Workflow("gc", store=store).add(step), rerun_from="missing")
        assert (gc.isenabled(), gc.get_freeze_count()) == (collecting, 0)
        with pytest.raises(RuntimeError, match="items unavailable"):  # while building the run
            start(Workflow("gc", store=store).map(_item, _unavailable_items))
        assert (gc.isenabled(), gc.get_freeze_count()) == (collecting, 0)
        with pytest.raises(WorkflowDefinitionChanged):  # with the lease taken
            start(Workflow("gc", store=store, on_change="raise").add(step, name="other"))
        assert (gc.isenabled(), gc.get_freeze_count()) == (collecting, 0)
    finally:
        (gc.enable if was else gc.disable)()


def _start_and_wait(workflow: Workflow, mode: str) -> Run:
    if mode.startswith("async"):
        return asyncio.run(workflow.start_async(mode))
    run = workflow.start(mode)
    if mode == "background":
        run.wait()
        for thread in threading.enumerate():  # it still holds the run until it returns
            if thread.name == "dotflow-background":
                thread.join()
    return run


@pytest.mark.parametrize("commit_every", [1, 10])
@pytest.mark.parametrize(
    "mode",
    [
        "sequential",
        "sequential_group",
        "background",
        "parallel",
        "async_sequential",
        "async_parallel",
    ],
)
def test_a_finished_run_is_freed_without_the_cyclic_collector(
    tmp_path: Path, mode: str, commit_every: int
) -> None:
    # nothing a run builds refers back to itself (the lease's heartbeat watcher refers to the
    # run, the run to the lease; a group commit referred to its journal): a run is freed, with
    # its records, when the caller lets go of it, not by a full collection later, which at
    # 100,000 steps took 100 ms of the next run
    store = FileStore(tmp_path)
    step = _aone if mode.startswith("async") else _one
    workflow = Workflow("freed", store=store, commit_every=commit_every)
    workflow.add(step).add(step, name="two")
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        run = _start_and_wait(workflow, mode)
        assert run.status is Status.COMPLETED
        gone = weakref.ref(run)
        del run
        assert gone() is None
        kept = [o for o in gc.get_objects() if type(o) is StepRecord and o.workflow_id == "freed"]
        assert kept == []  # (records have no weak references: found among tracked objects)
    finally:
        if was:
            gc.enable()


def test_overlapping_starts_share_one_pause_of_the_collector() -> None:
    # the collector's switch is process-wide: the first start to pause it and the last to
    # resume it decide, whatever the order in which overlapping starts (threads) come and go
    from dotflow_providers._strategies import kept_for_the_run

    was = gc.isenabled()
    try:
        for collecting in (True, False):
            (gc.enable if collecting else gc.disable)()
            first, second = kept_for_the_run(), kept_for_the_run()
            first.__enter__()
            second.__enter__()  # (it finds the collector off: paused by the first)
            first.__exit__(None, None, None)
            assert not gc.isenabled()  # the second is still building
            second.__exit__(None, None, None)
            assert gc.isenabled() is collecting
            gc.unfreeze()
    finally:
        (gc.enable if was else gc.disable)()


def test_a_start_async_cancelled_while_preparing_gives_its_run_up(tmp_path: Path) -> None:
    # preparing runs in a thread, which a cancel cannot stop: when it ends, the run it prepared
    # gives its lease back (the next start is not refused) and unfreezes what it froze
    store = FileStore(tmp_path)
    entered, go_on = threading.Event(), threading.Event()

    def slow_items() -> list[int]:
        entered.set()
        go_on.wait(30)
        return [1, 2]

    async def main() -> None:
        task = asyncio.create_task(
            Workflow("given-up", store=store).map(_item, slow_items).start_async()
        )
        await asyncio.to_thread(entered.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        go_on.set()

    asyncio.run(main())  # which waits for its worker threads: preparing has ended
    assert gc.get_freeze_count() == 0
    again = Workflow("given-up", store=store).map(_item, [1, 2]).start()
    assert (again.status, again.output) == (Status.COMPLETED, [1, 2])
