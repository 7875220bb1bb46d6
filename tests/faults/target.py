"""The workflow the fault campaign kills, stops and starves, run as its own process:

    python -m tests.faults.target --store URL --workflow-id ID --mode MODE --steps N

Every step appends `<round> <pid> start <index>` to $FAULT_LOG before it does anything else
(its side effect, which the campaign reads to find steps that ran again), and the runner logs
`<round> <pid> boot -1` just before `start()`. While the file $FAULT_HANG_ARM exists, step
$FAULT_HANG_AT writes its pid to $FAULT_HANG_READY and sleeps $FAULT_HANG_FOR seconds, so the
campaign can stop the runner inside it. Steps are module-level (parallel mode pickles them) and
read this configuration from the environment, which worker processes inherit; the step's own
index is its initial context, so a step's fingerprint is the same in every round.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from dotflow_providers import (
    Context,
    DotflowError,
    LeaseConfig,
    Run,
    Workflow,
    store_from_url,
)

MODES = ("sequential", "sequential_group", "parallel", "async_sequential", "async_parallel")


def compute(index: int, previous: dict[str, Any] | None) -> dict[str, Any]:
    """A step's output: depends on its index and on the output it received."""
    chain = (previous or {}).get("chain", "")
    return {
        "index": index,
        "total": (previous or {}).get("total", 0) + index * index,
        "chain": hashlib.sha256(f"{chain}:{index}".encode()).hexdigest()[:16],
    }


def expected_outputs(mode: str, steps: int, groups: int = 3) -> list[dict[str, Any]]:
    """What an uninterrupted run's steps return in `mode`, computed without the engine: each
    step receives its chain predecessor's output (one chain; one per group; or none)."""
    outputs: list[dict[str, Any]] = []
    for index in range(steps):
        if mode in ("sequential", "async_sequential"):
            before = index - 1
        elif mode == "parallel":
            before = -1
        else:  # sequential_group, async_parallel: step i is in group g{i % groups}
            before = index - groups
        outputs.append(compute(index, outputs[before] if before >= 0 else None))
    return outputs


def log_line(kind: str, index: int) -> None:
    # One O_APPEND write: whole lines survive a SIGKILL of the writer (the page cache keeps
    # them); no fsync, since the campaign kills processes, not the machine.
    line = f"{os.environ.get('FAULT_ROUND', '0')} {os.getpid()} {kind} {index}\n".encode()
    fd = os.open(os.environ["FAULT_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _hang_seconds(index: int) -> float:
    """How long this step should hang for the stalled-holder case (0: not at all)."""
    if os.environ.get("FAULT_HANG_AT") != str(index):
        return 0.0
    if not Path(os.environ["FAULT_HANG_ARM"]).exists():
        return 0.0
    Path(os.environ["FAULT_HANG_READY"]).write_text(str(os.getpid()))
    return float(os.environ.get("FAULT_HANG_FOR", "1"))


def _work_seconds() -> float:
    low, high = (float(x) for x in os.environ.get("FAULT_STEP_SECONDS", "0.003,0.015").split(","))
    return random.uniform(low, high)


def work(initial_context: Context, previous_context: Context) -> dict[str, Any]:
    """A sync step: log that it started, work a little (so kills land mid-step), compute."""
    index = int(initial_context.value)
    log_line("start", index)
    time.sleep(_hang_seconds(index) or _work_seconds())
    return compute(index, previous_context.value)


async def awork(initial_context: Context, previous_context: Context) -> dict[str, Any]:
    """The async twin of `work`, awaited in the runner's loop."""
    index = int(initial_context.value)
    log_line("start", index)
    await asyncio.sleep(_hang_seconds(index) or _work_seconds())
    return compute(index, previous_context.value)


def build(args: argparse.Namespace) -> Workflow:
    lock = LeaseConfig(
        ttl=args.lease_ttl,
        wait=args.lease_wait,
        clock_skew=args.lease_skew,
        host=args.host,
        poll=0.05,
    )
    wf = Workflow(args.workflow_id, store=store_from_url(args.store), lock=lock)
    step = awork if args.mode.startswith("async") else work
    for index in range(args.steps):
        wf.add(step, name=f"s{index:03d}", initial_context=index, group=f"g{index % args.groups}")
    return wf


def start(wf: Workflow, mode: str) -> Run:
    if mode.startswith("async"):
        return asyncio.run(wf.start_async(mode=mode))
    return wf.start(mode=mode)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--workflow-id", required=True)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=30)
    parser.add_argument("--lease-wait", type=float, default=0)
    parser.add_argument("--lease-skew", type=float, default=5)
    parser.add_argument("--host", default=None)
    args = parser.parse_args()
    wf = build(args)
    log_line("boot", -1)
    try:
        run = start(wf, args.mode)
    except DotflowError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        raise SystemExit(3) from None
    print(
        json.dumps(
            {
                "status": run.status.value,
                "output": run.output,
                "outputs": [step.output for step in run.steps],
                "errors": [step.error for step in run.steps],
                "restored": [step.restored for step in run.steps],
            }
        )
    )


if __name__ == "__main__":
    main()
