"""The task log a user reads (captured from real dag.test() runs): what each try restored,
warnings for lease takeovers and interrupted steps, one line per final failure, no `extra`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .test_operator import work

__all__ = ["work"]

#: one log record: Airflow's console renderer starts each with an ISO timestamp
RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\S+ \[(\w+)\s*\] (.*)$")


def records(text: str) -> list[tuple[str, str]]:
    """(level, rest of the line) of every record; traceback lines are not records."""
    return [(m[1], m[2]) for line in text.splitlines() if (m := RECORD.match(line))]


def dotflow_lines(text: str) -> list[tuple[str, str]]:
    return [(level, line) for level, line in records(text) if line.startswith("dotflow: ")]


def test_each_try_starts_by_saying_what_it_restored_and_a_failure_is_one_line(
    work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from dotflow_dags import resume

    (work / "fail-load").touch()
    dag_run = resume.test()
    assert dag_run.state == "success"
    text = capfd.readouterr().out
    lines = dotflow_lines(text)
    firsts = [
        i
        for i, (_, line) in enumerate(lines)
        if line.startswith(("dotflow: starting:", "dotflow: resuming:"))
    ]
    assert len(firsts) == 2  # one per try
    assert lines[0][1].startswith(
        "dotflow: starting: 3 steps, checkpoints in airflow-task-state://"
    )
    assert "try 1" in lines[0][1]
    second = lines[firsts[1]][1]
    assert second.startswith("dotflow: resuming: 2 of 3 steps restored from airflow-task-state://")
    assert "try 2" in second
    # the step's error is on exactly one record (its traceback below it), at ERROR
    failure = [(level, line) for level, line in records(text) if "upstream unavailable" in line]
    assert failure == [("error", failure[0][1])]
    assert failure[0][1].startswith("dotflow: step load failed after 1 attempt(s)")
    # Airflow's own record of the failed try points at it instead of repeating it
    assert any("its error is logged above" in line for line in text.splitlines())
    # fields render as key=value, never as a raw dict
    assert "extra={" not in text
    assert "step=load" in failure[0][1]


def test_a_lease_takeover_and_an_interrupted_step_are_warnings_in_the_task_log(
    work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from dotflow_dags import CHECKPOINT_URL, takeover

    key = uuid.uuid4().hex[:8]
    (work / "hang").touch()
    # a real runner of the same workflow, killed in its second step: its lease stays behind
    code = (
        "import dotflow_dags\n"
        f"dotflow_dags.takeover_workflow().copy(workflow_id='takeover-{key}', "
        f"store='{CHECKPOINT_URL}').start()\n"
    )
    dags = Path(__file__).parent / "dags"
    path = os.pathsep.join([str(dags), str(dags.parents[2]), os.environ.get("PYTHONPATH", "")])
    runner = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path})
    try:
        deadline = time.monotonic() + 120
        while not (work / "hanging").exists():
            assert runner.poll() is None, "the runner exited before its second step"
            assert time.monotonic() < deadline, "the runner never reached its second step"
            time.sleep(0.1)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    (work / "hang").unlink()
    dag_run = takeover.test(run_conf={"key": key})
    assert dag_run.state == "success"
    lines = dotflow_lines(capfd.readouterr().out)
    assert lines[0][1].startswith("dotflow: resuming: 1 of 2 steps restored from file://")
    warnings = [line for level, line in lines if level == "warning"]
    assert any("took over the lease" in line for line in warnings), lines
    assert any("step hang was running when the previous runner died" in line for line in warnings)
