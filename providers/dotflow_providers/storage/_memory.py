"""`MemoryStore`: the default store, a dict guarded by a lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from .._errors import PreconditionFailed


class MemoryStore:
    """Keeps checkpoints in this process only: fast, and gone when the process ends."""

    url = "memory://"
    blocking = False  # no I/O: the async engine may call it from the event loop

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._version = 0

    def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        return None if item is None else item[0]

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        return self._data.get(key)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        with self._lock:
            current = self._data.get(key)
            if if_none_match and current is not None:
                raise PreconditionFailed(key, "it already exists")
            if if_match is not None and (current is None or current[1] != if_match):
                raise PreconditionFailed(key, "it changed since it was read")
            self._version += 1
            version = str(self._version)
            self._data[key] = (data if type(data) is bytes else bytes(data), version)
            return version

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        with self._lock:
            current = self._data.get(key)
            if if_match is not None and current is not None and current[1] != if_match:
                raise PreconditionFailed(key, "it changed since it was read")
            self._data.pop(key, None)

    def list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._data if k.startswith(prefix))
        return iter(keys)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._data)} keys)"
