"""A durable map: one logical step that calls a step once per item and commits item outputs in
batches, so a resume runs only the items not yet committed.

`workflow.map(step, items, ...)` adds a step whose code is `step`'s. Each item runs through its
own `TaskEngine` (the step's retry policy and timeout apply per item), in this thread, in
`max_concurrency` threads or coroutines, or on any `concurrent.futures.Executor` (threads,
processes, Dask's `Client.get_executor()`); outputs always come back here and are committed by
this runner, `commit_every` items per create-only object (`items/<step>/<seq>.json`).

An item is identified by the digest of its value (equal items share their committed outputs,
one each), under the map's base (its name, code version, input and `rerun_from` salt): a resume
restores a committed item only when all of these still match, so a changed item (or changed
code) runs again, and an item inserted, removed or moved leaves the others restored. The map
step's own checkpoint holds the list of outputs, in item order, for the next step; its input
digest covers the digest of every item, so changing the item list is a change of the map step.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._action import Action, AnyAction, Context, as_action
from ._engine import StepRecord, TaskEngine, call_step
from ._errors import (
    CheckpointError,
    ConfigurationError,
    InvalidStep,
    MapFailed,
    PreconditionFailed,
    StepTimeout,
    WorkflowCancelled,
)
from ._format import (
    ItemBatch,
    ItemFailure,
    ItemRow,
    decode_value,
    encode_value,
    item_batch_document,
    load_item_batch,
)
from ._identity import digest_value
from ._status import Status
from .retry import NO_RETRY

if TYPE_CHECKING:
    from ._strategies import Execution, StepSpec

logger = logging.getLogger("dotflow_providers")

#: What `items` may be: re-creatable on resume (never a one-shot iterator).
Items = list[Any] | tuple[Any, ...] | range | Callable[[], Iterable[Any]]


def check_commit_options(every: object, interval: object, what: str = "commit_every") -> None:
    """Refuse batch sizes and intervals that cannot work, naming the fix."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigurationError(f"{what} must be a whole number of at least 1, got {every!r}")
    if interval is not None and (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or not 0 < interval < math.inf
    ):
        raise ConfigurationError(
            f"commit_interval must be a positive number of seconds or None, got {interval!r}"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class MapSpec:
    """How a map step runs its items."""

    step: AnyAction
    items: Items
    commit_every: int
    max_concurrency: int | None
    executor: concurrent.futures.Executor | None
    fail_fast: bool

    def materialize(self) -> list[Any]:
        """This run's items (a callable is called again on every start)."""
        source = self.items() if callable(self.items) else self.items
        return list(source)

    def input_digest(self, context_digest: str, items: list[Any], name: str) -> str:
        """The map step's input: its initial context and every item."""
        return _hash(context_digest, digest_value(items, f"the items of map step {name!r}"))


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def map_step(
    step: Any,
    items: Items,
    *,
    name: str | None,
    commit_every: int,
    max_concurrency: int | None,
    executor: concurrent.futures.Executor | None,
    fail_fast: bool,
    initial_context: Any,
    group: str | None,
) -> StepSpec:
    """The `StepSpec` of `workflow.map(...)`, checked before anything runs."""
    from ._strategies import StepSpec

    action = as_action(step)
    if "item" not in action.accepts:
        raise InvalidStep(
            f"step {action.name!r} cannot be mapped: give it an `item` parameter, which "
            "receives each item (it may also take initial_context)"
        )
    extra = action.accepts - {"item", "initial_context"}
    if extra:
        raise InvalidStep(
            f"a mapped step takes `item` (and initial_context), not {', '.join(sorted(extra))}: "
            f"step {action.name!r} would receive nothing there"
        )
    if not (isinstance(items, (list, tuple, range)) or callable(items)):
        raise ConfigurationError(
            f"map items must be a list, tuple, range or a callable returning an iterable (so a "
            f"resume can re-create them), got {type(items).__name__}"
        )
    check_commit_options(commit_every, None)
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ConfigurationError(f"max_concurrency must be at least 1, got {max_concurrency!r}")
    if executor is not None and not isinstance(executor, concurrent.futures.Executor):
        raise ConfigurationError(
            f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}"
        )
    spec = MapSpec(action, items, commit_every, max_concurrency, executor, fail_fast)
    accepts = {"map_run"} | ({"initial_context"} & action.accepts)
    wrapper: AnyAction = Action(
        func=_run_map,
        name=name or action.name,
        policy=NO_RETRY,  # each item has its own policy; the map as a whole is not retried
        accepts=frozenset(accepts),
        version=action.version,
        code=action.code or action.func,
    )
    return StepSpec(wrapper, name or action.name, initial_context, group, map=spec)


def call_attempt(step: AnyAction, kwargs: dict[str, Any], attempt: int) -> Any:
    """One attempt of an item on an executor; `attempt` only makes each submission unique."""
    return call_step(step, kwargs)


def _run_map(map_run: tuple[Execution, int], initial_context: Any = None) -> list[Any]:
    execution, index = map_run
    return MapRun(execution, index).run()


class _Batcher:
    """Collects finished items and commits them, `commit_every` at a time, as one object."""

    def __init__(self, run: MapRun, first_seq: int) -> None:
        self.run = run
        self.seq = first_seq
        self.rows: list[ItemRow] = []
        self.outputs: list[bytes] = []
        self.failures: list[ItemFailure] = []
        self.first_at = 0.0
        self.lock = threading.Lock()

    def add(self, record: StepRecord, digest: str) -> None:
        run = self.run
        if not self.rows and not self.failures:
            self.first_at = time.monotonic()
        if record.status is Status.COMPLETED:
            payload = encode_value(
                record.output, f"the output of item {record.index} of map step {run.name!r}"
            )
            history = list(record.history) if len(record.history) > 1 else None
            started = record.started_at or 0.0
            self.rows.append(
                (
                    record.index,
                    digest,
                    record.attempts,
                    started,
                    record.finished_at or started,
                    history,
                )
            )
            self.outputs.append(payload)
        else:
            self.failures.append(
                ItemFailure(
                    record.index,
                    digest,
                    record.attempts,
                    record.error,
                    record.error_type,
                    list(record.history),
                )
            )
        pending = len(self.rows) + len(self.failures)
        interval = run.interval
        if pending >= run.spec.commit_every or (
            interval is not None and time.monotonic() - self.first_at >= interval
        ):
            self.flush()

    def flush(self) -> None:
        if not self.rows and not self.failures:
            return
        run = self.run
        journal = run.execution.journal
        if journal.lease is not None:
            journal.lease.check()  # fenced per batch
        key = journal.layout.item_batch(run.name, self.seq)
        data = item_batch_document(
            journal.workflow_id,
            run.name,
            self.seq,
            run.base,
            time.time(),
            self.rows,
            self.outputs,
            self.failures,
        )
        try:
            journal.store.put(key, data, if_none_match=True)
        except PreconditionFailed:
            raise CheckpointError(
                f"item batch {key!r} was written by another runner while this one ran "
                "(without the lease?); its items run again on the next start"
            ) from None
        self.seq += 1
        counts = run.record.items
        assert counts is not None
        counts["items_done"] += len(self.rows)
        counts["items_failed"] += len(self.failures)
        self.rows, self.outputs, self.failures = [], [], []
        logger.info(
            "map step %s: %d of %d items done, %d failed",
            run.name,
            counts["items_done"],
            counts["items_total"],
            counts["items_failed"],
            extra={"workflow_id": journal.workflow_id, "step": run.name, **counts},
        )


class MapRun:
    """One execution of a map step inside a run."""

    def __init__(self, execution: Execution, index: int) -> None:
        spec = execution.specs[index].map
        assert spec is not None
        self.execution = execution
        self.index = index
        self.spec: MapSpec = spec
        self.name = execution.specs[index].name
        self.record = execution.run.steps[index]
        self.items = execution.maps[index]
        self.interval = execution.journal.commit_interval
        identity = execution.journal.identities[index]
        step = spec.step
        context = execution.initial[index]
        context_digest = (
            digest_value(context, f"the initial context of step {self.name!r}")
            if "initial_context" in step.accepts
            else "none"
        )
        self.base = _hash(identity.name, identity.version, context_digest, identity.salt)
        self.kwargs: dict[str, Any] = (
            {"initial_context": Context(context)} if "initial_context" in step.accepts else {}
        )
        self.stop = False

    def _committed(self, digests: list[str]) -> dict[int, bytes]:
        """The outputs of items committed under this base, by the index of the item they are
        for now: one LIST, one GET per batch. An output is for an item of the same digest: the
        one at the index it was committed at when that is still so, else any other not given
        one (an item inserted, removed or moved leaves the others restored)."""
        journal = self.execution.journal
        done: dict[int, bytes] = {}
        spare: dict[str, collections.deque[bytes]] = {}  # by digest, not at their index now
        total = len(digests)
        next_seq = 1
        for key in journal.store.list(journal.layout.items(self.name)):
            data = journal.store.get(key)
            if data is None:
                continue
            batch: ItemBatch = load_item_batch(key, data)
            next_seq = max(next_seq, batch.seq + 1)
            if batch.base != self.base:
                continue  # another code version, input or rerun_from salt
            for row, output in zip(batch.rows, batch.outputs, strict=True):
                at, digest = row[0], row[1]
                if at < total and digests[at] == digest and at not in done:
                    done[at] = output
                else:
                    spare.setdefault(digest, collections.deque()).append(output)
        self.first_seq = next_seq
        if spare:
            for at, digest in enumerate(digests):
                if at not in done and (outputs := spare.get(digest)):
                    done[at] = outputs.popleft()
        return done

    def run(self) -> list[Any]:
        items, name = self.items, self.name
        digests = [
            digest_value(item, f"item {i} of map step {name!r}") for i, item in enumerate(items)
        ]
        done = self._committed(digests)
        outputs: list[Any] = [None] * len(items)
        key = self.execution.journal.layout.items(name)
        for at, payload in done.items():
            outputs[at] = decode_value(key, payload)
        self.record.items = {
            "items_done": len(done),
            "items_failed": 0,
            "items_total": len(items),
        }
        pending = [i for i in range(len(items)) if i not in done]
        if done:
            logger.info(
                "map step %s: %d of %d items restored, %d to run",
                name,
                len(done),
                len(items),
                len(pending),
                extra={"workflow_id": self.execution.journal.workflow_id, "step": name},
            )
        batcher = _Batcher(self, self.first_seq)
        failed: list[StepRecord] = []

        def finished(record: StepRecord) -> None:
            with batcher.lock:
                if record.status is Status.CANCELLED:
                    self.stop = True
                    return
                batcher.add(record, digests[record.index])
                if record.status is Status.COMPLETED:
                    outputs[record.index] = record.output
                else:
                    failed.append(record)
                    if self.spec.fail_fast:
                        self.stop = True

        try:
            self._run_items(pending, finished)
        finally:
            with batcher.lock:
                batcher.flush()
        if self.execution.run.cancel_event.requested:
            raise WorkflowCancelled(f"the run was cancelled while map step {name!r} ran")
        if failed:
            first = min(failed, key=lambda r: r.index)
            stopped = " (fail_fast: stopped at the first)" if self.spec.fail_fast else ""
            raise MapFailed(
                f"{len(failed)} of {len(items)} items of map step {name!r} failed{stopped}; "
                f"item {first.index}: {first.error}. Committed items are kept: the next start "
                "runs only the failed and unfinished ones"
            )
        return outputs

    # --- running items ------------------------------------------------------------------------

    def _item_record(self, at: int) -> StepRecord:
        return StepRecord(index=at, name=f"{self.name}[{at}]", workflow_id=self.record.workflow_id)

    def _run_items(self, pending: list[int], finished: Callable[[StepRecord], None]) -> None:
        spec, step = self.spec, self.spec.step
        if spec.executor is None and step.is_async:
            asyncio.run(self._run_async(pending, finished))
            return
        runner = None if spec.executor is None else self._executor_runner(spec.executor)
        workers = spec.max_concurrency or (1 if spec.executor is None else 8)
        cancel = self.execution.run.cancel_event
        items, kwargs = self.items, self.kwargs

        def run_one(at: int) -> None:
            record = self._item_record(at)
            engine = TaskEngine(step, record, None, None, cancel, runner)
            with engine:
                engine.execute_with_retry({**kwargs, "item": items[at]})
            finished(record)

        if workers == 1:
            for at in pending:
                if self.stop or cancel.requested:
                    return
                run_one(at)
            return
        source = iter(pending)
        take = threading.Lock()

        def worker() -> None:
            while not (self.stop or cancel.requested):
                with take:
                    at = next(source, None)
                if at is None:
                    return
                run_one(at)

        with concurrent.futures.ThreadPoolExecutor(
            min(workers, max(1, len(pending))), thread_name_prefix="dotflow-map"
        ) as pool:
            for future in [pool.submit(worker) for _ in range(min(workers, max(1, len(pending))))]:
                future.result()

    def _executor_runner(
        self, executor: concurrent.futures.Executor
    ) -> Callable[[AnyAction, dict[str, Any]], Any]:
        attempts = itertools.count()

        def run_attempt(step: AnyAction, kwargs: dict[str, Any]) -> Any:
            # a distinct argument per attempt: executors that cache by arguments (Dask's
            # `pure` tasks) would otherwise hand a retry the failed attempt's result
            future = executor.submit(call_attempt, step, kwargs, next(attempts))
            try:
                return future.result(timeout=step.timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise StepTimeout(
                    f"item of map step {self.name!r} did not finish within {step.timeout}s on "
                    "its executor"
                ) from None

        return run_attempt

    async def _run_async(self, pending: list[int], finished: Callable[[StepRecord], None]) -> None:
        from ._async import AsyncTaskEngine

        step, cancel = self.spec.step, self.execution.run.cancel_event
        items, kwargs = self.items, self.kwargs
        source = iter(pending)

        async def worker() -> None:
            while not (self.stop or cancel.requested):
                at = next(source, None)
                if at is None:
                    return
                record = self._item_record(at)
                async with AsyncTaskEngine(step, record, None, None, cancel) as engine:
                    await engine.execute_with_retry({**kwargs, "item": items[at]})
                finished(record)

        workers = min(self.spec.max_concurrency or 1, max(1, len(pending)))
        await asyncio.gather(*(worker() for _ in range(workers)))


__all__ = ["MapFailed", "MapRun", "MapSpec", "check_commit_options", "map_step"]
