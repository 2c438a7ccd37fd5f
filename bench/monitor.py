"""Monitoring bench: trading.place_order with risk limits on vs off, and evaluate_alert_rules().

Part of ``make bench``; runs alone too (its own scratch cluster, a few minutes)::

    .venv/bin/python -m bench.monitor --duration 10
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import click
import psycopg

from bench import pgbench, scratch, writes
from bench.latency import Latency, summarize
from bench.report import Goal, Row, table
from bench.sqlfile import statements
from spreadedge.cluster import Cluster

PLACE_ORDER_SCRIPT = writes.BENCH_DIR / "place_order.sql"
RULES = 1_000
RISK_GOAL = Goal("min_ratio", 0.85)
EVALUATE_GOAL = Goal("max_value", 200.0)


@dataclass(frozen=True)
class MonitorResult:
    """What the monitoring bench measured."""

    limits_off: pgbench.PgbenchRun
    limits_on: pgbench.PgbenchRun
    limits_open: pgbench.PgbenchRun
    working_orders: int
    rejected_orders: int
    runs_in_order: list[tuple[str, pgbench.PgbenchRun]]
    evaluate: Latency
    rules: int

    def as_json(self) -> dict[str, Any]:
        return {
            "place_order": {
                "limits_off": self.limits_off.as_json(),
                "limits_on": self.limits_on.as_json(),
                "limits_on_with_max_open_orders": self.limits_open.as_json(),
                "working_orders_per_strategy_at_end": self.working_orders,
                "rejected_orders": self.rejected_orders,
                "runs_in_order": [{"limits": limits, **run.as_json()} for limits, run in self.runs_in_order],
            },
            "evaluate_alert_rules": {"rules": self.rules, **self.evaluate.as_json()},
        }


def run_sql(conninfo: str, name: str, **params: int) -> None:
    with psycopg.connect(conninfo) as conn:
        for stmt in statements(name):
            conn.execute(stmt, params)


def measure_place_order(
    cluster: Cluster, dbname: str, *, clients: int, duration: int, strategies: int
) -> tuple[pgbench.PgbenchRun, pgbench.PgbenchRun, pgbench.PgbenchRun, list[tuple[str, pgbench.PgbenchRun]]]:
    """place_order.sql with limits off, on, on, off in half-length runs, then one half-length run
    with max_open_orders too: (off, on, on with max_open_orders, runs in order).

    Alternating so drift (other work, the orders table growing) weighs on both sides alike; the
    limits are taken off again whatever happens. Orders stay working (nothing fills them), so the
    working-orders count of the last run reads more orders with every placement.
    """
    conninfo = cluster.conninfo(dbname)
    half = max(1, duration // 2)
    runs: list[tuple[str, pgbench.PgbenchRun]] = []
    try:
        for limits in ("off", "on", "on", "off", "open"):
            run_sql(conninfo, f"monitor_limits_{limits}.sql", strategies=strategies)
            writes.checkpoint(conninfo)
            run = pgbench.run(
                cluster, dbname, clients=clients, duration=half, script=PLACE_ORDER_SCRIPT,
                defines={"strategies": strategies},
            )  # fmt: skip
            runs.append((limits, run))
    finally:
        run_sql(conninfo, "monitor_limits_off.sql", strategies=strategies)
    off = pgbench.combine([run for limits, run in runs if limits == "off"])
    on = pgbench.combine([run for limits, run in runs if limits == "on"])
    return off, on, runs[-1][1], runs


def working_orders(conninfo: str, strategies: int) -> int:
    """Working orders per live strategy (on average) at the end of the place_order runs."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(statements("monitor_working_orders.sql")[0], {"strategies": strategies}).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def rejected_orders(conninfo: str) -> int:
    """Orders of the live strategies a risk limit rejected (none should be: see result_rows)."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(statements("monitor_rejected.sql")[0]).fetchone()
    return int(row[0]) if row else 0


def time_evaluate(conninfo: str, *, rules: int, runs: int, budget_s: float) -> Latency:
    """Median and p99 of monitor.evaluate_alert_rules() over ``rules`` rules (their tables analyzed
    by monitor_rules.sql), after a first run."""
    run_sql(conninfo, "monitor_rules.sql", rules=rules)
    timings: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        query = statements("monitor_evaluate.sql")[0]
        conn.execute(query)  # the first evaluation opens the alerts of rules that fire (none should)
        deadline = time.monotonic() + budget_s
        while len(timings) < runs and (len(timings) < 10 or time.monotonic() < deadline):
            started = time.perf_counter()
            conn.execute(query).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    # why summarize: the other medians of the table are statistics.median (the mean of the two
    # middle runs of an even count); the nearest-rank 50th percentile took the lower one
    return summarize(timings)


def measure(cluster: Cluster, dbname: str, *, clients: int, duration: int, strategies: int) -> MonitorResult:
    """Every monitoring measurement, in the order the module docstring gives."""
    off, on, open_, runs = measure_place_order(
        cluster, dbname, clients=clients, duration=duration, strategies=strategies
    )
    working = working_orders(cluster.conninfo(dbname), strategies)
    rejected = rejected_orders(cluster.conninfo(dbname))
    evaluate = time_evaluate(cluster.conninfo(dbname), rules=RULES, runs=50, budget_s=30)
    return MonitorResult(off, on, open_, working, rejected, runs, evaluate, RULES)


def result_rows(result: MonitorResult, clients: int) -> list[Row]:
    return [
        Row(
            "place_order_risk_limits",
            f"place_order with risk limits on, {clients} clients",
            result.limits_on.tps,
            "tps",
            result.limits_off.tps,
            "(limits off)",
            RISK_GOAL,
            "bench/place_order.sql; every live strategy has max_order_notional, max_position_notional and "
            f"max_daily_loss, out of reach ({result.rejected_orders:,} orders rejected); runs alternate "
            "off, on, on, off",
        ),
        Row(
            "place_order_max_open_orders",
            "the same with max_open_orders too",
            result.limits_open.tps,
            "tps",
            result.limits_off.tps,
            "(limits off)",
            note=f"counting working orders costs with their number: nothing fills the bench's orders, so a "
            f"live strategy had {result.working_orders:,} working at the end (a desk has tens)",
        ),
        Row(
            "evaluate_alert_rules_median",
            f"monitor.evaluate_alert_rules(), {result.rules:,} rules: median",
            result.evaluate.median_ms,
            "ms",
            goal=EVALUATE_GOAL,
            note=f"bench/sql/monitor_rules.sql: metric, price and volume rules over 15 minutes of "
            f"metrics and an hour of ticks; {result.evaluate.runs} runs, p99 {result.evaluate.p99_ms:.1f} ms",
        ),
    ]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--duration", type=click.IntRange(min=2), default=20, show_default=True, help="Seconds of pgbench."
)
@click.option("--clients", type=click.IntRange(min=1), default=8, show_default=True, help="pgbench clients.")
def main(duration: int, clients: int) -> None:
    """The monitoring rows of `make bench` alone, in a scratch cluster."""
    from bench.__main__ import APP_DB, STRATEGIES, echo

    with scratch.scratch_cluster(keep=False, echo=echo) as cluster:
        with psycopg.connect(cluster.conninfo(APP_DB)) as conn:
            for stmt in statements("fixtures.sql"):
                conn.execute(stmt, {"strategies": STRATEGIES})
        echo(
            f"place_order.sql, risk limits off, on, on, off, {duration // 2} s each; "
            f"then {RULES:,} alert rules"
        )
        result = measure(cluster, APP_DB, clients=clients, duration=duration, strategies=STRATEGIES)
    click.echo(table(result_rows(result, clients)))


if __name__ == "__main__":
    main()
