"""The Checkpoints tab's server: `/dotflow/checkpoints/...` on the Airflow API server.

`GET /dotflow/checkpoints/{dag_id}/{task_id}/{map_index}/{run_id}` shows the steps of the
workflow that task instance ran (HTML for the tab, `?format=json` for scripts); `POST
/dotflow/next-start/{dag_id}/{task_id}/{map_index}/{run_id}` asks its next try to rerun from a
step or to start over. The run id comes last as a path so that any run id fits.

Access is Airflow's own: reading needs task-instance read permission on the DAG, the actions
task-instance edit permission (`requires_access_dag`, as the UI's own task pages and actions);
the caller is the UI's signed-in user (its session cookie) or a bearer token. Which workflow and
store are shown comes only from what the task instance recorded (`resolve.recorded`). Step
outputs are never read: `inspect_workflow` decodes document headers only.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from dotflow_providers import DotflowError, inspect_workflow
from dotflow_providers.integration import request_next_start

from ..compatibility import (
    SignedInUser,
    dag_access_dependency,
    get_user_dependency,
    may_edit_task_instances,
    task_instance_state,
    task_instance_xcom,
)
from .page import error_page, render_page
from .resolve import NotFound, Recorded, TaskInstanceRef, open_store, recorded

#: The tab as the plugin registers it; the UI fills the {PLACEHOLDERS} (`external_views`).
TAB_HREF = "/dotflow/checkpoints/{DAG_ID}/{TASK_ID}/{MAP_INDEX}/{RUN_ID}"
#: Task instance states in which a try may be writing its checkpoints right now.
_BUSY = frozenset({"running", "queued", "scheduled", "restarting", "deferred"})
_INDEX = re.compile(r"-?\d{1,9}")


class NextStart(BaseModel):
    """What the next try should do: rerun from a step, or start over."""

    rerun_from: str | None = None
    start_over: bool = False


def map_index_from(text: str) -> int:
    """The map index in a tab URL: the UI leaves `{MAP_INDEX}` unfilled on unmapped tasks."""
    if text == "{MAP_INDEX}":
        return -1
    if not _INDEX.fullmatch(text):
        raise NotFound(f"{text!r} is not a map index")
    return int(text)


def _task_instance(dag_id: str, task_id: str, map_index: str, run_id: str) -> TaskInstanceRef:
    ti = TaskInstanceRef(dag_id, run_id, task_id, map_index_from(map_index))
    if task_instance_state(ti.dag_id, ti.run_id, ti.task_id, ti.map_index) is None:
        raise NotFound(f"no task instance {ti}")
    return ti


def _flags(ti: TaskInstanceRef, record: Recorded) -> dict[str, dict[str, bool]]:
    """Per step, the restored / interrupted / compensated flags of the last try that returned
    (its `return_value` summary); the store keeps no such flags."""
    summary = task_instance_xcom(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, "return_value")
    if not isinstance(summary, dict) or summary.get("workflow_id") != record.workflow_id:
        return {}
    steps = summary.get("steps")
    return {
        str(s.get("name")): {
            f: s.get(f) is True for f in ("restored", "interrupted", "compensated")
        }
        for s in (steps if isinstance(steps, list) else [])
        if isinstance(s, dict)
    }


def _view(ti: TaskInstanceRef, user: SignedInUser) -> dict[str, Any]:
    record = recorded(ti)
    store = open_store(ti, record)
    try:
        state = inspect_workflow(record.workflow_id, store)
    except DotflowError as exc:
        raise NotFound(f"the checkpoints of {ti} cannot be read: {exc}") from exc
    path = "/".join(urllib.parse.quote(p, safe="") for p in (ti.dag_id, ti.task_id))
    return {
        "task_instance": str(ti),
        "workflow_id": record.workflow_id,
        "store": record.describe(),
        "can_edit": may_edit_task_instances(user, ti.dag_id),
        "next_start_url": f"/dotflow/next-start/{path}/{ti.map_index}/"
        + urllib.parse.quote(ti.run_id, safe=""),
        "state": state,
        "flags": _flags(ti, record),
    }


def create_app() -> FastAPI:
    """The FastAPI app the plugin mounts at `/dotflow`."""
    app = FastAPI(title="Dotflow checkpoints")
    may_read = Depends(dag_access_dependency("GET"))
    may_edit = Depends(dag_access_dependency("PUT"))
    user_dependency = Depends(get_user_dependency())

    @app.get(
        "/checkpoints/{dag_id}/{task_id}/{map_index}/{run_id:path}",
        dependencies=[may_read],
        response_model=None,
    )
    def checkpoints(
        dag_id: str,
        task_id: str,
        map_index: str,
        run_id: str,
        user: SignedInUser = user_dependency,
        format: str = Query("html", pattern="^(html|json)$"),
    ) -> HTMLResponse | JSONResponse:
        try:
            view = _view(_task_instance(dag_id, task_id, map_index, run_id), user)
        except NotFound as exc:
            if format == "json":
                return JSONResponse({"detail": str(exc)}, status_code=404)
            return HTMLResponse(error_page(404, str(exc)), status_code=404)
        if format == "json":
            return JSONResponse(view)
        return HTMLResponse(render_page(view))

    @app.post(
        "/next-start/{dag_id}/{task_id}/{map_index}/{run_id:path}",
        dependencies=[may_edit],
    )
    def next_start(
        dag_id: str,
        task_id: str,
        map_index: str,
        run_id: str,
        body: NextStart,
        user: SignedInUser = user_dependency,
    ) -> dict[str, str]:
        if (body.rerun_from is None) == (not body.start_over):
            raise HTTPException(422, "give either rerun_from (a step name) or start_over: true")
        try:
            ti = _task_instance(dag_id, task_id, map_index, run_id)
            state = task_instance_state(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
            if state in _BUSY:
                raise HTTPException(
                    409,
                    f"task instance {ti} is {state}: wait until its try ends, then ask again",
                )
            record = recorded(ti)
            store = open_store(ti, record)
            if body.rerun_from is not None:
                steps = [s["name"] for s in inspect_workflow(record.workflow_id, store)["steps"]]
                if body.rerun_from not in steps:
                    raise NotFound(
                        f"workflow {record.workflow_id} has no checkpointed step "
                        f"{body.rerun_from!r}; its steps: {', '.join(steps) or 'none yet'}"
                    )
            request_next_start(
                record.workflow_id,
                store,
                rerun_from=body.rerun_from,
                start_over=body.start_over,
                requested_by=user.get_name(),
            )
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except DotflowError as exc:
            raise HTTPException(409, f"the request could not be recorded: {exc}") from exc
        what = f"rerun from {body.rerun_from}" if body.rerun_from else "start over"
        return {
            "message": f"Recorded: the next try of {ti} will {what}. "
            "Clear the task instance to start that try."
        }

    return app
