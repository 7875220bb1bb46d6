"""Encrypted checkpoints through a `dotflow` connection: keys from its secret extra field, which
never reach a log, an XCom, a checkpoint or an error message."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ..servers import ACCESS_KEY, REGION, SECRET_KEY
from ..sidefx import steps_ran
from .test_operator import task_instance, work, xcom

__all__ = ["work"]  # the fixture, shared with the operator tests

OLD, NEW = b"o" * 32, b"n" * 32  # two AES-256 keys: new writes use the newest, "new"
KEYS = f"old:{base64.b64encode(OLD).decode()},new:{base64.b64encode(NEW).decode()}"


def secrets_in(text: str) -> list[str]:
    """Which forms of the keys `text` holds (the list, each key, in base64 or not)."""
    forms = [KEYS, *(base64.b64encode(k).decode() for k in (OLD, NEW))]
    forms += [k.decode("latin-1") for k in (OLD, NEW)]
    return [form for form in forms if form in text]


def every_xcom(dag_run: Any) -> str:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        values = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id
            )
        ).all()
    return json.dumps([str(v) for v in values])


def connect(monkeypatch: pytest.MonkeyPatch, bucket: str, endpoint: str, keys: str) -> None:
    connection = {
        "conn_type": "dotflow",
        "host": f"s3://{bucket}/airflow",
        "login": ACCESS_KEY,
        "password": SECRET_KEY,
        "extra": {"endpoint_url": endpoint, "region_name": REGION, "encryption_keys_secret": keys},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DOTFLOW_S3", json.dumps(connection))


def test_a_connection_with_encryption_keys_encrypts_every_checkpoint_and_resumes(
    work: Path,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from dotflow_dags import resume_s3

    from dotflow_providers.storage import EncryptedStore, S3Store

    connect(monkeypatch, s3_bucket, s3_endpoint, KEYS)
    (work / "fail-load").touch()
    dag_run = resume_s3.test()
    assert dag_run.state == "success"
    assert task_instance(dag_run).try_number == 2  # the retry read the encrypted checkpoints
    assert steps_ran(work) == ["extract", "transform", "load", "load"]
    summary = xcom(dag_run)
    assert [s["restored"] for s in summary["steps"]] == [True, True, False]
    # every document in the bucket is encrypted with the newest key, and only the keys open it
    objects = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    bodies = {
        o["Key"]: s3_client.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read()
        for o in objects
    }
    assert sum("/steps/" in key for key in bodies) == 3
    assert all(body.startswith(b"DFE\x01\x03new") for body in bodies.values())
    assert not any(b'"rows"' in body for body in bodies.values())
    plain = S3Store(s3_bucket, "airflow", client=s3_client)
    opened = EncryptedStore(plain, [("new", NEW)])
    step_keys = [key.removeprefix("airflow/") for key in bodies if "/steps/" in key]
    documents = [opened.get(key) or b"" for key in step_keys]
    assert all(documents)
    assert any(b'"rows"' in document for document in documents)
    # the keys are nowhere: not in the task's logs, its XComs or the stored bytes
    out = capfd.readouterr()
    assert secrets_in(out.out + out.err) == []
    assert secrets_in(every_xcom(dag_run)) == []
    assert secrets_in(b"".join(bodies.values()).decode("latin-1")) == []


def test_a_bad_key_list_fails_the_task_for_good_without_quoting_it(
    work: Path,
    s3_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from dotflow_dags import resume_s3

    short = base64.b64encode(b"s" * 16).decode()  # AES-128 sized: refused
    connect(monkeypatch, s3_bucket, s3_endpoint, f"{KEYS},short:{short}")
    dag_run = resume_s3.test()
    assert dag_run.state == "failed"
    assert task_instance(dag_run).try_number == 1  # no retry can fix a key list
    assert not (work / "steps.log").exists()  # no step ran
    out = capfd.readouterr()
    assert "encryption key 'short' must be 32 bytes" in out.out + out.err
    assert "encryption_keys_secret field of connection 'dotflow_s3'" in out.out + out.err
    assert secrets_in(out.out + out.err) == []
    assert short not in out.out + out.err
    assert secrets_in(every_xcom(dag_run)) == []


def test_the_key_field_is_a_secret_to_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    # what Airflow's UI, REST API and task logs redact with (the Task SDK's own masker)
    from airflow.sdk._shared.secrets_masker import redact

    from dotflow_airflow.hooks.dotflow import ENCRYPTION_KEYS

    widgets = ProvidersManager().connection_form_widgets
    assert widgets[f"extra__dotflow__{ENCRYPTION_KEYS}"].is_sensitive  # a password field
    # Airflow's UI and REST API redact extra fields by name: this one is hidden
    assert redact({ENCRYPTION_KEYS: KEYS, "region_name": REGION}) == {
        ENCRYPTION_KEYS: "***",
        "region_name": REGION,
    }


def test_the_hook_masks_the_keys_in_logs_as_soon_as_it_reads_them() -> None:
    from airflow.sdk import Connection
    from airflow.sdk._shared.secrets_masker import redact

    from dotflow_airflow import DotflowHook

    conn = Connection(
        conn_id="enc",
        conn_type="dotflow",
        host="memory://",
        extra=json.dumps({"encryption_keys_secret": KEYS}),
    )
    store = DotflowHook.store_for(conn)
    assert secrets_in(repr(store)) == []
    assert store.key_ids == ["old", "new"]
    # a log line quoting the list, or one key alone, is masked
    new_key = base64.b64encode(NEW).decode()
    assert secrets_in(str(redact(f"keys {KEYS}; the newest alone: {new_key}"))) == []


def test_a_password_in_a_step_error_is_masked_in_xcoms_checkpoints_and_the_tab(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's error quotes a connection's password (a driver's DSN): Airflow masks it in the
    task's log, and so is it in what the engine keeps of the error (the attempt history in the
    XCom summary, the checkpoint document, the Checkpoints tab's data)."""
    import os

    from dotflow_dags import leaky

    from dotflow_providers import FileStore, inspect_workflow
    from dotflow_providers._format import Layout

    password = "Hunter2-Pa55w0rd"
    connection = {"conn_type": "postgres", "login": "etl", "password": password, "host": "db"}
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(connection))
    (work / "fail-query").touch()
    dag_run = leaky.test()
    assert dag_run.state == "success"
    summary = xcom(dag_run)
    history = summary["steps"][0]["history"]
    assert history[0][2] == "ConnectionError"
    assert "postgres://etl:***@db/x" in history[0][3]  # masked, as the task's log shows it
    workflow_id = xcom(dag_run, "dotflow_checkpoints")["workflow_id"]
    store = FileStore(os.environ["DOTFLOW_CHECKPOINT_DIR"])
    stored = b"".join(store.get(k) or b"" for k in store.list(Layout(workflow_id).base))
    shown = json.dumps(inspect_workflow(workflow_id, store))
    # (the task's log is masked by the supervisor of a real worker; `dag.test()` prints it raw)
    for where in (every_xcom(dag_run), stored.decode(), shown):
        assert password not in where
