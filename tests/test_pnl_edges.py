"""Edges of PnL reporting and portfolio snapshots: what a snapshot or a summary reports when the
data moves under it or the input is at the edge of what it accepts."""

import threading

import psycopg
import pytest

from trading_helpers import rows, trade, waits_for_a_lock


def test_a_position_it_cannot_convert_opened_while_a_snapshot_is_taken_is_refused_not_left_out(
    seeded, seeded_url
):
    trade(seeded, "buy", "1", "100")  # alpha holds BTC/USDT, in the valuation asset
    failures: list[Exception] = []

    def snapshotter(conn: psycopg.Connection) -> None:
        try:
            rows(conn, "trading.take_portfolio_snapshot")
        except psycopg.Error as exc:  # asserted on below
            failures.append(exc)

    with psycopg.connect(seeded_url) as gate, psycopg.connect(seeded_url, autocommit=True) as taker:
        # compiles the function and caches its row type in the taker's session, so that the
        # snapshot below waits for the gate only when it first reads the snapshots table
        with pytest.raises(psycopg.errors.DataError):
            rows(taker, "trading.take_portfolio_snapshot", taken_at=None)
        gate.execute("lock table trading.portfolio_snapshots in access exclusive mode")
        thread = threading.Thread(target=snapshotter, args=(taker,))
        thread.start()
        waited = waits_for_a_lock(seeded, taker.info.backend_pid)
        # meanwhile a fill opens a position in USD, which nothing prices in USDT
        trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")
        gate.rollback()
        thread.join(timeout=30)
    assert waited
    assert [(e.sqlstate, e.diag.message_primary) for e in failures] == [
        ("22S23", "the position of alpha in ETHUSD on kraken is in USD, which has no market price in USDT")
    ]
    assert seeded.execute("select count(*) from trading.portfolio_snapshots").fetchone()[0] == 0
