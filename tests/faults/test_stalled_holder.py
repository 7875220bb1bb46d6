"""A runner stopped (SIGSTOP) inside a step until its lease expires, a second runner takes the
workflow over and completes it, then the first is continued (SIGCONT): it must start no new
step and write nothing, in every mode, on FileStore and S3.

The runner's whole process group is stopped (parallel mode's workers too), so nothing of it
moves while it is stopped. Its steps are slow (a quarter second) during this case so that the
stop lands inside a step in every chain, never in the microseconds between a chain's last
lease check and its next step's first line: no check can close that gap, only fence commits.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dotflow_providers import CheckpointStore, FileStore
from dotflow_providers._format import Layout

from .conftest import S3Target
from .harness import FIGURES, Children, read_log, run_to_end, target_args
from .target import MODES, expected_outputs

STEPS = 8
HANG_AT = 4


def namespace(store: CheckpointStore, workflow_id: str) -> dict[str, bytes | None]:
    """Every document of the workflow (steps, failures, progress, manifest, lease, cancel)."""
    return {key: store.get(key) for key in store.list(Layout(workflow_id).base)}


def stall(
    group: Children, store: CheckpointStore, url: str, env: dict[str, str], mode: str, tmp: Path
) -> None:
    log, arm, ready = tmp / "steps.log", tmp / "arm", tmp / "ready"
    arm.touch()
    env = {
        **env,
        "FAULT_LOG": str(log),
        "FAULT_STEP_SECONDS": "0.2,0.3",
        "FAULT_HANG_AT": str(HANG_AT),
        "FAULT_HANG_ARM": str(arm),
        "FAULT_HANG_READY": str(ready),
        "FAULT_HANG_FOR": "1",
    }
    holder_args = target_args(url, "stalled", mode, STEPS, "--host", "worker-a", "--lease-ttl", "1")
    holder = group.spawn(holder_args, {**env, "FAULT_ROUND": "0"}, "holder")
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert holder.poll() is None, group.output(holder, "holder")
        assert time.monotonic() < deadline, "the holder never reached its hanging step"
        time.sleep(0.002)
    group.stop(holder)
    stopped_at = len(read_log(log))
    arm.unlink()
    try:
        # waits (lease wait 30 s, no skew) until the stopped holder's lease has expired
        successor = run_to_end(
            group,
            target_args(
                url,
                "stalled",
                mode,
                STEPS,
                "--host",
                "worker-b",
                "--lease-skew",
                "0",
                "--lease-wait",
                "30",
            ),
            {**env, "FAULT_ROUND": "1"},
            "successor",
        )
        after_successor = namespace(store, "stalled")
    finally:
        group.signal_group(holder, signal.SIGCONT)
    holder.wait(60)

    problems = []
    if successor["status"] != "COMPLETED" or successor["outputs"] != expected_outputs(mode, STEPS):
        problems.append(f"the successor did not complete correctly: {successor}")
    late = [line for line in read_log(log)[stopped_at:] if line.round == 0 and line.kind == "start"]
    problems += [f"the stalled holder started a step after it was continued: {x}" for x in late]
    after_holder = namespace(store, "stalled")
    changed = sorted(
        key
        for key in after_successor.keys() | after_holder.keys()
        if after_successor.get(key) != after_holder.get(key)
    )
    problems += [f"the stalled holder wrote {key} after it was continued" for key in changed]
    FIGURES["stalled_holders"] += 1
    FIGURES["stalled_side_effects"] += len(late) + len(changed)
    out, err = group.output(holder, "holder")
    assert not problems, "\n".join(problems) + f"\nholder said: {out}\n{err[-3000:]}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_a_stalled_holder_on_a_file_store_starts_and_writes_nothing(
    mode: str, tmp_path: Path, group: Children
) -> None:
    root = tmp_path / "store"
    stall(group, FileStore(root), f"file://{root}", dict(os.environ), mode, tmp_path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_a_stalled_holder_on_s3_starts_and_writes_nothing(
    mode: str, tmp_path: Path, group: Children, s3: S3Target
) -> None:
    stall(group, s3.store("stalled"), s3.url("stalled"), s3.env, mode, tmp_path)
