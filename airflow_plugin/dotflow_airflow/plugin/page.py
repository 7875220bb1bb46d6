"""The Checkpoints tab's HTML: one table of a workflow's steps, in Airflow's UI fonts and colours.

Pure functions of `inspect_workflow` rows (and the last try's step flags): no I/O here, and no
step output anywhere (the rows never carry one).
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Mapping, Sequence
from typing import Any

#: Status -> (light, dark) colour: Airflow's own state palette (success green, failed red,
#: up for retry amber, running cyan, skipped/none grey).
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "COMPLETED": ("#15803d", "#4ade80"),
    "FAILED": ("#dc2626", "#f87171"),
    "RETRY": ("#b45309", "#fbbf24"),
    "IN_PROGRESS": ("#0e7490", "#22d3ee"),
    "CANCELLED": ("#c2410c", "#fb923c"),
    "NOT_STARTED": ("#6b7280", "#9ca3af"),
}
FLAGS = ("restored", "interrupted", "compensated")


def human_duration(seconds: float | None) -> str:
    """`12 ms`, `1.2 s`, `42 s`, `3 min 4 s`, `2 h 5 min`: a duration as people read it."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{millis} ms"
    tenths = round(seconds * 10)
    if tenths < 100:
        return f"{tenths / 10:.1f} s"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%H:%M:%S UTC")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def attempts_cell(row: Mapping[str, Any]) -> str:
    """The attempt count; with two or more, each attempt's start, duration and outcome."""
    count = int(row.get("attempts") or 0)
    history: Sequence[Sequence[Any]] = row.get("history") or []
    if len(history) < 2:
        return f"<span class=num>{count}</span>"
    items = "".join(
        f"<li>{_e(_when(float(a[0])))}, {_e(human_duration(float(a[1]) - float(a[0])))}: "
        + (f"<span class=err>{_e(a[2])}: {_e(a[3] or '')}</span>" if a[2] else "ok")
        + "</li>"
        for a in history
    )
    return f"<details><summary class=num>{count}</summary><ol class=history>{items}</ol></details>"


def _row(row: Mapping[str, Any], flags: Mapping[str, Any], can_edit: bool) -> str:
    status = str(row.get("status", "NOT_STARTED"))
    name = str(row["name"])
    badges = "".join(f"<span class=flag>{flag}</span>" for flag in FLAGS if flags.get(flag))
    error = ""
    if row.get("error"):
        error = f"<div class=err>{_e(row['error'])}</div>"
    if row.get("rollback_error"):
        error += f"<div class=err>rollback failed: {_e(row['rollback_error'])}</div>"
    action = ""
    if can_edit:
        action = (
            f"<button class=action data-rerun-from='{_e(name)}' "
            f"title='The next try runs {_e(name)} and every step after it'>"
            "Rerun from this step</button>"
        )
    return (
        f"<tr data-step='{_e(name)}'>"
        f"<td class=num>{int(row.get('index', 0)) + 1}</td>"
        f"<td class=step>{_e(name)}{badges}</td>"
        f"<td><span class='status s-{_e(status)}'>{_e(status.replace('_', ' ').lower())}</span>"
        "</td>"
        f"<td>{attempts_cell(row)}</td>"
        f"<td class=num>{_e(human_duration(row.get('duration')))}</td>"
        f"<td>{error}</td>"
        f"<td>{action}</td></tr>"
    )


_CSS = (
    """
:root { color-scheme: light; --fg: #1f2937; --muted: #6b7280; --border: #e5e7eb;
  --bg: #ffffff; --head: #f9fafb; --accent: #0369a1; --flag: #e0f2fe; --flag-fg: #075985; }
:root.dark { color-scheme: dark; --fg: #e5e7eb; --muted: #9ca3af; --border: #374151;
  --bg: #111827; --head: #1f2937; --accent: #38bdf8; --flag: #0c4a6e; --flag-fg: #bae6fd; }
body { margin: 0; padding: 16px 20px; background: var(--bg); color: var(--fg);
  font: 14px/1.5 Inter, ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 18px; font-weight: 600; margin: 0 0 4px; }
p.meta { color: var(--muted); margin: 0 0 12px; }
code { font-family: SFMono-Regular, Menlo, Monaco, Consolas, "Liberation Mono", monospace;
  font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-weight: 600; font-size: 12px; color: var(--muted);
  background: var(--head); text-transform: uppercase; letter-spacing: .03em; }
th, td { padding: 8px 10px; border-bottom: 1px solid var(--border); vertical-align: top; }
td.num, summary.num, span.num { font-variant-numeric: tabular-nums; }
td.step { font-weight: 500; }
.status { display: inline-block; padding: 1px 8px; border-radius: 9999px; font-size: 12px;
  font-weight: 600; color: #fff; }
"""
    + "".join(
        f".s-{s} {{ background: {light}; }}\n"
        f":root.dark .s-{s} {{ background: {dark}; color: #111827; }}\n"
        for s, (light, dark) in STATUS_COLOURS.items()
    )
    + """
.flag { margin-left: 6px; padding: 0 6px; border-radius: 4px; font-size: 11px;
  background: var(--flag); color: var(--flag-fg); }
.err { color: #dc2626; white-space: pre-wrap; word-break: break-word; }
:root.dark .err { color: #f87171; }
ol.history { margin: 4px 0 0; padding-left: 18px; color: var(--muted); }
summary { cursor: pointer; }
.toolbar { display: flex; gap: 12px; align-items: center; margin: 0 0 12px; }
button.action { font: inherit; font-size: 12px; padding: 3px 10px; border-radius: 6px;
  border: 1px solid var(--border); background: var(--head); color: var(--fg); cursor: pointer;
  white-space: nowrap; }
button.action:hover { border-color: var(--accent); color: var(--accent); }
#notice { color: var(--accent); }
"""
)

# Follows the Airflow UI's colour mode (the page is same-origin inside its iframe; Chakra marks
# the UI's <html> with class "dark"), else the browser's preference.
_SCRIPT = """
(function () {
  var dark;
  try { dark = window.parent.document.documentElement.classList.contains('dark'); }
  catch (e) { dark = window.matchMedia('(prefers-color-scheme: dark)').matches; }
  if (dark) document.documentElement.classList.add('dark');
  var notice = document.getElementById('notice');
  function ask(body) {
    fetch(document.body.dataset.nextStart, {
      method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)
    }).then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (res) { notice.textContent = res[0] ? res[1].message : res[1].detail; })
      .catch(function (e) { notice.textContent = String(e); });
  }
  document.querySelectorAll('[data-rerun-from]').forEach(function (b) {
    b.addEventListener('click', function () { ask({rerun_from: b.dataset.rerunFrom}); });
  });
  var over = document.getElementById('start-over');
  if (over) over.addEventListener('click', function () { ask({start_over: true}); });
})();
"""


def render_page(view: Mapping[str, Any]) -> str:
    """The whole tab: title, where the checkpoints are, the step table, the actions."""
    state = view["state"]
    can_edit = bool(view["can_edit"])
    flags: Mapping[str, Mapping[str, Any]] = view.get("flags") or {}
    rows = "".join(_row(r, flags.get(str(r["name"]), {}), can_edit) for r in state["steps"])
    total = len(state["steps"])
    if state.get("found"):
        summary = f"{state.get('completed', 0)} of {total} steps checkpointed"
    else:
        summary = "no checkpoints yet (or they were cleaned after success)"
    lease = state.get("lease")
    if lease:
        summary += f"; held by {_e(lease['host'])} pid {_e(lease['pid'])}"
    toolbar = ""
    if can_edit:
        toolbar = (
            "<div class=toolbar><button class=action id=start-over title='The next try runs "
            "every step again'>Start over</button><span id=notice role=status>Actions take "
            "effect on the next try: clear the task instance afterwards.</span></div>"
        )
    else:
        toolbar = "<div class=toolbar><span id=notice role=status></span></div>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Checkpoints of {_e(state['workflow_id'])}</title><style>{_CSS}</style></head>"
        f"<body data-next-start='{_e(view.get('next_start_url', ''))}'>"
        f"<h1>Checkpoints</h1><p class=meta>Workflow <code>{_e(state['workflow_id'])}"
        f"</code> in {_e(view['store'])}: {summary}</p>{toolbar}"
        "<table><thead><tr><th>#</th><th>Step</th><th>Status</th><th>Attempts</th>"
        f"<th>Duration</th><th>Failure</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        f"<script>{_SCRIPT}</script></body></html>"
    )


def error_page(status: int, message: str) -> str:
    """A not-found (or refused) tab, styled like the table."""
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><style>{_CSS}</style></head>"
        f"<body><h1>Checkpoints</h1><p class=meta>{status}: {_e(message)}</p></body></html>"
    )
