"""Airflow's task state store as the default checkpoint store of a DotflowOperator.

`context["task_state_store"]` keeps JSON values per task instance, shared by all its tries,
which is exactly the lifetime of a DotflowOperator's checkpoints. It has no listing and caps
values at `[state_store] max_value_storage_bytes`, so keys are kept in numbered slots.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from dotflow_providers import CheckpointError, PreconditionFailed, StoreError

from .compatibility import state_store_limit

#: Slot `n` of a task instance lives under this state-store key.
SLOT = "dotflow:{}"


class StateReader(Protocol):
    """What reading needs of a task state store (all the API server's view offers)."""

    def get(self, key: str, default: Any = None) -> Any: ...


@runtime_checkable
class StateAccessor(StateReader, Protocol):
    """What writing needs: `context["task_state_store"]` in a running task."""

    def set(self, key: str, value: Any) -> None: ...


class TaskStateCheckpoints:
    """A `CheckpointStore` over one task instance's `task_state_store`, at one call per write.

    Each checkpoint key gets a slot, `dotflow:0`, `dotflow:1`, ... in the order keys are first
    written, and the slot's value holds the key, the data and a version (a deleted key keeps its
    slot with no data, so slots never move). The first call reads the slots in order up to the
    first missing one: that is the listing, and every later read is answered from memory. So a
    write is one `set`, with no index to rewrite (a shared index grew with every step and was
    rewritten on every put: quadratic bytes), and a value holds one checkpoint, never more.

    Answering from memory and checking conditional writes here, not atomically in Airflow, is
    sound because Airflow runs one try of a task instance at a time, each with its own store
    object (the operator takes no lease on it). Remove the `dotflow:*` keys all together or
    none: the scan stops at the first gap. Expired slots (`[state_store]
    default_retention_days`) end the scan the same way.
    """

    url = "airflow-task-state://"
    #: every call is a round trip to the supervisor: the async engine calls it from a thread
    blocking = True
    #: keys are kept inside the values, so they have no limit of their own
    max_key_bytes: int | None = None
    max_key_part_bytes: int | None = None

    def __init__(self, accessor: StateReader, limit: int | None = None) -> None:
        self._state = accessor
        #: the largest JSON value written, in bytes; 0 means no limit (as in Airflow)
        self.limit = state_store_limit() if limit is None else limit
        self._lock = threading.Lock()
        self._slots: dict[str, int] | None = None
        # key -> (text or None when deleted, version); versions keep counting across deletes
        self._values: dict[str, tuple[bytes | None, int]] = {}

    def _load(self) -> dict[str, int]:
        """Read every slot once (the caller holds the lock)."""
        if self._slots is not None:
            return self._slots
        slots: dict[str, int] = {}
        while True:
            value = self._state.get(SLOT.format(len(slots)))
            if not isinstance(value, dict) or not isinstance(value.get("key"), str):
                break
            self._values[value["key"]] = (_data_of(value), int(value.get("version", 0)))
            slots[value["key"]] = len(slots)
        self._slots = slots
        return slots

    def _write(self, key: str, data: bytes | None, version: int) -> None:
        """Set the key's slot (a new one for a new key): one state-store call."""
        slots = self._load()
        slot = slots.get(key, len(slots))
        value: dict[str, Any] = {"key": key, "version": version}
        if data is not None:
            try:  # the engine's documents are UTF-8 JSON: kept readable
                value["data"] = data.decode()
            except UnicodeDecodeError:  # other bytes (an encrypted store's): base64
                value["b64"] = base64.b64encode(data).decode()
        size = len(json.dumps(value))  # what Airflow measures against the limit
        if self.limit and size > self.limit:
            raise CheckpointError(
                f"checkpoint {key!r} is {size} bytes, more than Airflow's task state store "
                f"keeps ([state_store] max_value_storage_bytes = {self.limit}; 0 means no "
                "limit); give the operator an object store instead: store_conn_id= a 'dotflow' "
                "connection to s3:// or gs://, or store='s3://bucket/prefix'"
            )
        if not isinstance(self._state, StateAccessor):
            raise StoreError("this view of the task state store is read-only")
        self._state.set(SLOT.format(slot), value)
        slots[key] = slot
        self._values[key] = (data, version)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        with self._lock:
            self._load()
            data, version = self._values.get(key, (None, 0))
        return None if data is None else (data, str(version))

    def get(self, key: str) -> bytes | None:
        found = self.get_versioned(key)
        return None if found is None else found[0]

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        with self._lock:
            self._load()
            current, version = self._values.get(key, (None, 0))
            if if_none_match and current is not None:
                raise PreconditionFailed(key, "it already exists")
            if if_match is not None and (current is None or str(version) != if_match):
                raise PreconditionFailed(key, "it changed since it was read")
            self._write(key, bytes(data), version + 1)
            return str(version + 1)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        with self._lock:
            self._load()
            current, version = self._values.get(key, (None, 0))
            if current is None:
                return
            if if_match is not None and str(version) != if_match:
                raise PreconditionFailed(key, "it changed since it was read")
            self._write(key, None, version)

    def list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            self._load()
            keys = sorted(
                k
                for k, (data, _) in self._values.items()
                if data is not None and k.startswith(prefix)
            )
        return iter(keys)


def _data_of(value: dict[str, Any]) -> bytes | None:
    """A slot's bytes: its text, or its base64 (None for a deleted key)."""
    if isinstance(value.get("data"), str):
        return str(value["data"]).encode()
    if isinstance(value.get("b64"), str):
        return base64.b64decode(str(value["b64"]))
    return None
