"""The single entry to lint, type-check and test: `nox` runs every session.

Airflow 3.3 and Prefect 3.8 pin conflicting FastAPI versions, so each integration is tested in
its own environment; uv builds them quickly.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "core", "airflow"]
nox.options.error_on_missing_interpreters = True

CORE_TEST_DEPS = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "moto[server]>=5.1.5",  # a real S3 HTTP server honouring If-None-Match / If-Match
    "gcp-storage-emulator>=2024.8",
    "requests>=2.31",
]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict on the core."""
    session.install("-e", ".[s3,gcs]", "ruff>=0.8", "mypy>=1.13", "boto3-stubs[s3]>=1.36")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def core(session: nox.Session) -> None:
    """The core engine and stores, against real processes and S3/GCS servers on loopback."""
    session.install("-e", ".[s3,gcs]", *CORE_TEST_DEPS)
    session.run("pytest", "tests/core", *session.posargs)


@nox.session
def airflow(session: nox.Session) -> None:
    """The Airflow provider against Airflow 3.3 (own environment: its FastAPI pin)."""
    session.install("-e", ".[airflow,s3]", *CORE_TEST_DEPS, "jsonschema")
    session.run("pytest", "tests/airflow", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (not part of the test command)."""
    session.install("-e", ".")
    session.run("python", "bench/run.py", *session.posargs)
