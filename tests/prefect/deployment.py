"""A real Prefect deployment stack on 127.0.0.1: server (own PREFECT_HOME and SQLite), a
`process` work pool, a worker; driven through the `prefect` CLI and read through the REST API."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")


class PrefectStack:
    """Start with `start()`, always `stop()` (kills every process this stack started)."""

    def __init__(self, home: Path, extra_env: dict[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            **extra_env,
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            args,
            env=self.env,
            stdout=(self.home / log).open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() kills the flow-run children too
        )
        self.processes.append(process)
        return process

    def cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [*PREFECT, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self, pool: str) -> None:
        self._spawn(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            "server.log",
        )
        wait_for("the Prefect server", self._healthy, 180)
        self.cli("work-pool", "create", pool, "--type", "process")
        self.worker = self._spawn([*PREFECT, "worker", "start", "--pool", pool], "worker.log")

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def python(self, code: str, cwd: Path) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return done.stdout

    def run_deployment(self, name: str, **params: str) -> str:
        args = ["deployment", "run", name]
        for key, value in params.items():
            args += ["--param", f"{key}={value}"]
        out = self.cli(*args)
        match = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert match, out
        return match.group(1)

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"{self.api}/flow_runs/{flow_run_id}", timeout=10).json()
        return found

    def wait_final(self, flow_run_id: str, timeout: float = 180) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            run = self.flow_run(flow_run_id)
            state = run.get("state") or {}
            return run if state.get("type") in {"COMPLETED", "FAILED", "CRASHED"} else None

        found: dict[str, Any] = wait_for(f"flow run {flow_run_id} to end", final, timeout)
        return found

    def logs(self, flow_run_id: str) -> list[str]:
        response = httpx.post(
            f"{self.api}/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200},
            timeout=10,
        )
        return [log["message"] for log in response.json()]

    def artifact(self, key: str) -> str:
        """The data of the latest artifact with `key`."""
        response = httpx.post(
            f"{self.api}/artifacts/filter",
            json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
            timeout=10,
        )
        found = response.json()
        assert found, f"no artifact {key}"
        return str(found[0]["data"])

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=15)
