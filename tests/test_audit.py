"""The audit log: a row per changed row, with actor, role and transaction; append-only."""

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from auth_helpers import MASTER_KEY, acting_as, make_user
from monitor_helpers import add_rule
from trading_helpers import call, fill, list_okx_btc_spot, place


def audit_rows(conn, table):
    return conn.execute(
        "select operation, row_key::jsonb, actor from audit.log where table_name = %s order by audit_id",
        [table],
    ).fetchall()


def test_placing_an_order_writes_its_insert_with_the_actor(seeded):
    seeded.execute("select set_config('spreadedge.actor', 'alice', false)")
    order_id = place(seeded, "buy", "1", "100")
    assert audit_rows(seeded, "trading.orders") == [("INSERT", {"order_id": order_id}, "alice")]


def test_a_fill_audits_the_trade_the_order_and_the_position(seeded):
    order_id = place(seeded, "buy", "1", "100")
    seeded.execute("select set_config('spreadedge.actor', 'feed-handler', false)")
    trade_id = fill(seeded, order_id, "1", "100")
    key = {"strategy_id": 1, "instrument_id": 1}
    assert audit_rows(seeded, "trading.trades") == [("INSERT", {"trade_id": trade_id}, "feed-handler")]
    assert audit_rows(seeded, "trading.orders")[1:] == [("UPDATE", {"order_id": order_id}, "feed-handler")]
    assert audit_rows(seeded, "trading.positions") == [
        ("INSERT", key, "feed-handler"),
        ("UPDATE", key, "feed-handler"),
    ]


def test_an_update_keeps_the_old_and_new_values(seeded):
    order_id = place(seeded, "buy", "1", "100")
    call(seeded, "trading.cancel_order", order_id=order_id, reason="user")
    old, new = seeded.execute(
        "select old_row ->> 'status', new_row ->> 'status' from audit.log "
        "where table_name = 'trading.orders' and operation = 'UPDATE'"
    ).fetchone()
    assert (old, new) == ("new", "cancelled")


def test_audit_rows_record_the_database_role_and_transaction(seeded):
    with seeded.transaction():
        txid = seeded.execute("select txid_current()").fetchone()[0]
        place(seeded, "buy", "1", "100")
    role, logged_txid = seeded.execute(
        "select db_role, txid from audit.log where table_name = 'trading.orders'"
    ).fetchone()
    assert (role, logged_txid) == (seeded.info.user, txid)


def test_a_bulk_statement_writes_one_audit_row_per_row(seeded):
    seeded.execute("insert into trading.strategies (name) select 'bulk-' || g from generate_series(1, 500) g")
    seeded.execute("delete from trading.strategies where name like 'bulk-%'")
    assert seeded.execute(
        "select operation, count(*) from audit.log where table_name = 'trading.strategies' "
        "and (coalesce(new_row, old_row) ->> 'name') like 'bulk-%' group by 1 order by 1"
    ).fetchall() == [("DELETE", 500), ("INSERT", 500)]


def test_audit_history_tells_one_rows_story_in_order(seeded):
    order_id = place(seeded, "buy", "2", "100")
    fill(seeded, order_id, "1", "100")
    call(seeded, "trading.cancel_order", order_id=order_id, reason="user")
    story = seeded.execute(
        "select operation, new_row ->> 'status' from audit.history('trading.orders', %s::jsonb)",
        [f'{{"order_id": {order_id}}}'],
    ).fetchall()
    assert story == [("INSERT", "new"), ("UPDATE", "partially_filled"), ("UPDATE", "cancelled")]


def test_the_auditor_reads_an_orders_story_without_usage_on_the_trading_schema(seeded):
    order_id = place(seeded, "buy", "2", "100")
    call(seeded, "trading.cancel_order", order_id=order_id, reason="user")
    with acting_as(seeded, "spreadedge_auditor"):
        story = seeded.execute(
            "select operation, new_row ->> 'status' from audit.history('trading.orders', %s)",
            [f'{{"order_id": {order_id}}}'],
        ).fetchall()
    assert story == [("INSERT", "new"), ("UPDATE", "cancelled")]
    assert seeded.execute(
        "select has_schema_privilege('spreadedge_auditor', 'trading', 'USAGE')"
    ).fetchone() == (False,)


def _gadgets_with_a_story(conn):
    """public.gadgets, audited, with row 1 inserted and then updated."""
    conn.execute("""
        create table public.gadgets (id int primary key, label text);
        create trigger _900_audit_insert after insert on public.gadgets referencing new table as new_rows
            for each statement execute function audit.log_changes('id');
        create trigger _900_audit_update after update on public.gadgets
            referencing old table as old_rows new table as new_rows
            for each statement execute function audit.log_changes('id');
        insert into public.gadgets values (1, 'a');
        update public.gadgets set label = 'b'""")


def test_audit_history_tells_the_story_of_a_dropped_table(seeded):
    _gadgets_with_a_story(seeded)
    seeded.execute("drop table public.gadgets")
    with acting_as(seeded, "spreadedge_auditor"):
        story = seeded.execute(
            "select operation, new_row ->> 'label' from audit.history('public.gadgets', '{\"id\": 1}')"
        ).fetchall()
    assert story == [("INSERT", "a"), ("UPDATE", "b")]


def test_audit_history_tells_a_renamed_tables_story_under_its_old_name(seeded):
    _gadgets_with_a_story(seeded)
    seeded.execute("alter table public.gadgets rename to widgets")
    story = seeded.execute(
        "select operation, new_row ->> 'label' from audit.history('public.gadgets', '{\"id\": 1}')"
    ).fetchall()
    assert story == [("INSERT", "a"), ("UPDATE", "b")]


@pytest.mark.parametrize("name", ["nosuch", "trading.orders.extra", ""])
def test_audit_history_refuses_a_name_that_is_neither_schema_table_nor_on_the_search_path(seeded, name):
    with pytest.raises(psycopg.errors.DataError) as caught:
        seeded.execute("select * from audit.history(%s, '{\"order_id\": 1}')", [name])
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"table_name '{name}' is neither schema.table nor a table on the search_path",
    )


@pytest.mark.parametrize("name", ["trading.orders", "TRADING.Orders", '"trading"."orders"', "orders"])
def test_audit_history_reads_a_table_name_as_regclass_did(seeded, name):
    # a guard, not a change: the names a regclass parameter accepted still find the same story
    order_id = place(seeded, "buy", "1", "100")
    seeded.execute("set search_path = trading, public")
    story = seeded.execute(
        "select operation from audit.history(%s, %s)", [name, f'{{"order_id": {order_id}}}']
    ).fetchall()
    assert story == [("INSERT",)]


def test_audit_history_finds_a_two_column_key_given_in_any_order_and_spacing(seeded):
    # a guard: jsonb makes the key canonical, so order and whitespace do not matter
    fill(seeded, place(seeded, "buy", "1", "100"), "1", "100")
    story = seeded.execute(
        "select operation from audit.history('trading.positions', '{ \"instrument_id\" :1,\"strategy_id\":1 }')"
    ).fetchall()
    assert story == [("INSERT",), ("UPDATE",)]


def test_audit_history_refuses_a_key_with_a_number_spelled_as_a_string(seeded):
    order_id = place(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.errors.DataError) as caught:
        seeded.execute("select * from audit.history('trading.orders', %s)", [f'{{"order_id": "{order_id}"}}'])
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_detail) == (
        "22S09",
        f'key {{"order_id": "{order_id}"}} does not match the key columns of trading.orders',
        f'trading.orders is logged with keys like {{"order_id": {order_id}}}.',
    )


@pytest.mark.parametrize(
    "table, key",
    [
        ("trading.orders", '{"id": 1}'),
        ("trading.positions", '{"instrument_id": 1}'),
        ("trading.orders", '{"order_id": 1, "strategy_id": 1}'),
    ],
    ids=["another column", "half a two-column key", "an extra column"],
)
def test_audit_history_refuses_a_key_naming_other_columns_than_the_tables(seeded, table, key):
    fill(seeded, place(seeded, "buy", "1", "100"), "1", "100")
    with pytest.raises(psycopg.errors.DataError) as caught:
        seeded.execute("select * from audit.history(%s, %s)", [table, key])
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"key {key} does not match the key columns of {table}",
    )


@pytest.mark.parametrize("key", ["1", '"1"', "[1]"])
def test_audit_history_refuses_a_key_that_is_not_a_json_object(seeded, key):
    with pytest.raises(psycopg.errors.DataError) as caught:
        seeded.execute("select * from audit.history('trading.orders', %s)", [key])
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"key {key} is not a json object of the row's key columns",
    )


@pytest.mark.parametrize(
    "statement",
    [
        "update audit.log set actor = 'mallory'",
        "delete from audit.log",
        "truncate audit.log",
    ],
)
def test_the_audit_log_is_append_only(seeded, statement):
    place(seeded, "buy", "1", "100")
    before = seeded.execute("select count(*), max(audit_id) from audit.log").fetchone()
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute(statement)
    assert caught.value.sqlstate == "55S02"
    assert caught.value.diag.message_primary.startswith("audit.log is append-only")
    assert seeded.execute("select count(*), max(audit_id) from audit.log").fetchone() == before


def _partition_holding(conn, table: str, column: str) -> str:
    """The schema-qualified name of the partition of table that holds its newest row (by column)."""
    return conn.execute(
        sql.SQL("select tableoid::regclass::text from {} order by {} desc limit 1").format(
            sql.Identifier(*table.split(".")), sql.Identifier(column)
        )
    ).fetchone()[0]


@pytest.mark.parametrize(
    ("table", "column", "statement"),
    [
        ("audit.log", "logged_at", "update {} set actor = 'mallory'"),
        ("audit.log", "logged_at", "delete from {}"),
        ("trading.trades", "executed_at", "update {} set price = price + 1"),
        ("trading.trades", "executed_at", "delete from {}"),
    ],
)
def test_an_update_or_delete_naming_one_partition_of_an_append_only_table_is_refused(
    seeded, table, column, statement
):
    fill(seeded, place(seeded, "buy", "1", "100"), "1", "100")
    name = _partition_holding(seeded, table, column)
    partition = sql.Identifier(*name.split("."))
    rows = sql.SQL("select count(*), sum(hashtext(p::text)) from {} p").format(partition)
    before = seeded.execute(rows).fetchone()
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute(sql.SQL(statement).format(partition))
    assert caught.value.sqlstate == "55S02"
    assert caught.value.diag.message_primary.startswith(f"{name} is append-only")
    assert seeded.execute(rows).fetchone() == before


def test_every_business_table_has_the_four_audit_triggers(seeded):
    untracked = seeded.execute("""
        select c.oid::regclass::text
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('ref', 'trading') and c.relkind in ('r', 'p') and not c.relispartition
          and c.relname not in ('order_keys', 'trade_keys', 'order_events', 'daily_pnl', 'hourly_pnl')
          and (select count(*) from pg_trigger t where t.tgrelid = c.oid and t.tgname like '\\_900\\_audit\\_%') <> 4
    """).fetchall()
    assert untracked == []


def test_a_bulk_update_pairs_each_rows_old_and_new_values(seeded):
    seeded.execute("insert into trading.strategies (name) select 'bulk-' || g from generate_series(1, 300) g")
    seeded.execute("update trading.strategies set description = 'was ' || name where name like 'bulk-%'")
    mismatched = seeded.execute("""
        select row_key from audit.log
        where table_name = 'trading.strategies' and operation = 'UPDATE'
          and not (row_key::jsonb ->> 'strategy_id' = old_row ->> 'strategy_id'
                   and old_row ->> 'strategy_id' = new_row ->> 'strategy_id'
                   and new_row ->> 'description' = 'was ' || (old_row ->> 'name'))""").fetchall()
    updates = seeded.execute(
        "select count(*) from audit.log where table_name = 'trading.strategies' and operation = 'UPDATE'"
    ).fetchone()[0]
    assert (updates, mismatched) == (300, [])


def test_an_update_moving_rows_across_partitions_is_audited_once_per_row(seeded):
    ids = [place(seeded, "buy", "1", "100") for _ in range(3)]
    seeded.execute("update trading.orders set created_at = created_at - interval '1 month'")
    rows = seeded.execute("""
        select (row_key::jsonb ->> 'order_id')::bigint, (new_row ->> 'created_at')::timestamptz
               = (old_row ->> 'created_at')::timestamptz - interval '1 month'
        from audit.log where table_name = 'trading.orders' and operation = 'UPDATE' order by 1""").fetchall()
    assert rows == [(order_id, True) for order_id in ids]


def test_each_operation_logs_exactly_the_row_images_it_has(seeded):
    seeded.execute("insert into trading.strategies (name) values ('imaged')")
    seeded.execute("update trading.strategies set description = 'changed' where name = 'imaged'")
    seeded.execute("delete from trading.strategies where name = 'imaged'")
    images = seeded.execute("""
        select operation, old_row ->> 'description', new_row ->> 'description', old_row is null, new_row is null
        from audit.log
        where table_name = 'trading.strategies' and coalesce(new_row, old_row) ->> 'name' = 'imaged'
        order by audit_id""").fetchall()
    assert images == [
        ("INSERT", None, None, True, False),
        ("UPDATE", None, "changed", False, False),
        ("DELETE", "changed", None, False, True),
    ]


def test_a_two_column_key_is_logged_as_canonical_json_text(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100")
    keys = seeded.execute(
        "select distinct row_key from audit.log where table_name = 'trading.positions'"
    ).fetchall()
    assert keys == [('{"strategy_id": 1, "instrument_id": 1}',)]


def test_redacted_columns_never_reach_the_audit_log(seeded):
    seeded.execute("""
        create table public.secrets (id int primary key, label text, token text, pin text);
        create trigger _900_audit_insert after insert on public.secrets referencing new table as new_rows
            for each statement execute function audit.log_changes('id', '-token', '-pin');
        insert into public.secrets values (1, 'kept', 'tok-123', '9999')""")
    assert seeded.execute(
        "select row_key, new_row from audit.log where table_name = 'public.secrets'"
    ).fetchall() == [('{"id": 1}', {"id": 1, "label": "kept"})]


def test_a_key_with_one_column_left_out_is_logged_by_that_key_alone(seeded):
    # two arguments, the second a column to leave out (auth.master_keys has this shape): the key
    # is one column, and the second argument never becomes part of it
    seeded.execute("""
        create table public.vault (id int primary key, label text, secret text);
        create trigger _900_audit_insert after insert on public.vault referencing new table as new_rows
            for each statement execute function audit.log_changes('id', '-secret');
        create trigger _900_audit_update after update on public.vault
            referencing old table as old_rows new table as new_rows
            for each statement execute function audit.log_changes('id', '-secret');
        insert into public.vault values (7, 'a', 's1');
        update public.vault set label = 'b', secret = 's2'""")
    assert seeded.execute(
        "select operation, row_key, old_row, new_row from audit.log where table_name = 'public.vault' order by audit_id"
    ).fetchall() == [
        ("INSERT", '{"id": 7}', None, {"id": 7, "label": "a"}),
        ("UPDATE", '{"id": 7}', {"id": 7, "label": "a"}, {"id": 7, "label": "b"}),
    ]


@pytest.mark.parametrize(
    "arguments",
    ["", "'-token'", "'id', 'label', 'token'"],
    ids=["no key", "only a redaction", "three keys"],
)
def test_an_audit_trigger_without_one_or_two_key_columns_is_refused(seeded, arguments):
    seeded.execute(
        sql.SQL("""
        create table public.badly_audited (id int primary key, label text, token text);
        create trigger _900_audit_insert after insert on public.badly_audited referencing new table as new_rows
            for each statement execute function audit.log_changes({arguments})""").format(
            arguments=sql.SQL(arguments)
        )
    )
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        seeded.execute("insert into public.badly_audited values (1, 'x', 'y')")
    assert caught.value.diag.message_primary == (
        "audit.log_changes on public.badly_audited needs one or two key column names, then -columns to leave out"
    )
    assert seeded.execute("select count(*) from public.badly_audited").fetchone()[0] == 0


def _every_audited_table_holding_rows(conn):
    """Rows in every audited table: trading (a liquidation too), funding, a snapshot, a spread trade,
    a user with an API key (and so a master key), a risk limit and an alert rule, on top of the seed."""
    list_okx_btc_spot(conn)
    fill(conn, place(conn, "buy", "1", "100"), "1", "100")
    call(conn, "trading.record_exchange_fill", strategy="alpha", exchange="binance", symbol="BTCUSDT",
         side="sell", quantity=Decimal("1"), price=Decimal("90"), kind="liquidation",
         exchange_trade_id="LQ-1")  # fmt: skip
    call(
        conn,
        "trading.record_funding",
        strategy="alpha",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        amount=Decimal("-1.5"),
        paid_at=datetime.now(UTC),
    )
    call(conn, "trading.take_portfolio_snapshot")
    call(conn, "trading.open_spread_trade", strategy="alpha", symbol="BTC/USDT", buy_exchange="binance",
         sell_exchange="okx", quantity=Decimal("1"), buy_price=Decimal("100"), sell_price=Decimal("101"))  # fmt: skip
    user_id = make_user(conn, "auditor")
    call(conn, "auth.store_api_key", user_id=user_id, exchange="binance", label="main", api_key="AKIA-0001",
         api_secret="s3cret-0001", master_key=MASTER_KEY)  # fmt: skip
    call(conn, "monitor.set_risk_limit", strategy="alpha", max_order_notional=Decimal("1000000"))
    add_rule(conn, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")


def _logged_by(conn, table, statement):
    """The audit rows (operation, key, old and new images) that ``statement`` writes for ``table``."""
    (since,) = conn.execute("select coalesce(max(audit_id), 0) from audit.log").fetchone()
    conn.execute(statement)
    return conn.execute(
        "select operation, row_key, old_row, new_row from audit.log where table_name = %s and audit_id > %s"
        " order by audit_id",
        [table, since],
    ).fetchall()


def _audit_with_log_changes(conn, table):
    """Point the table's three audit triggers at audit.log_changes, with the same arguments."""
    key1, key2, redacted = conn.execute(
        "select key1, key2, redacted from internal.audited_tables() where table_name = %s", [table]
    ).fetchone()
    arguments = sql.SQL(", ").join(sql.Literal(a) for a in [key1, key2, *("-" + c for c in redacted)] if a)
    schema, name = table.split(".")
    for trigger, event, transitions in [
        ("_900_audit_insert", "insert", "new table as new_rows"),
        ("_900_audit_update", "update", "old table as old_rows new table as new_rows"),
        ("_900_audit_delete", "delete", "old table as old_rows"),
    ]:
        conn.execute(
            sql.SQL(
                "create or replace trigger {} after {} on {} referencing {}"
                " for each statement execute function audit.log_changes({})"
            ).format(
                sql.Identifier(trigger),
                sql.SQL(event),
                sql.Identifier(schema, name),
                sql.SQL(transitions),
                arguments,
            )
        )


def test_every_audited_table_has_its_own_audit_function(seeded):
    assert (
        seeded.execute("""
        select a.table_name, p.proname
        from internal.audited_tables() a
        join pg_catalog.pg_trigger t on t.tgrelid = a.relid and t.tgname = '_900_audit_insert'
        join pg_catalog.pg_proc p on p.oid = t.tgfoid
        where p.proname <> 'log_changes_' || replace(a.table_name, '.', '_')""").fetchall()
        == []
    )
    assert seeded.execute("select count(*) from internal.audited_tables()").fetchone()[0] == 22


def test_each_table_s_own_audit_function_logs_an_update_as_audit_log_changes_would(seeded):
    _every_audited_table_holding_rows(seeded)
    tables = [t for (t,) in seeded.execute("select table_name from internal.audited_tables() order by 1")]
    compared = []
    for table in tables:
        if table == "trading.trades":  # append-only: an update is refused before any trigger logs it
            continue
        (column,) = seeded.execute(
            "select attname from pg_catalog.pg_attribute where attrelid = %s::regclass and attnum > 0"
            " and not attisdropped and attidentity = '' and attgenerated = '' order by attnum limit 1",
            [table],
        ).fetchone()
        update = sql.SQL("update {table} set {column} = {column}").format(
            table=sql.Identifier(*table.split(".")), column=sql.Identifier(column)
        )
        with seeded.transaction(force_rollback=True):
            own = _logged_by(seeded, table, update)
            _audit_with_log_changes(seeded, table)
            assert _logged_by(seeded, table, update) == own, table
        compared.append((table, len(own)))
    assert [table for table, logged in compared if logged == 0] == []
    assert len(compared) == 21


@pytest.mark.parametrize(
    "table",
    ["trading.trades", "trading.positions", "auth.user_roles", "auth.api_keys", "monitor.alert_rules"],
)
def test_each_table_s_own_audit_function_logs_inserts_and_deletes_as_audit_log_changes_would(seeded, table):
    # the rows are copied out, deleted and inserted again, first through the table's own function,
    # then through audit.log_changes; trades refuse a delete, so only their insert is compared
    _every_audited_table_holding_rows(seeded)
    target = sql.Identifier(*table.split("."))
    columns = sql.SQL(", ").join(
        sql.Identifier(c)
        for (c,) in seeded.execute(
            "select attname from pg_catalog.pg_attribute where attrelid = %s::regclass and attnum > 0"
            " and not attisdropped and attgenerated = '' order by attnum",
            [table],
        )
    )
    seeded.execute(sql.SQL("create temporary table saved as select {} from {}").format(columns, target))
    insert = sql.SQL("insert into {} ({}) overriding system value select * from saved").format(
        target, columns
    )
    if table == "trading.trades":
        seeded.execute(
            "update saved set trade_id = trade_id + 1000, exchange_trade_id = exchange_trade_id || '-again'"
        )
        steps = [insert]
    else:
        steps = [sql.SQL("delete from {}").format(target), insert]
    logged = {}
    for how in ("own", "log_changes"):
        with seeded.transaction(force_rollback=True):
            if how == "log_changes":
                _audit_with_log_changes(seeded, table)
            logged[how] = [_logged_by(seeded, table, step) for step in steps]
    assert logged["own"] == logged["log_changes"]
    assert all(logged["own"])


def test_audit_history_finds_a_key_whose_number_is_written_with_a_fraction_of_zero(seeded):
    # {"order_id": 42.0} is the number 42 (a float-typed client writes it so), not another row
    order_id = place(seeded, "buy", "1", "100")
    story = seeded.execute(
        "select operation, (new_row ->> 'order_id')::bigint from audit.history('trading.orders', %s)",
        [f'{{"order_id": {order_id}.0}}'],
    ).fetchall()
    assert story == [("INSERT", order_id)]


def test_a_truncate_of_an_audited_table_logs_a_delete_for_each_row(seeded):
    limits = [
        call(
            seeded,
            "monitor.set_risk_limit",
            strategy="alpha",
            exchange=exchange,
            max_order_notional=Decimal("1000"),
        )
        for exchange in ("binance", "okx")
    ]
    images = seeded.execute(
        "select row_key, new_row from audit.log where table_name = 'monitor.risk_limits' order by audit_id"
    ).fetchall()
    assert _logged_by(seeded, "monitor.risk_limits", "truncate monitor.risk_limits cascade") == [
        ("DELETE", key, image, None) for key, image in images
    ]
    assert [key for key, _ in images] == [f'{{"limit_id": {limit_id}}}' for limit_id in limits]


def test_the_tables_left_unaudited_are_exactly_the_documented_ones(seeded):
    # a guard: a new table must be audited, or added here and to 90_audit_triggers.sql.j2's comment
    unaudited = seeded.execute("""
        select c.oid::regclass::text
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('ref', 'trading', 'auth', 'monitor', 'market', 'ops', 'audit')
          and c.relkind in ('r', 'p') and not c.relispartition
          and c.oid not in (select relid from internal.audited_tables())
        order by 1""").fetchall()
    documented = [
        "audit.log", "audit.security_events", "auth.sessions", "market.candles", "market.latest_prices",
        "market.quotes", "market.rollup_watermarks", "market.technical_indicators", "market.ticks",
        "monitor.alert_events", "monitor.alerts", "monitor.metric_catalog", "monitor.metrics",
        "monitor.notifications", "monitor.risk_events", "ops.backup_runs", "ops.error_codes",
        "ops.migrate_runs", "trading.daily_pnl", "trading.hourly_pnl", "trading.order_events",
        "trading.order_keys", "trading.trade_keys",
    ]  # fmt: skip
    assert [name for (name,) in unaudited] == sorted(documented)
