"""`workflow.map`: one logical step over items, committed in batches, resumed item by item."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dotflow_providers import (
    Context,
    FixedRetry,
    InvalidStep,
    MemoryStore,
    Status,
    Workflow,
    action,
)
from dotflow_providers._format import Layout, load_item_batch
from dotflow_providers._map import MapFailed

from .procs import ROOT


def item_batches(store: Any, workflow_id: str, step: str) -> list[Any]:
    layout = Layout(workflow_id)
    return [load_item_batch(k, store.get(k)) for k in store.list(layout.items(step))]


def test_outputs_come_in_item_order_with_per_item_retries() -> None:
    attempts: Counter[int] = Counter()
    lock = threading.Lock()

    @action(retry=FixedRetry(max_attempts=3, delay=0.01))
    def flaky(item: int) -> int:
        with lock:
            attempts[item] += 1
            tries = attempts[item]
        time.sleep(0.001 * (item % 3))  # finish out of order
        if item % 4 == 0 and tries < 3:
            raise ConnectionError(f"item {item} flaked")
        return item * 10

    store = MemoryStore()
    wf = Workflow("ordered", store=store)
    wf.map(flaky, list(range(20)), name="flaky", commit_every=6, max_concurrency=4)
    wf.add(lambda previous_context: previous_context.value, name="next")
    run = wf.start()
    assert run.status is Status.COMPLETED
    assert run.output == [i * 10 for i in range(20)]
    assert {i: attempts[i] for i in range(0, 20, 4)} == dict.fromkeys(range(0, 20, 4), 3)
    facts = run.steps[0].summary()
    assert (facts["items_done"], facts["items_failed"], facts["items_total"]) == (20, 0, 20)
    batches = item_batches(store, "ordered", "flaky")
    assert sorted(len(b.rows) for b in batches) == [2, 6, 6, 6]
    retried = [r for b in batches for r in b.rows if r[0] % 4 == 0]
    assert all(r[2] == 3 and r[5] is not None and len(r[5]) == 3 for r in retried)


def test_failed_items_leave_failure_records_and_the_map_fails_after_the_others() -> None:
    broken = {3, 7}
    ran: list[int] = []

    @action(retry=1)
    def sometimes(item: int) -> int:
        ran.append(item)
        if item in broken:
            raise ValueError(f"bad item {item}")
        return item

    store = MemoryStore()
    wf = Workflow("failing", store=store).map(
        sometimes, range(10), name="sometimes", commit_every=4
    )
    run = wf.start()
    assert run.status is Status.FAILED
    assert ran == list(range(10))
    error = run.steps[0].exception
    assert isinstance(error, MapFailed)
    assert "2 of 10 items" in str(error)
    assert "item 3" in str(error)
    facts = run.steps[0].summary()
    assert (facts["items_done"], facts["items_failed"]) == (8, 2)
    failures = [f for b in item_batches(store, "failing", "sometimes") for f in b.failures]
    assert sorted(f.index for f in failures) == [3, 7]
    assert failures[0].error == "ValueError: bad item 3"
    broken.clear()
    ran.clear()
    again = wf.start()
    assert again.status is Status.COMPLETED
    assert ran == [3, 7]
    assert again.output == list(range(10))


def test_fail_fast_stops_at_the_first_failed_item() -> None:
    ran: list[int] = []

    @action
    def stops(item: int) -> int:
        ran.append(item)
        if item == 4:
            raise ValueError("stop here")
        return item

    store = MemoryStore()
    wf = Workflow("fast", store=store).map(stops, range(10), name="stops", fail_fast=True)
    run = wf.start()
    assert run.status is Status.FAILED
    assert ran == [0, 1, 2, 3, 4]
    (batch,) = item_batches(store, "fast", "stops")  # flushed before failing
    assert [r[0] for r in batch.rows] == [0, 1, 2, 3]
    assert batch.failures[0].index == 4


def test_an_async_step_runs_at_most_max_concurrency_items_at_once() -> None:
    spans: dict[int, tuple[float, float]] = {}

    @action
    async def fetch(item: int) -> int:
        started = time.monotonic()
        await asyncio.sleep(0.05)
        spans[item] = (started, time.monotonic())
        return -item

    run = Workflow("async-map").map(fetch, range(12), max_concurrency=3).start()
    assert run.output == [-i for i in range(12)]
    events = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    live, peak = 0, 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    assert peak == 3  # overlapping (recorded spans), and never more than 3


def test_a_map_inside_start_async() -> None:
    @action
    async def double(item: int) -> int:
        await asyncio.sleep(0)
        return 2 * item

    wf = Workflow("in-loop").map(double, [1, 2, 3], max_concurrency=2)
    run = asyncio.run(wf.start_async())
    assert run.output == [2, 4, 6]


def test_a_changed_item_runs_again_and_unchanged_ones_do_not() -> None:
    ran: list[int] = []

    @action
    def track(item: int, initial_context: Context) -> int:
        ran.append(item)
        return item + initial_context.value

    store = MemoryStore()
    source = [1, 2, 3, 4]
    Workflow("changes", store=store).map(track, lambda: list(source), initial_context=100).start()
    assert ran == [1, 2, 3, 4]
    ran.clear()
    source[2] = 30
    run = (
        Workflow("changes", store=store)
        .map(track, lambda: list(source), initial_context=100)
        .start()
    )
    assert ran == [30]
    assert run.output == [101, 102, 130, 104]
    ran.clear()
    assert (
        Workflow("changes", store=store)
        .map(track, lambda: list(source), initial_context=100)
        .start()
        .steps[0]
        .restored
    )
    assert ran == []


def test_a_thread_pool_executor_runs_the_items() -> None:
    names: set[str] = set()

    @action
    def where(item: int) -> int:
        names.add(threading.current_thread().name)
        return item

    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="user-pool") as pool:
        run = Workflow("pool").map(where, range(8), executor=pool, max_concurrency=2).start()
    assert run.output == list(range(8))
    assert names
    assert all(n.startswith("user-pool") for n in names)


def test_each_batch_logs_items_done(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dotflow_providers")
    Workflow("logged").map(_plain, range(5), commit_every=2).start()
    lines = [r.getMessage() for r in caplog.records if "items done" in r.getMessage()]
    assert lines == [
        "map step _plain: 2 of 5 items done, 0 failed",
        "map step _plain: 4 of 5 items done, 0 failed",
        "map step _plain: 5 of 5 items done, 0 failed",
    ]


@action
def _plain(item: int) -> int:
    return item


def test_bad_map_definitions_are_refused_with_the_fix() -> None:
    with pytest.raises(InvalidStep, match="give it an `item` parameter"):
        Workflow("x").map(lambda: 1, [1])
    with pytest.raises(InvalidStep, match="only a map gives"):
        Workflow("x").add(_plain)
    with pytest.raises(Exception, match="re-create"):
        Workflow("x").map(_plain, iter([1, 2]))  # type: ignore[arg-type]


def test_map_resumes_after_sigkill_in_a_second_process(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "tests.core.batch_target",
        "--store",
        f"file://{tmp_path / 'store'}",
        "--log",
        str(tmp_path / "log"),
        "--kind",
        "map",
        "--n",
        "40",
        "--commit-every",
        "10",
    ]
    killed = subprocess.run(
        [*args, "--kill-at", "26"], check=False, cwd=ROOT, capture_output=True, timeout=120
    )
    assert killed.returncode == -9
    finished = subprocess.run(
        args, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr
    lines = (tmp_path / "log").read_text().split()
    executed = [(int(lines[i + 1]), lines[i + 2]) for i in range(0, len(lines), 3)]
    first = [i for i, pid in executed if pid == str(killed_pid(executed, 0))]
    second = [i for i, pid in executed if pid != str(killed_pid(executed, 0))]
    assert first == list(range(25))  # killed before its 26th item
    assert second == list(range(20, 40))  # 20..24 were not committed (batches of 10)
    assert json.loads(finished.stdout)["output"] == [i * i for i in range(40)]


def killed_pid(executed: list[tuple[int, str]], at: int) -> str:
    return executed[at][1]


# --- the property: a crash anywhere, then a resume, equals an uninterrupted map -------------


class Snapshot:
    """What a crash at item `at` leaves: the store as it was when that item started."""

    def __init__(self, store: MemoryStore, at: int) -> None:
        self.store, self.at, self.calls = store, at, 0
        self.taken: dict[str, tuple[bytes, str]] | None = None

    def before_item(self) -> None:
        if self.calls == self.at:
            self.taken = dict(self.store._data)
        self.calls += 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(st.one_of(st.integers(), st.text(max_size=5)), min_size=1, max_size=40),
    commit_every=st.integers(1, 12),
    crash=st.integers(0, 40),
)
def test_resume_after_a_crash_equals_an_uninterrupted_map(
    items: list[Any], commit_every: int, crash: int
) -> None:
    crash %= len(items)
    store = MemoryStore()
    snapshot = Snapshot(store, crash)
    calls: list[int] = []

    @action(version="1")
    def echo(item: Any) -> list[Any]:
        snapshot.before_item()
        calls.append(len(calls))
        return [item, "out"]

    def build(target: MemoryStore) -> Workflow:
        wf = Workflow("prop", store=target, lock=False)
        return wf.map(echo, list(items), name="echo", commit_every=commit_every)

    uninterrupted = build(store).start().output
    assert snapshot.taken is not None
    crashed = MemoryStore()
    crashed._data = dict(snapshot.taken)
    committed = {r[0] for b in item_batches(crashed, "prop", "echo") for r in b.rows}
    assert len(committed) == crash // commit_every * commit_every  # whole batches only
    ran_before = len(calls)
    rerun: list[int] = []
    snapshot.at = -1

    @action(version="1")
    def echo_again(item: Any) -> list[Any]:
        rerun.append(1)
        return [item, "out"]

    resumed = (
        Workflow("prop", store=crashed, lock=False)
        .map(echo_again, list(items), name="echo", commit_every=commit_every)
        .start()
    )
    assert resumed.output == uninterrupted
    assert len(rerun) == len(items) - len(committed)
    assert ran_before == len(items)


_ITEMS = st.lists(
    st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", 1.0, True])), max_size=12
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=_ITEMS,
    edits=st.lists(
        st.tuples(st.sampled_from(["insert", "remove", "move", "change"]), st.integers(0, 20)),
        max_size=4,
    ),
    inserted=_ITEMS,
    commit_every=st.integers(1, 5),
)
def test_a_resume_after_the_item_list_was_edited_runs_exactly_the_items_not_committed(
    before: list[Any], edits: list[tuple[str, int]], inserted: list[Any], commit_every: int
) -> None:
    """Items inserted, removed, moved or changed: the next start runs each item whose value
    (with its type: 1, 1.0 and True are different items) has no committed output left for it,
    once per occurrence beyond those committed (equal items share their committed outputs,
    one each), and restores the others, in the new order."""
    after = list(before)
    new = iter(inserted)
    for edit, at in edits:
        where = at % (len(after) + 1)
        if edit == "insert":
            after.insert(where, next(new, "new"))
        elif after and edit == "remove":
            after.pop(where % len(after))
        elif after and edit == "move":
            after.insert(where % len(after), after.pop(at % len(after)))
        elif after and edit == "change":
            after[where % len(after)] = ("changed", at)
    ran: list[Any] = []

    @action(version="1")
    def tag(item: Any) -> list[Any]:
        ran.append(item)
        return [item, type(item).__name__]

    store = MemoryStore()
    for items in (before, after):
        ran.clear()
        run = Workflow("edits", store=store).map(tag, items, commit_every=commit_every).start()
        assert run.output == [[item, type(item).__name__] for item in items]

    def key(item: Any) -> tuple[str, str]:
        return type(item).__name__, repr(item)

    expected = collections.Counter(map(key, after)) - collections.Counter(map(key, before))
    assert collections.Counter(map(key, ran)) == expected
