"""Partition lifecycle: ``spreadedge partitions status|maintain|repair``.

``maintain`` applies the deployment's premake and retention settings to pg_partman's
configuration (``ops.configure_partitioning``) and runs pg_partman's maintenance, which creates
partitions ahead and drops those past retention; ``repair`` moves rows out of default partitions
(``ops.repair_default_partitions``). A table left with no partition at all (dropped by hand, or by
an old cleanup) recovers with them: ``maintain`` first gives it the partition of now(), and
``repair`` does the same before moving its default partition's rows into their partitions (run it
first when that default partition holds rows of now(): ``maintain`` then fails for the table,
55S12, as their partition cannot be attached).

Orders, order events and trades take no retention: pg_partman drops a partition by age alone,
with the working orders and the fills of open positions in it; ``spreadedge cleanup orders``
removes old orders by the rules of what may go. ``maintain`` clears any retention they hold.

``maintain`` also writes the row retention of the tables with no partitions
(``ops.configure_row_retention``: notifications, sessions, pg_cron's runs), whose rows that ended
before it the maintenance then deletes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from spreadedge import pooler
from spreadedge.ops import OpsError
from spreadedge.settings import NO_RETENTION, RenderSettings
from spreadedge.sqlcall import select_rows, select_value

# Which [render] retention setting belongs to which partitioned table (as the migrations render them).
RETENTION_SETTINGS = {
    "trading.orders": "retention_orders",
    "trading.order_events": "retention_order_events",
    "trading.trades": "retention_trades",
    "audit.log": "retention_audit",
    "market.quotes": "retention_quotes",
    "market.ticks": "retention_ticks",
    "market.candles": "retention_candles",
    "market.technical_indicators": "retention_indicators",
    "monitor.metrics": "retention_metrics",
}
# Which [render] retention setting belongs to which table with row retention (ops.row_retention;
# rendered into no migration: maintain writes them).
ROW_RETENTION_SETTINGS = {
    "monitor.notifications": "retention_notifications",
    "auth.sessions": "retention_sessions",
    "cron.job_run_details": "retention_cron_runs",
}


@dataclass(frozen=True)
class PartitionStatus:
    """A row of ``ops.partition_status()``."""

    parent_table: str
    registered: bool
    control: str | None
    partition_interval: str | None
    premake: int | None
    retention: str | None
    partitions: int
    oldest_start: datetime | None
    newest_end: datetime | None
    default_rows: int


def status(conn: psycopg.Connection[Any]) -> list[PartitionStatus]:
    with conn.cursor(row_factory=class_row(PartitionStatus)) as cur:
        return cur.execute(select_rows("ops.partition_status", [])).fetchall()


def configure(conn: psycopg.Connection[Any], render: RenderSettings) -> list[str]:
    """Apply premake and retention from the settings to every table they name, and the row
    retention of the tables with no partitions; the tables done.

    A retention for orders, order events or trades is refused (OpsError) before anything changes:
    the settings refuse it too, but a RenderSettings may be built without them."""
    for setting in NO_RETENTION:
        if getattr(render, setting) is not None:
            raise OpsError(
                f"{setting} must be none: pg_partman would drop partitions of open orders and of the fills "
                "of open positions; remove old orders with spreadedge cleanup orders --older-than 30d"
            )
    done = []
    managed = {row.parent_table for row in status(conn) if row.registered}
    for table, setting in RETENTION_SETTINGS.items():
        if table not in managed:
            continue
        arguments = {
            "parent_table": table,
            "premake": render.partition_premake,
            "retention": getattr(render, setting),
        }
        conn.execute(select_value("ops.configure_partitioning", arguments), arguments)
        done.append(table)
    for table, setting in ROW_RETENTION_SETTINGS.items():
        arguments = {"table_name": table, "retention": getattr(render, setting)}
        conn.execute(select_value("ops.configure_row_retention", arguments), arguments)
        done.append(table)
    return done


def run_maintenance(conn: psycopg.Connection[Any]) -> None:
    """pg_partman's maintenance of every table, table by table (a procedure that commits:
    autocommit connection), a table with no partition getting the partition of now() first;
    55S12 names the tables that failed, the others are maintained.

    why as given behind a pooler too (pooler.unpinned): a procedure that commits refuses to run
    inside a transaction block ("invalid transaction termination", 2D000), and a pinned
    connection ran the CALL in one (its BEGIN, the settings, the CALL): `spreadedge partitions
    maintain` through transaction pooling failed on the first table. It needs none of the
    settings (it sets TimeZone per table itself, and writes no audited row), and the pooler keeps
    the one server connection until the CALL has returned.
    """
    with pooler.unpinned(conn):
        conn.execute("call ops.run_partition_maintenance()")


def repair(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    """Move the rows of every non-empty default partition into their partitions (made as needed,
    and the partition of now() for a table that has none); (table, rows moved) per table."""
    rows = conn.execute(select_rows("ops.repair_default_partitions", [])).fetchall()
    return [(row[0], int(row[1])) for row in rows]
