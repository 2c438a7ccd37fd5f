"""Metrics: recorded by hand and collected from the database itself, partitioned by day, and the
monitoring views for psql and dashboards."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from auth_helpers import acting_as, make_user
from ops_helpers import cli
from trading_helpers import call, list_binance_eth_btc, place, rows, trade

NOW = datetime.now(UTC).replace(microsecond=0)


def values(conn, name):
    return conn.execute(
        "select labels, value from monitor.metrics where name = %s order by labels::text", [name]
    ).fetchall()


def test_record_metric_stores_a_value_and_registers_its_name_as_a_custom_metric(seeded):
    call(seeded, "monitor.record_metric", name="app.fills_behind", value=Decimal("3"),
         labels=Jsonb({"venue": "okx"}), recorded_at=NOW)  # fmt: skip
    assert values(seeded, "app.fills_behind") == [({"venue": "okx"}, Decimal("3"))]
    assert seeded.execute(
        "select category from monitor.metric_catalog where name = 'app.fills_behind'"
    ).fetchone() == ("custom",)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("Latency", "1", 'metric name must be dotted snake_case (e.g. app.orders_sent), got "Latency"'),
        ("app.latency", "NaN", "value of metric app.latency must be a finite number, got NaN"),
    ],
)
def test_record_metric_refuses_a_bad_name_or_value(seeded, name, value, message):
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.record_metric", name=name, value=Decimal(value))
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S14", message)


def test_collect_metrics_records_orders_positions_trades_pnl_and_the_database(seeded):
    # placed, filled and collected at one time: the hour's and the day's notional hold the fill
    trade(seeded, "buy", "0.1", "60000", placed_at=NOW, executed_at=NOW)
    place(seeded, "sell", "0.05", "61000", placed_at=NOW)
    count = call(seeded, "monitor.collect_metrics", collected_at=NOW)
    names = {row[0] for row in seeded.execute("select distinct name from monitor.metrics")}
    assert count == seeded.execute("select count(*) from monitor.metrics").fetchone()[0]
    assert [row for row in values(seeded, "orders.by_status") if row[1]] == [
        ({"status": "filled"}, 1),
        ({"status": "new"}, 1),
    ]
    assert values(seeded, "orders.working") == [({"strategy": "alpha"}, 1), ({"strategy": "beta"}, 0)]
    assert values(seeded, "positions.open") == [({"strategy": "alpha"}, 1)]
    assert values(seeded, "exposure.gross") == [
        ({"strategy": "alpha", "quote_asset": "USDT"}, Decimal("6000"))
    ]
    assert values(seeded, "trades.notional") == [
        ({"period": "day", "quote_asset": "USD"}, 0),
        ({"period": "day", "quote_asset": "USDT"}, Decimal("6000.0")),
        ({"period": "hour", "quote_asset": "USD"}, 0),
        ({"period": "hour", "quote_asset": "USDT"}, Decimal("6000.0")),
    ]
    assert {"db.size_bytes", "db.connections", "db.commits", "db.rollbacks", "db.cache_hit_ratio",
            "db.oldest_xact_age", "db.slow_queries", "pnl.realized", "pnl.unrealized", "pnl.realized_today",
            "risk.events", "alerts.open", "notifications.pending", "notifications.dead"} <= names  # fmt: skip


def test_metrics_are_partitioned_by_day_with_the_retention_setting(db):
    assert db.execute(
        "select partition_interval, retention from partman.part_config where parent_table = 'monitor.metrics'"
    ).fetchone() == ("1 day", "90 days")


def test_the_open_positions_view_adds_up_each_quote_asset_apart(seeded):
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "0.1", "60000")
    trade(seeded, "buy", "2", "0.05", symbol="ETHBTC")

    assert seeded.execute(
        "select strategy, quote_asset, open_positions, gross_exposure from monitor.open_positions order by 2"
    ).fetchall() == [
        ("alpha", "BTC", 1, Decimal("0.100000000000")),
        ("alpha", "USDT", 1, Decimal("6000.000000000000")),
    ]


def test_the_monitoring_views_answer(seeded):
    trade(seeded, "buy", "0.1", "60000")
    place(seeded, "sell", "0.05", "61000")
    assert seeded.execute(
        "select status::text, orders from monitor.orders_per_status order by 1"
    ).fetchall() == [
        ("filled", 1),
        ("new", 1),
    ]
    assert seeded.execute(
        "select strategy, quote_asset, open_positions, gross_exposure from monitor.open_positions"
    ).fetchall() == [("alpha", "USDT", 1, Decimal("6000.000000000000"))]
    assert seeded.execute(
        "select period, trades from monitor.trades_per_period order by period"
    ).fetchall() == [
        ("day", 1),
        ("hour", 1),
    ]
    disk = dict(
        seeded.execute(
            "select schema_name || '.' || table_name, partitions from monitor.disk_usage"
        ).fetchall()
    )
    assert disk["trading.orders"] > 1 and disk["monitor.metrics"] > 1
    assert seeded.execute("select count(*) > 0 from monitor.query_performance").fetchone() == (True,)


def test_a_scoped_viewer_cannot_record_a_metric(auth_db):
    viewer = make_user(auth_db, "vic", "viewer")
    with pytest.raises(psycopg.Error) as caught, acting_as(auth_db, "spreadedge_app", viewer):
        call(auth_db, "monitor.record_metric", name="pnl.realized_today", value=Decimal("123456789"),
             labels=Jsonb({"strategy": "alpha"}), recorded_at=NOW)  # fmt: skip
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {viewer} lacks the permission alerts:manage",
    )
    assert values(auth_db, "pnl.realized_today") == []


def test_a_scoped_user_with_alerts_manage_cannot_record_a_collected_metric(auth_db):
    admin = make_user(auth_db, "ada", "admin")
    with pytest.raises(psycopg.Error) as caught, acting_as(auth_db, "spreadedge_app", admin):
        call(auth_db, "monitor.record_metric", name="exposure.gross", value=Decimal("0"),
             labels=Jsonb({"strategy": "alpha"}), recorded_at=NOW)  # fmt: skip
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S14",
        "metric exposure.gross is a risk metric that monitor.collect_metrics records:"
        " a session scoped to a user records only custom metrics",
    )
    assert values(auth_db, "exposure.gross") == []


def test_a_scoped_user_with_alerts_manage_records_a_custom_metric(auth_db):
    admin = make_user(auth_db, "ada", "admin")
    with acting_as(auth_db, "spreadedge_app", admin):
        call(auth_db, "monitor.record_metric", name="app.fills_behind", value=Decimal("3"),
             labels=Jsonb({"venue": "okx"}), recorded_at=NOW)  # fmt: skip
    assert values(auth_db, "app.fills_behind") == [({"venue": "okx"}, Decimal("3"))]


def test_an_unscoped_session_records_a_collected_metric(seeded):
    with acting_as(seeded, "spreadedge_app"):
        call(seeded, "monitor.record_metric", name="exposure.gross", value=Decimal("50000"),
             labels=Jsonb({"strategy": "alpha"}), recorded_at=NOW)  # fmt: skip
    assert values(seeded, "exposure.gross") == [({"strategy": "alpha"}, Decimal("50000"))]


def test_collect_metrics_counts_every_order_status_zero_included(seeded):
    trade(seeded, "buy", "0.1", "60000")

    call(seeded, "monitor.collect_metrics")

    assert values(seeded, "orders.by_status") == [
        ({"status": status}, 1 if status == "filled" else 0)
        for status in sorted(
            ["cancelled", "expired", "filled", "new", "open", "partially_filled", "rejected"]
        )
    ]


def test_collect_metrics_records_no_realized_pnl_today_as_zero(seeded):
    trade(seeded, "buy", "0.1", "60000", fee=Decimal("6"), fee_currency="USDT", executed_at=NOW)
    trade(seeded, "buy", "1", "3000", exchange="kraken", symbol="ETHUSD", strategy="beta", executed_at=NOW)
    # yesterday's fill: beta has a position in BTCUSDT and nothing realized today
    seeded.execute("update trading.daily_pnl set day = day - 1 where strategy_id = 2")

    # at the fills' time: "today" is their UTC day, also when the run crosses midnight
    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert values(seeded, "pnl.realized_today") == [
        ({"strategy": "alpha", "quote_asset": "USDT"}, Decimal("-6")),
        ({"strategy": "beta", "quote_asset": "USD"}, Decimal("0")),
    ]


# Amounts of different quote assets (bug: one series per strategy added the BTC of an ETH/BTC
# position to the USDT of a BTC/USDT one at par)
def test_collected_exposure_and_pnl_are_a_series_per_strategy_and_quote_asset(seeded):
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "0.1", "60000", fee=Decimal("6"), fee_currency="USDT", executed_at=NOW)
    trade(
        seeded,
        "buy",
        "2",
        "0.05",
        symbol="ETHBTC",
        fee=Decimal("0.0001"),
        fee_currency="BTC",
        executed_at=NOW,
    )

    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert {
        (name, labels["quote_asset"], value)
        for name, labels, value in seeded.execute(
            "select name, labels, value from monitor.metrics"
            " where labels ->> 'strategy' = 'alpha' and name like any (array['exposure.%', 'pnl.%'])"
        )
    } == {
        ("exposure.gross", "BTC", Decimal("0.1")),
        ("exposure.gross", "USDT", Decimal("6000")),
        ("exposure.net", "BTC", Decimal("0.1")),
        ("exposure.net", "USDT", Decimal("6000")),
        ("pnl.realized", "BTC", Decimal("-0.0001")),
        ("pnl.realized", "USDT", Decimal("-6")),
        ("pnl.realized_today", "BTC", Decimal("-0.0001")),
        ("pnl.realized_today", "USDT", Decimal("-6")),
        ("pnl.unrealized", "BTC", Decimal("0")),
        ("pnl.unrealized", "USDT", Decimal("0")),
    }
    assert values(seeded, "positions.open") == [({"strategy": "alpha"}, 2)]


def test_collected_trade_notional_is_a_series_per_period_and_quote_asset(seeded):
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "0.1", "60000", executed_at=NOW)
    trade(seeded, "buy", "2", "0.05", symbol="ETHBTC", executed_at=NOW)

    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert [
        (labels["quote_asset"], value)
        for labels, value in values(seeded, "trades.notional")
        if labels["period"] == "day"
    ] == [("BTC", Decimal("0.1")), ("USD", 0), ("USDT", Decimal("6000"))]


def test_an_alert_on_working_orders_resolves_once_the_strategy_has_none_left(seeded):
    order_id = place(seeded, "buy", "0.1", "60000")
    call(seeded, "monitor.add_alert_rule", name="alpha-working", kind="trading", operator=">",
         threshold=Decimal("0"), metric="orders.working", labels=Jsonb({"strategy": "alpha"}),
         aggregate="last", evaluation_window="10 minutes")  # fmt: skip
    call(seeded, "monitor.collect_metrics", collected_at=NOW)
    assert [r["transition"] for r in rows(seeded, "monitor.evaluate_alert_rules", evaluated_at=NOW)] == [
        "fired"
    ]

    call(seeded, "trading.cancel_order", order_id=order_id)
    later = NOW + timedelta(minutes=1)
    call(seeded, "monitor.collect_metrics", collected_at=later)

    assert [
        (r["transition"], r["value"])
        for r in rows(seeded, "monitor.evaluate_alert_rules", evaluated_at=later)
    ] == [("resolved", 0)]


def test_metrics_show_prints_times_in_utc_whatever_the_server_time_zone(seeded, db_url):
    database = seeded.execute("select current_database()").fetchone()[0]
    seeded.execute(
        sql.SQL("alter database {} set timezone = 'America/New_York'").format(sql.Identifier(database))
    )
    recorded_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    call(
        seeded, "monitor.record_metric", name="app.fills_behind", value=Decimal("3"), recorded_at=recorded_at
    )

    result = cli("metrics", "show", "--name", "app.fills_behind", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2].split()[-2:] == recorded_at.strftime("%Y-%m-%d %H:%M:%S").split()


def test_metrics_show_prints_labels_as_json(seeded, db_url):
    call(
        seeded,
        "monitor.record_metric",
        name="app.fills_behind",
        value=Decimal("3"),
        labels=Jsonb({"venue": "okx"}),
    )

    result = cli("metrics", "show", "--name", "app.fills_behind", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2].split()[:3] == ["app.fills_behind", '{"venue":', '"okx"}']


def test_db_connections_reads_zero_once_a_state_is_no_longer_seen(db, db_url):
    later = NOW + timedelta(minutes=1)
    with psycopg.connect(db_url) as other:
        other.execute("select 1")  # opens a transaction and leaves it idle in it
        call(db, "monitor.collect_metrics", collected_at=NOW)
    call(db, "monitor.collect_metrics", collected_at=later)

    assert db.execute(
        "select recorded_at, value from monitor.metrics"
        " where name = 'db.connections' and labels = '{\"state\": \"idle in transaction\"}' order by 1"
    ).fetchall() == [(NOW, 1), (later, 0)]


def test_every_collected_series_carries_the_labels_alert_rules_accept(seeded):
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "0.001", "60000")
    trade(seeded, "buy", "2", "0.05", symbol="ETHBTC")
    call(seeded, "monitor.collect_metrics", collected_at=NOW)
    stray = seeded.execute(
        """
        select m.name, m.labels
        from monitor.metrics m
        where array(select k from jsonb_object_keys(m.labels) k order by k)
                  <> array(select c.label from internal.collected_metric_label(m.name) c order by c.label)
           or exists (select
                      from jsonb_each_text(m.labels) l
                      join internal.collected_metric_label(m.name) c on c.label = l.key
                      where not coalesce(l.value = any (c.label_values), true)
                         or (c.label_values is null
                             and not exists (select from trading.strategies s where s.name = l.value)))
        """
    ).fetchall()
    assert stray == []
    assert (
        seeded.execute("select count(distinct name) from monitor.metrics where labels <> '{}'").fetchone()[0]
        == seeded.execute(
            "select count(*) from monitor.metric_catalog c where exists (select from internal.collected_metric_label(c.name))"
        ).fetchone()[0]
    )
