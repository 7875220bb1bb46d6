"""The checkpoint format, defined once: key layout, documents, and how outputs round-trip.

A workflow's checkpoints live under its id:

    <workflow_id>/manifest.json            step names and input fingerprint (written once)
    <workflow_id>/steps/00003-load.json    one document per completed step
    <workflow_id>/lock                     the lease of the runner that owns the workflow
    <workflow_id>/cancel                   a cancel request from another process
    <workflow_id>/failures/00003.json      the last final failure of a step (and its rollback)
    <workflow_id>/progress/00003.json      a running step's own progress record

Outputs are serialised by pydantic. Next to the JSON value a document keeps a small description
of the Python types inside it (tuples, sets, datetimes, models, dataclasses, enums), so the value
comes back as it went in; pydantic does every conversion, the description only names types.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import functools
import hashlib
import importlib
import json
import pathlib
import re
import uuid
from typing import Any

import pydantic
import pydantic_core

from ._errors import (
    CheckpointError,
    CorruptCheckpoint,
    InvalidWorkflowId,
    UnsupportedCheckpointFormat,
)

FORMAT_VERSION = 1

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@=,~-]*(/[A-Za-z0-9._:+@=,~-]+)*$")


def check_workflow_id(workflow_id: str) -> str:
    """Return `workflow_id` if it is safe as a key prefix on every store."""
    if (
        not isinstance(workflow_id, str)
        or not 0 < len(workflow_id) <= 400
        or not _ID_PATTERN.match(workflow_id)
        or any(part in (".", "..") for part in workflow_id.split("/"))
    ):
        raise InvalidWorkflowId(
            f"workflow id {workflow_id!r} is not usable: use 1 to 400 characters of letters, "
            "digits and ._:+@=,~- (slashes between non-empty parts), starting with a letter "
            "or digit"
        )
    return workflow_id


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one workflow's checkpoint documents live in a store."""

    workflow_id: str

    @property
    def prefix(self) -> str:
        return f"{self.workflow_id}/"

    @property
    def manifest(self) -> str:
        return f"{self.workflow_id}/manifest.json"

    @property
    def steps(self) -> str:
        return f"{self.workflow_id}/steps/"

    @property
    def lock(self) -> str:
        return f"{self.workflow_id}/lock"

    @property
    def cancel(self) -> str:
        return f"{self.workflow_id}/cancel"

    def step(self, index: int, name: str) -> str:
        safe = name[:80] if _KEY_CHARS.issuperset(name) else re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        return f"{self.workflow_id}/steps/{index:05d}-{safe[:80]}.json"

    def progress(self, index: int) -> str:
        return f"{self.workflow_id}/progress/{index:05d}.json"

    @property
    def failures(self) -> str:
        return f"{self.workflow_id}/failures/"

    def failure(self, index: int) -> str:
        return f"{self.workflow_id}/failures/{index:05d}.json"


# --- type descriptions -------------------------------------------------------------------------

_NATIVE = frozenset({str, int, float, bool, type(None)})
_STDLIB_TYPES = frozenset(
    {
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        decimal.Decimal,
        uuid.UUID,
        bytes,
        pathlib.Path,
        pathlib.PurePath,
        pathlib.PosixPath,
        pathlib.PurePosixPath,
        pathlib.WindowsPath,
        pathlib.PureWindowsPath,
    }
)
_CONTAINERS: dict[type, str] = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}


def _restorable(cls: type) -> bool:
    return (
        cls in _STDLIB_TYPES
        or (isinstance(cls, type) and issubclass(cls, (pydantic.BaseModel, enum.Enum)))
        or dataclasses.is_dataclass(cls)
        or (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields"))
    )


def describe(value: Any) -> Any:
    """The types inside `value` that JSON would lose, or None if it is plain JSON data."""
    cls = type(value)
    if cls in _NATIVE:
        return None
    kind = _CONTAINERS.get(cls)
    if kind is not None:
        items = [describe(item) for item in value]
        if kind == "list" and not any(items):
            return None
        return {kind: items}
    if cls is dict:
        pairs = [[_describe_key(k), describe(v)] for k, v in value.items()]
        if all(kd is None and vd is None for kd, vd in pairs):
            return None
        return {"dict": pairs}
    if not _restorable(cls):
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} cannot be restored from a checkpoint; return "
            "JSON data, a pydantic model, a dataclass, or a standard type (datetime, tuple, set)"
        )
    return {"type": f"{cls.__module__}:{cls.__qualname__}"}


# JSON object keys are strings; these bring scalar keys back to their own type.
_SCALAR_KEYS: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": lambda s: s == "true",
    "NoneType": lambda s: None,
}


def _describe_key(key: Any) -> Any:
    cls = type(key)
    if cls is str:
        return None
    if cls.__name__ in _SCALAR_KEYS and cls in _NATIVE:
        return {"key": cls.__name__}
    return describe(key)


@functools.lru_cache(maxsize=256)
def _adapter(path: str) -> pydantic.TypeAdapter[Any]:
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type) or not _restorable(obj):
        raise TypeError(f"{path} is not a type a checkpoint may restore")
    return pydantic.TypeAdapter(obj)


def restore(desc: Any, value: Any) -> Any:
    """Rebuild a value from its JSON form and its `describe` result."""
    if desc is None:
        return value
    if "key" in desc:
        return _SCALAR_KEYS[desc["key"]](value)
    if "type" in desc:
        if desc["type"] == "builtins:bytes":
            return base64.b64decode(value)
        return _adapter(desc["type"]).validate_python(value)
    if "dict" in desc:
        return {
            restore(kd, k): restore(vd, v)
            for (kd, vd), (k, v) in zip(desc["dict"], value.items(), strict=True)
        }
    kind, items = next(iter(desc.items()))
    restored = [restore(d, v) for d, v in zip(items, value, strict=True)]
    return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](restored)


def encode_output(step: str, output: Any) -> tuple[Any, Any]:
    """The JSON-able form of a step's output and its type description."""
    try:
        desc = describe(output)
        if desc is None:
            return output, None
        return pydantic_core.to_jsonable_python(output, bytes_mode="base64"), desc
    except (TypeError, pydantic_core.PydanticSerializationError, RecursionError) as exc:
        raise CheckpointError(
            f"step {step!r} returned a {type(output).__module__}.{type(output).__qualname__} "
            f"that cannot be checkpointed: {exc}"
        ) from exc


def dump(document: dict[str, Any], step: str = "") -> bytes:
    try:
        return pydantic_core.to_json(document, bytes_mode="base64")
    except (pydantic_core.PydanticSerializationError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"step {step!r}: output cannot be written as JSON: {exc}") from exc


# --- documents ---------------------------------------------------------------------------------


class StepCheckpoint(pydantic.BaseModel):
    """What a store holds for one completed step."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    format: int
    workflow_id: str
    index: int
    name: str
    status: str
    attempts: int
    started_at: float
    finished_at: float
    output: Any = None
    output_type: Any = None


class Manifest(pydantic.BaseModel):
    """What a store holds once per workflow: its step list and input fingerprint."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    format: int
    workflow_id: str
    steps: list[str]
    fingerprint: str
    created_at: float


def step_document(
    workflow_id: str,
    index: int,
    name: str,
    attempts: int,
    started_at: float,
    finished_at: float,
    output: Any,
) -> bytes:
    """The bytes committed for a completed step; the hot path, so no model is built."""
    if type(output) in _NATIVE:
        value, desc = output, None
    else:
        value, desc = encode_output(name, output)
    return dump(
        {
            "format": FORMAT_VERSION,
            "workflow_id": workflow_id,
            "index": index,
            "name": name,
            "status": "COMPLETED",
            "attempts": attempts,
            "started_at": started_at,
            "finished_at": finished_at,
            "output": value,
            "output_type": desc,
        },
        name,
    )


def _load_json(key: str, data: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptCheckpoint(key, f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise CorruptCheckpoint(key, "not a JSON object")
    fmt = raw.get("format")
    if isinstance(fmt, int) and fmt > FORMAT_VERSION:
        raise UnsupportedCheckpointFormat(
            f"checkpoint {key!r} has format {fmt}, newer than this dotflow-providers "
            f"understands ({FORMAT_VERSION}); upgrade dotflow-providers to resume it"
        )
    return raw


def load_step(key: str, data: bytes) -> tuple[StepCheckpoint, Any]:
    """Parse a step document and restore its output; a bad document is `CorruptCheckpoint`."""
    raw = _load_json(key, data)
    try:
        doc = StepCheckpoint.model_validate(raw)
        return doc, restore(doc.output_type, doc.output)
    except (pydantic.ValidationError, TypeError, ValueError, KeyError, ImportError) as exc:
        raise CorruptCheckpoint(key, f"not a step checkpoint: {exc}") from exc
    except AttributeError as exc:
        raise CorruptCheckpoint(key, f"output type is gone: {exc}") from exc


def load_manifest(key: str, data: bytes) -> Manifest:
    raw = _load_json(key, data)
    try:
        return Manifest.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise CorruptCheckpoint(key, f"not a workflow manifest: {exc}") from exc


def manifest_document(workflow_id: str, steps: list[str], fingerprint: str, now: float) -> bytes:
    return dump(
        {
            "format": FORMAT_VERSION,
            "workflow_id": workflow_id,
            "steps": steps,
            "fingerprint": fingerprint,
            "created_at": now,
        }
    )


def fingerprint(values: list[Any]) -> str:
    """A stable hash of the initial contexts, independent of dict order and process."""
    try:
        plain = pydantic_core.to_jsonable_python(values, bytes_mode="base64")
    except pydantic_core.PydanticSerializationError as exc:
        raise CheckpointError(f"an initial context cannot be fingerprinted: {exc}") from exc
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()
