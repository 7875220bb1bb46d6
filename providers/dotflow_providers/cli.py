"""The `dotflow-providers` command (also `python -m dotflow_providers`).

    dotflow-providers run pipeline.py:workflow --store file://./ckpt --context '{"day": "x"}'
    dotflow-providers inspect WORKFLOW_ID --store s3://bucket/prefix [--json]
    dotflow-providers list --store URL [--json]
    dotflow-providers cancel WORKFLOW_ID --store URL [--block]
    dotflow-providers reset WORKFLOW_ID --store URL
    dotflow-providers clean --older-than 30d --store URL

`clean WORKFLOW_ID` is the deprecated name of `reset WORKFLOW_ID`.

Exit codes: 0 completed, 1 a step failed, 2 bad input (shown as one line; --debug for the
traceback), 3 cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

try:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table
except ImportError as exc:  # the core installs without it
    raise ImportError(
        "the dotflow-providers command needs rich: pip install 'dotflow-providers[cli]'"
    ) from exc

from ._errors import ConfigurationError, DotflowError, WorkflowCancelled
from ._identity import ON_CHANGE
from ._inspect import attempts_cell, inspect_workflow, list_workflows
from ._lease import LeaseConfig
from ._loader import load_workflow
from ._run import Run
from ._status import Status
from ._workflow import Workflow, cancel, clean_older_than, reset
from .storage import store_from_url
from .tracing import Tracer

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 3
_COLOURS = {
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "IN_PROGRESS": "cyan",
    "RETRY": "magenta",
}


def _table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "step", "status", "attempts", "duration (s)", "last error"):
        table.add_column(column)
    for row in rows:
        status = str(row.get("status"))
        duration = row.get("duration")
        table.add_row(
            str(row.get("index")),
            str(row.get("name")),
            f"[{_COLOURS.get(status, 'white')}]{status}[/]",
            attempts_cell(row),
            "" if duration is None else f"{duration:.3f}",
            str(row.get("error") or ""),
        )
    return table


class LiveProgress(Tracer):
    """A step table redrawn as the run moves (on a terminal)."""

    def __init__(self, live: Live, title: str) -> None:
        self.live, self.title = live, title
        self.run: Run | None = None

    def _draw(self) -> None:
        if self.run is not None:
            self.live.update(_table([s.summary() for s in self.run.steps], self.title))

    def workflow_started(self, run: Run) -> None:
        self.run = run
        self._draw()

    def step_started(self, step: Any) -> None:
        self._draw()

    def attempt_failed(self, step: Any, error: BaseException, delay: float | None) -> None:
        self._draw()

    def step_finished(self, step: Any) -> None:
        self._draw()


class LogLines(Tracer):
    """One plain line per finished step and per retry (when not on a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def attempt_failed(self, step: Any, error: BaseException, delay: float | None) -> None:
        if delay is not None:
            self.console.print(
                f"retry {step.name} attempt {step.attempts}: {error} (in {delay:.2f}s)"
            )

    def step_finished(self, step: Any) -> None:
        note = f": {step.error}" if step.error else ""
        self.console.print(f"{step.status.value} {step.name} ({step.attempts} attempt(s)){note}")


def _run(args: argparse.Namespace, out: Console) -> int:
    base = load_workflow(args.target)
    context = json.loads(args.context) if args.context is not None else None
    options: dict[str, Any] = {}
    if args.workflow_id:
        options["workflow_id"] = args.workflow_id
    if args.store:
        options["store"] = store_from_url(args.store)
    if args.on_change:
        options["on_change"] = args.on_change
    if args.lease_ttl is not None or args.lease_wait is not None:
        options["lock"] = LeaseConfig(
            ttl=LeaseConfig.ttl if args.lease_ttl is None else args.lease_ttl,
            wait=LeaseConfig.wait if args.lease_wait is None else args.lease_wait,
        )
    workflow: Workflow = base.copy(**options)
    start: dict[str, Any] = {
        "mode": args.mode,
        "keep_going": args.keep_going,
        "initial_context": context,
        "rerun_from": args.rerun_from,
    }
    title = f"dotflow {workflow.workflow_id_for(context)}"

    def execute() -> Run:
        if args.mode.startswith("async_"):
            options = {**start, "max_concurrency": start.pop("max_workers", None)}
            return asyncio.run(workflow.start_async(**options))
        return workflow.start(**start)

    if out.is_terminal:
        with Live(console=out, refresh_per_second=8) as live:
            workflow.tracer = LiveProgress(live, title)
            run = execute()
    else:
        workflow.tracer = LogLines(out)
        run = execute()
    out.print(f"{run.workflow_id}: {run.status.value} in {run.duration or 0:.3f}s")
    if run.status is Status.COMPLETED:
        return EXIT_OK
    return EXIT_CANCELLED if run.status is Status.CANCELLED else EXIT_FAILED


def _inspect(args: argparse.Namespace, out: Console) -> int:
    store = store_from_url(args.store)
    state = inspect_workflow(args.workflow_id, store)
    if args.json:
        print(json.dumps(state, indent=2))
    elif not state["found"]:
        out.print(f"no checkpoints for {args.workflow_id} in {store.url}")
    else:
        out.print(_table(state["steps"], f"{args.workflow_id} ({store.url})"))
        if state["lease"]:
            lease = state["lease"]
            out.print(f"held by {lease['host']} pid {lease['pid']} (epoch {lease['epoch']})")
    return EXIT_OK if state["found"] else EXIT_BAD_INPUT


def _list(args: argparse.Namespace, out: Console) -> int:
    store = store_from_url(args.store)
    found = list_workflows(store)
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    table = Table(title=f"workflows in {store.url}")
    for column in ("workflow id", "status", "steps done", "last update (UTC)"):
        table.add_column(column)
    for row in found:
        updated = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["updated_at"]))
        table.add_row(
            row["workflow_id"], row["status"], f"{row['steps_done']}/{row['steps']}", updated
        )
    out.print(table)
    return EXIT_OK


def _cancel(args: argparse.Namespace, out: Console) -> int:
    cancel(args.workflow_id, store_from_url(args.store), block=args.block)
    if args.block:
        out.print(
            f"{args.workflow_id} is blocked: its starts are refused until "
            f"`dotflow-providers reset {args.workflow_id} --store {args.store}`"
        )
    else:
        out.print(
            f"cancel requested for {args.workflow_id}; its runner stops at its next heartbeat"
        )
    return EXIT_OK


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _age(text: str) -> float:
    """'30d', '12h', '90m', '45s' or '2w' as seconds."""
    number, unit = text[:-1], text[-1:]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not value >= 0:
        raise ConfigurationError(
            f"--older-than {text!r} is not an age: use a number and a unit, e.g. 30d, 12h, 90m"
        )
    return value * _UNITS[unit]


def _reset(args: argparse.Namespace, out: Console) -> int:
    store = store_from_url(args.store)
    reset(args.workflow_id, store)  # LockHeld while a runner owns it
    out.print(f"removed the checkpoints of {args.workflow_id} from {store.url}")
    return EXIT_OK


def _clean(args: argparse.Namespace, out: Console) -> int:
    if args.workflow_id is not None:
        if args.older_than is not None:
            raise ConfigurationError(
                "clean --older-than AGE takes no workflow id; to reset one workflow, "
                f"`dotflow-providers reset {args.workflow_id} --store {args.store}`"
            )
        Console(stderr=True).print(
            "[yellow]deprecated:[/] `dotflow-providers clean WORKFLOW_ID` is now "
            f"`dotflow-providers reset {args.workflow_id} --store {args.store}`",
            highlight=False,
            soft_wrap=True,
        )
        return _reset(args, out)
    if args.older_than is None:
        raise ConfigurationError(
            "clean needs --older-than AGE (e.g. 30d); to reset one workflow, "
            "`dotflow-providers reset WORKFLOW_ID --store URL`"
        )
    store = store_from_url(args.store)
    removed = clean_older_than(store, _age(args.older_than))
    out.print(f"removed {len(removed)} workflow(s) from {store.url}")
    for workflow_id in removed:
        out.print(f"  {workflow_id}")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dotflow-providers", description="Run and inspect dotflow-providers workflows."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a workflow (resuming from its checkpoints)")
    run.add_argument("target", help="module:attribute or path.py:attribute (a Workflow or factory)")
    run.add_argument("--workflow-id")
    run.add_argument("--store", help="memory://, file:///path, s3://bucket/prefix, gs://...")
    run.add_argument(
        "--mode",
        default="sequential",
        choices=[
            "sequential",
            "sequential_group",
            "parallel",
            "async_sequential",
            "async_parallel",
        ],
    )
    run.add_argument("--lease-ttl", type=float, metavar="SECONDS", help="lease time to live")
    run.add_argument(
        "--lease-wait", type=float, metavar="SECONDS", help="wait this long for a held lease"
    )
    run.add_argument("--context", help="initial context as JSON")
    run.add_argument("--keep-going", action="store_true")
    run.add_argument(
        "--on-change",
        choices=ON_CHANGE,
        help="when steps, code or inputs changed: rerun (default), raise, or reuse",
    )
    run.add_argument("--rerun-from", metavar="STEP", help="run STEP and every step after it")
    run.set_defaults(handler=_run)

    inspect = commands.add_parser("inspect", help="show a workflow's steps from its checkpoints")
    inspect.add_argument("workflow_id")
    inspect.add_argument("--store", required=True)
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=_inspect)

    listing = commands.add_parser("list", help="list the workflows in a store")
    listing.add_argument("--store", required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    stop = commands.add_parser("cancel", help="ask a running workflow to stop (from any machine)")
    stop.add_argument("workflow_id")
    stop.add_argument("--store", required=True)
    stop.add_argument(
        "--block", action="store_true", help="refuse its future starts until it is reset"
    )
    stop.set_defaults(handler=_cancel)

    start_over = commands.add_parser(
        "reset", help="delete one workflow's checkpoints, so its next start runs every step"
    )
    start_over.add_argument("workflow_id")
    start_over.add_argument("--store", required=True)
    start_over.set_defaults(handler=_reset)

    clean = commands.add_parser("clean", help="delete every idle workflow older than an age")
    clean.add_argument("workflow_id", nargs="?", help=argparse.SUPPRESS)  # deprecated: reset
    clean.add_argument("--store", required=True)
    clean.add_argument(
        "--older-than", metavar="AGE", help="e.g. 30d: every idle workflow not updated since"
    )
    clean.set_defaults(handler=_clean)
    return parser


def _not_a_retry(record: logging.LogRecord) -> bool:
    return not hasattr(record, "delay")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Console()
    err = Console(stderr=True)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_a_retry)  # the table or the step lines show retries already
    try:
        code: int = args.handler(args, out)
        return code
    except BrokenPipeError:  # `inspect --json | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except WorkflowCancelled as exc:
        err.print(f"[yellow]cancelled:[/] {exc}", soft_wrap=True)
        return EXIT_CANCELLED
    except (DotflowError, json.JSONDecodeError) as exc:
        if args.debug:
            raise
        err.print(f"[red]error:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
