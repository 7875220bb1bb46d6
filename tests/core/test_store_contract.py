"""The contract every checkpoint store keeps, run against each backend."""

from __future__ import annotations

import concurrent.futures
import sys
import threading

import pytest

from dotflow_providers import MemoryStore, PreconditionFailed
from dotflow_providers.storage import CheckpointStore


def test_round_trip(any_store: CheckpointStore) -> None:
    store = any_store
    store.put("wf/a.json", b'{"x": 1}')
    assert store.get("wf/a.json") == b'{"x": 1}'


def test_missing_key_reads_none(any_store: CheckpointStore) -> None:
    store = any_store
    assert store.get("wf/nothing") is None
    assert store.get_versioned("wf/nothing") is None


def test_overwrite_replaces_and_changes_version(any_store: CheckpointStore) -> None:
    store = any_store
    first = store.put("k", b"one")
    second = store.put("k", b"two")
    assert store.get("k") == b"two"
    assert first != second
    assert store.get_versioned("k") == (b"two", second)


def test_prefix_listing_is_sorted_and_exact(any_store: CheckpointStore) -> None:
    store = any_store
    for key in ["wf/steps/00002-b.json", "wf/steps/00001-a.json", "wf/manifest.json", "wf2/x"]:
        store.put(key, b"{}")
    assert list(store.list("wf/steps/")) == ["wf/steps/00001-a.json", "wf/steps/00002-b.json"]
    assert list(store.list("wf/")) == [
        "wf/manifest.json",
        "wf/steps/00001-a.json",
        "wf/steps/00002-b.json",
    ]
    assert list(store.list("wf")) == [
        "wf/manifest.json",
        "wf/steps/00001-a.json",
        "wf/steps/00002-b.json",
        "wf2/x",
    ]
    assert list(store.list("nope/")) == []


def test_create_only_refuses_an_existing_key(any_store: CheckpointStore) -> None:
    store = any_store
    store.put("k", b"first", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("k", b"second", if_none_match=True)
    assert store.get("k") == b"first"


def test_compare_and_swap(any_store: CheckpointStore) -> None:
    store = any_store
    version = store.put("k", b"v1")
    newer = store.put("k", b"v2", if_match=version)
    with pytest.raises(PreconditionFailed):
        store.put("k", b"stale", if_match=version)
    assert store.get_versioned("k") == (b"v2", newer)
    with pytest.raises(PreconditionFailed):
        store.put("absent", b"x", if_match=version)
    assert store.get("absent") is None


def test_delete_is_idempotent_and_conditional(any_store: CheckpointStore) -> None:
    store = any_store
    version = store.put("k", b"v1")
    store.put("k", b"v2")
    with pytest.raises(PreconditionFailed):
        store.delete("k", if_match=version)
    assert store.get("k") == b"v2"
    store.delete("k")
    store.delete("k")
    assert store.get("k") is None


def test_large_values(any_store: CheckpointStore) -> None:
    store = any_store
    big = bytes(range(256)) * (2 * 1024 * 4)  # 2 MiB, every byte value
    store.put("big", big)
    assert store.get("big") == big


@pytest.mark.parametrize(
    "key",
    [
        "wf/with space.json",
        "wf/ünïcødé-ключ.json",
        "wf/a%20b+c=d@e,f~g.json",
        "wf/run:2026-11-22T06:00",
    ],
)
def test_keys_with_unusual_characters(any_store: CheckpointStore, key: str) -> None:
    store = any_store
    store.put(key, b"data")
    assert store.get(key) == b"data"
    assert list(store.list("wf/")) == [key]


def test_concurrent_create_only_writers_have_one_winner(store: CheckpointStore) -> None:
    def attempt(n: int) -> bool:
        try:
            store.put("lock", str(n).encode(), if_none_match=True)
            return True
        except PreconditionFailed:
            return False

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(attempt, range(32)))
    assert wins.count(True) == 1
    assert store.get("lock") == str(wins.index(True)).encode()


def test_concurrent_compare_and_swap_loses_no_update(store: CheckpointStore) -> None:
    store.put("counter", b"0")

    def increment(_: int) -> None:
        while True:
            data, version = store.get_versioned("counter") or (b"0", "")
            try:
                store.put("counter", str(int(data) + 1).encode(), if_match=version)
                return
            except PreconditionFailed:
                continue

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(increment, range(40)))
    assert store.get("counter") == b"40"


def test_every_store_declares_whether_it_blocks(
    store: CheckpointStore, request: pytest.FixtureRequest
) -> None:
    assert isinstance(store, CheckpointStore)
    assert "blocking" in CheckpointStore.__annotations__
    assert store.blocking is (request.node.callspec.params["store"] != "memory")


def test_every_store_declares_limits_it_really_has(any_store: CheckpointStore) -> None:
    assert isinstance(any_store, CheckpointStore)
    assert {"max_key_bytes", "max_key_part_bytes"} <= set(CheckpointStore.__annotations__)
    whole, part = any_store.max_key_bytes, any_store.max_key_part_bytes
    assert whole is None or whole > 0
    assert part is None or part > 0
    # a key exactly as long as the store says it takes is stored
    if part is not None:
        key = "w/" + "k" * part
        any_store.put(key, b"at the limit")
        assert any_store.get(key) == b"at the limit"
    if whole is not None:
        key = "w/" + "k" * (whole - 2)
        any_store.put(key, b"at the limit")
        assert any_store.get(key) == b"at the limit"


# --- MemoryStore: create-only writes take no lock, versions stay unique ---


def test_memory_create_only_puts_do_not_wait_for_the_lock() -> None:
    store = MemoryStore()
    version = store.put("held", b"0")
    created = threading.Event()

    def create() -> None:
        store.put("new", b"x", if_none_match=True)
        created.set()

    with store._lock:  # as a compare-and-swap or delete in progress holds it
        writer = threading.Thread(target=create)
        writer.start()
        assert created.wait(10), "a create-only put waited for the lock"
    writer.join()
    assert store.get("new") == b"x"
    assert store.put("held", b"1", if_match=version) != version


def test_memory_versions_stay_unique_when_writers_race() -> None:
    store = MemoryStore()
    store.put("counter", b"0")
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    try:

        def write(n: int) -> list[str]:
            versions = [store.put(f"k{n}-{i}", b"x", if_none_match=True) for i in range(200)]
            while True:
                data, version = store.get_versioned("counter") or (b"0", "")
                try:
                    versions.append(store.put("counter", b"%d" % (int(data) + 1), if_match=version))
                    return versions
                except PreconditionFailed:
                    continue

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            versions = [v for vs in pool.map(write, range(16)) for v in vs]
    finally:
        sys.setswitchinterval(previous)
    assert len(versions) == len(set(versions)) == 16 * 201
    assert store.get("counter") == b"16"
    assert len(list(store.list("k"))) == 16 * 200
