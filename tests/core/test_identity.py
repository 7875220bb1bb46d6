"""Checkpoint identity: a resume restores exactly what is still valid, never a stale or foreign
result. Each test here failed on dotflow-providers 0.1.0."""

from __future__ import annotations

import functools
import importlib
import os
import string
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dotflow_providers import (
    CheckpointError,
    ConfigurationError,
    Context,
    CorruptCheckpoint,
    FileStore,
    InputChanged,
    InvalidStep,
    InvalidWorkflowId,
    MemoryStore,
    NotRunning,
    Status,
    Workflow,
    WorkflowCancelled,
    WorkflowDefinitionChanged,
    action,
    cancel,
    dump_stages,
    inspect_workflow,
)
from dotflow_providers._format import Layout
from dotflow_providers._identity import OnChange

from .procs import ROOT


def add_one(previous_context: Context) -> int:
    return (previous_context.value or 0) + 1


# --- keep_going ---------------------------------------------------------------------------------


def test_keep_going_never_restores_a_result_computed_without_its_input(tmp_path: Path) -> None:
    broken = {"first": True}

    def first() -> int:
        if broken["first"]:
            raise RuntimeError("upstream down")
        return 10

    def build() -> Workflow:
        return (
            Workflow("kg", store=FileStore(tmp_path))
            .add(first, name="first")
            .add(add_one, name="second")
        )

    run = build().start(keep_going=True)
    assert [s.status for s in run.steps] == [Status.FAILED, Status.COMPLETED]
    assert run.steps[1].output == 1  # computed from an empty previous_context
    broken["first"] = False
    run = build().start()
    assert run.status is Status.COMPLETED
    assert [s.restored for s in run.steps] == [False, False]
    assert run.output == 11  # 0.1.0 restored the stale 1


# --- code edits and appended steps --------------------------------------------------------------


def load_module(tmp_path: Path, name: str, source: str) -> ModuleType:
    """Import `source` as module `name` from a fresh folder (as a new deployment would)."""
    folder = tmp_path / f"code{len(list(tmp_path.glob('code*')))}"
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    sys.modules.pop(name, None)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


PIPELINE = """
from dotflow_providers import Context

def extract():
    return [1, 2, 3]

def transform(previous_context: Context):
    return [x * {factor} for x in previous_context.value]

def load(previous_context: Context):
    return sum(previous_context.value)
"""


def pipeline(module: ModuleType, store: Any) -> Workflow:
    return (
        Workflow("edit", store=store)
        .add(module.extract, name="extract")
        .add(module.transform, name="transform")
        .add(module.load, name="load")
    )


def test_editing_a_step_reruns_it_and_what_depends_on_it(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    v1 = load_module(tmp_path, "edited_pipeline", PIPELINE.format(factor=2))
    assert pipeline(v1, store).start().output == 12
    v2 = load_module(tmp_path, "edited_pipeline", PIPELINE.format(factor=10))
    run = pipeline(v2, store).start()
    assert [s.restored for s in run.steps] == [True, False, False]
    assert run.output == 60  # 0.1.0 restored 12


def test_comments_formatting_and_docstrings_are_not_code_changes(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    v1 = load_module(tmp_path, "cosmetic", PIPELINE.format(factor=2))
    pipeline(v1, store).start()
    cosmetic = PIPELINE.format(factor=2).replace(
        "def load(previous_context: Context):",
        'def load(previous_context: Context):  # sums\n    """Total."""\n',
    )
    v2 = load_module(tmp_path, "cosmetic", cosmetic)
    assert all(s.restored for s in pipeline(v2, store).start().steps)


def test_an_explicit_version_decides_instead_of_the_source() -> None:
    store = MemoryStore()
    calls: list[str] = []

    def build(version: str) -> Workflow:
        @action(version=version)
        def fetch() -> str:
            calls.append(version)
            return version

        return Workflow("ver", store=store).add(fetch, name="fetch")

    build("1").start()
    assert build("1").start().steps[0].restored
    assert build("2").start().output == "2"
    assert calls == ["1", "2"]


def test_appending_steps_restores_the_old_ones_and_runs_the_new(tmp_path: Path) -> None:
    store = FileStore(tmp_path)

    def base() -> Workflow:
        return Workflow("grow", store=store).add(add_one, name="a").add(add_one, name="b")

    assert base().start().output == 2
    run = base().add(add_one, name="c").start()
    assert [s.restored for s in run.steps] == [True, True, False]
    assert run.output == 3


def test_raise_names_the_first_changed_step(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    Workflow("r", store=store).add(add_one, name="a").add(add_one, name="b").start()

    @action(version="2")
    def b2(previous_context: Context) -> int:
        return 0

    with pytest.raises(WorkflowDefinitionChanged, match="'b'"):
        Workflow("r", store=store, on_change="raise").add(add_one, name="a").add(
            b2, name="b"
        ).start()
    with pytest.raises(WorkflowDefinitionChanged, match="'a' was removed"):
        Workflow("r", store=store, on_change="raise").add(add_one, name="b").start()
    # appending is not a change
    run = Workflow("r", store=store, on_change="raise")
    run = run.add(add_one, name="a").add(add_one, name="b").add(add_one, name="c").start()
    assert run.output == 3


def _inputs(store: Any, value: int, policy: Any, calls: list[int]) -> Workflow:
    def first(initial_context: Context) -> int:
        calls.append(initial_context.value)
        return int(initial_context.value)

    return (
        Workflow("inp", store=store, on_change=policy)
        .add(first, name="first", initial_context=value)
        .add(add_one, name="second")
    )


def test_changed_inputs_rerun_by_default() -> None:
    store, calls = MemoryStore(), []  # type: ignore[var-annotated]
    _inputs(store, 1, "rerun", calls).start()
    run = _inputs(store, 2, "rerun", calls).start()
    assert run.output == 3
    assert calls == [1, 2]


def test_changed_inputs_raise_names_the_step() -> None:
    store, calls = MemoryStore(), []  # type: ignore[var-annotated]
    _inputs(store, 1, "rerun", calls).start()
    with pytest.raises(InputChanged, match="initial context of 'first'"):
        _inputs(store, 2, "raise", calls).start()
    assert _inputs(store, 1, "raise", calls).start().output == 2
    assert calls == [1]


def test_reuse_prefers_a_checkpoint_valid_for_the_code_as_it_is() -> None:
    """Group commit keeps older entries: with v1's and v2's outputs stored, v1's code under
    `on_change="reuse"` restores v1's output, not the newer one of other code."""
    store = MemoryStore()

    def build(version: str, on_change: OnChange = "rerun") -> Workflow:
        @action(version=version, name="a")
        def a() -> str:
            return f"computed by v{version}"

        return Workflow("reuse", store=store, commit_every=2, on_change=on_change).add(a)

    build("1").start()
    build("2").start()
    run = build("1", "reuse").start()
    assert run.steps[0].restored
    assert run.output == "computed by v1"


def test_changed_inputs_reuse_keeps_the_checkpoints_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, calls = MemoryStore(), []  # type: ignore[var-annotated]
    _inputs(store, 1, "rerun", calls).start()
    run = _inputs(store, 2, "reuse", calls).start()
    assert run.output == 2
    assert calls == [1]
    assert "reusing the checkpoints of first" in caplog.text


def test_a_bad_on_change_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="on_change"):
        Workflow(on_change="ignore")  # type: ignore[arg-type]


# --- rerun_from ---------------------------------------------------------------------------------


def test_rerun_from_runs_that_step_and_every_step_after_it() -> None:
    store = MemoryStore()
    ran: list[str] = []

    def step(label: str) -> Any:
        def body(previous_context: Context) -> str:
            ran.append(label)
            return (previous_context.value or "") + label

        return body

    def build() -> Workflow:
        wf = Workflow("rr", store=store)
        for label in "abcd":
            wf.add(step(label), name=label)
        return wf

    build().start()
    ran.clear()
    run = build().start(rerun_from="c")
    assert ran == ["c", "d"]
    assert run.output == "abcd"
    with pytest.raises(ConfigurationError, match="names no step"):
        build().start(rerun_from="z")


def test_a_crash_in_the_middle_of_a_rerun_never_restores_superseded_checkpoints() -> None:
    store = MemoryStore()
    ran: list[str] = []
    crash = {"c": False}

    def step(label: str) -> Any:
        def body(previous_context: Context) -> str:
            ran.append(label)
            if crash.get(label):
                raise RuntimeError("runner died")
            return (previous_context.value or "") + label  # the same output every time

        return body

    def build() -> Workflow:
        wf = Workflow("mid", store=store)
        for label in "abcd":
            wf.add(step(label), name=label)
        return wf

    build().start()
    crash["c"] = True
    build().start(rerun_from="b")
    crash["c"] = False
    ran.clear()
    run = build().start()  # no rerun_from this time
    assert ran == ["c", "d"]  # b's new checkpoint kept; c and d's old ones superseded
    assert run.status is Status.COMPLETED


# --- stable step names --------------------------------------------------------------------------


def scale(factor: int, previous_context: Context) -> int:
    return (previous_context.value or 1) * factor


class Multiply:
    def __init__(self, by: int) -> None:
        self.by = by

    def __call__(self, previous_context: Context) -> int:
        return (previous_context.value or 1) * self.by


def test_partials_and_callable_instances_have_names_without_addresses() -> None:
    wf = Workflow().add(functools.partial(scale, 2)).add(Multiply(3))
    assert wf.steps == ["scale", "Multiply"]
    assert not any("0x" in name for name in wf.steps)


def test_partials_and_callable_instances_resume_with_new_objects(tmp_path: Path) -> None:
    store = FileStore(tmp_path)

    def build() -> Workflow:
        return Workflow(store=store).add(functools.partial(scale, 2)).add(Multiply(3))

    assert build().start().output == 6
    run = build().start()  # new objects at new addresses, as in a new process
    assert all(s.restored for s in run.steps)


def test_binding_other_arguments_to_a_partial_reruns_the_step() -> None:
    # a partial's bound arguments are part of what the step does: after `scale, 2` became
    # `scale, 5`, restoring the first result would hand on a stale value
    store = MemoryStore()

    def build(by: int) -> Workflow:
        return Workflow("bound", store=store).add(functools.partial(scale, by), name="scale")

    assert build(2).start().output == 2
    assert build(2).start().steps[0].restored
    run = build(5).start()
    assert (run.output, run.steps[0].restored) == (5, False)


def test_a_bound_argument_changed_in_place_counts_at_the_next_start() -> None:
    # bound arguments are read at every start, like an initial context
    settings = {"by": 2}

    def scaled(options: dict[str, int], previous_context: Context) -> int:
        return options["by"]

    workflow = Workflow("in-place", store=MemoryStore())
    workflow.add(functools.partial(scaled, settings), name="scaled")
    assert workflow.start().output == 2
    assert workflow.start().steps[0].restored
    settings["by"] = 7
    run = workflow.start()
    assert (run.output, run.steps[0].restored) == (7, False)


def test_a_bound_argument_without_a_stable_digest_is_refused_before_any_step() -> None:
    ran: list[object] = []

    def write(client: object) -> None:
        ran.append(client)

    lock = threading.Lock()
    workflow = Workflow("client", store=MemoryStore()).add(functools.partial(write, lock), name="w")
    with pytest.raises(
        CheckpointError,
        match=r"step 'w': its functools.partial binds positional argument 1, .*version=",
    ):
        workflow.start()
    assert ran == []
    pinned = Workflow("client", store=MemoryStore())
    pinned.add(action(functools.partial(write, lock), version="1"), name="w")
    assert pinned.start().status is Status.COMPLETED
    assert ran == [lock]


_BOUND = st.recursive(
    st.none() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.lists(_BOUND, max_size=3),
    st.lists(_BOUND, max_size=3),
    st.dictionaries(st.sampled_from("ab"), _BOUND),
)
def test_a_partials_code_version_changes_exactly_when_its_bound_arguments_do(
    first: list[Any], second: list[Any], keywords: dict[str, Any]
) -> None:
    def version(step: Any) -> str:
        workflow = Workflow("versions").add(step, name="step")
        (identity,) = workflow._identities("sequential", workflow._initial(None))
        return identity.version

    def bound(args: list[Any]) -> str:
        return version(functools.partial(_anything, *args, **keywords))

    assert (bound(first) == bound(second)) is (first == second)
    if not keywords:  # binding nothing is the function itself
        assert bound([]) == version(_anything)


def _anything(*args: Any, **kwargs: Any) -> None:
    return None


def test_two_steps_can_never_share_a_name() -> None:
    with pytest.raises(InvalidStep, match="name="):
        Workflow().add(functools.partial(scale, 2)).add(functools.partial(scale, 3))
    with pytest.raises(InvalidStep, match="name="):
        Workflow().add(lambda: 1).add(lambda: 2)
    with pytest.raises(InvalidStep, match="name="):
        Workflow().add(add_one, name="x").add(add_one, name="x")


# --- namespaces ---------------------------------------------------------------------------------


def test_nested_ids_never_touch_each_other(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for workflow_id in ("sales", "sales/eu", "sales/steps", "sales/lock", "x/manifest.json"):
        Workflow(workflow_id, store=store).add(add_one, name="a").start()
    Workflow("sales", store=store).reset()
    assert inspect_workflow("sales", store)["found"] is False
    for survivor in ("sales/eu", "sales/steps", "sales/lock", "x/manifest.json"):
        run = Workflow(survivor, store=store).add(add_one, name="a").start()
        assert run.steps[0].restored, survivor
    # `x/manifest.json` is a folder where format 1 kept `x`'s manifest: `x` still runs
    assert Workflow("x", store=store).add(add_one, name="a").start().status is Status.COMPLETED
    Workflow("x", store=store).add(add_one, name="a").compensate()
    Workflow("x", store=store).reset()
    assert Workflow("x/manifest.json", store=store).add(add_one, name="a").start().steps[0].restored


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../escape",
        "a//b",
        "/abs",
        "a/./b",
        "x" * 401,
        "a\nb",
        "a\n",
        "a/b\n",
        "x/.dotflow",
        "a/.b",
    ],
)
def test_unusable_ids_are_refused_by_every_entry_point(bad: str) -> None:
    store = MemoryStore()
    for call in (
        lambda: Workflow(bad),
        lambda: cancel(bad, store),
        lambda: inspect_workflow(bad, store),
        lambda: dump_stages(bad, store),
        lambda: Layout(bad),
    ):
        with pytest.raises(InvalidWorkflowId):
            call()


_ID_CHARS = frozenset(string.ascii_letters + string.digits + "._:+@=,~-")
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._-")
_ALPHABET = st.sampled_from([*"aZ09._:+@=,~-/", "\n", "\r", " ", "\\", "é", "\x00", "~"])


def _usable_id(workflow_id: str) -> bool:
    """The documented rule, written out without a regular expression."""
    parts = workflow_id.split("/")
    return (
        0 < len(workflow_id) <= 400
        and all(part and set(part) <= _ID_CHARS for part in parts)
        and parts[0][0].isascii()
        and parts[0][0].isalnum()
        and not any(part.startswith(".") for part in parts[1:])
    )


_GOOD_PART = st.text(st.sampled_from("aZ09._:+@=,~-"), min_size=1, max_size=5)


@st.composite
def _ids(draw: st.DrawFn) -> str:
    """Ids near the rule's edges: a well-formed one with a character put somewhere (or none)."""
    workflow_id = "/".join(draw(st.lists(_GOOD_PART, min_size=1, max_size=3)))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(workflow_id)))
        workflow_id = workflow_id[:at] + draw(_ALPHABET) + workflow_id[at:]
    return workflow_id


@example("a\n")
@given(st.one_of(_ids(), st.text(_ALPHABET, max_size=12)))
def test_an_id_is_usable_exactly_when_the_documented_rule_says_so(workflow_id: str) -> None:
    # (a regular expression's `$` also matches before a final newline: "a\n" was taken)
    if _usable_id(workflow_id):
        assert Layout(workflow_id).workflow_id == workflow_id
    else:
        with pytest.raises(InvalidWorkflowId):
            Layout(workflow_id)


_SIMPLE_TEXT = st.text(st.sampled_from("aZ09._-"), min_size=1, max_size=12)


@st.composite
def _step_names(draw: st.DrawFn) -> list[str]:
    """Names mostly simple (a run's usual names, which keys take a faster way), one of them
    perhaps edited into a name that is not: too long, or given any character (a newline too)."""
    names = draw(st.lists(_SIMPLE_TEXT, min_size=1, max_size=8))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(names) - 1))
        name = names[at]
        if draw(st.booleans()):
            name = name * 8  # past 80 characters, or not
        else:
            cut = draw(st.integers(0, len(name)))
            # a newline above all: joined, "a\nb" reads as two simple names
            name = name[:cut] + draw(st.one_of(st.just("\n"), _ALPHABET)) + name[cut:]
        names[at] = name
    return list(dict.fromkeys(names))


@example(["a", "b\nc"])  # joined, they read as three simple names
@example(["a\n", "b"])
@given(
    st.one_of(
        st.lists(st.text(_ALPHABET, min_size=1, max_size=12), unique=True, max_size=8),
        _step_names(),
    )
)
def test_step_keys_are_the_simple_name_itself_or_a_hashed_form_never_shared(
    names: list[str],
) -> None:
    layout = Layout("keys")
    keys = layout.steps_of(names)
    assert keys == [layout.step(name) for name in names]
    assert len(set(keys)) == len(names)  # two steps never share a checkpoint
    for name, key in zip(names, keys, strict=True):
        simple = len(name) <= 80 and set(name) <= _NAME_CHARS and name[0] not in ".-"
        assert (
            key == f"keys/.dotflow/steps/{name}.json"
            if simple
            else key.startswith("keys/.dotflow/steps/~")
        )
        assert set(key) <= _ID_CHARS | {"/"}  # what every store takes in a key


# --- cancel belongs to a run --------------------------------------------------------------------


def test_cancelling_an_id_that_no_runner_holds_is_an_error() -> None:
    store = MemoryStore()
    with pytest.raises(NotRunning, match="block"):
        cancel("nobody", store)
    assert Workflow("nobody", store=store).add(add_one, name="a").start().output == 1


def test_a_cancel_for_a_run_that_already_ended_does_not_cancel_the_next_one() -> None:
    from dotflow_providers._journal import request_cancel

    store = MemoryStore()
    Workflow("done", store=store).add(add_one, name="a").start()
    request_cancel(store, Layout("done"), "the-owner-of-a-finished-run")  # arrived too late
    run = Workflow("done", store=store).add(add_one, name="a").add(add_one, name="b").start()
    assert run.status is Status.COMPLETED
    assert store.get(Layout("done").cancel) is None  # cleared, not left for later


def test_block_refuses_future_starts_until_the_workflow_is_reset() -> None:
    store = MemoryStore()
    cancel("later", store, block=True)
    wf = Workflow("later", store=store).add(add_one, name="a")
    with pytest.raises(WorkflowCancelled, match="dotflow-providers reset later"):
        wf.start()
    wf.reset()
    assert wf.start().status is Status.COMPLETED


def test_an_in_process_cancel_leaves_the_same_state_as_a_cross_process_one() -> None:
    import threading

    store = MemoryStore()
    entered, release = threading.Event(), threading.Event()

    def wait() -> int:
        entered.set()
        release.wait(30)
        return 1

    def build() -> Workflow:
        return Workflow("self", store=store).add(wait, name="wait").add(add_one, name="b")

    run = build().start(mode="background")
    assert entered.wait(30)
    run.cancel()
    release.set()
    assert run.wait(30).status is Status.CANCELLED
    assert store.get(Layout("self").cancel) is None
    assert store.get(Layout("self").step("wait")) is None  # returned after the cancel: not kept
    again = build().start()
    assert again.status is Status.COMPLETED
    assert [s.restored for s in again.steps] == [False, False]


def test_a_missing_manifest_is_never_a_silent_rerun() -> None:
    store = MemoryStore()
    Workflow("m", store=store).add(add_one, name="a").start()
    store.delete(Layout("m").manifest)
    with pytest.raises(CorruptCheckpoint):
        Workflow("m", store=store).add(add_one, name="a").start()


_SCRIPT = """
import sys
from dotflow_providers import FileStore, Workflow

def rows():
    return ROWS

def extract():
    return rows()

def load(previous_context):
    return sum(previous_context.value)

run = Workflow(store=FileStore(sys.argv[1])).add(extract).add(load).start()
print(run.workflow_id, run.output, [step.restored for step in run.steps])
"""


def run_script(*command: str, cwd: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "providers")}
    done = subprocess.run(
        [sys.executable, *command], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().split(maxsplit=1)


def test_two_scripts_with_the_same_steps_do_not_share_a_derived_id(tmp_path: Path) -> None:
    """Every script runs as `__main__`: a derived id takes the script's path (or its module
    name under `python -m`), so another script's checkpoints are never restored."""
    store = tmp_path / "store"
    (tmp_path / "jobs").mkdir()
    for name, rows in (("sales_eu.py", [1, 2, 3]), ("sales_us.py", [100, 200])):
        (tmp_path / name).write_text(_SCRIPT.replace("ROWS", repr(rows)))
        (tmp_path / "jobs" / name).write_text(_SCRIPT.replace("ROWS", repr(rows)))
    eu_id, eu = run_script("sales_eu.py", str(store), cwd=tmp_path)
    us_id, us = run_script("sales_us.py", str(store), cwd=tmp_path)
    assert eu == "6 [False, False]"
    assert us == "300 [False, False]"  # not the EU output, restored
    assert eu_id != us_id
    # the same script again resumes, through a symlinked folder too; as a module
    # (`python -m jobs.sales_eu`) it is the module
    assert run_script("sales_eu.py", str(store), cwd=tmp_path) == [eu_id, "6 [True, True]"]
    (tmp_path / "link").symlink_to(tmp_path)
    assert run_script("link/sales_eu.py", str(store), cwd=tmp_path) == [eu_id, "6 [True, True]"]
    module_id, module = run_script("-m", "jobs.sales_eu", str(store), cwd=tmp_path)
    assert module == "6 [False, False]"
    assert run_script("-m", "jobs.sales_eu", str(store), cwd=tmp_path) == [
        module_id,
        "6 [True, True]",
    ]
