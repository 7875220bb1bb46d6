"""Ids and step names are checked against the store's own key limits when a workflow is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dotflow_providers import (
    ConfigurationError,
    FileStore,
    InvalidWorkflowId,
    KeyTooLong,
    MemoryStore,
    Status,
    Workflow,
    action,
)
from dotflow_providers._format import Layout

from ..conftest import ENCRYPTED

#: a prefix that leaves an object store 323 of its 1024 bytes (parts under 100 bytes: the GCS
#: emulator keeps objects as files)
LONG_PREFIX = "/".join(["p" * 99] * 7)


@action
def step() -> str:
    return "done"


def longest_key(workflow_id: str, step_name: str) -> int:
    layout = Layout(workflow_id)
    return max(len(k.encode()) for k in layout.workflow_keys() + layout.step_keys(step_name))


def limited_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A store of `kind` whose limits a valid id can reach: object stores get a long prefix."""
    from dotflow_providers.storage import EncryptedStore, GCSStore, S3Store

    if kind == "file":
        return FileStore(tmp_path / "ckpt")
    if kind == "s3":
        return S3Store(
            request.getfixturevalue("s3_bucket"),
            LONG_PREFIX,
            client=request.getfixturevalue("s3_client"),
        )
    if kind == "gcs":
        return GCSStore(
            request.getfixturevalue("gcs_bucket"),
            LONG_PREFIX,
            client=request.getfixturevalue("gcs_client"),
        )
    inner = limited_store(kind.removeprefix("encrypted-"), request, tmp_path)
    return EncryptedStore(inner, [("k1", EncryptedStore.new_key())])


def id_of(length: int) -> str:
    """A valid workflow id of `length` characters, in parts of at most 100."""
    parts, left = [], length
    while left > 101:
        parts.append("i" * 100)
        left -= 101
    return "/".join([*parts, "i" * left])


def at_the_limit(store: Any) -> str:
    """The longest workflow id `store` takes for a step named "step"."""
    if store.max_key_part_bytes is not None:
        return "i" * store.max_key_part_bytes  # one part: a folder name
    return id_of(store.max_key_bytes - (longest_key("x", "step") - 1))


STORES = ["file", "s3", "gcs", *ENCRYPTED]


@pytest.mark.parametrize("kind", STORES)
def test_an_id_too_long_for_the_store_is_refused_when_the_workflow_is_built(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = limited_store(kind, request, tmp_path)
    longest = at_the_limit(store)
    # the longest id the store takes runs, on the real store
    run = Workflow(longest, store=store).add(step).start()
    assert run.status is Status.COMPLETED, run.steps[0].error
    assert Workflow(longest, store=store).add(step).start().steps[0].restored
    # one character more is refused before anything runs or is written, saying what to do
    too_long = longest + "i"
    with pytest.raises(KeyTooLong, match="use a workflow id") as refused:
        Workflow(too_long, store=store)
    assert isinstance(refused.value, InvalidWorkflowId)
    assert too_long not in str(refused.value)  # long ids are shown shortened
    assert all(key.startswith(f"{longest}/") for key in store.list(""))


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_a_step_name_that_makes_a_key_too_long_is_refused_when_added(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = limited_store(kind, request, tmp_path)
    wf = Workflow(id_of(250), store=store).add(step)
    with pytest.raises(KeyTooLong, match="or a shorter step name"):
        wf.add(step, name="n" * 80)  # a simple name: kept as it is in the keys


def test_a_derived_id_is_checked_when_the_run_starts(
    request: pytest.FixtureRequest,
) -> None:
    from dotflow_providers.storage import S3Store

    prefix = "/".join(["p" * 99] * 9) + "/" + "p" * 80  # leaves 43 bytes
    store = S3Store(
        request.getfixturevalue("s3_bucket"), prefix, client=request.getfixturevalue("s3_client")
    )
    wf = Workflow(store=store).add(step)
    with pytest.raises(KeyTooLong):
        wf.start()
    assert not list(store.list(""))


def test_an_id_is_checked_again_when_a_workflow_is_copied_onto_another_store(
    tmp_path: Path,
) -> None:
    long_part = "i" * 300
    wf = Workflow(long_part, store=MemoryStore()).add(step)  # memory has no limit
    assert wf.copy(store=MemoryStore()).steps == ["step"]
    with pytest.raises(KeyTooLong, match="at most 255 bytes per part"):
        wf.copy(store=FileStore(tmp_path / "ckpt"))


def test_a_store_that_does_not_declare_its_limits_is_refused_with_what_to_add() -> None:
    class Bare:  # written for 0.1.0's protocol: no limits declared
        url = "bare://"
        blocking = False

        def get(self, key: str) -> bytes | None:
            return None

    with pytest.raises(ConfigurationError, match="max_key_bytes, max_key_part_bytes"):
        Workflow("bare", store=Bare())  # type: ignore[arg-type]
