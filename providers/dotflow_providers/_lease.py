"""A lease lock on one store key, so only one runner at a time owns a workflow id.

The lease document records owner, host, pid, epoch and expiry. It is created create-only,
renewed from a heartbeat thread with compare-and-swap, and released with a conditional delete.
A lease past its expiry (plus the allowed clock skew) is taken over with compare-and-swap and
the epoch incremented; on the same host, a lease whose process is gone is taken over at once.

The holder fences its own commits: before each one it checks that its lease is still within
its local expiry, and if not it renews it conditionally first, so a runner that stalled past
its lease stops with `LockLost` instead of overwriting the new owner's work.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from ._errors import (
    ConfigurationError,
    LockHeld,
    LockLost,
    PreconditionFailed,
    StoreError,
)
from ._format import LeaseDocument, lease_document, load_lease
from .storage import CheckpointStore

logger = logging.getLogger("dotflow_providers")


@dataclasses.dataclass(frozen=True)
class LeaseConfig:
    """How a workflow's lease behaves: `Workflow(lock=LeaseConfig(ttl=30, wait=10))`.

    `ttl`: seconds a lease lives without renewal (renewed every ttl/3). `wait`: seconds to wait
    for a held lease before `LockHeld`. `clock_skew`: extra seconds a lease is honoured past its
    expiry, covering clock differences between hosts. `host`: the name recorded for this
    runner (the machine's hostname by default; give each container its own).
    """

    ttl: float = 60.0
    wait: float = 0.0
    clock_skew: float = 5.0
    host: str | None = None
    poll: float = 0.5

    def __post_init__(self) -> None:
        if self.ttl <= 0:
            raise ConfigurationError(f"lock ttl must be positive seconds, got {self.ttl!r}")
        if self.wait < 0 or self.clock_skew < 0 or self.poll <= 0:
            raise ConfigurationError("lock wait and clock_skew must be >= 0, poll > 0")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """A held (or wanted) lease on `key`. Use `acquire()`, then `release()`."""

    def __init__(
        self,
        store: CheckpointStore,
        key: str,
        config: LeaseConfig,
        *,
        clock: Callable[[], float] = time.time,
        on_heartbeat: Callable[[], None] | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.config = config
        #: the holder's name in the lease document (an orchestrator's run id; else a random one)
        self.owner = owner or uuid.uuid4().hex
        self.host = config.host or socket.gethostname()
        self.pid = os.getpid()
        self.epoch = 0
        self.expires_at = 0.0
        self.lost = False
        #: the lease was taken over from a runner that died or stalled without releasing it
        self.took_over = False
        #: called from the heartbeat thread after each renewal (the run watches for cancels)
        self.on_heartbeat = on_heartbeat
        self.clock = clock
        self._version: str | None = None
        #: after this (local clock), a commit renews the lease before writing
        self.renew_at = 0.0
        #: released by its run: every later check raises (work abandoned by a cancelled run,
        #: still in a thread, must write nothing)
        self.released = False
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, *, if_match: str | None = None, create: bool = False) -> None:
        """Write our lease document; the local expiry only moves once the write succeeded."""
        now = self.clock()
        document = lease_document(
            LeaseDocument(
                self.owner,
                self.host,
                self.pid,
                self.epoch,
                now,
                now + self.config.ttl,
                self.config.ttl,
            )
        )
        self._version = self.store.put(self.key, document, if_match=if_match, if_none_match=create)
        self.expires_at = now + self.config.ttl
        # A commit renews first once two thirds of the TTL are gone: the heartbeat (every third)
        # normally got there before, so this only costs a request after a stall.
        self.renew_at = now + self.config.ttl * 2 / 3

    def _read(self) -> tuple[LeaseDocument, str] | None:
        current = self.store.get_versioned(self.key)
        if current is None:
            return None
        return load_lease(self.key, current[0]), current[1]

    def _takeable(self, lease: LeaseDocument) -> bool:
        if self.clock() > lease.expires_at + self.config.clock_skew:
            return True
        return lease.host == self.host and not _process_alive(lease.pid)

    def acquire(self) -> None:
        """Take the lease, waiting up to `config.wait` seconds; raise `LockHeld` otherwise."""
        self.released = False
        deadline = time.monotonic() + self.config.wait
        while True:
            try:
                self.epoch = 1
                self._write(create=True)
                break
            except PreconditionFailed:
                pass
            found = self._read()
            if found is None:
                continue  # released between our two calls
            lease, version = found
            if self._takeable(lease):
                self.epoch = lease.epoch + 1
                try:
                    self._write(if_match=version)
                except PreconditionFailed:
                    continue  # another runner took it first; look again
                self.took_over = True
                logger.warning(
                    "took over the lease on %s from %s@%s (pid %s), epoch %d",
                    self.key,
                    lease.owner,
                    lease.host,
                    lease.pid,
                    self.epoch,
                    extra={"lock": self.key, "epoch": self.epoch},
                )
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                holder = f"{lease.host} pid {lease.pid} (epoch {lease.epoch})"
                raise LockHeld(self.key, holder, lease.expires_at)
            time.sleep(min(self.config.poll, remaining))
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"dotflow-lease:{self.key}", daemon=True
        )
        self._thread.start()

    def renew(self, only_if_stale: bool = False) -> None:
        """Extend the lease; `LockLost` if another runner has taken it."""
        with self._mutex:
            if self.lost:
                raise LockLost(f"the lease on {self.key} was taken over by another runner")
            if self.released:
                raise LockLost(
                    f"the lease on {self.key} was released when its run ended; work it left "
                    "running (a cancelled run's thread) writes nothing"
                )
            if only_if_stale and self.clock() < self.renew_at:
                return  # renewed by the heartbeat while we waited for the mutex
            try:
                self._write(if_match=self._version)
            except PreconditionFailed:
                self.lost = True
                raise LockLost(
                    f"the lease on {self.key} was taken over by another runner after this one "
                    f"stalled past its {self.config.ttl}s TTL; stopping without committing"
                ) from None

    def check(self) -> None:
        """Fence a commit: cheap while the lease is fresh, a conditional renew once it is not.

        A renewal in flight holds the mutex, so a commit after a stall waits for its answer.
        """
        if self.lost or self.clock() >= self.renew_at:
            self.renew(only_if_stale=True)

    def start_window(self) -> float:
        """Until when new work may start under this lease without asking the store, on
        `time.monotonic()` (one clock for every process of this machine): its renewal time by
        this runner's clock. A `check()` first: a stale lease is renewed, a lost one raises."""
        self.check()
        return time.monotonic() + self.renew_at - self.clock()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.config.ttl / 3):
            try:
                self.renew()
            except LockLost:
                logger.error("lost the lease on %s", self.key, extra={"lock": self.key})
                return
            except StoreError as exc:  # transient: the lease may still be ours; try again
                logger.warning("could not renew the lease on %s: %s", self.key, exc)
            if self.on_heartbeat is not None:
                try:
                    self.on_heartbeat()
                except Exception as exc:  # a watcher must never kill the heartbeat
                    logger.warning("heartbeat watcher failed: %s", exc)

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        # The watcher refers to the run (to cancel it), which refers back to the lease: dropped,
        # a finished run is freed as soon as nothing uses it, not by a full collection later.
        self.on_heartbeat = None
        with self._mutex:
            self.released = True
            self.renew_at = -math.inf  # the next check asks `renew`, which refuses
            if self.lost or self._version is None:
                return
            try:
                self.store.delete(self.key, if_match=self._version)
            except PreconditionFailed:
                pass  # taken over meanwhile: it is not ours to delete
            except StoreError as exc:
                logger.warning("could not release the lease on %s: %s", self.key, exc)
            self._version = None


def read_lease(
    store: CheckpointStore, key: str, clock_skew: float = LeaseConfig.clock_skew
) -> LeaseDocument | None:
    """The lease on `key` if a runner holds it now (present and not expired), else None."""
    data = store.get(key)
    if data is None:
        return None
    lease = load_lease(key, data)
    return lease if time.time() <= lease.expires_at + clock_skew else None
