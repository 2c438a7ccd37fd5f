"""Applied migrations are frozen: the checksum ledger behind ``spreadedge migrate``.

The sha256 of each rendered migration is recorded in ``public._spreadedge_migration_checksum``
by a statement appended to the migration itself, so the row commits or rolls back together with
the migration's DDL: a migration is applied exactly when its row exists. Before anything is
applied, every applied migration is rendered again and compared with its row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from spreadedge.sqlfiles import MigrationError, split_statements

CHECKSUM_SCHEMA, CHECKSUM_NAME = "public", "_spreadedge_migration_checksum"
CHECKSUM_TABLE = sql.Identifier(CHECKSUM_SCHEMA, CHECKSUM_NAME)
# Tables migrate keeps for itself (this ledger and yoyo's own): not part of the schema, so a
# comparison of a migrated database with one built from schema/ leaves them out.
BOOKKEEPING_TABLES = (
    f"{CHECKSUM_SCHEMA}.{CHECKSUM_NAME}",
    "public._yoyo_migration",
    "public._yoyo_log",
    "public._yoyo_version",
    "public.yoyo_lock",
)


@dataclass(frozen=True)
class RenderedMigration:
    id: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class AppliedMigration:
    id: str
    sha256: str
    applied_at: datetime


def ensure_table(conn: psycopg.Connection[Any]) -> None:
    """Create the ledger if this database has none yet."""
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "create table if not exists {} ("
                " migration_id text primary key,"
                " sha256 text not null,"
                " applied_at timestamptz not null default now())"
            ).format(CHECKSUM_TABLE)
        )
        conn.execute(
            sql.SQL("comment on table {} is {}").format(
                CHECKSUM_TABLE,
                sql.Literal(
                    "spreadedge migrate bookkeeping: sha256 of each applied migration's rendered SQL, "
                    "written in the migration's own transaction; applied migrations are frozen"
                ),
            )
        )


def applied_migrations(conn: psycopg.Connection[Any]) -> dict[str, AppliedMigration]:
    """The applied migrations by id; none when the ledger does not exist (nothing is created)."""
    exists = conn.execute(
        "select exists (select from pg_tables where schemaname = %s and tablename = %s)",
        [CHECKSUM_SCHEMA, CHECKSUM_NAME],
    ).fetchone()
    if not exists or not exists[0]:
        return {}
    query = sql.SQL("select migration_id, sha256, applied_at from {} order by migration_id")
    rows = conn.execute(query.format(CHECKSUM_TABLE)).fetchall()
    return {row[0]: AppliedMigration(*row) for row in rows}


def record_statement(conn: psycopg.Connection[Any], migration: RenderedMigration) -> str:
    """The SQL appended to a rendered migration so that it records its own checksum."""
    insert = sql.SQL("insert into {} (migration_id, sha256) values ({}, {});\n").format(
        CHECKSUM_TABLE, sql.Literal(migration.id), sql.Literal(migration.sha256)
    )
    statements = split_statements(migration.sql)
    # A last statement without its semicolon would swallow the insert into itself.
    separator = ";" if statements and not statements[-1].text.endswith(";") else ""
    return (
        f"\n{separator}\n-- spreadedge migrate: the checksum of this migration, in its own transaction\n"
        + insert.as_string(conn)
    )


def _source(migrations_dir: Path, migration_id: str) -> str:
    template = migrations_dir / f"{migration_id}.sql.j2"
    return f"migrations/{template.name if template.exists() else migration_id + '.sql'}"


def refuse_changed(
    migrations_dir: Path, migrations: list[RenderedMigration], applied: dict[str, AppliedMigration]
) -> None:
    """Refuse when an applied migration renders differently now, or its file is gone."""
    current = {migration.id: migration for migration in migrations}
    problems = []
    for migration_id, row in applied.items():
        if migration_id not in current:
            problems.append(
                f"migration {migration_id} was applied but migrations/{migration_id}.sql.j2 is gone: "
                "applied migrations are frozen, restore the file (a change belongs in a new migration)"
            )
        elif current[migration_id].sha256 != row.sha256:
            problems.append(
                f"migration {migration_id} was applied but now renders differently "
                f"(sha256 {row.sha256[:12]} applied, {current[migration_id].sha256[:12]} now): "
                "applied migrations are frozen, so the change belongs in a new migration; "
                f"restore {_source(migrations_dir, migration_id)} and the [render] settings it uses"
            )
    if problems:
        raise MigrationError("\n".join(problems))


def out_of_order(pending_ids: Iterable[str], applied: dict[str, AppliedMigration]) -> list[str]:
    """The pending migration ids that sort before the last applied one (migrate refuses them)."""
    last = max(applied, default=None)
    return sorted(i for i in pending_ids if i not in applied and last is not None and i < last)


def refuse_out_of_order(migrations: list[RenderedMigration], applied: dict[str, AppliedMigration]) -> None:
    """Refuse a pending migration that sorts before an applied one: migrations only append."""
    early = out_of_order((migration.id for migration in migrations), applied)
    if early:
        last = max(applied)
        raise MigrationError(
            f"migration {early[0]} is pending but sorts before {last}, which is applied: migrations "
            f"are append-only, rename it to sort after {last}"
        )
