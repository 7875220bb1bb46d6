"""`S3Store`: checkpoints in an S3 (or S3-compatible) bucket, through boto3."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions

from .._errors import PreconditionFailed, StoreError
from ._base import store_url, without_credentials

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

_MISSING = {"NoSuchKey", "404", "NotFound"}
_AUTH = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "403",
}
#: S3 answers 409 when conditional writes to one key race; a retry resolves it (412 or success).
_CONFLICT_RETRIES = 5


class S3Store:
    """Keeps checkpoints under `s3://bucket/prefix/`.

    Create-only writes send `If-None-Match: *` and compare-and-swap writes `If-Match: <etag>`;
    S3 answers a lost condition with 412, raised as `PreconditionFailed`, unless botocore had
    retried the request and the key now holds exactly the bytes sent: then an earlier try landed
    and its answer was lost (a 5xx after the write), so the write succeeded. Throttling and 5xx
    answers are retried by botocore's standard retry mode: at most `max_attempts` tries
    in all, with exponential backoff and jitter. Missing buckets, bad credentials and denied
    permissions raise `StoreError` naming the bucket and the operation at once. Credentials
    default to boto3's usual chain.
    """

    blocking = True  # network I/O: the async engine calls it from a worker thread
    max_key_part_bytes: int | None = None

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        max_attempts: int = 5,
    ) -> None:
        if not bucket:
            raise StoreError("S3Store needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is not None and endpoint_url is None:  # a server of its own, not AWS
            endpoint_url = _own_endpoint(client)
        self.url = store_url(
            f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}",
            endpoint_url=endpoint_url,
            region=region_name,
        )
        #: S3 keys are at most 1024 bytes, the prefix and its slash included
        self.max_key_bytes: int | None = 1024 - len(self._key("").encode())
        if client is None:
            config = botocore.config.Config(
                retries={"total_max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            )
            try:
                client = boto3.client(
                    "s3",
                    endpoint_url=endpoint_url,
                    region_name=region_name,
                    aws_access_key_id=aws_access_key_id,
                    aws_secret_access_key=aws_secret_access_key,
                    aws_session_token=aws_session_token,
                    config=config,
                )
            except (botocore.exceptions.BotoCoreError, ValueError) as exc:
                # botocore's messages may quote the endpoint URL: never its userinfo
                raise StoreError(
                    f"cannot set up S3 for {self.url}: {without_credentials(str(exc))}; check "
                    "endpoint_url (http(s)://host:port), region_name and the AWS profile"
                ) from None
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, operation: str, key: str) -> StoreError:
        where = f"s3://{self.bucket}/{self._key(key)}"
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                return StoreError(
                    f"S3 bucket {self.bucket!r} does not exist ({operation} {where}); create it "
                    "or fix the bucket name"
                )
            if code in _AUTH:
                return StoreError(
                    f"S3 refused {operation} on {where} ({code}); check the credentials and that "
                    "they allow s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket"
                )
            return StoreError(
                f"S3 {operation} on {where} failed ({code or without_credentials(str(exc))}); "
                "check the bucket's settings and the service's health, then try again"
            )
        if isinstance(
            exc,
            (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError),
        ):
            return StoreError(
                f"no AWS credentials for {operation} on {where}; set them in the environment, "
                "a profile, or the store's aws_access_key_id/aws_secret_access_key"
            )
        if isinstance(
            exc,
            (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError),
        ):
            return StoreError(
                f"cannot reach S3 for {operation} on {where} "
                f"({type(exc).__name__}: {without_credentials(str(exc))}); check endpoint_url, "
                "the network and the proxy settings"
            )
        return StoreError(
            f"S3 {operation} on {where} failed ({type(exc).__name__}: "
            f"{without_credentials(str(exc))}); check the store's settings and try again"
        )

    def _landed(self, key: str, data: bytes) -> str | None:
        """The version of `key` if it holds exactly `data`: our own write, whose answer was lost."""
        found = self.get_versioned(key)
        return found[1] if found is not None and found[0] == data else None

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read(), response["ETag"]
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING:
                return None
            raise self._error(exc, "GET", key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, "GET", key) from exc

    def get(self, key: str) -> bytes | None:
        found = self.get_versioned(key)
        return None if found is None else found[0]

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        conditional = if_none_match or if_match is not None
        full = self._key(key)
        retried = False  # a try botocore repeated may have written before its answer was lost
        for attempt in range(_CONFLICT_RETRIES):
            try:
                if if_none_match:
                    response = self.client.put_object(
                        Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*"
                    )
                elif if_match is not None:
                    response = self.client.put_object(
                        Bucket=self.bucket, Key=full, Body=data, IfMatch=if_match
                    )
                else:
                    response = self.client.put_object(Bucket=self.bucket, Key=full, Body=data)
                return str(response["ETag"])
            except botocore.exceptions.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                metadata = exc.response.get("ResponseMetadata", {})
                status = metadata.get("HTTPStatusCode")
                retried = retried or bool(metadata.get("RetryAttempts"))
                if code == "PreconditionFailed" or status == 412:
                    # A 5xx after the write landed makes botocore send it again, and the retry
                    # finds the condition taken by our own first try: equal bytes tell. A first
                    # try that meets 412 wrote nothing, so it lost, whatever the key holds.
                    landed = self._landed(key, data) if retried else None
                    if landed is not None:
                        return landed
                    detail = (
                        "it already exists" if if_none_match else "it changed since it was read"
                    )
                    raise PreconditionFailed(key, detail) from None
                if conditional and code in _MISSING:  # If-Match on a key that is gone
                    raise PreconditionFailed(key, "it does not exist") from None
                if code == "ConditionalRequestConflict" and attempt + 1 < _CONFLICT_RETRIES:
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise self._error(exc, "PUT", key) from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error(exc, "PUT", key) from exc
        raise PreconditionFailed(key, "concurrent conditional writes kept conflicting")

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        try:
            if if_match is None:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
            else:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=if_match)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "PreconditionFailed" or status == 412:
                raise PreconditionFailed(key, "it changed since it was read") from None
            if code in _MISSING:
                return
            raise self._error(exc, "DELETE", key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, "DELETE", key) from exc

    def list(self, prefix: str) -> Iterator[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, "LIST", prefix) from exc
        return iter(sorted(keys))

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"


def _own_endpoint(client: S3Client) -> str | None:
    """The endpoint of a client made for an S3-compatible server (MinIO, moto, ...); None for
    AWS's own, which a store reopened from its URL finds by itself."""
    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
    if not isinstance(endpoint, str):  # not a boto3 client: where it sends is its own affair
        return None
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    return None if host == "amazonaws.com" or host.endswith(".amazonaws.com") else endpoint
