"""Benchmarks, measured side by side in one run and printed as ratios: python bench/run.py

Not a test: numbers depend on the machine. Each case is repeated and the best run is kept,
which is the least disturbed by other work on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tenacity
from rich.console import Console
from rich.table import Table

from dotflow_providers import FileStore, Workflow, action
from dotflow_providers._checkpoint import step_document


def noop() -> None:
    return None


def best_of(repeat: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(repeat))


def bare_call(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        noop()
    return (time.perf_counter() - t0) / n


def tenacity_call(n: int) -> float:
    wrapped = tenacity.retry(stop=tenacity.stop_after_attempt(3))(noop)
    t0 = time.perf_counter()
    for _ in range(n):
        wrapped()
    return (time.perf_counter() - t0) / n


def engine_step(n: int) -> float:
    step = action(noop)
    wf = Workflow(f"bench-{time.perf_counter_ns()}")
    for i in range(n):
        wf.add(step, name=f"s{i}")
    t0 = time.perf_counter()
    run = wf.start()
    elapsed = time.perf_counter() - t0
    assert run.status.value == "COMPLETED"
    return elapsed / n


@action
async def nap() -> None:
    await asyncio.sleep(0.01)


def async_fan_out(n: int) -> float:
    """n steps that each sleep 10 ms, all awaited in one event loop."""
    wf = Workflow(f"fan-{time.perf_counter_ns()}")
    for i in range(n):
        wf.add(nap, name=f"nap{i}")

    async def main() -> float:
        t0 = time.perf_counter()
        run = await wf.start_async(mode="async_parallel", max_concurrency=n)
        assert run.status.value == "COMPLETED"
        return time.perf_counter() - t0

    return asyncio.run(main())


def loop_per_step(n: int, threads: int) -> float:
    """The same steps under the sync engine: one asyncio.run per step, 32 threads at a time."""
    wf = Workflow(f"loops-{time.perf_counter_ns()}")
    for i in range(n):
        wf.add(nap, name=f"nap{i}", group=f"g{i}")
    t0 = time.perf_counter()
    run = wf.start(mode="sequential_group", max_workers=threads)
    assert run.status.value == "COMPLETED"
    return time.perf_counter() - t0


def raw_atomic_write(directory: str, data: bytes, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fd, tmp = tempfile.mkstemp(dir=directory)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, os.path.join(directory, f"raw-{i}.json"))
        dfd = os.open(directory, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    return (time.perf_counter() - t0) / n


def store_commit(store: FileStore, data: bytes, n: int, tag: str) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        store.put(f"wf/steps/{tag}-{i:05d}.json", data, if_none_match=True)
    return (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--fan-out", type=int, default=5000)
    args = parser.parse_args()
    console = Console()

    bare = best_of(args.repeat, lambda: bare_call(args.steps))
    engine = best_of(args.repeat, lambda: engine_step(args.steps))
    wrapped = best_of(args.repeat, lambda: tenacity_call(args.steps))

    doc = step_document("bench", 1, "load", 1, time.time(), time.time(), {"rows": list(range(50))})
    raws, commits = [], []
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        store = FileStore(Path(tmp) / "store")
        raw_dir = Path(tmp) / "raw"
        raw_dir.mkdir()
        for rep in range(args.repeat):  # interleaved, so both see the same disk conditions
            raws.append(raw_atomic_write(str(raw_dir), doc, args.writes))
            commits.append(store_commit(store, doc, args.writes, f"r{rep}"))
    raw, commit = statistics.median(raws), statistics.median(commits)
    fan = best_of(3, lambda: async_fan_out(args.fan_out))
    loops = loop_per_step(args.fan_out, 32)

    table = Table(
        title=f"dotflow-providers benchmarks ({platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()})"
    )
    for column in ("case", "per call", "baseline", "ratio"):
        table.add_column(column, justify="right" if column != "case" else "left")
    us = 1e6
    table.add_row(
        "engine per no-op step (MemoryStore)",
        f"{engine * us:.2f} µs",
        f"bare call {bare * us:.3f} µs",
        f"{engine / bare:.0f}x",
    )
    table.add_row(
        "engine overhead per step",
        f"{(engine - bare) * us:.2f} µs",
        "target 5 µs",
        f"{(engine - bare) / 5e-6:.2f} of target",
    )
    table.add_row(
        "tenacity-wrapped no-op call",
        f"{wrapped * us:.2f} µs",
        f"engine step {engine * us:.2f} µs",
        f"{wrapped / engine:.2f}x the engine",
    )
    table.add_row(
        f"FileStore durable commit ({len(doc)} B)",
        f"{commit * us:.0f} µs",
        f"raw fsync'd atomic write {raw * us:.0f} µs",
        f"{commit / raw:.2f}x",
    )
    table.add_row(
        f"async fan-out: {args.fan_out} steps x sleep(10 ms), one loop",
        f"{fan:.3f} s",
        "ideal 0.010 s",
        f"{fan / 0.01:.1f}x ideal (target < 0.5 s)",
    )
    table.add_row(
        "same steps, one event loop per step (32 threads)",
        f"{loops:.3f} s",
        f"one loop {fan:.3f} s",
        f"{loops / fan:.1f}x slower",
    )
    console.print(table)


if __name__ == "__main__":
    main()
