"""Where a no-op step's CPU instructions go, function by function: python bench/breakdown.py

For each target function, a callgrind run counts the instructions spent inside it (callees
included) while a warmed-up engine runs N no-op steps on MemoryStore with its lease on; the
table gives them per step. To count one function, it is replaced by a wrapper that calls it
through `operator.call`, a C function nothing else calls, and callgrind collects only inside
that (`--toggle-collect=_operator_call`): the count is exact and the same on a busy machine.

Targets are `label=module:attribute.path`; the defaults name today's engine internals, so pass
your own with `--target` after they move (a target that no longer exists is reported, not
fatal). A function imported by name into another module is patched where it is called from.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import operator
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

DEFAULT_TARGETS = [
    "whole sample (add + start)=cases:Engine.sample",
    "Workflow.add=dotflow_providers._workflow:Workflow.add",
    "Workflow.start=dotflow_providers._workflow:Workflow.start",
    "Workflow._prepare (once per run)=dotflow_providers._workflow:Workflow._prepare",
    "Lease.acquire (once per run)=dotflow_providers._lease:Lease.acquire",
    "Lease.release (once per run)=dotflow_providers._lease:Lease.release",
    "Execution.run_step=dotflow_providers._strategies:Execution.run_step",
    "TaskEngine.__init__=dotflow_providers._engine:TaskEngine.__init__",
    "TaskEngine.execute_with_retry=dotflow_providers._engine:TaskEngine.execute_with_retry",
    "Journal.commit=dotflow_providers._journal:Journal.commit",
    "step_document (encode, as called by commit)=dotflow_providers._journal:step_document",
    "MemoryStore.put=dotflow_providers.storage._memory:MemoryStore.put",
]


def resolve(spec: str) -> tuple[Any, str]:
    """The object holding the target and the target's attribute name."""
    module_name, _, path = spec.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    getattr(owner, name)  # AttributeError: the target has moved
    return owner, name


def child(spec: str, n: int) -> None:
    """Warm the engine up, wrap the target, run n steps (under callgrind, from `main`)."""
    sys.path.insert(0, str(BENCH))
    import cases

    engine = cases.Engine()
    engine.sample(200)
    owner, name = resolve(spec)
    original = getattr(owner, name)

    @functools.wraps(original)
    def counted(*args: Any, **kwargs: Any) -> Any:
        return operator.call(original, *args, **kwargs)

    setattr(owner, name, counted)
    engine.sample(n)


def total(path: Path) -> int:
    match = re.search(r"^(?:summary|totals):\s*(\d+)", path.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--target", action="append", help="label=module:attr.path (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dotflow-breakdown"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    targets = [t.split("=", 1) for t in (args.target or DEFAULT_TARGETS)]
    args.out.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": path}
    jobs: list[tuple[str, str, Path, subprocess.Popen[bytes]]] = []
    results: list[tuple[str, str, str]] = []
    pending = list(enumerate(targets))
    while pending or jobs:  # instruction counts do not depend on load: share the cores
        while pending and len(jobs) < (os.cpu_count() or 1):
            i, (label, spec) = pending.pop(0)
            out = args.out / f"target-{i}.out"
            cmd = [
                "valgrind", "--tool=callgrind", "--collect-atstart=no",
                "--toggle-collect=_operator_call", f"--callgrind-out-file={out}",
                sys.executable, __file__, "--child", spec, "--steps", str(args.steps),
            ]  # fmt: skip
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            jobs.append((label, spec, out, proc))
        label, spec, out, proc = jobs.pop(0)
        _, err = proc.communicate()
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
            results.append((label, spec, f"not measured: {reason[0]}"))
        else:
            results.append((label, spec, f"{total(out) / args.steps:,.0f}"))
    print(f"Instructions per no-op step, inclusive, {args.steps:,} steps (MemoryStore, lease on)")
    print("| function | target | instructions per step |\n|---|---|---|")
    for label, spec, value in results:
        print(f"| {label} | `{spec}` | {value} |")
    print(f"\ncallgrind files: {args.out} (callgrind_annotate --inclusive=yes FILE)")


if __name__ == "__main__":
    main()
