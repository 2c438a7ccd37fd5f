"""Write throughput: trading.record_fill under pgbench, with and without the audit triggers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench import pgbench
from bench.sqlfile import statement
from spreadedge.cluster import Cluster

BENCH_DIR = Path(__file__).resolve().parent
RECORD_FILL_SCRIPT = BENCH_DIR / "record_fill.sql"
FILL_ONLY_SCRIPT = BENCH_DIR / "fill_only.sql"
ORDERS_PER_PAIR = 2  # fill_only_orders.sql: a buy and a sell per (strategy, instrument)
INSTRUMENTS = 12


@dataclass(frozen=True)
class AuditTrigger:
    table_schema: str
    table_name: str
    trigger_name: str


def audit_triggers(conn: psycopg.Connection[tuple[str, str, str]]) -> list[AuditTrigger]:
    """The _900_audit_* triggers of the database, one per (table, event)."""
    return [AuditTrigger(*row) for row in conn.execute(statement("audit_triggers.sql")).fetchall()]


def _set_triggers(conninfo: str, enabled: bool) -> int:
    """Enable or disable every audit trigger (in one transaction); how many there are."""
    action = sql.SQL("enable" if enabled else "disable")
    with psycopg.connect(conninfo) as conn:
        triggers = audit_triggers(conn)
        for trigger in triggers:
            conn.execute(
                sql.SQL("alter table {} {} trigger {}").format(
                    sql.Identifier(trigger.table_schema, trigger.table_name),
                    action,
                    sql.Identifier(trigger.trigger_name),
                )
            )
    return len(triggers)


@contextlib.contextmanager
def audit_disabled(conninfo: str) -> Iterator[int]:
    """Audit triggers off inside the block (yields how many), back on after it, whatever happens."""
    count = _set_triggers(conninfo, enabled=False)
    if count == 0:
        raise RuntimeError("no _900_audit_* triggers found: did functions/90_audit_triggers.sql change?")
    try:
        yield count
    finally:
        _set_triggers(conninfo, enabled=True)


def audit_rows_written(conninfo: str) -> int:
    """The audit.log sequence position: how many audit rows were ever written (near enough)."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("select last_value from audit.log_audit_id_seq").fetchone()
    return int(row[0]) if row else 0


def reset_statement_stats(conninfo: str) -> None:
    """Start pg_stat_statements afresh, so the next run's statements can be read alone."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(statement("statements_reset.sql"))


def top_statements(conninfo: str, limit: int = 15) -> list[dict[str, Any]]:
    """The statements (top-level and nested) that took the most time since the last reset."""
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        rows = conn.execute(statement("top_statements.sql"), {"limit": limit}).fetchall()
    return [
        {key: float(value) if isinstance(value, Decimal) else value for key, value in row.items()}
        for row in rows
    ]


def checkpoint(conninfo: str) -> None:
    """Write dirty buffers out now, so a timed run does not pay for an earlier one's."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("checkpoint")


def place_fill_orders(conninfo: str, strategies: int) -> tuple[int, int]:
    """Place the large orders fill_only.sql fills; their first and last ids (consecutive)."""
    with psycopg.connect(conninfo) as conn:
        ids = [row[0] for row in conn.execute(statement("fill_only_orders.sql"), {"strategies": strategies})]
    expected = strategies * INSTRUMENTS * ORDERS_PER_PAIR
    if len(ids) != expected or ids != list(range(ids[0], ids[0] + expected)):
        raise RuntimeError("the fill-only orders did not get consecutive ids in placement order")
    return ids[0], ids[-1]


def _run_script(
    cluster: Cluster, dbname: str, *, clients: int, duration: int, script: Path, defines: dict[str, int]
) -> pgbench.PgbenchRun:
    """One pgbench run of a script, from a checkpoint and with fresh statement statistics."""
    checkpoint(cluster.conninfo(dbname))
    reset_statement_stats(cluster.conninfo(dbname))
    return pgbench.run(cluster, dbname, clients=clients, duration=duration, script=script, defines=defines)


def run_record_fill(
    cluster: Cluster, dbname: str, *, clients: int, duration: int, strategies: int
) -> pgbench.PgbenchRun:
    """record_fill.sql: one placement and one fill per transaction."""
    return _run_script(
        cluster,
        dbname,
        clients=clients,
        duration=duration,
        script=RECORD_FILL_SCRIPT,
        defines={"strategies": strategies},
    )


def run_fill_only(
    cluster: Cluster, dbname: str, *, clients: int, duration: int, orders: tuple[int, int]
) -> pgbench.PgbenchRun:
    """fill_only.sql: one fill per transaction against the pre-placed orders."""
    return _run_script(
        cluster,
        dbname,
        clients=clients,
        duration=duration,
        script=FILL_ONLY_SCRIPT,
        defines={"first_order": orders[0], "last_order": orders[1]},
    )
