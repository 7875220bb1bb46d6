"""Airflow 3.3 for real: a throwaway AIRFLOW_HOME, migrated on SQLite once per session, dag.test();
and, for the live tests, api-server, scheduler and dag-processor on a home of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .live import LiveAirflow
from .live import live_airflow as running_airflow

DAGS = Path(__file__).parent / "dags"
HOME = Path(tempfile.mkdtemp(prefix="dotflow-airflow-home-"))
CHECKPOINTS = Path(tempfile.mkdtemp(prefix="dotflow-airflow-ckpt-"))

# Airflow reads its configuration when first imported: set it up before any test imports it.
os.environ.update(
    {
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        "DOTFLOW_CHECKPOINT_DIR": str(CHECKPOINTS),
    }
)
sys.path.insert(0, str(DAGS))


@pytest.fixture(scope="session", autouse=True)
def airflow_database() -> None:
    """`airflow db migrate` on the throwaway home, once, before the first Airflow test."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def live_airflow() -> Iterator[LiveAirflow]:
    """One api-server, scheduler and dag-processor for every live test (the machine is small)."""
    with running_airflow(["dotflow_live", "dotflow_live_keep", "dotflow_live_kill"]) as airflow:
        yield airflow
