"""The lease lock: one runner per workflow id, takeover of dead or expired holders, fencing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dotflow_providers import (
    FileStore,
    LeaseConfig,
    LockHeld,
    LockLost,
    MemoryStore,
    PreconditionFailed,
    Run,
    Status,
    Workflow,
    action,
)
from dotflow_providers._format import Layout, LeaseDocument, lease_document
from dotflow_providers._lease import Lease
from dotflow_providers.retry import Retry, stop_after_attempt, wait_fixed
from dotflow_providers.storage import CheckpointStore

from .steps import marks_its_start, occupies_its_worker


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def lease_doc(store: CheckpointStore) -> dict[str, object]:
    data = store.get("wf/lock")
    assert data is not None
    return json.loads(data)  # type: ignore[no-any-return]


def test_one_holder_at_a_time(store: CheckpointStore) -> None:
    first = Lease(store, "wf/lock", LeaseConfig(ttl=30, host="host-a"))
    first.acquire()
    doc = lease_doc(store)
    assert doc["owner"] == first.owner
    assert doc["host"] == "host-a"
    assert doc["epoch"] == 1
    with pytest.raises(LockHeld, match="host-a") as info:
        Lease(store, "wf/lock", LeaseConfig(ttl=30, host="host-b")).acquire()
    assert info.value.expires_at == pytest.approx(first.expires_at)
    first.release()
    assert store.get("wf/lock") is None
    second = Lease(store, "wf/lock", LeaseConfig(ttl=30, host="host-b"))
    second.acquire()
    second.release()


def test_a_waiting_runner_gets_the_lease_when_it_is_released(store: CheckpointStore) -> None:
    first = Lease(store, "wf/lock", LeaseConfig(ttl=30))
    first.acquire()
    threading.Timer(0.3, first.release).start()
    second = Lease(store, "wf/lock", LeaseConfig(ttl=30, wait=10, poll=0.05))
    t0 = time.monotonic()
    second.acquire()
    assert 0.25 < time.monotonic() - t0 < 5
    second.release()


def test_an_expired_lease_is_taken_over_with_the_next_epoch(store: CheckpointStore) -> None:
    clock = Clock()
    first = Lease(store, "wf/lock", LeaseConfig(ttl=10, clock_skew=2, host="far-away"), clock=clock)
    first.acquire()
    first._stop.set()  # its heartbeat stalls (the runner froze)
    later = Lease(store, "wf/lock", LeaseConfig(ttl=10, clock_skew=2, host="here"), clock=clock)
    clock.now += 11  # expired, but within the allowed clock skew
    with pytest.raises(LockHeld):
        later.acquire()
    clock.now += 2
    later.acquire()
    assert lease_doc(store)["epoch"] == 2
    assert lease_doc(store)["owner"] == later.owner
    # the stalled runner's next commit is fenced off
    with pytest.raises(LockLost, match="stalled past"):
        first.check()
    assert first.lost
    first.release()  # not ours any more: must not delete the new owner's lease
    assert lease_doc(store)["owner"] == later.owner
    later.release()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(store: CheckpointStore) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    holder = Lease(store, "wf/lock", LeaseConfig(ttl=600))
    doc = json.dumps(
        {
            "owner": "ghost",
            "host": holder.host,
            "pid": pid,
            "epoch": 4,
            "acquired_at": time.time(),
            "expires_at": time.time() + 600,
        }
    ).encode()
    store.put("wf/lock", doc)
    holder.acquire()
    assert lease_doc(store)["epoch"] == 5
    holder.release()


def test_a_live_holder_on_this_host_is_respected(store: CheckpointStore) -> None:
    first = Lease(store, "wf/lock", LeaseConfig(ttl=600))
    first.acquire()
    with pytest.raises(LockHeld):
        Lease(store, "wf/lock", LeaseConfig(ttl=600)).acquire()
    first.release()


def test_check_is_free_while_fresh_and_renews_when_stale(store: CheckpointStore) -> None:
    clock = Clock()
    lease = Lease(store, "wf/lock", LeaseConfig(ttl=30), clock=clock)
    lease.acquire()
    lease._stop.set()
    before = store.get_versioned("wf/lock")
    lease.check()
    assert store.get_versioned("wf/lock") == before  # no request while fresh
    clock.now += 25
    lease.check()
    assert lease_doc(store)["expires_at"] == pytest.approx(clock.now + 30)
    lease.release()


def test_heartbeat_keeps_renewing(store: CheckpointStore) -> None:
    lease = Lease(store, "wf/lock", LeaseConfig(ttl=0.6))
    lease.acquire()
    first_expiry = lease_doc(store)["expires_at"]
    time.sleep(1.0)
    assert lease_doc(store)["expires_at"] > first_expiry  # type: ignore[operator]
    assert not lease.lost
    lease.release()


def test_workflows_take_the_lease_and_a_second_start_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    release = threading.Event()

    def wait() -> bool:
        return release.wait(10)

    wf = Workflow("owned", store=store).add(wait, name="wait")
    run = wf.start(mode="background")
    with pytest.raises(LockHeld):
        Workflow("owned", store=store).add(wait, name="wait").start()
    release.set()
    assert run.wait(10).status is Status.COMPLETED
    assert store.get(Layout("owned").lock) is None  # released at the end
    unlocked = Workflow("owned", store=store, lock=False).add(wait, name="wait")
    assert unlocked.start().steps[0].restored


def test_reset_refuses_while_another_runner_holds_the_lease(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    holder = Lease(store, Layout("busy").lock, LeaseConfig())
    holder.acquire()
    with pytest.raises(LockHeld):
        Workflow("busy", store=store).add(lambda: 1, name="a").reset()
    holder.release()


def test_bad_lease_settings_are_named_errors() -> None:
    with pytest.raises(ValueError, match="ttl"):
        LeaseConfig(ttl=0)
    with pytest.raises(ValueError, match="wait"):
        LeaseConfig(wait=-1)


def test_no_retry_attempt_starts_once_another_runner_took_the_lease() -> None:
    """A retry is new work: after the holder's lease was taken over (by its own clock it is
    stale, and the conditional renewal fails), the step's next attempt never starts."""
    store = MemoryStore()
    layout = Layout("retry/fenced")
    calls: list[int] = []

    @action(retry=Retry(stop=stop_after_attempt(3), wait=wait_fixed(0.6)))
    def flaky() -> None:
        calls.append(len(calls))
        # another runner takes the workflow over while this one waits to retry
        found = store.get_versioned(layout.lock)
        assert found is not None
        now = time.time()
        taken = LeaseDocument("someone-else", "other-host", 1, 9, now, now + 60, 60)
        store.put(layout.lock, lease_document(taken), if_match=found[1])
        raise ConnectionError("upstream flaked")

    run = Workflow("retry/fenced", store=store, lock=LeaseConfig(ttl=0.6)).add(flaky).start()
    record = run.steps[0]
    assert calls == [0]  # the second attempt never ran
    assert record.status is Status.FAILED
    assert record.error_type == "LockLost"


def take_the_lease(store: CheckpointStore, layout: Layout) -> None:
    """Another runner takes the workflow over (conditionally, as a takeover does)."""
    while True:
        found = store.get_versioned(layout.lock)
        assert found is not None
        now = time.time()
        taken = LeaseDocument("someone-else", "other-host", 1, 9, now, now + 60, 60)
        try:
            store.put(layout.lock, lease_document(taken), if_match=found[1])
            return
        except PreconditionFailed:
            continue  # the holder's heartbeat renewed in between


def queued_past_its_window(folder: Path, take_over: bool) -> Run:
    """Parallel mode with one worker, lease TTL 0.6 s (an attempt's start window is at most
    0.4 s): the first step times out after 0.2 s but keeps the worker busy for 4 s, so the
    second waits in the pool's queue long past its window. With `take_over`, another runner takes
    the lease 1.5 s after the first step started, while the second is queued."""
    store, layout = MemoryStore(), Layout("parallel/queued")
    wf = Workflow("parallel/queued", store=store, lock=LeaseConfig(ttl=0.6))
    wf.add(occupies_its_worker, initial_context={"dir": str(folder), "seconds": 4})
    wf.add(marks_its_start, initial_context=str(folder))

    def take() -> None:
        while not (folder / "occupier").exists():
            time.sleep(0.01)
        time.sleep(1.5)
        take_the_lease(store, layout)

    taker = threading.Thread(target=take, daemon=True)
    if take_over:
        taker.start()
    run = wf.start(mode="parallel", max_workers=1, keep_going=True)
    if take_over:
        taker.join(30)
    return run


def test_a_parallel_attempt_queued_while_the_lease_was_taken_never_starts(
    tmp_path: Path,
) -> None:
    """A runner that handed an attempt to its worker pool, then stalled (or waited for a free
    worker) while another runner took the workflow over: the worker does not start it."""
    run = queued_past_its_window(tmp_path, take_over=True)
    queued = run.steps[1]
    assert not (tmp_path / "marked").exists(), "the queued step ran after the takeover"
    assert queued.status is Status.FAILED
    assert queued.error_type == "LockLost"


def test_a_parallel_attempt_queued_past_its_window_runs_once_the_lease_is_renewed(
    tmp_path: Path,
) -> None:
    run = queued_past_its_window(tmp_path, take_over=False)
    queued = run.steps[1]
    assert queued.status is Status.COMPLETED, queued.error
    assert (queued.output, queued.attempts, queued.history) == ("ran", 1, ())
    # it started once the occupied worker was free, long after its 0.4 s window had closed
    started = float((tmp_path / "marked").read_text())
    assert started >= float((tmp_path / "occupier").read_text()) + 4


def test_a_released_lease_fences_every_later_write(store: CheckpointStore) -> None:
    """Work a cancelled run left in a thread checks the lease before it writes: once the run
    released it, the check raises, and the lease document is not written again."""
    lease = Lease(store, "wf/lock", LeaseConfig(ttl=30))
    lease.acquire()
    lease.release()
    with pytest.raises(LockLost, match="released"):
        lease.check()
    assert store.get("wf/lock") is None
