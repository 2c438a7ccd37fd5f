"""Operations as a database owner that is not a superuser (a managed service, a DBA's database).

The module's database is owned by a login role without superuser or CREATEROLE and migrated by it,
as the README says (a superuser ran the statements migrate asked for); the cluster's superuser
plays the DBA. The databases and the role are dropped at the end of the module.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from conftest import free_port, new_home
from db_fixtures import _seed
from ops_helpers import PROJECT, cli
from spreadedge.cluster import Cluster
from spreadedge.migrate import MigrationError, migrate
from spreadedge.ops import pgbackrest
from spreadedge.settings import Settings, load_settings

ROLE = "nosuper_ops"


@dataclass(frozen=True)
class Owned:
    owner_url: str  # the module's database, as its owner
    superuser_url: str  # the same, as the cluster's superuser (the DBA)
    cluster: Cluster

    def owner_in(self, database: str) -> str:
        return make_conninfo(self.owner_url, dbname=database)

    def superuser_in(self, database: str) -> str:
        return make_conninfo(self.superuser_url, dbname=database)


def _admin(cluster: Cluster, *statements: sql.Composable) -> None:
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture(scope="module")
def owned(pg_cluster: Cluster, project_settings: Settings) -> Iterator[Owned]:
    """The module's database, migrated by its owner after a superuser ran what migrate asked for."""
    role = sql.Identifier(ROLE)
    _admin(pg_cluster, sql.SQL("create role {} login").format(role))
    _admin(pg_cluster, sql.SQL("create database {} owner {}").format(role, role))
    owned = Owned(
        owner_url=make_conninfo(pg_cluster.conninfo(ROLE), user=ROLE),
        superuser_url=pg_cluster.conninfo(ROLE),
        cluster=pg_cluster,
    )
    try:
        with pytest.raises(MigrationError) as refusal:
            migrate(owned.owner_url, project_settings, echo=lambda line: None)
        statements = [s for s in str(refusal.value).splitlines() if re.match(r"(create|grant|alter) ", s)]
        with psycopg.connect(owned.superuser_url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())
        migrate(owned.owner_url, project_settings, echo=lambda line: None)
        _admin(pg_cluster, sql.SQL("alter role {} nocreaterole").format(role))
        yield owned
    finally:
        with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
            databases = conn.execute(
                "select datname from pg_database where datname like %s", [f"{ROLE}%"]
            ).fetchall()
            for (database,) in databases:
                conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(database)))
            conn.execute(sql.SQL("revoke set on parameter session_replication_role from {}").format(role))
            conn.execute(sql.SQL("drop role {}").format(role))


@pytest.fixture(scope="module")
def dumps(owned: Owned, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A schema-only and a data-only dump of the module's database, seeded and taken by its owner."""
    with psycopg.connect(owned.owner_url) as conn:
        _seed(conn)
    out = tmp_path_factory.mktemp("dumps")
    taken = {}
    for mode in ("schema", "data"):
        result = cli("backup", "logical", f"--{mode}-only", "--out", str(out), database_url=owned.owner_url)
        assert result.exit_code == 0, result.output
        (taken[mode],) = out.glob(f"*-{mode}-*")
    return taken


def _exists(owned: Owned, database: str) -> bool:
    with psycopg.connect(owned.superuser_url) as conn:
        return conn.execute("select 1 from pg_database where datname = %s", [database]).fetchone() is not None


# bug: spreadedge serve as the database owner started, then logged "permission denied to set role
# spreadedge_app" once a second and answered every request 503 (the database "unavailable"),
# health included: every pooled connection runs SET ROLE spreadedge_app, which needs membership
def test_serve_as_a_database_owner_not_in_spreadedge_app_is_refused_naming_the_grant(owned: Owned) -> None:
    command = [str(Path(sys.executable).parent / "spreadedge"), "serve", "--port", str(free_port())]
    env = {**os.environ, "SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": owned.owner_url}

    # the old code served (for ever): the timeout makes that a failure, not a hang
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: spreadedge serve refused: the role {ROLE} may not act as spreadedge_app, which every "
        "request of the API runs as (SET ROLE spreadedge_app, so that row-level security applies)\n"
        "Serve with a login role that is a member of spreadedge_app, or ask a superuser (or a role "
        f"with CREATEROLE) to run: grant spreadedge_app to {ROLE};\n"
        '(README: "As a database owner that is not a superuser")\n'
    )


# bug: a full dump's restore as the owner failed on CREATE DATABASE ("permission denied to create
# database") with a hint to connect as the database owner, which it was; into a database a
# superuser made for it, pg_restore failed on "must be member of role ..." (pg_partman's schema)
def test_restore_logical_of_a_schema_dump_as_a_database_owner_is_refused_before_creating_the_database(
    owned: Owned, dumps: dict[str, Path]
) -> None:
    target = f"{ROLE}_full"

    result = cli(
        "restore", "logical", str(dumps["schema"]), "--to-database", target, database_url=owned.owner_url
    )

    assert result.exit_code == 1
    assert result.output == (
        f"Error: spreadedge restore logical refused, nothing was changed: the role {ROLE} is not a "
        f"superuser, and {dumps['schema'].name} holds the schema (a full or --schema-only dump): "
        "restoring it creates the extensions pg_stat_statements, hypopg and pg_partman, the schema "
        "partman and objects owned by other roles, which only a superuser may\n"
        "restore it with DATABASE_URL naming a superuser (the objects keep their owners)\n"
    )
    assert not _exists(owned, target)


# bug: a data-only restore as the owner failed on pg_restore's ALTER TABLE ... DISABLE TRIGGER ALL
# ("permission denied: RI_ConstraintTrigger_... is a system trigger"), which only a superuser may
def test_restore_logical_of_a_data_dump_as_a_database_owner_restores_every_row_and_fires_no_trigger(
    owned: Owned, dumps: dict[str, Path]
) -> None:
    target = f"{ROLE}_data"
    # a superuser restores the schema (as the README says); the owner then restores the data
    schema = cli(
        "restore", "logical", str(dumps["schema"]), "--to-database", target, database_url=owned.superuser_url
    )
    assert schema.exit_code == 0, schema.output

    result = cli(
        "restore", "logical", str(dumps["data"]), "--to-database", target, database_url=owned.owner_url
    )

    assert result.exit_code == 0, result.output
    assert result.output.endswith(f"restored {dumps['data']} into {target}\n")
    # the rows the dump holds, and no audit row written by their inserts (no trigger fired: the
    # restored audit log is the dump's, which ends before the dumps' own ops.backup_runs rows)
    counts = (
        "select (select count(*) from ref.instruments), (select count(*) from trading.strategies),"
        " (select count(*) from audit.log where table_name in ('ref.instruments', 'trading.strategies'))"
    )
    with (
        psycopg.connect(owned.superuser_in(target)) as restored,
        psycopg.connect(owned.superuser_url) as source,
    ):
        assert restored.execute(counts).fetchone() == source.execute(counts).fetchone() == (4, 2, 6)


# the grant the data-only restore needs instead of a superuser's DISABLE TRIGGER, named up front
def test_restore_logical_of_a_data_dump_without_set_on_session_replication_role_is_refused_naming_the_grant(
    owned: Owned, dumps: dict[str, Path]
) -> None:
    target = f"{ROLE}_noset"
    schema = cli(
        "restore", "logical", str(dumps["schema"]), "--to-database", target, database_url=owned.superuser_url
    )
    assert schema.exit_code == 0, schema.output
    revoke = sql.SQL("revoke set on parameter session_replication_role from {}").format(sql.Identifier(ROLE))
    grant = sql.SQL("grant set on parameter session_replication_role to {}").format(sql.Identifier(ROLE))
    _admin(owned.cluster, revoke)
    try:
        result = cli(
            "restore", "logical", str(dumps["data"]), "--to-database", target, database_url=owned.owner_url
        )
    finally:
        _admin(owned.cluster, grant)

    assert result.exit_code == 1
    assert result.output == (
        f"Error: spreadedge restore logical refused, nothing was changed: the role {ROLE} is not a "
        "superuser and lacks\n"
        "  - SET on the parameter session_replication_role (a data-only restore fires no trigger; "
        "disabling them is a superuser's)\n"
        "Ask a superuser to run:\n"
        f"grant set on parameter session_replication_role to {ROLE};\n"
    )
    with psycopg.connect(owned.superuser_in(target)) as restored:
        assert restored.execute("select count(*) from ref.instruments").fetchone() == (0,)


# bug: "permission denied to create database", with a hint to connect as the database owner
def test_restore_logical_into_a_missing_database_without_createdb_is_refused_naming_the_statement(
    owned: Owned, dumps: dict[str, Path]
) -> None:
    target = f"{ROLE}_missing"

    result = cli(
        "restore", "logical", str(dumps["data"]), "--to-database", target, database_url=owned.owner_url
    )

    assert result.exit_code == 1
    assert result.output == (
        f"Error: spreadedge restore logical refused, nothing was changed: the role {ROLE} is not a "
        "superuser and lacks\n"
        f"  - CREATEDB (the database {target} does not exist)\n"
        "Ask a superuser to run:\n"
        f"create database {target} owner {ROLE};\n"
    )
    assert not _exists(owned, target)


# bug: backup init as the owner created the stanza in the repository, then failed on ALTER SYSTEM
# SET archive_mode ("permission denied to set parameter") with a hint to connect as the owner
def test_backup_init_as_a_database_owner_is_refused_before_writing_anything(owned: Owned) -> None:
    home = new_home()
    home.mkdir(mode=0o755)  # one the server's user reaches: pgBackRest's files go under it
    env = {"SPREADEDGE_HOME": str(home)}
    work_dir = pgbackrest.repository(load_settings(project_dir=PROJECT, env=env)).work_dir
    assert work_dir == home / "backup"
    try:
        result = cli("backup", "init", database_url=owned.owner_url, env=env)

        assert result.exit_code == 1
        assert result.output.startswith(
            f"Error: spreadedge backup init refused, nothing was changed: the role {ROLE} is not a "
            "superuser, and physical backups need one: init sets archive_mode and archive_command "
            "(ALTER SYSTEM)"
        )
        assert not work_dir.exists()
        with psycopg.connect(owned.superuser_url) as conn:
            assert conn.execute("show archive_mode").fetchone() == ("off",)
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)


# bug: as the owner without pg_read_all_stats, pg_stat_statements hides every other role's
# statements (the applications', the API's), and tune report said "no advice" as if it had examined
# them
def test_tune_report_as_a_database_owner_says_which_statements_it_could_not_examine_and_the_grant(
    owned: Owned,
) -> None:
    with psycopg.connect(owned.superuser_url) as other:  # another role's statement in this database
        other.execute("select count(*) from ref.instruments where symbol = 'nosuper-tune'")

    result = cli("tune", "report", database_url=owned.owner_url)

    assert result.exit_code == 0, result.output
    note = re.fullmatch(
        r"note: (\d+) statements of other roles in this database were not examined: "
        r"pg_stat_statements shows their text only to pg_read_all_stats; for advice on them, "
        rf"ask a superuser to run: grant pg_read_all_stats to {ROLE};\n",
        result.stderr,
    )
    assert note is not None, result.stderr
    assert int(note.group(1)) >= 1
