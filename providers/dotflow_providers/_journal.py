"""`Journal`: one workflow's checkpoints in a store, read once at start, written once per step."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

from ._checkpoint import (
    FORMAT_VERSION,
    Layout,
    StepCheckpoint,
    dump,
    encode_output,
    load_manifest,
    load_step,
    manifest_document,
    restore,
    step_document,
)
from ._engine import StepRecord
from ._errors import (
    CheckpointError,
    CorruptCheckpoint,
    InputChanged,
    PreconditionFailed,
    WorkflowDefinitionChanged,
)
from ._lease import Lease
from .storage import CheckpointStore

OnInputChange = Literal["raise", "reset", "reuse"]
Restored = dict[int, tuple[StepCheckpoint, Any]]


class Journal:
    """Reads and writes the checkpoint documents of one workflow id."""

    def __init__(
        self, store: CheckpointStore, workflow_id: str, lease: Lease | None = None
    ) -> None:
        self.store = store
        self.workflow_id = workflow_id
        self.layout = Layout(workflow_id)
        self.lease = lease
        self._keys: list[str] = []
        self._names: list[str] = []
        self._progress: set[int] = set()
        # Stores that do network or disk I/O are called from a thread by the async engine.
        self.blocking: bool = getattr(store, "blocking", True)

    def open(self, steps: list[str], fingerprint: str, on_input_change: OnInputChange) -> Restored:
        """Check the manifest against this definition and return the completed steps.

        Costs one GET of the manifest, then (when there is one) one LIST and one GET per
        completed step. A first start writes the manifest, create-only.
        """
        self._keys = [""] * len(steps)  # filled on first use: most steps are only committed
        self._names = steps
        data = self.store.get(self.layout.manifest)
        if data is None:
            self._write_manifest(steps, fingerprint)
            return {}
        manifest = load_manifest(self.layout.manifest, data)
        if manifest.steps != steps:
            raise WorkflowDefinitionChanged(
                f"workflow {self.workflow_id!r} was checkpointed with steps {manifest.steps} "
                f"but now has {steps}; use a new workflow_id, or Workflow.reset() to discard "
                "the old checkpoints"
            )
        if manifest.fingerprint != fingerprint:
            if on_input_change == "raise":
                raise InputChanged(
                    f"the initial contexts of workflow {self.workflow_id!r} changed since its "
                    "checkpoints were written; pass on_input_change='reset' to start over, "
                    "'reuse' to keep the checkpoints, or use a new workflow_id"
                )
            if on_input_change == "reset":
                self.reset()
                self._write_manifest(steps, fingerprint)
                return {}
        return self._load_steps(steps)

    def key(self, index: int) -> str:
        """The checkpoint key of step `index`."""
        key = self._keys[index]
        if not key:
            key = self._keys[index] = self.layout.step(index, self._names[index])
        return key

    def _write_manifest(self, steps: list[str], fingerprint: str) -> None:
        document = manifest_document(self.workflow_id, steps, fingerprint, time.time())
        try:
            self.store.put(self.layout.manifest, document, if_none_match=True)
        except PreconditionFailed:
            # Another runner created it between our GET and PUT: it must describe the same run.
            data = self.store.get(self.layout.manifest)
            if data is None or load_manifest(self.layout.manifest, data).steps != steps:
                raise WorkflowDefinitionChanged(
                    f"another runner started workflow {self.workflow_id!r} with other steps"
                ) from None

    def _load_steps(self, steps: list[str]) -> Restored:
        restored: Restored = {}
        for key in self.store.list(self.layout.steps):
            data = self.store.get(key)
            if data is None:
                continue
            doc, output = load_step(key, data)
            if (
                doc.workflow_id != self.workflow_id
                or not 0 <= doc.index < len(steps)
                or steps[doc.index] != doc.name
                or key != self.key(doc.index)
                or doc.status != "COMPLETED"
            ):
                raise CorruptCheckpoint(key, "it does not belong to this step of this workflow")
            restored[doc.index] = (doc, output)
        return restored

    def commit(self, record: StepRecord) -> None:
        """Persist a completed step: exactly one create-only write (and its progress record,
        if it kept one, is cleared). The hot path of every step."""
        payload = step_document(
            self.workflow_id,
            record.index,
            record.name,
            record.attempts,
            record.started_at or 0.0,
            record.finished_at or 0.0,
            record.output,
        )
        key = self._keys[record.index] or self.key(record.index)
        lease = self.lease
        if lease is not None and (lease.lost or lease.clock() >= lease.renew_at):
            lease.check()  # fenced: a runner whose lease was taken over stops here
        try:
            self.store.put(key, payload, if_none_match=True)
        except PreconditionFailed:
            raise CheckpointError(
                f"step {record.name!r} of workflow {self.workflow_id!r} already has a checkpoint "
                f"({key!r}): another runner completed it; the existing one was kept"
            ) from None
        if record.index in self._progress:
            self._progress.discard(record.index)
            self.store.delete(self.layout.progress(record.index))

    def record_failure(self, record: StepRecord) -> None:
        """Keep the final error of a failed step (and of its rollback) for inspection."""
        document = dump(
            {
                "format": FORMAT_VERSION,
                "index": record.index,
                "name": record.name,
                "status": record.status.value,
                "attempts": record.attempts,
                "error": record.error,
                "error_type": record.error_type,
                "rollback_error": record.rollback_error,
                "finished_at": record.finished_at,
            }
        )
        if self.lease is not None:
            self.lease.check()
        self.store.put(self.layout.failure(record.index), document)

    def discard(self, record: StepRecord) -> None:
        """Forget a completed step whose effects were compensated, so it runs again."""
        self.store.delete(self.key(record.index))

    def cancel_requested(self) -> bool:
        return self.store.get(self.layout.cancel) is not None

    def save_progress(self, index: int, value: Any) -> None:
        if self.lease is not None:
            self.lease.check()
        value_json, desc = encode_output(self._names[index], value)
        self.store.put(self.layout.progress(index), dump({"value": value_json, "type": desc}))
        self._progress.add(index)

    def load_progress(self, index: int) -> tuple[bool, Any]:
        key = self.layout.progress(index)
        data = self.store.get(key)
        if data is None:
            return False, None
        self._progress.add(index)  # found: clear it once the step completes
        try:
            raw = json.loads(data)
            return True, restore(raw["type"], raw["value"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptCheckpoint(key, f"not a progress record: {exc}") from exc

    async def acommit(self, record: StepRecord) -> None:
        """`commit` for the async engine, never blocking the event loop."""
        if self.blocking:
            await asyncio.to_thread(self.commit, record)
        else:
            self.commit(record)

    def reset(self) -> None:
        """Delete every document of this workflow but its lease (the cancel request too)."""
        for key in list(self.store.list(self.layout.prefix)):
            if key != self.layout.lock:
                self.store.delete(key)
