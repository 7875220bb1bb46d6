"""The fault campaign's fixtures, and its figures printed at the end of the session."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dotflow_providers.storage import S3Store

from ..servers import ACCESS_KEY, REGION, SECRET_KEY
from .harness import FIGURES, Children, campaign_seed, children

#: The figures in the order they are printed, with what each counts.
ORDER = [
    ("kills", "SIGKILLs of a runner's whole process group at random points"),
    ("kills_mid_step", "  of which landed after the round's first step had started"),
    ("workflows_finished", "workflows finished after being killed"),
    ("committed_lost", "LOSS: committed checkpoints gone or changed after a kill"),
    ("rerun_after_commit", "LOSS: steps started again after their checkpoint existed"),
    ("corrupt_documents", "LOSS: step or manifest documents that do not load"),
    ("wrong_outputs", "LOSS: finished workflows whose outputs differ from an uninterrupted run"),
    ("lock_races", "three-way lock races on S3 (serialised conditional writes)"),
    ("lock_races_contended", "  conditional writes that waited for another in the proxy"),
    ("double_owners", "LOSS: races where more than one runner held the lease"),
    ("ownerless_races", "LOSS: races nobody won, with a wrong stored owner, or a stale lease"),
    ("stalled_holders", "runners stopped past their lease and continued after a takeover"),
    ("stalled_side_effects", "LOSS: steps a stalled holder started, or writes it made, after"),
    ("ambiguous_writes", "writes that landed but answered 500 (step PUTs, lease PUTs)"),
    ("ambiguous_lease_writes", "  of which were lease creations or renewals"),
    ("ambiguous_losses", "LOSS: steps lost, run twice or not completed under ambiguous writes"),
]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Children]:
    """Runner processes for one case; every one is killed at the end, pass or fail."""
    with children(tmp_path) as procs:
        yield procs


@pytest.fixture
def s3_env() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }


@dataclasses.dataclass(frozen=True)
class S3Target:
    """The moto server's bucket for one case: a store or a runner URL under a prefix."""

    bucket: str
    endpoint: str
    client: Any
    env: dict[str, str]

    def store(self, prefix: str) -> S3Store:
        return S3Store(self.bucket, prefix, client=self.client)

    def url(self, prefix: str, endpoint: str | None = None) -> str:
        where = endpoint or self.endpoint
        return f"s3://{self.bucket}/{prefix}?endpoint_url={where}&region={REGION}"


@pytest.fixture
def s3(s3_endpoint: str, s3_bucket: str, s3_client: Any, s3_env: dict[str, str]) -> S3Target:
    return S3Target(s3_bucket, s3_endpoint, s3_client, s3_env)


def pytest_report_header() -> str:
    return f"fault campaign seed: {campaign_seed()} (replay with DOTFLOW_FAULT_SEED)"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault campaign figures")
    write(f"seed {campaign_seed()} (replay: DOTFLOW_FAULT_SEED={campaign_seed()})")
    for name, what in ORDER:
        write(f"{FIGURES[name]:>8}  {what}")
