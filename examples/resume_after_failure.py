"""A daily sales job that fails halfway on purpose, then resumes in a new process.

    python examples/resume_after_failure.py

The first run checkpoints `extract` and `transform` to a local FileStore, then `load` fails
because the warehouse is "down" (two attempts with exponential backoff). The script then starts
itself again as a brand-new process: the completed steps are restored from their checkpoints,
not run again, and the job finishes.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from dotflow_providers import Context, ExponentialBackoff, FileStore, Run, Workflow, action

console = Console()


@action
def extract(initial_context: Context) -> list[dict[str, Any]]:
    day = initial_context.value["day"]
    console.print(f"  [cyan]extract[/]   reading sales for {day} (pid {os.getpid()})")
    return [{"sku": f"SKU-{n}", "qty": n % 7 + 1, "price": 9.5 + n} for n in range(100)]


@action
def transform(previous_context: Context) -> dict[str, float]:
    console.print(f"  [cyan]transform[/] summing {len(previous_context.value)} rows")
    totals: dict[str, float] = {}
    for row in previous_context.value:
        totals[row["sku"]] = round(row["qty"] * row["price"], 2)
    return totals


@action(retry=ExponentialBackoff(max_attempts=2, initial=0.2, cap=1.0))
def load(previous_context: Context) -> int:
    if os.environ.get("WAREHOUSE_DOWN") == "1":
        console.print("  [red]load[/]      warehouse unavailable (on purpose)")
        raise ConnectionError("warehouse unavailable")
    console.print(f"  [cyan]load[/]      writing {len(previous_context.value)} totals")
    return len(previous_context.value)


@action
def report(previous_context: Context) -> str:
    return f"loaded {previous_context.value} rows"


def build(folder: Path) -> Workflow:
    wf = Workflow("daily-sales-2026-11-22", store=FileStore(folder))
    wf.add(extract, initial_context={"day": "2026-11-22"}).add(transform).add(load).add(report)
    return wf


def show(title: str, run: Run) -> None:
    table = Table(title=title)
    for column in ("step", "status", "attempts", "restored", "error"):
        table.add_column(column)
    for step in run.steps:
        table.add_row(
            step.name,
            step.status.value,
            str(step.attempts),
            "yes" if step.restored else "",
            step.error or "",
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, help="checkpoint folder (default: a new temp dir)")
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(
        level="WARNING", format="%(message)s", handlers=[RichHandler(console=console)]
    )
    folder = args.dir or Path(tempfile.mkdtemp(prefix="dotflow-example-"))

    if args.resume:
        run = build(folder).start()
        show(f"second run, new process {os.getpid()}", run)
        console.print(f"[bold green]{run.output}[/]" if run.output else "[red]failed[/]")
        return 0 if run.status.value == "COMPLETED" else 1

    console.print(f"checkpoints in {folder}\n[bold]first run[/] (pid {os.getpid()})")
    os.environ["WAREHOUSE_DOWN"] = "1"
    run = build(folder).start()
    show("first run", run)
    console.print("\n[bold]starting again in a new process[/]")
    env = {**os.environ, "WAREHOUSE_DOWN": "0"}
    return subprocess.call([sys.executable, __file__, "--resume", "--dir", str(folder)], env=env)


if __name__ == "__main__":
    sys.exit(main())
