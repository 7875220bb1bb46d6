"""The checkpoint format, defined once: where each document lives, and how it is written and read.

Every workflow owns one namespace, `<workflow_id>/.dotflow/`; ids may contain `/` but no id
segment may start with `.`, so no workflow's keys can be a prefix of, or collide with, another's:

    <id>/.dotflow/manifest.json          created_at, step names, rerun salts (CAS-updated)
    <id>/.dotflow/steps/<step>.json      one document per completed step (what it is valid for)
    <id>/.dotflow/steps/.batch/<seq>.json  a group commit: several step documents, create-only
    <id>/.dotflow/items/<step>/<seq>.json  a batch of a map step's item outputs, create-only
    <id>/.dotflow/failures/<step>.json   the last final failure of a step (and its rollback)
    <id>/.dotflow/progress/<step>.json   a running step's own progress record
    <id>/.dotflow/lock                   the lease of the runner that owns the workflow
    <id>/.dotflow/cancel                 a cancel request (for one run, or blocking all starts)
    <id>/.dotflow/request.json           what the next start should do (rerun from / start over)

A step document is one JSON object whose last member is the output, encoded by `_codec`; the
bytes of that member are checksummed, so a reader verifies them before decoding anything, and a
read-only view parses the header without touching the output at all.

Format 1 (dotflow-providers 0.1.0) is read only, to migrate an existing store on first start.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import hashlib
import json
import pathlib
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import pydantic

from . import _codec
from ._errors import (
    CheckpointError,
    CorruptCheckpoint,
    InvalidWorkflowId,
    UnsupportedCheckpointFormat,
)

if TYPE_CHECKING:
    from ._identity import StepIdentity

FORMAT_VERSION = 2
NAMESPACE = ".dotflow"

_FIRST = r"[A-Za-z0-9][A-Za-z0-9._:+@=,~-]*"
_SEGMENT = r"[A-Za-z0-9_:+@=,~-][A-Za-z0-9._:+@=,~-]*"  # never '.', so never '..' or '.dotflow'
_ID_PATTERN = re.compile(rf"{_FIRST}(/{_SEGMENT})*")  # fullmatch: `$` takes a final "\n"
_MAX_ID = 400
_SIMPLE = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,79}"
_SIMPLE_NAME = re.compile(_SIMPLE)  # fullmatch, as above
_SIMPLE_NAMES = re.compile(rf"(?:{_SIMPLE}\n)*{_SIMPLE}")  # fullmatch: simple names, one a line


def check_workflow_id(workflow_id: object) -> str:
    """Return `workflow_id` if it is usable as a checkpoint namespace, else `InvalidWorkflowId`.

    Every entry point that takes an id (Workflow, reset, cancel, inspect, the CLI, the adapters)
    goes through here, by building a `Layout`.
    """
    if (
        not isinstance(workflow_id, str)
        or not 0 < len(workflow_id) <= _MAX_ID
        or not _ID_PATTERN.fullmatch(workflow_id)
    ):
        raise InvalidWorkflowId(
            f"workflow id {workflow_id!r} is not usable: use 1 to {_MAX_ID} characters of "
            "letters, digits and ._:+@=,~- in parts separated by single slashes, starting with "
            "a letter or digit; no part may start with '.'"
        )
    return workflow_id


def step_key_name(name: str) -> str:
    """The file-safe form of a step name: itself when simple, else a sanitised, hashed form.

    Hashed forms start with `~`, which simple names never do, so two names never share a key.
    """
    if _SIMPLE_NAME.fullmatch(name):
        return name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40]
    return f"~{safe}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


class Layout:
    """Where one workflow's documents live in a store; building one validates the id."""

    __slots__ = ("base", "workflow_id")

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = check_workflow_id(workflow_id)
        self.base = f"{workflow_id}/{NAMESPACE}/"

    @property
    def manifest(self) -> str:
        return f"{self.base}manifest.json"

    @property
    def steps(self) -> str:
        return f"{self.base}steps/"

    @property
    def failures(self) -> str:
        return f"{self.base}failures/"

    @property
    def lock(self) -> str:
        return f"{self.base}lock"

    @property
    def cancel(self) -> str:
        return f"{self.base}cancel"

    @property
    def request(self) -> str:
        return f"{self.base}request.json"

    def step(self, name: str) -> str:
        return f"{self.base}steps/{step_key_name(name)}.json"

    def steps_of(self, names: Sequence[str]) -> list[str]:
        """`[self.step(name) for name in names]`, cheaper when every name is simple (the usual
        case): one match over the names joined by newlines, and the keys made by C string
        operations. No simple name holds a newline, so the joined text must hold exactly the
        `len(names) - 1` the join put there (else a name such as "a\nb" would pass as two)."""
        steps = f"{self.base}steps/"
        joined = "\n".join(names)
        if joined.count("\n") == len(names) - 1 and _SIMPLE_NAMES.fullmatch(joined):
            between = ".json\n" + steps
            return (steps + joined.replace("\n", between) + ".json").split("\n")
        simple = _SIMPLE_NAME.fullmatch
        return [
            f"{steps}{name}.json" if simple(name) else f"{steps}{step_key_name(name)}.json"
            for name in names
        ]

    @property
    def batches(self) -> str:
        # under `steps/`, so the one LIST a start makes finds single documents and batches
        return f"{self.base}steps/.batch/"

    def batch(self, seq: int) -> str:
        return f"{self.base}steps/.batch/{seq:012d}.json"

    @property
    def all_items(self) -> str:
        return f"{self.base}items/"

    def items(self, name: str) -> str:
        return f"{self.all_items}{step_key_name(name)}/"

    def item_batch(self, name: str, seq: int) -> str:
        return f"{self.items(name)}{seq:012d}.json"

    def failure(self, name: str) -> str:
        return f"{self.base}failures/{step_key_name(name)}.json"

    def progress(self, name: str) -> str:
        return f"{self.base}progress/{step_key_name(name)}.json"

    # every kind of key, for checking them against a store's limits (a sequence number of 0
    # stands for all: they have one length)
    def workflow_keys(self) -> tuple[str, ...]:
        """The keys of the workflow's own documents."""
        return (self.manifest, self.lock, self.cancel, self.request, self.batch(0))

    def step_keys(self, name: str) -> tuple[str, ...]:
        """The keys of step `name`'s documents."""
        return (self.step(name), self.failure(name), self.progress(name), self.item_batch(name, 0))

    # format 1 (read only): the keys 0.1.0 wrote
    @property
    def v1_manifest(self) -> str:
        return f"{self.workflow_id}/manifest.json"

    @property
    def v1_steps(self) -> str:
        return f"{self.workflow_id}/steps/"


def workflow_id_of(key: str) -> str | None:
    """The workflow id a manifest key belongs to (for listing a store), else None."""
    suffix = f"/{NAMESPACE}/manifest.json"
    return key[: -len(suffix)] if key.endswith(suffix) else None


# --- encoding helpers ---------------------------------------------------------------------------


def encode_value(value: Any, what: str) -> bytes:
    """A value as checkpoint bytes; `CheckpointError` (naming `what`) if it cannot round-trip."""
    if value is None:  # most steps return nothing: their commit is on the hot path
        return b"null"
    try:
        return _codec.encode(value, name="value")
    except _codec.UnencodableValue as exc:
        raise CheckpointError(f"{what} cannot be checkpointed: {exc}") from exc


def decode_value(key: str, data: bytes | memoryview) -> Any:
    try:
        return _codec.decode(data)
    except _codec.UndecodableValue as exc:
        raise CorruptCheckpoint(key, f"its value cannot be restored: {exc}") from exc


def checksum(payload: bytes | memoryview) -> str:
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


#: the checksum of `null`, the output of most steps
NULL_CHECKSUM = checksum(b"null")


def _load_object(key: str, data: bytes | memoryview) -> dict[str, Any]:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
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


def _field(key: str, raw: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorruptCheckpoint(key, f"field {name!r} is missing or not a {kind}")
    return value


# --- attempts -----------------------------------------------------------------------------------

#: One attempt of a step: (started_at, finished_at, error type or None, error message or None).
Attempt = tuple[float, float, str | None, str | None]


def _history(key: str, raw: Any) -> list[Attempt]:
    if not isinstance(raw, list):
        raise CorruptCheckpoint(key, "its attempt history is not a list")
    try:
        return [(float(a[0]), float(a[1]), a[2], a[3]) for a in raw]
    except (TypeError, ValueError, IndexError) as exc:
        raise CorruptCheckpoint(key, f"bad attempt history: {exc}") from exc


# --- step documents -----------------------------------------------------------------------------

_OUTPUT = b',"output":'


@dataclasses.dataclass(frozen=True, slots=True)
class StepDocument:
    """What a store holds for one completed step (its output decoded only on demand)."""

    key: str
    workflow_id: str
    name: str
    index: int
    version: str
    input: str
    salt: str
    upstream: str
    attempts: int
    started_at: float
    finished_at: float
    history: list[Attempt]
    checksum: str
    payload: bytes

    def output(self) -> Any:
        """The step's output, restored exactly (after the checksum was verified)."""
        return decode_value(self.key, self.payload)


def step_prefix(workflow_id: str) -> bytes:
    """The members every step document of a workflow starts with (built once per run)."""
    fixed = {"format": FORMAT_VERSION, "kind": "step", "status": "COMPLETED"}
    return orjson.dumps({**fixed, "workflow_id": workflow_id})[:-1]


def step_document(
    prefix: bytes,
    identity: StepIdentity,
    upstream: str,
    attempts: int,
    started_at: float,
    finished_at: float,
    history: Sequence[Attempt],
    payload: bytes,
    digest: str,
) -> bytes:
    """The bytes committed for a completed step: its workflow's `step_prefix`, what the
    checkpoint is valid for (the step's `identity` and the `upstream` token it received), what
    the run recorded, then the encoded output, whose checksum `digest` is. `history` is left
    out when the step succeeded at its first attempt (a reader derives it)."""
    position, name, version, input_, salt, _ = identity
    members = {
        "name": name,
        "index": position,
        "version": version,
        "input": input_,
        "salt": salt,
        "upstream": upstream,
        "attempts": attempts,
        "started_at": started_at,
        "finished_at": finished_at,
        "checksum": digest,
    }
    if history:
        members["history"] = history
    return b"".join((prefix, b",", orjson.dumps(members)[1:-1], _OUTPUT, payload, b"}"))


_STEP_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    *((name, str) for name in ("workflow_id", "name", "version", "input", "salt", "upstream")),
    ("index", int),
    ("attempts", int),
    ("started_at", (int, float)),
    ("finished_at", (int, float)),
)


def load_step(key: str, data: bytes) -> StepDocument:
    """Parse a step document and verify its checksum; the output stays encoded until asked for.

    Anything that is not exactly what `step_document` writes is `CorruptCheckpoint`.
    """
    at = data.find(_OUTPUT)
    if at < 0 or not data.endswith(b"}"):
        if data[:1] == b"{" and b'"format":1' in data.replace(b" ", b""):
            raise CorruptCheckpoint(key, "a format-1 step document outside a format-1 layout")
        _load_object(key, data)  # the precise reason (not JSON, newer format, ...)
        raise CorruptCheckpoint(key, "not a step checkpoint")
    raw = _load_object(key, data[:at] + b"}")
    payload = data[at + len(_OUTPUT) : -1]
    if raw.get("kind") != "step":
        raise CorruptCheckpoint(key, "not a step checkpoint")
    stored = _field(key, raw, "checksum", str)
    if checksum(payload) != stored:
        raise CorruptCheckpoint(
            key, "its output does not match its checksum (tampered with or damaged)"
        )
    get: Callable[[str], Any] = raw.get  # each value's type is checked below
    text = (get("workflow_id"), get("name"), get("version"), get("input"), get("salt"))
    counts, times = (get("index"), get("attempts")), (get("started_at"), get("finished_at"))
    upstream = get("upstream")
    if not (
        set(map(type, text)) == {str}
        and type(upstream) is str
        and set(map(type, counts)) == {int}
        and set(map(type, times)) <= {float, int}
    ):  # the precise reason, off the common path
        for field, kind in _STEP_FIELDS:
            _field(key, raw, field, kind)
    workflow_id, name, version, input_, salt = text
    started, finished = float(times[0]), float(times[1])
    return StepDocument(
        key=key,
        workflow_id=workflow_id,
        name=name,
        index=counts[0],
        version=version,
        input=input_,
        salt=salt,
        upstream=upstream,
        attempts=counts[1],
        started_at=started,
        finished_at=finished,
        # left out when the first attempt succeeded
        history=(
            _history(key, raw["history"]) if "history" in raw else [(started, finished, None, None)]
        ),
        checksum=stored,
        payload=payload,
    )


# --- batches (group commit) ---------------------------------------------------------------------
#
# A batch is one create-only object holding several entries, each exactly the bytes of a
# single document (a step document, or a discard entry that hides earlier entries of a step).
# Its header lists the entries' sizes, so they are sliced out without parsing any output, and
# a checksum over all entries, so a damaged batch is refused as a whole: a reader sees every
# entry of a batch or none.

_ENTRIES = b',"entries":['


def batch_seq(layout: Layout, key: str) -> int | None:
    """The sequence number of a batch key, else None (a single step document)."""
    if not key.startswith(layout.batches) or not key.endswith(".json"):
        return None
    digits = key[len(layout.batches) : -5]
    return int(digits) if digits.isdigit() else None


def _framed(header: dict[str, Any], entries: Sequence[bytes], member: bytes) -> bytes:
    body = b",".join(entries)
    header["sizes"] = [len(e) for e in entries]
    header["checksum"] = checksum(body)
    head = orjson.dumps(header)
    return b"".join((head[:-1], member, body, b"]}"))


def _unframe(key: str, data: bytes, member: bytes, kind: str) -> tuple[dict[str, Any], list[bytes]]:
    at = data.find(member)
    if at < 0 or not data.endswith(b"]}"):
        _load_object(key, data)
        raise CorruptCheckpoint(key, f"not a {kind}")
    raw = _load_object(key, data[:at] + b"}")
    if raw.get("kind") != kind:
        raise CorruptCheckpoint(key, f"not a {kind}")
    body = data[at + len(member) : -2]
    sizes = raw.get("sizes")
    if not isinstance(sizes, list) or raw.get("checksum") != checksum(body):
        raise CorruptCheckpoint(key, f"this {kind} does not match its checksum (damaged)")
    entries, pos = [], 0
    for size in sizes:
        if not isinstance(size, int) or size < 0 or pos + size > len(body):
            raise CorruptCheckpoint(key, f"bad entry sizes in this {kind}")
        entries.append(body[pos : pos + size])
        pos += size + 1  # the comma between entries
    if pos != len(body) + 1 and (sizes or body):
        raise CorruptCheckpoint(key, f"bad entry sizes in this {kind}")
    return raw, entries


def batch_document(
    workflow_id: str, seq: int, committed_at: float, entries: Sequence[bytes]
) -> bytes:
    """The bytes of one group commit: `entries` are step documents or discard entries."""
    header = {
        "format": FORMAT_VERSION,
        "kind": "batch",
        "workflow_id": workflow_id,
        "seq": seq,
        "committed_at": committed_at,
    }
    return _framed(header, entries, _ENTRIES)


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """A group commit as read back: its step documents, and the steps it discarded."""

    key: str
    workflow_id: str
    seq: int
    committed_at: float
    steps: list[StepDocument]
    #: names whose earlier documents (single or in earlier batches) are forgotten
    discarded: list[str]


def discard_entry(name: str) -> bytes:
    """A batch entry saying that step `name` was compensated: earlier documents do not count."""
    return orjson.dumps({"format": FORMAT_VERSION, "kind": "discard", "name": name})


def load_batch(key: str, data: bytes) -> Batch:
    """Parse a batch and verify it; every step entry is checked like a single document."""
    raw, entries = _unframe(key, data, _ENTRIES, "batch")
    steps: list[StepDocument] = []
    discarded: list[str] = []
    for number, entry in enumerate(entries):
        where = f"{key}#{number}"
        if entry.startswith(b'{"format":2,"kind":"discard"'):
            name = _load_object(where, entry).get("name")
            if not isinstance(name, str):
                raise CorruptCheckpoint(where, "a discard entry without a step name")
            discarded.append(name)
        else:
            steps.append(load_step(where, entry))
    return Batch(
        key=key,
        workflow_id=_field(key, raw, "workflow_id", str),
        seq=_field(key, raw, "seq", int),
        committed_at=float(_field(key, raw, "committed_at", (int, float))),
        steps=steps,
        discarded=discarded,
    )


# --- map items ----------------------------------------------------------------------------------
#
# A map step commits its items' outputs in batches, one create-only object each. Rows say which
# item an output belongs to: its index and the digest of its value, under the map's `base` (its
# name, code version, input and salt), so a resume re-runs exactly the items that are not there.

_OUTPUTS = b',"outputs":['

#: One committed item: (index, item digest, attempts, started_at, finished_at, history or None)
ItemRow = tuple[int, str, int, float, float, list[Attempt] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class ItemFailure:
    """An item that failed for good (kept for inspection; the item runs again on resume)."""

    index: int
    digest: str
    attempts: int
    error: str | None
    error_type: str | None
    history: list[Attempt]


@dataclasses.dataclass(frozen=True, slots=True)
class ItemBatch:
    """One committed batch of a map step's items."""

    key: str
    seq: int
    base: str
    committed_at: float
    rows: list[ItemRow]
    failures: list[ItemFailure]
    #: the encoded output of each row, in row order
    outputs: list[bytes]


def item_batch_document(
    workflow_id: str,
    step: str,
    seq: int,
    base: str,
    committed_at: float,
    rows: Sequence[ItemRow],
    outputs: Sequence[bytes],
    failures: Sequence[ItemFailure] = (),
) -> bytes:
    header = {
        "format": FORMAT_VERSION,
        "kind": "items",
        "workflow_id": workflow_id,
        "step": step,
        "seq": seq,
        "base": base,
        "committed_at": committed_at,
        "rows": rows,
        "failures": [dataclasses.asdict(f) for f in failures],
    }
    return _framed(header, outputs, _OUTPUTS)


def load_item_batch(key: str, data: bytes) -> ItemBatch:
    raw, outputs = _unframe(key, data, _OUTPUTS, "items")
    rows_raw, failures_raw = raw.get("rows"), raw.get("failures")
    if not isinstance(rows_raw, list) or len(rows_raw) != len(outputs):
        raise CorruptCheckpoint(key, "its rows do not match its outputs")
    try:
        rows: list[ItemRow] = [
            (int(r[0]), str(r[1]), int(r[2]), float(r[3]), float(r[4]), r[5]) for r in rows_raw
        ]
        failures = [
            ItemFailure(
                index=int(f["index"]),
                digest=str(f["digest"]),
                attempts=int(f["attempts"]),
                error=f.get("error"),
                error_type=f.get("error_type"),
                history=_history(key, f.get("history", [])),
            )
            for f in (failures_raw or [])
        ]
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise CorruptCheckpoint(key, f"bad item rows: {exc}") from exc
    return ItemBatch(
        key=key,
        seq=_field(key, raw, "seq", int),
        base=_field(key, raw, "base", str),
        committed_at=float(_field(key, raw, "committed_at", (int, float))),
        rows=rows,
        failures=failures,
        outputs=outputs,
    )


# --- manifest -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """What a store holds once per workflow: when it began, its steps, and its rerun salts."""

    workflow_id: str
    created_at: float
    updated_at: float
    steps: tuple[str, ...]
    #: step name -> salt; `rerun_from` gives the steps it supersedes a new salt
    salts: Mapping[str, str]


def manifest_document(manifest: Manifest) -> bytes:
    return orjson.dumps(
        {
            "format": FORMAT_VERSION,
            "kind": "manifest",
            "workflow_id": manifest.workflow_id,
            "created_at": manifest.created_at,
            "updated_at": manifest.updated_at,
            "steps": list(manifest.steps),
            "salts": dict(manifest.salts),
        }
    )


def load_manifest(key: str, data: bytes) -> Manifest:
    raw = _load_object(key, data)
    if raw.get("kind") != "manifest":
        raise CorruptCheckpoint(key, "not a workflow manifest")
    steps, salts = raw.get("steps"), raw.get("salts")
    if not (isinstance(steps, list) and set(map(type, steps)) <= {str}):
        raise CorruptCheckpoint(key, "its step list is not a list of names")
    if not (isinstance(salts, dict) and all(isinstance(s, str) for s in salts.values())):
        raise CorruptCheckpoint(key, "its salts are not a mapping of names")
    return Manifest(
        workflow_id=_field(key, raw, "workflow_id", str),
        created_at=float(_field(key, raw, "created_at", (int, float))),
        updated_at=float(_field(key, raw, "updated_at", (int, float))),
        steps=tuple(steps),
        salts=salts,
    )


# --- failure records ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FailureRecord:
    """The last final failure of a step, kept for inspection (never used to resume)."""

    name: str
    index: int
    status: str
    attempts: int
    error: str | None
    error_type: str | None
    rollback_error: str | None
    finished_at: float | None
    history: list[Attempt]


def failure_document(record: FailureRecord) -> bytes:
    return orjson.dumps({"format": FORMAT_VERSION, "kind": "failure", **dataclasses.asdict(record)})


def load_failure(key: str, data: bytes) -> FailureRecord:
    raw = _load_object(key, data)
    if raw.get("kind") != "failure":
        raise CorruptCheckpoint(key, "not a failure record")
    finished = raw.get("finished_at")
    return FailureRecord(
        name=_field(key, raw, "name", str),
        index=_field(key, raw, "index", int),
        status=_field(key, raw, "status", str),
        attempts=_field(key, raw, "attempts", int),
        error=raw.get("error") if isinstance(raw.get("error"), str) else None,
        error_type=raw.get("error_type") if isinstance(raw.get("error_type"), str) else None,
        rollback_error=(
            raw.get("rollback_error") if isinstance(raw.get("rollback_error"), str) else None
        ),
        finished_at=float(finished) if isinstance(finished, (int, float)) else None,
        history=_history(key, raw.get("history", [])),
    )


# --- progress records ---------------------------------------------------------------------------


def progress_document(name: str, value: Any, valid_for: Sequence[str]) -> bytes:
    """A step's progress record: its value, and what it is valid for (`valid_for`: the step's
    code version, input, salt and upstream token while it ran, as its checkpoint would be)."""
    payload = encode_value(value, f"the progress of step {name!r}")
    header = orjson.dumps(
        {
            "format": FORMAT_VERSION,
            "kind": "progress",
            "valid_for": list(valid_for),
            "checksum": checksum(payload),
        }
    )
    return b"".join((header[:-1], b',"value":', payload, b"}"))


def load_progress(key: str, data: bytes, valid_for: Sequence[str]) -> tuple[bool, Any]:
    """(True, the value) of a progress record saved for `valid_for`; (False, None) for one
    saved by other code, for another input or upstream output, or before a `rerun_from`."""
    at = data.find(b',"value":')
    if at < 0 or not data.endswith(b"}"):
        raise CorruptCheckpoint(key, "not a progress record")
    raw = _load_object(key, data[:at] + b"}")
    payload = data[at + len(b',"value":') : -1]
    if raw.get("kind") != "progress" or raw.get("checksum") != checksum(payload):
        raise CorruptCheckpoint(key, "not a progress record, or its checksum does not match")
    if raw.get("valid_for") != list(valid_for):  # a record of an earlier release has none
        return False, None
    return True, decode_value(key, payload)


# --- lease and cancel documents -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseDocument:
    """Who holds a workflow's lease, and until when (by the holder's clock)."""

    owner: str
    host: str
    pid: int
    epoch: int
    acquired_at: float
    expires_at: float
    ttl: float


def lease_document(lease: LeaseDocument) -> bytes:
    return orjson.dumps({"format": FORMAT_VERSION, "kind": "lease", **dataclasses.asdict(lease)})


def load_lease(key: str, data: bytes) -> LeaseDocument:
    raw = _load_object(key, data)
    try:
        return LeaseDocument(
            owner=str(raw["owner"]),
            host=str(raw["host"]),
            pid=int(raw["pid"]),
            epoch=int(raw["epoch"]),
            acquired_at=float(raw.get("acquired_at", 0.0)),
            expires_at=float(raw["expires_at"]),
            ttl=float(raw.get("ttl", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptCheckpoint(key, f"not a lease document: {exc}") from exc


@dataclasses.dataclass(frozen=True, slots=True)
class CancelRequest:
    """A request to stop the run holding lease `target`, or (`target=None`) every start."""

    target: str | None
    requested_at: float
    host: str
    pid: int


def cancel_document(request: CancelRequest) -> bytes:
    return orjson.dumps({"format": FORMAT_VERSION, "kind": "cancel", **dataclasses.asdict(request)})


def load_cancel(key: str, data: bytes) -> CancelRequest:
    raw = _load_object(key, data)
    target = raw.get("target")
    if raw.get("kind") != "cancel" or not (target is None or isinstance(target, str)):
        raise CorruptCheckpoint(key, "not a cancel request")
    return CancelRequest(
        target=target,
        requested_at=float(raw.get("requested_at", 0.0)),
        host=str(raw.get("host", "")),
        pid=int(raw.get("pid", 0)),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class NextStartRequest:
    """What the next start of a workflow should do, asked for from a UI between tries."""

    rerun_from: str | None
    start_over: bool
    requested_at: float
    requested_by: str


def request_document(request: NextStartRequest) -> bytes:
    return orjson.dumps(
        {"format": FORMAT_VERSION, "kind": "request", **dataclasses.asdict(request)}
    )


def load_request(key: str, data: bytes) -> NextStartRequest:
    raw = _load_object(key, data)
    rerun_from = raw.get("rerun_from")
    if raw.get("kind") != "request" or not (rerun_from is None or isinstance(rerun_from, str)):
        raise CorruptCheckpoint(key, "not a next-start request")
    return NextStartRequest(
        rerun_from=rerun_from,
        start_over=raw.get("start_over") is True,
        requested_at=float(raw.get("requested_at", 0.0)),
        requested_by=str(raw.get("requested_by", "")),
    )


# --- format 1 (dotflow-providers 0.1.0), read only ----------------------------------------------

_V1_STEP_KEY = re.compile(r"(?P<index>\d{5})-[^/]+\.json")  # fullmatch


@dataclasses.dataclass(frozen=True, slots=True)
class V1Step:
    index: int
    name: str
    attempts: int
    started_at: float
    finished_at: float
    output: Any


def v1_manifest(key: str, data: bytes) -> tuple[list[str], str]:
    """The step names and input fingerprint of a format-1 manifest."""
    raw = _load_object(key, data)
    steps, print_ = raw.get("steps"), raw.get("fingerprint")
    if raw.get("format") != 1 or not isinstance(steps, list) or not isinstance(print_, str):
        raise CorruptCheckpoint(key, "not a format-1 workflow manifest")
    return [str(s) for s in steps], print_


def is_v1_step_key(layout: Layout, key: str) -> bool:
    return key.startswith(layout.v1_steps) and bool(
        _V1_STEP_KEY.fullmatch(key[len(layout.v1_steps) :])
    )


def v1_fingerprint(values: list[Any]) -> str:
    """Format 1's fingerprint of the initial contexts (to tell whether they changed)."""
    import pydantic_core

    try:
        plain = pydantic_core.to_jsonable_python(values, bytes_mode="base64")
    except pydantic_core.PydanticSerializationError:
        return ""  # cannot be compared: treated as changed
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_v1_step(key: str, data: bytes) -> V1Step:
    """A format-1 step document; its output restored with format 1's type descriptions."""
    raw = _load_object(key, data)
    try:
        if raw["format"] != 1 or raw["status"] != "COMPLETED":
            raise ValueError("not a completed format-1 step")
        return V1Step(
            index=int(raw["index"]),
            name=str(raw["name"]),
            attempts=int(raw["attempts"]),
            started_at=float(raw["started_at"]),
            finished_at=float(raw["finished_at"]),
            output=_v1_restore(raw.get("output_type"), raw.get("output")),
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise CorruptCheckpoint(key, f"not a format-1 step checkpoint: {exc}") from exc


_V1_STDLIB = (
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
    pathlib.PurePath,
)


def _v1_class(path: str) -> type:
    """A type format 1 named, if it is loaded and of a kind format 1 could write."""
    try:
        cls = _codec.resolve_class(path)
    except _codec.UndecodableValue as exc:
        raise ValueError(str(exc)) from exc
    if not (
        issubclass(cls, (pydantic.BaseModel, enum.Enum, *_V1_STDLIB))
        or dataclasses.is_dataclass(cls)
        or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
    ):
        raise ValueError(f"{path} is not a type a format-1 checkpoint may restore")
    return cls


_V1_KEYS: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": lambda s: s == "true",
    "NoneType": lambda s: None,
}


def _v1_restore(desc: Any, value: Any) -> Any:
    """Format 1's type descriptions, resolved only to classes already loaded (never imported).

    Format 1 wrote bytes with pydantic's URL-safe base64 and read them back with the standard
    alphabet, which dropped characters; here they are read with the alphabet they were written in.
    """
    if desc is None:
        return value
    if "key" in desc:
        return _V1_KEYS[desc["key"]](value)
    if "type" in desc:
        path = desc["type"]
        if path == "builtins:bytes":
            return base64.urlsafe_b64decode(value)
        return pydantic.TypeAdapter(_v1_class(path)).validate_python(value)
    if "dict" in desc:
        return {
            _v1_restore(kd, k): _v1_restore(vd, v)
            for (kd, vd), (k, v) in zip(desc["dict"], value.items(), strict=True)
        }
    kind, items = next(iter(desc.items()))
    restored = [_v1_restore(d, v) for d, v in zip(items, value, strict=True)]
    containers: dict[str, Any] = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}
    return containers[kind](restored)
