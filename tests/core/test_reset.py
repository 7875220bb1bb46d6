"""Resetting one workflow: one operation, one name (`reset`), old names still work and warn."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dotflow_providers import (
    FileStore,
    LeaseConfig,
    LockHeld,
    MemoryStore,
    Workflow,
    inspect_workflow,
    reset,
    reset_checkpoints,
)
from dotflow_providers.integration import workflow_lease

from .procs import ROOT

ran: list[str] = []


def step() -> str:
    ran.append("step")
    return "done"


def build(store: MemoryStore | FileStore, workflow_id: str = "sales") -> Workflow:
    return Workflow(workflow_id, store=store).add(step, name="step")


def test_reset_by_id_deletes_that_workflow_only_so_its_next_start_runs_every_step() -> None:
    store = MemoryStore()
    build(store).start()
    build(store, "sales/eu").start()
    reset("sales", store)
    assert inspect_workflow("sales", store)["found"] is False
    assert build(store, "sales/eu").start().steps[0].restored
    assert not build(store).start().steps[0].restored


def test_workflow_reset_is_reset_of_its_id() -> None:
    store = MemoryStore()
    workflow = Workflow(store=store).add(step, name="step", initial_context=1)
    workflow.start()
    workflow.reset()
    assert inspect_workflow(workflow.workflow_id, store)["found"] is False


def test_reset_refuses_while_a_runner_holds_the_lease_unless_told_the_caller_holds_it(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path)
    build(store, "busy").start()
    holder = workflow_lease("busy", store, LeaseConfig())
    holder.acquire()
    try:
        with pytest.raises(LockHeld):
            reset("busy", store)
        assert inspect_workflow("busy", store)["found"] is True
        reset("busy", store, lock=False)  # the holder resets under its own lease
        assert inspect_workflow("busy", store)["found"] is False
    finally:
        holder.release()


def test_reset_checkpoints_still_resets_and_warns_naming_reset() -> None:
    store = MemoryStore()
    build(store).start()
    with pytest.warns(DeprecationWarning, match=r"dotflow_providers\.reset\(") as caught:
        reset_checkpoints("sales", store)
    assert caught[0].filename == __file__
    assert inspect_workflow("sales", store)["found"] is False


def test_reset_checkpoints_is_not_part_of_the_public_names() -> None:
    import dotflow_providers

    assert "reset" in dotflow_providers.__all__
    assert "reset_checkpoints" not in dotflow_providers.__all__


# Old hints: `dotflow-providers clean ID` (now `reset ID`) and `reset_checkpoints` (now `reset`).
OLD_HINTS = re.compile(r"dotflow-providers clean (?!--older-than)|\breset_checkpoints\b")
#: where the old names are defined or documented as old names
ALLOWED = {
    "providers/dotflow_providers/_workflow.py": {"reset_checkpoints"},
    "providers/dotflow_providers/__init__.py": {"reset_checkpoints"},
    "providers/dotflow_providers/cli.py": {"dotflow-providers clean "},
    "README.md": {"reset_checkpoints"},
}


def test_no_message_or_document_hints_at_an_old_name() -> None:
    places = [
        *(ROOT / "providers").rglob("*.py"),
        *(ROOT / "airflow_plugin").rglob("*.py"),
        *(ROOT / "prefect_blocks").rglob("*.py"),
        *(ROOT / "examples").rglob("*.py"),
        ROOT / "README.md",
    ]
    found = []
    for path in places:
        where = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in OLD_HINTS.finditer(line):
                if match.group() not in ALLOWED.get(where, set()):
                    found.append(f"{where}:{number}: {line.strip()}")
    assert not found, "hints at an old name:\n" + "\n".join(found)
