"""`Context`: what a step receives. Its value is `.value`; `.storage` is a deprecated alias."""

from __future__ import annotations

from typing import Any

from dotflow_providers import Context, MemoryStore, Workflow, action
from dotflow_providers._format import Layout, load_step


@action(version="1")
def extract(initial_context: Context) -> dict[str, Any]:
    return {"day": initial_context.storage["day"], "rows": [1, 2, 3]}


@action(version="1")
def total(previous_context: Context) -> int:
    return int(sum(previous_context.storage["rows"]))


def test_checkpoint_identity_is_what_it_was_before_context_value() -> None:
    """A Context is never encoded: a step's fingerprint, input digest and output checksum are
    those written before `.value` existed (pinned here), so existing checkpoints restore."""
    store = MemoryStore()
    workflow = (
        Workflow("pinned/context", store=store)
        .add(extract, name="extract", initial_context={"day": "2026-11-01"})
        .add(total, name="total")
    )
    assert workflow.start().output == 6
    stored = {}
    for name in ("extract", "total"):
        key = Layout("pinned/context").step(name)
        document = load_step(key, store.get(key) or b"")
        stored[name] = (document.fingerprint, document.input, document.checksum)
    assert stored == {
        "extract": (
            "18d80ba130dbf90cb5767d472e58a9a5",
            "c3f32112944357348ff689531b77096cd63c36ccd403ebd165f9136df938d8cc",
            "62317a54481ee10c64307717b0eed656",
        ),
        "total": ("327bb0d7435b7f8f5f3885dc368d3292", "none", "d4c0473feca7a8da3a323d15ba6ed8a1"),
    }
