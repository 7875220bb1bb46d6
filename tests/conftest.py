"""Fixtures shared by every test session: real object-storage servers on loopback."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
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


# --- the one store fixture: every backend, against real servers ------------------------------

#: Airflow's task state store joins the contract suite where Airflow is installed (the airflow
#: session); its accessor is the small get/set API Airflow hands a running task.
AIRFLOW = importlib.util.find_spec("airflow") is not None
BACKENDS = ["memory", "file", "s3", "gcs"]
#: EncryptedStore keeps the same contract over any store: run over a FileStore and over S3, with
#: two keys so that writes use the newer one (only where `cryptography` is installed).
ENCRYPTED = ["encrypted-file", "encrypted-s3"] if importlib.util.find_spec("cryptography") else []


class TaskStateAccessor:
    """The task state store's get/set, over JSON values in a dict (one task instance's)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)


def make_store(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from dotflow_providers import FileStore, MemoryStore
    from dotflow_providers.storage import GCSStore, S3Store

    if name == "memory":
        return MemoryStore()
    if name == "file":
        return FileStore(tmp_path / "ckpt")
    if name == "s3":
        client = request.getfixturevalue("s3_client")
        return S3Store(request.getfixturevalue("s3_bucket"), "team/prefix", client=client)
    if name == "gcs":
        client = request.getfixturevalue("gcs_client")
        return GCSStore(request.getfixturevalue("gcs_bucket"), "team/prefix", client=client)
    if name.startswith("encrypted-"):
        from dotflow_providers.storage import EncryptedStore

        keys = [("old", EncryptedStore.new_key()), ("new", EncryptedStore.new_key())]
        return EncryptedStore(make_store(name.removeprefix("encrypted-"), request, tmp_path), keys)
    from dotflow_airflow.state_store import TaskStateCheckpoints

    return TaskStateCheckpoints(TaskStateAccessor(), limit=0)


@pytest.fixture(params=[*BACKENDS, *ENCRYPTED])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Every backend that many runners may share; S3 and GCS are real HTTP servers."""
    return make_store(request.param, request, tmp_path)


@pytest.fixture(params=[*BACKENDS, *ENCRYPTED, *(["airflow-task-state"] if AIRFLOW else [])])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """`store`, plus Airflow's task state store (one try at a time: no concurrent writers)."""
    return make_store(request.param, request, tmp_path)
