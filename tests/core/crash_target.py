"""A workflow run as its own process by the crash tests: python -m tests.core.crash_target.

Each step logs that it started; the step named by --hang-at (while the --arm file exists)
announces itself in --ready and then hangs, waiting to be SIGKILLed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from dotflow_providers import Context, DotflowError, LeaseConfig, Workflow, store_from_url


def log_line(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def build(args: argparse.Namespace) -> Workflow:
    lock = LeaseConfig(
        ttl=args.lock_ttl,
        wait=args.lock_wait,
        clock_skew=args.lock_skew,
        host=args.lock_host,
        poll=0.1,
    )
    wf = Workflow(args.workflow_id, store=store_from_url(args.store), lock=lock)

    def make(index: int) -> Any:
        name = f"s{index}"

        def step(previous_context: Context) -> list[str]:
            log_line(args.log, f"start {name} pid={os.getpid()}")
            if name == args.hang_at and args.arm.exists():
                args.ready.write_text(name)
                time.sleep(args.hang_for)
            return [*(previous_context.value or []), f"{name}@{os.getpid()}"]

        return step

    for index in range(args.steps):
        wf.add(make(index), name=f"s{index}")
    return wf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--workflow-id", default="crash")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--hang-at", default="")
    parser.add_argument("--arm", type=Path, default=Path("/nonexistent"))
    parser.add_argument("--ready", type=Path, default=Path("/dev/null"))
    parser.add_argument("--hang-for", type=float, default=120)
    parser.add_argument("--lock-ttl", type=float, default=60)
    parser.add_argument("--lock-wait", type=float, default=0)
    parser.add_argument("--lock-skew", type=float, default=5)
    parser.add_argument("--lock-host", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(threadName)s %(message)s")
    try:
        run = build(args).start()
    except DotflowError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        raise SystemExit(3) from None
    print(json.dumps({"summary": run.summary(), "output": run.output, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
