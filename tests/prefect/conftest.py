"""Prefect 3.8 for real: a temporary PREFECT_HOME and a local API server on SQLite."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# Prefect reads its settings when first imported: isolate it before any test imports it.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="dotflow-prefect-home-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[str]:
    """A real Prefect API server (SQLite, subprocess) for the whole test session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())
