"""`spreadedge health` (ops.health_report) on a database that refuses writes: a primary with
default_transaction_read_only on, and a real hot standby (standby_helpers.hot_standby) whose
primary is idle, or whose WAL receiver is not running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import free_port
from ops_helpers import cli
from spreadedge.cluster import Cluster
from spreadedge.settings import Settings
from standby_helpers import Standby, hot_standby, named_check, wait_until_true

READ_ONLY = (
    "the database is read-only (a standby, or writes are switched off): logins and logouts fail; "
    "reads of live sessions are served"
)


@pytest.fixture(scope="module")
def standby(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Standby]:
    """A migrated primary (its pg_cron jobs scheduled) and a hot standby of it."""
    with hot_standby(make_cluster, project_settings) as replica:
        yield replica


def _check(url: str, name: str, **limits: str) -> dict[str, Any]:
    """The check ``name`` of ops.health_report on ``url`` (a limit such as max_replication_lag)."""
    with psycopg.connect(url, autocommit=True) as conn:
        [report] = conn.execute(
            "select ops.health_report(max_replication_lag => %s::interval)",
            [limits.get("max_replication_lag", "5 minutes")],
        ).fetchone()
    return named_check(report, name)


def _commit_on_primary(standby: Standby) -> None:
    """A transaction committed on the primary (a replayed one sets the standby's
    pg_last_xact_replay_timestamp), replayed on the standby."""
    with psycopg.connect(standby.primary, autocommit=True) as conn:
        # why a table: a transaction that writes no WAL but its commit record (pg_current_xact_id()
        # alone) commits asynchronously, and pg_current_wal_lsn, which replay() waits for, may not
        # include it yet
        conn.execute("create temporary table replayed_commit ()")
    standby.replay()


def _set_primary_conninfo(conninfo: str) -> sql.Composed:
    return sql.SQL("alter system set primary_conninfo = {}").format(sql.Literal(conninfo))


# -- a primary whose writes are switched off ---------------------------------------------------


def test_health_of_a_database_with_default_transaction_read_only_fails_writable(
    db: psycopg.Connection, db_url: str
) -> None:
    # every write failed (25006) while `spreadedge health` said healthy: ops.health_report had no
    # writable check, though the API's ops.health had one
    [run_id] = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()
    db.execute("select ops.finish_backup_run(%s, true, '20260101-000000F', 100, 10)", [run_id])
    [dbname] = db.execute("select current_database()").fetchone()
    db.execute(
        sql.SQL("alter database {} set default_transaction_read_only = on").format(sql.Identifier(dbname))
    )

    result = cli("health", database_url=db_url)

    assert result.exit_code == 1, result.output
    assert [line for line in result.output.splitlines() if "FAIL" in line] == [
        f"  FAIL  writable                  {READ_ONLY}"
    ]


# -- a hot standby ------------------------------------------------------------------------------


def test_writable_fails_on_a_standby_as_the_apis_health_does(standby: Standby) -> None:
    assert _check(standby.url, "writable") == {"name": "writable", "ok": False, "detail": READ_ONLY}


def test_cron_jobs_on_a_standby_pass_saying_the_primary_runs_them(standby: Standby) -> None:
    # the replicated cron.job rows name the primary's socket directory and port, and the check
    # failed them as "run on another server", though pg_cron runs no job on a standby at all
    with psycopg.connect(standby.url, autocommit=True) as conn:
        assert conn.execute("select count(*) > 0 from cron.job where active").fetchone() == (True,)

    assert _check(standby.url, "cron_jobs") == {
        "name": "cron_jobs",
        "ok": True,
        "detail": "standby: pg_cron runs no job here; the primary runs them (see its health)",
    }


def test_replication_of_a_caught_up_standby_of_an_idle_primary_is_not_lagging(standby: Standby) -> None:
    # the lag was the age of the last replayed transaction: a primary idle for longer than
    # max_replication_lag made a standby that had replayed everything fail the check
    _commit_on_primary(standby)
    with psycopg.connect(standby.url, autocommit=True) as conn:
        # the primary idle for over a second since (pg_cron's jobs commit once a minute)
        wait_until_true(
            conn,
            "select pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()"
            " and now() - pg_last_xact_replay_timestamp() > interval '1 second'",
        )
        [report] = conn.execute("select ops.health_report(max_replication_lag => '1 second')").fetchone()

    assert named_check(report, "replication") == {
        "name": "replication",
        "ok": True,
        "detail": "standby: the WAL receiver is streaming from the primary; everything received is replayed",
    }


def test_replication_fails_when_the_standbys_wal_receiver_is_not_running(standby: Standby) -> None:
    # a standby cut off from its primary had replayed all it received: with a transaction in the
    # last five minutes it was "ok", and afterwards only as lagging as an idle primary's standby
    _commit_on_primary(standby)
    with psycopg.connect(standby.url, autocommit=True) as conn:
        [conninfo] = conn.execute("select current_setting('primary_conninfo')").fetchone()
        # why the retry interval: the startup process starts a new receiver every 5 s by default
        conn.execute("alter system set wal_retrieve_retry_interval = '10min'")
        conn.execute(_set_primary_conninfo(f"host=127.0.0.1 port={free_port()}"))
        try:
            conn.execute("select pg_reload_conf()")
            wait_until_true(
                conn,
                "select not exists (select from pg_stat_wal_receiver)"
                " and pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()",
            )
            [report] = conn.execute("select ops.health_report()").fetchone()
        finally:
            conn.execute(_set_primary_conninfo(conninfo))
            conn.execute("alter system reset wal_retrieve_retry_interval")
            conn.execute("select pg_reload_conf()")
            wait_until_true(
                conn, "select exists (select from pg_stat_wal_receiver where status = 'streaming')"
            )

    assert named_check(report, "replication") == {
        "name": "replication",
        "ok": False,
        "detail": "standby: the WAL receiver is not running: nothing comes from the primary (see "
        "primary_conninfo and the server log); everything received is replayed",
    }


def test_replication_on_a_standby_fails_for_a_role_the_wal_receivers_status_is_hidden_from(
    standby: Standby,
) -> None:
    # pg_stat_wal_receiver shows its status only to superusers and pg_read_all_stats: without it,
    # a receiver that streams and one that does not look the same
    _commit_on_primary(standby)
    with psycopg.connect(standby.url, autocommit=True) as conn:
        conn.execute("set role spreadedge_owner")
        row = conn.execute("select ok, detail from internal.health_replication('5 minutes')").fetchone()

    assert row == (
        False,
        "standby: the WAL receiver's status is hidden from spreadedge_owner: run health as a superuser or a "
        "member of pg_read_all_stats; everything received is replayed",
    )
