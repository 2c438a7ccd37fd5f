"""The backup catalog ``ops.backup_runs``: a run is started before a backup and finished after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from spreadedge.sqlcall import select_value

START = select_value("ops.start_backup_run", ["kind", "compress_type"])
FINISH = select_value(
    "ops.finish_backup_run", ["run_id", "succeeded", "label", "size_bytes", "repo_size_bytes", "detail"]
)


@dataclass
class RunResult:
    """What a successful run reports: its label (backup label or dump file) and sizes."""

    label: str | None = None
    size_bytes: int | None = None
    repo_size_bytes: int | None = None


@contextmanager
def recorded_run(
    connect: Callable[[], psycopg.Connection[Any]], kind: str, compress_type: str
) -> Iterator[RunResult]:
    """Record a backup run around the block: 'running' before, 'succeeded' or 'failed' after.

    Each record is its own short connection and transaction, so the catalog never holds a
    transaction open while the backup runs. A failed run keeps the exception's message as its
    detail (the callers' messages never hold a secret), and no label or size.
    """
    with connect() as conn:
        row = conn.execute(START, {"kind": kind, "compress_type": compress_type}).fetchone()
    assert row is not None
    run_id = int(row[0])
    result = RunResult()
    try:
        yield result
    except BaseException as exc:
        # no label nor sizes: a failed run left no backup or dump file to name
        _finish(connect, run_id, False, RunResult(), str(exc) or type(exc).__name__)
        raise
    _finish(connect, run_id, True, result, None)


def _finish(
    connect: Callable[[], psycopg.Connection[Any]],
    run_id: int,
    succeeded: bool,
    result: RunResult,
    detail: str | None,
) -> None:
    with connect() as conn:
        conn.execute(
            FINISH,
            {
                "run_id": run_id,
                "succeeded": succeeded,
                "label": result.label,
                "size_bytes": result.size_bytes,
                "repo_size_bytes": result.repo_size_bytes,
                "detail": detail,
            },
        )


def runs(conn: psycopg.Connection[Any], limit: int = 20) -> list[tuple[Any, ...]]:
    """The newest runs of the catalog, newest first."""
    return conn.execute(
        "select run_id, kind, compress_type, started_at, finished_at, status, label, size_bytes,"
        " repo_size_bytes, detail from ops.backup_runs order by run_id desc limit %s",
        [limit],
    ).fetchall()
