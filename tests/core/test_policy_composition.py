"""Composable policies: stop, wait and retry parts combined with `|`, `&`, `~` and `+`."""

from __future__ import annotations

import math
import pickle
import time

import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from dotflow_providers import (
    CircuitBreaker,
    CircuitOpen,
    ExponentialBackoff,
    FixedRetry,
    InvalidPolicy,
    Status,
    Workflow,
    action,
)
from dotflow_providers.retry import (
    AttemptState,
    Retry,
    RetryCondition,
    StopCondition,
    WaitStrategy,
    is_retryable,
    retry_delay,
    retry_if_exception,
    retry_if_exception_message,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    wait_combine,
    wait_exponential,
    wait_fixed,
    wait_random,
)

# -- generated parts --------------------------------------------------------------------------

seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
attempts = st.integers(min_value=1, max_value=10_000)
states = st.builds(AttemptState, attempt=attempts, elapsed=seconds)

stop_leaves = st.one_of(
    st.builds(stop_after_attempt, st.integers(min_value=1, max_value=50)),
    st.builds(stop_after_delay, seconds),
    st.just(stop_never()),
)
stops: st.SearchStrategy[StopCondition] = st.recursive(
    stop_leaves,
    lambda inner: st.one_of(
        st.builds(lambda a, b: a | b, inner, inner), st.builds(lambda a, b: a & b, inner, inner)
    ),
    max_leaves=6,
)

ERROR_TYPES = [OSError, ConnectionError, TimeoutError, ValueError, KeyError, RuntimeError]
MESSAGES = ["", "fatal", "fatal: disk", "temporary", "503 fatal"]
errors = st.builds(
    lambda cls, msg: cls(msg), st.sampled_from(ERROR_TYPES), st.sampled_from(MESSAGES)
)
retry_leaves = st.one_of(
    st.builds(
        lambda types: retry_if_exception_type(*types),
        st.lists(st.sampled_from(ERROR_TYPES), max_size=3),
    ),
    st.builds(lambda m: retry_if_exception_message(message=m), st.sampled_from(MESSAGES)),
    st.builds(lambda m: retry_if_exception_message(match=m), st.sampled_from(["fatal", ".*503"])),
)
retries: st.SearchStrategy[RetryCondition] = st.recursive(
    retry_leaves,
    lambda inner: st.one_of(
        st.builds(lambda a, b: a | b, inner, inner),
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a: ~a, inner),
    ),
    max_leaves=6,
)


@st.composite
def exponentials(draw: st.DrawFn, jitter: bool | None = None) -> wait_exponential:
    initial = draw(st.floats(min_value=0, max_value=100, allow_nan=False))
    cap = draw(st.floats(min_value=initial, max_value=1e4, allow_nan=False))
    base = draw(st.floats(min_value=1, max_value=10, allow_nan=False))
    return wait_exponential(
        initial=initial,
        base=base,
        cap=cap,
        jitter=draw(st.booleans()) if jitter is None else jitter,
    )


@st.composite
def randoms(draw: st.DrawFn) -> wait_random:
    low = draw(st.floats(min_value=0, max_value=100, allow_nan=False))
    return wait_random(low, draw(st.floats(min_value=low, max_value=200, allow_nan=False)))


def bounds(wait: WaitStrategy) -> tuple[float, float]:
    """The smallest and largest delay each kind of wait documents, added up for sums."""
    if isinstance(wait, wait_fixed):
        return wait.seconds, wait.seconds
    if isinstance(wait, wait_exponential):
        return 0.0, wait.cap
    if isinstance(wait, wait_random):
        return wait.low, wait.high
    assert isinstance(wait, wait_combine)
    parts = [bounds(w) for w in wait.waits]
    return sum(lo for lo, _ in parts), sum(hi for _, hi in parts)


wait_leaves = st.one_of(st.builds(wait_fixed, seconds), exponentials(), randoms())
waits: st.SearchStrategy[WaitStrategy] = st.recursive(
    wait_leaves, lambda inner: st.builds(lambda a, b: a + b, inner, inner), max_leaves=5
)


# -- the operators mean what they say --------------------------------------------------------


@given(stops, stops, states)
def test_or_stops_when_either_stops_and_when_both_stop(
    a: StopCondition, b: StopCondition, state: AttemptState
) -> None:
    assert (a | b).should_stop(state) == (a.should_stop(state) or b.should_stop(state))
    assert (a & b).should_stop(state) == (a.should_stop(state) and b.should_stop(state))


@given(st.integers(min_value=1, max_value=50), states)
def test_stop_after_attempt_counts_the_first_attempt(limit: int, state: AttemptState) -> None:
    assert stop_after_attempt(limit).should_stop(state) == (state.attempt >= limit)


@given(seconds, states)
def test_stop_after_delay_reads_the_time_since_the_first_attempt(
    budget: float, state: AttemptState
) -> None:
    assert stop_after_delay(budget).should_stop(state) == (state.elapsed >= budget)
    assert not stop_never().should_stop(state)


@given(retries, retries, errors)
def test_retry_conditions_combine_like_booleans(
    a: RetryCondition, b: RetryCondition, error: BaseException
) -> None:
    assert (a | b).matches(error) == (a.matches(error) or b.matches(error))
    assert (a & b).matches(error) == (a.matches(error) and b.matches(error))
    assert (~a).matches(error) == (not a.matches(error))
    assert (~~a).matches(error) == a.matches(error)


def test_exception_type_and_message_conditions() -> None:
    by_type = retry_if_exception_type(ConnectionError, TimeoutError)
    assert by_type.matches(ConnectionResetError())  # subclasses count
    assert not by_type.matches(OSError())
    assert not retry_if_exception_type().matches(Exception())  # no classes, no error
    starts = retry_if_exception_message(match="fatal")
    assert starts.matches(OSError("fatal: disk"))
    assert not starts.matches(OSError("503 fatal"))  # re.match, anchored at the start
    assert retry_if_exception_message(message="503").matches(OSError("503"))
    assert not retry_if_exception_message(message="503").matches(OSError("503 again"))
    assert retry_if_exception(lambda e: e.args == (7,)).matches(ValueError(7))


@given(waits, attempts)
def test_waits_stay_within_their_bounds_and_are_never_negative(
    wait: WaitStrategy, attempt: int
) -> None:
    low, high = bounds(wait)
    delay = wait.delay(attempt)
    assert 0 <= low <= delay <= high


@given(waits, waits, attempts)
def test_plus_adds_the_waits(a: WaitStrategy, b: WaitStrategy, attempt: int) -> None:
    # fixed waits are deterministic, so the sum is exact; random parts stay within bounds
    total = (a + b).delay(attempt)
    assert bounds(a)[0] + bounds(b)[0] <= total <= bounds(a)[1] + bounds(b)[1]
    assert (wait_fixed(1.5) + wait_fixed(2) + wait_fixed(0)).delay(attempt) == 3.5
    assert sum([wait_fixed(1), wait_fixed(2)]).delay(attempt) == 3  # type: ignore[union-attr]


@given(exponentials(jitter=False), attempts)
def test_exponential_without_jitter_is_initial_times_base_powers_capped(
    wait: wait_exponential, attempt: int
) -> None:
    try:
        plain = min(wait.cap, wait.initial * wait.base ** (attempt - 1))
    except OverflowError:
        plain = wait.cap
    if wait.initial == 0:
        plain = 0.0
    assert wait.delay(attempt) == plain
    # waits never shrink (within pow's rounding when base is a hair above 1)
    later, now = wait.delay(attempt + 1), wait.delay(attempt)
    assert later >= now or math.isclose(later, now, rel_tol=1e-12)


@given(exponentials(jitter=True), st.integers(min_value=1, max_value=2000))
def test_jitter_stays_between_half_and_one_and_a_half_times_the_plain_wait_under_the_cap(
    wait: wait_exponential, attempt: int
) -> None:
    plain = wait_exponential(wait.initial, wait.base, wait.cap, jitter=False).delay(attempt)
    delay = wait.delay(attempt)
    assert 0.5 * plain <= delay <= min(wait.cap, 1.5 * plain)


def test_huge_attempt_numbers_wait_the_cap_instead_of_overflowing() -> None:
    assert wait_exponential(initial=1, base=10, cap=30).delay(100_000) == 30
    assert wait_exponential(initial=0, base=10, cap=30).delay(100_000) == 0


# -- Retry: the three parts as one policy ----------------------------------------------------


@given(stops, retries, errors, states)
def test_retry_retries_when_the_condition_matches_and_the_stop_allows(
    stop: StopCondition, condition: RetryCondition, error: BaseException, state: AttemptState
) -> None:
    policy = Retry(stop=stop, wait=wait_fixed(0), retry=condition)
    expected = condition.matches(error) and not stop.should_stop(state)
    assert retry_delay(policy, state.attempt, error, state.elapsed) == (0.0 if expected else None)
    assert is_retryable(policy, error) == condition.matches(error)


@given(waits, attempts, seconds, st.none() | seconds)
def test_retry_delay_is_never_negative_and_never_reaches_the_deadline(
    wait: WaitStrategy, attempt: int, elapsed: float, deadline: float | None
) -> None:
    policy = Retry(stop=stop_never(), wait=wait, deadline=deadline)
    delay = retry_delay(policy, attempt, OSError(), elapsed)
    if delay is not None:
        assert 0 <= delay <= bounds(wait)[1]
        assert deadline is None or elapsed + delay < deadline


@given(
    st.integers(min_value=1, max_value=20),
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.lists(st.sampled_from(ERROR_TYPES), max_size=3),
    errors,
    st.integers(min_value=1, max_value=30),
)
def test_fixed_retry_is_the_retry_it_is_made_of(
    max_attempts: int, delay: float, retry_on: list[type[Exception]], error: Exception, n: int
) -> None:
    preset = FixedRetry(max_attempts, delay, tuple(retry_on))
    built = Retry(
        stop=stop_after_attempt(max_attempts),
        wait=wait_fixed(delay),
        retry=retry_if_exception_type(*retry_on),
    )
    assert preset.should_retry(n, error) == built.should_retry(n, error)
    assert preset.next_delay(n) == built.next_delay(n) == delay
    assert repr(preset) == f"FixedRetry(max_attempts={max_attempts}, delay={delay})"


def test_presets_keep_their_reprs_and_fields() -> None:
    backoff = ExponentialBackoff(max_attempts=4, base=3, initial=0.5, cap=9, jitter=False)
    assert repr(backoff) == (
        "ExponentialBackoff(max_attempts=4, base=3, initial=0.5, cap=9, jitter=False)"
    )
    assert (backoff.max_attempts, backoff.base, backoff.initial, backoff.cap) == (4, 3, 0.5, 9)
    assert backoff.stop == stop_after_attempt(4)
    assert backoff.wait == wait_exponential(initial=0.5, base=3, cap=9, jitter=False)
    assert isinstance(FixedRetry(), Retry)
    assert repr(FixedRetry()) == "FixedRetry(max_attempts=3, delay=1.0)"
    assert FixedRetry(retry_on=()).should_retry(1, ValueError()) is False


def test_composed_policy_reads_like_tenacity() -> None:
    policy = Retry(
        stop=stop_after_attempt(5) | stop_after_delay(30),
        wait=wait_exponential(initial=0.5, cap=10) + wait_random(0, 1),
        retry=retry_if_exception_type(OSError) & ~retry_if_exception_message(match="fatal"),
    )
    assert retry_delay(policy, 1, ConnectionError("reset"), elapsed=0.1) is not None
    assert retry_delay(policy, 1, OSError("fatal: disk gone"), elapsed=0.1) is None
    assert retry_delay(policy, 1, ValueError("bad"), elapsed=0.1) is None
    assert retry_delay(policy, 5, OSError("reset"), elapsed=0.1) is None  # five attempts done
    assert retry_delay(policy, 2, OSError("reset"), elapsed=30.0) is None  # 30 s spent
    assert "stop_after_attempt(max_attempts=5) | stop_after_delay(seconds=30)" in repr(policy)


@given(stops, retries, errors, states)
def test_composed_policies_survive_pickling_for_process_timeouts(
    stop: StopCondition, condition: RetryCondition, error: BaseException, state: AttemptState
) -> None:
    policy = Retry(stop=stop, wait=wait_fixed(2) + wait_exponential(jitter=True), retry=condition)
    copy = pickle.loads(pickle.dumps(policy))
    assert (copy.stop, copy.wait, copy.retry) == (policy.stop, policy.wait, policy.retry)
    assert copy.should_retry(state.attempt, error, state.elapsed) == policy.should_retry(
        state.attempt, error, state.elapsed
    )


def test_a_breaker_guards_a_composed_policy() -> None:
    inner = Retry(
        stop=stop_after_delay(10), wait=wait_fixed(0.5), retry=retry_if_exception_type(OSError)
    )
    breaker = CircuitBreaker(retry=inner, deadline=60)
    assert retry_delay(breaker, 1, OSError(), elapsed=1.0) == 0.5
    assert retry_delay(breaker, 1, OSError(), elapsed=10.0) is None  # the inner clock reaches it
    assert retry_delay(breaker, 1, CircuitOpen("open"), elapsed=1.0) is None
    assert is_retryable(breaker, CircuitOpen("open"))  # open is not permanent
    assert not is_retryable(breaker, ValueError())


def test_time_based_stops_see_the_engines_clock() -> None:
    calls: list[float] = []

    # Were the elapsed time not passed on, only the 1000-attempt bound would stop this step.
    @action(
        retry=Retry(stop=stop_after_delay(0.3) | stop_after_attempt(1000), wait=wait_fixed(0.01))
    )
    def down() -> None:
        calls.append(time.perf_counter())
        raise ConnectionError("still down")

    run = Workflow().add(down).start()
    assert run.status is Status.FAILED
    assert 2 <= run.steps[0].attempts < 1000
    # the attempt before the last failed inside the budget (the first call starts after the clock)
    assert calls[-2] - calls[0] < 0.3


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: stop_after_attempt(0), "at least 1"),
        (lambda: stop_after_delay(-1), "seconds"),
        (lambda: wait_fixed(math.nan), "seconds"),
        (lambda: wait_random(2, 1), "below low"),
        (lambda: wait_exponential(initial=5, cap=1), "cap"),
        (lambda: wait_exponential(base=0.9), "base"),
        (lambda: retry_if_exception_type("OSError"), "exception classes"),  # type: ignore[arg-type]
        (retry_if_exception_message, "exactly one"),
        (lambda: retry_if_exception_message(message="a", match="b"), "exactly one"),
        (lambda: stop_never() | 3, "StopCondition"),  # type: ignore[operator]
        (lambda: wait_fixed(1) + stop_never(), "WaitStrategy"),  # type: ignore[operator]
        (lambda: Retry(stop=wait_fixed(1)), "StopCondition"),  # type: ignore[arg-type]
        (lambda: Retry(deadline=-3), "deadline"),
        (lambda: Retry(stop=tenacity.stop_after_attempt(3)), "dotflow_providers.retry.stop_after"),  # type: ignore[arg-type]
        (lambda: Retry(wait=tenacity.wait_exponential_jitter()), "stop_\\*, wait_\\*"),  # type: ignore[arg-type]
    ],
)
def test_impossible_parts_are_named_errors(build: object, message: str) -> None:
    with pytest.raises(InvalidPolicy, match=message):
        build()  # type: ignore[operator]
