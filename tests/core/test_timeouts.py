"""Step timeouts in both modes: what is raised, what keeps running, and what is stopped."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from dotflow_providers import FixedRetry, MemoryStore, Status, StepTimeout, Workflow, action
from dotflow_providers.retry import Retry, stop_never

from .steps import hangs_in_thread, hangs_then_writes, overruns_once, quick_in_process


def test_thread_timeout_raises_step_timeout_and_is_retryable() -> None:
    release = threading.Event()
    slow_finished: list[int] = []
    #: for each attempt, how many of the slow attempts had finished when it started
    finished_at_start: list[int] = []

    @action(timeout=0.1, retry=FixedRetry(max_attempts=3, delay=0))
    def slow_then_fast() -> str:
        finished_at_start.append(len(slow_finished))
        if len(finished_at_start) < 3:
            release.wait(30)  # held until the test lets go, long past the 0.1 s timeout
            slow_finished.append(1)
            return "too late"
        return "finally"

    try:
        run = Workflow().add(slow_then_fast).start()
        # the run completed while both slow attempts were still blocked: it did not wait for them
        assert slow_finished == []
    finally:
        release.set()
    assert run.status is Status.COMPLETED
    assert run.output == "finally"
    assert run.steps[0].attempts == 3
    assert finished_at_start == [0, 0, 0]  # each retry started while the timed-out ones hung


def test_timeout_is_a_timeout_error_and_can_be_excluded_from_retries() -> None:
    @action(timeout=0.05, retry=FixedRetry(max_attempts=5, delay=0, retry_on=(ConnectionError,)))
    def stuck() -> None:
        time.sleep(1)

    run = Workflow().add(stuck).start()
    assert run.status is Status.FAILED
    assert isinstance(run.steps[0].exception, StepTimeout)
    assert isinstance(run.steps[0].exception, TimeoutError)
    assert run.steps[0].attempts == 1


def test_thread_mode_abandons_the_work_without_blocking_exit(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    script = textwrap.dedent(
        f"""
        import time
        from dotflow_providers import Workflow
        from tests.core.steps import hangs_in_thread
        run = Workflow().add(hangs_in_thread, initial_context={str(marker)!r}).start()
        print(run.status.value, run.steps[0].error_type)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).parents[2],
        check=True,
    )
    assert out.stdout.split() == ["FAILED", "StepTimeout"]
    # the abandoned thread writes the marker 2 s into the step: had the interpreter waited for
    # it before exiting, the marker would be there now
    assert not marker.exists()


def test_process_mode_really_stops_the_work(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    run = Workflow().add(hangs_then_writes, initial_context=str(marker)).start()
    assert run.status is Status.FAILED
    assert run.steps[0].error_type == "StepTimeout"
    time.sleep(2.5)
    assert not marker.exists()


def test_thread_mode_keeps_running_the_abandoned_work(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    run = Workflow().add(hangs_in_thread, initial_context=str(marker)).start()
    assert run.steps[0].error_type == "StepTimeout"
    deadline = time.time() + 5
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "the work went on"  # documented: threads cannot be killed


def test_process_mode_returns_outputs_and_runs_elsewhere() -> None:
    import os

    run = Workflow().add(quick_in_process, initial_context=7).start()
    assert run.status is Status.COMPLETED
    assert run.output["value"] == 7
    assert run.output["pid"] != os.getpid()


def test_process_mode_reports_errors_from_the_child() -> None:
    @action(timeout=5, timeout_mode="process")
    def local_step() -> None:  # not importable by the child process
        return None

    run = Workflow().add(local_step).start()
    assert run.status is Status.FAILED
    assert run.steps[0].error_type == "InvalidStep"
    assert "module level" in (run.steps[0].error or "")


def test_a_parallel_retry_times_only_its_own_run_not_its_wait_for_a_worker(
    tmp_path: Path,
) -> None:
    log = tmp_path / "attempts"
    run = (
        Workflow()
        .add(overruns_once, initial_context=str(log))
        .start(mode="parallel", max_workers=1)
    )
    step = run.steps[0]
    assert step.status is Status.COMPLETED, step.error
    assert (step.attempts, step.output) == (2, 2)
    assert step.history[0][2] == "StepTimeout"
    # the one worker finished the abandoned first attempt before it started the retry: the
    # retry waited for it far longer than its own timeout, and that wait did not count
    (_, first_end), (second_start, _) = sorted(
        tuple(map(float, line.split())) for line in log.read_text().splitlines()
    )
    assert second_start >= first_end


def test_a_deadline_stops_an_attempt_that_runs_past_it() -> None:
    """`deadline` bounds the step's attempts and waits together: an attempt still running when
    it ends is stopped there (StepTimeout naming the deadline), not only checked afterwards."""
    release = threading.Event()

    @action(retry=Retry(stop=stop_never(), deadline=0.5))
    def hangs() -> None:
        release.wait(30)  # far longer than the deadline

    try:
        run = Workflow(store=MemoryStore()).add(hangs).start()
    finally:
        release.set()
    record = run.steps[0]
    assert record.status is Status.FAILED
    assert record.error_type == "StepTimeout"
    assert "deadline of 0.5s" in (record.error or "")
    assert record.attempts == 1  # the deadline was used up: no retry after it
    # cut short: the 30 s wait ended long before it would have on its own
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.finished_at - record.started_at < 10


async def _sleeps_past(release: asyncio.Event) -> None:
    await release.wait()


def test_an_async_attempt_is_cancelled_at_the_deadline() -> None:
    async def main() -> Status:
        release = asyncio.Event()

        @action(retry=Retry(stop=stop_never(), deadline=0.3))
        async def hangs() -> None:
            await asyncio.wait_for(_sleeps_past(release), 30)

        run = await Workflow(store=MemoryStore()).add(hangs).start_async()
        record = run.steps[0]
        assert record.error_type == "StepTimeout"
        assert "deadline" in (record.error or "")
        return record.status

    assert asyncio.run(main()) is Status.FAILED
