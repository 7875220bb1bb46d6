"""Read-only views of a store (plugin pages, the CLI): never runs, restores or imports anything.

Step outputs are never decoded here: a view reads document headers only, so no user type is
ever constructed on behalf of whoever can write to the store.
"""

from __future__ import annotations

import time
from typing import Any

from ._batch import read_steps
from ._format import (
    Layout,
    load_failure,
    load_item_batch,
    load_lease,
    load_manifest,
    workflow_id_of,
)
from .storage import CheckpointStore


def inspect_workflow(workflow_id: str, store: CheckpointStore) -> dict[str, Any]:
    """A JSON-safe picture of a workflow from its checkpoints: steps, statuses, lease.

    Each completed step reports its attempts, timings, duration and attempt history; each step
    that failed for good its last error (and its rollback's). Raises `CorruptCheckpoint` on bad
    documents and `InvalidWorkflowId` on a bad id.
    """
    layout = Layout(workflow_id)
    data = store.get(layout.manifest)
    if data is None:
        return {"workflow_id": workflow_id, "found": False, "steps": [], "lease": None}
    manifest = load_manifest(layout.manifest, data)
    done: dict[str, dict[str, Any]] = {}
    for doc in read_steps(store, layout).newest.values():  # single documents and batches
        done[doc.name] = {
            "status": "COMPLETED",
            "attempts": doc.attempts,
            "started_at": doc.started_at,
            "finished_at": doc.finished_at,
            "duration": doc.finished_at - doc.started_at,
            "history": [list(a) for a in doc.history],
            "error": None,
        }
    failures = {}
    for key in store.list(layout.failures):
        raw = store.get(key)
        if raw is not None:
            failure = load_failure(key, raw)
            failures[failure.name] = failure
    names = list(manifest.steps) + sorted(
        {*done, *failures} - set(manifest.steps)  # checkpoints of steps removed since
    )
    steps = []
    for index, name in enumerate(names):
        step: dict[str, Any] = {
            "index": index,
            "name": name,
            "status": "NOT_STARTED",
            "attempts": 0,
            "duration": None,
            "error": None,
            "rollback_error": None,
            "history": [],
        }
        failed = failures.get(name)
        if failed is not None:
            step |= {
                "status": failed.status,
                "attempts": failed.attempts,
                "error": failed.error,
                "rollback_error": failed.rollback_error,
                "finished_at": failed.finished_at,
                "history": [list(a) for a in failed.history],
            }
        steps.append(step | done.get(name, {}))
    lease = None
    renewed = 0.0
    raw_lease = store.get(layout.lock)
    if raw_lease is not None:
        held = load_lease(layout.lock, raw_lease)
        renewed = held.acquired_at  # its last renewal
        lease = {
            "host": held.host,
            "pid": held.pid,
            "epoch": held.epoch,
            "expires_at": held.expires_at,
        }
    updated = max(
        [
            manifest.updated_at,
            *(s.get("finished_at") or 0.0 for s in steps),
            *_item_batches_committed(store, layout),
            renewed,
        ]
    )
    return {
        "workflow_id": workflow_id,
        "found": True,
        "created_at": manifest.created_at,
        "updated_at": updated,
        "steps": steps,
        "completed": len(done),
        "lease": lease,
    }


def _item_batches_committed(store: CheckpointStore, layout: Layout) -> list[float]:
    """When each map step's newest item batch was committed (work of a map whose runner died
    before the step completed or failed): one LIST, one GET per map step."""
    newest: dict[str, str] = {}
    for key in store.list(layout.all_items):
        folder = key.rpartition("/")[0]
        if key > newest.get(folder, ""):
            newest[folder] = key
    times = []
    for key in newest.values():
        data = store.get(key)
        if data is not None:
            times.append(load_item_batch(key, data).committed_at)
    return times


def list_workflows(store: CheckpointStore) -> list[dict[str, Any]]:
    """Every workflow in a store: id, status (running or idle), steps done, last update."""
    found = []
    now = time.time()
    for key in store.list(""):
        workflow_id = workflow_id_of(key)
        if workflow_id is None:
            continue
        state = inspect_workflow(workflow_id, store)
        lease = state["lease"]
        running = lease is not None and lease["expires_at"] >= now
        failed = any(s["status"] == "FAILED" for s in state["steps"])
        total = len(state["steps"])
        status = "running" if running else "failed" if failed else "idle"
        if status == "idle" and total and state["completed"] == total:
            status = "completed"
        found.append(
            {
                "workflow_id": workflow_id,
                "status": status,
                "steps_done": state["completed"],
                "steps": total,
                "updated_at": state["updated_at"],
            }
        )
    return found


def attempts_cell(row: dict[str, Any]) -> str:
    """'3 (ConnectionError, ConnectionError, ok)': the attempt count and how each ended."""
    count = str(row.get("attempts", 0))
    history = row.get("history") or []
    if len(history) < 2:
        return count
    return f"{count} ({', '.join(h[2] or 'ok' for h in history)})"


def markdown_table(rows: list[dict[str, Any]], noun: str = "step") -> str:
    """A Markdown step table (step, status, attempts, duration, last error) from step
    summaries or `inspect_workflow` rows; what `dump_stages` and the adapters' artifacts show."""
    lines = [
        f"| {noun} | status | attempts | duration (s) | last error |",
        f"| {'-' * len(noun)} | ------ | -------- | ------------ | ---------- |",
    ]
    for row in rows:
        duration = "" if row.get("duration") is None else f"{row['duration']:.3f}"
        error = (row.get("error") or "").replace("|", "\\|").replace("\n", " ")
        if row.get("rollback_error"):
            error += f" (rollback failed: {row['rollback_error']})"
        flags = [flag for flag in ("restored", "interrupted", "compensated") if row.get(flag)]
        status = row["status"] + (f" ({', '.join(flags)})" if flags else "")
        lines.append(f"| {row['name']} | {status} | {attempts_cell(row)} | {duration} | {error} |")
    return "\n".join(lines)
