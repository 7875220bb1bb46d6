"""The workflow the fault-injection harness kills again and again:
python -m tests.core.fault_target --store URL --log FILE --round N --steps N"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from dotflow_providers import Context, LeaseConfig, Workflow, store_from_url


def expected_outputs(steps: int) -> list[dict[str, Any]]:
    """What an uninterrupted run produces, computed without the engine."""
    outputs: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for index in range(steps):
        outputs.append(compute(index, previous))
        previous = outputs[-1]
    return outputs


def compute(index: int, previous: dict[str, Any] | None) -> dict[str, Any]:
    chain = (previous or {}).get("chain", "")
    return {
        "index": index,
        "total": (previous or {}).get("total", 0) + index * index,
        "chain": hashlib.sha256(f"{chain}:{index}".encode()).hexdigest()[:16],
    }


def build(store_url: str, log: Path, round_number: int, steps: int) -> Workflow:
    wf = Workflow("faults", store=store_from_url(store_url), lock=LeaseConfig(ttl=30, poll=0.05))

    def make(index: int) -> Any:
        def step(previous_context: Context) -> dict[str, Any]:
            with log.open("a") as f:
                f.write(f"{round_number} start {index}\n")
                f.flush()
                os.fsync(f.fileno())
            time.sleep(random.uniform(0.002, 0.01))  # some work, so kills land mid-step too
            return compute(index, previous_context.value)

        return step

    for index in range(steps):
        wf.add(make(index), name=f"step{index:03d}")
    return wf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    run = build(args.store, args.log, args.round, args.steps).start()
    print(json.dumps({"status": run.status.value, "output": run.output}))


if __name__ == "__main__":
    main()
