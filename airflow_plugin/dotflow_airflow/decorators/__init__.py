"""TaskFlow decorators of the dotflow provider (`@task.dotflow`)."""

from .dotflow import dotflow_task

__all__ = ["dotflow_task"]
