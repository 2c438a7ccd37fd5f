"""Long-running services across an operator's ``spreadedge migrate``: a function re-created with
other result columns while the services' connections hold it prepared.

psycopg prepares a statement once it ran 5 times on a connection (prepare_threshold); PostgreSQL then
refuses the prepared ``select * from f(...)`` whose f now returns other columns: 0A000, "cached plan
must not change result type". functions/ drops and re-creates a function whose result type changes
(as auth.login, ops.health, monitor.claim_notifications and trading.pnl_summary have), and the
services are not restarted for a migration.

Each test re-creates the function as a migration would, in one transaction: the original renamed
aside and a function of the same name and arguments returning its rows with one column of a wider
type (integer to bigint, text to varchar, bigint to numeric), which the service reads the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import httpx
import psycopg
import pytest

from api_fixtures import api_login, live_server, seed_history
from notify_servers import HttpReceiver, queue, slack_worker
from spreadedge.managers import (
    DatabaseManager,
    ManagerConfig,
    OrderRequest,
    PersistentOrderManager,
    PersistentPositionManager,
)

# more than psycopg's prepare_threshold (5): the statement is prepared on its connection by then
RUNS = 8


def widen(
    conn: psycopg.Connection, signature: str, name: str, result: str, columns: str, arguments: str
) -> None:
    """Re-create ``signature`` (schema.name(types)) as a migration changing its result type would,
    in one transaction: the original moved aside to schema before_migrate (its name kept, which
    its body qualifies its parameters by), and ``name`` returning ``result`` (a ``table (...)``)
    as ``select columns from <original>(arguments)``."""
    function = name.split(".")[1]
    with conn.transaction():
        conn.execute("create schema if not exists before_migrate")
        conn.execute("grant usage on schema before_migrate to public")
        conn.execute(f"alter function {signature} set schema before_migrate")
        conn.execute(
            f"create function {name}({arguments.split('|')[0]}) returns {result} language sql"
            f" as $$ select {columns} from before_migrate.{function}({arguments.split('|')[1]}) $$"
        )
        conn.execute(f"grant execute on function {signature} to public")


# ---------------------------------------------------------------------------------------------------
# The REST API


@pytest.fixture
def api_url(db_url: str, migration_ids: list[str]) -> Iterator[str]:
    """A live API over a fresh clone with the seeded history (users alice, bob, root, nobody)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_history(conn)
    # why one connection: every request then runs on the connection that prepared the statement
    with live_server(db_url, migration_ids, pool_size=1) as base:
        yield base


def widen_login(conn: psycopg.Connection) -> None:
    # auth.login's message column text -> varchar: what a migration of its result type does
    widen(
        conn,
        "auth.login(text, text, text, inet, text)",
        "auth.login",
        "table (success boolean, session_token text, user_id bigint, expires_at timestamptz, message varchar)",
        "l.success, l.session_token, l.user_id, l.expires_at, l.message::varchar",
        "username text, password text, totp_code text default null, ip_address inet default null,"
        " user_agent text default null"
        "|username, password, totp_code, ip_address, user_agent) l(success, session_token, user_id, expires_at, message",
    )


def test_api_login_goes_on_working_after_auth_login_changes_its_result_columns(
    db_url: str, api_url: str
) -> None:
    for _ in range(RUNS):
        assert api_login(api_url, "alice").status_code == 200
    with psycopg.connect(db_url, autocommit=True) as conn:
        widen_login(conn)
    statuses = [api_login(api_url, "alice").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]


def test_api_health_stays_healthy_after_ops_health_changes_its_result_columns(
    db_url: str, api_url: str
) -> None:
    for _ in range(RUNS):
        assert httpx.get(f"{api_url}/api/v1/historical/health", timeout=30).status_code == 200
    with psycopg.connect(db_url, autocommit=True) as conn:
        widen(
            conn,
            "ops.health(text[])",
            "ops.health",
            "table (check_name varchar, ok boolean, detail varchar)",
            "h.check_name::varchar, h.ok, h.detail::varchar",
            "expected_migrations text[]|expected_migrations) h(check_name, ok, detail",
        )
    answers = [httpx.get(f"{api_url}/api/v1/historical/health", timeout=30) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text


def test_api_history_reads_go_on_after_their_function_is_dropped_and_created_again(
    db_url: str, api_url: str
) -> None:
    # a history function re-created with the same result type (json): a new function, same name
    token = api_login(api_url, "alice").json()["token"]

    def orders() -> httpx.Response:
        return httpx.get(
            f"{api_url}/api/v1/historical/orders",
            params={"symbol": "BTCUSDT"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    before = [orders() for _ in range(RUNS)][-1]
    assert before.status_code == 200
    with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
        [(definition, signature)] = conn.execute(
            "select pg_get_functiondef(p.oid), p.oid::regprocedure::text from pg_proc p"
            " where p.oid = 'trading.order_history_page'::regproc"
        ).fetchall()
        conn.execute(f"drop function {signature}")
        conn.execute(definition)
    after = orders()
    assert (after.status_code, after.json()) == (200, before.json())


# ---------------------------------------------------------------------------------------------------
# The notify worker


def widen_claim(conn: psycopg.Connection) -> None:
    # claim_notifications' attempts integer -> bigint
    widen(
        conn,
        "monitor.claim_notifications(text, text[], integer)",
        "monitor.claim_notifications",
        "table (notification_id bigint, channel monitor.notification_channel, subject text, payload jsonb,"
        " attempts bigint, delivered_to text[], undeliverable_to text[], delivery_id uuid)",
        "c.notification_id, c.channel, c.subject, c.payload, c.attempts::bigint, c.delivered_to,"
        " c.undeliverable_to, c.delivery_id",
        "worker text, channels text[], batch_size integer default 10"
        "|worker, channels, batch_size) c(notification_id, channel, subject, payload, attempts,"
        " delivered_to, undeliverable_to, delivery_id",
    )


def test_the_notify_worker_delivers_after_claim_notifications_changes_its_result_columns(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    with slack_worker(seeded_url, http_receiver) as worker:
        for _ in range(RUNS):  # claims that find nothing prepare the claim all the same
            assert worker.run_once() == 0
        widen_claim(seeded)
        queue(seeded, "slack")
        assert worker.run_once() == 1
    rows = seeded.execute("select status::text, attempts from monitor.notifications").fetchall()
    assert rows == [("delivered", 1)]
    assert len(http_receiver.requests) == 1


# ---------------------------------------------------------------------------------------------------
# The async managers


def widen_pnl_summary(conn: psycopg.Connection) -> None:
    [(result,)] = conn.execute(
        "select pg_get_function_result('trading.pnl_summary(text, timestamptz, timestamptz, text)'::regprocedure)"
    ).fetchall()
    # trades bigint -> numeric: the manager's PnlRow takes it as it took the bigint
    names = [part.strip().split()[0] for part in result.removeprefix("TABLE(").removesuffix(")").split(",")]
    columns = ", ".join("s.trades::numeric" if n == "trades" else f"s.{n}" for n in names)
    widen(
        conn,
        "trading.pnl_summary(text, timestamptz, timestamptz, text)",
        "trading.pnl_summary",
        result.replace("trades bigint", "trades numeric"),
        columns,
        "strategy text default null, since timestamptz default null, until timestamptz default null,"
        " group_by text default 'strategy'"
        f"|strategy, since, until, group_by) s({', '.join(names)}",
    )


def test_a_manager_read_answers_after_its_function_changes_its_result_columns(
    seeded: psycopg.Connection, config: ManagerConfig
) -> None:
    async def scenario() -> tuple[list[object], list[object]]:
        one = replace_pool_size(config)
        async with PersistentPositionManager(one) as manager:
            before = [await manager.pnl_summary() for _ in range(RUNS)][-1]
            widen_pnl_summary(seeded)
            return before, await manager.pnl_summary()

    before, after = asyncio.run(scenario())
    assert after == before


def test_the_managers_health_check_stays_healthy_after_ops_health_changes_its_result_columns(
    seeded: psycopg.Connection, config: ManagerConfig
) -> None:
    async def scenario() -> tuple[bool, dict[str, tuple[bool, str]]]:
        async with DatabaseManager(replace_pool_size(config)) as manager:
            for _ in range(RUNS):
                assert (await manager.health_check()).healthy
            widen(
                seeded,
                "ops.health(text[])",
                "ops.health",
                "table (check_name varchar, ok boolean, detail varchar)",
                "h.check_name::varchar, h.ok, h.detail::varchar",
                "expected_migrations text[]|expected_migrations) h(check_name, ok, detail",
            )
            report = await manager.health_check()
            return report.healthy, report.checks

    healthy, checks = asyncio.run(scenario())
    assert healthy, checks


def replace_pool_size(config: ManagerConfig) -> ManagerConfig:
    """``config`` with one pooled connection: every call runs on the connection that prepared it."""
    return replace(config, min_connections=1, max_connections=1)


def test_manager_reads_go_on_when_a_migration_adds_a_column_to_the_view_they_read(
    seeded: psycopg.Connection, config: ManagerConfig
) -> None:
    # a later migration adds a column at the end of trading.order_history, which every order the
    # managers return is read from, before this code knows it
    definition = seeded.execute("select pg_get_viewdef('trading.order_history'::regclass)").fetchone()[0]
    seeded.execute(
        f"create or replace view trading.order_history as select v.*, 1 as added_later from ({definition.rstrip(';')}) v"
    )
    seeded.commit()

    async def scenario() -> tuple[str, int]:
        async with PersistentOrderManager(config) as manager:
            order = await manager.place_order(
                OrderRequest(
                    strategy="alpha",
                    exchange="binance",
                    symbol="BTCUSDT",
                    side="buy",
                    quantity=Decimal("0.5"),
                    price=Decimal("60000"),
                    client_order_id="later-column-1",
                )
            )
            return order.client_order_id, len(await manager.get_active_orders())

    assert asyncio.run(scenario()) == ("later-column-1", 1)  # was TypeError: unexpected keyword 'added_later'
