"""Three runner processes race for one lease on S3, a hundred times and more: one owner each.

Half the races are for a lease nobody holds (create-only writes, `If-None-Match: *`), half for
an expired lease left by a runner on another host (compare-and-swap takeovers, `If-Match`). The
S3 requests go through a proxy that serialises moto's conditional writes, as real S3 decides
them (moto's own check-then-write is not atomic). Who owned a race is read from the owners'
side-effect log and the lease document, never from the contenders' answers alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from dotflow_providers._format import LeaseDocument, lease_document, load_lease
from dotflow_providers.storage import S3Store

from ..servers import REGION
from .harness import FIGURES, Children, case_rng, read_answer
from .serialising_proxy import serialising_proxy

RACES = 102
CONTENDERS = 3


def expired_lease() -> bytes:
    """The lease of a runner on another host that stopped renewing it long ago."""
    long_ago = time.time() - 600
    return lease_document(LeaseDocument("gone", "gone-host", 1, 1, long_ago, long_ago + 60, 60))


def winners(log: Path, key: str) -> list[tuple[str, str]]:
    """(contender, lease owner) of every contender that logged owning the lease on `key`."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        race_key, name, owner, _ = line.split()
        if race_key == key:
            found.append((name, owner))
    return found


@pytest.mark.timeout(300)
def test_three_way_lock_races_have_exactly_one_owner(
    tmp_path: Path,
    group: Children,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client: Any,
    s3_env: dict[str, str],
) -> None:
    rng = case_rng("lock-races")
    direct = S3Store(s3_bucket, "races", client=s3_client)  # setup and observation only
    log = tmp_path / "owners.log"
    problems: list[str] = []
    double = ownerless = 0
    with serialising_proxy(s3_endpoint) as (endpoint, proxy):
        url = f"s3://{s3_bucket}/races?endpoint_url={endpoint}&region={REGION}"
        contenders = [
            group.spawn_piped(
                ["tests.faults.contender", "--store", url, "--name", f"c{n}", "--log", str(log)],
                s3_env,
            )
            for n in range(CONTENDERS)
        ]
        for race in range(RACES):
            key = f"r{race}/lock"
            takeover = race % 2 == 1
            if takeover:
                direct.put(key, expired_lease())
            # a common start a little ahead, jittered so no contender is always first
            at = time.time() + 0.05
            for proc in rng.sample(contenders, len(contenders)):
                assert proc.stdin is not None
                proc.stdin.write(f"race {key} {at + rng.uniform(0, 0.002)}\n".encode())
            answers = [read_answer(proc) for proc in contenders]
            owners = winners(log, key)
            stored = direct.get(key)
            holder = None if stored is None else load_lease(key, stored)
            if len(owners) > 1:
                double += 1
                problems.append(f"race {race} ({key}): {owners} all held the lease; {answers}")
            elif (
                not owners
                or holder is None
                or holder.owner != owners[0][1]
                or holder.epoch != (2 if takeover else 1)
            ):
                ownerless += 1
                problems.append(f"race {race} ({key}): owners {owners}, stored {holder}")
            for proc in contenders:
                assert proc.stdin is not None
                proc.stdin.write(b"release\n")
            assert [read_answer(proc) for proc in contenders] == ["released"] * CONTENDERS
            if direct.get(key) is not None:
                ownerless += 1
                problems.append(f"race {race} ({key}): the lease outlived its release")
        for proc in contenders:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)
        FIGURES["lock_races"] += RACES
        FIGURES["lock_races_contended"] += proxy.contended
        FIGURES["double_owners"] += double
        FIGURES["ownerless_races"] += ownerless
        print(f"races {RACES}, contended writes {proxy.contended}/{proxy.conditional}")
    assert not problems, "\n".join(problems[:20])
    # the races were real: conditional writes arrived while another was in flight
    assert proxy.contended >= RACES // 4, (proxy.contended, proxy.conditional)
