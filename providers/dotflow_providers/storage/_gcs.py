"""`GCSStore`: checkpoints in a Google Cloud Storage bucket, through google-cloud-storage."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions

# google-cloud-storage is untyped; where another package (prefect-gcp) makes `google.cloud` a
# typed namespace, mypy calls `storage` missing instead of untyped: the ignore covers that case
from google.cloud import storage  # type: ignore[attr-defined,unused-ignore]
from google.cloud.storage.exceptions import InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY

from .._errors import PreconditionFailed, StoreError
from ._base import store_url, without_credentials

# What google-cloud-storage lets escape: API answers, credential lookups and refreshes, and
# transport errors (requests' exceptions are OSErrors) once its retries are spent.
_FAILURES = (gexc.GoogleAPIError, auth_exceptions.GoogleAuthError, InvalidResponse, OSError)


class GCSStore:
    """Keeps checkpoints under `gs://bucket/prefix/`.

    Versions are object generations. Create-only writes send `ifGenerationMatch=0` and
    compare-and-swap writes `ifGenerationMatch=<generation>`; GCS answers a lost condition with
    412, raised as `PreconditionFailed`, unless the object now holds exactly the bytes sent:
    then an earlier try of this very upload landed and its answer was lost (a 5xx after the
    write, retried), and the write succeeded. Rate limits (429) and 5xx answers are retried
    with the client's bounded exponential backoff (`DEFAULT_RETRY`, also for conditional
    writes, which are safe to repeat). Missing buckets, missing credentials and denied
    permissions raise `StoreError` at once.
    """

    blocking = True  # network I/O: the async engine calls it from a worker thread
    max_key_part_bytes: int | None = None

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: storage.Client | None = None,
        project: str | None = None,
        credentials: Any = None,
        endpoint_url: str | None = None,
    ) -> None:
        if not bucket:
            raise StoreError("GCSStore needs a bucket name")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = store_url(
            f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}",
            endpoint_url=endpoint_url,
            project=project,
        )
        #: GCS object names are at most 1024 bytes, the prefix and its slash included
        self.max_key_bytes: int | None = 1024 - len(self._key("").encode())
        if client is None:
            options = {"api_endpoint": endpoint_url} if endpoint_url else None
            try:
                client = storage.Client(
                    project=project, credentials=credentials, client_options=options
                )
            except auth_exceptions.DefaultCredentialsError:
                raise StoreError(
                    f"no Google Cloud credentials for {self.url}: run `gcloud auth "
                    "application-default login`, set GOOGLE_APPLICATION_CREDENTIALS to a "
                    "service-account key file, or pass credentials= (AnonymousCredentials() "
                    "for an emulator)"
                ) from None
            except _FAILURES as exc:
                raise StoreError(
                    f"cannot set up GCS for {self.url} ({type(exc).__name__}: "
                    f"{without_credentials(str(exc))}); check project, endpoint_url and "
                    "the credentials"
                ) from None
        self.client = client
        self.bucket = client.bucket(bucket)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, operation: str, key: str) -> StoreError:
        where = f"gs://{self.bucket_name}/{self._key(key)}"
        if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized)):
            return StoreError(
                f"GCS refused {operation} on {where} ({type(exc).__name__}); check the "
                "credentials and that they allow storage.objects.get/create/delete/list"
            )
        if isinstance(exc, gexc.NotFound):
            return StoreError(
                f"GCS bucket {self.bucket_name!r} does not exist ({operation} {where}); create "
                "it or fix the bucket name"
            )
        if isinstance(exc, auth_exceptions.GoogleAuthError):
            return StoreError(
                f"GCS credentials failed for {operation} on {where} ({type(exc).__name__}: "
                f"{without_credentials(str(exc))}); refresh them (`gcloud auth "
                "application-default login`) or pass working credentials="
            )
        if isinstance(exc, OSError):
            return StoreError(
                f"cannot reach GCS for {operation} on {where} ({type(exc).__name__}: "
                f"{without_credentials(str(exc))}); check endpoint_url, the network and the "
                "proxy settings"
            )
        return StoreError(
            f"GCS {operation} on {where} failed ({type(exc).__name__}: "
            f"{without_credentials(str(exc))}); check the bucket's settings and the service's "
            "health, then try again"
        )

    def _landed(self, key: str, data: bytes) -> str | None:
        """The version of `key` if it holds exactly `data`: our own write, whose answer was lost."""
        found = self.get_versioned(key)
        return found[1] if found is not None and found[0] == data else None

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        blob = self.bucket.blob(self._key(key))
        try:
            data = blob.download_as_bytes(retry=DEFAULT_RETRY)
            generation = blob.generation
            if generation is None:
                # GCS sends the generation with the data (x-goog-generation). For servers that
                # do not (emulators), read the generation first and the data after it, so the
                # data is never older than the version a compare-and-swap will name.
                blob.reload(retry=DEFAULT_RETRY)
                generation = blob.generation
                pinned = self.bucket.blob(self._key(key), generation=generation)
                data = pinned.download_as_bytes(retry=DEFAULT_RETRY)
        except gexc.NotFound:
            return None
        except _FAILURES as exc:
            raise self._error(exc, "GET", key) from exc
        return data, str(generation)

    def get(self, key: str) -> bytes | None:
        found = self.get_versioned(key)
        return None if found is None else found[0]

    @staticmethod
    def _generation(if_match: str | None, if_none_match: bool) -> int | None:
        if if_none_match:
            return 0
        return None if if_match is None else int(if_match)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        blob = self.bucket.blob(self._key(key))
        generation = self._generation(if_match, if_none_match)
        upload = functools.partial(
            blob.upload_from_string,
            data,
            content_type="application/json",
            if_generation_match=generation,
            retry=None,  # retried below, where the failed tries can be seen
        )
        failed_tries: list[Exception] = []
        try:
            DEFAULT_RETRY(upload, on_error=failed_tries.append)()
        except gexc.PreconditionFailed:
            # A 5xx (or a dropped connection) after the write landed makes us upload again,
            # and the retry finds the generation moved by our own first try: equal bytes tell.
            # A first try that meets 412 wrote nothing, so it lost, whatever the object holds.
            landed = self._landed(key, data) if failed_tries else None
            if landed is not None:
                return landed
            detail = "it already exists" if if_none_match else "it changed since it was read"
            raise PreconditionFailed(key, detail) from None
        except _FAILURES as exc:
            raise self._error(exc, "PUT", key) from exc
        return str(blob.generation)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        blob = self.bucket.blob(self._key(key))
        try:
            blob.delete(
                if_generation_match=None if if_match is None else int(if_match),
                retry=DEFAULT_RETRY,
            )
        except gexc.NotFound:
            return
        except gexc.PreconditionFailed:
            raise PreconditionFailed(key, "it changed since it was read") from None
        except _FAILURES as exc:
            raise self._error(exc, "DELETE", key) from exc

    def list(self, prefix: str) -> Iterator[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            names = [
                blob.name[strip:]
                for blob in self.client.list_blobs(
                    self.bucket_name, prefix=self._key(prefix), retry=DEFAULT_RETRY
                )
            ]
        except _FAILURES as exc:
            raise self._error(exc, "LIST", prefix) from exc
        return iter(sorted(names))

    def __repr__(self) -> str:
        return f"GCSStore({self.url!r})"
