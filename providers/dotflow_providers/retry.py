"""Retry policies: small objects that decide whether a failed attempt is tried again, and when.

The maths comes from tenacity's wait, stop and retry strategies; the policies only adapt them to
the engine's two questions, `should_retry(attempt, error)` and `next_delay(attempt)`. Attempts are
numbered from 1. Every policy also takes `deadline`, a budget in seconds across all attempts and
waits of one step.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import tenacity

from ._errors import CircuitOpen, InvalidPolicy

__all__ = [
    "AttemptGuard",
    "BreakerState",
    "CircuitBreaker",
    "ExponentialBackoff",
    "FixedRetry",
    "RetryPolicy",
    "as_policy",
    "is_retryable",
    "retry_delay",
]

ErrorTypes = tuple[type[BaseException], ...]


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides, after a failed attempt, whether the step runs again and how long to wait first."""

    deadline: float | None

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        """True when attempt number `attempt` failed with `error` and another attempt may run."""
        ...

    def next_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt`."""
        ...


@runtime_checkable
class AttemptGuard(Protocol):
    """A policy that also watches every attempt, such as a circuit breaker."""

    def before_attempt(self) -> None:
        """Raise to fail the attempt without calling the step."""
        ...

    def after_attempt(self, error: BaseException | None) -> None:
        """Record how an attempt ended (`None` for success)."""
        ...


#: Set by `dotflow_providers.testing.set_testing`: None when off, else (attempt cap or None,).
_testing: tuple[int | None] | None = None


def retry_delay(
    policy: RetryPolicy, attempt: int, error: BaseException, elapsed: float
) -> float | None:
    """The wait before the next attempt, or None when the step has to fail now.

    This is the one place where a retry is decided; the sync and async engines both call it.
    """
    if not policy.should_retry(attempt, error):
        return None
    if _testing is not None:
        cap = _testing[0]
        return None if cap is not None and attempt >= cap else 0.0
    delay = policy.next_delay(attempt)
    deadline = policy.deadline
    if deadline is not None and elapsed + delay >= deadline:
        return None
    return delay


def is_retryable(policy: RetryPolicy, error: BaseException) -> bool:
    """Whether `policy` retries this kind of error at all (its `retry_on` filter), whatever
    attempts are left; orchestrators use it to tell a permanent failure from an exhausted one."""
    check = getattr(policy, "is_retryable", None)
    return True if check is None else bool(check(error))


def _call_state(attempt: int, error: BaseException | None = None) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = attempt
    if error is not None:
        outcome = tenacity.Future(attempt)
        outcome.set_exception(error)
        state.outcome = outcome
    return state


def _check_attempts(max_attempts: int) -> int:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidPolicy(
            f"max_attempts must be a whole number of at least 1 (total attempts), "
            f"got {max_attempts!r}"
        )
    return max_attempts


def _check_non_negative(name: str, value: float | None) -> None:
    if value is not None and value < 0:
        raise InvalidPolicy(f"{name} must be zero or more seconds, got {value!r}")


def _check_retry_on(retry_on: ErrorTypes) -> ErrorTypes:
    retry_on = tuple(retry_on)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
        raise InvalidPolicy(f"retry_on must be a tuple of exception classes, got {retry_on!r}")
    return retry_on


class _Policy:
    """Shared parts of the tenacity-backed policies: attempt limit and exception filter."""

    def __init__(self, max_attempts: int, retry_on: ErrorTypes, deadline: float | None) -> None:
        self.max_attempts = _check_attempts(max_attempts)
        self.retry_on = _check_retry_on(retry_on)
        _check_non_negative("deadline", deadline)
        self.deadline = deadline
        self._stop = tenacity.stop_after_attempt(self.max_attempts)
        self._retry = tenacity.retry_if_exception_type(self.retry_on)

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        state = _call_state(attempt, error)
        return bool(self._retry(state)) and not self._stop(state)

    def is_retryable(self, error: BaseException) -> bool:
        return isinstance(error, self.retry_on)


class FixedRetry(_Policy):
    """Up to `max_attempts` attempts in all, `delay` seconds apart."""

    def __init__(
        self,
        max_attempts: int = 3,
        delay: float = 1.0,
        retry_on: ErrorTypes = (Exception,),
        deadline: float | None = None,
    ) -> None:
        super().__init__(max_attempts, retry_on, deadline)
        _check_non_negative("delay", delay)
        self.delay = delay
        self._wait = tenacity.wait_fixed(delay)

    def next_delay(self, attempt: int) -> float:
        return float(self._wait(_call_state(attempt)))

    def __repr__(self) -> str:
        return f"FixedRetry(max_attempts={self.max_attempts}, delay={self.delay})"


class ExponentialBackoff(_Policy):
    """Waits `initial * base**(attempt-1)` seconds, never more than `cap`, with optional jitter.

    With `jitter`, each wait is multiplied by `random.uniform(0.5, 1.5)` and still capped, so
    workers that failed together do not all come back at the same moment.
    """

    def __init__(
        self,
        max_attempts: int = 5,
        base: float = 2.0,
        initial: float = 1.0,
        cap: float = 60.0,
        jitter: bool = True,
        retry_on: ErrorTypes = (Exception,),
        deadline: float | None = None,
    ) -> None:
        super().__init__(max_attempts, retry_on, deadline)
        _check_non_negative("initial", initial)
        if base < 1:
            raise InvalidPolicy(f"base must be 1 or more so waits never shrink, got {base!r}")
        if cap < initial:
            raise InvalidPolicy(
                f"cap ({cap!r}) is below initial ({initial!r}): raise cap or lower initial"
            )
        self.base, self.initial, self.cap, self.jitter = base, initial, cap, jitter
        self._wait = tenacity.wait_exponential(multiplier=initial, exp_base=base, max=cap)

    def next_delay(self, attempt: int) -> float:
        delay = float(self._wait(_call_state(attempt)))
        if self.jitter:
            delay = min(self.cap, delay * random.uniform(0.5, 1.5))
        return delay

    def __repr__(self) -> str:
        return (
            f"ExponentialBackoff(max_attempts={self.max_attempts}, base={self.base}, "
            f"initial={self.initial}, cap={self.cap}, jitter={self.jitter})"
        )


class BreakerState(enum.StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops calling a failing dependency: after `threshold` failures within `window` seconds
    the circuit opens and every step using this breaker fails fast with `CircuitOpen`; after
    `reset_after` seconds up to `half_open_max_calls` trial attempts run, and one success closes
    the circuit again while one failure re-opens it.

    Share one instance between steps that call the same dependency: its state is shared by them
    (within one process) and guarded by a lock, which is never held while a step runs. While the
    circuit is closed, `retry` (another policy, or None for a single attempt) decides retries.
    """

    def __init__(
        self,
        threshold: int = 5,
        window: float = 60.0,
        reset_after: float = 60.0,
        half_open_max_calls: int = 1,
        retry: RetryPolicy | int | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(threshold, bool) or threshold < 1:
            raise InvalidPolicy(f"threshold must be at least 1 failure, got {threshold!r}")
        if half_open_max_calls < 1:
            raise InvalidPolicy(
                f"half_open_max_calls must be at least 1, got {half_open_max_calls!r}"
            )
        _check_non_negative("window", window)
        _check_non_negative("reset_after", reset_after)
        _check_non_negative("deadline", deadline)
        self.threshold, self.window, self.reset_after = threshold, window, reset_after
        self.half_open_max_calls = half_open_max_calls
        self.retry = None if retry is None else as_policy(retry)
        inner_deadline = self.retry.deadline if self.retry is not None else None
        self.deadline = deadline if deadline is not None else inner_deadline
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._trials = 0

    @property
    def state(self) -> BreakerState:
        """The current state, moving OPEN to HALF_OPEN once `reset_after` has passed."""
        with self._lock:
            self._maybe_half_open()
            return self._state

    def _maybe_half_open(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_after:
            self._state, self._trials = BreakerState.HALF_OPEN, 0

    def _open(self) -> None:
        self._state, self._opened_at = BreakerState.OPEN, self._clock()
        self._failures.clear()

    def before_attempt(self) -> None:
        with self._lock:
            self._maybe_half_open()
            if self._state is BreakerState.OPEN:
                wait = self.reset_after - (self._clock() - self._opened_at)
                raise CircuitOpen(
                    f"circuit open after {self.threshold} failures; next trial call in {wait:.1f}s"
                )
            if self._state is BreakerState.HALF_OPEN:
                if self._trials >= self.half_open_max_calls:
                    raise CircuitOpen("circuit half-open and its trial calls are all in flight")
                self._trials += 1

    def after_attempt(self, error: BaseException | None) -> None:
        if isinstance(error, CircuitOpen):
            return
        with self._lock:
            if error is None:
                if self._state is BreakerState.HALF_OPEN:
                    self._state = BreakerState.CLOSED
                    self._failures.clear()
                return
            if self._state is BreakerState.HALF_OPEN:
                self._open()
            elif self._state is BreakerState.CLOSED:
                now = self._clock()
                self._failures.append(now)
                while self._failures and now - self._failures[0] > self.window:
                    self._failures.popleft()
                if len(self._failures) >= self.threshold:
                    self._open()

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        if isinstance(error, CircuitOpen) or self.retry is None:
            return False
        return self.retry.should_retry(attempt, error)

    def next_delay(self, attempt: int) -> float:
        return 0.0 if self.retry is None else self.retry.next_delay(attempt)

    def is_retryable(self, error: BaseException) -> bool:
        # an open circuit is a reason to come back later, not a permanent failure
        return self.retry is None or is_retryable(self.retry, error)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(threshold={self.threshold}, window={self.window}, "
            f"reset_after={self.reset_after}, state={self.state.value})"
        )


NO_RETRY = FixedRetry(max_attempts=1, delay=0.0)


def as_policy(retry: RetryPolicy | int | None) -> RetryPolicy:
    """Turn what `@action(retry=...)` accepts into a policy: N means N attempts in total."""
    if retry is None:
        return NO_RETRY
    if isinstance(retry, bool):
        raise InvalidPolicy("retry must be a number of attempts or a RetryPolicy, not a bool")
    if isinstance(retry, int):
        return NO_RETRY if retry == 1 else FixedRetry(max_attempts=retry)
    if isinstance(retry, RetryPolicy):
        return retry
    raise InvalidPolicy(
        f"retry must be a number of attempts or a RetryPolicy (FixedRetry, ExponentialBackoff, "
        f"CircuitBreaker), got {type(retry).__name__}"
    )
