"""Market data measurements: ingestion against raw COPY, indicators over a month, current spreads.

Ingestion sends the same rows three ways, each in transactions of ``BATCH`` rows, from bytes built
before the clock starts (so Python's own speed is not measured):

- raw: COPY of typed rows into an unlogged, unindexed table (the baseline);
- ingest: what ``spreadedge ingest`` does, COPY of text rows into the staging table, then
  ``market.load_staged_<kind>`` (validation, dedup, insert into the partitioned, indexed table,
  latest-price trigger);
- direct: COPY of typed rows straight into the partitioned, indexed table (no validation), to show
  what the table itself costs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from bench.latency import Latency, percentile
from bench.sqlfile import statement, statements

BATCH = 50_000
CHUNK = 1 << 20


@dataclass(frozen=True)
class IngestRates:
    """Rows per second of one kind of market data, three ways."""

    kind: str
    rows: int
    raw_per_s: float
    ingest_per_s: float
    direct_per_s: float

    def as_json(self) -> dict[str, Any]:
        return {
            name: round(value, 1) if isinstance(value, float) else value for name, value in vars(self).items()
        }


def _instruments(conn: psycopg.Connection[Any]) -> list[tuple[int, str, str]]:
    return conn.execute(statement("market_instruments.sql")).fetchall()  # type: ignore[return-value]


def _lines(
    kind: str, rows: int, instruments: list[tuple[int, str, str]], tag: str, shift: timedelta = timedelta(0)
) -> Iterator[tuple[str, str]]:
    """(staging line, typed line) per row, times spread over the two days before now, plus shift."""
    start = datetime.now(UTC) - timedelta(days=2) + shift
    step = timedelta(days=2) / (rows + 1)
    for n in range(rows):
        instrument_id, exchange, symbol = instruments[n % len(instruments)]
        at = (start + step * (n + 1)).isoformat(timespec="microseconds")
        price = f"{60000 + (n % 997) / 10:.1f}"
        if kind == "ticks":
            side = "buy" if n % 2 else "sell"
            yield (
                f"{n + 1}\t{exchange}\t{symbol}\t{at}\t{tag}{n}\t{price}\t0.01\t{side}\t\\N\n",
                f"{instrument_id}\t{at}\t{tag}{n}\t{price}\t0.01\t{side}\n",
            )
        else:
            ask = f"{60000 + (n % 997) / 10 + 0.5:.1f}"
            yield (
                f"{n + 1}\t{exchange}\t{symbol}\t{at}\t{price}\t1.5\t{ask}\t2\t\\N\n",
                f"{instrument_id}\t{at}\t{price}\t1.5\t{ask}\t2\n",
            )


def _batches(lines: list[str]) -> list[bytes]:
    return ["".join(lines[i : i + BATCH]).encode() for i in range(0, len(lines), BATCH)]


def _copy(cur: psycopg.Cursor[Any], copy_sql: sql.Composed, data: bytes) -> None:
    with cur.copy(copy_sql) as copy:
        for i in range(0, len(data), CHUNK):
            copy.write(data[i : i + CHUNK])


def _typed_copy(table: str, kind: str) -> sql.Composed:
    schema, name = table.split(".")
    columns = (
        ["instrument_id", "traded_at", "exchange_trade_id", "price", "quantity", "side"]
        if kind == "ticks"
        else ["instrument_id", "quoted_at", "bid", "bid_size", "ask", "ask_size"]
    )
    return sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def measure_ingest(conninfo: str, kind: str, rows: int) -> IngestRates:
    """rows of ``kind`` (ticks or quotes) loaded raw, through the ingest path, and directly."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        instruments = _instruments(conn)
        staged, typed = zip(*_lines(kind, rows, instruments, "i"), strict=True)
        # one quote per instrument and time: the direct rows come a microsecond later
        shift = timedelta(microseconds=1) if kind == "quotes" else timedelta(0)
        direct_typed = [line for _, line in _lines(kind, rows, instruments, "d", shift)]
        raw_table = f"public.bench_raw_{kind}"
        load = sql.SQL("select loaded from market.{}(p_strict => false)").format(
            sql.Identifier(f"load_staged_{kind}")
        )
        timings: dict[str, float] = {}
        with conn.cursor() as cur:
            started = time.perf_counter()
            for data in _batches(list(typed)):
                with conn.transaction():
                    _copy(cur, _typed_copy(raw_table, kind), data)
            timings["raw"] = time.perf_counter() - started

            started = time.perf_counter()
            loaded = 0
            for data in _batches(list(staged)):
                with conn.transaction():
                    columns = cur.execute("select market.stage_rows(%s)", [kind]).fetchone()[0]  # type: ignore[index]
                    copy_sql = sql.SQL("copy {} ({}) from stdin").format(
                        sql.Identifier("pg_temp", f"staged_{kind}"),
                        sql.SQL(", ").join(map(sql.Identifier, columns)),
                    )
                    _copy(cur, copy_sql, data)
                    loaded += cur.execute(load).fetchone()[0]  # type: ignore[index]
            timings["ingest"] = time.perf_counter() - started
            if loaded != rows:
                raise RuntimeError(f"the ingest path loaded {loaded} of {rows} {kind}")

            started = time.perf_counter()
            for data in _batches(direct_typed):
                with conn.transaction():
                    _copy(cur, _typed_copy(f"market.{kind}", kind), data)
            timings["direct"] = time.perf_counter() - started
    return IngestRates(kind, rows, rows / timings["raw"], rows / timings["ingest"], rows / timings["direct"])


def _time(conninfo: str, query: sql.SQL, params: dict[str, Any], runs: int, budget_s: float) -> Latency:
    timings: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for _ in range(2):
            conn.execute(query, params, prepare=True).fetchall()
        deadline = time.monotonic() + budget_s
        while len(timings) < runs and (len(timings) < 5 or time.monotonic() < deadline):
            started = time.perf_counter()
            conn.execute(query, params, prepare=True).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    return Latency(
        runs=len(timings),
        median_ms=statistics.median(timings),
        p99_ms=percentile(timings, 0.99),
        min_ms=min(timings),
        max_ms=max(timings),
        mean_ms=statistics.fmean(timings),
    )


def time_indicators(conninfo: str, *, runs: int, budget_s: float) -> Latency:
    """All indicators over one month (43,200) of 1m candles of one instrument."""
    until = datetime.now(UTC).replace(second=0, microsecond=0)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        instrument_id = _instruments(conn)[0][0]
        conn.execute(statement("market_candles.sql"), {"instrument_id": instrument_id, "until": until})
        conn.execute("analyze market.candles")
    params = {"instrument_id": instrument_id, "since": until - timedelta(days=30), "until": until}
    return _time(conninfo, statement("market_indicators.sql"), params, runs, budget_s)


def time_current_spreads(conninfo: str, *, runs: int, budget_s: float) -> Latency:
    """market.current_spreads over 200 pairs on six exchanges."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for stmt in statements("market_spread_fixtures.sql"):
            conn.execute(stmt)
        conn.execute("analyze market.latest_prices")
        conn.execute("analyze ref.instruments")
    return _time(conninfo, statement("market_spreads.sql"), {}, runs, budget_s)


def prepare(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for stmt in statements("market_prepare.sql"):
            conn.execute(stmt)
