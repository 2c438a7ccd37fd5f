"""spreadedge's clients behind a real PgBouncer (1.18) in transaction pooling.

Each client connection is lent one server connection per transaction; with default_pool_size 1
(pgbouncer_helpers) every client of a database shares the same one, as a busy pooler's do.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import psycopg

from api_fixtures import api_login, live_server
from pgbouncer_helpers import admin_url, through
from spreadedge.managers import ManagerConfig, OrderRequest, PersistentOrderManager
from spreadedge.settings import Settings

BUY = OrderRequest("alpha", "binance", "BTCUSDT", "buy", Decimal("1"), Decimal("60000"))
# what a client of the pooler finds in its session: the login role, no actor, no statement_timeout
CLEAN_SESSION = ("spreadedge", None, "0")
SESSION = (
    "select current_user, nullif(current_setting('spreadedge.actor', true), ''),"
    " current_setting('statement_timeout')"
)


def session_of_another_client(url: str) -> tuple[object, ...]:
    with psycopg.connect(url, autocommit=True) as other:
        row = other.execute(SESSION).fetchone()
    assert row is not None
    return tuple(row)


def test_api_leaves_no_role_or_settings_to_other_clients_of_the_pooler(
    bouncer: int, history_db: tuple[str, dict[str, int]], migration_ids: list[str]
) -> None:
    url = through(bouncer, history_db[0])
    with live_server(url, migration_ids) as base:
        assert api_login(base, "alice").status_code == 200
        assert session_of_another_client(url) == CLEAN_SESSION


def test_api_serves_repeated_requests_through_transaction_pooling(
    bouncer: int, history_db: tuple[str, dict[str, int]], migration_ids: list[str]
) -> None:
    # psycopg prepares a statement run 5 times on a connection: the second client connection to
    # prepare its _pg3_0 on the one server connection was refused (42P05), a 500
    with live_server(through(bouncer, history_db[0]), migration_ids) as base:
        token = api_login(base, "alice").json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        statuses = [
            httpx.get(f"{base}/api/v1/historical/orders", headers=headers, timeout=30).status_code
            for _ in range(16)
        ]
    assert statuses == [200] * 16


def test_api_requests_keep_their_actor_on_a_new_server_connection(
    bouncer: int, history_db: tuple[str, dict[str, int]], migration_ids: list[str]
) -> None:
    # the pooler's server connections are closed (RECONNECT; server_lifetime does the same): the
    # next request runs on a new one, which no configure ever set up
    url = through(bouncer, history_db[0])
    with live_server(url, migration_ids) as base:
        assert api_login(base, "alice").status_code == 200
        with psycopg.connect(admin_url(bouncer), autocommit=True) as admin:
            admin.execute("reconnect")
        # the login of a session slides it, and writes a security event as the request's actor
        response = api_login(base, "bob")
        assert response.status_code == 200
        with psycopg.connect(history_db[0], autocommit=True) as direct:
            actor = direct.execute(
                "select actor from audit.security_events where event_type = 'login_succeeded' order by event_id desc limit 1"
            ).fetchone()
        assert actor == ("api",)


def test_managers_fills_are_audited_as_their_own_actor_through_transaction_pooling(
    bouncer: int, seeded_url: str, project_settings: Settings
) -> None:
    url = through(bouncer, seeded_url)

    async def place() -> int:
        desk_a = PersistentOrderManager(
            ManagerConfig(database_url=url, actor="desk-a", settings=project_settings)
        )
        desk_b = PersistentOrderManager(
            ManagerConfig(database_url=url, actor="desk-b", settings=project_settings)
        )
        await desk_a.start()
        await desk_b.start()
        try:
            order = await desk_a.place_order(BUY)
            return order.order_id
        finally:
            await desk_a.close()
            await desk_b.close()

    order_id = asyncio.run(place())
    with psycopg.connect(seeded_url, autocommit=True) as direct:
        actors = direct.execute(
            "select distinct actor from audit.log where table_name = 'trading.orders' and new_row ->> 'order_id' = %s",
            [str(order_id)],
        ).fetchall()
    assert actors == [("desk-a",)]


def test_managers_leave_no_settings_to_other_clients_of_the_pooler(
    bouncer: int, seeded_url: str, project_settings: Settings
) -> None:
    url = through(bouncer, seeded_url)

    async def start_then_look() -> tuple[object, ...]:
        manager = PersistentOrderManager(
            ManagerConfig(database_url=url, actor="desk-a", settings=project_settings)
        )
        await manager.start()
        try:
            await manager.place_order(BUY)
            return await asyncio.to_thread(session_of_another_client, url)
        finally:
            await manager.close()

    assert asyncio.run(start_then_look()) == CLEAN_SESSION
