"""Connections through a connection pooler (PgBouncer, and any proxy of its kind).

Behind a pooler in transaction pooling, a client connection is lent a server connection for one
transaction at a time: whatever a client sets for its *session* (``SET ROLE``, ``set_config(...,
false)``, a prepared statement) lands on the server connection of that transaction, is missing
from the next transaction's, and is found by the other clients that server connection serves next.

A pooler is detected on a new connection: the process id the server reported at the startup
(``conn.info.backend_pid``, from the cancel key) is the pooler's own invention, not the id of the
server process that runs the connection's statements (``pg_backend_pid()``). A connection behind
one sets what it needs for each transaction instead (:func:`pin_transaction`), never prepares a
statement, and keeps nothing in its session. See README, "Behind PgBouncer".

A sync connection of :func:`spreadedge.deadline.connect` (the CLI's, migrate's, the notify
worker's) is looked at the same way; a :class:`PinnedConnection` behind a pooler then begins each
of its transactions with its settings (:meth:`PinnedConnection.pin_transactions`), and the
commands that need a session of their own (migrate's advisory lock, ingest's temporary staging
table) refuse (:func:`pooled_refusal`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from psycopg import Cursor, sql
from psycopg.abc import Params, Query
from psycopg.pq import TransactionStatus
from psycopg.rows import Row
from psycopg.transaction import Transaction

from spreadedge.deadline import SESSION_SETTINGS

_BACKEND_PID = sql.SQL("select pg_catalog.pg_backend_pid()")
# SESSION_SETTINGS that a transaction can set for itself: its isolation level is given by its BEGIN
# (the connection's isolation_level), as a set_config after BEGIN comes too late for it
TRANSACTION_SETTINGS: dict[str, str] = {
    name: value for name, value in SESSION_SETTINGS.items() if name != "default_transaction_isolation"
}


# The sync connections found behind a pooler when they opened (see note_pooled)
_pooled: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


async def behind_pooler(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether ``conn`` reaches its server through a pooler (runs one statement)."""
    cursor = await conn.execute(_BACKEND_PID, prepare=False)
    row = await cursor.fetchone()
    return row is not None and row[0] != conn.info.backend_pid


def note_pooled(conn: psycopg.Connection[Any]) -> bool:
    """Whether the new sync ``conn`` reaches its server through a pooler (runs one statement, in
    autocommit or in a transaction committed at once); remembered for :func:`is_pooled`."""
    row = conn.execute(_BACKEND_PID, prepare=False).fetchone()
    if not conn.autocommit:
        conn.commit()
    pooled = row is not None and row[0] != conn.info.backend_pid
    if pooled:
        _pooled.add(conn)
    return pooled


def is_pooled(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``conn`` (of :func:`spreadedge.deadline.connect`) was found behind a pooler."""
    return conn in _pooled


# What a command that needs a session of its own is told to use instead of a pooler.
# why not "or a session-pooled URL": a pooler is recognised by the process id it reports, which
# PgBouncer invents in session pooling too, so that URL was refused the same way (nothing a client
# sees tells the two pool modes apart)
SESSION_HINT = (
    "use the database server's own URL for it, not the pooler's (DATABASE_URL, --database-url): "
    "a pooler is refused whatever its pool_mode"
)


def pooled_refusal(conn: psycopg.Connection[Any], command: str, needs: str) -> str | None:
    """Why ``command`` cannot run on ``conn`` when it is behind a pooler (None: it is not):
    it needs ``needs`` (a session-level lock, a temporary table), which transaction pooling
    loses between transactions or lends to the pooler's other clients."""
    if not is_pooled(conn):
        return None
    return (
        f"{command} needs {needs}, which a pooler in transaction pooling (PgBouncer) does not keep "
        "from one transaction to the next: this URL reaches the server through a pooler (which "
        "cannot be told from one in session pooling)"
    )


def pin_transaction(settings: Mapping[str, str]) -> sql.Composed:
    """``select set_config(name, value, true), ...``: ``settings`` for the current transaction only,
    whatever server connection the pooler lent it."""
    return sql.SQL("select {}").format(
        sql.SQL(", ").join(
            sql.SQL("pg_catalog.set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
            for name, value in settings.items()
        )
    )


class PinnedConnection(psycopg.Connection[Row]):
    """A sync connection that, once :meth:`pin_transactions` is called (behind a pooler), runs
    every statement in a transaction that first sets its settings: a statement run outside a
    transaction in autocommit gets one of its own (its BEGIN, the settings, the statement, its
    COMMIT), the first statement of a transaction sets them after the BEGIN psycopg sends, and
    ``transaction()`` sets them as it begins. Before it (directly connected), a plain
    psycopg connection. See :func:`unpinned` for a statement that cannot run in a transaction.

    why: the CLI set its actor and its settings for the session: behind transaction pooling they
    landed on whichever server connection the pooler lent, so other clients' audit rows were
    written as the operator (cli:alice), and the command's own later statements ran on another
    server connection without them
    """

    pin: sql.Composed | None = None
    _unpinned = False

    def pin_transactions(self, settings: Mapping[str, str]) -> None:
        """From now on, set ``settings`` at the start of each transaction (:func:`pin_transaction`);
        no statement is prepared (another client's server connection lacks it) and every
        transaction begins ISOLATION LEVEL READ COMMITTED (see deadline.SESSION_SETTINGS)."""
        self.prepare_threshold = None
        self.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        self.pin = pin_transaction(settings)
        self.cursor_factory = PinnedCursor

    def pinning(self) -> bool:
        """Whether a statement run now, outside a transaction, must be pinned first."""
        return (
            self.pin is not None
            and not self._unpinned
            and self.info.transaction_status == TransactionStatus.IDLE
        )

    def set_pin(self) -> None:
        """Run the pin (beginning the transaction, outside autocommit)."""
        if self.pin is not None:
            Cursor(self).execute(self.pin)

    @contextlib.contextmanager
    def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> Iterator[Transaction]:
        outer = self.pinning()
        with super().transaction(savepoint_name, force_rollback) as transaction:
            if outer:
                self.set_pin()
            yield transaction


class PinnedCursor(Cursor[Row]):
    """The cursor of a :class:`PinnedConnection` behind a pooler (see there)."""

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> PinnedCursor[Row]:
        conn = self.connection
        if not isinstance(conn, PinnedConnection) or not conn.pinning():
            super().execute(query, params, prepare=prepare, binary=binary)
        elif conn.autocommit:
            with conn.transaction():
                super().execute(query, params, prepare=prepare, binary=binary)
        else:
            conn.set_pin()
            super().execute(query, params, prepare=prepare, binary=binary)
        return self


@contextlib.contextmanager
def unpinned(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Statements of ``conn`` in this block run as given, outside a pinned transaction: those
    PostgreSQL refuses inside one (CREATE INDEX CONCURRENTLY, ALTER SYSTEM), which need no
    setting. A plain connection, or one not behind a pooler, is not changed."""
    if not isinstance(conn, PinnedConnection):
        yield
        return
    before, conn._unpinned = conn._unpinned, True
    try:
        yield
    finally:
        conn._unpinned = before
