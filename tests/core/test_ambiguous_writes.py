"""Conditional writes whose answer was lost: the server wrote, then failed before replying.

The client retries, the retry finds the condition taken by its own first try, and the store
must report success (our bytes are there), not `PreconditionFailed`. S3 goes through a proxy in
front of moto that lets the write land and answers 500; GCS through the session in front of the
emulator that does the same.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dotflow_providers import LeaseConfig, PreconditionFailed, Workflow
from dotflow_providers._format import Layout
from dotflow_providers._lease import Lease
from dotflow_providers.storage import GCSStore, S3Store

from ..flaky_proxy import FlakyProxy, flaky_proxy
from ..gcs_semantics import GCSPreconditions
from ..servers import ACCESS_KEY, REGION, SECRET_KEY


@pytest.fixture
def proxied(s3_endpoint: str, s3_bucket: str) -> Iterator[tuple[S3Store, FlakyProxy]]:
    """An S3Store whose requests pass through a fault-injecting proxy in front of moto."""
    with flaky_proxy(s3_endpoint) as (endpoint, proxy):
        store = S3Store(
            s3_bucket,
            "ambiguous",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        yield store, proxy


def statuses(proxy: FlakyProxy, method: str) -> list[int]:
    return [status for m, status in proxy.seen if m == method]


def test_s3_create_only_put_whose_answer_was_lost_succeeds(
    proxied: tuple[S3Store, FlakyProxy],
) -> None:
    store, proxy = proxied
    proxy.fail_after_landing(1, "PUT")
    version = store.put("k", b"mine", if_none_match=True)
    # the write landed, its answer was a 500, botocore's retry found the key taken
    assert statuses(proxy, "PUT") == [500, 412]
    assert store.get_versioned("k") == (b"mine", version)
    with pytest.raises(PreconditionFailed, match="already exists"):
        store.put("k", b"someone else's", if_none_match=True)  # a real conflict still loses
    assert store.get("k") == b"mine"


def test_s3_compare_and_swap_whose_answer_was_lost_succeeds(
    proxied: tuple[S3Store, FlakyProxy],
) -> None:
    store, proxy = proxied
    first = store.put("k", b"v1")
    proxy.fail_after_landing(1, "PUT")
    second = store.put("k", b"v2", if_match=first)
    assert statuses(proxy, "PUT") == [200, 500, 412]
    assert store.get_versioned("k") == (b"v2", second)
    with pytest.raises(PreconditionFailed, match="changed"):
        store.put("k", b"stale", if_match=first)
    assert store.get("k") == b"v2"


def test_a_workflow_completes_when_every_checkpoint_answer_is_lost(
    proxied: tuple[S3Store, FlakyProxy], s3_client: Any, s3_bucket: str
) -> None:
    store, proxy = proxied
    calls: list[str] = []

    def step(name: str) -> Any:
        def run() -> str:
            calls.append(name)
            return name

        return run

    def build() -> Workflow:
        wf = Workflow("lost-answers", store=store)
        for name in ("a", "b", "c"):
            wf.add(step(name), name=name)
        return wf

    proxy.fail_after_landing(3, "PUT", "/steps/")
    run = build().start()
    assert run.status.value == "COMPLETED", [s.error for s in run.steps]
    assert calls == ["a", "b", "c"]
    assert len({path for _, path in proxy.landed}) == 3  # each step's checkpoint lost its answer
    listed = s3_client.list_objects_v2(
        Bucket=s3_bucket, Prefix=f"ambiguous/{Layout('lost-answers').steps}"
    )
    assert len(listed["Contents"]) == 3
    resumed = build().start()
    assert all(step.restored for step in resumed.steps)
    assert calls == ["a", "b", "c"]  # nothing ran again


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_lease_whose_create_and_renewal_answers_were_lost_is_still_ours(
    proxied: tuple[S3Store, FlakyProxy],
) -> None:
    store, proxy = proxied
    clock = Clock()
    lease = Lease(store, "wf/lock", LeaseConfig(ttl=300), clock=clock)
    proxy.fail_after_landing(1, "PUT")
    lease.acquire()  # not LockHeld naming our own pid
    try:
        assert json.loads(store.get("wf/lock") or b"{}")["owner"] == lease.owner
        clock.now += 100
        proxy.fail_after_landing(1, "PUT")
        lease.renew()  # not LockLost
        assert not lease.lost
        doc = json.loads(store.get("wf/lock") or b"{}")
        assert doc["expires_at"] == pytest.approx(lease.expires_at)
        assert doc["expires_at"] == pytest.approx(clock.now + 300)
        assert len(proxy.landed) == 2
    finally:
        lease.release()
    assert store.get("wf/lock") is None  # the conditional delete named the right version


def test_gcs_create_only_and_compare_and_swap_whose_answers_were_lost_succeed(
    gcs_client: Any, gcs_bucket: str, gcs_session: GCSPreconditions
) -> None:
    store = GCSStore(gcs_bucket, "p", client=gcs_client)
    gcs_session.fail_after_landing(1, "POST", "/upload/")
    created = store.put("k", b"mine", if_none_match=True)
    gcs_session.fail_after_landing(1, "POST", "/upload/")
    swapped = store.put("k", b"mine, again", if_match=created)
    assert len(gcs_session.landed) == 2
    uploads = [q["ifGenerationMatch"] for _, path, q in gcs_session.sent if "/upload/" in path]
    assert uploads == ["0", "0", created, created]  # each upload sent twice, as the same request
    assert store.get_versioned("k") == (b"mine, again", swapped)
    with pytest.raises(PreconditionFailed):
        store.put("k", b"stale", if_match=created)
    with pytest.raises(PreconditionFailed):
        store.put("k", b"theirs", if_none_match=True)
