"""What every fault case shares: runner processes in their own process groups, the side-effect
log, snapshots of what a store holds, and the campaign's figures.

Every figure is read from observed state: the bytes in the store and the lines the steps wrote,
never from what a runner says about itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dotflow_providers import CheckpointStore, DotflowError
from dotflow_providers._format import Layout, load_manifest, load_step

ROOT = Path(__file__).parents[2]

#: The campaign's counters, printed at the end of the session by conftest.py.
FIGURES: Counter[str] = Counter()


def campaign_seed() -> int:
    """The seed of this session: $DOTFLOW_FAULT_SEED replays one, else a new one (printed)."""
    value = os.environ.get("DOTFLOW_FAULT_SEED")
    if value is None:
        value = str(random.SystemRandom().randrange(1 << 30))
        os.environ["DOTFLOW_FAULT_SEED"] = value  # the same for every case of this session
    return int(value)


def case_rng(*parts: object) -> random.Random:
    """A generator for one case, derived from the session seed and the case's name."""
    return random.Random(":".join([str(campaign_seed()), *map(str, parts)]))


class Children:
    """Runner processes, each the leader of its own process group (parallel mode's workers
    join it), so a kill, a stop or the final cleanup reaches every process of a runner."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        with (
            (self.folder / f"{name}.out").open("wb") as out,
            (self.folder / f"{name}.err").open("wb") as err,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def spawn_piped(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """A runner that reads commands on stdin and answers on stdout (see `read_answer`)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.folder / f"piped-{len(self.procs)}.err").open("wb"),
            start_new_session=True,
            bufsize=0,
        )
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes], name: str) -> tuple[str, str]:
        return (
            (self.folder / f"{name}.out").read_text(),
            (self.folder / f"{name}.err").read_text(),
        )

    @staticmethod
    def signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """SIGSTOP the runner's whole group and wait until every process of it has stopped:
        `killpg` returns before the signal takes effect, and a runner keeps going until then."""
        self.signal_group(proc, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not all(state in ("T", "t") for state in group_states(proc.pid).values()):
            assert time.monotonic() < deadline, f"group {proc.pid} did not stop"
            time.sleep(0.001)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the runner and every process of its group, and reap the runner."""
        self.signal_group(proc, signal.SIGKILL)
        proc.wait(30)

    def close(self) -> None:
        for proc in self.procs:
            self.signal_group(proc, signal.SIGKILL)  # stopped processes die of SIGKILL too
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)


def read_answer(proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """One line from a piped runner, waiting at most `timeout` seconds for it."""
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, remaining))
        if not ready:
            raise AssertionError(f"runner {proc.pid} gave no answer within {timeout}s")
        chunk = os.read(proc.stdout.fileno(), 1)  # byte by byte: never read past the line
        if not chunk:
            raise AssertionError(f"runner {proc.pid} exited ({proc.poll()}) without answering")
        line += chunk
    return line.decode().strip()


def group_states(pgid: int) -> dict[int, str]:
    """The scheduler state (R, S, T, ...) of every live process in process group `pgid`."""
    states = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ")"
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            states[int(entry.name)] = fields[0]
    return states


@contextlib.contextmanager
def children(folder: Path) -> Iterator[Children]:
    group = Children(folder)
    try:
        yield group
    finally:
        group.close()


@dataclasses.dataclass(frozen=True)
class LogLine:
    round: int
    pid: int
    kind: str  # "boot" or "start"
    index: int


def read_log(path: Path) -> list[LogLine]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        round_seen, pid, kind, index = line.split()
        found.append(LogLine(int(round_seen), int(pid), kind, int(index)))
    return found


def wait_for_line(
    path: Path, proc: subprocess.Popen[bytes], round_number: int, kind: str, timeout: float = 60
) -> bool:
    """Wait until a process of this round (the runner or one of its workers) logs a `kind`
    line; False if the runner exits first."""
    pattern = re.compile(rf"^{round_number} \d+ {kind} ", re.MULTILINE)
    deadline = time.monotonic() + timeout
    seen = 0  # the log only grows: search only what was appended since the last look
    while proc.poll() is None:
        if path.exists():
            with path.open("rb") as f:
                f.seek(max(0, seen - 64))
                chunk = f.read().decode()
            if pattern.search(chunk):
                return True
            seen += len(chunk.encode()) - min(seen, 64)
        if time.monotonic() > deadline:
            raise AssertionError(f"runner {proc.pid} logged no {kind!r} within {timeout}s")
        time.sleep(0.002)
    return path.exists() and pattern.search(path.read_text()) is not None


@dataclasses.dataclass
class Snapshot:
    """What a workflow's namespace holds: step key -> bytes, and the keys that do not load."""

    steps: dict[str, bytes]
    corrupt: set[str]
    outputs: dict[str, Any]


def snapshot(store: CheckpointStore, workflow_id: str) -> Snapshot:
    layout = Layout(workflow_id)
    steps: dict[str, bytes] = {}
    corrupt: set[str] = set()
    outputs: dict[str, Any] = {}
    for key in store.list(layout.steps):
        data = store.get(key)
        if data is None:
            continue  # deleted between the listing and the read (nobody runs now: never)
        steps[key] = data
        try:
            outputs[key] = load_step(key, data).output()
        except DotflowError:
            corrupt.add(key)
    manifest = store.get(layout.manifest)
    if manifest is not None:
        try:
            load_manifest(layout.manifest, manifest)
        except DotflowError:
            corrupt.add(layout.manifest)
    return Snapshot(steps, corrupt, outputs)


def step_index(key: str) -> int:
    """The index of step `s012` from its key (`.../steps/s012.json`)."""
    return int(key.rsplit("/", 1)[1].removeprefix("s").removesuffix(".json"))


def starts_by_step(lines: list[LogLine]) -> dict[int, list[LogLine]]:
    found: dict[int, list[LogLine]] = defaultdict(list)
    for line in lines:
        if line.kind == "start":
            found[line.index].append(line)
    return found


def last_json(text: str) -> dict[str, Any]:
    lines = text.strip().splitlines()
    assert lines, "the runner printed nothing"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def target_args(store_url: str, workflow_id: str, mode: str, steps: int, *extra: str) -> list[str]:
    return [
        "tests.faults.target",
        "--store",
        store_url,
        "--workflow-id",
        workflow_id,
        "--mode",
        mode,
        "--steps",
        str(steps),
        *extra,
    ]


def run_to_end(
    group: Children,
    args: list[str],
    env: dict[str, str],
    name: str,
    timeout: float = 120,
) -> dict[str, Any]:
    """Run a runner uninterrupted (bounded by `timeout`) and return what it printed."""
    proc = group.spawn(args, env, name)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        group.kill(proc)
        raise AssertionError(f"{name} did not finish within {timeout}s") from None
    out, err = group.output(proc, name)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}: {out}\n{err[-3000:]}"
    return last_json(out)
