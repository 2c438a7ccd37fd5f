"""``spreadedge health``: ``ops.health_report`` for this code's migrations, with the file systems
of the data directory, its pg_wal and its tablespaces measured here (SQL cannot see them) when the
server is on this machine."""

from __future__ import annotations

import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from spreadedge.sqlcall import select_rows, select_value

# where the server writes: its data directory, the WAL under it (pg_wal, often a link to a disk of
# its own) and the locations of its tablespaces
_SERVER_PATHS = (
    "select pg_catalog.current_setting('data_directory'),"
    " array(select pg_catalog.pg_tablespace_location(t.oid) from pg_catalog.pg_tablespace t"
    "       where t.spcname not in ('pg_default', 'pg_global'))"
)


def disk_used_fraction(conn: psycopg.Connection[Any]) -> Decimal | None:
    """The used share of the fullest file system the server writes to (its data directory's, its
    pg_wal's, its tablespaces'), as ``df`` counts it, or None when none is on this machine.

    why used over used and available rather than over the size: the blocks a file system keeps
    for root (ext4 reserves 5 % by default) are never available to the server, which runs as
    another user; a data directory whose disk was full (every write of the server failing with
    53100, disk_full) read "file system 95.0% used" and passed the default limit of 90 % set
    above that. why pg_wal and the tablespaces: a pg_wal on a disk of its own that fills stops
    the server (PANIC), and a full tablespace fails every write to its tables, while the data
    directory's disk was the only one measured.
    """
    try:
        row = conn.execute(_SERVER_PATHS).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    if row is None:
        return None
    data_directory = Path(row[0])
    # an in-place tablespace's location is relative to the data directory (joining keeps an
    # absolute one as it is)
    paths = [data_directory, data_directory / "pg_wal", *(data_directory / location for location in row[1])]
    fractions = [fraction for path in paths if (fraction := _used_fraction(path)) is not None]
    return max(fractions, default=None)


def _used_fraction(path: Path) -> Decimal | None:
    """The used share of ``path``'s file system for a user that is not root (None: not measured)."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    # free is what a user other than root may still use (statvfs's f_bavail)
    usable = usage.used + usage.free
    if usable == 0:
        return None
    return round(Decimal(usage.used) / Decimal(usable), 4)


def report(
    conn: psycopg.Connection[Any],
    expected_migrations: list[str],
    *,
    max_backup_age: timedelta,
    max_replication_lag: timedelta,
    max_retained_wal: int,
    max_transaction_age: timedelta,
    max_disk_used_fraction: Decimal,
    max_archive_wait: timedelta,
) -> dict[str, Any]:
    """The health document (``healthy``, ``checks``, …) as a dict."""
    arguments = {
        "expected_migrations": expected_migrations,
        "max_backup_age": max_backup_age,
        "max_replication_lag": max_replication_lag,
        "max_retained_wal": max_retained_wal,
        "max_transaction_age": max_transaction_age,
        "disk_used_fraction": disk_used_fraction(conn),
        "max_disk_used_fraction": max_disk_used_fraction,
        "max_archive_wait": max_archive_wait,
    }
    row = conn.execute(select_value("ops.health_report", arguments), arguments).fetchone()
    assert row is not None
    return dict(row[0])


WAL_ARCHIVING = select_rows("internal.health_wal_archiving", ["p_max_wait"])


def wal_archiving(conn: psycopg.Connection[Any], max_wait: timedelta) -> tuple[bool, str]:
    """Health's wal_archiving check (ok, detail): the archiver's last attempt did not fail and no
    WAL file has waited to be archived longer than ``max_wait``."""
    row = conn.execute(WAL_ARCHIVING, {"p_max_wait": max_wait}).fetchone()
    assert row is not None
    return bool(row[0]), str(row[1])
