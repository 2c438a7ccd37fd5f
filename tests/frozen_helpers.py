"""Helpers of the tests against a server that stops answering: its processes stopped (SIGSTOP)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from spreadedge.cluster import Cluster


@contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    """The server processes ``pids`` stopped (SIGSTOP): their connections stay open and never
    answer; continued (SIGCONT) on the way out, whatever happens."""
    stopped = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in reversed(stopped):
            os.kill(pid, signal.SIGCONT)


def postmaster(cluster: Cluster) -> int:
    """The pid of ``cluster``'s running postmaster."""
    pid = cluster.status().pid
    assert pid is not None
    return pid
