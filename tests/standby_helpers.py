"""A real hot standby for the tests of a read-only database: a migrated primary, a cluster of its
own, and a ``pg_basebackup -R`` of it on loopback, run by the same unprivileged server user.

A change made on the primary is waited for on the standby (``Standby.replay``) before it is read.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from spreadedge import runas
from spreadedge.cluster import PG_BINDIR, Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings


@dataclass(frozen=True)
class Standby:
    """The primary's URL, its hot standby's URL, both clusters, and what the primary was seeded with."""

    primary: str
    url: str
    primary_cluster: Cluster
    replica: Cluster
    ids: dict[str, int] = field(default_factory=dict)

    def replay(self) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary, autocommit=True) as conn:
            [lsn] = conn.execute("select pg_current_wal_lsn()").fetchone()
        with psycopg.connect(self.url, autocommit=True) as conn:
            for _ in range(600):
                if conn.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone() == (True,):
                    return
                threading.Event().wait(0.05)
        raise AssertionError(f"the standby did not replay up to {lsn}")


def named_check(report: dict[str, Any], name: str) -> dict[str, Any]:
    """The one check ``name`` of an ops.health_report ``report``."""
    checks = [check for check in report["checks"] if check["name"] == name]
    assert len(checks) == 1, f"no {name} check in {[check['name'] for check in report['checks']]}"
    return checks[0]


def wait_until_true(conn: psycopg.Connection, query: str) -> None:
    """Wait (at most 30 s) until ``query`` on ``conn`` answers true."""
    for _ in range(600):
        if conn.execute(query).fetchone() == (True,):
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"never true: {query}")


def _pg(program: str, *args: str) -> None:
    command = runas.command([str(PG_BINDIR / program), *args])
    subprocess.run(command, cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True)


@contextmanager
def hot_standby(
    make_cluster: Callable[..., Cluster],
    project_settings: Settings,
    seed: Callable[[psycopg.Connection], dict[str, int]] | None = None,
) -> Iterator[Standby]:
    """A migrated primary (seeded by ``seed``, whose ids the Standby keeps) and a running hot standby
    of it; both stopped on the way out."""
    primary = make_cluster()
    primary.start()
    replica = make_cluster()
    try:
        migrate(primary.url(), project_settings, echo=lambda line: None)
        ids: dict[str, int] = {}
        if seed is not None:
            with psycopg.connect(primary.url(), autocommit=True) as conn:
                ids = seed(conn)
        replica.prepare_dirs()
        _pg(
            "pg_basebackup",
            *("-h", str(primary.socket_dir.resolve()), "-p", str(primary.port), "-U", "spreadedge"),
            *("-D", str(replica.data_dir.resolve()), "-R", "-X", "stream", "-c", "fast"),
        )
        # why its own settings: the copy holds the primary's port and socket directory
        replica._write_config()
        _pg(
            "pg_ctl",
            *("start", "-w", "-t", "60"),
            *("-D", str(replica.data_dir.resolve()), "-l", str(replica.log_file)),
        )
        with psycopg.connect(replica.url(), autocommit=True) as conn:
            assert conn.execute("select pg_is_in_recovery()").fetchone() == (True,)
        yield Standby(primary.url(), replica.url(), primary, replica, ids)
    finally:
        replica.stop()
        primary.stop()
