"""The synthetic trading history pnl_summary is timed on, bulk-loaded set-based in parallel.

N trades (rounded up to whole round trips of every pair) over the last 30 UTC days and the
current day up to a minute ago, across the ``s*`` strategies and the 12 bench instruments, with
their orders, order events, trade keys, daily rollup and positions, all consistent with what
record_fill would have written (bench/sql/load_batch.sql explains the construction).

The loader sessions run with ``session_replication_role = replica``: the audit triggers and the
foreign-key triggers do not fire for the bulk load, so the loaded history has no audit.log rows.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from bench.progress import progress
from bench.sqlfile import statement, statements

FILLS_PER_ORDER = 5
# Trades per batch, at most: one transaction of each loader; about 7 s of work on a 2-core machine.
MAX_BATCH = 240_000
# Tables the load writes, vacuumed and analyzed after it (the biggest first).
LOADED_TABLES = (
    "trading.trades",
    "trading.trade_keys",
    "trading.order_events",
    "trading.orders",
    "trading.order_keys",
    "trading.daily_pnl",
    "trading.hourly_pnl",
    "trading.positions",
)


@dataclass(frozen=True)
class LoadPlan:
    """What to generate: trade n is at t0 + n x step_us and has id first_trade_id + n."""

    trades: int
    pairs: int
    fills: int
    batch: int
    t0: datetime
    step_us: int
    first_trade_id: int
    first_order_id: int

    @property
    def orders(self) -> int:
        return self.trades // self.fills

    def params(self, lo: int, hi: int) -> dict[str, Any]:
        return {
            "lo": lo,
            "hi": hi,
            "t0": self.t0,
            "step_us": self.step_us,
            "pairs": self.pairs,
            "fills": self.fills,
            "first_trade_id": self.first_trade_id,
            "first_order_id": self.first_order_id,
            "trades": self.trades,
        }


@dataclass(frozen=True)
class LoadResult:
    """How the load went."""

    trades: int
    orders: int
    workers: int
    load_s: float
    vacuum_s: float
    t0: str
    until: str

    @property
    def trades_per_s(self) -> float:
        return self.trades / self.load_s if self.load_s else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "trades_per_s": round(self.trades_per_s)}


def _loader_session(conn: psycopg.Connection[Any]) -> None:
    """Set a connection up for loading: no audit or FK triggers, room for the batch table."""
    conn.execute("set session_replication_role = replica")
    conn.execute("set temp_buffers = '256MB'")
    conn.execute("set synchronous_commit = off")
    for stmt in statements("load_prepare.sql"):
        conn.execute(stmt)
    conn.commit()


def _plan(conn: psycopg.Connection[Any], requested: int, workers: int) -> LoadPlan:
    """Round the trade count to whole round trips, place it in time, reserve its ids."""
    pairs = int(conn.execute("select count(*) from bench_pairs").fetchone()[0])  # type: ignore[index]
    if pairs == 0:
        raise RuntimeError("no bench strategies (s1..sN) or instruments: fixtures.sql did not run")
    unit = pairs * FILLS_PER_ORDER * 2  # one round trip (buy order, sell order) of every pair
    units = max(1, math.ceil(requested / unit))
    trades = units * unit
    # Small loads get small batches too, so every loader has work.
    batch = unit * max(1, min(MAX_BATCH // unit, units // (workers * 4)))
    t0, until = conn.execute(
        "select date_trunc('day', now(), 'UTC') - interval '30 days', now() - interval '1 minute'"
    ).fetchone()  # type: ignore[misc]
    step_us = int((until - t0).total_seconds() * 1_000_000) // trades
    first_trade_id = _reserve(conn, "trading.trade_id_seq", trades)
    first_order_id = _reserve(conn, "trading.order_id_seq", trades // FILLS_PER_ORDER)
    conn.commit()
    return LoadPlan(trades, pairs, FILLS_PER_ORDER, batch, t0, step_us, first_trade_id, first_order_id)


def _reserve(conn: psycopg.Connection[Any], sequence: str, count: int) -> int:
    """Take ``count`` consecutive values of a sequence; the first one."""
    first = int(conn.execute("select nextval(%s::regclass)", [sequence]).fetchone()[0])  # type: ignore[index]
    conn.execute("select setval(%s::regclass, %s)", [sequence, first + count])
    return first


class _Loaders:
    """Loader threads, each with its own connection and a contiguous share of the batches."""

    def __init__(self, conninfo: str, plan: LoadPlan, workers: int) -> None:
        self.conninfo = conninfo
        self.plan = plan
        self.workers = workers
        self.done: queue.Queue[int] = queue.Queue()
        self.stop = threading.Event()
        self._conns: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def shares(self) -> list[list[tuple[int, int]]]:
        batches = [
            (lo, min(lo + self.plan.batch, self.plan.trades))
            for lo in range(0, self.plan.trades, self.plan.batch)
        ]
        per = math.ceil(len(batches) / self.workers)
        return [batches[i : i + per] for i in range(0, len(batches), per)]

    def load(self, batches: list[tuple[int, int]]) -> None:
        with psycopg.connect(self.conninfo) as conn:
            with self._lock:
                self._conns.append(conn)
            _loader_session(conn)
            for lo, hi in batches:
                if self.stop.is_set():
                    return
                with conn.transaction():
                    for stmt in statements("load_batch.sql"):
                        conn.execute(stmt, self.plan.params(lo, hi))
                self.done.put(hi - lo)

    def cancel(self) -> None:
        self.stop.set()
        with self._lock:
            for conn in self._conns:
                if not conn.closed:
                    conn.cancel_safe()


def load_history(
    conninfo: str, requested_trades: int, *, echo: Callable[[str], None], workers: int | None = None
) -> LoadResult:
    """Generate the history with a progress bar, then VACUUM ANALYZE what it wrote."""
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    with psycopg.connect(conninfo) as conn:
        _loader_session(conn)
        plan = _plan(conn, requested_trades, workers)
        echo(
            f"loading {plan.trades:,} trades ({plan.orders:,} orders) from {plan.t0:%Y-%m-%d %H:%M} UTC "
            f"with {workers} loaders, {plan.batch:,} trades a batch; audit and FK triggers off for the load"
        )
        loaders = _Loaders(conninfo, plan, workers)
        started = time.monotonic()
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-loader") as pool,
            progress(plan.trades, "trades") as advance,
        ):
            futures = [pool.submit(loaders.load, share) for share in loaders.shares()]
            try:
                _follow(loaders, futures, advance)
            except BaseException:
                loaders.cancel()
                raise
        with conn.transaction():
            conn.execute(statement("load_finish.sql"), plan.params(0, plan.trades))
        load_s = time.monotonic() - started
    echo(f"loaded in {load_s:.0f} s ({plan.trades / load_s:,.0f} trades/s); vacuum analyze")
    started = time.monotonic()
    vacuum_analyze(conninfo, workers)
    vacuum_s = time.monotonic() - started
    until = plan.t0.timestamp() + (plan.trades - 1) * plan.step_us / 1_000_000
    return LoadResult(
        trades=plan.trades,
        orders=plan.orders,
        workers=workers,
        load_s=round(load_s, 1),
        vacuum_s=round(vacuum_s, 1),
        t0=plan.t0.isoformat(),
        until=datetime.fromtimestamp(until, plan.t0.tzinfo).isoformat(),
    )


def _follow(loaders: _Loaders, futures: list[Future[None]], advance: Callable[[int], None]) -> None:
    """Advance the progress bar as batches finish; raise the first loader error."""
    while True:
        try:
            advance(loaders.done.get(timeout=0.2))
            continue
        except queue.Empty:
            pass
        for future in futures:
            if future.done() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        if all(future.done() for future in futures) and loaders.done.empty():
            return


def vacuum_analyze(conninfo: str, workers: int) -> None:
    """VACUUM ANALYZE the loaded tables, spread over ``workers`` sessions (trades gets its own)."""
    shares: list[list[str]] = [[] for _ in range(workers)]
    for i, table in enumerate(LOADED_TABLES):
        shares[min(i, workers - 1)].append(table)

    def vacuum(tables: list[str]) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for table in tables:
                schema, name = table.split(".")
                conn.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(schema, name)))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-vacuum") as pool:
        for future in [pool.submit(vacuum, share) for share in shares if share]:
            future.result()
