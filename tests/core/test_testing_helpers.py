"""dotflow_providers.testing: the switches users put in their own suites."""

from __future__ import annotations

import time

import pytest

from dotflow_providers import ExponentialBackoff, FixedRetry, Status, Workflow, action
from dotflow_providers.testing import RecordingStore, fast_retries, set_testing


def flaky_step(failures: int, calls: list[int], policy: object) -> object:
    @action(retry=policy)  # type: ignore[arg-type]
    def step() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError("flaky")
        return "ok"

    return step


def test_fast_retries_mode_removes_waits_and_caps_attempts() -> None:
    calls: list[int] = []
    step = flaky_step(5, calls, FixedRetry(max_attempts=10, delay=60))
    t0 = time.perf_counter()
    with fast_retries(attempts=3):
        run = Workflow().add(step).start()
    assert time.perf_counter() - t0 < 1
    assert run.status is Status.FAILED
    assert calls == [1, 1, 1]  # capped at 3 attempts


def test_fast_retries_mode_keeps_the_retry_on_filter() -> None:
    calls: list[int] = []
    step = flaky_step(1, calls, ExponentialBackoff(initial=30, cap=30, retry_on=(KeyError,)))
    with fast_retries():
        run = Workflow().add(step).start()
    assert run.status is Status.FAILED
    assert calls == [1]


def test_fast_retries_mode_without_a_cap_uses_the_policys_attempts() -> None:
    calls: list[int] = []
    with fast_retries():
        run = Workflow().add(flaky_step(3, calls, FixedRetry(4, delay=60))).start()
    assert run.output == "ok"
    assert calls == [1, 1, 1, 1]


def test_set_testing_switches_off_again() -> None:
    set_testing(True, attempts=1)
    set_testing(False)
    calls: list[int] = []
    t0 = time.perf_counter()
    run = Workflow().add(flaky_step(1, calls, FixedRetry(2, delay=0.2))).start()
    assert run.output == "ok"
    assert time.perf_counter() - t0 >= 0.2
    with pytest.raises(ValueError, match="attempts"):
        set_testing(True, attempts=0)


def test_recording_store_reads_outputs_back() -> None:
    store = RecordingStore()
    Workflow("rec", store=store).add(lambda: [1, 2], name="a").add(lambda: (3,), name="b").start()
    assert store.outputs("rec") == {"a": [1, 2], "b": (3,)}
    assert store.count("put", "/steps/") == 2
