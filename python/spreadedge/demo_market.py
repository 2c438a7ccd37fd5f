"""Market data of the demo day: quotes and ticks on all six exchanges, then candles and indicators.

Every instrument of the demo gets a quote and a public trade a minute (USDT/USD too, near 1, so
that USD positions have a price in USDT). Each venue quotes the asset
price with an offset of its own (a few bps, drifting slowly) and a half spread of about one bp,
so cross-exchange spreads open and close through the day; now and then they pay more than the
taker fees on the perpetuals (5 to 5.5 bps a side), never on spot, whose listed taker fees (10 to
60 bps a side) no offset of at most 8 bps overcomes: ``spreadedge spreads`` shows net losses there.
The rows go through the same path as ``spreadedge ingest`` (text staging, SQL validation, dedup),
then ``market.rollup_candles`` and ``market.compute_indicators`` run on them. The random walk is
seeded, so every database gets the same day. ``spreadedge.demo.run_demo`` loads it in its own
transaction, and only into a database without a demo day.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from spreadedge.demo import INSTRUMENTS, STABLE_PRICES, START_PRICES, Instrument
from spreadedge.ingest import Loader

MINUTES = 24 * 60
BATCH = 5_000


def _round(value: Decimal, tick: Decimal) -> Decimal:
    return (value / tick).to_integral_value() * tick


def market_records(day: datetime, seed: int = 11) -> Iterator[tuple[str, dict[str, Any]]]:
    """("quotes" | "ticks", record) for every minute of the day and every demo instrument.

    A stablecoin pair (USDT/USD) follows a walk of its own, a hundredth as wide, from a generator
    of its own: the crypto assets' walk, and the demo's orders priced from it, stay as they were.
    """
    rng = random.Random(seed)
    stable_rng = random.Random(seed + 1)
    walked = [i for i in INSTRUMENTS if i.base in START_PRICES]
    stable = [i for i in INSTRUMENTS if i.base in STABLE_PRICES]
    prices = {asset: float(price) for asset, price in START_PRICES.items()}
    stable_prices = {asset: float(price) for asset, price in STABLE_PRICES.items()}
    offsets = {(i.exchange, i.symbol): rng.uniform(-4, 4) for i in walked}
    for minute in range(MINUTES):
        at = day + timedelta(minutes=minute)
        for asset in prices:
            prices[asset] *= 1 + rng.gauss(0, 0.0006)
        for instrument in walked:
            key = (instrument.exchange, instrument.symbol)
            offsets[key] = max(-8.0, min(8.0, offsets[key] + rng.gauss(0, 0.6)))
            yield from _minute(
                rng, instrument, at, minute, prices[instrument.base] * (1 + offsets[key] / 10_000)
            )
        for asset in stable_prices:
            # why pulled back to 1: a stablecoin's price stays within a few bps of its peg
            stable_prices[asset] += (1 - stable_prices[asset]) * 0.01 + stable_rng.gauss(0, 0.000006)
        for instrument in stable:
            yield from _minute(stable_rng, instrument, at, minute, stable_prices[instrument.base])


def quote_path(day: datetime) -> dict[tuple[str, str], list[tuple[datetime, Decimal, Decimal]]]:
    """(quoted_at, bid, ask) of every minute of the day, by (exchange, symbol): the quotes the demo
    loads, so the demo's orders can be priced from the very market it shows."""
    path: dict[tuple[str, str], list[tuple[datetime, Decimal, Decimal]]] = {}
    for kind, record in market_records(day):
        if kind == "quotes":
            path.setdefault((record["exchange"], record["symbol"]), []).append(
                (datetime.fromisoformat(record["quoted_at"]), record["bid"], record["ask"])
            )
    return path


def _minute(
    rng: random.Random, instrument: Instrument, at: datetime, minute: int, mid: float
) -> Iterator[tuple[str, dict[str, Any]]]:
    half = max(float(instrument.tick), mid * rng.uniform(0.5, 1.5) / 10_000)
    bid = _round(Decimal(mid - half), instrument.tick)
    ask = max(_round(Decimal(mid + half), instrument.tick), bid + instrument.tick)
    common = {"exchange": instrument.exchange, "symbol": instrument.symbol}
    quoted_at = at + timedelta(seconds=rng.randint(0, 29), milliseconds=rng.randint(0, 999))
    size = Decimal(rng.randint(1, 400)) * instrument.lot * 100
    yield (
        "quotes",
        {
            **common,
            "quoted_at": quoted_at.isoformat(),
            "bid": bid,
            "bid_size": size,
            "ask": ask,
            "ask_size": size * 2,
        },
    )
    side = rng.choice(["buy", "sell"])
    yield (
        "ticks",
        {
            **common,
            "traded_at": (quoted_at + timedelta(seconds=rng.randint(1, 29))).isoformat(),
            "exchange_trade_id": f"demo-m{minute}",
            "price": ask if side == "buy" else bid,
            "quantity": Decimal(rng.randint(1, 50)) * instrument.lot * 10,
            "side": side,
        },
    )


def load_demo_market(conn: psycopg.Connection[Any], day: datetime) -> dict[str, int]:
    """Load the day's quotes and ticks, roll them up into candles, compute 5m indicators."""
    loaders = {kind: Loader(conn, kind, strict=True) for kind in ("quotes", "ticks")}
    batches: dict[str, list[tuple[int, dict[str, Any]]]] = {"quotes": [], "ticks": []}
    loaded = {"quotes": 0, "ticks": 0}

    def flush(kind: str) -> None:
        with conn.transaction():
            rows, _, rejects = loaders[kind].load_batch(batches[kind])
        if rejects:
            raise RuntimeError(f"demo market data rejected: {rejects[:3]}")
        loaded[kind] += rows
        batches[kind].clear()

    for line, (kind, record) in enumerate(market_records(day), start=1):
        batches[kind].append((line, record))
        if len(batches[kind]) >= BATCH:
            flush(kind)
    for kind in batches:
        if batches[kind]:
            flush(kind)
    with conn.transaction():
        # why wait: rollup_candles skips its run, writing nothing, when another one (pg_cron's, every
        # minute) holds its lock, and the demo day then had no candles and no indicators
        conn.execute("select internal.wait_for_candle_rollup()")
        # why a window back to the day from now: rollup_candles rebuilds from open_window before its
        # watermark, which is now in a database whose rollups have run (pg_cron's every minute); a
        # window of one day then began at this time of day yesterday, and the day's candles held
        # only its last hours. Where they never ran, a first run starts at the oldest tick's day.
        # clock_timestamp(): a run committed after this transaction began moved the watermark past now()
        candles = conn.execute(
            "select coalesce(sum(candles), 0) from market.rollup_candles(until => %(end)s,"
            " open_window => greatest(clock_timestamp() - %(day)s, interval '1 day'))",
            {"day": day, "end": day + timedelta(days=1)},
        ).fetchone()
        for instrument in INSTRUMENTS:
            conn.execute(
                "select market.compute_indicators(exchange => %s, symbol => %s, candle_interval => '5m',"
                " since => %s, until => %s)",
                [instrument.exchange, instrument.symbol, day, day + timedelta(days=1)],
            )
    return {**loaded, "candles": int(candles[0]) if candles else 0}
