"""The Checkpoints tab on the task instance page: what it shows, who may act, who may read.

Live tests run a real api-server, scheduler and dag-processor (`LiveAirflow`) in multi-team
mode: DAG A (`dotflow_ui_a`) lives in bundle `ui_team_a` of team `team_a`, DAG B
(`dotflow_ui_b`) in bundle `ui_team_b` of team `team_b`. SimpleAuthManager users: `admin`,
`editor` (role user, both teams) and `viewer_a` (role viewer, team_a only), which is how
Airflow 3.3's SimpleAuthManager restricts a user to some DAGs (its roles are global; a team-owned
DAG is refused to users outside the team). The browser tests drive Debian's Chromium.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from dotflow_airflow.plugin.app import map_index_from
from dotflow_airflow.plugin.page import human_duration
from dotflow_airflow.plugin.resolve import NotFound, parse_record
from dotflow_airflow.state_store import TaskStateCheckpoints
from dotflow_providers import store_from_url
from dotflow_providers.integration import take_next_start

from .browser import chromium, require_browser, sign_in
from .live import LIVE_DAGS, LiveAirflow

A, B = "dotflow_ui_a", "dotflow_ui_b"
SHOTS = Path(tempfile.gettempdir())

# --- pure parts -----------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in a `human_duration` text."""
    units = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}
    words = text.split()
    return sum(float(n) * units[u] for n, u in zip(words[::2], words[1::2], strict=True))


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0123, "12 ms"), (1.2, "1.2 s"), (42.4, "42 s"), (184, "3 min 4 s"), (7500, "2 h 5 min")],
)
def test_durations_read_as_people_write_them(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False))
def test_a_shown_duration_is_within_five_percent(seconds: float) -> None:
    shown = parse_duration(human_duration(seconds))
    assert math.isclose(shown, seconds, rel_tol=0.05, abs_tol=0.0005)


@given(st.floats(0, 10**6), st.floats(0, 10**6))
def test_a_longer_duration_never_shows_shorter(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert parse_duration(human_duration(low)) <= parse_duration(human_duration(high))


STORES = st.one_of(
    st.just({"kind": "task_state"}),
    st.builds(lambda c: {"kind": "connection", "conn_id": c}, st.text(min_size=1)),
    st.builds(lambda p: {"kind": "url", "url": f"file:///{p}"}, st.text()),
)


@given(st.text(min_size=1), STORES)
def test_every_record_the_operator_writes_is_read_back(workflow_id: str, store: Any) -> None:
    record = parse_record({"workflow_id": workflow_id, "store": store})
    assert (record.workflow_id, record.kind) == (workflow_id, store["kind"])
    assert record.conn_id == store.get("conn_id")
    assert record.url == store.get("url")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
)


@given(JSON | st.fixed_dictionaries({"workflow_id": JSON, "store": JSON}))
def test_anything_else_is_refused_with_a_value_error(value: Any) -> None:
    try:
        parse_record(value)
    except ValueError:
        return
    assert isinstance(value["store"], dict)
    assert value["store"]["kind"] in {
        "task_state",
        "connection",
        "url",
    }


def test_the_map_index_of_an_unmapped_task_is_left_unfilled_by_the_ui() -> None:
    assert map_index_from("{MAP_INDEX}") == -1
    assert map_index_from("3") == 3
    with pytest.raises(NotFound):
        map_index_from("../x")


# --- live Airflow ---------------------------------------------------------------------------


def _airflow(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stderr.decode()[-3000:]}")


@pytest.fixture(scope="module")
def ui() -> Iterator[LiveAirflow]:
    """Airflow in multi-team mode, DAG A in team_a's bundle and DAG B in team_b's."""
    require_browser()
    airflow = LiveAirflow(Path(tempfile.mkdtemp(prefix="dotflow-ui-airflow-")))
    bundles = [
        {
            "name": f"ui_{team}",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(LIVE_DAGS / f"ui_{team}")},
            "team_name": team,
        }
        for team in ("team_a", "team_b")
    ]
    conn_store = airflow.home / "conn-store"
    airflow.env.update(
        {
            "AIRFLOW__CORE__MULTI_TEAM": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": (
                "admin:admin,editor:user:team_a|team_b,viewer_a:viewer:team_a"
            ),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW_CONN_DOTFLOW_UI": json.dumps(
                {"conn_type": "dotflow", "host": f"file://{conn_store}"}
            ),
        }
    )
    try:
        # the teams must exist before the dag-processor syncs the bundles that name them
        _airflow(airflow.env, "db", "migrate")
        for team in ("team_a", "team_b"):
            _airflow(airflow.env, "teams", "create", team)
        airflow.start([A, B])
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture(scope="module")
def runs(ui: LiveAirflow) -> dict[str, str]:
    """One finished run of each DAG: dag id -> run id."""
    folder = Path(tempfile.mkdtemp(prefix="dotflow-ui-runs-"))
    found = {
        A: ui.trigger(A, {"dir": str(folder / "a")}),
        B: ui.trigger(B, {"dir": str(folder / "b")}),
    }
    for task, state in [("by_url", "success"), ("by_conn", "success"), ("by_state", "failed")]:
        ui.wait_for_task(A, found[A], task, state)
    ui.wait_for_task(A, found[A], "by_missing_conn", "failed")
    ui.wait_for_task(B, found[B], "secret", "success")
    return found


def tab(dag_id: str, run_id: str, task_id: str, map_index: str = "{MAP_INDEX}") -> str:
    quoted = urllib.parse.quote(run_id, safe="")
    return f"/dotflow/checkpoints/{dag_id}/{task_id}/{map_index}/{quoted}"


def call(ui: LiveAirflow, user: str | None, method: str, path: str, **kw: Any) -> Any:
    headers = {} if user is None else {"Authorization": f"Bearer {ui.token(user)}"}
    return requests.request(method, ui.url + path, headers=headers, timeout=30, **kw)


def view(ui: LiveAirflow, user: str, path: str) -> dict[str, Any]:
    response = call(ui, user, "GET", path, params={"format": "json"})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def rows(found: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(s["name"], s["status"], s["attempts"]) for s in found["state"]["steps"]]


def test_the_tab_shows_the_workflow_a_task_ran_with_a_store_url(
    ui: LiveAirflow, runs: dict[str, str]
) -> None:
    found = view(ui, "viewer_a", tab(A, runs[A], "by_url"))
    assert found["workflow_id"].startswith(f"{A}/")
    assert found["store"].startswith("file://")
    assert found["store"].endswith("/url-store")
    assert rows(found) == [
        ("extract", "COMPLETED", 1),
        ("flaky", "COMPLETED", 2),
        ("load", "COMPLETED", 1),
    ]
    history = found["state"]["steps"][1]["history"]
    assert [h[2] for h in history] == ["ConnectionError", None]
    assert found["can_edit"] is False
    assert "output" not in json.dumps(found["state"])


def test_the_tab_shows_the_workflow_a_task_ran_with_a_connection(
    ui: LiveAirflow, runs: dict[str, str]
) -> None:
    found = view(ui, "editor", tab(A, runs[A], "by_conn"))
    assert found["store"] == "connection dotflow_ui"
    assert rows(found) == [
        ("extract", "COMPLETED", 1),
        ("flaky", "COMPLETED", 2),
        ("load", "COMPLETED", 1),
    ]
    assert found["can_edit"] is True
    assert found["flags"]["extract"] == {
        "restored": False,
        "interrupted": False,
        "compensated": False,
    }


def test_the_tab_shows_failure_records_from_the_task_state_store(
    ui: LiveAirflow, runs: dict[str, str]
) -> None:
    found = view(ui, "viewer_a", tab(A, runs[A], "by_state"))
    assert found["store"] == "Airflow's task state store"
    broken = found["state"]["steps"][2]
    assert (broken["name"], broken["status"]) == ("broken", "FAILED")
    assert "bad row 42" in broken["error"]


@pytest.mark.parametrize(
    ("task_id", "message"),
    [
        ("plain", "recorded no checkpoints"),
        ("by_missing_conn", "dotflow_missing"),
        ("nonexistent", "no task instance"),
    ],
)
def test_nothing_to_show_is_a_404_with_a_message(
    ui: LiveAirflow, runs: dict[str, str], task_id: str, message: str
) -> None:
    response = call(ui, "viewer_a", "GET", tab(A, runs[A], task_id))
    assert response.status_code == 404
    assert message in response.text
    assert response.headers["content-type"].startswith("text/html")


def test_anonymous_callers_are_refused(ui: LiveAirflow, runs: dict[str, str]) -> None:
    assert call(ui, None, "GET", tab(A, runs[A], "by_url")).status_code == 401


def test_a_viewer_of_dag_a_cannot_read_dag_b_by_any_url(
    ui: LiveAirflow, runs: dict[str, str]
) -> None:
    secret = tab(B, runs[B], "secret")
    assert view(ui, "editor", secret)["state"]["steps"][0]["name"] == "confidential"
    assert call(ui, "viewer_a", "GET", secret).status_code == 403
    assert call(ui, "viewer_a", "GET", secret, params={"format": "json"}).status_code == 403
    # DAG A's path cannot reach B's task instance, workflow id or store
    b_id = view(ui, "editor", secret)["workflow_id"]
    for path in [
        tab(A, runs[B], "secret"),
        tab(A, runs[A], "secret"),
        tab(A, runs[A], "by_url", "0"),
        tab(A, runs[A], "by_url", "-1") + "/../../../" + B,
    ]:
        response = call(ui, "viewer_a", "GET", path, params={"workflow_id": b_id})
        assert response.status_code in (403, 404), path
        assert "confidential" not in response.text
    # the query parameters of the old page are ignored: A's own workflow is what is shown
    found = call(
        ui,
        "viewer_a",
        "GET",
        tab(A, runs[A], "by_url"),
        params={"format": "json", "workflow_id": b_id, "conn_id": "dotflow_ui"},
    ).json()
    assert found["workflow_id"] != b_id
    assert "confidential" not in json.dumps(found)
    old = call(
        ui,
        "viewer_a",
        "GET",
        f"/dotflow/dags/{B}/checkpoints",
        params={"run_id": runs[B], "task_id": "secret", "workflow_id": b_id},
    )
    assert old.status_code in (403, 404)


def next_start_path(ui: LiveAirflow, user: str, path: str) -> str:
    return str(view(ui, user, path)["next_start_url"])


def test_a_viewer_gets_no_actions_and_is_refused_if_calling_them(
    ui: LiveAirflow, runs: dict[str, str]
) -> None:
    path = next_start_path(ui, "viewer_a", tab(A, runs[A], "by_url"))
    for body in ({"rerun_from": "flaky"}, {"start_over": True}):
        assert call(ui, "viewer_a", "POST", path, json=body).status_code == 403
    found = view(ui, "viewer_a", tab(A, runs[A], "by_url"))
    store = store_from_url(found["store"])
    assert take_next_start(found["workflow_id"], store) is None


class _Snapshot:
    """A task state store read once through the REST API (enough for `take_next_start`)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def test_an_editor_asks_a_task_state_workflow_to_start_over(
    ui: LiveAirflow, runs: dict[str, str]
) -> None:
    path = tab(A, runs[A], "by_state")
    response = call(
        ui, "editor", "POST", next_start_path(ui, "editor", path), json={"start_over": True}
    )
    assert response.status_code == 200, response.text
    assert "Clear the task instance" in response.json()["message"]
    snapshot = _Snapshot(ui.state_store(A, runs[A], "by_state"))
    request = take_next_start(
        view(ui, "editor", path)["workflow_id"], TaskStateCheckpoints(snapshot, limit=0)
    )
    assert request is not None
    assert request.start_over
    assert request.requested_by == "editor"


def test_an_unknown_step_cannot_be_rerun_from(ui: LiveAirflow, runs: dict[str, str]) -> None:
    path = next_start_path(ui, "editor", tab(A, runs[A], "by_url"))
    response = call(ui, "editor", "POST", path, json={"rerun_from": "nope"})
    assert response.status_code == 404
    assert "no checkpointed step 'nope'" in response.text


# --- in a real browser ----------------------------------------------------------------------


def password(ui: LiveAirflow, user: str) -> str:
    found = json.loads((ui.home / "simple_auth_manager_passwords.json.generated").read_text())
    return str(found[user])


def open_tab(page: Any, dag_id: str, run_id: str, task_id: str) -> Any:
    """The task instance page, then a click on its Checkpoints tab; returns the tab's frame."""
    quoted = urllib.parse.quote(run_id, safe="")
    page.goto(f"/dags/{dag_id}/runs/{quoted}/tasks/{task_id}")
    # the UI's tabs are links; the plugin's is titled by its `external_views` name
    page.get_by_role("link", name="Checkpoints").click()
    page.wait_for_url(lambda url: url.endswith("/plugin/dotflow-checkpoints"))
    frame = page.frame_locator("iframe[title='Checkpoints']")
    frame.locator("table").wait_for()
    return frame


def step_names(frame: Any) -> list[str]:
    return [
        n.strip()
        for n in frame.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.step)")
    ]


def test_an_editor_reruns_from_a_step_in_the_browser(ui: LiveAirflow, runs: dict[str, str]) -> None:
    with chromium() as browser:
        page = sign_in(browser, ui.url, "editor", password(ui, "editor"))
        frame = open_tab(page, A, runs[A], "by_conn")
        assert step_names(frame) == ["extract", "flaky", "load"]
        frame.locator("tr[data-step='flaky'] details summary").click()
        page.screenshot(path=str(SHOTS / "dotflow-checkpoints-editor.png"))
        frame.locator("tr[data-step='flaky'] button[data-rerun-from]").click()
        frame.get_by_text("will rerun from flaky").wait_for()
        frame = open_tab(page, A, runs[A], "by_url")
        assert step_names(frame) == ["extract", "flaky", "load"]
        assert frame.get_by_role("button", name="Start over").count() == 1
    found = view(ui, "editor", tab(A, runs[A], "by_conn"))
    conn_store = store_from_url(f"file://{ui.home / 'conn-store'}")
    request = take_next_start(found["workflow_id"], conn_store)
    assert request is not None
    assert (request.rerun_from, request.start_over, request.requested_by) == (
        "flaky",
        False,
        "editor",
    )


def test_a_viewer_sees_the_tab_without_actions_in_the_browser(
    ui: LiveAirflow, runs: dict[str, str]
) -> None:
    with chromium() as browser:
        page = sign_in(browser, ui.url, "viewer_a", password(ui, "viewer_a"))
        frame = open_tab(page, A, runs[A], "by_state")
        assert step_names(frame) == ["extract", "flaky", "broken"]
        assert "bad row 42" in frame.locator("tr[data-step='broken']").inner_text()
        page.screenshot(path=str(SHOTS / "dotflow-checkpoints-viewer.png"))
        assert frame.locator("button").count() == 0
        # DAG B's task instance page is not theirs: its tab shows no step of B
        quoted = urllib.parse.quote(runs[B], safe="")
        page.goto(f"/dotflow/checkpoints/{B}/secret/-1/{quoted}")
        assert "confidential" not in page.content()
