"""Flows for the per-call identity tests. Steps log to $DOTFLOW_TEST_DIR/steps.log, attempts
append their values to $DOTFLOW_TEST_DIR/attempts.jsonl, and `maybe_fail` fails once on request."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.transactions import transaction

from dotflow_prefect import dotflow_flow, dotflow_task, run_workflow
from dotflow_providers import Context, Workflow, action
from prefect import flow, task, unmapped

from ..sidefx import maybe_fail, ran
from . import twin_a, twin_b


def _dir() -> Path:
    return Path(os.environ["DOTFLOW_TEST_DIR"])


def record(values: Any) -> None:
    with (_dir() / "attempts.jsonl").open("a") as f:
        f.write(json.dumps(values) + "\n")


def attempts() -> list[Any]:
    return [json.loads(line) for line in (_dir() / "attempts.jsonl").read_text().splitlines()]


@dotflow_task
def stamp(label: str) -> str:
    """Not deterministic: two calls with the same label return two values."""
    ran(f"stamp-{label}")
    return f"{label}-{uuid.uuid4().hex[:8]}"


@flow(retries=1, retry_delay_seconds=0)
def stamps_twice() -> list[str]:
    values = [stamp("x"), stamp("x")]
    record(values)
    maybe_fail("stamps")
    return values


@flow(retries=1, retry_delay_seconds=0)
def stamps_mapped(labels: list[str]) -> list[str]:
    values = [str(v) for v in stamp.map(labels).result()]
    record(values)
    maybe_fail("mapped")
    return values


@flow
def twins() -> list[str]:
    return [twin_a.fetch(1), twin_b.fetch(1)]


@action
def greet(initial_context: Context) -> str:
    ran(f"greet-{initial_context.value}")
    return f"hello {initial_context.value}"


def daily() -> Workflow:
    return Workflow("daily-report").add(greet)


@flow(retries=1, retry_delay_seconds=0)
def looped(days: list[str]) -> list[str]:
    looped_results = [run_workflow(daily(), initial_context=day) for day in days]
    mapped = run_workflow.map(unmapped(daily()), initial_context=days).result()
    maybe_fail("looped")
    return [*looped_results, *mapped]


def _undo(_: object) -> None:
    ran("undo")
    (_dir() / "side-effect").unlink(missing_ok=True)


@dotflow_task(on_rollback=[_undo])
def write_side_effect() -> str:
    ran("write")
    (_dir() / "side-effect").write_text("done")
    return "written"


@task
def validate() -> None:
    maybe_fail("validate")


@flow(retries=1, retry_delay_seconds=0)
def transactional() -> bool:
    with transaction():
        write_side_effect()
        validate()
    return (_dir() / "side-effect").exists()


class Opaque:
    """No stable representation: its repr holds its address."""

    def __init__(self, name: str) -> None:
        self.name = name


@dotflow_task
def take(thing: Any) -> str:
    ran("take")
    return "taken"


@dotflow_task(checkpoint_key=lambda args: args["thing"].name)
def take_named(thing: Any) -> str:
    ran("take_named")
    return f"took {thing.name}"


@flow(retries=2, retry_delay_seconds=0)
def opaque_flow() -> str:
    ran("flow")
    return take(Opaque("a"))


@flow(retries=1, retry_delay_seconds=0)
def named_flow() -> str:
    result = take_named(Opaque("a"))
    maybe_fail("named")
    return result


@task(cache_policy=NO_CACHE)
def attempt_number() -> int:
    """0 on a flow run's first attempt, 1 on its retry (a plain Prefect task, not checkpointed)."""
    counter = _dir() / "attempt-number"
    number = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(number + 1))
    return number


@dotflow_task
def times_ten(x: int) -> int:
    ran(f"times_ten-{x}")
    return x * 10


@flow(retries=1, retry_delay_seconds=0)
def upstream_changes_on_retry() -> int:
    """`times_ten` gets a future that resolves to 0 on the first attempt and to 1 on the retry."""
    out = times_ten.submit(attempt_number.submit()).result()
    record(out)
    maybe_fail("after-times-ten")
    return out


@task(retries=1, retry_delay_seconds=0, cache_policy=NO_CACHE)
def outer() -> str:
    """A plain task that calls a dotflow task, then fails once after it completed."""
    value = stamp("x")
    maybe_fail("outer")
    return value


@flow(retries=1, retry_delay_seconds=0)
def nested_then_direct() -> dict[str, str]:
    # the task's retry counts its own call again: it must not shift the flow's own call
    values = {"outer": outer(), "direct": stamp("x")}
    record(values)
    maybe_fail("flow")
    return values


@flow(retries=1, retry_delay_seconds=0)
def child_flow() -> str:
    value = stamp("x")
    maybe_fail("child")
    return value


@dotflow_flow(retries=1, retry_delay_seconds=0)
def subflow_then_direct() -> dict[str, str]:
    # the subflow's retry (inside this flow's scope) must not shift this flow's own call
    values = {"child": child_flow(), "parent": stamp("x")}
    record(values)
    maybe_fail("parent")
    return values


@task(cache_policy=NO_CACHE)
def stamps_inside() -> list[str]:
    return [stamp("x"), stamp("x")]


@flow(retries=1, retry_delay_seconds=0)
def twice_in_a_task() -> list[str]:
    values = stamps_inside()
    record(values)
    maybe_fail("twice")
    return values
