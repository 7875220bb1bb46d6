"""Running the engine inside Prefect: `dotflow_task` for one function, `run_workflow` for many.

Prefect schedules and observes; the engine retries and times out each step and checkpoints it,
so when Prefect retries the flow run, completed work is restored instead of redone.

How a call finds its checkpoint is in `_identity`: flow run, function, arguments, occurrence.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast, overload

from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger
from prefect.runtime import deployment
from prefect.settings import PREFECT_HOME
from prefect.states import Failed
from prefect.task_runners import TaskRunner
from prefect.tasks import Task
from prefect.transactions import get_transaction
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect.utilities.callables import get_call_parameters

from dotflow_providers import (
    CheckpointStore,
    Compensation,
    CompensationFailed,
    ConfigurationError,
    FileStore,
    LeaseConfig,
    MemoryStore,
    RolledBack,
    Run,
    Workflow,
    action,
    load_workflow,
)
from dotflow_providers.integration import PERMANENT_ERRORS, id_part, markdown_table
from dotflow_providers.tracing import Tracers

from ._identity import (
    OCCURRENCES,
    CallKey,
    CheckpointKey,
    arguments_digest,
    calling,
    current_call,
    function_name,
)
from ._logging import RunLogTracer, forward_engine_logs
from ._scope import current_scope, start_in_scope, start_in_scope_async
from .blocks import resolve_policy, resolve_store

P = ParamSpec("P")
R = TypeVar("R")


#: Turns a call's parameters into (its name, the digest of its arguments, its step names).
Identify = Callable[[dict[str, Any]], tuple[str, str, tuple[str, ...]]]

forward_engine_logs()


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


class DotflowTask(Task[P, R]):
    """A Prefect task that gives each call its checkpoint identity when the call is made.

    Calling, `.submit` and `.map` draw the call's occurrence in the flow's thread, in the order
    the flow makes the calls, and hand it to the run through a context variable (Prefect's
    thread-pool runner copies the context at submission). Runners that do not carry the context
    (process pools, Dask, Ray) count occurrences when the call starts instead.
    """

    _identify: Identify

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> CallKey:
        return OCCURRENCES.next(*self._identify(get_call_parameters(self.fn, args, kwargs)))

    def __call__(  # type: ignore[override]
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> Any:
        with _ending_the_flow_run_on_permanent_errors():
            key = self._key(args, kwargs)
        with calling(key):
            # Task's overloads type `return_state` through P.kwargs; the call is Task's own
            parent: Any = super()
            result = parent.__call__(*args, return_state=return_state, wait_for=wait_for, **kwargs)
        if inspect.isawaitable(result):
            awaitable = result

            async def keyed() -> Any:  # the coroutine runs later, in the awaiting context
                with calling(key):
                    return await awaitable

            return keyed()
        return result

    def submit(  # type: ignore[override]
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> Any:
        with _ending_the_flow_run_on_permanent_errors():
            key = self._key(args, kwargs)
        parent: Any = super()
        with calling(key):
            return parent.submit(*args, return_state=return_state, wait_for=wait_for, **kwargs)

    def map(
        self,
        *args: Any,
        return_state: bool = False,
        wait_for: Any = None,
        deferred: bool = False,
        **kwargs: Any,
    ) -> Any:
        context = FlowRunContext.get()
        runner = getattr(context, "task_runner", None)
        if deferred or not isinstance(runner, TaskRunner):
            return super().map(
                *args, return_state=return_state, wait_for=wait_for, deferred=deferred, **kwargs
            )
        parameters = get_call_parameters(self.fn, args, kwargs, apply_defaults=False)
        # Prefect's own mapping (unmapped, quote, defaults), with each element's identity drawn
        # as it is submitted, in element order.
        futures = TaskRunner.map(
            cast(TaskRunner[Any], _KeyingRunner(runner, self)),
            cast(Task[Any, Any], self),
            parameters,
            wait_for,
        )
        if return_state:
            for future in futures:
                future.wait()
            return [future.state for future in futures]
        return futures

    def with_options(self, **options: Any) -> DotflowTask[P, R]:
        plain = super().with_options(**options)
        copy = DotflowTask.__new__(DotflowTask)
        copy.__dict__.update(plain.__dict__)
        copy._identify = self._identify
        return copy


class _KeyingRunner:
    """Stands in for the flow's task runner in `TaskRunner.map`, keying each submission."""

    def __init__(self, runner: TaskRunner[Any], task: DotflowTask[Any, Any]) -> None:
        self._runner, self._task, self._started = runner, task, True

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Any = None,
        dependencies: Any = None,
    ) -> Any:
        with _ending_the_flow_run_on_permanent_errors():
            identity = self._task._identify(parameters)
        with calling(OCCURRENCES.next(*identity)):
            return self._runner.submit(task, parameters, wait_for, dependencies)


def _make_task(
    body: Callable[..., Any], identify: Identify, options: dict[str, Any]
) -> DotflowTask[Any, Any]:
    # Our checkpoints are the cache: Prefect's default policy would hash the inputs (a Workflow
    # cannot be hashed, so it logs an error) and could skip the body that restores a checkpoint.
    options.setdefault("cache_policy", NO_CACHE)
    options["retry_condition_fn"] = _retry_unless_permanent(options.get("retry_condition_fn"))
    made: DotflowTask[Any, Any] = DotflowTask(body, **options)
    made._identify = identify
    return made


def _retry_unless_permanent(user: Any) -> Callable[[Task[..., Any], Any, State[Any]], Any]:
    """Prefect's `retry_condition_fn`: never retry the task on an error no retry can fix."""

    def retry_condition(task: Task[..., Any], task_run: Any, state: State[Any]) -> Any:
        error = state.result(raise_on_failure=False)
        if isinstance(error, PERMANENT_ERRORS):
            return False
        return True if user is None else user(task, task_run, state)

    return retry_condition


def _end_flow_run(error: BaseException) -> None:
    """Fail the flow run for good: Prefect's retry rule only turns a Running->Failed transition
    into a retry, so a forced Failed state ends the run without spending its retries."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    message = f"{type(error).__name__}: {error} (no retry can fix this; flow retries skipped)"
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Failed(message=message), force=True)


@contextmanager
def _ending_the_flow_run_on_permanent_errors() -> Iterator[None]:
    try:
        yield
    except PERMANENT_ERRORS as error:
        _end_flow_run(error)
        raise


def _forget_on_rollback(workflow: Workflow, initial_context: Any = None) -> None:
    """Inside a Prefect transaction, a rollback deletes this call's checkpoints, so a retry runs
    it again instead of restoring work that the rollback undid. Called once the call succeeded
    (a failed task's own transaction rolls back too, and its checkpoints must stay)."""
    transaction = get_transaction()
    if transaction is None:
        return

    def forget_dotflow_checkpoint(_: object) -> None:
        workflow.reset(initial_context)  # (which a derived workflow id depends on)

    # appended before the engine stages the task's own hooks, so it runs after them
    transaction.on_rollback_hooks.append(forget_dotflow_checkpoint)


def _compensate_on_rollback(
    workflow: Workflow,
    run: Run,
    initial_context: Any,
    mode: str,
    report: Callable[[Run], None],
) -> None:
    """Inside a Prefect transaction, a rollback undoes this run's completed stages, newest
    first, from their checkpoints (`Workflow.compensate`, so it also works once the task has
    long finished), then forgets the call's other checkpoints, so a retry runs it again.

    A compensation that fails raises from the hook: Prefect logs it and the transaction's own
    error goes on; the steps not undone keep their checkpoints (their work is still in place),
    so a retry restores them and a second rollback resumes the compensation.
    """
    transaction = get_transaction()
    if transaction is None:
        return

    def compensate_dotflow_workflow(rolled_back: Any) -> None:
        key = getattr(rolled_back, "key", None)
        reason = RolledBack(
            f"the Prefect transaction{f' {key!r}' if key else ''} around workflow "
            f"{run.workflow_id!r} rolled back"
        )
        logger = _run_logger()
        try:
            done = workflow.compensate(initial_context, mode=mode, error=reason)
        except CompensationFailed as failure:
            _mark_compensated(run, failure.compensation)
            report(run)
            raise
        _mark_compensated(run, done)
        workflow.reset(initial_context)
        logger.info(
            "workflow %s: the transaction rolled back; compensated %s",
            run.workflow_id,
            ", ".join(done.compensated) or "no step (none has a compensation)",
        )
        report(run)

    # appended before the engine stages the task's own hooks, so it runs after them
    transaction.on_rollback_hooks.append(compensate_dotflow_workflow)


def _mark_compensated(run: Run, compensation: Compensation) -> None:
    """Copy what the compensation undid onto the run's records (for the step tables)."""
    for record, undone in zip(run.steps, compensation.steps, strict=True):
        record.compensated = record.compensated or undone.compensated
        record.rollback_error = undone.rollback_error or record.rollback_error


def _run_logger() -> logging.LoggerAdapter[Any] | logging.Logger:
    # Prefect sends run logs to the API only for runs inside a flow run
    if FlowRunContext.get() is not None:
        return cast(logging.LoggerAdapter[Any], get_run_logger())
    return logging.getLogger("dotflow_prefect")


@overload
def dotflow_task(fn: Callable[P, R], /) -> DotflowTask[P, R]: ...


@overload
def dotflow_task(
    fn: None = None,
    /,
    *,
    retry: Any = None,
    timeout: float | None = None,
    store: Any = None,
    checkpoint: bool = True,
    checkpoint_key: CheckpointKey | None = None,
    lock: LeaseConfig | bool = True,
    name: str | None = None,
    **task_options: Any,
) -> Callable[[Callable[P, R]], DotflowTask[P, R]]: ...


def dotflow_task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    retry: Any = None,
    timeout: float | None = None,
    store: Any = None,
    checkpoint: bool = True,
    checkpoint_key: CheckpointKey | None = None,
    lock: LeaseConfig | bool = True,
    name: str | None = None,
    **task_options: Any,
) -> Any:
    """A Prefect task whose body runs through the engine, with a checkpoint per call.

    `retry` is a number of attempts, a policy or a `DotflowRetryPolicy` block; `timeout` bounds
    each attempt. With `checkpoint`, the output is stored under the flow run, the function (module
    and qualified name), the digest of the arguments and the call's occurrence, so when Prefect
    retries the flow run each call restores its own output. Arguments without a stable digest are
    refused: give `checkpoint_key`, a function of the arguments (by parameter name) returning a
    string, like Prefect's `cache_key_fn`. `lock` is the call's lease config. Outside a flow,
    the occurrence counts calls in this process. Other keyword arguments go to `prefect.task`.
    """

    def decorate(function: Callable[..., Any]) -> DotflowTask[Any, Any]:
        step_name = name or function.__name__
        identity = function_name(function)

        def identify(parameters: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
            return identity, arguments_digest(parameters, checkpoint_key), (step_name,)

        def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Workflow, CallKey]:
            parameters = get_call_parameters(function, args, kwargs)
            inputs = arguments_digest(parameters, checkpoint_key)
            key = current_call(identity) or OCCURRENCES.next(identity, inputs, (step_name,))
            chosen = resolve_store(store) if checkpoint else MemoryStore()
            scope = current_scope()
            if chosen is None and scope is not None:
                chosen = scope.store
            step = action(retry=resolve_policy(retry), timeout=timeout, name=step_name)(
                functools.partial(function, *args, **kwargs)
            )
            # Its code is the function's, bound to its arguments' digest (or the user's
            # checkpoint_key, which may stand for arguments that have none): all the parameters
            # are bound, so the step takes no initial context, and a future that resolved to
            # another value than last time is a change that runs the call again.
            step = dataclasses.replace(step, code=functools.partial(function, inputs))
            workflow = Workflow(
                key.workflow_id,
                store=chosen or default_store(),
                on_change="rerun",
                lock=lock,
                tracer=RunLogTracer(_run_logger()),
            )
            return workflow.add(step), key

        def outcome(run: Run) -> Any:
            failed = run.failed_step
            if failed is not None and failed.exception is not None:
                raise failed.exception
            return run.raise_for_status().output

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                scope, run = current_scope(), None
                try:
                    workflow, key = bind(args, kwargs)
                    rerun = None if scope is None else scope.rerun_step(key, workflow)
                    try:
                        run = await start_in_scope_async(
                            workflow,
                            lambda w: w.start_async(rerun_from=rerun),
                            _run_logger(),
                        )
                    finally:
                        if scope is not None:
                            scope.record(key, workflow.store, run, sys.exc_info()[1])
                except PERMANENT_ERRORS as error:
                    await asyncio.to_thread(_end_flow_run, error)
                    raise
                output = outcome(run)
                _forget_on_rollback(workflow)
                return output

            return _make_task(run_async, identify, {"name": step_name, **task_options})

        @functools.wraps(function)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            scope, run = current_scope(), None
            with _ending_the_flow_run_on_permanent_errors():
                workflow, key = bind(args, kwargs)
                rerun = None if scope is None else scope.rerun_step(key, workflow)
                try:
                    run = start_in_scope(
                        workflow,
                        lambda w: w.start(rerun_from=rerun),
                        _run_logger(),
                    )
                finally:
                    if scope is not None:
                        scope.record(key, workflow.store, run, sys.exc_info()[1])
            output = outcome(run)
            _forget_on_rollback(workflow)
            return output

        return _make_task(run_sync, identify, {"name": step_name, **task_options})

    return decorate if fn is None else decorate(fn)


def _artifact_key(workflow_id: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"dotflow-{workflow_id}".lower()).strip("-")[:100]


def steps_markdown(run: Run) -> str:
    """The run's step table in Markdown (the core's table, under a title)."""
    table = markdown_table([step.summary() for step in run.steps])
    undone = [step.name for step in reversed(run.steps) if step.compensated]
    status = run.status.value + (
        f", rolled back: compensated {', '.join(undone)}" if undone else ""
    )
    return f"### dotflow `{run.workflow_id}`: {status}\n\n{table}"


def _workflow_identity(parameters: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    base = load_workflow(parameters["workflow"])
    name = parameters.get("workflow_id") or base.workflow_id_for(None)
    digest = arguments_digest({"c": parameters.get("initial_context")}, None)
    return id_part(name), digest, tuple(base.steps)


def _run_workflow(
    workflow: Workflow | str,
    *,
    workflow_id: str | None = None,
    store: Any = None,
    mode: str = "sequential",
    keep_going: bool = False,
    initial_context: Any = None,
    max_workers: int | None = None,
    compensate: bool = False,
    strict_recovery: bool = False,
    lock: LeaseConfig | bool | None = None,
    commit_every: int | None = None,
    commit_interval: float | None = None,
) -> Any:
    """Run a whole `Workflow` as one Prefect task, with a checkpoint per step (or per batch
    of `commit_every` steps).

    The default workflow id is made of the flow run, the workflow's id, the digest of
    `initial_context` and the call's occurrence, so a flow-run retry resumes each call (also in
    loops and `.map`); an explicit `workflow_id` is used as given. The other arguments are
    `Workflow.start`'s (`max_workers` is `max_concurrency` in the async modes) and `lock` the
    lease config. Restored, completed and failed steps go to the run's logs; a Markdown artifact
    holds the step table. Returns the last step's output; a failed run raises, so Prefect's
    retries apply, except for errors no retry can fix, which end the flow run.
    """
    with _ending_the_flow_run_on_permanent_errors():
        base = load_workflow(workflow)
        name, submitted, steps = _workflow_identity(
            {"workflow": base, "workflow_id": workflow_id, "initial_context": initial_context}
        )
        key = current_call(name) or OCCURRENCES.next(name, submitted, steps)
        resolved = arguments_digest({"c": initial_context}, None)
        scope = current_scope()
        bound = base.copy(
            workflow_id=workflow_id or key.workflow_id,
            store=resolve_store(store) or (scope and scope.store) or default_store(),
            lock=lock,
            commit_every=commit_every,
            commit_interval=commit_interval,
            # a context that came from a future may differ from the one the id was drawn with
            on_change="rerun" if resolved != key.digest else None,
            tracer=Tracers(base.tracer, RunLogTracer(_run_logger())),
        )
        rerun = None if scope is None else scope.rerun_step(key, bound)
        run: Run | None = None

        def start(workflow: Workflow) -> Run | None:
            if mode.startswith("async"):
                return run_coro_as_sync(
                    workflow.start_async(
                        mode,
                        keep_going,
                        initial_context=initial_context,
                        max_concurrency=max_workers,
                        compensate=compensate,
                        strict_recovery=strict_recovery,
                        rerun_from=rerun,
                    )
                )
            return workflow.start(
                mode,
                keep_going,
                initial_context=initial_context,
                max_workers=max_workers,
                compensate=compensate,
                strict_recovery=strict_recovery,
                rerun_from=rerun,
            )

        try:
            run = start_in_scope(bound, start, _run_logger())
        finally:
            if scope is not None:
                scope.record(key, bound.store, run, sys.exc_info()[1])
    assert run is not None  # run_coro_as_sync's type allows None; start_async returns a Run
    if TaskRunContext.get() is not None:
        _report_steps(run)
    output = run.raise_for_status().output
    # only a completed run is kept by the transaction, so only its rollback has work to undo
    if compensate:

        def rolled_back(done: Run) -> None:
            if scope is not None:
                scope.record(key, bound.store, done, None)
            _report_steps(done)

        _compensate_on_rollback(bound, run, initial_context, mode, rolled_back)
    else:
        _forget_on_rollback(bound, initial_context)
    return output


def _report_steps(run: Run) -> None:
    """The run's step table as the call's Markdown artifact (again after a compensation)."""
    try:
        create_markdown_artifact(
            steps_markdown(run),
            key=_artifact_key(run.workflow_id),
            description=f"dotflow steps of {run.workflow_id}",
        )
    except Exception as error:  # a report must never change how the run (or rollback) ends
        _run_logger().warning("could not write the dotflow artifact: %s", error)


run_workflow: DotflowTask[..., Any] = _make_task(
    _run_workflow, _workflow_identity, {"name": "dotflow-workflow"}
)
