"""`Progress`: a step's own small record of how far it got, kept across attempts and crashes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._journal import Journal


class Progress:
    """Handed to a step that takes a `checkpoint` parameter.

    `save(obj)` stores a small progress record (say, the last page processed) in the workflow's
    store; `load()` returns the last one saved by any earlier attempt, retry or crashed runner
    of this step, or `default`. It is cleared when the step completes. Each save is one write:
    save every N items, not every item.
    """

    __slots__ = ("_index", "_journal")

    def __init__(self, journal: Journal, index: int) -> None:
        self._journal = journal
        self._index = index

    def save(self, value: Any) -> None:
        self._journal.save_progress(self._index, value)

    def load(self, default: Any = None) -> Any:
        found, value = self._journal.load_progress(self._index)
        return value if found else default

    async def asave(self, value: Any) -> None:
        """`save` for async steps: the store write runs off the event loop."""
        if self._journal.blocking:
            await asyncio.to_thread(self.save, value)
        else:
            self.save(value)

    async def aload(self, default: Any = None) -> Any:
        """`load` for async steps: the store read runs off the event loop."""
        if self._journal.blocking:
            return await asyncio.to_thread(self.load, default)
        return self.load(default)
