"""Flows for the transaction tests: a staged workflow inside a Prefect `transaction()` whose
later task fails once. Stages write files in $DOTFLOW_TEST_DIR and log to its steps.log."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
from prefect.transactions import transaction

from dotflow_prefect import dotflow_flow, run_workflow
from dotflow_providers import Stage, Workflow
from prefect import flow, task

from ..sidefx import maybe_fail, ran


def _dir() -> Path:
    return Path(os.environ["DOTFLOW_TEST_DIR"])


class Files(pydantic.BaseModel):
    written: list[str] = []


class WriteFile(Stage[Files]):
    """Writes a file named after the stage; its rollback removes it (or fails on request)."""

    def execute(self, state: Files) -> None:
        ran(f"write-{self.name}")
        (_dir() / self.name).write_text("done")
        state.written.append(self.name)

    def rollback(self, state: Files, error: BaseException) -> None:
        ran(f"undo-{self.name}")
        if (_dir() / f"stuck-{self.name}").exists():
            raise OSError(f"{self.name} cannot be undone")
        assert state.written[-1] == self.name  # its own committed state, from the checkpoint
        (_dir() / self.name).unlink(missing_ok=True)


def staged() -> Workflow:
    return Workflow().add(WriteFile(name="extract")).add(WriteFile(name="load"))


def written() -> list[str]:
    return sorted(p.name for p in _dir().iterdir() if p.name in {"extract", "load"})


@task
def validate() -> None:
    maybe_fail("validate")


@flow(retries=1, retry_delay_seconds=0)
def staged_transaction() -> list[str]:
    with transaction():
        run_workflow(staged(), initial_context=Files(), compensate=True, store=_store())
        validate()
    return written()


@dotflow_flow(retries=1, retry_delay_seconds=0)
def scoped_staged_transaction() -> list[str]:
    with transaction():
        run_workflow(staged(), initial_context=Files(), compensate=True)
        validate()
    return written()


def _store() -> str:
    return f"file://{_dir() / 'ckpt'}"
