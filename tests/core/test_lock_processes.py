"""Two real runner processes sharing checkpoints on the S3 server: the lease keeps one owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..servers import ACCESS_KEY, REGION, SECRET_KEY
from .procs import ROOT, wait_for


class Runner:
    """Starts tests/core/crash_target.py processes against one S3 bucket."""

    def __init__(self, tmp_path: Path, endpoint: str, bucket: str) -> None:
        self.tmp = tmp_path
        self.url = f"s3://{bucket}/runs?endpoint_url={endpoint}&region={REGION}"
        self.log = tmp_path / "log"
        self.env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def start(self, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.core.crash_target",
                "--store",
                self.url,
                "--log",
                str(self.log),
                "--steps",
                "6",
                *extra,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, Any]:
        out, err = proc.communicate(timeout=timeout)
        print(err)
        assert out.strip(), err
        return proc.returncode, json.loads(out.strip().splitlines()[-1])

    def hold(self, at: str, *extra: str) -> subprocess.Popen[str]:
        """A runner that stops inside step `at` (until killed), started and waited for."""
        arm, ready = self.tmp / "arm", self.tmp / "ready"
        arm.touch()
        proc = self.start("--hang-at", at, "--arm", str(arm), "--ready", str(ready), *extra)
        wait_for(ready)
        return proc

    def starts(self) -> Counter[str]:
        return Counter(line.split()[1] for line in self.log.read_text().splitlines())


def test_one_runner_runs_and_a_dead_holder_is_taken_over_after_its_ttl(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    runner = Runner(tmp_path, s3_endpoint, s3_bucket)
    holder = runner.hold("s2", "--lock-ttl", "3", "--lock-host", "worker-a")

    rival = runner.start("--lock-host", "worker-b")
    code, result = runner.finish(rival)
    assert code == 3
    assert result["error"] == "LockHeld"
    assert "worker-a" in result["message"]

    holder.kill()
    holder.wait()
    killed_at = time.monotonic()
    (tmp_path / "arm").unlink()
    # another host cannot see that worker-a's process is gone: it waits out the TTL
    successor = runner.start("--lock-host", "worker-b", "--lock-wait", "30", "--lock-skew", "0")
    code, result = runner.finish(successor)
    waited = time.monotonic() - killed_at
    assert code == 0, result
    assert result["summary"]["status"] == "COMPLETED"
    assert waited > 1.0  # the lease (ttl 3 s, renewed every second) had to expire first
    assert runner.starts() == {"s0": 1, "s1": 1, "s2": 2, "s3": 1, "s4": 1, "s5": 1}
    assert [s["restored"] for s in result["summary"]["steps"]] == [True, True] + [False] * 4
    assert result["output"][:2] == [f"s0@{holder.pid}", f"s1@{holder.pid}"]
    assert result["output"][2] == f"s2@{successor.pid}"


def test_a_dead_holder_on_the_same_host_is_taken_over_at_once(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    runner = Runner(tmp_path, s3_endpoint, s3_bucket)
    holder = runner.hold("s1", "--lock-ttl", "600")
    holder.kill()
    holder.wait()
    (tmp_path / "arm").unlink()
    t0 = time.monotonic()
    code, result = runner.finish(runner.start())  # lock wait 0: it must not have to wait
    assert code == 0, result
    assert time.monotonic() - t0 < 30
    assert runner.starts() == {"s0": 1, "s1": 2, "s2": 1, "s3": 1, "s4": 1, "s5": 1}


def test_a_stalled_holder_loses_its_lease_and_writes_nothing_after(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    runner = Runner(tmp_path, s3_endpoint, s3_bucket)
    stalled = runner.hold("s2", "--hang-for", "1", "--lock-ttl", "1.5", "--lock-host", "worker-a")
    os.kill(stalled.pid, signal.SIGSTOP)  # every thread stops, the heartbeat too
    try:
        (tmp_path / "arm").unlink()
        time.sleep(2.0)  # past the 1.5 s TTL
        successor = runner.start("--lock-host", "worker-b", "--lock-skew", "0", "--lock-wait", "10")
        code, result = runner.finish(successor)
        assert code == 0, result
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    code, stale = runner.finish(stalled)
    assert code == 0
    assert stale["summary"]["status"] == "FAILED"
    failed = stale["summary"]["steps"][2]
    assert failed["name"] == "s2"
    assert failed["error"].startswith("LockLost")
    assert [s["status"] for s in stale["summary"]["steps"][3:]] == ["NOT_STARTED"] * 3

    # every checkpoint from s2 on is the successor's; the stalled runner wrote none of them
    outputs = []
    for n in range(6):
        body = s3_client.get_object(Bucket=s3_bucket, Key=f"runs/crash/steps/0000{n}-s{n}.json")
        outputs.append(json.loads(body["Body"].read())["output"][-1])
    assert outputs[:2] == [f"s0@{stalled.pid}", f"s1@{stalled.pid}"]
    assert outputs[2:] == [f"s{n}@{successor.pid}" for n in range(2, 6)]
    assert runner.starts() == {"s0": 1, "s1": 1, "s2": 2, "s3": 1, "s4": 1, "s5": 1}
