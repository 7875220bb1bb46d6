"""`@dotflow_flow`: Prefect's `@flow`, plus a checkpoint scope for every dotflow call inside it.

Each attempt of the flow run opens a `FlowScope`: the default store of every `dotflow_task` and
`run_workflow` called in it (sync, async, or submitted to the flow's task runner), the prefix of
their checkpoints, the lease of a resume key, the `rerun_from` cut, a Markdown artifact of what
ran, was restored or failed, and the cleanup of the scope once the run completes.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar, cast, overload

from prefect.artifacts import acreate_markdown_artifact, create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.utilities.callables import get_call_parameters
from prefect.utilities.collections import visit_collection

from dotflow_providers import ConfigurationError, LeaseConfig
from dotflow_providers.integration import PERMANENT_ERRORS, drop_next_start, id_part
from prefect import Flow, flow

from ._identity import _SCOPE
from ._scope import FlowScope, ResumeKeyInUse, rerun_request, scope_id, take_scope_lease
from .blocks import resolve_store
from .tasks import _end_flow_run, default_store

P = ParamSpec("P")
R = TypeVar("R")

#: A resume key: a `str.format` template over the flow's parameters, or a function of them.
ResumeKey = str | Callable[[dict[str, Any]], object]

RERUN_FROM = "rerun_from"


@overload
def dotflow_flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def dotflow_flow(
    fn: None = None,
    /,
    *,
    store: Any = None,
    resume_key: ResumeKey | None = None,
    keep_checkpoints: bool = False,
    lock: LeaseConfig | None = None,
    **flow_options: Any,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def dotflow_flow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    store: Any = None,
    resume_key: ResumeKey | None = None,
    keep_checkpoints: bool = False,
    lock: LeaseConfig | None = None,
    **flow_options: Any,
) -> Any:
    """Prefect's `@flow` (every option passes through) whose dotflow calls share a scope.

    `store` (a store block, a store or a URL) is the default store of every `dotflow_task` and
    `run_workflow` called inside. Checkpoints are scoped by the flow run, so its retries
    resume; with `resume_key` (`"{day}"`, a template over the flow's parameters, or a function
    taking them as a dict) they are scoped by the flow and that key instead, so a new flow run
    with the same key resumes what an earlier one completed, and a run whose key is in use by
    another running flow run is refused (`ResumeKeyInUse`). The flow gains a `rerun_from`
    parameter (unless it has one): the call of that task, and every call made after it, run
    again. When the run completes, its scope's checkpoints are deleted unless
    `keep_checkpoints`. `lock` is the resume key's lease config.
    """

    def decorate(function: Callable[..., Any]) -> Flow[Any, Any]:
        signature = inspect.signature(function)
        own_rerun = RERUN_FROM in signature.parameters

        @contextlib.contextmanager
        def scoped(
            args: tuple[Any, ...], kwargs: dict[str, Any], rerun_from: str | None
        ) -> Iterator[FlowScope]:
            parameters = get_call_parameters(function, args, kwargs)
            if own_rerun:
                rerun_from = parameters[RERUN_FROM]
            with _opened(
                parameters, store, resume_key, lock, rerun_from, keep_checkpoints
            ) as scope:
                token = _SCOPE.set(scope)
                try:
                    yield scope
                finally:
                    _SCOPE.reset(token)

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def body_async(*args: Any, **kwargs: Any) -> Any:
                rerun_from = None if own_rerun else kwargs.pop(RERUN_FROM, None)
                with scoped(args, kwargs, rerun_from) as scope:
                    try:
                        result = await function(*args, **kwargs)
                    except BaseException:
                        await _report_async(scope, "failed")
                        raise
                    scope.completed = not _holds_failures(result)
                    await _report_async(scope, "completed" if scope.completed else "failed")
                return result

            body: Callable[..., Any] = body_async
        else:

            @functools.wraps(function)
            def body_sync(*args: Any, **kwargs: Any) -> Any:
                rerun_from = None if own_rerun else kwargs.pop(RERUN_FROM, None)
                with scoped(args, kwargs, rerun_from) as scope:
                    try:
                        result = function(*args, **kwargs)
                    except BaseException:
                        _report(scope, "failed")
                        raise
                    scope.completed = not _holds_failures(result)
                    _report(scope, "completed" if scope.completed else "failed")
                return result

            body = body_sync
        if not own_rerun:
            extra = inspect.Parameter(
                RERUN_FROM, inspect.Parameter.KEYWORD_ONLY, default=None, annotation="str | None"
            )
            kept = list(signature.parameters.values())
            if kept and kept[-1].kind is inspect.Parameter.VAR_KEYWORD:
                kept.insert(-1, extra)
            else:
                kept.append(extra)
            body.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
            body.__annotations__ = {**function.__annotations__, RERUN_FROM: "str | None"}
        return cast(Flow[Any, Any], flow(body, **flow_options))

    return decorate if fn is None else decorate(fn)


@contextlib.contextmanager
def _opened(
    parameters: dict[str, Any],
    store: Any,
    resume_key: ResumeKey | None,
    lock: LeaseConfig | None,
    rerun_from: str | None,
    keep_checkpoints: bool,
) -> Iterator[FlowScope]:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise ConfigurationError("a dotflow_flow body runs only as a Prefect flow run")
    flow_run = context.flow_run
    flow_name = context.flow.name if context.flow is not None else flow_run.name
    logger = cast(logging.LoggerAdapter[Any], get_run_logger())
    try:
        chosen = resolve_store(store) or default_store()
        key = _resume_key(resume_key, {k: v for k, v in parameters.items() if k != RERUN_FROM})
        scope_name = scope_id(flow_name, str(flow_run.id), key)
        lease = None
        if key is not None:
            lease = take_scope_lease(
                chosen, scope_name, lock or LeaseConfig(), str(flow_run.id), logger
            )
    except Exception as error:
        if isinstance(error, (ResumeKeyInUse, *PERMANENT_ERRORS)):
            _end_flow_run(error)  # a retry cannot fix it: the flow run ends without retries
        raise
    try:
        rerun, everything, requested_at = rerun_request(
            chosen, scope_name, rerun_from, str(flow_run.id)
        )
        scope = FlowScope(
            scope_name,
            chosen,
            logger,
            rerun_from=rerun,
            rerun_all=everything,
            requested_at=requested_at,
            flow_run=str(flow_run.id),
        )
        scope.lease = lease
        yield scope
        if scope.completed:
            if scope.rerun_from is not None and scope.cut is None:
                logger.warning(
                    "rerun_from=%r named no task this flow run called; nothing was re-run", rerun
                )
            if keep_checkpoints:
                drop_next_start(scope_name, chosen)  # answered; the checkpoints stay
            else:
                scope.clean()
    finally:
        if lease is not None:
            lease.release()


def _resume_key(resume_key: ResumeKey | None, parameters: dict[str, Any]) -> str | None:
    if resume_key is None:
        return None
    try:
        value = (
            resume_key.format(**parameters)
            if isinstance(resume_key, str)
            else resume_key(parameters)
        )
    except (KeyError, IndexError, AttributeError) as error:
        raise ConfigurationError(
            f"resume_key {resume_key!r} could not be made from the flow's parameters "
            f"{sorted(parameters)}: {error!r}; name parameters in braces, e.g. '{{day}}'"
        ) from error
    text = str(value)
    if not text:
        raise ConfigurationError(f"resume_key {resume_key!r} gave an empty key")
    return id_part(text)


def _holds_failures(result: Any) -> bool:
    """Whether a flow's return value makes Prefect fail the run (failed states or futures)."""
    failed = False

    def visit(value: Any) -> Any:
        nonlocal failed
        state = value.state if isinstance(value, PrefectFuture) else value
        if isinstance(state, State) and (state.is_failed() or state.is_crashed()):
            failed = True
        return value

    visit_collection(result, visit, return_data=False)
    return failed


def _title(scope: FlowScope, outcome: str) -> str:
    return f"dotflow calls of `{scope.scope}`: {outcome}"


def _artifact_key(scope: FlowScope) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"dotflow-flow-{scope.scope}".lower()).strip("-")[:100]


def _report(scope: FlowScope, outcome: str) -> None:
    try:
        create_markdown_artifact(
            scope.markdown(_title(scope, outcome)),
            key=_artifact_key(scope),
            description=f"dotflow calls of {scope.scope}",
        )
    except Exception as error:  # a report must never change how the run ends
        scope.logger.warning("could not write the dotflow artifact: %s", error)


async def _report_async(scope: FlowScope, outcome: str) -> None:
    try:
        await acreate_markdown_artifact(
            scope.markdown(_title(scope, outcome)),
            key=_artifact_key(scope),
            description=f"dotflow calls of {scope.scope}",
        )
    except Exception as error:  # a report must never change how the run ends
        scope.logger.warning("could not write the dotflow artifact: %s", error)


__all__ = ["ResumeKey", "dotflow_flow"]
