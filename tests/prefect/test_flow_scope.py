"""`@dotflow_flow`: one checkpoint scope per flow run (or per resume key) for every dotflow call
inside it, resumed by flow retries and new flow runs, re-run from a chosen task, refused while
another run holds the key, cleaned when the run completes, summarised in an artifact."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ..sidefx import steps_ran
from .logs import run_logs


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOTFLOW_TEST_DIR", str(tmp_path))
    return tmp_path


def store_url(work: Path) -> str:
    return f"file://{work / 'ckpt'}"


def workflows(work: Path) -> list[str]:
    """The workflow ids with checkpoints in the test's store."""
    from dotflow_providers import FileStore, list_workflows

    return sorted(w["workflow_id"] for w in list_workflows(FileStore(work / "ckpt")))


def artifact(scope: str) -> str:
    """The latest `dotflow_flow` artifact of a scope."""
    import re

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = re.sub(r"[^a-z0-9-]+", "-", f"dotflow-flow-{scope}".lower()).strip("-")[:100]

    async def latest() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
        return str(sorted(found, key=lambda a: a.created)[-1].data)

    return asyncio.run(latest())


def test_dotflow_flow_is_prefects_flow_with_every_option_and_a_rerun_from_parameter() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    from dotflow_prefect import dotflow_flow
    from prefect import Flow

    @dotflow_flow(
        name="options",
        retries=3,
        retry_delay_seconds=7,
        log_prints=True,
        task_runner=ThreadPoolTaskRunner(max_workers=2),
        store="memory://",
    )
    def options(day: str, limit: int = 3) -> str:
        return day

    assert isinstance(options, Flow)
    assert (options.name, options.retries, options.retry_delay_seconds) == ("options", 3, 7)
    assert options.log_prints is True
    assert isinstance(options.task_runner, ThreadPoolTaskRunner)
    assert list(options.parameters.properties) == ["day", "limit", "rerun_from"]
    assert options.parameters.required == ["day"]


def test_tasks_inside_use_the_flows_store_a_flow_retry_resumes_and_completion_cleans(
    work: Path,
) -> None:
    from dotflow_prefect import dotflow_flow

    from .scoped_flows import pipeline

    @dotflow_flow(store=store_url(work), retries=1, retry_delay_seconds=0)
    def nightly(day: str) -> Any:
        return pipeline(day)

    (work / "fail-load").touch()
    state = nightly("2026-11-22", return_state=True)
    assert state.result() == "total 60"
    assert steps_ran(work) == ["extract", "transform", "load", "load", "report"]
    assert workflows(work) == []  # the completed run's checkpoints are gone
    table = artifact(f"prefect/{state.state_details.flow_run_id}")
    assert "- **restored** (2): 0. extract, 1. transform" in table
    assert "- **ran** (2): 2. load, 3. report" in table
    assert "completed" in table


def test_keep_checkpoints_keeps_them_for_submitted_and_async_tasks_too(work: Path) -> None:
    from dotflow_prefect import dotflow_flow

    from .scoped_flows import aload, extract, transform

    @dotflow_flow(store=store_url(work), keep_checkpoints=True)
    def submitted(day: str) -> Any:
        futures = [transform.submit(extract.submit(d)) for d in (day, day + "+1")]
        return [f.result() for f in futures]

    @dotflow_flow(store=store_url(work), keep_checkpoints=True)
    async def asynchronous(day: str) -> Any:
        return await aload([1, 2])

    state = submitted("d", return_state=True)
    assert state.result() == [[10, 20, 30]] * 2
    run_id = state.state_details.flow_run_id
    assert len(workflows(work)) == 4
    assert all(w.startswith(f"prefect/{run_id}/") for w in workflows(work))
    assert asyncio.run(asynchronous("d")) == 3
    assert len(workflows(work)) == 5


def test_a_new_flow_run_with_the_same_resume_key_restores_what_the_last_one_completed(
    work: Path,
) -> None:
    from dotflow_prefect import dotflow_flow

    from .scoped_flows import pipeline

    @dotflow_flow(store=store_url(work), resume_key="{day}")
    def keyed(day: str) -> Any:
        return pipeline(day)

    (work / "fail-load").touch()
    assert keyed("mon", return_state=True).is_failed()
    assert len(workflows(work)) == 3  # extract and transform completed, load failed
    assert keyed("mon") == "total 60"  # a new flow run
    assert steps_ran(work) == ["extract", "transform", "load", "load", "report"]
    table = artifact("prefect/keyed/keyed/mon")
    assert "- **restored** (2): 0. extract, 1. transform" in table
    assert "- **ran** (2): 2. load, 3. report" in table
    assert workflows(work) == []
    assert keyed("tue") == "total 60"  # another key: its own scope
    assert steps_ran(work)[5:] == ["extract", "transform", "load", "report"]


def test_a_second_run_with_a_key_in_use_is_refused_without_spending_its_retries(
    work: Path,
) -> None:
    from dotflow_prefect import ResumeKeyInUse, dotflow_flow

    from .scoped_flows import gate

    @dotflow_flow(store=store_url(work), resume_key="{day}", retries=2, retry_delay_seconds=0)
    def gated(day: str) -> Any:
        return gate(day)

    first: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: first.update(state=gated("wed", return_state=True)))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not (work / "gate-reached").exists():
            assert time.monotonic() < deadline, "the first run never reached its gate"
            time.sleep(0.05)
        second = gated("wed", return_state=True)
    finally:
        (work / "open").touch()
        runner.join(60)
    assert second.is_failed()
    with pytest.raises(ResumeKeyInUse, match="refused so that two runs never interleave"):
        second.result()
    assert first["state"].result() == "wed"
    assert steps_ran(work) == ["gate"]  # the second run never ran a task, nor retried

    from prefect.client.orchestration import get_client

    async def run_count() -> int:
        async with get_client() as client:
            run = await client.read_flow_run(second.state_details.flow_run_id)
        return run.run_count

    assert asyncio.run(run_count()) == 1


def test_rerun_from_reruns_that_task_and_every_call_after_it_and_retries_do_not_redo_it(
    work: Path,
) -> None:
    from dotflow_prefect import dotflow_flow

    from .scoped_flows import pipeline

    @dotflow_flow(
        store=store_url(work),
        resume_key="{day}",
        keep_checkpoints=True,
        retries=1,
        retry_delay_seconds=0,
    )
    def kept(day: str) -> Any:
        return pipeline(day)

    assert kept("thu") == "total 60"
    assert kept("thu") == "total 60"  # everything restored
    assert steps_ran(work) == ["extract", "transform", "load", "report"]
    assert kept("thu", rerun_from="load") == "total 60"
    assert steps_ran(work)[4:] == ["load", "report"]
    table = artifact("prefect/keyed/kept/thu")
    assert "- **restored** (2): 0. extract, 1. transform" in table
    assert "- **ran** (2): 2. load, 3. report" in table
    # a flow retry of a rerun keeps what the rerun already redid
    (work / "fail-report").touch()
    assert kept("thu", rerun_from="transform") == "total 60"
    assert steps_ran(work)[6:] == ["transform", "load", "report", "report"]
    assert kept("thu") == "total 60"  # the request was answered: nothing runs again
    assert len(steps_ran(work)) == 10


def test_rerun_from_a_step_inside_run_workflow_reruns_it_and_the_calls_after_it(
    work: Path,
) -> None:
    from dotflow_prefect import dotflow_flow, run_workflow

    from .scoped_flows import extract, report, scoring

    @dotflow_flow(store=store_url(work), resume_key="{day}", keep_checkpoints=True)
    def scored(day: str) -> Any:
        return report(run_workflow(scoring(), initial_context=extract(day)))

    assert scored("fri") == "total 3"
    assert scored("fri", rerun_from="score") == "total 3"
    assert steps_ran(work) == ["extract", "clean_rows", "score", "report", "score", "report"]


def test_the_cli_asks_the_next_run_of_a_key_to_rerun_from_a_task(work: Path) -> None:
    from dotflow_prefect import dotflow_flow

    from .scoped_flows import pipeline

    @dotflow_flow(store=store_url(work), resume_key="{day}", keep_checkpoints=True)
    def nightly_cli(day: str) -> Any:
        return pipeline(day)

    assert nightly_cli("sat") == "total 60"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dotflow_prefect",
            "rerun",
            "--flow",
            "nightly-cli",
            "--key",
            "sat",
            "--from",
            "transform",
            "--store",
            store_url(work),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "prefect/keyed/nightly-cli/sat" in done.stdout
    assert nightly_cli("sat") == "total 60"
    assert steps_ran(work)[4:] == ["transform", "load", "report"]
    assert nightly_cli("sat") == "total 60"
    assert len(steps_ran(work)) == 7


def test_a_lease_left_on_another_host_by_an_ended_run_is_waited_out_and_the_wait_logged(
    work: Path,
) -> None:
    from dotflow_prefect import dotflow_flow
    from dotflow_prefect._identity import CallKey, arguments_digest, function_name
    from dotflow_providers import FileStore, LeaseConfig
    from dotflow_providers._format import Layout, LeaseDocument, lease_document

    from .scoped_flows import extract, pipeline

    @dotflow_flow(store=store_url(work), resume_key="{day}", lock=LeaseConfig(clock_skew=0))
    def resumed(day: str) -> Any:
        return pipeline(day)

    ended = resumed("sun", return_state=True)  # a run that completed: its process is gone
    now = time.time()
    # what a runner SIGKILLed on another machine leaves: leases nobody renews or releases, on
    # the scope and on the call it was running
    call = CallKey(
        "prefect/keyed/resumed/sun",
        function_name(extract.fn),
        arguments_digest({"day": "sun"}, None),
        0,
    )
    for key, owner in (
        (Layout("prefect/keyed/resumed/sun").lock, str(ended.state_details.flow_run_id)),
        (Layout(call.workflow_id).lock, "a-runner"),
    ):
        FileStore(work / "ckpt").put(
            key,
            lease_document(LeaseDocument(owner, "elsewhere", os.getpid(), 1, now, now + 1.0, 1.0)),
        )
    state = resumed("sun", return_state=True)
    assert state.result() == "total 60"
    messages = [m for _, m in run_logs(state.state_details.flow_run_id, "waiting up to")]
    assert any(
        "still leased by flow run" in m and "elsewhere" in m and "waiting up to" in m
        for m in messages
    ), messages
    assert any(
        m.startswith(f"{call.workflow_id} is still leased by elsewhere pid")
        and "an earlier runner of this checkpoint scope on another host" in m
        for m in messages
    ), messages
    assert steps_ran(work) == ["extract", "transform", "load", "report"] * 2


def test_an_unusable_resume_key_ends_the_run_without_spending_retries(work: Path) -> None:
    from dotflow_prefect import dotflow_flow
    from dotflow_providers import ConfigurationError

    @dotflow_flow(store=store_url(work), resume_key="{date}", retries=2, retry_delay_seconds=0)
    def misnamed(day: str) -> str:
        return day

    state = misnamed("x", return_state=True)
    with pytest.raises(ConfigurationError, match=r"name parameters in braces"):
        state.result()


@pytest.mark.parametrize("key", ["{day}", lambda p: p["day"]])
def test_resume_keys_from_a_template_or_a_function_name_the_same_scope(key: Any) -> None:
    from dotflow_prefect.flows import _resume_key

    assert _resume_key(key, {"day": "2026-11-22", "n": 1}) == "2026-11-22"
    assert _resume_key(key, {"day": "a/b", "n": 1}) != _resume_key(key, {"day": "a_b", "n": 1})


@given(
    calls=st.lists(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3), max_size=12),
    rerun_from=st.sampled_from("abcde"),
)
def test_rerun_from_cuts_at_the_first_call_naming_the_step_in_call_order(
    calls: list[list[str]], rerun_from: str
) -> None:
    import logging

    from dotflow_prefect._scope import FlowScope
    from dotflow_providers import MemoryStore

    scope = FlowScope("prefect/x", MemoryStore(), logging.getLogger("test"), rerun_from=rerun_from)
    keys = [scope.draw(f"f{n}", "digest", tuple(steps)) for n, steps in enumerate(calls)]
    cut = next((n for n, steps in enumerate(calls) if rerun_from in steps), len(calls))
    assert [key.order for key in keys] == list(range(len(calls)))
    assert [key.rerun_from for key in keys] == [
        None if n < cut else rerun_from if n == cut else steps[0] for n, steps in enumerate(calls)
    ]
    assert len({key.workflow_id for key in keys}) == len(keys)


def test_a_flow_that_declares_rerun_from_itself_receives_it_and_it_still_applies(
    work: Path,
) -> None:
    from dotflow_prefect import dotflow_flow

    from .scoped_flows import pipeline

    @dotflow_flow(store=store_url(work), resume_key="{day}", keep_checkpoints=True)
    def declared(day: str, rerun_from: str | None = None) -> Any:
        return [pipeline(day), rerun_from]

    assert declared("mon") == ["total 60", None]
    assert declared("mon", "report") == ["total 60", "report"]
    assert steps_ran(work) == ["extract", "transform", "load", "report", "report"]
