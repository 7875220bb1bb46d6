"""A batched workflow or a map run as its own process: python -m tests.core.batch_target.

Every execution of a step or item is appended (fsync'd) to --log as `run <i> <pid>` before it
runs. With --kill-at J the process SIGKILLs itself just before its J-th execution; with
--kill-in-write N it SIGKILLs itself inside its N-th batch write, after the batch's temp file
was written and fsync'd but before it was linked into place (FileStore's commit point).
Prints the run's summary and output as JSON on success.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import Any

from dotflow_providers import Workflow, action, store_from_url

ARGS: argparse.Namespace
_executed = 0


def log_run(index: int) -> None:
    global _executed
    _executed += 1
    if ARGS.kill_at and _executed == ARGS.kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    with Path(ARGS.log).open("a") as f:
        f.write(f"run {index} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())


@action(retry=1)
def square(item: int) -> int:
    log_run(item)
    return item * item


def make_step(index: int) -> Any:
    def step(previous_context: Any) -> int:
        log_run(index)
        return (previous_context.value or 0) + index

    return step


def arm_kill_in_write(nth: int) -> None:
    """SIGKILL this process at FileStore's commit point of the `nth` batch it writes."""
    real_link = os.link
    writes = [0]

    def link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        # batch and item-batch keys end in `<12 digits>.json`; step documents never do
        name = str(dst)
        if name.endswith(".json") and name[:-5].isdigit() and len(name) == 17:
            writes[0] += 1
            if writes[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        real_link(src, dst, *args, **kwargs)

    os.link = link  # type: ignore[assignment]


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--kind", choices=["batch", "map"], required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--commit-every", type=int, required=True)
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument("--kill-in-write", type=int, default=0)
    parser.add_argument("--workflow-id", default="faults")
    ARGS = parser.parse_args()
    if ARGS.kill_in_write:
        arm_kill_in_write(ARGS.kill_in_write)
    options: dict[str, Any] = {}
    if ARGS.store.startswith("s3://"):
        options = {
            "aws_access_key_id": os.environ["TEST_S3_KEY"],
            "aws_secret_access_key": os.environ["TEST_S3_SECRET"],
        }
    store = store_from_url(ARGS.store, **options)
    if ARGS.kind == "batch":
        wf = Workflow(ARGS.workflow_id, store=store, commit_every=ARGS.commit_every)
        for index in range(ARGS.n):
            wf.add(make_step(index), name=f"s{index}")
    else:
        wf = Workflow(ARGS.workflow_id, store=store)
        wf.map(square, range(ARGS.n), name="squares", commit_every=ARGS.commit_every)
    run = wf.start()
    print(json.dumps({"summary": run.summary(), "output": run.output}))


if __name__ == "__main__":
    main()
