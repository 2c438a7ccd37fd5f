"""The backup catalog ``ops.backup_runs``: a run is started before a backup and finished after;
the runs whose backups pgBackRest has expired are marked after every backup and expire."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from spreadedge.interrupts import Terminated
from spreadedge.ops import OpsError
from spreadedge.sqlcall import select_value

START = select_value("ops.start_backup_run", ["kind", "compress_type"])
FINISH = select_value(
    "ops.finish_backup_run", ["run_id", "succeeded", "label", "size_bytes", "repo_size_bytes", "detail"]
)
MARK_EXPIRED = select_value("ops.mark_expired_backup_runs", ["labels", "listed_at"])
# the other databases of the server a session may try (a template or one refusing connections
# is none); which of them are spreadedge databases only a connection to each can tell
OTHER_DATABASES = (
    "select d.datname from pg_catalog.pg_database d"
    " where d.datallowconn and not d.datistemplate and d.datname <> pg_catalog.current_database()"
    " order by d.datname"
)
HAS_CATALOG = (
    "select pg_catalog.to_regprocedure('ops.finish_backup_run(bigint,boolean,text,bigint,bigint,text)')"
    " is not null"
)
# How long recording a run's end keeps trying while the server cannot be reached: a backup takes
# long enough for the server to restart under it, and a run whose end is never recorded stays
# 'running'; a minute covers a restart without hanging a scheduled job for good.
FINISH_RETRY_SECONDS = 60.0


@dataclass
class RunResult:
    """What a successful run reports: its label (backup label or dump file) and sizes."""

    label: str | None = None
    size_bytes: int | None = None
    repo_size_bytes: int | None = None


@contextmanager
def recorded_run(
    connect: Callable[[], psycopg.Connection[Any]],
    kind: str,
    compress_type: str,
    retry_seconds: float | None = None,
) -> Iterator[RunResult]:
    """Record a backup run around the block: 'running' before, 'succeeded' or 'failed' after.

    Each record is its own short connection and transaction, so the catalog never holds a
    transaction open while the backup runs. A failed run keeps the exception's message as its
    detail (the callers' messages never hold a secret), and no label or size. The end is recorded
    again while the server cannot be reached, for up to ``retry_seconds`` (it may be restarting);
    when it still cannot be recorded, a failed run raises its own error (with the reason its end
    is not recorded added), never the connection's, and a successful one raises OpsError naming
    the backup it took. ``retry_seconds`` defaults to FINISH_RETRY_SECONDS.
    """
    if retry_seconds is None:
        retry_seconds = FINISH_RETRY_SECONDS
    with connect() as conn:
        row = conn.execute(START, {"kind": kind, "compress_type": compress_type}).fetchone()
    assert row is not None
    run_id = int(row[0])
    result = RunResult()
    try:
        yield result
    except BaseException as exc:
        # no label nor sizes: a failed run left no backup or dump file to name
        try:
            _finish(connect, run_id, False, RunResult(), _failure(exc), retry_seconds)
        except Exception as unrecorded:
            # why: the connection error of the record replaced the backup's own error, so the
            # operator read "connection refused" and never learnt why the backup failed
            note = (
                f"(run {run_id} stays 'running' in ops.backup_runs: its end could not be recorded:"
                f" {reason(unrecorded)})"
            )
            if isinstance(exc, OpsError):
                raise OpsError(f"{exc}\n{note}") from exc
            exc.add_note(note)
            raise exc from None
        raise
    try:
        _finish(connect, run_id, True, result, None, retry_seconds)
    except Exception as unrecorded:
        raise OpsError(
            f"the backup succeeded ({result.label}), but run {run_id} stays 'running' in ops.backup_runs:"
            f" its end could not be recorded: {reason(unrecorded)}"
        ) from unrecorded


def _failure(exc: BaseException) -> str:
    """A failed run's detail in ops.backup_runs: what ended it, in words an operator reads."""
    # why: Ctrl-C (or SIGINT) of a backup was recorded as "KeyboardInterrupt", a Python class name
    if isinstance(exc, Terminated):
        return "stopped by SIGTERM before it finished"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C or SIGINT) before it finished"
    return str(exc) or type(exc).__name__


def reason(exc: BaseException) -> str:
    """An error's message for an operator: the server's primary message when there is one."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc).strip() or type(exc).__name__


def _unreachable(exc: psycopg.Error) -> bool:
    """Whether the server could not be reached or went away (worth trying again), not refused."""
    state = exc.sqlstate
    return isinstance(exc, psycopg.OperationalError) and (
        state is None or state.startswith("08") or state.startswith("57")
    )


def _finish(
    connect: Callable[[], psycopg.Connection[Any]],
    run_id: int,
    succeeded: bool,
    result: RunResult,
    detail: str | None,
    retry_seconds: float = 0.0,
) -> None:
    deadline = time.monotonic() + retry_seconds
    pause = 0.5
    interrupted = False
    while True:
        try:
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
            return
        except psycopg.Error as exc:
            # an attempt whose connection broke after its commit: this one finds the run finished
            if interrupted and exc.sqlstate == "55S10":
                return
            if not _unreachable(exc) or time.monotonic() + pause > deadline:
                raise
            interrupted = True
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def mark_expired(connect: Callable[[], psycopg.Connection[Any]], listed: Callable[[], list[str]]) -> int:
    """Mark the successful physical runs whose backups pgBackRest no longer lists; how many.

    ``listed`` returns the labels pgBackRest info lists. The server's clock is read before it
    runs, so a run that finished after the list was read (a backup taken meanwhile) is not taken
    for expired.
    """
    with connect() as conn:
        row = conn.execute("select clock_timestamp()").fetchone()
    assert row is not None
    labels = listed()
    with connect() as conn:
        marked = conn.execute(MARK_EXPIRED, {"labels": labels, "listed_at": row[0]}).fetchone()
    assert marked is not None
    return int(marked[0])


def runs(conn: psycopg.Connection[Any], limit: int = 20) -> list[tuple[Any, ...]]:
    """The newest runs of the catalog, newest first (the last column: when its backup expired)."""
    return conn.execute(
        "select run_id, kind, compress_type, started_at, finished_at, status, label, size_bytes,"
        " repo_size_bytes, detail, expired_at from ops.backup_runs order by run_id desc limit %s",
        [limit],
    ).fetchall()


def other_catalogs(
    connect: Callable[[], psycopg.Connection[Any]], connect_to: Callable[[str], psycopg.Connection[Any]]
) -> list[tuple[str, str | None]]:
    """The other spreadedge databases of ``connect``'s server (those with ops.backup_runs), as
    (name, None), and the databases that could not be reached or read, as (name, why): whether
    those are spreadedge's, only a connection could tell.

    why: a physical backup (pgBackRest) holds every database of the server, and a second
    deployment's health (last_backup) and metric (backup.last_success_age_seconds) read only its
    own ops.backup_runs, so they said "no successful physical backup" of a server backed up daily.
    """
    with connect() as conn:
        names = [str(row[0]) for row in conn.execute(OTHER_DATABASES).fetchall()]
    found: list[tuple[str, str | None]] = []
    for name in names:
        try:
            with connect_to(name) as other:
                row = other.execute(HAS_CATALOG).fetchone()
        except psycopg.Error as exc:
            found.append((name, reason(exc)))
            continue
        if row is not None and row[0]:
            found.append((name, None))
    return found


def record_taken(
    conn: psycopg.Connection[Any], kind: str, compress_type: str, result: RunResult, taken_through: str
) -> None:
    """Record in ``conn``'s database a physical backup that a command connected to database
    ``taken_through`` took (it holds this database too): a run started and finished now, its
    detail naming that database; one transaction, so a refused end leaves no run 'running'."""
    detail = f"taken through database {taken_through} (a physical backup holds every database of the server)"
    # why one transaction: the backup is already taken, so there is no run in progress to show;
    # a start and an end each committed left a run 'running' for good when the end was refused
    with conn.transaction():
        row = conn.execute(START, {"kind": kind, "compress_type": compress_type}).fetchone()
        assert row is not None
        conn.execute(
            FINISH,
            {
                "run_id": int(row[0]),
                "succeeded": True,
                "label": result.label,
                "size_bytes": result.size_bytes,
                "repo_size_bytes": result.repo_size_bytes,
                "detail": detail,
            },
        )
