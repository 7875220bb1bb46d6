"""Store URLs: what each scheme takes, how file:// paths decode, and that errors keep secrets."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dotflow_providers import (
    ConfigurationError,
    DotflowError,
    FileStore,
    MemoryStore,
    UnknownStoreURL,
    store_from_url,
)
from dotflow_providers.storage._base import without_credentials


@pytest.mark.parametrize("value", ["nope", "", "2", "disabled"])
def test_a_durable_value_that_is_not_a_boolean_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigurationError, match="durable must be one of true, 1, yes, on, false"):
        store_from_url(f"file://{tmp_path}/ckpt?durable={value}")
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(
    ("value", "durable"),
    [("true", True), ("TRUE", True), ("1", True), ("on", True), ("false", False), ("0", False)],
)
def test_durable_values(tmp_path: Path, value: str, durable: bool) -> None:
    store = store_from_url(f"file://{tmp_path}?durable={value}")
    assert isinstance(store, FileStore)
    assert store.durable is durable


@pytest.mark.parametrize(
    ("url", "known"),
    [
        ("memory://?durable=false", "take none"),
        ("file:///tmp/x?durabel=false", "take durable;"),
        ("s3://bucket/p?endpoint=http://127.0.0.1:9", "take endpoint_url, region;"),
        ("s3://bucket/p?max_attempts=3", "take endpoint_url, region;"),
        ("gs://bucket/p?region=eu", "take endpoint_url, project;"),
    ],
)
def test_unknown_parameters_are_refused_naming_the_known_ones(url: str, known: str) -> None:
    with pytest.raises(ConfigurationError, match=known):
        store_from_url(url)


def test_a_parameter_given_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="'durable' twice"):
        store_from_url(f"file://{tmp_path}?durable=true&durable=false")


def test_file_urls_are_percent_decoded(tmp_path: Path) -> None:
    store = store_from_url(f"file://{tmp_path}/a%20b/c%25d")
    assert isinstance(store, FileStore)
    assert store.root == tmp_path / "a b" / "c%d"
    assert (tmp_path / "a b" / "c%d").is_dir()


def test_a_fragment_is_refused_rather_than_cutting_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="%23"):
        store_from_url(f"file://{tmp_path}/run#1")


_FOLDER = st.text(
    st.characters(codec="utf-8", exclude_characters="/\0", exclude_categories=("Cs",)),
    min_size=1,
    max_size=40,
).filter(lambda name: name not in (".", ".."))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(folder=_FOLDER)
def test_any_folder_name_round_trips_through_a_percent_encoded_url(
    tmp_path: Path, folder: str
) -> None:
    url = "file://" + urllib.parse.quote(f"{tmp_path}/{folder}")
    store = store_from_url(url)
    assert isinstance(store, FileStore)
    assert store.root == tmp_path / folder
    store.put("k", folder.encode())
    assert (tmp_path / folder / "k").read_bytes() == folder.encode()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(folder=_FOLDER, durable=st.booleans())
def test_a_file_stores_url_opens_the_same_folder_again(
    tmp_path: Path, folder: str, durable: bool
) -> None:
    """What a page or a log records of a store given as an object (`store.url`) opens that
    store again: `%41` or `?` in a folder's name is not read as escaped or as a query."""
    store = FileStore(tmp_path / folder, durable=durable)
    again = store_from_url(store.url)
    assert isinstance(again, FileStore)
    assert (again.root, again.durable) == (store.root, durable)


_SECRET = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=12
).map(lambda s: "Zq" + s)


@settings(max_examples=80, deadline=None)
@given(
    secret=_SECRET,
    form=st.sampled_from(
        [
            "azure://acct/container?sig={s}",
            "ftp://user:{s}@host/x",
            "s3://AKIA:{s}@bucket/prefix",
            "gs://user:{s}@bucket",
            "s3://bucket/prefix?aws_secret_access_key={s}",
            "gs://bucket/p?token={s}",
            "file:///tmp/x?password={s}",
            "file:///tmp/x?durable={s}",
            "memory://?{s}",
            "s3://bucket/p?region=us-east-1&region={s}",
            "s3://bucket/p#{s}",
            "user:{s}@bucket/prefix",
            "checkpoints?key={s}",
        ]
    ),
)
def test_errors_never_echo_a_query_string_or_userinfo(secret: str, form: str) -> None:
    url = form.format(s=secret)
    with pytest.raises(DotflowError) as info:
        store_from_url(url)
    assert secret not in str(info.value)


def test_unknown_schemes_name_scheme_host_and_path_only() -> None:
    with pytest.raises(UnknownStoreURL, match=r"'azure://acct/container'; known: file://") as info:
        store_from_url("azure://me:pw@acct/container?sig=s3cr3t")
    assert "s3cr3t" not in str(info.value)
    assert "pw" not in str(info.value)


def test_memory_urls() -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)


@settings(max_examples=100, deadline=None)
@given(
    user=st.text("abcXYZ019.-_~!$&'()*+,;=%@:", min_size=1),  # an e-mail address, say
    secret=_SECRET,
    host=st.sampled_from(["127.0.0.1:9000", "example.com", "[::1]:80"]),
    form=st.sampled_from(
        [
            "cannot reach {url}/bucket/key (GET)",
            "s3://bucket/p?endpoint_url={url}&region=us-east-1",
            "{url}",
        ]
    ),
)
def test_any_userinfo_is_removed_from_a_url_in_a_message(
    user: str, secret: str, host: str, form: str
) -> None:
    """User names may hold `@` and `:` (URL parsers split the host at the last `@`): what is
    shown keeps the host and never the password."""
    shown = without_credentials(form.format(url=f"http://{user}:{secret}@{host}"))
    assert secret not in shown
    assert shown == form.format(url=f"http://{host}")


def test_a_folder_name_that_is_not_utf8_round_trips_through_its_url(tmp_path: Path) -> None:
    """Linux names are bytes: one made on another locale (`caf\\xe9`) is a legal folder."""
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    store = FileStore(folder)
    again = store_from_url(store.url)
    assert isinstance(again, FileStore)
    assert again.root == folder
    again.put("k", b"v")
    assert (folder / "k").read_bytes() == b"v"
