"""Retry policies: small objects that decide whether a failed attempt is tried again, and when.

A policy is built the way tenacity builds one, from three composable parts:

    Retry(
        stop=stop_after_attempt(5) | stop_after_delay(30),
        wait=wait_exponential(initial=0.5, cap=10) + wait_random(0, 1),
        retry=retry_if_exception_type(OSError) & ~retry_if_exception_message(match="fatal"),
    )

`FixedRetry` and `ExponentialBackoff` are presets over `Retry`; `CircuitBreaker` guards any
policy. The parts carry tenacity's names and meanings but not its objects: tenacity's strategies
are functions of a `RetryCallState` that only a running `tenacity.Retrying` loop owns, and the
engine runs its own loop (checkpoints, cancellation, async sleeps), so using them would mean
faking that state. The maths is a few lines, so it lives here, typed and tested directly.

Attempts are numbered from 1. Every policy also takes `deadline`, a budget in seconds across all
attempts and waits of one step.
"""

from __future__ import annotations

import abc
import contextvars
import enum
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ._errors import CircuitOpen, InvalidPolicy

__all__ = [
    "AttemptGuard",
    "AttemptState",
    "BreakerState",
    "CircuitBreaker",
    "ExponentialBackoff",
    "FixedRetry",
    "Retry",
    "RetryCondition",
    "RetryPolicy",
    "StopCondition",
    "WaitStrategy",
    "retry_all",
    "retry_any",
    "retry_if_exception",
    "retry_if_exception_message",
    "retry_if_exception_type",
    "retry_not",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_all",
    "stop_any",
    "stop_never",
    "wait_combine",
    "wait_exponential",
    "wait_fixed",
    "wait_random",
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
    """A policy that also watches every attempt, such as a circuit breaker.

    The engine calls `before_attempt` before each attempt and then exactly one of
    `after_attempt` (the attempt returned or raised an `Exception`) or `abandon_attempt` (it was
    cancelled or interrupted, so it has no outcome). Both may be called when `before_attempt`
    reserved nothing, or called again: a guard ignores what it does not hold.
    """

    def before_attempt(self) -> None:
        """Raise to fail the attempt without calling the step."""
        ...

    def after_attempt(self, error: BaseException | None) -> None:
        """Record how an attempt ended (`None` for success)."""
        ...

    def abandon_attempt(self) -> None:
        """The attempt ended without an outcome: release whatever `before_attempt` reserved."""
        ...


# -- the testing switch ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FastRetryMode:
    """Testing mode as `set_testing` turns it on: no waits, at most `attempts` attempts."""

    attempts: int | None = None

    def __post_init__(self) -> None:
        attempts = self.attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise InvalidPolicy(f"attempts must be at least 1, got {attempts!r}")


class _Config:
    """Process-wide switches (today only testing mode), changed under one lock.

    Readers take no lock: the whole state is one immutable `FastRetryMode` (or None) behind one
    attribute, and CPython loads and stores an attribute reference atomically (under the GIL,
    and with per-object locking in free-threaded builds), so a reader sees the old mode or the
    new one, never the switch of one and the attempt cap of the other. Writers hold the lock so
    that `swap_testing` reads the previous mode and installs the new one as a single step, which
    is what lets nested `fast_retries` blocks restore exactly what they replaced.
    """

    __slots__ = ("_lock", "_testing")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._testing: FastRetryMode | None = None

    @property
    def testing(self) -> FastRetryMode | None:
        """The active testing mode, or None when policies wait and count as configured."""
        return self._testing

    def swap_testing(self, mode: FastRetryMode | None) -> FastRetryMode | None:
        """Install `mode` (None switches testing off) and return the mode it replaced."""
        with self._lock:
            previous, self._testing = self._testing, mode
        return previous


#: The one config object; `dotflow_providers.testing` is its public face.
CONFIG = _Config()


# -- validation -----------------------------------------------------------------------------


def _check_attempts(max_attempts: int) -> int:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidPolicy(
            f"max_attempts must be a whole number of at least 1 (total attempts), "
            f"got {max_attempts!r}"
        )
    return max_attempts


def _check_non_negative(name: str, value: float | None) -> None:
    if value is not None and (math.isnan(value) or value < 0):
        raise InvalidPolicy(f"{name} must be zero or more seconds, got {value!r}")


def _check_error_types(error_types: ErrorTypes) -> ErrorTypes:
    error_types = tuple(error_types)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in error_types):
        raise InvalidPolicy(f"retry_on must be a tuple of exception classes, got {error_types!r}")
    return error_types


def _check_parts(kind: type[object], name: str, parts: tuple[object, ...]) -> None:
    for part in parts:
        if not isinstance(part, kind):
            hint = ""
            if type(part).__module__.partition(".")[0] == "tenacity":
                # tenacity's strategies read a RetryCallState that only its own loop builds
                same = type(part).__name__
                hint = (
                    f"; tenacity's own objects are not accepted, use "
                    f"dotflow_providers.retry.{same} (same name and meaning)"
                    if same in __all__
                    else "; tenacity's own objects are not accepted, build it from "
                    "dotflow_providers.retry's stop_*, wait_* and retry_* parts"
                )
            raise InvalidPolicy(
                f"{name} must be a {kind.__name__}, got {type(part).__name__}{hint}"
            )


# -- stop conditions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptState:
    """What a stop condition sees after a failed attempt."""

    #: the number of the attempt that just failed, from 1
    attempt: int
    #: seconds since the step's first attempt started (0 when the caller does not know)
    elapsed: float = 0.0


class StopCondition(abc.ABC):
    """When to stop retrying, whatever the error; combine with `|` (either) and `&` (both)."""

    __slots__ = ()

    @abc.abstractmethod
    def should_stop(self, state: AttemptState) -> bool:
        """True when no attempt may follow the failed one described by `state`."""

    def __or__(self, other: StopCondition) -> StopCondition:
        return stop_any(self, other)

    def __and__(self, other: StopCondition) -> StopCondition:
        return stop_all(self, other)


@dataclass(frozen=True, slots=True)
class stop_after_attempt(StopCondition):
    """Stop once `max_attempts` attempts (the first one included) have failed."""

    max_attempts: int

    def __post_init__(self) -> None:
        _check_attempts(self.max_attempts)

    def should_stop(self, state: AttemptState) -> bool:
        return state.attempt >= self.max_attempts


@dataclass(frozen=True, slots=True)
class stop_after_delay(StopCondition):
    """Stop once an attempt fails `seconds` or more after the first attempt started."""

    seconds: float

    def __post_init__(self) -> None:
        _check_non_negative("seconds", self.seconds)

    def should_stop(self, state: AttemptState) -> bool:
        return state.elapsed >= self.seconds


@dataclass(frozen=True, slots=True)
class stop_never(StopCondition):
    """Never stop (bound it with `deadline`, or combine it with another condition)."""

    def should_stop(self, state: AttemptState) -> bool:
        return False


@dataclass(frozen=True, slots=True, init=False, repr=False)
class stop_any(StopCondition):
    """Stop when any of `conditions` does (what `a | b` builds)."""

    conditions: tuple[StopCondition, ...]

    def __init__(self, *conditions: StopCondition) -> None:
        _check_parts(StopCondition, "stop", conditions)
        object.__setattr__(self, "conditions", conditions)

    def should_stop(self, state: AttemptState) -> bool:
        return any(c.should_stop(state) for c in self.conditions)

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.conditions)) + ")"


@dataclass(frozen=True, slots=True, init=False, repr=False)
class stop_all(StopCondition):
    """Stop when all of `conditions` do (what `a & b` builds)."""

    conditions: tuple[StopCondition, ...]

    def __init__(self, *conditions: StopCondition) -> None:
        _check_parts(StopCondition, "stop", conditions)
        object.__setattr__(self, "conditions", conditions)

    def should_stop(self, state: AttemptState) -> bool:
        return all(c.should_stop(state) for c in self.conditions)

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.conditions)) + ")"


# -- waits ----------------------------------------------------------------------------------


class WaitStrategy(abc.ABC):
    """How long to wait after a failed attempt; `a + b` waits the sum of both."""

    __slots__ = ()

    @abc.abstractmethod
    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (zero or more)."""

    def __add__(self, other: WaitStrategy) -> WaitStrategy:
        return wait_combine(self, other)

    def __radd__(self, other: int) -> WaitStrategy:
        # lets `sum(waits)` start from its integer 0
        if other == 0:
            return self
        return NotImplemented


@dataclass(frozen=True, slots=True)
class wait_fixed(WaitStrategy):
    """The same wait of `seconds` after every attempt."""

    seconds: float

    def __post_init__(self) -> None:
        _check_non_negative("seconds", self.seconds)

    def delay(self, attempt: int) -> float:
        return float(self.seconds)


@dataclass(frozen=True, slots=True)
class wait_exponential(WaitStrategy):
    """`initial * base**(attempt-1)` seconds, never more than `cap`.

    With `jitter`, each wait is multiplied by `random.uniform(0.5, 1.5)` and capped again, so
    workers that failed together do not all come back at the same moment.
    """

    initial: float = 1.0
    base: float = 2.0
    cap: float = 60.0
    jitter: bool = False

    def __post_init__(self) -> None:
        _check_non_negative("initial", self.initial)
        if math.isnan(self.base) or self.base < 1:
            raise InvalidPolicy(f"base must be 1 or more so waits never shrink, got {self.base!r}")
        if math.isnan(self.cap) or self.cap < self.initial:
            raise InvalidPolicy(
                f"cap ({self.cap!r}) is below initial ({self.initial!r}): "
                f"raise cap or lower initial"
            )

    def delay(self, attempt: int) -> float:
        try:
            plain = self.initial * float(self.base) ** max(attempt - 1, 0)
        except OverflowError:  # base**n past the float range: far beyond any cap
            plain = math.inf
        delay = min(float(self.cap), plain) if self.initial > 0 else 0.0
        if self.jitter:
            delay = min(float(self.cap), delay * random.uniform(0.5, 1.5))
        return delay


@dataclass(frozen=True, slots=True)
class wait_random(WaitStrategy):
    """A random wait between `low` and `high` seconds; add it to another wait for jitter."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        _check_non_negative("low", self.low)
        if math.isnan(self.high) or self.high < self.low:
            raise InvalidPolicy(f"high ({self.high!r}) must not be below low ({self.low!r})")

    def delay(self, attempt: int) -> float:
        return random.uniform(self.low, self.high)


@dataclass(frozen=True, slots=True, init=False, repr=False)
class wait_combine(WaitStrategy):
    """The sum of `waits` (what `a + b` builds)."""

    waits: tuple[WaitStrategy, ...]

    def __init__(self, *waits: WaitStrategy) -> None:
        _check_parts(WaitStrategy, "wait", waits)
        object.__setattr__(self, "waits", waits)

    def delay(self, attempt: int) -> float:
        return sum(w.delay(attempt) for w in self.waits)

    def __repr__(self) -> str:
        return "(" + " + ".join(map(repr, self.waits)) + ")"


# -- retry conditions -----------------------------------------------------------------------


class RetryCondition(abc.ABC):
    """Which errors are worth another attempt; combine with `|`, `&` and `~`."""

    __slots__ = ()

    @abc.abstractmethod
    def matches(self, error: BaseException) -> bool:
        """True when `error` is worth another attempt."""

    def __or__(self, other: RetryCondition) -> RetryCondition:
        return retry_any(self, other)

    def __and__(self, other: RetryCondition) -> RetryCondition:
        return retry_all(self, other)

    def __invert__(self) -> RetryCondition:
        return retry_not(self)


@dataclass(frozen=True, slots=True, init=False)
class retry_if_exception_type(RetryCondition):
    """Errors that are instances of any of `error_types` (subclasses count); none, no error."""

    error_types: ErrorTypes

    def __init__(self, *error_types: type[BaseException]) -> None:
        object.__setattr__(self, "error_types", _check_error_types(error_types))

    def matches(self, error: BaseException) -> bool:
        return isinstance(error, self.error_types)


@dataclass(frozen=True, slots=True)
class retry_if_exception_message(RetryCondition):
    """Errors whose message equals `message`, or matches the regex `match` at its start.

    Give exactly one of the two; `match` uses `re.match`, as tenacity does.
    """

    message: str | None = None
    match: str | None = None
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if (self.message is None) == (self.match is None):
            raise InvalidPolicy("retry_if_exception_message takes exactly one of message, match")
        if self.match is not None:
            object.__setattr__(self, "_pattern", re.compile(self.match))

    def matches(self, error: BaseException) -> bool:
        if self._pattern is not None:
            return self._pattern.match(str(error)) is not None
        return str(error) == self.message


@dataclass(frozen=True, slots=True)
class retry_if_exception(RetryCondition):
    """Errors for which `predicate(error)` is true."""

    predicate: Callable[[BaseException], bool]

    def matches(self, error: BaseException) -> bool:
        return bool(self.predicate(error))


@dataclass(frozen=True, slots=True, init=False, repr=False)
class retry_any(RetryCondition):
    """Errors that any of `conditions` matches (what `a | b` builds)."""

    conditions: tuple[RetryCondition, ...]

    def __init__(self, *conditions: RetryCondition) -> None:
        _check_parts(RetryCondition, "retry", conditions)
        object.__setattr__(self, "conditions", conditions)

    def matches(self, error: BaseException) -> bool:
        return any(c.matches(error) for c in self.conditions)

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.conditions)) + ")"


@dataclass(frozen=True, slots=True, init=False, repr=False)
class retry_all(RetryCondition):
    """Errors that all of `conditions` match (what `a & b` builds)."""

    conditions: tuple[RetryCondition, ...]

    def __init__(self, *conditions: RetryCondition) -> None:
        _check_parts(RetryCondition, "retry", conditions)
        object.__setattr__(self, "conditions", conditions)

    def matches(self, error: BaseException) -> bool:
        return all(c.matches(error) for c in self.conditions)

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.conditions)) + ")"


@dataclass(frozen=True, slots=True, repr=False)
class retry_not(RetryCondition):
    """Errors that `condition` does not match (what `~condition` builds)."""

    condition: RetryCondition

    def __post_init__(self) -> None:
        _check_parts(RetryCondition, "retry", (self.condition,))

    def matches(self, error: BaseException) -> bool:
        return not self.condition.matches(error)

    def __repr__(self) -> str:
        return f"~{self.condition!r}"


# -- policies -------------------------------------------------------------------------------

_DEFAULT_STOP = stop_after_attempt(3)
_DEFAULT_WAIT = wait_fixed(1.0)
_DEFAULT_RETRY = retry_if_exception_type(Exception)


class Retry:
    """A retry policy made of a `stop` condition, a `wait` and a `retry` condition.

    After a failed attempt the step runs again when `retry` matches the error and `stop` does
    not stop, after `wait` seconds; `deadline` bounds attempts and waits together. The default
    is three attempts in all, one second apart, for any `Exception`.
    """

    def __init__(
        self,
        *,
        stop: StopCondition = _DEFAULT_STOP,
        wait: WaitStrategy = _DEFAULT_WAIT,
        retry: RetryCondition = _DEFAULT_RETRY,
        deadline: float | None = None,
    ) -> None:
        _check_parts(StopCondition, "stop", (stop,))
        _check_parts(WaitStrategy, "wait", (wait,))
        _check_parts(RetryCondition, "retry", (retry,))
        _check_non_negative("deadline", deadline)
        self.stop, self.wait, self.retry, self.deadline = stop, wait, retry, deadline

    def should_retry(self, attempt: int, error: BaseException, elapsed: float = 0.0) -> bool:
        """True when `retry` matches `error` and `stop` allows another attempt.

        `elapsed` (seconds since the first attempt) is what time-based stop conditions read;
        `retry_delay` passes the engine's clock, a direct call without it reads 0.
        """
        return self.retry.matches(error) and not self.stop.should_stop(
            AttemptState(attempt, elapsed)
        )

    def next_delay(self, attempt: int) -> float:
        return self.wait.delay(attempt)

    def is_retryable(self, error: BaseException) -> bool:
        return self.retry.matches(error)

    def __repr__(self) -> str:
        return (
            f"Retry(stop={self.stop!r}, wait={self.wait!r}, retry={self.retry!r}, "
            f"deadline={self.deadline!r})"
        )


class FixedRetry(Retry):
    """Up to `max_attempts` attempts in all, `delay` seconds apart."""

    def __init__(
        self,
        max_attempts: int = 3,
        delay: float = 1.0,
        retry_on: ErrorTypes = (Exception,),
        deadline: float | None = None,
    ) -> None:
        self.max_attempts = _check_attempts(max_attempts)
        self.retry_on = _check_error_types(retry_on)
        _check_non_negative("delay", delay)
        self.delay = delay
        super().__init__(
            stop=stop_after_attempt(max_attempts),
            wait=wait_fixed(delay),
            retry=retry_if_exception_type(*self.retry_on),
            deadline=deadline,
        )

    def __repr__(self) -> str:
        return f"FixedRetry(max_attempts={self.max_attempts}, delay={self.delay})"


class ExponentialBackoff(Retry):
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
        self.max_attempts = _check_attempts(max_attempts)
        self.retry_on = _check_error_types(retry_on)
        self.base, self.initial, self.cap, self.jitter = base, initial, cap, jitter
        super().__init__(
            stop=stop_after_attempt(max_attempts),
            wait=wait_exponential(initial=initial, base=base, cap=cap, jitter=jitter),
            retry=retry_if_exception_type(*self.retry_on),
            deadline=deadline,
        )

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
    """Stops calling a failing dependency for a while, around any retry policy.

    After `threshold` failures within `window` seconds the circuit opens and every step using
    this breaker fails fast with `CircuitOpen`; after `reset_after` seconds up to
    `half_open_max_calls` trial attempts run, and one success closes the circuit again while one
    failure re-opens it. A trial that ends without an outcome
    (cancelled, interrupted) gives its slot back through `abandon_attempt`.

    Share one instance between steps that call the same dependency: its state is shared by them
    (within one process) and guarded by a lock, which is never held while a step runs. While the
    circuit is closed, `retry` (any policy, such as a `Retry`, or None for a single attempt)
    decides retries.
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
        # Which half-open period a trial slot belongs to, so that a slot given back late never
        # frees one of a later period.
        self._generation = 0
        # The slot the current caller holds: the engine calls before_attempt and then
        # after_attempt or abandon_attempt from the same thread or asyncio task, and a context
        # variable is per thread and per task, so concurrent callers never release each
        # other's slots.
        self._held: contextvars.ContextVar[int | None] = contextvars.ContextVar(
            f"dotflow_circuit_breaker_trial_{id(self):x}", default=None
        )

    @property
    def state(self) -> BreakerState:
        """The current state, moving OPEN to HALF_OPEN once `reset_after` has passed."""
        with self._lock:
            self._maybe_half_open()
            return self._state

    def _maybe_half_open(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_after:
            self._state, self._trials = BreakerState.HALF_OPEN, 0
            self._generation += 1

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
                self._held.set(self._generation)

    def after_attempt(self, error: BaseException | None) -> None:
        if isinstance(error, CircuitOpen):
            return
        if self._held.get() is not None:
            self._held.set(None)  # the outcome below settles the half-open period
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

    def abandon_attempt(self) -> None:
        """Give back the trial slot this caller holds, if any; no outcome is recorded."""
        generation = self._held.get()
        if generation is None:
            return
        self._held.set(None)
        with self._lock:
            if (
                self._state is BreakerState.HALF_OPEN
                and self._generation == generation
                and self._trials > 0
            ):
                self._trials -= 1

    def should_retry(self, attempt: int, error: BaseException, elapsed: float = 0.0) -> bool:
        if isinstance(error, CircuitOpen) or self.retry is None:
            return False
        return _should_retry(self.retry, attempt, error, elapsed)

    def next_delay(self, attempt: int) -> float:
        return 0.0 if self.retry is None else self.retry.next_delay(attempt)

    def is_retryable(self, error: BaseException) -> bool:
        # an open circuit is a reason to come back later, not a permanent failure, even when
        # the inner policy's retry condition would not match CircuitOpen itself
        if isinstance(error, CircuitOpen) or self.retry is None:
            return True
        return is_retryable(self.retry, error)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(threshold={self.threshold}, window={self.window}, "
            f"reset_after={self.reset_after}, state={self.state.value})"
        )


NO_RETRY = FixedRetry(max_attempts=1, delay=0.0)


# -- decisions ------------------------------------------------------------------------------


def _should_retry(policy: RetryPolicy, attempt: int, error: BaseException, elapsed: float) -> bool:
    """`policy.should_retry`, with the clock for the policies whose stop conditions read it."""
    if isinstance(policy, Retry | CircuitBreaker):
        return policy.should_retry(attempt, error, elapsed)
    return policy.should_retry(attempt, error)


def retry_delay(
    policy: RetryPolicy, attempt: int, error: BaseException, elapsed: float
) -> float | None:
    """The wait before the next attempt, or None when the step has to fail now.

    This is the one place where a retry is decided; the sync and async engines both call it.
    """
    if not _should_retry(policy, attempt, error, elapsed):
        return None
    delay = policy.next_delay(attempt)
    deadline = policy.deadline
    if deadline is not None and elapsed + delay >= deadline:
        return None
    return delay


def fast_retry_wait(delay: float | None, attempt: int) -> tuple[float | None, float]:
    """The wait the engine makes for the policy's decision `delay` after attempt `attempt`,
    and the part of it skipped: under `fast_retries`, none is waited (and the attempts may be
    capped). The skipped seconds count as elapsed in the step's later decisions, so a deadline
    or `stop_after_delay` ends its retries where it would for real."""
    testing = CONFIG.testing
    if testing is None or delay is None:
        return delay, 0.0
    cap = testing.attempts
    if cap is not None and attempt >= cap:
        return None, 0.0
    return 0.0, delay


@runtime_checkable
class _ClassifiesErrors(Protocol):
    def is_retryable(self, error: BaseException) -> bool: ...


def is_retryable(policy: RetryPolicy, error: BaseException) -> bool:
    """Whether `policy` retries this kind of error at all, whatever attempts are left.

    Orchestrators use it to tell a permanent failure from an exhausted one. It asks the
    policy's retry condition (`retry_on`); a policy without `is_retryable` retries every kind,
    and a circuit breaker's open circuit is never permanent.
    """
    return not isinstance(policy, _ClassifiesErrors) or bool(policy.is_retryable(error))


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
        f"retry must be a number of attempts or a RetryPolicy (Retry, FixedRetry, "
        f"ExponentialBackoff, CircuitBreaker), got {type(retry).__name__}"
    )
