"""Helpers of the tests against a server that stops answering: its processes stopped (SIGSTOP)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings


@contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    """The server processes ``pids`` stopped (SIGSTOP): their connections stay open and never
    answer; continued (SIGCONT) on the way out, whatever happens."""
    stopped = []
    try:
        for pid in pids:
            # why suppressed: a process listed a moment ago (a backend ending its session, an
            # autovacuum worker) may have exited since; it answers nothing either way
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def postmaster(cluster: Cluster) -> int:
    """The pid of ``cluster``'s running postmaster."""
    pid = cluster.status().pid
    assert pid is not None
    return pid


def seeded_cluster(
    make_cluster: Callable[..., Cluster], settings: Settings, seed: Callable[[psycopg.Connection], object]
) -> Cluster:
    """A started, migrated cluster of a test module's own, seeded by ``seed``: a test may freeze it
    whole without touching another module's server."""
    cluster = make_cluster()
    cluster.start()
    migrate(cluster.url(), settings, echo=lambda line: None)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        seed(conn)
    return cluster
