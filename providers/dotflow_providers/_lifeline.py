"""Child processes that die with their runner, however it dies (SIGKILL included).

Parallel mode's pool workers and `timeout_mode="process"` children call `die_with_parent`
first. On Linux the kernel then sends them SIGKILL when the runner dies (`PR_SET_PDEATHSIG`);
elsewhere a daemon thread in the child watches its parent pid. multiprocessing's resource
tracker needs nothing: it exits by itself once every process holding its pipe (the runner and
these children) is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: how often the watchdog of a child off Linux checks its parent, in seconds
WATCH_EVERY = 0.5


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_EVERY)
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent: int) -> None:
    """Make this process die when its parent, process `parent`, dies.

    Linux ties the signal to the *thread* that started this process, so the runner keeps that
    thread alive as long as the child may work: parallel mode closes its pool before the
    threads that submitted to it end, and a process timeout's caller waits for its child.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            # The parent may have died before prctl: then no signal will ever come.
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)
            return
    threading.Thread(target=_watch, args=(parent,), name="dotflow-watchdog", daemon=True).start()
