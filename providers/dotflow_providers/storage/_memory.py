"""`MemoryStore`: the default store, a dict guarded by a lock."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

from .._errors import PreconditionFailed


class MemoryStore:
    """Keeps checkpoints in this process only: fast, and gone when the process ends."""

    url = "memory://"
    blocking = False  # no I/O: the async engine may call it from the event loop
    max_key_bytes: int | None = None
    max_key_part_bytes: int | None = None

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        # `next` on a count is one C call that never releases the GIL, so concurrent writers
        # never draw the same version, with or without the lock.
        self._versions = itertools.count(1)

    def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        return None if item is None else item[0]

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        return self._data.get(key)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        value = data if type(data) is bytes else bytes(data)
        if if_none_match and if_match is None:
            # The hot path (every step commit) takes no lock: with str keys, `setdefault` runs
            # entirely in C under the GIL, so it is atomic and the item it leaves is the winner.
            # The locked writers below cannot interleave badly with it: a CAS or a conditional
            # delete only acts on a key that exists, which `setdefault` then leaves alone.
            item = (value, str(next(self._versions)))
            if self._data.setdefault(key, item) is not item:
                raise PreconditionFailed(key, "it already exists")
            return item[1]
        with self._lock:
            current = self._data.get(key)
            if if_none_match and current is not None:
                raise PreconditionFailed(key, "it already exists")
            if if_match is not None and (current is None or current[1] != if_match):
                raise PreconditionFailed(key, "it changed since it was read")
            version = str(next(self._versions))
            self._data[key] = (value, version)
            return version

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        with self._lock:
            current = self._data.get(key)
            if if_match is not None and current is not None and current[1] != if_match:
                raise PreconditionFailed(key, "it changed since it was read")
            self._data.pop(key, None)

    def list(self, prefix: str) -> Iterator[str]:
        # `list(dict)` copies the keys in one C call, so a lock-free create cannot change the
        # dict while it is iterated (which would raise "dictionary changed size").
        return iter(sorted(k for k in list(self._data) if k.startswith(prefix)))

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._data)} keys)"
