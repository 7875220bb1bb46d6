"""Reading a flow run's logs back from the Prefect API."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId


def run_logs(flow_run_id: UUID | str, until: str = "Finished in state") -> list[tuple[int, str]]:
    """(level, message) of the run's logs, once a line containing `until` arrived (30 s max)."""

    async def read() -> list[tuple[int, str]]:
        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(str(flow_run_id))]))
            )
        return [(log.level, log.message) for log in logs]

    deadline = time.monotonic() + 30
    while True:
        found = asyncio.run(read())
        if any(until in message for _, message in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)
