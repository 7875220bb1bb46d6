"""The single entry to lint, type-check and test: `nox` runs every session.

Airflow 3.3 and Prefect 3.8 pin conflicting FastAPI versions, so each integration is tested in
its own environment; uv builds them quickly.
"""

from __future__ import annotations

import shutil

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "core-bare", "core", "faults", "airflow", "prefect"]
nox.options.error_on_missing_interpreters = True

TYPING_DEPS = ["mypy>=1.13", "boto3-stubs[s3]>=1.36"]
CORE_TEST_DEPS = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",  # property tests: the codec, checkpoint identity, policies
    "tenacity>=9.0",  # only to prove tenacity's own strategy objects are refused with advice
    "moto[server]>=5.1.5",  # a real S3 HTTP server honouring If-None-Match / If-Match
    "gcp-storage-emulator>=2024.8",
    "requests>=2.31",
    "opentelemetry-sdk>=1.20",  # an in-memory exporter for the tracing tests
]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict on the core (the adapters are type-checked in
    their own sessions, where Airflow or Prefect is installed)."""
    session.install("-e", ".[s3,gcs,otel,cli,encryption]", "ruff>=0.8", *TYPING_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    # `@action` keeps a step's parameters and return type (assert_type, checked statically)
    session.run("mypy", "--strict", "--warn-unused-ignores", "tests/typing")


_NOT_INSTALLED = """
import importlib.util, sys
for name in sys.argv[1:]:
    try:
        found = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        found = None
    assert found is None, f"{name} is installed in the bare session"
"""


@nox.session(name="core-bare")
def core_bare(session: nox.Session) -> None:
    """The core installed with no extra at all: it imports, runs, resumes and encodes without
    boto3, google-cloud-storage, OpenTelemetry or rich."""
    session.install("-e", ".", "pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "requests")
    session.run(
        "python",
        "-c",
        _NOT_INSTALLED,
        "boto3",
        "google.cloud.storage",
        "opentelemetry",
        "rich",
        "cryptography",
    )
    session.run(
        "pytest",
        "tests/core/test_architecture.py",
        "tests/core/test_identity.py",
        "tests/core/test_identity_properties.py",
        "tests/core/test_format.py",
        "tests/core/test_resume.py",
        "tests/core/test_codec.py",
        *session.posargs,
    )


@nox.session
def core(session: nox.Session) -> None:
    """The core engine and stores, against real processes and S3/GCS servers on loopback."""
    session.install("-e", ".[s3,gcs,otel,cli,encryption,dask]", *CORE_TEST_DEPS)
    session.run("pytest", "tests/core", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """The fault campaign (about 5 minutes on 2 cores): 200 SIGKILLs across FileStore and S3 in
    every mode, 100+ three-way lock races behind a proxy that serialises moto's conditional
    writes, stalled holders and lost write answers. Prints its figures and fails on any loss;
    DOTFLOW_FAULT_SEED=<seed> replays a run."""
    session.install("-e", ".[s3,cli]", *CORE_TEST_DEPS)
    session.run("pytest", "tests/faults", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def airflow(session: nox.Session) -> None:
    """The Airflow provider against Airflow 3.3 (own environment: its FastAPI pin)."""
    session.install(
        "-e",
        ".[airflow,s3,gcs,cli,encryption]",
        *CORE_TEST_DEPS,
        *TYPING_DEPS,
        "jsonschema",
        "playwright",
    )
    if shutil.which("chromium") is None:  # the UI tests drive Debian's Chromium (CI is root)
        session.run("apt-get", "update", "-qq", external=True)
        session.run("apt-get", "install", "-y", "-qq", "chromium", external=True)
    session.run("mypy", "airflow_plugin/dotflow_airflow")
    # the store contract suite again, now with Airflow's task state store among the backends
    session.run("pytest", "tests/airflow", "tests/core/test_store_contract.py", *session.posargs)


@nox.session
def prefect(session: nox.Session) -> None:
    """The Prefect integration against Prefect 3.8 with FastAPI < 0.151 (own environment)."""
    session.install(
        "-e",
        ".[prefect,s3,cli]",
        "prefect-aws>=0.7.12",  # the store blocks accept its AwsCredentials / MinIOCredentials
        "prefect-gcp>=0.6.22",  # and its GcpCredentials
        *CORE_TEST_DEPS,
        *TYPING_DEPS,
    )
    session.run("mypy", "prefect_blocks/dotflow_prefect")
    session.run("pytest", "tests/prefect", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (not part of the test command): python bench/run.py [--quick].

    Needs valgrind on the machine for the instruction counts (apt-get install valgrind)."""
    session.install(
        "-e",
        ".[s3]",
        "moto[server]>=5.1.5",
        "matplotlib>=3.8",
        "requests>=2.31",
        "tenacity>=9.0",
        "stamina>=24.2",
        "msgspec>=0.18",
        "dbos>=3.0",
    )
    session.run("python", "bench/run.py", *session.posargs)
