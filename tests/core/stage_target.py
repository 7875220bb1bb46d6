"""Staged tasks used by the stage tests, in-process and as a separate runner process:
python -m tests.core.stage_target --store URL --dir DIR [--hang-in transform] [--compensate] ..."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pydantic

from dotflow_providers import DotflowError, LeaseConfig, Stage, Workflow, store_from_url


def command(folder: Path, *extra: str) -> list[str]:
    """The command line that runs this module as a runner process on `folder`'s store."""
    store = f"file://{folder / 'store'}"
    return [
        sys.executable,
        "-m",
        "tests.core.stage_target",
        "--store",
        store,
        "--dir",
        str(folder),
        *extra,
    ]


class JobState(pydantic.BaseModel):
    rows: list[int] = []
    written: list[str] = []
    published: bool = False


def note(folder: Path, line: str) -> None:
    with (folder / "events.log").open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


class Recording(Stage[JobState]):
    """Logs execute/rollback/cancel to <folder>/events.log; can fail or hang on purpose."""

    folder: str
    fail: bool = False
    fail_rollback: bool = False
    hang: bool = False

    def execute(self, state: JobState) -> None:
        folder = Path(self.folder)
        note(folder, f"execute {self.name} pid={os.getpid()}")
        state.written.append(self.name)  # partial work, visible to rollback
        if self.hang and (folder / "arm").exists():
            (folder / "ready").write_text(self.name)
            deadline = time.monotonic() + 60
            while not self.cancelled and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.cancelled:
                note(folder, f"stopped {self.name}")
                return
        if self.fail:
            raise RuntimeError(f"{self.name} broke after partial work")
        state.rows.append(len(state.rows) + 1)

    def rollback(self, state: JobState, error: BaseException) -> None:
        note(Path(self.folder), f"rollback {self.name} written={state.written} error={error}")
        if self.fail_rollback:
            raise OSError(f"could not undo {self.name}")

    def cancel(self, state: JobState) -> None:
        note(Path(self.folder), f"cancel {self.name}")
        (Path(self.folder) / "cancel-hook-at").write_text(repr(time.time()))


def build(folder: Path, store: Any, hang_in: str = "", lock_ttl: float = 60) -> Workflow:
    wf = Workflow("staged", store=store, lock=LeaseConfig(ttl=lock_ttl, poll=0.1))
    for name in ("download", "transform", "publish"):
        wf.add(Recording(name=name, folder=str(folder), hang=name == hang_in))
    return wf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--hang-in", default="")
    parser.add_argument("--lock-ttl", type=float, default=60)
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--compensate", action="store_true", help="undo a finished run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    wf = build(args.dir, store_from_url(args.store), args.hang_in, args.lock_ttl)
    if args.compensate:
        print(json.dumps(wf.compensate(initial_context=JobState()).summary()))
        return
    try:
        run = wf.start(initial_context=JobState(), strict_recovery=args.strict)
    except DotflowError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        raise SystemExit(3) from None
    print(json.dumps(run.summary()))


if __name__ == "__main__":
    main()
