"""``spreadedge health``: ``ops.health_report`` for this code's migrations, with the file system
of the data directory measured here (SQL cannot see it) when the server is on this machine."""

from __future__ import annotations

import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from spreadedge.sqlcall import select_value


def disk_used_fraction(conn: psycopg.Connection[Any]) -> Decimal | None:
    """The used share of the data directory's file system, or None when it is not on this machine."""
    try:
        row = conn.execute("select current_setting('data_directory')").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    if row is None:
        return None
    try:
        usage = shutil.disk_usage(Path(row[0]))
    except OSError:
        return None
    return round(Decimal(usage.used) / Decimal(usage.total), 4)


def report(
    conn: psycopg.Connection[Any],
    expected_migrations: list[str],
    *,
    max_backup_age: timedelta,
    max_transaction_age: timedelta,
    max_disk_used_fraction: Decimal,
) -> dict[str, Any]:
    """The health document (``healthy``, ``checks``, …) as a dict."""
    arguments = {
        "expected_migrations": expected_migrations,
        "max_backup_age": max_backup_age,
        "max_transaction_age": max_transaction_age,
        "disk_used_fraction": disk_used_fraction(conn),
        "max_disk_used_fraction": max_disk_used_fraction,
    }
    row = conn.execute(select_value("ops.health_report", arguments), arguments).fetchone()
    assert row is not None
    return dict(row[0])
