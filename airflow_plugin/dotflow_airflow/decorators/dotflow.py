"""`@task.dotflow`: a TaskFlow function that returns the workflow a DotflowOperator runs.

Registered through the provider info's `task-decorators`; Airflow finds it as `task.dotflow`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

from dotflow_providers import ConfigurationError, Workflow

from ..compatibility import (
    Context,
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)
from ..operators.dotflow import DotflowOperator

#: What `workflow` holds until the decorated function returns the real one at run time.
_FROM_THE_FUNCTION = "(the workflow the @task.dotflow function returns)"


def as_workflow(value: object) -> Workflow:
    """What the decorated function returned, as a workflow: a `Workflow`, or a list of steps."""
    if isinstance(value, Workflow):
        return value
    if isinstance(value, list | tuple) and value:
        workflow = Workflow()
        for step in value:
            workflow.add(step)
        return workflow
    raise ConfigurationError(
        f"a @task.dotflow function must return a Workflow or a non-empty list of @action "
        f"steps, got {type(value).__name__}"
    )


class _DotflowDecoratedOperator(DecoratedOperator, DotflowOperator):
    """Calls the decorated function with the task's resolved arguments, then runs the
    workflow it returns as a `DotflowOperator` does (store, resume, XComs)."""

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *DotflowOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **DotflowOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.dotflow"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            workflow=_FROM_THE_FUNCTION,
            **kwargs,
        )

    def _load_workflow(self, context: Context) -> Workflow:
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        return as_workflow(self.python_callable(*self.op_args, **kwargs))


def dotflow_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Wrap a function returning a `Workflow` (or a list of `@action` steps) into a
    DotflowOperator task; takes DotflowOperator's arguments (`store`, `store_conn_id`,
    `initial_context`, `keep_checkpoints_on_clear`, ...). Use it as `@task.dotflow`."""
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=_DotflowDecoratedOperator,
        **kwargs,
    )
