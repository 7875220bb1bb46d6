"""Encrypted checkpoints from the store blocks: keys from their `encryption_keys` secret field,
which never reach a log, an artifact, a checkpoint, the API or an error message."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from ..servers import ACCESS_KEY, REGION, SECRET_KEY
from ..sidefx import steps_ran
from .logs import run_logs

OLD, NEW = b"o" * 32, b"n" * 32  # two AES-256 keys: new writes use the newest, "new"
KEYS = f"old:{base64.b64encode(OLD).decode()},new:{base64.b64encode(NEW).decode()}"


def secrets_in(text: str) -> list[str]:
    """Which forms of the keys `text` holds (the list, each key, in base64 or not)."""
    forms = [KEYS, *(base64.b64encode(k).decode() for k in (OLD, NEW))]
    forms += [k.decode("latin-1") for k in (OLD, NEW)]
    return [form for form in forms if form in text]


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOTFLOW_TEST_DIR", str(tmp_path))
    return tmp_path


def artifacts_of(flow_run_id: UUID) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        return "\n".join(str(artifact.data) for artifact in found)

    return asyncio.run(read())


def test_an_encrypted_s3_block_resumes_a_flow_retry_and_stores_only_ciphertext(
    work: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    from prefect.client.orchestration import get_client

    from dotflow_prefect import DotflowS3Store
    from dotflow_providers.storage import EncryptedStore, S3Store

    from .flows import etl_flow

    DotflowS3Store(
        bucket=s3_bucket,
        prefix="prefect",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        encryption_keys=KEYS,
    ).save("encrypted-s3", overwrite=True)
    block = DotflowS3Store.load("encrypted-s3")
    (work / "fail-load").touch()
    state = etl_flow(store=block, return_state=True)
    assert state.result() == "loaded 12 for 2026-11-22"
    assert steps_ran(work) == ["extract", "transform", "load", "load"]  # the retry resumed
    # every document in the bucket is encrypted with the newest key, and only the keys open it
    bodies = {
        o["Key"]: s3_client.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read()
        for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    }
    step_keys = [key.removeprefix("prefect/") for key in bodies if "/steps/" in key]
    assert len(step_keys) == 3
    assert all(body.startswith(b"DFE\x01\x03new") for body in bodies.values())
    assert not any(b"2026-11-22" in body for body in bodies.values())
    opened = EncryptedStore(S3Store(s3_bucket, "prefect", client=s3_client), [("new", NEW)])
    assert any(b"2026-11-22" in (opened.get(key) or b"") for key in step_keys)
    # the keys are nowhere: the stored bytes, the run's logs and artifacts, reprs, the API
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    assert secrets_in(b"".join(bodies.values()).decode("latin-1")) == []
    logs = run_logs(flow_run_id)
    assert logs
    assert secrets_in("\n".join(message for _, message in logs)) == []
    assert secrets_in(artifacts_of(flow_run_id)) == []
    assert secrets_in(repr(block) + repr(block.store())) == []

    async def as_the_api_shows_it() -> str:
        async with get_client() as client:
            document = await client.read_block_document_by_name(
                "encrypted-s3", "dotflow-s3-store", include_secrets=False
            )
        return str(document.data)

    assert secrets_in(asyncio.run(as_the_api_shows_it())) == []


def test_a_file_block_with_keys_encrypts_and_a_bad_key_list_is_refused_unquoted(
    tmp_path: Path,
) -> None:
    from dotflow_prefect import DotflowFileStore
    from dotflow_providers import ConfigurationError, Workflow

    block = DotflowFileStore(path=str(tmp_path / "ckpt"), encryption_keys=KEYS)
    run = Workflow("enc", store=block.store()).add(lambda: {"secret": "data"}, name="s").start()
    assert run.output == {"secret": "data"}
    files = [p for p in (tmp_path / "ckpt").rglob("*") if p.is_file() and "lock" not in p.name]
    assert files
    assert all(p.read_bytes().startswith(b"DFE\x01\x03new") for p in files)
    assert not any(b"data" in p.read_bytes() for p in files)

    short = base64.b64encode(b"s" * 16).decode()  # AES-128 sized: refused
    bad = DotflowFileStore(path=str(tmp_path / "other"), encryption_keys=f"{KEYS},short:{short}")
    with pytest.raises(ConfigurationError) as refused:
        bad.store()
    message = str(refused.value)
    assert "the encryption_keys field of the Dotflow File Store block" in message
    assert "'short' must be 32 bytes" in message
    assert secrets_in(message) == []
    assert short not in message
    assert not (tmp_path / "other").exists()  # refused before the store was built
