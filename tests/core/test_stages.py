"""Staged tasks: typed shared state, rollback, compensation, cancel, recovery and progress."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotflow_providers import (
    CheckpointError,
    ConfigurationError,
    Context,
    FileStore,
    FixedRetry,
    MemoryStore,
    Progress,
    Stage,
    StagedTask,
    Status,
    Workflow,
    action,
    cancel,
    dump_stages,
)
from dotflow_providers._format import Layout, load_step

from .procs import ROOT, wait_for
from .stage_target import JobState, Recording, command


def events(folder: Path) -> list[str]:
    return (folder / "events.log").read_text().splitlines()


def three_stages(folder: Path, store: Any, **second: Any) -> Workflow:
    wf = Workflow("job", store=store)
    wf.add(Recording(name="download", folder=str(folder)))
    wf.add(Recording(name="transform", folder=str(folder), **second))
    wf.add(Recording(name="publish", folder=str(folder)))
    return wf


def test_stages_share_typed_state_and_each_gets_its_own_copy(tmp_path: Path) -> None:
    run = three_stages(tmp_path, MemoryStore()).start(initial_context=JobState())
    assert run.status is Status.COMPLETED
    assert [s.output.rows for s in run.steps] == [[1], [1, 2], [1, 2, 3]]
    assert run.output == JobState(rows=[1, 2, 3], written=["download", "transform", "publish"])
    assert run.steps[0].output.written == ["download"]  # later stages changed copies only


def test_a_failed_stage_rolls_back_and_earlier_state_stays_intact(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    run = three_stages(tmp_path, store, fail=True).start(initial_context=JobState())
    assert run.status is Status.FAILED
    assert [s.status for s in run.steps] == [Status.COMPLETED, Status.FAILED, Status.NOT_STARTED]
    assert events(tmp_path) == [
        "execute download pid=" + events(tmp_path)[0].split("pid=")[1],
        events(tmp_path)[1],
        "rollback transform written=['download', 'transform'] "
        "error=transform broke after partial work",
    ]
    # the first stage's committed state is untouched by the second stage's partial work
    assert run.steps[0].output == JobState(rows=[1], written=["download"])
    stored = load_step("k", (tmp_path / "store" / Layout("job").step("download")).read_bytes())
    assert stored.output() == JobState(rows=[1], written=["download"], published=False)
    failure = json.loads((tmp_path / "store" / Layout("job").failure("transform")).read_text())
    assert failure["error"] == "RuntimeError: transform broke after partial work"
    assert failure["rollback_error"] is None


def test_compensate_rolls_back_completed_stages_in_reverse_order(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    wf = Workflow("saga", store=store)
    for name in ("download", "transform"):
        wf.add(Recording(name=name, folder=str(tmp_path)))
    wf.add(Recording(name="publish", folder=str(tmp_path), fail=True))
    run = wf.start(initial_context=JobState(), compensate=True)
    rollbacks = [line.split(" written")[0] for line in events(tmp_path) if "rollback" in line]
    assert rollbacks == ["rollback publish", "rollback transform", "rollback download"]
    assert [s.compensated for s in run.steps] == [True, True, False]
    # compensated stages were undone: their checkpoints are gone, so they run again next time
    assert list(store.list(Layout("saga").steps)) == []


def test_a_failing_rollback_is_reported_beside_the_original_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    wf = three_stages(tmp_path, store, fail=True, fail_rollback=True)
    run = wf.start(initial_context=JobState())
    failed = run.steps[1]
    assert failed.error == "RuntimeError: transform broke after partial work"
    assert failed.rollback_error == "OSError: could not undo transform"
    assert isinstance(failed.exception, RuntimeError)  # the original error is never hidden
    failure = json.loads((tmp_path / "store" / Layout("job").failure("transform")).read_text())
    assert failure["error"] == "RuntimeError: transform broke after partial work"
    assert failure["rollback_error"] == "OSError: could not undo transform"
    table = dump_stages("job", store)
    assert "| transform | FAILED | 1 |" in table
    assert "could not undo transform" in table


def test_dump_stages_from_the_store_and_from_a_live_run(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    run = three_stages(tmp_path, store).start(initial_context=JobState())
    stored = dump_stages("job", store).splitlines()
    live = dump_stages(run).splitlines()
    assert stored[0] == "| stage | status | attempts | duration (s) | last error |"
    assert [line.split("|")[1:4] for line in stored[2:]] == [
        [" download ", " COMPLETED ", " 1 "],
        [" transform ", " COMPLETED ", " 1 "],
        [" publish ", " COMPLETED ", " 1 "],
    ]
    assert [line.split("|")[1:4] for line in live[2:]] == [
        line.split("|")[1:4] for line in stored[2:]
    ]


def test_stage_names_are_checked() -> None:
    with pytest.raises(pydantic.ValidationError):
        Recording(name="", folder="/tmp")
    with pytest.raises(pydantic.ValidationError):
        Recording(name="x" * 151, folder="/tmp")
    wf = Workflow().add(Recording(name="same", folder="/tmp"))
    with pytest.raises(ValueError, match="two steps are named 'same'"):
        wf.add(Recording(name="same", folder="/tmp"))


def test_a_stage_whose_predecessor_lost_its_checkpoint_runs_again(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    three_stages(tmp_path, store).start(initial_context=JobState())
    store.delete(Layout("job").step("transform"))  # publish's input is gone: publish is stale
    run = three_stages(tmp_path, store).start(initial_context=JobState())
    assert [s.restored for s in run.steps] == [True, False, False]
    assert run.output == JobState(rows=[1, 2, 3], written=["download", "transform", "publish"])


def test_staged_task_is_a_thin_workflow(tmp_path: Path) -> None:
    task = StagedTask(
        [Recording(name="a", folder=str(tmp_path)), Recording(name="b", folder=str(tmp_path))],
        store=MemoryStore(),
        task_id="thin",
        retry=FixedRetry(max_attempts=2, delay=0),
    )
    run = task.start(initial_context=JobState())
    assert run.workflow_id == "thin"
    assert run.output.rows == [1, 2]


class Pages(pydantic.BaseModel):
    done: list[int] = []


def test_progress_survives_a_failed_attempt_and_is_cleared_on_completion() -> None:
    store = MemoryStore()
    seen: list[int] = []

    @action(retry=FixedRetry(max_attempts=3, delay=0))
    def crawl(checkpoint: Progress) -> list[int]:
        page = checkpoint.load(default=0)
        while page < 10:
            seen.append(page)
            page += 1
            if page % 3 == 0:
                checkpoint.save(page)
            if page == 5 and len(seen) == 5:
                raise ConnectionError("dropped at page 5")
        return seen

    run = Workflow("crawl", store=store).add(crawl).start()
    assert run.status is Status.COMPLETED
    assert run.steps[0].attempts == 2
    # attempt 2 continued from the last saved page (3), not from the start
    assert seen == [0, 1, 2, 3, 4, 3, 4, 5, 6, 7, 8, 9]
    assert list(store.list("crawl/progress/")) == []


def progress_runs(
    workflow_id: str,
    store: MemoryStore,
    contexts: tuple[Any, Any],
    versions: tuple[str, str],
    rerun_from: str | None,
    first_run: Callable[[Progress], Any],
) -> tuple[Any, bool]:
    """Two starts of up -> step, `step` run first by `first_run`, then by a step that returns
    what `checkpoint.load("default")` gives; what that gave and whether `step` was restored."""

    def up(initial_context: Context) -> Any:
        return initial_context.value

    def step_one(previous_context: Context, checkpoint: Progress) -> Any:
        return first_run(checkpoint)

    def step_two(previous_context: Context, checkpoint: Progress) -> Any:
        return checkpoint.load("default")

    for context, version, body, options in (
        (contexts[0], versions[0], step_one, {}),
        (contexts[1], versions[1], step_two, {"rerun_from": rerun_from}),
    ):
        workflow = Workflow(workflow_id, store=store).add(action(up, name="up"))
        workflow.add(action(body, name="step", version=version))
        run = workflow.start(initial_context=context, keep_going=True, **options)
    return run.steps[1].output, run.steps[1].restored


def fail_after_saving(checkpoint: Progress) -> Any:
    checkpoint.save("saved")
    raise RuntimeError("fails after saving its progress")


def complete(checkpoint: Progress) -> Any:
    return "saved"


#: contexts whose values compare equal across types (1, 1.0, True): each is a different input
_CONTEXTS = st.sampled_from([None, 0, 1, 1.0, True, "1", (1,), [1], {"a": 1}, {"a": 1.0}])


@given(
    contexts=st.tuples(_CONTEXTS, _CONTEXTS),
    versions=st.tuples(st.sampled_from("12"), st.sampled_from("12")),
    rerun_from=st.sampled_from([None, "up", "step"]),
)
def test_progress_is_handed_on_exactly_when_the_checkpoint_would_be_restored(
    contexts: tuple[Any, Any], versions: tuple[str, str], rerun_from: str | None
) -> None:
    """A progress record is valid for what the step's checkpoint would be: its code version,
    its upstream's output (here: what `up` returns, its initial context) and rerun salts."""
    store = MemoryStore()
    loaded, _ = progress_runs("p", store, contexts, versions, rerun_from, fail_after_saving)
    output, restored = progress_runs("c", store, contexts, versions, rerun_from, complete)
    assert output == ("saved" if restored else "default")
    assert (loaded == "saved") is restored, (loaded, restored)


def test_progress_saved_for_another_input_is_not_handed_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()

    @action
    def total(initial_context: Context, checkpoint: Progress) -> int:
        done, acc = checkpoint.load((0, 0))
        for i, page in enumerate(initial_context.value[done:], start=done):
            if page == "boom":
                raise RuntimeError("half-way")
            acc += page
            checkpoint.save((i + 1, acc))
        return int(acc)

    first = Workflow("pages", store=store).add(total).start(initial_context=[1, 2, "boom"])
    assert first.status is Status.FAILED
    run = Workflow("pages", store=store).add(total).start(initial_context=[100, 200, 300])
    assert run.output == 600  # not 303: the progress made on [1, 2] is not continued
    assert "saved by other code, for another input" in caplog.text
    assert list(store.list("pages/progress/")) == []  # cleared once it completed


def test_a_step_keeping_progress_is_refused_in_parallel_mode_with_the_fix() -> None:
    # its checkpoint writes through this runner's store and lease: no worker process has them
    @action
    def crawl(checkpoint: Progress) -> int:
        return int(checkpoint.load(0))

    store = MemoryStore()
    with pytest.raises(ConfigurationError, match=r"crawl' takes a checkpoint.*another mode"):
        Workflow("par", store=store).add(crawl).start(mode="parallel")
    assert list(store.list("")) == []  # refused before anything was written
    assert Workflow("par", store=store).add(crawl).start(mode="sequential").output == 0


def test_a_stage_can_keep_progress_too() -> None:
    class Batches(Stage[Pages]):
        def execute(self, state: Pages, checkpoint: Progress) -> None:
            start = checkpoint.load(default=0)
            for n in range(start, 4):
                state.done.append(n)
                checkpoint.save(n + 1)

    run = Workflow().add(Batches(name="batches", state=Pages())).start()
    assert run.output == Pages(done=[0, 1, 2, 3])


def runner(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(tmp_path, *extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cancel_from_another_process_stops_a_running_staged_task(tmp_path: Path) -> None:
    (tmp_path / "arm").touch()
    proc = runner(tmp_path, "--hang-in", "transform", "--lock-ttl", "1.5")
    wait_for(tmp_path / "ready")
    asked = time.time()
    cancel("staged", FileStore(tmp_path / "store"))
    out, err = proc.communicate(timeout=30)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "CANCELLED", err
    assert [s["status"] for s in summary["steps"]] == ["COMPLETED", "CANCELLED", "CANCELLED"]
    # the runner's hook ran after the request, at a heartbeat (not when the stage ended by
    # itself: it would have hung for 60 s)
    hook_at = float((tmp_path / "cancel-hook-at").read_text())
    assert 0 <= hook_at - asked < 30
    lines = events(tmp_path)
    assert "cancel transform" in lines
    assert "stopped transform" in lines
    assert not any(line.startswith("execute publish") for line in lines)
    assert not (tmp_path / "store" / Layout("staged").step("transform")).exists()
    # the request belonged to that run: it is gone, and the next start resumes
    assert not (tmp_path / "store" / Layout("staged").cancel).exists()
    again = runner(tmp_path)
    out, err = again.communicate(timeout=30)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "COMPLETED", err
    assert [s["restored"] for s in summary["steps"]] == [True, False, False]


def crash_inside_transform(tmp_path: Path) -> None:
    """A runner SIGKILLed while its second stage runs (its lease is left behind)."""
    (tmp_path / "arm").touch()
    first = runner(tmp_path, "--hang-in", "transform")
    wait_for(tmp_path / "ready")
    first.kill()
    first.wait()
    (tmp_path / "arm").unlink()


def test_after_a_crash_mid_stage_only_that_stage_runs_again(tmp_path: Path) -> None:
    crash_inside_transform(tmp_path)
    second = runner(tmp_path)
    out, err = second.communicate(timeout=30)
    summary = json.loads(out)
    assert summary["status"] == "COMPLETED", err
    assert [s["interrupted"] for s in summary["steps"]] == [False, True, False]
    assert [s["restored"] for s in summary["steps"]] == [True, False, False]
    assert "running it again" in err
    executed = [line.split()[1] for line in events(tmp_path) if line.startswith("execute")]
    assert executed == ["download", "transform", "transform", "publish"]


def test_strict_recovery_stops_for_an_operator(tmp_path: Path) -> None:
    crash_inside_transform(tmp_path)
    strict = runner(tmp_path, "--strict")
    out, _ = strict.communicate(timeout=30)
    result = json.loads(out)
    assert result["error"] == "InterruptedStage"
    assert "transform" in result["message"]
    executed = [line.split()[1] for line in events(tmp_path) if line.startswith("execute")]
    assert executed == ["download", "transform"]  # nothing ran; the operator decides
    # the operator chooses to re-run it
    out, _ = runner(tmp_path).communicate(timeout=30)
    assert json.loads(out)["status"] == "COMPLETED"


def test_first_stage_without_state_is_a_clear_error(tmp_path: Path) -> None:
    run = Workflow().add(Recording(name="a", folder=str(tmp_path))).start()
    assert run.status is Status.FAILED
    assert "got no state" in (run.steps[0].error or "")


def test_stage_state_from_a_dict_initial_context(tmp_path: Path) -> None:
    run = (
        Workflow()
        .add(Recording(name="a", folder=str(tmp_path)))
        .start(initial_context={"rows": [7]})
    )
    assert run.output == JobState(rows=[7, 2], written=["a"])


def test_context_class_is_reexported() -> None:
    assert Context(1).value == 1


def test_dump_stages_shows_each_attempt(tmp_path: Path) -> None:
    from dotflow_providers.testing import fast_retries

    class Flaky(Stage[JobState]):
        def execute(self, state: JobState) -> None:
            marker = Path(self.description)
            if not marker.exists():
                marker.touch()
                raise ConnectionError("first try fails")
            state.rows.append(1)

    store = FileStore(tmp_path / "store")
    wf = Workflow("flaky", store=store).add(
        Flaky(name="fetch", description=str(tmp_path / "tried"), retry=2)
    )
    with fast_retries():
        run = wf.start(initial_context=JobState())
    assert "| fetch | COMPLETED | 2 (ConnectionError, ok) |" in dump_stages("flaky", store)
    assert "| fetch | COMPLETED | 2 (ConnectionError, ok) |" in dump_stages(run)


# --- what a stage's checkpoint is valid for ------------------------------------------------------


class Numbers(pydantic.BaseModel):
    n: int = 0
    out: int = 0


class Scale(Stage[Numbers]):
    factor: int = 2

    def execute(self, state: Numbers) -> None:
        state.out = state.n * self.factor


def test_a_stage_runs_again_when_its_state_changes_and_only_then() -> None:
    # the first stage's `state` is the task's input: a changed one must never restore a result
    # computed from the old one (its name, description and retry policy change nothing)
    store = MemoryStore()

    def start(**fields: Any) -> Any:
        run = Workflow("scaled", store=store).add(Scale(name="scale", **fields)).start()
        return run.output.out, run.steps[0].restored

    assert start(state=Numbers(n=1)) == (2, False)
    assert start(state=Numbers(n=1), description="reworded", retry=3) == (2, True)
    assert start(state=Numbers(n=5)) == (10, False)
    assert start(state=Numbers(n=5)) == (10, True)


class Holder(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    lock: Any = None


class Upload(Stage[Holder]):
    def execute(self, state: Holder) -> None:
        state.lock = None


def test_a_stage_state_without_a_stable_digest_is_refused_before_it_runs() -> None:
    workflow = Workflow("upload", store=MemoryStore())
    workflow.add(Upload(name="upload", state=Holder(lock=threading.Lock())))
    with pytest.raises(CheckpointError, match=r"initial context of step 'upload' cannot be"):
        workflow.start()
    assert list(workflow.store.list("")) == []  # nothing ran, nothing was written
    fine = Workflow("upload", store=MemoryStore()).add(Upload(name="upload", state=Holder()))
    assert fine.start().status is Status.COMPLETED


def test_a_stage_state_changed_after_it_was_added_counts_at_the_next_start() -> None:
    # the state is read at every start, like an initial context: changing it on the same
    # workflow object (or in place) must not restore the result computed from the old one
    stage = Scale(name="scale", state=Numbers(n=1))
    workflow = Workflow("same-object", store=MemoryStore()).add(stage)
    assert workflow.start().output.out == 2
    stage.state = Numbers(n=4)
    run = workflow.start()
    assert (run.output.out, run.steps[0].restored) == (8, False)
    assert stage.state is not None
    stage.state.n = 6
    assert workflow.start().output.out == 12


@given(st.integers(-3, 3), st.integers(-3, 3), st.integers(-3, 3))
def test_what_a_stage_is_valid_for_changes_exactly_when_its_state_does(
    first: int, second: int, factor: int
) -> None:
    def identity(n: int) -> Any:
        workflow = Workflow("valid-for").add(Scale(name="scale", state=Numbers(n=n), factor=factor))
        (found,) = workflow._identities("sequential", workflow._initial(None))
        return found

    assert (identity(first) == identity(second)) is (first == second)


def test_a_stage_runs_again_when_one_of_its_fields_changes_and_only_then() -> None:
    # `factor` changes what execute computes: a changed one must never restore the result
    # computed with the old one (reassigned after add() too); a field declared excluded does not
    # count, like retry and timeout
    store = MemoryStore()
    state = Numbers(n=3)

    def start(stage: Stage[Numbers]) -> tuple[int, bool]:
        run = Workflow("fields", store=store).add(stage).start()
        return run.output.out, run.steps[0].restored

    assert start(Scale(name="scale", state=state)) == (6, False)
    assert start(Scale(name="scale", state=state, factor=2)) == (6, True)
    assert start(Scale(name="scale", state=state, factor=5)) == (15, False)
    stage = Scale(name="scale", state=state, factor=5)
    workflow = Workflow("fields", store=store).add(stage)
    assert workflow.start().steps[0].restored
    stage.factor = 7
    run = workflow.start()
    assert (run.output.out, run.steps[0].restored) == (21, False)
    # the same execute and counted fields (the class is not what counts)
    assert start(Notified(name="scale", state=state, factor=7, channel="#a")) == (21, True)
    assert start(Notified(name="scale", state=state, factor=7, channel="#b")) == (21, True)
    assert start(Notified(name="scale", state=state, factor=2, channel="#b")) == (6, False)


class Notified(Scale):
    """Its `channel` is read by its rollback only: declared excluded, it does not count."""

    channel: str = pydantic.Field(default="", exclude=True)


class Uploader(Stage[Numbers]):
    client: Any = None

    def execute(self, state: Numbers) -> None:
        state.out = state.n


class Client:
    """An object with no stable digest (a connection, say)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


class ExcludedClient(Stage[Numbers]):
    client: Any = pydantic.Field(default=None, exclude=True)

    def execute(self, state: Numbers) -> None:
        state.out = state.n


def test_a_stage_field_without_a_stable_digest_is_refused_before_it_runs() -> None:
    store = MemoryStore()
    workflow = Workflow("client", store=store)
    workflow.add(Uploader(name="upload", state=Numbers(n=1), client=Client()))
    with pytest.raises(
        CheckpointError, match=r"stage 'upload': its field 'client' cannot be.*exclude=True"
    ):
        workflow.start()
    assert list(store.list("")) == []  # nothing ran, nothing was written
    fine = Workflow("client", store=store)
    fine.add(ExcludedClient(name="upload", state=Numbers(n=1), client=Client()))
    assert fine.start().output.out == 1


@given(st.integers(-3, 3), st.integers(-3, 3), st.text(max_size=3), st.text(max_size=3))
def test_what_a_stage_is_valid_for_changes_exactly_when_a_counted_field_does(
    first: int, second: int, channel: str, other_channel: str
) -> None:
    def identity(factor: int, channel: str) -> Any:
        stage = Notified(name="scale", state=Numbers(n=1), factor=factor, channel=channel)
        workflow = Workflow("valid-for").add(stage)
        (found,) = workflow._identities("sequential", workflow._initial(None))
        return found

    assert (identity(first, channel) == identity(second, other_channel)) is (first == second)


class Loose(Stage[Numbers]):
    """Takes extra fields (`extra="allow"`): they are settings like declared ones."""

    model_config = pydantic.ConfigDict(extra="allow")

    def execute(self, state: Numbers) -> None:
        state.out = state.n * getattr(self, "factor", 1)


def test_extra_fields_of_a_stage_that_allows_them_count_too() -> None:
    store = MemoryStore()

    def start(**extra: Any) -> tuple[int, bool]:
        stage = Loose(name="loose", state=Numbers(n=3), **extra)
        run = Workflow("loose", store=store).add(stage).start()
        return run.output.out, run.steps[0].restored

    assert start(factor=2) == (6, False)
    assert start(factor=2) == (6, True)
    assert start(factor=5) == (15, False)
    assert start() == (3, False)
