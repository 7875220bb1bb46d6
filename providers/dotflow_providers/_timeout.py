"""Running one attempt under a time limit, in a daemon thread or in a child process."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ._errors import CheckpointError, InvalidStep, StepTimeout
from ._lifeline import die_with_parent


class RemoteStepError(Exception):
    """A step failed in a child process with an error that could not be sent back as is."""


class UnpicklableOutput(CheckpointError):
    """A step in a child process returned a value that cannot come back to the runner; no
    retry can change that, so the step fails for good."""


def in_thread(func: Callable[..., Any], kwargs: dict[str, Any], timeout: float, name: str) -> Any:
    """Run `func` in a daemon thread and wait at most `timeout` seconds for it.

    An overrunning thread cannot be killed: it is abandoned and keeps running until the function
    returns. It is a daemon, so it never keeps the interpreter from exiting, and no executor is
    left behind. Use `timeout_mode="process"` when the work itself has to stop.
    """
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append((True, func(**kwargs)))
        except BaseException as exc:  # handed to the waiting thread, which re-raises it
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=target, name=f"dotflow-step:{name}", daemon=True).start()
    if not done.wait(timeout):
        raise StepTimeout(
            f"step {name!r} did not finish within {timeout}s (its thread was abandoned, "
            "not stopped; use timeout_mode='process' to stop the work)"
        )
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def _child(conn: Connection, func: Callable[..., Any], kwargs: dict[str, Any], parent: int) -> None:
    die_with_parent(parent)
    try:
        result: tuple[bool, Any] = (True, func(**kwargs))
    except BaseException as exc:
        result = (False, exc)
    try:
        conn.send(result)
    except Exception:
        ok, value = result
        if ok:
            err: Exception = UnpicklableOutput(
                f"the step returned a {type(value).__module__}.{type(value).__qualname__}, "
                "which cannot be pickled back from its process; return JSON data, a pydantic "
                "model, a dataclass or a standard type"
            )
        else:
            err = RemoteStepError(
                f"{type(value).__name__}: {value}\n" + "".join(traceback.format_exception(value))
            )
        conn.send((False, err))
    finally:
        conn.close()


def in_process(func: Callable[..., Any], kwargs: dict[str, Any], timeout: float, name: str) -> Any:
    """Run `func` in a fresh (spawned) child process and kill it after `timeout` seconds."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child,
        args=(sender, func, kwargs, os.getpid()),
        name=f"dotflow-step:{name}",
        daemon=True,
    )
    try:
        process.start()
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise InvalidStep(
            f"step {name!r} cannot run with timeout_mode='process': it and its contexts must be "
            f"picklable, so define it at module level ({exc})"
        ) from exc
    finally:
        sender.close()
    try:
        if not receiver.poll(timeout):
            process.kill()
            process.join()
            raise StepTimeout(
                f"step {name!r} did not finish within {timeout}s; its process was killed"
            )
        try:
            ok, value = receiver.recv()
        except EOFError:
            process.join()
            raise RemoteStepError(
                f"step {name!r} process died with exit code {process.exitcode}"
            ) from None
        process.join()
    finally:
        receiver.close()
    if ok:
        return value
    raise value
