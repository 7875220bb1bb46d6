"""The testing switch: one locked config object that `set_testing` and `fast_retries` change."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dotflow_providers import FixedRetry
from dotflow_providers.retry import CONFIG, FastRetryMode, fast_retry_wait, retry_delay
from dotflow_providers.testing import fast_retries, set_testing

SLOW = FixedRetry(max_attempts=10, delay=60)


def delay_after(attempt: int) -> float | None:
    """The wait the engine makes after `attempt`: the policy's, as the testing mode changes it."""
    wait, _ = fast_retry_wait(
        retry_delay(SLOW, attempt, ConnectionError("down"), elapsed=0.0), attempt
    )
    return wait


@pytest.fixture(autouse=True)
def testing_off() -> Iterator[None]:
    set_testing(False)
    yield
    set_testing(False)


def test_off_by_default_so_policies_wait_as_configured() -> None:
    assert CONFIG.testing is None
    assert delay_after(1) == 60


def test_nested_fast_retries_restore_the_mode_they_replaced() -> None:
    with fast_retries(attempts=5):
        assert (delay_after(1), delay_after(5)) == (0.0, None)
        with fast_retries(attempts=2):
            assert (delay_after(1), delay_after(2)) == (0.0, None)
            with fast_retries():
                assert delay_after(9) == 0.0  # no cap: the policy's own ten attempts
            assert CONFIG.testing == FastRetryMode(attempts=2)
        assert CONFIG.testing == FastRetryMode(attempts=5)
        assert (delay_after(4), delay_after(5)) == (0.0, None)
    assert CONFIG.testing is None
    assert delay_after(1) == 60


def test_fast_retries_restores_a_mode_set_with_set_testing_and_survives_errors() -> None:
    seen: list[float | None] = []

    def fails_inside() -> None:
        with fast_retries(attempts=1):
            seen.append(delay_after(1))
            raise RuntimeError("boom")

    set_testing(True, attempts=3)
    with pytest.raises(RuntimeError, match="boom"):
        fails_inside()
    assert seen == [None]
    assert CONFIG.testing == FastRetryMode(attempts=3)
    assert delay_after(2) == 0.0


def test_set_testing_inside_a_block_lasts_only_until_the_block_ends() -> None:
    with fast_retries(attempts=2):
        set_testing(False)
        assert delay_after(1) == 60
    assert CONFIG.testing is None


def test_the_mode_is_process_wide_not_per_thread() -> None:
    seen: list[float | None] = []
    with fast_retries(attempts=4):
        worker = threading.Thread(target=lambda: seen.append(delay_after(1)))
        worker.start()
        worker.join()
    assert seen == [0.0]


def test_swap_returns_what_it_replaced() -> None:
    first = FastRetryMode(attempts=7)
    assert CONFIG.swap_testing(first) is None
    assert CONFIG.swap_testing(None) is first


@pytest.mark.parametrize("attempts", [0, -1, True, 2.5])
def test_impossible_attempt_caps_are_refused(attempts: object) -> None:
    with pytest.raises(ValueError, match="attempts"):
        set_testing(True, attempts=attempts)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempts"), fast_retries(attempts=attempts):  # type: ignore[arg-type]
        pass
    assert CONFIG.testing is None  # a refused mode changes nothing
