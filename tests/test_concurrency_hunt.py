"""Background jobs racing the write path: candle rollups, loads, snapshots and fills at once.

Each test forces one interleaving with locks held by a third session (never by sleeping and
hoping), then checks that neither side failed (no deadlock, 40P01) and the result is a serial one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import psycopg

from market_helpers import CANDLES_HEADER, RECENT_NOON, instrument_id, load, tick
from spreadedge import ingest
from trading_helpers import waits_for_a_lock

T0 = RECENT_NOON


def _attempt(action: Any, conn: psycopg.Connection) -> Any:
    try:
        return action(conn)
    except psycopg.Error as exc:  # returned for the test to assert on
        return exc


def _candle_file(path: Path, *rows: tuple[str, str, str, Any, str]) -> Path:
    """A candles CSV of (exchange, symbol, interval, open_time, "open,high,low,close,volume,quote_volume,trades")."""
    path.write_text(
        CANDLES_HEADER
        + "".join(
            f"{exchange},{symbol},{interval},{at:%Y-%m-%dT%H:%M:%SZ},{values}\n"
            for exchange, symbol, interval, at, values in rows
        )
    )
    return path


# --- candle rollups racing candle loads ------------------------------------------------------------


def test_a_candle_load_and_a_rollup_of_its_minutes_at_once_both_complete(seeded, seeded_url, tmp_path):
    # the load writes in key order (instrument, interval, open_time), the rollup interval by
    # interval: a load of instrument a's 5m candle and instrument b's 1m candle, and a rollup of
    # b's ticks (its 1m candle, then a's 5m candle from a's stored minute) took those two rows in
    # opposite orders
    (a_exchange, a_symbol), (b_exchange, b_symbol) = sorted(
        [("binance", "BTCUSDT"), ("okx", "BTC-USDT-SWAP")], key=lambda key: instrument_id(seeded, *key)
    )
    old_day = T0.replace(hour=0) - timedelta(days=2)
    assert (
        load(
            seeded_url,
            "candles",
            _candle_file(
                tmp_path / "setup.csv",
                (a_exchange, a_symbol, "1m", T0, "100,110,90,105,10,1000,50"),
                (a_exchange, a_symbol, "1d", old_day, "95,120,80,102,5000,500000,90000"),
            ),
        ).loaded
        == 2
    )
    tick(
        seeded, T0 + timedelta(seconds=30), "60000", "1", trade_id="b1", exchange=b_exchange, symbol=b_symbol
    )
    batch = _candle_file(
        tmp_path / "batch.csv",
        (a_exchange, a_symbol, "5m", T0, "100,112,88,106,20,2000,80"),
        # between the two in key order: held by a third session, it stops the load there
        (a_exchange, a_symbol, "1d", old_day, "95,120,80,102,5000,500000,90000"),
        (b_exchange, b_symbol, "1m", T0, "60010,60020,59990,60005,3,180015,7"),
    )

    def run_load(conn: psycopg.Connection) -> Any:
        return ingest.ingest(conn, "candles", [batch])

    def run_rollup(conn: psycopg.Connection) -> Any:
        return conn.execute(
            "select * from market.rollup_candles(until => %s)", [T0 + timedelta(minutes=5)]
        ).fetchall()

    with (
        psycopg.connect(seeded_url) as holder,
        psycopg.connect(seeded_url, autocommit=True) as loader,
        psycopg.connect(seeded_url, autocommit=True) as roller,
        ThreadPoolExecutor(2) as pool,
    ):
        holder.execute(
            "select from market.candles where interval = '1d' and open_time = %s for update", [old_day]
        )
        loading = pool.submit(_attempt, run_load, loader)
        assert waits_for_a_lock(seeded, loader.info.backend_pid, ended=loading.done)  # a's 5m written
        rolling = pool.submit(_attempt, run_rollup, roller)
        assert waits_for_a_lock(seeded, roller.info.backend_pid, ended=rolling.done)
        holder.commit()
        loaded, rolled = loading.result(timeout=30), rolling.result(timeout=30)
    assert not isinstance(loaded, psycopg.Error), loaded
    assert not isinstance(rolled, psycopg.Error), rolled
    assert (loaded.loaded, loaded.duplicates) == (2, 1)
    # the exchange's candles are kept; the rollup built the rest around them
    assert seeded.execute(
        "select instrument_id, interval::text, open, trade_count, loaded from market.candles"
        " where open_time = %s and interval in ('1m', '5m') order by 1, 2",
        [T0],
    ).fetchall() == [
        (instrument_id(seeded, a_exchange, a_symbol), "1m", D("100"), 50, True),
        (instrument_id(seeded, a_exchange, a_symbol), "5m", D("100"), 80, True),
        (instrument_id(seeded, b_exchange, b_symbol), "1m", D("60010"), 7, True),
        (instrument_id(seeded, b_exchange, b_symbol), "5m", D("60010"), 7, False),
    ]
