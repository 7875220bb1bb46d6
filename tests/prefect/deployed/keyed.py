"""A `dotflow_flow` the deployment test deploys: four steps, checkpoints scoped by `label`.

Each step touches $DOTFLOW_DEPLOY_DIR/kran-<n>-<time> when it runs, and writes kstep-<n>.pid
then sleeps while khang-<n> exists (to be SIGKILLed). Leases live 10 minutes, so a re-run that
finishes in time proves it took over from the dead process instead of waiting its lease out."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dotflow_prefect import dotflow_flow, dotflow_task
from dotflow_providers import LeaseConfig

WORK = Path(os.environ["DOTFLOW_DEPLOY_DIR"])


@dotflow_task(lock=LeaseConfig(ttl=600))
def kstep(n: int, label: str) -> str:
    (WORK / f"kran-{n}-{time.time_ns()}").touch()
    if (WORK / f"khang-{n}").exists():
        (WORK / f"khang-{n}").unlink()
        (WORK / f"kstep-{n}.pid").write_text(str(os.getpid()))
        time.sleep(600)  # until the test SIGKILLs this flow-run process
    return f"{label}-{n}"


@dotflow_flow(
    store=f"file://{WORK / 'keyed-checkpoints'}",
    resume_key="{label}",
    lock=LeaseConfig(ttl=600),
)
def keyed(label: str) -> list[str]:
    return [kstep(n, label) for n in (1, 2, 3, 4)]
