"""Each call of a dotflow task has its own checkpoint: flow run, function, arguments, occurrence.

Each test here returned a wrong result silently (or failed) when the key was Prefect's task_key
plus the arguments."""

from __future__ import annotations

import logging
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ..sidefx import steps_ran
from .logs import run_logs


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOTFLOW_TEST_DIR", str(tmp_path))
    return tmp_path


def test_two_tasks_with_one_function_name_keep_their_own_outputs(work: Path) -> None:
    from .identity_flows import twins

    assert twins() == ["a1", "b1"]
    assert steps_ran(work) == ["a.fetch", "b.fetch"]


def test_identical_calls_in_one_flow_run_each_run_and_each_restore_their_own(work: Path) -> None:
    from .identity_flows import attempts, stamps_twice

    (work / "fail-stamps").touch()
    state = stamps_twice(return_state=True)
    first, retried = attempts()
    assert first[0] != first[1]
    assert retried == first == state.result()
    assert steps_ran(work) == ["stamp-x", "stamp-x"]
    messages = [m for _, m in run_logs(state.state_details.flow_run_id, "restored from")]
    assert sum("step stamp restored from its checkpoint" in m for m in messages) == 2


def test_a_future_that_resolves_to_another_value_on_the_retry_runs_the_call_again(
    work: Path,
) -> None:
    # the call's arguments are its input: restoring times_ten(0)'s 0 for times_ten(1) on the
    # flow retry would hand on a stale result (all the call's parameters are bound, so its
    # arguments' digest must count in its code version, not as an initial context it ignores)
    from .identity_flows import attempts, upstream_changes_on_retry

    (work / "fail-after-times-ten").touch()
    assert upstream_changes_on_retry() == 10
    assert attempts() == [0, 10]
    assert steps_ran(work) == ["times_ten-0", "times_ten-1"]


def test_map_with_duplicates_runs_each_element_and_a_retry_restores_each_in_place(
    work: Path,
) -> None:
    from .identity_flows import attempts, stamps_mapped

    (work / "fail-mapped").touch()
    labels = ["x", "y", "x", "x"]
    result = stamps_mapped(labels)
    first, retried = attempts()
    assert retried == first == result
    assert len(set(result)) == 4
    assert [value.split("-")[0] for value in result] == labels
    assert sorted(steps_ran(work)) == ["stamp-x"] * 3 + ["stamp-y"]


def test_run_workflow_in_a_loop_and_in_map_over_contexts_with_an_explicit_id(work: Path) -> None:
    from .identity_flows import looped

    (work / "fail-looped").touch()
    state = looped(["mon", "tue"], return_state=True)
    assert state.result() == ["hello mon", "hello tue"] * 2
    # four calls ran once each; the flow retry restored all four
    assert sorted(steps_ran(work)) == ["greet-mon", "greet-mon", "greet-tue", "greet-tue"]
    levels = [level for level, _ in run_logs(state.state_details.flow_run_id)]
    # no cache-key error for the Workflow argument (only the planned failure's lines)
    logs = run_logs(state.state_details.flow_run_id)
    assert not [m for level, m in logs if level >= logging.ERROR and "cache" in m.lower()]
    assert levels


def test_a_rolled_back_transaction_makes_the_retry_run_the_task_again(work: Path) -> None:
    from .identity_flows import transactional

    (work / "fail-validate").touch()
    assert transactional() is True
    assert steps_ran(work) == ["write", "undo", "write"]


def test_an_argument_without_a_stable_digest_is_refused_and_spends_no_flow_retry(
    work: Path,
) -> None:
    from dotflow_prefect import UndigestableArgument

    from .identity_flows import opaque_flow

    state = opaque_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(UndigestableArgument, match="checkpoint_key="):
        state.result()
    assert steps_ran(work) == ["flow"]  # one attempt of three, and the task body never ran


def test_checkpoint_key_identifies_arguments_the_digest_cannot(work: Path) -> None:
    from .identity_flows import named_flow

    (work / "fail-named").touch()
    assert named_flow() == "took a"
    assert steps_ran(work) == ["take_named"]


def test_a_dotflow_task_runs_outside_a_flow_with_an_explicit_store(work: Path) -> None:
    from dotflow_prefect import dotflow_task

    from ..sidefx import ran

    @dotflow_task(store=f"file://{work / 'ckpt'}")
    def double(n: int) -> int:
        ran(f"double-{n}")
        return 2 * n

    assert [double(2), double(2), double(3)] == [4, 4, 6]
    assert steps_ran(work) == ["double-2", "double-2", "double-3"]
    assert len(list((work / "ckpt" / "prefect" / "local").iterdir())) == 1


@given(st.text(alphabet=string.printable + "é<>/ ", min_size=1, max_size=60))
def test_id_parts_are_valid_workflow_ids_and_keep_names_apart(text: str) -> None:
    from dotflow_prefect._identity import id_part
    from dotflow_providers import Workflow

    part = id_part(text)
    Workflow(f"prefect/{part}")  # raises InvalidWorkflowId if unusable
    assert "/" not in part
    assert part == text or part != id_part(text + "_")


@given(
    st.dictionaries(
        st.text(max_size=5),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
            max_leaves=8,
        ),
        max_size=4,
    )
)
def test_argument_digests_ignore_keyword_order(parameters: dict[str, Any]) -> None:
    from dotflow_prefect._identity import arguments_digest

    reordered = dict(reversed(list(parameters.items())))
    assert arguments_digest(parameters, None) == arguments_digest(reordered, None)
    assert arguments_digest(parameters, None) != arguments_digest({**parameters, "\0": 1}, None)


def test_a_task_retry_does_not_shift_the_flows_later_identical_call(work: Path) -> None:
    # `outer`'s retry calls stamp("x") again: counted with the flow's own calls, it made the
    # flow's stamp("x") occurrence 1, and the flow retry (counting from 0) handed it the
    # checkpoint of the call made inside `outer`
    from .identity_flows import attempts, nested_then_direct

    (work / "fail-outer").touch()
    (work / "fail-flow").touch()
    nested_then_direct()
    first, retried = attempts()
    assert first["outer"] != first["direct"]
    assert retried["direct"] == first["direct"]  # restored from its own checkpoint
    # the flow retry runs `outer` as a new task run: its call runs again, never restored from
    # another call's checkpoint
    assert retried["outer"] not in (first["outer"], first["direct"])


def test_a_subflow_retry_does_not_shift_the_parents_later_identical_call(work: Path) -> None:
    from .identity_flows import attempts, subflow_then_direct

    (work / "fail-child").touch()
    (work / "fail-parent").touch()
    subflow_then_direct()
    first, retried = attempts()
    assert first["child"] != first["parent"]
    assert retried["parent"] == first["parent"]
    assert retried["child"] not in (first["child"], first["parent"])  # a new subflow run


def test_a_flow_runs_call_counts_outlive_any_number_of_other_flow_runs() -> None:
    # a process that runs many flow runs (a `serve` process, a flow with many subflows) kept
    # the counts of the last 256 only: a longer-running flow's next identical call was
    # counted from 0 again and handed an earlier call's checkpoint
    import gc
    import types
    import uuid

    from prefect.context import FlowRunContext

    from dotflow_prefect._identity import _Occurrences

    def attempt() -> FlowRunContext:
        flow_run = types.SimpleNamespace(id=uuid.uuid4())
        return FlowRunContext.model_construct(flow_run=flow_run)

    occurrences = _Occurrences()
    running = attempt()
    with running:
        first = occurrences.next("stamp", "digest")
    for _ in range(300):
        with attempt():
            assert occurrences.next("stamp", "digest").occurrence == 0
    with running:
        second = occurrences.next("stamp", "digest")
    assert (first.occurrence, second.occurrence) == (0, 1)
    gc.collect()
    assert len(occurrences._attempts) == 1  # the ended attempts' counts are gone
    del running
    gc.collect()
    assert occurrences._attempts == {}


def test_identical_calls_inside_one_task_each_run_and_each_restore_their_own(work: Path) -> None:
    from .identity_flows import attempts, twice_in_a_task

    (work / "fail-twice").touch()
    twice_in_a_task()
    first, retried = attempts()
    assert first[0] != first[1]  # two calls, two values: not one restored for the other
    assert retried[0] != retried[1]
    assert not set(retried) & set(first)  # a new task run: its calls run again
    assert steps_ran(work) == ["stamp-x"] * 4
