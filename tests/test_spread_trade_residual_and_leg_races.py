"""Spread trades at their edges: the residual of legs whose contracts differ in size, and a leg's
client order id taken by a placement that commits while the spread trade waits for it."""

from __future__ import annotations

from decimal import Decimal

import psycopg

from market_helpers import RECENT_NOON, quote
from trading_helpers import (
    PERPETUAL_PRICES,
    PERPETUALS,
    fill,
    legs,
    list_okx_btc_spot,
    list_perpetual,
    open_spread,
    place,
    position,
    race,
    rows,
)

T0 = RECENT_NOON


def _spread_whose_sell_contract_shrank_before_its_fill(conn: psycopg.Connection) -> None:
    """10 okx contracts of 0.01 BTC bought at 60,000 (+0.1 BTC), then bybit's contract shrinks to
    0.001 BTC and 10 are sold at 60,100 (-0.01 BTC): 0.09 BTC unhedged."""
    list_perpetual(conn, "bybit", "BTCUSDT", "0.01")  # the size of okx BTC-USDT-SWAP (seeded)
    buy, sell = legs(conn, open_spread(conn, "10", **PERPETUALS, **PERPETUAL_PRICES))
    fill(conn, buy, "10", "60000", executed_at=T0)
    list_perpetual(conn, "bybit", "BTCUSDT", "0.001")
    fill(conn, sell, "10", "60100", executed_at=T0)


# bug: the residual summed both legs' contracts (10 - 10 = 0) though they were of different sizes
def test_a_spread_whose_sell_contract_shrank_before_its_fill_reports_the_unhedged_btc_as_residual(
    seeded: psycopg.Connection,
) -> None:
    _spread_whose_sell_contract_shrank_before_its_fill(seeded)
    long_leg = position(seeded, "alpha", "okx", "BTC-USDT-SWAP")
    short_leg = position(seeded, "alpha", "bybit", "BTCUSDT")
    net_btc = long_leg["quantity"] * Decimal("0.01") + short_leg["quantity"] * Decimal("0.001")
    assert net_btc == Decimal("0.09")

    (r,) = rows(seeded, "trading.spread_trade_pnl")

    # 0.09 BTC long: 9 okx contracts of 0.01 BTC at the buy leg's mark (its latest fill, 60,000)
    assert (r["matched_base_quantity"], r["residual_quantity"], r["residual_exposure"]) == (
        Decimal("0.01"),
        Decimal("9"),
        Decimal("5400"),
    )


def test_the_summary_counts_a_spread_whose_legs_filled_as_many_contracts_of_different_sizes_as_uneven(
    seeded: psycopg.Connection,
) -> None:
    _spread_whose_sell_contract_shrank_before_its_fill(seeded)
    (s,) = rows(seeded, "trading.spread_trade_summary")
    assert (s["spread_trades"], s["uneven_trades"]) == (1, 1)


def test_the_residual_after_a_legs_contract_changed_is_what_the_positions_hold_now(
    seeded: psycopg.Connection,
) -> None:
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")
    buy, sell = legs(seeded, open_spread(seeded, "10", **PERPETUALS, **PERPETUAL_PRICES))
    fill(seeded, buy, "4", "60000", executed_at=T0)
    fill(seeded, sell, "10", "60100", executed_at=T0)
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.001")  # the 10 bybit contracts short are now 0.01 BTC
    quote(seeded, T0, "59900", "60100", exchange="okx", symbol="BTC-USDT-SWAP")  # okx mid 60000

    (r,) = rows(seeded, "trading.spread_trade_pnl")

    # 4 x 0.01 BTC long against 10 x 0.001 BTC short: 0.03 BTC long, 3 okx contracts
    assert (r["residual_quantity"], r["residual_exposure"]) == (Decimal("3"), Decimal("1800"))


# bug: the check of the legs' client order ids read committed orders only, and place_order then
# returned the order placed under "arb-1-buy" as its retry once that committed: the spread trade
# claimed as its buy leg an order it never placed
def test_a_spread_leg_whose_client_order_id_a_concurrent_placement_takes_is_a_conflict_not_claimed(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    list_okx_btc_spot(seeded)
    earlier, result = race(
        seeded,
        seeded_url,
        # the order the buy leg would be, placed on its own by another session, not yet committed
        lambda c: place(c, "buy", "2", "100", client_order_id="arb-1-buy"),
        lambda c: open_spread(c, client_spread_id="arb-1"),
    )

    # as when the earlier order committed first: 23S06, and nothing written
    assert isinstance(result, psycopg.Error)
    assert (result.sqlstate, result.diag.message_primary) == (
        "23S06",
        f'client order id "arb-1-buy" of the buy leg is already used by order {earlier}',
    )
    written = seeded.execute(
        "select (select count(*) from trading.spread_trades), (select count(*) from trading.orders)"
    ).fetchone()
    assert written == (0, 1)


def test_a_spread_trade_opened_under_a_savepoint_places_its_legs(seeded: psycopg.Connection) -> None:
    list_okx_btc_spot(seeded)
    with seeded.transaction(), seeded.transaction():  # the inner one is a savepoint
        spread = open_spread(seeded, client_spread_id="arb-1")
    placed = seeded.execute(
        "select client_order_id from trading.orders where order_id in (%s, %s) order by client_order_id",
        list(legs(seeded, spread)),
    ).fetchall()
    assert placed == [("arb-1-buy",), ("arb-1-sell",)]
