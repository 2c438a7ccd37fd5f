"""``make bench``: spreadedge against PostgreSQL baselines, side by side, in one scratch cluster.

One run starts a private cluster (temp home, free port), migrates it, bulk-loads a trading history
with a progress bar, then measures, in this order:

1. trading.pnl_summary over 30 days for one strategy of the loaded history: median and p99 latency
   (prepared statement from Python), after checking it agrees with the trades themselves;
2. pgbench select-only, then pgbench tpcb-like (the baselines, ``pgbench -i -s 8`` in database
   ``pgbench``) and bench/fill_only.sql (one fill per transaction against pre-placed orders),
   alternating tpcb-like, fill, fill, tpcb-like in half-length runs;
3. bench/record_fill.sql under pgbench: a placement AND a fill per transaction, with the audit
   triggers on and off (alternating on, off, off, on in half-length runs): the audit overhead;
4. market data (bench/market.py): ingestion of ticks and quotes through the ingest path against raw
   COPY into an unlogged, unindexed table; every indicator over a month of 1m candles; and
   market.current_spreads over 200 pairs on six exchanges;
5. history reads (bench/api.py): orders up to 10 M, then orders?symbol=...&limit=100 as a trader,
   in SQL (p99) and through ``spreadedge serve`` driven by wrk (requests/s and p99);
6. monitoring (bench/monitor.py, also runnable alone): place_order with risk limits on vs off, and
   monitor.evaluate_alert_rules() over 1,000 rules.

It prints a table (measured, baseline, ratio, goal) and writes the same to bench/results/latest.json,
with the plans of pnl_summary's statements next to it. The cluster is stopped and deleted at the end,
also on error, Ctrl-C or SIGTERM, unless ``--keep``.
"""

from __future__ import annotations

import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click
import psycopg

from bench import api, market, monitor, pgbench, scratch, writes
from bench.latency import Latency, check_pnl_summary, explain_pnl_summary, time_pnl_summary
from bench.loader import LoadResult, load_history
from bench.report import Goal, Row, table, write_json
from bench.sqlfile import statements
from spreadedge.cluster import Cluster

RESULTS_DIR = Path(__file__).resolve().parent / "results"
APP_DB = "spreadedge"
PGBENCH_DB = "pgbench"
PGBENCH_SCALE = 8
STRATEGIES = 20  # s1..s20 hold the loaded history, live1..live20 take the pgbench writes
TIMED_STRATEGY = "s7"
# The reference numbers of PRODUCT.md ("Numbers it is built to") for a 2-core machine.
REFERENCE_TPCB_TPS = 4_000
REFERENCE_SELECT_ONLY_TPS = 49_000
FILL_GOAL = Goal("min_ratio", 0.6)
AUDIT_GOAL = Goal("min_ratio", 0.8)
PNL_MEDIAN_GOAL = Goal("max_value", 5.0)
INGEST_GOAL = Goal("min_ratio", 0.5)
INDICATORS_MEDIAN_GOAL = Goal("max_value", 50.0)
SPREADS_MEDIAN_GOAL = Goal("max_value", 10.0)
HISTORY_SQL_P99_GOAL = Goal("max_value", 2.0)
HISTORY_API_RPS_GOAL = Goal("min_value", 2000.0)
HISTORY_API_P99_GOAL = Goal("max_value", 20.0)
API_CONNECTIONS = 32
# Settings that move these numbers, recorded with the results.
SERVER_SETTINGS = (
    "server_version",
    "shared_buffers",
    "max_wal_size",
    "synchronous_commit",
    "fsync",
    "work_mem",
    "jit",
    "pg_stat_statements.track",
)


@dataclass(frozen=True)
class Options:
    quick: bool
    trades: int
    duration: int
    clients: int
    runs: int


@dataclass
class Measurements:
    """Everything one bench run measured."""

    load: LoadResult | None = None
    pnl_agrees: bool = False
    pnl_check: dict[str, Any] = field(default_factory=dict)
    latency: Latency | None = None
    runs: dict[str, pgbench.PgbenchRun] = field(default_factory=dict)
    fill_runs: list[tuple[str, pgbench.PgbenchRun]] = field(default_factory=list)
    audit_runs: list[tuple[str, pgbench.PgbenchRun]] = field(default_factory=list)
    audit_rows_per_txn: float = 0.0
    profiles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    server: dict[str, str] = field(default_factory=dict)
    ingest: dict[str, market.IngestRates] = field(default_factory=dict)
    indicators: Latency | None = None
    spreads: Latency | None = None
    orders_total: int = 0
    history_sql: Latency | None = None
    history_http: api.HttpResult | None = None
    monitor: monitor.MonitorResult | None = None
    phases_s: dict[str, float] = field(default_factory=dict)


def echo(message: str) -> None:
    click.echo(f"==> {message}", err=True)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the scratch cluster is deleted


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Smoke run: 200,000 trades and 10 s pgbench runs.")
@click.option("--trades", type=click.IntRange(min=1), help="Trades to load (default 10,000,000).")
@click.option("--duration", type=click.IntRange(min=2), help="Seconds of each pgbench run (default 30).")
@click.option("--clients", type=click.IntRange(min=1), default=8, show_default=True, help="pgbench clients.")
@click.option(
    "--runs", type=click.IntRange(min=10), default=200, show_default=True, help="Timed pnl_summary runs."
)
@click.option("--keep", is_flag=True, help="Leave the scratch cluster running at the end.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=RESULTS_DIR / "latest.json",
    show_default=True,
    help="Where to write the results as JSON.",
)
@click.option(
    "--destroy",
    "destroy_home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Delete the cluster an earlier --keep run left in this home, and exit.",
)
def main(
    quick: bool,
    trades: int | None,
    duration: int | None,
    clients: int,
    runs: int,
    keep: bool,
    output: Path,
    destroy_home: Path | None,
) -> None:
    """Benchmark spreadedge against PostgreSQL baselines in a scratch cluster (see bench/__main__.py)."""
    if destroy_home is not None:
        scratch.destroy_kept(destroy_home)
        echo(f"deleted the bench cluster in {destroy_home}")
        return
    options = Options(
        quick=quick,
        trades=trades or (200_000 if quick else 10_000_000),
        duration=duration or (10 if quick else 30),
        clients=clients,
        runs=runs,
    )
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started, started_at = time.monotonic(), datetime.now(UTC)
    load_at_start = os.getloadavg()[0]
    output = output.resolve()
    plan_path = output.with_name(output.stem + "-pnl_summary-plan.txt")
    output.parent.mkdir(parents=True, exist_ok=True)

    with scratch.scratch_cluster(keep=keep, echo=echo) as cluster:
        measured = measure(cluster, options, plan_path)

    rows = result_rows(measured, options)
    elapsed = time.monotonic() - started
    document = {
        "generated_at": started_at.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "options": vars(options),
        "host": {
            "cpus": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
            # why: other work on the machine moves every number; these say whether there was any
            "load_average_1min_at_start": round(load_at_start, 2),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
        "results": [row.as_json() for row in rows],
        **details(measured, plan_path),
    }
    write_json(output, document)
    click.echo(table(rows))
    missed = [row.key for row in rows if row.met is False]
    click.echo(f"\ngoals missed: {', '.join(missed)}" if missed else "\nall goals met")
    click.echo(
        f"machine: {os.cpu_count()} CPUs, 1-minute load average {load_at_start:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine moves every number)"
    )
    click.echo(f"results: {output}")
    click.echo(f"pnl_summary plans: {plan_path}")
    click.echo(f"took {elapsed / 60:.1f} min")
    if not measured.pnl_agrees:
        sys.exit(
            "pnl_summary does not agree with the trades it summarizes: see pnl_summary.check in the JSON"
        )


def measure(cluster: Cluster, options: Options, plan_path: Path) -> Measurements:
    """Set up, load, and take every measurement, in the order the module docstring gives."""
    m = Measurements()
    app = cluster.conninfo(APP_DB)
    mark = time.monotonic()
    with psycopg.connect(app) as conn:
        for stmt in statements("fixtures.sql"):
            conn.execute(stmt, {"strategies": STRATEGIES})
    echo(f"pgbench -i -s {PGBENCH_SCALE} in database {PGBENCH_DB}")
    cluster.ensure_database(PGBENCH_DB)
    pgbench.initialize(cluster, PGBENCH_DB, PGBENCH_SCALE)
    mark = _phase(m, "setup", mark)

    m.load = load_history(app, options.trades, echo=echo)
    mark = _phase(m, "load", mark)

    echo(f"checking pnl_summary against the trades, then timing it ({options.runs} runs)")
    m.pnl_agrees, m.pnl_check = check_pnl_summary(app, TIMED_STRATEGY)
    m.latency = time_pnl_summary(app, TIMED_STRATEGY, runs=options.runs, budget_s=20 if options.quick else 90)
    explain_pnl_summary(app, TIMED_STRATEGY, plan_path)
    mark = _phase(m, "pnl_summary", mark)

    fill_orders = writes.place_fill_orders(app, STRATEGIES)
    echo(f"pgbench select-only, {options.clients} clients, {options.duration} s")
    writes.checkpoint(app)
    m.runs["select-only"] = pgbench.run(
        cluster, PGBENCH_DB, builtin="select-only", clients=options.clients, duration=options.duration
    )
    _measure_fill(cluster, options, m, fill_orders)
    _measure_audit(cluster, options, m)
    m.server = _server_facts(app)
    mark = _phase(m, "pgbench", mark)

    market_rows = 100_000 if options.quick else 1_000_000
    market.prepare(app)
    for kind in ("ticks", "quotes"):
        echo(f"{kind}: {market_rows:,} rows raw, through the ingest path, and directly")
        m.ingest[kind] = market.measure_ingest(app, kind, market_rows)
    echo("indicators over a month of 1m candles; market.current_spreads over 1,200 instruments")
    m.indicators = market.time_indicators(app, runs=5 if options.quick else 20, budget_s=30)
    m.spreads = market.time_current_spreads(app, runs=options.runs, budget_s=20)
    mark = _phase(m, "market", mark)

    target = 1_000_000 if options.quick else 10_000_000
    echo(f"history reads: orders up to {target:,}; orders?symbol=...&limit=100 in SQL, then through the API")
    reader = api.prepare(app, target)
    m.orders_total = api.order_count(app)
    m.history_sql = api.time_history_sql(app, reader, runs=max(options.runs, 1000), budget_s=30)
    m.history_http = api.measure_http(app, reader, duration_s=options.duration, connections=API_CONNECTIONS)
    mark = _phase(m, "history", mark)

    echo(
        f"monitoring: place_order with risk limits off, on, on, off; "
        f"evaluate_alert_rules over {monitor.RULES:,} rules"
    )
    m.monitor = monitor.measure(
        cluster, APP_DB, clients=options.clients, duration=options.duration, strategies=STRATEGIES
    )
    _phase(m, "monitor", mark)
    return m


def _measure_fill(cluster: Cluster, options: Options, m: Measurements, orders: tuple[int, int]) -> None:
    """pgbench tpcb-like and fill_only.sql (audit on) alternating tpcb, fill, fill, tpcb in
    half-length runs, so a drift of the machine weighs on the fill and its baseline alike."""
    app = cluster.conninfo(APP_DB)
    half = {"clients": options.clients, "duration": max(1, options.duration // 2)}
    echo(f"pgbench tpcb-like and fill_only.sql (one fill per transaction), alternating, {half['duration']} s")
    for kind in ("tpcb-like", "fill-only", "fill-only", "tpcb-like"):
        if kind == "tpcb-like":
            writes.checkpoint(app)
            run = pgbench.run(cluster, PGBENCH_DB, builtin="tpcb-like", **half)
        else:
            run = writes.run_fill_only(cluster, APP_DB, orders=orders, **half)
            m.profiles["record_fill_only"] = writes.top_statements(app)
        m.fill_runs.append((kind, run))
    for kind in ("tpcb-like", "fill-only"):
        m.runs[kind] = pgbench.combine([run for name, run in m.fill_runs if name == kind])


def _measure_audit(cluster: Cluster, options: Options, m: Measurements) -> None:
    """record_fill.sql with audit on, off, off, on in half-length runs.

    Alternating so a drift of the machine (other work, checkpoints, growing tables) weighs on both
    sides alike; the audit triggers are re-enabled whatever happens.
    """
    app = cluster.conninfo(APP_DB)
    half = {"clients": options.clients, "duration": max(1, options.duration // 2), "strategies": STRATEGIES}
    echo(f"record_fill.sql (placement + fill), audit on, off, off, on, {half['duration']} s each")
    before = writes.audit_rows_written(app)
    m.audit_runs.append(("on", writes.run_record_fill(cluster, APP_DB, **half)))
    m.audit_rows_per_txn = (writes.audit_rows_written(app) - before) / max(m.audit_runs[0][1].transactions, 1)
    m.profiles["record_fill_with_placement"] = writes.top_statements(app)
    with writes.audit_disabled(app):
        for _ in range(2):
            m.audit_runs.append(("off", writes.run_record_fill(cluster, APP_DB, **half)))
    m.audit_runs.append(("on", writes.run_record_fill(cluster, APP_DB, **half)))
    m.runs["place-fill"] = pgbench.combine([run for audit, run in m.audit_runs if audit == "on"])
    m.runs["place-fill-unaudited"] = pgbench.combine([run for audit, run in m.audit_runs if audit == "off"])


def _phase(m: Measurements, name: str, since: float) -> float:
    now = time.monotonic()
    m.phases_s[name] = round(now - since, 1)
    return now


def result_rows(m: Measurements, options: Options) -> list[Row]:
    """The table: baselines first, then spreadedge against them and against the goals."""
    if m.load is None or m.latency is None:
        raise RuntimeError("the measurements are incomplete")
    clients, tpcb = options.clients, m.runs["tpcb-like"].tps
    reference = "(PRODUCT.md reference)"
    return [
        Row(
            "pgbench_tpcb",
            f"pgbench tpcb-like, {clients} clients",
            tpcb,
            "tps",
            REFERENCE_TPCB_TPS,
            reference,
            note=f"pgbench's built-in tpcb-like at scale {PGBENCH_SCALE} (pgbench -i -s {PGBENCH_SCALE}), "
            f"{clients} clients, {pgbench.threads(clients)} threads; runs alternate with the fill's",
        ),
        Row(
            "pgbench_select_only",
            f"pgbench select-only, {clients} clients",
            m.runs["select-only"].tps,
            "tps",
            REFERENCE_SELECT_ONLY_TPS,
            reference,
        ),
        Row(
            "record_fill_with_placement",
            f"place_order + record_fill, {clients} clients",
            m.runs["place-fill"].tps,
            "tps",
            tpcb,
            "(tpcb-like)",
            None,
            "each transaction places an order AND records its fill (bench/record_fill.sql): two API calls, "
            "so no goal of its own (the fill goal is the next row's)",
        ),
        Row(
            "record_fill_only",
            f"record_fill alone, {clients} clients",
            m.runs["fill-only"].tps,
            "tps",
            tpcb,
            "(tpcb-like)",
            FILL_GOAL,
            "one fill per transaction against pre-placed orders (bench/fill_only.sql): PRODUCT.md's "
            "'recording a fill'; runs alternate tpcb-like, fill, fill, tpcb-like",
        ),
        Row(
            "audit_overhead",
            "place + fill with audit vs without",
            m.runs["place-fill"].tps,
            "tps",
            m.runs["place-fill-unaudited"].tps,
            "(audit off)",
            AUDIT_GOAL,
            f"{m.audit_rows_per_txn:.1f} audit rows per transaction; runs alternate audit on, off, off, on",
        ),
        Row(
            "pnl_summary_median",
            f"pnl_summary 30 days, {m.load.trades / 1e6:.1f} M trades: median",
            m.latency.median_ms,
            "ms",
            goal=PNL_MEDIAN_GOAL,
            note=f"{m.latency.runs} runs of {TIMED_STRATEGY}'s summary, prepared, after warm-up; "
            f"{'agrees' if m.pnl_agrees else 'DOES NOT AGREE'} with sums over the trades",
        ),
        Row("pnl_summary_p99", "pnl_summary 30 days: p99", m.latency.p99_ms, "ms"),
        Row(
            "bulk_load",
            "bulk load of the history (audit and FK triggers off)",
            m.load.trades_per_s,
            "trades/s",
            note=f"{m.load.trades:,} trades, {m.load.orders:,} orders in {m.load.load_s:.0f} s with "
            f"{m.load.workers} loaders, then VACUUM ANALYZE in {m.load.vacuum_s:.0f} s",
        ),
        *_market_rows(m),
        *_history_rows(m),
        *([] if m.monitor is None else monitor.result_rows(m.monitor, clients)),
    ]


def _history_rows(m: Measurements) -> list[Row]:
    if m.history_sql is None or m.history_http is None:
        raise RuntimeError("the history measurements are incomplete")
    orders = f"{m.orders_total / 1e6:.1f} M orders"
    http = m.history_http
    return [
        Row(
            "history_sql_p99",
            f"orders by symbol, 100 rows, in SQL ({orders}): p99",
            m.history_sql.p99_ms,
            "ms",
            goal=HISTORY_SQL_P99_GOAL,
            note=f"trading.order_history_page as a scoped trader (row-level security), {m.history_sql.runs} "
            f"runs, median {m.history_sql.median_ms:.2f} ms",
        ),
        Row(
            "history_api_rps",
            f"GET orders?symbol=...&limit=100 through the API ({orders})",
            http.requests_per_s,
            "req/s",
            goal=HISTORY_API_RPS_GOAL,
            note=f"successful (2xx) responses a second; wrk, {http.connections} connections, "
            f"{http.duration_s} s, {http.workers} uvicorn workers, {http.non_2xx} non-2xx of "
            f"{http.requests:,} responses, "
            f"{http.socket_errors} socket errors (connect, read, write, timeout)",
        ),
        Row(
            "history_api_p99",
            "the same: p99 latency",
            http.p99_ms,
            "ms",
            goal=HISTORY_API_P99_GOAL,
            # why say so: wrk's latencies are of every response, the failed ones too
            note=f"median {http.p50_ms:.1f} ms"
            + (f"; of every response, the {http.non_2xx:,} non-2xx too" if http.non_2xx else ""),
        ),
    ]


def _market_rows(m: Measurements) -> list[Row]:
    if m.indicators is None or m.spreads is None:
        raise RuntimeError("the market measurements are incomplete")
    rows = []
    for kind, rates in m.ingest.items():
        rows.append(
            Row(
                f"ingest_{kind}",
                f"ingest {kind} (staging, validation, partitioned + indexed)",
                rates.ingest_per_s,
                "rows/s",
                rates.raw_per_s,
                "(raw COPY, unlogged, no index)",
                INGEST_GOAL,
                f"{rates.rows:,} {kind} in transactions of {market.BATCH:,}; COPY of typed rows straight "
                f"into market.{kind} (no validation): {rates.direct_per_s:,.0f} rows/s",
            )
        )
    rows.append(
        Row(
            "indicators_month_median",
            "all indicators, one month of 1m candles: median",
            m.indicators.median_ms,
            "ms",
            goal=INDICATORS_MEDIAN_GOAL,
            note=f"internal.indicator_series over 43,200 candles, {m.indicators.runs} runs",
        )
    )
    rows.append(
        Row(
            "current_spreads_median",
            "market.current_spreads, 200 pairs x 6 exchanges: median",
            m.spreads.median_ms,
            "ms",
            goal=SPREADS_MEDIAN_GOAL,
            note=f"{m.spreads.runs} runs; p99 {m.spreads.p99_ms:.2f} ms",
        )
    )
    return rows


def details(m: Measurements, plan_path: Path) -> dict[str, Any]:
    """The JSON sections behind the table: raw runs, checks, load, profiles, server settings."""
    if m.load is None or m.latency is None:
        raise RuntimeError("the measurements are incomplete")
    return {
        "phases_s": m.phases_s,
        "server": m.server,
        "pgbench": {
            "scale": PGBENCH_SCALE,
            **{name: run.as_json() for name, run in m.runs.items()},
            "fill_runs_in_order": [{"script": kind, **run.as_json()} for kind, run in m.fill_runs],
            "audit_runs_in_order": [{"audit": audit, **run.as_json()} for audit, run in m.audit_runs],
        },
        "pnl_summary": {
            "strategy": TIMED_STRATEGY,
            "latency": m.latency.as_json(),
            "agrees": m.pnl_agrees,
            "check": m.pnl_check,
            "plan_file": str(plan_path),
        },
        "load": m.load.as_json(),
        "market": {
            "ingest": {kind: rates.as_json() for kind, rates in m.ingest.items()},
            "indicators": None if m.indicators is None else m.indicators.as_json(),
            "current_spreads": None if m.spreads is None else m.spreads.as_json(),
        },
        "history": {
            "orders": m.orders_total,
            "sql": None if m.history_sql is None else m.history_sql.as_json(),
            "http": None if m.history_http is None else m.history_http.as_json(),
        },
        "monitor": None if m.monitor is None else m.monitor.as_json(),
        "statement_profiles": m.profiles,
    }


def _server_facts(conninfo: str) -> dict[str, str]:
    """Version and the settings that move these numbers."""
    with psycopg.connect(conninfo) as conn:
        return {
            name: str(conn.execute("select current_setting(%s)", [name]).fetchone()[0])  # type: ignore[index]
            for name in SERVER_SETTINGS
        }


if __name__ == "__main__":
    main()
