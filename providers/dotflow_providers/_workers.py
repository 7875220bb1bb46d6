"""Parallel mode's worker processes: they die with their runner, time attempts from their own
start, and start none after the runner's lease window closed."""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import threading
import time
from multiprocessing.queues import SimpleQueue
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._action import AnyAction
from ._engine import call_step
from ._errors import StepTimeout
from ._lifeline import die_with_parent

if TYPE_CHECKING:
    from ._lease import Lease

#: set in each pool worker: where it announces that an attempt starts running
_started: SimpleQueue[int | None] | None = None


def _init_worker(parent: int, started: SimpleQueue[int | None]) -> None:
    global _started
    die_with_parent(parent)
    _started = started


class NotStarted:
    """What a worker returns for an attempt it took up after the window it was handed with had
    closed: the runner stalled (or waited for a free worker) since, and must check its lease."""


def _attempt(
    token: int | None, window: float | None, step: AnyAction, kwargs: dict[str, Any]
) -> Any:
    """Run one attempt in a pool worker, unless its lease window closed before it got here
    (`time.monotonic()` is one clock for the machine); announce its start when `token` is set."""
    if window is not None and time.monotonic() >= window:
        return NotStarted()
    if token is not None:
        assert _started is not None  # set by `_init_worker`
        _started.put(token)
    return call_step(step, kwargs)


class WorkerPool:
    """Parallel mode's worker processes; `run_attempt` is the engine's `AttemptRunner`.

    A step's `timeout` counts from the moment a worker starts its attempt, not from the submit:
    with all workers busy (a timed-out attempt is abandoned in its worker, which finishes it in
    the background), the next attempt waits for a free worker without its clock running.

    Under a `lease`, each attempt goes out with the lease's start window, and a worker that takes
    it up after the window closed does not start it: a runner stopped just after handing an
    attempt over (or whose attempt waited that long for a worker) checks its lease again first,
    so no attempt starts once another runner has taken the workflow over.
    """

    def __init__(self, workers: int, lease: Lease | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._started: SimpleQueue[int | None] = context.SimpleQueue()
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(os.getpid(), self._started),
        )
        self._lease = lease
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
        """One attempt of `step` in a worker; `StepTimeout` once it ran `step.timeout` s;
        `LockLost` when the lease was lost before a worker could start it."""
        lease = self._lease
        while True:
            output = self._submit(step, kwargs, None if lease is None else lease.start_window())
            if type(output) is not NotStarted:
                return output

    def _submit(self, step: AnyAction, kwargs: dict[str, Any], window: float | None) -> Any:
        if step.timeout is None:
            return self._pool.submit(_attempt, None, window, step, kwargs).result()
        token = next(self._tokens)
        started = self._waiting[token] = threading.Event()
        try:
            future = self._pool.submit(_attempt, token, window, step, kwargs)
            # a worker that dies, or does not start the attempt, still ends the wait
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
