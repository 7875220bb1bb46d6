"""The one protocol every checkpoint store implements, modelled on object storage."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class CheckpointStore(Protocol):
    """Moves bytes under string keys. Stores know nothing about workflows or checkpoints.

    `put` returns the new version (an ETag, a generation, ...). With `if_none_match=True` it
    only creates; with `if_match=version` it only replaces that version. A lost condition raises
    `PreconditionFailed`. A conditional write whose answer was lost (the server wrote it, then
    failed before replying, and the store's retry found the condition taken) counts as won when
    the key now holds exactly the bytes written: the engine's documents are unique (owner ids,
    timestamps), so equal bytes after a retry mean our own write. `delete` of a missing key is
    not an error; `list` yields the keys under a prefix in lexicographic order. Every failure is
    a `StoreError` (or its subclass `PreconditionFailed`) naming the store, the key and what to
    do.

    `url` names the store without credentials. `blocking` says whether the store does disk or
    network I/O: the async engine calls a blocking store from a worker thread, and a
    non-blocking one (in memory) directly from the event loop.

    `max_key_bytes` is the longest key the store takes and `max_key_part_bytes` the longest
    part of a key between two slashes, both in UTF-8 bytes, or None where the store has no such
    limit (for an object store, `max_key_bytes` is what its prefix leaves of the service's own
    limit). Workflows check the keys they will write against both when they are built, so an id
    too long for the store is refused before anything runs.

    Optional: `get_many_versioned(keys)`, an iterator of what `get_versioned` answers for each
    key in order, for a store that reads many keys cheaper in one pass (`FileStore` opens each
    folder once); a resume reads every step document through it when the store has one.
    """

    url: str
    blocking: bool
    max_key_bytes: int | None
    max_key_part_bytes: int | None

    def get(self, key: str) -> bytes | None: ...

    def get_versioned(self, key: str) -> tuple[bytes, str] | None: ...

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str: ...

    def delete(self, key: str, *, if_match: str | None = None) -> None: ...

    def list(self, prefix: str) -> Iterator[str]: ...


def get_many_versioned(
    store: CheckpointStore, keys: Iterable[str]
) -> Iterator[tuple[bytes, str] | None]:
    """`store.get_versioned(key)` of each key, in order: through the store's own
    `get_many_versioned` when it has one (a `FileStore` opens each folder once), which is
    optional in the protocol."""
    cls = type(store)
    if (
        hasattr(cls, "get_many_versioned")
        and "get_versioned" not in getattr(store, "__dict__", {})  # not replaced on the instance
        and issubclass(_owner(cls, "get_many_versioned"), _owner(cls, "get_versioned"))
    ):  # else a subclass changed what `get_versioned` answers: every read must go through it
        return store.get_many_versioned(keys)  # type: ignore[attr-defined,no-any-return]
    return map(store.get_versioned, keys)


def _owner(cls: type, name: str) -> type:
    """The class in `cls`'s MRO that defines the attribute `name`."""
    return next(c for c in cls.__mro__ if name in vars(c))


#: up to the last `@` before the path, as URL parsers split (a user name may hold an `@`)
_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")


def without_credentials(text: str) -> str:
    """`text` with the userinfo (`user:password@`) of every URL in it removed."""
    return _USERINFO.sub("", text)


def store_url(base: str, **parameters: str | None) -> str:
    """A store's `url`: `base` (scheme, bucket or percent-encoded path) and the parameters it
    was given that `store_from_url` takes (an endpoint without its userinfo, a region): the URL
    that opens the same store again, with no credential in it."""
    kept = {name: without_credentials(value) for name, value in parameters.items() if value}
    return f"{base}?{urllib.parse.urlencode(kept)}" if kept else base
