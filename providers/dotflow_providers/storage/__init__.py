"""Checkpoint stores: one protocol, one module per backend, `store_from_url` to pick one."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from .._errors import PreconditionFailed, StoreError, UnknownStoreURL
from ._base import CheckpointStore
from ._file import FileStore
from ._memory import MemoryStore

__all__ = [
    "CheckpointStore",
    "FileStore",
    "MemoryStore",
    "PreconditionFailed",
    "StoreError",
    "store_from_url",
]

_TRUE = {"1", "true", "yes", "on"}


def _memory(url: urllib.parse.SplitResult, options: dict[str, str], **_: Any) -> CheckpointStore:
    return MemoryStore()


def _file(url: urllib.parse.SplitResult, options: dict[str, str], **_: Any) -> CheckpointStore:
    path = url.netloc + url.path
    if not path:
        raise UnknownStoreURL(
            "file:// URLs need a folder: file:///absolute/path or file://relative"
        )
    return FileStore(path, durable=options.get("durable", "true").lower() in _TRUE)


_SCHEMES: dict[str, Callable[..., CheckpointStore]] = {"memory": _memory, "file": _file}


def store_from_url(url: str, **kwargs: Any) -> CheckpointStore:
    """A store for `url`: `memory://`, `file:///path` (`?durable=false` to skip fsync)."""
    if not isinstance(url, str) or "://" not in url:
        raise UnknownStoreURL(
            f"{url!r} is not a store URL; use memory://, file:///path, s3://bucket/prefix "
            "or gs://bucket/prefix"
        )
    parts = urllib.parse.urlsplit(url)
    factory = _SCHEMES.get(parts.scheme)
    if factory is None:
        raise UnknownStoreURL(
            f"unknown store scheme {parts.scheme!r} in {url!r}; known: "
            + ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        )
    options = dict(urllib.parse.parse_qsl(parts.query))
    return factory(parts, options, **kwargs)
