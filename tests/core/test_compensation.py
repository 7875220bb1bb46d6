"""`Workflow.compensate`: a finished run's completed stages are undone newest first, from their
committed outputs, in any process, once, under the workflow's lease; then they run again."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dotflow_providers import (
    CompensationFailed,
    FileStore,
    LeaseConfig,
    LockHeld,
    MemoryStore,
    RolledBack,
    Stage,
    Status,
    Workflow,
)
from dotflow_providers._format import Layout, v1_fingerprint
from dotflow_providers._lease import Lease, read_lease

from .procs import ROOT
from .stage_target import JobState, Recording, command


def rollbacks(folder: Path) -> list[str]:
    lines = (folder / "events.log").read_text().splitlines()
    return [
        line.split(" written")[0].removeprefix("rollback ") for line in lines if "rollback" in line
    ]


def executed(folder: Path) -> list[str]:
    lines = (folder / "events.log").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("execute")]


def three(folder: Path, store: Any, workflow_id: str = "job", **options: Any) -> Workflow:
    wf = Workflow(workflow_id, store=store, **options)
    for name in ("download", "transform", "publish"):
        wf.add(Recording(name=name, folder=str(folder), fail_rollback=name in options_of(folder)))
    return wf


def options_of(folder: Path) -> set[str]:
    """Stages whose rollback fails: named in <folder>/broken-rollbacks."""
    marker = folder / "broken-rollbacks"
    return set(marker.read_text().split()) if marker.exists() else set()


def test_a_finished_runs_stages_are_undone_newest_first_and_run_again(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    assert three(tmp_path, store).start(initial_context=JobState()).status is Status.COMPLETED
    done = three(tmp_path, store).compensate(initial_context=JobState())
    assert done.compensated == ["publish", "transform", "download"]
    assert rollbacks(tmp_path) == ["publish", "transform", "download"]
    # each compensation got its stage's committed state, and the reason it is undone
    line = (tmp_path / "events.log").read_text().splitlines()[-1]
    assert line == (
        "rollback download written=['download'] error=workflow 'job' is compensated on request"
    )
    assert list(store.list(Layout("job").steps)) == []
    run = three(tmp_path, store).start(initial_context=JobState())
    assert [s.restored for s in run.steps] == [False, False, False]
    assert executed(tmp_path) == ["download", "transform", "publish"] * 2


def test_a_second_compensation_undoes_nothing_twice(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    three(tmp_path, store).start(initial_context=JobState())
    three(tmp_path, store).compensate(initial_context=JobState())
    again = three(tmp_path, store).compensate(initial_context=JobState())
    assert again.compensated == []
    assert [s.status for s in again.steps] == [Status.NOT_STARTED] * 3
    assert rollbacks(tmp_path) == ["publish", "transform", "download"]


def test_the_compensations_receive_the_error_they_are_for(tmp_path: Path) -> None:
    store = MemoryStore()
    three(tmp_path, store).start(initial_context=JobState())
    three(tmp_path, store).compensate(JobState(), error=ValueError("the order was cancelled"))
    assert (
        (tmp_path / "events.log")
        .read_text()
        .splitlines()[-1]
        .endswith("error=the order was cancelled")
    )


def stage_process(tmp_path: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        command(tmp_path, *extra),
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_run_committed_in_one_process_is_compensated_in_another(tmp_path: Path) -> None:
    assert stage_process(tmp_path)["status"] == "COMPLETED"
    done = stage_process(tmp_path, "--compensate")
    assert done["compensated"] == ["publish", "transform", "download"]
    # the states came from the store: each stage's own committed copy
    lines = [
        line for line in (tmp_path / "events.log").read_text().splitlines() if "rollback" in line
    ]
    assert [line.split(" error=")[0] for line in lines] == [
        "rollback publish written=['download', 'transform', 'publish']",
        "rollback transform written=['download', 'transform']",
        "rollback download written=['download']",
    ]
    assert stage_process(tmp_path, "--compensate")["compensated"] == []
    rerun = stage_process(tmp_path)
    assert [s["restored"] for s in rerun["steps"]] == [False, False, False]


def test_a_failing_compensation_stops_there_and_a_second_call_resumes_at_it(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path / "store")
    three(tmp_path, store).start(initial_context=JobState())
    (tmp_path / "broken-rollbacks").write_text("transform")
    with pytest.raises(CompensationFailed, match=r"'transform'.*could not undo transform") as info:
        three(tmp_path, store).compensate(initial_context=JobState())
    failed = info.value
    assert failed.step == "transform"
    assert isinstance(failed.__cause__, OSError)
    assert isinstance(failed.original, RolledBack)  # the reason is kept beside the failure
    assert failed.compensation.compensated == ["publish"]
    assert failed.compensation.steps[1].rollback_error == "OSError: could not undo transform"
    kept = sorted(Path(k).stem for k in store.list(Layout("job").steps))
    assert kept == ["download", "transform"]
    (tmp_path / "broken-rollbacks").unlink()
    done = three(tmp_path, store).compensate(initial_context=JobState())
    assert done.compensated == ["transform", "download"]
    assert rollbacks(tmp_path) == ["publish", "transform", "transform", "download"]


def test_start_compensate_shares_the_algorithm_and_stops_at_a_failing_compensation(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path / "store")
    (tmp_path / "broken-rollbacks").write_text("transform")
    wf = Workflow("saga", store=store)
    wf.add(Recording(name="download", folder=str(tmp_path)))
    wf.add(Recording(name="transform", folder=str(tmp_path), fail_rollback=True))
    wf.add(Recording(name="publish", folder=str(tmp_path), fail=True))
    run = wf.start(initial_context=JobState(), compensate=True)
    assert run.steps[2].error == "RuntimeError: publish broke after partial work"
    assert run.steps[1].rollback_error == "OSError: could not undo transform"
    assert [s.compensated for s in run.steps] == [False, False, False]
    assert rollbacks(tmp_path) == ["publish", "transform"]  # download was not undone
    kept = sorted(Path(k).stem for k in store.list(Layout("saga").steps))
    assert kept == ["download", "transform"]


def test_the_lease_is_held_while_compensating_and_a_held_lease_refuses(tmp_path: Path) -> None:
    store = MemoryStore()
    seen: list[bool] = []

    class Checked(Stage[JobState]):
        def execute(self, state: JobState) -> None:
            state.rows.append(1)

        def rollback(self, state: JobState, error: BaseException) -> None:
            seen.append(read_lease(store, Layout("leased").lock) is not None)

    wf = Workflow("leased", store=store).add(Checked(name="one")).add(Checked(name="two"))
    wf.start(initial_context=JobState())
    holder = Lease(store, Layout("leased").lock, LeaseConfig())
    holder.acquire()
    try:
        with pytest.raises(LockHeld):
            wf.compensate(initial_context=JobState())
    finally:
        holder.release()
    assert seen == []
    assert wf.compensate(initial_context=JobState()).compensated == ["two", "one"]
    assert seen == [True, True]
    assert read_lease(store, Layout("leased").lock) is None  # released


def test_checkpoints_committed_in_batches_are_forgotten_too(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    wf = three(tmp_path, store, commit_every=3)
    wf.start(initial_context=JobState())
    assert [k for k in store.list(Layout("job").steps) if "/.batch/" not in k] == []
    # compensated by a workflow that commits one by one: the batch's entries are still forgotten
    assert three(tmp_path, store).compensate(JobState()).compensated == [
        "publish",
        "transform",
        "download",
    ]
    run = three(tmp_path, store).start(initial_context=JobState())
    assert [s.restored for s in run.steps] == [False, False, False]


def test_a_workflow_never_started_has_nothing_to_compensate(tmp_path: Path) -> None:
    store = MemoryStore()
    done = three(tmp_path, store).compensate(initial_context=JobState())
    assert done.compensated == []
    assert list(store.list("")) == []  # no manifest written, the lease released


def test_steps_without_a_compensation_keep_their_checkpoints(tmp_path: Path) -> None:
    store = MemoryStore()
    wf = Workflow("mixed", store=store)
    wf.add(Recording(name="stage", folder=str(tmp_path)))
    wf.add(lambda previous_context: "plain", name="plain")
    wf.start(initial_context=JobState())
    assert wf.compensate(initial_context=JobState()).compensated == ["stage"]
    assert [Path(k).stem for k in store.list(Layout("mixed").steps)] == ["plain"]


# --- the decision, for any run: what completed is undone, newest first, exactly once ----------


class Trail(pydantic.BaseModel):
    done: list[str] = []


undone: list[str] = []


class Step(Stage[Trail]):
    fail: bool = False
    fail_rollback: bool = False

    def execute(self, state: Trail) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} failed")
        state.done.append(self.name)

    def rollback(self, state: Trail, error: BaseException) -> None:
        if isinstance(error, RuntimeError):
            return  # the failing stage's own rollback, not a compensation
        if self.fail_rollback:
            raise OSError(f"cannot undo {self.name}")
        assert state.done[-1] == self.name  # its own committed state
        undone.append(self.name)


def stages(store: MemoryStore, count: int, fail_at: int | None, broken: int | None) -> Workflow:
    wf = Workflow("prop", store=store)
    for i in range(count):
        wf.add(Step(name=f"s{i}", fail=i == fail_at, fail_rollback=i == broken))
    return wf


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 6),
    fail_at=st.none() | st.integers(0, 5),
    broken=st.none() | st.integers(0, 5),
)
def test_compensated_is_the_completed_set_in_reverse_order_and_never_twice(
    count: int, fail_at: int | None, broken: int | None
) -> None:
    store = MemoryStore()
    undone.clear()
    run = stages(store, count, fail_at, None).start(initial_context=Trail())
    completed = [s.name for s in run.steps if s.status is Status.COMPLETED]
    expected = list(reversed(completed))
    if broken is not None and f"s{broken}" in completed:
        with pytest.raises(CompensationFailed) as info:
            stages(store, count, fail_at, broken).compensate(Trail())
        assert info.value.step == f"s{broken}"
        first = info.value.compensation.compensated
        assert first == expected[: expected.index(f"s{broken}")]
    else:
        first = stages(store, count, fail_at, broken).compensate(Trail()).compensated
    assert undone == first
    # a second rollback (the compensation fixed) resumes where the first stopped
    rest = stages(store, count, fail_at, None).compensate(Trail()).compensated
    assert undone == first + rest == expected
    assert stages(store, count, fail_at, None).compensate(Trail()).compensated == []
    assert undone == expected
    rerun = stages(store, count, None, None).start(initial_context=Trail())
    assert not any(s.restored for s in rerun.steps)


class Rescaled(Recording):
    """`Recording` with another `execute`: the stage's code changed since its run."""

    def execute(self, state: JobState) -> None:
        super().execute(state)
        state.rows.append(1)


def test_what_was_committed_is_undone_whatever_changed_in_the_definition_since(
    tmp_path: Path,
) -> None:
    # its work was done: a stage whose code or fields changed after the run (or whose rollback
    # was fixed) is still undone, by its rollback as it is now, with its committed state
    store = FileStore(tmp_path / "store")
    three(tmp_path, store).start(initial_context=JobState())
    changed = Workflow("job", store=store)
    changed.add(Recording(name="download", folder=str(tmp_path), fail_rollback=False))
    changed.add(Rescaled(name="transform", folder=str(tmp_path)))  # code changed
    changed.add(Recording(name="publish", folder=str(tmp_path), hang=True))  # a field changed
    done = changed.compensate(initial_context=JobState(), mode="parallel")
    assert done.compensated == ["publish", "transform", "download"]
    assert [line.split(" error=")[0] for line in rollback_lines(tmp_path)] == [
        "rollback publish written=['download', 'transform', 'publish']",
        "rollback transform written=['download', 'transform']",
        "rollback download written=['download']",
    ]
    assert list(store.list(Layout("job").steps)) == []


def rollback_lines(folder: Path) -> list[str]:
    return [line for line in (folder / "events.log").read_text().splitlines() if "rollback" in line]


class Holding(Recording):
    """Holds a client in a counted field: a start refuses it, a compensation does without."""

    client: Any = None


def test_a_stage_holding_a_client_is_still_undone_and_removed_steps_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(tmp_path / "store")
    three(tmp_path, store).start(initial_context=JobState())
    later = Workflow("job", store=store)  # "publish" is no longer defined
    later.add(Recording(name="download", folder=str(tmp_path)))
    later.add(Holding(name="transform", folder=str(tmp_path), client=threading.Lock()))
    with caplog.at_level("WARNING", logger="dotflow_providers"):
        done = later.compensate(initial_context=JobState())
    assert done.compensated == ["transform", "download"]
    assert "steps publish have checkpoints but are no longer defined" in caplog.text
    assert sorted(Path(k).stem for k in store.list(Layout("job").steps)) == ["publish"]


class V1Numbers(pydantic.BaseModel):
    n: int = 0


class V1Mul(Stage[V1Numbers]):
    factor: int = 2

    def execute(self, state: V1Numbers) -> None:
        state.n = 7 * self.factor


def v1_scale(k: int) -> int:
    return 10 * k


def test_format_1_checkpoints_are_migrated_by_a_compensation_as_a_start_migrates_them() -> None:
    # the migrated documents record what they are valid for: a compensation must write the
    # versions a start computes (bound arguments and stage fields in), or the next start would
    # run again a step no compensation undid (and, with on_change="raise", refuse to start)
    store = MemoryStore()

    def build() -> Workflow:
        workflow = Workflow("legacy", store=store, on_change="raise")
        workflow.add(V1Mul(name="mul", state=V1Numbers()))
        return workflow.add(functools.partial(v1_scale, k=3), name="scale")

    layout = Layout("legacy")
    fingerprint = v1_fingerprint(build()._initial(None))
    v1 = {"format": 1, "workflow_id": "legacy", "status": "COMPLETED", "attempts": 1}
    store.put(
        layout.v1_manifest,
        json.dumps({**v1, "steps": ["mul", "scale"], "fingerprint": fingerprint}).encode(),
    )
    mul = {"index": 0, "name": "mul", "started_at": 2.0, "finished_at": 3.0, "output": {"n": 14}}
    mul["output_type"] = {"type": f"{__name__}:V1Numbers"}
    scale = {"index": 1, "name": "scale", "started_at": 1.0, "finished_at": 2.0, "output": 30}
    store.put(f"{layout.v1_steps}00000-mul.json", json.dumps({**v1, **mul}).encode())
    store.put(f"{layout.v1_steps}00001-scale.json", json.dumps({**v1, **scale}).encode())
    assert build().compensate().compensated == ["mul"]
    run = build().start()
    assert [s.restored for s in run.steps] == [False, True]  # only what was undone runs again
    assert run.output == 30
