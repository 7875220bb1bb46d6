"""A staged job: download a file, transform it, publish it; a failed publish rolls back.

    python examples/staged_job.py

Each stage works on a copy of one typed state; a stage's state is kept only when it completes.
`publish` fails on purpose after writing part of its output, and its `rollback` deletes that
partial file. With `compensate=True`, the completed stages are undone too, newest first.
The table at the end is read back from the checkpoint store.
"""

from __future__ import annotations

import csv
import logging
import sys
import tempfile
from pathlib import Path

import pydantic
from rich.console import Console
from rich.logging import RichHandler
from rich.markdown import Markdown

from dotflow_providers import FileStore, Stage, Workflow, dump_stages

console = Console()


class Job(pydantic.BaseModel):
    folder: str
    raw: str | None = None
    clean: str | None = None
    published: str | None = None
    rows: int = 0


class Download(Stage[Job]):
    def execute(self, state: Job) -> None:
        raw = Path(state.folder) / "sales.csv"
        raw.write_text("sku,qty\nA,3\nB,-1\nC,5\n")
        state.raw = str(raw)
        console.print(f"  [cyan]download[/]  wrote {raw.name}")

    def rollback(self, state: Job, error: BaseException) -> None:
        if state.raw:
            Path(state.raw).unlink(missing_ok=True)
            console.print(f"  [yellow]download rollback[/] removed {Path(state.raw).name}")


class Transform(Stage[Job]):
    def execute(self, state: Job) -> None:
        assert state.raw is not None
        with open(state.raw) as f:
            rows = [row for row in csv.DictReader(f) if int(row["qty"]) > 0]
        clean = Path(state.folder) / "sales-clean.csv"
        clean.write_text("sku,qty\n" + "".join(f"{r['sku']},{r['qty']}\n" for r in rows))
        state.clean, state.rows = str(clean), len(rows)
        console.print(f"  [cyan]transform[/] kept {len(rows)} rows")

    def rollback(self, state: Job, error: BaseException) -> None:
        if state.clean:
            Path(state.clean).unlink(missing_ok=True)
            console.print(f"  [yellow]transform rollback[/] removed {Path(state.clean).name}")


class Publish(Stage[Job]):
    def execute(self, state: Job) -> None:
        target = Path(state.folder) / "published.csv"
        state.published = str(target)
        with target.open("w") as f:
            f.write("sku,qty\n")  # partial output ...
            raise ConnectionError("warehouse went away mid-publish (on purpose)")

    def rollback(self, state: Job, error: BaseException) -> None:
        if state.published:
            Path(state.published).unlink(missing_ok=True)
            console.print(
                f"  [yellow]publish rollback[/] removed partial {Path(state.published).name}"
            )


def main() -> int:
    logging.basicConfig(
        level="WARNING", format="%(message)s", handlers=[RichHandler(console=console)]
    )
    folder = Path(tempfile.mkdtemp(prefix="dotflow-staged-"))
    store = FileStore(folder / "checkpoints")
    wf = Workflow("sales-publish-2026-11-22", store=store)
    wf.add(Download(name="download", description="fetch the day's sales"))
    wf.add(Transform(name="transform", description="drop invalid rows"))
    wf.add(Publish(name="publish", description="load into the warehouse", retry=2))
    run = wf.start(initial_context=Job(folder=str(folder)), compensate=True)
    console.print(
        f"\nrun {run.status.value}; files left: {sorted(p.name for p in folder.glob('*.csv'))}\n"
    )
    console.print(Markdown(dump_stages(run.workflow_id, store)))
    return 0 if not list(folder.glob("*.csv")) else 1


if __name__ == "__main__":
    sys.exit(main())
