"""Helpers for your own test suites: no waiting between retries, and a store you can inspect.

from dotflow_providers.testing import RecordingStore, fast_retries

def test_my_workflow():
    store = RecordingStore()
    with fast_retries(attempts=2):        # retries without waits, at most 2 attempts
        run = build_workflow(store).start()
    assert store.outputs(run.workflow_id) == {"extract": [...], "load": 3}
    assert store.count("put", "/steps/") == 2
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ._batch import read_steps
from ._format import Layout
from .retry import CONFIG, FastRetryMode
from .storage import MemoryStore

__all__ = ["RecordingStore", "set_testing", "fast_retries"]


def set_testing(testing: bool, *, attempts: int | None = None) -> None:
    """Make every policy's waits zero and, with `attempts`, cap attempts at that number.

    Policies still decide *whether* to retry (their retry condition and stop condition);
    only how long they wait changes. Turn it on in a test fixture, off afterwards.
    """
    mode = FastRetryMode(attempts)  # validates `attempts` even when switching off
    CONFIG.swap_testing(mode if testing else None)


@contextlib.contextmanager
def fast_retries(attempts: int | None = None) -> Iterator[None]:
    """`set_testing(True, attempts=...)` for a `with` block, then back to what was set before.

    Nested blocks each restore the mode they replaced, so an inner block never switches testing
    off for the outer one.
    """
    previous = CONFIG.swap_testing(FastRetryMode(attempts))
    try:
        yield
    finally:
        CONFIG.swap_testing(previous)


class RecordingStore(MemoryStore):
    """A `MemoryStore` that records every call and reads checkpoints back for assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def get(self, key: str) -> bytes | None:
        self.calls.append(("get", key))
        return super().get(key)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        self.calls.append(("get", key))
        return super().get_versioned(key)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        self.calls.append(("put", key))
        return super().put(key, data, if_match=if_match, if_none_match=if_none_match)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.calls.append(("delete", key))
        super().delete(key, if_match=if_match)

    def list(self, prefix: str) -> Iterator[str]:
        self.calls.append(("list", prefix))
        return super().list(prefix)

    def count(self, operation: str, part: str = "") -> int:
        """How many `operation` calls ("get", "put", "delete", "list") had `part` in the key."""
        return sum(1 for op, key in self.calls if op == operation and part in key)

    def outputs(self, workflow_id: str) -> dict[str, Any]:
        """Step name → output of its newest checkpoint (single documents and group-commit
        batches alike, compensated ones left out), for every checkpointed step of a workflow;
        these reads are not recorded."""
        stored = read_steps(_Unrecorded(self), Layout(workflow_id))
        return {name: doc.output() for name, doc in stored.newest.items()}


class _Unrecorded(MemoryStore):
    """A `RecordingStore`'s documents, read without recording the reads."""

    def __init__(self, recording: RecordingStore) -> None:
        super().__init__()
        self._data = recording._data  # its documents, not a copy
