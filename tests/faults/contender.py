"""One contender of the lock races, a long-lived process: python -m tests.faults.contender
--store URL --name NAME --log FILE.

For each line `race <key> <at>` on stdin it waits until wall-clock time `<at>` (so the three
contenders start within a millisecond of each other), tries to take the lease on `<key>` once
(no waiting), appends `<key> <name> <owner> won` to --log if it got it (the side effect of
owning it), and answers `won <owner>` or `held` on stdout. `release` releases a lease it holds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from dotflow_providers import LeaseConfig, LockHeld, store_from_url
from dotflow_providers._lease import Lease


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    store = store_from_url(args.store)
    # Each contender is its own host: no one may take a lease because its pid looks dead.
    config = LeaseConfig(ttl=60, wait=0, clock_skew=0, host=args.name)
    held: Lease | None = None
    for line in sys.stdin:
        command = line.split()
        if command[0] == "release":
            if held is not None:
                held.release()
                held = None
            answer = "released"
        else:
            _, key, at = command
            lease = Lease(store, key, config)
            time.sleep(max(0.0, float(at) - time.time()))
            try:
                lease.acquire()
            except LockHeld:
                answer = "held"
            else:
                held = lease
                fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, f"{key} {args.name} {lease.owner} won\n".encode())
                finally:
                    os.close(fd)
                answer = f"won {lease.owner}"
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
