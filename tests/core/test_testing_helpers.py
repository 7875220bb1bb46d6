"""dotflow_providers.testing: the switches users put in their own suites."""

from __future__ import annotations

import itertools
import time

import pytest

from dotflow_providers import Action, ExponentialBackoff, FixedRetry, Status, Workflow, action
from dotflow_providers.retry import RetryPolicy, fast_retry_wait, retry_delay
from dotflow_providers.testing import RecordingStore, fast_retries, set_testing


def flaky_step(failures: int, calls: list[float], policy: RetryPolicy) -> Action:
    """A step failing its first `failures` calls; `calls` gets each call's start (monotonic)."""

    @action(retry=policy)
    def step() -> str:
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise ConnectionError("flaky")
        return "ok"

    return step


def test_fast_retries_mode_removes_waits_and_caps_attempts() -> None:
    calls: list[float] = []
    policy = FixedRetry(max_attempts=10, delay=60)
    with fast_retries(attempts=3):
        assert fast_retry_wait(retry_delay(policy, 1, ConnectionError(), 0.0), 1) == (0.0, 60)
        run = Workflow().add(flaky_step(5, calls, policy)).start()
    assert run.status is Status.FAILED
    assert len(calls) == 3  # capped at 3 attempts
    # 60 s waits would put the retries a minute apart; no wait puts them milliseconds apart
    assert all(later - earlier < 10 for earlier, later in itertools.pairwise(calls))


def test_fast_retries_mode_keeps_the_retry_on_filter() -> None:
    calls: list[float] = []
    step = flaky_step(1, calls, ExponentialBackoff(initial=30, cap=30, retry_on=(KeyError,)))
    with fast_retries():
        run = Workflow().add(step).start()
    assert run.status is Status.FAILED
    assert len(calls) == 1


def test_fast_retries_mode_without_a_cap_uses_the_policys_attempts() -> None:
    calls: list[float] = []
    with fast_retries():
        run = Workflow().add(flaky_step(3, calls, FixedRetry(4, delay=60))).start()
    assert run.output == "ok"
    assert len(calls) == 4


def test_set_testing_switches_off_again() -> None:
    set_testing(True, attempts=1)
    set_testing(False)
    policy = FixedRetry(2, delay=0.2)
    assert retry_delay(policy, 1, ConnectionError(), 0.0) == 0.2  # the policy's own wait again
    calls: list[float] = []
    run = Workflow().add(flaky_step(1, calls, policy)).start()
    assert run.output == "ok"
    assert len(calls) == 2  # the attempt cap of 1 is gone too
    # the engine slept the 0.2 s between the failed attempt and the retry; on the monotonic
    # clock a sleep never ends early, so a slow machine can only widen this gap
    assert calls[1] - calls[0] >= 0.2
    with pytest.raises(ValueError, match="attempts"):
        set_testing(True, attempts=0)


def test_recording_store_reads_outputs_back() -> None:
    store = RecordingStore()
    Workflow("rec", store=store).add(lambda: [1, 2], name="a").add(lambda: (3,), name="b").start()
    assert store.outputs("rec") == {"a": [1, 2], "b": (3,)}
    assert store.count("put", "/steps/") == 2


def test_recording_store_reads_outputs_committed_in_batches() -> None:
    store = RecordingStore()
    wf = Workflow("batched", store=store, commit_every=5)
    wf.add(lambda: [1, 2], name="a").add(lambda: (3,), name="b").start()
    calls = len(store.calls)
    assert store.outputs("batched") == {"a": [1, 2], "b": (3,)}
    assert len(store.calls) == calls  # its own reads are not recorded


def test_fast_retries_keeps_the_deadline_as_if_the_waits_were_waited() -> None:
    """The waits are skipped, not the decisions: a deadline that ends the retries for real
    (1 s waits, 1.5 s deadline: two attempts) ends them under `fast_retries` too."""
    calls: list[float] = []
    policy = FixedRetry(max_attempts=5, delay=1, deadline=1.5)
    with fast_retries():
        run = Workflow().add(flaky_step(2, calls, policy)).start()
    assert run.status is Status.FAILED
    assert len(calls) == 2


class Doubling:
    """A stateful policy: each wait doubles the last one handed out (1, 2, 4, 8 s), within a
    20 s deadline: five attempts for real, four waits asked for."""

    deadline = 20.0

    def __init__(self) -> None:
        self.last, self.asked = 0.5, 0

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        return attempt < 10

    def next_delay(self, attempt: int) -> float:
        self.asked += 1
        self.last *= 2
        return self.last


def test_fast_retries_asks_a_policy_for_each_wait_once() -> None:
    policy = Doubling()
    calls: list[float] = []
    with fast_retries():
        run = Workflow().add(flaky_step(99, calls, policy)).start()
    assert run.status is Status.FAILED
    assert (len(calls), policy.asked) == (5, 5)  # the fifth wait (16 s) passes the deadline
