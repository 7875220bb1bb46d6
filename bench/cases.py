"""What the benchmarks measure: one class per candidate, each run in a process of its own.

`bench/run.py` drives this file; it is also a script, so a candidate can run under another
virtual environment's Python (dotflow 1.0.1 lives in its own venv) or under valgrind:

    python bench/cases.py serve                 # answer {"case", "n", "arg"} lines on stdin
    python bench/cases.py once CASE N [ARG]     # one sample, printed as one JSON line
    python bench/cases.py regions CASE N...     # samples for callgrind to count, one per N

A case's `sample(n)` does n steps and returns the seconds they took; everything it needs that
is not part of a step is built in `__init__` (once per process) or before its clock starts.
`regions` runs each sample inside `sys.call_tracing`, a C function nothing else calls, so that
callgrind can count the sample's instructions and nothing else (see `regions`).
Imports are lazy, per case: this file must import under a Python that has only one peer.
"""

from __future__ import annotations

import abc
import asyncio
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def noop() -> None:
    return None


def names(n: int) -> list[str]:
    return [f"s{i}" for i in range(n)]


class Case(abc.ABC):
    """One candidate: `sample(n)` runs n steps and returns the seconds they took."""

    @abc.abstractmethod
    def sample(self, n: int) -> float:
        """Run n steps; the seconds they took."""

    def result(self, n: int) -> dict[str, Any]:
        """What `once` and `serve` report for one sample."""
        return {"seconds": self.sample(n)}


# --- no-op step: the engine against a bare call, retry wrappers, dotflow 1.0.1 and the floor


class Bare(Case):
    def sample(self, n: int) -> float:
        fn = noop
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return time.perf_counter() - t0


class Wrapped(Case):
    """A no-op call through a retry decorator that never retries."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def sample(self, n: int) -> float:
        fn = self.fn
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return time.perf_counter() - t0


def tenacity_case() -> Case:
    import tenacity

    return Wrapped(tenacity.retry(stop=tenacity.stop_after_attempt(3))(noop))


def stamina_case() -> Case:
    import stamina

    return Wrapped(stamina.retry(on=Exception, attempts=3)(noop))


class Floor(Case):
    """The least a checkpointing step can do: call, two clock reads, encode, keep the bytes.

    `keep="exact"` keeps an exact-size copy of each document, as the engine's step documents
    are (joined from their parts): the bytes `orjson.dumps` returns sit in a write buffer of
    at least 4 KB, which a process keeping 100,000 of them pays for page by page.
    """

    def __init__(self, keep: str = "as-returned") -> None:
        if keep not in ("as-returned", "exact"):
            raise ValueError(f"keep is 'as-returned' or 'exact', not {keep!r}")
        self.exact = keep == "exact"

    def sample(self, n: int) -> float:
        import orjson

        keys = names(n)
        kept: dict[str, bytes] = {}
        clock, dumps, fn = time.time, orjson.dumps, noop
        t0 = time.perf_counter()
        if self.exact:
            for key in keys:
                started = clock()
                output = fn()
                doc = dumps({"output": output, "started_at": started, "finished_at": clock()})
                kept[key] = bytes(memoryview(doc))
        else:
            for key in keys:
                started = clock()
                output = fn()
                kept[key] = dumps({"output": output, "started_at": started, "finished_at": clock()})
        return time.perf_counter() - t0


class Engine(Case):
    """`Workflow.add()` for each step, then `start()`: MemoryStore, lease on (the defaults)."""

    def __init__(self) -> None:
        from dotflow_providers import Workflow, action

        self.workflow, self.step = Workflow, action(noop)

    def sample(self, n: int) -> float:
        keys = names(n)
        t0 = time.perf_counter()
        wf = self.workflow("bench")
        for key in keys:
            wf.add(self.step, name=key)
        if n:
            run = wf.start()
        elapsed = time.perf_counter() - t0
        if n and run.status.value != "COMPLETED":
            raise RuntimeError(f"engine run ended {run.status}")
        return elapsed


class Dotflow(Case):
    """dotflow 1.0.1 (its own venv): `DotFlow().task.add(step)` per step, then `start()`.

    Its default in-memory storage; its log level raised to WARNING so that, like
    dotflow-providers, it does not print a line per step.
    """

    def __init__(self) -> None:
        from dotflow import Config, DotFlow, action
        from dotflow.providers import LogDefault

        self.config = lambda: Config(log=LogDefault(level="WARNING"))
        self.dotflow, self.step = DotFlow, action(noop)

    def sample(self, n: int) -> float:
        config = self.config()
        t0 = time.perf_counter()
        wf = self.dotflow(config=config)
        for _ in range(n):
            wf.task.add(step=self.step)
        if n:
            wf.start()
        elapsed = time.perf_counter() - t0
        if n and {str(t.status) for t in wf.task.queue} != {"Completed"}:
            raise RuntimeError("dotflow run did not complete every step")
        return elapsed


# --- durable steps: FileStore (fsync on) against DBOS on SQLite and a hand-written fsync'd write


class FileStoreSteps(Case):
    """n no-op steps in a fresh `FileStore` folder (durable: fsync on), lease on."""

    def __init__(self) -> None:
        from dotflow_providers import FileStore, Workflow, action

        self.file_store, self.workflow, self.step = FileStore, Workflow, action(noop)
        self.tmp = tempfile.mkdtemp(prefix="bench-file-", dir=_disk_tmp())

    def run(self, root: str, n: int) -> float:
        keys = names(n)
        t0 = time.perf_counter()
        wf = self.workflow("bench", store=self.file_store(root))
        for key in keys:
            wf.add(self.step, name=key)
        run = wf.start()
        elapsed = time.perf_counter() - t0
        if run.status.value != "COMPLETED":
            raise RuntimeError(f"engine run ended {run.status}")
        return elapsed

    def sample(self, n: int) -> float:
        root = tempfile.mkdtemp(dir=self.tmp)
        try:
            return self.run(root, n)
        finally:
            shutil.rmtree(root)


class RawDurableWrite(Case):
    """By hand, what a crash-safe commit must do: temp file, write, fsync, rename, fsync dir.

    The bytes are the largest file a one-step `FileStore` run writes (a step's checkpoint).
    """

    def __init__(self) -> None:
        steps = FileStoreSteps()
        root = tempfile.mkdtemp(dir=steps.tmp)
        steps.run(root, 1)
        files = [p for p in Path(root).rglob("*") if p.is_file()]
        self.data = max(files, key=lambda p: p.stat().st_size).read_bytes()
        shutil.rmtree(root)
        self.tmp = steps.tmp

    def sample(self, n: int) -> float:
        directory = tempfile.mkdtemp(dir=self.tmp)
        keys = names(n)
        t0 = time.perf_counter()
        for key in keys:
            fd, tmp = tempfile.mkstemp(dir=directory)
            os.write(fd, self.data)
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, os.path.join(directory, key + ".json"))
            dfd = os.open(directory, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
        elapsed = time.perf_counter() - t0
        shutil.rmtree(directory)
        return elapsed


class Dbos(Case):
    """DBOS Transact on SQLite: n `@DBOS.step` calls inside one `@DBOS.workflow`.

    Its defaults: the system database is a SQLite file (rollback journal, synchronous FULL)
    in a temporary folder on the same disk; one workflow per sample.
    """

    def __init__(self) -> None:
        from dbos import DBOS

        @DBOS.step()
        def step() -> None:
            return None

        @DBOS.workflow()
        def workflow(n: int) -> None:
            for _ in range(n):
                step()

        self.tmp = tempfile.mkdtemp(prefix="bench-dbos-", dir=_disk_tmp())
        DBOS(
            config={
                "name": "bench",
                "system_database_url": f"sqlite:///{self.tmp}/dbos.sqlite",
                "log_level": "WARNING",  # no log line per workflow, as for the others
            }
        )
        DBOS.launch()
        self.workflow = workflow

    def sample(self, n: int) -> float:
        t0 = time.perf_counter()
        self.workflow(n)
        return time.perf_counter() - t0


# --- resume in a fresh process: FileStore with n completed steps, against reading the files


class ResumePrepare(Case):
    """Writes a workflow of n completed steps under the folder `arg` (not timed)."""

    def __init__(self, arg: str) -> None:
        self.root = arg

    def sample(self, n: int) -> float:
        shutil.rmtree(self.root, ignore_errors=True)
        return FileStoreSteps().run(self.root, n)


class ResumeEngine(Case):
    """`start()` of the workflow `ResumePrepare` wrote: every step restored, none run."""

    def __init__(self, arg: str) -> None:
        from dotflow_providers import FileStore, Workflow, action

        self.wf = Workflow("bench", store=FileStore(arg))
        self.step = action(noop)

    def sample(self, n: int) -> float:
        for key in names(n):
            self.wf.add(self.step, name=key)
        t0 = time.perf_counter()
        run = self.wf.start()
        elapsed = time.perf_counter() - t0
        if not all(s.restored for s in run.steps):
            raise RuntimeError("resume ran steps again")
        return elapsed


class ResumeBare(Case):
    """The least a resume can do: list the workflow's folder, open, read and json.loads each."""

    def __init__(self, arg: str) -> None:
        self.folder = os.path.join(arg, "bench")

    def sample(self, n: int) -> float:
        t0 = time.perf_counter()
        docs = []
        for dirpath, _, filenames in os.walk(self.folder):
            for name in filenames:
                with open(os.path.join(dirpath, name), "rb") as f:
                    docs.append(json.loads(f.read()))
        elapsed = time.perf_counter() - t0
        if len(docs) < n:
            raise RuntimeError(f"found {len(docs)} files for {n} steps")
        return elapsed


# --- async fan-out: async_parallel against a bare asyncio.gather


async def nap() -> None:
    await asyncio.sleep(0.01)


class FanOutEngine(Case):
    """`start_async(mode="async_parallel")` of n steps that each sleep 10 ms (add() untimed)."""

    def __init__(self) -> None:
        from dotflow_providers import Workflow, action

        self.workflow, self.step = Workflow, action(nap)

    def sample(self, n: int) -> float:
        wf = self.workflow("fan")
        for key in names(n):
            wf.add(self.step, name=key)

        async def main() -> float:
            t0 = time.perf_counter()
            run = await wf.start_async(mode="async_parallel", max_concurrency=n)
            elapsed = time.perf_counter() - t0
            if run.status.value != "COMPLETED":
                raise RuntimeError(f"fan-out ended {run.status}")
            return elapsed

        return asyncio.run(main())


class FanOutGather(Case):
    """`asyncio.gather` of the same n coroutines, in one event loop."""

    def sample(self, n: int) -> float:
        async def main() -> float:
            t0 = time.perf_counter()
            await asyncio.gather(*(nap() for _ in range(n)))
            return time.perf_counter() - t0

        return asyncio.run(main())


# --- S3: which requests a workflow makes, counted on the client, against a moto server


class S3Requests(Case):
    """n no-op steps on `S3Store` (lease on), then a resume: the HTTP requests of each."""

    def __init__(self, arg: str) -> None:
        import boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=arg,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket="bench")
        self.counts: dict[str, int] = {}
        self.client.meta.events.register("before-send.s3", self._count)

    def _count(self, request: Any, **kwargs: Any) -> None:
        operation = kwargs["event_name"].rsplit(".", 1)[-1]
        self.counts[operation] = self.counts.get(operation, 0) + 1

    def _run(self, n: int) -> dict[str, int]:
        from dotflow_providers import Workflow, action
        from dotflow_providers.storage import S3Store

        wf = Workflow("bench", store=S3Store("bench", "ckpt", client=self.client))
        step = action(noop)
        for key in names(n):
            wf.add(step, name=key)
        self.counts = {}
        run = wf.start()
        if run.status.value != "COMPLETED":
            raise RuntimeError(f"S3 run ended {run.status}")
        return dict(self.counts)

    def sample(self, n: int) -> float:
        """The seconds a run of n steps takes (its report is the request counts)."""
        t0 = time.perf_counter()
        self._run(n)
        return time.perf_counter() - t0

    def result(self, n: int) -> dict[str, Any]:
        return {"run": self._run(n), "resume": self._run(n)}


def _disk_tmp() -> str:
    """Where durable cases write: `BENCH_TMP` (run.py puts it on the checkout's disk, as /tmp
    may be a tmpfs, where fsync costs nothing), else the system's temporary folder."""
    return os.environ.get("BENCH_TMP") or tempfile.gettempdir()


CASES: dict[str, Callable[..., Case]] = {
    "bare": Bare,
    "tenacity": tenacity_case,
    "stamina": stamina_case,
    "floor": Floor,
    "engine": Engine,
    "dotflow": Dotflow,
    "file-steps": FileStoreSteps,
    "raw-durable-write": RawDurableWrite,
    "dbos": Dbos,
    "resume-prepare": ResumePrepare,
    "resume-engine": ResumeEngine,
    "resume-bare": ResumeBare,
    "fan-out-engine": FanOutEngine,
    "fan-out-gather": FanOutGather,
    "s3-requests": S3Requests,
}


def make(case: str, arg: str | None) -> Case:
    return CASES[case](arg) if arg is not None else CASES[case]()


def serve() -> None:
    """Answer one JSON request per stdin line, one case per process (kept between requests)."""
    out = sys.stdout
    sys.stdout = sys.stderr  # a case's own prints must not corrupt the answers
    cases: dict[tuple[str, str | None], Case] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["case"], request.get("arg"))
        if key not in cases:
            cases[key] = make(*key)
        answer = cases[key].result(request["n"])
        gc.collect()  # the garbage of one sample is not collected on the next one's clock
        out.write(json.dumps(answer) + "\n")
        out.flush()


def once(case: str, n: int, arg: str | None) -> None:
    """One sample in this process, reported as one JSON line."""
    print(json.dumps(make(case, arg).result(n)), flush=True)


def regions(case: str, sizes: list[int], arg: str | None = None) -> None:
    """A warm-up sample, then one sample per size, each inside `sys.call_tracing` (`arg`: the
    case's argument, given on the command line as `CASE=ARG`).

    Under `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=sys_call_tracing
    --dump-after=sys_call_tracing`, each sample's instructions land in a dump of their own:
    imports, set-up and warm-up are not counted.
    """
    chosen = make(case, arg)
    chosen.sample(min(n for n in sizes if n))  # first-call costs (lazy imports) are not steps
    gc.collect()
    for n in sizes:
        sys.call_tracing(chosen.sample, (n,))
        gc.collect()


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "serve":
        serve()
    elif command == "once":
        once(rest[0], int(rest[1]), rest[2] if len(rest) > 2 else None)
    elif command == "regions":
        case, _, arg = rest[0].partition("=")  # CASE or CASE=ARG
        regions(case, [int(n) for n in rest[1:]], arg or None)
    else:
        raise SystemExit(f"unknown command {command!r}: use serve, once or regions")
