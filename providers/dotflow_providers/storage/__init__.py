"""Checkpoint stores: one protocol, one module per backend, `store_from_url` to pick one."""

from __future__ import annotations

import importlib
import os
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, PreconditionFailed, StoreError, UnknownStoreURL
from ._base import CheckpointStore
from ._file import FileStore
from ._memory import MemoryStore

if TYPE_CHECKING:
    from ._encrypted import EncryptedStore
    from ._gcs import GCSStore
    from ._s3 import S3Store

__all__ = [
    "CheckpointStore",
    "EncryptedStore",
    "FileStore",
    "GCSStore",
    "MemoryStore",
    "S3Store",
    "PreconditionFailed",
    "StoreError",
    "public_url",
    "store_from_url",
]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")

#: the query parameters each scheme takes; anything else (credentials above all) is refused
_PARAMETERS: dict[str, tuple[str, ...]] = {
    "memory": (),
    "file": ("durable",),
    "s3": ("endpoint_url", "region"),
    "gs": ("endpoint_url", "project"),
}
#: query parameters every scheme takes: they wrap the store, they do not configure it
_COMMON = ("encryption_keys_env",)


def _shown(url: object) -> str:
    """`url` as errors may quote it: scheme, bucket or host, and path; never the query
    string, the fragment or the userinfo, where credentials end up."""
    if not isinstance(url, str):
        return f"a {type(url).__name__}"
    if "://" not in url:
        return repr(url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2])
    return repr(_bare(urllib.parse.urlsplit(url)))


def _bare(parts: urllib.parse.SplitResult) -> str:
    """Scheme, host (and port) and path: a URL without its userinfo, query and fragment."""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def public_url(url: str) -> str:
    """`url` as logs, XComs and pages may show it, and a reader may open it again: scheme,
    host and path, and the query parameters its scheme takes (an endpoint, a region, the name
    of the variable holding encryption keys: none of them a secret); never the userinfo, the
    fragment, another parameter, or a value holding userinfo."""
    parts = urllib.parse.urlsplit(url)
    base = _bare(parts) if parts.scheme else parts.path
    known = _PARAMETERS.get(parts.scheme, ()) + _COMMON
    kept = [
        (name, value)
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if name in known and "@" not in value
    ]
    return f"{base}?{urllib.parse.urlencode(kept)}" if kept else base


def _options(url: urllib.parse.SplitResult, shown: str) -> dict[str, str]:
    known = _PARAMETERS[url.scheme]
    options: dict[str, str] = {}
    # Blank values are kept so that `?durable=` is refused rather than silently dropped.
    for name, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
        if name not in known + _COMMON:
            # The parameter is not quoted back: it may be a secret pasted in the wrong place.
            raise ConfigurationError(
                f"{shown} has a query parameter {url.scheme}:// URLs do not take; they take "
                + (", ".join(known) if known else "none")
                + f"; every store URL also takes {', '.join(_COMMON)}; pass credentials, keys "
                "and other settings as keyword arguments"
            )
        if name in options:
            raise ConfigurationError(f"{shown} gives {name!r} twice; give it once")
        options[name] = value
    return options


def _memory(url: urllib.parse.SplitResult, options: dict[str, str], **_: Any) -> CheckpointStore:
    return MemoryStore()


def _durable(options: dict[str, str], shown: str) -> bool:
    value = options.get("durable", "true").lower()
    if value not in _TRUE + _FALSE:
        raise ConfigurationError(
            f"{shown}: durable must be one of {', '.join(_TRUE + _FALSE)} (true, the default, "
            "fsyncs every write; false skips fsync)"
        )
    return value in _TRUE


def _file(url: urllib.parse.SplitResult, options: dict[str, str], **_: Any) -> CheckpointStore:
    shown = _shown(url.geturl())
    # file:///tmp/a%20b is the folder "a b"; escaped bytes that are not UTF-8 are the file
    # system's own (a name made on another locale), as `FileStore.url` writes them
    path = os.fsdecode(urllib.parse.unquote_to_bytes(url.netloc + url.path))
    if not path:
        raise UnknownStoreURL(
            "file:// URLs need a folder: file:///absolute/path or file://relative"
        )
    return FileStore(path, durable=_durable(options, shown))


# The object stores import their SDKs only when used, so the core needs neither installed.
_OPTIONAL = {
    "S3Store": ("._s3", "s3", "boto3"),
    "GCSStore": ("._gcs", "gcs", "google-cloud-storage"),
    "EncryptedStore": ("._encrypted", "encryption", "cryptography"),
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
        raise UnknownStoreURL(
            f"{_shown(url.geturl())} names no bucket: use {url.scheme}://bucket/prefix"
        )
    if ":" in url.netloc:
        raise ConfigurationError(
            f"{_shown(url.geturl())}: a bucket name has no ':'; give a server as "
            "?endpoint_url=http://host:port"
        )
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

    `memory://`; `file:///path` (percent-encoded; `?durable=false` skips fsync);
    `s3://bucket/prefix` (`?endpoint_url=...&region=...` for S3-compatible servers);
    `gs://bucket/prefix` (`?endpoint_url=...&project=...`). Any of them takes
    `?encryption_keys_env=VARIABLE`: the store is wrapped in an `EncryptedStore` whose keys are
    read from that environment variable (`id1:base64key1,id2:base64key2`, newest last); the
    keys themselves never go in a URL. Other query parameters are refused.
    Keyword arguments go to the store (credentials, `client`, `endpoint_url`, ...): secrets
    belong there, never in the URL, and errors never quote a URL's query or userinfo.
    """
    shown = _shown(url)
    if not isinstance(url, str) or "://" not in url:
        raise UnknownStoreURL(
            f"{shown} is not a store URL; use memory://, file:///path, s3://bucket/prefix "
            "or gs://bucket/prefix"
        )
    parts = urllib.parse.urlsplit(url)
    factory = _SCHEMES.get(parts.scheme)
    if factory is None:
        raise UnknownStoreURL(
            f"unknown store scheme {parts.scheme!r} in {shown}; known: "
            + ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        )
    if "@" in parts.netloc:
        raise ConfigurationError(
            f"{shown} carries credentials before '@'; pass them as keyword arguments "
            "(aws_access_key_id=..., credentials=...) or use the SDK's usual chain"
        )
    if parts.fragment:
        raise ConfigurationError(f"{shown} has a '#' fragment; percent-encode '#' as %23")
    options = _options(parts, shown)
    variable = options.pop("encryption_keys_env", None)
    if variable is not None and not variable.strip():
        raise ConfigurationError(
            f"{shown}: encryption_keys_env names no environment variable; give the name of "
            "one holding id1:base64key1,id2:base64key2"
        )
    if variable is None:
        return factory(parts, options, **kwargs)
    # The keys are read first, so a missing variable leaves no folder or client behind.
    encrypted_store = __getattr__("EncryptedStore")
    keys = encrypted_store.keys_from_env(variable)
    encrypted: CheckpointStore = encrypted_store(factory(parts, options, **kwargs), keys)
    return encrypted
