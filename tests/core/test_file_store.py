"""FileStore specifics: atomic writes, what a crashed writer leaves, links planted under the
root, the errors it raises, and store URLs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotflow_providers import (
    Context,
    CorruptCheckpoint,
    FileStore,
    MemoryStore,
    PreconditionFailed,
    Run,
    StoreError,
    UnknownStoreURL,
    Workflow,
    action,
    store_from_url,
)


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


# --- links planted under the root never lead a read, write, list or delete outside it ---


@pytest.fixture
def planted(tmp_path: Path) -> tuple[FileStore, Path]:
    """A store whose `wf` folder is a link to a folder outside the root."""
    outside = tmp_path / "outside"
    (outside / "steps").mkdir(parents=True)
    (outside / "steps" / "00000-a.json").write_bytes(b"not ours")
    store = FileStore(tmp_path / "root")
    (tmp_path / "root" / "wf").symlink_to(outside, target_is_directory=True)
    return store, outside


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_linked_folder_is_refused_for_reads_writes_and_deletes(
    planted: tuple[FileStore, Path],
) -> None:
    store, outside = planted
    before = files_under(outside)
    with pytest.raises(StoreError, match="'wf' is a symbolic link"):
        store.get("wf/steps/00000-a.json")
    with pytest.raises(StoreError, match="symbolic link"):
        store.get_versioned("wf/steps/00000-a.json")
    for put in (
        lambda: store.put("wf/steps/00001-b.json", b"x"),
        lambda: store.put("wf/steps/00001-b.json", b"x", if_none_match=True),
        lambda: store.put("wf/steps/00000-a.json", b"x", if_match="whatever"),
        lambda: store.put("wf/new/deeper.json", b"x"),
    ):
        with pytest.raises(StoreError, match="symbolic link"):
            put()
    with pytest.raises(StoreError, match="symbolic link"):
        store.delete("wf/steps/00000-a.json")
    for prefix in ("wf/", "wf/steps/", "w", ""):
        with pytest.raises(StoreError, match=r"refused to list .* 'wf' is a symbolic link"):
            store.list(prefix)
    assert list(store.list("other/")) == []
    assert files_under(outside) == before


def test_a_folder_swapped_for_a_link_after_use_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    store.put("wf/steps/00000-a.json", b"ours")
    assert store.get("wf/steps/00000-a.json") == b"ours"
    outside = tmp_path / "outside"
    (outside / "steps").mkdir(parents=True)
    steps = tmp_path / "root" / "wf" / "steps"
    for child in steps.iterdir():
        child.unlink()
    steps.rmdir()
    steps.symlink_to(outside / "steps", target_is_directory=True)
    with pytest.raises(StoreError, match="'wf/steps' is a symbolic link"):
        store.put("wf/steps/00001-b.json", b"x")
    with pytest.raises(StoreError, match="symbolic link"):
        store.get("wf/steps/00001-b.json")
    assert list((outside / "steps").iterdir()) == []


def test_a_linked_file_is_refused_for_reads_and_replaced_not_followed_by_writes(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the store")
    store = FileStore(tmp_path / "root")
    (tmp_path / "root" / "wf").mkdir()
    link = tmp_path / "root" / "wf" / "k"
    link.symlink_to(secret)
    with pytest.raises(StoreError, match="'wf/k' is a symbolic link"):
        store.get("wf/k")
    with pytest.raises(StoreError, match="'wf/k' is a symbolic link"):
        store.list("wf/")
    with pytest.raises(PreconditionFailed):  # the link occupies the key
        store.put("wf/k", b"new", if_none_match=True)
    store.delete("wf/k")  # removes the link, not its target
    assert not link.is_symlink()
    link.symlink_to(secret)
    store.put("wf/k", b"new")  # replaces the link itself
    assert not link.is_symlink()
    assert store.get("wf/k") == b"new"
    assert secret.read_bytes() == b"outside the store"


def test_a_linked_compare_and_swap_lock_file_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    version = store.put("k", b"1")
    (tmp_path / "root" / ".dotflow-cas.lock").symlink_to(tmp_path / "planted-lock")
    with pytest.raises(StoreError):
        store.put("k", b"2", if_match=version)
    assert not (tmp_path / "planted-lock").exists()
    assert store.get("k") == b"1"


def test_a_directory_where_a_checkpoint_belongs_is_a_corrupt_checkpoint(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    (tmp_path / "wf" / "steps" / "00000-a.json").mkdir(parents=True)
    with pytest.raises(CorruptCheckpoint, match="is a directory") as info:
        store.get("wf/steps/00000-a.json")
    assert info.value.key == "wf/steps/00000-a.json"
    with pytest.raises(CorruptCheckpoint, match="is a directory"):
        store.get_versioned("wf/steps/00000-a.json")
    with pytest.raises(CorruptCheckpoint, match="is a directory"):
        store.put("wf/steps/00000-a.json", b"{}", if_none_match=True)
    with pytest.raises(StoreError, match="a folder stands where the checkpoint file belongs"):
        store.delete("wf/steps/00000-a.json")


def test_a_fifo_under_a_key_is_refused_without_blocking(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    os.mkfifo(tmp_path / "k")
    with pytest.raises(StoreError, match="not a regular file"):
        store.get("k")


# --- every failure is a StoreError naming the store, the key and what to do ---


def test_a_key_too_long_for_the_filesystem_is_a_store_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("wf/steps/00000-a.json", b"{}")
    key = "wf/steps/" + "x" * 300 + ".json"
    for call in (
        lambda: store.get(key),
        lambda: store.get_versioned(key),
        lambda: store.put(key, b"x"),
        lambda: store.delete(key),
    ):
        with pytest.raises(StoreError, match=rf"{tmp_path} could not .* too long.*shorter"):
            call()
    with pytest.raises(StoreError, match="too long"):
        store.get("x" * 300 + "/k")


def test_a_file_where_a_folder_belongs_is_a_store_error_for_writes(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("wf", b"a file")
    assert store.get("wf/steps/00000-a.json") is None  # no key can live below a file
    assert list(store.list("wf/")) == []
    store.delete("wf/steps/00000-a.json")
    with pytest.raises(StoreError, match=r"'wf/steps/00000-a.json'.*a file stands where a folder"):
        store.put("wf/steps/00000-a.json", b"x")


def test_listing_a_prefix_with_dot_dot_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "sibling").mkdir()
    (tmp_path / "sibling" / "k").write_bytes(b"x")
    store = FileStore(tmp_path / "root")
    assert list(store.list("../sibling/")) == []


_PARTS = ["a", "b", ".", "..", "", ".tmp-", ".tmp-x", "a.tmp-", "...", ".b"]


@given(st.lists(st.sampled_from(_PARTS), min_size=1, max_size=6))
def test_a_key_is_refused_exactly_when_a_part_cannot_name_a_file(parts: list[str]) -> None:
    """Empty, "." and ".." parts and temporary files' names are refused, nothing else."""
    key = "/".join(parts)
    expected_bad = not key or any(p in ("", ".", "..") or p.startswith(".tmp-") for p in parts)
    with tempfile.TemporaryDirectory() as root:
        try:
            FileStore(root).get(key)
        except StoreError:
            refused = True
        else:
            refused = False
    assert refused == expected_bad


_PART = st.sampled_from(["a", "b", "c.json", "d-1"])


@given(
    present=st.lists(st.lists(_PART, min_size=1, max_size=3), max_size=8),
    asked=st.lists(st.lists(_PART, min_size=1, max_size=3), max_size=12),
)
def test_reading_many_keys_at_once_answers_what_reading_each_does(
    present: list[list[str]], asked: list[list[str]]
) -> None:
    # a resume reads a folder's documents in one pass: the answers must be get_versioned's,
    # key by key, whatever mix of folders, missing keys and missing folders is asked for
    with tempfile.TemporaryDirectory() as root:
        store = FileStore(root)
        for parts in present:
            key = "/".join(parts)
            with contextlib.suppress(StoreError):  # a key where another key's folder is
                store.put(key, key.encode())
        keys = ["/".join(parts) for parts in asked]
        expected: list[object] = []
        for key in keys:
            try:
                expected.append(store.get_versioned(key))
            except (StoreError, CorruptCheckpoint) as exc:
                expected.append(type(exc))
        answers: list[object] = []
        for key in keys:  # one call per key, so an error answers that key only
            try:
                answers.extend(store.get_many_versioned([key]))
            except (StoreError, CorruptCheckpoint) as exc:
                answers.append(type(exc))
        assert answers == expected
        if all(not isinstance(e, type) for e in expected):
            assert list(store.get_many_versioned(keys)) == expected


def test_reading_many_keys_refuses_a_folder_swapped_for_a_link(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    store.put("wf/steps/a.json", b"ours")
    assert next(iter(store.get_many_versioned(["wf/steps/a.json"]))) is not None
    outside = tmp_path / "outside"
    (outside / "steps").mkdir(parents=True)
    (outside / "steps" / "a.json").write_bytes(b"planted")
    steps = tmp_path / "root" / "wf" / "steps"
    (steps / "a.json").unlink()
    steps.rmdir()
    steps.symlink_to(outside / "steps", target_is_directory=True)
    with pytest.raises(StoreError, match="symbolic link"):
        list(store.get_many_versioned(["wf/steps/a.json"]))


def test_a_subclass_that_changes_get_versioned_sees_every_read_of_a_resume(tmp_path: Path) -> None:
    # a store that audits or transforms what it reads: a resume must not go around it
    seen: list[str] = []

    class Audited(FileStore):
        def get_versioned(self, key: str) -> tuple[bytes, str] | None:
            seen.append(key)
            return super().get_versioned(key)

    @action
    def first() -> int:
        return 1

    @action
    def second(previous_context: Context) -> int:
        return previous_context.value + 1

    def start() -> Run:
        return Workflow("audited", store=Audited(tmp_path)).add(first).add(second).start()

    assert start().output == 2
    seen.clear()
    run = start()
    assert [s.restored for s in run.steps] == [True, True]
    assert sum("/steps/" in key for key in seen) == 2
