"""Rules of the pre-trade risk limits and of alert rule creation that a plausible slip in their SQL
(a bound off by one, a dropped condition or filter, a sort flipped, a kept value overwritten) broke
without any other test noticing: each test here kills one or more mutants of the second mutation
run of 69_monitor_risk.sql and 66_monitor_alert_rules.sql (none of them a mutant that
test_monitor_mutants.py, test_risk_math_hunt.py, test_monitor_risk.py or
test_order_risk_race_hunt.py already kills).

The run: 55 mutants, weighted to the risk check (money) and rule validation (30 of the risk limits,
25 of the alert rules); 28 caught by the existing tests, 27 survived, all holes, closed by the 23
tests below; none left open. Each mutant ran against the test files of its part (the risk files:
test_monitor_risk, _mutants, test_risk_math_hunt, test_risk_limit_asset, test_monitor_edges,
test_alert_risk_edges, plus the amendment and clock-step files where they apply; the alert files:
test_monitor_alerts, _edges, _mutants, test_alert_risk_edges, and the SQL API fuzz hunt for null
arguments). The caught include every null argument but kind and channels (a bare 23502 the fuzz
hunt sees), a two-dimensional channel list (test_ops_fuzz_hunt), the kill switch sorted last, a
limit of another exchange applied, the order notional, open orders, position notional or daily
loss bound off by one, partially filled orders not working, a flip not held, a reducing order of
exactly the position, the daily loss of a day ahead of the clock, the amendment subject and
max_open_orders held against an amendment.

Holes, each killed by the test named for it below: a max_position_notional or max_open_orders not
checked by set_risk_limit (a negative one failed with the table's 23514, not 22S13); an Infinity
limit let through to the table's check; a limit_asset accepted only as a quote asset (ETH refused);
setting one limit clearing max_position_notional or max_daily_loss (two mutants, one test); new
channels of an existing limit ignored; an exchange limit sorted after the strategy's own; an
instrument's max_open_orders counting the strategy's every working order; an exchange limit
without limit_asset adding that exchange's positions, or losses, in another quote asset at par
(two tests); an exchange limit with a limit_asset adding other exchanges' positions, or losses
(two tests); a rule name of exactly 100 characters refused; a name starting with - _ or . let
through to the table's check; a null kind or null channels not refused with 22S12 (null channels
were stored as none); a price rule given a metric, or only an exchange, accepted or refused with
another SQLSTATE; a metric rule given an exchange or a symbol accepted; a price rule taking sum;
'<>' missing from the operators; '<>' compared as '>'; a -Infinity threshold let through; labels
that are not an object failing with a bare 22023; a window of exactly 31 days refused; a rule on
trades.volume without base_asset accepted.

Not run, judged equivalent: check_limit_value's p_value > 0 as >= 0 (0 is let through before it);
the reduce test recomputed for each limit (v_reduces is null dropped: same position, same answer);
an instrument limit's daily loss read by the order's instrument rather than the limit's (the limit
applies to no other instrument's orders); a flat position's notional filter (p.quantity <> 0
dropped: it adds 0).

Every expected value is worked out by hand in its comment."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from monitor_helpers import add_rule, evaluate, metric
from trading_helpers import call, list_binance_eth_btc, order, place, trade

NOW = datetime.now(UTC).replace(microsecond=0)
# okx's BTC/USDT perpetual of the seed: 0.01 BTC a contract, quoted in USDT as binance's BTCUSDT is
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}

# -- helpers ----------------------------------------------------------------------------------------


def limit(conn: psycopg.Connection, strategy: str = "alpha", **limits: Any) -> int:
    return call(conn, "monitor.set_risk_limit", strategy=strategy, **limits)


def stored_limits(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """(max_order_notional, max_position_notional, max_open_orders, max_daily_loss, channels,
    limit_asset) of every risk limit, in id order."""
    return conn.execute(
        "select max_order_notional, max_position_notional, max_open_orders, max_daily_loss,"
        " channels::text[], limit_asset from monitor.risk_limits order by limit_id"
    ).fetchall()


def refused(action: Callable[[], object]) -> tuple[str, str]:
    """(SQLSTATE, message) of the error the action raises."""
    with pytest.raises(psycopg.Error) as caught:
        action()
    return caught.value.sqlstate, caught.value.diag.message_primary


def rule_count(conn: psycopg.Connection) -> int:
    return conn.execute("select count(*) from monitor.alert_rules").fetchone()[0]


def system_rule(conn: psycopg.Connection, **arguments: Any) -> int:
    """monitor.add_alert_rule of rule "broken": a system rule db.size_bytes > 1 unless arguments
    say otherwise (None passed as SQL null)."""
    defaults: dict[str, Any] = {"kind": "system", "operator": ">", "threshold": Decimal("1")}
    return call(conn, "monitor.add_alert_rule", **{"name": "broken", "metric": "db.size_bytes", **defaults,
                                                   **arguments})  # fmt: skip


# -- setting limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["max_order_notional", "max_position_notional", "max_open_orders", "max_daily_loss"]
)
def test_a_negative_limit_of_any_kind_is_refused_as_an_invalid_risk_limit(seeded, name):
    # checked by internal.check_limit_value (22S13), not left to the table's check (23514)
    assert refused(lambda: limit(seeded, **{name: -1})) == (
        "22S13",
        f"{name} must be positive and finite (0 removes it), got -1",
    )
    assert stored_limits(seeded) == []


def test_an_infinite_limit_is_refused_as_an_invalid_risk_limit(seeded):
    assert refused(lambda: limit(seeded, max_position_notional=Decimal("Infinity"))) == (
        "22S13",
        "max_position_notional must be positive and finite (0 removes it), got Infinity",
    )
    assert stored_limits(seeded) == []


def test_setting_one_limit_keeps_every_other_limit_and_the_channels(seeded):
    limit(seeded, max_order_notional=Decimal("1000"), max_position_notional=Decimal("5000"),
          max_open_orders=5, max_daily_loss=Decimal("100"), channels=["slack"])  # fmt: skip

    limit(seeded, max_order_notional=Decimal("500"))  # only this one given: the others kept

    assert stored_limits(seeded) == [(Decimal("500"), Decimal("5000"), 5, Decimal("100"), ["slack"], None)]


def test_new_channels_replace_the_channels_of_a_limit(seeded):
    limit(seeded, max_order_notional=Decimal("1000"), channels=["slack"])

    limit(seeded, channels=["discord", "webhook"])

    assert stored_limits(seeded) == [(Decimal("1000"), None, None, None, ["discord", "webhook"], None)]


def test_a_limit_asset_only_traded_as_a_base_asset_is_accepted(seeded):
    # ETH is the base asset of kraken's ETHUSD and the quote asset of no instrument of the seed
    limit(seeded, max_order_notional=Decimal("1"), limit_asset="eth")

    assert stored_limits(seeded) == [(Decimal("1"), None, None, None, ["email"], "ETH")]


# -- the check ------------------------------------------------------------------------------------------


def test_an_exchange_limit_is_checked_before_the_strategys_own(seeded):
    limit(seeded, max_order_notional=Decimal("100"))
    exchange_limit = limit(seeded, exchange="binance", max_order_notional=Decimal("200"))

    rejected = place(seeded, "buy", "0.01", "60000")  # 600: beyond both

    assert seeded.execute(
        "select limit_id, limit_value from monitor.risk_events where order_id = %s", [rejected]
    ).fetchone() == (exchange_limit, Decimal("200"))


def test_an_instrument_max_open_orders_counts_only_that_instruments_working_orders(seeded):
    limit(seeded, exchange="binance", symbol="BTCUSDT", max_open_orders=1)
    bnb = place(seeded, "buy", "1", "600", symbol="BNBUSDT")  # working, but of another instrument

    first = place(seeded, "buy", "0.01", "60000")  # BTCUSDT's only working order: 1
    second = place(seeded, "buy", "0.01", "60000")  # 2

    assert [order(seeded, o)["status"] for o in (bnb, first)] == ["new", "new"]
    assert order(seeded, second)["status_reason"] == "2 working orders with this one exceed max_open_orders 1"


def test_an_exchange_position_limit_in_a_limit_asset_leaves_another_exchanges_position_out(seeded):
    trade(seeded, "buy", "10", "60000", **SWAP)  # on okx: 10 x 0.01 x 60000 = 6000 USDT
    limit(seeded, exchange="binance", max_position_notional=Decimal("1000"), limit_asset="USDT")

    placed = place(seeded, "buy", "0.01", "60000")  # 600 on binance, 6600 with okx's position
    rejected = place(seeded, "buy", "0.02", "60000")  # 1200 on binance

    assert (order(seeded, placed)["status"], order(seeded, rejected)["status"]) == ("new", "rejected")
    assert seeded.execute("select observed_value from monitor.risk_events").fetchall() == [(Decimal("1200"),)]


def test_an_exchange_daily_loss_limit_in_a_limit_asset_leaves_another_exchanges_loss_out(seeded):
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "10", "60000", **SWAP)
        trade(seeded, "sell", "10", "59000", **SWAP)  # on okx: 10 x 0.01 x -1000 = -100 USDT
        limit(seeded, exchange="binance", max_daily_loss=Decimal("100"), limit_asset="USDT")
        limit(seeded, exchange="okx", max_daily_loss=Decimal("100"), limit_asset="USDT")

        on_binance = place(seeded, "buy", "0.01", "60000")  # binance lost nothing
        on_okx = place(seeded, "buy", "1", "59000", **SWAP)

    assert (order(seeded, on_binance)["status"], order(seeded, on_okx)["status_reason"]) == (
        "new",
        "realized loss today 100 USDT reached max_daily_loss 100 USDT",
    )


def test_an_exchange_position_limit_leaves_that_exchanges_positions_in_another_quote_asset_out(seeded):
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "20", "0.05", symbol="ETHBTC")  # on binance too: 20 x 0.05 = 1 BTC, not 1 USDT
    limit(seeded, exchange="binance", max_position_notional=Decimal("600.5"))

    placed = place(seeded, "buy", "0.01", "60000")  # 600 USDT (601 with the BTC position at par)

    assert order(seeded, placed)["status"] == "new"
    assert seeded.execute("select count(*) from monitor.risk_events").fetchone() == (0,)


def test_an_exchange_daily_loss_limit_leaves_that_exchanges_loss_in_another_quote_asset_out(seeded):
    list_binance_eth_btc(seeded)
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "100", "0.05", symbol="ETHBTC")
        trade(seeded, "sell", "100", "0.04", symbol="ETHBTC")  # on binance: a loss of 100 x 0.01 = 1 BTC
        limit(seeded, exchange="binance", max_daily_loss=Decimal("1"))

        placed = place(seeded, "buy", "0.01", "60000")  # in USDT: binance lost nothing in it

    assert order(seeded, placed)["status"] == "new"
    assert seeded.execute("select count(*) from monitor.risk_events").fetchone() == (0,)


# -- adding alert rules ---------------------------------------------------------------------------------


def test_a_rule_name_of_100_characters_is_accepted_and_one_of_101_refused(seeded):
    system_rule(seeded, name="a" * 100)

    assert refused(lambda: system_rule(seeded, name="b" * 101)) == (
        "22S12",
        "rule name must be 1 to 100 of a-z, 0-9, _ . - (starting with a letter or digit), got"
        f' "{"b" * 80}"',  # the value shown is cut at 80 characters
    )
    assert rule_count(seeded) == 1


@pytest.mark.parametrize("name", ["-dash-first", "_under", ".dot"])
def test_a_rule_name_starting_with_punctuation_is_refused_as_malformed(seeded, name):
    # refused by add_alert_rule (22S12), not left to the table's check (23514)
    assert refused(lambda: system_rule(seeded, name=name)) == (
        "22S12",
        f'rule name must be 1 to 100 of a-z, 0-9, _ . - (starting with a letter or digit), got "{name}"',
    )
    assert rule_count(seeded) == 0


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ("name", 'rule name must be 1 to 100 of a-z, 0-9, _ . - (starting with a letter or digit), got "null"'),
        ("kind", 'kind must be price, volume, risk, system or trading, got "null"'),
        ("operator", 'operator must be one of >, >=, <, <=, =, <>, got "null"'),
        ("threshold", 'threshold must be a finite number, got "null"'),
        ("labels", 'labels must be a JSON object, got "null"'),
        ("evaluation_window", 'evaluation window must be more than 0 and at most 31 days, with no negative part, got "null"'),
        ("severity", 'severity must be info, warning or critical, got "null"'),
        ("cooldown", 'cooldown must be zero or more and at most 1 year (366 days), with no negative part, got "null"'),
        ("channels", 'channels must be a list of email, slack, discord, webhook, got "null"'),
    ],
)  # fmt: skip
def test_a_rule_with_a_null_part_is_refused_as_malformed(seeded, part, message):
    assert refused(lambda: system_rule(seeded, **{part: None})) == ("22S12", message)
    assert rule_count(seeded) == 0


@pytest.mark.parametrize("threshold", ["Infinity", "-Infinity"])
def test_an_infinite_threshold_is_refused_as_malformed(seeded, threshold):
    assert refused(lambda: system_rule(seeded, threshold=Decimal(threshold))) == (
        "22S12",
        f'threshold must be a finite number, got "{threshold}"',
    )
    assert rule_count(seeded) == 0


def test_labels_that_are_not_an_object_are_refused_as_malformed(seeded):
    assert refused(lambda: system_rule(seeded, labels=Jsonb(["strategy"]))) == (
        "22S12",
        'labels must be a JSON object, got "["strategy"]"',
    )
    assert rule_count(seeded) == 0


def test_a_price_rule_with_a_metric_is_refused_as_malformed(seeded):
    assert refused(
        lambda: system_rule(
            seeded, kind="price", metric="db.size_bytes", exchange="binance", symbol="BTCUSDT"
        )
    ) == (
        "22S12",
        'a price rule\'s metric must be null (it watches exchange and symbol), got "db.size_bytes"',
    )
    assert rule_count(seeded) == 0


def test_a_price_rule_with_an_exchange_but_no_symbol_is_refused_as_malformed(seeded):
    assert refused(lambda: system_rule(seeded, kind="price", metric=None, exchange="binance")) == (
        "22S12",
        'a price rule\'s exchange and symbol must be both given, got "binance"',
    )
    assert rule_count(seeded) == 0


@pytest.mark.parametrize(
    ("where", "shown"), [({"exchange": "binance"}, "binance"), ({"symbol": "BTCUSDT"}, "BTCUSDT")]
)
def test_a_metric_rule_with_an_exchange_or_a_symbol_is_refused_as_malformed(seeded, where, shown):
    assert refused(lambda: system_rule(seeded, **where)) == (
        "22S12",
        f'a system rule\'s exchange and symbol must be null (it watches a metric), got "{shown}"',
    )
    assert rule_count(seeded) == 0


@pytest.mark.parametrize(
    ("kind", "aggregate", "allowed"),
    [
        ("price", "sum", "last, avg, min, max, change_pct"),
        ("price", "count", "last, avg, min, max, change_pct"),
        ("price", "increase", "last, avg, min, max, change_pct"),
        ("volume", "last", "sum, count"),
        ("volume", "change_pct", "sum, count"),
    ],
)
def test_an_aggregate_a_market_data_rule_does_not_take_is_refused(seeded, kind, aggregate, allowed):
    assert refused(
        lambda: system_rule(
            seeded, kind=kind, metric=None, exchange="binance", symbol="BTCUSDT", aggregate=aggregate
        )
    ) == ("22S12", f'the aggregate of a {kind} rule must be one of {allowed}, got "{aggregate}"')
    assert rule_count(seeded) == 0


def test_a_rule_on_trades_volume_without_its_base_asset_is_refused(seeded):
    assert refused(
        lambda: system_rule(seeded, kind="trading", metric="trades.volume", labels=Jsonb({"period": "hour"}))
    ) == (
        "22S12",
        "the labels of trades.volume must be an object naming its base_asset (quantities of different"
        ' assets do not add up), got "{"period": "hour"}"',
    )
    assert rule_count(seeded) == 0


def test_an_evaluation_window_of_exactly_31_days_is_accepted(seeded):
    system_rule(seeded, evaluation_window=timedelta(days=31))

    assert seeded.execute("select evaluation_window::text from monitor.alert_rules").fetchone() == (
        "31 days",
    )


# -- operators --------------------------------------------------------------------------------------------


def test_each_operator_compares_a_value_at_and_below_its_threshold(seeded):
    metric(seeded, "app.at", "10", NOW - timedelta(minutes=1))
    metric(seeded, "app.below", "9", NOW - timedelta(minutes=1))
    operators = {">": "gt", ">=": "ge", "<": "lt", "<=": "le", "=": "eq", "<>": "ne"}
    for operator, short in operators.items():
        for name in ("at", "below"):
            add_rule(seeded, f"{name}-{short}", "system", operator, "10", metric=f"app.{name}")

    fired = sorted(rule for rule, transition, _, _ in evaluate(seeded, NOW) if transition == "fired")

    # 10 vs 10: >=, <=, = hold; 9 vs 10: <, <=, <> hold
    assert fired == ["at-eq", "at-ge", "at-le", "below-le", "below-lt", "below-ne"]
