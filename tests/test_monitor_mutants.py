"""Rules of the risk check, the alert evaluation, the metrics and the outbox that a plausible slip
in their SQL (a dropped multiplier, a flipped comparison, a lost condition) broke without any other
test noticing: each test here kills one such mutant (see the mutation run of the monitor files).
Every expected value is worked out by hand in its comment."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import Jsonb

from market_helpers import quote, tick
from monitor_helpers import add_rule, evaluate, metric, notifications
from test_monitor_risk import limit, risk_events
from trading_helpers import call, fill, order, place, rows, trade

NOW = datetime.now(UTC).replace(microsecond=0)
# okx's BTC/USDT perpetual of the seed: 0.01 BTC a contract
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}

# -- pre-trade risk limits ---------------------------------------------------------------------------


def test_a_perpetual_orders_notional_is_its_contracts_times_the_multiplier_times_the_price(seeded):
    limit(seeded, max_order_notional=Decimal("7000"))

    placed = place(seeded, "buy", "10", "60000", **SWAP)  # 10 x 0.01 x 60000 = 6000
    rejected = place(seeded, "buy", "12", "60000", **SWAP)  # 12 x 0.01 x 60000 = 7200

    reason = "order notional 7200 exceeds max_order_notional 7000"
    assert (order(seeded, placed)["status"], order(seeded, rejected)["status_reason"]) == ("new", reason)
    assert risk_events(seeded) == [(rejected, "max_order_notional", 7000, Decimal("7200.00"), reason)]
    assert len(notifications(seeded)) == 1


def test_a_partially_filled_order_counts_as_working_against_max_open_orders(seeded):
    limit(seeded, max_open_orders=2)
    partly = place(seeded, "buy", "0.02", "60000")
    fill(seeded, partly, "0.01", "60000")
    second = place(seeded, "buy", "0.01", "60000")  # the partly filled order and this one: 2

    third = place(seeded, "buy", "0.01", "60000")  # 3 with the partly filled one

    assert [order(seeded, o)["status"] for o in (partly, second)] == ["partially_filled", "new"]
    assert order(seeded, third)["status_reason"] == "3 working orders with this one exceed max_open_orders 2"


def test_an_exchange_max_open_orders_leaves_the_working_orders_of_other_exchanges_out(seeded):
    limit(seeded, exchange="kraken", max_open_orders=1)
    on_binance = place(seeded, "buy", "0.01", "60000")

    first = place(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")  # kraken's only one
    second = place(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")  # kraken's second

    assert [order(seeded, o)["status"] for o in (on_binance, first)] == ["new", "new"]
    assert order(seeded, second)["status_reason"] == "2 working orders with this one exceed max_open_orders 1"


def test_a_perpetual_orders_position_notional_is_its_contracts_times_the_multiplier_times_the_price(seeded):
    limit(seeded, max_position_notional=Decimal("7000"))

    placed = place(seeded, "buy", "10", "60000", **SWAP)  # 10 x 0.01 x 60000 = 6000
    rejected = place(seeded, "buy", "12", "60000", **SWAP)  # 12 x 0.01 x 60000 = 7200

    assert (order(seeded, placed)["status"], order(seeded, rejected)["status_reason"]) == (
        "new",
        "position notional 7200 after the order exceeds max_position_notional 7000",
    )
    assert risk_events(seeded)[0][:4] == (rejected, "max_position_notional", 7000, Decimal("7200.00"))


def test_an_exchange_position_limit_leaves_another_exchanges_position_in_its_quote_asset_out(seeded):
    # okx's perpetual is quoted in USDT as binance's BTCUSDT is: only the exchange tells them apart
    trade(seeded, "buy", "10", "60000", **SWAP)  # 10 x 0.01 x 60000 = 6000
    limit(seeded, exchange="binance", max_position_notional=Decimal("1000"))

    placed = place(seeded, "buy", "0.01", "60000")  # 600 on binance, 6600 with okx's position
    rejected = place(seeded, "buy", "0.02", "60000")  # 1200 on binance

    assert (order(seeded, placed)["status"], order(seeded, rejected)["status"]) == ("new", "rejected")
    assert risk_events(seeded)[0][::3] == (rejected, Decimal("1200.00"))


def test_a_short_position_adds_its_size_to_the_strategys_position_notional(seeded):
    trade(seeded, "sell", "10", "60000", **SWAP)  # short: 10 x 0.01 x 60000 = 6000
    limit(seeded, max_position_notional=Decimal("7000"))

    placed = place(seeded, "buy", "0.01", "60000")  # 600 + 6000 = 6600
    rejected = place(seeded, "buy", "0.02", "60000")  # 1200 + 6000 = 7200 (netted: 1200 - 6000 = -4800)

    assert (order(seeded, placed)["status"], order(seeded, rejected)["status"]) == ("new", "rejected")
    assert risk_events(seeded)[0][::3] == (rejected, Decimal("7200.00"))


def test_an_exchange_daily_loss_limit_leaves_another_exchanges_loss_in_its_quote_asset_out(seeded):
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "10", "60000", **SWAP)
        trade(seeded, "sell", "10", "59000", **SWAP)  # 10 x 0.01 x -1000 = -100
        limit(seeded, exchange="binance", max_daily_loss=Decimal("100"))
        limit(seeded, exchange="okx", max_daily_loss=Decimal("100"))

        on_binance = place(seeded, "buy", "0.01", "60000")  # USDT too, but binance lost nothing
        on_okx = place(seeded, "buy", "1", "59000", **SWAP)

    assert (order(seeded, on_binance)["status"], order(seeded, on_okx)["status"]) == ("new", "rejected")
    assert order(seeded, on_okx)["status_reason"] == "realized loss today 100 reached max_daily_loss 100"


def test_turning_off_a_kill_switch_never_turned_on_records_and_notifies_nothing(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", exchange="okx", enabled=False)

    assert risk_events(seeded) == []
    assert notifications(seeded) == []
    assert seeded.execute("select count(*) from monitor.risk_limits").fetchone() == (0,)


def test_setting_another_limit_keeps_the_max_order_notional_already_set(seeded):
    limit(seeded, max_order_notional=Decimal("1000"))
    limit(seeded, max_daily_loss=Decimal("100"))  # max_order_notional not given: kept

    rejected = place(seeded, "buy", "0.02", "60000")  # 0.02 x 60000 = 1200

    assert seeded.execute(
        "select max_order_notional, max_daily_loss from monitor.risk_limits"
    ).fetchone() == (
        Decimal("1000"),
        Decimal("100"),
    )
    assert order(seeded, rejected)["status_reason"] == "order notional 1200 exceeds max_order_notional 1000"


def test_an_instrument_position_limit_in_a_limit_asset_leaves_the_strategys_other_positions_out(seeded):
    trade(seeded, "buy", "1", "600", symbol="BNBUSDT")  # 600 USDT of BNB
    limit(
        seeded,
        exchange="binance",
        symbol="BTCUSDT",
        max_position_notional=Decimal("1000"),
        limit_asset="USDT",
    )

    placed = place(seeded, "buy", "0.01", "60000")  # 600, or 1200 with the BNB position
    rejected = place(seeded, "buy", "0.02", "60000")  # 1200

    assert (order(seeded, placed)["status"], order(seeded, rejected)["status"]) == ("new", "rejected")
    assert risk_events(seeded)[0][::3] == (rejected, Decimal("1200"))


def test_an_instrument_daily_loss_limit_in_a_limit_asset_counts_only_that_instruments_loss(seeded):
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "1", "600", symbol="BNBUSDT")
        trade(seeded, "sell", "1", "500", symbol="BNBUSDT")  # a loss of 100 USDT on BNBUSDT
        for symbol in ("BTCUSDT", "BNBUSDT"):
            limit(
                seeded, exchange="binance", symbol=symbol, max_daily_loss=Decimal("100"), limit_asset="USDT"
            )

        btc = place(seeded, "buy", "0.01", "60000")
        bnb = place(seeded, "buy", "1", "500", symbol="BNBUSDT")

    assert (order(seeded, btc)["status"], order(seeded, bnb)["status_reason"]) == (
        "new",
        "realized loss today 100 USDT reached max_daily_loss 100 USDT",
    )


# -- alert rules and their evaluation ----------------------------------------------------------------


def test_a_price_rules_last_skips_a_newer_quote_with_an_empty_side(seeded):
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")
    quote(seeded, NOW - timedelta(minutes=2), "70999", "71001")  # both sides: a mid of 71000
    quote(seeded, NOW - timedelta(minutes=1), "60000", "60002", bid_size="0")  # no bid: no price

    assert evaluate(seeded, NOW) == [("btc-above-70k", "fired", Decimal("71000"), False)]


def test_a_volume_rule_leaves_a_tick_at_the_start_of_its_window_out(seeded):
    add_rule(seeded, "btc-volume", "volume", ">", "0.5", exchange="binance", symbol="BTCUSDT",
             evaluation_window=timedelta(minutes=5))  # fmt: skip
    tick(seeded, NOW - timedelta(minutes=5), "60000", "2", trade_id="at-start")  # window (NOW - 5 min, NOW]
    tick(seeded, NOW - timedelta(minutes=1), "60000", "1", trade_id="inside")

    assert evaluate(seeded, NOW) == [("btc-volume", "fired", Decimal("1"), False)]  # 1, not 1 + 2


def test_an_evaluation_window_a_second_over_31_days_is_refused_when_added(seeded):
    with pytest.raises(psycopg.Error) as caught:
        add_rule(seeded, "too-long", "system", ">", "0", metric="db.commits",
                 evaluation_window=timedelta(days=31, seconds=1))  # fmt: skip
    assert caught.value.sqlstate == "22S12"
    assert caught.value.diag.message_primary.startswith(
        "evaluation window must be more than 0 and at most 31 days"
    )
    assert seeded.execute("select count(*) from monitor.alert_rules").fetchone() == (0,)


def test_a_min_rule_on_a_metric_reads_the_smallest_value_of_the_window(seeded):
    for minutes_ago, value in {4: "3", 3: "1", 2: "2"}.items():
        metric(seeded, "app.standby_lag", value, NOW - timedelta(minutes=minutes_ago))
    add_rule(seeded, "standby-lag", "system", ">", "0", metric="app.standby_lag", aggregate="min")

    assert evaluate(seeded, NOW) == [("standby-lag", "fired", Decimal("1"), False)]  # min of 3, 1, 2


def test_a_firing_exactly_one_cooldown_after_the_last_notified_one_is_notified(seeded):
    t0 = NOW - timedelta(minutes=30)
    for minutes, depth in {0: "150", 5: "50", 10: "150"}.items():
        metric(seeded, "app.queue_depth", depth, t0 + timedelta(minutes=minutes))
    add_rule(seeded, "queue-deep", "system", ">", "100", metric="app.queue_depth", channels=["email"],
             cooldown=timedelta(minutes=10), evaluation_window=timedelta(minutes=1))  # fmt: skip

    transitions = [t for minutes in (0, 5, 10) for t in evaluate(seeded, t0 + timedelta(minutes=minutes))]

    # notified at t0; the cooldown is over at t0 + 10 minutes exactly (last notified <= at - cooldown)
    assert [(t[1], t[3]) for t in transitions] == [("fired", True), ("resolved", True), ("fired", True)]
    assert len(notifications(seeded)) == 3


def test_disabling_a_rule_whose_alert_opened_silently_inside_the_cooldown_notifies_nothing(seeded):
    t0 = NOW - timedelta(minutes=30)
    for minutes, depth in {0: "150", 5: "50", 10: "150"}.items():
        metric(seeded, "app.queue_depth", depth, t0 + timedelta(minutes=minutes))
    add_rule(seeded, "queue-deep", "system", ">", "100", metric="app.queue_depth", channels=["email"],
             cooldown=timedelta(minutes=30), evaluation_window=timedelta(minutes=1))  # fmt: skip
    transitions = [t for minutes in (0, 5, 10) for t in evaluate(seeded, t0 + timedelta(minutes=minutes))]
    assert [(t[1], t[3]) for t in transitions] == [("fired", True), ("resolved", True), ("fired", False)]

    call(seeded, "monitor.set_alert_rule_enabled", name="queue-deep", enabled=False)

    assert seeded.execute(
        "select transition::text, notified from monitor.alert_events order by event_id desc limit 1"
    ).fetchone() == ("resolved", False)
    assert len(notifications(seeded)) == 2  # the first firing and its resolution only


# -- collected metrics -------------------------------------------------------------------------------


def test_the_collected_unrealized_pnl_of_a_perpetual_counts_its_multiplier(seeded):
    trade(seeded, "buy", "10", "60000", **SWAP)
    quote(seeded, NOW - timedelta(minutes=1), "60999", "61001", **SWAP)

    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert seeded.execute(
        "select value from monitor.metrics where name = 'pnl.unrealized' and labels = %s",
        [Jsonb({"strategy": "alpha", "quote_asset": "USDT"})],
    ).fetchall() == [(Decimal("100"),)]  # 10 contracts x 0.01 BTC x (61000 - 60000)


def test_a_flat_position_is_not_counted_among_the_open_positions(seeded):
    trade(seeded, "buy", "0.01", "60000")
    trade(seeded, "sell", "0.01", "60000")  # BTC flat again: its position row stays
    trade(seeded, "buy", "1", "600", symbol="BNBUSDT")

    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert seeded.execute(
        "select labels ->> 'strategy', value from monitor.metrics where name = 'positions.open'"
    ).fetchall() == [("alpha", Decimal("1"))]  # BNB only


def test_the_hours_volume_of_an_instrument_unchanged_for_days_is_its_contracts_times_the_multiplier(seeded):
    trade(seeded, "buy", "10", "60000", **SWAP, executed_at=NOW)
    # why: the rollups are read (not the trades) only for an instrument whose rules last changed
    # at least 24 hours before the period began; the seed listed it just now
    seeded.execute(
        "update ref.instruments set updated_at = now() - interval '3 days' where symbol = 'BTC-USDT-SWAP'"
    )

    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert seeded.execute(
        "select labels ->> 'period', value from monitor.metrics where name = 'trades.volume' order by 1"
    ).fetchall() == [("day", Decimal("0.10")), ("hour", Decimal("0.10"))]  # 10 contracts x 0.01 BTC


def test_a_resolved_alert_is_not_counted_among_the_open_alerts(seeded):
    t0 = NOW - timedelta(minutes=30)
    metric(seeded, "app.queue_depth", "150", t0)
    metric(seeded, "app.queue_depth", "50", t0 + timedelta(minutes=5))
    add_rule(seeded, "queue-deep", "system", ">", "100", metric="app.queue_depth",
             evaluation_window=timedelta(minutes=1))  # fmt: skip
    add_rule(seeded, "queue-peak", "system", ">", "100", metric="app.queue_depth", aggregate="max",
             severity="critical", evaluation_window=timedelta(hours=1))  # fmt: skip
    transitions = evaluate(seeded, t0) + evaluate(seeded, t0 + timedelta(minutes=5))
    assert [t[:2] for t in transitions] == [
        ("queue-deep", "fired"),
        ("queue-peak", "fired"),
        ("queue-deep", "resolved"),
    ]

    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert seeded.execute(
        "select labels ->> 'severity', value from monitor.metrics where name = 'alerts.open' order by 1"
    ).fetchall() == [("critical", 1), ("info", 0), ("warning", 0)]  # queue-peak open, queue-deep resolved


def test_a_claim_committed_without_a_report_still_counts_as_pending(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)  # one email queued
    claimed = rows(seeded, "monitor.claim_notifications", worker="w1", channels=["email"])  # autocommit

    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert len(claimed) == 1
    assert seeded.execute(
        "select name, value from monitor.metrics where name like 'notifications.%' order by 1"
    ).fetchall() == [("notifications.dead", 0), ("notifications.pending", 1)]  # delivering, to be taken again


# -- monitor views -----------------------------------------------------------------------------------


def test_the_open_positions_views_gross_exposure_adds_a_short_at_its_size(seeded):
    trade(seeded, "buy", "0.1", "60000")  # long 0.1 x 60000 = 6000
    trade(seeded, "sell", "10", "60000", **SWAP)  # short 10 x 0.01 x 60000 = 6000

    assert seeded.execute(
        "select strategy, quote_asset, open_positions, gross_exposure, net_exposure from monitor.open_positions"
    ).fetchall() == [
        ("alpha", "USDT", 2, Decimal("12000"), Decimal("0"))
    ]  # gross 6000 + 6000, net 6000 - 6000


def test_trades_per_period_shows_the_current_hour_and_the_47_before_it(seeded):
    # one transaction: the view's now() is the now() its hours are worked out from
    with seeded.transaction():
        hour = seeded.execute("select date_trunc('hour', now(), 'UTC')").fetchone()[0]
        trade(seeded, "buy", "0.01", "60000", executed_at=hour - timedelta(hours=47, minutes=-30))
        trade(seeded, "buy", "0.02", "60000", executed_at=hour - timedelta(hours=48, minutes=-30))  # the 49th
        shown = seeded.execute(
            "select period_start, trades, notional from monitor.trades_per_period where period = 'hour'"
        ).fetchall()

    assert shown == [(hour - timedelta(hours=47), 1, Decimal("600"))]  # 0.01 x 60000
