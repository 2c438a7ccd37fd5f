"""The audit log and the security events are scoped: a session scoped to a user reads them only
with audit:read (migration 0044)."""

from __future__ import annotations

import psycopg

from auth_helpers import acting_as, login, make_user
from trading_helpers import place

AUDITED_ORDERS = "select count(*) from audit.log where table_name = 'trading.orders'"
BOBS_LOGINS = "select count(*) from audit.security_events where username = 'bob'"


def bobs_order_and_login(conn: psycopg.Connection) -> None:
    place(conn, "buy", "0.5", "60000", strategy="bob-arb", client_order_id="B-SECRET-1")
    assert login(conn, "bob")["success"] is True


def test_an_auditor_role_session_scoped_to_a_trader_reads_no_audit_rows(desks, auth_db):
    # it read bob's order images (his client order id, his prices) while audit.history refused it
    bobs_order_and_login(auth_db)
    with acting_as(auth_db, "spreadedge_auditor", desks["alice"]):
        assert auth_db.execute(AUDITED_ORDERS).fetchone() == (0,)


def test_an_auditor_role_session_scoped_to_a_trader_reads_no_security_events(desks, auth_db):
    # it read every user's logins, addresses and user agents
    bobs_order_and_login(auth_db)
    with acting_as(auth_db, "spreadedge_auditor", desks["alice"]):
        assert auth_db.execute(BOBS_LOGINS).fetchone() == (0,)


def test_an_auditor_role_session_scoped_to_an_unknown_user_reads_no_audit_rows(desks, auth_db):
    bobs_order_and_login(auth_db)
    with acting_as(auth_db, "spreadedge_auditor", 999999):
        assert auth_db.execute(AUDITED_ORDERS).fetchone() == (0,)


def test_a_session_scoped_to_a_user_with_audit_read_reads_every_audit_row(desks, auth_db):
    bobs_order_and_login(auth_db)
    carol = make_user(auth_db, "carol", "auditor")
    expected = auth_db.execute(AUDITED_ORDERS).fetchone(), auth_db.execute(BOBS_LOGINS).fetchone()
    with acting_as(auth_db, "spreadedge_auditor", carol):
        seen = auth_db.execute(AUDITED_ORDERS).fetchone(), auth_db.execute(BOBS_LOGINS).fetchone()
    assert seen == expected and (0,) not in expected


def test_an_unscoped_auditor_role_session_reads_every_audit_row(desks, auth_db):
    bobs_order_and_login(auth_db)
    expected = auth_db.execute(AUDITED_ORDERS).fetchone(), auth_db.execute(BOBS_LOGINS).fetchone()
    with acting_as(auth_db, "spreadedge_auditor"):
        seen = auth_db.execute(AUDITED_ORDERS).fetchone(), auth_db.execute(BOBS_LOGINS).fetchone()
    assert seen == expected and (0,) not in expected


def test_a_trader_selecting_from_an_audit_log_partition_is_refused(desks, auth_db):
    partition = auth_db.execute(
        "select c.oid::regclass::text from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'audit.log'::regclass order by 1 limit 1"
    ).fetchone()[0]
    with acting_as(auth_db, "spreadedge_auditor"):
        try:
            auth_db.execute(psycopg.sql.SQL("select count(*) from {}").format(psycopg.sql.SQL(partition)))
        except psycopg.errors.InsufficientPrivilege:
            refused = True
        else:
            refused = False
    assert refused
