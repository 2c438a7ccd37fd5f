"""Side doors past row-level security found by a hunt: privileges on the partitions of row-secured
tables that internal.revoke_partition_privileges (run by every migrate) left in place."""

from __future__ import annotations

import psycopg
import pytest

from auth_helpers import acting_as
from test_auth_hunt import partition_of
from trading_helpers import place


def refusal(caught: pytest.ExceptionInfo) -> tuple[str, str]:
    return caught.value.sqlstate, caught.value.diag.message_primary


def test_a_column_grant_on_an_order_partition_is_taken_back_by_migrate(desks, auth_db):
    # an operator lets dashboards read some columns of one month of orders
    order_id = place(auth_db, "buy", "0.5", "60000", strategy="bob-arb", client_order_id="B-SECRET-1")
    partition = partition_of(auth_db, "trading.orders", "order_id", order_id)
    table = psycopg.sql.Identifier(*partition.split("."))
    auth_db.execute(
        psycopg.sql.SQL(
            "grant select (order_id, client_order_id, price) on {} to spreadedge_readonly"
        ).format(table)
    )
    auth_db.execute("call internal.finish_migrate()")
    query = psycopg.sql.SQL("select client_order_id from {}").format(table)
    with acting_as(auth_db, "spreadedge_app", desks["alice"]), pytest.raises(psycopg.Error) as caught:
        auth_db.execute(query).fetchall()
    assert refusal(caught) == ("42501", f"permission denied for table {partition.split('.')[1]}")


def test_migrate_leaves_no_column_privilege_on_a_row_secured_partition(desks, auth_db):
    order_id = place(auth_db, "buy", "0.5", "60000", strategy="bob-arb")
    partition = partition_of(auth_db, "trading.orders", "order_id", order_id)
    auth_db.execute(
        psycopg.sql.SQL("grant select (price) on {} to spreadedge_readonly, public").format(
            psycopg.sql.Identifier(*partition.split("."))
        )
    )
    auth_db.execute("call internal.finish_migrate()")
    assert auth_db.execute(
        "select count(*) from pg_attribute a, aclexplode(a.attacl) g"
        " where a.attrelid = %s::regclass and g.grantee <> (select relowner from pg_class where oid = a.attrelid)",
        [partition],
    ).fetchone() == (0,)


def test_a_partition_attached_from_another_schema_is_read_only_through_its_parent(desks, auth_db):
    # a month archived to a schema of its own, restored and attached again, with the grant it had
    auth_db.execute("create schema archive")
    auth_db.execute("grant usage on schema archive to spreadedge_readonly")
    auth_db.execute(
        "create table archive.orders_2020_01 (like trading.orders including defaults including constraints)"
    )
    auth_db.execute("grant select on archive.orders_2020_01 to spreadedge_readonly")
    auth_db.execute(
        "alter table trading.orders attach partition archive.orders_2020_01"
        " for values from ('2020-01-01 00:00+00') to ('2020-02-01 00:00+00')"
    )
    auth_db.execute("call internal.finish_migrate()")
    with acting_as(auth_db, "spreadedge_app", desks["alice"]), pytest.raises(psycopg.Error) as caught:
        auth_db.execute("select client_order_id from archive.orders_2020_01").fetchall()
    assert refusal(caught) == ("42501", "permission denied for table orders_2020_01")
