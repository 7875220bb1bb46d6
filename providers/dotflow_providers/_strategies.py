"""Execution modes. They only decide which step runs when; each step goes to one `TaskEngine`."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import gc
import itertools
import logging
import operator
import os
import pickle
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ._action import AnyAction, Context
from ._compensation import undo
from ._engine import AttemptRunner, CancelToken, TaskEngine, run_plain
from ._errors import DotflowError, InvalidStep
from ._progress import Progress
from ._status import CANCELLED, COMPLETED, Status
from ._workers import WorkerPool
from .tracing import Tracer

logger = logging.getLogger("dotflow_providers")

if TYPE_CHECKING:
    from ._journal import Journal
    from ._map import MapSpec
    from ._run import Run


class _CollectorPause:
    """The cyclic collector paused while any thread builds what a run keeps (see
    `kept_for_the_run`). The collector's switch is process-wide and starts overlap (threads, an
    async start preparing in a worker thread), so the pause is counted: the first to enter turns
    the collector off, noting whether it was on, and the last to leave turns it back on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False

    def enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1

    def leave(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._resume:
                gc.enable()
        gc.freeze()  # last: interrupted before it, objects stay unfrozen, the collector is on


_PAUSE = _CollectorPause()


@contextlib.contextmanager
def kept_for_the_run() -> Iterator[None]:
    """For what a run builds per step and keeps until it ends (identities and records; an async
    run's tasks): built with the cyclic collector paused, then frozen, as `start` and
    `start_async` froze everything before it (and unfreeze all when the run ends). Collections
    would only rescan it: at 100,000 steps they cost a step a tenth of its time. What runs
    inside only computes (restored outputs are decoded there, which may run a model's
    validators): no step, no items callable, no store I/O, no waiting. Use it only between such
    a freeze and its unfreeze."""
    entered = False
    try:
        _PAUSE.enter()
        entered = True
        yield
    finally:
        if entered:
            _PAUSE.leave()


class StepSpec(NamedTuple):
    """A step as added to a workflow (a tuple: one is built per `add()`)."""

    step: AnyAction
    name: str
    initial_context: Any
    group: str | None
    stage: Any = None  # the Stage behind the step, if it is one
    map: MapSpec | None = None  # how a `workflow.map` step runs its items


_GROUP = operator.itemgetter(3)  # StepSpec.group


def _ungrouped(specs: Sequence[StepSpec]) -> bool:
    """No step has a group (counted by C calls only: a fan-out has many steps)."""
    return list(map(_GROUP, specs)).count(None) == len(specs)


#: How each mode passes outputs on: "one" chain of every step, one chain per "group" (ungrouped
#: steps forming one chain together), one chain per group and per ungrouped "step", or "none".
CHAIN_LAYOUTS: dict[str, str] = {
    "sequential": "one",
    "background": "one",
    "sequential_group": "groups",
    "parallel": "none",
    "async_sequential": "one",
    "async_parallel": "steps",
}


def chains(specs: Sequence[StepSpec], layout: str) -> list[list[int]]:
    """The chains in which a mode runs steps, each step receiving the previous one's output."""
    if layout == "one":
        return [list(range(len(specs)))]
    if layout == "none" or (layout == "steps" and _ungrouped(specs)):
        return [[index] for index in range(len(specs))]  # (a fan-out of ungrouped steps)
    found: dict[Any, list[int]] = {}
    for index, spec in enumerate(specs):
        key = (None, index) if layout == "steps" and spec.group is None else spec.group
        found.setdefault(key, []).append(index)
    return list(found.values())


def upstreams(specs: Sequence[StepSpec], mode: str) -> list[int | None]:
    """For each step, the step whose output it receives as `previous_context` in `mode`."""
    layout = CHAIN_LAYOUTS[mode]
    if layout == "one":  # the common case: each step receives the one before it
        return [
            index - 1 if index and "previous_context" in spec.step.accepts else None
            for index, spec in enumerate(specs)
        ]
    found: list[int | None] = [None] * len(specs)
    if layout == "none" or (layout == "steps" and _ungrouped(specs)):
        return found  # every step is a chain of its own
    for chain in chains(specs, layout):
        for before, index in itertools.pairwise(chain):
            if "previous_context" in specs[index].step.accepts:
                found[index] = before
    return found


class _CancelHook:
    """Registers a step's cancel hook with its run for the duration of a `with` block (a class,
    not a generator: it runs around every step)."""

    __slots__ = ("hook", "run")

    def __init__(self, run: Run, hook: Callable[[], None] | None) -> None:
        self.run, self.hook = run, hook

    def __enter__(self) -> None:
        if self.hook is not None:
            self.run.on_cancel(self.hook)

    def __exit__(self, *exc: object) -> None:
        if self.hook is not None:
            self.run.forget_cancel(self.hook)


@dataclasses.dataclass
class Execution:
    """Everything one run needs; `run_step` is the only way a mode executes a step."""

    run: Run
    specs: Sequence[StepSpec]
    initial: Sequence[Any]
    journal: Journal
    keep_going: bool
    tracer: Tracer | None
    max_workers: int | None
    compensate: bool = False
    clean_on_success: bool = False
    stop: CancelToken = dataclasses.field(default_factory=CancelToken)
    #: this run's items of each map step, by step index
    maps: dict[int, list[Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self._commit = self.journal.commit  # bound once: used for every step
        self._cancel = self.run.cancel_event
        if self.journal.lease is not None:
            self._cancel.before_retry = self.journal.lease.check

    def kwargs_for(self, index: int, previous: Any) -> dict[str, Any]:
        """The contexts step `index` asked for."""
        accepts = self.specs[index].step.accepts
        kwargs: dict[str, Any] = {}
        if accepts:
            if "initial_context" in accepts:
                kwargs["initial_context"] = Context(self.initial[index])
            if "previous_context" in accepts:
                kwargs["previous_context"] = Context(previous)
            if "checkpoint" in accepts:
                kwargs["checkpoint"] = Progress(self.journal, index)
            if "map_run" in accepts:
                kwargs["map_run"] = (self, index)
        return kwargs

    def settle(self, index: int) -> bool:
        """After step `index` ran: True when it completed; stops the run when it must."""
        status = self.run.steps[index].status
        if status is COMPLETED:
            return True
        if not self.keep_going or status is CANCELLED:
            self.stop.set()
        return False

    def record_failure(self, index: int) -> None:
        """Keep a failed step's error (and its rollback's) in the store; I/O, off the hot path."""
        record = self.run.steps[index]
        if record.status is not Status.FAILED:
            return
        try:
            self.journal.record_failure(record)
        except DotflowError as exc:  # e.g. LockLost: this runner must not write any more
            logger.warning("could not record the failure of step %s: %s", record.name, exc)

    def cancel_hook(self, index: int) -> _CancelHook:
        """While step `index` runs, a cancel of the run reaches its own cancel hook."""
        return _CancelHook(self.run, self.specs[index].step.on_cancel)

    def run_step(self, index: int, previous: Any, runner: AttemptRunner | None = None) -> bool:
        """Run step `index` through the engine; True when it completed."""
        step, record = self.specs[index].step, self.run.steps[index]
        kwargs = self.kwargs_for(index, previous) if step.accepts else {}
        if step.on_cancel is not None:
            with _CancelHook(self.run, step.on_cancel):
                TaskEngine(step, record, self._commit, self.tracer, self._cancel, runner).run(
                    kwargs
                )
        elif step.plain and runner is None and self.tracer is None:
            run_plain(step, record, kwargs, self._commit, self._cancel)  # most steps
        else:
            TaskEngine(step, record, self._commit, self.tracer, self._cancel, runner).run(kwargs)
        if record.status is COMPLETED:
            return True
        self.settle(index)
        self.record_failure(index)
        return False

    def compensate_chain(self, indices: Sequence[int], failed: int) -> None:
        """Saga-style: undo the chain's completed steps before `failed`, newest first, and
        forget their checkpoints so a later start runs them again (see `_compensation`)."""
        error = self.run.steps[failed].exception
        assert error is not None
        before = [i for i in indices if i < failed]
        steps = [spec.step for spec in self.specs]
        undo(before, self.run.steps, steps, error, self.journal.discard)

    def halted(self) -> bool:
        """Whether no further step may start: a failure stopped the run, it was cancelled, or
        its lease is lost. A lease past its renewal time by this runner's own clock (the runner
        stalled) is renewed first, conditionally: no step starts under another runner's lease.
        While the lease is fresh this costs no request."""
        if self.stop.requested or self.run.cancel_event.requested:
            return True
        lease = self.journal.lease
        if lease is None:
            return False
        if not lease.lost and lease.clock() >= lease.renew_at:
            try:
                lease.check()
            except DotflowError as exc:  # LockLost, or a store that cannot answer now
                logger.warning("not starting another step: %s", exc)
                return True
        return lease.lost

    def walk_chain(self, indices: Sequence[int]) -> Iterator[tuple[int, Any]]:
        """The one chain algorithm of every mode, sync or async: yields each step to run with
        the output it receives; the caller runs it before asking for the next one."""
        previous: Any = None
        steps, stop, cancel = self.run.steps, self.stop, self.run.cancel_event
        lease = self.journal.lease
        for index in indices:
            record = steps[index]
            if record.restored:
                previous = record.output
                continue
            if (
                stop.requested
                or cancel.requested
                or (lease is not None and (lease.lost or lease.clock() >= lease.renew_at))
            ) and self.halted():  # the common case (nothing to stop for) asks nothing more
                return
            yield index, previous
            if record.status is COMPLETED:
                previous = record.output
            elif self.compensate:
                return  # the chain stops at its failure, which `compensate_failed` undoes
            else:  # keep_going: an empty context (not an output its commit refused)
                previous = None

    def compensate_failed(self, indices: Sequence[int]) -> None:
        """With `compensate`, undo the chain's completed steps if one of them failed."""
        failed = next((i for i in indices if self.run.steps[i].status is Status.FAILED), None)
        if failed is not None:
            self.compensate_chain(indices, failed)

    def run_chain(self, indices: Sequence[int]) -> None:
        """Run steps one after another, each getting the previous one's output."""
        for index, previous in self.walk_chain(indices):
            self.run_step(index, previous)
        if self.compensate:
            self.compensate_failed(indices)

    def chains(self) -> list[list[int]]:
        """The chains this run's mode runs its steps in."""
        return chains(self.specs, CHAIN_LAYOUTS[self.run.mode])

    def open(self) -> None:
        """Mark the run started (both the sync and the async paths)."""
        self.run.status = Status.IN_PROGRESS
        if self.tracer is not None:
            self.tracer.workflow_started(self.run)

    def close(self) -> None:
        """Settle the run, clear what it leaves behind, release the lease (sync and async)."""
        run, journal = self.run, self.journal
        lease = journal.lease
        try:
            if run.cancel_event.is_set():
                for record in run.steps:
                    if record.status is Status.NOT_STARTED:
                        record.set_status(Status.CANCELLED)
            run.settle()
            if lease is not None and not lease.lost:
                journal.clear_cancel(lease.owner)
            if self.clean_on_success and run.status is Status.COMPLETED:
                journal.reset()
        except DotflowError as exc:  # cleanup never replaces how the run ended
            logger.warning("could not clean up after workflow %s: %s", run.workflow_id, exc)
        finally:
            if lease is not None:
                lease.release()
            run.finished()
        if self.tracer is not None:
            self.tracer.workflow_finished(run)

    def execute(self, strategy: Strategy) -> None:
        # The definition and the prepared run live as long as the run: moved out of the cyclic
        # collector's sight, they are not rescanned by every full collection (which made a step
        # of a 100,000-step run cost a third more than one of a 1,000-step run). Collection
        # itself stays on for what the steps allocate; frozen objects come back at the end.
        gc.freeze()
        try:
            self.open()  # inside: a tracer that fails here still gets the lease released
            strategy(self)
            self.journal.flush()  # group commit: the last batch
        finally:
            gc.unfreeze()
            self.end()

    def give_up(self) -> None:
        """A prepared run that will never run (its `start_async` was cancelled while it was
        being prepared): its lease goes back, and what preparing froze is unfrozen."""
        gc.unfreeze()
        lease = self.journal.lease
        if lease is not None:
            lease.release()

    def end(self) -> None:
        """After the steps, however they ended (sync and async): commit what completed if a
        group commit holds it (a failure here is only logged), then `close`."""
        if self.journal.group is not None:
            try:
                self.journal.flush()
            except DotflowError as exc:
                logger.warning("could not commit the last batch of completed steps: %s", exc)
        self.close()


def sequential(ex: Execution) -> None:
    ex.run_chain(range(len(ex.specs)))


def sequential_group(ex: Execution) -> None:
    groups = ex.chains()
    workers = min(len(groups), ex.max_workers or 32)
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="dotflow-group") as pool:
        for future in [pool.submit(ex.run_chain, chain) for chain in groups]:
            future.result()


def _check_picklable(ex: Execution, pending: list[int]) -> None:
    for index in pending:
        try:
            pickle.dumps((ex.specs[index].step, ex.initial[index]))
        except Exception as exc:
            raise InvalidStep(
                f"step {ex.specs[index].name!r} cannot run in parallel mode: the step and its "
                f"initial context must be picklable to reach a worker process, so define the "
                f"step at module level ({type(exc).__name__}: {exc})"
            ) from exc


def parallel(ex: Execution) -> None:
    pending = [i for i, record in enumerate(ex.run.steps) if not record.restored]
    if not pending:
        return
    _check_picklable(ex, pending)
    workers = max(1, min(len(pending), ex.max_workers or os.cpu_count() or 1))
    # The pool closes before its submitting threads end: a worker dies with the thread that
    # started it (see `die_with_parent`).
    with (
        concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="dotflow-par") as threads,
        WorkerPool(workers, ex.journal.lease) as pool,
    ):
        runner = pool.run_attempt

        def one(index: int) -> None:
            if not ex.halted():
                ex.run_step(index, None, runner)

        for future in [threads.submit(one, i) for i in pending]:
            future.result()


def background(ex: Execution) -> None:
    sequential(ex)


Strategy = Callable[[Execution], None]
STRATEGIES: dict[str, Strategy] = {
    "sequential": sequential,
    "sequential_group": sequential_group,
    "background": background,
    "parallel": parallel,
}
