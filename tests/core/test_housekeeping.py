"""Housekeeping: listing the workflows of a store, cleaning old ones, cleaning on success."""

from __future__ import annotations

import threading

import pytest

from dotflow_providers import (
    ConfigurationError,
    Context,
    MemoryStore,
    Status,
    Workflow,
    action,
    clean_older_than,
    list_workflows,
)
from dotflow_providers._format import Layout, LeaseDocument, lease_document, load_manifest


def add_one(previous_context: Context) -> int:
    return (previous_context.value or 0) + 1


def broken() -> None:
    raise RuntimeError("down")


def test_clean_on_success_leaves_nothing_after_a_completed_run() -> None:
    store = MemoryStore()
    wf = Workflow("tidy", store=store, clean_on_success=True).add(add_one, name="a")
    assert wf.start().status is Status.COMPLETED
    assert list(store.list("tidy/")) == []


def test_clean_on_success_keeps_the_checkpoints_of_a_failed_run() -> None:
    store = MemoryStore()
    wf = Workflow("tidy", store=store, clean_on_success=True)
    run = wf.add(add_one, name="a").add(broken, name="b").start()
    assert run.status is Status.FAILED
    assert store.get(Layout("tidy").step("a")) is not None


def test_list_workflows_reports_status_and_progress() -> None:
    store = MemoryStore()
    Workflow("done", store=store).add(add_one, name="a").start()
    Workflow("half", store=store).add(add_one, name="a").add(broken, name="b").start()
    entered, release = threading.Event(), threading.Event()

    def hold() -> int:
        entered.set()
        release.wait(30)
        return 1

    running = Workflow("busy/x", store=store).add(hold, name="hold").start(mode="background")
    assert entered.wait(30)
    try:
        found = {w["workflow_id"]: w for w in list_workflows(store)}
    finally:
        release.set()
        running.wait(30)
    assert {k: (v["status"], v["steps_done"], v["steps"]) for k, v in found.items()} == {
        "busy/x": ("running", 0, 1),
        "done": ("completed", 1, 1),
        "half": ("failed", 1, 2),
    }


def test_clean_older_than_skips_running_and_recent_workflows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    for workflow_id in ("old/a", "old/b", "new"):
        Workflow(workflow_id, store=store).add(add_one, name="a").start()
    assert clean_older_than(store, 3600) == []
    import time

    later = time.time() + 7200
    monkeypatch.setattr(time, "time", lambda: later)
    removed = clean_older_than(store, 3600)
    assert sorted(removed) == ["new", "old/a", "old/b"]
    assert list_workflows(store) == []
    with pytest.raises(ConfigurationError):
        clean_older_than(store, float("nan"))


def test_clean_older_than_keeps_a_map_whose_items_committed_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A map whose runner died mid-way leaves item batches newer than its manifest, and no
    step document or failure record: its last update is its newest batch (or its lease's last
    renewal), and a cleanup of what is older than that keeps it."""
    import time

    store, now = MemoryStore(), [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])

    def work(item: int) -> int:
        now[0] += 500  # each item takes "500 s"
        if item == 3:
            raise RuntimeError("the runner dies here")
        return item

    wf = Workflow("nightly", store=store).map(
        action(work), range(6), name="work", commit_every=1, fail_fast=True
    )
    started = now[0]
    wf.start()
    layout = Layout("nightly")
    for key in list(store.list(layout.failures)):  # the state a dead runner leaves
        store.delete(key)
    (found,) = list_workflows(store)
    assert started == store_manifest_updated_at(store, layout)
    assert found["updated_at"] == started + 4 * 500  # the batch recording item 3's failure
    now[0] += 100
    assert clean_older_than(store, 1000) == []  # its items committed 100 s ago
    store.put(layout.lock, lease_document(LeaseDocument("o", "h", 1, 1, now[0], now[0] + 1, 1)))
    assert list_workflows(store)[0]["updated_at"] == now[0]


def store_manifest_updated_at(store: MemoryStore, layout: Layout) -> float:
    data = store.get(layout.manifest)
    assert data is not None
    return load_manifest(layout.manifest, data).updated_at
