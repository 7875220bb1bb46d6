"""The four execution modes, keep_going, context passing and class-based steps."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dotflow_providers import (
    Context,
    InvalidStep,
    MemoryStore,
    Status,
    UnknownMode,
    Workflow,
    WorkflowFailed,
    action,
)
from dotflow_providers.testing import RecordingStore

from .steps import fails_in_worker, whoami


def test_sequential_passes_each_output_on() -> None:
    @action
    def extract(initial_context: Context) -> list[int]:
        return list(range(initial_context.value))

    @action
    def transform(previous_context: Context) -> list[int]:
        return [x * 10 for x in previous_context.value]

    @action
    def load(previous_context: Context, initial_context: Context) -> dict[str, Any]:
        return {"rows": previous_context.value, "table": initial_context.value}

    wf = Workflow()
    wf.add(extract, initial_context=3).add(transform).add(load, initial_context="events")
    run = wf.start()
    assert run.status is Status.COMPLETED
    assert run.output == {"rows": [0, 10, 20], "table": "events"}
    assert [s.name for s in run.steps] == [
        "test_sequential_passes_each_output_on.<locals>.extract",
        "test_sequential_passes_each_output_on.<locals>.transform",
        "test_sequential_passes_each_output_on.<locals>.load",
    ]


def test_first_step_sees_an_empty_previous_context_and_start_supplies_initial() -> None:
    seen: list[Any] = []

    def first(previous_context: Context, initial_context: Context) -> None:
        seen.extend([previous_context.value, initial_context.value])

    Workflow().add(first).start(initial_context={"date": "2026-11-22"})
    assert seen == [None, {"date": "2026-11-22"}]


def test_a_failure_stops_the_run_and_leaves_later_steps_not_started() -> None:
    ran: list[str] = []
    wf = Workflow()
    wf.add(lambda: ran.append("a"), name="a")
    wf.add(action(lambda: 1 / 0), name="b")
    wf.add(lambda: ran.append("c"), name="c")
    run = wf.start()
    assert run.status is Status.FAILED
    assert [s.status for s in run.steps] == [Status.COMPLETED, Status.FAILED, Status.NOT_STARTED]
    assert ran == ["a"]
    with pytest.raises(WorkflowFailed, match="step 'b' after 1 attempt") as info:
        run.raise_for_status()
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_keep_going_runs_the_rest_and_still_reports_failure() -> None:
    ran: list[Any] = []

    def after(previous_context: Context) -> None:
        ran.append(previous_context.value)

    wf = Workflow().add(lambda: 1, name="a").add(action(lambda: 1 / 0), name="b")
    wf.add(after, name="c")
    run = wf.start(keep_going=True)
    assert [s.status for s in run.steps] == [Status.COMPLETED, Status.FAILED, Status.COMPLETED]
    assert ran == [None]  # a failed step hands on an empty context
    assert run.status is Status.FAILED


@pytest.mark.parametrize("mode", ["sequential", "async_sequential"])
def test_keep_going_hands_on_nothing_of_a_step_whose_commit_failed(mode: str) -> None:
    """A step that returned a value its checkpoint cannot hold failed at its commit: the step
    after it gets an empty context, as after any failure, not the output that was refused."""
    ran: list[Any] = []

    def after(previous_context: Context) -> None:
        ran.append(previous_context.value)

    def unstorable() -> threading.Lock:
        return threading.Lock()

    wf = Workflow(store=MemoryStore()).add(unstorable)
    wf.add(after, name="after")
    if mode.startswith("async"):
        run = asyncio.run(wf.start_async(mode, keep_going=True))
    else:
        run = wf.start(mode, keep_going=True)
    assert run.steps[0].error_type == "CheckpointError"
    assert ran == [None]


def test_sequential_group_runs_groups_concurrently_and_chains_within_each() -> None:
    windows: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()
    # Each chain's first step waits until the other chain's first step is running too, so the
    # run can only complete if the groups really run at the same time, however slow the machine.
    both_first_steps_running = threading.Barrier(2, timeout=10)

    def make(label: str) -> Any:
        def step(previous_context: Context) -> list[str]:
            start = time.monotonic()
            if label.endswith("1"):
                both_first_steps_running.wait()
            with lock:
                windows[label] = (start, time.monotonic())
            return [*(previous_context.value or []), label]

        return step

    wf = Workflow()
    for group in ("left", "right"):
        for n in (1, 2):
            wf.add(make(f"{group}{n}"), name=f"{group}{n}", group=group)
    run = wf.start(mode="sequential_group")
    assert run.status is Status.COMPLETED, [s.error for s in run.steps]
    outputs = {s.name: s.output for s in run.steps}
    assert outputs["left2"] == ["left1", "left2"]
    assert outputs["right2"] == ["right1", "right2"]
    # the chains overlapped: both first steps had started before either ended
    firsts = [windows["left1"], windows["right1"]]
    assert max(start for start, _ in firsts) < min(end for _, end in firsts)
    assert windows["left2"][0] >= windows["left1"][1]  # but each chain kept its order
    assert windows["right2"][0] >= windows["right1"][1]


def test_background_returns_at_once_and_wait_blocks() -> None:
    release = threading.Event()
    wf = Workflow().add(lambda: release.wait(5) and "released", name="blocked")
    run = wf.start(mode="background")
    assert not run.done
    assert run.status is Status.IN_PROGRESS
    release.set()
    assert run.wait(5).status is Status.COMPLETED
    assert run.output == "released"


def test_parallel_runs_steps_in_bounded_worker_processes() -> None:
    wf = Workflow()
    for n in range(4):
        wf.add(whoami, name=f"who{n}", initial_context=n)
    run = wf.start(mode="parallel", max_workers=2)
    assert run.status is Status.COMPLETED
    pids = {s.output[0] for s in run.steps}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2
    assert [s.output[1] for s in run.steps] == [0, 1, 2, 3]


@action
def square_once_the_batch_runs(initial_context: Context) -> dict[str, Any]:
    """Square `n` after every step of the batch has started; fail if they never all run at once.

    Module level so that parallel mode's worker processes can import it. The monotonic clock is
    system-wide, so the windows it returns compare across processes.
    """
    started = time.monotonic()
    folder, n = Path(initial_context.value["dir"]), initial_context.value["n"]
    (folder / f"started-{n}").touch()
    deadline = started + 30  # only so a broken mode fails instead of hanging
    while len(list(folder.glob("started-*"))) < initial_context.value["batch"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"step {n} never saw the whole batch running")
        time.sleep(0.01)
    return {"square": n * n, "pid": os.getpid(), "window": [started, time.monotonic()]}


def test_parallel_overlaps_work_and_commits_in_the_parent(tmp_path: Path) -> None:
    store = RecordingStore()
    wf = Workflow("par", store=store)
    for n in range(4):
        wf.add(
            square_once_the_batch_runs,
            name=f"sq{n}",
            initial_context={"dir": str(tmp_path), "n": n, "batch": 4},
        )
    run = wf.start(mode="parallel", max_workers=4)
    assert run.status is Status.COMPLETED, [s.error for s in run.steps]
    assert [s.output["square"] for s in run.steps] == [0, 1, 4, 9]
    pids = {s.output["pid"] for s in run.steps}
    assert len(pids) == 4  # four workers at once ...
    assert os.getpid() not in pids  # ... none of them the parent
    windows = [s.output["window"] for s in run.steps]
    assert max(start for start, _ in windows) < min(end for _, end in windows)  # all overlapped
    assert store.count("put", "/steps/") == 4  # the parent's store saw every commit


def test_parallel_failure_is_retried_in_the_worker_and_reported() -> None:
    run = Workflow().add(fails_in_worker).start(mode="parallel", keep_going=True)
    assert run.status is Status.FAILED
    assert run.steps[0].attempts == 2
    assert run.steps[0].error == "RuntimeError: worker step failed"


def test_parallel_refuses_steps_a_worker_cannot_import() -> None:
    with pytest.raises(InvalidStep, match="module level"):
        Workflow().add(lambda: 1).start(mode="parallel")


def test_unknown_mode_is_a_named_error() -> None:
    with pytest.raises(UnknownMode, match="choose one of background, parallel, sequential"):
        Workflow().add(lambda: 1).start(mode="paralel")


def test_empty_workflow_is_a_named_error() -> None:
    with pytest.raises(InvalidStep, match="no steps"):
        Workflow().start()


def test_steps_with_unknown_required_parameters_are_refused() -> None:
    def needs_url(url: str) -> None: ...

    with pytest.raises(InvalidStep, match="requires parameter 'url'"):
        Workflow().add(needs_url)


class Pipeline:
    def __init__(self) -> None:
        self.log: list[str] = []

    @action
    def zeta(self, initial_context: Context) -> int:
        self.log.append("zeta")
        return int(initial_context.value)

    def helper(self) -> None:  # not a step
        self.log.append("helper")

    @action(retry=2)
    def alpha(self, previous_context: Context) -> int:
        self.log.append("alpha")
        return int(previous_context.value) + 1


class MorePipeline(Pipeline):
    @action
    def omega(self, previous_context: Context) -> str:
        return f"omega:{previous_context.value}"


def test_class_steps_run_in_definition_order_not_alphabetical() -> None:
    pipeline = Pipeline()
    run = Workflow().add(pipeline, initial_context=41).start()
    assert [s.name for s in run.steps] == ["Pipeline.zeta", "Pipeline.alpha"]
    assert pipeline.log == ["zeta", "alpha"]
    assert run.output == 42


def test_class_steps_include_base_class_methods_first() -> None:
    run = Workflow().add(MorePipeline, initial_context=1).start()
    assert [s.name for s in run.steps] == [
        "MorePipeline.zeta",
        "MorePipeline.alpha",
        "MorePipeline.omega",
    ]
    assert run.output == "omega:2"


def test_an_object_without_steps_is_refused() -> None:
    with pytest.raises(InvalidStep, match="no @action methods"):
        Workflow().add(object())


def test_async_steps_run_under_the_sync_engine() -> None:
    @action
    async def fetch(initial_context: Context) -> str:
        return f"fetched {initial_context.value}"

    assert Workflow().add(fetch, initial_context="x").start().output == "fetched x"
