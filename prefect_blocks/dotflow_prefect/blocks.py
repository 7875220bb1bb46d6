"""Prefect blocks: where checkpoints live, and how steps retry, saved once and loaded by name."""

from __future__ import annotations

import abc
from abc import ABC
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import Field, SecretStr

from dotflow_providers import CheckpointStore, ConfigurationError, FileStore
from dotflow_providers.integration import load_object
from dotflow_providers.retry import CircuitBreaker, ExponentialBackoff, FixedRetry, RetryPolicy

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials, MinIOCredentials
    from prefect_gcp import GcpCredentials  # type: ignore[import-untyped]  # no py.typed
else:
    # prefect-aws and prefect-gcp are optional: without them these names are NoneType, so the
    # `credentials` fields accept only None and the inline fields remain
    try:
        from prefect_aws import AwsCredentials, MinIOCredentials
    except ImportError:
        AwsCredentials = MinIOCredentials = type(None)
    try:
        from prefect_gcp import GcpCredentials
    except ImportError:
        GcpCredentials = type(None)

# the project's README (pyproject's Documentation URL), at its Prefect section
_DOCS = "https://github.com/dotflow-io/dotflow-providers#prefect"
# the dotflow-io logo its README shows, pinned to a commit so the URL never moves
_LOGO = (
    "https://raw.githubusercontent.com/dotflow-io/dotflow/"
    "9b14f9e362cb65a5aa3f6e93fdaa41a3ad296a79/docs/assets/dotflow.png"
)


class CheckpointStoreBlock(Block, ABC):
    """Base of the store blocks: each turns into a dotflow-providers checkpoint store.

    `ABC` among the direct bases marks a block interface, which Prefect never registers (it
    would show a Create button for a block that cannot be loaded).

    Every store block takes `encryption_keys`, a secret: with it, the store is wrapped in an
    `EncryptedStore` (AES-256-GCM; needs `dotflow-providers[encryption]`).
    """

    _documentation_url = _DOCS  # type: ignore[assignment]  # Prefect turns it into a URL
    _logo_url = _LOGO  # type: ignore[assignment]

    encryption_keys: SecretStr | None = Field(
        default=None,
        description="Encrypt every checkpoint: id1:base64key1,id2:base64key2, newest last "
        "(new writes use the newest key; the older ones still decrypt). Empty: no encryption.",
    )

    def store(self) -> CheckpointStore:
        """The dotflow-providers store this block describes."""
        if self.encryption_keys is None:
            return self.unencrypted_store()
        from dotflow_providers.storage import EncryptedStore

        # the keys first, so a bad list leaves no client behind
        keys = EncryptedStore.parse_keys(
            self.encryption_keys.get_secret_value(),
            f"the encryption_keys field of the {self._block_type_name} block",
        )
        return EncryptedStore(self.unencrypted_store(), keys)

    @abc.abstractmethod
    def unencrypted_store(self) -> CheckpointStore:
        """The store this block describes, before any encryption."""


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

    def unencrypted_store(self) -> CheckpointStore:
        return FileStore(self.path, durable=self.durable)


class DotflowS3Store(CheckpointStoreBlock):
    """Checkpoints in an S3 (or S3-compatible) bucket, shared by every worker."""

    _block_type_name: ClassVar[str] = "Dotflow S3 Store"
    _block_type_slug: ClassVar[str] = "dotflow-s3-store"
    _description: ClassVar[str] = "Step checkpoints in S3, with conditional writes and a lease."
    _code_example: ClassVar[str] = """
```python
from prefect_aws import AwsCredentials

from dotflow_prefect import DotflowS3Store

DotflowS3Store(
    bucket="etl", prefix="checkpoints", credentials=AwsCredentials.load("prod")
).save("etl-s3")
store = DotflowS3Store.load("etl-s3")
```"""

    bucket: str
    prefix: str = ""
    credentials: AwsCredentials | MinIOCredentials | None = Field(
        default=None,
        description="A prefect-aws AwsCredentials or MinIOCredentials block (preferred); "
        "empty for the fields below, or the worker's own credentials.",
    )
    endpoint_url: str | None = Field(default=None, description="For S3-compatible servers.")
    region_name: str | None = None
    aws_access_key_id: SecretStr | None = Field(
        default=None, description="Inline key, when no credentials block is given."
    )
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = Field(
        default=None, description="For temporary credentials (STS), with the two keys above."
    )

    def unencrypted_store(self) -> CheckpointStore:
        from dotflow_providers.storage import S3Store

        if self.credentials is not None:
            _only_one("credentials", self.aws_access_key_id, self.aws_secret_access_key)
            # prefect-aws builds the client: its endpoint, region, profile, assumed role
            return S3Store(self.bucket, self.prefix, client=self.credentials.get_s3_client())
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

DotflowGCSStore(bucket="etl", prefix="checkpoints", credentials=GcpCredentials.load("prod"))
```"""

    bucket: str
    prefix: str = ""
    credentials: GcpCredentials | None = Field(
        default=None,
        description="A prefect-gcp GcpCredentials block (preferred); empty for the service "
        "account below, or the worker's own credentials.",
    )
    project: str | None = None
    endpoint_url: str | None = None
    service_account_info: SecretDict | None = Field(
        default=None, description="Inline service account JSON, when no credentials block."
    )

    def unencrypted_store(self) -> CheckpointStore:
        from dotflow_providers.storage import GCSStore

        credentials: Any = None
        project = self.project
        if self.credentials is not None:
            _only_one("credentials", self.service_account_info)
            credentials = self.credentials.get_credentials_from_service_account()
            project = project or self.credentials.project
        elif self.service_account_info is not None:
            from google.oauth2 import service_account

            from_info = cast(Any, service_account.Credentials.from_service_account_info)
            credentials = from_info(self.service_account_info.get_secret_value())
        return GCSStore(
            self.bucket,
            self.prefix,
            project=project,
            credentials=credentials,
            endpoint_url=self.endpoint_url,
        )


class DotflowRetryPolicy(Block):
    """A retry policy for dotflow steps: fixed, exponential backoff, or a circuit breaker."""

    _block_type_name: ClassVar[str] = "Dotflow Retry Policy"
    _block_type_slug: ClassVar[str] = "dotflow-retry-policy"
    _description: ClassVar[str] = "How a step is retried: attempts, waits, exceptions."
    _documentation_url = _DOCS  # type: ignore[assignment]  # Prefect turns it into a URL
    _logo_url = _LOGO  # type: ignore[assignment]
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


def _only_one(name: str, *inline: object) -> None:
    if any(value is not None for value in inline):
        raise ConfigurationError(
            f"the block has both a {name} block and inline secrets; keep one (the {name} "
            "block is preferred, the inline fields are a fallback)"
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
