"""DotflowOperator in real DAG runs (dag.test on SQLite): resume across Airflow retries."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dotflow_providers._format import Layout

from ..servers import ACCESS_KEY, REGION, SECRET_KEY
from ..sidefx import steps_ran


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOTFLOW_TEST_DIR", str(tmp_path))
    return tmp_path


def task_instance(dag_run: Any, task_id: str = "etl") -> Any:
    return dag_run.get_task_instance(task_id)


def xcom(dag_run: Any, key: str = "return_value", task_id: str = "etl") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
            )
        )
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class Collect(logging.Handler):
    """Airflow re-configures logging during dag.test(), so pytest's caplog sees nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_failed_step_resumes_on_the_airflow_retry(work: Path) -> None:
    from dotflow_dags import resume

    listener_log = logging.getLogger("dotflow_airflow")
    collect = Collect()
    listener_log.addHandler(collect)
    listener_log.setLevel(logging.INFO)
    (work / "fail-load").touch()
    try:
        dag_run = resume.test()
    finally:
        listener_log.removeHandler(collect)
    # the plugin's listener summarises each try when the task instance ends
    summaries = collect.messages
    assert any(
        "FAILED: extract=COMPLETED/1, transform=COMPLETED/1, load=FAILED/1" in m for m in summaries
    )
    assert any("COMPLETED: extract=COMPLETED/1(restored)" in m for m in summaries)
    assert dag_run.state == "success"
    ti = task_instance(dag_run)
    assert ti.try_number == 2
    # extract and transform ran once; load failed on try 1 and ran again on try 2
    assert steps_ran(work) == ["extract", "transform", "load", "load"]
    summary = xcom(dag_run)
    assert summary["status"] == "COMPLETED"
    assert [s["restored"] for s in summary["steps"]] == [True, True, False]
    assert summary["output"] == {"loaded": 6, "context": None}


def test_a_new_dag_run_with_an_earlier_runs_run_id_starts_over(work: Path) -> None:
    # dag.test() for one logical date deletes the earlier run and creates a new one with the
    # same run_id (as a REST trigger with an explicit dag_run_id can): the default workflow id
    # `dag/run/task` is the same, and on an external store the new run's first try restored
    # the deleted run's outputs
    import pendulum
    from dotflow_dags import same_run_id

    when = pendulum.datetime(2026, 11, 5, tz="UTC")
    first = same_run_id.test(logical_date=when, run_after=when)
    second = same_run_id.test(logical_date=when, run_after=when)
    assert second.run_id == first.run_id
    assert task_instance(second).try_number == 1
    assert steps_ran(work) == ["extract", "transform", "load"] * 2
    assert [s["restored"] for s in xcom(second)["steps"]] == [False, False, False]


def test_resume_through_an_s3_connection(
    work: Path,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from dotflow_dags import resume_s3

    connection = {
        "conn_type": "dotflow",
        "host": f"s3://{s3_bucket}/airflow",
        "login": ACCESS_KEY,
        "password": SECRET_KEY,
        "extra": {"endpoint_url": s3_endpoint, "region_name": REGION},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DOTFLOW_S3", json.dumps(connection))
    (work / "fail-load").touch()
    dag_run = resume_s3.test()
    assert dag_run.state == "success"
    assert task_instance(dag_run).try_number == 2
    assert steps_ran(work) == ["extract", "transform", "load", "load"]
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    workflow_id = xcom(dag_run, "dotflow_workflow_id")
    assert workflow_id == f"dotflow_resume_s3/{dag_run.run_id}/etl"
    assert [k for k in keys if "/steps/" in k] == sorted(
        f"airflow/{Layout(workflow_id).step(name)}" for name in ["extract", "transform", "load"]
    )
    out = capfd.readouterr()
    assert SECRET_KEY not in out.out + out.err
    assert SECRET_KEY not in json.dumps(xcom(dag_run))


def test_a_non_retryable_error_fails_without_an_airflow_retry(work: Path) -> None:
    from dotflow_dags import permanent

    dag_run = permanent.test()
    assert dag_run.state == "failed"
    ti = task_instance(dag_run)
    assert ti.state == "failed"
    assert ti.try_number == 1  # retries=2, but AirflowFailException skips them
    assert steps_ran(work) == ["extract", "validate"]  # and the engine did not retry either


def test_templated_workflow_id_and_initial_context(work: Path) -> None:
    from dotflow_dags import templated

    from dotflow_providers import FileStore

    dag_run = templated.test()
    assert dag_run.state == "success"
    summary = xcom(dag_run)
    day = dag_run.logical_date.strftime("%Y%m%d") if dag_run.logical_date else None
    assert summary["workflow_id"] == f"sales-dotflow_templated-{day}"
    assert summary["output"]["context"] == {
        "run": dag_run.run_id,
        "day": dag_run.logical_date.strftime("%Y-%m-%d"),
    }
    store = FileStore(os.environ["DOTFLOW_CHECKPOINT_DIR"])
    assert len(list(store.list(Layout(summary["workflow_id"]).steps))) == 3


def test_a_checkpoint_too_large_for_the_task_state_store_says_what_to_do(
    work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from dotflow_dags import too_large

    dag_run = too_large.test()
    assert dag_run.state == "failed"
    assert task_instance(dag_run).try_number == 1  # retrying cannot make it fit
    task_log = capfd.readouterr().out  # the step's failure line in the task log
    assert "max_value_storage_bytes" in task_log
    assert "store_conn_id" in task_log


def test_on_kill_cancels_the_running_workflow_between_attempts() -> None:
    import threading
    import time

    from dotflow_airflow import DotflowOperator
    from dotflow_providers import FixedRetry, Status, Workflow, action

    failed_once = threading.Event()
    calls: list[float] = []

    @action(retry=FixedRetry(max_attempts=5, delay=30))
    def upstream() -> None:
        calls.append(time.monotonic())
        failed_once.set()
        raise ConnectionError("down")

    operator = DotflowOperator(task_id="killable", workflow=Workflow().add(upstream))
    run = Workflow().add(upstream).add(lambda: "never", name="after").start(mode="background")
    operator.dotflow_run = run  # what execute() holds while the workflow runs
    assert failed_once.wait(10)
    killed_at = time.monotonic()
    operator.on_kill()
    # wait(10) gives up long before the 30 s retry wait would end: only a cut-short wait
    # lets the run finish in time to be CANCELLED here
    assert run.wait(10).status is Status.CANCELLED
    assert time.monotonic() - killed_at < 10
    assert len(calls) == 1  # no second attempt ran: the wait was cut short, not waited out
    assert run.steps[0].attempts == 1
    assert [s.status for s in run.steps] == [Status.CANCELLED, Status.CANCELLED]


def test_every_try_records_its_workflow_and_store_for_the_checkpoints_tab(work: Path) -> None:
    from dotflow_dags import permanent, resume

    dag_run = resume.test()
    assert xcom(dag_run, "dotflow_checkpoints") == {
        "workflow_id": f"dotflow_resume/{dag_run.run_id}/etl",
        "store": {"kind": "task_state"},
    }
    failed = permanent.test()  # a failed try records it too
    assert failed.state == "failed"
    assert xcom(failed, "dotflow_checkpoints")["store"] == {"kind": "task_state"}


def test_a_store_urls_parameters_are_recorded_for_the_checkpoints_tab(work: Path) -> None:
    # the tab opens the store from this record: without them it opened another store (the
    # default S3 endpoint, or a plain FileStore over an encrypted one)
    from dotflow_dags import templated_store

    url = f"file://{work / 'ckpt'}?durable=false"
    dag_run = templated_store.test(run_conf={"store": url, "conn_id": ""})
    assert xcom(dag_run, "dotflow_checkpoints", task_id="by_url")["store"] == {
        "kind": "url",
        "url": url,
    }


def test_a_store_url_is_recorded_without_credentials_and_opens_the_same_store() -> None:
    from dotflow_providers.storage import S3Store, public_url, store_from_url

    assert public_url("s3://key:secret@bucket/prefix?endpoint=x#y") == "s3://bucket/prefix"
    assert public_url("file:///tmp/ckpt") == "file:///tmp/ckpt"
    assert public_url("airflow-task-state://") == "airflow-task-state://"
    # the parameters a scheme takes are no secrets, and the Checkpoints tab needs them to open
    # the store the task wrote to (another endpoint, the encryption keys' variable)
    s3 = "s3://k:s@bucket/p?endpoint_url=http://127.0.0.1:9000&region=eu-west-1&token=t"
    assert public_url(s3) == (
        "s3://bucket/p?endpoint_url=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1"
    )
    reopened = store_from_url(public_url(s3))
    assert isinstance(reopened, S3Store)
    assert "127.0.0.1:9000" in reopened.client.meta.endpoint_url
    assert public_url("s3://b/p?endpoint_url=http://user:pw@host") == "s3://b/p"
    encrypted = "file:///tmp/ckpt?encryption_keys_env=CKPT_KEYS&durable=false"
    assert public_url(encrypted) == encrypted


def test_a_rerun_request_from_the_tab_is_applied_once_by_the_next_try(
    work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import uuid

    from dotflow_dags import requests_dag

    from dotflow_providers import FileStore
    from dotflow_providers.integration import request_next_start, take_next_start

    key = uuid.uuid4().hex[:8]
    workflow_id = f"requests-{key}"
    store = FileStore(os.environ["DOTFLOW_CHECKPOINT_DIR"])
    first = requests_dag.test(run_conf={"key": key})
    assert xcom(first, "dotflow_checkpoints") == {
        "workflow_id": workflow_id,
        "store": {"kind": "url", "url": f"file://{os.environ['DOTFLOW_CHECKPOINT_DIR']}"},
    }
    request_next_start(workflow_id, store, rerun_from="transform", requested_by="admin")
    requests_dag.test(run_conf={"key": key})
    assert steps_ran(work) == ["extract", "transform", "load", "transform", "load"]
    assert take_next_start(workflow_id, store) is None  # taken by the try that applied it
    assert "running again from step transform, as asked from the Checkpoints tab by admin" in (
        capfd.readouterr().out
    )
    request_next_start(workflow_id, store, start_over=True)
    requests_dag.test(run_conf={"key": key})
    assert steps_ran(work)[5:] == ["extract", "transform", "load"]
    assert "starting over, as asked from the Checkpoints tab" in capfd.readouterr().out
    requests_dag.test(run_conf={"key": key})  # no request: everything restored
    assert len(steps_ran(work)) == 8


@st.composite
def try_histories(draw: st.DrawFn) -> tuple[int, list[tuple[str, int, int]]]:
    """Airflow's own rules for a task instance's tries: it starts with `max_tries = retries`; a
    retry leaves `max_tries`; a clear sets it to `try_number + retries` of the DAG version it
    clears on. Between them the DAG file may be edited: the worker's `retries` then differs
    from the version's. (A try may also end failed after `execute` returned: a post-execute hook,
    the XCom push; nothing the operator records can say so.)"""
    retries = draw(st.integers(0, 4))
    events = draw(
        st.lists(
            st.tuples(st.sampled_from(["retry", "clear"]), st.integers(0, 4), st.integers(0, 4)),
            min_size=1,
            max_size=6,
        )
    )
    return retries, events


@settings(deadline=None)  # the first example imports Airflow
@given(try_histories())
def test_a_clear_is_never_taken_for_a_retry(
    history: tuple[int, list[tuple[str, int, int]]],
) -> None:
    """A clear always starts over (else it would restore what must run again); a retry resumes
    whenever the worker parsed the retries that set `max_tries` (after a DAG edit it may start
    over: the safe side)."""
    from dotflow_airflow.compatibility import try_after_clear

    retries, events = history
    try_number, max_tries, version_retries = 1, retries, retries
    recorded = (try_number, max_tries)  # what try 1 recorded
    for event, cleared_on, worker_retries in events:
        if event == "clear":
            max_tries, version_retries = try_number + cleared_on, cleared_on
            # the one case nothing tells: the clear left max_tries as it was, and the worker
            # parsed a DAG edited since the clear
            assume(max_tries != recorded[1] or worker_retries == cleared_on)
        try_number += 1
        decided = try_after_clear(try_number, max_tries, worker_retries, recorded)
        if event == "clear":
            assert decided
        elif worker_retries == version_retries:
            assert not decided
        recorded = (try_number, max_tries)


def test_a_try_that_finds_no_record_where_records_are_kept_starts_over() -> None:
    """Every try records itself; only a success wipes the task state store (`[state_store]
    clear_on_success`), after which the next try can only come from a clear."""
    from dotflow_airflow.compatibility import try_after_clear

    assert try_after_clear(3, 2, 2, None, recorded=True)  # (the formula: a retry)
    assert not try_after_clear(3, 2, 2, None, recorded=False)  # no store: the formula alone
    assert not try_after_clear(1, 2, 2, None, recorded=True)  # the very first try
