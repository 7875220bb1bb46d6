"""Bad-input harness: every kind of bad input gets its named error, and nothing already
committed is lost or rewritten."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dotflow_providers import (
    CheckpointError,
    CorruptCheckpoint,
    DotflowError,
    FileStore,
    InputChanged,
    UnknownStoreURL,
    UnsupportedCheckpointFormat,
    Workflow,
    WorkflowDefinitionChanged,
    store_from_url,
)


def build(
    root: Path, third: Callable[[], Any] = lambda: "third", value: int = 1, extra_step: bool = False
) -> Workflow:
    wf = Workflow("bad", store=FileStore(root))
    wf.add(lambda: {"first": value}, name="first", initial_context=value)
    wf.add(lambda: [1, 2, 3], name="second")
    wf.add(third, name="third")
    if extra_step:
        wf.add(lambda: None, name="fourth")
    return wf


def committed(root: Path) -> Workflow:
    def fails() -> None:
        raise RuntimeError("not yet")

    build(root, fails).start()
    return build(root)


def corrupt(path: Path, content: bytes) -> Callable[[Path], None]:
    def inject(root: Path) -> None:
        (root / path).write_bytes(content)

    return inject


def future_format(root: Path) -> None:
    path = root / "bad/steps/00001-second.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "format": 7}))


CASES: dict[str, tuple[Callable[[Path], None], type[DotflowError]]] = {
    "garbage step": (
        corrupt(Path("bad/steps/00001-second.json"), b"\x00\xff\xfe"),
        CorruptCheckpoint,
    ),
    "truncated step": (
        corrupt(Path("bad/steps/00001-second.json"), b'{"format": 1, "work'),
        CorruptCheckpoint,
    ),
    "future format": (future_format, UnsupportedCheckpointFormat),
    "truncated manifest": (
        corrupt(Path("bad/manifest.json"), b'{"steps": ["first"'),
        CorruptCheckpoint,
    ),
    "garbage lease": (corrupt(Path("bad/lock"), b"not json"), CorruptCheckpoint),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_stored_data_is_named_and_nothing_committed_is_lost(tmp_path: Path, case: str) -> None:
    inject, error = CASES[case]
    workflow = committed(tmp_path)
    inject(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(error):
        workflow.start()
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {p: after.get(p) for p in before} == before  # nothing rewritten or deleted


def test_changed_inputs_and_steps_are_named_and_keep_the_checkpoints(tmp_path: Path) -> None:
    committed(tmp_path)
    keep = {p: p.read_bytes() for p in (tmp_path / "bad/steps").iterdir()}
    with pytest.raises(InputChanged):
        build(tmp_path, value=2).start()
    with pytest.raises(WorkflowDefinitionChanged):
        build(tmp_path, extra_step=True).start()
    assert {p: p.read_bytes() for p in (tmp_path / "bad/steps").iterdir()} == keep


def test_unserialisable_output_fails_that_step_only(tmp_path: Path) -> None:
    committed(tmp_path)

    def an_event() -> threading.Event:
        return threading.Event()

    run = build(tmp_path, third=an_event).start()
    assert isinstance(run.steps[2].exception, CheckpointError)
    assert "third" in str(run.steps[2].exception)
    assert [s.restored for s in run.steps] == [True, True, False]
    assert build(tmp_path).start().output == "third"  # the run can still finish later


def test_huge_outputs_round_trip(tmp_path: Path) -> None:
    huge = {"rows": list(range(1_000_000)), "blob": b"\x00\x01" * 2_000_000}
    Workflow("huge", store=FileStore(tmp_path)).add(lambda: huge, name="big").start()
    run = Workflow("huge", store=FileStore(tmp_path)).add(lambda: None, name="big").start()
    assert run.steps[0].restored
    assert run.output == huge


@pytest.mark.parametrize("url", ["ftp://x/y", "s3:/bucket", "gs://", "file://", "", "memory"])
def test_unknown_or_incomplete_store_urls(url: str) -> None:
    with pytest.raises(UnknownStoreURL):
        store_from_url(url)
