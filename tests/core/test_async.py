"""The async engine: steps awaited in the caller's loop, timeouts, cancellation, commits."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest

from dotflow_providers import (
    Context,
    FileStore,
    FixedRetry,
    Stage,
    Status,
    Tracer,
    UnknownMode,
    Workflow,
    action,
)
from dotflow_providers._format import Layout
from dotflow_providers.testing import RecordingStore


class ThreadRecordingStore(FileStore):
    """A real FileStore that notes which thread each write came from."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.put_threads: list[int] = []

    def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        self.put_threads.append(threading.get_ident())
        return super().put(key, data, **kwargs)


def test_async_steps_share_the_callers_loop_and_its_objects() -> None:
    async def main() -> tuple[Any, list[Any], Any]:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(2)  # made before start_async, used by every step
        seen: list[Any] = []
        inside = 0
        peak = 0

        @action
        async def fetch(initial_context: Context) -> int:
            nonlocal inside, peak
            seen.append(asyncio.get_running_loop())
            async with gate:
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.02)
                inside -= 1
            return int(initial_context.value) * 2

        wf = Workflow()
        for n in range(6):
            wf.add(fetch, name=f"fetch{n}", initial_context=n)
        run = await wf.start_async(mode="async_parallel")
        return loop, seen, (run, peak)

    loop, seen, (run, peak) = asyncio.run(main())
    assert run.status is Status.COMPLETED
    assert [s.output for s in run.steps] == [0, 2, 4, 6, 8, 10]
    assert all(step_loop is loop for step_loop in seen)
    assert peak == 2


def test_async_sequential_passes_outputs_and_sync_steps_run_off_the_loop() -> None:
    ticks: list[float] = []

    def blocking_step(previous_context: Context) -> dict[str, Any]:
        time.sleep(0.3)  # would freeze the loop if it ran on it
        return {"thread": threading.get_ident(), "got": previous_context.value}

    @action
    async def first() -> str:
        return "hello"

    async def ticker() -> None:
        for _ in range(20):
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.02)

    async def main() -> Any:
        tick_task = asyncio.create_task(ticker())
        run = await Workflow().add(first).add(blocking_step).start_async()
        await tick_task
        return run

    run = asyncio.run(main())
    assert run.output["got"] == "hello"
    assert run.output["thread"] != threading.get_ident()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.2  # the loop kept ticking while the sync step slept


def test_parallel_bound_limits_concurrent_steps() -> None:
    inside = 0
    peak = 0

    @action
    async def work() -> None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.01)
        inside -= 1

    wf = Workflow()
    for n in range(20):
        wf.add(work, name=f"w{n}")
    run = asyncio.run(wf.start_async(mode="async_parallel", max_concurrency=3))
    assert run.status is Status.COMPLETED
    assert peak == 3


def test_groups_are_chains_under_async_parallel() -> None:
    def step(label: str) -> Any:
        async def body(previous_context: Context) -> list[str]:
            await asyncio.sleep(0.01)
            return [*(previous_context.value or []), label]

        return body

    wf = Workflow()
    for group in ("a", "b"):
        for n in (1, 2, 3):
            wf.add(step(f"{group}{n}"), name=f"{group}{n}", group=group)
    run = asyncio.run(wf.start_async(mode="async_parallel"))
    assert run.steps[2].output == ["a1", "a2", "a3"]
    assert run.steps[5].output == ["b1", "b2", "b3"]


def test_timed_out_async_step_is_cancelled_and_retried() -> None:
    cleanups: list[int] = []
    attempts: list[int] = []
    cancelled: list[int] = []
    slept_through: list[int] = []

    @action(timeout=0.05, retry=FixedRetry(max_attempts=3, delay=0))
    async def slow_then_fast() -> str:
        attempts.append(1)
        try:
            if len(attempts) < 3:
                await asyncio.sleep(5)
                slept_through.append(len(attempts))
            return "made it"
        except asyncio.CancelledError:
            cancelled.append(len(attempts))
            raise
        finally:
            cleanups.append(len(attempts))

    run = asyncio.run(Workflow().add(slow_then_fast).start_async())
    assert run.output == "made it"
    assert run.steps[0].attempts == 3
    assert cancelled == [1, 2]  # the timeout cancelled the slow attempts ...
    assert slept_through == []  # ... so neither was waited out
    assert cleanups == [1, 2, 3]  # and each ended before the next one started


def test_a_step_timing_out_for_good_is_step_timeout() -> None:
    @action(timeout=0.05)
    async def stuck() -> None:
        await asyncio.sleep(5)

    run = asyncio.run(Workflow().add(stuck).start_async())
    assert run.status is Status.FAILED
    assert run.steps[0].error_type == "StepTimeout"


def test_cancelling_the_outer_task_cancels_the_step_without_a_checkpoint() -> None:
    store = RecordingStore()
    cleanups: list[str] = []

    @action(retry=FixedRetry(max_attempts=5, delay=0))
    async def long_running() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleanups.append("finally ran")

    def quick() -> str:
        return "done"

    wf = Workflow("cancel-me", store=store).add(quick, name="quick")
    wf.add(long_running, name="long").add(lambda: "never", name="after")

    async def main() -> None:
        task = asyncio.create_task(wf.start_async())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cleanups == ["finally ran"]
    assert store.count("put", Layout("cancel-me").step("quick")) == 1
    assert store.count("put", Layout("cancel-me").step("long")) == 0
    assert store.get(Layout("cancel-me").lock) is None  # the lease was released
    # the next start resumes after the committed step
    run = asyncio.run(
        Workflow("cancel-me", store=store)
        .add(quick, name="quick")
        .add(action(lambda: "long done"), name="long")
        .add(lambda: "after done", name="after")
        .start_async()
    )
    assert [s.restored for s in run.steps] == [True, False, False]


def test_run_cancel_cancels_running_async_steps() -> None:
    @action(retry=5)
    async def forever() -> None:
        await asyncio.sleep(10)

    async def main() -> Any:
        wf = Workflow()
        for n in range(3):
            wf.add(forever, name=f"f{n}")
        holder: list[Any] = []

        class Keep(Tracer):  # start_async returns the run at the end; the tracer sees it first
            def workflow_started(self, run: Any) -> None:
                holder.append(run)

        wf.tracer = Keep()
        task = asyncio.create_task(wf.start_async(mode="async_parallel"))
        await asyncio.sleep(0.1)
        holder[0].cancel()
        return await task

    run = asyncio.run(main())
    assert run.status is Status.CANCELLED
    assert [s.status for s in run.steps] == [Status.CANCELLED] * 3
    assert [s.attempts for s in run.steps] == [1, 1, 1]  # cancellation is never retried


def test_async_commits_once_per_success_and_off_the_loop(tmp_path: Path) -> None:
    store = ThreadRecordingStore(tmp_path)
    tries: list[int] = []

    @action(retry=FixedRetry(max_attempts=3, delay=0))
    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("again")
        return "ok"

    async def main() -> int:
        await Workflow("async-io", store=store).add(flaky, name="flaky").start_async()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    step_puts = list(store.list(Layout("async-io").steps))
    assert len(step_puts) == 1
    assert store.put_threads  # manifest, lease, checkpoint ...
    assert loop_thread not in store.put_threads  # ... all written from worker threads


def test_async_resume_skips_completed_steps(tmp_path: Path) -> None:
    ran: list[str] = []
    fail = {"c": True}

    def make(label: str) -> Any:
        async def body(previous_context: Context) -> list[str]:
            ran.append(label)
            if fail.get(label):
                raise RuntimeError("boom")
            return [*(previous_context.value or []), label]

        return body

    def build() -> Workflow:
        wf = Workflow("aresume", store=FileStore(tmp_path))
        for label in "abcd":
            wf.add(make(label), name=label)
        return wf

    assert asyncio.run(build().start_async()).status is Status.FAILED
    fail.clear()
    run = asyncio.run(build().start_async())
    assert run.output == ["a", "b", "c", "d"]
    assert ran == ["a", "b", "c", "c", "d"]


def test_unknown_async_mode() -> None:
    with pytest.raises(UnknownMode, match="async_parallel, async_sequential"):
        asyncio.run(Workflow().add(lambda: 1).start_async(mode="parallel"))


def test_async_steps_keep_progress_without_blocking_the_loop(tmp_path: Path) -> None:
    from dotflow_providers import Progress

    attempts: list[int] = []

    @action(retry=FixedRetry(max_attempts=2, delay=0))
    async def pages(checkpoint: Progress) -> list[int]:
        attempts.append(1)
        done: list[int] = await checkpoint.aload(default=[])
        for page in range(len(done), 6):
            done.append(page)
            await checkpoint.asave(done)
            if page == 2 and len(attempts) == 1:
                raise ConnectionError("dropped")
        return done

    store = ThreadRecordingStore(tmp_path)
    run = asyncio.run(Workflow("apages", store=store).add(pages).start_async())
    assert run.output == [0, 1, 2, 3, 4, 5]
    assert run.steps[0].attempts == 2
    assert list(store.list("apages/progress/")) == []


def test_cancelling_a_fan_out_raises_only_once_every_step_has_finished_its_cleanup() -> None:
    """As `asyncio.gather` did: the caller's cancellation reaches every chain, and it is raised
    only when they have all ended (a second cancel while they clean up changes nothing), so
    nothing runs after `start_async` has released its lease."""
    store = RecordingStore()
    events: list[str] = []
    started = 0

    def slow_to_clean(n: int) -> Any:
        async def step() -> None:
            nonlocal started
            started += 1
            try:
                await asyncio.sleep(10)
            finally:  # an async cleanup that finishes even when cancelled again
                for _ in range(5):
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.sleep(0.01)
                events.append(f"cleaned s{n}")

        return action(step)

    wf = Workflow("fan-cancel", store=store)
    for n in range(4):
        wf.add(slow_to_clean(n), name=f"s{n}")
    wf.add(lambda: "waits for a slot", name="queued")

    async def main() -> None:
        task = asyncio.create_task(wf.start_async(mode="async_parallel", max_concurrency=4))
        while started < 4:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)  # the chains are cleaning up now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        events.append("start_async raised")

    asyncio.run(main())
    assert sorted(events[:4]) == [f"cleaned s{n}" for n in range(4)]
    assert events[4:] == ["start_async raised"]
    assert store.get(Layout("fan-cancel").lock) is None  # released after the cleanups
    assert store.count("put", "/steps/") == 0  # nothing was committed


class FailsToRecordFailures(RecordingStore):
    """A store that cannot keep failure records (a flaky connection) but commits steps."""

    def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        if "/failures/" in key:
            raise ConnectionError(f"could not write {key}")
        return super().put(key, data, **kwargs)


def test_an_error_escaping_parallel_chains_is_the_first_chains_and_raised_after_all_ended() -> None:
    """Not a step's failure (recorded) but the store failing while recording one: it ends that
    chain, the others run to their end, and `start_async` raises the error of the first chain
    (in the order of the steps, not of the failures), with no task's error left unretrieved."""
    unretrieved: list[dict[str, Any]] = []

    @action
    async def fails_late() -> None:
        await asyncio.sleep(0.05)
        raise ValueError("late")

    @action
    async def fails_at_once() -> None:
        raise ValueError("at once")

    @action
    async def succeeds() -> str:
        await asyncio.sleep(0.02)
        return "ok"

    store = FailsToRecordFailures()
    wf = Workflow("escapes", store=store)
    wf.add(fails_late, name="late").add(fails_at_once, name="early").add(succeeds, name="ok")

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: unretrieved.append(ctx))
        with pytest.raises(ConnectionError, match="failures/late"):
            await wf.start_async(mode="async_parallel", keep_going=True)
        gc.collect()  # an unretrieved task error is reported when its task is freed
        await asyncio.sleep(0)

    asyncio.run(main())
    assert unretrieved == []
    assert store.get(Layout("escapes").step("ok")) is not None  # the third chain ran to its end
    assert store.get(Layout("escapes").lock) is None


def _new_tasks_after(known: set[Any]) -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - known


def test_a_chain_cancelled_before_it_began_still_ends_the_run() -> None:
    """Code that cancels tasks it finds (a shutdown handler, a test fixture) may cancel a
    chain's task before its coroutine ever ran: the run still ends (that step not run), as
    with `asyncio.gather`, rather than waiting forever for the chain to report its end."""

    @action
    async def nap() -> str:
        await asyncio.sleep(0.05)
        return "ok"

    wf = Workflow("unbegun")
    for n in range(3):
        wf.add(nap, name=f"s{n}")

    async def main() -> Any:
        caller = asyncio.current_task()
        task = asyncio.create_task(wf.start_async(mode="async_parallel"))
        known = {caller, task}
        while not _new_tasks_after(known):  # the chains' tasks, before any has run
            await asyncio.sleep(0)
        chains = _new_tasks_after(known)
        assert len(chains) == 3
        min(chains, key=id).cancel()
        done, _ = await asyncio.wait({task}, timeout=60)  # (a hang fails here, no timing)
        assert done, "start_async did not end"
        return task.result()

    run = asyncio.run(main())
    assert sorted(s.status.value for s in run.steps) == ["COMPLETED", "COMPLETED", "NOT_STARTED"]


def test_cancelling_everything_before_the_chains_began_raises_cancelled() -> None:
    @action
    async def nap() -> None:
        await asyncio.sleep(0.05)

    wf = Workflow("all-cancelled").add(nap, name="a").add(nap, name="b")

    async def main() -> None:
        caller = asyncio.current_task()
        task = asyncio.create_task(wf.start_async(mode="async_parallel"))
        while not _new_tasks_after({caller, task}):
            await asyncio.sleep(0)
        for other in asyncio.all_tasks() - {caller}:
            other.cancel()
        done, _ = await asyncio.wait({task}, timeout=60)  # (a hang fails here, no timing)
        assert done, "start_async did not end"
        assert task.cancelled()

    asyncio.run(main())


def test_the_callers_cancellation_reaches_running_steps_at_once_with_its_message() -> None:
    """As with `gather`: cancelling the awaiting task cancels the chains inside `cancel()`, so a
    step woken in the same loop iteration is cancelled rather than committed, the step after it
    never starts, and the steps see the caller's message."""
    events: list[str] = []
    release = asyncio.Event()
    seen: list[tuple[Any, ...]] = []
    store = RecordingStore()

    @action
    async def waits() -> str:
        events.append("A waits")
        try:
            await release.wait()
        except asyncio.CancelledError as cancelled:
            seen.append(cancelled.args)
            raise
        events.append("A done")
        return "a"

    @action
    async def after(previous_context: Any) -> None:
        events.append("B started")

    wf = Workflow("at-once", store=store).add(waits, name="A").add(after, name="B")

    async def main() -> None:
        task = asyncio.create_task(wf.start_async(mode="async_sequential"))
        while not events:  # A awaits the event
            await asyncio.sleep(0.001)
        task.cancel("shutting down")
        release.set()  # A would wake in the next iteration, were it not cancelled already
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert events == ["A waits"]
    assert seen == [("shutting down",)]
    assert store.count("put", "/steps/") == 0


class Abort(BaseException):
    """Neither an `Exception` nor a cancellation: it must not vanish."""


def test_a_base_exception_from_a_step_is_raised_by_start_async() -> None:
    unretrieved: list[dict[str, Any]] = []

    @action
    async def aborts() -> None:
        await asyncio.sleep(0.01)
        raise Abort("stop everything")

    @action
    async def finishes() -> str:
        await asyncio.sleep(0.03)
        return "ok"

    wf = Workflow("aborts").add(aborts, name="aborts").add(finishes, name="ok")

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: unretrieved.append(ctx))
        with pytest.raises(Abort, match="stop everything"):
            await wf.start_async(mode="async_parallel")
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert unretrieved == []


def test_a_cancellation_repeated_while_the_run_ends_still_releases_the_lease(
    tmp_path: Path,
) -> None:
    """The caller cancelled again and again while the run ends (a shutdown pressing on): the
    lease is still released (a cancellation pending on the task used to drop the store I/O that
    releases it before its worker thread began it), so the next start need not wait for the
    lease to expire."""
    store = FileStore(tmp_path)
    started: list[str] = []

    def sleeper(name: str) -> Any:
        async def step() -> None:
            started.append(name)
            await asyncio.sleep(10)

        return action(step)

    wf = Workflow("pressed", store=store)
    for n in range(3):
        wf.add(sleeper(f"s{n}"), name=f"s{n}")

    async def main() -> None:
        task = asyncio.create_task(wf.start_async(mode="async_parallel"))
        while len(started) < 3:
            await asyncio.sleep(0.005)
        for _ in range(6):
            task.cancel()
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert store.get(Layout("pressed").lock) is None


def test_a_generator_exit_from_a_step_reaches_a_caller_a_coroutine_up() -> None:
    """A step raising `GeneratorExit` (odd, but an exception like any) reaches whoever awaits
    `start_async`, through any coroutine in between, as `gather` let it: thrown into the
    awaiting coroutine instead, it would close the caller's whole await chain."""

    @action
    async def odd() -> None:
        await asyncio.sleep(0.01)
        raise GeneratorExit("from a step")

    wf = Workflow("odd").add(odd, name="odd").add(lambda: "fine", name="fine")

    async def helper() -> str:  # (a coroutine between the task and start_async)
        try:
            await wf.start_async(mode="async_parallel")
        except GeneratorExit as exc:
            return f"caught {exc}"
        return "returned"

    async def main() -> str:
        return await helper()

    assert asyncio.run(main()) == "caught from a step"


class SlowFailingRelease(FileStore):
    """Releasing the lease takes a while and then fails with an unexpected error."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.releasing = threading.Event()

    def delete(self, key: str, **kwargs: Any) -> None:
        if key.endswith("/lock"):
            self.releasing.set()
            time.sleep(0.3)
            raise RuntimeError("the release broke")
        super().delete(key, **kwargs)


def test_a_cancellation_during_the_runs_end_is_raised_and_an_error_there_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SlowFailingRelease(tmp_path)

    @action
    async def quick() -> str:
        return "ok"

    wf = Workflow("ending", store=store).add(quick, name="quick")

    async def main() -> None:
        task = asyncio.create_task(wf.start_async())
        while not store.releasing.is_set():
            await asyncio.sleep(0.005)
        for _ in range(3):
            task.cancel()
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert "ending the run failed while it was being cancelled" in caplog.text
    assert "the release broke" in caplog.text


def test_an_async_step_that_returns_after_its_timeout_fails_and_commits_nothing(
    tmp_path: Path,
) -> None:
    """A step that swallows the cancellation of its timeout and returns what it has: the
    partial result is not committed (a resume would restore it), the step fails StepTimeout
    as it does in the sync engine."""
    fetched: list[int] = []

    @action(timeout=0.3, retry=1)
    async def fetch_pages() -> list[int]:
        with contextlib.suppress(asyncio.CancelledError):  # the mistake the engine must not
            for page in range(10):  # trust: it returns what it has
                await asyncio.sleep(0.1)
                fetched.append(page)
        return list(fetched)

    store = FileStore(tmp_path / "store")
    run = asyncio.run(Workflow("swallow", store=store).add(fetch_pages).start_async())
    record = run.steps[0]
    assert 0 < len(fetched) < 10  # it did return early, with a partial list
    assert (record.status, record.error_type) == (Status.FAILED, "StepTimeout")
    assert list(store.list(Layout("swallow").steps)) == []


def test_a_step_that_returns_after_the_caller_cancelled_is_not_committed(
    tmp_path: Path,
) -> None:
    """The task awaiting `start_async` is cancelled while a step runs; the step swallows the
    cancellation and returns: neither it nor any later step is committed."""
    store = FileStore(tmp_path / "store")
    later: list[str] = []

    async def slow(started: asyncio.Event) -> str:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return "partial"

    async def main() -> None:
        started = asyncio.Event()

        @action
        async def first() -> str:
            return await slow(started)

        @action
        async def then(previous_context: Context) -> None:
            later.append(previous_context.value)

        wf = Workflow("cancelled", store=store).add(first).add(then)
        task = asyncio.create_task(wf.start_async())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert later == []
    assert list(store.list(Layout("cancelled").steps)) == []


def test_cancelling_the_awaiting_task_stops_a_map_running_in_a_thread(tmp_path: Path) -> None:
    """The map's items run in a worker thread, which a task's cancellation cannot reach: the
    run is cancelled with it, so no further item starts (`asyncio.run` waits for the thread)."""
    ran: list[int] = []
    started, gate = threading.Event(), threading.Event()

    def work(item: int) -> int:
        ran.append(item)
        if item == 0:
            started.set()
            gate.wait(30)
        return item

    async def main() -> None:
        wf = Workflow("map-cancel", store=FileStore(tmp_path / "store")).map(
            action(work), list(range(20)), name="work"
        )
        task = asyncio.create_task(wf.start_async())
        await asyncio.to_thread(started.wait, 30)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())  # returns once the default executor's threads ended
    assert ran == [0]


class GatedStore(FileStore):
    """A FileStore whose step writes land, then wait for `gate` (or raise, with `refuse`)."""

    def __init__(self, path: Path, refuse: bool = False) -> None:
        super().__init__(path)
        self.writing, self.gate, self.refuse = threading.Event(), threading.Event(), refuse

    def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        if "/steps/" not in key:
            return super().put(key, data, **kwargs)
        if self.refuse:
            self.writing.set()
            self.gate.wait(30)
            raise ConnectionError("the store went away")
        version = super().put(key, data, **kwargs)
        self.writing.set()
        self.gate.wait(30)
        return version


@pytest.mark.parametrize("refuse", [False, True], ids=["landed", "refused"])
def test_a_cancel_during_a_checkpoint_write_reports_what_the_write_did(
    tmp_path: Path, refuse: bool
) -> None:
    """The task awaiting `start_async` is cancelled while a completed step's checkpoint is being
    written: the run waits for the write, so a step whose checkpoint landed is COMPLETED (and
    restored on the next start), one whose write failed is CANCELLED (and runs again)."""
    store = GatedStore(tmp_path / "store", refuse)
    runs: list[Any] = []
    finished: list[tuple[str, Status]] = []

    class Statuses(Tracer):
        def step_finished(self, step: Any) -> None:
            finished.append((step.name.rpartition(".")[2], step.status))

    @action
    async def charge() -> str:
        return "charged"

    async def main() -> None:
        wf = Workflow("gated", store=store, lock=False, tracer=Statuses()).add(charge)
        task = asyncio.create_task(wf.start_async())
        await asyncio.to_thread(store.writing.wait, 30)
        task.cancel()
        await asyncio.sleep(0)  # the cancellation reaches the run, which waits for the write
        store.gate.set()
        with pytest.raises(asyncio.CancelledError):
            runs.append(await task)

    asyncio.run(main())
    assert runs == []
    assert finished == [("charge", Status.CANCELLED if refuse else Status.COMPLETED)]
    again = Workflow("gated", store=FileStore(tmp_path / "store")).add(charge).start()
    step = again.steps[0]
    assert step.restored is not refuse
    assert step.output == "charged"


class HookJob(pydantic.BaseModel):
    n: int = 0


HOOKED: list[str] = []
STOPPED = threading.Event()


class WaitsForItsCancel(Stage[HookJob]):
    def execute(self, state: HookJob) -> None:
        STOPPED.wait(10)  # until its cancel hook stops it

    def cancel(self, state: HookJob) -> None:
        HOOKED.append(threading.current_thread().name)
        STOPPED.set()
        raise RuntimeError("the cancel hook failed too")


def test_cancelling_the_awaiting_task_calls_stage_cancel_hooks_off_the_loop(
    tmp_path: Path,
) -> None:
    """A caller's `asyncio.timeout` cancels the run: the stage's `cancel` hook is called from a
    thread of its own (never the loop's, which it could block), and one that raises changes
    nothing for the caller, who gets its TimeoutError."""
    HOOKED.clear()
    STOPPED.clear()

    async def main() -> str:
        wf = Workflow("hooked", store=FileStore(tmp_path)).add(WaitsForItsCancel(name="w"))
        try:
            async with asyncio.timeout(0.2):
                await wf.start_async(initial_context=HookJob())
        except TimeoutError:
            return "TimeoutError"
        return "no timeout"

    loop_thread = threading.current_thread().name
    assert asyncio.run(main()) == "TimeoutError"
    assert len(HOOKED) == 1
    assert HOOKED[0] != loop_thread
