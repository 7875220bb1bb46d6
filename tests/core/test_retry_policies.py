"""Retry policies: what they decide after each failed attempt, and how long they wait."""

from __future__ import annotations

import pytest

from dotflow_providers import (
    CircuitBreaker,
    ExponentialBackoff,
    FixedRetry,
    InvalidPolicy,
    InvalidStep,
    action,
)
from dotflow_providers.retry import as_policy, retry_delay


def test_fixed_retry_allows_max_attempts_in_total() -> None:
    policy = FixedRetry(max_attempts=3, delay=0.5)
    assert [policy.should_retry(n, ValueError()) for n in (1, 2, 3)] == [True, True, False]
    assert [policy.next_delay(n) for n in (1, 2)] == [0.5, 0.5]


def test_exponential_backoff_doubles_from_initial_and_stops_at_cap() -> None:
    policy = ExponentialBackoff(max_attempts=10, base=2, initial=0.5, cap=3, jitter=False)
    assert [policy.next_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_exponential_backoff_other_base() -> None:
    policy = ExponentialBackoff(base=3, initial=1, cap=100, jitter=False)
    assert [policy.next_delay(n) for n in (1, 2, 3)] == [1, 3, 9]


def test_jitter_stays_between_half_and_one_and_a_half_times_and_under_cap() -> None:
    policy = ExponentialBackoff(max_attempts=50, initial=1, cap=6, jitter=True)
    for attempt, plain in [(1, 1.0), (2, 2.0), (3, 4.0)]:
        delays = [policy.next_delay(attempt) for _ in range(2000)]
        assert min(delays) >= 0.5 * plain
        assert max(delays) <= min(6, 1.5 * plain)
        assert len(set(delays)) > 1000  # really random, not a constant factor
    capped = [policy.next_delay(10) for _ in range(2000)]
    assert max(capped) <= 6
    assert min(capped) >= 3


def test_retry_on_limits_which_errors_are_retried() -> None:
    policy = ExponentialBackoff(retry_on=(ConnectionError, TimeoutError))
    assert policy.should_retry(1, ConnectionResetError())  # a subclass counts
    assert policy.should_retry(1, TimeoutError())
    assert not policy.should_retry(1, ValueError())
    assert not FixedRetry(retry_on=(KeyError,)).should_retry(1, ValueError())


def test_deadline_stops_retries_when_the_next_wait_would_pass_it() -> None:
    policy = FixedRetry(max_attempts=10, delay=2, deadline=5)
    assert retry_delay(policy, 1, ValueError(), elapsed=1.0) == 2
    assert retry_delay(policy, 2, ValueError(), elapsed=3.5) is None


def test_retry_int_means_total_attempts() -> None:
    assert as_policy(1).should_retry(1, ValueError()) is False
    three = as_policy(3)
    assert isinstance(three, FixedRetry)
    assert three.max_attempts == 3
    assert action(retry=4)(lambda: None).policy.max_attempts == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FixedRetry(max_attempts=0), "at least 1"),
        (lambda: FixedRetry(max_attempts=-2), "at least 1"),
        (lambda: ExponentialBackoff(max_attempts=-1), "at least 1"),
        (lambda: ExponentialBackoff(initial=10, cap=5), "cap"),
        (lambda: ExponentialBackoff(base=0.5), "base"),
        (lambda: FixedRetry(delay=-1), "delay"),
        (lambda: FixedRetry(deadline=-1), "deadline"),
        (lambda: FixedRetry(retry_on=("ValueError",)), "exception classes"),  # type: ignore[arg-type]
        (lambda: CircuitBreaker(threshold=0), "threshold"),
        (lambda: CircuitBreaker(half_open_max_calls=0), "half_open_max_calls"),
        (lambda: as_policy(0), "at least 1"),
        (lambda: as_policy(True), "bool"),
        (lambda: as_policy("3"), "RetryPolicy"),  # type: ignore[arg-type]
    ],
)
def test_impossible_policies_are_named_errors(build: object, message: str) -> None:
    with pytest.raises(InvalidPolicy, match=message):
        build()  # type: ignore[operator]


def test_action_rejects_bad_timeouts() -> None:
    with pytest.raises(InvalidStep, match="timeout"):
        action(timeout=0)(lambda: None)
    with pytest.raises(InvalidStep, match="timeout_mode"):
        action(timeout=1, timeout_mode="fork")(lambda: None)  # type: ignore[arg-type]
