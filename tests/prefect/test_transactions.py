"""`run_workflow(..., compensate=True)` inside a Prefect `transaction()`: when the transaction
rolls back (a later task fails), the workflow's completed stages are undone newest first, and
the flow retry runs them again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import UUID

import pytest

from ..sidefx import steps_ran
from .logs import run_logs


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOTFLOW_TEST_DIR", str(tmp_path))
    return tmp_path


def artifacts(flow_run_id: UUID) -> list[str]:
    """Every artifact of a flow run (its tasks' included), oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list[str]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        return [str(a.data) for a in sorted(found, key=lambda a: a.created)]

    return asyncio.run(read())


def test_a_rolled_back_transaction_undoes_the_stages_and_the_retry_runs_them_again(
    work: Path,
) -> None:
    from .transaction_flows import staged_transaction

    (work / "fail-validate").touch()
    state = staged_transaction(return_state=True)
    assert state.result() == ["extract", "load"]
    assert steps_ran(work) == [
        "write-extract",
        "write-load",
        "undo-load",  # the transaction rolled back: newest first, from the checkpoints
        "undo-extract",
        "write-extract",  # the flow retry ran them again instead of restoring them
        "write-load",
    ]
    flow_run_id = state.state_details.flow_run_id
    tables = artifacts(flow_run_id)
    undone = [t for t in tables if "rolled back: compensated load, extract" in t]
    assert undone, tables
    assert "| extract | COMPLETED (compensated) |" in undone[0]
    messages = [m for _, m in run_logs(flow_run_id)]
    assert any("the transaction rolled back; compensated load, extract" in m for m in messages)


def test_a_failing_compensation_is_reported_and_the_original_error_goes_on(work: Path) -> None:
    from .transaction_flows import staged_transaction

    (work / "fail-validate").touch()
    (work / "stuck-load").touch()
    state = staged_transaction.with_options(retries=0)(return_state=True)
    assert state.is_failed()
    with pytest.raises(ConnectionError, match="validate: upstream unavailable"):
        state.result()
    assert steps_ran(work) == ["write-extract", "write-load", "undo-load"]
    assert sorted(p.name for p in work.iterdir() if p.name in {"extract", "load"}) == [
        "extract",
        "load",
    ]
    logs = run_logs(state.state_details.flow_run_id)
    assert any("CompensationFailed" in m and "load cannot be undone" in m for _, m in logs), logs


def test_in_a_dotflow_flow_the_scope_artifact_shows_the_compensated_steps(work: Path) -> None:
    from .transaction_flows import scoped_staged_transaction

    (work / "fail-validate").touch()
    state = scoped_staged_transaction(return_state=True)
    assert state.result() == ["extract", "load"]
    assert steps_ran(work) == [
        "write-extract",
        "write-load",
        "undo-load",
        "undo-extract",
        "write-extract",
        "write-load",
    ]
    tables = artifacts(state.state_details.flow_run_id)
    assert any("(compensated)" in t and "dotflow calls of" in t for t in tables), tables
