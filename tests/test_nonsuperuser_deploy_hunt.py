"""spreadedge migrate as a database owner that is not a superuser (a managed service, a DBA's database).

Each test makes a login role without superuser or CREATEROLE that owns a fresh database of the
session cluster, as a DBA hands one out; the cluster's superuser plays the DBA. The database and
the role are dropped after the test.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from spreadedge.cluster import Cluster
from spreadedge.migrate import MigrationError, migrate
from spreadedge.settings import Settings

_names = itertools.count(1)


@dataclass(frozen=True)
class OwnedDatabase:
    role: str
    database: str
    owner_url: str  # as the owner
    superuser_url: str  # as the cluster's superuser, the DBA


@pytest.fixture
def owned(pg_cluster: Cluster) -> Iterator[OwnedDatabase]:
    """A fresh database owned by a role that is neither superuser nor CREATEROLE."""
    name = f"nosuper_{next(_names)}"
    admin = pg_cluster.conninfo("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(name))
        )
    try:
        yield OwnedDatabase(
            role=name,
            database=name,
            owner_url=make_conninfo(pg_cluster.conninfo(name), user=name),
            superuser_url=pg_cluster.conninfo(name),
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("revoke set on parameter session_replication_role from {}").format(
                    sql.Identifier(name)
                )
            )
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def _relations_and_schemas(url: str) -> list[tuple[str, str]]:
    """What the migrations or migrate's bookkeeping would have made: schemas and relations outside
    the system's and the extensions' own."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select 'schema', nspname from pg_namespace "
            "where nspname not like 'pg\\_%' and nspname not in ('information_schema', 'public') "
            "union all "
            "select 'relation', c.oid::regclass::text from pg_class c "
            "where c.relnamespace = 'public'::regnamespace order by 1, 2"
        ).fetchall()


def _refusal(url: str, settings: Settings) -> str:
    with pytest.raises(MigrationError) as caught:
        migrate(url, settings, echo=lambda line: None)
    return str(caught.value)


# bug: migrate as the owner of a database with none of the extensions pre-created failed in
# migration 0001 with "permission denied to create extension pg_stat_statements" and a hint to be
# superuser, after creating its ledger and yoyo's four tables; with each thing fixed in turn it
# failed on the next (partman's schema, cron.database_name, CREATEROLE in 0002, then with every
# migration committed functions/ failed on session_replication_role and log_parameter_max_length)
def test_migrate_as_a_database_owner_lists_every_missing_privilege_with_its_statement_before_changing_anything(
    owned: OwnedDatabase, project_settings: Settings
) -> None:
    message = _refusal(owned.owner_url, project_settings)

    r, d = owned.role, owned.database
    assert message == (
        f"spreadedge migrate refused, nothing was changed: the role {r} is not a superuser and lacks\n"
        "  - the extension pg_stat_statements (only a superuser may create it)\n"
        "  - the extension hypopg (only a superuser may create it)\n"
        "  - the extension pg_partman (only a superuser may create it)\n"
        "  - USAGE and CREATE on schema partman, with the grant option\n"
        "  - SELECT, INSERT, UPDATE and DELETE on pg_partman's tables, with the grant option\n"
        "  - EXECUTE on pg_partman's functions and procedures\n"
        "  - reading pg_cron's cron.database_name (pg_read_all_settings)\n"
        "  - CREATEROLE (migration 0002 creates the spreadedge roles and comments on them)\n"
        "  - SET on the parameter session_replication_role (ops.repair_default_partitions)\n"
        "  - log_parameter_max_length = 0 on this database (keeps secrets out of the server log)\n"
        "  - log_parameter_max_length_on_error = 0 on this database (keeps secrets out of the server log)\n"
        f"Ask a superuser to run, connected to the database {d}:\n"
        "create extension if not exists pg_stat_statements;\n"
        "create extension if not exists hypopg;\n"
        "create schema if not exists partman;\n"
        "create extension if not exists pg_partman schema partman;\n"
        f"grant usage, create on schema partman to {r} with grant option;\n"
        f"grant select, insert, update, delete on all tables in schema partman to {r} with grant option;\n"
        f"grant execute on all routines in schema partman to {r};\n"
        f"grant pg_read_all_settings to {r};\n"
        f"alter role {r} createrole;\n"
        f"grant set on parameter session_replication_role to {r};\n"
        f"alter database {d} set log_parameter_max_length = 0;\n"
        f"alter database {d} set log_parameter_max_length_on_error = 0;\n"
        'then run spreadedge migrate again (README: "Using your own PostgreSQL server")'
    )
    # pgcrypto is trusted: the owner creates it itself, so it is not asked for, and was not created
    assert _relations_and_schemas(owned.superuser_url) == []


def _run_as_superuser(url: str, message: str) -> None:
    statements = [line for line in message.splitlines() if re.match(r"(create|grant|alter) ", line)]
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


# bug: with everything else in place, functions/ (after all 54 migrations had committed) failed on
# internal.apply_database_settings: ALTER DATABASE ... SET log_parameter_max_length is a
# superuser's, even where a superuser had set it already; and ops.health(text[]), the REST API's,
# failed with "permission denied for schema partman" as spreadedge_owner was never given it
def test_migrate_as_a_database_owner_after_the_named_statements_applies_everything_and_health_runs(
    owned: OwnedDatabase, project_settings: Settings
) -> None:
    _run_as_superuser(owned.superuser_url, _refusal(owned.owner_url, project_settings))

    migrate(owned.owner_url, project_settings, echo=lambda line: None)

    with psycopg.connect(owned.superuser_url, autocommit=True) as conn:
        assert conn.execute("select count(*) from public._spreadedge_migration_checksum").fetchone() == (
            len(list(project_settings.migrations_dir.glob("*.sql.j2"))),
        )
        conn.execute("set role spreadedge_readonly")
        checks = dict(conn.execute("select check_name, ok from ops.health(null)").fetchall())
    assert checks["partitions_ahead"] is True


# bug: a later migrate, CREATEROLE taken back after the first, must not ask for it again; the
# membership in spreadedge_owner that the first migrate gave the owner is what it needs
def test_a_second_migrate_after_createrole_is_taken_back_asks_for_nothing(
    owned: OwnedDatabase, project_settings: Settings
) -> None:
    _run_as_superuser(owned.superuser_url, _refusal(owned.owner_url, project_settings))
    migrate(owned.owner_url, project_settings, echo=lambda line: None)
    with psycopg.connect(owned.superuser_url, autocommit=True) as conn:
        conn.execute(sql.SQL("alter role {} nocreaterole").format(sql.Identifier(owned.role)))

    lines: list[str] = []
    migrate(owned.owner_url, project_settings, echo=lines.append)

    assert "up to date" in lines
