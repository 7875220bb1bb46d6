"""Real Airflow 3.3 components for the tests: api-server, scheduler (LocalExecutor) and
dag-processor on a throwaway SQLite AIRFLOW_HOME, all on 127.0.0.1, driven through the REST API.

`LiveAirflow.start()` brings them up; every helper waits at most `TIMEOUT` seconds and fails
with the tails of the components' logs (and the task's own logs), so a hang says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from ..servers import free_port

LIVE_DAGS = Path(__file__).parent / "live_dags"
TIMEOUT = 300.0  # generous: a loaded 2-core machine starts components slowly
USERS = "admin:admin,viewer:viewer"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


class LiveAirflow:
    """Airflow's api-server, scheduler and dag-processor as child processes."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.http = requests.Session()
        # Only our own settings reach the components: the in-process tests' AIRFLOW_* don't.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env = {
            **env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(LIVE_DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            # one secret for every component, or the workers' execution-API tokens are refused
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            # a task marked failed is noticed at the next heartbeat: once a second, not five
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "PYTHONUNBUFFERED": "1",
        }

    # --- lifecycle ------------------------------------------------------------------------

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.home / f"{name}.log").open("wb")
        # a session of its own: teardown signals the component and every process it started
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )

    def start(self, dag_ids: list[str]) -> None:
        """Migrate the database, start the components, sign in, wait for `dag_ids` to load."""
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=self.env,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stderr.decode()[-3000:]}")
        self._spawn("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port))
        # --skip-serve-logs: without it the scheduler's log server listens on 0.0.0.0
        self._spawn("scheduler", "scheduler", "--skip-serve-logs")
        self._spawn("dag-processor", "dag-processor")
        self.wait(self._healthy, "the components to report healthy")
        self.http.headers["Authorization"] = f"Bearer {self.token('admin')}"
        self.wait(
            lambda: all(self.get(f"/dags/{d}", check=False) is not None for d in dag_ids),
            f"DAGs {dag_ids} to be parsed",
        )

    def _healthy(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.diagnostics()}")
        try:
            health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            return False
        return all(
            health.get(part, {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "dag_processor")
        )

    def stop(self) -> None:
        """Stop every component (and what it started), then remove the home folder."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # the groups' other members (task processes) may outlive their leader
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.http.close()
        subprocess.run(["rm", "-rf", str(self.home)], check=False)

    # --- REST -----------------------------------------------------------------------------

    def token(self, username: str) -> str:
        """A JWT for a SimpleAuthManager user, from its generated password."""
        passwords = json.loads(
            (self.home / "simple_auth_manager_passwords.json.generated").read_text()
        )
        response = requests.post(
            f"{self.url}/auth/token",
            json={"username": username, "password": passwords[username]},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def _call(self, method: str, path: str, check: bool = True, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.url}/api/v2{path}", timeout=30, **kwargs)
        if not check and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise AssertionError(
                f"{method} {path} -> {response.status_code}: {response.text[:2000]}"
            )
        return response.json() if response.content else None

    def get(self, path: str, check: bool = True) -> Any:
        return self._call("GET", path, check)

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Start a DAG run now; returns its run id."""
        body = {"logical_date": None, "conf": conf}
        run = self._call("POST", f"/dags/{dag_id}/dagRuns", json=body)
        return str(run["dag_run_id"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        ti: dict[str, Any] = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        return ti

    def wait_for_task(
        self, dag_id: str, run_id: str, task_id: str, state: str, try_number: int | None = None
    ) -> dict[str, Any]:
        """Wait until the task instance is in `state` (at `try_number`, if given)."""
        found: dict[str, Any] = {}

        def reached() -> bool:
            found.update(self.task_instance(dag_id, run_id, task_id))
            return found["state"] == state and try_number in (None, found["try_number"])

        self.wait(
            reached,
            f"{dag_id}/{run_id}/{task_id} to be {state} (try {try_number})",
            lambda: f"last seen: state {found.get('state')}, try {found.get('try_number')}",
        )
        return found

    def clear(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Clear a task instance, as the UI's Clear button does."""
        self._call(
            "POST",
            f"/dags/{dag_id}/clearTaskInstances",
            json={
                "dry_run": False,
                "dag_run_id": run_id,
                "task_ids": [task_id],
                "only_failed": False,
                "reset_dag_runs": True,
            },
        )

    def mark_failed(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Set a task instance's state to failed, as the UI's Mark as failed does."""
        self._call(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
            json={"new_state": "failed"},
        )

    def state_store(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """The task instance's task state store: key -> value."""
        found = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/state-store")
        return {entry["key"]: entry["value"] for entry in found["task_state_store"]}

    # --- waiting --------------------------------------------------------------------------

    def wait(
        self,
        condition: Callable[[], bool],
        what: str,
        detail: Callable[[], str] = lambda: "",
        timeout: float = TIMEOUT,
    ) -> None:
        """Poll `condition` until it holds; after `timeout` s fail with the components' logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        raise AssertionError(f"waited {timeout:.0f}s for {what}; {detail()}\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        """The tails of the components' logs and of the newest task logs."""
        parts = [f"--- {name} ---\n{_tail(self.home / f'{name}.log')}" for name in self.procs]
        task_logs = sorted(
            (self.home / "logs").glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime
        )
        parts += [f"--- {p.relative_to(self.home)} ---\n{_tail(p, 30)}" for p in task_logs[-2:]]
        return "\n".join(parts)


@contextlib.contextmanager
def live_airflow(dag_ids: list[str]) -> Iterator[LiveAirflow]:
    """The components, started and (whatever happens) stopped and removed."""
    airflow = LiveAirflow(Path(tempfile.mkdtemp(prefix="dotflow-live-airflow-")))
    try:
        airflow.start(dag_ids)
        yield airflow
    finally:
        airflow.stop()
