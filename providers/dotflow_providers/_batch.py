"""Group commit: up to k completed steps in one atomic, durable, create-only write.

With `Workflow(commit_every=k)` the journal hands each completed step's document (the same
bytes a single commit writes, with what it is valid for, its checksum and history) to a
`GroupCommit`, which writes them together as one batch object, `steps/.batch/<seq>.json`, once k
are pending, `commit_interval` seconds after the first of them, before a step's failure is
recorded, on cancel and at the end of the run. A batch is one `put(..., if_none_match=True)`,
so a reader sees all of its entries or none; a crash loses only the pending entries, whose
steps run again (at most k-1 besides the one in flight).

The batch key is the next sequence number after the highest one found at start: a second
runner writing without the lease collides on it (create-only) and stops, as with single
documents. Batches are never rewritten: `rerun_from` and code changes make entries stale
(what they are valid for no longer matches), and the plan ignores them while the batch stays.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._errors import CheckpointError, CorruptCheckpoint, PreconditionFailed
from ._format import (
    Layout,
    StepDocument,
    batch_document,
    batch_seq,
    discard_entry,
    load_batch,
    load_step,
)
from .storage import CheckpointStore
from .storage._base import get_many_versioned

if TYPE_CHECKING:
    from ._engine import StepRecord
    from ._lease import Lease

logger = logging.getLogger("dotflow_providers")


@dataclasses.dataclass(slots=True)
class StoredSteps:
    """Every step document a start found: single ones and batch entries."""

    #: each step's newest document
    newest: dict[str, StepDocument]
    #: each step's older documents, newest first
    older: dict[str, list[StepDocument]]
    #: versions of the single documents (replaced by compare-and-swap on a single commit)
    versions: dict[str, str]
    #: the sequence number the next batch gets
    next_seq: int
    batches: int = 0


def read_steps(store: CheckpointStore, layout: Layout) -> StoredSteps:
    """One LIST of `steps/`, one GET per single document and per batch."""
    singles: dict[str, StepDocument] = {}
    versions: dict[str, str] = {}
    batch_keys: list[tuple[int, str]] = []
    single_keys: list[str] = []
    for key in store.list(layout.steps):
        seq = batch_seq(layout, key)
        if seq is None:
            single_keys.append(key)
        else:
            batch_keys.append((seq, key))
    for key, found in zip(single_keys, get_many_versioned(store, single_keys), strict=True):
        if found is None:
            continue
        doc = load_step(key, found[0])
        if doc.workflow_id != layout.workflow_id or key != layout.step(doc.name):
            raise CorruptCheckpoint(key, "it does not belong to this step of this workflow")
        singles[doc.name] = doc
        versions[doc.name] = found[1]
    # (finished_at, seq, doc): seq -1 for single documents
    candidates: dict[str, list[tuple[float, int, StepDocument]]] = {
        name: [(doc.finished_at, -1, doc)] for name, doc in singles.items()
    }
    next_seq = 1
    for seq, key in sorted(batch_keys):
        data = store.get(key)
        if data is None:
            continue
        batch = load_batch(key, data)
        if batch.workflow_id != layout.workflow_id or batch.seq != seq:
            raise CorruptCheckpoint(key, "this batch does not belong to this workflow")
        next_seq = seq + 1
        for name in batch.discarded:
            # compensated: what came before is forgotten (a single document written later,
            # after a crash between the discard and its delete, is not)
            kept = [c for c in candidates.get(name, []) if c[1] < 0 and c[0] > batch.committed_at]
            candidates[name] = kept
        for doc in batch.steps:
            if doc.workflow_id != layout.workflow_id:
                raise CorruptCheckpoint(key, f"entry {doc.name!r} belongs to another workflow")
            candidates.setdefault(doc.name, []).append((doc.finished_at, seq, doc))
    newest: dict[str, StepDocument] = {}
    older: dict[str, list[StepDocument]] = {}
    for name, kept in candidates.items():
        if not kept:
            continue
        kept.sort(key=lambda c: (c[0], c[1]), reverse=True)
        newest[name] = kept[0][2]
        if len(kept) > 1:
            older[name] = [c[2] for c in kept[1:]]
    return StoredSteps(newest, older, versions, next_seq, len(batch_keys))


class GroupCommit:
    """The pending step documents of one run, written as one batch when due."""

    def __init__(
        self,
        store: CheckpointStore,
        layout: Layout,
        lease: Lease | None,
        every: int,
        interval: float | None,
        first_seq: int,
        clear_progress: Callable[[StepRecord], None],
    ) -> None:
        self.store = store
        self.layout = layout
        self.lease = lease
        self.every = every
        self.interval = interval
        self.seq = first_seq
        self._clear_progress = clear_progress
        self._pending: list[tuple[StepRecord | None, bytes]] = []
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        #: (committed_at, number of entries) of each batch this run wrote, for tests and logs
        self.written: list[tuple[float, int]] = []

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, record: StepRecord, document: bytes) -> None:
        """Queue a completed step's document; write the batch if it is full."""
        with self._lock:
            self._pending.append((record, document))
            if len(self._pending) >= self.every:
                try:
                    self._flush()
                except BaseException:
                    # this step fails with the error: its document must never be written
                    # later (by the flush before its failure record, or at the run's end)
                    self._drop(record)
                    raise
            elif self.interval is not None and self._timer is None:
                timer = threading.Timer(self.interval, self._flush_on_time)
                timer.daemon = True
                timer.name = "dotflow-commit-interval"
                self._timer = timer
                timer.start()

    def discard(self, record: StepRecord, document_key: str) -> None:
        """Forget a compensated step: drop it if still pending, else commit a discard entry
        (which forgets its batch entries and its single document), then delete the single
        document: a crash between the two leaves nothing of it that a start would restore."""
        with self._lock:
            committed = not self._drop(record)
            if committed:
                self._pending.append((None, discard_entry(record.name)))
            self._flush()
            if committed:
                self.store.delete(document_key)

    def _drop(self, record: StepRecord) -> bool:
        """Take `record`'s document out of the pending batch; whether it was there."""
        before = len(self._pending)
        self._pending = [p for p in self._pending if p[0] is not record]
        return len(self._pending) != before

    def _flush_on_time(self) -> None:
        try:
            with self._lock:
                self._timer = None
                self._flush()
        except Exception as exc:  # the next commit or the end of the run tries again
            logger.warning("could not write a checkpoint batch on time: %s", exc)

    def flush(self) -> None:
        """Write the pending documents now (before a failure is recorded, on cancel, at the
        end of the run)."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        lease = self.lease
        if lease is not None:
            lease.check()  # fenced per batch: a runner whose lease was taken over stops here
        now = time.time()
        entries = [document for _, document in self._pending]
        key = self.layout.batch(self.seq)
        data = batch_document(self.layout.workflow_id, self.seq, now, entries)
        try:
            self.store.put(key, data, if_none_match=True)
        except PreconditionFailed:
            raise CheckpointError(
                f"batch {key!r} of workflow {self.layout.workflow_id!r} was written by another "
                "runner while this one ran (without the lease?); this runner's pending steps "
                "were not committed and run again on the next start"
            ) from None
        self.seq += 1
        self.written.append((now, len(entries)))
        pending, self._pending = self._pending, []
        for record, _ in pending:
            if record is not None:
                self._clear_progress(record)
        logger.debug(
            "workflow %s: committed %d step(s) as batch %s",
            self.layout.workflow_id,
            len(entries),
            key,
            extra={"workflow_id": self.layout.workflow_id},
        )
