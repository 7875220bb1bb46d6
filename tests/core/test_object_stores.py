"""S3 and GCS stores against real servers: the requests they send, what they cost, their errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dotflow_providers import StoreError, Workflow, action, store_from_url
from dotflow_providers._format import Layout
from dotflow_providers.storage import GCSStore, S3Store

from ..gcs_semantics import GCSPreconditions
from ..servers import ACCESS_KEY, REGION, SECRET_KEY, free_port, s3_server


class S3Requests:
    """Records every HTTP request a boto3 client sends (method, key, conditional headers)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.sent: list[tuple[str, str, dict[str, str]]] = []
        self.bucket = bucket
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        path = request.url.split(f"/{self.bucket}", 1)[1]
        headers = {
            k: v.decode() if isinstance(v, bytes) else v
            for k, v in request.headers.items()
            if k in ("If-Match", "If-None-Match")
        }
        self.sent.append((request.method, path, headers))

    def count(self, method: str, part: str = "") -> int:
        return sum(1 for m, path, _ in self.sent if m == method and part in path)

    def lists(self) -> int:
        return sum(1 for m, path, _ in self.sent if m == "GET" and "list-type=2" in path)

    def gets(self, part: str) -> int:
        return sum(
            1 for m, path, _ in self.sent if m == "GET" and part in path and "list-type" not in path
        )


def test_s3_sends_the_conditional_headers(s3_client: Any, s3_bucket: str) -> None:
    seen = S3Requests(s3_client, s3_bucket)
    store = S3Store(s3_bucket, client=s3_client)
    etag = store.put("k", b"1", if_none_match=True)
    store.put("k", b"2", if_match=etag)
    assert [h for m, _, h in seen.sent if m == "PUT"] == [
        {"If-None-Match": "*"},
        {"If-Match": etag},
    ]


def test_gcs_sends_generation_preconditions(
    gcs_client: Any, gcs_bucket: str, gcs_session: GCSPreconditions
) -> None:
    store = GCSStore(gcs_bucket, "p", client=gcs_client)
    generation = store.put("k", b"1", if_none_match=True)
    newer = store.put("k", b"2", if_match=generation)
    store.delete("k", if_match=newer)
    sent = gcs_session.requests_with("ifGenerationMatch")
    assert [(m, q["ifGenerationMatch"]) for m, _, q in sent] == [
        ("POST", "0"),
        ("POST", generation),
        ("DELETE", newer),
    ]
    assert store.get("k") is None


def test_a_successful_step_costs_one_put_and_resume_one_list(
    s3_client: Any, s3_bucket: str
) -> None:
    seen = S3Requests(s3_client, s3_bucket)
    store = S3Store(s3_bucket, "jobs", client=s3_client)
    n = 12

    def build() -> Workflow:
        wf = Workflow("counted", store=store)
        for i in range(n):
            wf.add(action(lambda i=i: {"i": i}), name=f"s{i}")
        return wf

    assert build().start().status.value == "COMPLETED"
    assert seen.count("PUT", "/steps/") == n
    assert (
        Counter(
            path.split("/")[-1] for m, path, _ in seen.sent if m == "PUT" and "/steps/" in path
        ).most_common(1)[0][1]
        == 1
    )
    assert seen.count("PUT", "/manifest.json") == 1
    seen.sent.clear()
    resumed = build().start()
    assert all(s.restored for s in resumed.steps)
    assert seen.lists() == 1
    assert seen.gets("/steps/") == n
    assert seen.gets("/manifest.json") == 1
    assert seen.count("PUT", "/steps/") == 0
    assert resumed.output == {"i": n - 1}


def test_missing_s3_bucket_fails_at_start_naming_bucket_and_operation(s3_client: Any) -> None:
    ran: list[int] = []
    store = S3Store("no-such-bucket", client=s3_client)
    wf = Workflow("w", store=store).add(lambda: ran.append(1), name="a")
    with pytest.raises(StoreError, match=r"'no-such-bucket' does not exist \(PUT s3://"):
        wf.start()
    assert ran == []


def test_missing_gcs_bucket_fails_at_start(gcs_client: Any) -> None:
    store = GCSStore("no-such-bucket", client=gcs_client)
    with pytest.raises(StoreError, match="'no-such-bucket' does not exist"):
        Workflow("w", store=store).add(lambda: 1, name="a").start()


def test_wrong_s3_credentials_fail_at_start_without_leaking_the_secret() -> None:
    with s3_server(check_credentials=True) as endpoint:
        store = S3Store(
            "any-bucket",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="AKIAWRONG",
            aws_secret_access_key=SECRET_KEY,
        )
        with pytest.raises(StoreError, match=r"refused PUT .*InvalidAccessKeyId") as info:
            Workflow("w", store=store).add(lambda: 1, name="a").start()
    assert SECRET_KEY not in str(info.value)
    assert SECRET_KEY not in repr(store)


def test_s3_and_gs_urls(
    s3_endpoint: str, s3_bucket: str, gcs_endpoint: str, gcs_client: Any, gcs_bucket: str
) -> None:
    s3 = store_from_url(
        f"s3://{s3_bucket}/team/ckpt?endpoint_url={s3_endpoint}&region={REGION}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix) == (s3_bucket, "team/ckpt")
    # its url opens the same store again: the server and region are in it, never a secret
    endpoint = urllib.parse.quote(s3_endpoint, safe="")
    assert s3.url == f"s3://{s3_bucket}/team/ckpt?endpoint_url={endpoint}&region={REGION}"
    again = store_from_url(s3.url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    assert isinstance(again, S3Store)
    assert again.url == s3.url
    assert again.client.meta.endpoint_url == s3_endpoint
    assert again.client.meta.region_name == REGION
    run = Workflow("via-url", store=s3).add(lambda: [1, 2], name="a").start()
    assert run.status.value == "COMPLETED"
    doc = json.loads(s3.get(Layout("via-url").step("a")) or b"{}")
    assert doc["output"] == [1, 2]

    gs = store_from_url(f"gs://{gcs_bucket}/ckpt", client=gcs_client)
    assert isinstance(gs, GCSStore)
    assert gs.url == f"gs://{gcs_bucket}/ckpt"
    given = GCSStore(
        gcs_bucket, "ckpt", client=gcs_client, endpoint_url=gcs_endpoint, project="test-project"
    )
    endpoint = urllib.parse.quote(gcs_endpoint, safe="")
    assert given.url == f"gs://{gcs_bucket}/ckpt?endpoint_url={endpoint}&project=test-project"
    Workflow("via-url", store=gs).add(lambda: "x", name="a").start()
    assert json.loads(gs.get(Layout("via-url").step("a")) or b"{}")["output"] == "x"


def test_a_workflow_started_on_one_store_object_resumes_on_another(
    s3_client: Any, s3_endpoint: str, s3_bucket: str
) -> None:
    calls: list[str] = []

    def build(store: Any, fail: bool) -> Workflow:
        def first() -> str:
            calls.append("first")
            return "from runner one"

        def second(previous_context: Any) -> str:
            calls.append("second")
            if fail:
                raise RuntimeError("runner one dies here")
            return previous_context.value + " via runner two"

        return Workflow("shared", store=store).add(first, name="first").add(second, name="second")

    build(S3Store(s3_bucket, "x", client=s3_client), fail=True).start()
    other = S3Store(
        s3_bucket,
        "x",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    run = build(other, fail=False).start()
    assert run.output == "from runner one via runner two"
    assert calls == ["first", "second", "second"]


def test_s3_throttling_and_server_errors_are_retried_then_named(
    s3_endpoint: str, s3_bucket: str
) -> None:
    from ..flaky_proxy import flaky_proxy

    with flaky_proxy(s3_endpoint) as (endpoint, proxy):
        store = S3Store(
            s3_bucket,
            "flaky",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            max_attempts=3,
        )
        proxy.fail_next(1, 503, "SlowDown")
        proxy.fail_next(1, 500, "InternalError")
        store.put("k", b"survived", if_none_match=True)  # 2 failures, then through
        assert [status for _, status in proxy.seen] == [503, 500, 200]
        assert store.get("k") == b"survived"

        proxy.fail_next(10, 503, "SlowDown")
        with pytest.raises(StoreError, match="SlowDown"):
            store.put("k2", b"never")
        assert [s for _, s in proxy.seen].count(503) == 1 + 3  # bounded: max_attempts tries
        proxy.failures.clear()
        assert store.get("k2") is None


def test_gcs_server_errors_are_retried(
    gcs_client: Any, gcs_bucket: str, gcs_session: GCSPreconditions
) -> None:
    store = GCSStore(gcs_bucket, "p", client=gcs_client)
    gcs_session.fail_next(1, 503)
    generation = store.put("k", b"after a 503", if_none_match=True)
    uploads = [q.get("ifGenerationMatch") for _, path, q in gcs_session.sent if "/upload/" in path]
    assert uploads == ["0", "0"]  # the same create-only upload, sent again
    gcs_session.fail_next(1, 503)
    assert store.get_versioned("k") == (b"after a 503", generation)


# --- every failure is a StoreError naming the store, the key and what to do ---


def test_gcs_without_credentials_is_a_store_error_naming_the_fix(tmp_path: Path) -> None:
    """A machine with no Google credentials at all: no key file, no gcloud login, no metadata
    server (a closed local port stands in for it)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOOGLE_", "GCLOUD_", "CLOUDSDK_", "GCE_"))
    }
    env.update(
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        NO_GCE_CHECK="true",
        GCE_METADATA_HOST=f"127.0.0.1:{free_port()}",
        GCE_METADATA_IP=f"127.0.0.1:{free_port()}",
    )
    script = (
        "from dotflow_providers import StoreError, store_from_url\n"
        "try:\n"
        "    store_from_url('gs://some-bucket/ckpt').get('wf/manifest.json')\n"
        "except StoreError as exc:\n"
        "    print('StoreError:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stderr == ""
    assert done.stdout.startswith(
        "StoreError: no Google Cloud credentials for gs://some-bucket/ckpt"
    )
    assert "GOOGLE_APPLICATION_CREDENTIALS" in done.stdout


def test_an_invalid_s3_endpoint_is_a_store_error_without_its_userinfo() -> None:
    for endpoint in ("http://user:hunter2@[bad", "not a url"):
        with pytest.raises(
            StoreError, match=r"cannot set up S3 for s3://b/p.*check endpoint_url"
        ) as info:
            S3Store("b", "p", endpoint_url=endpoint, region_name=REGION)
        assert "hunter2" not in str(info.value)


def test_an_unreachable_s3_endpoint_names_the_key_and_what_to_check() -> None:
    store = S3Store(
        "b",
        "p",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        max_attempts=1,
    )
    for call in (
        lambda: store.get("k"),
        lambda: store.put("k", b"x"),
        lambda: list(store.list("")),
        lambda: store.delete("k"),
    ):
        with pytest.raises(
            StoreError, match=r"cannot reach S3 for \w+ on s3://b/p.*check endpoint_url"
        ):
            call()
