"""Privileges under attack (issue 8, item 5): every database role tries what it must not do.

The policy is written down below; the forbidden operations are computed from the catalog (every
table, view, sequence and function of the project schemas), so a new object is covered without
editing this file. Each attempt really runs, as a login role that is a member of the group (not
SET ROLE), in one connection with a savepoint per attempt, and must fail with 42501
(insufficient_privilege).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from conftest import free_port
from db_fixtures import janitor
from reliability import Tally
from spreadedge.cluster import Cluster

pytestmark = pytest.mark.reliability

PROJECT_SCHEMAS = ["ref", "trading", "market", "auth", "monitor", "audit", "ops", "internal"]
# "nobody" is a login role in no group: what PUBLIC may do, it may do
ROLES = ["spreadedge_app", "spreadedge_engine", "spreadedge_readonly", "spreadedge_auditor", "nobody"]

# --- the policy --------------------------------------------------------------------------------------
# 1. No role but the owner writes any table directly (INSERT, UPDATE, DELETE, TRUNCATE), nor draws
#    from any sequence: every write goes through a security definer function.
# 2. No role reads a secret column: password hashes, TOTP secrets, session token hashes, API key
#    ciphertext and fingerprints, master key verifiers.
# 3. Only the auditor reads audit.log and audit.security_events.
# 4. Only the engine executes auth.reveal_api_key.
# 5. readonly and auditor execute no function that writes (any volatile project function but the
#    read helpers listed here), and no role executes an internal.* function other than the read
#    helpers that row-level security, the views and the history pages call as the caller.
# 6. A login role in no group (PUBLIC) executes no project function and reads no project relation.
SECRET_COLUMNS = {
    "auth.users": ["password_hash", "totp_secret"],
    "auth.sessions": ["token_hash"],
    "auth.api_keys": ["api_key", "api_secret", "passphrase", "fingerprint"],
    "auth.master_keys": ["verifier"],
}
AUDIT_TABLES = ["audit.log", "audit.security_events"]
INTERNAL_READ_HELPERS = {
    "session_user_id",
    "session_permissions",
    "visible_strategy_ids",
    "require_permission",
    "iso_utc",
    "page_cursor",
    "read_page_cursor",
    "check_page_request",
    "check_time_range",
    "check_enum_value",
    "instrument_ids_matching",
    "strategy_ids_named",
    "order_item",
    "order_page_rows",
    "trade_item",
    "trade_page_rows",
    "snapshot_item",
    "slow_query_ms",  # ops.slow_queries, granted to readonly, calls it as the caller
    "gross_bps",  # market.current_spreads, granted to readonly, calls these two as the caller
    "net_bps_of_legs",
    "max_quote_age",
}
# volatile functions that only read (or only touch the caller's own session settings)
VOLATILE_READS = {"ops.health"}


@dataclass(frozen=True)
class Function:
    oid: int
    schema: str
    name: str
    arg_types: list[tuple[str, str]]
    volatile: bool

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    def call(self) -> sql.Composed:
        """select schema.name((select null::t1), ...): the privilege check comes before the body.

        why the sub-selects: the planner folds a strict function of a constant null to null
        without calling it (or checking the privilege); a sub-select is not a constant."""
        nulls = [sql.SQL("(select null::{})").format(sql.Identifier(nsp, typ)) for nsp, typ in self.arg_types]
        return sql.SQL("select {}({})").format(
            sql.Identifier(self.schema, self.name), sql.SQL(", ").join(nulls)
        )


def forbidden_functions(conn: psycopg.Connection, role: str) -> list[Function]:
    """The project functions ``role`` must not execute, by the policy."""
    rows = conn.execute(
        "select p.oid, n.nspname, p.proname, p.provolatile = 'v',"
        " array(select array[tn.nspname, t.typname] from unnest(p.proargtypes) with ordinality a(oid, i)"
        "       join pg_type t on t.oid = a.oid join pg_namespace tn on tn.oid = t.typnamespace order by a.i)"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = any(%s) and p.prokind = 'f' and p.provariadic = 0"
        " and p.prorettype not in ('trigger'::regtype, 'event_trigger'::regtype)"
        " order by 2, 3, 1",
        [PROJECT_SCHEMAS],
    ).fetchall()
    found = []
    for oid, schema, name, volatile, arg_types in rows:
        function = Function(oid, schema, name, [tuple(t) for t in arg_types], volatile)
        if role == "nobody":
            forbidden = True
        elif schema == "internal":
            forbidden = name not in INTERNAL_READ_HELPERS
        elif function.label == "auth.reveal_api_key":
            forbidden = role != "spreadedge_engine"
        elif role in ("spreadedge_readonly", "spreadedge_auditor"):
            forbidden = volatile and function.label not in VOLATILE_READS
        else:
            forbidden = False
        if forbidden:
            found.append(function)
    return found


def relations(conn: psycopg.Connection, kinds: list[str]) -> list[tuple[str, str]]:
    return conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = any(%s) and c.relkind = any(%s) and not c.relispartition order by 1, 2",
        [PROJECT_SCHEMAS, kinds],
    ).fetchall()


def first_column(conn: psycopg.Connection, schema: str, table: str) -> str:
    return conn.execute(
        "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 and not attisdropped"
        " and attidentity = '' and attgenerated = ''"
        " order by attnum limit 1",
        [f"{schema}.{table}"],
    ).fetchone()[0]


def forbidden_statements(conn: psycopg.Connection, role: str) -> list[tuple[str, sql.Composable]]:
    """(label, statement) for everything ``role`` must not do, by the policy."""
    attempts: list[tuple[str, sql.Composable]] = []
    for schema, table in relations(conn, ["r", "p"]):
        name = sql.Identifier(schema, table)
        column = sql.Identifier(first_column(conn, schema, table))
        attempts += [
            (f"insert {schema}.{table}", sql.SQL("insert into {} default values").format(name)),
            (
                f"update {schema}.{table}",
                sql.SQL("update {} set {} = {} where false").format(name, column, column),
            ),
            (f"delete {schema}.{table}", sql.SQL("delete from {} where false").format(name)),
            (f"truncate {schema}.{table}", sql.SQL("truncate {}").format(name)),
        ]
    for schema, sequence in relations(conn, ["S"]):
        attempts.append(
            (
                f"nextval {schema}.{sequence}",
                sql.SQL("select nextval({})").format(sql.Literal(f"{schema}.{sequence}")),
            )
        )
    for table, columns in SECRET_COLUMNS.items():
        for column in columns:
            statement = sql.SQL("select {} from {} limit 0").format(
                sql.Identifier(column), sql.Identifier(*table.split("."))
            )
            attempts.append((f"read {table}.{column}", statement))
    if role != "spreadedge_auditor":
        for table in AUDIT_TABLES:
            statement = sql.SQL("select 1 from {} limit 0").format(sql.Identifier(*table.split(".")))
            attempts.append((f"read {table}", statement))
    if role == "nobody":
        for schema, relation in relations(conn, ["r", "p", "v", "m"]):
            statement = sql.SQL("select 1 from {} limit 0").format(sql.Identifier(schema, relation))
            attempts.append((f"read {schema}.{relation}", statement))
    for function in forbidden_functions(conn, role):
        attempts.append((f"execute {function.label}", function.call()))
    return attempts


@pytest.fixture(scope="module")
def privileges_db(pg_cluster: Cluster, template_db: str) -> Iterator[str]:
    name = f"privileges_{free_port()}"
    with janitor(pg_cluster, name, template_db):
        yield pg_cluster.url(name)


@pytest.fixture(scope="module")
def logins(privileges_db: str) -> Iterator[dict[str, str]]:
    """A login role per group (and one in no group); roles are cluster-wide, so the names are
    unique to this process and the roles are dropped at the end."""
    suffix = f"{os.getpid()}_{free_port()}"
    names = {role: f"hostile_{role.removeprefix('spreadedge_')}_{suffix}" for role in ROLES}
    with psycopg.connect(privileges_db, autocommit=True) as conn:
        try:
            for role, login in names.items():
                create = sql.SQL("create role {} login").format(sql.Identifier(login))
                if role != "nobody":
                    create = sql.SQL("{} in role {}").format(create, sql.Identifier(role))
                conn.execute(create)
            yield names
        finally:
            for login in names.values():
                conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(login)))


def attempt_all(url: str, login: str, attempts: list[tuple[str, sql.Composable]]) -> list[tuple[str, str]]:
    """Run every attempt as ``login``, each in a savepoint; (label, outcome) of those not refused
    with 42501."""
    allowed = []
    with psycopg.connect(url, user=login) as conn:
        for label, statement in attempts:
            try:
                with conn.transaction():
                    conn.execute(statement)
            except psycopg.Error as exc:
                if exc.sqlstate != "42501":
                    allowed.append((label, exc.sqlstate or type(exc).__name__))
            else:
                allowed.append((label, "succeeded"))
        conn.rollback()
    return allowed


def test_the_policy_covers_every_kind_of_object(privileges_db: str) -> None:
    # why: an empty catalog query would make every privilege test pass without trying anything
    with psycopg.connect(privileges_db) as conn:
        assert len(relations(conn, ["r", "p"])) > 40
        assert len(relations(conn, ["S"])) > 10
        assert len(forbidden_functions(conn, "nobody")) > 150
        assert len(forbidden_functions(conn, "spreadedge_readonly")) > 50


@pytest.mark.parametrize("role", ROLES)
def test_a_role_is_refused_everything_the_policy_forbids(
    privileges_db: str, logins: dict[str, str], tally: Tally, role: str
) -> None:
    with psycopg.connect(privileges_db) as conn:
        attempts = forbidden_statements(conn, role)
    allowed = attempt_all(privileges_db, logins[role], attempts)
    tally.op("privilege attempts", len(attempts))
    tally.errors["42501"] += len(attempts) - len(allowed)
    assert allowed == [], allowed


def test_the_auditor_reads_the_audit_tables(privileges_db: str, logins: dict[str, str]) -> None:
    # the other side of policy 3: the refusals above are not merely a broken connection
    with psycopg.connect(privileges_db, user=logins["spreadedge_auditor"]) as conn:
        for table in AUDIT_TABLES:
            query = sql.SQL("select count(*) from {}").format(sql.Identifier(*table.split(".")))
            assert conn.execute(query).fetchone()[0] >= 0


def test_the_engine_may_execute_reveal_api_key_and_the_app_may_not(privileges_db: str) -> None:
    with psycopg.connect(privileges_db) as conn:
        may = conn.execute(
            "select r, has_function_privilege(r, 'auth.reveal_api_key(bigint, text)', 'execute')"
            " from unnest(array['spreadedge_engine', 'spreadedge_app', 'spreadedge_readonly']) r"
        ).fetchall()
    assert may == [("spreadedge_engine", True), ("spreadedge_app", False), ("spreadedge_readonly", False)]


def granted_views(conn: psycopg.Connection, role: str) -> list[tuple[str, str]]:
    """The project views ``role`` has SELECT on (through its groups too)."""
    return conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = any(%s) and c.relkind in ('v', 'm')"
        " and has_table_privilege(%s, c.oid, 'select') order by 1, 2",
        [PROJECT_SCHEMAS, role],
    ).fetchall()


@pytest.mark.parametrize("role", [role for role in ROLES if role != "nobody"])
def test_every_view_a_role_may_read_reads_for_it(
    privileges_db: str, logins: dict[str, str], role: str
) -> None:
    # why: a view's function calls are checked against its reader's EXECUTE privilege, so a view
    # granted to a role can still fail for it (market.current_spreads did: its bps helpers were
    # executable by no reader, and only a superuser could read it)
    with psycopg.connect(privileges_db) as conn:
        views = granted_views(conn, role)
    assert views, f"{role} may read no view"
    failed = []
    with psycopg.connect(privileges_db, user=logins[role]) as conn:
        for schema, view in views:
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("select * from {} limit 1").format(sql.Identifier(schema, view)))
            except psycopg.Error as exc:
                failed.append((f"{schema}.{view}", exc.sqlstate, exc.diag.message_primary))
    assert failed == []
