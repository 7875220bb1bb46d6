"""Worker processes die with their runner: nothing it started keeps running after a SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .orphan_target import STEPS
from .procs import ROOT, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the process tree from /proc"
)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every running process, from /proc (a zombie has exited: only its
    exit status waits for a parent, which in a container may never collect it)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if state not in ("Z", "X"):
            found[int(entry.name)] = int(ppid)
    return found


def _descendants(pid: int) -> set[int]:
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


@pytest.mark.parametrize("mode", ["parallel", "process"])
def test_every_process_of_a_killed_runner_exits(mode: str, tmp_path: Path) -> None:
    runner = subprocess.Popen(
        [sys.executable, "-m", "tests.core.orphan_target", mode, str(tmp_path)], cwd=ROOT
    )
    try:
        for n in range(STEPS[mode]):
            wait_for(tmp_path / f"pid-{n}")
        workers = {int((tmp_path / f"pid-{n}").read_text()) for n in range(STEPS[mode])}
        # every process the runner started, the workers and multiprocessing's resource tracker
        started = _descendants(runner.pid)
        assert workers <= started
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(30)
    deadline = time.monotonic() + 30  # a bound, not a speed: they go within moments
    while alive := started & set(_parents()):
        if time.monotonic() > deadline:
            for pid in alive:  # do not leave them hanging for minutes after a failure
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            pytest.fail(f"still running 30 s after their runner died: {sorted(alive)}")
        time.sleep(0.1)


_WATCHED_CHILD = """
import os, pathlib, sys
from dotflow_providers._lifeline import _watch
temp = pathlib.Path(sys.argv[1] + ".tmp")
temp.write_text(str(os.getpid()))
temp.rename(sys.argv[1])
_watch(os.getppid())
"""
_MIDDLE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
time.sleep(300)
"""


def test_the_watchdog_used_off_linux_ends_a_child_whose_parent_died(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    middle = subprocess.Popen(
        [sys.executable, "-c", _MIDDLE, _WATCHED_CHILD, str(pid_file)], cwd=ROOT
    )
    try:
        wait_for(pid_file)
        child = int(pid_file.read_text())
    finally:
        middle.send_signal(signal.SIGKILL)
        middle.wait(30)
    deadline = time.monotonic() + 30
    while child in _parents():
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the watched child kept running 30 s after its parent died")
        time.sleep(0.1)
