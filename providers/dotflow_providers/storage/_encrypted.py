"""`EncryptedStore`: any checkpoint store, with every document encrypted by AES-256-GCM."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Iterator, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._errors import ConfigurationError, UnreadableDocument
from ._base import CheckpointStore

#: the first bytes of every encrypted document: a marker, then the format version
_MARKER = b"DFE"
_VERSION = 1
_NONCE_BYTES = 12  # 96 bits, GCM's native nonce size
_TAG_BYTES = 16
_KEY_BYTES = 32  # AES-256
#: key ids go into every document's header and into `id:base64key` lists, so no ':' or ','
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _key_id_error(key_id: object) -> ConfigurationError:
    shown = repr(key_id) if isinstance(key_id, str) and len(key_id) <= 80 else "a key id"
    return ConfigurationError(
        f"encryption key id {shown} is not valid: use 1 to 64 letters, digits, '.', '_' or '-' "
        "(ids are stored in every document, in clear)"
    )


def _ciphers(pairs: list[tuple[str, bytes]]) -> dict[str, AESGCM]:
    """One cipher per key id, after checking ids and keys; errors never quote a key."""
    ciphers: dict[str, AESGCM] = {}
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ConfigurationError(
                "EncryptedStore keys must be a mapping of key id to key, or a list of "
                "(key id, key) pairs, oldest first"
            )
        key_id, key = pair
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise _key_id_error(key_id)
        if key_id in ciphers:
            raise ConfigurationError(f"encryption key id {key_id!r} is given twice; keep one")
        if not isinstance(key, bytes | bytearray) or len(key) != _KEY_BYTES:
            # Its length or type, never its value: the value is a secret.
            size = f"{len(key)} bytes" if isinstance(key, bytes | bytearray) else "not bytes"
            raise ConfigurationError(
                f"encryption key {key_id!r} must be {_KEY_BYTES} bytes (AES-256), got {size}; "
                "make one with EncryptedStore.new_key()"
            )
        ciphers[key_id] = AESGCM(bytes(key))
    if not ciphers:
        raise ConfigurationError(
            "EncryptedStore needs at least one key; make one with EncryptedStore.new_key()"
        )
    return ciphers


def _associated(header: bytes, key: str) -> bytes:
    """What a ciphertext is bound to: its header (format, key id, nonce) and its name. The
    header has a fixed layout, so the two cannot run into each other ambiguously."""
    return header + key.encode()


class EncryptedStore:
    """Wraps a store so that every document it holds is encrypted and authenticated.

    `keys` is an ordered mapping (or a list of pairs) from key id to a 32-byte key, oldest
    first: new writes use the last (newest) key, and every key still decrypts the documents
    written with it, so keys rotate by appending a new one and dropping an old one only once
    no document written with it remains. Make a key with `EncryptedStore.new_key()`; read a
    key list from the environment with `EncryptedStore.keys_from_env(name)`.

    Each document is `DFE` + a format byte + the key id (a length byte, then the id) + a random
    96-bit nonce + the AES-256-GCM ciphertext and its 16-byte tag. The header and the document's
    name in the store are the associated data, so a document altered, truncated, swapped for
    another, moved to another name or relabelled with another key id fails to decrypt. Such a
    document, a key id this store does not have and a plaintext document all raise
    `UnreadableDocument` (a `StoreError` no retry can fix)
    naming the document and what to do; errors never contain key material.

    Only document contents are encrypted. Names (workflow ids, step names), sizes, versions
    and listings are visible to whoever can read the inner store. Conditional writes
    (`if_match`, `if_none_match`), versions, `list`, `delete`, `url`, `blocking` and the key
    limits are the inner store's own, so the lease and create-only commits behave exactly as
    they do there; the engine's checksums are computed on the plaintext, inside the encryption.
    """

    def __init__(
        self, store: CheckpointStore, keys: Mapping[str, bytes] | Iterable[tuple[str, bytes]]
    ) -> None:
        pairs = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        self._ciphers = _ciphers(pairs)
        self.store = store
        self.url = store.url
        self.blocking = store.blocking
        self.max_key_bytes = store.max_key_bytes  # names are not encrypted: the same keys
        self.max_key_part_bytes = store.max_key_part_bytes
        self._current = pairs[-1][0]

    @staticmethod
    def new_key() -> bytes:
        """A fresh random 32-byte AES-256 key."""
        return AESGCM.generate_key(bit_length=_KEY_BYTES * 8)

    @staticmethod
    def parse_keys(text: str, source: str = "the key list") -> list[tuple[str, bytes]]:
        """The (key id, key) pairs of `id1:base64key1,id2:base64key2`, oldest first.

        `source` names where the text came from (an environment variable, a secret field) in
        errors, which never quote the text itself.
        """
        pairs: list[tuple[str, bytes]] = []
        for position, item in enumerate(text.split(","), start=1):
            key_id, colon, encoded = item.strip().partition(":")
            if not colon or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError(
                    f"{source}: entry {position} is not 'id:base64key' with an id of 1 to 64 "
                    "letters, digits, '.', '_' or '-'; the format is id1:base64key1,id2:base64key2"
                )
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise ConfigurationError(
                    f"{source}: the key of {key_id!r} is not valid base64; encode a key from "
                    "EncryptedStore.new_key() with base64.b64encode"
                ) from None
            pairs.append((key_id, key))
        try:
            _ciphers(pairs)  # refuse a bad list now, before any store is built
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
        return pairs

    @staticmethod
    def keys_from_env(variable: str) -> list[tuple[str, bytes]]:
        """The (key id, key) pairs in environment variable `variable`, oldest first.

        The variable holds `id1:base64key1,id2:base64key2`.
        """
        text = os.environ.get(variable, "")
        if not text.strip():
            raise ConfigurationError(
                f"environment variable {variable!r} is not set or empty; set it to "
                "id1:base64key1,id2:base64key2 (the last key encrypts new documents)"
            )
        return EncryptedStore.parse_keys(text, f"environment variable {variable!r}")

    @property
    def key_ids(self) -> list[str]:
        """The ids of the keys this store decrypts with, oldest first."""
        return list(self._ciphers)

    def _seal(self, key: str, data: bytes) -> bytes:
        key_id = self._current.encode()
        header = _MARKER + bytes((_VERSION, len(key_id))) + key_id + os.urandom(_NONCE_BYTES)
        nonce = header[-_NONCE_BYTES:]
        return header + self._ciphers[self._current].encrypt(nonce, data, _associated(header, key))

    def _open(self, key: str, document: bytes) -> bytes:
        where = f"document {key!r} in {self.url}"
        if not document.startswith(_MARKER):
            raise UnreadableDocument(
                f"{where} is not encrypted; it was written without EncryptedStore (or by "
                "something else): delete it, or reset the workflow (`dotflow-providers reset "
                "ID --store URL`) and run it again through the EncryptedStore"
            )
        if len(document) < len(_MARKER) + 2:
            raise UnreadableDocument(f"{where} is truncated; delete it or restore it from a backup")
        version, length = document[len(_MARKER)], document[len(_MARKER) + 1]
        if version != _VERSION:
            raise UnreadableDocument(
                f"{where} uses encryption format {version}, which this dotflow-providers does "
                f"not know (it reads format {_VERSION}); upgrade dotflow-providers, or delete it"
            )
        start = len(_MARKER) + 2
        header_end = start + length + _NONCE_BYTES
        if len(document) < header_end + _TAG_BYTES:
            raise UnreadableDocument(f"{where} is truncated; delete it or restore it from a backup")
        try:
            key_id = document[start : start + length].decode("ascii")
        except UnicodeDecodeError:
            key_id = ""
        if not _KEY_ID.fullmatch(key_id):
            raise UnreadableDocument(
                f"{where} has a damaged encryption header; delete it or restore it from a backup"
            )
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnreadableDocument(
                f"{where} was encrypted with key id {key_id!r}, which this EncryptedStore does "
                f"not have (it has {', '.join(map(repr, self._ciphers))}); add that key back "
                "(keep old keys until no document written with them remains)"
            )
        header = document[:header_end]
        try:
            return cipher.decrypt(
                header[-_NONCE_BYTES:], document[header_end:], _associated(header, key)
            )
        except InvalidTag:
            raise UnreadableDocument(
                f"{where} fails authentication under key {key_id!r}: it was altered, truncated "
                f"or moved from another name, or key id {key_id!r} now holds a different key; "
                "restore it from a backup or delete it, and check the key set"
            ) from None

    def get(self, key: str) -> bytes | None:
        document = self.store.get(key)
        return None if document is None else self._open(key, document)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        found = self.store.get_versioned(key)
        return None if found is None else (self._open(key, found[0]), found[1])

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        return self.store.put(
            key, self._seal(key, data), if_match=if_match, if_none_match=if_none_match
        )

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.store.delete(key, if_match=if_match)

    def list(self, prefix: str) -> Iterator[str]:
        return self.store.list(prefix)

    def __repr__(self) -> str:
        # Key ids only: the keys never appear in a repr, a log line or an error.
        return f"EncryptedStore({self.store!r}, key ids {self.key_ids})"
