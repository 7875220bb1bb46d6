"""`DotflowHook`: turns a `dotflow` connection into a checkpoint store."""

from __future__ import annotations

import json
from typing import Any

from dotflow_providers import CheckpointStore, ConfigurationError, store_from_url

from ..compatibility import BaseHook, mask_secret

#: the extra field holding the encryption keys ("secret" in its name: Airflow hides its value)
ENCRYPTION_KEYS = "encryption_keys_secret"


class DotflowHook(BaseHook):
    """A `dotflow` connection: where checkpoints live, and the credentials to reach them.

    - **Host**: the store URL: `s3://bucket/prefix`, `gs://bucket/prefix` or `file:///path`.
    - **Login / Password**: S3 access key id / secret access key (leave empty for the
      worker's own credentials, e.g. an instance role).
    - **Extra**: `endpoint_url` and `region_name` for S3-compatible servers; `project` and
      `keyfile_dict` (a service account JSON) for GCS; for any store, `encryption_keys_secret`
      (`id1:base64key1,id2:base64key2`, newest last) encrypts every checkpoint with the newest
      key (`EncryptedStore`; needs `dotflow-providers[encryption]`). Its name marks it secret to
      Airflow, which hides it in the UI and the API, and the hook masks it in logs.
    """

    conn_name_attr = "dotflow_conn_id"
    default_conn_name = "dotflow_default"
    conn_type = "dotflow"
    hook_name = "Dotflow checkpoints"

    def __init__(self, dotflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dotflow_conn_id = dotflow_conn_id

    @staticmethod
    def _extra(extra: dict[str, Any], name: str) -> Any:
        return extra.get(name) or extra.get(f"extra__dotflow__{name}") or None

    def get_store(self) -> CheckpointStore:
        """The store the connection describes (secrets go to the client, never to logs)."""
        return self.store_for(self.get_connection(self.dotflow_conn_id))

    @classmethod
    def store_for(cls, conn: Any) -> CheckpointStore:
        """The store a `dotflow` connection object describes."""
        url = (conn.host or "").strip()
        if "://" not in url:
            raise ConfigurationError(
                f"connection {conn.conn_id!r} needs a store URL in Host: s3://bucket/"
                "prefix, gs://bucket/prefix or file:///path"
            )
        extra = conn.extra_dejson
        # first, so a bad key list leaves no client behind
        keys = cls._encryption_keys(conn.conn_id, cls._extra(extra, ENCRYPTION_KEYS))
        scheme = url.split("://", 1)[0]
        options: dict[str, Any] = {}
        if scheme == "s3":
            options = {
                "aws_access_key_id": conn.login or None,
                "aws_secret_access_key": conn.password or None,
                "endpoint_url": cls._extra(extra, "endpoint_url"),
                "region_name": cls._extra(extra, "region_name"),
            }
        elif scheme == "gs":
            keyfile = cls._extra(extra, "keyfile_dict")
            if keyfile:
                from google.oauth2 import service_account

                info = json.loads(keyfile) if isinstance(keyfile, str) else keyfile
                # google-auth is typed only in part: read its classmethod as untyped
                credentials: Any = service_account.Credentials
                options["credentials"] = credentials.from_service_account_info(info)
            options["project"] = cls._extra(extra, "project")
            options["endpoint_url"] = cls._extra(extra, "endpoint_url")
        store = store_from_url(url, **{k: v for k, v in options.items() if v is not None})
        if keys is None:
            return store
        from dotflow_providers.storage import EncryptedStore

        return EncryptedStore(store, keys)

    @staticmethod
    def _encryption_keys(conn_id: str, text: Any) -> list[tuple[str, bytes]] | None:
        """The (key id, key) pairs of the connection's `encryption_keys_secret`, if any."""
        if text is None:
            return None
        field = f"the {ENCRYPTION_KEYS} field of connection {conn_id!r}"
        if not isinstance(text, str):
            raise ConfigurationError(f"{field} must be text: id1:base64key1,id2:base64key2")
        mask_secret(text)
        for item in text.split(","):  # each key alone too, wherever a line might show one
            mask_secret(item.partition(":")[2].strip())
        from dotflow_providers.storage import EncryptedStore

        return EncryptedStore.parse_keys(text, field)

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's Test button: list the store's root."""
        try:
            store = self.get_store()
            next(iter(store.list("")), None)
        except Exception as exc:  # shown to the user in the UI
            return False, str(exc)
        return True, f"listed {store.url}"
