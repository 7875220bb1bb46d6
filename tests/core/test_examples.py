"""The examples run as a newcomer would run them, and do what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


def test_resume_example_fails_once_then_resumes_in_a_new_process() -> None:
    out = run_example("resume_after_failure.py")
    first, _, second = out.partition("starting again in a new process")
    assert "extract   reading sales" in first
    assert "extract" not in second.split("second run")[0]  # restored, not re-run
    assert "loaded 100 rows" in second


def test_staged_example_rolls_everything_back() -> None:
    out = run_example("staged_job.py")
    assert "publish rollback removed partial published.csv" in out
    assert out.index("publish rollback") < out.index("transform rollback")
    assert out.index("transform rollback") < out.index("download rollback")
    assert "files left: []" in out
