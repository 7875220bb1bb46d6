"""`AsyncTaskEngine` and the async modes: every async step awaited in the caller's loop.

The lifecycle and every retry decision come from `StepLifecycle`, shared with `TaskEngine`;
this module only adds awaiting, `asyncio.sleep` between attempts, the loop's own timeout and a
commit that keeps store I/O off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._engine import (
    StepLifecycle,
    StepRecord,
    call_step,
    plain_begin,
    plain_completed,
    plain_output,
)
from ._errors import StepTimeout
from ._offloop import to_the_end
from ._status import COMPLETED, IN_PROGRESS, NOT_STARTED
from ._strategies import kept_for_the_run
from ._timeout import in_process, in_thread

if TYPE_CHECKING:
    from ._run import Run
    from ._strategies import Execution

AsyncCommit = Callable[[StepRecord], Awaitable[None]]
logger = logging.getLogger("dotflow_providers")


class AsyncTaskEngine(StepLifecycle):
    """The async counterpart of `TaskEngine`:

        async with AsyncTaskEngine(step, record, commit=...) as engine:
            await engine.execute_with_retry(kwargs)

    Async steps are awaited directly in the running loop; a timeout cancels them (their
    `finally` blocks run). `asyncio.CancelledError` is never retried or swallowed: the step is
    marked CANCELLED, nothing is committed, and the cancellation propagates.
    """

    __slots__ = ()
    commit: AsyncCommit | None

    async def __aenter__(self) -> AsyncTaskEngine:
        self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._end(exc_type, exc, tb)

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        step = self.step
        timeout, by_deadline = self._time_limit()
        if step.is_async:
            if timeout is None:
                return await step.func(**kwargs)
            scope = asyncio.timeout(timeout)
            try:
                async with scope:
                    output = await step.func(**kwargs)
            except TimeoutError:
                if not scope.expired():
                    raise
            else:
                if not scope.expired():
                    return output
                # the step swallowed its cancellation and returned: what it returns is not
                # what it was asked for (a partial result), so it is not trusted either
            error = StepTimeout(
                f"step {step.name!r} did not finish within {timeout}s and was cancelled"
            )
            raise (self._past_deadline(error) if by_deadline else error) from None
        # Sync steps run in a worker thread so they never block the loop.
        if timeout is None:
            return await asyncio.to_thread(step.func, **kwargs)
        run = in_process if step.timeout_mode == "process" else in_thread
        try:
            return await asyncio.to_thread(
                run, call_step, {"step": step, "kwargs": kwargs}, timeout, step.name
            )
        except StepTimeout as error:
            if by_deadline:
                raise self._past_deadline(error) from None
            raise

    async def run(self, kwargs: dict[str, Any], failed: Exception | None = None) -> None:
        """The step's whole lifecycle (what `async with engine: await
        engine.execute_with_retry(kwargs)` does). `failed`: the step has begun and its first
        attempt failed with this error (`_run_chain` hands such a step over here)."""
        if failed is None:
            self._begin()
        try:
            await self.execute_with_retry(kwargs, failed)
        except BaseException as exc:
            if not self._end(type(exc), exc, exc.__traceback__):
                raise
            return
        self._end(None, None, None)

    async def execute_with_retry(
        self, kwargs: dict[str, Any], failed: Exception | None = None
    ) -> Any:
        """Await the step until it succeeds or its policy gives up; commit the success once.
        `failed`: the error of a first attempt already made."""
        if failed is not None:
            self._attempt_at = self.record.started_at or 0.0
        while True:
            if failed is None:
                self._start_attempt()
                try:
                    self._admit()
                    output = await self._call(kwargs)
                except Exception as error:
                    failed = error
            if failed is not None:
                delay = self._attempt_failed(failed)
                if delay is None:
                    raise failed
                if delay > 0:
                    await asyncio.sleep(delay)
                self.record.set_status(IN_PROGRESS)
                failed = None
                continue
            self._attempt_succeeded(output)
            if self.commit is not None:
                await self.commit(self.record)
            self.record.status = COMPLETED  # IN_PROGRESS -> COMPLETED, always allowed
            return output


async def _to_the_end(ex: Execution, call: Callable[[], None]) -> None:
    """Store I/O that must happen even when the awaiting task is cancelled meanwhile (the last
    batch committed, the lease released). Awaited as `_io` would, it could be dropped before its
    worker thread began it (a cancellation pending on the task cancels the next thing it
    awaits); here a cancellation arriving meanwhile waits for it, and is raised after."""
    if not ex.journal.blocking:
        call()
        return
    error, cancelled = await to_the_end(call)
    if error is not None:
        if cancelled is None:
            raise error
        # the cancellation is what the caller asked for and gets; the error is not lost
        logger.error("ending the run failed while it was being cancelled: %r", error)
    if cancelled is not None:
        raise cancelled


async def _io(ex: Execution, call: Callable[..., None], *args: Any) -> None:
    """Store I/O off the loop (unless the store does none)."""
    if ex.journal.blocking:
        await asyncio.to_thread(call, *args)
    else:
        call(*args)


class _Join(asyncio.Future[None]):
    """What `_run_chains` awaits instead of `asyncio.gather(*tasks, return_exceptions=True)`,
    with the same outcome and no done callback per task (gather's, each run as a handle of the
    loop, was 15,000 instructions a step of a fan-out): every chain counts its own end, and the
    join then completes; `_run_chains` raises the error of the first chain (in chain order)
    that ended with one other than a cancellation.

    As with gather, cancelling the join (the caller's task being cancelled) cancels every chain
    at once, with the caller's message, and the join raises `CancelledError` only when every
    chain has ended. A chain's task cancelled before its coroutine began (by code cancelling
    every task, say) never runs the coroutine's `finally`: `check_begun`, called once after
    the chains' first steps, counts those, and watches any chain that has not begun yet (a
    task factory may delay it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, chains: int) -> None:
        super().__init__(loop=loop)
        self.left = chains
        self.tasks: list[asyncio.Task[None]] = []
        #: 1 once a chain's coroutine began (its first statement): its `finally` counts its end
        self.begun = bytearray(chains)
        #: (the chain's position, its error): what escaped a chain other than a cancellation
        self.errors: list[tuple[int, BaseException]] = []
        self.abandoned: asyncio.CancelledError | None = None
        #: what cancelling the join does besides cancelling its chains: the run is cancelled
        #: (work in threads and map items stop, cancel hooks run, no output is committed)
        self.on_abandon: Callable[[], None] | None = None

    def check_begun(self) -> None:
        """Count each chain whose task ended before its coroutine began; watch the others that
        have not begun. Called soon after the chains' tasks were made: their first steps ran
        before it, so usually every chain has begun."""
        if not self.begun.count(0):
            return
        for position, task in enumerate(self.tasks):
            if self.begun[position]:
                continue
            if task.done():
                self.ended()
            else:
                task.add_done_callback(functools.partial(self._never_begun, position))

    def _never_begun(self, position: int, task: asyncio.Task[None]) -> None:
        if not self.begun[position]:
            self.ended()

    def escaped(self, position: int, error: BaseException) -> bool:
        """Chain `position` ends with `error`, which is not a step's failure (that is recorded)
        but, e.g., the store's while recording one: kept for the join to raise. True when the
        chain must raise it too: a cancellation; an exit, which leaves the loop at once as from
        any task; the coroutine being closed. (The task's error is then marked retrieved: the
        join raises it.)"""
        if isinstance(error, asyncio.CancelledError):
            return True
        self.errors.append((position, error))
        if not isinstance(error, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            return False
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(_retrieved)
        return True

    def ended(self) -> None:
        self.left -= 1
        if self.left or self.done():
            return
        if self.abandoned is not None:
            self.set_exception(self.abandoned)
        else:  # errors are raised by `_run_chains` itself: a GeneratorExit thrown into the
            self.set_result(None)  # awaiting coroutine would close its whole await chain

    def cancel(self, msg: Any = None) -> bool:
        if self.done():
            return False
        cancelled = False
        for task in self.tasks:
            if task.cancel(msg):
                cancelled = True
        if cancelled:
            self.abandoned = (
                asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)
            )
            if self.on_abandon is not None:
                self.on_abandon()
        return cancelled


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


async def _run_chain(
    ex: Execution,
    indices: Sequence[int],
    limit: asyncio.Semaphore | None,
    join: _Join,
    position: int,
) -> None:
    """`Execution.run_chain` for the event loop: each step of the chain through the engine (the
    async `run_step`, in this one coroutine: a fan-out runs one chain per step).

    A coroutine step with no guard, time limit, deadline or tracer takes `run_plain`'s success
    path right here, with no engine built and no coroutine of its own between the task and
    the step (the commit called directly when the store does no I/O); anything else goes to an
    `AsyncTaskEngine`, from the start or from where it happened. It ends by telling `join`;
    an error that escapes it (a cancellation aside) goes there too, so the task ends without
    one nobody would retrieve."""
    join.begun[position] = 1  # before any await: from here its `finally` counts its end
    held: asyncio.Semaphore | None = None
    try:
        if limit is not None:
            await limit.acquire()
            held = limit
        steps, specs, journal, cancel = ex.run.steps, ex.specs, ex.journal, ex.run.cancel_event
        for index, previous in ex.walk_chain(indices):
            record, step = steps[index], specs[index].step
            kwargs = ex.kwargs_for(index, previous) if step.accepts else {}
            if (
                step.on_cancel is not None
                or not step.plain_async
                or ex.tracer is not None
                or record.status is not NOT_STARTED
                or cancel.requested
            ):
                with ex.cancel_hook(index):  # (a step with no cancel hook registers nothing)
                    await AsyncTaskEngine(step, record, journal.acommit, ex.tracer, cancel).run(
                        kwargs
                    )
            else:  # `run_plain`, inlined: one coroutine less per step
                started = plain_begin(record)
                try:
                    output = await step.func(**kwargs)
                except Exception as error:
                    await AsyncTaskEngine(step, record, journal.acommit, None, cancel).run(
                        kwargs, failed=error
                    )
                except BaseException as exc:  # cancelled: recorded, and the cancellation goes on
                    AsyncTaskEngine(step, record, journal.acommit, None, cancel)._end(
                        type(exc), exc, None
                    )
                    raise
                else:
                    try:
                        finished = plain_output(step, record, output, cancel)
                        if journal.blocking:
                            await journal.acommit(record)
                        else:
                            journal.commit(record)
                    except BaseException as exc:
                        engine = AsyncTaskEngine(step, record, journal.acommit, None, cancel)
                        if not engine._end(type(exc), exc, None):
                            raise
                    else:
                        plain_completed(record, started, finished)
            if record.status is not COMPLETED and not ex.settle(index):
                await _io(ex, ex.record_failure, index)
        if ex.compensate:
            await _io(ex, ex.compensate_failed, indices)
    except BaseException as error:
        if join.escaped(position, error):
            raise
    finally:
        if held is not None:
            held.release()
        join.ended()


async def _run_chains(ex: Execution, chains: list[list[int]]) -> None:
    if not chains:
        return
    bound = ex.max_workers
    # no semaphore when it could never make a chain wait
    limit = asyncio.Semaphore(bound) if bound is not None and bound < len(chains) else None
    loop = asyncio.get_running_loop()
    join = _Join(loop, len(chains))
    # Tasks live until the run ends (`kept_for_the_run`); only the default task factory is sure
    # not to start a chain in `create_task` (an eager one runs its first steps right there).
    with kept_for_the_run() if loop.get_task_factory() is None else contextlib.nullcontext():
        tasks = join.tasks = [
            loop.create_task(_run_chain(ex, chain, limit, join, position))
            for position, chain in enumerate(chains)
        ]
    loop.call_soon(join.check_begun)  # after the chains' first steps, scheduled before it

    def cancel_all() -> None:
        if join.abandoned is None:  # (else the join's own cancel cancelled them already)
            for task in tasks:
                loop.call_soon_threadsafe(task.cancel)

    ex.run.on_cancel(cancel_all)
    join.on_abandon = functools.partial(_abandoned, ex.run)
    try:
        await join
    finally:
        join.on_abandon = None  # (the run holds the join through `cancel_all`: no cycle left)
    if join.errors:
        raise min(join.errors, key=lambda ended: ended[0])[1]


def _abandoned(run: Run) -> None:
    """The task awaiting the run was cancelled: the run is cancelled at once (no step that
    returns from now on is committed, work in threads stops at its next check), and its cancel
    hooks are called from a thread of their own, as a `run.cancel()` from another thread calls
    them: a hook that blocks or raises never reaches the loop or the canceller."""
    run.cancel_event.set()
    threading.Thread(
        target=_cancel_quietly, args=(run,), name="dotflow-cancel", daemon=True
    ).start()


def _cancel_quietly(run: Run) -> None:
    try:
        run.cancel()
    except Exception as exc:  # a hook's own failure: the run is cancelled all the same
        logger.warning("a cancel hook of workflow %s failed: %r", run.workflow_id, exc)


async def async_sequential(ex: Execution) -> None:
    await _run_chains(ex, [list(range(len(ex.specs)))])


async def async_parallel(ex: Execution) -> None:
    await _run_chains(ex, ex.chains())


AsyncStrategy = Callable[["Execution"], Awaitable[None]]
ASYNC_STRATEGIES: dict[str, AsyncStrategy] = {
    "async_sequential": async_sequential,
    "async_parallel": async_parallel,
}


async def execute_async(execution: Execution, strategy: AsyncStrategy) -> None:
    try:
        execution.open()  # inside: a tracer that fails here still gets the lease released
        await strategy(execution)
        await _io(execution, execution.journal.flush)  # group commit: the last batch
    finally:
        await _to_the_end(execution, execution.end)
