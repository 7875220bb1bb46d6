"""The command line, run as a user runs it: `python -m dotflow_providers ...`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
TARGET = str(Path(__file__).parent / "cli_workflow.py") + ":workflow"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dotflow_providers", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_run_then_inspect(tmp_path: Path) -> None:
    store = f"file://{tmp_path}"
    done = cli("run", TARGET, "--store", store, "--context", '{"n": 4}')
    assert done.returncode == 0, done.stderr
    assert "COMPLETED extract (1 attempt(s))" in done.stdout  # plain lines off a terminal
    assert "cli-demo: COMPLETED" in done.stdout
    shown = cli("inspect", "cli-demo", "--store", store, "--json")
    state = json.loads(shown.stdout)
    assert [(s["name"], s["status"]) for s in state["steps"]] == [
        ("extract", "COMPLETED"),
        ("load", "COMPLETED"),
    ]
    table = cli("inspect", "cli-demo", "--store", store)
    assert "extract" in table.stdout
    assert "COMPLETED" in table.stdout


def test_failure_exit_code_last_error_and_resume(tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'ckpt'}"
    flag = tmp_path / "down"
    flag.touch()
    failed = cli(
        "run",
        TARGET,
        "--store",
        store,
        "--context",
        '{"n": 3}',
        env={"DOTFLOW_CLI_FAIL": str(flag)},
    )
    assert failed.returncode == 1
    assert "cli-demo: FAILED" in failed.stdout
    state = json.loads(cli("inspect", "cli-demo", "--store", store, "--json").stdout)
    assert state["steps"][1]["status"] == "FAILED"
    assert state["steps"][1]["attempts"] == 2
    assert state["steps"][1]["error"] == "ConnectionError: warehouse down"
    flag.unlink()
    resumed = cli(
        "run", TARGET, "--store", store, "--context", '{"n": 3}', "--workflow-id", "cli-demo"
    )
    assert resumed.returncode == 0
    assert "COMPLETED extract" not in resumed.stdout  # restored, not run again
    assert "COMPLETED load" in resumed.stdout


def test_cancel_of_an_idle_id_fails_block_refuses_starts_until_reset(tmp_path: Path) -> None:
    store = f"file://{tmp_path}"
    assert cli("run", TARGET, "--store", store, "--context", '{"n": 1}').returncode == 0
    idle = cli("cancel", "cli-demo", "--store", store)
    assert idle.returncode == 2
    assert "NotRunning" in idle.stderr
    assert "--block" in idle.stderr
    assert cli("cancel", "cli-demo", "--store", store, "--block").returncode == 0
    refused = cli("run", TARGET, "--store", store, "--context", '{"n": 1}')
    assert refused.returncode == 3
    assert "dotflow-providers reset cli-demo" in refused.stderr
    reset = cli("reset", "cli-demo", "--store", store)
    assert reset.returncode == 0, reset.stderr
    assert "removed the checkpoints of cli-demo" in reset.stdout
    gone = cli("inspect", "cli-demo", "--store", store)
    assert gone.returncode == 2
    assert "no checkpoints" in gone.stdout
    assert cli("run", TARGET, "--store", store, "--context", '{"n": 1}').returncode == 0


def test_list_and_clean_older_than(tmp_path: Path) -> None:
    store = f"file://{tmp_path}"
    for workflow_id in ("a/one", "a/two"):
        ran = cli(
            "run", TARGET, "--store", store, "--workflow-id", workflow_id, "--context", '{"n": 1}'
        )
        assert ran.returncode == 0, ran.stderr
    listed = json.loads(cli("list", "--store", store, "--json").stdout)
    assert [(w["workflow_id"], w["status"], w["steps_done"]) for w in listed] == [
        ("a/one", "completed", 2),
        ("a/two", "completed", 2),
    ]
    assert "a/one" in cli("list", "--store", store).stdout
    kept = cli("clean", "--older-than", "1d", "--store", store)
    assert kept.returncode == 0
    assert "removed 0 workflow(s)" in kept.stdout
    removed = cli("clean", "--older-than", "0s", "--store", store)
    assert "removed 2 workflow(s)" in removed.stdout
    assert json.loads(cli("list", "--store", store, "--json").stdout) == []
    assert cli("clean", "--older-than", "soon", "--store", store).returncode == 2


def test_rerun_from_and_on_change(tmp_path: Path) -> None:
    store = f"file://{tmp_path}"
    assert cli("run", TARGET, "--store", store, "--context", '{"n": 2}').returncode == 0
    again = cli("run", TARGET, "--store", store, "--context", '{"n": 2}', "--rerun-from", "load")
    assert again.returncode == 0
    assert "COMPLETED extract" not in again.stdout
    assert "COMPLETED load" in again.stdout
    changed = cli(
        "run",
        TARGET,
        "--store",
        store,
        "--context",
        '{"n": 5}',
        "--workflow-id",
        "cli-demo",
        "--on-change",
        "raise",
    )
    assert changed.returncode == 2
    assert "InputChanged" in changed.stderr
    choices = cli("run", "--help").stdout
    assert "sequential_group" in choices
    assert "rerun,raise,reuse" in choices.replace(" ", "")


def test_bad_input_is_one_line_without_traceback_unless_debug(tmp_path: Path) -> None:
    bad = cli("run", "no_such_module:workflow", "--store", f"file://{tmp_path}")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "ConfigurationError" in bad.stderr
    assert "Traceback" not in bad.stderr
    debug = cli("--debug", "run", "no_such_module:workflow")
    assert "Traceback" in debug.stderr
    url = cli("inspect", "x", "--store", "ftp://nowhere")
    assert url.returncode == 2
    assert "UnknownStoreURL" in url.stderr
    context = cli("run", TARGET, "--context", "{not json")
    assert context.returncode == 2


def test_live_table_on_a_terminal(tmp_path: Path) -> None:
    shown = cli(
        "run",
        TARGET,
        "--store",
        f"file://{tmp_path}",
        "--context",
        '{"n": 2}',
        env={"TTY_COMPATIBLE": "1", "COLUMNS": "120"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "┃ step" in shown.stdout or "step" in shown.stdout
    assert "load" in shown.stdout
    assert "COMPLETED extract (1 attempt(s))" not in shown.stdout  # the table, not log lines


def test_console_script_is_installed() -> None:
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["dotflow-providers"] == "dotflow_providers.cli:main"


def test_inspect_into_a_closed_pipe_prints_no_traceback(tmp_path: Path) -> None:
    store = f"file://{tmp_path}"
    assert cli("run", TARGET, "--store", store, "--context", '{"n": 1}').returncode == 0
    command = f"{sys.executable} -m dotflow_providers inspect cli-demo --store {store} --json"
    piped = subprocess.run(
        f"{command} | head -c 5",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert piped.stdout == '{\n  "'
    assert "Traceback" not in piped.stderr
    assert "BrokenPipe" not in piped.stderr


def test_each_retry_is_printed_once(tmp_path: Path) -> None:
    flag = tmp_path / "down"
    flag.touch()
    failed = cli(
        "run",
        TARGET,
        "--store",
        f"file://{tmp_path / 'ckpt'}",
        "--context",
        '{"n": 3}',
        env={"DOTFLOW_CLI_FAIL": str(flag)},
    )
    assert failed.returncode == 1
    printed = failed.stdout + failed.stderr
    assert printed.count("warehouse down (in ") == 1  # the step line, not also a log line


def test_async_modes_and_lease_settings(tmp_path: Path) -> None:
    store = f"file://{tmp_path}"
    done = cli(
        "run", TARGET, "--store", store, "--context", '{"n": 2}', "--mode", "async_sequential"
    )
    assert done.returncode == 0, done.stderr
    bad = cli("run", TARGET, "--store", store, "--lease-ttl", "0")
    assert bad.returncode == 2
    assert "ttl" in bad.stderr
    waited = cli(
        "run",
        TARGET,
        "--store",
        store,
        "--context",
        '{"n": 2}',
        "--lease-ttl",
        "30",
        "--lease-wait",
        "1",
    )
    assert waited.returncode == 0, waited.stderr


def test_clean_with_an_id_still_resets_and_names_reset(tmp_path: Path) -> None:
    store = f"file://{tmp_path}"
    assert cli("run", TARGET, "--store", store, "--context", '{"n": 1}').returncode == 0
    old = cli("clean", "cli-demo", "--store", store)
    assert old.returncode == 0, old.stderr
    assert "deprecated" in old.stderr
    assert f"dotflow-providers reset cli-demo --store {store}" in old.stderr
    assert "no checkpoints" in cli("inspect", "cli-demo", "--store", store).stdout


def test_clean_is_housekeeping_and_reset_is_one_workflow_in_the_help() -> None:
    shown = cli("--help").stdout
    assert "reset" in shown
    assert "clean" in shown
    assert "workflow_id" not in cli("clean", "--help").stdout  # the deprecated form is hidden
    bare = cli("clean", "--store", "memory://")
    assert bare.returncode == 2
    assert "--older-than" in bare.stderr
    assert "dotflow-providers reset WORKFLOW_ID" in bare.stderr
