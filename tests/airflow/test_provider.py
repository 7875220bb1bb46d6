"""Registration: provider info, `airflow providers` CLI, the plugin's page and its access rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def airflow_cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    return out.stdout


def airflow_json(*args: str) -> Any:
    """The JSON document an `airflow ... -o json` command prints (among its log lines)."""
    lines = airflow_cli(*args, "-o", "json").splitlines()
    return json.loads(next(line for line in lines if line.startswith(("[", "{"))))


def test_provider_info_validates_against_airflows_schema() -> None:
    import importlib.resources

    import jsonschema

    from dotflow_airflow.provider_info import get_provider_info

    schema = json.loads(
        (importlib.resources.files("airflow") / "provider_info.schema.json").read_text()
    )
    info = get_provider_info()
    jsonschema.validate(info, schema)
    from importlib.metadata import distribution

    assert info["package-name"] == distribution("dotflow-providers").metadata["Name"]


def test_airflow_providers_list_shows_the_provider() -> None:
    listed = airflow_json("providers", "list")
    ours = [p for p in listed if p["package_name"] == "dotflow-providers"]
    assert len(ours) == 1
    assert "checkpoints" in ours[0]["description"]
    shown = airflow_json("providers", "get", "dotflow-providers")
    assert "dotflow-providers" in json.dumps(shown)


def test_connection_type_and_hook_are_registered() -> None:
    hooks = airflow_json("providers", "hooks")
    assert any(h.get("connection_type") == "dotflow" for h in hooks)
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviour = manager.field_behaviours["dotflow"]
    assert behaviour["relabeling"]["host"] == "Store URL"
    assert "s3://bucket/prefix" in behaviour["placeholders"]["host"]
    widgets = manager.connection_form_widgets
    assert "extra__dotflow__endpoint_url" in widgets
    assert widgets["extra__dotflow__keyfile_dict"].is_sensitive


def test_plugin_is_loaded() -> None:
    plugins = airflow_json("plugins")
    ours = [p for p in plugins if p["name"] == "dotflow"]
    assert len(ours) == 1
    assert "DotflowCheckpointLink" in json.dumps(ours[0])


@pytest.fixture
def api() -> Any:
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    from airflow import plugins_manager

    # Airflow caches the plugins a process loaded; this process also ran tasks (dag.test), whose
    # threads may have loaded them half-way. The API server loads them once, at its start: so
    # does this in-process one.
    for cached in (plugins_manager.get_fastapi_plugins, plugins_manager._get_plugins):
        cached.cache_clear()
    return TestClient(create_app())


def token() -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(
        get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    )


def test_checkpoint_tab_refuses_anonymous_users_and_says_what_is_missing(
    api: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOTFLOW_TEST_DIR", str(tmp_path))
    from dotflow_dags import resume

    dag_run = resume.test()
    url = f"/dotflow/checkpoints/dotflow_resume/etl/-1/{dag_run.run_id}"
    anonymous = api.get(url)
    assert anonymous.status_code == 401, anonymous.text[:300]

    headers = {"Authorization": f"Bearer {token()}"}
    found = api.get(url, headers=headers, params={"format": "json"})
    assert found.status_code == 200, found.text  # the operator recorded where it checkpointed
    steps = found.json()["state"]["steps"]
    assert [s["name"] for s in steps] == ["extract", "transform", "load"]
    nowhere = api.get(url.replace("/etl/", "/nope/"), headers=headers)
    assert nowhere.status_code == 404
    assert "no task instance" in nowhere.text


def test_the_plugin_adds_a_checkpoints_tab_to_task_instances() -> None:
    from dotflow_airflow.plugin import DotflowPlugin

    (tab,) = DotflowPlugin.external_views
    assert tab["destination"] == "task_instance"
    assert tab["href"] == "/dotflow/checkpoints/{DAG_ID}/{TASK_ID}/{MAP_INDEX}/{RUN_ID}"


def test_the_task_links_to_its_checkpoints_tab() -> None:
    from dotflow_airflow.links import DotflowCheckpointLink

    class Key:
        dag_id, run_id, task_id, map_index = "d", "manual__2026+1", "t", -1

    link = DotflowCheckpointLink().get_link(None, ti_key=Key())
    assert link == "/dags/d/runs/manual__2026%2B1/tasks/t/plugin/dotflow-checkpoints"
    Key.map_index = 3
    link = DotflowCheckpointLink().get_link(None, ti_key=Key())
    assert link == "/dags/d/runs/manual__2026%2B1/tasks/t/mapped/3/plugin/dotflow-checkpoints"
