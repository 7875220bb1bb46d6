"""The checkpoint format: where documents live, what they hold, and every way they can be bad."""

from __future__ import annotations

import datetime
import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dotflow_providers import (
    Context,
    CorruptCheckpoint,
    FileStore,
    Status,
    UnsupportedCheckpointFormat,
    Workflow,
    action,
    inspect_workflow,
)
from dotflow_providers._format import Layout, load_step
from dotflow_providers.testing import RecordingStore

from . import format1_steps

FIXTURES = Path(__file__).parent / "fixtures"


def one() -> int:
    return 1


def build(tmp_path: Path, workflow_id: str = "c") -> Workflow:
    return Workflow(workflow_id, store=FileStore(tmp_path)).add(one, name="a")


def step_file(tmp_path: Path, workflow_id: str, name: str) -> Path:
    return tmp_path / Layout(workflow_id).step(name)


def test_document_layout_and_contents(tmp_path: Path) -> None:
    def load() -> dict[str, int]:
        return {"rows": 3}

    Workflow("layout", store=FileStore(tmp_path)).add(load, name="load").start()
    raw = step_file(tmp_path, "layout", "load").read_bytes()
    doc = json.loads(raw)
    assert doc["format"] == 2
    assert doc["kind"] == "step"
    assert doc["status"] == "COMPLETED"
    assert doc["attempts"] == 1
    assert doc["output"] == {"rows": 3}
    assert doc["finished_at"] >= doc["started_at"]
    # a first attempt that succeeded leaves no history member: a reader derives it
    assert "history" not in doc
    loaded = load_step("load", raw)
    assert loaded.history == [(doc["started_at"], doc["finished_at"], None, None)]
    assert doc["upstream"] == "none"
    assert {"version", "input", "salt", "upstream", "checksum"} <= set(doc)
    manifest = json.loads((tmp_path / "layout/.dotflow/manifest.json").read_text())
    assert manifest["steps"] == ["load"]
    assert manifest["kind"] == "manifest"
    assert sorted(p.name for p in (tmp_path / "layout/.dotflow").iterdir()) == [
        "manifest.json",
        "steps",
    ]  # the lease was released


def test_the_attempt_history_is_kept_with_the_one_commit(tmp_path: Path) -> None:
    calls: list[int] = []

    @action(retry=3)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    store = RecordingStore()
    from dotflow_providers.testing import fast_retries

    with fast_retries():
        Workflow("h", store=store).add(flaky, name="flaky").start()
    assert store.count("put", "/steps/") == 1
    history = inspect_workflow("h", store)["steps"][0]["history"]
    assert [(h[2], h[3]) for h in history] == [
        ("ConnectionError", "try 1"),
        ("ConnectionError", "try 2"),
        (None, None),
    ]
    assert all(h[0] <= h[1] for h in history)
    assert [h[0] for h in history] == sorted(h[0] for h in history)


def test_a_failure_record_keeps_every_attempt(tmp_path: Path) -> None:
    @action(retry=2)
    def broken() -> None:
        raise ValueError("nope")

    from dotflow_providers.testing import fast_retries

    with fast_retries():
        Workflow("f", store=FileStore(tmp_path)).add(broken, name="broken").start()
    step = inspect_workflow("f", FileStore(tmp_path))["steps"][0]
    assert step["status"] == "FAILED"
    assert [h[2] for h in step["history"]] == ["ValueError", "ValueError"]


@pytest.mark.parametrize(
    "content",
    [
        b'{"format": 2, "kind": "step", "workflow_id": "c", "ind',
        b"",
        b"\x00\x01garbage",
        b"[1, 2]",
        b'{"format": 2, "kind": "step", "name": "a","output":1}',
    ],
    ids=["truncated", "empty", "binary", "not-an-object", "missing-fields"],
)
def test_a_corrupt_checkpoint_is_named_with_its_key(tmp_path: Path, content: bytes) -> None:
    build(tmp_path).start()
    path = step_file(tmp_path, "c", "a")
    path.write_bytes(content)
    key = Layout("c").step("a")
    with pytest.raises(CorruptCheckpoint, match=key.replace(".", r"\.")) as info:
        build(tmp_path).start()
    assert info.value.key == key
    assert path.read_bytes() == content  # nothing was overwritten


def test_a_tampered_output_fails_its_checksum_and_is_never_restored(tmp_path: Path) -> None:
    def amount() -> dict[str, int]:
        return {"amount": 100}

    Workflow("t", store=FileStore(tmp_path)).add(amount, name="amount").start()
    path = step_file(tmp_path, "t", "amount")
    path.write_bytes(path.read_bytes().replace(b'"amount":100', b'"amount":900'))
    with pytest.raises(CorruptCheckpoint, match="checksum"):
        Workflow("t", store=FileStore(tmp_path)).add(amount, name="amount").start()


def test_a_single_flipped_bit_anywhere_in_the_output_is_detected(tmp_path: Path) -> None:
    def blob() -> bytes:
        return bytes(range(256))

    store = FileStore(tmp_path)
    Workflow("bits", store=store).add(blob, name="blob").start()
    key = Layout("bits").step("blob")
    original = store.get(key)
    assert original is not None
    start = original.index(b',"output":') + len(b',"output":')
    for offset in range(start, len(original) - 1, 7):
        damaged = bytearray(original)
        damaged[offset] ^= 0x04
        with pytest.raises(CorruptCheckpoint):
            load_step(key, bytes(damaged))


def test_a_corrupt_manifest_is_named(tmp_path: Path) -> None:
    build(tmp_path, "m").start()
    (tmp_path / "m/.dotflow/manifest.json").write_text('{"format": 2, "steps": ')
    with pytest.raises(CorruptCheckpoint, match=r"m/\.dotflow/manifest\.json"):
        build(tmp_path, "m").start()


def test_a_checkpoint_from_a_future_format_is_refused(tmp_path: Path) -> None:
    build(tmp_path, "f").start()
    path = step_file(tmp_path, "f", "a")
    path.write_bytes(path.read_bytes().replace(b'"format":2', b'"format":99'))
    with pytest.raises(UnsupportedCheckpointFormat, match="upgrade dotflow-providers"):
        build(tmp_path, "f").start()


def test_a_deleted_manifest_beside_step_checkpoints_is_corrupt_not_a_rerun(
    tmp_path: Path,
) -> None:
    calls: list[int] = []

    def counted() -> int:
        calls.append(1)
        return 1

    store = FileStore(tmp_path)
    Workflow("lc", store=store).add(counted, name="a").start()
    store.delete(Layout("lc").manifest)  # an S3 lifecycle rule deletes the oldest object first
    with pytest.raises(CorruptCheckpoint, match="manifest is missing"):
        Workflow("lc", store=store).add(counted, name="a").start()
    assert calls == [1]


def test_a_stored_type_from_a_module_not_imported_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever can write to the store must not make a reader import modules."""
    package = tmp_path / "code"
    package.mkdir()
    (package / "evil_types.py").write_text(
        textwrap.dedent(
            """
            import dataclasses

            @dataclasses.dataclass
            class Loot:
                value: int
            """
        )
    )
    monkeypatch.syspath_prepend(str(package))
    import evil_types  # noqa: F401  (the writer's process has the module)

    def loot() -> Any:
        return sys.modules["evil_types"].Loot(1)

    store = FileStore(tmp_path / "store")
    Workflow("loot", store=store).add(loot, name="loot").add(one, name="after").start()
    del sys.modules["evil_types"]  # a fresh reader: the module was never imported there
    store.delete(Layout("loot").step("after"))
    with pytest.raises(CorruptCheckpoint, match="evil_types"):
        Workflow("loot", store=store).add(loot, name="loot").add(one, name="after").start()
    assert "evil_types" not in sys.modules
    # read-only views never construct user types at all
    state = inspect_workflow("loot", store)
    assert state["steps"][0]["status"] == "COMPLETED"
    assert "evil_types" not in sys.modules


@pytest.mark.filterwarnings("ignore:Context.storage:DeprecationWarning")  # its steps, as written
def test_a_format_1_store_resumes_where_it_stopped(tmp_path: Path) -> None:
    """Checkpoints written by dotflow-providers 0.1.0: `extract` and `enrich` completed."""
    shutil.copytree(FIXTURES / "format1", tmp_path / "store")
    store = FileStore(tmp_path / "store")
    format1_steps.FAIL["load"] = False
    try:
        run = format1_steps.build(store).start()
    finally:
        format1_steps.FAIL["load"] = True
    assert run.status is Status.COMPLETED
    assert [s.restored for s in run.steps] == [True, True, False]
    assert run.steps[0].output == format1_steps.Batch(
        day=datetime.date(2026, 11, 1), rows=(1, 2, 3)
    )
    enriched = run.steps[1].output
    assert enriched["blob"] == bytes(range(256))  # 0.1.0 would have handed on corrupted bytes
    assert enriched["when"] == (datetime.date(2026, 11, 1), "eu")
    assert run.output == "6 rows, 256 bytes, 2026-11-01"
    # migrated: format-2 documents only, and the next start restores everything
    assert not (tmp_path / "store/legacy/job/manifest.json").exists()
    assert not (tmp_path / "store/legacy/job/steps").exists() or not any(
        (tmp_path / "store/legacy/job/steps").iterdir()
    )
    again = format1_steps.build(store).start()
    assert all(s.restored for s in again.steps)


def test_context_is_still_handed_on_after_a_restore(tmp_path: Path) -> None:
    def first() -> list[int]:
        return [1]

    def second(previous_context: Context) -> list[int]:
        return [*previous_context.value, 2]

    store = FileStore(tmp_path)
    Workflow("ctx", store=store).add(first, name="first").add(second, name="second").start()
    store.delete(Layout("ctx").step("second"))
    run = Workflow("ctx", store=store).add(first, name="first").add(second, name="second").start()
    assert run.output == [1, 2]
