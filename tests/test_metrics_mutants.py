"""Rules of the collected metrics and of the monitoring views that a plausible slip in their SQL (a
window bound off by one, a time zone dropped, a rounding too coarse, a join condition lost) broke
without any other test noticing: each test here kills one or more mutants of the second mutation
run of 65_monitor_metrics.sql and 69_monitor_views.sql (none of them a mutant that
test_monitor_mutants.py or test_metrics_values_hunt.py already kills).

The run: 46 mutants, weighted to what pages an operator wrongly or never (a window, a time zone, a
bound) and what a dashboard shows wrong (8 of record_metric, 15 of the trading metrics, 11 of the
system metrics, 12 of the monitoring views). 12 caught by the existing tests (one of them
stillborn: the view no longer compiled), 34 survived: 33 holes, 31 closed by the 26 tests below and
2 left open, and 1 equivalent. The caught include a scoped user recording a risk metric, the
strategy label check dropped, working orders without partially_filled, the unrealized PnL of
shorts, notional only for quote assets held, today's realized PnL in the session's time zone, the
collector's own transaction as the oldest, an unset archive_command not failing, partitions ahead
as the most, a rule tied to no strategy shown to every trader, and watching without its exchange.

Holes, each killed by one test below: a name bound of 101 characters; an undotted name accepted;
the value bound at 10^100000 itself, and without abs (two mutants, one parametrized test); labels
that are not an object; recorded_at not checked; orders.by_status counting the order placed 24
hours before collected_at, or after it (two mutants, one test); risk.events counting the event an
hour before, or after (two, one test); exposure rounded to cents; trades.count and trades.notional
taking the hour in the session's time zone (two, one test); the volume of an instrument changed
the day before read from the rollups at the current multiplier, for the hour or the day (two, one
test); a fill at the next hour's first instant in the hour's volume; a fill at midnight UTC left
out of the day's volume; db.connections counting other databases' sessions; slow queries by total
rather than mean time; the longest lock wait read as the shortest; backup age from the latest
migrate rather than the first; an acknowledged alert not counted open; the share of
max_connections used without the sessions hidden from the collector; orders_per_status counting
the order placed exactly 24 hours ago; open_positions joined to every instrument of the symbol;
trades_per_period showing 31 days; query_performance least time first; disk_usage listing
partitions; latest_metrics showing a value exactly an hour old, or the smaller of two at one time;
risk_event_list without the exchange of an exchange-wide kill switch.

Equivalent: disk_usage counting every node below the root as a partition, not only leaves (no
table of the schema is partitioned on two levels, so every such node is a leaf).

Left open: cron.jobs_failing without the jobs that run elsewhere (needs the pg_cron cluster of
test_ops_health with a job's nodeport changed) and replication.slots_lost without 'unreserved'
slots (needs max_slot_wal_keep_size and WAL written past it); both cost a cluster of their own.

Every expected value is worked out by hand in its comment."""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from monitor_helpers import fire_btc_above_70k, metric
from syncrep_helpers import CAP
from test_failure_metrics_hunt import lock_waiter
from trading_helpers import call, list_binance_eth_btc, list_perpetual, list_spot, place, trade

# why 11 hours back: AT (10:30 UTC of TODAY) and the hour after it must be past, or a fill dated
# then would be a fill from the future; run between 00:00 and 11:00 UTC, the day is yesterday
TODAY = (datetime.now(UTC) - timedelta(hours=11)).replace(hour=0, minute=0, second=0, microsecond=0)
HOUR = TODAY + timedelta(hours=10)
AT = HOUR + timedelta(minutes=30)
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}  # the seed's perpetual: 0.01 BTC a contract


def collected(conn: psycopg.Connection, name: str, at: datetime = AT) -> dict[tuple[str, ...], Decimal]:
    """The values of one metric recorded at ``at``, keyed by their labels' values (sorted by key)."""
    return {
        tuple(labels[k] for k in sorted(labels)): value
        for labels, value in conn.execute(
            "select labels, value from monitor.metrics where name = %s and recorded_at = %s", [name, at]
        )
    }


def trade_at(
    conn: psycopg.Connection, at: datetime, side: str, quantity: str, price: str, **kwargs: str
) -> int:
    """An order placed at ``at`` and filled completely then, at one price; the trade id."""
    return trade(conn, side, quantity, price, placed_at=at, executed_at=at, **kwargs)


def waited(db: psycopg.Connection, waiter: psycopg.Connection) -> Decimal:
    """How long the waiter has waited for its lock so far, as db.lock_wait_max_seconds measures it."""
    return db.execute(
        "select round(extract(epoch from clock_timestamp() - waitstart), 3) from pg_locks"
        " where pid = %s and not granted",
        [waiter.info.backend_pid],
    ).fetchone()[0]


def refused(action: Callable[[], object]) -> tuple[str | None, str]:
    """(SQLSTATE, message) of the error the action raises."""
    with pytest.raises(psycopg.Error) as caught:
        action()
    return caught.value.sqlstate, caught.value.diag.message_primary


# -- monitor.record_metric --------------------------------------------------------------------------


def test_a_metric_name_of_101_characters_is_refused_and_one_of_100_recorded(
    seeded: psycopg.Connection,
) -> None:
    longest, too_long = "app." + "x" * 96, "app." + "x" * 97  # 4 + 96 = 100, 4 + 97 = 101 characters

    metric(seeded, longest, "1", AT)
    sqlstate, message = refused(lambda: metric(seeded, too_long, "1", AT))

    assert (sqlstate, message) == (
        "22S14",
        f'metric name must be dotted snake_case (e.g. app.orders_sent), got "{too_long}"',
    )
    assert seeded.execute("select name from monitor.metrics where name like 'app.%%'").fetchall() == [
        (longest,)
    ]


@pytest.mark.parametrize("value", ["1e100000", "-1e100000"])
def test_a_value_of_ten_to_the_100000_either_sign_is_refused(seeded: psycopg.Connection, value: str) -> None:
    sqlstate, message = refused(lambda: metric(seeded, "app.huge", value, AT))

    assert sqlstate == "22S14"
    assert message.startswith("value of metric app.huge must be below 10^100000 in magnitude, got ")
    assert seeded.execute("select count(*) from monitor.metrics where name = 'app.huge'").fetchone() == (0,)


def test_a_metric_name_without_a_dot_is_refused(seeded: psycopg.Connection) -> None:
    sqlstate, message = refused(lambda: metric(seeded, "latency", "1", AT))

    assert (sqlstate, message) == (
        "22S14",
        'metric name must be dotted snake_case (e.g. app.orders_sent), got "latency"',
    )
    assert seeded.execute(
        "select count(*) from monitor.metric_catalog where name = 'latency'"
    ).fetchone() == (0,)


def test_a_value_dated_more_than_a_day_ahead_is_refused(seeded: psycopg.Connection) -> None:
    ahead = seeded.execute("select now() + interval '24 hours 1 second'").fetchone()[0]

    sqlstate, message = refused(lambda: metric(seeded, "app.lag_ms", "1", ahead))

    assert sqlstate == "22S09"
    assert message.startswith("recorded_at must be a time between 2009-01-03 and one day from now, got ")
    assert seeded.execute("select count(*) from monitor.metrics where name = 'app.lag_ms'").fetchone() == (0,)


def test_labels_that_are_a_json_array_are_refused(seeded: psycopg.Connection) -> None:
    sqlstate, message = refused(
        lambda: call(
            seeded,
            "monitor.record_metric",
            name="app.lag_ms",
            value=Decimal("1"),
            labels=Jsonb(["venue", "okx"]),
            recorded_at=AT,
        )
    )

    assert (sqlstate, message) == (
        "22S14",
        'labels of metric app.lag_ms must be a JSON object, got ["venue", "okx"]',
    )
    assert seeded.execute("select count(*) from monitor.metrics where name = 'app.lag_ms'").fetchone() == (0,)


# -- orders and risk events: the windows ending at collected_at --------------------------------------


def test_orders_by_status_counts_the_orders_placed_in_the_24_hours_up_to_collected_at(
    seeded: psycopg.Connection,
) -> None:
    place(seeded, "buy", "0.01", "60000", placed_at=AT - timedelta(hours=24))  # the window's open start: out
    place(seeded, "buy", "0.01", "60000", placed_at=AT)  # its closed end: in
    place(seeded, "buy", "0.01", "60000", placed_at=AT + timedelta(seconds=1))  # after it: out

    call(seeded, "monitor.collect_metrics", collected_at=AT)

    assert collected(seeded, "orders.by_status")[("new",)] == 1


def test_risk_events_counts_the_events_of_the_hour_up_to_collected_at(seeded: psycopg.Connection) -> None:
    for enabled in (True, False, True, False):  # four kill switch changes, four risk events
        call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=enabled)
    # (AT - 1 h, AT]: the first and the last are out, the two between in
    seeded.execute(
        "update monitor.risk_events e set occurred_at = %s::timestamptz + (array[interval '-1 hour',"
        " interval '-59 minutes', interval '0', interval '1 second'])[n.n]"
        " from (select risk_event_id, row_number() over (order by risk_event_id) as n from monitor.risk_events) n"
        " where n.risk_event_id = e.risk_event_id",
        [AT],
    )

    call(seeded, "monitor.collect_metrics", collected_at=AT)

    assert collected(seeded, "risk.events") == {(): 2}


# -- exposure -----------------------------------------------------------------------------------------


def test_the_collected_exposure_keeps_the_decimals_of_an_amount_in_bitcoin(
    seeded: psycopg.Connection,
) -> None:
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "2", "0.05123", symbol="ETHBTC")  # marked at its fill: 2 x 0.05123 = 0.10246 BTC

    call(seeded, "monitor.collect_metrics", collected_at=AT)

    assert collected(seeded, "exposure.gross")[("BTC", "alpha")] == Decimal("0.10246")


# -- trades per period: the UTC hour and day of collected_at -------------------------------------------


def test_a_session_half_an_hour_off_utc_collects_the_utc_hours_trades(seeded: psycopg.Connection) -> None:
    trade_at(seeded, HOUR + timedelta(minutes=10), "buy", "0.01", "60000")
    # why Kolkata: UTC+05:30, so 10:30 UTC is 16:00 there and its hour begins at 10:30 UTC, not 10:00
    seeded.execute("set timezone = 'Asia/Kolkata'")

    call(seeded, "monitor.collect_metrics", collected_at=AT)

    assert collected(seeded, "trades.count")[("hour",)] == 1
    assert collected(seeded, "trades.notional")[("hour", "USDT")] == 600  # 0.01 x 60000


def test_volume_counts_each_fill_at_its_multiplier_when_the_instrument_changed_the_day_before(
    seeded: psycopg.Connection,
) -> None:
    trade_at(seeded, HOUR + timedelta(minutes=5), "buy", "10", "60000", **SWAP)  # 10 x 0.01 BTC
    list_perpetual(seeded, "okx", "BTC-USDT-SWAP", "0.1")
    # the contract size changed 12 hours before the day began (22 before the hour): within 24 hours
    # of both periods, so both read the fills at their own multiplier, not 10 x 0.1 = 1
    seeded.execute(
        "update ref.instruments set updated_at = %s where symbol = 'BTC-USDT-SWAP'",
        [TODAY - timedelta(hours=12)],
    )

    call(seeded, "monitor.collect_metrics", collected_at=AT)

    assert collected(seeded, "trades.volume") == {
        ("BTC", "day"): Decimal("0.1"),
        ("BTC", "hour"): Decimal("0.1"),
    }


def test_the_hours_volume_leaves_a_fill_at_the_start_of_the_next_hour_out(seeded: psycopg.Connection) -> None:
    trade_at(seeded, HOUR + timedelta(minutes=10), "buy", "0.01", "60000")
    trade_at(seeded, HOUR + timedelta(hours=1), "buy", "0.02", "60000")  # the next hour's first instant

    call(seeded, "monitor.collect_metrics", collected_at=AT)

    # hour [10:00, 11:00): 0.01; day: 0.01 + 0.02
    assert collected(seeded, "trades.volume") == {
        ("BTC", "day"): Decimal("0.03"),
        ("BTC", "hour"): Decimal("0.01"),
    }


def test_the_days_volume_counts_a_fill_at_midnight_utc(seeded: psycopg.Connection) -> None:
    trade_at(seeded, TODAY, "buy", "0.01", "60000")  # the day's first instant
    trade_at(seeded, HOUR + timedelta(minutes=10), "buy", "0.02", "60000")

    call(seeded, "monitor.collect_metrics", collected_at=AT)

    assert collected(seeded, "trades.volume")[("BTC", "day")] == Decimal("0.03")  # 0.01 + 0.02


# -- system metrics -----------------------------------------------------------------------------------


def test_an_acknowledged_alert_still_counts_among_the_open_alerts(seeded: psycopg.Connection) -> None:
    fire_btc_above_70k(seeded, channels=[])  # critical
    alert_id = seeded.execute("select alert_id from monitor.alerts").fetchone()[0]
    call(seeded, "monitor.acknowledge_alert", alert_id=alert_id, acknowledged_by="alice")

    call(seeded, "monitor.collect_metrics", collected_at=AT)

    # acknowledged: someone is on it, but it is not resolved
    assert collected(seeded, "alerts.open") == {("critical",): 1, ("info",): 0, ("warning",): 0}


def test_the_connections_of_another_database_are_not_counted(db: psycopg.Connection, db_url: str) -> None:
    elsewhere = make_conninfo(db_url, dbname="postgres")
    with psycopg.connect(elsewhere) as other, db.transaction():
        other_pid = other.info.backend_pid  # an idle client session of the database postgres
        call(db, "monitor.collect_metrics", collected_at=AT)
        idle_here = db.execute(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and backend_type = 'client backend' and state = 'idle'"
        ).fetchone()[0]
        other_idle = db.execute(
            "select count(*) from pg_stat_activity where backend_type = 'client backend' and state = 'idle'"
            " and pid = %s",
            [other_pid],
        ).fetchone()[0]

    assert other_idle == 1
    assert collected(db, "db.connections")[("idle",)] == idle_here


def test_connections_used_counts_the_sessions_hidden_from_the_collector(
    db: psycopg.Connection, db_url: str
) -> None:
    # the collector run as the database owner: another superuser session is hidden from it
    with psycopg.connect(db_url), db.transaction():
        db.execute("set local role spreadedge_owner")
        call(db, "monitor.collect_metrics", collected_at=AT)
        hidden = db.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and backend_type is null"
        ).fetchone()[0]
        db.execute("reset role")  # the same snapshot of the sessions, now seen whole
        sessions, limit = db.execute(
            "select count(*) filter (where backend_type = 'client backend'),"
            " current_setting('max_connections')::integer from pg_stat_activity"
        ).fetchone()

    # at least every client session of the server: a hidden session's type is hidden too, so a
    # background worker of another role connected to a database (pg_cron's launcher) counts as well
    assert hidden >= 1
    assert collected(db, "db.connections_used_ratio")[()] >= round(Decimal(sessions) / limit, 6)


def test_a_fast_statement_run_often_is_not_a_slow_query(db: psycopg.Connection) -> None:
    for _ in range(4):
        db.execute("select pg_sleep(0.3)")  # one statement: 4 calls, 1.2 s in all, 0.3 s on average

    call(db, "monitor.collect_metrics", collected_at=AT)

    assert collected(db, "db.slow_queries") == {(): 0}  # slow: 1 s or more on average


def test_the_longest_lock_wait_is_that_of_the_session_waiting_longest(
    db: psycopg.Connection, db_url: str
) -> None:
    db.execute("create table public.held (x integer)")
    with psycopg.connect(db_url) as holder:
        holder.execute("lock table public.held")  # a psql left in a transaction
        first, first_thread = lock_waiter(db, db_url)
        time.sleep(0.3)  # the second waits 0.3 s less than the first
        second, second_thread = lock_waiter(db, db_url)
        try:
            before = waited(db, first)
            call(db, "monitor.collect_metrics", collected_at=AT)
            after = waited(db, first)
        finally:
            holder.rollback()  # the first takes the lock, and the second once the first is closed
            for conn, thread in ((first, first_thread), (second, second_thread)):
                thread.join(CAP)
                conn.close()

    assert collected(db, "db.lock_waits") == {(): 2}
    assert before <= collected(db, "db.lock_wait_max_seconds")[()] <= after


def test_a_database_never_backed_up_counts_its_age_from_its_first_migrate_not_its_latest(
    db: psycopg.Connection,
) -> None:
    db.execute("insert into ops.migrate_runs default values")  # a second migrate, just now
    since_first = (
        "select round(extract(epoch from clock_timestamp() - min(finished_at)), 3) from ops.migrate_runs"
    )

    before = db.execute(since_first).fetchone()[0]
    call(db, "monitor.collect_metrics", collected_at=AT)
    after = db.execute(since_first).fetchone()[0]

    assert before <= collected(db, "backup.last_success_age_seconds")[()] <= after


# -- monitoring views ---------------------------------------------------------------------------------


def test_orders_per_status_leaves_an_order_placed_exactly_24_hours_ago_out_of_the_last_24_hours(
    seeded: psycopg.Connection,
) -> None:
    # one transaction: the view's now() is the now() the orders are dated from
    with seeded.transaction():
        now = seeded.execute("select now()").fetchone()[0]
        place(seeded, "buy", "0.01", "60000", placed_at=now - timedelta(hours=24))  # the window's open start
        place(seeded, "buy", "0.01", "60000", placed_at=now - timedelta(hours=23))
        shown = seeded.execute(
            "select status::text, orders, placed_last_24h from monitor.orders_per_status"
        ).fetchall()

    assert shown == [("new", 2, 1)]


def test_open_positions_joins_each_position_to_its_own_exchanges_instrument(
    seeded: psycopg.Connection,
) -> None:
    list_spot(seeded, "kraken", "BTCUSDT")  # the symbol binance's BTC/USDT has, on another exchange
    trade(seeded, "buy", "0.1", "60000")  # on binance

    assert seeded.execute(
        "select strategy, quote_asset, open_positions, gross_exposure from monitor.open_positions"
    ).fetchall() == [("alpha", "USDT", 1, Decimal("6000"))]  # 0.1 x 60000, once


def test_trades_per_period_shows_today_and_the_29_days_before_it(seeded: psycopg.Connection) -> None:
    # one transaction: the view's now() is the now() its days are worked out from
    with seeded.transaction():
        today = seeded.execute("select (now() at time zone 'UTC')::date").fetchone()[0]
        midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
        trade_at(seeded, midnight - timedelta(days=29, hours=-12), "buy", "0.01", "60000")
        trade_at(seeded, midnight - timedelta(days=30, hours=-12), "buy", "0.02", "60000")  # the 31st
        shown = seeded.execute(
            "select period_start, trades, notional from monitor.trades_per_period where period = 'day'"
        ).fetchall()

    assert shown == [(midnight - timedelta(days=29), 1, Decimal("600"))]  # 0.01 x 60000


def test_query_performance_lists_the_statements_with_the_most_execution_time_first(
    db: psycopg.Connection,
) -> None:
    db.execute("select pg_sleep(0.2)")  # 200 ms: more than any other statement of this database

    shown = db.execute("select query, total_ms from monitor.query_performance").fetchall()

    assert shown[0][1] >= 200
    assert [ms for _, ms in shown] == sorted((ms for _, ms in shown), reverse=True)


def test_disk_usage_lists_each_partitioned_table_once_and_no_partition(seeded: psycopg.Connection) -> None:
    shown = seeded.execute(
        "select schema_name, table_name from monitor.disk_usage where schema_name = 'trading'"
    ).fetchall()
    partitions = seeded.execute(
        "select count(*) from monitor.disk_usage d join pg_class c on c.relname = d.table_name"
        " and c.relnamespace::regnamespace::text = d.schema_name where c.relispartition"
    ).fetchone()

    assert shown.count(("trading", "orders")) == 1
    assert partitions == (0,)


def test_latest_metrics_leaves_a_value_recorded_exactly_an_hour_ago_out(seeded: psycopg.Connection) -> None:
    # one transaction: the view's now() is the now() the value is dated from
    with seeded.transaction():
        now = seeded.execute("select now()").fetchone()[0]
        metric(seeded, "app.lag_ms", "7", now - timedelta(hours=1))  # the last hour's open start
        shown = seeded.execute(
            "select value from monitor.latest_metrics where name = 'app.lag_ms'"
        ).fetchall()

    assert shown == []


def test_latest_metrics_shows_the_larger_of_two_values_recorded_at_one_time(
    seeded: psycopg.Connection,
) -> None:
    at = seeded.execute("select date_trunc('second', now()) - interval '1 minute'").fetchone()[0]
    metric(seeded, "app.queue_depth", "150", at)
    metric(seeded, "app.queue_depth", "50", at)  # inserted last, the same time: an alert rule reads 150

    assert seeded.execute(
        "select value from monitor.latest_metrics where name = 'app.queue_depth'"
    ).fetchall() == [(Decimal("150"),)]


def test_risk_event_list_names_the_exchange_of_an_exchange_wide_kill_switch(
    seeded: psycopg.Connection,
) -> None:
    call(seeded, "monitor.set_kill_switch", strategy="alpha", exchange="okx", enabled=True)  # no instrument

    assert seeded.execute(
        "select strategy, exchange, symbol, limit_kind from monitor.risk_event_list"
    ).fetchall() == [("alpha", "okx", None, "kill_switch")]
