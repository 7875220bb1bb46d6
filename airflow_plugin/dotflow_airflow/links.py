"""The task's link to its checkpoint page, served by the dotflow plugin."""

from __future__ import annotations

import urllib.parse
from typing import Any

from .compatibility import BaseOperatorLink


class DotflowCheckpointLink(BaseOperatorLink):
    """ "Dotflow checkpoints" on a DotflowOperator task: the step table of its workflow."""

    name = "Dotflow checkpoints"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        query = urllib.parse.urlencode(
            {
                "run_id": ti_key.run_id,
                "task_id": ti_key.task_id,
                "map_index": getattr(ti_key, "map_index", -1),
            }
        )
        return f"/dotflow/dags/{urllib.parse.quote(ti_key.dag_id)}/checkpoints?{query}"
