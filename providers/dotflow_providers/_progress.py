"""`Progress`: a step's own small record of how far it got, kept across attempts and crashes."""

from __future__ import annotations

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
