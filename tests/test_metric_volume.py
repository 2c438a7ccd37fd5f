"""Collected trade volume: a series per period and base asset, in units of the asset."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from trading_helpers import call, expect_refusal, list_binance_eth_btc, trade

NOW = datetime.now(UTC).replace(microsecond=0)


# bug: trades.volume was one series per period adding up the BTC of BTC/USDT, the ETH of ETH/BTC
# and the contracts of a 0.01 BTC perpetual (0.1 + 2 + 10 = 12.1)
def test_collected_volume_is_a_series_per_base_asset_in_its_units(seeded: psycopg.Connection) -> None:
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "0.1", "60000", executed_at=NOW)
    trade(seeded, "buy", "2", "0.05", symbol="ETHBTC", executed_at=NOW)
    # 10 contracts of 0.01 BTC
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP", executed_at=NOW)

    call(seeded, "monitor.collect_metrics", collected_at=NOW)

    assert seeded.execute(
        "select labels ->> 'period', labels ->> 'base_asset', value from monitor.metrics"
        " where name = 'trades.volume' order by 1, 2"
    ).fetchall() == [
        ("day", "BTC", Decimal("0.2")),
        ("day", "ETH", Decimal("2")),
        ("hour", "BTC", Decimal("0.2")),
        ("hour", "ETH", Decimal("2")),
    ]


def test_collected_volume_reads_zero_for_a_base_asset_without_fills_in_the_period(
    seeded: psycopg.Connection,
) -> None:
    trade(seeded, "buy", "0.1", "60000", executed_at=NOW - timedelta(days=2))
    call(seeded, "monitor.collect_metrics", collected_at=NOW)
    assert seeded.execute(
        "select labels ->> 'period', labels ->> 'base_asset', value from monitor.metrics"
        " where name = 'trades.volume' order by 1, 2"
    ).fetchall() == [("day", "BTC", 0), ("hour", "BTC", 0)]


def test_a_rule_on_trades_volume_must_name_its_base_asset(seeded: psycopg.Connection) -> None:
    expect_refusal(
        seeded,
        "22S12",
        "the labels of trades.volume must be an object naming its base_asset (quantities of different"
        ' assets do not add up), got "{"period": "hour"}"',
        lambda: call(
            seeded,
            "monitor.add_alert_rule",
            name="busy",
            kind="trading",
            operator=">",
            threshold=Decimal("5"),
            metric="trades.volume",
            labels=Jsonb({"period": "hour"}),
        ),
    )


def test_a_rule_on_the_volume_of_one_base_asset_is_added(seeded: psycopg.Connection) -> None:
    call(seeded, "monitor.add_alert_rule", name="busy", kind="trading", operator=">", threshold=Decimal("5"),
         metric="trades.volume", labels=Jsonb({"period": "hour", "base_asset": "BTC"}))  # fmt: skip
    assert seeded.execute("select labels from monitor.alert_rules where name = 'busy'").fetchone() == (
        {"period": "hour", "base_asset": "BTC"},
    )
