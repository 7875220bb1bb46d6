"""FileStore specifics: atomic writes, what a crashed writer leaves, and store URLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dotflow_providers import FileStore, MemoryStore, StoreError, UnknownStoreURL, store_from_url


def test_a_crashed_writers_temp_file_is_invisible(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("wf/steps/00000-a.json", b"committed")
    # what a writer killed before its rename leaves behind
    (tmp_path / "wf" / "steps" / ".tmp-abc123").write_bytes(b"half a docu")
    assert list(store.list("wf/")) == ["wf/steps/00000-a.json"]
    assert store.get("wf/steps/00000-a.json") == b"committed"


def test_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for n in range(5):
        store.put("k", str(n).encode())
    store.put("c", b"x", if_none_match=True)
    assert sorted(os.listdir(tmp_path)) == ["c", "k"]


def test_failed_create_only_leaves_no_temp_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("k", b"1", if_none_match=True)
    with pytest.raises(StoreError):
        store.put("k", b"2", if_none_match=True)
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


@pytest.mark.parametrize("key", ["", "../outside", "a/../../b", "a//b", "/abs", ".tmp-x"])
def test_keys_that_escape_or_collide_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(StoreError, match="cannot name a file"):
        FileStore(tmp_path / "root").put(key, b"x")


def test_non_durable_store_still_writes_atomically(tmp_path: Path) -> None:
    store = FileStore(tmp_path, durable=False)
    store.put("k", b"fast")
    assert store.get("k") == b"fast"


def test_store_urls() -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)


def test_file_store_urls(tmp_path: Path) -> None:
    store = store_from_url(f"file://{tmp_path}/ckpt?durable=false")
    assert isinstance(store, FileStore)
    assert store.root == tmp_path / "ckpt"
    assert store.durable is False
    assert store_from_url(f"file://{tmp_path}").durable is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["ftp://host/x", "checkpoints", "file://", "azure://c/p"])
def test_unknown_store_urls_are_named_errors(url: str) -> None:
    with pytest.raises(UnknownStoreURL):
        store_from_url(url)


def test_unwritable_folder_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create checkpoint folder"):
        FileStore(blocker / "ckpt")
