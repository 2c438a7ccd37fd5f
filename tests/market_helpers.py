"""Helpers of the market data tests: instrument ids, rows written straight into the tables, and
spreadedge ingest runs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from spreadedge import ingest
from spreadedge.cli import main
from trading_helpers import rows

# why relative: market data keeps daily partitions for partition_history_days (7) back, so a fixed
# date stops having partitions a week later; noon yesterday keeps whole hours on either side
RECENT_NOON = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)

# -- spreadedge ingest ------------------------------------------------------------------------------

# the day of the rows loaded: recent, so that its daily partitions exist
DAY = f"{RECENT_NOON:%Y-%m-%d}"
QUOTES_HEADER = "exchange,symbol,quoted_at,bid,bid_size,ask,ask_size\n"
TICKS_HEADER = "exchange,symbol,traded_at,exchange_trade_id,price,quantity,side\n"
SUMMARY = re.compile(
    r"loaded (\d+) rows, skipped (\d+) duplicates, rejected (\d+) rows in [0-9.]+ s \([0-9,]+ rows/s\)"
)


def invoke(url: str, *args: str) -> Result:
    """The spreadedge CLI run against the database at url."""
    return CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False)


def summary_of(output: str) -> tuple[int, ...]:
    """(loaded, skipped, rejected) of the summary line an ingest run printed."""
    found = SUMMARY.search(output)
    assert found, output
    return tuple(int(n) for n in found.groups())


def load(url: str, kind: str, *paths: Path, batch_rows: int = ingest.DEFAULT_BATCH_ROWS) -> ingest.Summary:
    """spreadedge.ingest.ingest of paths in a session of its own."""
    with psycopg.connect(url, autocommit=True) as conn:
        return ingest.ingest(conn, kind, list(paths), batch_rows=batch_rows)


def rejects_file(path: Path) -> Path:
    """The file the rows of path that ingest rejected are written to."""
    return path.with_name(path.name + ".rejects.csv")


def rejects_of(path: Path) -> list[str]:
    """The lines of the rejects file of path."""
    return rejects_file(path).read_text().splitlines()


def instrument_id(conn: psycopg.Connection, exchange: str = "binance", symbol: str = "BTCUSDT") -> int:
    return conn.execute(
        "select i.instrument_id from ref.instruments i join ref.exchanges e using (exchange_id)"
        " where e.code = %s and i.symbol = %s",
        [exchange, symbol],
    ).fetchone()[0]


def quote(
    conn: psycopg.Connection,
    at: datetime,
    bid: str,
    ask: str,
    *,
    exchange: str = "binance",
    symbol: str = "BTCUSDT",
    size: str = "1",
    bid_size: str | None = None,
    ask_size: str | None = None,
) -> None:
    """A quote of size ``size`` on both sides, unless ``bid_size`` or ``ask_size`` says otherwise."""
    conn.execute(
        "insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size)"
        " values (%s, %s, %s, %s, %s, %s)",
        [
            instrument_id(conn, exchange, symbol),
            at,
            Decimal(bid),
            Decimal(bid_size or size),
            Decimal(ask),
            Decimal(ask_size or size),
        ],
    )


def tick(
    conn: psycopg.Connection,
    at: datetime,
    price: str,
    quantity: str = "1",
    *,
    trade_id: str,
    exchange: str = "binance",
    symbol: str = "BTCUSDT",
) -> None:
    conn.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " values (%s, %s, %s, %s, %s)",
        [instrument_id(conn, exchange, symbol), at, trade_id, Decimal(price), Decimal(quantity)],
    )


def ticks_in_one_statement(
    conn: psycopg.Connection,
    at: datetime,
    trades: list[tuple[str, str]],
    *,
    exchange: str = "binance",
    symbol: str = "BTCUSDT",
) -> None:
    """Trades (trade id, price), quantity 1, all at ``at`` and in one insert: one batch for the
    statement triggers on market.ticks."""
    conn.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select %s, %s, t.trade_id, t.price, 1 from unnest(%s::text[], %s::numeric[]) t (trade_id, price)",
        [
            instrument_id(conn, exchange, symbol),
            at,
            [trade_id for trade_id, _ in trades],
            [Decimal(price) for _, price in trades],
        ],
    )


def tick_line(trade_id: Any, **fields: Any) -> str:
    """A JSON Lines tick of binance BTCUSDT at noon yesterday (UTC), 1 at 100, with fields overridden."""
    record = {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "traded_at": f"{RECENT_NOON:%Y-%m-%d}T12:00:00Z",
        "exchange_trade_id": trade_id,
        "price": "100",
        "quantity": "1",
        **fields,
    }
    return json.dumps(record) + "\n"


# -- candles ---------------------------------------------------------------------------------------

CANDLES_HEADER = "exchange,symbol,interval,open_time,open,high,low,close,volume,quote_volume,trade_count\n"


def candle_file(tmp_path: Path, name: str, *rows: tuple[str, datetime, str]) -> Path:
    """A CSV of binance BTCUSDT candles: (interval, open_time, "open,high,low,close,volume,quote_volume,trades")."""
    path = tmp_path / name
    path.write_text(
        CANDLES_HEADER
        + "".join(
            f"binance,BTCUSDT,{interval},{at:%Y-%m-%dT%H:%M:%SZ},{values}\n" for interval, at, values in rows
        )
    )
    return path


def stored_candle(conn: psycopg.Connection, interval: str, open_time: datetime) -> tuple[Any, ...] | None:
    """(open, high, low, close, volume, quote_volume, trade_count, loaded) of a stored candle."""
    return conn.execute(
        "select open, high, low, close, volume, quote_volume, trade_count, loaded from market.candles"
        " where interval = %s and open_time = %s",
        [interval, open_time],
    ).fetchone()


def as_stored(values: str, *, loaded: bool) -> tuple[Any, ...]:
    """What stored_candle reads for a candle of "open,high,low,close,volume,quote_volume,trades"."""
    *amounts, trades = values.split(",")
    return (*(Decimal(amount) for amount in amounts), int(trades), loaded)


def opportunities(conn: psycopg.Connection, since: datetime, **kwargs: Any) -> list[dict[str, Any]]:
    """market.spread_opportunities of BTC/USDT over [since, since + 1 s), unless kwargs say otherwise."""
    arguments: dict[str, Any] = {"symbol": "BTC/USDT", "since": since, "until": since + timedelta(seconds=1)}
    return rows(conn, "market.spread_opportunities", **(arguments | kwargs))
