"""Benchmarks, each comparison side by side in one run: python bench/run.py [--quick]

Not a test: times depend on the machine. Every timed candidate runs in a worker process of its
own (`bench/cases.py serve`) and the candidates of a group take turns, A, B, C, A, B, C, ...,
so that they share the machine's quiet and busy moments; the tables give the median of the
rounds and their interquartile range. The headline figure is the CPU instruction count per
no-op step under callgrind, which other work on the machine does not move. The results are
printed and written to bench/RESULTS.md; the per-step chart to bench/results/overhead.png.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CASES = str(BENCH / "cases.py")
DOTFLOW_VERSION = "1.0.1"


@dataclass
class Sizes:
    """How much each group does: the full run, or `--quick`."""

    noop_steps: int = 1000
    noop_rounds: int = 31
    durable_steps: int = 20
    durable_rounds: int = 21
    resume_sizes: tuple[int, ...] = (100, 1000)
    resume_rounds: int = 11
    curve_sizes: tuple[int, ...] = (1, 10, 100, 1000, 10_000, 100_000)
    curve_rounds: int = 7
    fan_out: int = 5000
    fan_out_rounds: int = 11
    s3_steps: int = 100
    callgrind_sizes: tuple[int, ...] = (500, 2000)


QUICK = Sizes(
    noop_rounds=9,
    durable_rounds=7,
    resume_rounds=3,
    curve_rounds=3,
    fan_out_rounds=3,
    callgrind_sizes=(200, 800),
)
GROUPS = ("instructions", "noop", "durable", "resume", "curve", "fanout", "s3")


# --- statistics and worker processes


@dataclass
class Stats:
    """Median and interquartile range of one candidate's samples (seconds per unit)."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def iqr(self) -> tuple[float, float]:
        if len(self.samples) < 2:
            return self.samples[0], self.samples[0]
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q1, q3


class Worker:
    """A `cases.py serve` process (under a given Python) answering one sample per request."""

    def __init__(self, python: str, log: IO[str]) -> None:
        self.proc = subprocess.Popen(
            [python, CASES, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )

    def ask(self, case: str, n: int, arg: str | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"case": case, "n": n, "arg": arg}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {case!r} worker died: see {Bench.log_path}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def seconds(self, case: str, n: int, arg: str | None = None) -> float:
        return float(self.ask(case, n, arg)["seconds"])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Candidate:
    """One contender in a group: `sample()` returns seconds for `per` units of work."""

    label: str
    sample: Callable[[], float]
    per: int = 1


def interleave(candidates: list[Candidate], rounds: int) -> dict[str, Stats]:
    """One untimed warm-up round, then `rounds` rounds of A, B, C, ... in turn."""
    for c in candidates:
        c.sample()
    samples: dict[str, list[float]] = {c.label: [] for c in candidates}
    for _ in range(rounds):
        for c in candidates:
            samples[c.label].append(c.sample() / c.per)
    return {label: Stats(s) for label, s in samples.items()}


# --- formatting


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_stats(stats: Stats) -> tuple[str, str]:
    q1, q3 = stats.iqr
    return fmt_time(stats.median), f"{fmt_time(q1)} to {fmt_time(q3)}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Bench:
    """One run of the suite: its options, worker processes and the Markdown it produces."""

    sizes: Sizes
    dotflow_python: str | None
    tmp: Path
    sections: list[str] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    log_path = Path(tempfile.gettempdir()) / "dotflow-bench-workers.log"

    def __post_init__(self) -> None:
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in close())
        os.environ["BENCH_TMP"] = str(self.tmp)

    def worker(self, python: str = sys.executable) -> Worker:
        w = Worker(python, self.log)
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers.clear()
        self.log.close()

    def timed(
        self, case: str, n: int, arg: str | None = None, python: str = sys.executable
    ) -> Callable[[], float]:
        return functools.partial(self.worker(python).seconds, case, n, arg)

    def emit(self, title: str, text: str) -> None:
        section = f"### {title}\n\n{text}\n"
        print(section, flush=True)
        self.sections.append(section)

    # --- the groups

    def noop_candidates(self) -> list[tuple[str, str, str]]:
        """(label, case, python) of the no-op group; dotflow only if its venv is there."""
        rows = [
            ("bare call `noop()`", "bare", sys.executable),
            ("floor: call + 2 clock reads + `orjson.dumps` + dict write", "floor", sys.executable),
            (
                "dotflow-providers step (`add()` + `start()`, MemoryStore, lease on)",
                "engine",
                sys.executable,
            ),
            ("tenacity-wrapped call", "tenacity", sys.executable),
            ("stamina-wrapped call", "stamina", sys.executable),
        ]
        if self.dotflow_python:
            rows.append(
                (
                    f"dotflow {DOTFLOW_VERSION} step (`task.add()` + `start()`)",
                    "dotflow",
                    self.dotflow_python,
                )
            )
        return rows

    def callgrind(self, python: str, case: str, sizes: Sequence[int]) -> subprocess.Popen[bytes]:
        """Start `cases.py regions` for `case` (`CASE=ARG` for an argument) under callgrind: one
        dump per size, with collection on only inside the measured samples."""
        out = self.tmp / "callgrind"
        out.mkdir(exist_ok=True)
        cmd = [
            "valgrind", "--tool=callgrind", "--collect-atstart=no",
            "--toggle-collect=sys_call_tracing", "--dump-after=sys_call_tracing",
            f"--callgrind-out-file={out / case}.out",
            python, CASES, "regions", case, *map(str, sizes),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self.log, stderr=self.log)

    def callgrind_counts(self, proc: subprocess.Popen[bytes], case: str, n: int) -> list[int]:
        """The instruction counts of a `callgrind` run's `n` samples, once it ended."""
        if proc.wait() != 0:
            raise RuntimeError(f"callgrind run of {case!r} failed: see {self.log_path}")
        out = self.tmp / "callgrind"
        return [_callgrind_total(out / f"{case}.out.{i}") for i in range(1, n + 1)]

    def instructions(self) -> dict[str, float]:
        """Callgrind instructions per no-op step: (I(N) - I(0)) / N for two N, per candidate."""
        if not shutil.which("valgrind"):
            self.emit("Instructions per no-op step (callgrind)", "_valgrind not found: skipped._")
            return {}
        n1, n2 = self.sizes.callgrind_sizes
        jobs: list[tuple[str, str, subprocess.Popen[bytes]]] = []
        pending = self.noop_candidates()
        results: dict[str, tuple[int, int, int]] = {}
        # instruction counts do not depend on the load, so the runs share the cores
        while pending or jobs:
            while pending and len(jobs) < (os.cpu_count() or 1):
                label, case, python = pending.pop(0)
                jobs.append((label, case, self.callgrind(python, case, (0, n1, n2))))
            label, case, proc = jobs.pop(0)
            counts = self.callgrind_counts(proc, case, 3)
            results[label] = (counts[0], counts[1], counts[2])
        rows, per_step = [], {}
        engine = next(lbl for lbl, case, _ in self.noop_candidates() if case == "engine")
        for label, _, _ in self.noop_candidates():
            i0, i1, i2 = results[label]
            per_step[label] = (i2 - i0) / n2
            rows.append(
                [
                    label,
                    f"{per_step[label]:,.0f}",
                    f"{(i1 - i0) / n1:,.0f}",
                    f"{(i2 - i1) / (n2 - n1):,.0f}",
                ]
            )
        for row in rows:
            row.append(f"{per_step[row[0]] / per_step[engine]:.3g}x")
        self.emit(
            "Instructions per no-op step (callgrind)",
            table(
                [
                    "candidate",
                    f"per step, N={n2:,}",
                    f"per step, N={n1:,}",
                    f"marginal, N={n1:,}→{n2:,}",
                    "vs dotflow-providers",
                ],
                rows,
            )
            + "\n\nPer step = (I(N) - I(0)) / N, instructions counted by "
            "`valgrind --tool=callgrind` inside the measured call only; the two N values agree "
            "when the cost is linear. The dotflow-providers figure includes a run's fixed "
            "start-up (lease, manifest) divided by N.",
        )
        return per_step

    def noop(self) -> None:
        n = self.sizes.noop_steps
        candidates = [
            Candidate(label, self.timed(case, n, python=python), n)
            for label, case, python in self.noop_candidates()
        ]
        stats = interleave(candidates, self.sizes.noop_rounds)
        label = next(lbl for lbl, case, _ in self.noop_candidates() if case == "engine")
        engine = stats[label].median
        rows = [[label, *fmt_stats(s), f"{s.median / engine:.3g}x"] for label, s in stats.items()]
        self.emit(
            "Time per no-op step",
            table(["candidate", "median per step", "IQR", "vs dotflow-providers"], rows)
            + f"\n\n{self.sizes.noop_rounds} interleaved rounds of {n:,} steps (calls) each, "
            "per candidate; a dotflow-providers or dotflow sample builds its workflow, adds the "
            "steps and runs it.",
        )

    def durable(self) -> None:
        n = self.sizes.durable_steps
        candidates = [
            Candidate(
                "dotflow-providers step on `FileStore` (fsync on, lease on)",
                self.timed("file-steps", n),
                n,
            ),
            Candidate(
                "DBOS step on SQLite (`@DBOS.step` in a `@DBOS.workflow`)", self.timed("dbos", n), n
            ),
            Candidate(
                "by hand: temp file, write, fsync, rename, fsync folder",
                self.timed("raw-durable-write", n),
                n,
            ),
        ]
        stats = interleave(candidates, self.sizes.durable_rounds)
        ours = stats[candidates[0].label].median
        rows = [[label, *fmt_stats(s), f"{s.median / ours:.3g}x"] for label, s in stats.items()]
        self.emit(
            "Durable no-op step",
            table(["candidate", "median per step", "IQR", "vs FileStore step"], rows)
            + f"\n\n{self.sizes.durable_rounds} interleaved rounds of a {n}-step workflow each "
            "(a fresh FileStore folder, one DBOS workflow, or n hand-written files), on the "
            "checkout's disk. The by-hand row writes the bytes of one step checkpoint.",
        )

    def resume(self) -> None:
        rows = []
        for n in self.sizes.resume_sizes:
            folder = str(self.tmp / f"resume-{n}")
            subprocess.run(
                [sys.executable, CASES, "once", "resume-prepare", str(n), folder],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
            )
            walls: dict[str, list[float]] = {"resume-engine": [], "resume-bare": []}
            candidates = [
                Candidate(
                    f"`start()` restoring {n:,} steps (FileStore, lease on)",
                    functools.partial(_fresh, "resume-engine", n, folder, walls),
                ),
                Candidate(
                    f"by hand: list, open, read, `json.loads` the same files ({n:,})",
                    functools.partial(_fresh, "resume-bare", n, folder, walls),
                ),
            ]
            stats = interleave(candidates, self.sizes.resume_rounds)
            ours = stats[candidates[0].label].median
            for (label, s), case in zip(stats.items(), walls, strict=True):
                wall = statistics.median(walls[case][1:])  # [0] was the warm-up
                rows.append(
                    [
                        label,
                        *fmt_stats(s),
                        fmt_time(s.median / n),
                        f"{s.median / ours:.3g}x",
                        fmt_time(wall),
                    ]
                )
        self.emit(
            "Resume in a fresh process",
            table(
                [
                    "candidate",
                    "median",
                    "IQR",
                    "per step",
                    "vs start()",
                    "whole process (imports included)",
                ],
                rows,
            )
            + f"\n\n{self.sizes.resume_rounds} interleaved rounds; each sample is a new Python "
            "process that times only the resume (imports and `add()` excluded; the last column "
            "is the process's wall time from spawn to exit). The files are in the page cache.",
        )

    def curve(self, chart: Path) -> None:
        w = self.worker()
        candidates = [
            Candidate(str(n), functools.partial(w.seconds, "engine", n))
            for n in self.sizes.curve_sizes
        ]
        floor = self.worker()  # a process of its own: its allocator's history is its own
        sizes = self.sizes.curve_sizes
        small, big = min(sizes, key=lambda n: abs(n - 1000)), max(sizes)
        candidates += [
            Candidate(f"floor {n}", functools.partial(floor.seconds, "floor", n, "exact"))
            for n in (small, big)
        ]
        stats = interleave(candidates, self.sizes.curve_rounds)
        floor_small, floor_big = stats[f"floor {small}"].median, stats[f"floor {big}"].median
        floor_ratio = (floor_big / big) / (floor_small / small)
        total = {int(k): s for k, s in stats.items() if not k.startswith("floor")}
        one = total[1].median
        rows, points = [], []
        for n, s in total.items():
            per = s.median / n
            marginal = (s.median - one) / (n - 1) if n >= 100 else None
            rows.append(
                [
                    f"{n:,}",
                    fmt_time(s.median),
                    fmt_time(per),
                    fmt_time(marginal) if marginal is not None else "—",
                ]
            )
            points.append((n, per, marginal))
        ratio = (total[big].median / big) / (total[small].median / small)
        counted = self.curve_instructions(small, big)
        self.emit(
            "Per-step cost by workflow size (MemoryStore, lease on)",
            table(["steps", "run (median)", "per step", "per added step"], rows)
            + f"\n\nPer-step cost at {big:,} steps / at {small:,} steps: **{ratio:.2f}x**. "
            f"{self.sizes.curve_rounds} interleaved rounds in one worker process; a sample is "
            "`add()` of every step and `start()`. Per added step = (t(n) - t(1)) / (n - 1), "
            f"which leaves out the run's fixed start-up (t(1) = {fmt_time(one)}); from 100 "
            "steps on, where it is well above the noise in t(1). The floor (a call, two clock "
            "reads, one `orjson.dumps`, an exact-size copy kept in a dict), in a worker of its "
            f"own in the same rounds: **{floor_ratio:.2f}x** at {big:,} / {small:,} steps "
            f"({fmt_time(floor_small / small)} and {fmt_time(floor_big / big)} per step)."
            + counted,
        )
        _chart(points, one, chart)

    def curve_instructions(self, small: int, big: int) -> str:
        """The curve's sentence in instructions: per step at `small` and `big` steps, engine and
        floor, each (I(n) - I(0)) / n in one callgrind run (after the timed rounds: the two runs
        share the cores)."""
        if not shutil.which("valgrind"):
            return " Instructions: _valgrind not found, skipped._"
        sizes = (0, small, big)
        cases = {"engine": "engine", "floor": "floor=exact"}
        jobs = {name: self.callgrind(sys.executable, case, sizes) for name, case in cases.items()}
        per: dict[str, tuple[float, float]] = {}
        for name, proc in jobs.items():
            i0, i_small, i_big = self.callgrind_counts(proc, cases[name], 3)
            per[name] = ((i_small - i0) / small, (i_big - i0) / big)
        (engine_small, engine_big), (floor_small, floor_big) = per["engine"], per["floor"]
        return (
            f" In instructions (callgrind, the same samples' work counted, not timed): "
            f"**{engine_big / engine_small:.2f}x** ({engine_small:,.0f} per step at {small:,} "
            f"steps, {engine_big:,.0f} at {big:,}); the floor {floor_big / floor_small:.2f}x "
            f"({floor_small:,.0f} and {floor_big:,.0f}). The engine does the same work per step "
            "at every size: what grows is the time that work takes once a run keeps this many "
            "documents, and the floor, keeping as many, grows as well."
        )

    def fanout(self) -> None:
        n = self.sizes.fan_out
        candidates = [
            Candidate(
                f'`start_async(mode="async_parallel")`, {n:,} steps',
                self.timed("fan-out-engine", n),
            ),
            Candidate(
                f"bare `asyncio.gather` of the same {n:,} coroutines",
                self.timed("fan-out-gather", n),
            ),
        ]
        stats = interleave(candidates, self.sizes.fan_out_rounds)
        bare = stats[candidates[1].label].median
        rows = [[label, *fmt_stats(s), f"{s.median / bare:.3g}x"] for label, s in stats.items()]
        self.emit(
            "Async fan-out: steps that each `await asyncio.sleep(0.01)`",
            table(["candidate", "median (whole fan-out)", "IQR", "vs gather"], rows)
            + f"\n\n{self.sizes.fan_out_rounds} interleaved rounds; the ideal is 10 ms. The "
            "workflow's `add()` calls are not timed.",
        )

    def s3(self) -> None:
        sys.path.insert(0, str(ROOT))
        from tests.servers import s3_server  # the moto server the tests start, on 127.0.0.1

        n = self.sizes.s3_steps
        with s3_server() as endpoint:
            out = subprocess.run(
                [sys.executable, CASES, "once", "s3-requests", str(n), endpoint],
                check=True,
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
        counts = json.loads(out.stdout.splitlines()[-1])
        operations = sorted(set(counts["run"]) | set(counts["resume"]))
        rows = [
            [op, str(counts["run"].get(op, 0)), str(counts["resume"].get(op, 0))]
            for op in operations
        ]
        rows.append(
            ["**total**", str(sum(counts["run"].values())), str(sum(counts["resume"].values()))]
        )
        self.emit(
            f"S3 requests for {n} steps (moto server on 127.0.0.1)",
            table(["operation", f"run of {n} no-op steps", "resume (all restored)"], rows)
            + "\n\nHTTP requests sent by the boto3 client (counted on its `before-send` event), "
            "lease on.",
        )


def _fresh(case: str, n: int, folder: str, walls: dict[str, list[float]]) -> float:
    """One sample of `case` in a new Python process; its wall time is kept in `walls`."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, CASES, "once", case, str(n), folder],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    walls[case].append(time.perf_counter() - t0)
    return float(json.loads(out.stdout.splitlines()[-1])["seconds"])


def _callgrind_total(path: Path) -> int:
    match = re.search(r"^(?:summary|totals):\s*(\d+)", path.read_text(), re.MULTILINE)
    if not match:
        raise RuntimeError(f"no instruction total in {path}")
    return int(match.group(1))


def _chart(points: list[tuple[int, float, float | None]], fixed: float, out: Path) -> None:
    """Per-step time by workflow size, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: {out} not redrawn", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    marginal = [(n, m) for n, _, m in points if m is not None]
    ax.plot(
        [n for n, _ in marginal],
        [m * 1e6 for _, m in marginal],
        marker="o",
        label="per added step: (t(n) - t(1)) / (n - 1)",
    )
    ax.plot(
        [n for n, p, m in points if m is not None],
        [p * 1e6 for _, p, m in points if m is not None],
        marker="x",
        linestyle="--",
        label="run time / n",
    )
    ax.set_xscale("log")
    ax.set_ylim(bottom=0, top=max(m for _, m in marginal) * 1e6 * 1.6)
    ax.set_xlabel("steps in the workflow")
    ax.set_ylabel("time per no-op step (µs), median")
    ax.set_title(
        "dotflow-providers: per-step cost by workflow size (MemoryStore, lease on)\n"
        f"plus t(1) = {fixed * 1e6:.0f} µs once per run (lease, manifest, one step)"
    )
    ax.legend()
    ax.grid(True, alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")


def machine(dotflow_python: str | None) -> str:
    """The machine, Python and every peer's version, as a Markdown list."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    peers = ["dotflow-providers", "tenacity", "stamina", "orjson", "dbos", "boto3", "moto"]
    versions = [f"{p} {version(p)}" for p in peers]
    if dotflow_python:
        versions.append(f"dotflow {DOTFLOW_VERSION} (own venv)")
    return "\n".join([
        f"- CPU: {cpu}, {os.cpu_count()} logical cores ({platform.machine()}), "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- versions: {', '.join(versions)}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    ])  # fmt: skip


METHOD = """\
- **Instructions** (the headline; other work on a shared machine does not move them): each
  candidate runs in `valgrind --tool=callgrind` with collection on only inside the measured call
  (`sys.call_tracing` marks it), after a warm-up; per step = (I(N) - I(0)) / N, for two N.
- **Times**: every candidate runs in a worker process of its own; the candidates of a group take
  turns (A, B, C, A, B, C, ...) after one warm-up round, and each table gives the median of the
  rounds and the interquartile range (IQR). Medians, not minimums: a minimum reports the luckiest
  round, the median a typical one.
- **Peers**: tenacity and stamina wrap the same no-op function (3 attempts); dotflow 1.0.1 runs
  in its own venv (its log level raised to WARNING); DBOS uses its defaults on a SQLite file.
- Reproduce: `python bench/run.py` (or `--quick`); `--only GROUP` runs some groups only."""


def dotflow_venv(path: Path) -> str | None:
    """dotflow 1.0.1's own venv (made on first use): its Python, or None if it cannot be made."""
    python = path / "bin" / "python"
    if not python.exists():
        print(f"making {path} with dotflow=={DOTFLOW_VERSION} ...", file=sys.stderr)
        try:
            if shutil.which("uv"):
                subprocess.run(["uv", "venv", "-q", "-p", sys.executable, str(path)], check=True)
                subprocess.run(
                    [
                        "uv",
                        "pip",
                        "install",
                        "-q",
                        "--python",
                        str(python),
                        f"dotflow=={DOTFLOW_VERSION}",
                    ],
                    check=True,
                )
            else:
                subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
                subprocess.run(
                    [str(python), "-m", "pip", "install", "-q", f"dotflow=={DOTFLOW_VERSION}"],
                    check=True,
                )
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"dotflow {DOTFLOW_VERSION} left out: {exc}", file=sys.stderr)
            shutil.rmtree(path, ignore_errors=True)
            return None
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller N")
    parser.add_argument(
        "--only", default=",".join(GROUPS), help=f"comma-separated groups among {', '.join(GROUPS)}"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Markdown results (default bench/RESULTS.md, on a full run only)",
    )
    parser.add_argument("--chart", type=Path, default=BENCH / "results" / "overhead.png")
    parser.add_argument("--dotflow-venv", type=Path, default=BENCH / ".venv-dotflow")
    args = parser.parse_args()
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    if unknown := set(groups) - set(GROUPS):
        parser.error(f"unknown groups {sorted(unknown)}: choose among {', '.join(GROUPS)}")
    out = args.out or (BENCH / "RESULTS.md" if set(groups) == set(GROUPS) else None)

    started = time.perf_counter()
    needs_dotflow = {"instructions", "noop"} & set(groups)
    dotflow_python = dotflow_venv(args.dotflow_venv) if needs_dotflow else None
    # on the checkout's disk: /tmp may be a tmpfs, where fsync costs nothing
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=BENCH))
    bench = Bench(QUICK if args.quick else Sizes(), dotflow_python, tmp)
    header = "## Machine\n\n" + machine(dotflow_python) + "\n\n## Method\n\n" + METHOD + "\n"
    print(header)
    try:
        steps: dict[str, Callable[[], object]] = {
            "instructions": bench.instructions,
            "noop": bench.noop,
            "durable": bench.durable,
            "resume": bench.resume,
            "curve": lambda: bench.curve(args.chart),
            "fanout": bench.fanout,
            "s3": bench.s3,
        }
        for group in GROUPS:
            if group in groups:
                steps[group]()
                for w in bench.workers:  # a group's workers (and DBOS's threads) stop here
                    w.close()
                bench.workers.clear()
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    footer = f"_Whole run: {elapsed:.0f} s{' (--quick)' if args.quick else ''}._\n"
    print(footer)
    if out:
        text = "# Benchmark results\n\n" + header + "\n## Results\n\n"
        out.write_text(text + "\n".join(bench.sections) + "\n" + footer)
        print(f"written to {out}")


if __name__ == "__main__":
    main()
