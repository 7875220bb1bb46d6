"""Runners SIGKILLed at random points, again and again, on FileStore and S3 in every mode.

After each kill the case reads what the store holds. A checkpoint once seen must never vanish
or change; no document may fail to load; no step may start again once its checkpoint was seen
(the steps' own log says who started what, in which round); and each workflow, finished by an
uninterrupted run at the end, must give exactly the outputs of a run that was never killed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from dotflow_providers import CheckpointStore, FileStore
from dotflow_providers.storage import S3Store

from ..servers import REGION
from .harness import (
    FIGURES,
    Children,
    case_rng,
    read_log,
    run_to_end,
    snapshot,
    starts_by_step,
    step_index,
    target_args,
    wait_for_line,
)
from .target import MODES, expected_outputs

KILLS_PER_CASE = 20  # 2 stores x 5 modes x 20 = 200 kills
STEPS = 40
ROUNDS_PER_WORKFLOW = 10
#: how long after a round's first step a runner is killed, at most: a few steps' time
MID_STEP_SPAN = 0.12
#: how long a step works (seconds, uniform): parallel mode runs two at once, in processes
STEP_SECONDS = {"parallel": "0.02,0.06"}


def kill_somewhere(
    group: Children, proc: Any, log: Path, round_number: int, rng: Any
) -> tuple[bool, bool]:
    """Kill the runner at a random point; (killed, after its first step started).

    Three in ten kills land just after the runner booted (taking the lease, writing the
    manifest, reading checkpoints, starting workers); the rest while steps run and commit.
    """
    early = rng.random() < 0.3
    if early:
        alive = wait_for_line(log, proc, round_number, "boot")
        delay = rng.uniform(0.0, 0.02)
    else:
        alive = wait_for_line(log, proc, round_number, "start")
        delay = rng.uniform(0.0, MID_STEP_SPAN)
    if alive:
        time.sleep(delay)
    killed = proc.poll() is None
    group.kill(proc)
    mid = any(
        line.round == round_number and line.kind == "start" for line in read_log(log)
    )
    return killed, killed and mid


def kill_campaign(
    group: Children,
    store: CheckpointStore,
    url: str,
    env: dict[str, str],
    mode: str,
    tmp_path: Path,
    label: str,
) -> dict[str, int]:
    rng = case_rng("sigkills", label, mode)
    figures = dict.fromkeys(
        ("kills", "kills_mid_step", "workflows_finished", "committed_lost",
         "rerun_after_commit", "corrupt_documents", "wrong_outputs"),
        0,
    )  # fmt: skip
    problems: list[str] = []
    env = {
        **env,
        "FAULT_LOG": str(tmp_path / "reference.log"),
        "FAULT_STEP_SECONDS": STEP_SECONDS.get(mode, "0.003,0.015"),
    }
    reference = run_to_end(group, target_args(url, "reference", mode, STEPS), env, "reference")
    assert reference["status"] == "COMPLETED", reference
    assert reference["outputs"] == expected_outputs(mode, STEPS)

    workflow = 0
    while figures["kills"] < KILLS_PER_CASE:
        assert workflow < KILLS_PER_CASE, f"runners finished before the kills: {figures}"
        workflow_id = f"killed-{workflow}"
        log = tmp_path / f"{workflow_id}.log"
        env = {**env, "FAULT_LOG": str(log)}
        seen: dict[str, bytes] = {}  # every checkpoint observed, as first observed
        committed_in: dict[int, int] = {}  # step index -> round after which it was observed
        round_number = 0
        for round_number in range(ROUNDS_PER_WORKFLOW):
            env["FAULT_ROUND"] = str(round_number)
            name = f"{workflow_id}-r{round_number}"
            proc = group.spawn(target_args(url, workflow_id, mode, STEPS), env, name)
            killed, mid = kill_somewhere(group, proc, log, round_number, rng)
            figures["kills"] += killed
            figures["kills_mid_step"] += mid
            state = snapshot(store, workflow_id)
            figures["corrupt_documents"] += len(state.corrupt)
            problems += [f"{workflow_id} round {round_number}: {k} corrupt" for k in state.corrupt]
            for key, data in seen.items():
                if state.steps.get(key) != data:
                    figures["committed_lost"] += 1
                    problems.append(f"{workflow_id} round {round_number}: {key} lost or changed")
            for key, data in state.steps.items():
                if key not in seen:
                    seen[key] = data
                    committed_in[step_index(key)] = round_number
            if len(seen) == STEPS or figures["kills"] >= KILLS_PER_CASE:
                break

        final_round = round_number + 1
        env["FAULT_ROUND"] = str(final_round)
        result = run_to_end(
            group, target_args(url, workflow_id, mode, STEPS), env, f"{workflow_id}-final"
        )
        figures["workflows_finished"] += 1
        if (
            result["status"] != "COMPLETED"
            or result["outputs"] != reference["outputs"]
            or result["output"] != reference["output"]
        ):
            figures["wrong_outputs"] += 1
            problems.append(f"{workflow_id}: final run {result} differs from {reference}")
        state = snapshot(store, workflow_id)
        figures["corrupt_documents"] += len(state.corrupt)
        for key, data in seen.items():
            if state.steps.get(key) != data:
                figures["committed_lost"] += 1
                problems.append(f"{workflow_id} final: {key} lost or changed")
        stored = {step_index(key): output for key, output in state.outputs.items()}
        if stored != dict(enumerate(reference["outputs"])):
            figures["wrong_outputs"] += 1
            problems.append(f"{workflow_id}: stored outputs differ from the reference run's")
        for index, starts in starts_by_step(read_log(log)).items():
            if index in committed_in:
                again = [s for s in starts if s.round > committed_in[index]]
                figures["rerun_after_commit"] += len(again)
                problems += [f"{workflow_id}: step {index} committed by round "
                             f"{committed_in[index]} started again: {s}" for s in again]  # fmt: skip
        workflow += 1

    for name, value in figures.items():
        FIGURES[name] += value
    print(f"{label}/{mode}: {figures}")
    losses = {k: v for k, v in figures.items() if k not in ("kills", "kills_mid_step",
                                                              "workflows_finished") and v}  # fmt: skip
    assert not losses, f"seed {os.environ['DOTFLOW_FAULT_SEED']}: {losses}\n" + "\n".join(
        problems[:20]
    )
    # the kills really interrupted work: most landed while steps ran
    assert figures["kills_mid_step"] >= KILLS_PER_CASE // 2, figures
    return figures


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", MODES)
def test_file_store_loses_nothing_to_sigkills(
    mode: str, tmp_path: Path, group: Children
) -> None:
    root = tmp_path / "store"
    kill_campaign(
        group, FileStore(root), f"file://{root}", dict(os.environ), mode, tmp_path, "file"
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", MODES)
def test_s3_store_loses_nothing_to_sigkills(
    mode: str,
    tmp_path: Path,
    group: Children,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client: Any,
    s3_env: dict[str, str],
) -> None:
    store = S3Store(s3_bucket, "killed", client=s3_client)
    url = f"s3://{s3_bucket}/killed?endpoint_url={s3_endpoint}&region={REGION}"
    kill_campaign(group, store, url, s3_env, mode, tmp_path, "s3")
