"""What `airflow providers list` shows: registered by the `apache_airflow_provider` entry point."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any


def get_provider_info() -> dict[str, Any]:
    try:
        current = version("dotflow-providers")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        current = "0.0.0"
    return {
        "package-name": "dotflow-providers",
        "name": "Dotflow",
        "description": "In-task retries, timeouts and durable step checkpoints, so a retried "
        "task resumes from its last completed step.",
        "versions": [current],
        "integrations": [
            {
                "integration-name": "Dotflow",
                "external-doc-url": "https://github.com/dotflow-io/dotflow-providers#readme",
                "tags": ["software"],
            }
        ],
        "operators": [
            {"integration-name": "Dotflow", "python-modules": ["dotflow_airflow.operators.dotflow"]}
        ],
        "hooks": [
            {"integration-name": "Dotflow", "python-modules": ["dotflow_airflow.hooks.dotflow"]}
        ],
        "connection-types": [
            {
                "connection-type": "dotflow",
                "hook-class-name": "dotflow_airflow.hooks.dotflow.DotflowHook",
                "hook-name": "Dotflow checkpoints",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Store URL",
                        "login": "Access key id (S3)",
                        "password": "Secret access key (S3)",
                    },
                    "placeholders": {
                        "host": "s3://bucket/prefix, gs://bucket/prefix or file:///path",
                        "login": "empty: the worker's own credentials",
                    },
                },
                "conn-fields": {
                    "endpoint_url": {
                        "label": "Endpoint URL",
                        "description": "For S3-compatible servers (MinIO, Ceph) or emulators",
                        "schema": {"type": ["string", "null"]},
                    },
                    "region_name": {
                        "label": "Region",
                        "schema": {"type": ["string", "null"]},
                    },
                    "project": {
                        "label": "GCP project",
                        "schema": {"type": ["string", "null"]},
                    },
                    "keyfile_dict": {
                        "label": "GCP service account JSON",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "encryption_keys_secret": {
                        "label": "Encryption keys",
                        "description": "id1:base64key1,id2:base64key2, newest last: checkpoints "
                        "are encrypted (AES-256-GCM) with the newest; older ones still decrypt",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
            }
        ],
        "extra-links": ["dotflow_airflow.links.DotflowCheckpointLink"],
        # Airflow 3.3 reads "class-name" (its schema documents "path" but accepts either)
        "task-decorators": [
            {"name": "dotflow", "class-name": "dotflow_airflow.decorators.dotflow.dotflow_task"}
        ],
    }
