"""Rules of the money paths that no other test pinned down: each test here fails with a small,
plausible bug in the SQL (a mutant: a bound off by one, a dropped term, a swapped branch) that the
rest of the suite let through. Expected values are worked out by hand in the comments."""

from datetime import timedelta
from decimal import Decimal as D

import psycopg
import pytest

from market_helpers import RECENT_NOON, quote
from trading_helpers import call, expect_refusal, fill, order, place, position, rows, trade

# a recent UTC day, so its monthly trades partition exists
DAY = RECENT_NOON.date() - timedelta(days=5)


def test_pnl_summary_counts_a_trade_exactly_on_the_last_whole_hour_of_the_period(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 09:30:00+00")
    trade(seeded, "sell", "1", "110", executed_at=f"{DAY} 11:00:00+00")
    window = rows(
        seeded,
        "trading.pnl_summary",
        strategy="alpha",
        since=f"{DAY} 09:15:00+00",
        until=f"{DAY} 11:30:00+00",
        group_by="total",
    )
    # [09:15, 10:00) and [11:00, 11:30) are read from the trades, [10:00, 11:00) from the hourly
    # rollup: the 11:00:00 sell starts the last piece and counts, 1 x (110 - 100) = 10
    assert [(r["trades"], r["volume"], r["realized_pnl_gross"]) for r in window] == [(2, D("2"), D("10"))]


def snapshot_row(conn, strategy: str) -> tuple:
    """(unrealized_pnl, gross_exposure, net_exposure, open_positions) of a strategy's row of a
    snapshot taken now in USDT."""
    strategy_id = conn.execute(
        "select strategy_id from trading.strategies where name = %s", [strategy]
    ).fetchone()[0]
    row = next(r for r in rows(conn, "trading.take_portfolio_snapshot") if r["strategy_id"] == strategy_id)
    return row["unrealized_pnl"], row["gross_exposure"], row["net_exposure"], row["open_positions"]


def test_a_short_position_counts_as_positive_gross_and_negative_net_exposure_in_a_snapshot(seeded):
    trade(seeded, "sell", "2", "100")
    quote(seeded, RECENT_NOON, "109", "111")
    # short 2 at 100, marked at the mid 110: unrealized -2 x (110 - 100) = -20, gross |-2| x 110 =
    # 220, net -2 x 110 = -220
    assert snapshot_row(seeded, "alpha") == (D("-20"), D("220"), D("-220"), 1)


def test_a_perpetuals_snapshot_exposure_and_unrealized_pnl_count_its_contracts_at_the_multiplier(seeded):
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    quote(seeded, RECENT_NOON, "60090", "60110", exchange="okx", symbol="BTC-USDT-SWAP")
    # 10 contracts of 0.01 BTC at 60000, marked at the mid 60100: unrealized 10 x 0.01 x 100 = 10,
    # gross and net exposure 10 x 60100 x 0.01 = 6010
    assert snapshot_row(seeded, "alpha") == (D("10"), D("6010"), D("6010"), 1)


def test_a_fill_after_an_order_expired_is_recorded_as_late(seeded):
    order_id = place(seeded, "buy", "2", "100")
    call(seeded, "trading.expire_order", order_id=order_id)
    trade_id = fill(seeded, order_id, "1", "100")
    # like a fill after a cancel: recorded, flagged late, and the order stays expired (1 of 2 filled)
    is_late = seeded.execute("select is_late from trading.trades where trade_id = %s", [trade_id]).fetchone()[
        0
    ]
    assert (is_late, order(seeded, order_id)["status"]) == (True, "expired")


def test_a_fill_delivered_again_with_its_fee_in_another_currency_is_a_conflicting_duplicate(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", fee=D("0.1"), exchange_trade_id="dup-1")
    # 0.1 USDT and 0.1 BNB are other fees (0.1 BNB is worth some USDT, not 0.1): not the same fill
    expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "dup-1" is already recorded as trade {trade_id} with different values',
        lambda: fill(
            seeded, order_id, "1", "100", fee=D("0.1"), fee_currency="BNB", exchange_trade_id="dup-1"
        ),
    )


def list_pair(conn, symbol: str, base: str, quote_asset: str) -> None:
    call(
        conn,
        "ref.upsert_instrument",
        exchange="binance",
        symbol=symbol,
        base_asset=base,
        quote_asset=quote_asset,
        market_type="spot",
        tick_size=D("0.00001"),
        lot_size=D("0.001"),
        min_notional=D("0"),
    )


def test_an_asset_is_priced_at_its_pair_before_its_inverse_pair_listed_earlier(seeded):
    list_pair(seeded, "USDCSOL", "USDC", "SOL")  # the inverse pair, listed first (a lower id)
    list_pair(seeded, "SOLUSDC", "SOL", "USDC")
    quote(seeded, RECENT_NOON, "0.00799", "0.00801", symbol="USDCSOL")  # 1 / 0.008 = 125 USDC a SOL
    quote(seeded, RECENT_NOON, "99", "101", symbol="SOLUSDC")  # mid 100 USDC a SOL
    binance = seeded.execute("select exchange_id from ref.exchanges where code = 'binance'").fetchone()[0]
    # both spot, on one exchange, both listed: the pair itself (100) before its inverse (125)
    assert call(
        seeded, "trading.asset_price", p_exchange_id=binance, p_asset="SOL", p_quote_asset="USDC"
    ) == D("100")


def liquidation(conn, strategy: str, side: str, exchange_trade_id: str, **kwargs) -> int:
    """A liquidation of 1 contract at 60000 of the strategy on okx's perpetual."""
    return call(
        conn,
        "trading.record_exchange_fill",
        strategy=strategy,
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        side=side,
        quantity=D("1"),
        price=D("60000"),
        kind="liquidation",
        exchange_trade_id=exchange_trade_id,
        **kwargs,
    )


def test_an_exchange_fill_of_another_strategy_with_a_recorded_trade_id_is_a_conflicting_duplicate(seeded):
    trade_id = liquidation(seeded, "alpha", "sell", "liq-1")
    # the same instrument, side, trade id and values, but beta's: not alpha's fill delivered again
    error = expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "liq-1" is already recorded as trade {trade_id} with different values',
        lambda: liquidation(seeded, "beta", "sell", "liq-1"),
    )
    assert error.diag.message_detail.startswith("stored: alpha liquidation sell 1 @ 60000")


def test_an_exchange_order_id_of_a_sell_is_refused_for_a_buy_of_the_same_strategy(seeded):
    liquidation(seeded, "alpha", "sell", "liq-1", exchange_order_id="L-1")
    order_id = seeded.execute(
        "select order_id from trading.orders where exchange_order_id = 'L-1'"
    ).fetchone()[0]
    # one exchange order has one side: a buy fill naming the sell's order id is not one of its fills
    expect_refusal(
        seeded,
        "23S06",
        f'exchange order id "L-1" is already recorded for order {order_id}',
        lambda: liquidation(seeded, "alpha", "buy", "liq-2", exchange_order_id="L-1"),
    )


def test_the_unrealized_pnl_of_a_huge_short_too_large_for_numeric_is_22s09_not_a_bare_overflow(seeded):
    # a short of 10^90000 (only an exchange fill has no order notional to bound it) marked at
    # 10^42000, every factor but the quantity below 10^43690: -10^90000 x (10^42000 - 1) is about
    # 10^132000, past numeric's 131072 digits
    call(
        seeded,
        "trading.record_exchange_fill",
        strategy="alpha",
        exchange="binance",
        symbol="BTCUSDT",
        side="sell",
        quantity=D("1e90000"),
        price=D("1"),
        kind="liquidation",
        exchange_trade_id="huge-1",
    )
    with pytest.raises(psycopg.Error) as caught:
        position(seeded, "alpha", "binance", "BTCUSDT", mark_price=D("1e42000"))
    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary.startswith("unrealized PnL (quantity -1.000e+90000 x multiplier")
