"""The circuit breaker's state machine, alone, under threads, and inside workflows."""

from __future__ import annotations

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
