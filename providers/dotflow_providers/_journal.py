"""`Journal`: one workflow's checkpoints in a store, read once at start, written once per step."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import operator
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._batch import GroupCommit, read_steps
from ._errors import (
    CheckpointError,
    CorruptCheckpoint,
    FolderAtKey,
    PreconditionFailed,
    WorkflowCancelled,
)
from ._format import (
    NULL_CHECKSUM,
    CancelRequest,
    FailureRecord,
    Layout,
    Manifest,
    StepDocument,
    V1Step,
    cancel_document,
    checksum,
    encode_value,
    failure_document,
    is_v1_step_key,
    load_cancel,
    load_manifest,
    load_progress,
    load_v1_step,
    manifest_document,
    progress_document,
    step_document,
    step_prefix,
    v1_fingerprint,
    v1_manifest,
)
from ._identity import (
    NO_UPSTREAM,
    UPSTREAM_FAILED,
    OnChange,
    Plan,
    StepIdentity,
    plan,
    upstream_token,
)
from ._offloop import to_the_end
from ._status import COMPLETED
from .storage import CheckpointStore

if TYPE_CHECKING:
    from ._engine import StepRecord
    from ._lease import Lease

logger = logging.getLogger("dotflow_providers")

#: a StepIdentity's name (`identity.name`, as a C function for `map`)
_NAME = operator.itemgetter(1)


@dataclasses.dataclass(frozen=True, slots=True)
class Opened:
    """What `Journal.open` found: the plan, the restored steps' documents by index, and each
    step's newest document by name, valid now or not (what was committed: a compensation undoes
    that, whatever the definition is now)."""

    plan: Plan
    restored: dict[int, StepDocument]
    committed: Mapping[str, StepDocument]


def clear_progress(
    store: CheckpointStore, layout: Layout, progress: set[int], record: StepRecord
) -> None:
    """Forget the progress record of a step now committed, if it kept one (`progress`: the
    indices of the steps that did). Best effort: the step is committed, which a failure here
    must not undo; a record left behind is never handed on to a step restored from its
    checkpoint, and only to a run of the same code, input and upstream (see `load_progress`)."""
    if record.index in progress:
        progress.discard(record.index)
        try:
            store.delete(layout.progress(record.name))
        except Exception as exc:  # any store's error (Airflow's task state store has its own)
            logger.warning("could not clear the progress record of step %s: %s", record.name, exc)


class Journal:
    """Reads and writes the checkpoint documents of one workflow id."""

    def __init__(
        self,
        store: CheckpointStore,
        layout: Layout,
        lease: Lease | None = None,
        *,
        commit_every: int = 1,
        commit_interval: float | None = None,
    ) -> None:
        self.store = store
        self.layout = layout
        self.workflow_id = layout.workflow_id
        self._prefix = step_prefix(self.workflow_id)
        self.lease = lease
        # Stores that do network or disk I/O are called from a thread by the async engine.
        self.blocking: bool = store.blocking
        self.identities: list[StepIdentity] = []
        self.records: Sequence[StepRecord] = ()
        self._keys: list[str] = []
        #: versions of stale step documents, replaced by compare-and-swap when the step commits
        self._stale: dict[int, str] = {}
        self._progress: set[int] = set()
        self.commit_every = commit_every
        self.commit_interval = commit_interval
        #: with `commit_every` > 1, the pending documents of this run (see `_batch`)
        self.group: GroupCommit | None = None
        #: committing singly over stored batches: writes the discard entries of compensations
        self._discards: GroupCommit | None = None
        self.next_item_batch: dict[str, int] = {}

    # --- start --------------------------------------------------------------------------------

    def open(
        self,
        identities: list[StepIdentity],
        *,
        on_change: OnChange,
        rerun_from: int | None = None,
        v1_inputs: list[Any] | None = None,
    ) -> Opened:
        """Read the manifest and step documents once and decide what is restored.

        Costs one GET of the manifest, one LIST and one GET per stored step document. A first
        start writes the manifest, create-only; a changed step list or a `rerun_from` updates it
        by compare-and-swap before any step runs.
        """
        names = tuple(map(_NAME, identities))
        found = self.store.get_versioned(self.layout.manifest)
        if found is None:
            legacy = read_v1_manifest(self.store, self.layout)
            if legacy is not None:
                self._migrate_v1(legacy, identities, on_change, v1_inputs or [])
                found = self.store.get_versioned(self.layout.manifest)
        if found is None:
            manifest, manifest_version = self._create_manifest(names)
        else:
            manifest, manifest_version = load_manifest(self.layout.manifest, found[0]), found[1]
        salts = dict(manifest.salts)
        if rerun_from is not None:
            token = uuid.uuid4().hex[:16]
            for identity in identities[rerun_from:]:
                salts[identity.name] = token
        self.identities = (
            [i._replace(salt=salts.get(i.name, "")) for i in identities] if salts else identities
        )
        self._keys = self.layout.steps_of(names)
        stored = read_steps(self.store, self.layout)
        docs, versions = stored.newest, stored.versions
        decided = plan(
            self.identities,
            docs,
            previous_steps=manifest.steps,
            on_change=on_change,
            workflow_id=self.workflow_id,
            alternatives=stored.older,
        )
        if self.commit_every > 1:
            self.group = self._group(self.commit_every, stored.next_seq)
        elif stored.batches:  # a compensation forgets a batch entry only by a discard entry
            self._discards = self._group(1, stored.next_seq)
        if names != manifest.steps or salts != manifest.salts:
            updated = dataclasses.replace(
                manifest, steps=names, salts=salts, updated_at=time.time()
            )
            try:
                self.store.put(
                    self.layout.manifest, manifest_document(updated), if_match=manifest_version
                )
            except PreconditionFailed:
                raise CheckpointError(
                    f"the manifest of workflow {self.workflow_id!r} changed while this runner "
                    "started it (another runner without the lease?); start again"
                ) from None
        if versions:  # checkpoints that are not restored: their step's commit replaces them
            index_of = {name: position for position, name in enumerate(names)}
            self._stale = {
                index_of[name]: versions[name]
                for name in versions
                if name in index_of and index_of[name] not in decided.restored
            }
        if decided.reused:
            logger.warning(
                "workflow %s: reusing the checkpoints of %s although their code or input "
                "changed (on_change='reuse')",
                self.workflow_id,
                ", ".join(decided.reused),
                extra={"workflow_id": self.workflow_id},
            )
        restored = {i: decided.chosen[i] for i in decided.restored}
        return Opened(decided, restored, docs)

    def _group(self, every: int, first_seq: int) -> GroupCommit:
        return GroupCommit(
            self.store,
            self.layout,
            self.lease,
            every,
            self.commit_interval,
            first_seq,
            # not a bound method: the journal would hold itself through its group, and a
            # finished run's records would wait for a full collection to be freed
            functools.partial(clear_progress, self.store, self.layout, self._progress),
        )

    def _create_manifest(self, names: tuple[str, ...]) -> tuple[Manifest, str]:
        orphan = next(iter(self.store.list(self.layout.steps)), None)
        if orphan is not None:
            raise CorruptCheckpoint(
                orphan,
                "its workflow's manifest is missing although step checkpoints exist (deleted "
                "by a lifecycle rule or by hand?); nothing is re-run silently: run "
                f"`dotflow-providers reset {self.workflow_id}` to start over",
            )
        now = time.time()
        manifest = Manifest(self.workflow_id, now, now, names, {})
        document = manifest_document(manifest)
        try:
            version = self.store.put(self.layout.manifest, document, if_none_match=True)
        except PreconditionFailed:  # another runner created it between our GET and PUT
            found = self.store.get_versioned(self.layout.manifest)
            if found is None:
                raise CheckpointError(
                    f"the manifest of {self.workflow_id!r} appeared and vanished; start again"
                ) from None
            return load_manifest(self.layout.manifest, found[0]), found[1]
        return manifest, version

    def _migrate_v1(
        self,
        data: bytes,
        identities: list[StepIdentity],
        on_change: OnChange,
        inputs: list[Any],
    ) -> None:
        """Rewrite a format-1 workflow (dotflow-providers 0.1.0) in format 2, once.

        Format 1 trusted its checkpoints while the step list and every input were unchanged;
        those checkpoints become format-2 documents chained as if committed now. The format-2
        manifest is written last (the migration's commit point); then the old keys go.
        """
        steps, stored_print = v1_manifest(self.layout.v1_manifest, data)
        names = [i.name for i in identities]
        same_steps = names[: len(steps)] == steps
        same_inputs = stored_print == v1_fingerprint(inputs[: len(steps)])
        if on_change == "raise" and not (same_steps and same_inputs):
            from ._errors import InputChanged, WorkflowDefinitionChanged

            error = InputChanged if same_steps else WorkflowDefinitionChanged
            raise error(
                f"workflow {self.workflow_id!r} has format-1 checkpoints for steps {steps} with "
                "other steps or inputs; start with on_change='rerun' or reset the workflow"
            )
        trusted = on_change == "reuse" or (same_steps and same_inputs)
        old: dict[int, V1Step] = {}
        v1_keys = [
            k for k in self.store.list(self.layout.v1_steps) if is_v1_step_key(self.layout, k)
        ]
        for key in v1_keys:
            raw = self.store.get(key)
            if raw is not None:
                legacy = load_v1_step(key, raw)
                old[legacy.index] = legacy
        if old and not trusted:
            logger.warning(
                "workflow %s: its format-1 checkpoints (of %s) were written for other steps or "
                "inputs, so they are not migrated (nor undone by a compensation): those steps "
                "run again",
                self.workflow_id,
                ", ".join(step.name for _, step in sorted(old.items())),
                extra={"workflow_id": self.workflow_id},
            )
        tokens: dict[int, str] = {}
        for identity in identities:
            step = old.get(identity.position)
            if not trusted or step is None or step.name != identity.name:
                continue
            token = upstream_token(identity, tokens)
            if token is None:
                continue
            payload = encode_value(step.output, f"the output of step {step.name!r}")
            digest = checksum(payload)
            document = step_document(
                self._prefix,
                identity,
                token,
                step.attempts,
                step.started_at,
                step.finished_at,
                [(step.started_at, step.finished_at, None, None)],
                payload,
                digest,
            )
            self.store.put(self.layout.step(step.name), document)
            tokens[identity.position] = digest
        self._create_manifest_after_migration(identities)
        for key in [*v1_keys, self.layout.v1_manifest]:
            self.store.delete(key)

    def _create_manifest_after_migration(self, identities: list[StepIdentity]) -> None:
        now = time.time()
        manifest = Manifest(self.workflow_id, now, now, tuple(i.name for i in identities), {})
        # a runner that crashed mid-migration may have written it: the documents are the same
        with contextlib.suppress(PreconditionFailed):
            self.store.put(self.layout.manifest, manifest_document(manifest), if_none_match=True)

    # --- the hot path ---------------------------------------------------------------------------

    def commit(self, record: StepRecord) -> None:
        """Persist a completed step: exactly one conditional write (and its progress record,
        if it kept one, is cleared). The hot path of every step."""
        index = record.index
        identity = self.identities[index]
        token = self._received(identity)
        output = record.output
        if output is None:  # most steps return nothing
            payload, digest = b"null", NULL_CHECKSUM
        else:
            payload = encode_value(output, f"the output of step {record.name!r}")
            digest = checksum(payload)
        started = record.started_at or 0.0
        document = step_document(
            self._prefix,
            identity,
            token,
            record.attempts,
            started,
            record.finished_at or started,
            record.history,
            payload,
            digest,
        )
        group = self.group
        if group is not None:  # written with the next batch (see `_batch`)
            group.add(record, document)  # (a batch write that fails takes the step's out)
            record.checksum = digest
            return
        lease = self.lease
        if lease is not None and (lease.lost or lease.clock() >= lease.renew_at):
            lease.check()  # fenced: a runner whose lease was taken over stops here
        key = self._keys[index]
        stale = self._stale.pop(index, None) if self._stale else None
        try:
            if stale is None:
                self.store.put(key, document, if_none_match=True)
            else:
                self.store.put(key, document, if_match=stale)
        except PreconditionFailed:
            raise CheckpointError(
                f"step {record.name!r} of workflow {self.workflow_id!r} got a checkpoint from "
                f"another runner while it ran ({key!r}); the existing one was kept"
            ) from None
        record.checksum = digest
        if self._progress:
            clear_progress(self.store, self.layout, self._progress, record)

    async def acommit(self, record: StepRecord) -> None:
        """`commit` for the async engine, never blocking the event loop.

        A cancellation that arrives while the write runs in its thread waits for its outcome,
        so that the step's record tells the truth: not committed, the cancellation is raised
        (the step is CANCELLED); committed, the step completes and the cancellation is asked
        for again, to reach the task at its next await."""
        if not self.blocking:
            self.commit(record)
            return
        error, cancelled = await to_the_end(functools.partial(self.commit, record))
        if error is not None:
            if cancelled is not None:
                raise cancelled from None  # nothing committed: the step is cancelled
            raise error
        if cancelled is not None:
            task = asyncio.current_task()
            if task is not None:  # the same request, delivered again (the count unchanged)
                task.uncancel()
                task.cancel(cancelled.args[0] if cancelled.args else None)

    # --- failures, compensation, progress -------------------------------------------------------

    def record_failure(self, record: StepRecord) -> None:
        """Keep the final error of a failed step (and of its rollback) for inspection."""
        document = failure_document(
            FailureRecord(
                name=record.name,
                index=record.index,
                status=record.status.value,
                attempts=record.attempts,
                error=record.error,
                error_type=record.error_type,
                rollback_error=record.rollback_error,
                finished_at=record.finished_at,
                history=list(record.history),
            )
        )
        if self.group is not None:
            self.group.flush()  # the steps that completed before it are committed first
        if self.lease is not None:
            self.lease.check()
        self.store.put(self.layout.failure(record.name), document)

    def discard(self, record: StepRecord) -> None:
        """Forget a completed step whose effects were compensated, so it runs again. Where the
        stored checkpoints include batches (group commit, in this run or an earlier one), that
        takes a discard entry, written as a batch of its own when this run commits singly."""
        key = self._keys[record.index]
        if self.group is not None:
            self.group.discard(record, key)
        elif self._discards is not None:
            self._discards.discard(record, key)
        else:
            if self.lease is not None:
                self.lease.check()
            self.store.delete(key)
        record.checksum = None

    def flush(self) -> None:
        """Write the pending batch of completed steps, if any (group commit)."""
        if self.group is not None:
            self.group.flush()

    def save_progress(self, index: int, value: Any) -> None:
        if self.lease is not None:
            self.lease.check()
        name = self.identities[index].name
        document = progress_document(name, value, self._progress_valid_for(index))
        self.store.put(self.layout.progress(name), document)
        self._progress.add(index)

    def load_progress(self, index: int) -> tuple[bool, Any]:
        """The step's progress record, if one was saved for what its checkpoint would be valid
        for now: progress made by other code, on another input or upstream output, or before a
        `rerun_from` is not handed on (the step starts from its default; the record is replaced
        by its next save and cleared when it completes)."""
        name = self.identities[index].name
        key = self.layout.progress(name)
        data = self.store.get(key)
        if data is None:
            return False, None
        self._progress.add(index)  # found: clear it once the step completes
        found, value = load_progress(key, data, self._progress_valid_for(index))
        if not found:
            logger.warning(
                "workflow %s: step %r has a progress record saved by other code, for another "
                "input or upstream output, or before a rerun_from; it starts from its default",
                self.workflow_id,
                name,
            )
        return found, value

    def _progress_valid_for(self, index: int) -> tuple[str, str, str, str]:
        identity = self.identities[index]
        return identity.version, identity.input, identity.salt, self._received(identity)

    def _received(self, identity: StepIdentity) -> str:
        """The upstream token a running step's checkpoint records: none, its upstream's
        checksum, or that its upstream failed (`keep_going`)."""
        upstream = identity.upstream
        if upstream is None:
            return NO_UPSTREAM
        record = self.records[upstream]
        return (record.status is COMPLETED and record.checksum) or UPSTREAM_FAILED

    # --- cancel requests ------------------------------------------------------------------------

    def check_cancel(self) -> None:
        """At start: a blocking cancel request refuses the start; one left for a run that has
        ended is removed."""
        data = self.store.get(self.layout.cancel)
        if data is None:
            return
        request = load_cancel(self.layout.cancel, data)
        if request.target is None:
            raise WorkflowCancelled(
                f"workflow {self.workflow_id!r} is blocked by a cancel request (from "
                f"{request.host} pid {request.pid}); `dotflow-providers reset "
                f"{self.workflow_id} --store ...` removes it with the checkpoints"
            )
        self.store.delete(self.layout.cancel)

    def cancel_requested(self, owner: str) -> bool:
        """Whether a cancel request targets the run holding lease `owner` (or every run)."""
        data = self.store.get(self.layout.cancel)
        if data is None:
            return False
        target = load_cancel(self.layout.cancel, data).target
        return target is None or target == owner

    def clear_cancel(self, owner: str) -> None:
        """Remove a cancel request aimed at this run (it has ended)."""
        data = self.store.get(self.layout.cancel)
        if data is not None and load_cancel(self.layout.cancel, data).target == owner:
            self.store.delete(self.layout.cancel)

    def reset(self) -> None:
        """Delete every document of this workflow but its lease (the cancel request too)."""
        for key in list(self.store.list(self.layout.base)):
            if key != self.layout.lock:
                self.store.delete(key)
        legacy = read_v1_manifest(self.store, self.layout)
        if legacy is not None:
            for key in list(self.store.list(self.layout.v1_steps)):
                if is_v1_step_key(self.layout, key):
                    self.store.delete(key)
            self.store.delete(self.layout.v1_manifest)


def request_cancel(store: CheckpointStore, layout: Layout, target: str | None) -> None:
    """Write a cancel request for the run holding lease `target` (None: block every start)."""
    request = CancelRequest(target, time.time(), socket.gethostname(), os.getpid())
    store.put(layout.cancel, cancel_document(request))


def read_v1_manifest(store: CheckpointStore, layout: Layout) -> bytes | None:
    """The workflow's format-1 (0.1.0) manifest, if it has one. Its key, `<id>/manifest.json`,
    is also the folder of workflow `<id>/manifest.json` on a `FileStore`: that is none."""
    try:
        return store.get(layout.v1_manifest)
    except FolderAtKey:
        return None


__all__ = ["Journal", "Opened", "read_v1_manifest", "request_cancel"]
