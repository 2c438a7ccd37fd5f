"""Database roles, ownership, grants and row-level security between application users."""

from __future__ import annotations

import psycopg
import pytest

from auth_helpers import SECRET_COLUMNS, acting_as, make_user
from trading_helpers import call, fill, list_okx_btc_spot, place, rows

GROUP_ROLES = ("spreadedge_app", "spreadedge_engine", "spreadedge_readonly", "spreadedge_auditor")
PROJECT_SCHEMAS = ["ref", "trading", "market", "auth", "monitor", "audit", "ops", "internal"]


def test_every_project_object_is_owned_by_spreadedge_owner(db):
    strays = db.execute(
        "select c.oid::regclass::text from pg_class c"
        " where c.relnamespace::regnamespace::text = any(%(s)s) and c.relkind in ('r', 'p', 'v', 'S')"
        " and c.relowner <> 'spreadedge_owner'::regrole"
        " union all select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace::regnamespace::text = any(%(s)s) and p.proowner <> 'spreadedge_owner'::regrole",
        {"s": PROJECT_SCHEMAS},
    ).fetchall()
    assert strays == []


def test_every_security_definer_function_pins_its_search_path(db):
    unpinned = db.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.prosecdef and p.pronamespace::regnamespace::text = any(%s)"
        " and not coalesce('search_path=\"\"' = any(p.proconfig), false)",
        [PROJECT_SCHEMAS],
    ).fetchall()
    assert unpinned == []


def test_no_project_function_is_executable_by_public(db):
    public = db.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace::regnamespace::text = any(%s)"
        " and (p.proacl is null or exists (select from aclexplode(p.proacl) a where a.grantee = 0))",
        [PROJECT_SCHEMAS],
    ).fetchall()
    assert public == []


@pytest.mark.parametrize("role", GROUP_ROLES)
def test_no_group_role_may_write_any_table_directly(db, role):
    writable = db.execute(
        "select c.oid::regclass::text, p from pg_class c,"
        " unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p"
        " where c.relnamespace::regnamespace::text = any(%s) and c.relkind in ('r', 'p')"
        " and has_table_privilege(%s, c.oid, p)",
        [PROJECT_SCHEMAS, role],
    ).fetchall()
    assert writable == []


def test_app_role_direct_insert_is_refused(seeded):
    with acting_as(seeded, "spreadedge_app"), pytest.raises(psycopg.errors.InsufficientPrivilege):
        seeded.execute("insert into trading.strategies (name) values ('sneaky')")


@pytest.mark.parametrize("role", GROUP_ROLES)
def test_no_group_role_may_read_a_secret_column(db, role):
    readable = db.execute(
        "select a.attrelid::regclass::text, a.attname from pg_attribute a join pg_class c on c.oid = a.attrelid"
        " where c.relnamespace::regnamespace::text = any(%s) and a.attname = any(%s) and a.attnum > 0"
        " and has_column_privilege(%s, a.attrelid, a.attnum, 'SELECT')",
        [PROJECT_SCHEMAS, list(SECRET_COLUMNS), role],
    ).fetchall()
    assert readable == []
    assert db.execute("select count(*) from pg_attribute where attname = 'api_secret'").fetchone()[0] > 0


def test_app_role_reading_ciphertext_is_refused(auth_db):
    with acting_as(auth_db, "spreadedge_app"), pytest.raises(psycopg.errors.InsufficientPrivilege):
        auth_db.execute("select api_secret from auth.api_keys")
    with acting_as(auth_db, "spreadedge_app"), pytest.raises(psycopg.errors.InsufficientPrivilege):
        auth_db.execute("select password_hash from auth.users")


@pytest.mark.parametrize("role", ("spreadedge_owner", *GROUP_ROLES))
@pytest.mark.parametrize("table", ("audit.log", "audit.security_events"))
@pytest.mark.parametrize("statement", ("update {} set actor = 'forged'", "delete from {}", "truncate {}"))
def test_audit_log_is_unchangeable_by_every_role(auth_db, role, table, statement):
    make_user(auth_db, "alice")  # at least one row in each
    before = auth_db.execute(f"select count(*) from {table}").fetchone()[0]
    assert before > 0
    with acting_as(auth_db, role), pytest.raises(psycopg.Error) as caught:
        auth_db.execute(statement.format(table))
    assert caught.value.sqlstate in ("42501", "55S02")
    assert auth_db.execute(f"select count(*) from {table}").fetchone()[0] == before


def test_audit_rows_are_written_through_the_api_as_the_app_role(seeded):
    with acting_as(seeded, "spreadedge_app"):
        order_id = place(seeded, "buy", "1", "100")
    [audit] = seeded.execute(
        "select operation, db_role from audit.log where table_name = 'trading.orders' and row_key = %s",
        [f'{{"order_id": {order_id}}}'],
    ).fetchall()
    assert audit == ("INSERT", "spreadedge")


@pytest.fixture
def two_traders(auth_db):
    """alice and bob, each with a strategy and a filled BTCUSDT order; an admin; the viewer vic."""
    ids = {name: make_user(auth_db, name) for name in ("alice", "bob")}
    ids["root"] = make_user(auth_db, "root", "admin")
    ids["vic"] = make_user(auth_db, "vic", "viewer")
    orders = {}
    for name in ("alice", "bob"):
        with acting_as(auth_db, "spreadedge_app", ids[name]):
            call(auth_db, "trading.create_strategy", name=f"{name}-arb")
            orders[name] = place(auth_db, "buy", "1", "100", strategy=f"{name}-arb")
            fill(auth_db, orders[name], "1", "100")
    return auth_db, ids, orders


@pytest.mark.parametrize(
    "query",
    [
        "select s.name from trading.strategies s where s.name like '%%-arb'",
        "select s.name from trading.orders o join trading.strategies s using (strategy_id)",
        "select s.name from trading.trades t join trading.strategies s using (strategy_id)",
        "select s.name from trading.positions p join trading.strategies s using (strategy_id)",
        "select strategy from trading.position_summary",
        "select strategy from trading.order_history",
        "select strategy from trading.trade_history",
        "select distinct s.name from trading.order_events e join trading.orders o using (order_id)"
        " join trading.strategies s using (strategy_id)",
    ],
)
def test_a_trader_sees_only_their_own_rows(two_traders, query):
    conn, ids, _ = two_traders
    with acting_as(conn, "spreadedge_readonly", ids["alice"]):
        mine = conn.execute(query).fetchall()
    with acting_as(conn, "spreadedge_readonly", ids["root"]):
        everything = conn.execute(query).fetchall()
    assert set(mine) == {("alice-arb",)}
    assert {("alice-arb",), ("bob-arb",)} <= set(everything)


def test_a_disabled_user_sees_nothing(two_traders):
    conn, ids, _ = two_traders
    call(conn, "auth.disable_user", user_id=ids["alice"])
    with acting_as(conn, "spreadedge_readonly", ids["alice"]):
        assert conn.execute("select count(*) from trading.orders").fetchone()[0] == 0


def test_strategy_created_in_a_scoped_session_belongs_to_its_user(two_traders):
    conn, ids, _ = two_traders
    owner = conn.execute("select owner_user_id from trading.strategies where name = 'alice-arb'").fetchone()[
        0
    ]
    assert owner == ids["alice"]


def test_a_trader_cannot_use_another_traders_strategy(two_traders):
    conn, ids, _ = two_traders
    with (
        acting_as(conn, "spreadedge_app", ids["alice"]),
        pytest.raises(psycopg.errors.IntegrityError) as caught,
    ):
        place(conn, "buy", "1", "100", strategy="bob-arb")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S03",
        'strategy "bob-arb" does not exist',
    )


@pytest.mark.parametrize(
    "action",
    [
        lambda conn, order_id: call(conn, "trading.cancel_order", order_id=order_id),
        lambda conn, order_id: fill(conn, order_id, "1", "100"),
        lambda conn, order_id: call(conn, "trading.acknowledge_order", order_id=order_id),
    ],
    ids=["cancel", "fill", "acknowledge"],
)
def test_another_traders_order_is_unknown_to_a_trader(two_traders, action):
    conn, ids, _ = two_traders
    with acting_as(conn, "spreadedge_app", ids["bob"]):
        open_order = place(conn, "buy", "1", "100", strategy="bob-arb")
    with (
        acting_as(conn, "spreadedge_app", ids["alice"]),
        pytest.raises(psycopg.errors.IntegrityError) as caught,
    ):
        action(conn, open_order)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S04",
        f"order {open_order} does not exist",
    )


def test_pnl_summary_of_a_trader_covers_only_their_strategies(two_traders):
    conn, ids, _ = two_traders
    with acting_as(conn, "spreadedge_app", ids["alice"]):
        mine = rows(conn, "trading.pnl_summary")
    with acting_as(conn, "spreadedge_app", ids["root"]):
        everything = rows(conn, "trading.pnl_summary")
    assert [r["strategy_name"] for r in mine] == ["alice-arb"]
    assert [r["strategy_name"] for r in everything] == ["alice-arb", "bob-arb"]


def test_a_viewer_cannot_place_orders(two_traders):
    conn, ids, _ = two_traders
    call(conn, "trading.create_strategy", name="vic-watch", owner_user_id=ids["vic"])
    with (
        acting_as(conn, "spreadedge_app", ids["vic"]),
        pytest.raises(psycopg.errors.ProgrammingError) as caught,
    ):
        place(conn, "buy", "1", "100", strategy="vic-watch")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {ids['vic']} lacks the permission orders:write",
    )


def test_a_malformed_user_id_setting_is_refused_with_22S09(seeded):
    with acting_as(seeded, "spreadedge_readonly"):
        seeded.execute("set spreadedge.user_id = 'alice'")
        with pytest.raises(psycopg.errors.DataError) as caught:
            seeded.execute("select count(*) from trading.strategies")
    assert caught.value.sqlstate == "22S09"


def test_a_trader_sees_and_reports_only_their_own_spread_trades(two_traders):
    conn, ids, _ = two_traders
    list_okx_btc_spot(conn)
    for name in ("alice", "bob"):
        with acting_as(conn, "spreadedge_app", ids[name]):
            call(
                conn,
                "trading.open_spread_trade",
                strategy=f"{name}-arb",
                symbol="BTC/USDT",
                buy_exchange="binance",
                sell_exchange="okx",
                quantity=1,
                buy_price=100,
                sell_price=101,
            )
    with acting_as(conn, "spreadedge_readonly", ids["alice"]):
        table = conn.execute("select strategy_id from trading.spread_trades").fetchall()
        report = [r["strategy_name"] for r in rows(conn, "trading.spread_trade_pnl")]
    alice_strategy = conn.execute(
        "select strategy_id from trading.strategies where name = 'alice-arb'"
    ).fetchone()
    assert (table, report) == ([alice_strategy], ["alice-arb"])
    assert len(rows(conn, "trading.spread_trade_pnl")) == 2


def test_a_viewer_retrying_a_spread_trade_of_their_strategy_is_refused_before_it_is_looked_up(two_traders):
    conn, ids, _ = two_traders
    list_okx_btc_spot(conn)
    call(conn, "trading.create_strategy", name="vic-watch", owner_user_id=ids["vic"])
    spread = {
        "strategy": "vic-watch",
        "symbol": "BTC/USDT",
        "buy_exchange": "binance",
        "sell_exchange": "okx",
        "quantity": 1,
        "buy_price": 100,
        "sell_price": 101,
        "client_spread_id": "S-1",
    }
    call(conn, "trading.open_spread_trade", **spread)  # the engine, unscoped
    with (
        acting_as(conn, "spreadedge_app", ids["vic"]),
        pytest.raises(psycopg.errors.ProgrammingError) as caught,
    ):
        call(conn, "trading.open_spread_trade", **spread)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {ids['vic']} lacks the permission orders:write",
    )
