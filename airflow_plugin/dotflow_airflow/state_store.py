"""Airflow's task state store as the default checkpoint store of a DotflowOperator.

`context["task_state_store"]` keeps JSON values per task instance, shared by all its tries,
which is exactly the lifetime of a DotflowOperator's checkpoints. It has no listing, so the
store keeps its own key index, and it caps values at `[state_store] max_value_storage_bytes`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dotflow_providers import CheckpointError, PreconditionFailed, StoreError

from .compatibility import state_store_limit

_INDEX = "dotflow:keys"


class TaskStateCheckpoints:
    """A `CheckpointStore` over one task instance's `task_state_store`.

    Conditional writes are checked here, not atomically by Airflow: that is enough because
    Airflow runs one try of a task instance at a time (and the operator takes no lease on it).
    """

    url = "airflow-task-state://"

    def __init__(self, accessor: Any, limit: int | None = None) -> None:
        self._state = accessor
        self.limit = state_store_limit() if limit is None else limit

    def _keys(self) -> list[str]:
        keys = self._state.get(_INDEX, [])
        return list(keys) if isinstance(keys, list) else []

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        value = self._state.get(f"dotflow:{key}")
        if not isinstance(value, dict) or "data" not in value:
            return None
        return str(value["data"]).encode(), str(value["version"])

    def get(self, key: str) -> bytes | None:
        found = self.get_versioned(key)
        return None if found is None else found[0]

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        current = self.get_versioned(key)
        if if_none_match and current is not None:
            raise PreconditionFailed(key, "it already exists")
        if if_match is not None and (current is None or current[1] != if_match):
            raise PreconditionFailed(key, "it changed since it was read")
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise StoreError(f"{key!r}: the task state store only keeps text") from None
        if len(data) > self.limit:
            raise CheckpointError(
                f"checkpoint {key!r} is {len(data)} bytes, more than Airflow's task state store "
                f"keeps ([state_store] max_value_storage_bytes = {self.limit}); give the "
                "operator an object store: store_conn_id= a 'dotflow' connection to s3:// or "
                "gs://, or store='s3://bucket/prefix'"
            )
        version = str(int(current[1]) + 1 if current else 1)
        self._state.set(f"dotflow:{key}", {"data": text, "version": version})
        keys = self._keys()
        if key not in keys:
            self._state.set(_INDEX, sorted([*keys, key]))
        return version

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        current = self.get_versioned(key)
        if current is None:
            return
        if if_match is not None and current[1] != if_match:
            raise PreconditionFailed(key, "it changed since it was read")
        self._state.delete(f"dotflow:{key}")
        self._state.set(_INDEX, [k for k in self._keys() if k != key])

    def list(self, prefix: str) -> Iterator[str]:
        return iter(sorted(k for k in self._keys() if k.startswith(prefix)))
