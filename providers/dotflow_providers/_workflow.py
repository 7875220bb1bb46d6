"""`Workflow`: what to run, and the operations on a workflow id (reset, cancel)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gc
import hashlib
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from itertools import compress, count, repeat
from operator import attrgetter, itemgetter
from typing import Any

from ._action import Action, as_action, class_steps
from ._compensation import Compensation, undo
from ._engine import StepRecord
from ._errors import (
    CheckpointError,
    CompensationFailed,
    ConfigurationError,
    InterruptedStage,
    InvalidStep,
    KeyTooLong,
    LockHeld,
    NotRunning,
    RolledBack,
    UnknownMode,
)
from ._format import Layout, StepDocument, check_workflow_id, step_key_name
from ._identity import (
    ON_CHANGE,
    OnChange,
    StepIdentity,
    digest_value,
    with_bound_arguments,
    with_fields,
)
from ._journal import Journal, read_v1_manifest, request_cancel
from ._lease import Lease, LeaseConfig, read_lease
from ._map import Items, check_commit_options, map_step
from ._run import Run
from ._stages import Stage
from ._status import Status
from ._strategies import (
    CHAIN_LAYOUTS,
    STRATEGIES,
    Execution,
    StepSpec,
    kept_for_the_run,
    upstreams,
)
from .retry import RetryPolicy
from .storage import CheckpointStore, MemoryStore, store_from_url
from .tracing import LoggingTracer, Tracer, Tracers

logger = logging.getLogger("dotflow_providers")

#: `tuple.__new__(StepSpec, fields)` builds a named tuple without its Python-level `__new__`
#: (one spec is built per `add()`, one identity per step and start)
_new = tuple.__new__

#: The input digest of a step that does not take `initial_context`: its context cannot matter.
_NO_INPUT = "none"
#: a StepSpec's name (`spec.name`, as a C function for `map`)
_NAME = itemgetter(1)
_STEP = itemgetter(0)
_CODE_VERSION, _BINDS = attrgetter("code_version"), attrgetter("binds")


class Workflow:
    """Steps to run in order, with their checkpoints in `store`.

    Starting a workflow id that already has checkpoints restores every step whose checkpoint is
    still valid (same name, code version, input and upstream output) and runs the rest; see
    `on_change`. Without `workflow_id`, the id is derived from the first step and the
    `initial_context` given to `start`, so re-running the same script resumes too.

    `on_change` says what to do when steps, their code or their inputs changed since the
    checkpoints were written: `"rerun"` (default) runs the first changed step and everything
    that received its output; `"raise"` raises `WorkflowDefinitionChanged` or `InputChanged`;
    `"reuse"` restores the old checkpoints anyway, with a warning. `clean_on_success` deletes
    the checkpoints once a run completes.

    `commit_every=k` commits up to k completed steps as one atomic write (one object, one
    fsync'd file), or `commit_interval` seconds after the first of them, whichever comes first;
    a crash then runs up to k-1 committed-in-memory steps again. The default (1) commits each
    step before the next starts.
    """

    def __init__(
        self,
        workflow_id: str | None = None,
        store: CheckpointStore | str | None = None,
        on_change: OnChange = "rerun",
        *,
        lock: LeaseConfig | bool = True,
        tracer: Tracer | None = None,
        clean_on_success: bool = False,
        commit_every: int = 1,
        commit_interval: float | None = None,
    ) -> None:
        check_commit_options(commit_every, commit_interval)
        if on_change not in ON_CHANGE:
            raise ConfigurationError(
                f"on_change must be 'rerun', 'raise' or 'reuse', got {on_change!r}"
            )
        self._workflow_id = None if workflow_id is None else check_workflow_id(workflow_id)
        if isinstance(store, str):
            store = store_from_url(store)
        self.store: CheckpointStore = MemoryStore() if store is None else _declared(store)
        if self._workflow_id is not None:
            check_key_limits(self.store, self._workflow_id)
        self.on_change: OnChange = on_change
        self.lock: LeaseConfig | None = (
            LeaseConfig() if lock is True else (lock if isinstance(lock, LeaseConfig) else None)
        )
        self.tracer = tracer
        self.clean_on_success = clean_on_success
        self.commit_every = commit_every
        self.commit_interval = commit_interval
        self._specs: list[StepSpec] = []
        self._names: set[str] = set()
        #: some step has its own initial context, is a stage, or binds arguments (without
        #: any, a start derives initial contexts and versions by C calls only)
        self._uncommon = False

    def add(
        self,
        step: object,
        *,
        name: str | None = None,
        initial_context: Any = None,
        group: str | None = None,
    ) -> Workflow:
        """Append a step: a function, an `@action`, a `Stage`, or a class/object with `@action`
        methods. Step names are unique within a workflow (they key its checkpoints)."""
        if type(step) is Action:  # the common case first: an @action added by name
            self._append(
                _new(StepSpec, (step, name or step.name, initial_context, group, None, None))
            )
            return self
        if isinstance(step, Stage):
            if name is not None:
                raise InvalidStep("a stage is named by its own `name` field")
            self._append(StepSpec(step.as_action(), step.name, initial_context, group, step))
            return self
        if isinstance(step, Action) or (callable(step) and not isinstance(step, type)):
            actions = [as_action(step)]
            names = [name or actions[0].name]
        else:
            actions = class_steps(step)
            if not actions:
                raise InvalidStep(f"{step!r} has no @action methods to run")
            names = [f"{name}.{a.name.rpartition('.')[2]}" if name else a.name for a in actions]
        for act, step_name in zip(actions, names, strict=True):
            self._append(StepSpec(act, step_name, initial_context, group))
        return self

    def map(
        self,
        step: Any,
        items: Items,
        *,
        name: str | None = None,
        commit_every: int = 100,
        max_concurrency: int | None = None,
        executor: concurrent.futures.Executor | None = None,
        fail_fast: bool = False,
        initial_context: Any = None,
        group: str | None = None,
    ) -> Workflow:
        """Append one step that calls `step` once per item and passes on the list of outputs.

        `step` (an `@action`, sync or async, with its own retry policy and timeout per item)
        takes an `item` parameter, and may take `initial_context`. `items` is a list, tuple,
        range, or a callable returning an iterable (called again on every start). Outputs are
        committed `commit_every` items per write; a resume runs only the items not committed
        (by index and value). Items run here one at a time, in `max_concurrency` threads (or
        coroutines, for an async step), or on `executor` (any `concurrent.futures.Executor`:
        threads, processes, Dask's `Client.get_executor()`). A failing item leaves a failure
        record; the map fails once the other items ran, or at once with `fail_fast`.
        """
        self._append(
            map_step(
                step,
                items,
                name=name,
                commit_every=commit_every,
                max_concurrency=max_concurrency,
                executor=executor,
                fail_fast=fail_fast,
                initial_context=initial_context,
                group=group,
            )
        )
        return self

    def _append(self, spec: StepSpec) -> None:
        step, name, context, _, stage, map_ = spec
        if map_ is None and step.takes_item:
            raise InvalidStep(
                f"step {name!r} takes an `item` parameter, which only a map gives: add it with "
                "workflow.map(step, items)"
            )
        if type(name) is not str or not name:
            raise InvalidStep(f"step names must be non-empty strings, got {name!r}")
        if name in self._names:
            raise InvalidStep(
                f"two steps are named {name!r}; step names key the checkpoints, so give one "
                "of them another name with add(..., name=...)"
            )
        store = self.store
        if self._workflow_id is not None and (
            store.max_key_bytes is not None or store.max_key_part_bytes is not None
        ):  # (most stores have no limit: no call then, one per `add()`)
            check_key_limits(store, self._workflow_id, (name,), workflow=False)
        self._names.add(name)
        self._specs.append(spec)
        if context is not None or stage is not None or step.binds:
            self._uncommon = True

    def copy(
        self,
        *,
        workflow_id: str | None = None,
        store: CheckpointStore | str | None = None,
        on_change: OnChange | None = None,
        lock: LeaseConfig | bool | None = None,
        tracer: Tracer | None = None,
        clean_on_success: bool | None = None,
        commit_every: int | None = None,
        commit_interval: float | None = None,
    ) -> Workflow:
        """The same steps under another id, store or policy (how adapters bind a workflow)."""
        clone = Workflow(
            workflow_id if workflow_id is not None else self._workflow_id,
            store if store is not None else self.store,
            on_change or self.on_change,
            lock=(self.lock or False) if lock is None else lock,
            tracer=tracer or self.tracer,
            clean_on_success=(
                self.clean_on_success if clean_on_success is None else clean_on_success
            ),
        )
        every = self.commit_every if commit_every is None else commit_every
        interval = self.commit_interval if commit_interval is None else commit_interval
        check_commit_options(every, interval)
        clone.commit_every, clone.commit_interval = every, interval
        if clone._workflow_id is not None:
            check_key_limits(clone.store, clone._workflow_id, self.steps)
        clone._specs = list(self._specs)
        clone._names = set(self._names)
        clone._uncommon = self._uncommon
        return clone

    @property
    def steps(self) -> list[str]:
        return [spec.name for spec in self._specs]

    def policy_of(self, name: str) -> RetryPolicy:
        """The retry policy of step `name` (orchestrators read deadlines and breakers)."""
        for spec in self._specs:
            if spec.name == name:
                return spec.step.policy
        raise ConfigurationError(f"no step is named {name!r}; the steps are {self.steps}")

    def _initial(self, default: Any) -> list[Any]:
        """Each step's initial context: its own (`add(initial_context=...)`), else the start's;
        a stage given neither starts from its `state`, read now (it is the stage's input, and
        counts as one: a changed state runs the stage again)."""
        specs = self._specs
        if not self._uncommon:
            return [default] * len(specs)
        initial = [
            default if spec.initial_context is None else spec.initial_context for spec in specs
        ]
        if default is None:
            for index, spec in enumerate(specs):
                if spec.stage is not None and initial[index] is None:
                    initial[index] = spec.stage.state
        return initial

    def workflow_id_for(self, initial_context: Any = None) -> str:
        """The id checkpoints are stored under: the given one, or one derived from the first
        step's module and name and the initial contexts (so appending or editing steps keeps
        the id, and other inputs get their own)."""
        if self._workflow_id is not None:
            return self._workflow_id
        if not self._specs:
            raise InvalidStep("the workflow has no steps; add some with workflow.add(step)")
        first = self._specs[0]
        module = _module_identity(getattr(first.step.func, "__module__", None) or "")
        inputs = digest_value(self._initial(initial_context), "the initial contexts")
        return (
            "wf-"
            + hashlib.sha256("\0".join([module, first.name, inputs]).encode()).hexdigest()[:20]
        )

    @property
    def workflow_id(self) -> str:
        return self.workflow_id_for()

    def reset(self, initial_context: Any = None) -> None:
        """Delete this workflow's checkpoints so the next start runs every step.

        Takes the workflow's lease first, so a running workflow is never reset under its feet.
        """
        reset(self.workflow_id_for(initial_context), self.store, self.lock or False)

    def compensate(
        self,
        initial_context: Any = None,
        *,
        mode: str = "sequential",
        error: BaseException | None = None,
    ) -> Compensation:
        """Undo the completed steps of a finished run, newest first, from their checkpoints.

        Every step with a checkpoint and a compensation (a `Stage`'s `rollback`) is undone with
        its committed output, in this process or any other, and its checkpoint forgotten, so
        the next start runs it again and a second `compensate` (a second rollback, a retry)
        never undoes it twice; steps without a compensation keep their checkpoints. What was
        committed is undone whether or not it is still valid for the definition as it is now
        (its work was done: a stage whose code, fields or rollback settings changed since is
        still undone, by its rollback as it is now), newest first in the order the steps are
        defined now. A step no longer defined cannot be undone: a warning names it, and its
        checkpoint is kept. Give the run's `initial_context` (a derived workflow id depends on
        it); `mode` is checked but no longer changes what is undone. `error` is what the
        compensations receive (`RolledBack` by default). The workflow's lease is
        held throughout (`LockHeld` while a run holds it). The first compensation that raises
        stops it with `CompensationFailed` (caused by that failure): that step and the ones
        before it keep their checkpoints, so calling `compensate` again resumes there.
        """
        if mode not in CHAIN_LAYOUTS:
            raise UnknownMode(f"unknown mode {mode!r}; choose one of {', '.join(CHAIN_LAYOUTS)}")
        initial, maps, layout = self._derive(initial_context)
        reason = error
        if reason is None:
            reason = RolledBack(f"workflow {layout.workflow_id!r} is compensated on request")
        records = self._records(layout.workflow_id, {}, maps)
        failed = None
        lease = None if self.lock is None else Lease(self.store, layout.lock, self.lock)
        if lease is not None:
            lease.acquire()
        try:
            current = self.store.get(layout.manifest)
            legacy = current is None and read_v1_manifest(self.store, layout) is not None
            if current is not None or legacy:  # else never started: nothing to undo
                journal = Journal(self.store, layout, lease)
                # What was committed is undone, valid for the definition as it is now or not:
                # its work was done, so versions need no settings (a stage holding a client
                # is still undone). Format-1 checkpoints (0.1.0) are migrated first, exactly as
                # a start migrates them: the documents written record a start's versions.
                identities = self._identities(mode, initial, maps, settings=legacy)
                on_change = self.on_change if legacy else "rerun"
                opened = journal.open(identities, on_change=on_change, v1_inputs=initial)
                committed = {
                    index: opened.committed[name]
                    for index, name in enumerate(self.steps)
                    if name in opened.committed
                }
                gone = sorted(set(opened.committed) - set(self.steps))
                if gone:
                    logger.warning(
                        "workflow %s: steps %s have checkpoints but are no longer defined, so "
                        "they cannot be undone; their checkpoints are kept",
                        layout.workflow_id,
                        ", ".join(gone),
                        extra={"workflow_id": layout.workflow_id},
                    )
                records = journal.records = self._records(layout.workflow_id, committed, maps)
                for record in records:
                    record.restored = False  # completed before, not restored by a run
                steps = [spec.step for spec in self._specs]
                failed = undo(range(len(records)), records, steps, reason, journal.discard)
                journal.flush()
        finally:
            if lease is not None:
                lease.release()
        done = Compensation(layout.workflow_id, records)
        if failed is not None:
            record, failure = failed
            raise CompensationFailed(
                f"the compensation of step {record.name!r} of workflow {layout.workflow_id!r} "
                f"failed ({record.rollback_error}) while undoing its completed steps for "
                f"{type(reason).__name__}: {reason}; undone before it: "
                f"{', '.join(done.compensated) or 'none'}. That step and the ones before it keep "
                "their checkpoints: fix its compensation and call compensate() again to resume",
                record.name,
                done,
                reason,
            ) from failure
        return done

    def start(
        self,
        mode: str = "sequential",
        keep_going: bool = False,
        *,
        initial_context: Any = None,
        max_workers: int | None = None,
        compensate: bool = False,
        strict_recovery: bool = False,
        rerun_from: str | None = None,
    ) -> Run:
        """Run the pending steps and return the `Run` (in `background` mode, at once).

        `initial_context` is given to steps added without one. `max_workers` bounds the
        concurrent groups (`sequential_group`) or worker processes (`parallel`, default
        `os.cpu_count()`). With `compensate`, a failure rolls back the completed steps of its
        chain, newest first (saga style), and forgets their checkpoints, stopping at a rollback
        that fails (see `compensate`). `rerun_from` runs that step and every step after it even
        if their checkpoints are valid (durably: a crash in the middle never brings the
        superseded checkpoints back). A step that was running when
        a previous runner died is re-run with a warning, or with `strict_recovery` the start
        raises `InterruptedStage`. Errors in the definition, the inputs or the stored
        checkpoints are raised here, before any step runs.
        """
        strategy = _choose(STRATEGIES, mode)
        if _loop_running() and any(spec.step.is_async for spec in self._specs):
            raise ConfigurationError(
                "this workflow has async steps and start() was called inside a running event "
                "loop, where they cannot run; use `await workflow.start_async()`"
            )
        gc.freeze()  # see `Execution.execute`, which unfreezes: preparing allocates per step too
        try:
            execution = self._prepare(
                mode,
                keep_going,
                initial_context,
                max_workers,
                compensate,
                strict_recovery,
                rerun_from,
            )
        except BaseException:
            gc.unfreeze()
            raise
        if mode == "background":
            thread = threading.Thread(
                target=execution.execute,
                args=(strategy,),
                name="dotflow-background",
                daemon=True,
            )
            try:
                thread.start()
            except BaseException:  # no thread: nothing will unfreeze or release but this
                gc.unfreeze()
                execution.close()
                raise
        else:
            execution.execute(strategy)
        return execution.run

    async def start_async(
        self,
        mode: str = "async_sequential",
        keep_going: bool = False,
        *,
        initial_context: Any = None,
        max_concurrency: int | None = None,
        compensate: bool = False,
        strict_recovery: bool = False,
        rerun_from: str | None = None,
    ) -> Run:
        """Run the pending steps in the running event loop and return the `Run`.

        `async_sequential` passes each output on; `async_parallel` runs independent steps (and
        each `group` as a chain) concurrently, at most `max_concurrency` at once. Async steps
        are awaited in this loop; sync steps run in worker threads. Store I/O never blocks the
        loop. Cancelling the awaiting task cancels the running steps (marked CANCELLED).
        """
        from ._async import ASYNC_STRATEGIES, execute_async

        strategy = _choose(ASYNC_STRATEGIES, mode)
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be at least 1, got {max_concurrency}")
        gc.freeze()  # as `start` does: what exists now is not rescanned while the run allocates
        try:
            execution = await _prepare_in_thread(
                functools.partial(
                    self._prepare,
                    mode,
                    keep_going,
                    initial_context,
                    max_concurrency,
                    compensate,
                    strict_recovery,
                    rerun_from,
                )
            )
            await execute_async(execution, strategy)
        finally:
            gc.unfreeze()
        return execution.run

    def _derive(self, initial_context: Any) -> tuple[list[Any], dict[int, list[Any]], Layout]:
        """What a start and a compensation derive from the definition before what each
        checkpoint must be valid for (`_identities`): each step's initial context, the map
        steps' items, and where the workflow's documents live."""
        if not self._specs:
            raise InvalidStep("the workflow has no steps; add some with workflow.add(step)")
        initial = self._initial(initial_context)
        maps = {i: s.map.materialize() for i, s in enumerate(self._specs) if s.map is not None}
        return initial, maps, Layout(self.workflow_id_for(initial_context))

    def _identities(
        self,
        mode: str,
        initial: list[Any],
        maps: dict[int, list[Any]] | None = None,
        settings: bool = True,
    ) -> list[StepIdentity]:
        """What each step's checkpoint must be valid for in this run (salts come from the
        manifest). Built a column at a time: a run of many steps builds no Python frame per step.
        `settings`: count partials' bound arguments and stages' fields in their versions (see
        `compensate`, which does without them)."""
        specs = self._specs
        inputs: dict[int, str] = {}  # by context object: the same context given to many steps

        def input_of(index: int) -> str:
            context = initial[index]
            found = inputs.get(id(context))
            if found is None:
                found = inputs[id(context)] = digest_value(
                    context, f"the initial context of step {specs[index].name!r}"
                )
            return found

        steps = list(map(_STEP, specs))
        digests = [
            input_of(index) if "initial_context" in step.accepts else _NO_INPUT
            for index, step in enumerate(steps)
        ]
        if maps:
            for index, items in maps.items():
                spec = specs[index]
                assert spec.map is not None
                digests[index] = spec.map.input_digest(digests[index], items, spec.name)
        versions = list(map(_CODE_VERSION, steps))
        counting = self._uncommon and settings
        for index in compress(count(), map(_BINDS, steps)) if counting else ():
            step = steps[index]
            try:  # a partial's bound arguments as they are now (they may change in place)
                versions[index] = with_bound_arguments(versions[index], step.code or step.func)
            except CheckpointError as exc:
                raise CheckpointError(f"step {specs[index].name!r}: {exc}") from exc
        for index, spec in enumerate(specs) if counting else ():
            if spec.stage is not None:
                try:  # a stage's settings as they are now (they may be reassigned after add())
                    versions[index] = with_fields(versions[index], spec.stage.counted_fields())
                except CheckpointError as exc:
                    raise CheckpointError(f"stage {spec.name!r}: {exc}") from exc
        columns = zip(
            range(len(specs)),
            map(_NAME, specs),
            versions,
            digests,
            repeat(""),
            upstreams(specs, mode),
        )
        # (position, name, version, input, salt, upstream), each built by C calls only
        return list(map(_new, repeat(StepIdentity), columns))

    def _prepare(
        self,
        mode: str,
        keep_going: bool,
        initial_context: Any,
        max_workers: int | None,
        compensate: bool = False,
        strict_recovery: bool = False,
        rerun_from: str | None = None,
    ) -> Execution:
        """Take the lease, decide from the stored checkpoints what is restored, and build the
        run (all before a step runs). What it keeps per step is built with the cyclic collector
        paused (see `kept_for_the_run`); the lease, the store reads and the items callables are
        not."""
        if max_workers is not None and max_workers < 1:
            raise ConfigurationError(f"max_workers must be at least 1, got {max_workers!r}")
        rerun_index = None
        if rerun_from is not None:
            if rerun_from not in self._names:
                raise ConfigurationError(
                    f"rerun_from={rerun_from!r} names no step of this workflow; its steps are "
                    f"{self.steps}"
                )
            rerun_index = self.steps.index(rerun_from)
        if mode == "parallel" and any(spec.map is not None for spec in self._specs):
            raise ConfigurationError(
                "map steps cannot run in parallel mode (their items are run by this runner); "
                "give the map an executor= (a ProcessPoolExecutor) and start it sequentially"
            )
        if mode == "parallel":
            keeping = [spec.name for spec in self._specs if "checkpoint" in spec.step.accepts]
            if keeping:
                raise ConfigurationError(
                    f"step {keeping[0]!r} takes a checkpoint (in-step progress), which parallel "
                    "mode cannot hand to a worker process (it writes through this runner's "
                    "store and lease); start it in another mode, or split the work into steps"
                )
        initial, maps, layout = self._derive(initial_context)
        with kept_for_the_run():
            identities = self._identities(mode, initial, maps)
        if self._workflow_id is None:  # derived: known only now (a given one was checked)
            check_key_limits(self.store, layout.workflow_id, self.steps)
        lease = None if self.lock is None else Lease(self.store, layout.lock, self.lock)
        if lease is not None:
            lease.acquire()
        try:
            journal = Journal(
                self.store,
                layout,
                lease,
                commit_every=self.commit_every,
                commit_interval=self.commit_interval,
            )
            journal.check_cancel()
            opened = journal.open(
                identities, on_change=self.on_change, rerun_from=rerun_index, v1_inputs=initial
            )
            with kept_for_the_run():
                records = self._records(layout.workflow_id, opened.restored, maps)
            interrupted = self._interrupted(layout, lease, opened.plan.restored, strict_recovery)
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        if interrupted is not None:
            records[interrupted].interrupted = True
        journal.records = records
        run = Run(layout.workflow_id, records, mode)
        if lease is not None:
            # a cancel request for this run, from another process, is noticed at a heartbeat
            owner = lease.owner
            lease.on_heartbeat = lambda: run.cancel() if journal.cancel_requested(owner) else None
        tracer = self.tracer
        if logger.isEnabledFor(logging.DEBUG):  # transitions are logged only when asked for
            tracer = Tracers(tracer, LoggingTracer())
        return Execution(
            run,
            self._specs,
            initial,
            journal,
            keep_going,
            tracer,
            max_workers,
            compensate,
            self.clean_on_success,
            maps=maps,
        )

    def _records(
        self, workflow_id: str, restored: dict[int, StepDocument], maps: dict[int, list[Any]]
    ) -> list[StepRecord]:
        """A record per step, the restored ones COMPLETED with their committed outputs."""
        records = [StepRecord(i, spec.name, workflow_id) for i, spec in enumerate(self._specs)]
        for index, doc in restored.items():
            record = records[index]
            record.status, record.attempts, record.restored = Status.COMPLETED, doc.attempts, True
            record.started_at, record.finished_at = doc.started_at, doc.finished_at
            record.duration, record.output = doc.finished_at - doc.started_at, doc.output()
            record.checksum, record.history = doc.checksum, doc.history
            if index in maps and isinstance(record.output, list):
                total = len(record.output)
                record.items = {"items_done": total, "items_failed": 0, "items_total": total}
        return records

    def _interrupted(
        self, layout: Layout, lease: Lease | None, restored: frozenset[int], strict: bool
    ) -> int | None:
        """The step a dead runner was executing: the first one it had not committed."""
        if lease is None or not lease.took_over:
            return None
        pending = next((i for i in range(len(self._specs)) if i not in restored), None)
        if pending is None:
            return None
        name = self._specs[pending].name
        if strict:
            raise InterruptedStage(
                f"step {name!r} of workflow {layout.workflow_id!r} was running when its runner "
                "died (its lease expired unreleased); its partial work may need a look. "
                "Start again with strict_recovery=False to re-run it, or reset the workflow"
            )
        logger.warning(
            "step %s was running when the previous runner died; running it again",
            name,
            extra={"step": name, "workflow_id": layout.workflow_id},
        )
        return pending

    def __repr__(self) -> str:
        return f"<Workflow {self._workflow_id or '(derived id)'} steps={self.steps}>"


async def _prepare_in_thread(prepare: Callable[[], Execution]) -> Execution:
    """`prepare` (a `Workflow._prepare`) in a worker thread: it reads the store. A thread
    cannot be stopped: when the awaiting task is cancelled meanwhile, the run being prepared is
    given up wherever it ends up (`Execution.give_up`: its lease released), by the thread if it
    is still preparing, else by a thread started here."""
    lock = threading.Lock()
    prepared: list[Execution] = []
    given_up = False

    def prepare_then_check() -> Execution:
        execution = prepare()
        with lock:
            prepared.append(execution)
            abandoned = given_up
        if abandoned:
            execution.give_up()
        return execution

    try:
        return await asyncio.to_thread(prepare_then_check)
    except asyncio.CancelledError:
        with lock:
            given_up = True
            orphan = prepared[0] if prepared else None
        if orphan is not None:  # prepared, and the cancel came before its answer
            threading.Thread(target=orphan.give_up, name="dotflow-give-up").start()
        raise


def _module_identity(module: str) -> str:
    """What a derived workflow id takes from the first step's module: its name, but for a
    script run as `__main__`, which every script is: then its module name when run with
    `python -m`, else its file's real path (two scripts must not share their checkpoints;
    moving a script starts it afresh; a symlink to it is the same script), else `__main__`
    (an interactive session, `python -c`)."""
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", ""):
        return str(spec.name)
    path = getattr(main, "__file__", None)
    return "__main__:" + os.path.realpath(path) if isinstance(path, str) else module


class StagedTask:
    """A thin convenience: stages, a store, a task id and a default policy, as a `Workflow`."""

    def __init__(
        self,
        stages: list[Stage[Any]],
        store: CheckpointStore | str | None = None,
        task_id: str | None = None,
        retry: Any = None,
        **workflow_options: Any,
    ) -> None:
        self.workflow: Workflow = Workflow(task_id, store=store, **workflow_options)
        for stage in stages:
            if retry is not None and stage.retry is None:
                stage = stage.model_copy(update={"retry": retry})  # noqa: PLW2901
            self.workflow.add(stage)

    def start(self, **options: Any) -> Run:
        return self.workflow.start(**options)


#: what every store declares (see `CheckpointStore`)
_STORE_DECLARES = ("url", "blocking", "max_key_bytes", "max_key_part_bytes")


def _declared(store: CheckpointStore) -> CheckpointStore:
    """`store`, if it declares what the `CheckpointStore` protocol asks of every store."""
    missing = [name for name in _STORE_DECLARES if not hasattr(store, name)]
    if missing:
        raise ConfigurationError(
            f"{type(store).__name__} does not declare {', '.join(missing)}, which every "
            "checkpoint store declares (see CheckpointStore): e.g. blocking = True for disk or "
            "network I/O, max_key_bytes = None and max_key_part_bytes = None for no key limit"
        )
    return store


def _shown(name: str) -> str:
    """`name` as an error quotes it: the start of a long one, and its length."""
    if len(name) <= 60:
        return repr(name)
    return f"{name[:40]!r}... ({len(name)} characters)"


def check_key_limits(
    store: CheckpointStore,
    workflow_id: str,
    step_names: Iterable[str] = (),
    *,
    workflow: bool = True,
) -> None:
    """Refuse a workflow id, or a step name, that makes a key longer than `store` takes
    (`KeyTooLong`), before anything is written: without it the first write fails mid-run.
    `workflow=False` checks the step names only (the id was checked before)."""
    whole, part = store.max_key_bytes, store.max_key_part_bytes
    if whole is None and part is None:
        return
    layout = Layout(workflow_id)
    if workflow:
        for key in layout.workflow_keys():
            _check_key(store, workflow_id, None, key.encode(), whole, part)
    for name in step_names:
        # the longest key of a step's documents (its map item batches); a step name adds one
        # part of its own, its file-safe form plus ".json" (the id's parts are checked above)
        key_name = step_key_name(name)
        longest = layout.item_batch(name, 0).encode()
        _check_key(store, workflow_id, name, longest, whole, None)
        _check_key(store, workflow_id, name, f"{key_name}.json".encode(), None, part)


def _check_key(
    store: CheckpointStore,
    workflow_id: str,
    name: str | None,
    key: bytes,
    whole: int | None,
    part: int | None,
) -> None:
    size = len(key)
    if whole is not None and size > whole:
        by = f" with step {_shown(name)}" if name is not None else ""
        raise KeyTooLong(
            f"workflow id {_shown(workflow_id)}{by} makes keys of {size} bytes, and "
            f"{store.url} takes at most {whole} bytes per key (its prefix included); "
            f"use a workflow id {size - whole} bytes shorter"
            + (" or a shorter step name" if name is not None else "")
        )
    if part is not None:
        over = max(len(piece) for piece in key.split(b"/")) - part
        if over > 0:
            raise KeyTooLong(
                f"workflow id {_shown(workflow_id)} makes a key part (between "
                f"slashes) of {part + over} bytes, and {store.url} takes at most {part} "
                f"bytes per part (a file name's limit); use a workflow id whose parts "
                f"are at most {part} bytes: split it with '/' or shorten it"
            )


def reset(workflow_id: str, store: CheckpointStore, lock: LeaseConfig | bool = True) -> None:
    """Delete one workflow's checkpoints (and any cancel request) by its id, so its next start
    runs every step: `Workflow.reset()` without the workflow's definition, from any process.

    Takes the workflow's lease first, so a running workflow is never reset under its feet
    (`LockHeld`): `lock` is its `LeaseConfig` (True: the default one), or False when the caller
    holds that lease already.
    """
    layout = Layout(workflow_id)
    config = LeaseConfig() if lock is True else (lock if isinstance(lock, LeaseConfig) else None)
    lease = None if config is None else Lease(store, layout.lock, config)
    if lease is not None:
        lease.acquire()
    try:
        Journal(store, layout).reset()
    finally:
        if lease is not None:
            lease.release()


def reset_checkpoints(
    workflow_id: str, store: CheckpointStore, lock: LeaseConfig | None = None
) -> None:
    """Deprecated: `reset(workflow_id, store, lock)` (or `Workflow.reset()`)."""
    warnings.warn(
        "reset_checkpoints() is deprecated: use dotflow_providers.reset(workflow_id, store) "
        "(it takes the workflow's lease unless lock=False), or Workflow.reset()",
        DeprecationWarning,
        stacklevel=2,
    )
    reset(workflow_id, store, lock or False)


def cancel(workflow_id: str, store: CheckpointStore, *, block: bool = False) -> None:
    """Ask the run of `workflow_id` that holds its lease to stop, from any process.

    The runner notices at its next lease heartbeat (every ttl/3): it calls the running stage's
    `cancel` hook, starts no further step or attempt, and ends CANCELLED; the request is
    cleared when that run ends. With no run holding the lease, `NotRunning` is raised, unless
    `block=True`, which refuses every later start until the workflow is reset (`reset`,
    `dotflow-providers reset`).
    """
    layout = Layout(workflow_id)
    if block:
        request_cancel(store, layout, None)
        return
    held = read_lease(store, layout.lock)
    if held is None:
        raise NotRunning(
            f"no runner holds workflow {workflow_id!r} in {store.url}, so there is nothing to "
            "cancel; to refuse its future starts instead, cancel with block=True (`--block`)"
        )
    request_cancel(store, layout, held.owner)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _choose(strategies: dict[str, Any], mode: str) -> Any:
    strategy = strategies.get(mode)
    if strategy is None:
        raise UnknownMode(f"unknown mode {mode!r}; choose one of {', '.join(sorted(strategies))}")
    return strategy


def clean_older_than(
    store: CheckpointStore, seconds: float, lock: LeaseConfig | None = None
) -> list[str]:
    """Delete every workflow in `store` not updated for `seconds` and not running; returns
    their ids. A workflow whose lease is held is skipped (never deleted under a runner)."""
    from ._inspect import list_workflows

    if not seconds >= 0:
        raise ConfigurationError(f"the age must be zero or more seconds, got {seconds!r}")
    cutoff = time.time() - seconds
    removed = []
    for found in list_workflows(store):
        if found["status"] == "running" or found["updated_at"] > cutoff:
            continue
        try:
            reset(found["workflow_id"], store, lock or LeaseConfig())
        except LockHeld:
            continue
        removed.append(found["workflow_id"])
    return removed
