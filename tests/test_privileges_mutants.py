"""Rules of who may run what (functions/99_privileges.sql) and of how health and maintenance name
the sessions holding a lock (functions/59_ops_sessions.sql) that a plausible slip in their SQL (a
grant widened or dropped, a condition lost) broke without any other test noticing: each test here
kills one or more such mutants.

The mutation run (a short one): 26 mutants tried (19 of 99_privileges.sql, 7 of
59_ops_sessions.sql), 17 caught by the tests before this file, 9 survived. One is equivalent:
lock_waits without "l.pid <> pg_backend_pid()" (the session running it is running, never waiting
for a lock). Seven holes are closed here. One is left open for lack of time: the blocking_sessions
detail without " itself waiting for a lock" for a blocker that waits too (it needs a chain of three
sessions). Two privilege survivors are extra grants to the app, which the policy test
(test_reliability_privileges) lets run any non-internal function: the operator's functions
(master key rotation, market data loading, rollups, metric collection, the full health report)
must stay granted to no role. 59_ops_wal_archiving.sql was not mutated: its state comes from the
server's archive_mode and pg_stat_archiver, which a test cannot set without its own server.

Every test runs on a fresh clone of the migrated template (the db fixture)."""

from __future__ import annotations

import time

import psycopg
import pytest

GROUPS = ["spreadedge_app", "spreadedge_engine", "spreadedge_readonly", "spreadedge_auditor"]
# run by operators and pg_cron as the database owner or a superuser (99_privileges.sql): no grant
OPERATOR_FUNCTIONS = [
    "auth.rotate_master_key",
    "market.stage_rows",
    "market.load_staged_quotes",
    "market.load_staged_ticks",
    "market.load_staged_candles",
    "market.rollup_candles",
    "market.compute_indicators",
    "monitor.collect_metrics",
    "monitor.evaluate_alert_rules",
    "ops.health_report",
]


def executable_by(conn: psycopg.Connection, role: str, names: list[str]) -> list[str]:
    """The functions (every overload) of ``names`` that ``role`` may execute, through its groups too."""
    return [
        r[0]
        for r in conn.execute(
            "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname || '.' || p.proname = any(%s)"
            " and has_function_privilege(%s, p.oid, 'execute') order by 1",
            [names, role],
        )
    ]


# -- 99_privileges.sql ----------------------------------------------------------------------------


def test_the_operator_functions_exist(db):
    # why: a renamed function would make the next test pass without checking anything
    found = {
        r[0]
        for r in db.execute(
            "select proname from pg_proc where oid::regprocedure::text like any(%s)",
            [[f"{name}(%" for name in OPERATOR_FUNCTIONS]],
        )
    }
    assert found == {name.split(".")[1] for name in OPERATOR_FUNCTIONS}


@pytest.mark.parametrize("role", GROUPS)
def test_an_operator_function_is_executable_by_no_group_role(db, role):
    # mutants: auth.rotate_master_key, market.rollup_candles, monitor.collect_metrics added to the
    # app's grant; ops.health_report added to readonly's (it is stable, so the policy test, which
    # forbids readonly only volatile functions, let it through)
    assert executable_by(db, role, OPERATOR_FUNCTIONS) == []


def test_readonly_may_execute_the_performance_summary(db):
    # mutant: ops.performance_summary dropped from readonly's grant (the dashboards' summary)
    assert executable_by(db, "spreadedge_readonly", ["ops.performance_summary"]) == [
        "ops.performance_summary()"
    ]


# -- 59_ops_sessions.sql --------------------------------------------------------------------------


def session_line_of(conn: psycopg.Connection, pid: int) -> str:
    return conn.execute(
        "select internal.session_line(a) from pg_stat_activity a where a.pid = %s", [pid]
    ).fetchone()[0]


def test_a_session_with_an_empty_application_name_is_named_unnamed(db):
    # mutant: nullif(application_name, '') dropped; psql and most drivers leave it empty
    db.execute("set application_name = ''")
    pid = db.info.backend_pid
    assert session_line_of(db, pid).startswith(f"pid {pid} ({db.info.user}, application unnamed, active, ")


def test_a_session_holding_a_lock_does_not_name_itself_among_the_lock_holders(db):
    # mutant: lock_holders without "a.pid <> pg_backend_pid()": maintenance asking who holds its
    # table would blame itself
    db.execute("create table public.locked ()")
    with db.transaction():
        db.execute("lock table public.locked in access exclusive mode")
        assert db.execute("select internal.lock_holders('public.locked')").fetchone()[0] is None


def test_a_session_waiting_for_a_lock_is_not_named_among_its_holders(db, db_url):
    # mutant: lock_holders without "l.granted": the session queued behind the lock was named as
    # holding it, and the operator sent to end the wrong one
    db.execute("create table public.locked ()")
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as waiter:
        holder.execute("lock table public.locked in access exclusive mode")
        waiter.pgconn.send_query(b"select 1 from public.locked")  # waits behind the holder
        deadline = time.monotonic() + 30
        while not db.execute(
            "select exists (select from pg_locks where pid = %s and not granted)", [waiter.info.backend_pid]
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the waiter never queued"
        assert db.execute("select internal.lock_holders('public.locked')").fetchone()[0] == session_line_of(
            db, holder.info.backend_pid
        )
        holder.rollback()
        while waiter.pgconn.get_result() is not None:  # the waiter's select, now done
            pass
