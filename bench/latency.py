"""Latency of trading.pnl_summary over 30 days of history, from Python with a prepared statement."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg.errors import Diagnostic

from bench.sqlfile import statement, statements

WARMUP_RUNS = 20


@dataclass(frozen=True)
class Latency:
    """Timings of one query, in milliseconds."""

    runs: int
    median_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float

    def as_json(self) -> dict[str, float | int]:
        return {
            name: round(value, 3) if isinstance(value, float) else value for name, value in vars(self).items()
        }


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (p99 of 200 runs is the 198th fastest)."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def check_pnl_summary(conninfo: str, strategy: str) -> tuple[bool, dict[str, Any]]:
    """Whether pnl_summary over a fixed 30-day window equals the sums over the trades themselves."""
    with psycopg.connect(conninfo) as conn:
        since, until = conn.execute(statement("pnl_window.sql")).fetchone()  # type: ignore[misc]
        window = {"strategy": strategy, "since": since, "until": until}
        expected = conn.execute(statement("pnl_check.sql"), window).fetchone()
        got = conn.execute(statement("pnl_summary_at.sql"), window).fetchone()
    names = ("trades", "volume", "notional", "fees", "realized_pnl_gross")
    detail = {
        name: {"pnl_summary": _plain(g), "trades": _plain(e)}
        for name, g, e in zip(names, got or (None,) * 5, expected or (None,) * 5, strict=True)
    }
    agrees = got is not None and expected is not None and tuple(got) == tuple(expected) and bool(expected[0])
    return agrees, detail


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def time_pnl_summary(conninfo: str, strategy: str, *, runs: int, budget_s: float) -> Latency:
    """Run the query ``runs`` times after a warm-up (fewer if ``budget_s`` runs out, at least 10)."""
    query = statement("pnl_summary.sql")
    params = {"strategy": strategy}
    timings: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for _ in range(WARMUP_RUNS):
            conn.execute(query, params, prepare=True).fetchall()
        deadline = time.monotonic() + budget_s
        while len(timings) < runs and (len(timings) < 10 or time.monotonic() < deadline):
            started = time.perf_counter()
            rows = conn.execute(query, params, prepare=True).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
            if len(rows) != 1:
                raise RuntimeError(f"pnl_summary returned {len(rows)} rows for {strategy}, expected one")
    return summarize(timings)


def summarize(timings: list[float]) -> Latency:
    """Median, p99, min, max and mean of timings in milliseconds."""
    return Latency(
        runs=len(timings),
        median_ms=statistics.median(timings),
        p99_ms=percentile(timings, 0.99),
        min_ms=min(timings),
        max_ms=max(timings),
        mean_ms=statistics.fmean(timings),
    )


def explain_pnl_summary(conninfo: str, strategy: str, path: Path) -> None:
    """Write the EXPLAIN ANALYZE of every statement the query runs inside pnl_summary to ``path``.

    auto_explain with nested statements shows the plans inside the PL/pgSQL function, which a
    plain EXPLAIN of the call cannot. The query runs a few times first, as in the timed runs, so
    the plans shown are the ones PL/pgSQL settled on.
    """
    notices: list[str] = []

    def collect(diagnostic: Diagnostic) -> None:
        if diagnostic.message_primary:
            notices.append(diagnostic.message_primary)

    query = statement("pnl_summary.sql")
    params = {"strategy": strategy}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # why 6: PL/pgSQL settles on a generic or custom plan after five executions
        for _ in range(6):
            conn.execute(query, params, prepare=True).fetchall()
        for stmt in statements("auto_explain.sql"):
            conn.execute(stmt)
        conn.add_notice_handler(collect)
        conn.execute(query, params, prepare=True).fetchall()
    path.write_text("\n\n".join(notices) + "\n")
