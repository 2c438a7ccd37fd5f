"""Who did it: the actor, role and transaction the audit log records through each entry point."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import httpx
import psycopg

from api_fixtures import api_login, live_server
from auth_helpers import make_user
from market_helpers import invoke
from spreadedge import db
from spreadedge.managers import ManagerConfig, OrderRequest, PersistentOrderManager
from spreadedge.settings import Settings


def actors(conn: psycopg.Connection, table: str) -> list[tuple[str, str | None]]:
    """(operation, actor) of every audit row of ``table``, in write order."""
    return conn.execute(
        "select operation, actor from audit.log where table_name = %s order by audit_id", [table]
    ).fetchall()


def test_a_session_that_sets_no_actor_records_a_null_actor_and_its_login_role(seeded):
    # as a psql session, a pg_cron job or a migrate: the actor is null, db_role says who
    seeded.execute("select trading.create_strategy(name => 'gamma')")
    assert seeded.execute(
        "select actor, db_role = session_user from audit.log"
        " where table_name = 'trading.strategies' and new_row ->> 'name' = 'gamma'"
    ).fetchall() == [(None, True)]


def test_a_session_level_actor_lasts_for_every_later_transaction_of_the_session(seeded):
    seeded.execute("set spreadedge.actor = 'desk-1'")
    for name in ("gamma", "delta"):
        with seeded.transaction():
            seeded.execute("select trading.create_strategy(name => %s)", [name])
    assert actors(seeded, "trading.strategies")[-2:] == [("INSERT", "desk-1"), ("INSERT", "desk-1")]


def test_a_transaction_local_actor_ends_with_its_transaction(seeded):
    seeded.execute("set spreadedge.actor = 'desk-1'")
    with seeded.transaction():
        seeded.execute("set local spreadedge.actor = 'desk-2'")
        seeded.execute("select trading.create_strategy(name => 'gamma')")
    seeded.execute("select trading.create_strategy(name => 'delta')")
    assert actors(seeded, "trading.strategies")[-2:] == [("INSERT", "desk-2"), ("INSERT", "desk-1")]


def test_set_role_changes_neither_the_recorded_actor_nor_the_database_role(seeded):
    seeded.execute("set spreadedge.actor = 'desk-1'")
    login_role = seeded.execute("select session_user::text").fetchone()[0]
    seeded.execute("set role spreadedge_owner")
    try:
        seeded.execute("select trading.create_strategy(name => 'gamma')")
    finally:
        seeded.execute("reset role")
    assert seeded.execute(
        "select actor, db_role from audit.log where table_name = 'trading.strategies' order by audit_id desc limit 1"
    ).fetchone() == ("desk-1", login_role)


def test_the_actor_of_db_connect_outlives_a_rolled_back_transaction(seeded_url, project_settings: Settings):
    settings = replace(project_settings, database_url=seeded_url)
    with db.connect(settings, actor="desk-1") as conn:
        conn.execute("select trading.create_strategy(name => 'gamma')")
        conn.rollback()
        conn.execute("select trading.create_strategy(name => 'delta')")
        conn.commit()
        assert actors(conn, "trading.strategies")[-1] == ("INSERT", "desk-1")


def test_cli_commands_that_write_record_the_cli_actor(seeded, seeded_url):
    assert invoke(seeded_url, "risk", "kill", "alpha").exit_code == 0
    assert invoke(seeded_url, "risk", "unkill", "alpha").exit_code == 0
    assert actors(seeded, "monitor.risk_limits") == [
        ("INSERT", db.cli_actor()),
        ("UPDATE", db.cli_actor()),
    ]


def test_two_managers_with_other_actors_working_at_once_record_each_its_own(config: ManagerConfig, seeded):
    # each manager's pool carries its own actor; interleaved calls never swap them
    def order(n: int, side: str) -> OrderRequest:
        return OrderRequest(
            strategy="alpha",
            exchange="binance",
            symbol="BTCUSDT",
            side=side,
            quantity=Decimal("0.01"),
            price=Decimal("60000"),
            client_order_id=f"{side}-{n}",
        )

    async def run() -> None:
        async with (
            PersistentOrderManager(replace(config, actor="engine-a", max_connections=2)) as a,
            PersistentOrderManager(replace(config, actor="engine-b", max_connections=2)) as b,
        ):
            await asyncio.gather(
                *(a.place_order(order(n, "buy")) for n in range(8)),
                *(b.place_order(order(n, "sell")) for n in range(8)),
            )

    asyncio.run(run())
    assert seeded.execute(
        "select new_row ->> 'side', array_agg(distinct actor) from audit.log"
        " where table_name = 'trading.orders' and operation = 'INSERT' group by 1 order by 1"
    ).fetchall() == [("buy", ["engine-a"]), ("sell", ["engine-b"])]


def test_audit_history_names_the_actor_of_each_change_also_across_a_key_change(auth_db):
    auth_db.execute("set spreadedge.actor = 'hr-1'")
    user_id = make_user(auth_db, "alice", "trader")
    auth_db.execute("set spreadedge.actor = 'hr-2'")
    auth_db.execute("update auth.user_roles set role_name = 'viewer' where user_id = %s", [user_id])
    assert auth_db.execute(
        "select operation, actor from audit.history('auth.user_roles', %s::jsonb)",
        [f'{{"user_id": {user_id}, "role_name": "viewer"}}'],
    ).fetchall() == [("INSERT", "hr-1"), ("UPDATE", "hr-2")]


def test_api_logins_and_logouts_record_the_api_actor_whatever_the_request_says(
    auth_db, seeded_url, migration_ids
):
    make_user(auth_db, "alice", "trader")
    forged = {"X-Spreadedge-Actor": "mallory", "X-Actor": "mallory"}
    with live_server(seeded_url, migration_ids) as base:
        token = api_login(base, "alice").json()["token"]
        response = httpx.post(
            f"{base}/api/v1/auth/logout",
            params={"actor": "mallory', true) --"},
            headers={"Authorization": f"Bearer {token}", **forged},
            timeout=30,
        )
        assert response.status_code == 204, response.text
    assert auth_db.execute(
        "select event_type::text, actor from audit.security_events"
        " where event_type in ('login_succeeded', 'logout') order by event_id"
    ).fetchall() == [("login_succeeded", "api"), ("logout", "api")]
    # the login's own write (last_login_at) is the API's too
    assert auth_db.execute(
        "select distinct actor from audit.log where table_name = 'auth.users' and operation = 'UPDATE'"
    ).fetchall() == [("api",)]
