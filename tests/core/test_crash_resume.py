"""A workflow killed with SIGKILL mid-step resumes in a new process from that step."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .procs import ROOT, wait_for


def start(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.core.crash_target",
            "--store",
            f"file://{tmp_path / 'store'}",
            "--log",
            str(tmp_path / "log"),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_step_resumes_from_that_step_only(tmp_path: Path) -> None:
    arm, ready = tmp_path / "arm", tmp_path / "ready"
    arm.touch()
    first = start(
        tmp_path, "--steps", "6", "--hang-at", "s3", "--arm", str(arm), "--ready", str(ready)
    )
    wait_for(ready)
    first.kill()  # SIGKILL: no cleanup, no finally blocks
    first.wait()
    assert first.returncode == -9
    arm.unlink()

    second = start(tmp_path, "--steps", "6")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    result = json.loads(out)

    starts = Counter(line.split()[1] for line in (tmp_path / "log").read_text().splitlines())
    assert starts == {"s0": 1, "s1": 1, "s2": 1, "s3": 2, "s4": 1, "s5": 1}
    pids = {
        line.split()[1]: line.split()[2] for line in (tmp_path / "log").read_text().splitlines()
    }
    assert pids["s4"] == f"pid={second.pid}"
    assert result["summary"]["status"] == "COMPLETED"
    assert [s["restored"] for s in result["summary"]["steps"]] == [True] * 3 + [False] * 3
    # s3 got the restored output of s0..s2 as its previous context
    assert [item.split("@")[0] for item in result["output"]] == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert result["output"][2] == f"s2@{first.pid}"  # restored, not recomputed
    assert result["output"][3] == f"s3@{second.pid}"


def test_a_completed_workflow_runs_nothing_again(tmp_path: Path) -> None:
    for _ in range(2):
        proc = start(tmp_path, "--steps", "3")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    starts = Counter(line.split()[1] for line in (tmp_path / "log").read_text().splitlines())
    assert starts == {"s0": 1, "s1": 1, "s2": 1}
    assert [item.split("@")[0] for item in json.loads(out)["output"]] == ["s0", "s1", "s2"]
