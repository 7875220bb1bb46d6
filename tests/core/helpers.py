"""Small real helpers for the core tests (no mocks: a real store that also counts)."""

from __future__ import annotations

from dotflow_providers import MemoryStore


class CountingStore(MemoryStore):
    """A MemoryStore that records every call made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def get(self, key: str) -> bytes | None:
        self.calls.append(("get", key))
        return super().get(key)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        self.calls.append(("put", key))
        return super().put(key, data, if_match=if_match, if_none_match=if_none_match)

    def list(self, prefix: str):  # type: ignore[no-untyped-def]
        self.calls.append(("list", prefix))
        return super().list(prefix)

    def count(self, op: str, part: str = "") -> int:
        return sum(1 for o, k in self.calls if o == op and part in k)
