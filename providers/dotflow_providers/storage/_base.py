"""The one protocol every checkpoint store implements, modelled on object storage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class CheckpointStore(Protocol):
    """Moves bytes under string keys. Stores know nothing about workflows or checkpoints.

    `put` returns the new version (an ETag, a generation, ...). With `if_none_match=True` it
    only creates; with `if_match=version` it only replaces that version. A lost condition raises
    `PreconditionFailed`. `delete` of a missing key is not an error; `list` yields the keys under
    a prefix in lexicographic order.
    """

    url: str

    def get(self, key: str) -> bytes | None: ...

    def get_versioned(self, key: str) -> tuple[bytes, str] | None: ...

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str: ...

    def delete(self, key: str, *, if_match: str | None = None) -> None: ...

    def list(self, prefix: str) -> Iterator[str]: ...
