"""What adapters ask the core: ids from orchestrator names, permanence, next-start requests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotflow_providers import (
    CheckpointError,
    ConfigurationError,
    InputChanged,
    InterruptedStage,
    LeaseConfig,
    LockHeld,
    MemoryStore,
    StepTimeout,
    Workflow,
    WorkflowDefinitionChanged,
)
from dotflow_providers._format import check_workflow_id
from dotflow_providers.integration import (
    drop_next_start,
    id_part,
    is_permanent,
    lease_holder,
    peek_next_start,
    request_next_start,
    take_next_start,
    workflow_id_from,
    workflow_lease,
    workflows_under,
)

NAMES = st.text(min_size=1, max_size=300)


@given(st.lists(NAMES, min_size=1, max_size=5))
def test_any_orchestrator_names_make_a_valid_id(parts: list[str]) -> None:
    workflow_id = workflow_id_from(*parts)
    assert check_workflow_id(workflow_id) == workflow_id


@given(NAMES, NAMES)
def test_distinct_names_never_share_an_id_part(a: str, b: str) -> None:
    if a != b:
        assert id_part(a) != id_part(b)


_EDGY = st.text(st.sampled_from("x_-.a~/ "), min_size=1, max_size=4)


@given(st.lists(_EDGY, min_size=1, max_size=3), st.data())
def test_distinct_orchestrator_names_never_share_a_workflow_id(
    a: list[str], data: st.DataObject
) -> None:
    # another DAG's (or flow's) checkpoints must never be restored: `_etl` and `x_etl` were one
    # id. The other names are one edit away (a character inserted, dropped or replaced in one
    # part), where a lossy mapping would collide.
    b = list(a)
    at = data.draw(st.integers(0, len(b) - 1))
    part = b[at]
    cut = data.draw(st.integers(0, len(part)))
    char = data.draw(st.sampled_from("x_-.a~/ "))
    edit = data.draw(st.sampled_from(["insert", "drop", "replace"]))
    if edit == "insert":
        b[at] = part[:cut] + char + part[cut:]
    elif edit == "drop" and cut < len(part) and len(part) > 1:
        b[at] = part[:cut] + part[cut + 1 :]
    elif cut < len(part):
        b[at] = part[:cut] + char + part[cut + 1 :]
    if a != b:
        assert workflow_id_from(*a) != workflow_id_from(*b)


def test_safe_names_are_kept_as_they_are() -> None:
    run_id = "manual__2026-11-22T15:00:00+00:00"
    assert workflow_id_from("sales", run_id, "etl", 3) == f"sales/{run_id}/etl/3"
    assert workflow_id_from(".hidden", "a b").startswith("hidden~")
    assert workflow_id_from("_etl") != workflow_id_from("x_etl") == "x_etl"


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (CheckpointError("x"), True),
        (ConfigurationError("x"), True),
        (InputChanged("x"), True),
        (WorkflowDefinitionChanged("x"), True),
        (InterruptedStage("x"), True),
        (StepTimeout("x"), False),
        (ConnectionError("x"), False),
    ],
)
def test_which_errors_no_retry_can_fix(error: Exception, permanent: bool) -> None:
    assert is_permanent(error) is permanent


def test_a_next_start_request_is_taken_once() -> None:
    store = MemoryStore()
    assert take_next_start("wf", store) is None
    request_next_start("wf", store, rerun_from="load", requested_by="admin")
    taken = take_next_start("wf", store)
    assert taken is not None
    assert (taken.rerun_from, taken.start_over, taken.requested_by) == ("load", False, "admin")
    assert take_next_start("wf", store) is None
    with pytest.raises(ConfigurationError):
        request_next_start("wf", store)
    with pytest.raises(ConfigurationError):
        request_next_start("wf", store, rerun_from="x", start_over=True)


def test_a_next_start_request_can_be_read_without_taking_it_and_dropped_unread() -> None:
    store = MemoryStore()
    assert peek_next_start("wf", store) is None
    request_next_start("wf", store, start_over=True, requested_by="admin")
    for _ in range(2):
        seen = peek_next_start("wf", store)
        assert seen is not None
        assert (seen.rerun_from, seen.start_over) == (None, True)
    drop_next_start("wf", store)
    assert peek_next_start("wf", store) is None
    drop_next_start("wf", store)  # nothing pending: nothing to do


def test_workflows_under_a_prefix_are_the_ids_with_checkpoints_there() -> None:
    store = MemoryStore()
    for workflow_id in ("scope/a", "scope/b/c", "scope-other/d", "elsewhere"):
        Workflow(workflow_id, store=store).add(lambda: 1, name="one").start()
    request_next_start("scope/e", store, start_over=True)  # a request is not a workflow
    assert sorted(workflows_under(store, "scope/")) == ["scope/a", "scope/b/c"]
    assert workflows_under(store, "nothing/") == []


def test_a_workflow_lease_names_its_owner_and_excludes_the_workflow_runs() -> None:
    store = MemoryStore()
    workflow = Workflow("leased", store=store).add(lambda: 1, name="one")
    lease = workflow_lease("leased", store, LeaseConfig(), owner="flow-run-7")
    assert lease_holder("leased", store) is None
    lease.acquire()
    try:
        holder = lease_holder("leased", store)
        assert holder is not None
        assert holder.owner == "flow-run-7"
        with pytest.raises(LockHeld):
            workflow.start()  # the same lease a run takes
    finally:
        lease.release()
    assert lease_holder("leased", store) is None
    assert workflow.start().output == 1
    assert workflow_lease("leased", store, LeaseConfig()).owner  # a random one by default
