"""Prefect blocks: where checkpoints live, and how steps retry, saved once and loaded by name."""

from __future__ import annotations

import abc
from abc import ABC
from typing import Any, ClassVar, Literal

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import Field, SecretStr

from dotflow_providers import CheckpointStore, ConfigurationError, FileStore
from dotflow_providers.integration import load_object
from dotflow_providers.retry import CircuitBreaker, ExponentialBackoff, FixedRetry, RetryPolicy

_DOCS = "https://github.com/dotflow-io/dotflow-providers#prefect"


class CheckpointStoreBlock(Block, ABC):
    """Base of the store blocks: each turns into a dotflow-providers checkpoint store.

    `ABC` among the direct bases marks a block interface, which Prefect never registers (it
    would show a Create button for a block that cannot be loaded).
    """

    _documentation_url = _DOCS  # type: ignore[assignment]  # Prefect turns it into a URL

    @abc.abstractmethod
    def store(self) -> CheckpointStore:
        """The dotflow-providers store this block describes."""


class DotflowFileStore(CheckpointStoreBlock):
    """Checkpoints as files in a local or shared folder (atomic, fsync'd writes)."""

    _block_type_name: ClassVar[str] = "Dotflow File Store"
    _block_type_slug: ClassVar[str] = "dotflow-file-store"
    _description: ClassVar[str] = "Step checkpoints in a folder, written atomically."
    _code_example: ClassVar[str] = """
```python
from dotflow_prefect import DotflowFileStore, run_workflow

DotflowFileStore(path="/mnt/shared/checkpoints").save("etl-checkpoints")
run_workflow(my_workflow, store=DotflowFileStore.load("etl-checkpoints"))
```"""

    path: str = Field(description="Folder for the checkpoints (shared by every worker).")
    durable: bool = Field(default=True, description="fsync every write (survives power loss).")

    def store(self) -> CheckpointStore:
        return FileStore(self.path, durable=self.durable)


class DotflowS3Store(CheckpointStoreBlock):
    """Checkpoints in an S3 (or S3-compatible) bucket, shared by every worker."""

    _block_type_name: ClassVar[str] = "Dotflow S3 Store"
    _block_type_slug: ClassVar[str] = "dotflow-s3-store"
    _description: ClassVar[str] = "Step checkpoints in S3, with conditional writes and a lease."
    _code_example: ClassVar[str] = """
```python
from dotflow_prefect import DotflowS3Store

DotflowS3Store(bucket="etl", prefix="checkpoints", region_name="eu-west-1").save("etl-s3")
store = DotflowS3Store.load("etl-s3")
```"""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = Field(default=None, description="For S3-compatible servers.")
    region_name: str | None = None
    aws_access_key_id: SecretStr | None = Field(
        default=None, description="Leave empty to use the worker's own credentials."
    )
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = Field(
        default=None, description="For temporary credentials (STS), with the two keys above."
    )

    def store(self) -> CheckpointStore:
        from dotflow_providers.storage import S3Store

        return S3Store(
            self.bucket,
            self.prefix,
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            aws_access_key_id=_secret(self.aws_access_key_id),
            aws_secret_access_key=_secret(self.aws_secret_access_key),
            aws_session_token=_secret(self.aws_session_token),
        )


class DotflowGCSStore(CheckpointStoreBlock):
    """Checkpoints in a Google Cloud Storage bucket, shared by every worker."""

    _block_type_name: ClassVar[str] = "Dotflow GCS Store"
    _block_type_slug: ClassVar[str] = "dotflow-gcs-store"
    _description: ClassVar[str] = "Step checkpoints in GCS, with generation preconditions."
    _code_example: ClassVar[str] = """
```python
from dotflow_prefect import DotflowGCSStore

DotflowGCSStore(bucket="etl", prefix="checkpoints").save("etl-gcs")
```"""

    bucket: str
    prefix: str = ""
    project: str | None = None
    endpoint_url: str | None = None
    service_account_info: SecretDict | None = Field(
        default=None, description="Service account JSON; empty for the worker's credentials."
    )

    def store(self) -> CheckpointStore:
        from dotflow_providers.storage import GCSStore

        credentials = None
        if self.service_account_info is not None:
            from google.oauth2 import service_account

            credentials = service_account.Credentials.from_service_account_info(
                self.service_account_info.get_secret_value()
            )
        return GCSStore(
            self.bucket,
            self.prefix,
            project=self.project,
            credentials=credentials,
            endpoint_url=self.endpoint_url,
        )


class DotflowRetryPolicy(Block):
    """A retry policy for dotflow steps: fixed, exponential backoff, or a circuit breaker."""

    _block_type_name: ClassVar[str] = "Dotflow Retry Policy"
    _block_type_slug: ClassVar[str] = "dotflow-retry-policy"
    _description: ClassVar[str] = "How a step is retried: attempts, waits, exceptions."
    _documentation_url = _DOCS  # type: ignore[assignment]  # Prefect turns it into a URL
    _code_example: ClassVar[str] = """
```python
from dotflow_prefect import DotflowRetryPolicy, dotflow_task

DotflowRetryPolicy(kind="exponential", max_attempts=5, cap=30).save("flaky-api")

@dotflow_task(retry=DotflowRetryPolicy.load("flaky-api"))
def call_api(): ...
```"""

    kind: Literal["fixed", "exponential", "circuit_breaker"] = "exponential"
    max_attempts: int = 5
    delay: float = Field(default=1.0, description="fixed: seconds between attempts")
    initial: float = Field(default=1.0, description="exponential: first wait")
    base: float = 2.0
    cap: float = 60.0
    jitter: bool = True
    retry_on: list[str] = Field(
        default_factory=list,
        description="Exception classes to retry, as import paths (builtins:ConnectionError); "
        "empty for every Exception",
    )
    deadline: float | None = Field(default=None, description="seconds across all attempts")
    threshold: int = Field(default=5, description="circuit_breaker: failures that open it")
    window: float = 60.0
    reset_after: float = 60.0
    half_open_max_calls: int = 1

    def policy(self) -> RetryPolicy:
        retry_on = tuple(_exception(path) for path in self.retry_on) or (Exception,)
        fixed = FixedRetry(self.max_attempts, self.delay, retry_on, self.deadline)
        if self.kind == "fixed":
            return fixed
        backoff = ExponentialBackoff(
            self.max_attempts,
            self.base,
            self.initial,
            self.cap,
            self.jitter,
            retry_on,
            self.deadline,
        )
        if self.kind == "exponential":
            return backoff
        return CircuitBreaker(
            self.threshold, self.window, self.reset_after, self.half_open_max_calls, backoff
        )


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def _exception(path: str) -> type[BaseException]:
    module, _, name = path.replace(":", ".").rpartition(".")
    found = load_object(f"{module or 'builtins'}:{name}")
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ConfigurationError(f"retry_on entry {path!r} is not an exception class")
    return found


def resolve_store(store: Any) -> CheckpointStore | None:
    """A store from a store block, a store, a URL, or None."""
    if isinstance(store, CheckpointStoreBlock):
        return store.store()
    if isinstance(store, str):
        from dotflow_providers import store_from_url

        return store_from_url(store)
    return store  # type: ignore[no-any-return]


def resolve_policy(retry: Any) -> Any:
    return retry.policy() if isinstance(retry, DotflowRetryPolicy) else retry
