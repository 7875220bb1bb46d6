"""The workflow whose format-1 checkpoints (written by dotflow-providers 0.1.0) are a fixture.

`fixtures/format1/` was made by running `build(fail=True).start()` with 0.1.0: `extract` and
`enrich` completed, `load` failed. Keep these steps' code as it is: it is what they were (they
read `.storage`, the deprecated name of `Context.value`).
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic

from dotflow_providers import Context, Workflow


class Batch(pydantic.BaseModel):
    day: datetime.date
    rows: tuple[int, ...]


def extract(initial_context: Context) -> Batch:
    day = datetime.date.fromisoformat(initial_context.storage["day"])
    return Batch(day=day, rows=(1, 2, 3))


def enrich(previous_context: Context) -> dict[str, Any]:
    batch = previous_context.storage
    return {"total": sum(batch.rows), "blob": bytes(range(256)), "when": (batch.day, "eu")}


FAIL = {"load": True}


def load(previous_context: Context) -> str:
    if FAIL["load"]:
        raise RuntimeError("warehouse down")
    enriched = previous_context.storage
    return f"{enriched['total']} rows, {len(enriched['blob'])} bytes, {enriched['when'][0]}"


def build(store: Any) -> Workflow:
    return (
        Workflow("legacy/job", store=store)
        .add(extract, name="extract", initial_context={"day": "2026-11-01"})
        .add(enrich, name="enrich")
        .add(load, name="load")
    )
