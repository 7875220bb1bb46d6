"""The dotflow Airflow plugin: the Checkpoints tab of task instances, the task link, a listener."""

from __future__ import annotations

from ..compatibility import AirflowPlugin
from ..links import DotflowCheckpointLink
from . import listener
from .app import TAB_HREF, create_app


class DotflowPlugin(AirflowPlugin):
    """Registered through the `airflow.plugins` entry point."""

    name = "dotflow"
    listeners = [listener]
    operator_extra_links = [DotflowCheckpointLink()]
    fastapi_apps = [{"app": create_app(), "url_prefix": "/dotflow", "name": "Dotflow checkpoints"}]
    # Airflow 3.1+: a tab on every task instance's page, an iframe of TAB_HREF with the task
    # instance's ids filled in by the UI (tasks that are no DotflowOperator show why not).
    external_views = [
        {
            "name": "Checkpoints",
            "href": TAB_HREF,
            "destination": "task_instance",
            "url_route": "dotflow-checkpoints",
        }
    ]
