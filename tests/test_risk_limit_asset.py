"""Risk limits across quote assets: a limit without limit_asset never adds BTC to USDT at par; a
limit with one values every amount in it at the market, and an amount it cannot value breaks it."""

from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner

from market_helpers import RECENT_NOON, quote
from spreadedge.cli import main
from trading_helpers import call, list_binance_eth_btc, order, place, trade


def limit(conn, strategy="alpha", **limits):
    return call(conn, "monitor.set_risk_limit", strategy=strategy, **limits)


def risk_events(conn):
    return conn.execute(
        "select limit_kind::text, limit_value, observed_value, reason from monitor.risk_events order by risk_event_id"
    ).fetchall()


@pytest.fixture
def eth_btc(seeded):
    """ETH/BTC listed on binance, and BTC/USDT quoted at 49,990/50,010 (a mid of 50,000)."""
    list_binance_eth_btc(seeded)
    quote(seeded, RECENT_NOON, "49990", "50010")
    return seeded


# -- a limit without limit_asset: in the order's quote asset ---------------------------------------


def test_a_limit_without_limit_asset_leaves_positions_of_another_quote_asset_out(eth_btc):
    db = eth_btc
    trade(db, "buy", "1", "50000")  # 50,000 USDT of BTC
    limit(db, max_position_notional=Decimal("1"))

    eth = place(db, "buy", "10", "0.05", symbol="ETHBTC")  # 0.5 BTC: the BTCUSDT position is not in BTC

    assert (order(db, eth)["status"], risk_events(db)) == ("new", [])


def test_a_limit_without_limit_asset_adds_up_the_positions_in_the_orders_quote_asset(eth_btc):
    db = eth_btc
    trade(db, "buy", "0.01", "50000")  # 500 USDT
    limit(db, max_position_notional=Decimal("900"))

    btc = place(db, "buy", "0.01", "50000")  # 500 more

    assert (
        order(db, btc)["status_reason"]
        == "position notional 1000 after the order exceeds max_position_notional 900"
    )


def test_a_daily_loss_limit_without_limit_asset_leaves_a_loss_in_another_quote_asset_out(eth_btc):
    db = eth_btc
    trade(db, "buy", "1", "0.05", symbol="ETHBTC")
    trade(db, "sell", "1", "0.04", symbol="ETHBTC")  # a loss of 0.01 BTC
    trade(db, "buy", "0.001", "50000")
    trade(db, "sell", "0.001", "49995")  # a loss of 0.005 USDT
    limit(db, max_daily_loss=Decimal("0.008"))

    btc = place(db, "buy", "0.001", "50000")

    assert (order(db, btc)["status"], risk_events(db)) == ("new", [])


# -- a limit in USDT: every amount converted ------------------------------------------------------


def test_an_order_in_btc_is_valued_in_the_limits_asset(eth_btc):
    db = eth_btc
    limit(db, max_order_notional=Decimal("20000"), limit_asset="USDT")

    eth = place(db, "buy", "10", "0.05", symbol="ETHBTC")  # 0.5 BTC at 50,000

    assert (
        order(db, eth)["status_reason"] == "order notional 25000 USDT exceeds max_order_notional 20000 USDT"
    )
    assert risk_events(db) == [
        (
            "max_order_notional",
            Decimal("20000"),
            Decimal("25000"),
            "order notional 25000 USDT exceeds max_order_notional 20000 USDT",
        )
    ]


def test_a_position_in_btc_counts_at_its_usdt_value_against_a_usdt_limit(eth_btc):
    db = eth_btc
    trade(db, "buy", "1", "0.05", symbol="ETHBTC")  # 0.05 BTC: 2,500 USDT
    limit(db, max_position_notional=Decimal("10000"), limit_asset="USDT")

    btc = place(db, "buy", "0.16", "50000")  # 8,000 USDT

    assert order(db, btc)["status_reason"] == (
        "position notional 10500 USDT after the order exceeds max_position_notional 10000 USDT"
    )


def test_a_loss_in_btc_counts_at_its_usdt_value_against_a_usdt_daily_loss_limit(eth_btc):
    db = eth_btc
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with db.transaction():
        trade(db, "buy", "1", "0.05", symbol="ETHBTC")
        trade(db, "sell", "1", "0.04", symbol="ETHBTC")  # a loss of 0.01 BTC: 500 USDT
        limit(db, max_daily_loss=Decimal("400"), limit_asset="USDT")

        btc = place(db, "buy", "0.001", "50000")

    assert order(db, btc)["status_reason"] == "realized loss today 500 USDT reached max_daily_loss 400 USDT"


def test_a_limit_in_the_orders_own_quote_asset_needs_no_price(seeded):
    limit(seeded, max_order_notional=Decimal("1000"), limit_asset="USDT")

    btc = place(seeded, "buy", "0.01", "60000")  # 600 USDT, no market data at all

    assert (order(seeded, btc)["status"], risk_events(seeded)) == ("new", [])


def test_an_order_whose_quote_asset_has_no_price_in_the_limits_asset_is_rejected(seeded):
    limit(seeded, max_order_notional=Decimal("1000000"), limit_asset="USDT")

    eth = place(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")  # nothing prices USD in USDT

    reason = "max_order_notional: USD has no market price in USDT to value the order"
    assert order(seeded, eth)["status_reason"] == reason
    assert risk_events(seeded) == [("max_order_notional", Decimal("1000000"), None, reason)]


def test_a_position_whose_quote_asset_has_no_price_in_the_limits_asset_breaks_the_position_limit(seeded):
    trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")
    limit(seeded, max_position_notional=Decimal("1000000"), limit_asset="USDT")

    btc = place(seeded, "buy", "0.01", "60000")

    assert order(seeded, btc)["status_reason"] == (
        "max_position_notional: a position of the scope is quoted in an asset with no market price in USDT to value it"
    )


def test_a_loss_whose_asset_has_no_price_in_the_limits_asset_breaks_the_daily_loss_limit(seeded):
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")
        trade(seeded, "sell", "1", "1999", exchange="kraken", symbol="ETHUSD")
        limit(seeded, max_daily_loss=Decimal("1000000"), limit_asset="USDT")

        btc = place(seeded, "buy", "0.01", "60000")

    assert order(seeded, btc)["status_reason"] == (
        "max_daily_loss: a realized PnL of today is in an asset with no market price in USDT to value it"
    )


def test_a_day_without_realized_pnl_in_an_asset_without_a_price_needs_no_conversion(seeded):
    trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")  # opens: nothing realized
    trade(seeded, "sell", "1", "2000", exchange="kraken", symbol="ETHUSD")  # closes flat: nothing realized
    limit(seeded, max_daily_loss=Decimal("1000"), limit_asset="USDT")

    btc = place(seeded, "buy", "0.01", "60000")

    assert (order(seeded, btc)["status"], risk_events(seeded)) == ("new", [])


# -- setting it -----------------------------------------------------------------------------------


def test_set_risk_limit_stores_the_limit_asset_upper_case(seeded):
    limit_id = limit(seeded, max_order_notional=Decimal("1000"), limit_asset="usdt")

    assert seeded.execute(
        "select limit_asset from monitor.risk_limits where limit_id = %s", [limit_id]
    ).fetchone() == ("USDT",)


def test_set_risk_limit_keeps_the_limit_asset_when_it_is_not_given(seeded):
    limit(seeded, max_order_notional=Decimal("1000"), limit_asset="USDT")

    limit_id = limit(seeded, max_order_notional=Decimal("2000"))

    assert seeded.execute(
        "select limit_asset, max_order_notional from monitor.risk_limits where limit_id = %s", [limit_id]
    ).fetchone() == ("USDT", Decimal("2000"))


def test_set_risk_limit_with_an_empty_limit_asset_goes_back_to_each_quote_asset(seeded):
    limit(seeded, max_order_notional=Decimal("1000"), limit_asset="USDT")

    limit_id = limit(seeded, limit_asset="")

    assert seeded.execute(
        "select limit_asset from monitor.risk_limits where limit_id = %s", [limit_id]
    ).fetchone() == (None,)


def test_set_risk_limit_refuses_an_asset_no_instrument_trades_with_22s13(seeded):
    with pytest.raises(psycopg.Error) as caught:
        limit(seeded, max_order_notional=Decimal("1000"), limit_asset="USTD")

    assert caught.value.sqlstate == "22S13"
    assert caught.value.diag.message_primary == 'limit_asset "USTD" is an asset no instrument trades'
    assert seeded.execute("select count(*) from monitor.risk_limits").fetchone() == (0,)


def test_risk_set_limit_asset_through_the_cli_shows_in_risk_show(seeded, seeded_url):
    def invoke(*args):
        return CliRunner().invoke(main, ["--database-url", seeded_url, *args], catch_exceptions=False)

    result = invoke("risk", "set", "alpha", "--max-daily-loss", "500", "--limit-asset", "USDT")

    assert result.exit_code == 0, result.output
    lines = invoke("risk", "show").output.splitlines()
    header, row = lines[0], lines[2]
    assert row[header.index("limit_asset") :].startswith("USDT ")
