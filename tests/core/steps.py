"""Module-level steps, importable by worker processes (parallel mode, process timeouts)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dotflow_providers import Context, FixedRetry, action


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


def _record_pid_then_hang(initial_context: Context) -> None:
    folder, n = Path(initial_context.storage["dir"]), initial_context.storage["n"]
    (folder / f"pid-{n}.tmp").write_text(str(os.getpid()))
    (folder / f"pid-{n}.tmp").rename(folder / f"pid-{n}")
    time.sleep(300)


@action
def records_pid_then_hangs(initial_context: Context) -> None:
    """Write this process's pid to `<dir>/pid-<n>`, then hang until killed."""
    _record_pid_then_hang(initial_context)


@action(timeout=300, timeout_mode="process")
def records_pid_then_hangs_in_process(initial_context: Context) -> None:
    """`records_pid_then_hangs` in a process of its own (a process timeout)."""
    _record_pid_then_hang(initial_context)


@action(timeout=0.5, retry=FixedRetry(max_attempts=2, delay=0))
def overruns_once(initial_context: Context) -> int:
    """The first attempt overruns its timeout by far; the second returns at once. Each attempt
    appends `start end` (system-wide monotonic clock) to the file it is given."""
    log = Path(initial_context.storage)
    started = time.monotonic()
    first = not log.exists()
    if first:
        log.touch()
        time.sleep(2)
    with log.open("a") as f:
        f.write(f"{started} {time.monotonic()}\n")
    return 1 if first else 2


@action(timeout=0.2)
def occupies_its_worker(initial_context: Context) -> None:
    """Marks its start in `<dir>/occupier`, then keeps its worker busy for `seconds` after its
    0.2 s timeout abandoned it there."""
    folder = Path(initial_context.value["dir"])
    (folder / "occupier").write_text(str(time.monotonic()))
    time.sleep(initial_context.value["seconds"])


@action
def marks_its_start(initial_context: Context) -> str:
    """Marks its start in `<dir>/marked` (the side effect a stalled runner must not cause)."""
    (Path(initial_context.value) / "marked").write_text(str(time.monotonic()))
    return "ran"
