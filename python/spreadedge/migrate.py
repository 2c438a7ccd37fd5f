"""``spreadedge migrate``: render and apply migrations/, then re-apply functions/.

Migrations are Jinja templates (``migrations/NNNN_description.sql.j2``) rendered with the
``[render]`` settings and applied by yoyo in file-name order, each in its own transaction, whose
every lock waits at most half the deadlock_timeout: a migration that cannot take one in time is
rolled back and tried again for a while, so that trading never queues behind it (_apply_steps).

Applied migrations are frozen (see ``spreadedge.checksums``): each rendered migration records
its own sha256 in the transaction that applies it, and before anything is applied every applied
migration is rendered again and compared; a difference (an edited template, or a ``[render]``
setting it uses) is refused, because the change belongs in a new migration. Then functions/ is
re-applied in one transaction (see ``spreadedge.sqlfiles``).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from yoyo import read_migrations
from yoyo.backends import PostgresqlPsycopgBackend
from yoyo.connections import DatabaseURI
from yoyo.migrations import Migration, MigrationList, default_migration_table

from spreadedge import checksums, deadline, pooler, preflight
from spreadedge.checksums import BOOKKEEPING_TABLES, AppliedMigration, RenderedMigration
from spreadedge.settings import Settings
from spreadedge.sqlfiles import (
    MigrationError,
    Patience,
    Problem,
    apply_functions,
    bounded_wait,
    check_functions,
    execute_statements,
    procedure_exists,
    refuse_problems,
    render_sql_dir,
    split_statements,
)

__all__ = [
    "BOOKKEEPING_TABLES",
    "MigrationError",
    "Problem",
    "apply_functions",
    "apply_schema",
    "check_functions",
    "check_project",
    "migrate",
    "print_status",
    "render_migrations",
    "render_sql_dir",
    "run",
    "write_rendered",
    "yoyo_uri",
]

MIGRATION_ID = re.compile(r"[0-9]+_[a-z0-9_]+")
# A name that starts like a migration's: one that is not read would be a migration silently skipped.
_LOOKS_LIKE_MIGRATION = re.compile(r"[0-9]+_")
# One migrate at a time per database; a session lock, so a crashed run leaves nothing locked.
_MIGRATE_LOCK = "spreadedge.migrate"
_TRANSACTION_CONTROL = {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}

Echo = Callable[[str], None]


def run(
    settings: Settings,
    conninfo: str,
    *,
    render_only: Path | None = None,
    status: bool = False,
    echo: Echo = print,
) -> None:
    """Render only, print the status, or migrate: the three faces of ``spreadedge migrate``."""
    check_project(settings)
    if render_only is not None:
        write_rendered(settings, render_only, echo)
    elif status:
        print_status(settings, conninfo, echo)
    else:
        migrate(conninfo, settings, echo)


def check_project(settings: Settings) -> None:
    """Refuse settings without migrations/ (MigrationError): neither the project directory nor this
    code has them (settings.code_sql_dir)."""
    if not settings.migrations_dir.is_dir():
        # why: without migrations/ a new database would be
        # reported "up to date" with nothing in it, and an old one would list every migration as gone
        raise MigrationError(
            f"{settings.migrations_dir} is not a directory: run spreadedge from the project "
            "directory (the one with migrations/ and functions/) or set SPREADEDGE_PROJECT_DIR"
        )


def render_migrations(settings: Settings) -> list[RenderedMigration]:
    """Every migration rendered with the settings, in the order they apply."""
    # why: render_sql_dir reads only *.sql and *.sql.j2, so a migration saved as 0026_x.j2 or
    # 0026_x.sql.jinja would be skipped and migrate would report "up to date" without it
    misnamed = sorted(
        path.name
        for path in (settings.migrations_dir.iterdir() if settings.migrations_dir.is_dir() else ())
        if _LOOKS_LIKE_MIGRATION.match(path.name)
        and not (path.is_file() and path.name.endswith((".sql", ".sql.j2")))
    )
    if misnamed:
        raise MigrationError(
            f"migrations/{misnamed[0]} is not read: a migration is a file named NNNN_description.sql.j2 "
            "(or .sql); rename it, or move it out of migrations/"
        )
    migrations = []
    for name, text in render_sql_dir(settings.migrations_dir, settings.render.as_context()):
        migration_id = name.removesuffix(".sql")
        if not MIGRATION_ID.fullmatch(migration_id):
            raise MigrationError(
                f"migrations/{name}: a migration is named NNNN_description.sql.j2 "
                "(digits, an underscore, then lower-case letters, digits and underscores)"
            )
        for statement in split_statements(text):
            if statement.head(1) in _TRANSACTION_CONTROL:
                raise MigrationError(
                    f"migrations/{name} line {statement.line}: {statement.first_line} — each migration "
                    "runs in one transaction together with its checksum; remove the transaction control"
                )
        migrations.append(RenderedMigration(migration_id, text))
    return migrations


def write_rendered(settings: Settings, directory: Path, echo: Echo = print) -> None:
    """Write each rendered migration to ``directory/NNNN_description.sql``; no database involved.

    ``directory`` must be new, empty or hold only an earlier render of these migrations (whose files
    are overwritten): anything else is refused (MigrationError), as the files written would mix
    with it, and an older render's migration that no longer exists would read as part of this one.
    """
    migrations = render_migrations(settings)
    names = {f"{migration.id}.sql" for migration in migrations}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # why a symbolic link is refused even under a migration's name: writing through it
        # overwrote the file it leads to, outside the directory (in a shared /tmp, anyone's)
        others = sorted(
            entry.name
            for entry in directory.iterdir()
            if entry.name not in names or entry.is_symlink() or not entry.is_file()
        )
        if others:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise MigrationError(
                f"{directory} holds files that are not migrations rendered now: {shown}; "
                "render into a new or empty directory (nothing was written)"
            )
        for migration in migrations:
            # O_NOFOLLOW: a link made after the look above fails (ELOOP) rather than being written through
            fd = os.open(
                directory / f"{migration.id}.sql",
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                0o666,
            )
            # UTF-8 named, as the templates are read and as yoyo reads what migrate writes: the
            # locale's encoding (ASCII under LC_ALL=C with PYTHONUTF8=0) failed on a non-ASCII character
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(migration.sql)
    except OSError as exc:
        raise MigrationError(
            f"cannot write the rendered migrations into {directory}: {exc.strerror} ({exc.filename})"
        ) from None
    echo(f"rendered {len(migrations)} migrations into {directory}")


def yoyo_uri(conninfo: str) -> DatabaseURI:
    """The connection parameters as yoyo's psycopg 3 backend takes them.

    Every libpq parameter goes through ``args``, which yoyo hands to ``psycopg.connect`` as is,
    so a socket directory (``?host=/path``), several hosts or ``sslmode`` all work, which a
    ``postgresql+psycopg://`` URL cannot always carry.
    """
    params = conninfo_to_dict(conninfo)
    dbname = params.pop("dbname", None)
    return DatabaseURI("postgresql+psycopg", None, None, None, None, dbname, params)


def migrate(conninfo: str, settings: Settings, echo: Echo = print) -> None:
    """Apply the pending migrations, then re-apply functions/; refuse if an applied one changed."""
    migrations = render_migrations(settings)
    # functions/ is checked first, so a bad file stops the run before any migration is applied.
    refuse_problems(check_functions(settings.functions_dir))
    with (
        _database_errors(),
        _connect(conninfo) as conn,
        tempfile.TemporaryDirectory(prefix="spreadedge-migrations-") as tmp,
    ):
        # why first: a role that is not a superuser, lacking what the migrations need, failed
        # part-way with a raw 42501 (once with every migration committed and functions/ refused)
        already = checksums.applied_migrations(conn)
        preflight.refuse_missing(conn, [m.id for m in migrations if m.id not in already])
        conn.execute("select pg_advisory_lock(hashtext(%s))", [_MIGRATE_LOCK])
        checksums.ensure_table(conn)
        applied = checksums.applied_migrations(conn)
        checksums.refuse_changed(settings.migrations_dir, migrations, applied)
        checksums.refuse_out_of_order(migrations, applied)
        for migration in migrations:
            recorded = migration.sql + checksums.record_statement(conn, migration)
            Path(tmp, f"{migration.id}.sql").write_text(recorded, encoding="utf-8")  # as yoyo reads it
        notices = _NOTICES.set(echo)
        try:
            with _yoyo_backend(conninfo) as backend:
                pending = _pending(backend, read_migrations(tmp), applied)
                for migration in pending:
                    echo(f"applying {migration.id}")
                    _apply_one(backend, migration, _LockWatch(conn), echo)
        finally:
            _NOTICES.reset(notices)
        if not pending:
            echo("up to date")
        count = apply_functions(conn, settings.functions_dir, echo)
        echo(f"re-applied {count} function files")


def apply_schema(conninfo: str, settings: Settings) -> None:
    """Apply the rendered schema/ files (sorted), then functions/, all in one transaction."""
    files = render_sql_dir(settings.schema_dir, settings.render.as_context())
    refuse_problems(check_functions(settings.functions_dir))
    with _connect(conninfo) as conn, conn.transaction():
        for name, text in files:
            execute_statements(conn, f"{settings.schema_dir.name}/{name}", text)
        apply_functions(conn, settings.functions_dir)


def print_status(settings: Settings, conninfo: str, echo: Echo = print) -> None:
    """List applied and pending migrations; an applied one says whether it still renders the same."""
    current = {migration.id: migration for migration in render_migrations(settings)}
    with _database_errors(status=True), _connect(conninfo) as conn:
        applied = checksums.applied_migrations(conn)
    width = max((len(migration_id) for migration_id in {*current, *applied}), default=0)
    # why: migrate refuses a pending migration that sorts before an applied one
    # (checksums.refuse_out_of_order); a plain "pending" said the next migrate would apply it
    early = set(checksums.out_of_order(current, applied))
    for migration_id in sorted({*current, *applied}):
        row = applied.get(migration_id)
        if row is None:
            refused = (
                f"  REFUSED: sorts before {max(applied)}, which is applied (rename it to sort after)"
                if migration_id in early
                else ""
            )
            echo(f"{migration_id:<{width}}  pending{refused}")
            continue
        when = row.applied_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if migration_id not in current:
            verdict = "file missing"
        elif current[migration_id].sha256 == row.sha256:
            verdict = "checksum ok"
        else:
            verdict = "checksum CHANGED"
        echo(f"{migration_id:<{width}}  applied {when}  {verdict}")
    echo(f"{len(applied)} applied, {len(set(current) - set(applied))} pending")


@contextlib.contextmanager
def _database_errors(status: bool = False) -> Iterator[None]:
    """An error of the database in migrate's own steps (its ledger, yoyo's tables, the lock), or in
    ``migrate --status``'s read of the ledger (status), as a MigrationError; one without a SQLSTATE
    (no connection) goes on as it is."""
    try:
        yield
    except psycopg.Error as exc:
        if exc.sqlstate is None:
            raise
        # why a hint for 42501: migrations create extensions, roles and schemas, and migrate keeps
        # its bookkeeping tables in public, so a role that is not a superuser fails before any SQL
        command = "spreadedge migrate --status" if status else "spreadedge migrate"
        hint = ""
        if exc.sqlstate == "42501":
            hint = f"\nHINT: run {command} as a superuser (the embedded cluster's spreadedge role)"
        elif exc.sqlstate == "25006":
            # why: a DATABASE_URL naming a hot standby (or a database with writes switched off)
            # said "cannot execute CREATE TABLE in a read-only transaction" alone, where every
            # other command says what to do about it
            hint = (
                "\nHINT: this database is read-only (a standby, or default_transaction_read_only is on): "
                "connect to the primary"
            )
        # why its own words for --status: it reads the ledger and applies nothing, and "migrate
        # failed, nothing more was applied" read as if a migrate had been attempted
        failed = (
            "spreadedge migrate --status could not read the applied migrations"
            if status
            else "spreadedge migrate failed, nothing more was applied"
        )
        raise MigrationError(f"{failed}: {exc.diag.message_primary} (SQLSTATE {exc.sqlstate}){hint}") from exc


# why every migrate connection works in UTC: pg_partman computes partition bounds in the session
# TimeZone, and a server installed with the machine's zone (or an operator's PGTZ) made the
# migrations' partitions start at that zone's midnight, with days missing between them. A SET, not
# options=-c TimeZone=UTC: libpq sends PGTZ after the options, and it would win.
_IN_UTC = "set timezone = 'UTC'"
# why every migrate connection turns idle_session_timeout off: while a migration runs on its own
# connection, the ledger's (which holds the migrate lock) and yoyo's wait idle, and a database or
# role set to end idle sessions (a guard against leaked connections) ended them under a migration
# that ran longer: migrate failed after the migration committed, with the lock gone meanwhile
_NO_IDLE_TIMEOUT = "set idle_session_timeout = 0"
# why every migrate connection works in public alone: yoyo's tables are named without a schema, and
# so are the extensions 0001 creates (pgcrypto, pg_stat_statements, hypopg), which the code calls as
# public.*; under a database or role search_path that puts another schema first (ALTER ROLE ... SET
# search_path = app, public) they were all created in that schema, the 50 migrations committed, and
# functions/ then failed (public.pg_stat_statements does not exist), leaving a database half
# migrated; under one without public (pg_catalog) migrate failed on yoyo_lock
_IN_PUBLIC = "set search_path = public"


# Where a migration's own NOTICEs go while migrate applies it (None: nowhere).
# why: migrations 0032 and 0037 list by NOTICE the alert rules they could not fix, for the operator
# to fix by hand; yoyo's connections had no notice handler, so the list was never shown
_NOTICES: contextvars.ContextVar[Echo | None] = contextvars.ContextVar(
    "spreadedge_migrate_notices", default=None
)
# the C function of PL/pgSQL's RAISE: a migration's own message, not a server remark such as
# "function ... does not exist, skipping" of a DROP ... IF EXISTS
_RAISED = "exec_stmt_raise"


def _echo_raised_notice(diagnostic: psycopg.errors.Diagnostic) -> None:
    echo = _NOTICES.get()
    if echo is not None and diagnostic.source_function == _RAISED:
        echo(f"NOTICE: {diagnostic.message_primary}")


class _UtcBackend(PostgresqlPsycopgBackend):
    """yoyo's psycopg backend, every connection in UTC (it opens one per migration: backend.copy),
    in public, with deadline.SESSION_SETTINGS, the migrations' own NOTICEs echoed (see _NOTICES)."""

    def init_connection(self, connection: Any) -> None:
        super().init_connection(connection)
        cursor = connection.cursor()
        cursor.execute(_IN_UTC)
        cursor.execute(_NO_IDLE_TIMEOUT)
        cursor.execute(_IN_PUBLIC)
        cursor.execute(deadline.PIN_SESSION)
        connection.add_notice_handler(_echo_raised_notice)


@contextlib.contextmanager
def _connect(conninfo: str) -> Iterator[psycopg.Connection[Any]]:
    with deadline.connect(conninfo, autocommit=True, application_name="spreadedge migrate") as conn:
        # why: behind transaction pooling the migrate lock (a session's advisory lock) was taken
        # on a server connection the pooler then lent to other clients, and never released by
        # migrate's own unlock (run on another one): a second migrate ran beside the first, and
        # every later one waited for ever; the SET below and yoyo's own locks fared the same
        why = pooler.pooled_refusal(conn, "spreadedge migrate", "one session for its lock and its settings")
        if why is not None:
            raise MigrationError(f"{why}\nhint: {pooler.SESSION_HINT}")
        conn.execute(_IN_UTC)
        conn.execute(_NO_IDLE_TIMEOUT)
        conn.execute(_IN_PUBLIC)
        yield conn


@contextlib.contextmanager
def _yoyo_backend(conninfo: str) -> Iterator[PostgresqlPsycopgBackend]:
    backend = _UtcBackend(yoyo_uri(conninfo), default_migration_table)
    try:
        backend.init_database()
        yield backend
    finally:
        backend.connection.close()


def _pending(
    backend: PostgresqlPsycopgBackend, migrations: MigrationList, applied: dict[str, AppliedMigration]
) -> list[Migration]:
    """The migrations to apply, after bringing yoyo's bookkeeping in line with the checksums."""
    marked = set(backend.get_applied_migration_hashes())
    # The checksum row commits with the migration; yoyo marks it applied in a later transaction.
    unmarked = [m for m in migrations if m.id in applied and m.hash not in marked]
    if unmarked:
        backend.mark_migrations(unmarked)
    stray = [m.id for m in migrations if m.hash in marked and m.id not in applied]
    if stray:
        raise MigrationError(
            f"migration {stray[0]} is marked applied in yoyo's {default_migration_table} but has no "
            "checksum: it was applied outside spreadedge migrate, so it cannot be checked as frozen"
        )
    pending = list(backend.to_apply(migrations))
    for migration in pending:
        migration.load()
        if not migration.use_transactions:
            raise MigrationError(
                f"migration {migration.id} says '-- transactional: false': each migration runs in one "
                "transaction together with its checksum, so that none is ever half-applied"
            )
    return pending


def _apply_one(
    backend: PostgresqlPsycopgBackend, migration: Migration, watch: _LockWatch, echo: Echo
) -> None:
    """Apply one migration on a connection of its own (_apply_steps), then mark it applied in yoyo's tables.

    why not backend.apply_one: it marks the migration on yoyo's own connection after the
    migration's transaction committed, and an error there (that connection lost or ended by the
    server) read as "rolled back, nothing of it is applied" of a migration that was applied.
    """
    backend.ensure_internal_schema_updated()
    _apply_steps(backend, migration, watch, echo)
    try:
        backend.log_migration(migration, "apply")
        with backend.transaction():
            backend.mark_one(migration, log=False)
    except psycopg.Error as exc:
        # the migration and its checksum committed together: it is applied, and the next migrate
        # marks it in yoyo's tables from the checksum (see _pending) and goes on
        raise MigrationError(
            f"migration {migration.id} was applied, but migrate stopped before the next one: "
            f"yoyo could not record it: {_error_text(exc)}; run spreadedge migrate again to go on"
        ) from exc


def _apply_steps(
    backend: PostgresqlPsycopgBackend, migration: Migration, watch: _LockWatch, echo: Echo
) -> None:
    """Run the migration with its checksum in one transaction, on a connection of its own whose
    every lock waits at most half the deadlock_timeout (lock_timeout, sqlfiles.bounded_wait); when a
    lock is not granted in time (55P03) the migration is rolled back whole and tried again after a
    pause (sqlfiles.Patience), each try's wait echoed, then MigrationError naming the lock and the
    sessions holding it, nothing of the migration applied.

    why: a migration altering a table waits for an ACCESS EXCLUSIVE lock, and every later fill,
    placement and read of the table queues behind that waiting lock; behind a transaction left open
    on the table (a psql user's BEGIN; SELECT ... FROM trading.orders) migrate waited for as long as
    it stayed open, and trading stopped meanwhile. Now the writers wait at most that long, as
    behind functions/ (sqlfiles.apply_functions). A migration's own ``set local lock_timeout`` is
    its own to choose, and tried again the same way.
    """
    patience = Patience()
    while True:
        try:
            # yoyo prints the rows of every statement that returns some (select partman.create_parent).
            with contextlib.redirect_stdout(io.StringIO()), backend.copy() as migration_backend:
                connection = migration_backend.connection
                connection.execute(
                    "select pg_catalog.set_config('lock_timeout', %s, false)", [bounded_wait(connection)]
                )
                with watch.watching(connection.info.backend_pid):
                    migration.process_steps(migration_backend, "apply")
            return
        except psycopg.errors.LockNotAvailable as exc:
            if patience.exhausted():
                raise MigrationError(
                    f"migration {migration.id} was not applied, nothing of it: for {patience.seconds} s it "
                    f"waited for {watch.waited()} and gave way each time, so that the sessions queued "
                    f"behind it went on ({exc.diag.message_primary}, SQLSTATE {exc.sqlstate})\n"
                    "HINT: end or commit the transactions named (select pg_terminate_backend(pid) ends "
                    "one), then run spreadedge migrate again"
                ) from exc
            echo(f"{migration.id}: waiting for {watch.waited()}; attempt {patience.attempt} gave way")
            patience.pause()
        except psycopg.Error as exc:
            raise MigrationError(
                f"migration {migration.id} failed and was rolled back, nothing of it is applied: "
                f"{_error_text(exc)}"
            ) from exc


class _LockWatch:
    """The lock a migration's connection waits for and the sessions it waits for, looked up from
    migrate's own connection every _WATCH_INTERVAL seconds while the migration runs (a lock_timeout
    error says neither); the last one seen is kept for the migration's next tries. One per migration."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        # why each holder named as health names it, when the database has internal.session_line
        # (functions/59): the operator finds the psql user; a database migrated before it did not
        # have it yet, and the pids alone are named
        line = (
            sql.SQL("internal.session_line(a)")
            if procedure_exists(conn, "internal.session_line(pg_catalog.pg_stat_activity)")
            else sql.SQL("'pid ' || a.pid")
        )
        self._query = _WAITING.format(holder=line)
        self._seen: tuple[str, str | None] | None = None

    @contextlib.contextmanager
    def watching(self, pid: int) -> Iterator[None]:
        """Look at backend pid's lock waits until the block ends."""
        stop = threading.Event()

        def look() -> None:
            while not stop.wait(_WATCH_INTERVAL):
                try:
                    row = self._conn.execute(self._query, [pid]).fetchone()
                except psycopg.Error:
                    return  # migrate's own connection failed: its next step says so
                if row is not None:
                    self._seen = (row[0], row[1])

        looker = threading.Thread(target=look, name="spreadedge migrate lock watch", daemon=True)
        looker.start()
        try:
            yield
        finally:
            stop.set()
            looker.join(_WATCH_INTERVAL + 30)

    def waited(self) -> str:
        """The lock last seen waited for and who holds it: ``a lock on trading.orders held by pid ...``."""
        if self._seen is None:
            return "a lock that other sessions hold"
        lock, holders = self._seen
        return f"{lock} held by {holders or 'sessions that have ended since'}"


# How often _LockWatch looks: a wait lasts half the deadlock_timeout (0.5 s by default).
_WATCH_INTERVAL = 0.05
# The lock a backend waits for (a relation's, named; a row's, which is a wait for the transaction
# holding it) and the sessions it waits for, oldest transaction first ({holder} names one).
_WAITING = sql.SQL(
    "select case when c.oid is not null"
    " then 'a lock on ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
    " when l.locktype = 'transactionid' then 'a row lock' else 'a lock (' || l.locktype || ')' end,"
    " (select pg_catalog.string_agg({holder}, ', ' order by a.xact_start nulls last, a.pid)"
    "  from pg_catalog.pg_stat_activity a where a.pid = any (pg_catalog.pg_blocking_pids(l.pid)))"
    " from pg_catalog.pg_locks l"
    " left join pg_catalog.pg_class c on c.oid = l.relation"
    " left join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
    " where l.pid = %s and not l.granted"
)


def _error_text(exc: psycopg.Error) -> str:
    """The error's message with its SQLSTATE (a lost connection has none)."""
    message = str(exc).strip()
    return f"{message} (SQLSTATE {exc.sqlstate})" if exc.sqlstate else message
