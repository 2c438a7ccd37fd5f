"""Index advice and its application: ``spreadedge tune report|apply|drop-unused``.

The advice is ``ops.index_advice()`` and the statements that build an index are
``ops.index_build_statements()``; this module runs them one by one outside any transaction, as
CREATE INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY require. A build counts as done only when
``ops.index_build_state()`` says the index is valid: a concurrent build that fails leaves an
invalid index behind (unused by queries, still maintained by writes), and the next build drops it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from spreadedge import pooler
from spreadedge.ops import OpsError
from spreadedge.sqlcall import select_rows


@dataclass(frozen=True)
class Advice:
    """A row of ``ops.index_advice()``."""

    advice: int
    queryid: int
    statement: str
    calls: int
    total_exec_ms: Decimal
    table_name: str
    index_method: str
    columns: list[str]
    cost_before: Decimal
    cost_after: Decimal
    saving: Decimal
    create_index: str


@dataclass(frozen=True)
class UnusedIndex:
    """A row of ``ops.unused_indexes``."""

    schema_name: str
    table_name: str
    index_name: str
    index_method: str
    size_bytes: int
    created_by_tune: bool
    index_definition: str
    drop_statement: str
    unused_since: datetime | None
    old_enough: bool


def advice(
    conn: psycopg.Connection[Any],
    statements: int = 20,
    min_saving: Decimal = Decimal("0.5"),
    gin_trial_max_mb: int = 64,
) -> list[Advice]:
    """The index advice for the heaviest statements, numbered from 1."""
    arguments = {"statements": statements, "min_saving": min_saving, "gin_trial_max_mb": gin_trial_max_mb}
    with conn.cursor(row_factory=class_row(Advice)) as cur:
        return cur.execute(select_rows("ops.index_advice", arguments), arguments).fetchall()


# The statements of this database pg_stat_statements keeps from the role (other roles', to a role
# without pg_read_all_stats: no queryid, text '<insufficient privilege>'), which index advice cannot
# examine; and the GRANT that shows them.
_HIDDEN = """
select count(*) filter (where s.queryid is null), format('grant pg_read_all_stats to %I;', current_user)
from public.pg_stat_statements(false) s
where s.dbid = (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database())
"""


def hidden_statements(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    """How many of this database's statements the role may not read (so advice skipped them), and
    the statement a superuser runs to show them."""
    row = conn.execute(_HIDDEN).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def build_statements(conn: psycopg.Connection[Any], item: Advice) -> list[str]:
    """The statements that build the advised index, in order."""
    arguments = {"table_name": item.table_name, "index_method": item.index_method, "columns": item.columns}
    rows = conn.execute(select_rows("ops.index_build_statements", arguments), arguments).fetchall()
    return [row[1] for row in sorted(rows)]


def advice_named(conn: psycopg.Connection[Any], items: list[Advice], name: str) -> Advice:
    """The advice whose index is ``name`` (bare or schema-qualified); OpsError when none is."""
    wanted = name.strip()
    for item in items:
        arguments = {
            "table_name": item.table_name,
            "index_method": item.index_method,
            "columns": item.columns,
        }
        row = conn.execute(select_rows("ops.index_build_state", arguments), arguments).fetchone()
        assert row is not None
        if wanted in (row[0], row[0].split(".", 1)[-1]):
            return item
    listed = ", ".join(str(item.advice) for item in items) or "none"
    raise OpsError(f"no advice builds an index named {wanted!r} now (tune report lists {listed})")


def build(
    conn: psycopg.Connection[Any], item: Advice, steps: list[str], progress: Callable[[str], None]
) -> None:
    """Run ``steps`` (``build_statements`` of ``item``); OpsError unless the index is then valid."""
    failure = None
    try:
        run_statements(conn, steps, progress)
    except psycopg.Error as exc:
        if conn.broken:
            raise OpsError(
                f"building the {item.index_method} index on {item.table_name} failed: {exc}"
            ) from exc
        failure = exc.diag.message_primary or str(exc)
    arguments = {"table_name": item.table_name, "index_method": item.index_method, "columns": item.columns}
    row = conn.execute(select_rows("ops.index_build_state", arguments), arguments).fetchone()
    assert row is not None
    index_name, is_valid = row
    if failure is None and is_valid:
        return
    left = {
        True: f"the index {index_name} is valid; a step after its build failed",
        False: f"the index {index_name} is left INVALID (queries do not use it, writes still maintain it):"
        " tune apply drops and builds it again",
        None: f"the index {index_name} was not built",
    }[is_valid]
    reason = (
        f"failed: {failure}"
        if failure is not None
        else "did not make it valid (is another build of it running?)"
    )
    raise OpsError(f"building the {item.index_method} index on {item.table_name} {reason}\n{left}")


def run_statements(
    conn: psycopg.Connection[Any], statements: list[str], progress: Callable[[str], None]
) -> None:
    """Run each statement on its own (``conn`` must be in autocommit mode)."""
    if not conn.autocommit:
        raise OpsError("index builds and drops run outside transactions: use an autocommit connection")
    for statement in statements:
        progress(statement)
        # bytes: a statement the database composed (ops.index_build_statements, ops.unused_indexes);
        # as given behind a pooler too: CONCURRENTLY refuses a transaction block (25001)
        with pooler.unpinned(conn):
            conn.execute(statement.encode())


def unused_indexes(
    conn: psycopg.Connection[Any], *, include_schema_indexes: bool, min_age: timedelta
) -> list[UnusedIndex]:
    """Unused indexes: those spreadedge tune built, and with ``include_schema_indexes`` every one;
    ``old_enough`` when known unused for ``min_age`` at least (``unused_since``: the later of the
    statistics reset and a tune build; unknown counts as old enough)."""
    with conn.cursor(row_factory=class_row(UnusedIndex)) as cur:
        rows = cur.execute(
            "select schema_name, table_name, index_name, index_method, size_bytes, created_by_tune,"
            " index_definition, drop_statement, unused_since,"
            " coalesce(unused_since <= now() - %(min_age)s, true) as old_enough from ops.unused_indexes"
            " where created_by_tune or %(all)s order by schema_name, table_name, index_name",
            {"all": include_schema_indexes, "min_age": min_age},
        ).fetchall()
    return rows
