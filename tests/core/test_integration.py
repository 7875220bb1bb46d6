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
    MemoryStore,
    StepTimeout,
    WorkflowDefinitionChanged,
)
from dotflow_providers._format import check_workflow_id
from dotflow_providers.integration import (
    id_part,
    is_permanent,
    request_next_start,
    take_next_start,
    workflow_id_from,
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


def test_safe_names_are_kept_as_they_are() -> None:
    run_id = "manual__2026-11-22T15:00:00+00:00"
    assert workflow_id_from("sales", run_id, "etl", 3) == f"sales/{run_id}/etl/3"
    assert workflow_id_from(".hidden", "a b").startswith("hidden~")


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
