"""The circuit breaker's state machine, alone, under threads, and inside workflows."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from dotflow_providers import CircuitBreaker, CircuitOpen, FixedRetry, Status, Workflow, action
from dotflow_providers.retry import BreakerState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.before_attempt()
        breaker.after_attempt(RuntimeError("down"))


def test_opens_after_threshold_failures_within_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, window=10, reset_after=30, clock=clock)
    fail(breaker, 2)
    clock.now += 11  # the first two fall out of the window
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="next trial call"):
        breaker.before_attempt()


def test_half_open_after_reset_then_success_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, reset_after=30, clock=clock)
    fail(breaker)
    clock.now += 29
    assert breaker.state is BreakerState.OPEN
    clock.now += 1
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_attempt()
    with pytest.raises(CircuitOpen, match="half-open"):
        breaker.before_attempt()  # only one trial call at a time
    breaker.after_attempt(None)
    assert breaker.state is BreakerState.CLOSED
    breaker.before_attempt()


def test_half_open_failure_reopens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, reset_after=5, clock=clock)
    fail(breaker)
    clock.now += 5
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    clock.now += 4
    with pytest.raises(CircuitOpen):
        breaker.before_attempt()


def half_open(half_open_max_calls: int = 1) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    breaker = CircuitBreaker(
        threshold=1, reset_after=30, half_open_max_calls=half_open_max_calls, clock=clock
    )
    fail(breaker)
    clock.now += 30
    assert breaker.state is BreakerState.HALF_OPEN
    return breaker, clock


def test_an_abandoned_trial_gives_its_slot_back() -> None:
    breaker, _ = half_open()
    breaker.before_attempt()
    with pytest.raises(CircuitOpen, match="in flight"):
        breaker.before_attempt()
    breaker.abandon_attempt()  # cancelled: no outcome, so still half-open, with a free slot
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_attempt()
    breaker.after_attempt(None)
    assert breaker.state is BreakerState.CLOSED


def test_abandon_releases_only_what_this_caller_reserved() -> None:
    breaker, _ = half_open(half_open_max_calls=2)
    first, second, bystander = (contextvars.copy_context() for _ in range(3))
    first.run(breaker.before_attempt)
    second.run(breaker.before_attempt)
    bystander.run(breaker.abandon_attempt)  # holds nothing, frees nothing
    with pytest.raises(CircuitOpen, match="in flight"):
        bystander.run(breaker.before_attempt)
    second.run(breaker.abandon_attempt)
    second.run(breaker.abandon_attempt)  # a second call releases nothing more
    bystander.run(breaker.before_attempt)
    with pytest.raises(CircuitOpen, match="in flight"):
        contextvars.copy_context().run(breaker.before_attempt)


def test_abandon_after_an_outcome_or_without_a_trial_changes_nothing() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, reset_after=30, clock=clock)
    fail(breaker)
    breaker.before_attempt()  # closed: nothing is reserved
    breaker.abandon_attempt()  # and an abandoned attempt is not a failure
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN  # the two real failures, no more, no fewer
    breaker.abandon_attempt()
    clock.now += 30
    breaker.before_attempt()
    breaker.after_attempt(RuntimeError("still down"))  # the trial's outcome settles its slot
    breaker.abandon_attempt()
    assert breaker.state is BreakerState.OPEN


def test_a_late_abandon_never_frees_a_slot_of_a_later_half_open_period() -> None:
    breaker, clock = half_open(half_open_max_calls=2)
    stale, failing, current = (contextvars.copy_context() for _ in range(3))
    stale.run(breaker.before_attempt)
    failing.run(breaker.before_attempt)
    failing.run(breaker.after_attempt, RuntimeError("down"))  # re-opens
    clock.now += 30
    current.run(breaker.before_attempt)
    current.run(breaker.before_attempt)  # (same caller twice: both slots of this period)
    stale.run(breaker.abandon_attempt)  # its period is over: nothing to give back
    with pytest.raises(CircuitOpen, match="in flight"):
        contextvars.copy_context().run(breaker.before_attempt)


def test_asyncio_tasks_hold_their_own_trial_slots() -> None:
    breaker, _ = half_open(half_open_max_calls=2)

    async def trial(abandon: bool) -> None:
        breaker.before_attempt()
        await asyncio.sleep(0)
        if abandon:
            breaker.abandon_attempt()

    async def main() -> None:
        await asyncio.gather(trial(abandon=True), trial(abandon=False))
        breaker.before_attempt()  # the abandoned slot is free again
        with pytest.raises(CircuitOpen, match="in flight"):
            breaker.before_attempt()

    asyncio.run(main())


def test_breaker_decides_no_retry_for_circuit_open_and_delegates_otherwise() -> None:
    breaker = CircuitBreaker(retry=FixedRetry(max_attempts=3, delay=0.25))
    assert breaker.should_retry(1, ValueError())
    assert not breaker.should_retry(3, ValueError())
    assert not breaker.should_retry(1, CircuitOpen("open"))
    assert breaker.next_delay(1) == 0.25
    assert not CircuitBreaker().should_retry(1, ValueError())


def test_state_is_consistent_under_threads() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        threshold=50, window=1000, reset_after=10, half_open_max_calls=3, clock=clock
    )
    barrier = threading.Barrier(16)
    rejected: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        barrier.wait()
        for _ in range(100):
            try:
                breaker.before_attempt()
            except CircuitOpen:
                with lock:
                    rejected.append(1)
                continue
            breaker.after_attempt(RuntimeError("down"))

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # exactly `threshold` failures got through before it opened; every other call failed fast
    assert breaker.state is BreakerState.OPEN
    assert len(rejected) == 16 * 100 - 50

    clock.now += 10
    admitted: list[int] = []
    barrier = threading.Barrier(16)

    def probe() -> None:
        barrier.wait()
        try:
            breaker.before_attempt()
        except CircuitOpen:
            return
        with lock:
            admitted.append(1)

    threads = [threading.Thread(target=probe) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 3  # half_open_max_calls, no more


def test_open_circuit_fails_steps_without_calling_them() -> None:
    breaker = CircuitBreaker(threshold=2, reset_after=60)
    calls: list[str] = []

    @action(retry=breaker)
    def flaky_api() -> None:
        calls.append("api")
        raise ConnectionError("503")

    @action(retry=breaker)
    def same_api_again() -> None:
        calls.append("again")

    wf = Workflow("cb").add(flaky_api, name="first").add(flaky_api, name="second")
    wf.add(same_api_again, name="third")
    run = wf.start(keep_going=True)
    assert [s.status for s in run.steps] == [Status.FAILED] * 3
    assert calls == ["api", "api"]  # the third step shared the open breaker and never ran
    assert run.steps[2].error_type == "CircuitOpen"


def test_a_cancelled_trial_run_leaves_the_breaker_ready_for_the_next_start() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, reset_after=30, clock=clock)
    calls: list[str] = []
    in_trial: list[asyncio.Event] = []

    @action(retry=breaker)
    async def call_api() -> str:
        calls.append("call")
        if len(calls) == 1:
            raise ConnectionError("503")  # opens the circuit
        if len(calls) == 2:  # the trial: cancelled while it waits on the dependency
            in_trial[0].set()
            await asyncio.sleep(30)
        return "ok"

    first = asyncio.run(Workflow().add(call_api).start_async())
    assert first.status is Status.FAILED
    clock.now += 30
    assert breaker.state is BreakerState.HALF_OPEN

    async def start_then_cancel() -> None:
        in_trial.append(asyncio.Event())
        task = asyncio.create_task(Workflow().add(call_api).start_async())
        await asyncio.wait_for(in_trial[0].wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(start_then_cancel())
    assert breaker.state is BreakerState.HALF_OPEN  # a cancelled trial is no outcome

    third = asyncio.run(Workflow().add(call_api).start_async())
    assert third.steps[0].error_type is None  # admitted to a trial, not refused with CircuitOpen
    assert third.status is Status.COMPLETED
    assert calls == ["call", "call", "call"]
    assert breaker.state is BreakerState.CLOSED
