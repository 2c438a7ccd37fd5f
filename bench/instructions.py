"""Instructions per fill and per placement, counted by callgrind in a single-user backend.

Wall-clock ratios on a shared 2-core machine move by 0.1 from run to run; instruction counts repeat
to within 0.1 %, so a change to the fill or placement path is judged by them as well (README,
"Benchmarks"). Each measurement runs a script of warm-up calls and then N calls in ``postgres
--single`` under callgrind, collecting inside PortalRun and CommitTransactionCommand (one call per
transaction), twice: with SMALL and with SMALL + N calls. The difference divided by N is what one
call costs, without start-up, warm-up or catalog loading.

Measured, in a scratch cluster with the bench fixtures, a few thousand fills of history and the
1,200 quoted instruments of the spread measurement, analyzed:
a fill (bench/sql/instructions_fill.sql) with the audit triggers on and off, a placement
(bench/sql/instructions_place.sql) without risk limits and with the three limits of
bench/sql/monitor_limits_on.sql, first with no market data (each position is marked at the
instrument's latest fill) and then with a quote for every instrument (as in `make bench`), then
with those limits for sells only (each reduces a long position) and buys only (each adds to one),
a 30-day PnL summary of a strategy (bench/sql/instructions_pnl.sql), mostly its planning, and an
orders page (bench/sql/instructions_history.sql): BTCUSDT, 100 rows, as a trader owning half the
live strategies, after the placements (its trader then sees 485 BTCUSDT orders).
``make bench-instructions`` installs valgrind when it is missing.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg
from psycopg import ClientCursor

from bench import scratch, writes
from bench.__main__ import APP_DB, echo
from bench.monitor import run_sql
from bench.sqlfile import statement, statements
from spreadedge import runas
from spreadedge.cluster import PG_BINDIR, Cluster

WARM_UP = 30
SMALL = 20
STRATEGIES = 20
INSTRUMENTS = 12
HISTORY_FILLS = 2_400  # through the API, so positions, rollups and the audit log are not empty


@dataclass(frozen=True)
class Count:
    """Instructions per call of one measurement."""

    name: str
    calls: int
    per_call: float

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "calls": self.calls, "instructions_per_call": round(self.per_call)}


def script(
    conn: psycopg.Connection[tuple[object, ...]], name: str, calls: Iterable[dict[str, object]]
) -> str:
    """bench/sql/<name> once per parameter set, as a ``postgres --single -j`` script (values bound
    by psycopg; each statement ends with a blank line)."""
    cursor = ClientCursor(conn)
    return "".join(cursor.mogrify(statement(name), params) + "\n\n" for params in calls)


def fill_script(
    conn: psycopg.Connection[tuple[object, ...]], orders: tuple[int, int], first: int, count: int
) -> str:
    """``count`` fills, two on the buy for each on the sell, with trade ids from ``first``."""
    return script(
        conn,
        "instructions_fill.sql",
        (
            {"order_id": orders[1] if n % 3 == 0 else orders[0], "trade_id": f"instructions-{n}"}
            for n in range(first, first + count)
        ),
    )


def place_script(conn: psycopg.Connection[tuple[object, ...]], count: int, side: str | None = None) -> str:
    """``count`` placements across the live strategies and bench instruments (seeded draws), of
    either side or all of ``side``."""
    draw = random.Random(7)
    return script(
        conn,
        "instructions_place.sql",
        (
            {
                "strategy": draw.randint(1, STRATEGIES),
                "instrument": draw.randint(1, INSTRUMENTS),
                "side": side or draw.choice(("buy", "sell")),
                "cents": draw.randint(0, 100_000),
            }
            for _ in range(count)
        ),
    )


def pnl_script(conn: psycopg.Connection[tuple[object, ...]], count: int) -> str:
    """``count`` 30-day PnL summaries, the live strategies in turn."""
    return script(conn, "instructions_pnl.sql", ({"strategy": 1 + n % STRATEGIES} for n in range(count)))


def history_script(conn: psycopg.Connection[tuple[object, ...]], count: int, user_id: int) -> str:
    """``count`` orders pages, the same page each time, as the trader ``user_id``."""
    return script(conn, "instructions_history.sql", ({"user_id": str(user_id)} for _ in range(count)))


def history_reader(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The user id of a trader owning the even live strategies (created here)."""
    for stmt in statements("instructions_history_reader.sql"):
        conn.execute(stmt, {"password": scratch.user_password()})
    row = conn.execute("select auth.user_id_of('instructions-reader')").fetchone()
    assert row is not None
    return int(row[0])


def full_page(conninfo: str, user_id: int) -> None:
    """Check that the counted page is a full one: 100 orders, and how many the reader can page through."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(statement("instructions_history_check.sql"), {"user_id": str(user_id)}).fetchone()
    assert row is not None
    if len(row[0]["items"]) != 100:
        raise RuntimeError(f"the counted orders page has {len(row[0]['items'])} orders, not 100")
    echo(f"the orders page's trader sees {row[1]:,} BTCUSDT orders")


def summary_instructions(out_file: Path) -> int:
    """The instructions callgrind collected (its ``summary:`` line)."""
    for line in out_file.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"{out_file} has no summary line: did callgrind finish?")


def run_single_user(cluster: Cluster, dbname: str, script: str, work_dir: Path, tag: str) -> int:
    """Run ``script`` in a single-user backend under callgrind; the instructions it collected."""
    out_file = work_dir / f"{tag}.callgrind"
    command = runas.command([
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "--collect-atstart=no",
        "--toggle-collect=PortalRun", "--toggle-collect=CommitTransactionCommand",
        str(PG_BINDIR / "postgres"), "--single", "-j", "-D", str(cluster.data_dir),
        "-c", "shared_preload_libraries=pg_stat_statements", dbname,
    ])  # fmt: skip
    done = subprocess.run(command, input=script, text=True, capture_output=True, cwd="/", check=False)
    errors = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if "ERROR:" in line]
    if done.returncode != 0 or errors:
        raise RuntimeError(f"the single-user run {tag} failed: {(errors or done.stderr.splitlines())[:3]}")
    return summary_instructions(out_file)


def per_call(
    cluster: Cluster, dbname: str, scripts: tuple[str, str], calls: int, work_dir: Path, name: str
) -> Count:
    """Instructions of one call: the larger script minus the smaller, over the calls between them."""
    small = run_single_user(cluster, dbname, scripts[0], work_dir, f"{name}-small")
    large = run_single_user(cluster, dbname, scripts[1], work_dir, f"{name}-large")
    return Count(name, calls, (large - small) / calls)


MEASUREMENTS = (
    "fill",
    "fill, audit off",
    "placement",
    "pnl_summary, 30 days",
    "placement, limits, no quotes",
    "placement, risk limits",
    "placement, limits, reducing",
    "placement, limits, adding",
    "orders page, 100 rows",
)


def measure(
    cluster: Cluster, dbname: str, calls: int, work_dir: Path, only: frozenset[str] = frozenset(MEASUREMENTS)
) -> list[Count]:
    """Set up the fixtures and history, then count each measurement in only (the server stopped
    for each)."""
    conninfo = cluster.conninfo(dbname)
    with psycopg.connect(conninfo) as conn:
        for stmt in statements("fixtures.sql"):
            conn.execute(stmt, {"strategies": STRATEGIES})
    first, _ = writes.place_fill_orders(conninfo, STRATEGIES)
    orders = (first, first + 1)  # live1, BTCUSDT at binance: the buy, then the sell
    sizes = (WARM_UP + SMALL, WARM_UP + SMALL + calls)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # a long position in each bench instrument for every live strategy, as the pgbench fills
        # of `make bench` leave them: the position-notional limit reads all twelve
        for n in range(HISTORY_FILLS):
            conn.execute(
                statement("instructions_fill.sql"),
                {"order_id": first + 2 * (n % (STRATEGIES * INSTRUMENTS)), "trade_id": f"history-{n}"},
            )
        # the 1,200 instruments of `make bench`'s spread measurement, quoted, and statistics as
        # autovacuum would have them there: the plans of the risk check depend on both
        for stmt in statements("market_spread_fixtures.sql"):
            conn.execute(stmt)
        conn.execute("analyze")
        # distinct trade ids in every script: a redelivered fill would be a different path
        fills = {
            audit: tuple(fill_script(conn, orders, base + 100_000 * k, size) for k, size in enumerate(sizes))
            for audit, base in (("on", 1_000_000), ("off", 2_000_000))
        }
        placements = (place_script(conn, sizes[0]), place_script(conn, sizes[1]))
        # the positions are long: a sell reduces one (the position and loss limits pass it
        # unread), a buy adds to one
        by_side = {
            side: (place_script(conn, sizes[0], side), place_script(conn, sizes[1], side))
            for side in ("sell", "buy")
        }
        summaries = (pnl_script(conn, sizes[0]), pnl_script(conn, sizes[1]))
        reader = history_reader(conn)
        pages = (history_script(conn, sizes[0], reader), history_script(conn, sizes[1], reader))

    counts: list[Count] = []

    def count_stopped(scripts: tuple[str, str], name: str, what: str) -> None:
        if name not in only:
            return
        # why stopped: a single-user backend needs the data directory to itself
        echo(f"{calls} {what}")
        cluster.stop()
        try:
            counts.append(per_call(cluster, dbname, scripts, calls, work_dir, name))
        finally:
            cluster.start()

    count_stopped(fills["on"], "fill", "fills with the audit triggers on")
    with writes.audit_disabled(conninfo):
        count_stopped(fills["off"], "fill, audit off", "fills with the audit triggers off")
    count_stopped(placements, "placement", "placements without risk limits")
    count_stopped(summaries, "pnl_summary, 30 days", "PnL summaries (a strategy, 30 days)")
    run_sql(conninfo, "monitor_limits_on.sql", strategies=STRATEGIES)
    count_stopped(
        placements,
        "placement, limits, no quotes",
        "placements with risk limits, no market data (positions marked at their last fill)",
    )
    run_sql(conninfo, "instructions_quotes.sql")
    count_stopped(
        placements,
        "placement, risk limits",
        "placements with risk limits (order notional, position notional, daily loss)",
    )
    count_stopped(by_side["sell"], "placement, limits, reducing", "sells with risk limits")
    count_stopped(by_side["buy"], "placement, limits, adding", "buys with risk limits")
    run_sql(conninfo, "monitor_limits_off.sql", strategies=STRATEGIES)
    # after the placements, so that the page merges over orders of every live strategy
    full_page(conninfo, reader)
    count_stopped(pages, "orders page, 100 rows", "orders pages (BTCUSDT, 100 rows, a trader)")
    return counts


@contextlib.contextmanager
def work_directory() -> Iterator[Path]:
    """A temporary directory the server's user can write callgrind files into."""
    path = Path(tempfile.mkdtemp(prefix="spreadedge-instructions-"))
    try:
        path.chmod(0o755)
        runas.give(path)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def report(counts: list[Count]) -> str:
    """The counts as a table, with the two ratios the bench goals are about."""
    by_name = {count.name: count.per_call for count in counts}
    lines = [f"{'measurement':<28}{'instructions per call':>24}"]
    lines += [f"{count.name:<28}{count.per_call:>24,.0f}" for count in counts]
    ratios = (
        ("audit on vs off (fill)", "fill, audit off", "fill"),
        ("risk limits on vs off", "placement", "placement, risk limits"),
    )
    lines += [
        f"{label:<28}{by_name[numerator] / by_name[denominator]:>24.2f}"
        for label, numerator, denominator in ratios
        if numerator in by_name and denominator in by_name
    ]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--calls",
    type=click.IntRange(min=20),
    default=200,
    show_default=True,
    help="Calls counted per measurement.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the counts as JSON.",
)
@click.option(
    "--profiles",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the callgrind files in this directory (for callgrind_annotate).",
)
@click.option(
    "--only",
    "only",
    type=click.Choice(MEASUREMENTS),
    multiple=True,
    help="Count only this measurement (repeatable); every one by default.",
)
def main(calls: int, output: Path | None, profiles: Path | None, only: tuple[str, ...]) -> None:
    """Instructions per fill, per placement and per PnL summary (callgrind), in a scratch cluster."""
    if shutil.which("valgrind") is None:
        raise click.ClickException(
            "valgrind is not installed: run `make bench-instructions`, or apt-get install valgrind"
        )
    with work_directory() as work_dir, scratch.scratch_cluster(keep=False, echo=echo) as cluster:
        counts = measure(cluster, APP_DB, calls, work_dir, frozenset(only or MEASUREMENTS))
        if profiles is not None:
            profiles.mkdir(parents=True, exist_ok=True)
            for profile in sorted(work_dir.glob("*.callgrind")):
                shutil.copy(profile, profiles / profile.name)
            echo(f"callgrind files: {profiles}")
    click.echo(report(counts))
    if output is not None:
        output.write_text(json.dumps([count.as_json() for count in counts], indent=2) + "\n")
        click.echo(f"results: {output}")


if __name__ == "__main__":
    main()
