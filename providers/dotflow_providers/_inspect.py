"""Reading a workflow's state from its store without running it (plugin pages, CLI)."""

from __future__ import annotations

import json
from typing import Any

from ._checkpoint import Layout, load_manifest, load_step
from ._errors import CorruptCheckpoint
from .storage import CheckpointStore


def failure_records(workflow_id: str, store: CheckpointStore) -> dict[int, dict[str, Any]]:
    """The last final failure of each step (error, attempts, rollback error), by position."""
    layout = Layout(workflow_id)
    found: dict[int, dict[str, Any]] = {}
    for key in store.list(layout.failures):
        data = store.get(key)
        if data is None:
            continue
        try:
            doc = json.loads(data)
            found[int(doc["index"])] = doc
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptCheckpoint(key, f"not a failure record: {exc}") from exc
    return found


def inspect_workflow(workflow_id: str, store: CheckpointStore) -> dict[str, Any]:
    """A JSON-safe picture of a workflow from its checkpoints: steps, statuses, lease.

    Step outputs are left out (they may hold data not everyone may see); each completed step
    reports its attempts, timings and duration, each step that failed for good its last error
    (and its rollback's). Raises `CorruptCheckpoint` on bad documents.
    """
    layout = Layout(workflow_id)
    data = store.get(layout.manifest)
    if data is None:
        return {"workflow_id": workflow_id, "found": False, "steps": [], "lease": None}
    manifest = load_manifest(layout.manifest, data)
    done: dict[int, dict[str, Any]] = {}
    for key in store.list(layout.steps):
        raw = store.get(key)
        if raw is None:
            continue
        doc, _ = load_step(key, raw)
        done[doc.index] = {
            "status": "COMPLETED",
            "attempts": doc.attempts,
            "started_at": doc.started_at,
            "finished_at": doc.finished_at,
            "duration": doc.finished_at - doc.started_at,
        }
    failures = failure_records(workflow_id, store)
    steps = []
    for i, name in enumerate(manifest.steps):
        step: dict[str, Any] = {
            "index": i,
            "name": name,
            "status": "NOT_STARTED",
            "attempts": 0,
            "duration": None,
            "error": None,
            "rollback_error": None,
        }
        failure = failures.get(i)
        if failure is not None:
            step |= {
                "status": failure.get("status", "FAILED"),
                "attempts": failure.get("attempts", 0),
                "error": failure.get("error"),
                "rollback_error": failure.get("rollback_error"),
            }
        steps.append(step | done.get(i, {}))
    lease = None
    raw_lease = store.get(layout.lock)
    if raw_lease is not None:
        try:
            held = json.loads(raw_lease)
            lease = {k: held.get(k) for k in ("host", "pid", "epoch", "expires_at")}
        except ValueError as exc:
            raise CorruptCheckpoint(layout.lock, f"not a lease document: {exc}") from exc
    return {
        "workflow_id": workflow_id,
        "found": True,
        "created_at": manifest.created_at,
        "steps": steps,
        "completed": len(done),
        "lease": lease,
    }
