"""The resume promise, over generated workflows and edits (model-based, with hypothesis).

Generate a workflow (3-12 steps, some grouped, some failing, some with `keep_going`), run it
until it finishes or "crashes", apply one random edit (append, remove, reorder, a new version,
a new initial context, `rerun_from`) and start again. Then:
- the outputs equal those of a fresh, uninterrupted run of the edited workflow in a new store;
- the steps executed on the second start are exactly those a simple data-flow model says must
  run: a step is restored only if it completed before with the same name, version and input,
  before any `rerun_from`, and received the same upstream output as its upstream restores now.
The model is written here from those rules, not from the engine's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dotflow_providers import Context, MemoryStore, Status, Workflow, action

MODES = ["sequential", "sequential_group", "async_sequential", "async_parallel"]
FAILED = object()  # the upstream of a step that ran after its upstream failed


class Crash(BaseException):
    """The runner dies inside a step: nothing after it is committed by this runner."""


@dataclasses.dataclass(frozen=True)
class StepDef:
    name: str
    version: int
    context: int
    group: str | None


@dataclasses.dataclass
class Log:
    """What the steps observed: every completed execution, by name."""

    executed: list[str] = dataclasses.field(default_factory=list)
    completed: dict[str, tuple[StepDef, Any, str]] = dataclasses.field(default_factory=dict)


def make_step(definition: StepDef, log: Log, fail: bool = False, crash: bool = False) -> Any:
    @action(version=str(definition.version))
    def body(previous_context: Context, initial_context: Context) -> str:
        previous = previous_context.value
        if fail:
            raise RuntimeError(f"{definition.name} fails")
        if crash:
            raise Crash
        output = f"{definition.name}.v{definition.version}.c{initial_context.value}({previous})"
        log.executed.append(definition.name)
        log.completed[definition.name] = (definition, previous, output)
        return output

    return body


def build(
    steps: list[StepDef],
    store: Any,
    log: Log,
    failing: frozenset[str] = frozenset(),
    crash: str | None = None,
) -> Workflow:
    wf = Workflow("model", store=store)
    for definition in steps:
        step = make_step(definition, log, definition.name in failing, definition.name == crash)
        wf.add(
            step, name=definition.name, initial_context=definition.context, group=definition.group
        )
    return wf


def start(wf: Workflow, mode: str, **options: Any) -> Any:
    if mode.startswith("async"):
        return asyncio.run(wf.start_async(mode, **options))
    return wf.start(mode, **options)


def chains(steps: list[StepDef], mode: str) -> list[list[int]]:
    """How each mode hands outputs on (the documented chain layouts)."""
    if mode in ("sequential", "async_sequential"):
        return [list(range(len(steps)))]
    found: dict[Any, list[int]] = {}
    for index, step in enumerate(steps):
        key = (None, index) if mode == "async_parallel" and step.group is None else step.group
        found.setdefault(key, []).append(index)
    return list(found.values())


def upstreams(steps: list[StepDef], mode: str) -> dict[int, int | None]:
    found: dict[int, int | None] = dict.fromkeys(range(len(steps)))
    for chain in chains(steps, mode):
        for before, index in itertools.pairwise(chain):
            found[index] = before
    return found


def must_run(
    before: list[StepDef], steps: list[StepDef], mode: str, first: Log, rerun_from: int | None
) -> set[str]:
    """The data-flow model of what a second start runs."""
    had_upstream = {before[i].name: up is not None for i, up in upstreams(before, mode).items()}
    upstream = upstreams(steps, mode)
    restored: dict[int, str] = {}  # index -> the output it hands on
    for index, step in enumerate(steps):
        done = first.completed.get(step.name)
        if done is None or (rerun_from is not None and index >= rerun_from):
            continue
        definition, received, output = done
        if received is None and had_upstream[step.name]:
            received = FAILED  # it ran after its upstream failed (keep_going)
        if (definition.version, definition.context) != (step.version, step.context):
            continue
        up = upstream[index]
        if up is None:
            if received is not None:  # it received an output (or a failure) before
                continue
        elif up not in restored or received != restored[up]:
            continue
        restored[index] = output
    return {step.name for index, step in enumerate(steps) if index not in restored}


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(3, 12))
    steps = [
        StepDef(
            name=f"s{i}",
            version=draw(st.integers(0, 1)),
            context=draw(st.integers(0, 2)),
            group=draw(st.sampled_from([None, None, "g1", "g2"])),
        )
        for i in range(count)
    ]
    names = [s.name for s in steps]
    failing = frozenset(draw(st.lists(st.sampled_from(names), max_size=2)))
    crash = draw(st.one_of(st.none(), st.sampled_from(names)))
    edit = draw(
        st.sampled_from(["none", "append", "remove", "swap", "version", "context", "rerun"])
    )
    at = draw(st.integers(0, count - 1))
    return {
        "steps": steps,
        "mode": draw(st.sampled_from(MODES)),
        "keep_going": draw(st.booleans()),
        "failing": failing,
        "crash": crash,
        "edit": edit,
        "at": at,
    }


def edited(steps: list[StepDef], edit: str, at: int) -> list[StepDef]:
    steps = list(steps)
    if edit == "append":
        steps.append(StepDef(f"s{len(steps) + 100}", 0, 0, steps[at].group))
    elif edit == "remove" and len(steps) > 1:
        del steps[at]
    elif edit == "swap" and at + 1 < len(steps):
        steps[at], steps[at + 1] = steps[at + 1], steps[at]
    elif edit == "version":
        steps[at] = dataclasses.replace(steps[at], version=steps[at].version + 1)
    elif edit == "context":
        steps[at] = dataclasses.replace(steps[at], context=steps[at].context + 10)
    return steps


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_a_resumed_run_equals_a_fresh_run_and_reruns_exactly_the_changed_suffix(
    scenario: dict[str, Any],
) -> None:
    steps, mode = scenario["steps"], scenario["mode"]
    store = MemoryStore()
    first = Log()
    with contextlib.suppress(Crash):
        start(
            build(steps, store, first, scenario["failing"], scenario["crash"]),
            mode,
            keep_going=scenario["keep_going"],
        )

    now = edited(steps, scenario["edit"], scenario["at"])
    rerun_from = None
    if scenario["edit"] == "rerun":
        rerun_from = scenario["at"]
    second = Log()
    options: dict[str, Any] = {}
    if rerun_from is not None:
        options["rerun_from"] = now[rerun_from].name
    run = start(build(now, store, second), mode, **options)
    assert run.status is Status.COMPLETED

    fresh = start(build(now, MemoryStore(), Log()), mode)
    assert {s.name: s.output for s in run.steps} == {s.name: s.output for s in fresh.steps}
    assert set(second.executed) == must_run(steps, now, mode, first, rerun_from)
    assert len(second.executed) == len(set(second.executed))  # nothing ran twice
    assert {s.name for s in run.steps if s.restored} == {
        s.name for s in now if s.name not in second.executed
    }
