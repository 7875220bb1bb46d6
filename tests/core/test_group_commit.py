"""Group commit (`Workflow(commit_every=k, commit_interval=s)`): batches are atomic, durable,
flushed when they must be, and resumed from exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dotflow_providers import (
    Context,
    FileStore,
    MemoryStore,
    Progress,
    Status,
    StoreError,
    Workflow,
    action,
)
from dotflow_providers._batch import read_steps
from dotflow_providers._format import Layout, load_batch, load_item_batch
from dotflow_providers.storage import S3Store

from ..servers import ACCESS_KEY, SECRET_KEY
from .procs import ROOT
from .test_object_stores import S3Requests


def chain(wf: Workflow, n: int, ran: list[str] | None = None) -> Workflow:
    for i in range(n):

        def step(previous_context: Context, i: int = i) -> int:
            if ran is not None:
                ran.append(f"s{i}")
            return (previous_context.value or 0) + i

        wf.add(step, name=f"s{i}")
    return wf


def batch_keys(store: Any, workflow_id: str) -> list[str]:
    return list(store.list(Layout(workflow_id).batches))


def test_k_completed_steps_are_one_write_and_a_resume_restores_them() -> None:
    store = MemoryStore()
    run = chain(Workflow("g", store=store, commit_every=4), 10).start()
    assert run.status is Status.COMPLETED
    keys = batch_keys(store, "g")
    assert [len(load_batch(k, store.get(k)).steps) for k in keys] == [4, 4, 2]
    assert [k for k in store.list("g/.dotflow/steps/") if k not in keys] == []  # no singles
    ran: list[str] = []
    again = chain(Workflow("g", store=store, commit_every=4), 10, ran).start()
    assert ran == []
    assert all(s.restored for s in again.steps)
    assert again.output == sum(range(10))


def test_commit_every_1_keeps_one_document_per_step() -> None:
    store = MemoryStore()
    chain(Workflow("one", store=store), 3).start()
    assert batch_keys(store, "one") == []
    assert len(list(store.list("one/.dotflow/steps/"))) == 3


def start_target(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.core.batch_target",
            "--store",
            f"file://{tmp_path / 'store'}",
            "--log",
            str(tmp_path / "log"),
            *extra,
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def runs(tmp_path: Path) -> list[tuple[int, int]]:
    lines = (tmp_path / "log").read_text().split()
    return [(int(lines[i + 1]), int(lines[i + 2])) for i in range(0, len(lines), 3)]


def test_a_kill_inside_the_batch_write_leaves_the_previous_state(tmp_path: Path) -> None:
    # killed at FileStore's commit point of the second batch: temp file written and fsync'd,
    # not yet linked under its key
    args = ("--kind", "batch", "--n", "7", "--commit-every", "3")
    killed = start_target(tmp_path, *args, "--kill-in-write", "2")
    assert killed.returncode == -9
    store = FileStore(tmp_path / "store")
    found = read_steps(store, Layout("faults"))
    assert sorted(found.newest) == ["s0", "s1", "s2"]  # the first batch, whole; nothing else
    assert len(batch_keys(store, "faults")) == 1
    finished = start_target(tmp_path, *args)
    assert finished.returncode == 0, finished.stderr
    by_pid = Counter(pid for _, pid in runs(tmp_path))
    first_pid, second_pid = list(by_pid)
    executed = Counter(index for index, _ in runs(tmp_path))
    assert executed == {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 1}
    assert by_pid == {first_pid: 6, second_pid: 4}
    assert json.loads(finished.stdout)["output"] == sum(range(7))


def test_completed_steps_are_committed_before_a_final_failure_is_recorded() -> None:
    store = MemoryStore()
    wf = Workflow("fails", store=store, commit_every=10)
    chain(wf, 3)

    @action(retry=1)
    def broken(previous_context: Context) -> None:
        raise ValueError("no")

    wf.add(broken, name="broken")
    run = wf.start()
    assert run.status is Status.FAILED
    (key,) = batch_keys(store, "fails")
    assert [d.name for d in load_batch(key, store.get(key)).steps] == ["s0", "s1", "s2"]
    assert store.get("fails/.dotflow/failures/broken.json") is not None
    ran: list[str] = []
    fixed = chain(Workflow("fails", store=store, commit_every=10), 3, ran)
    fixed.add(lambda previous_context: previous_context.value * 10, name="broken")
    assert fixed.start().output == 30
    assert ran == []


def test_a_cancelled_run_commits_the_steps_that_completed() -> None:
    store = MemoryStore()
    entered, release = threading.Event(), threading.Event()
    wf = chain(Workflow("cancelled", store=store, commit_every=50), 2)

    def slow(previous_context: Context) -> int:
        entered.set()
        release.wait(30)
        return 0

    wf.add(slow, name="slow")
    chain_after = wf.add(lambda previous_context: 1, name="after")
    run = chain_after.start(mode="background")
    assert entered.wait(30)
    run.cancel()
    release.set()
    run.wait(30)
    assert run.status is Status.CANCELLED
    (key,) = batch_keys(store, "cancelled")
    assert [d.name for d in load_batch(key, store.get(key)).steps] == ["s0", "s1"]


def test_commit_interval_writes_a_batch_while_a_long_step_runs() -> None:
    store = MemoryStore()
    interval = 0.2
    wf = chain(Workflow("timed", store=store, commit_every=1000, commit_interval=interval), 2)
    seen: list[float] = []

    def waits_for_the_batch(previous_context: Context) -> int:
        # no further commit happens while this step runs: only the interval can write it
        deadline = time.monotonic() + 60  # a bound far above the interval
        while not batch_keys(store, "timed"):
            assert time.monotonic() < deadline, "the interval never flushed the batch"
            time.sleep(0.01)
        seen.append(time.time())
        return 0

    wf.add(waits_for_the_batch, name="long")
    run = wf.start()
    assert run.status is Status.COMPLETED
    first, last = (load_batch(k, store.get(k)) for k in batch_keys(store, "timed"))
    assert [d.name for d in first.steps] == ["s0", "s1"]
    assert [d.name for d in last.steps] == ["long"]
    # recorded times: not written before the interval had passed since the first entry
    assert first.committed_at >= first.steps[0].finished_at + interval
    assert first.committed_at <= seen[0] <= last.committed_at


def test_rerun_from_supersedes_entries_inside_a_batch_which_stays() -> None:
    store = MemoryStore()
    counter = iter(range(1000))

    def build() -> Workflow:
        wf = Workflow("rerun", store=store, commit_every=5)
        for i in range(5):
            wf.add(lambda previous_context, i=i: next(counter), name=f"s{i}")
        return wf

    first = build().start()
    second = build().start(rerun_from="s2")
    assert [s.restored for s in second.steps] == [True, True, False, False, False]
    keys = batch_keys(store, "rerun")
    assert len(keys) == 2  # the first batch stays; its s2..s4 entries no longer count
    third = build().start()
    assert all(s.restored for s in third.steps)
    outputs = [s.output for s in third.steps]
    assert outputs[:2] == [s.output for s in first.steps][:2]
    assert outputs[2:] == [s.output for s in second.steps][2:]


def test_switching_commit_every_between_runs_resumes_from_both_layouts() -> None:
    store = MemoryStore()
    chain(Workflow("mixed", store=store), 3).start()
    grown = chain(Workflow("mixed", store=store, commit_every=4), 6)
    run = grown.start()
    assert [s.restored for s in run.steps] == [True] * 3 + [False] * 3
    ran: list[str] = []
    again = chain(Workflow("mixed", store=store), 6, ran).start()
    assert ran == []
    assert again.output == sum(range(6))


def test_compensated_steps_inside_a_batch_run_again() -> None:
    store = MemoryStore()
    undone: list[int] = []

    @action(retry=1)
    def broken(previous_context: Context) -> None:
        raise ValueError("no")

    def build(fail: bool) -> Workflow:
        wf = Workflow("saga", store=store, commit_every=10)
        for i in range(3):
            act = dataclasses.replace(
                action(lambda previous_context, i=i: i),
                compensate=lambda out, err: undone.append(out),
            )
            wf.add(act, name=f"s{i}")
        wf.add(broken if fail else (lambda previous_context: "ok"), name="last")
        return wf

    assert build(fail=True).start(compensate=True).status is Status.FAILED
    assert sorted(undone) == [0, 1, 2]
    run = build(fail=False).start()
    assert [s.restored for s in run.steps] == [False, False, False, False]


def test_s3_ten_batches_of_100_are_ten_puts(s3_client: Any, s3_bucket: str) -> None:
    seen = S3Requests(s3_client, s3_bucket)
    store = S3Store(s3_bucket, "grouped", client=s3_client)
    n = 1000

    def build() -> Workflow:
        wf = Workflow("counted", store=store, commit_every=100)
        for i in range(n):
            wf.add(lambda i=i: i, name=f"s{i}")
        return wf

    assert build().start().status is Status.COMPLETED
    assert seen.count("PUT", "/steps/.batch/") == 10
    assert seen.count("PUT", "/steps/") == 10  # nothing else under steps/
    per_run = seen.count("PUT") - 10
    assert per_run == seen.count("PUT", "/manifest.json") + seen.count("PUT", "/lock")
    assert seen.count("PUT", "/manifest.json") == 1
    seen.sent.clear()
    resumed = build().start()
    assert all(s.restored for s in resumed.steps)
    assert seen.lists() == 1
    assert seen.gets("/steps/.batch/") == 10
    assert seen.count("PUT", "/steps/") == 0

    seen.sent.clear()
    mapped = Workflow("mapped", store=store).map(_double, range(1000), commit_every=100)
    assert mapped.start().output == [2 * i for i in range(1000)]
    assert seen.count("PUT", "/items/") == 10
    assert seen.count("PUT", "/steps/") == 1  # the map step's own document


@action
def _double(item: int) -> int:
    return 2 * item


# --- the fault harness ----------------------------------------------------------------------


def committed(store: Any, kind: str) -> tuple[set[int], int]:
    """What the store holds: committed step/item indices, and partial batches seen."""
    layout = Layout("faults")
    partial = 0
    done: set[int] = set()
    if kind == "batch":
        for key in store.list(layout.batches):
            batch = load_batch(key, store.get(key))
            indices = sorted(int(d.name[1:]) for d in batch.steps)
            if indices != list(range(indices[0], indices[0] + len(indices))):
                partial += 1
            done.update(indices)
    else:
        for key in store.list(layout.items("squares")):
            batch = load_item_batch(key, store.get(key))
            indices = sorted(r[0] for r in batch.rows)
            if indices != list(range(indices[0], indices[0] + len(indices))):
                partial += 1
            done.update(indices)
        if store.get(layout.step("squares")) is not None:
            done.update(range(10_000))
    return done, partial


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["file", "s3"])
def test_sigkill_harness_over_batches_and_maps(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(17)
    kills = 0
    lost = partial = rerun_committed = 0
    #: (uncommitted items the killed runner ran, that trial's commit_every), per kill
    rerun_uncommitted: list[tuple[int, int]] = []
    env = dict(os.environ, TEST_S3_KEY=ACCESS_KEY, TEST_S3_SECRET=SECRET_KEY)
    trials = 0
    while kills < 50:
        trials += 1
        kind = rng.choice(["batch", "map"])
        n, k = rng.randint(15, 40), rng.randint(2, 8)
        folder = tmp_path / f"t{trials}"
        folder.mkdir()
        if backend == "file":
            url = f"file://{folder / 'store'}"
            store: Any = FileStore(folder / "store")
        else:
            endpoint = request.getfixturevalue("s3_endpoint")
            bucket = request.getfixturevalue("s3_bucket")
            url = f"s3://{bucket}/t{trials}?endpoint_url={endpoint}"
            store = S3Store(bucket, f"t{trials}", client=request.getfixturevalue("s3_client"))
        log = folder / "log"
        before: set[int] = set()
        while True:
            extra: list[str] = []
            if rng.random() < 0.8:
                if backend == "file" and rng.random() < 0.3:
                    extra = ["--kill-in-write", str(rng.randint(1, 3))]
                else:
                    extra = ["--kill-at", str(rng.randint(1, n))]
            started = len(log.read_text().split()) // 3 if log.exists() else 0
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.core.batch_target",
                    "--store",
                    url,
                    "--log",
                    str(log),
                    "--kind",
                    kind,
                    "--n",
                    str(n),
                    "--commit-every",
                    str(k),
                    *extra,
                ],
                check=False,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
            )
            lines = log.read_text().split() if log.exists() else []
            executed = [int(lines[i + 1]) for i in range(started * 3, len(lines), 3)]
            rerun_committed += sum(1 for i in executed if i in before)
            after, seen_partial = committed(store, kind)
            partial += seen_partial
            lost += len(before - after)
            if proc.returncode == 0:
                expected = [i * i for i in range(n)] if kind == "map" else sum(range(n))
                assert json.loads(proc.stdout)["output"] == expected
                break
            assert proc.returncode == -9, proc.stderr
            kills += 1
            uncommitted_ran = [i for i in executed if i not in after]
            rerun_uncommitted.append((len(uncommitted_ran), k))
            before = after
    print(
        f"\n{backend}: {kills} kills over {trials} runs; committed lost {lost}, partial "
        f"batches {partial}, committed re-run {rerun_committed}, uncommitted re-run per kill "
        f"max {max(n for n, _ in rerun_uncommitted)} total {sum(n for n, _ in rerun_uncommitted)}"
    )
    assert (lost, partial, rerun_committed) == (0, 0, 0)
    assert all(n <= k for n, k in rerun_uncommitted)  # at most commit_every per kill


SAGA = 4
#: ("start" | "compensate", commit_every, fail_after, undo); `fail_after`: the failing step
#: counted from the first that runs (committed steps are restored, never fail)
Op = tuple[str, int, int | None, bool]


def saga(store: MemoryStore, every: int, fail_at: int | None, undone: list[int]) -> Workflow:
    """A chain of SAGA steps, step i returning i; step `fail_at` fails (not a change of code:
    which step fails is read from the closure's dict, which a version does not count)."""
    wf = Workflow("prop/saga", store=store, commit_every=every)
    plan = {"fail_at": fail_at}
    for i in range(SAGA):

        def step(previous_context: Context, i: int = i) -> int:
            if i == plan["fail_at"]:
                raise ValueError(f"s{i} is down")
            return i

        act = dataclasses.replace(
            action(step, retry=1), compensate=lambda output, error: undone.append(output)
        )
        wf.add(act, name=f"s{i}")
    return wf


ops = st.tuples(
    st.sampled_from(["start"] * 5 + ["compensate"]),  # `compensate()` in one op of six
    st.sampled_from([1, 3]),
    st.sampled_from([None, 0, 1, 2]),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, min_size=1, max_size=5))
def test_a_start_restores_exactly_what_was_committed_and_not_undone(runs: list[Op]) -> None:
    """Over runs that commit singly or in batches (switching between them), fail at a step,
    and undo what completed (`start(compensate=True)`, `compensate()`): every start restores
    exactly the steps committed and not undone since, however their checkpoints were written."""
    store = MemoryStore()
    committed = 0  # the model: steps 0 .. committed - 1 are committed and not undone
    for kind, every, fail_after, undo in runs:
        undone: list[int] = []
        fail_at = None if fail_after is None else committed + fail_after
        wf = saga(store, every, fail_at, undone)
        if kind == "compensate":
            wf.compensate()
            assert sorted(undone) == list(range(committed))
            committed = 0
            continue
        run = wf.start(compensate=undo)
        assert [s.index for s in run.steps if s.restored] == list(range(committed))
        fails = fail_at is not None and fail_at < SAGA
        completed = fail_at if fails and fail_at is not None else SAGA
        assert [s.index for s in run.steps if s.status is Status.COMPLETED] == list(
            range(completed)
        )
        if fails and undo:  # the chain's completed steps, restored ones too, are undone
            assert sorted(undone) == list(range(completed))
            committed = 0
        else:
            assert undone == []
            committed = completed
    final = saga(store, 1, None, []).start()
    assert [s.index for s in final.steps if s.restored] == list(range(committed))


def test_a_step_restored_from_a_batch_and_undone_by_a_run_committing_singly_runs_again() -> None:
    """The batch entry is forgotten by a discard entry: deleting the step's single document,
    which does not exist, left it to be restored by the next start."""
    store, undone = MemoryStore(), []
    saga(store, 3, 2, undone).start()  # s0, s1 committed in one batch, s2 fails
    run = saga(store, 1, 3, undone).start(compensate=True)  # s2 commits singly, s3 fails
    assert [s.restored for s in run.steps] == [True, True, False, False]
    assert sorted(undone) == [0, 1, 2]
    again = saga(store, 1, None, undone).start()
    assert [s.restored for s in again.steps] == [False] * SAGA


class FailsOnce(MemoryStore):
    """A MemoryStore whose `nth` write of a step document or batch (`what="put"`), or `nth`
    delete of a progress record (`what="delete"`), fails once."""

    def __init__(self, what: str, nth: int) -> None:
        super().__init__()
        self.what, self.left = what, nth

    def _due(self, what: str, key: str) -> bool:
        wanted = "/steps/" if what == "put" else "/progress/"
        if what != self.what or wanted not in key:
            return False
        self.left -= 1
        return self.left == 0

    def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        if self._due("put", key):
            raise StoreError(f"injected: writing {key} failed")
        return super().put(key, data, **kwargs)

    def delete(self, key: str, **kwargs: Any) -> None:
        if self._due("delete", key):  # not a StoreError: Airflow's task state store has its own
            raise RuntimeError(f"injected: deleting {key} failed")
        super().delete(key, **kwargs)


def tally(store: MemoryStore, every: int) -> Workflow:
    """s0 .. s3, each adding 10**i to what it receives and saving it as its progress first:
    the last output tells which steps' outputs reached it."""
    wf = Workflow("prop/tally", store=store, commit_every=every)
    for i in range(4):

        def step(previous_context: Context, checkpoint: Progress, i: int = i) -> int:
            total = (previous_context.value or 0) + 10**i
            checkpoint.save(total)
            return total

        wf.add(step, name=f"s{i}")
    return wf


@settings(max_examples=60, deadline=None)
@given(
    every=st.sampled_from([1, 2, 3]),
    what=st.sampled_from(["put", "delete"]),
    nth=st.integers(1, 4),
)
def test_a_failed_commit_leaves_nothing_a_start_restores_wrongly(
    every: int, what: str, nth: int
) -> None:
    """One write of a checkpoint (single or batch) or one delete of a progress record fails
    during a `keep_going` run: the next start restores only steps whose checkpoints hold what
    a full run computes, and ends with the full run's output (1111)."""
    store = FailsOnce(what, nth)
    try:
        first = tally(store, every).start(keep_going=True)
    except StoreError:  # the run's last batch could not be written: the run says so
        statuses = None
    else:
        statuses = [s.status for s in first.steps]
    second = tally(store, 1).start()
    assert second.status is Status.COMPLETED
    assert [s.output for s in second.steps] == [1, 11, 111, 1111], statuses
    for index, status in enumerate(statuses or ()):
        if status is not Status.COMPLETED:  # failed: its checkpoint was never written
            assert not second.steps[index].restored, (index, statuses)
