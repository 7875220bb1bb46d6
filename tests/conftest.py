"""Fixtures shared by every test session: real object-storage servers on loopback."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

from .gcs_semantics import GCSPreconditions
from .servers import ACCESS_KEY, REGION, SECRET_KEY, gcs_emulator, s3_server

_names = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    name = f"dotflow-{os.getpid()}-{next(_names)}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    with gcs_emulator() as url:
        yield url


@pytest.fixture
def gcs_session() -> GCSPreconditions:
    return GCSPreconditions()


@pytest.fixture
def gcs_client(gcs_endpoint: str, gcs_session: GCSPreconditions) -> Any:
    """A real google-cloud-storage client talking to the emulator, with GCS's preconditions."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="dotflow-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_endpoint},
        _http=gcs_session,
    )


@pytest.fixture
def gcs_bucket(gcs_client: Any) -> str:
    name = f"dotflow-{os.getpid()}-{next(_names)}"
    gcs_client.create_bucket(name)
    return name
