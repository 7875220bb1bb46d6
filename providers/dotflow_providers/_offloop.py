"""Work the event loop hands to a thread and must see to its end, cancelled or not."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable


async def to_the_end(
    call: Callable[[], None],
) -> tuple[Exception | None, asyncio.CancelledError | None]:
    """Run `call` in the loop's default executor, submitted at once, and wait until it ended,
    however many cancellations reach the awaiting task meanwhile (awaited as `to_thread` would
    be, it could be dropped before its thread began, or abandoned while it runs). Returns the
    error `call` raised and the first cancellation that arrived (None for each that did not),
    for the caller to deliver: what `call` did is known before anything is raised."""
    loop = asyncio.get_running_loop()
    running = loop.run_in_executor(None, contextvars.copy_context().run, call)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(running)
            return None, cancelled
        except asyncio.CancelledError as exc:
            if running.cancelled():  # (nothing here cancels it: never wait on it forever)
                raise
            if cancelled is None:
                cancelled = exc
        except Exception as exc:
            return exc, cancelled
