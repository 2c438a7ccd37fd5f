"""Cleanup of old rows: ``spreadedge cleanup orders|quotes|ticks|candles|indicators|metrics``, and
``notifications|sessions|cron_runs``.

The plan, what may go and what must stay, is ``ops.cleanup_plan`` (orders: only finished ones,
never open orders, spread-trade legs or fills of positions still open); whole partitions go with
``ops.cleanup_drop_partition`` (detach and drop; an orders partition's rows are first deleted
through ``trading.orders``, so each gets its audit DELETE row), the rest with
``ops.cleanup_delete_batch``, one transaction per batch. Keys a trade or a risk event refers to stay.
Notifications, sessions and pg_cron's runs have no partitions: only their rows that ended before
the cutoff go, in batches (delivered or dead; revoked or expired; finished, but each job's newest).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from spreadedge.ops import OpsError
from spreadedge.sqlcall import select_rows, select_value

TARGETS = (
    "orders",
    "quotes",
    "ticks",
    "candles",
    "indicators",
    "metrics",
    "notifications",
    "sessions",
    "cron_runs",
)
_AGE = re.compile(r"([1-9][0-9]{0,5})\s*(h|d|w|hours?|days?|weeks?)")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str, option: str = "--older-than") -> timedelta:
    """``30d``, ``12h``, ``2w`` (or ``30 days``…) as a timedelta; OpsError naming ``option`` otherwise."""
    match = _AGE.fullmatch(text.strip().lower())
    if not match:
        raise OpsError(f"{option} must look like 30d, 12h or 2w (hours, days or weeks), got {text!r}")
    return timedelta(**{_UNITS[match.group(2)[0]]: int(match.group(1))})


@dataclass(frozen=True)
class Step:
    """A row of ``ops.cleanup_plan``: drop partition, delete rows, or keep."""

    action: str
    object_name: str
    row_count: int


@dataclass(frozen=True)
class Outcome:
    partitions_dropped: int
    rows_in_dropped_partitions: int
    rows_deleted: int


def cutoff(conn: psycopg.Connection[Any], older_than: timedelta, target: str | None = None) -> datetime:
    """``ops.cleanup_cutoff``: the time rows must be older than, fixed for a whole run (its plan,
    partitions and batches), so rows that grow old meanwhile neither change it nor prolong it. For
    ``target`` ticks rounded down to its UTC minute, for candles to its UTC day (whole minutes and
    days stay, so the candle rollup rebuilds no candle from part of it)."""
    arguments: dict[str, Any] = {"older_than": older_than}
    if target is not None:
        arguments["target"] = target
    row = conn.execute(select_value("ops.cleanup_cutoff", arguments), arguments).fetchone()
    assert row is not None
    return row[0]


def plan(conn: psycopg.Connection[Any], target: str, older_than: timedelta, at: datetime) -> list[Step]:
    """``ops.cleanup_plan`` for the run's cutoff ``at``."""
    arguments = {"target": target, "older_than": older_than, "cutoff": at}
    rows = conn.execute(select_rows("ops.cleanup_plan", arguments), arguments).fetchall()
    return [Step(row[0], row[1], int(row[2])) for row in rows]


def run(
    conn: psycopg.Connection[Any],
    target: str,
    older_than: timedelta,
    at: datetime,
    *,
    batch_rows: int,
    progress: Callable[[int], None],
) -> Outcome:
    """Drop the whole partitions of the plan, then delete the rest in batches (autocommit: a
    transaction per partition and per batch), all judged by the cutoff ``at``. ``progress`` gets
    the rows each step removed."""
    if not conn.autocommit:
        raise OpsError("cleanup runs a transaction per partition and per batch: use an autocommit connection")
    dropped = dropped_rows = deleted = 0
    for step in plan(conn, target, older_than, at):
        if step.action != "drop partition":
            continue
        arguments = {
            "target": target,
            "older_than": older_than,
            "partition_name": step.object_name,
            "cutoff": at,
        }
        row = conn.execute(select_value("ops.cleanup_drop_partition", arguments), arguments).fetchone()
        rows = int(row[0]) if row else 0
        if rows or step.row_count == 0:
            dropped += 1
            dropped_rows += rows
        progress(rows)
    arguments = {"target": target, "older_than": older_than, "batch_rows": batch_rows, "cutoff": at}
    batch = select_value("ops.cleanup_delete_batch", arguments)
    while True:
        row = conn.execute(batch, arguments).fetchone()
        rows = int(row[0]) if row else 0
        if rows == 0:
            break
        deleted += rows
        progress(rows)
    return Outcome(dropped, dropped_rows, deleted)
