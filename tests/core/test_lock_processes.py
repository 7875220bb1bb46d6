"""Two real runner processes sharing checkpoints on the S3 server: the lease keeps one owner."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dotflow_providers._format import Layout

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


TOOK_OVER = re.compile(
    r"^(?P<at>\S+ \S+) \S+ took over the lease on \S+ "
    r"from \S+@(?P<host>\S+) \(pid (?P<pid>\d+)\), epoch (?P<epoch>\d+)$",
    re.MULTILINE,
)


def took_over(stderr: str) -> tuple[float, str, int, int]:
    """When (epoch seconds) a runner logged taking over a lease, and from which host and pid,
    at which new epoch: read from crash_target's log line, stamped inside that runner."""
    found = TOOK_OVER.search(stderr)
    assert found, stderr
    # logging's asctime is local time truncated to the millisecond
    at = datetime.datetime.strptime(found["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return at, found["host"], int(found["pid"]), int(found["epoch"])


def finish_logged(proc: subprocess.Popen[str]) -> tuple[int, Any, str]:
    """Like `Runner.finish`, keeping the runner's log output (stderr) as well."""
    out, err = proc.communicate(timeout=60)
    assert out.strip(), err
    return proc.returncode, json.loads(out.strip().splitlines()[-1]), err


def lease_expiry(s3_client: Any, bucket: str) -> float:
    """The expiry recorded in the workflow's lease document (epoch seconds)."""
    body = s3_client.get_object(Bucket=bucket, Key=f"runs/{Layout('crash').lock}")["Body"].read()
    return float(json.loads(body)["expires_at"])


def test_one_runner_runs_and_a_dead_holder_is_taken_over_after_its_ttl(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
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
    expired_at = lease_expiry(s3_client, s3_bucket)  # its last renewal: nobody renews it now
    (tmp_path / "arm").unlink()
    # another host cannot see that worker-a's process is gone: it waits out the TTL
    successor = runner.start("--lock-host", "worker-b", "--lock-wait", "30", "--lock-skew", "0")
    code, result, log = finish_logged(successor)
    assert code == 0, result
    assert result["summary"]["status"] == "COMPLETED"
    at, host, pid, epoch = took_over(log)
    assert (host, pid, epoch) == ("worker-a", holder.pid, 2)
    assert at + 0.001 >= expired_at  # taken only once the recorded expiry had passed
    assert runner.starts() == {"s0": 1, "s1": 1, "s2": 2, "s3": 1, "s4": 1, "s5": 1}
    assert [s["restored"] for s in result["summary"]["steps"]] == [True, True] + [False] * 4
    assert result["output"][:2] == [f"s0@{holder.pid}", f"s1@{holder.pid}"]
    assert result["output"][2] == f"s2@{successor.pid}"


def test_a_dead_holder_on_the_same_host_is_taken_over_at_once(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    runner = Runner(tmp_path, s3_endpoint, s3_bucket)
    holder = runner.hold("s1", "--lock-ttl", "600")
    holder.kill()
    holder.wait()
    expires_at = lease_expiry(s3_client, s3_bucket)
    (tmp_path / "arm").unlink()
    # lock wait 0: a lease it could not take at its first look would be LockHeld (exit code 3)
    code, result, log = finish_logged(runner.start())
    assert code == 0, result
    at, _, pid, epoch = took_over(log)
    assert (pid, epoch) == (holder.pid, 2)
    assert at < expires_at  # taken while the dead holder's lease still had minutes to run
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
        key = f"runs/{Layout('crash').step(f's{n}')}"
        body = s3_client.get_object(Bucket=s3_bucket, Key=key)
        outputs.append(json.loads(body["Body"].read())["output"][-1])
    assert outputs[:2] == [f"s0@{stalled.pid}", f"s1@{stalled.pid}"]
    assert outputs[2:] == [f"s{n}@{successor.pid}" for n in range(2, 6)]
    assert runner.starts() == {"s0": 1, "s1": 1, "s2": 2, "s3": 1, "s4": 1, "s5": 1}
