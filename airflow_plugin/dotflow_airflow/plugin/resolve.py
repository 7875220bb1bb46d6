"""Which workflow, in which store, one task instance ran: from its `dotflow_checkpoints` XCom.

The operator records `{"workflow_id": ..., "store": {"kind": "task_state"} | {"kind":
"connection", "conn_id": ...} | {"kind": "url", "url": ...}}` at the end of every try. The page
trusts only that record, read from Airflow's metadata database for the task instance in the
URL, never a store or workflow id a caller passes in.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from dotflow_providers import CheckpointStore, DotflowError, store_from_url

from ..compatibility import AirflowNotFoundException, ServerTaskState, task_instance_xcom
from ..state_store import TaskStateCheckpoints

#: The XCom key the operator records its workflow id and store under.
XCOM_KEY = "dotflow_checkpoints"


class NotFound(Exception):
    """Nothing to show: no such task instance, no record, an unknown connection (HTTP 404)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TaskInstanceRef:
    """One task instance, as the UI's URL names it."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def __str__(self) -> str:
        index = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}{index}"


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """What a task instance recorded: its workflow id and where its checkpoints are."""

    workflow_id: str
    kind: Literal["task_state", "connection", "url"]
    conn_id: str | None = None
    url: str | None = None

    def describe(self) -> str:
        """Where the checkpoints are, for people (never a secret: URLs carry none)."""
        if self.kind == "connection":
            return f"connection {self.conn_id}"
        if self.kind == "url":
            return str(self.url)
        return "Airflow's task state store"


def parse_record(value: Any) -> Recorded:
    """The record in a `dotflow_checkpoints` XCom value; `ValueError` if it is not one."""
    if not isinstance(value, dict):
        raise ValueError("it is not a JSON object")
    workflow_id = value.get("workflow_id")
    store = value.get("store")
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ValueError("its workflow_id is missing")
    if not isinstance(store, dict):
        raise ValueError("its store is missing")
    kind = store.get("kind")
    if kind == "task_state":
        return Recorded(workflow_id, "task_state")
    if kind == "connection":
        conn_id = store.get("conn_id")
        if not isinstance(conn_id, str) or not conn_id:
            raise ValueError("its store names no connection")
        return Recorded(workflow_id, "connection", conn_id=conn_id)
    if kind == "url":
        url = store.get("url")
        if not isinstance(url, str) or "://" not in url:
            raise ValueError("its store has no URL")
        return Recorded(workflow_id, "url", url=url)
    raise ValueError(f"its store kind {kind!r} is none of task_state, connection, url")


def recorded(ti: TaskInstanceRef) -> Recorded:
    """What `ti` recorded at run time; `NotFound` when it recorded nothing usable."""
    value = task_instance_xcom(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, XCOM_KEY)
    if value is None:
        raise NotFound(
            f"task instance {ti} recorded no checkpoints (no {XCOM_KEY!r} XCom): it is not a "
            "DotflowOperator task, it has not run yet, or its XComs were cleared for a new try"
        )
    try:
        return parse_record(value)
    except ValueError as exc:
        raise NotFound(
            f"the {XCOM_KEY!r} XCom of {ti} is not a DotflowOperator record: {exc}"
        ) from None


def open_store(ti: TaskInstanceRef, record: Recorded) -> CheckpointStore:
    """The store `record` names (`NotFound` for an unknown connection or a bad URL)."""
    if record.kind == "task_state":
        state = ServerTaskState(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        # limit 0: the page writes only small next-start requests, and Airflow checks its own
        return TaskStateCheckpoints(state, limit=0)
    try:
        if record.kind == "connection":
            from ..hooks.dotflow import DotflowHook

            return DotflowHook(str(record.conn_id)).get_store()
        return store_from_url(str(record.url))
    except AirflowNotFoundException:
        raise NotFound(
            f"connection {record.conn_id!r}, where {ti} keeps its checkpoints, is not defined "
            "on the API server: define it there (Admin > Connections) to see them"
        ) from None
    except DotflowError as exc:
        raise NotFound(f"the checkpoint store of {ti} cannot be opened: {exc}") from exc
