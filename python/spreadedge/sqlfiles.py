"""SQL files of the project: rendering the templates, splitting statements, checking functions/.

``migrations/`` and ``schema/`` hold Jinja templates rendered with the ``[render]`` settings;
``functions/`` holds SQL that ``spreadedge migrate`` re-applies after every migration run, so it
may only hold statements that can run again and again (``create or replace ...``). A
``functions/*.sql.j2`` file is a template rendered without settings (what a function does never
depends on the deployment): it writes out code that is the same for many objects, such as the
audit trigger of every audited table.
Statements are split the way yoyo splits migrations (sqlparse), so what is checked here is
exactly what gets executed.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import psycopg
import psycopg.errors
import sqlparse.engine
import sqlparse.lexer
import sqlparse.tokens
from psycopg import sql

TEMPLATE_SUFFIX = ".j2"

FUNCTIONS_HINT = (
    "HINT: functions/ is re-applied after every migrate and may only hold CREATE OR REPLACE "
    "FUNCTION|PROCEDURE|AGGREGATE|VIEW|TRIGGER, DROP FUNCTION|PROCEDURE|AGGREGATE|VIEW|TRIGGER IF EXISTS "
    "(without CASCADE, which would drop what migrations made on it), "
    "COMMENT ON, GRANT and REVOKE; "
    "put DDL in a new migration under migrations/ and in schema/"
)

# The statement heads functions/ may hold: each can run again on a database that already has it.
_REAPPLIABLE = re.compile(
    r"(create or replace (function|procedure|aggregate|(recursive )?view|trigger)"
    r"|drop (function|procedure|aggregate|view|trigger) if exists"
    r"|comment on|grant|revoke)\b"
)

# Re-applying functions/ from two sessions at once fails with "tuple concurrently updated".
_FUNCTIONS_LOCK = "spreadedge.functions"


def _defined(value: object) -> None:
    """Raise jinja2's UndefinedError for an undefined filter argument (StrictUndefined raises when
    turned into text), instead of letting psycopg fail to adapt it."""
    if isinstance(value, jinja2.Undefined):
        str(value)


def literal(value: object) -> str:
    """Jinja filter ``literal``: a value as an SQL literal (``'12 months'``, ``NULL``, ``4``)."""
    _defined(value)
    return sql.Literal(value).as_string(None)


def ident(*names: str) -> str:
    """Jinja filter ``ident``: a quoted, optionally qualified, name (``"trading"."orders"``)."""
    for name in names:
        _defined(name)
    return sql.Identifier(*names).as_string(None)


class MigrationError(Exception):
    """migrations/, schema/ or functions/ cannot be applied as they are."""


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a file, as written, without the comments that lead it."""

    line: int
    text: str

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0].strip()

    def head(self, words: int = 6) -> str:
        """The first keywords, lower-case and single-spaced, comments skipped (``create or replace``)."""
        return re.sub(r"\s+", " ", " ".join(_lexed(self.text)[0][:words])).lower()

    def cascades(self) -> bool:
        """Whether this is a DROP ... CASCADE: it would also drop, on every migrate, what depends on
        the object (a column default, a constraint, a policy a migration made), for good."""
        keywords = _lexed(self.text)[1]
        return bool(keywords) and keywords[0] == "drop" and "cascade" in keywords


# why cached, here and in split_statements: a migrate splits and tokenizes every file of
# functions/ three times (checked before the migrations, checked again and read for its triggers'
# tables when re-applied), and sqlparse's lexer was half of a migrate's time; a process that
# migrates several databases (tests, a deployment script) splits each text once. The texts are the
# project's SQL files, a bounded set, and the results immutable.
@functools.lru_cache(maxsize=4096)
def _lexed(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tokens of ``text`` as written, whitespace and comments left out, and its keywords in
    lower case, each in order."""
    tokens: list[str] = []
    keywords: list[str] = []
    for ttype, value in sqlparse.lexer.tokenize(text):
        if ttype in sqlparse.tokens.Whitespace or ttype in sqlparse.tokens.Comment:
            continue
        tokens.append(value)
        if ttype in sqlparse.tokens.Keyword:
            keywords.append(value.lower())
    return tuple(tokens), tuple(keywords)


@dataclass(frozen=True)
class Problem:
    """A statement of functions/ that cannot be re-applied."""

    path: str
    line: int
    statement: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.statement}"


def render_sql_dir(directory: Path, context: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Render every ``*.sql.j2`` and ``*.sql`` file of ``directory`` (not recursive), sorted by name.

    Returns ``(name, sql)`` pairs, ``name`` being the file name without ``.j2``
    (``0001_initial.sql``). Undefined variables are errors (StrictUndefined) and a file's final
    newline is kept, so a render is byte-for-byte stable. Settings reach SQL through the filters
    ``literal`` (``{{ retention_orders | literal }}`` gives ``'12 months'`` or ``NULL``) and
    ``ident`` (``{{ 'trading' | ident('orders') }}``), never pasted into quotes by hand.
    """
    if not directory.is_dir():
        return []
    env = _environment(directory)
    sources: dict[str, Path] = {}
    for path in directory.iterdir():
        if not path.is_file() or not path.name.endswith((".sql", ".sql" + TEMPLATE_SUFFIX)):
            continue
        name = path.name.removesuffix(TEMPLATE_SUFFIX)
        if name in sources:
            raise MigrationError(f"{directory.name}/{name} and {name}{TEMPLATE_SUFFIX} both exist: keep one")
        sources[name] = path
    return [
        (name, _render(env, sources[name].name, f"{directory.name}/{sources[name].name}", context))
        for name in sorted(sources)
    ]


def _environment(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(literal=literal, ident=ident)
    return env


def _render(
    env: jinja2.Environment,
    template: str,
    shown: str,
    context: Mapping[str, Any],
    undefined: str = "no such [render] setting",
) -> str:
    """One template rendered, its errors as MigrationError naming the file (and line)."""
    try:
        return env.get_template(template).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise MigrationError(f"{shown} line {exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise MigrationError(f"{shown}: {exc.message} ({undefined})") from exc
    except jinja2.TemplateError as exc:
        raise MigrationError(f"{shown}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise MigrationError(_not_utf8(shown, exc)) from None


def _not_utf8(shown: str, exc: UnicodeDecodeError) -> str:
    """The error for a project SQL file that is not UTF-8, naming its line.

    why: the file's bytes went up as a UnicodeDecodeError, a traceback that named neither the file
    nor the line (a migration or function saved in Latin-1 or Windows-1252 by an editor)
    """
    line = exc.object[: exc.start].count(b"\n") + 1
    return f"{shown} line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8"


def split_statements(text: str) -> list[Statement]:
    """The statements of ``text`` as sqlparse (and so yoyo) splits them; comment-only ones dropped."""
    return list(_split(text))


@functools.lru_cache(maxsize=1024)
def _split(text: str) -> tuple[Statement, ...]:
    statements = []
    line = 1
    for parsed in sqlparse.engine.FilterStack().run(text):
        raw = str(parsed)
        skipped = ""
        for token in parsed.flatten():
            if not token.is_whitespace and token.ttype not in sqlparse.tokens.Comment:
                break
            skipped += token.value
        else:
            line += raw.count("\n")
            continue
        body = raw[len(skipped) :].rstrip()
        statements.append(Statement(line=line + skipped.count("\n"), text=body))
        line += raw.count("\n")
    return tuple(statements)


def execute_statements(conn: psycopg.Connection[Any], shown: str, text: str) -> None:
    """Run the statements of a file one by one; an error names the file and line it comes from."""
    for statement in split_statements(text):
        try:
            # bytes: the statement is SQL from a project file, run as written, without parameters.
            conn.execute(statement.text.encode())
        except psycopg.Error as exc:
            line = statement.line
            position = exc.diag.statement_position
            if position:
                line += statement.text[: int(position) - 1].count("\n")
            hint = f"\nHINT: {exc.diag.message_hint}" if exc.diag.message_hint else ""
            raise MigrationError(
                f"{shown} line {line}: {exc.diag.message_primary} (SQLSTATE {exc.sqlstate}){hint}"
            ) from exc


def function_files(functions_dir: Path) -> list[Path]:
    """Every ``functions/**/*.sql`` and ``*.sql.j2`` file, sorted by path relative to functions/
    (``.j2`` left out of the sort key, so a template keeps its place when a file becomes one)."""
    if not functions_dir.is_dir():
        return []
    templates = list(functions_dir.rglob("*.sql" + TEMPLATE_SUFFIX))
    for template in templates:
        if template.with_name(template.name.removesuffix(TEMPLATE_SUFFIX)).exists():
            shown = _shown(functions_dir, template)
            raise MigrationError(f"{shown.removesuffix(TEMPLATE_SUFFIX)} and {shown} both exist: keep one")
    paths = [*functions_dir.rglob("*.sql"), *templates]
    return sorted(paths, key=lambda path: _shown(functions_dir, path).removesuffix(TEMPLATE_SUFFIX))


def function_text(functions_dir: Path, path: Path) -> str:
    """The SQL of a functions/ file: a ``.sql.j2`` template rendered (no settings), else the file."""
    if not path.name.endswith(TEMPLATE_SUFFIX):
        # why UTF-8 named: the locale's encoding (ASCII under LC_ALL=C with PYTHONUTF8=0) failed
        # on, or garbled, the non-ASCII characters of the functions' messages and comments
        try:
            return path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(_not_utf8(_shown(functions_dir, path), exc)) from None
        except OSError as exc:
            # why: a name under functions/ that ends in .sql but is no readable file (an editor's
            # lock file, .#30_trading_orders.sql, is a dangling symbolic link; a directory named
            # old.sql) went up as a FileNotFoundError or IsADirectoryError traceback naming neither
            raise MigrationError(
                f"{_shown(functions_dir, path)} cannot be read: {exc.strerror}; functions/ may only "
                "hold SQL files (remove it, or rename it so that it does not end in .sql)"
            ) from None
    template = path.relative_to(functions_dir).as_posix()
    return _render(
        _environment(functions_dir), template, _shown(functions_dir, path), {},
        undefined="functions/ templates are rendered without settings",
    )  # fmt: skip


def _shown(functions_dir: Path, path: Path) -> str:
    return f"{functions_dir.name}/{path.relative_to(functions_dir).as_posix()}"


def check_functions(functions_dir: Path) -> list[Problem]:
    """Every statement of functions/ that could not be re-applied on a database that has it (for a
    template, the line is the rendered file's)."""
    problems = []
    for path in function_files(functions_dir):
        for statement in split_statements(function_text(functions_dir, path)):
            if not _REAPPLIABLE.match(statement.head()) or statement.cascades():
                problems.append(Problem(_shown(functions_dir, path), statement.line, statement.first_line))
    return problems


def refuse_problems(problems: list[Problem]) -> None:
    """Raise one MigrationError listing every problem of functions/, with the hint."""
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise MigrationError(
            f"functions/ holds statements that cannot be re-applied:\n{listed}\n{FUNCTIONS_HINT}"
        )


def apply_functions(
    conn: psycopg.Connection[Any], functions_dir: Path, note: Callable[[str], None] = lambda line: None
) -> int:
    """Re-apply every file of functions/ in one transaction; return how many files were applied.

    Relations pg_partman made as the superuser are first given to spreadedge_owner in a short
    transaction of their own, and the tables functions/ puts triggers on are locked first thing in
    its transaction; each waits for writers at most half the server's deadlock_timeout, and is
    tried again after a pause while they are in use (see _lock_bounded; MigrationError after
    _LOCK_PATIENCE seconds, with nothing of functions/ applied); so does every other lock it takes
    (a view it replaces: lock_timeout), so that no reader queues behind it for longer. In a
    deadlock with the sessions that read its views, functions/ is the one aborted, and is tried
    again the same way (_may_yield_in_deadlocks; ``note`` says so when the role may not make it
    yield).
    """
    refuse_problems(check_functions(functions_dir))
    files = [
        (_shown(functions_dir, path), function_text(functions_dir, path))
        for path in function_files(functions_dir)
    ]
    tables = trigger_tables(statement for _, text in files for statement in split_statements(text))
    yielding = _may_yield_in_deadlocks(conn, note)

    def claim_partitions() -> None:
        if procedure_exists(conn, "internal.unclaimed_relations()"):
            unclaimed = conn.execute(
                "select n.nspname, c.relname"
                " from internal.unclaimed_relations() r (oid)"
                " join pg_catalog.pg_class c on c.oid = r.oid"
                " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
                " where c.relkind in ('r', 'p')"  # not a view: LOCK would lock the tables it reads
            ).fetchall()
            if unclaimed:
                _lock_bounded(conn, unclaimed, "access exclusive")
                conn.execute("call internal.claim_ownership()")

    def reapply() -> None:
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", [_FUNCTIONS_LOCK])
        found = conn.execute(
            "select n.nspname, c.relname"
            " from unnest(%s::text[]) with ordinality as t (name, position)"
            " join pg_catalog.pg_class c on c.oid = pg_catalog.to_regclass(t.name)"
            " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
            " order by t.position",
            [tables],
        ).fetchall()
        if found:
            _lock_bounded(conn, found, "share row exclusive")  # as CREATE TRIGGER locks them
        # why a lock_timeout for the rest (the views it replaces, the comments and grants): a
        # session left idle in its transaction after reading a view (a psql user's BEGIN) held
        # migrate's CREATE OR REPLACE VIEW, and every later reader of that view queued behind
        # migrate's waiting lock, for as long as the session stayed open: the trading
        # applications' reads stopped. Bounded as the trigger tables' lock, migrate gives up, the
        # readers go on and migrate tries again (set before the short deadlock_timeout below, of
        # which it would otherwise take half)
        conn.execute("select pg_catalog.set_config('lock_timeout', %s, true)", [bounded_wait(conn)])
        if yielding:
            conn.execute(
                "select pg_catalog.set_config('deadlock_timeout', %s, true)", [_YIELDING_DEADLOCK_TIMEOUT]
            )
        try:
            for shown, text in files:
                execute_statements(conn, shown, text)
            finish_migrate(conn)
        except (MigrationError, psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable) as exc:
            cause = exc.__cause__ if isinstance(exc, MigrationError) else exc
            if isinstance(cause, psycopg.errors.LockNotAvailable):
                raise _TablesBusy(str(exc)) from None
            if not isinstance(cause, psycopg.errors.DeadlockDetected):
                raise
            raise _Deadlocked(str(exc)) from None

    patience = Patience()
    for step in (claim_partitions, reapply):
        while True:
            try:
                with conn.transaction():
                    step()
                break
            except (_TablesBusy, _Deadlocked) as exc:
                if patience.exhausted() and isinstance(exc, _Deadlocked):
                    raise MigrationError(
                        f"functions/ was not re-applied: for {patience.seconds} s it kept yielding in "
                        f"deadlocks with sessions that read its views, the last one at {exc}; "
                        "run spreadedge migrate again when fewer sessions read them"
                    ) from None
                if patience.exhausted():
                    raise MigrationError(
                        f"functions/ was not re-applied: the tables and views it locks stayed in use for "
                        f"{patience.seconds} s ({exc}); a long transaction holds one of them "
                        "(pg_stat_activity shows it): end it and run spreadedge migrate again"
                    ) from None
                patience.pause()
    return len(files)


# How long migrate keeps trying to take the locks a migration (see migrate._apply_steps) or
# functions/ (apply_functions) waits for, each, before it gives up: Patience's seconds.
_LOCK_PATIENCE = 60


class Patience:
    """The tries of a step of migrate that gives way to other sessions' locks (lock_timeout): after
    each failed try a pause 0.1 s longer than the last (at most 1 s), until _LOCK_PATIENCE seconds
    have passed since the first; ``attempt`` is the number of the try that just failed."""

    def __init__(self) -> None:
        self.seconds = _LOCK_PATIENCE
        self.attempt = 1
        self._deadline = time.monotonic() + self.seconds

    def exhausted(self) -> bool:
        """Whether the step has had its time: the try that just failed was the last."""
        return time.monotonic() >= self._deadline

    def pause(self) -> None:
        """Wait before the next try (the longer, the more tries failed), and count it."""
        time.sleep(min(0.1 * self.attempt, 1.0))
        self.attempt += 1


class _TablesBusy(Exception):
    """Tables could not all be locked before _lock_bounded gave up, or a view (a comment, a grant)
    before lock_timeout did."""


class _Deadlocked(Exception):
    """functions/ was aborted as the victim of a deadlock (40P01); its error, naming the file."""


# migrate's deadlock_timeout while it re-applies functions/ (_may_yield_in_deadlocks): far below the
# server's (1 s by default), so that migrate's own deadlock check always runs first
_YIELDING_DEADLOCK_TIMEOUT = "10ms"


def _may_yield_in_deadlocks(conn: psycopg.Connection[Any], note: Callable[[str], None]) -> bool:
    """Whether functions/ can be made the one PostgreSQL aborts in a deadlock: its transaction then
    sets a short deadlock_timeout (_YIELDING_DEADLOCK_TIMEOUT); ``note`` says why not when the role
    may not set it.

    why: a reader of a view built on views (monitor.open_positions reads trading.open_positions,
    which reads trading.position_summary) locks the outer view, then the inner ones, while
    functions/ replaces the inner view first and holds its ACCESS EXCLUSIVE lock until it commits:
    a reader that came between the two waited for the inner view while migrate waited for the
    outer, and PostgreSQL aborted whichever of the two ran its deadlock check first, after the
    deadlock_timeout each had waited; often the reader, a trading application or a dashboard,
    with 40P01. The views cannot be locked first in the readers' order: LOCK TABLE on a view
    locks every table under it, as every writer would feel. With a deadlock_timeout a hundred
    times shorter, migrate checks first, finds the deadlock and is aborted; its readers go on and
    apply_functions tries again. deadlock_timeout is a superuser's setting (PGC_SUSET).
    """
    allowed = conn.execute("select pg_catalog.has_parameter_privilege('deadlock_timeout', 'set')").fetchone()
    if allowed is not None and allowed[0]:
        return True
    note(
        "note: this role may not set deadlock_timeout, so a session reading a view that functions/ "
        "replaces may be the one aborted in a deadlock with migrate (40P01) rather than migrate; "
        "migrate as a superuser, or GRANT SET ON PARAMETER deadlock_timeout to this role"
    )
    return False


def trigger_tables(statements: Iterable[Statement]) -> list[str]:
    """The tables the CREATE OR REPLACE TRIGGER statements name (``on trading.orders``), as written,
    each once, in the order they first appear."""
    tables: dict[str, None] = {}
    for statement in statements:
        if not statement.head(5).startswith("create or replace trigger"):
            continue
        tokens = _lexed(statement.text)[0]
        # the table follows the first ON after the trigger's name (tokens[2]: "create or replace"
        # is one token), and an unquoted name is never the reserved word ON
        at = [value.lower() for value in tokens].index("on", 3) + 1
        name = [tokens[at]]
        while at + 2 < len(tokens) and tokens[at + 1] == ".":
            name += [".", tokens[at + 2]]
            at += 2
        tables["".join(name)] = None
    return list(tables)


def _lock_bounded(conn: psycopg.Connection[Any], relations: list[tuple[str, str]], mode: str) -> None:
    """Lock the relations (schema, name), partitions too, in one statement that waits at most half
    the deadlock_timeout; _TablesBusy then, naming them.

    why: CREATE OR REPLACE TRIGGER takes a SHARE ROW EXCLUSIVE lock that writers of the table wait
    for until the transaction commits, and functions/ took them file by file, in its own order
    (the default partitions, then ref, then orders before trades): a fill that had written its
    trade and waited for the orders migrate held, while migrate waited for the trades, was aborted
    by PostgreSQL with 40P01 "deadlock detected" (or migrate was), at every migrate under trading;
    so was migrate when its last step changed the owner of a partition pg_partman had made, which
    a fill waiting for a trigger's lock held (a generic plan locks every partition); and a
    transaction left open on a table held migrate, and every writer queued behind it, for as long
    as it stayed open. Taken in one statement that gives up before a waiting writer's deadlock
    check runs, migrate is the one that yields: the writers go on and migrate tries again.
    """
    (previous,) = conn.execute("select pg_catalog.current_setting('statement_timeout')").fetchone() or ("0",)
    conn.execute("select pg_catalog.set_config('statement_timeout', %s, true)", [bounded_wait(conn)])
    names = sql.SQL(", ").join(sql.Identifier(*name) for name in relations)
    try:
        conn.execute(sql.SQL("lock table {} in {} mode").format(names, sql.SQL(mode)))
    except psycopg.errors.QueryCanceled:
        raise _TablesBusy(names.as_string(conn)) from None
    conn.execute("select pg_catalog.set_config('statement_timeout', %s, true)", [previous])


def bounded_wait(conn: psycopg.Connection[Any]) -> str:
    """How long migrate waits for a lock (a migration's, functions/'s) before it gives up and tries
    again: half the deadlock_timeout, in milliseconds (as statement_timeout and lock_timeout take
    them), so that a writer queued behind its waiting lock waits no longer."""
    row = conn.execute(
        "select greatest(1, (extract(epoch from pg_catalog.current_setting('deadlock_timeout')::interval)"
        " * 500)::integer)::text"
    ).fetchone()
    return row[0] if row else "500"


def procedure_exists(conn: psycopg.Connection[Any], procedure: str) -> bool:
    """Whether the database has this routine (a signature, e.g. ``internal.finish_migrate()``)."""
    row = conn.execute("select pg_catalog.to_regprocedure(%s) is not null", [procedure]).fetchone()
    return row is not None and bool(row[0])


def finish_migrate(conn: psycopg.Connection[Any]) -> None:
    """Run the project's last migrate step, ``internal.finish_migrate()``, when the project has one.

    Migrations and functions/ run as the migrating superuser, so what they create is first owned by
    it; the procedure (functions/05_internal_access.sql) gives it all to spreadedge_owner, which
    the security definer functions must run as, and keeps bind parameters out of the server log.
    """
    if procedure_exists(conn, "internal.finish_migrate()"):
        conn.execute("call internal.finish_migrate()")
