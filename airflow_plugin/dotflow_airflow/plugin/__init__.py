"""The dotflow Airflow plugin: a checkpoint page on the API server, the task link, a listener."""

from __future__ import annotations

from ..compatibility import AirflowPlugin
from ..links import DotflowCheckpointLink
from . import listener
from .app import create_app


class DotflowPlugin(AirflowPlugin):
    """Registered through the `airflow.plugins` entry point."""

    name = "dotflow"
    listeners = [listener]
    operator_extra_links = [DotflowCheckpointLink()]
    fastapi_apps = [{"app": create_app(), "url_prefix": "/dotflow", "name": "Dotflow checkpoints"}]
