"""Alert rules: each kind fires, the cooldown holds back notifications, alerts resolve by themselves,
acknowledgements, every transition recorded, and broken rules refused when they are added."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from market_helpers import quote, tick
from monitor_helpers import add_rule, evaluate, metric, notifications
from trading_helpers import call, list_binance_eth_btc, place, trade, waits_for_a_lock

NOW = datetime.now(UTC).replace(microsecond=0)


def test_a_price_rule_fires_when_the_mark_price_crosses_its_threshold(seeded):
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT",
             channels=["slack", "email"], severity="critical")  # fmt: skip
    quote(seeded, NOW - timedelta(seconds=30), "70999", "71001")
    assert evaluate(seeded, NOW) == [("btc-above-70k", "fired", Decimal("71000"), True)]
    assert notifications(seeded) == [
        (
            "email",
            "pending",
            "[CRITICAL] btc-above-70k fired: price binance/BTCUSDT last = 71000 (threshold > 70000)",
        ),
        (
            "slack",
            "pending",
            "[CRITICAL] btc-above-70k fired: price binance/BTCUSDT last = 71000 (threshold > 70000)",
        ),
    ]


def test_a_price_change_rule_compares_the_last_and_first_tick_of_the_window(seeded):
    add_rule(seeded, "btc-drop", "price", "<=", "-5", exchange="binance", symbol="BTCUSDT",
             aggregate="change_pct", evaluation_window=timedelta(minutes=10))  # fmt: skip
    tick(seeded, NOW - timedelta(minutes=20), "80000", trade_id="t0")  # outside the window
    tick(seeded, NOW - timedelta(minutes=9), "60000", trade_id="t1")
    tick(seeded, NOW - timedelta(minutes=1), "57000", trade_id="t2")
    assert evaluate(seeded, NOW) == [("btc-drop", "fired", Decimal("-5.000000"), False)]


def test_a_volume_rule_fires_on_the_traded_quantity_of_the_window(seeded):
    add_rule(seeded, "btc-volume", "volume", ">=", "3", exchange="binance", symbol="BTCUSDT")
    tick(seeded, NOW - timedelta(minutes=1), "60000", "1.5", trade_id="v1")
    tick(seeded, NOW - timedelta(minutes=2), "60000", "1.5", trade_id="v2")
    assert evaluate(seeded, NOW) == [("btc-volume", "fired", Decimal("3.0"), False)]


def test_a_risk_rule_fires_on_a_collected_risk_metric(seeded):
    place(seeded, "buy", "0.01", "60000")
    add_rule(
        seeded, "alpha-working", "trading", ">", "0", metric="orders.working", labels={"strategy": "alpha"}
    )
    add_rule(
        seeded, "alpha-exposure", "risk", ">", "50", metric="exposure.gross",
        labels={"strategy": "alpha", "quote_asset": "USDT"},
    )  # fmt: skip
    call(seeded, "monitor.collect_metrics", collected_at=NOW)
    assert evaluate(seeded, NOW) == [("alpha-working", "fired", Decimal("1"), False)]
    trade(seeded, "buy", "0.001", "60000")
    call(seeded, "monitor.collect_metrics", collected_at=NOW + timedelta(seconds=1))
    assert evaluate(seeded, NOW + timedelta(seconds=1)) == [
        ("alpha-exposure", "fired", Decimal("60.000"), False)
    ]


def test_a_rule_on_the_exposure_in_one_quote_asset_leaves_the_other_quote_assets_out(seeded):
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "0.1", "60000")
    trade(seeded, "buy", "2", "0.05", symbol="ETHBTC")
    add_rule(seeded, "alpha-usdt", "risk", ">", "6000", metric="exposure.gross",
             labels={"strategy": "alpha", "quote_asset": "USDT"})  # fmt: skip
    add_rule(seeded, "alpha-btc", "risk", ">", "0.05", metric="exposure.gross",
             labels={"strategy": "alpha", "quote_asset": "BTC"})  # fmt: skip

    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert evaluate(seeded, NOW) == [("alpha-btc", "fired", Decimal("0.1"), False)]


def test_a_system_rule_fires_on_a_database_metric(seeded):
    add_rule(seeded, "db-has-size", "system", ">", "0", metric="db.size_bytes")
    call(seeded, "monitor.collect_metrics", collected_at=NOW)
    [(rule, transition, value, _notified)] = evaluate(seeded, NOW)
    assert (rule, transition, value > 0) == ("db-has-size", "fired", True)


def test_a_rule_on_a_custom_metric_averages_the_window(seeded):
    add_rule(
        seeded, "latency", "system", ">", "100", metric="app.latency_ms", aggregate="avg"
    ) if False else None
    metric(seeded, "app.latency_ms", "90", NOW - timedelta(minutes=2), venue="okx")
    metric(seeded, "app.latency_ms", "130", NOW - timedelta(minutes=1), venue="okx")
    metric(seeded, "app.latency_ms", "900", NOW - timedelta(minutes=1), venue="kraken")
    add_rule(seeded, "okx-latency", "system", ">", "100", metric="app.latency_ms", aggregate="avg",
             labels={"venue": "okx"})  # fmt: skip
    assert evaluate(seeded, NOW) == [("okx-latency", "fired", Decimal("110"), False)]


def test_an_alert_resolves_when_its_condition_clears_and_the_resolution_is_notified(seeded):
    add_rule(
        seeded,
        "btc-above-70k",
        "price",
        ">",
        "70000",
        exchange="binance",
        symbol="BTCUSDT",
        channels=["webhook"],
    )
    quote(seeded, NOW - timedelta(minutes=2), "70999", "71001")
    evaluate(seeded, NOW - timedelta(minutes=1))
    assert evaluate(seeded, NOW - timedelta(minutes=1)) == []  # still firing: no transition
    quote(seeded, NOW - timedelta(seconds=10), "68999", "69001")
    assert evaluate(seeded, NOW) == [("btc-above-70k", "resolved", Decimal("69000"), True)]
    assert [n[2].split(":")[0] for n in notifications(seeded)] == [
        "[WARNING] btc-above-70k fired",
        "[WARNING] btc-above-70k resolved",
    ]
    assert seeded.execute("select status::text, resolved_value from monitor.alerts").fetchall() == [
        ("resolved", Decimal("69000"))
    ]


def test_a_rule_firing_again_inside_its_cooldown_opens_an_alert_without_notifying(seeded):
    depths = {40: "150", 25: "50", 15: "150", 5: "50", 1: "150"}  # minutes ago: queue depth
    for minutes_ago, depth in depths.items():
        metric(seeded, "app.queue_depth", depth, NOW - timedelta(minutes=minutes_ago))
    add_rule(seeded, "queue-deep", "system", ">", "100", metric="app.queue_depth", channels=["email"],
             cooldown=timedelta(minutes=30), evaluation_window=timedelta(minutes=1))  # fmt: skip
    transitions = []
    for minutes_ago in depths:
        transitions += evaluate(seeded, NOW - timedelta(minutes=minutes_ago))
    assert [(t[1], t[3]) for t in transitions] == [
        ("fired", True),  # notified
        ("resolved", True),
        ("fired", False),  # 25 minutes after the notified firing: inside the cooldown
        ("resolved", False),  # its firing was not notified
        ("fired", True),  # 39 minutes after: the cooldown is over
    ]
    assert len(notifications(seeded)) == 3


def test_acknowledging_an_alert_records_the_transition_and_it_still_resolves(seeded):
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")
    quote(seeded, NOW - timedelta(minutes=2), "70999", "71001")
    evaluate(seeded, NOW - timedelta(minutes=1))
    alert_id = seeded.execute("select alert_id from monitor.alerts").fetchone()[0]
    call(seeded, "monitor.acknowledge_alert", alert_id=alert_id, acknowledged_by="alice")
    call(seeded, "monitor.acknowledge_alert", alert_id=alert_id, acknowledged_by="bob")  # idempotent
    quote(seeded, NOW - timedelta(seconds=10), "68999", "69001")
    evaluate(seeded)  # at now(): not before the acknowledgements (stamped now())
    events = seeded.execute(
        "select transition::text, value, actor from monitor.alert_events order by event_id"
    ).fetchall()
    assert events == [
        ("fired", Decimal("71000"), None),
        ("acknowledged", None, "alice"),
        ("resolved", Decimal("69000"), None),
    ]
    assert seeded.execute("select status::text, acknowledged_by from monitor.alert_list").fetchone() == (
        "resolved",
        "alice",
    )


def test_a_resolved_alert_cannot_be_acknowledged(seeded):
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")
    quote(seeded, NOW - timedelta(minutes=2), "70999", "71001")
    evaluate(seeded, NOW - timedelta(minutes=1))
    quote(seeded, NOW - timedelta(seconds=10), "68999", "69001")
    evaluate(seeded, NOW)
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.acknowledge_alert", alert_id=1)
    assert caught.value.sqlstate == "55S05"
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.acknowledge_alert", alert_id=999)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("23S14", "alert 999 does not exist")


def test_a_rule_without_data_in_its_window_changes_nothing(seeded):
    add_rule(seeded, "okx-latency", "system", ">", "100", metric="db.oldest_xact_age")
    assert evaluate(seeded, NOW) == []
    assert seeded.execute("select count(*) from monitor.alerts").fetchone()[0] == 0


def test_a_disabled_rule_is_not_evaluated(seeded):
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")
    call(seeded, "monitor.set_alert_rule_enabled", name="btc-above-70k", enabled=False)
    quote(seeded, NOW - timedelta(minutes=2), "70999", "71001")
    assert evaluate(seeded, NOW) == []


def test_a_rule_on_an_unknown_metric_is_refused_when_added(seeded):
    with pytest.raises(psycopg.Error) as caught:
        add_rule(seeded, "typo", "system", ">", "1", metric="db.sise_bytes")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S12",
        'metric "db.sise_bytes" does not exist',
    )


@pytest.mark.parametrize(
    ("kind", "arguments", "message"),
    [
        ("system", {"operator": "=>"}, 'operator must be one of >, >=, <, <=, =, <>, got "=>"'),
        ("weather", {}, 'kind must be price, volume, risk, system or trading, got "weather"'),
        ("risk", {"metric": "db.size_bytes"},
         'the metric of a risk rule must be a risk or custom metric, got "db.size_bytes (a system metric)"'),
        ("price", {"metric": None}, 'a price rule\'s exchange and symbol must be both given, got ""'),
        ("volume", {"metric": None, "exchange": "binance", "symbol": "BTCUSDT", "aggregate": "avg"},
         'the aggregate of a volume rule must be one of sum, count, got "avg"'),
        ("system", {"evaluation_window": timedelta(0)}, 'evaluation window must be more than 0 and at most 31 days, with no negative part, got "00:00:00"'),
        ("system", {"channels": ["pager"]}, 'channels must be a list of email, slack, discord, webhook, got "{pager}"'),
        ("system", {"severity": "panic"}, 'severity must be info, warning or critical, got "panic"'),
        ("system", {"threshold": Decimal("NaN")}, 'threshold must be a finite number, got "NaN"'),
    ],
)  # fmt: skip
def test_a_malformed_rule_is_refused_when_added(seeded, kind, arguments, message):
    arguments = {"operator": ">", "threshold": Decimal("1"), "metric": "db.size_bytes", **arguments}
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.add_alert_rule", name="broken", kind=kind, **arguments)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S12", message)
    assert seeded.execute("select count(*) from monitor.alert_rules").fetchone()[0] == 0


# Labels on a rule over market data (bug: accepted and ignored; a strategy label showed the rule to
# that strategy's traders)
@pytest.mark.parametrize("kind", ["price", "volume"])
def test_a_market_data_rule_with_labels_is_refused_when_added(seeded, kind):
    with pytest.raises(psycopg.Error) as caught:
        add_rule(seeded, "labelled", kind, ">", "1", exchange="binance", symbol="BTCUSDT",
                 labels={"strategy": "alpha"})  # fmt: skip
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S12",
        f"a {kind} rule's labels must be {{}} (it watches exchange and symbol, not a metric's series),"
        ' got "{"strategy": "alpha"}"',
    )
    assert seeded.execute("select count(*) from monitor.alert_rules").fetchone()[0] == 0


# Labels that no collected series carries (bug: accepted, and the rule never fired)
@pytest.mark.parametrize(
    ("metric", "labels", "message"),
    [
        ("db.size_bytes", {"strategy": "alpha"},
         'a label of db.size_bytes must be absent ({}: its series have no labels), got "strategy"'),
        ("trades.count", {"strategy": "alpha"},
         'a label of trades.count must be period (its only label), got "strategy"'),
        ("trades.notional", {"strategy": "alpha"},
         'a label of trades.notional must be one of period, quote_asset, got "strategy"'),
        ("exposure.gross", {"strategy": "alpha"},
         'the labels of exposure.gross must be an object naming its quote_asset (amounts in different'
         ' quote assets do not add up), got "{"strategy": "alpha"}"'),
        ("pnl.realized_today", {"quote_asset": "EUR"},
         'the quote_asset label of pnl.realized_today must be one of USD, USDT, got "EUR"'),
        ("orders.by_status", {"status": "filed"},
         "the status label of orders.by_status must be one of new, open, partially_filled, filled,"
         ' cancelled, rejected, expired, got "filed"'),
        ("orders.working", {"strategy": 1},
         'the strategy label of orders.working must be a strategy name (a string), got "1"'),
    ],
)  # fmt: skip
def test_a_rule_with_a_label_its_collected_metric_never_has_is_refused_when_added(
    seeded, metric, labels, message
):
    kind = seeded.execute("select category from monitor.metric_catalog where name = %s", [metric]).fetchone()[
        0
    ]
    with pytest.raises(psycopg.Error) as caught:
        add_rule(seeded, "never-fires", kind, ">", "0", metric=metric, labels=labels)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S12", message)
    assert seeded.execute("select count(*) from monitor.alert_rules").fetchone()[0] == 0


def test_a_rule_with_a_misspelt_strategy_label_is_refused_when_added(seeded):
    with pytest.raises(psycopg.Error) as caught:
        add_rule(
            seeded,
            "alpha-loss",
            "risk",
            "<",
            "-5000",
            metric="pnl.realized_today",
            labels={"strategy": "alpah"},
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S03",
        'strategy "alpah" does not exist',
    )
    assert seeded.execute("select count(*) from monitor.alert_rules").fetchone()[0] == 0


def test_a_rule_may_give_any_labels_on_a_custom_metric(seeded):
    metric(seeded, "app.lag_ms", "300", NOW - timedelta(minutes=1), venue="okx")
    add_rule(seeded, "okx-lag", "system", ">", "200", metric="app.lag_ms", labels={"venue": "okx"})
    assert evaluate(seeded, NOW) == [("okx-lag", "fired", Decimal("300"), False)]


def test_a_rule_name_is_taken_once(seeded):
    add_rule(seeded, "db-size", "system", ">", "1", metric="db.size_bytes")
    with pytest.raises(psycopg.Error) as caught:
        add_rule(seeded, "db-size", "system", ">", "2", metric="db.size_bytes")
    assert caught.value.sqlstate == "23S15"


# A rule that flaps inside its cooldown and then keeps firing (bug: never notified again)
T0 = NOW - timedelta(hours=2)
FIRED = "[WARNING] cool-test fired: app.cool_test last = 20 (threshold > 10)"
RESOLVED = "[WARNING] cool-test resolved: app.cool_test last = 5 (threshold > 10)"


def _fire_resolve_and_fire_again_inside_the_cooldown(conn: psycopg.Connection) -> None:
    """cool-test (> 10, 1-minute window, 15-minute cooldown, slack): fired and notified at T0,
    resolved at T0 + 2 min, fired again silently at T0 + 4 min."""
    metric(conn, "app.cool_test", "0", T0 - timedelta(days=1))
    add_rule(conn, "cool-test", "system", ">", "10", metric="app.cool_test", channels=["slack"],
             evaluation_window=timedelta(minutes=1), cooldown=timedelta(minutes=15))  # fmt: skip
    for minute, value in ((0, "20"), (2, "5"), (4, "20")):
        metric(conn, "app.cool_test", value, T0 + timedelta(minutes=minute))
        evaluate(conn, T0 + timedelta(minutes=minute))
    notified = conn.execute("select notified from monitor.alerts order by alert_id").fetchall()
    assert notified == [(True,), (False,)]


def _still_firing(conn: psycopg.Connection, minutes: range) -> dict[int, list]:
    """Record 20 and evaluate at each minute after T0; the transitions of the minutes that made any."""
    transitions = {}
    for minute in minutes:
        metric(conn, "app.cool_test", "20", T0 + timedelta(minutes=minute))
        transitions[minute] = evaluate(conn, T0 + timedelta(minutes=minute))
    return {minute: made for minute, made in transitions.items() if made}


def test_an_alert_opened_inside_the_cooldown_is_notified_once_when_the_cooldown_is_over(seeded):
    _fire_resolve_and_fire_again_inside_the_cooldown(seeded)
    assert _still_firing(seeded, range(5, 31)) == {15: [("cool-test", "fired", Decimal("20"), True)]}
    assert notifications(seeded) == [
        ("slack", "pending", FIRED),
        ("slack", "pending", RESOLVED),
        ("slack", "pending", FIRED),
    ]


def test_a_late_notified_firing_is_recorded_and_restarts_the_cooldown(seeded):
    _fire_resolve_and_fire_again_inside_the_cooldown(seeded)
    _still_firing(seeded, range(14, 16))
    events = seeded.execute(
        "select alert_id, transition::text, value, notified, occurred_at from monitor.alert_events"
        " where alert_id = 2 order by event_id"
    ).fetchall()
    assert events == [
        (2, "fired", Decimal("20"), False, T0 + timedelta(minutes=4)),
        (2, "fired", Decimal("20"), True, T0 + timedelta(minutes=15)),
    ]
    assert seeded.execute(
        "select a.status::text, a.notified, r.last_notified_at from monitor.alerts a"
        " join monitor.alert_rules r using (rule_id) where a.alert_id = 2"
    ).fetchone() == ("firing", True, T0 + timedelta(minutes=15))


def test_the_resolution_of_a_late_notified_alert_is_notified(seeded):
    _fire_resolve_and_fire_again_inside_the_cooldown(seeded)
    _still_firing(seeded, range(15, 16))
    metric(seeded, "app.cool_test", "5", T0 + timedelta(minutes=16))
    assert evaluate(seeded, T0 + timedelta(minutes=16)) == [("cool-test", "resolved", Decimal("5"), True)]
    assert [n[2] for n in notifications(seeded)][-1] == RESOLVED


def test_an_acknowledged_alert_opened_inside_the_cooldown_is_not_notified_late(seeded):
    _fire_resolve_and_fire_again_inside_the_cooldown(seeded)
    call(seeded, "monitor.acknowledge_alert", alert_id=2, acknowledged_by="alice")
    assert _still_firing(seeded, range(5, 31)) == {}
    assert len(notifications(seeded)) == 2


# Rules without labels on a metric with several series (bug: last took an arbitrary series)
@pytest.mark.parametrize("recording_order", [("alpha", "beta"), ("beta", "alpha")])
def test_a_last_rule_without_labels_on_several_series_takes_their_total_in_any_recording_order(
    seeded, recording_order
):
    metric(seeded, "app.loss_today", "0", NOW - timedelta(days=2))
    add_rule(seeded, "all-strategies-loss", "risk", "<", "-5000", metric="app.loss_today")
    collected = NOW - timedelta(minutes=1)
    losses = {"alpha": "-6000", "beta": "100"}
    for strategy in recording_order:
        metric(seeded, "app.loss_today", losses[strategy], collected, strategy=strategy)
    assert evaluate(seeded, NOW) == [("all-strategies-loss", "fired", Decimal("-5900"), False)]


def test_a_last_rule_without_a_strategy_label_on_a_collected_amount_watches_every_strategy_together(seeded):
    trade(seeded, "buy", "0.1", "60000", strategy="alpha")
    trade(seeded, "buy", "0.05", "60000", strategy="beta")
    add_rule(
        seeded, "gross-exposure", "risk", ">", "8000", metric="exposure.gross", labels={"quote_asset": "USDT"}
    )
    call(seeded, "monitor.collect_metrics", collected_at=NOW)
    assert evaluate(seeded, NOW) == [("gross-exposure", "fired", Decimal("9000"), False)]


def test_a_last_rule_counts_the_latest_value_of_a_series_recorded_earlier_than_another(seeded):
    metric(seeded, "app.lag_ms", "400", NOW - timedelta(minutes=3), venue="okx")
    metric(seeded, "app.lag_ms", "300", NOW - timedelta(minutes=2), venue="okx")
    metric(seeded, "app.lag_ms", "250", NOW - timedelta(seconds=30), venue="kraken")
    add_rule(seeded, "total-lag", "system", ">", "500", metric="app.lag_ms")
    assert evaluate(seeded, NOW) == [("total-lag", "fired", Decimal("550"), False)]


def test_a_change_pct_rule_without_labels_compares_the_total_of_each_series_last_and_first_values(seeded):
    for minutes_ago, alpha, beta in ((4, "100", "100"), (1, "150", "100")):
        metric(seeded, "app.capital", alpha, NOW - timedelta(minutes=minutes_ago), strategy="alpha")
        metric(seeded, "app.capital", beta, NOW - timedelta(minutes=minutes_ago), strategy="beta")
    add_rule(seeded, "capital-growth", "risk", ">=", "25", metric="app.capital", aggregate="change_pct")
    assert evaluate(seeded, NOW) == [("capital-growth", "fired", Decimal("25.000000"), False)]


def test_a_series_recorded_twice_at_the_same_time_counts_its_larger_value(seeded):
    metric(seeded, "app.queue_depth", "50", NOW - timedelta(minutes=1))
    metric(seeded, "app.queue_depth", "150", NOW - timedelta(minutes=1))
    add_rule(seeded, "queue-deep", "system", ">", "100", metric="app.queue_depth")
    assert evaluate(seeded, NOW) == [("queue-deep", "fired", Decimal("150"), False)]


# Evaluation inside a snapshot older than the advisory lock (bug: a raw unique violation)
@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_evaluate_alert_rules_refuses_to_run_outside_read_committed(seeded, isolation):
    with pytest.raises(psycopg.Error) as caught, seeded.transaction():
        seeded.execute(f"set transaction isolation level {isolation}")
        evaluate(seeded, NOW)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"monitor.evaluate_alert_rules must run in a READ COMMITTED transaction, not {isolation.upper()}",
    )


# An acknowledgement committed while an evaluation waits for the alert's row (bug: the evaluation,
# which read the alert as firing, notified it late anyway)
def test_an_alert_acknowledged_while_an_evaluation_waits_for_it_is_not_notified_late(seeded, seeded_url):
    _fire_resolve_and_fire_again_inside_the_cooldown(seeded)
    metric(seeded, "app.cool_test", "20", T0 + timedelta(minutes=15))
    with psycopg.connect(seeded_url, autocommit=True) as evaluator, ThreadPoolExecutor(1) as pool:
        with seeded.transaction():
            call(seeded, "monitor.acknowledge_alert", alert_id=2, acknowledged_by="alice")
            late = pool.submit(evaluate, evaluator, T0 + timedelta(minutes=15))
            assert waits_for_a_lock(seeded, evaluator.info.backend_pid, "transactionid")
        assert late.result(timeout=30) == []
    assert len(notifications(seeded)) == 2
    assert seeded.execute(
        "select status::text, notified from monitor.alerts where alert_id = 2"
    ).fetchone() == (
        "acknowledged",
        False,
    )


# change_pct from a negative first value (bug: a loss going from -100 to -200 read +100 %)
def test_a_change_pct_rule_from_a_negative_value_reads_a_deepening_loss_as_a_fall(seeded):
    metric(seeded, "app.pnl_today", "-100", NOW - timedelta(minutes=4))
    metric(seeded, "app.pnl_today", "-200", NOW - timedelta(minutes=1))
    add_rule(seeded, "loss-doubles", "risk", "<=", "-100", metric="app.pnl_today", aggregate="change_pct")
    assert evaluate(seeded, NOW) == [("loss-doubles", "fired", Decimal("-100.000000"), False)]


# Nulls (bug: enabled => null enabled the rule; alert_id => null read "alert null does not exist")
def test_enabling_a_rule_with_a_null_flag_is_refused(seeded):
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")
    call(seeded, "monitor.set_alert_rule_enabled", name="btc-above-70k", enabled=False)
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.set_alert_rule_enabled", name="btc-above-70k", enabled=None)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "enabled must be true or false, got null",
    )
    assert seeded.execute("select is_enabled from monitor.alert_rules").fetchone() == (False,)


def test_acknowledging_a_null_alert_id_is_refused_as_an_invalid_argument(seeded):
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.acknowledge_alert", alert_id=None)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "alert_id must be given, got null",
    )
