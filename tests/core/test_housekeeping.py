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
    clean_older_than,
    list_workflows,
)
from dotflow_providers._format import Layout


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
