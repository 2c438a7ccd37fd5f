"""Replication as an operator runs it: `spreadedge health` (ops.health_report) on a primary whose
replication slots hold back WAL (a slot nobody reads, a standby that stopped reading its slot, a
slot whose WAL is lost), and the CLI's limits of the replication checks.

A real primary and hot standby (standby_helpers.hot_standby) of this module's own: slots,
max_slot_wal_keep_size and pg_switch_wal are the whole cluster's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import free_port
from ops_helpers import cli
from spreadedge.cluster import Cluster
from spreadedge.settings import Settings
from standby_helpers import Standby, hot_standby, named_check, wait_until_true

LOST = "WAL lost, the consumer can no longer catch up (rebuild the standby, or drop the slot): "


@pytest.fixture(scope="module")
def standby(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Standby]:
    """A migrated primary and a hot standby of it (streaming without a slot); the primary's pg_cron
    jobs switched off, so that nothing but a test writes WAL while it measures what a slot holds
    back."""
    with hot_standby(make_cluster, project_settings) as replica:
        with psycopg.connect(replica.primary, autocommit=True) as conn:
            conn.execute("update cron.job set active = false")
        yield replica


@pytest.fixture
def primary(standby: Standby) -> Iterator[psycopg.Connection]:
    """A connection to the primary; the slots and the table a test makes are dropped after it."""
    with psycopg.connect(standby.primary, autocommit=True) as conn:
        yield conn
        conn.execute("select pg_drop_replication_slot(slot_name) from pg_replication_slots where not active")
        conn.execute("drop table if exists public.ballast")


def _write_wal(conn: psycopg.Connection, rows: int = 50_000) -> None:
    """About 2 MB of WAL per 50,000 rows, in a table of the primary."""
    conn.execute("create table if not exists public.ballast (n integer)")
    conn.execute("insert into public.ballast select generate_series(1, %s)", [rows])


def _slots_check_and_held_back(
    conn: psycopg.Connection, slot: str, **limits: Any
) -> tuple[dict[str, Any], str]:
    """The replication_slots check of ops.health_report (with ``limits``), and what ``slot``
    holds back by pg_size_pretty, measured in the same statement."""
    arguments = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in limits
    )
    query = sql.SQL(
        "select ops.health_report({}),"
        " (select pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn))"
        "  from pg_replication_slots s where s.slot_name = %(slot)s)"
    ).format(arguments)
    report, held_back = conn.execute(query, {**limits, "slot": slot}).fetchone()
    return named_check(report, "replication_slots"), held_back


@contextmanager
def _receiver_stopped(standby: Standby) -> Iterator[None]:
    """The standby's WAL receiver not running (primary_conninfo naming a port nobody listens on),
    as when the standby's host went away; streaming again afterwards."""
    with psycopg.connect(standby.url, autocommit=True) as conn:
        [conninfo] = conn.execute("select current_setting('primary_conninfo')").fetchone()
        # why the retry interval: the startup process starts a new receiver every 5 s by default
        conn.execute("alter system set wal_retrieve_retry_interval = '10min'")
        conn.execute(_set("primary_conninfo", f"host=127.0.0.1 port={free_port()}"))
        try:
            conn.execute("select pg_reload_conf()")
            wait_until_true(conn, "select not exists (select from pg_stat_wal_receiver)")
            yield
        finally:
            conn.execute(_set("primary_conninfo", conninfo))
            conn.execute("alter system reset wal_retrieve_retry_interval")
            conn.execute("select pg_reload_conf()")
            wait_until_true(
                conn, "select exists (select from pg_stat_wal_receiver where status = 'streaming')"
            )


def _set(setting: str, value: str) -> sql.Composed:
    return sql.SQL("alter system set {} = {}").format(sql.Identifier(setting), sql.Literal(value))


# -- replication slots ---------------------------------------------------------------------------


def test_replication_slots_of_a_primary_without_any_pass(primary: psycopg.Connection) -> None:
    [report] = primary.execute("select ops.health_report()").fetchone()

    assert named_check(report, "replication_slots") == {
        "name": "replication_slots",
        "ok": True,
        "detail": "no replication slots",
    }


def test_an_inactive_slot_holding_back_more_wal_than_the_limit_fails_naming_it(
    primary: psycopg.Connection,
) -> None:
    # a slot nobody reads (its standby stopped or was removed) keeps every WAL segment from its
    # restart_lsn on until the disk fills, and health said healthy: no check looked at slots
    primary.execute("select pg_create_physical_replication_slot('gone_standby', immediately_reserve => true)")
    _write_wal(primary)

    check, held_back = _slots_check_and_held_back(primary, "gone_standby", max_retained_wal=1024 * 1024)

    assert check == {
        "name": "replication_slots",
        "ok": False,
        "detail": "1 slots (limit 1024 kB); holding back more than the limit: "
        f"gone_standby (physical, inactive, holds back {held_back})",
    }


def test_an_inactive_slot_within_the_limit_passes_but_is_named(primary: psycopg.Connection) -> None:
    primary.execute(
        "select pg_create_physical_replication_slot('resting_standby', immediately_reserve => true)"
    )
    _write_wal(primary)

    check, held_back = _slots_check_and_held_back(primary, "resting_standby")

    assert check == {
        "name": "replication_slots",
        "ok": True,
        "detail": f"1 slots (limit 1024 MB); inactive: resting_standby (physical, inactive, holds back {held_back})",
    }


def test_a_slot_within_max_slot_wal_keep_size_says_how_much_more_wal_it_may_lose_it_after(
    primary: psycopg.Connection,
) -> None:
    primary.execute("alter system set max_slot_wal_keep_size = '256MB'")
    primary.execute("select pg_reload_conf()")
    try:
        wait_until_true(primary, "select current_setting('max_slot_wal_keep_size') = '256MB'")
        primary.execute(
            "select pg_create_physical_replication_slot('kept_standby', immediately_reserve => true)"
        )
        _write_wal(primary)
        report, held_back, safe = primary.execute(
            "select ops.health_report(), pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)),"
            " pg_size_pretty(safe_wal_size) from pg_replication_slots where slot_name = 'kept_standby'"
        ).fetchone()
    finally:
        primary.execute("alter system reset max_slot_wal_keep_size")
        primary.execute("select pg_reload_conf()")

    assert named_check(report, "replication_slots") == {
        "name": "replication_slots",
        "ok": True,
        "detail": "1 slots (limit 1024 MB); inactive: "
        f"kept_standby (physical, inactive, holds back {held_back}, lost after {safe} more WAL)",
    }


def test_a_slot_whose_wal_is_lost_fails_though_it_holds_back_nothing(primary: psycopg.Connection) -> None:
    # with max_slot_wal_keep_size, a checkpoint removes the WAL of a slot that fell too far behind:
    # its standby can never catch up again
    primary.execute("alter system set max_slot_wal_keep_size = '1MB'")
    primary.execute("select pg_reload_conf()")
    try:
        # why: the postmaster signals every process at once, the checkpointer with this backend
        wait_until_true(primary, "select current_setting('max_slot_wal_keep_size') = '1MB'")
        primary.execute(
            "select pg_create_physical_replication_slot('dropped_behind', immediately_reserve => true)"
        )
        for _ in range(2):
            _write_wal(primary, rows=1000)
            primary.execute("select pg_switch_wal()")
        primary.execute("checkpoint")
        wait_until_true(
            primary, "select wal_status = 'lost' from pg_replication_slots where slot_name = 'dropped_behind'"
        )

        [report] = primary.execute("select ops.health_report()").fetchone()
    finally:
        primary.execute("alter system reset max_slot_wal_keep_size")
        primary.execute("select pg_reload_conf()")

    assert named_check(report, "replication_slots") == {
        "name": "replication_slots",
        "ok": False,
        "detail": f"1 slots (limit 1024 MB); {LOST}dropped_behind (physical, inactive)",
    }


def test_the_slot_of_a_standby_that_stopped_streaming_fails_once_it_holds_back_more_than_the_limit(
    standby: Standby, primary: psycopg.Connection
) -> None:
    # the primary of a standby that stopped looked healthy: no row in pg_stat_replication is
    # "no replicas", and its slot filled the disk
    primary.execute("select pg_create_physical_replication_slot('standby_slot', immediately_reserve => true)")
    with psycopg.connect(standby.url, autocommit=True) as conn:
        conn.execute(_set("primary_slot_name", "standby_slot"))
        conn.execute("select pg_reload_conf()")
    try:
        wait_until_true(primary, "select active from pg_replication_slots where slot_name = 'standby_slot'")
        streaming, _ = _slots_check_and_held_back(primary, "standby_slot")
        with _receiver_stopped(standby):
            wait_until_true(
                primary, "select not active from pg_replication_slots where slot_name = 'standby_slot'"
            )
            _write_wal(primary)
            stopped, held_back = _slots_check_and_held_back(
                primary, "standby_slot", max_retained_wal=1024 * 1024
            )
            [report] = primary.execute("select ops.health_report()").fetchone()
    finally:
        with psycopg.connect(standby.url, autocommit=True) as conn:
            conn.execute("alter system reset primary_slot_name")
            conn.execute("select pg_reload_conf()")
        wait_until_true(
            primary, "select not active from pg_replication_slots where slot_name = 'standby_slot'"
        )

    assert streaming == {"name": "replication_slots", "ok": True, "detail": "1 slots (limit 1024 MB)"}
    assert named_check(report, "replication") == {"name": "replication", "ok": True, "detail": "no replicas"}
    assert stopped == {
        "name": "replication_slots",
        "ok": False,
        "detail": "1 slots (limit 1024 kB); holding back more than the limit: "
        f"standby_slot (physical, inactive, holds back {held_back})",
    }


@pytest.mark.parametrize("limit", [None, 0, -1])
def test_health_report_with_a_retained_wal_limit_that_is_not_positive_is_invalid_argument(
    primary: psycopg.Connection, limit: int | None
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        primary.execute("select ops.health_report(max_retained_wal => %s::bigint)", [limit])

    shown = "null" if limit is None else str(limit)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"max_retained_wal must be a positive number of bytes, got {shown}",
    )


# -- a primary's replicas ----------------------------------------------------------------------------


def test_replication_on_a_primary_fails_for_a_role_the_replicas_lag_is_hidden_from(
    standby: Standby, primary: psycopg.Connection
) -> None:
    # pg_stat_replication shows a replica's state and lag only to superusers and pg_read_all_stats:
    # to the database owner a replica hours behind was "largest replay lag 00:00:00" and ok
    standby.replay()
    primary.execute("set role spreadedge_owner")
    try:
        row = primary.execute("select ok, detail from internal.health_replication('5 minutes')").fetchone()
    finally:
        primary.execute("reset role")

    assert row == (
        False,
        "1 replicas, their state and lag hidden from spreadedge_owner: run health as a superuser or a "
        "member of pg_read_all_stats",
    )


# -- spreadedge health's limits -------------------------------------------------------------------


def _lines(output: str, *names: str) -> list[str]:
    return [line for line in output.splitlines() if line[8:].split(" ", 1)[0] in names]


def test_health_cli_takes_the_replication_lag_and_retained_wal_limits(
    standby: Standby, primary: psycopg.Connection
) -> None:
    # ops.health_report's max_replication_lag had no option: the CLI always judged 5 minutes
    standby.replay()
    primary.execute("select pg_create_physical_replication_slot('gone_standby', immediately_reserve => true)")
    _write_wal(primary)

    result = cli(
        "health", "--max-replication-lag", "30s", "--max-retained-wal", "1MB", database_url=standby.primary
    )

    [held_back] = primary.execute(
        "select pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) from pg_replication_slots"
    ).fetchone()
    assert result.exit_code == 1, result.output
    [replication, slots] = _lines(result.output, "replication", "replication_slots")
    # the replay lag is whatever the standby last reported (null, 0, once it has replayed all)
    assert replication.startswith("  ok    replication               1 replicas, largest replay lag ")
    assert replication.endswith(" (limit 00:00:30)")
    assert slots == (
        "  FAIL  replication_slots         1 slots (limit 1024 kB); holding back more than the limit: "
        f"gone_standby (physical, inactive, holds back {held_back})"
    )


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--max-replication-lag", "soon", "must look like 30s, 15m, 12h, 2d or 1w, got 'soon'"),
        ("--max-retained-wal", "1GiB", "must look like 512MB, 1GB or 1TB, got '1GiB'"),
        ("--max-retained-wal", "0GB", "must look like 512MB, 1GB or 1TB, got '0GB'"),
        # these said "Error: ..." and exited 1, as an unhealthy database does, where
        # --max-disk-used's click range said "Invalid value" and exited 2
        ("--max-backup-age", "1 fortnight", "must look like 30s, 15m, 12h, 2d or 1w, got '1 fortnight'"),
        ("--max-transaction-age", "-5m", "must look like 30s, 15m, 12h, 2d or 1w, got '-5m'"),
    ],
)
def test_health_cli_option_it_cannot_read_is_a_usage_error_naming_it(
    standby: Standby, option: str, value: str, expected: str
) -> None:
    result = cli("health", option, value, database_url=standby.primary)

    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': {expected}" in result.output
