"""Operations at their edges: a session in another TimeZone, builds cut short, servers of others."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ops_helpers import cli, tune_index_state

# a session TimeZone other than UTC: a server installed with the machine's zone, an operator's PGTZ
NEW_YORK = "America/New_York"


def _drop_future_partitions(db: psycopg.Connection, table: str, after: str = "now()") -> None:
    ahead = db.execute(
        sql.SQL(
            "select p.partition_schemaname, p.partition_tablename from partman.show_partitions(%s) p,"
            " partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i"
            " where i.child_start_time > {}"
        ).format(sql.SQL(after)),
        [table],
    ).fetchall()
    for schema, name in ahead:
        db.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, name)))


def _ranges(db: psycopg.Connection, table: str) -> list[tuple[datetime, datetime]]:
    """Each partition's (start, end), oldest first."""
    return db.execute(
        "select i.child_start_time, i.child_end_time from partman.show_partitions(%s) p,"
        " partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i"
        " order by 1",
        [table],
    ).fetchall()


def _gaps_and_misaligned(ranges: list[tuple[datetime, datetime]], unit: str) -> list[str]:
    """Partitions that do not start where the one before ends, or not at a UTC day/month start."""
    problems = []
    for (_, end), (start, _) in itertools.pairwise(ranges):
        if start != end:
            problems.append(f"{end.isoformat()} -> {start.isoformat()}")
    for start, _ in ranges:
        aligned = start.hour == 0 and start.minute == 0 and (unit == "day" or start.day == 1)
        if not aligned or start.utcoffset() is None or start.utcoffset().total_seconds() != 0:
            problems.append(f"starts {start.isoformat()}")
    return problems


# -- partitions in a session of another TimeZone -------------------------------------------------


def test_partition_maintenance_in_a_new_york_session_makes_utc_partitions_without_gaps(db):
    for table in ("market.ticks", "market.candles"):
        _drop_future_partitions(db, table)
    db.execute("select set_config('TimeZone', %s, false)", [NEW_YORK])

    db.execute("call ops.run_partition_maintenance()")

    db.execute("set timezone = 'UTC'")
    assert _gaps_and_misaligned(_ranges(db, "market.ticks"), "day") == []
    assert _gaps_and_misaligned(_ranges(db, "market.candles"), "month") == []


def test_partition_maintenance_leaves_the_sessions_timezone_as_it_was(db):
    db.execute("select set_config('TimeZone', %s, false)", [NEW_YORK])

    db.execute("call ops.run_partition_maintenance()")

    assert db.execute("select current_setting('TimeZone')").fetchone() == (NEW_YORK,)


def test_partitions_repair_in_a_new_york_session_makes_utc_partitions_without_gaps(seeded):
    db = seeded
    # maintenance far behind: candles partitions end with October, a candle of December stranded
    _drop_future_partitions(db, "market.candles", "date_trunc('month', now()) - interval '2 months'")
    db.execute("set session_replication_role = replica")  # only to plant the stray row
    db.execute(
        "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
        " quote_volume, trade_count) select min(instrument_id), '1h', date_trunc('month', now()) + interval '14 days',"
        " 1, 1, 1, 1, 1, 1, 1 from ref.instruments"
    )
    db.execute("reset session_replication_role")
    db.execute("select set_config('TimeZone', %s, false)", [NEW_YORK])

    moved = db.execute("select * from ops.repair_default_partitions()").fetchall()

    db.execute("set timezone = 'UTC'")
    assert moved == [("market.candles", 1)]
    assert _gaps_and_misaligned(_ranges(db, "market.candles"), "month") == []


def test_partitions_maintain_through_the_cli_in_a_new_york_session_makes_utc_partitions(db, db_url):
    _drop_future_partitions(db, "market.quotes")

    result = cli("partitions", "maintain", database_url=db_url, env={"PGTZ": NEW_YORK})

    assert result.exit_code == 0, result.output
    assert _gaps_and_misaligned(_ranges(db, "market.quotes"), "day") == []


# -- tune apply on a partitioned table, again after a build cut short ----------------------------------


def test_tune_apply_again_after_a_cut_short_build_takes_the_index_a_new_partition_got(seeded, db_url):
    db = seeded
    db.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select (select min(instrument_id) from ref.instruments), now() - (i || ' seconds')::interval, 't' || i,"
        " 100, 1 from generate_series(1, 40000) i"
    )
    db.execute("analyze market.ticks")
    for trade_id in ("t1", "t2", "t3"):
        db.execute("select * from market.ticks where exchange_trade_id = %s", [trade_id]).fetchall()
    # tune apply cut short after its first step (the parent's index, on it only) ...
    db.execute("create index ticks_exchange_trade_id_btree_tune on only market.ticks (exchange_trade_id)")
    # ... then the hourly maintenance makes a partition, which gets its own index of the parent's
    _drop_future_partitions(db, "market.ticks", "now() + interval '3 days'")
    db.execute("select partman.run_maintenance('market.ticks')")

    result = cli("tune", "apply", "1", database_url=db_url)

    assert result.exit_code == 0, result.output
    valid, children, partitions = tune_index_state(db)
    assert (valid, children) == (True, partitions)
    # one index on exchange_trade_id per partition: none built beside the one it already had
    indexes = db.execute(
        "select count(*) from pg_inherits h join pg_index i on i.indrelid = h.inhrelid"
        " join pg_attribute a on a.attrelid = h.inhrelid and a.attnum = i.indkey[0]"
        " where h.inhparent = 'market.ticks'::regclass and i.indnatts = 1 and a.attname = 'exchange_trade_id'"
    ).fetchone()
    assert indexes == (partitions,)


# -- the embedded cluster ------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the check as another user, which needs root")
def test_a_stale_pid_file_naming_another_users_postgres_is_no_running_cluster(pg_cluster):
    # after a reboot the pid of a stale postmaster.pid belongs to a postgres of another user (here
    # the session's cluster, run by the system user spreadedge), whose directory nobody cannot read
    home = Path(tempfile.mkdtemp(prefix="spreadedge-test-")) / "home"
    try:
        (home / "cluster").mkdir(parents=True)
        home.parent.chmod(0o755)
        (home / "cluster" / "PG_VERSION").write_text("15\n")
        pid = pg_cluster.status().pid
        (home / "cluster" / "postmaster.pid").write_text(f"{pid}\n{home / 'cluster'}\n1700000000\n5999\n")
        check = (
            f"from spreadedge.cluster import Cluster; print(Cluster({str(home)!r}, 5999).status().running)"
        )

        result = subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, "-c", check],
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)
