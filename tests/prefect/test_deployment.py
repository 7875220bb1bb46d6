"""The integration as users deploy it: a Prefect server, a `process` work pool and a worker, a
deployment from source, `prefect deployment run`, flow retries, SIGKILL and `prefect flow-run
retry`. Each step counts its runs with marker files the flow-run processes write."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .deployment import PrefectStack, wait_for

DEPLOYED = Path(__file__).parent / "deployed"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrefectStack, Path]]:
    root = tmp_path_factory.mktemp("deploy")
    work, source = root / "work", root / "source"
    work.mkdir()
    shutil.copytree(DEPLOYED, source)
    prefect = PrefectStack(root / "home", {"DOTFLOW_DEPLOY_DIR": str(work)})
    (root / "home").mkdir()
    try:
        prefect.start("dotflow-pool")
        prefect.python(
            "from prefect import flow\n"
            f"flow.from_source(source={str(source)!r}, entrypoint='resumable.py:resumable')"
            ".deploy(name='resume', work_pool_name='dotflow-pool')\n"
            f"flow.from_source(source={str(source)!r}, entrypoint='keyed.py:keyed')"
            ".deploy(name='keyed', work_pool_name='dotflow-pool')\n",
            cwd=source,
        )
        yield prefect, work
    finally:
        prefect.stop()


def ran(work: Path, step: int) -> int:
    return len(list(work.glob(f"ran-{step}-*")))


def reset(work: Path) -> None:
    for marker in work.glob("ran-*"):
        marker.unlink()


def test_a_flow_retry_of_a_deployment_run_resumes_at_the_failed_step(
    stack: tuple[PrefectStack, Path],
) -> None:
    prefect, work = stack
    reset(work)
    (work / "fail-3").touch()
    flow_run_id = prefect.run_deployment("resumable/resume", label="retry")
    run = prefect.wait_final(flow_run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["run_count"] == 2
    assert [ran(work, n) for n in (1, 2, 3)] == [1, 1, 2]


def test_a_sigkilled_run_resumes_on_flow_run_retry_and_logs_the_interrupted_step(
    stack: tuple[PrefectStack, Path],
) -> None:
    prefect, work = stack
    reset(work)
    (work / "hang-2").touch()
    flow_run_id = prefect.run_deployment("resumable/resume", label="kill")
    pid = int(wait_for("step 2 to start", lambda: _read(work / "step-2.pid"), 180))
    os.kill(pid, signal.SIGKILL)
    crashed = prefect.wait_final(flow_run_id)
    assert crashed["state"]["type"] in {"CRASHED", "FAILED"}
    assert [ran(work, n) for n in (1, 2, 3)] == [1, 1, 0]

    prefect.cli("flow-run", "retry", flow_run_id)
    wait_for(
        "the retried run to complete",
        lambda: prefect.flow_run(flow_run_id)["state"]["type"] == "COMPLETED",
        180,
    )
    assert [ran(work, n) for n in (1, 2, 3)] == [1, 2, 1]
    logs = wait_for(
        "the interrupted-step warning in the run's logs",
        lambda: [m for m in prefect.logs(flow_run_id) if "previous runner died" in m],
        30,
    )
    assert "step step was running when the previous runner died" in logs[0]


def _read(path: Path) -> str | None:
    try:
        return path.read_text() or None
    except FileNotFoundError:
        return None


def test_a_crashed_keyed_run_is_resumed_by_a_new_run_and_a_concurrent_one_is_refused(
    stack: tuple[PrefectStack, Path],
) -> None:
    from dotflow_providers import FileStore, list_workflows

    prefect, work = stack
    (work / "khang-3").touch()
    crashed_id = prefect.run_deployment("keyed/keyed", label="day1")
    pid = int(wait_for("step 3 to start", lambda: _read(work / "kstep-3.pid"), 180))

    refused_id = prefect.run_deployment("keyed/keyed", label="day1")
    refused = prefect.wait_final(refused_id)
    assert refused["state"]["type"] == "FAILED", refused["state"]
    assert f"in use by flow run {crashed_id} (RUNNING)" in refused["state"]["message"]

    os.kill(pid, signal.SIGKILL)
    crashed = prefect.wait_final(crashed_id)
    assert crashed["state"]["type"] in {"CRASHED", "FAILED"}
    assert [kran(work, n) for n in (1, 2, 3, 4)] == [1, 1, 1, 0]

    rerun_id = prefect.run_deployment("keyed/keyed", label="day1")  # a new flow run
    rerun = prefect.wait_final(rerun_id)
    assert rerun["state"]["type"] == "COMPLETED", rerun["state"]
    assert [kran(work, n) for n in (1, 2, 3, 4)] == [1, 1, 2, 1]
    table = prefect.artifact("dotflow-flow-prefect-keyed-keyed-day1")
    assert "- **restored** (2): 0. kstep, 1. kstep" in table
    assert "- **ran** (2): 2. kstep, 3. kstep" in table
    assert list_workflows(FileStore(work / "keyed-checkpoints")) == []


def kran(work: Path, step: int) -> int:
    return len(list(work.glob(f"kran-{step}-*")))
