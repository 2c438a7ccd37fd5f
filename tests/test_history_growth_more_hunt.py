"""More recurring statements that cost what they report on, not what history holds.

As tests/test_history_growth_hunt.py: load N days (or partitions) of history, measure the work of
a recurring statement, load 3 N more before them (4 N in all) and measure again. The work may grow
by a small factor only (on the old code it grew with the history), and the values read are exact.
The work is deterministic: shared buffers touched (EXPLAIN (ANALYZE, BUFFERS)), or the partitions a
statement locked, which are those it planned (PostgreSQL locks only what survives plan-time pruning).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from history_growth_helpers import load_history, prepare_history, work

SMALL_FACTOR = 1.25
MONTH_DAYS = 7  # N days of orders, then 4 N = 28, all in one month's partition


@pytest.fixture
def month_history(seeded: psycopg.Connection) -> tuple[psycopg.Connection, datetime]:
    """The seeded database, ready for load_history, and an end of history on the 29th of the
    previous month at 12:00 UTC: 4 N days before it are all in that month's orders partition."""
    prepare_history(seeded)
    until = seeded.execute(
        "select date_trunc('month', now(), 'UTC') - interval '1 month' + interval '28 days 12 hours'"
    ).fetchone()[0]
    return seeded, until


def _at_n_and_4n(conn: psycopg.Connection, until: datetime, measure: Callable[[], Any]) -> tuple[Any, Any]:
    load_history(conn, until, 0, MONTH_DAYS)
    at_n = measure()
    load_history(conn, until, MONTH_DAYS, 4 * MONTH_DAYS)
    return at_n, measure()


def _by_status(conn: psycopg.Connection, at: datetime) -> dict[str, int]:
    rows = conn.execute(
        "select m.labels ->> 'status', m.value from internal.trading_metrics(%s) m where m.name = 'orders.by_status'",
        [at],
    ).fetchall()
    return {status: int(value) for status, value in rows}


def test_orders_by_status_reads_the_last_24_hours_not_the_whole_month(month_history):
    conn, until = month_history
    at = until - timedelta(seconds=1)
    statement = "select * from internal.trading_metrics(%s)"
    work_n, work_4n = _at_n_and_4n(conn, until, lambda: work(conn, statement, [at]))
    assert work_4n <= SMALL_FACTOR * work_n, (work_n, work_4n)


def test_orders_by_status_counts_every_status_of_the_last_24_hours(month_history):
    conn, until = month_history
    at = until - timedelta(seconds=1)
    # an open order among the 24 hours' filled and cancelled ones
    conn.execute(
        "update trading.orders set status = 'open', filled_quantity = 0, avg_fill_price = null"
        " where order_id = (select min(order_id) from trading.orders)"
    )
    by_n, by_4n = _at_n_and_4n(conn, until, lambda: _by_status(conn, at))
    expected = dict.fromkeys(
        ["new", "open", "partially_filled", "filled", "cancelled", "rejected", "expired"], 0
    )
    expected.update(
        conn.execute(
            "select status::text, count(*) from trading.orders"
            " where created_at > %s::timestamptz - interval '24 hours' and created_at <= %s group by 1",
            [at, at],
        ).fetchall()
    )
    assert expected["filled"] > 0 and expected["cancelled"] > 0
    assert by_n == by_4n == expected


_SESSIONS = """
insert into auth.sessions (user_id, token_hash, created_at, last_seen_at, idle_expires_at, expires_at, revoked_at)
select %(user_id)s, sha256(('session-' || g)::bytea), x.at, x.at, x.at + interval '30 minutes',
       x.at + interval '12 hours', case when g %% 3 = 0 then x.at + interval '5 minutes' end
from generate_series(%(first)s::integer, %(last)s::integer - 1) g
cross join lateral (select %(until)s::timestamptz - g * interval '1 minute' as at) x
"""
SESSIONS_N = 10_000  # a login a minute: about a week


def _load_sessions(conn: psycopg.Connection, user_id: int, until: datetime, first: int, last: int) -> None:
    """Sessions logged in a minute apart before until, every third revoked 5 minutes in, the others
    expired 30 minutes in."""
    conn.execute(_SESSIONS, {"user_id": user_id, "until": until, "first": first, "last": last})
    conn.execute("analyze auth.sessions")


@pytest.fixture
def sessions_user(auth_db: psycopg.Connection) -> tuple[psycopg.Connection, int, datetime]:
    user_id = auth_db.execute(
        "select auth.create_user(username => 'ann', password => 'Correct-Horse-42', roles => '{trader}')"
    ).fetchone()[0]
    return auth_db, user_id, auth_db.execute("select now()").fetchone()[0]


def test_session_retention_reads_what_it_deletes_not_what_it_keeps(sessions_user):
    conn, user_id, until = sessions_user
    cutoff = until - timedelta(days=60)  # older than every session: nothing to delete
    statement = "select internal.count_ended_rows('auth.sessions', %s)"
    _load_sessions(conn, user_id, until, 0, SESSIONS_N)
    work_n = work(conn, statement, [cutoff])
    _load_sessions(conn, user_id, until, SESSIONS_N, 4 * SESSIONS_N)
    work_4n = work(conn, statement, [cutoff])
    assert work_4n <= SMALL_FACTOR * work_n, (work_n, work_4n)


def test_session_retention_counts_and_deletes_the_sessions_that_ended_before_its_cutoff(sessions_user):
    conn, user_id, until = sessions_user
    _load_sessions(conn, user_id, until, 0, 4 * SESSIONS_N)
    cutoff = until - timedelta(minutes=3 * SESSIONS_N)
    ended = "select count(*) from auth.sessions where least(revoked_at, idle_expires_at) < %s"
    expected = conn.execute(ended, [cutoff]).fetchone()[0]
    assert SESSIONS_N - 100 < expected < SESSIONS_N  # those logged in before 3 N minutes ago
    assert (
        conn.execute("select internal.count_ended_rows('auth.sessions', %s)", [cutoff]).fetchone()[0]
        == expected
    )
    assert (
        conn.execute("select internal.delete_ended_rows('auth.sessions', %s, 100000)", [cutoff]).fetchone()[0]
        == expected
    )
    assert conn.execute(ended, [cutoff]).fetchone()[0] == 0
    assert conn.execute("select count(*) from auth.sessions").fetchone()[0] == 4 * SESSIONS_N - expected


PARTITIONED = ("market.ticks", "market.quotes", "monitor.metrics")
OLD_PARTITIONS_N = 8


def _add_old_partitions(conn: psycopg.Connection, first_day: int, last_day: int) -> None:
    """Daily partitions of ticks, quotes and metrics for the days [first_day, last_day) before
    today, as a year of history with retention off leaves behind."""
    for table in PARTITIONED:
        for day in range(first_day, last_day):
            start = conn.execute("select (current_date - %s)::timestamptz", [day]).fetchone()[0]
            name = f"{table.split('.')[1]}_old_{start:%Y%m%d}"
            conn.execute(
                sql.SQL("create table {} partition of {} for values from ({}) to ({})").format(
                    sql.Identifier(table.split(".")[0], name),
                    sql.Identifier(*table.split(".")),
                    sql.Literal(start),
                    sql.Literal(start + timedelta(days=1)),
                )
            )


def _partitions_locked_by_evaluation(conn: psycopg.Connection) -> int:
    """The partitions of ticks, quotes and metrics that one monitor.evaluate_alert_rules run locked:
    those its statements planned and started."""
    with conn.transaction():
        conn.execute("select * from monitor.evaluate_alert_rules()")
        return conn.execute(
            "select count(*) from pg_locks l join pg_inherits i on i.inhrelid = l.relation"
            " where l.pid = pg_backend_pid() and l.locktype = 'relation'"
            " and i.inhparent = any (array['market.ticks', 'market.quotes', 'monitor.metrics']::regclass[])"
        ).fetchone()[0]


def test_alert_evaluation_plans_the_partitions_its_windows_reach_not_every_one_kept(seeded):
    conn = seeded
    for kind, extra in (("price", {}), ("volume", {}), ("price", {"aggregate": "change_pct"})):
        conn.execute(
            "select monitor.add_alert_rule(name => %s, kind => %s, exchange => 'binance', symbol => 'BTCUSDT',"
            " operator => '>', threshold => 1e9, aggregate => %s)",
            [f"{kind}-{len(extra)}", kind, extra.get("aggregate")],
        )
    conn.execute(
        "select monitor.add_alert_rule(name => 'size', kind => 'system', metric => 'db.size_bytes',"
        " operator => '>', threshold => 1e15, aggregate => 'avg')"
    )
    # older than any window (at most 31 days): 40 days back and more
    _add_old_partitions(conn, 40, 40 + OLD_PARTITIONS_N)
    locked_n = _partitions_locked_by_evaluation(conn)
    _add_old_partitions(conn, 40 + OLD_PARTITIONS_N, 40 + 4 * OLD_PARTITIONS_N)
    locked_4n = _partitions_locked_by_evaluation(conn)
    assert locked_4n == locked_n, (locked_n, locked_4n)


def test_alert_evaluation_still_reads_a_window_of_31_days(seeded):
    conn = seeded
    conn.execute(
        "select monitor.add_alert_rule(name => 'month-volume', kind => 'volume', exchange => 'binance',"
        " symbol => 'BTCUSDT', operator => '>=', threshold => 3, evaluation_window => '31 days')"
    )
    instrument = conn.execute(
        "select instrument_id from ref.instruments where symbol = 'BTCUSDT' and exchange_id ="
        " (select exchange_id from ref.exchanges where code = 'binance')"
    ).fetchone()[0]
    _add_old_partitions(conn, 8, 33)
    # 1 + 2 inside the 31 days (the oldest 30 days 23 hours back), 100 just before them
    conn.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " values (%(i)s, now() - interval '31 days 1 minute', 'a', 100, 100),"
        " (%(i)s, now() - interval '30 days 23 hours', 'b', 100, 1), (%(i)s, now() - interval '1 hour', 'c', 100, 2)",
        {"i": instrument},
    )
    rows = conn.execute("select rule, transition, value from monitor.evaluate_alert_rules()").fetchall()
    assert rows == [("month-volume", "fired", 3)]
