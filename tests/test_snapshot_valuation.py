"""Portfolio snapshots in one valuation asset: positions quoted in another asset are converted at
the owner's marks, never added at par; a position that cannot be converted refuses the snapshot."""

from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, quote
from trading_helpers import counts, list_binance_eth_btc, rows, trade


@pytest.fixture
def eth_btc(seeded):
    """ETH/BTC listed on binance, and BTC/USDT quoted at 49,990/50,010 (a mid of 50,000)."""
    list_binance_eth_btc(seeded)
    quote(seeded, RECENT_NOON, "49990", "50010")
    return seeded


def snapshot(conn, **arguments) -> dict:
    """The snapshot's rows by strategy name (None: the total row): realized, unrealized, gross, asset."""
    names = dict(conn.execute("select strategy_id, name from trading.strategies").fetchall())
    return {
        names.get(r["strategy_id"]): (
            r["realized_pnl"],
            r["unrealized_pnl"],
            r["gross_exposure"],
            r["valuation_asset"],
        )
        for r in rows(conn, "trading.take_portfolio_snapshot", **arguments)
    }


def test_a_snapshot_converts_a_position_in_btc_to_usdt_at_the_btc_mark(eth_btc):
    db = eth_btc
    trade(db, "buy", "1", "0.05", symbol="ETHBTC")
    trade(db, "sell", "1", "0.06", symbol="ETHBTC")  # +0.01 BTC: 500 USDT
    trade(db, "buy", "0.01", "60000")
    trade(db, "sell", "0.01", "59000")  # -10 USDT
    trade(db, "buy", "2", "0.05", symbol="ETHBTC")  # 0.1 BTC held: 5,000 USDT, marked at its fill

    taken = snapshot(db)

    assert taken["alpha"] == (Decimal("490"), Decimal("0"), Decimal("5000"), "USDT")
    assert taken[None] == (Decimal("490"), Decimal("0"), Decimal("5000"), "USDT")


def test_a_snapshot_in_btc_converts_usdt_through_the_inverse_pair(eth_btc):
    db = eth_btc
    trade(db, "buy", "0.01", "60000")
    trade(db, "sell", "0.01", "59000")  # -10 USDT: -0.0002 BTC at 50,000

    taken = snapshot(db, valuation_asset="btc")

    assert taken["alpha"] == (Decimal("-0.0002"), Decimal("0"), Decimal("0"), "BTC")


def test_a_snapshot_with_a_position_it_cannot_convert_raises_22s23_and_writes_nothing(seeded):
    trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")  # nothing prices USD in USDT
    before = counts(seeded)

    with pytest.raises(psycopg.Error) as caught:
        snapshot(seeded)

    assert caught.value.sqlstate == "22S23"
    assert caught.value.diag.message_primary == (
        "the position of alpha in ETHUSD on kraken is in USD, which has no market price in USDT"
    )
    # why not "or take the snapshot in USD": with positions in both assets that one fails too, its
    # hint pointing back here
    assert caught.value.diag.message_hint == (
        "Quote an instrument pairing USD with USDT (or its inverse pair), then take the snapshot again."
    )
    assert seeded.execute("select count(*) from trading.portfolio_snapshots").fetchone() == (0,)
    assert counts(seeded) == before


def test_a_flat_position_with_nothing_realized_needs_no_price(seeded):
    trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")
    trade(seeded, "sell", "1", "2000", exchange="kraken", symbol="ETHUSD")  # flat, nothing realized

    assert snapshot(seeded)[None] == (Decimal("0"), Decimal("0"), Decimal("0"), "USDT")


def test_a_snapshot_in_an_asset_no_instrument_trades_is_refused_with_22s09(seeded):
    with pytest.raises(psycopg.Error) as caught:
        snapshot(seeded, valuation_asset="USTD")

    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary == 'valuation_asset "USTD" is an asset no instrument trades'
