"""What the engine tells Airflow when a try fails: fail now, retry not before, or Airflow's own."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from dotflow_airflow.operators._retry import (
    DotflowRetryPolicy,
    WorkflowTryFailed,
    deadline_anchor,
    decide,
)

from ..sidefx import steps_ran
from .test_operator import task_instance, work

__all__ = ["work"]

seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(
    retryable=st.booleans(),
    breaker_open=st.booleans(),
    airflow_delay=seconds,
    reset_after=seconds,
    deadline=st.none() | seconds,
    since_first=seconds,
    now=st.floats(min_value=1e9, max_value=2e9),
)
def test_verdicts_never_retry_the_unfixable_early_or_past_a_deadline(
    retryable: bool,
    breaker_open: bool,
    airflow_delay: float,
    reset_after: float,
    deadline: float | None,
    since_first: float,
    now: float,
) -> None:
    verdict = decide(
        step="s",
        retryable=retryable,
        airflow_delay=airflow_delay,
        now=now,
        breaker_open=breaker_open,
        reset_after=reset_after,
        deadline=deadline,
        first_attempt=now - since_first,
    )
    if not retryable:
        assert verdict.fail
        return
    wait = max(airflow_delay, reset_after) if breaker_open else airflow_delay
    if not verdict.fail:
        # an open breaker is waited out; Airflow's own delay is never shortened
        if breaker_open:
            assert verdict.delay == wait
        else:
            assert verdict.delay is None
        if deadline is not None:
            assert now + wait < (now - since_first) + deadline
    else:
        # failing a retryable step only ever happens for its deadline
        assert deadline is not None
        assert now + wait >= (now - since_first) + deadline


@given(
    stored=st.dictionaries(st.text(max_size=5), st.floats(allow_nan=True) | st.text(max_size=3)),
    first=st.floats(min_value=0, max_value=2e9),
)
def test_the_deadline_anchor_is_the_earliest_first_attempt_over_every_try(
    stored: dict[str, object], first: float
) -> None:
    anchor, anchors = deadline_anchor(stored, "s", first)
    previous = stored.get("s")
    if isinstance(previous, float) and math.isfinite(previous):
        assert anchor == min(previous, first)
    else:  # nothing usable stored: this try's first attempt
        assert anchor == first
    assert anchors["s"] == anchor
    assert all(isinstance(v, float) for v in anchors.values())


def test_the_retry_policy_turns_a_wait_into_airflows_retry_delay() -> None:
    from airflow.sdk import RetryAction

    policy = DotflowRetryPolicy()
    decision = policy.evaluate(WorkflowTryFailed("x", retry_after=42.0, reason="open"), 1, 3)
    assert decision.action is RetryAction.RETRY
    assert decision.retry_delay == timedelta(seconds=42)
    assert policy.evaluate(WorkflowTryFailed("x"), 1, 3).action is RetryAction.DEFAULT
    assert policy.evaluate(ValueError("x"), 1, 3).action is RetryAction.DEFAULT


def test_the_users_own_retry_policy_still_decides_other_failures() -> None:
    from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

    from dotflow_airflow import DotflowOperator

    theirs = ExceptionRetryPolicy(rules=[RetryRule(exception=KeyError, action=RetryAction.FAIL)])
    operator = DotflowOperator(task_id="t", workflow="dotflow_dags:etl", retry_policy=theirs)
    assert isinstance(operator.retry_policy, DotflowRetryPolicy)
    assert operator.retry_policy.evaluate(KeyError("k"), 1, 3).action is RetryAction.FAIL


def test_an_open_circuit_breaker_delays_the_airflow_retry_until_its_reset(work: Path) -> None:
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from dotflow_dags import BREAKER, breaker
    from sqlalchemy import select

    (work / "fail-guarded").touch()
    dag_run = breaker.test()
    assert dag_run.state == "success"
    ti = task_instance(dag_run)
    assert ti.try_number == 2
    # try 2 restored extract and made the breaker's trial call, which closed it
    assert steps_ran(work) == ["extract", "guarded", "guarded"]
    with create_session() as session:
        first = session.scalar(
            select(TaskInstanceHistory).where(
                TaskInstanceHistory.dag_id == dag_run.dag_id,
                TaskInstanceHistory.run_id == dag_run.run_id,
                TaskInstanceHistory.try_number == 1,
            )
        )
        assert first is not None
        # retry_delay is 0: only the breaker's verdict can have asked for its reset time
        assert first.retry_delay_override == BREAKER.reset_after
        assert ti.start_date >= first.end_date + timedelta(seconds=BREAKER.reset_after)


def test_a_step_whose_deadline_passes_before_the_next_try_fails_the_task(work: Path) -> None:
    from dotflow_dags import deadline

    dag_run = deadline.test()
    assert dag_run.state == "failed"
    ti = task_instance(dag_run)
    assert ti.try_number == 1  # retries=2, but the next try would start past the deadline
    assert steps_ran(work) == ["extract", "hurried"]
