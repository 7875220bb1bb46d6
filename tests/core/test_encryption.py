"""Encryption at rest: `EncryptedStore` round-trips any bytes, rejects any altered, moved,
plaintext or unknown-key document with `StoreError`, rotates keys, keeps plaintext and keys
out of the stored bytes and errors, and a workflow resumes through it in a new process."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dotflow_providers import (
    ConfigurationError,
    FileStore,
    MemoryStore,
    StoreError,
    Workflow,
    store_from_url,
)
from dotflow_providers.storage import EncryptedStore, S3Store

from ..flaky_proxy import flaky_proxy
from ..servers import ACCESS_KEY, REGION, SECRET_KEY
from .procs import ROOT, wait_for

KEY_IDS = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
KEYS = st.binary(min_size=32, max_size=32)
KEY_SETS = st.lists(st.tuples(KEY_IDS, KEYS), min_size=1, max_size=4, unique_by=lambda p: p[0])
#: store keys as the engine makes them, and odder ones
NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1, max_size=80
)


def key_material(keys: list[tuple[str, bytes]]) -> list[str]:
    """Every way a key could leak into a message: its repr, its base64 and its hex."""
    return [
        form for _, key in keys for form in (repr(key), base64.b64encode(key).decode(), key.hex())
    ]


def raw_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- round trip and tampering (properties) ---


@settings(max_examples=200, deadline=None)
@given(keys=KEY_SETS, name=NAMES, data=st.binary(max_size=4096))
def test_any_bytes_round_trip_under_any_key_set(
    keys: list[tuple[str, bytes]], name: str, data: bytes
) -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, keys)
    version = store.put(name, data)
    assert store.get(name) == data
    assert store.get_versioned(name) == (data, version)
    raw = inner.get(name)
    assert raw is not None
    newest = keys[-1][0].encode()
    assert raw[:5] == b"DFE\x01" + bytes([len(newest)])
    assert raw[5 : 5 + len(newest)] == newest  # written with the newest key
    assert len(raw) == 5 + len(newest) + 12 + len(data) + 16  # header, ciphertext, tag


@settings(max_examples=300, deadline=None)
@given(keys=KEY_SETS, data=st.binary(max_size=512), choice=st.data())
def test_flipping_any_bit_of_a_stored_document_is_a_store_error(
    keys: list[tuple[str, bytes]], data: bytes, choice: st.DataObject
) -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, keys)
    store.put("wf/steps/00001-a.json", data)
    raw = bytearray(inner.get("wf/steps/00001-a.json") or b"")
    bit = choice.draw(st.integers(0, len(raw) * 8 - 1), label="bit")
    raw[bit // 8] ^= 1 << (bit % 8)
    inner.put("wf/steps/00001-a.json", bytes(raw))
    with pytest.raises(StoreError, match=r"wf/steps/00001-a\.json") as caught:
        store.get("wf/steps/00001-a.json")
    assert not any(form in str(caught.value) for form in key_material(keys))


@settings(max_examples=100, deadline=None)
@given(keys=KEY_SETS, data=st.binary(max_size=256), choice=st.data())
def test_a_truncated_document_is_a_store_error(
    keys: list[tuple[str, bytes]], data: bytes, choice: st.DataObject
) -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, keys)
    store.put("k", data)
    raw = inner.get("k") or b""
    inner.put("k", raw[: choice.draw(st.integers(0, len(raw) - 1), label="length")])
    with pytest.raises(StoreError):
        store.get("k")


def test_a_document_moved_to_another_name_is_rejected() -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, {"k1": EncryptedStore.new_key()})
    store.put("wf-a/steps/00001-load.json", b'{"output": "a"}')
    inner.put("wf-b/steps/00001-load.json", inner.get("wf-a/steps/00001-load.json") or b"")
    with pytest.raises(StoreError, match=r"fails authentication under key 'k1'.*moved"):
        store.get("wf-b/steps/00001-load.json")


def test_a_document_relabelled_with_another_key_id_is_rejected() -> None:
    """Both ids hold the same key here: only the header in the associated data catches it."""
    inner = MemoryStore()
    key = EncryptedStore.new_key()
    store = EncryptedStore(inner, [("k1", key), ("k2", key)])
    store.put("k", b"secret")
    raw = inner.get("k") or b""
    assert raw[5:7] == b"k2"
    inner.put("k", raw[:5] + b"k1" + raw[7:])
    with pytest.raises(StoreError, match="fails authentication under key 'k1'"):
        store.get("k")


def test_a_plaintext_document_is_a_store_error_saying_what_to_do() -> None:
    inner = MemoryStore()
    inner.put("wf/manifest.json", b'{"format": 2}')
    with pytest.raises(
        StoreError, match=r"'wf/manifest.json'.*is not encrypted.*dotflow-providers reset"
    ):
        EncryptedStore(inner, {"k1": EncryptedStore.new_key()}).get("wf/manifest.json")


def test_a_newer_encryption_format_asks_for_an_upgrade() -> None:
    inner = MemoryStore()
    store = EncryptedStore(inner, {"k1": EncryptedStore.new_key()})
    store.put("k", b"x")
    inner.put("k", b"DFE\x02" + (inner.get("k") or b"")[4:])
    with pytest.raises(StoreError, match=r"encryption format 2.*upgrade"):
        store.get("k")


# --- rotation ---


def test_rotation_old_keys_read_new_writes_use_the_newest_and_dropped_keys_are_named(
    tmp_path: Path,
) -> None:
    k1, k2 = EncryptedStore.new_key(), EncryptedStore.new_key()
    inner = FileStore(tmp_path)
    EncryptedStore(inner, {"k1": k1}).put("old", b"written with k1")

    rotated = EncryptedStore(inner, {"k1": k1, "k2": k2})
    assert rotated.get("old") == b"written with k1"
    rotated.put("new", b"written with k2")
    assert (inner.get("new") or b"")[4:7] == b"\x02k2"
    assert EncryptedStore(inner, [("k2", k2)]).get("new") == b"written with k2"

    only_k2 = EncryptedStore(inner, {"k2": k2})
    with pytest.raises(StoreError) as caught:
        only_k2.get("old")
    message = str(caught.value)
    assert "'old'" in message
    assert "key id 'k1'" in message
    assert "has 'k2'" in message
    assert "add that key back" in message
    assert not any(form in message for form in key_material([("k1", k1), ("k2", k2)]))


def test_a_key_id_that_now_holds_another_key_is_a_store_error(tmp_path: Path) -> None:
    inner = FileStore(tmp_path)
    EncryptedStore(inner, {"k1": EncryptedStore.new_key()}).put("doc", b"x")
    other = EncryptedStore(inner, {"k1": EncryptedStore.new_key()})
    with pytest.raises(StoreError, match="key id 'k1' now holds a different key"):
        other.get("doc")


# --- what passes through, and what is refused when the store is built ---


def test_conditions_versions_listing_and_blocking_are_the_inner_stores(tmp_path: Path) -> None:
    inner = FileStore(tmp_path)
    store = EncryptedStore(inner, {"k1": EncryptedStore.new_key()})
    version = store.put("wf/a", b"1", if_none_match=True)
    assert inner.get_versioned("wf/a") == (inner.get("wf/a"), version)
    newer = store.put("wf/a", b"2", if_match=version)
    assert inner.get_versioned("wf/a") == (inner.get("wf/a"), newer)
    assert list(store.list("wf/")) == list(inner.list("wf/")) == ["wf/a"]
    assert (store.url, store.blocking) == (inner.url, True)
    assert EncryptedStore(MemoryStore(), [("k", b"k" * 32)]).blocking is False
    store.delete("wf/a")
    assert inner.get("wf/a") is None


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ({}, "at least one key"),
        ({"k1": b"short"}, "must be 32 bytes .*got 5 bytes"),
        ({"k1": "a string, not bytes"}, "must be 32 bytes .*not bytes"),
        ({"has:colon": b"k" * 32}, "key id 'has:colon' is not valid"),
        ({"": b"k" * 32}, "key id '' is not valid"),
        ([("k1", b"a" * 32), ("k1", b"b" * 32)], "'k1' is given twice"),
        ([("k1", b"a" * 32, "extra")], "list of \\(key id, key\\) pairs"),
    ],
)
def test_bad_key_sets_are_refused_without_quoting_the_keys(keys: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        EncryptedStore(MemoryStore(), keys)
    for secret in ("aaaa", "bbbb", "short", "a string, not bytes"):
        assert secret not in str(caught.value)


def test_new_keys_are_random_32_byte_keys() -> None:
    keys = {EncryptedStore.new_key() for _ in range(20)}
    assert len(keys) == 20
    assert {len(k) for k in keys} == {32}


def test_the_repr_names_key_ids_never_keys() -> None:
    key = EncryptedStore.new_key()
    shown = repr(EncryptedStore(MemoryStore(), {"prod-2026": key}))
    assert "prod-2026" in shown
    assert not any(form in shown for form in key_material([("prod-2026", key)]))


# --- the stored bytes never hold the plaintext ---

SECRET = "customer-4711-iban-DE89370400440532013000"


def run_secret_workflow(store: Any) -> None:
    wf = Workflow("payroll", store=store)
    wf.add(lambda: {"account": SECRET}, name="extract")
    wf.add(lambda previous_context: previous_context.value["account"].upper(), name="load")
    assert wf.start().output == SECRET.upper()


def test_a_workflow_output_never_reaches_the_disk_in_clear(tmp_path: Path) -> None:
    plain_root, encrypted_root = tmp_path / "plain", tmp_path / "encrypted"
    run_secret_workflow(FileStore(plain_root))
    # The same run without encryption does write it: the check below can fail.
    assert any(SECRET.encode() in data for data in raw_files(plain_root).values())

    run_secret_workflow(EncryptedStore(FileStore(encrypted_root), {"k": b"\x01" * 32}))
    files = raw_files(encrypted_root)
    assert any("steps" in name for name in files)
    for name, data in files.items():
        assert SECRET.encode() not in data, name
        assert SECRET.upper().encode() not in data, name
        assert data.startswith(b"DFE\x01") or name == ".dotflow-cas.lock", name


def test_encrypted_over_s3_keeps_the_plaintext_out_of_the_bucket(
    s3_client: Any, s3_bucket: str
) -> None:
    store = EncryptedStore(S3Store(s3_bucket, "enc", client=s3_client), {"k": b"\x02" * 32})
    run_secret_workflow(store)
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert any("/steps/" in key for key in keys)
    for key in keys:
        body = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        assert body.startswith(b"DFE\x01"), key
        assert SECRET.encode() not in body, key


def test_an_encrypted_write_whose_answer_was_lost_succeeds(
    s3_endpoint: str, s3_bucket: str
) -> None:
    """The document is sealed once per put, so botocore's retry resends the same ciphertext and
    the store's read-back recognises its own write."""
    with flaky_proxy(s3_endpoint) as (endpoint, proxy):
        inner = S3Store(
            s3_bucket,
            "ambiguous",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        store = EncryptedStore(inner, {"k1": EncryptedStore.new_key()})
        proxy.fail_after_landing(1, "PUT")
        version = store.put("lease", b"mine", if_none_match=True)
        assert [status for method, status in proxy.seen if method == "PUT"] == [500, 412]
        assert store.get_versioned("lease") == (b"mine", version)


# --- the URL option ---


def env_value(keys: list[tuple[str, bytes]]) -> str:
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys)


def test_a_url_option_reads_the_keys_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [("k1", EncryptedStore.new_key()), ("k2", EncryptedStore.new_key())]
    monkeypatch.setenv("DOTFLOW_KEYS", env_value(keys))
    store = store_from_url(f"file://{tmp_path}/ckpt?durable=false&encryption_keys_env=DOTFLOW_KEYS")
    assert isinstance(store, EncryptedStore)
    assert isinstance(store.store, FileStore)
    assert store.store.durable is False
    assert store.key_ids == ["k1", "k2"]
    store.put("a", b"payload")
    assert (tmp_path / "ckpt" / "a").read_bytes()[4:7] == b"\x02k2"
    assert EncryptedStore(FileStore(tmp_path / "ckpt"), keys[1:]).get("a") == b"payload"
    assert isinstance(store_from_url("memory://?encryption_keys_env=DOTFLOW_KEYS"), EncryptedStore)


def test_the_url_option_works_for_s3(
    s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOTFLOW_KEYS", env_value([("k1", b"\x03" * 32)]))
    store = store_from_url(
        f"s3://{s3_bucket}/p?endpoint_url={s3_endpoint}&region=us-east-1"
        "&encryption_keys_env=DOTFLOW_KEYS",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    assert isinstance(store, EncryptedStore)
    assert isinstance(store.store, S3Store)
    store.put("x", b"hello")
    assert store.get("x") == b"hello"
    assert store.store.get("x") != b"hello"


SECRET_VALUE = base64.b64encode(b"\x09" * 32).decode()


@pytest.mark.parametrize(
    ("env", "query", "match"),
    [
        (None, "encryption_keys_env=NOT_SET_ANYWHERE", "'NOT_SET_ANYWHERE' is not set or empty"),
        ("  ", "encryption_keys_env=DOTFLOW_KEYS", "'DOTFLOW_KEYS' is not set or empty"),
        ("k1:" + SECRET_VALUE, "encryption_keys_env=", "names no environment variable"),
        (f"k1:{SECRET_VALUE}!", "encryption_keys_env=DOTFLOW_KEYS", "'k1' is not valid base64"),
        (SECRET_VALUE, "encryption_keys_env=DOTFLOW_KEYS", "entry 1 is not 'id:base64key'"),
        (f"k1:{SECRET_VALUE[:8]}", "encryption_keys_env=DOTFLOW_KEYS", "got 6 bytes"),
        (
            f"k1:{SECRET_VALUE},k1:{SECRET_VALUE}",
            "encryption_keys_env=DOTFLOW_KEYS",
            "'k1' is given twice",
        ),
        (
            "k1:" + SECRET_VALUE,
            "encryption_keys_env=DOTFLOW_KEYS&encryption_keys_env=OTHER",
            "'encryption_keys_env' twice",
        ),
        (None, f"encryption_keys=k1:{SECRET_VALUE}", "also takes encryption_keys_env"),
    ],
)
def test_bad_key_settings_are_refused_without_echoing_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str | None, query: str, match: str
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    if env is not None:
        monkeypatch.setenv("DOTFLOW_KEYS", env)
    with pytest.raises(ConfigurationError, match=match) as caught:
        store_from_url(f"file://{tmp_path}/ckpt?{query}")
    assert SECRET_VALUE[:8] not in str(caught.value)
    assert not (tmp_path / "ckpt").exists()  # refused before the folder is made


# --- a workflow resumes through an EncryptedStore in a new process ---


def start_target(tmp_path: Path, keys: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.core.crash_target",
            "--store",
            f"file://{tmp_path / 'store'}?encryption_keys_env=DOTFLOW_TEST_KEYS",
            "--log",
            str(tmp_path / "log"),
            "--steps",
            "4",
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, "DOTFLOW_TEST_KEYS": keys},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_killed_workflow_resumes_through_an_encrypted_store_in_a_new_process(
    tmp_path: Path,
) -> None:
    k1, k2 = [("k1", EncryptedStore.new_key())], [("k2", EncryptedStore.new_key())]
    arm, ready = tmp_path / "arm", tmp_path / "ready"
    arm.touch()
    first = start_target(
        tmp_path, env_value(k1), "--hang-at", "s2", "--arm", str(arm), "--ready", str(ready)
    )
    wait_for(ready)
    first.kill()
    first.wait()
    arm.unlink()

    # A runner without the key that wrote the checkpoints stops with a StoreError naming it.
    refused = start_target(tmp_path, env_value(k2))
    out, err = refused.communicate(timeout=120)
    assert refused.returncode == 3, err
    failure = json.loads(out)
    assert failure["error"] == "UnreadableDocument"  # a StoreError no retry can fix
    assert "key id 'k1'" in failure["message"]
    assert not any(form in out + err for form in key_material(k1 + k2))

    # With the key added (rotation), it resumes from the killed step and writes with k2.
    second = start_target(tmp_path, env_value(k1 + k2))
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    result = json.loads(out)
    assert result["summary"]["status"] == "COMPLETED"
    assert [s["restored"] for s in result["summary"]["steps"]] == [True, True, False, False]
    assert result["output"][1] == f"s1@{first.pid}"  # restored, decrypted, not recomputed
    starts = Counter(line.split()[1] for line in (tmp_path / "log").read_text().splitlines())
    assert starts == {"s0": 1, "s1": 1, "s2": 2, "s3": 1}

    files = raw_files(tmp_path / "store")
    steps = {name: data for name, data in files.items() if "/steps/" in name}
    assert len(steps) == 4
    header_ids = Counter(data[5:7] for data in steps.values())
    assert header_ids == {b"k1": 2, b"k2": 2}
    for data in files.values():
        assert f"@{first.pid}".encode() not in data
        assert f"@{second.pid}".encode() not in data


# --- the optional dependency ---

WITHOUT_CRYPTOGRAPHY = """
import sys
sys.modules["cryptography"] = None  # as if the extra were not installed
import dotflow_providers
from dotflow_providers import store_from_url
store_from_url("memory://")  # the core works without it
for attempt in (
    lambda: __import__("dotflow_providers.storage", fromlist=["EncryptedStore"]).EncryptedStore,
    lambda: store_from_url("memory://?encryption_keys_env=DOTFLOW_KEYS"),
):
    try:
        attempt()
    except ImportError as exc:
        print(exc)
"""


def test_without_cryptography_the_error_names_the_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_CRYPTOGRAPHY],
        check=False,
        cwd=ROOT,
        env={**os.environ, "DOTFLOW_KEYS": env_value([("k1", b"\x04" * 32)])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith(
            "EncryptedStore needs cryptography: pip install 'dotflow-providers[encryption]'"
        )
