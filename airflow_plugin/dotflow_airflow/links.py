"""The task's link to its Checkpoints tab, served by the dotflow plugin."""

from __future__ import annotations

import urllib.parse
from typing import Any

from .compatibility import BaseOperatorLink

#: The plugin's tab route on the task instance page (`external_views[].url_route`).
TAB_ROUTE = "dotflow-checkpoints"


class DotflowCheckpointLink(BaseOperatorLink):
    """ "Dotflow checkpoints" on a DotflowOperator task: the task instance's Checkpoints tab."""

    name = "Dotflow checkpoints"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        parts = [ti_key.dag_id, "runs", ti_key.run_id, "tasks", ti_key.task_id]
        map_index = getattr(ti_key, "map_index", -1)
        if map_index is not None and map_index >= 0:
            parts += ["mapped", str(map_index)]
        path = "/".join(urllib.parse.quote(str(p), safe="") for p in parts)
        return f"/dags/{path}/plugin/{TAB_ROUTE}"
