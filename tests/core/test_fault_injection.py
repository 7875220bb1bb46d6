"""Fault injection: a long workflow SIGKILLed at random points, many times, then finished.

After every kill the harness reads what the store holds. It checks that no checkpoint is
corrupt, that a committed checkpoint is never rewritten, that no step whose checkpoint was
committed ever starts again, and that the final output equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from dotflow_providers import CheckpointStore, FileStore
from dotflow_providers._format import Layout, load_step
from dotflow_providers.storage import S3Store

from ..servers import ACCESS_KEY, REGION, SECRET_KEY
from .fault_target import expected_outputs

ROOT = Path(__file__).parents[2]
STEPS = 60


def snapshot(store: CheckpointStore) -> dict[str, tuple[str, Any]]:
    """Every committed step: key -> (version, parsed output); raises on a corrupt document."""
    found = {}
    for key in store.list(Layout("faults").steps):
        got = store.get_versioned(key)
        assert got is not None
        data, version = got
        output = load_step(key, data).output()  # CorruptCheckpoint would fail the harness here
        found[key] = (version, output)
    return found


def runner_command(store_url: str, log: Path, round_number: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.core.fault_target",
        "--store",
        store_url,
        "--log",
        str(log),
        "--round",
        str(round_number),
        "--steps",
        str(STEPS),
    ]


def _wait_for_first_step(log: Path, round_number: int, proc: subprocess.Popen[bytes]) -> bool:
    """Wait until this round's runner starts a step (False if it exits with nothing to run)."""
    marker = f"{round_number} start "
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and marker in log.read_text():
            return True
        time.sleep(0.005)
    return False


def harness(
    store_url: str, store: CheckpointStore, log: Path, kills: int, seed: int, env: dict[str, str]
) -> None:
    rng = random.Random(seed)
    committed_in_round: dict[str, int] = {}
    versions: dict[str, str] = {}
    round_number = 0
    for round_number in range(kills):
        proc = subprocess.Popen(
            runner_command(store_url, log, round_number),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started = _wait_for_first_step(log, round_number, proc)
        if started:
            time.sleep(rng.uniform(0.0, 0.25))  # then somewhere in the steps, mid-step or not
        proc.kill()
        proc.wait()
        for key, (version, _) in snapshot(store).items():
            if key in versions:
                assert versions[key] == version, f"{key} was rewritten (seed {seed})"
            else:
                versions[key] = version
                committed_in_round[key] = round_number
        if len(versions) == STEPS:
            break
    final = subprocess.run(
        runner_command(store_url, log, round_number + 1),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(final.stdout)
    expected = expected_outputs(STEPS)
    assert result["status"] == "COMPLETED"
    assert result["output"] == expected[-1]

    stored = snapshot(store)
    assert len(stored) == STEPS
    for key, (version, output) in stored.items():
        index = int(key.rsplit("step", 1)[1].split(".")[0])
        assert output == expected[index]
        if key in versions:
            assert versions[key] == version, f"{key} was rewritten at the end (seed {seed})"

    starts: dict[int, list[int]] = defaultdict(list)
    for line in log.read_text().splitlines():
        round_seen, _, index = line.split()
        starts[int(index)].append(int(round_seen))
    assert set(starts) == set(range(STEPS))
    for key, round_committed in committed_in_round.items():
        index = int(key.rsplit("step", 1)[1].split(".")[0])
        later = [r for r in starts[index] if r > round_committed]
        assert not later, f"step {index} committed in round {round_committed} ran again in {later}"
    # the harness really interrupted work: kills landed after some steps and before others
    rounds_with_commits = set(committed_in_round.values())
    assert len(rounds_with_commits) >= 2, f"kills did not interrupt the run (seed {seed})"
    assert any(len(rounds) > 1 for rounds in starts.values()), "no step was ever re-run"


@pytest.mark.slow
def test_file_store_survives_random_sigkills(tmp_path: Path) -> None:
    seed = int(os.environ.get("DOTFLOW_FAULT_SEED", random.randrange(1 << 30)))
    store = FileStore(tmp_path / "store")
    harness(
        f"file://{tmp_path / 'store'}",
        store,
        tmp_path / "log",
        kills=12,
        seed=seed,
        env=os.environ.copy(),
    )


@pytest.mark.slow
def test_s3_store_survives_random_sigkills(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    seed = int(os.environ.get("DOTFLOW_FAULT_SEED", random.randrange(1 << 30)))
    store = S3Store(s3_bucket, "h", client=s3_client)
    url = f"s3://{s3_bucket}/h?endpoint_url={s3_endpoint}&region={REGION}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    harness(url, store, tmp_path / "log", kills=8, seed=seed, env=env)
