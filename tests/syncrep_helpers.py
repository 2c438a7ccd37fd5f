"""Helpers of the tests of a primary whose synchronous standby went away, for real: a cluster of a
test module's own whose commits wait for a standby that never comes, and bounded waits on them.

Without a cancel a commit waiting for the standby (wait event SyncRep) waits for ever: every wait
here is bounded by CAP, so a hang is a failure and never a stuck run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from frozen_helpers import seeded_cluster
from spreadedge.cluster import Cluster
from spreadedge.settings import Settings

# why generous: without a cancel these waits last for ever; a hang is a failure, not a stuck run
CAP = 60


def wait_for(check: Callable[[], bool], what: str) -> None:
    """Wait (at most CAP seconds) until ``check()`` is true, else fail saying ``what``."""
    deadline = time.monotonic() + CAP
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {CAP} s")


class BoundedThread:
    """A daemon thread running ``target``; joined with a bound."""

    def __init__(self, target: Callable[[], object]) -> None:
        self._thread = threading.Thread(target=target, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, seconds: float) -> None:
        self._thread.join(seconds)
        assert not self._thread.is_alive(), "the thread never ended"


def in_thread(target: Callable[[], object]) -> BoundedThread:
    """``target`` running in a started BoundedThread."""
    thread = BoundedThread(target)
    thread.start()
    return thread


def waiting_pid(
    conn: psycopg.Connection, pid: int | None, within: float, app: str | None = None
) -> int | None:
    """The pid (``pid``, or the one of application ``app``) once it waits on SyncRep, else None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        row = conn.execute(
            "select pid from pg_stat_activity where wait_event = 'SyncRep'"
            " and (pid = %s or application_name = %s)",
            [pid, app],
        ).fetchone()
        if row is not None:
            return int(row[0])
        time.sleep(0.05)
    return None


@contextmanager
def stalled_cluster(
    make_cluster: Callable[..., Cluster], settings: Settings, seed: Callable[[psycopg.Connection], object]
) -> Iterator[Cluster]:
    """A migrated cluster of a test module's own, seeded by ``seed``, whose writes' commits wait for
    a standby that never comes (synchronous_standby_names 'nobody'), from the moment it is given.
    Afterwards the commits still waiting are released and the cluster is stopped."""

    def seed_and_stall(conn: psycopg.Connection) -> None:
        seed(conn)
        conn.execute("alter system set synchronous_standby_names = 'nobody'")
        conn.execute("select pg_reload_conf()")

    cluster = seeded_cluster(make_cluster, settings, seed_and_stall)

    def commits_wait() -> bool:
        # why a probe: the checkpointer tells the backends that synchronous standbys are asked for
        # a moment after the reload; a probe commit that waits is cancelled (it is committed)
        with (
            psycopg.connect(cluster.url(), autocommit=True) as probe,
            psycopg.connect(cluster.url()) as writer,
        ):
            # why a table: a transaction that wrote no WAL (an xid alone) does not wait
            writer.execute("create temp table probe (x integer)")
            committing = in_thread(writer.commit)
            try:
                waiting = waiting_pid(probe, writer.info.backend_pid, 1.0)
                if waiting is not None:
                    probe.execute("select pg_cancel_backend(%s)", [waiting])
            finally:
                committing.join(CAP)
            return waiting is not None

    try:
        wait_for(commits_wait, "commits never waited for the synchronous standby")
        yield cluster
    finally:
        # why: the commits still waiting (the managers' given up, pg_cron's launcher, whose SIGTERM
        # does not end its wait) are released, else the cluster does not shut down
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("alter system reset synchronous_standby_names")
            conn.execute("select pg_reload_conf()")
            wait_for(
                lambda: (
                    conn.execute(
                        "select count(*) from pg_stat_activity where wait_event = 'SyncRep'"
                    ).fetchone()
                    == (0,)
                ),
                "commits still waited for the synchronous standby",
            )
        cluster.stop()
