"""The default checkpoint store, Airflow's task state store: a bounded number of calls per step,
values that fit its limit, and the same contract as every other store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dotflow_providers import CheckpointError, PreconditionFailed
from dotflow_providers._format import Layout

from .test_operator import task_instance, xcom


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOTFLOW_TEST_DIR", str(tmp_path))
    return tmp_path


def test_a_thousand_steps_cost_at_most_two_state_store_calls_each(work: Path) -> None:
    from dotflow_dags import thousand

    from dotflow_airflow.compatibility import state_store_limit

    dag_run = thousand.test()
    assert dag_run.state == "success"
    report = json.loads((work / "state-calls.json").read_text())
    assert sum(report["calls"].values()) <= 2000, report
    # one shared key index passed 64 KiB at this size; every value now holds one checkpoint
    assert 0 < report["largest"] <= state_store_limit(), report
    assert len(xcom(dag_run)["steps"]) == 1000


def test_max_value_storage_bytes_0_means_no_limit(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dotflow_dags import too_large

    monkeypatch.setenv("AIRFLOW__STATE_STORE__MAX_VALUE_STORAGE_BYTES", "0")
    dag_run = too_large.test()
    assert dag_run.state == "success"
    assert task_instance(dag_run).try_number == 1


def test_store_url_mode_and_connection_are_templated_from_params(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dotflow_dags import templated_store

    from dotflow_providers import FileStore

    by_url, by_conn = work / "by-url", work / "by-conn"
    connection = {"conn_type": "dotflow", "host": f"file://{by_conn}"}
    monkeypatch.setenv("AIRFLOW_CONN_DOTFLOW_FILES", json.dumps(connection))
    dag_run = templated_store.test(
        run_conf={
            "store": f"file://{by_url}",
            "mode": "sequential_group",
            "conn_id": "dotflow_files",
        }
    )
    assert dag_run.state == "success"
    url_summary = xcom(dag_run, task_id="by_url")
    assert url_summary["mode"] == "sequential_group"
    assert len(list(FileStore(by_url).list(Layout(url_summary["workflow_id"]).steps))) == 3
    conn_summary = xcom(dag_run, task_id="by_conn")
    assert len(list(FileStore(by_conn).list(Layout(conn_summary["workflow_id"]).steps))) == 3


# --- the store's own decisions, over a plain dict in place of the accessor -------------------
# (the real accessor needs a running task per example: the DAG runs above and the live tests
# use it; here the values still make a JSON round trip, as through Airflow)


class DictState:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.calls = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.calls += 1
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any) -> None:
        self.calls += 1
        self.values[key] = json.dumps(value)


KEYS = st.sampled_from(["wf/manifest.json", "wf/steps/00000-a.json", "wf/steps/00001-b.json", "x"])
OPS = st.lists(
    st.tuples(st.sampled_from(["put", "create", "delete", "swap"]), KEYS, st.binary(max_size=8)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_the_store_behaves_like_a_dict_across_tries(ops: list[tuple[str, str, bytes]]) -> None:
    from dotflow_airflow.state_store import TaskStateCheckpoints

    state = DictState()
    store = TaskStateCheckpoints(state, limit=65535)
    model: dict[str, bytes] = {}
    for op, key, raw in ops:
        data = raw.hex().encode()
        if op == "put":
            store.put(key, data)
            model[key] = data
        elif op == "create":
            if key in model:
                with pytest.raises(PreconditionFailed):
                    store.put(key, data, if_none_match=True)
            else:
                store.put(key, data, if_none_match=True)
                model[key] = data
        elif op == "delete":
            store.delete(key)
            model.pop(key, None)
        else:
            found = store.get_versioned(key)
            if found is None:
                continue
            version = store.put(key, data, if_match=found[1])
            with pytest.raises(PreconditionFailed):
                store.put(key, data, if_match=found[1])  # the old version is gone
            assert store.get_versioned(key) == (data, version)
            model[key] = data
    # the next try reads everything back from the state store alone
    for reader in (store, TaskStateCheckpoints(state, limit=65535)):
        assert {k: reader.get(k) for k in model} == model
        assert list(reader.list("wf/")) == sorted(k for k in model if k.startswith("wf/"))
        assert all(reader.get(k) is None for k in {"x", "wf/manifest.json"} - model.keys())


@given(st.integers(min_value=1, max_value=300))
def test_each_new_key_is_one_call_and_no_value_grows(steps: int) -> None:
    from dotflow_airflow.state_store import TaskStateCheckpoints

    state = DictState()
    store = TaskStateCheckpoints(state, limit=65535)
    store.get("wf/manifest.json")  # the first call reads the (empty) slots: one get
    for i in range(steps):
        store.put(f"wf/steps/{i:05d}-noop.json", b"{}", if_none_match=True)
    assert state.calls == 1 + steps
    assert max(len(v) for v in state.values.values()) < 100


def test_a_value_over_the_limit_names_the_setting_and_the_alternatives() -> None:
    from dotflow_airflow.state_store import TaskStateCheckpoints

    store = TaskStateCheckpoints(DictState(), limit=1000)
    store.put("small", b"x" * 100)
    with pytest.raises(CheckpointError) as caught:
        store.put("big", b"x" * 1000)
    assert "max_value_storage_bytes" in str(caught.value)
    assert "store_conn_id" in str(caught.value)
    assert store.get("big") is None
    TaskStateCheckpoints(DictState(), limit=0).put("big", b"x" * 1_000_000)  # 0: no limit


def test_group_commit_writes_one_state_store_value_per_batch() -> None:
    """1,000 steps at commit_every=100 on the task state store: ten batch values, each under
    the per-value limit, and the run resumes from them."""
    from dotflow_airflow.state_store import TaskStateCheckpoints
    from dotflow_providers import Workflow, action

    @action
    def noop() -> None:
        return None

    state = DictState()

    def build() -> Workflow:
        store = TaskStateCheckpoints(state, limit=65535)
        wf = Workflow("batched", store=store, lock=False, commit_every=100)
        for i in range(1000):
            wf.add(noop, name=f"s{i}")
        return wf

    assert build().start().status.value == "COMPLETED"
    batches = [k for k in state.values if "/.batch/" in json.loads(state.values[k]).get("key", "")]
    assert len(batches) == 10
    assert max(len(v) for v in state.values.values()) < 65535
    assert all(s.restored for s in build().start().steps)
