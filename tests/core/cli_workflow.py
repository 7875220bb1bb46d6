"""A workflow for the command-line tests: `tests/core/cli_workflow.py:workflow`."""

from __future__ import annotations

import os
from pathlib import Path

from dotflow_providers import Context, Workflow, action


@action
def extract(initial_context: Context) -> list[int]:
    return list(range(int(initial_context.value["n"])))


@action(retry=2)
def load(previous_context: Context) -> int:
    flag = os.environ.get("DOTFLOW_CLI_FAIL")
    if flag and Path(flag).exists():
        raise ConnectionError("warehouse down")
    return sum(previous_context.value)


def workflow() -> Workflow:
    return Workflow("cli-demo").add(extract).add(load)
