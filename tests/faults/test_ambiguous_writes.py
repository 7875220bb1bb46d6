"""Writes whose answer is lost: the proxy in front of moto lets a step's checkpoint PUT or a
lease PUT (creation or renewal) land, then answers 500; botocore retries and meets 412. In
every mode the run must still complete, every step must run exactly once and be stored once,
and a second start must restore everything.

A thread re-arms `FlakyProxy.fail_after_landing` while the runner works, alternating between
the lease key and the step keys, because each arming fails one write per path.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dotflow_providers._format import Layout

from ..flaky_proxy import FlakyProxy
from .conftest import S3Target
from .harness import FIGURES, Children, read_log, run_to_end, snapshot, step_index, target_args
from .target import MODES, expected_outputs

STEPS = 24


@contextlib.contextmanager
def keep_alive_flaky_proxy(upstream: str) -> Iterator[tuple[str, FlakyProxy]]:
    """`tests.flaky_proxy.flaky_proxy`, speaking HTTP/1.1: botocore sends PUT bodies after
    `Expect: 100-continue`, and an HTTP/1.0 server never answers 100, so every PUT would wait
    botocore's full second first, longer than a lease renewal may take here."""
    proxy = FlakyProxy(upstream)

    class Handler(proxy.handler()):  # type: ignore[misc]
        protocol_version = "HTTP/1.1"

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", proxy
    finally:
        server.shutdown()
        server.server_close()


def keep_failing(proxy: FlakyProxy, stop: threading.Event) -> None:
    """Alternately: the next lease PUT, then the next three step PUTs, each landing and
    answered 500; each turn lasts until its failures happened or a quarter second passed."""
    while not stop.is_set():
        for count, path in ((1, "/.dotflow/lock"), (3, "/.dotflow/steps/")):
            before = len(proxy.landed)
            proxy.fail_after_landing(count, "PUT", path)
            deadline = time.monotonic() + 0.25
            while len(proxy.landed) < before + count and time.monotonic() < deadline:
                if stop.wait(0.002):
                    return


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_runs_complete_exactly_once_when_write_answers_are_lost(
    mode: str, tmp_path: Path, group: Children, s3: S3Target
) -> None:
    store = s3.store("ambiguous")
    log = tmp_path / "steps.log"
    env = {**s3.env, "FAULT_LOG": str(log), "FAULT_STEP_SECONDS": "0.05,0.1"}
    stop = threading.Event()
    with keep_alive_flaky_proxy(s3.endpoint) as (endpoint, proxy):
        url = s3.url("ambiguous", endpoint)
        # a short lease: renewed every 0.7 s, so several renewals happen during the run
        args = target_args(url, "lost-answers", mode, STEPS, "--lease-ttl", "2")
        arming = threading.Thread(target=keep_failing, args=(proxy, stop), daemon=True)
        proxy.fail_after_landing(1, "PUT", "/.dotflow/lock")  # the lease's creation first
        arming.start()
        try:
            first = run_to_end(group, args, {**env, "FAULT_ROUND": "0"}, "first")
        finally:
            stop.set()
            arming.join()
        landed = list(proxy.landed)
        second = run_to_end(group, args, {**env, "FAULT_ROUND": "1"}, "second")

    expected = expected_outputs(mode, STEPS)
    starts = Counter(line.index for line in read_log(log) if line.kind == "start")
    state = snapshot(store, "lost-answers")
    stored = {step_index(key): output for key, output in state.outputs.items()}
    problems = []
    if first["status"] != "COMPLETED" or first["outputs"] != expected:
        problems.append(f"the run did not complete correctly: {first}")
    if not all(second["restored"]) or second["outputs"] != expected:
        problems.append(f"the second start did not restore everything: {second}")
    problems += [f"step {i} ran {n} times" for i, n in starts.items() if n != 1]
    if set(starts) != set(range(STEPS)):
        problems.append(f"steps that never ran: {set(range(STEPS)) - set(starts)}")
    if state.corrupt or stored != dict(enumerate(expected)):
        problems.append(f"stored checkpoints differ: corrupt {state.corrupt}")
    lease_writes = sum(path.endswith(Layout("lost-answers").lock) for _, path in landed)
    FIGURES["ambiguous_writes"] += len(landed)
    FIGURES["ambiguous_lease_writes"] += lease_writes
    FIGURES["ambiguous_losses"] += len(problems)
    assert not problems, "\n".join(problems)
    # the faults really happened: the lease's creation (armed first) and many commits; how many
    # renewals also lose their answer depends on how fast the run is (the total is printed)
    assert lease_writes >= 1, landed
    assert len(landed) - lease_writes >= 6, landed
