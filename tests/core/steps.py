"""Module-level steps, importable by worker processes (parallel mode, process timeouts)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dotflow_providers import Context, action


@action
def whoami(initial_context: Context) -> tuple[int, Any]:
    return os.getpid(), initial_context.value


@action
def slow_square(initial_context: Context) -> int:
    time.sleep(0.3)
    value: int = initial_context.value
    return value * value


@action(timeout=0.5, timeout_mode="process")
def hangs_then_writes(initial_context: Context) -> None:
    time.sleep(2)
    Path(initial_context.value).write_text("the work went on")


@action(timeout=0.5, timeout_mode="thread")
def hangs_in_thread(initial_context: Context) -> None:
    time.sleep(2)
    Path(initial_context.value).write_text("the work went on")


@action(timeout=5, timeout_mode="process")
def quick_in_process(initial_context: Context) -> dict[str, int]:
    return {"pid": os.getpid(), "value": initial_context.value}


@action(retry=2)
def fails_in_worker() -> None:
    raise RuntimeError("worker step failed")
