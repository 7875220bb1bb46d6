"""Parallel mode's worker processes: they die with their runner, and time attempts from their
own start."""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import threading
from multiprocessing.queues import SimpleQueue
from types import TracebackType
from typing import Any

from ._action import AnyAction
from ._engine import call_step
from ._errors import StepTimeout
from ._lifeline import die_with_parent

#: set in each pool worker: where it announces that an attempt starts running
_started: SimpleQueue[int | None] | None = None


def _init_worker(parent: int, started: SimpleQueue[int | None]) -> None:
    global _started
    die_with_parent(parent)
    _started = started


def _announced(token: int, step: AnyAction, kwargs: dict[str, Any]) -> Any:
    """Run one attempt in a pool worker, first telling the runner that it starts now."""
    assert _started is not None  # set by `_init_worker`
    _started.put(token)
    return call_step(step, kwargs)


class WorkerPool:
    """Parallel mode's worker processes; `run_attempt` is the engine's `AttemptRunner`.

    A step's `timeout` counts from the moment a worker starts its attempt, not from the submit:
    with all workers busy (a timed-out attempt is abandoned in its worker, which finishes it in
    the background), the next attempt waits for a free worker without its clock running.
    """

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._started: SimpleQueue[int | None] = context.SimpleQueue()
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(os.getpid(), self._started),
        )
        self._tokens = itertools.count()
        self._waiting: dict[int, threading.Event] = {}
        self._listener = threading.Thread(
            target=self._listen, name="dotflow-par-started", daemon=True
        )
        self._listener.start()

    def _listen(self) -> None:
        while (token := self._started.get()) is not None:
            started = self._waiting.get(token)
            if started is not None:
                started.set()

    def run_attempt(self, step: AnyAction, kwargs: dict[str, Any]) -> Any:
        """One attempt of `step` in a worker; `StepTimeout` once it ran `step.timeout` s."""
        if step.timeout is None:
            return self._pool.submit(call_step, step, kwargs).result()
        token = next(self._tokens)
        started = self._waiting[token] = threading.Event()
        try:
            future = self._pool.submit(_announced, token, step, kwargs)
            # a worker that dies before announcing the attempt still ends the wait
            future.add_done_callback(lambda _: started.set())
            started.wait()
            return future.result(timeout=step.timeout)
        except concurrent.futures.TimeoutError:
            raise StepTimeout(
                f"step {step.name!r} did not finish within {step.timeout}s in its worker "
                "process (the worker finishes it in the background; use "
                "timeout_mode='process' to kill it)"
            ) from None
        finally:
            del self._waiting[token]

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._pool.shutdown(wait=True)
        finally:
            self._started.put(None)  # stops the listener
            self._listener.join()
            self._started.close()
