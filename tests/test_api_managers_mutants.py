"""Rules of the Python layer applications and dashboards depend on that a plausible slip in it (a
status swapped, a mapping dropped, a bound off by one, a filter or an argument dropped, a counter
never decremented) broke without any other test noticing: each test here kills one or more mutants
of the first mutation run of python/spreadedge/api/ (problems.py, routes.py, database.py,
service_routes.py, app.py) and python/spreadedge/managers.py with errors.py.

The run: 60 mutants (33 of the API, 26 of the managers, and one of functions/73_auth_sessions.sql,
the user's scope set session-wide), each against the test files that cover its code (test_api_auth,
_errors, _history, _cursors, _database, _inputs, _edges, _health, test_ops_api_hunt, test_managers,
_edges, test_api_and_managers_odd_inputs, test_order_amendments, test_decimal_fidelity_hunt).
33 caught by the existing tests (the managers' session-gone SQLSTATEs and maybe_committed of a commit
whose reply was lost by test_managers_restart_hunt), 27 survived: 25 holes, closed by the 23 tests
below, 1 equivalent and 1 left open. The caught include every status of the SQLSTATE table swapped
(403 for 404, 401 for 403, 404 for 403), the class-22 lookup on one character, the page limit's
bounds, a repeated parameter let through, a time's offset dropped, the bearer token's user not set
(and, in the SQL, set session-wide: the next request on the pooled connection kept it), the API role
not set (row-level security bypassed), a connection not returned to the pool on error, a float or a
None passed on to the SQL, the error classes dropped, a cancel reading the order it wrote by the
wrong id, an amendment reading the order before it, price and stop price swapped, the audit actor
and UTC not set on the managers' connections, an order id of 2**63 let through, a NUL let through,
health 500 or 200 for unhealthy.

Holes, each killed by one test below: problems.py's mappings of 55S04 user_disabled (403), 23S03
unknown_strategy (404) and 42501 insufficient_privilege (403) dropped (each a 500), page_size not
named limit, the statement_timeout's 57014 and a full disk (53100) answered as a bare "the database
is unavailable", a 503 without its Retry-After (no API endpoint reaches 55S04, 23S03, 42501 or a
page_size error, so these are asked of from_database_error with the server's own errors); a page of
99 by default; an hour-only offset (+05) not widened to +05:00 (a 422); the API's audit actor not
set; a connection counted as serving after it went back (a pool of one then called busy when the
database stopped); a logout of an ended session without its 28S02; a login's expiry without its Z;
a body of exactly 64 KiB refused as too large (Content-Length and read bounds, two mutants, one
test); the managers' error detail and hint swapped; 25006 raised as DatabaseUnavailable, not
DatabaseReadOnly; a lock_timeout's 55P03 raised raw (LockNotAvailable); a disk-full ERROR read as a
PANIC; get_active_orders and get_open_positions ignoring the strategy; pnl_summary ignoring
group_by; a column added to a view breaking the read (today's views have exactly the dataclasses'
fields); a Decimal of numeric's 16,383 decimals refused in Python; the managers' statement_timeout
a second past the call's deadline (the deadline, not the server, gave the call up). And one caught
only through the order of test_managers.py (get_database_manager keyed by anything but the
configuration): its test here stands alone.

Equivalent: database._connection's putconn moved out of its inner finally (it is still in the
outer one, so every path returns the connection; only a close() that raised would skip it).

Left open: a manager's connection not closed after its call's deadline passed (it survived
test_managers, _edges and test_managers_frozen_server_hunt too); the pool's check of a connection it
hands out gives a connection that stopped answering up at the next call's wait, so the slip costs
that wait rather than a wrong answer, and proving it needs a server frozen mid-call.

Every expected value is worked out by hand in its comment."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import httpx
import psycopg
import psycopg.errors
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from api_fixtures import T0, Api, api_login, live_server
from auth_helpers import make_user
from spreadedge import errors
from spreadedge.api.problems import from_database_error
from spreadedge.cluster import Cluster
from spreadedge.managers import (
    DatabaseFull,
    DatabaseReadOnly,
    DatabaseTimeout,
    ManagerConfig,
    OrderRequest,
    PersistentOrderManager,
    PersistentPositionManager,
    get_database_manager,
)
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from trading_helpers import call, fill, place

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ONE_BTC = OrderRequest("alpha", "binance", "BTCUSDT", "buy", Decimal("0.5"), Decimal("60000"))


def server_error(conn: psycopg.Connection, statement: str, *params: object) -> psycopg.Error:
    """The error the server raises for ``statement`` (run in a transaction rolled back after)."""
    with pytest.raises(psycopg.Error) as raised, conn.transaction():
        conn.execute(statement, list(params))
    return raised.value


def order_ids(api: Api, user: str, **params: object) -> list[int]:
    response = api.get("orders", user, **params)
    assert response.status_code == 200, response.text
    return [item["order_id"] for item in response.json()["items"]]


# -- problem details: the status of each project SQLSTATE ------------------------------------------


def test_a_disabled_user_error_is_a_403_keeping_its_sqlstate(db: psycopg.Connection) -> None:
    user_id = make_user(db, "carol")
    call(db, "auth.disable_user", user_id=user_id)
    error = server_error(
        db, "select internal.verify_password(u, 'whatever') from auth.users u where u.user_id = %s", user_id
    )
    assert error.sqlstate == "55S04"
    problem = from_database_error(error)
    # a 500 "internal error" without the mapping (55 is no mapped class)
    assert (problem.status, problem.sqlstate, problem.detail) == (
        HTTPStatus.FORBIDDEN,
        "55S04",
        f"user {user_id} is disabled",
    )


def test_an_unknown_strategy_error_is_a_404_keeping_its_sqlstate(seeded: psycopg.Connection) -> None:
    error = server_error(
        seeded,
        "select trading.place_order(strategy => 'nope', exchange => 'binance', symbol => 'BTCUSDT',"
        " side => 'buy', quantity => 1, price => 60000)",
    )
    assert error.sqlstate == "23S03"
    problem = from_database_error(error)
    # a 500 without the mapping (class 23 is not mapped as a whole: 23S05 overfill is no 404)
    assert (problem.status, problem.sqlstate) == (HTTPStatus.NOT_FOUND, "23S03")
    assert problem.detail == 'strategy "nope" does not exist'


def test_a_missing_grant_of_the_api_role_is_a_403(db: psycopg.Connection) -> None:
    # PostgreSQL 15 grants no CREATE on schema public: spreadedge_app gets 42501
    error = server_error(db, "set local role spreadedge_app; create table public.pymut_probe ()")
    assert error.sqlstate == "42501"
    problem = from_database_error(error)
    # a 500 "internal error; see the server log" without the mapping (42 is no mapped class)
    assert (problem.status, problem.sqlstate) == (HTTPStatus.FORBIDDEN, "42501")


def test_a_page_size_the_sql_refuses_is_named_limit_as_the_http_parameter(db: psycopg.Connection) -> None:
    error = server_error(db, "select trading.order_history_page(page_size => 0)")
    assert (error.sqlstate[:2], error.diag.column_name) == ("22", "page_size")
    problem = from_database_error(error)
    assert (problem.status, problem.parameter) == (HTTPStatus.BAD_REQUEST, "limit")


def test_a_statement_cancelled_by_the_statement_timeout_is_a_503_saying_so(db: psycopg.Connection) -> None:
    error = server_error(db, "set local statement_timeout = '1ms'; select pg_sleep(1)")
    assert error.sqlstate == "57014"
    problem = from_database_error(error)
    # without its branch, QueryCanceled (an OperationalError) was the bare "the database is unavailable"
    assert (problem.status, problem.sqlstate) == (HTTPStatus.SERVICE_UNAVAILABLE, "57014")
    assert problem.detail == (
        "the database cancelled the request (canceling statement due to statement timeout): retry later"
    )


def test_a_full_disk_is_a_503_saying_so_with_its_sqlstate() -> None:
    problem = from_database_error(psycopg.errors.DiskFull("could not extend file: No space left on device"))
    assert (problem.status, problem.sqlstate) == (HTTPStatus.SERVICE_UNAVAILABLE, "53100")
    assert problem.detail == "the database server's disk is full: retry once space is freed"
    assert problem.response().headers["retry-after"] == "5"


# -- login and logout ---------------------------------------------------------------------------------


def test_a_logins_expiry_is_an_iso_time_in_utc_with_its_z(api: Api) -> None:
    before = datetime.now(UTC)
    body = api_login(api.url, "alice").json()
    assert ISO_UTC.match(body["expires_at"]), body["expires_at"]
    # a session lasts hours, not a negative time: read back as UTC it is after the login
    assert datetime.fromisoformat(body["expires_at"]) > before


def test_a_logout_of_an_ended_session_is_401_with_invalid_session(api: Api) -> None:
    token = api_login(api.url, "bob").json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{api.url}/api/v1/auth/logout", headers=headers).status_code == 204
    again = httpx.post(f"{api.url}/api/v1/auth/logout", headers=headers)
    assert again.status_code == 401
    # the same sqlstate a GET with the ended token gets, which clients switch on
    assert again.json()["sqlstate"] == "28S02"
    assert again.headers["www-authenticate"] == "Bearer"


def test_a_login_through_the_api_is_audited_as_the_api(
    api: Api, history_db: tuple[str, dict[str, int]]
) -> None:
    url, _ids = history_db
    with psycopg.connect(url) as conn:
        actors = conn.execute(
            "select distinct actor from audit.security_events"
            " where event_type = 'login_succeeded' and username = 'root'"
        ).fetchall()
    # the api fixture logged root in through the API (and nothing else did)
    assert actors == [("api",)]


# -- request parameters -------------------------------------------------------------------------------


def test_an_hour_only_offset_is_that_many_hours(api: Api, ids: dict[str, int]) -> None:
    # T0 is 01:00 UTC, so T0 + 60 min (alice's sell a2) is 03:00:00+01: read as +01:00, alice's
    # orders from a2 on (a2 at +60, a3 at +120, a4 at +180 min), newest first; pydantic alone
    # refused the ±hh offset with a 422
    plus_one = (T0 + timedelta(minutes=60)).astimezone(timezone(timedelta(hours=1)))
    hour_only = plus_one.strftime("%Y-%m-%dT%H:%M:%S+01")
    assert order_ids(api, "alice", start_date=hour_only) == [ids["a4"], ids["a3"], ids["a2"]]


def test_a_page_holds_100_orders_by_default(
    seeded: psycopg.Connection, db_url: str, migration_ids: list[str]
) -> None:
    seeded.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
    make_user(seeded, "root", "admin")
    for n in range(101):
        place(seeded, "buy", "0.001", "60000", client_order_id=f"d-{n}")
    with live_server(db_url, migration_ids) as base:
        token = api_login(base, "root").json()["token"]
        page = httpx.get(
            f"{base}/api/v1/historical/orders", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ).json()
    # 101 orders: a first page of 100 and a cursor to the 101st
    assert len(page["items"]) == 100
    assert page["next_cursor"] is not None


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_of_exactly_64_kib_is_read_not_refused_as_too_large(api: Api, chunked: bool) -> None:
    # 65,536 bytes is the bound itself: read, and refused only for its 1,000-character password (422)
    prefix, suffix = b'{"username": "alice", "password": "', b'"}'
    body = prefix + b"x" * (64 * 1024 - len(prefix) - len(suffix)) + suffix
    assert len(body) == 64 * 1024
    content: Any = iter([body[:1000], body[1000:]]) if chunked else body
    response = httpx.post(
        f"{api.url}/api/v1/auth/login", content=content, headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()["parameter"]) == (422, "password")


# -- the managers ---------------------------------------------------------------------------------------


def run_order_manager(config: ManagerConfig, action: Callable[[PersistentOrderManager], Any]) -> Any:
    async def run() -> Any:
        async with PersistentOrderManager(config) as manager:
            return await action(manager)

    return asyncio.run(run())


def test_a_project_error_keeps_its_hint_and_detail_apart(config: ManagerConfig) -> None:
    with pytest.raises(errors.UnknownStrategy) as raised:
        run_order_manager(config, lambda m: m.place_order(OrderRequest("nope", **_rest(ONE_BTC))))
    assert (raised.value.hint, raised.value.detail) == ("Create it with trading.create_strategy.", None)


def _rest(order: OrderRequest) -> dict[str, Any]:
    return {"exchange": order.exchange, "symbol": order.symbol, "side": order.side,
            "quantity": order.quantity, "price": order.price}  # fmt: skip


def test_a_write_to_a_read_only_database_raises_database_read_only(config: ManagerConfig) -> None:
    url = make_conninfo(config.database_url or "", options="-c default_transaction_read_only=on")
    read_only = ManagerConfig(database_url=url, actor="test-manager", settings=config.settings)
    with pytest.raises(DatabaseReadOnly) as raised:
        run_order_manager(read_only, lambda m: m.place_order(ONE_BTC))
    assert (raised.value.sqlstate, raised.value.maybe_committed) == ("25006", False)


def test_a_lock_timeout_raises_database_timeout(config: ManagerConfig, seeded: psycopg.Connection) -> None:
    url = make_conninfo(config.database_url or "", options="-c lock_timeout=100ms")
    impatient = ManagerConfig(database_url=url, actor="test-manager", settings=config.settings)
    with seeded.transaction():
        seeded.execute("lock table trading.orders in access exclusive mode")
        with pytest.raises(DatabaseTimeout) as raised:
            run_order_manager(impatient, lambda m: m.place_order(ONE_BTC))
    assert (raised.value.sqlstate, raised.value.maybe_committed) == ("55P03", False)


def test_a_full_disk_at_a_statement_raises_database_full_saying_nothing_was_committed(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    # a data file that cannot grow fails the statement with an ERROR (not a PANIC): the server runs on
    seeded.execute(
        "create function public.disk_full() returns trigger language plpgsql as $$ begin"
        " raise exception 'could not extend file \"base/1/2\": No space left on device'"
        " using errcode = 'disk_full'; end $$"
    )
    seeded.execute(
        "create trigger disk_full before insert on trading.orders for each row execute function public.disk_full()"
    )
    with pytest.raises(DatabaseFull) as raised:
        run_order_manager(config, lambda m: m.place_order(ONE_BTC))
    assert (raised.value.sqlstate, raised.value.maybe_committed) == ("53100", False)
    # read as a PANIC, it said the server had stopped and had to be started
    assert str(raised.value) == (
        'the database server\'s disk is full: could not extend file "base/1/2": No space left on device;'
        " nothing of the call was committed: retry once space is freed"
    )


def test_get_database_manager_gives_each_configuration_its_own_manager(config: ManagerConfig) -> None:
    other = ManagerConfig(database_url=config.database_url, actor="other", settings=config.settings)
    # keyed by anything but the configuration, the second caller got the first one's manager (its
    # actor, its database)
    assert get_database_manager(other).config is other
    assert get_database_manager(config).config is config


def test_a_pool_of_one_whose_connection_came_back_is_not_called_busy_when_the_database_stops(
    make_cluster: Callable[..., Cluster], project_settings: Settings, migration_ids: list[str]
) -> None:
    cluster = make_cluster()
    cluster.start()
    migrate(cluster.url(), project_settings, echo=lambda line: None)
    with live_server(cluster.url(), migration_ids, pool_size=1) as url:
        # the one connection served health and went back: none is serving a request
        assert httpx.get(f"{url}/api/v1/historical/health", timeout=30).status_code == 200
        cluster.stop()
        response = httpx.get(f"{url}/api/v1/historical/health", timeout=30)
    assert response.status_code == 503
    # a connection counted as serving after it went back made this "every database connection of
    # the server is serving another request", sending an operator to look for slow requests
    assert [c["detail"] for c in response.json()["checks"] if not c["ok"]] == ["the database is unavailable"]


def test_active_orders_of_a_strategy_leave_out_the_other_strategies(config: ManagerConfig) -> None:
    async def action(manager: PersistentOrderManager) -> list[str]:
        await manager.place_order(ONE_BTC)
        await manager.place_order(replace(ONE_BTC, strategy="beta"))
        return [order.strategy for order in await manager.get_active_orders("alpha")]

    # one working order each; alpha's alone, where the filter dropped gave both
    assert run_order_manager(config, action) == ["alpha"]


def test_open_positions_of_a_strategy_leave_out_the_other_strategies(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    for strategy in ("alpha", "beta"):
        order_id = place(seeded, "buy", "0.5", "60000", strategy=strategy)
        fill(seeded, order_id, "0.5", "60000")

    async def run() -> list[tuple[str, Decimal]]:
        async with PersistentPositionManager(config) as manager:
            return [(p.strategy, p.quantity) for p in await manager.get_open_positions("alpha")]

    # both long 0.5 BTC; alpha's alone
    assert asyncio.run(run()) == [("alpha", Decimal("0.5"))]


def test_pnl_summary_groups_as_asked(config: ManagerConfig, seeded: psycopg.Connection) -> None:
    order_id = place(seeded, "buy", "0.5", "60000")
    fill(seeded, order_id, "0.5", "60000")

    async def run() -> list[tuple[str | None, str | None]]:
        async with PersistentPositionManager(config) as manager:
            summary = await manager.pnl_summary(group_by="exchange")
            return [(row.strategy_name, row.exchange) for row in summary]

    # one row for binance, no strategy; group_by left out, it was SQL's default: one row for alpha
    assert asyncio.run(run()) == [(None, "binance")]


def test_a_quantity_with_as_many_decimals_as_numeric_holds_reaches_the_sql(config: ManagerConfig) -> None:
    # 1e-16383 has 16,383 decimals, numeric's most: the SQL refuses it off the lot (22S04); refused
    # in Python as beyond numeric (22S09) with one decimal fewer allowed
    tiny = replace(ONE_BTC, quantity=Decimal("1e-16383"))
    with pytest.raises(errors.QuantityOffLot) as raised:
        run_order_manager(config, lambda m: m.place_order(tiny))
    assert raised.value.sqlstate == "22S04"


def test_a_column_added_to_a_view_the_managers_read_is_left_out(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    # as a later migration may: trading.active_orders with one more column at its end
    [definition] = seeded.execute("select pg_get_viewdef('trading.active_orders'::regclass)").fetchone()
    seeded.execute(
        sql.SQL(
            "create or replace view trading.active_orders as select v.*, 1 as added_later from ({}) v"
        ).format(sql.SQL(definition.rstrip().rstrip(";")))
    )

    async def action(manager: PersistentOrderManager) -> list[int]:
        placed = await manager.place_order(ONE_BTC)
        return [order.order_id for order in await manager.get_active_orders()] + [placed.order_id]

    # the placed order, read back, where the extra column raised TypeError (an unexpected keyword)
    [active, placed] = run_order_manager(config, action)
    assert active == placed


def test_a_call_waiting_on_a_lock_is_cancelled_by_the_server_before_its_deadline(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    # call_timeout 2 s: the server's statement_timeout is a second less (1 s) and cancels the wait
    # (57014, the connection kept); a statement_timeout past the deadline left the deadline to give
    # the call up and close its connection (sqlstate None)
    patient = replace(config, call_timeout=2.0)
    with seeded.transaction():
        seeded.execute("lock table trading.orders in access exclusive mode")
        with pytest.raises(DatabaseTimeout) as raised:
            run_order_manager(patient, lambda m: m.place_order(ONE_BTC))
    assert (raised.value.sqlstate, raised.value.maybe_committed) == ("57014", False)
