"""The Prefect integration against a real local Prefect API: flow retries resume, blocks,
artifacts and block registration."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..servers import ACCESS_KEY, REGION, SECRET_KEY
from ..sidefx import steps_ran


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOTFLOW_TEST_DIR", str(tmp_path))
    return tmp_path


def test_a_flow_retry_resumes_run_workflow_after_the_failed_step(work: Path) -> None:
    from .flows import etl_flow

    (work / "fail-load").touch()
    result = etl_flow(store=f"file://{work / 'ckpt'}")
    assert result == "loaded 12 for 2026-11-22"
    assert steps_ran(work) == ["extract", "transform", "load", "load"]


def test_a_flow_retry_skips_completed_dotflow_tasks(work: Path) -> None:
    from .flows import task_flow

    (work / "fail-publish").touch()
    assert task_flow("2026-11-22") == 60
    assert steps_ran(work) == ["fetch", "enrich", "publish", "publish"]


def test_flow_retry_resumes_with_the_s3_block(
    work: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    from dotflow_prefect import DotflowS3Store

    from .flows import etl_flow

    DotflowS3Store(
        bucket=s3_bucket,
        prefix="prefect",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ).save("test-s3", overwrite=True)
    block = DotflowS3Store.load("test-s3")
    (work / "fail-load").touch()
    assert etl_flow(store=block) == "loaded 12 for 2026-11-22"
    assert steps_ran(work) == ["extract", "transform", "load", "load"]
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert sum("/steps/" in k for k in keys) == 3
    assert all(k.startswith("prefect/prefect/") for k in keys)


def test_block_round_trip_keeps_secrets_secret(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    from dotflow_prefect import DotflowS3Store

    DotflowS3Store(
        bucket="b",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key=SECRET_KEY,
        aws_session_token="session-" + SECRET_KEY,
    ).save("secret-check", overwrite=True)
    loaded = DotflowS3Store.load("secret-check")
    assert loaded.aws_secret_access_key is not None
    assert loaded.aws_secret_access_key.get_secret_value() == SECRET_KEY
    assert SECRET_KEY not in repr(loaded)
    assert SECRET_KEY not in repr(loaded.store())

    async def masked() -> dict[str, Any]:
        async with get_client() as client:
            document = await client.read_block_document_by_name(
                "secret-check", "dotflow-s3-store", include_secrets=False
            )
            return dict(document.data)

    data = asyncio.run(masked())
    assert data["bucket"] == "b"
    assert data["aws_secret_access_key"] != SECRET_KEY
    assert SECRET_KEY not in str(data)
    assert loaded.aws_session_token is not None
    assert loaded.aws_session_token.get_secret_value() == "session-" + SECRET_KEY


def test_retry_policy_block_builds_policies() -> None:
    from dotflow_prefect import DotflowRetryPolicy
    from dotflow_providers import CircuitBreaker, ExponentialBackoff, FixedRetry

    DotflowRetryPolicy(
        kind="exponential",
        max_attempts=4,
        initial=0.5,
        cap=8,
        jitter=False,
        retry_on=["builtins:ConnectionError"],
    ).save("api-policy", overwrite=True)
    policy = DotflowRetryPolicy.load("api-policy").policy()
    assert isinstance(policy, ExponentialBackoff)
    assert [policy.next_delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert policy.should_retry(1, ConnectionResetError())
    assert not policy.should_retry(1, KeyError())
    assert isinstance(DotflowRetryPolicy(kind="fixed", max_attempts=2).policy(), FixedRetry)
    breaker = DotflowRetryPolicy(kind="circuit_breaker", threshold=3).policy()
    assert isinstance(breaker, CircuitBreaker)
    assert breaker.threshold == 3


def test_run_workflow_reports_steps_as_an_artifact(work: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from dotflow_prefect import run_workflow
    from prefect import flow

    from .flows import etl

    @flow
    def reported() -> Any:
        return run_workflow(
            etl(),
            workflow_id="artifact-demo",
            store=f"file://{work / 'c'}",
            initial_context="2026-11-22",
        )

    assert reported() == "loaded 12 for 2026-11-22"

    async def latest() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["dotflow-artifact-demo"])
                )
            )
            return str(found[0].data)

    table = asyncio.run(latest())
    assert "| extract | COMPLETED | 1 |" in table
    assert "| load | COMPLETED | 1 |" in table
    assert "`artifact-demo`: COMPLETED" in table


def test_default_store_is_under_prefect_home_and_refused_for_deployments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dotflow_prefect import default_store
    from dotflow_providers import ConfigurationError, FileStore

    store = default_store()
    assert isinstance(store, FileStore)
    assert str(store.root).startswith(os.environ["PREFECT_HOME"])
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", "7c1b1e4e-0000-4000-8000-000000000000")
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__NAME", "nightly-etl")
    with pytest.raises(ConfigurationError, match="shared store"):
        default_store()


def test_prefect_block_register_lists_the_block_types(prefect_api: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "dotflow_prefect"],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for name in (
        "Dotflow File Store",
        "Dotflow S3 Store",
        "Dotflow GCS Store",
        "Dotflow Retry Policy",
    ):
        assert name in out.stdout
    # the abstract base is an interface: registering it would offer a block that cannot load
    assert "CheckpointStoreBlock" not in out.stdout
    assert "Checkpoint Store Block" not in out.stdout


def test_the_s3_block_takes_a_prefect_aws_credentials_block_whose_secret_stays_masked(
    work: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    from prefect.client.orchestration import get_client
    from prefect_aws import AwsCredentials, MinIOCredentials

    from dotflow_prefect import DotflowS3Store

    from .flows import etl_flow

    AwsCredentials(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        aws_client_parameters={"endpoint_url": s3_endpoint},
    ).save("test-aws", overwrite=True)
    DotflowS3Store(
        bucket=s3_bucket, prefix="via-credentials", credentials=AwsCredentials.load("test-aws")
    ).save("s3-with-credentials", overwrite=True)
    block = DotflowS3Store.load("s3-with-credentials")
    assert isinstance(block.credentials, AwsCredentials)
    (work / "fail-load").touch()
    assert etl_flow(store=block) == "loaded 12 for 2026-11-22"
    assert steps_ran(work) == ["extract", "transform", "load", "load"]
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys
    assert all(k.startswith("via-credentials/") for k in keys)

    async def documents() -> list[str]:
        async with get_client() as client:
            found = [
                await client.read_block_document_by_name(name, slug, include_secrets=False)
                for name, slug in (
                    ("s3-with-credentials", "dotflow-s3-store"),
                    ("test-aws", "aws-credentials"),
                )
            ]
        return [str(document.data) for document in found]

    assert all(SECRET_KEY not in data for data in asyncio.run(documents()))
    minio = MinIOCredentials(
        minio_root_user=ACCESS_KEY,
        minio_root_password=SECRET_KEY,
        region_name=REGION,
        aws_client_parameters={"endpoint_url": s3_endpoint},
    )
    store = DotflowS3Store(bucket=s3_bucket, prefix="minio", credentials=minio).store()
    store.put("probe", b"1")
    assert store.get("probe") == b"1"


def test_a_credentials_block_and_inline_secrets_together_are_refused() -> None:
    from prefect_aws import AwsCredentials
    from prefect_gcp import GcpCredentials

    from dotflow_prefect import DotflowGCSStore, DotflowS3Store
    from dotflow_providers import ConfigurationError

    with pytest.raises(ConfigurationError, match="inline secrets; keep one"):
        DotflowS3Store(
            bucket="b", credentials=AwsCredentials(), aws_secret_access_key=SECRET_KEY
        ).store()
    with pytest.raises(ConfigurationError, match="inline secrets; keep one"):
        DotflowGCSStore(
            bucket="b",
            credentials=GcpCredentials.model_construct(project="p"),  # no ADC lookup here
            service_account_info={"k": "v"},
        ).store()


def test_registered_block_types_carry_the_logo_the_docs_and_credentials_references(
    prefect_api: str,
) -> None:
    from prefect.client.orchestration import get_client

    from dotflow_prefect import DotflowGCSStore, DotflowS3Store

    DotflowS3Store.register_type_and_schema()
    DotflowGCSStore.register_type_and_schema()

    async def read() -> list[Any]:
        async with get_client() as client:
            types = [
                await client.read_block_type_by_slug(slug)
                for slug in ("dotflow-s3-store", "dotflow-gcs-store")
            ]
            schemas = [
                await client.get_most_recent_block_schema_for_block_type(t.id) for t in types
            ]
        return [*types, *schemas]

    s3_type, gcs_type, s3_schema, gcs_schema = asyncio.run(read())
    for block_type in (s3_type, gcs_type):
        assert str(block_type.logo_url).endswith("/docs/assets/dotflow.png")
        assert str(block_type.documentation_url).startswith(
            "https://github.com/dotflow-io/dotflow-providers"
        )
    assert {"aws-credentials", "minio-credentials"} <= set(
        s3_schema.fields["block_schema_references"]["credentials"]
        and [
            r["block_type_slug"] for r in s3_schema.fields["block_schema_references"]["credentials"]
        ]
    )
    assert gcs_schema.fields["block_schema_references"]["credentials"]["block_type_slug"] == (
        "gcp-credentials"
    )
