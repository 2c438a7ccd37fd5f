"""The recurring reads cost what they report on, not what history holds.

Each test loads N days of history (tests/history_growth_helpers.py), measures the shared buffers a
recurring read touches (EXPLAIN (ANALYZE, BUFFERS)), loads 3 N days more before them (4 N in all,
the same last hour and day) and measures again: the work may grow by a small factor only (on the
old code it grew with the history), and the values read are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from history_growth_helpers import PER_DAY, history_end, load_history, prepare_history, work

N_DAYS = 10
# The work at 4 N may be this much above the work at N (plans and index depths vary a little).
SMALL_FACTOR = 1.25


@pytest.fixture
def history(seeded: psycopg.Connection) -> tuple[psycopg.Connection, datetime]:
    """The seeded database, ready for load_history, and where its history ends."""
    prepare_history(seeded)
    return seeded, history_end(seeded)


def _at_n_and_4n(
    conn: psycopg.Connection,
    until: datetime,
    measure: Callable[[], Any],
    n_days: int = N_DAYS,
    per_day: int = PER_DAY,
) -> tuple[Any, Any]:
    """measure() after n_days days of history, then after 4 n_days."""
    load_history(conn, until, 0, n_days, per_day)
    at_n = measure()
    load_history(conn, until, n_days, 4 * n_days, per_day)
    return at_n, measure()


def _trade_series(conn: psycopg.Connection, at: datetime) -> dict[str, Decimal]:
    """trades.count and trades.notional (USDT) of the hour and the day of ``at``."""
    rows = conn.execute(
        "select m.name || '/' || (m.labels ->> 'period'), m.value from internal.trading_metrics(%s) m"
        " where m.name = 'trades.count' or (m.name = 'trades.notional' and m.labels ->> 'quote_asset' = 'USDT')",
        [at],
    ).fetchall()
    return dict(rows)


def _trades_since(conn: psycopg.Connection, start: str, at: datetime) -> tuple[int, Decimal]:
    """The fills from date_trunc(start, at) to at, and their USDT notional, read from the trades."""
    return conn.execute(
        "select count(*), coalesce(sum(t.quantity * t.price * t.multiplier) filter (where i.quote_asset = 'USDT'), 0)"
        " from trading.trades t join ref.instruments i on i.instrument_id = t.instrument_id"
        " where t.executed_at >= date_trunc(%s, %s::timestamptz, 'UTC') and t.executed_at <= %s",
        [start, at, at],
    ).fetchone()


def test_trade_series_of_collect_metrics_read_their_hour_and_day_not_every_rollup_row(history):
    conn, until = history
    statement = "select * from internal.trading_metrics(%s)"
    at = until - timedelta(seconds=1)
    work_n, work_4n = _at_n_and_4n(conn, until, lambda: work(conn, statement, [at]))
    assert work_4n <= SMALL_FACTOR * work_n, (work_n, work_4n)


def test_trade_series_of_collect_metrics_count_the_hour_and_day_exactly(history):
    conn, until = history
    at = until - timedelta(seconds=1)  # the hour 11:00-12:00 UTC, the first half of the day
    series_n, series_4n = _at_n_and_4n(conn, until, lambda: _trade_series(conn, at))
    hour, day = _trades_since(conn, "hour", at), _trades_since(conn, "day", at)
    assert hour[0] > 0 and day[0] > hour[0]
    assert (
        series_n
        == series_4n
        == {
            "trades.count/hour": hour[0],
            "trades.count/day": day[0],
            "trades.notional/hour": hour[1],
            "trades.notional/day": day[1],
        }
    )


def test_trades_per_period_reads_the_last_48_hours_and_30_days_only(history):
    conn, _ = history
    # why history up to now, and N = 30 days: the view reads the 48 hours and 30 days before now()
    until = conn.execute("select date_trunc('minute', now())").fetchone()[0]
    statement = "select * from monitor.trades_per_period"
    work_n, work_4n = _at_n_and_4n(conn, until, lambda: work(conn, statement), n_days=30, per_day=200)
    assert work_4n <= SMALL_FACTOR * work_n, (work_n, work_4n)


def test_system_metrics_count_the_outbox_without_reading_delivered_notifications(history):
    conn, until = history
    work_n, work_4n = _at_n_and_4n(conn, until, lambda: work(conn, "select * from internal.system_metrics()"))
    assert work_4n <= SMALL_FACTOR * work_n, (work_n, work_4n)


def test_system_metrics_count_pending_delivering_and_dead_notifications(history):
    conn, until = history
    load_history(conn, until, 0, N_DAYS)
    conn.execute(
        "update monitor.notifications set status = case when notification_id % 2 = 0 then 'pending'"
        " else 'delivering' end::monitor.notification_status, delivered_at = null"
        " where notification_id in (select notification_id from monitor.notifications order by 1 limit 5)"
    )
    conn.execute(
        "update monitor.notifications set status = 'dead', dead_at = delivered_at, delivered_at = null"
        " where notification_id in (select notification_id from monitor.notifications order by 1 desc limit 2)"
    )
    counts = dict(
        conn.execute(
            "select name, value from internal.system_metrics() where name like 'notifications.%'"
        ).fetchall()
    )
    assert counts == {"notifications.pending": 5, "notifications.dead": 2}


def test_notification_retention_reads_what_it_deletes_not_what_it_keeps(history):
    conn, until = history
    cutoff = until - timedelta(days=5 * N_DAYS)  # older than every row: nothing to delete
    statement = "select internal.count_ended_rows('monitor.notifications', %s)"
    work_n, work_4n = _at_n_and_4n(conn, until, lambda: work(conn, statement, [cutoff]))
    assert work_4n <= SMALL_FACTOR * work_n, (work_n, work_4n)


def test_notification_retention_counts_and_deletes_the_rows_ended_before_its_cutoff(history):
    conn, until = history
    load_history(conn, until, 0, 4 * N_DAYS)
    cutoff = until - timedelta(days=3 * N_DAYS)
    expected = conn.execute(
        "select count(*) from monitor.notifications where coalesce(delivered_at, dead_at) < %s", [cutoff]
    ).fetchone()[0]
    assert expected > 2 * N_DAYS * PER_DAY // 20  # every alert's notifications of those 3 N days
    assert (
        conn.execute("select internal.count_ended_rows('monitor.notifications', %s)", [cutoff]).fetchone()[0]
        == expected
    )
    deleted = conn.execute(
        "select internal.delete_ended_rows('monitor.notifications', %s, 100000)", [cutoff]
    ).fetchone()[0]
    assert deleted == expected
    assert (
        conn.execute(
            "select count(*) from monitor.notifications where coalesce(delivered_at, dead_at) < %s", [cutoff]
        ).fetchone()[0]
        == 0
    )
