"""The flow the deployment test deploys (from this folder, with `flow.from_source`).

Each step touches $DOTFLOW_DEPLOY_DIR/ran-<n>-<time> when it runs; it fails once while
fail-<n> exists, and writes step-<n>.pid then sleeps while hang-<n> exists (to be SIGKILLed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dotflow_prefect import dotflow_task
from dotflow_providers import LeaseConfig
from prefect import flow

WORK = Path(os.environ["DOTFLOW_DEPLOY_DIR"])


@dotflow_task(store=f"file://{WORK / 'checkpoints'}", lock=LeaseConfig(ttl=600))
def step(n: int, label: str) -> str:
    (WORK / f"ran-{n}-{time.time_ns()}").touch()
    if (WORK / f"fail-{n}").exists():
        (WORK / f"fail-{n}").unlink()
        raise RuntimeError(f"step {n} fails once (on purpose)")
    if (WORK / f"hang-{n}").exists():
        (WORK / f"hang-{n}").unlink()
        (WORK / f"step-{n}.pid").write_text(str(os.getpid()))
        time.sleep(600)  # until the test SIGKILLs this flow-run process
    return f"{label}-{n}"


@flow(retries=1, retry_delay_seconds=0)
def resumable(label: str) -> list[str]:
    return [step(1, label), step(2, label), step(3, label)]
