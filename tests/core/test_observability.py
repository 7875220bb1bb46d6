"""Observability: structured log records for retries and failures, OpenTelemetry spans."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dotflow_providers import FixedRetry, Status, Workflow, action
from dotflow_providers.instrumentation.otel import OpenTelemetryTracer


def flaky(fail_times: int) -> object:
    calls: list[int] = []

    @action(retry=FixedRetry(max_attempts=3, delay=0.01))
    def step() -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise ConnectionError(f"down #{len(calls)}")
        return "ok"

    return step


def test_retries_and_failures_are_structured_log_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dotflow_providers")
    Workflow("logged").add(flaky(5), name="api").start()
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert [(r.workflow_id, r.step, r.attempt, r.delay) for r in retries] == [  # type: ignore[attr-defined]
        ("logged", "api", 1, 0.01),
        ("logged", "api", 2, 0.01),
    ]
    final = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert final[0].step == "api"  # type: ignore[attr-defined]
    assert final[0].attempt == 3  # type: ignore[attr-defined]
    assert final[0].status == "FAILED"  # type: ignore[attr-defined]
    transitions = [
        (r.step, r.status)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.levelno == logging.DEBUG and hasattr(r, "step")
    ]
    assert transitions == [("api", "IN_PROGRESS"), ("api", "FAILED")]
    runs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("workflow")]
    assert runs == ["workflow logged started (1 steps, sequential)", "workflow logged FAILED"]


def test_spans_per_workflow_step_and_attempt_with_retry_events() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    wf = Workflow("traced", tracer=OpenTelemetryTracer(provider))
    wf.add(action(lambda: 1), name="quick").add(flaky(2), name="api")
    assert wf.start().status is Status.COMPLETED

    spans = {s.name: s for s in exporter.get_finished_spans()}
    workflow = spans["dotflow.workflow traced"]
    assert workflow.attributes["dotflow.status"] == "COMPLETED"
    step = spans["dotflow.step api"]
    assert step.parent.span_id == workflow.context.span_id
    assert step.attributes["dotflow.attempts"] == 3
    attempts = [
        s for s in exporter.get_finished_spans() if s.name.startswith("dotflow.attempt api")
    ]
    assert [s.name for s in attempts] == [
        "dotflow.attempt api#1",
        "dotflow.attempt api#2",
        "dotflow.attempt api#3",
    ]
    assert all(s.parent.span_id == step.context.span_id for s in attempts)
    assert [e.name for e in attempts[0].events] == ["exception", "dotflow.retry"]
    assert attempts[0].events[1].attributes["dotflow.delay"] == 0.01
    assert not attempts[2].events  # the successful attempt
    assert spans["dotflow.step quick"].parent.span_id == workflow.context.span_id


def test_a_failed_step_span_is_an_error_with_a_give_up_event() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    Workflow("failing", tracer=OpenTelemetryTracer(provider)).add(flaky(9), name="api").start()
    spans = exporter.get_finished_spans()
    last = next(s for s in spans if s.name == "dotflow.attempt api#3")
    assert [e.name for e in last.events] == ["exception", "dotflow.give_up"]
    step = next(s for s in spans if s.name == "dotflow.step api")
    assert step.status.status_code.name == "ERROR"


def test_redact_errors_masks_what_the_engine_keeps_of_step_errors() -> None:
    """Step errors that quote a secret: the record, the attempt history, the failure record and
    the checkpoint of the step that succeeded on retry keep the masked text."""
    from dotflow_providers import MemoryStore, redact_errors

    secret = "s3cr3t-Pa55"
    calls: list[int] = []

    @action(retry=FixedRetry(max_attempts=2, delay=0))
    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError(f"login failed for admin:{secret}@db")
        return 1

    @action
    def broken(previous_context: Any) -> None:
        raise RuntimeError(f"token {secret} rejected")

    store = MemoryStore()
    redact_errors(lambda text: text.replace(secret, "***"))
    try:
        run = Workflow("masked", store=store).add(flaky).add(broken).start()
    finally:
        redact_errors(None)
    assert run.steps[0].history[0][3] == "login failed for admin:***@db"
    assert run.steps[1].error == "RuntimeError: token *** rejected"
    kept = b"".join(store.get(key) or b"" for key in store.list("masked/"))
    assert b"***" in kept
    assert secret.encode() not in kept
    assert secret not in json.dumps(run.summary())
