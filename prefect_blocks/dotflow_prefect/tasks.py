"""Running the engine inside Prefect: `dotflow_task` for one function, `run_workflow` for many.

Prefect schedules and observes; the engine retries and times out each step and checkpoints it,
so when Prefect retries the flow run, completed work is restored instead of redone.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pydantic_core
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext
from prefect.runtime import deployment
from prefect.settings import PREFECT_HOME

from dotflow_providers import (
    CheckpointStore,
    ConfigurationError,
    FileStore,
    MemoryStore,
    Run,
    Workflow,
    action,
)
from dotflow_providers.tracing import LoggingTracer, Tracers
from prefect import get_run_logger, task

from .blocks import resolve_policy, resolve_store


def default_store() -> CheckpointStore:
    """Checkpoints under Prefect's home, for flows that run on this machine.

    A flow run that comes from a deployment may run on any worker, and a retry on another one
    would not find the first one's local files: there, a shared store must be chosen.
    """
    if deployment.id:
        raise ConfigurationError(
            f"this flow run comes from deployment {deployment.name!r}, so its retries may run on "
            "another worker that cannot see this machine's files; pass a shared store, e.g. "
            "store=DotflowS3Store.load('...') or store='s3://bucket/prefix' (or "
            "store='file:///shared/folder' if every worker mounts it)"
        )
    return FileStore(Path(PREFECT_HOME.value()) / "dotflow-checkpoints")


def _flow_run_id() -> str:
    context = TaskRunContext.get()
    if context is None or context.task_run.flow_run_id is None:
        raise ConfigurationError("dotflow Prefect tasks must run inside a flow")
    return str(context.task_run.flow_run_id)


def _call_digest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    plain = pydantic_core.to_jsonable_python([args, kwargs], fallback=repr)
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dotflow_task(
    fn: Callable[..., Any] | None = None,
    *,
    retry: Any = None,
    timeout: float | None = None,
    store: Any = None,
    checkpoint: bool = True,
    name: str | None = None,
    **task_options: Any,
) -> Any:
    """A Prefect task whose body runs through the engine.

    `retry` is a number of attempts, a policy or a `DotflowRetryPolicy` block; `timeout` bounds
    each attempt. With `checkpoint`, the output is stored under a key made of the flow run, the
    task and its arguments, so when Prefect retries the flow run this call is not run again:
    its output is restored. Other keyword arguments go to `prefect.task`.
    """

    def decorate(function: Callable[..., Any]) -> Any:
        step_name = name or function.__name__

        def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Workflow:
            flow_run = _flow_run_id()
            context = TaskRunContext.get()
            task_key = context.task_run.task_key if context else step_name
            workflow_id = f"prefect/{flow_run}/{task_key}/{_call_digest(args, kwargs)}"
            chosen = resolve_store(store) if checkpoint else MemoryStore()
            step = action(retry=resolve_policy(retry), timeout=timeout, name=step_name)(
                functools.partial(function, *args, **kwargs)
            )
            return Workflow(workflow_id, store=chosen or default_store()).add(step)

        def outcome(run: Run) -> Any:
            failed = run.failed_step
            if failed is not None and failed.exception is not None:
                raise failed.exception
            return run.raise_for_status().output

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return outcome(await bind(args, kwargs).start_async())

            return _as_task(run_async, step_name, task_options)

        @functools.wraps(function)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            return outcome(bind(args, kwargs).start())

        return _as_task(run_sync, step_name, task_options)

    return decorate if fn is None else decorate(fn)


def _as_task(body: Callable[..., Any], name: str, options: dict[str, Any]) -> Any:
    return cast(Any, task)(body, name=name, **options)


def _artifact_key(workflow_id: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"dotflow-{workflow_id}".lower()).strip("-")[:100]


def steps_markdown(run: Run) -> str:
    """The run's step table in Markdown (status, attempts, duration, restored, error)."""
    lines = [
        f"### dotflow `{run.workflow_id}`: {run.status.value}",
        "",
        "| # | step | status | attempts | duration (s) | restored | error |",
        "| - | ---- | ------ | -------- | ------------ | -------- | ----- |",
    ]
    for step in run.steps:
        duration = "" if step.duration is None else f"{step.duration:.3f}"
        error = (step.error or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {step.index} | {step.name} | {step.status.value} | {step.attempts} | "
            f"{duration} | {'yes' if step.restored else ''} | {error} |"
        )
    return "\n".join(lines)


@task(name="dotflow-workflow")
def run_workflow(
    workflow: Workflow | str,
    *,
    workflow_id: str | None = None,
    store: Any = None,
    mode: str = "sequential",
    initial_context: Any = None,
) -> Any:
    """Run a whole `Workflow` as one Prefect task, with a checkpoint per step.

    The default workflow id is derived from the flow run id, so a flow-run retry resumes.
    Each step is logged; a Markdown artifact holds the step table. Returns the last step's
    output; a failed run raises, so Prefect's retries apply.
    """
    from dotflow_providers import load_workflow

    base = load_workflow(workflow)
    chosen = resolve_store(store) or default_store()
    bound = base.copy(
        workflow_id=workflow_id
        or f"prefect/{_flow_run_id()}/{base.workflow_id_for(initial_context)}",
        store=chosen,
        tracer=Tracers(
            base.tracer,
            LoggingTracer(get_run_logger(), logging.INFO, starts=False, retries=True),
        ),
    )
    run = bound.start(mode=mode, initial_context=initial_context)
    create_markdown_artifact(
        steps_markdown(run),
        key=_artifact_key(run.workflow_id),
        description=f"dotflow steps of {run.workflow_id}",
    )
    return run.raise_for_status().output
