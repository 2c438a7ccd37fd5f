"""Security holes found by a hunt: partitions read past row-level security, and session tokens that
cannot be sent to PostgreSQL at all."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from auth_helpers import PASSWORD, acting_as, login, make_user
from spreadedge import errors
from spreadedge.security import SecuritySystem
from test_auth_policy_edges import fastest_refusal
from trading_helpers import call, fill, place

ROW_SECURED_PARTITIONS = """
    select c.oid::regclass::text as partition, a.grantee::regrole::text as grantee, a.privilege_type
    from pg_class c
    join pg_class root on root.oid = pg_partition_root(c.oid)
    cross join lateral aclexplode(c.relacl) a
    where c.relispartition and root.relrowsecurity and a.grantee <> c.relowner
    order by 1, 2, 3
"""


def partition_of(conn: psycopg.Connection, table: str, column: str, key: int) -> str:
    """The name of the partition of `table` holding the row whose `column` is `key`."""
    query = psycopg.sql.SQL("select tableoid::regclass::text from {} where {} = %s").format(
        psycopg.sql.Identifier(*table.split(".")), psycopg.sql.Identifier(column)
    )
    return conn.execute(query, [key]).fetchone()[0]


# ---------------------------------------------------------------------------------------------------
# Row-level security: a partition read by its own name
# ---------------------------------------------------------------------------------------------------


def test_a_trader_selecting_from_an_order_partition_is_refused(desks, auth_db):
    order_id = place(auth_db, "buy", "0.5", "60000", strategy="alice-arb", client_order_id="A-SECRET-1")
    partition = partition_of(auth_db, "trading.orders", "order_id", order_id)
    query = psycopg.sql.SQL("select client_order_id from {}").format(
        psycopg.sql.Identifier(*partition.split("."))
    )
    with acting_as(auth_db, "spreadedge_app", desks["bob"]), pytest.raises(psycopg.Error) as caught:
        auth_db.execute(query).fetchall()
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42501",
        f"permission denied for table {partition.split('.')[1]}",
    )


def test_a_trader_selecting_from_a_trade_partition_is_refused(desks, auth_db):
    order_id = place(auth_db, "buy", "0.5", "60000", strategy="alice-arb")
    trade_id = fill(auth_db, order_id, "0.2", "60000")
    partition = partition_of(auth_db, "trading.trades", "trade_id", trade_id)
    query = psycopg.sql.SQL("select price from {}").format(psycopg.sql.Identifier(*partition.split(".")))
    with acting_as(auth_db, "spreadedge_readonly", desks["bob"]), pytest.raises(psycopg.Error) as caught:
        auth_db.execute(query).fetchall()
    assert caught.value.sqlstate == "42501"


def test_a_trader_still_reads_their_own_orders_through_the_parent(desks, auth_db):
    place(auth_db, "buy", "0.5", "60000", strategy="alice-arb", client_order_id="A-1")
    place(auth_db, "buy", "0.5", "60000", strategy="bob-arb", client_order_id="B-1")
    with acting_as(auth_db, "spreadedge_app", desks["bob"]):
        seen = auth_db.execute("select client_order_id from trading.orders").fetchall()
    assert seen == [("B-1",)]


def test_no_role_but_the_owner_holds_a_privilege_on_a_row_secured_partition(auth_db):
    assert auth_db.execute(ROW_SECURED_PARTITIONS).fetchall() == []


def test_finish_migrate_takes_back_a_grant_on_all_tables_from_the_partitions(auth_db):
    # what schema/ and migrations 0002 and 0003 do, and what an operator might do again
    auth_db.execute("grant select on all tables in schema trading to spreadedge_readonly")
    auth_db.execute("call internal.finish_migrate()")
    assert auth_db.execute(ROW_SECURED_PARTITIONS).fetchall() == []
    assert auth_db.execute(
        "select has_table_privilege('spreadedge_readonly', 'trading.orders', 'select')"
    ).fetchone() == (True,)


# ---------------------------------------------------------------------------------------------------
# SecuritySystem: a token PostgreSQL text cannot hold
# ---------------------------------------------------------------------------------------------------


def test_security_system_validate_session_of_a_token_with_nul_raises_invalid_session(db_url, auth_db):
    security = SecuritySystem(db_url)
    with pytest.raises(errors.SpreadedgeError) as caught:
        asyncio.run(security.validate_session("ab\x00cd"))
    assert (caught.value.sqlstate, caught.value.message) == (
        "28S02",
        "the session is unknown, expired or revoked",
    )


def test_security_system_logout_of_a_token_with_nul_returns_false(db_url, auth_db):
    security = SecuritySystem(db_url)
    assert asyncio.run(security.logout("ab\x00cd")) is False


def test_security_system_logout_of_a_token_with_nul_after_the_real_one_keeps_it_live(db_url, auth_db):
    make_user(auth_db, "alice")
    token = login(auth_db, "alice", PASSWORD)["session_token"]
    security = SecuritySystem(db_url)
    assert asyncio.run(security.logout(token + "\x00")) is False
    assert asyncio.run(security.validate_session(token)).username == "alice"


# ---------------------------------------------------------------------------------------------------
# Timing: an unknown user after the policy's bcrypt cost was lowered
# ---------------------------------------------------------------------------------------------------


def test_an_unknown_user_takes_as_long_as_a_hash_made_before_the_cost_was_lowered(auth_db):
    call(auth_db, "auth.set_security_policy", bcrypt_cost=10)
    make_user(auth_db, "alice")  # hashed at cost 10, and not logged in since
    call(auth_db, "auth.set_security_policy", bcrypt_cost=4)
    known, unknown = fastest_refusal(auth_db, "alice"), fastest_refusal(auth_db, "ghost")
    # before, the unknown user's bcrypt was at the policy's cost 4: 1/64 of alice's cost-10 hash
    assert unknown > known / 2, (known, unknown)
