"""Helpers of the operations tests: the CLI against one database, and table checksums."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from click.testing import CliRunner, Result
from psycopg import sql

from spreadedge.cli import main
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings

PROJECT = Path(__file__).resolve().parent.parent
CHECKSUM_SCHEMAS = ("ref", "trading", "market", "auth", "monitor", "audit", "ops")


def cli(*args: str, database_url: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``spreadedge ARGS`` against ``database_url`` (or the settings' cluster)."""
    environment = {"SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": database_url, **(env or {})}
    return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=False)


def backup_ready(cluster: Cluster, settings: Settings, **env: str) -> dict[str, str]:
    """Start and migrate ``cluster`` and run ``spreadedge backup init`` on it (lz4), with the
    SPREADEDGE_* variables ``env`` adds; returns the environment its backup commands run with."""
    cluster.start()
    migrate(cluster.url(), settings, echo=lambda line: None)
    environment = {"SPREADEDGE_HOME": str(cluster.home), "SPREADEDGE_PORT": str(cluster.port), **env}
    result = cli("backup", "init", "--compress-type", "lz4", env=environment)
    assert result.exit_code == 0, result.output
    return environment


@contextmanager
def backed_up(
    make_cluster: Callable[..., Cluster], settings: Settings, kind: str, passphrase: str
) -> Iterator[tuple[Cluster, dict[str, str], Result]]:
    """A cluster of a test module's own, backup_ready with ``passphrase``, and its first backup
    (``spreadedge backup KIND``, which succeeded): the cluster, its backup environment and that
    backup's result. The cluster is stopped on the way out."""
    cluster = make_cluster()
    env = backup_ready(cluster, settings, SPREADEDGE_BACKUP_PASSPHRASE=passphrase)
    first = cli("backup", kind, env=env)
    assert first.exit_code == 0, first.output
    try:
        yield cluster, env, first
    finally:
        cluster.stop()


def checksums(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Row count and md5 of the sorted rows of every table (partitioned ones whole) of the project."""
    tables = conn.execute(
        "select format('%%I.%%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = any(%s) and c.relkind in ('r', 'p') and not c.relispartition order by 1",
        [list(CHECKSUM_SCHEMAS)],
    ).fetchall()
    result = {}
    for (table,) in tables:
        query = sql.SQL(
            "select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {} t"
        )
        row = conn.execute(query.format(sql.SQL(table))).fetchone()
        result[table] = (row[0], row[1])
    return result


def tune_index_state(conn: psycopg.Connection) -> tuple[bool, int, int]:
    """The exchange_trade_id tune index of market.ticks: (valid, partitions it covers, partitions)."""
    valid, children = conn.execute(
        "select i.indisvalid, (select count(*) from pg_partition_tree(i.indexrelid)) - 1"
        " from pg_index i where i.indexrelid = 'market.ticks_exchange_trade_id_btree_tune'::regclass"
    ).fetchone()
    partitions = conn.execute(
        "select count(*) from pg_inherits where inhparent = 'market.ticks'::regclass"
    ).fetchone()
    return valid, children, partitions[0]


def archive_current_wal(conn: psycopg.Connection) -> None:
    """Switch to a new WAL segment and wait (at most 120 s) until the archiver has pushed it."""
    segment = conn.execute("select pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
    conn.execute("select pg_switch_wal()")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        archived = conn.execute("select last_archived_wal from pg_stat_archiver").fetchone()[0]
        if archived is not None and archived >= segment:
            return
        time.sleep(0.1)
    raise AssertionError(f"WAL segment {segment} was not archived within 120 s")
