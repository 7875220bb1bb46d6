"""The checkpoint page: `/dotflow/dags/{dag_id}/checkpoints` on the Airflow API server.

Access: the caller must be signed in to Airflow and allowed to read task instances of the DAG
(`requires_access_dag("GET", TASK_INSTANCE)`, the same rule as Airflow's own task pages).
Step outputs are never shown: only statuses, attempts and timings.
"""

from __future__ import annotations

import html
import json
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

from dotflow_providers import DotflowError, inspect_workflow

from ..operators.dotflow import default_workflow_id
from ..state_store import TaskStateCheckpoints


class _ServerTaskState:
    """Read-only view of one task instance's task state store, from the API server's DB."""

    def __init__(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> None:
        from airflow._shared.state import TaskScope
        from airflow.state.metastore import _get_db_backend

        self._scope = TaskScope(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
        self._backend = _get_db_backend()

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._backend.get(self._scope, key)
        return default if raw is None else json.loads(raw)


def _store(dag_id: str, run_id: str, task_id: str, map_index: int, conn_id: str | None) -> Any:
    if conn_id:
        from airflow.models.connection import Connection

        from ..hooks.dotflow import DotflowHook

        return DotflowHook.store_for(Connection.get_connection_from_secrets(conn_id))
    return TaskStateCheckpoints(_ServerTaskState(dag_id, run_id, task_id, map_index))


def _table(state: dict[str, Any]) -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(step.get(col) if step.get(col) is not None else ''))}</td>"
            for col in ("index", "name", "status", "attempts", "duration")
        )
        + "</tr>"
        for step in state["steps"]
    )
    title = html.escape(state["workflow_id"])
    return (
        f"<!doctype html><title>dotflow {title}</title><h1>{title}</h1>"
        f"<p>{state.get('completed', 0)} of {len(state['steps'])} steps checkpointed</p>"
        "<table><thead><tr><th>#</th><th>step</th><th>status</th><th>attempts</th>"
        f"<th>duration (s)</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def create_app() -> FastAPI:
    app = FastAPI(title="Dotflow checkpoints")
    allowed = Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))

    @app.get("/dags/{dag_id}/checkpoints", dependencies=[allowed], response_model=None)
    def checkpoints(
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int = -1,
        workflow_id: str | None = None,
        conn_id: str | None = None,
        format: str = Query("html", pattern="^(html|json)$"),
    ) -> dict[str, Any] | HTMLResponse:
        wid = workflow_id or default_workflow_id(dag_id, run_id, task_id, map_index)
        try:
            state = inspect_workflow(wid, _store(dag_id, run_id, task_id, map_index, conn_id))
        except DotflowError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return state if format == "json" else HTMLResponse(_table(state))

    return app
