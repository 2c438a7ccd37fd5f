"""A spread trade's captured spread: exact to 12 decimals at large prices, and no overflow for sizes near numeric's range."""

from __future__ import annotations

from decimal import Decimal, localcontext

import psycopg

from trading_helpers import fill, legs, list_okx_btc_spot, open_spread, rows


# bug: the captured spread multiplied the matched quantity by a leg's value before dividing by its
# filled quantity, a product of size^2 x price: a spread trade of 1e70000 BTC, whose placement and
# fills were accepted, failed spread_trade_pnl (and the summary) for every spread trade with it
# with a bare 22003 "value overflows numeric format"
def test_a_huge_spread_trade_reports_its_captured_spread_instead_of_overflowing(
    seeded: psycopg.Connection,
) -> None:
    list_okx_btc_spot(seeded)
    small = open_spread(seeded, "2")
    small_buy, small_sell = legs(seeded, small)
    fill(seeded, small_buy, "2", "100")
    fill(seeded, small_sell, "2", "101")
    huge = open_spread(seeded, "1e70000")
    buy, sell = legs(seeded, huge)
    fill(seeded, buy, "1e70000", "100")
    fill(seeded, sell, "1e70000", "101")
    report = {r["spread_trade_id"]: r for r in rows(seeded, "trading.spread_trade_pnl", strategy="alpha")}
    assert (report[small]["captured_spread"], report[small]["net_pnl"]) == (Decimal("2"), Decimal("2"))
    assert (report[huge]["captured_spread"], report[huge]["matched_base_quantity"]) == (
        Decimal("1e70000"),
        Decimal("1e70000"),
    )
    [summary] = rows(seeded, "trading.spread_trade_summary", strategy="alpha")
    with localcontext() as ctx:
        ctx.prec = 70010  # every digit of 10^70000 + 2
        total = Decimal("1e70000") + 2
    assert (summary["spread_trades"], summary["captured_spread"]) == (2, total)


def test_a_partly_matched_huge_spread_trade_captures_the_spread_of_the_matched_part(
    seeded: psycopg.Connection,
) -> None:
    list_okx_btc_spot(seeded)
    huge = open_spread(seeded, "3e70000")
    buy, sell = legs(seeded, huge)
    fill(seeded, buy, "3e70000", "100")
    fill(seeded, sell, "1e70000", "101")
    [row] = rows(seeded, "trading.spread_trade_pnl", strategy="alpha")
    assert (row["matched_base_quantity"], row["captured_spread"], row["residual_quantity"]) == (
        Decimal("1e70000"),
        Decimal("1e70000"),
        Decimal("2e70000"),
    )


# bug (minor): the captured spread divided matched x value by the filled quantity at 16 significant
# digits, so at prices near 10^9 (BTC in IDR) it had 8 decimals, not the 12 it is rounded to:
# 999999900.233333330000 for 999999900.233333333333
def test_the_captured_spread_of_a_leg_matched_in_part_is_exact_to_twelve_decimals(
    seeded: psycopg.Connection,
) -> None:
    list_okx_btc_spot(seeded)
    spread = open_spread(seeded, "3", buy_price=Decimal("100"), sell_price=Decimal("1000000000.4"))
    buy, sell = legs(seeded, spread)
    fill(seeded, buy, "1", "100")
    for price in ("1000000000.1", "1000000000.2", "1000000000.4"):
        fill(seeded, sell, "1", price)
    [row] = rows(seeded, "trading.spread_trade_pnl", strategy="alpha")
    # 1 x 3000000000.7 / 3 - 1 x 100
    assert row["captured_spread"] == Decimal("999999900.233333333333")
