"""Deadlines on connections to a server that may stop answering: the managers', the API's, the
CLI's and the notify worker's.

A server process that stops answering (a stalled backend, a frozen host, a network partition
without a reset) keeps its connection open: its statement_timeout never fires, and nothing ever
comes back. So a caller gives its connection up at a deadline of its own (:class:`Deadline`, and
:class:`BoundedConnection` for a sync one), a pool's check of an idle connection before handing it
out is bounded too (:func:`bounded_check` with :func:`checks_within`), TCP connections notice a
vanished peer (:func:`tcp_settings`), and a new connection whose server never completes its
startup is given up (:func:`connect_settings`; :func:`connect` for every sync connection of the
CLI, the embedded cluster's start and the notify worker). A connection given up is closed and
never handed out again.

Every connection also pins the session settings spreadedge's code is written for
(:data:`SESSION_SETTINGS`, :data:`PIN_SESSION`), whatever the server's postgresql.conf, an
``ALTER DATABASE``/``ALTER ROLE ... SET``, ``PGOPTIONS`` or ``PGDATESTYLE`` say.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
import socket
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.abc import PQGen
from psycopg.conninfo import conninfo_to_dict

# Seconds between the server's statement_timeout and the caller's deadline: a server that answers
# reports the cancel itself (57014) before it, and its connection stays usable.
SERVER_CANCEL_MARGIN = 1.0
# libpq settings of pooled connections, unless the URL gives them: a server that vanished without
# closing the connection (a network partition, a host that froze) is noticed on an idle connection
# within about a minute, and data it never acknowledges is given up after a minute, so a pool's
# own work on such a connection (its check, its replacement) does not wait forever. Unix-domain
# sockets ignore them; a stopped server process whose host runs on is answered by its kernel, and
# only a Deadline gives it up.
TCP_SETTINGS = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",
}

# libpq's minimum connect_timeout (a smaller one is taken as 2)
MIN_CONNECT_TIMEOUT = 2
# Seconds a new sync connection (of a CLI command, the embedded cluster's start, the notify worker)
# waits for its server to complete the startup unless the URL or PGCONNECT_TIMEOUT sets one: a
# server that accepts the connection and never answers (its postmaster stopped, its host frozen)
# kept a command silent, and a worker stuck, for 130 s, psycopg's own bound.
CONNECT_TIMEOUT = 10

# The session settings every spreadedge connection sets as it opens (the CLI's, the embedded
# cluster's start's, migrate's and yoyo's, the notify worker's, the API's and the managers' pools,
# SecuritySystem's), whatever the server, the database or the role would give it. See README, "Using
# your own PostgreSQL server".
# why DateStyle and IntervalStyle: psycopg reads dates and times in the ISO style alone, and
# intervals in the postgres style alone; under a database's DateStyle 'German' (or 'SQL, DMY') every
# command that read a time (spreads, metrics show, partitions, cleanup, migrate), the managers' calls
# and the API's login failed with a traceback ("can't parse timestamptz with DateStyle ..."), and
# the intervals in health's and partitions status's text read as the server's style (PT15M).
# why standard_conforming_strings: what migrate applies (views, checks, defaults) is parsed in its
# session, and a backslash in a quoted literal means itself only when it is on.
# why read committed: the stored functions lock the rows they change and re-read them, which READ
# COMMITTED is made for; under a database default of serializable (or repeatable read) a fill, a
# placement or a notification claim beside another one failed with 40001, which no caller retried.
# why a SET after connecting, not options=-c: libpq sends PGDATESTYLE (and PGTZ) after the options,
# and they would win.
SESSION_SETTINGS: dict[str, str] = {
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "standard_conforming_strings": "on",
    "default_transaction_isolation": "read committed",
}
# The one statement that sets SESSION_SETTINGS, for the session (one round trip).
PIN_SESSION = sql.SQL("select {}").format(
    sql.SQL(", ").join(
        sql.SQL("pg_catalog.set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(value))
        for name, value in SESSION_SETTINGS.items()
    )
)

Check = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]
RV = TypeVar("RV")

# The sync connections this process opened with connect(): after a Ctrl-C, psycopg has closed one
# itself (broken) when its server never answered the cancel (see interrupted_unanswered).
_opened: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
# The server function that warns when a commit's wait for a synchronous standby ends unconfirmed
# (a cancel: Ctrl-C, pg_cancel_backend; or pg_terminate_backend): the transaction has already
# committed on the server. Its name, unlike the warning's text, is the same in every lc_messages.
SYNC_REP_WAIT = "SyncRepWaitForLSN"
# How many commits of this process's connections of connect() had that wait cancelled (see
# committed_unconfirmed); a count, not the connections: a command's are closed (and may be gone)
# by the time its Ctrl-C is reported.
_unconfirmed_commits = 0


def tcp_settings(conninfo: str) -> dict[str, str]:
    """The :data:`TCP_SETTINGS` that ``conninfo`` does not set itself (its own win)."""
    given = conninfo_to_dict(conninfo)
    return {name: value for name, value in TCP_SETTINGS.items() if name not in given}


def connect_settings(conninfo: str, seconds: float) -> dict[str, str]:
    """libpq's ``connect_timeout`` for new connections: ``seconds`` in whole seconds (at least 2),
    unless ``conninfo`` or PGCONNECT_TIMEOUT sets one.

    why: a server whose postmaster does not answer (stopped, its host frozen) still has its
    connections accepted by the kernel, and their startup never completes: without a
    connect_timeout psycopg waits 130 s for each, a pool makes no other attempt meanwhile, and a
    CLI command sat silent as long
    """
    if "connect_timeout" in conninfo_to_dict(conninfo) or os.environ.get("PGCONNECT_TIMEOUT"):
        return {}
    return {"connect_timeout": str(max(MIN_CONNECT_TIMEOUT, math.ceil(seconds)))}


def connect(
    conninfo: str, *, cls: type[psycopg.Connection[Any]] = psycopg.Connection, **kwargs: Any
) -> psycopg.Connection[Any]:
    """A new sync connection (``cls``, with psycopg.connect's ``kwargs``) whose startup is given up
    after :data:`CONNECT_TIMEOUT` (:func:`connect_settings`), with :data:`SESSION_SETTINGS` set:
    the one way the CLI, migrate, the embedded cluster's start and the notify worker connect.

    Behind a pooler (see :mod:`spreadedge.pooler`) nothing is set for the session: a
    ``PinnedConnection`` (``cls``) sets the settings for each of its transactions instead."""
    from spreadedge import pooler  # here: pooler reads SESSION_SETTINGS from this module

    conn = cls.connect(conninfo, **kwargs, **connect_settings(conninfo, CONNECT_TIMEOUT))
    _opened.add(conn)
    conn.add_notice_handler(_note_unconfirmed)
    try:
        # why not for the session behind a pooler: in transaction pooling these settings landed
        # on whichever server connection the pooler lent, for its other clients, and were missing
        # from this connection's next transactions; a PinnedConnection sets them for each one
        if not pooler.note_pooled(conn):
            pin_session(conn)
        elif isinstance(conn, pooler.PinnedConnection):
            conn.pin_transactions(pooler.TRANSACTION_SETTINGS)
    except BaseException:
        conn.close()
        raise
    return conn


def _note_unconfirmed(diag: psycopg.errors.Diagnostic) -> None:
    """A notice handler of every connection of :func:`connect`: counts the server's warnings that a
    commit's wait for a synchronous standby was cancelled (see committed_unconfirmed)."""
    global _unconfirmed_commits
    if diag.source_function == SYNC_REP_WAIT:
        _unconfirmed_commits += 1


def committed_unconfirmed() -> bool:
    """Whether a commit of a connection of :func:`connect` in this process waited for a synchronous standby
    (``synchronous_standby_names``) and had that wait cancelled (a Ctrl-C, an operator's
    pg_cancel_backend or pg_terminate_backend): PostgreSQL had already committed the transaction
    on its server, and no synchronous standby has confirmed it.

    why: with the synchronous standby gone, a CLI command's commit waited for ever, and the Ctrl-C
    that ended it said "any transaction in progress was rolled back" of a transaction that was
    committed (a risk limit set, an alert acknowledged)
    """
    return _unconfirmed_commits > 0


def pin_session(conn: psycopg.Connection[Any]) -> None:
    """Set :data:`SESSION_SETTINGS` for the session of ``conn`` (committed, outside autocommit)."""
    conn.execute(PIN_SESSION)
    if not conn.autocommit:
        conn.commit()


def interrupted_unanswered() -> bool:
    """Whether psycopg closed a connection of :func:`connect` itself (``broken``): on Ctrl-C it
    asks the server to cancel the statement and waits 5 s for it (10 s when the cancel request
    is not taken either), then gives the connection up; a server that answers leaves it open."""
    return any(conn.broken for conn in list(_opened))


def _shut_down(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Shut the connection's socket down: whatever is awaited on it fails at once."""
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:  # already closed or lost
        return
    # why a duplicate: shutdown acts on the socket, and closing the duplicate leaves libpq's own
    # descriptor (which it closes itself) alone
    with socket.socket(fileno=os.dup(fd)) as sock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class BoundedConnection(psycopg.Connection[Any]):
    """A sync connection each of whose waits on the server (a statement, a commit, a wait for
    notifies) is given up after :attr:`seconds`: its socket is shut down, the connection closed,
    and an OperationalError says so. Unbounded while ``seconds`` is None.

    why: a server that stopped answering (a stalled backend, a frozen host) never ends a
    statement, its own statement_timeout never fires, and a signal only sets a flag the blocked
    process never looks at again: a service's stop waited forever. It overrides
    ``psycopg.Connection.wait``, through which psycopg 3.3 (pinned in pyproject.toml) runs every
    exchange with the server: check it again when psycopg is upgraded
    (tests/test_cli_frozen_server_hunt.py fails if it no longer bounds the worker).
    """

    seconds: float | None = None

    def wait(self, gen: PQGen[RV], *args: Any, **kwargs: Any) -> RV:
        if self.seconds is None:
            return super().wait(gen, *args, **kwargs)
        lock = threading.Lock()
        ended = passed = False

        def give_up() -> None:
            nonlocal passed
            with lock:  # never once the wait has ended: the connection is fine then
                if not ended:
                    passed = True
                    _shut_down(self)

        timer = threading.Timer(self.seconds, give_up)
        timer.daemon = True
        timer.start()
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if not passed:
                raise
            self.close()
            raise psycopg.OperationalError(
                f"the database did not answer within {self.seconds:g} s: its connection was given up"
            ) from exc
        finally:
            with lock:
                ended = True
            timer.cancel()


class Deadline:
    """Gives a connection up at a deadline: shuts its socket down, so that whatever is awaited on it
    fails at once with an OperationalError (from a server that stopped answering, nothing ever comes).
    ``passed`` tells whether it did; the connection must then be closed, never used again.

    why not asyncio.timeout alone: cancelled, psycopg asks the server to cancel the query and waits
    for it (5 s), then closes the connection; a frozen server answers neither, and a call without an
    outer timeout waited forever
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any], seconds: float) -> None:
        self.conn = conn
        self.passed = False
        self._timer = asyncio.get_running_loop().call_later(max(seconds, 0.0), self._give_up)

    def _give_up(self) -> None:
        self.passed = True
        _shut_down(self.conn)

    def cancel(self) -> None:
        self._timer.cancel()


# The event loop time by which the running task's pool check must be done (None: no bound).
_check_by: contextvars.ContextVar[float | None] = contextvars.ContextVar("_check_by", default=None)


@contextlib.contextmanager
def checks_within(seconds: float) -> Iterator[None]:
    """The pool checks run by this task inside the block are given up ``seconds`` from now."""
    token = _check_by.set(asyncio.get_running_loop().time() + seconds)
    try:
        yield
    finally:
        _check_by.reset(token)


def bounded_check(check: Check) -> Check:
    """A pool's ``check`` of a connection before handing it out, given up at the deadline of
    :func:`checks_within` (unbounded outside it).

    why: a connection whose server stopped answering never answers the check; given up, the pool
    discards it and the caller waits for another until its own timeout
    """

    async def bounded(conn: psycopg.AsyncConnection[Any]) -> None:
        by = _check_by.get()
        if by is None:
            await check(conn)
            return
        deadline = Deadline(conn, by - asyncio.get_running_loop().time())
        try:
            await check(conn)
        finally:
            deadline.cancel()

    return bounded
