"""A map whose items run on a Dask `LocalCluster` of worker processes; the runner commits."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed  # the `dask` extra (the core session installs it)
import pytest

from dotflow_providers import FileStore, Status, Workflow

from .map_steps import square_where
from .procs import ROOT


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("dask")
    paths = {"log": folder / "items.log", "fail": folder / "fail"}
    # worker processes import the mapped step by module name and keep this environment
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "MAP_STEPS_LOG", "MAP_STEPS_FAIL")}
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "providers"), os.environ.get("PYTHONPATH", "")]
    )
    os.environ["MAP_STEPS_LOG"] = str(paths["log"])
    os.environ["MAP_STEPS_FAIL"] = str(paths["fail"])
    try:
        yield paths
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def client(cluster_env: dict[str, Path]) -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    with cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def test_items_run_on_dask_workers_and_a_resume_skips_committed_ones(
    client: Any, cluster_env: dict[str, Path], tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "store")
    cluster_env["fail"].write_text("5,11")
    workers = set(client.run(os.getpid).values())  # the worker processes' own pids

    def build() -> Workflow:
        wf = Workflow("on-dask", store=store)
        return wf.map(square_where, range(16), commit_every=4, executor=client.get_executor())

    first = build().start()
    assert first.status is Status.FAILED  # items 5 and 11 failed (each tried twice)
    assert first.steps[0].summary()["items_done"] == 14
    ran_first = Counter(int(x) for x in cluster_env["log"].read_text().split())
    assert ran_first == {i: 2 if i in (5, 11) else 1 for i in range(16)}

    cluster_env["fail"].write_text("")
    cluster_env["log"].write_text("")
    second = build().start()
    assert second.status is Status.COMPLETED
    assert sorted(int(x) for x in cluster_env["log"].read_text().split()) == [5, 11]
    outputs = second.output
    assert [value for value, _ in outputs] == [i * i for i in range(16)]
    pids = {pid for _, pid in outputs}
    assert pids <= workers
    assert os.getpid() not in pids
