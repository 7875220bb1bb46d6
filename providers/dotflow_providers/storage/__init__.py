"""Checkpoint stores: one protocol, one module per backend, `store_from_url` to pick one."""

from __future__ import annotations

import importlib
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import PreconditionFailed, StoreError, UnknownStoreURL
from ._base import CheckpointStore
from ._file import FileStore
from ._memory import MemoryStore

if TYPE_CHECKING:
    from ._gcs import GCSStore
    from ._s3 import S3Store

__all__ = [
    "CheckpointStore",
    "FileStore",
    "GCSStore",
    "MemoryStore",
    "S3Store",
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


# The object stores import their SDKs only when used, so the core needs neither installed.
_OPTIONAL = {
    "S3Store": ("._s3", "s3", "boto3"),
    "GCSStore": ("._gcs", "gcs", "google-cloud-storage"),
}


def __getattr__(name: str) -> Any:
    if name not in _OPTIONAL:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, extra, package = _OPTIONAL[name]
    try:
        return getattr(importlib.import_module(module, __name__), name)
    except ImportError as exc:
        raise ImportError(
            f"{name} needs {package}: pip install 'dotflow-providers[{extra}]' ({exc})"
        ) from exc


def _bucket(url: urllib.parse.SplitResult) -> tuple[str, str]:
    if not url.netloc:
        raise UnknownStoreURL(f"{url.geturl()!r} names no bucket: use {url.scheme}://bucket/prefix")
    return url.netloc, url.path.strip("/")


def _s3(url: urllib.parse.SplitResult, options: dict[str, str], **kwargs: Any) -> CheckpointStore:
    bucket, prefix = _bucket(url)
    if "region" in options:
        options["region_name"] = options.pop("region")
    store: CheckpointStore = __getattr__("S3Store")(bucket, prefix, **{**options, **kwargs})
    return store


def _gs(url: urllib.parse.SplitResult, options: dict[str, str], **kwargs: Any) -> CheckpointStore:
    bucket, prefix = _bucket(url)
    store: CheckpointStore = __getattr__("GCSStore")(bucket, prefix, **{**options, **kwargs})
    return store


_SCHEMES: dict[str, Callable[..., CheckpointStore]] = {
    "memory": _memory,
    "file": _file,
    "s3": _s3,
    "gs": _gs,
}


def store_from_url(url: str, **kwargs: Any) -> CheckpointStore:
    """A store for `url`.

    `memory://`; `file:///path` (`?durable=false` skips fsync); `s3://bucket/prefix`
    (`?endpoint_url=...&region=...` for S3-compatible servers); `gs://bucket/prefix`
    (`?endpoint_url=...&project=...`). Keyword arguments go to the store (credentials,
    `client`, `endpoint_url`, ...), so secrets need not be in the URL.
    """
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
