"""A runner whose steps hang in child processes: python -m tests.core.orphan_target MODE DIR.

`parallel` runs three steps in parallel mode's worker pool; `process` runs one step with a
process timeout. Every step writes its pid to DIR, then hangs until the test kills the runner.
"""

from __future__ import annotations

import sys

from dotflow_providers import Workflow

from .steps import records_pid_then_hangs, records_pid_then_hangs_in_process

STEPS = {"parallel": 3, "process": 1}


def main() -> None:
    mode, folder = sys.argv[1], sys.argv[2]
    step = records_pid_then_hangs if mode == "parallel" else records_pid_then_hangs_in_process
    wf = Workflow()
    for n in range(STEPS[mode]):
        wf.add(step, name=f"hang{n}", initial_context={"dir": folder, "n": n})
    wf.start(mode="parallel" if mode == "parallel" else "sequential", max_workers=STEPS[mode])


if __name__ == "__main__":
    main()
