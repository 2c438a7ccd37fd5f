"""Decimal fidelity end to end: numbers shown and compared exactly as they were stored."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner, Result

from market_helpers import tick
from monitor_helpers import add_rule, evaluate, metric, now_to_the_second
from spreadedge.cli import main
from trading_helpers import call, expect_refusal, place


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database-url", url, *args])


def record(conn: psycopg.Connection, labels: str) -> None:
    """One value (7) of the custom metric app.shard_lag with these labels (JSON text, numbers kept
    as written)."""
    conn.execute(
        "select monitor.record_metric(name => 'app.shard_lag', value => 7, labels => %s::jsonb)", [labels]
    )


# bug: the CLI read jsonb with psycopg's loader, json.loads, which makes every JSON number with a
# fraction or an exponent a float: a label of 12345678901234567890.5 showed as
# 1.2345678901234567e+19, 1e-30 in exponent form and 0.10 as 0.1
def test_metrics_show_prints_a_labels_numbers_as_they_are_stored(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    record(seeded, '{"id": 12345678901234567890.5, "tiny": 1e-30, "shard": 0.10}')
    result = invoke(seeded_url, "metrics", "show", "--name", "app.shard_lag")
    assert result.exit_code == 0, result.output
    header, _rule, row = result.output.splitlines()
    assert row[header.index("labels") :].split("}")[0] + "}" == (
        '{"id": 12345678901234567890.5, "tiny": 0.000000000000000000000000000001, "shard": 0.10}'
    )


# bug: a label of 1e5000 (a jsonb integer of 5,001 digits) made json.loads fail (Python reads at
# most 4,300 digits into an int): metrics show ended in a ValueError traceback for every series
def test_metrics_show_prints_a_label_of_5001_digits(seeded: psycopg.Connection, seeded_url: str) -> None:
    record(seeded, '{"big": 1e5000}')
    call(seeded, "monitor.record_metric", name="app.lag_ms", value=Decimal("42"))
    result = invoke(seeded_url, "metrics", "show")
    assert (result.exit_code, result.exception) == (0, None)
    assert '{"big": 1' + "0" * 5000 + "}" in result.output
    assert "app.lag_ms" in result.output


def test_alerts_rules_prints_a_rules_numeric_label_as_stored(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    record(seeded, '{"shard": 0.10}')
    seeded.execute(
        "select monitor.add_alert_rule(name => 'shard', kind => 'system', metric => 'app.shard_lag',"
        """ labels => '{"shard": 0.10}', operator => '>', threshold => 1)"""
    )
    result = invoke(seeded_url, "alerts", "rules")
    assert result.exit_code == 0, result.output
    assert ' app.shard_lag  {"shard": 0.10}  last ' in result.output


# bug: change_pct was rounded to 6 decimals before it was compared, so a price that rose
# 4.9999995 % read 5.000000 and fired a rule change_pct >= 5 (an average is never rounded across
# its threshold: internal.rule_average)
def test_a_price_change_just_below_the_threshold_does_not_fire_a_change_pct_rule(
    seeded: psycopg.Connection,
) -> None:
    now = now_to_the_second(seeded)
    tick(seeded, now - timedelta(minutes=2), "100000000", trade_id="t1")
    tick(seeded, now - timedelta(minutes=1), "104999999.5", trade_id="t2")
    add_rule(seeded, "up-5", "price", ">=", "5", exchange="binance", symbol="BTCUSDT", aggregate="change_pct",
             evaluation_window=timedelta(minutes=10))  # fmt: skip
    add_rule(seeded, "below-5", "price", "<", "5", exchange="binance", symbol="BTCUSDT", aggregate="change_pct",
             evaluation_window=timedelta(minutes=10))  # fmt: skip
    assert evaluate(seeded, now) == [("below-5", "fired", Decimal("4.9999995"), False)]


def test_a_change_pct_just_above_a_finer_threshold_fires_with_the_decimals_that_show_it(
    seeded: psycopg.Connection,
) -> None:
    now = now_to_the_second(seeded)
    metric(seeded, "app.capital", "3", now - timedelta(minutes=2))
    metric(seeded, "app.capital", "4", now - timedelta(minutes=1))
    add_rule(seeded, "third-up", "system", ">", "33.3333333", metric="app.capital", aggregate="change_pct",
             evaluation_window=timedelta(minutes=10))  # fmt: skip
    add_rule(seeded, "rounded", "system", ">", "33.3", metric="app.capital", aggregate="change_pct",
             evaluation_window=timedelta(minutes=10))  # fmt: skip
    assert evaluate(seeded, now) == [
        ("third-up", "fired", Decimal("33.33333333"), False),
        ("rounded", "fired", Decimal("33.333333"), False),
    ]


def test_a_change_pct_equal_to_a_finer_threshold_reads_it_exactly(seeded: psycopg.Connection) -> None:
    now = now_to_the_second(seeded)
    metric(seeded, "app.capital", "8", now - timedelta(minutes=2))
    metric(seeded, "app.capital", "8.0000001", now - timedelta(minutes=1))
    add_rule(seeded, "exact", "system", "=", "0.00000125", metric="app.capital", aggregate="change_pct",
             evaluation_window=timedelta(minutes=10))  # fmt: skip
    add_rule(seeded, "above", "system", ">", "0.00000125", metric="app.capital", aggregate="change_pct",
             evaluation_window=timedelta(minutes=10))  # fmt: skip
    assert evaluate(seeded, now) == [("exact", "fired", Decimal("0.00000125"), False)]


# bug: the tick, lot and minimum-notional refusals of trading.place_order printed the raw number,
# so a quantity of 1e-16383 came back with every one of its 16,383 decimals in the message
@pytest.mark.parametrize(
    ("kwargs", "sqlstate", "message"),
    [
        (
            {"quantity": Decimal("1e-16383"), "price": Decimal("60000")},
            "22S04",
            "quantity 1.000e-16383 is not a multiple of the lot size 0.0001 of BTCUSDT",
        ),
        (
            {"quantity": Decimal("1"), "price": Decimal("60000." + "0" * 4999 + "1")},
            "22S03",
            "price 6.000e+04 is not a multiple of the tick size 0.01 of BTCUSDT",
        ),
        (
            {"quantity": Decimal("1"), "price": Decimal("1e-16383"), "order_type": "market"},
            "22S07",
            "market orders take no price, got 1.000e-16383",
        ),
    ],
    ids=["quantity-off-lot", "price-off-tick", "price-of-a-market-order"],
)
def test_an_order_refused_for_a_number_of_thousands_of_digits_shows_it_in_four_figures(
    seeded: psycopg.Connection, kwargs: dict[str, object], sqlstate: str, message: str
) -> None:
    expect_refusal(seeded, sqlstate, message, lambda: place(seeded, "buy", **kwargs))
