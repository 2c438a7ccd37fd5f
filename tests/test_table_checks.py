"""The tables every fill writes refuse impossible values themselves, whatever wrote them.

Their rules are written for speed: one-column rules are domains (migration 0013: read once per
session, checked only on assigned values), the rest small table checks (migration 0005: one range
containment for "positive and finite"). These tests pin down that they still refuse NaN, the
infinities, zero and negatives where the old checks did, and accept what the old checks accepted.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from trading_helpers import fill, place, trade

POSITIVE_FINITE_REFUSED = ["NaN", "Infinity", "-Infinity", "0", "-0.000001"]
FINITE_REFUSED = ["NaN", "Infinity", "-Infinity"]
COPY_TRADE = """
    insert into trading.trades
        (trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity, price, fee,
         fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id, multiplier,
         closed_quantity)
    select nextval('trading.trade_id_seq'), executed_at, order_id, strategy_id, instrument_id, side,
           {quantity}, {price}, {fee}, fee_currency, {fee_quote}, position_delta, realized_pnl_gross,
           'copy-' || exchange_trade_id, multiplier, closed_quantity
    from trading.trades where trade_id = %(trade_id)s"""
COLUMNS = ("quantity", "price", "fee", "fee_quote")


def copy_trade(conn: psycopg.Connection, trade_id: int, column: str, value: str) -> None:
    """Insert a copy of a trade with one column set to a numeric literal."""
    values = {name: sql.Identifier(name) for name in COLUMNS}
    values[column] = sql.SQL("{}::numeric").format(sql.Literal(value))
    conn.execute(sql.SQL(COPY_TRADE).format(**values), {"trade_id": trade_id})


@pytest.mark.parametrize("column", ["quantity", "price"])
@pytest.mark.parametrize("value", POSITIVE_FINITE_REFUSED)
def test_a_trade_needs_a_positive_finite_quantity_and_price(seeded, column, value):
    trade_id = trade(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.errors.CheckViolation):
        copy_trade(seeded, trade_id, column, value)


@pytest.mark.parametrize("column", ["fee", "fee_quote"])
@pytest.mark.parametrize("value", FINITE_REFUSED)
def test_a_trade_needs_a_finite_fee(seeded, column, value):
    trade_id = trade(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.errors.CheckViolation):
        copy_trade(seeded, trade_id, column, value)


def test_a_trade_takes_tiny_huge_and_negative_values_where_they_are_allowed(seeded):
    trade_id = trade(seeded, "buy", "1", "100")
    copy_trade(seeded, trade_id, "quantity", "0.000000000000000000000000000001")
    copy_trade(seeded, trade_id, "price", "1e300")
    copy_trade(seeded, trade_id, "fee", "-5")
    copy_trade(seeded, trade_id, "fee_quote", "0")


@pytest.mark.parametrize("column", ["quantity", "price", "stop_price"])
@pytest.mark.parametrize("value", POSITIVE_FINITE_REFUSED)
def test_an_order_needs_a_positive_finite_quantity_price_and_stop_price(seeded, column, value):
    order_id = place(seeded, "buy", "1", "100", order_type="stop_limit", stop_price=Decimal("99"))
    with pytest.raises(psycopg.errors.CheckViolation):
        seeded.execute(
            sql.SQL("update trading.orders set {} = %s::numeric where order_id = %s").format(
                sql.Identifier(column)
            ),
            [value, order_id],
        )


@pytest.mark.parametrize(
    "assignment",
    [
        "filled_quantity = -1, avg_fill_price = 100",
        "filled_quantity = 2, avg_fill_price = 100",
        "filled_quantity = 0.5",
        "avg_fill_price = 100",
    ],
)
def test_an_order_keeps_its_filled_quantity_and_average_price_consistent(seeded, assignment):
    order_id = place(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.errors.CheckViolation):
        seeded.execute(
            sql.SQL("update trading.orders set {} where order_id = %s").format(sql.SQL(assignment)),
            [order_id],
        )


@pytest.mark.parametrize("assignment", ["avg_entry_price = null", "opened_at = null", "quantity = 0"])
def test_a_position_is_flat_exactly_when_it_has_no_entry_price_and_no_open_time(seeded, assignment):
    trade(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.errors.CheckViolation):
        seeded.execute(
            sql.SQL("update trading.positions set {} where quantity <> 0").format(sql.SQL(assignment))
        )


def test_a_position_takes_its_instruments_multiplier_from_a_fill_and_from_funding(seeded):
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    seeded.execute(
        "select trading.record_funding(strategy => 'beta', exchange => 'okx', symbol => 'BTC-USDT-SWAP',"
        " amount => 1.5, paid_at => now())"
    )
    rows = seeded.execute(
        "select s.name, p.multiplier from trading.positions p"
        " join trading.strategies s using (strategy_id) order by s.name"
    ).fetchall()
    assert rows == [("alpha", Decimal("0.01")), ("beta", Decimal("0.01"))]


def test_a_position_refuses_a_multiplier_that_is_not_its_instruments(seeded):
    trade_id = trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        seeded.execute(
            "update trading.positions p set multiplier = 1"
            " from trading.trades t where t.trade_id = %s and p.strategy_id = t.strategy_id"
            " and p.instrument_id = t.instrument_id",
            [trade_id],
        )


def test_a_changed_instrument_multiplier_is_carried_to_its_positions(seeded):
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    seeded.execute(
        "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
        " quote_asset => 'USDT', market_type => 'perpetual', tick_size => 0.1, lot_size => 1,"
        " min_notional => 0, multiplier => 0.02)"
    )
    assert seeded.execute("select multiplier from trading.positions").fetchall() == [(Decimal("0.02"),)]


COPY_TRADE_AS = """
    insert into trading.trades
        (trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity, price, fee,
         fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id, multiplier,
         closed_quantity)
    select nextval('trading.trade_id_seq'), t.executed_at, t.order_id, {strategy}, {instrument}, t.side,
           t.quantity, t.price, t.fee, t.fee_currency, t.fee_quote, t.position_delta, t.realized_pnl_gross,
           'copy-' || t.exchange_trade_id, t.multiplier, t.closed_quantity
    from trading.trades t where t.trade_id = %(trade_id)s"""
OTHER_STRATEGY = "(select strategy_id from trading.strategies where name = 'beta')"
OTHER_INSTRUMENT = "(select instrument_id from ref.instruments where symbol = 'BNBUSDT')"


@pytest.mark.parametrize(
    ("strategy", "instrument"),
    [(OTHER_STRATEGY, "t.instrument_id"), ("t.strategy_id", OTHER_INSTRUMENT)],
    ids=["strategy", "instrument"],
)
def test_a_trade_is_held_to_its_orders_strategy_and_instrument(seeded, strategy, instrument):
    trade_id = trade(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        seeded.execute(
            sql.SQL(COPY_TRADE_AS).format(strategy=sql.SQL(strategy), instrument=sql.SQL(instrument)),
            {"trade_id": trade_id},
        )


def test_an_order_cannot_move_to_another_strategy_than_its_keys(seeded):
    order_id = place(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        seeded.execute(
            "update trading.orders set strategy_id = (select strategy_id from trading.strategies"
            " where name = 'beta') where order_id = %s",
            [order_id],
        )


@pytest.mark.parametrize("currency", ["usdt", "US-DT", ""])
def test_a_trade_needs_an_asset_code_for_its_fee_currency(seeded, currency):
    trade_id = trade(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.errors.CheckViolation):
        seeded.execute(
            "insert into trading.trades (trade_id, executed_at, order_id, strategy_id, instrument_id, side,"
            " quantity, price, fee, fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id,"
            " multiplier, closed_quantity)"
            " select nextval('trading.trade_id_seq'), executed_at, order_id, strategy_id, instrument_id, side,"
            " quantity, price, fee, %s, fee_quote, position_delta, realized_pnl_gross, 'copy-' || exchange_trade_id,"
            " multiplier, closed_quantity"
            " from trading.trades where trade_id = %s",
            [currency, trade_id],
        )


@pytest.mark.parametrize(
    "statement",
    [
        "update trading.order_keys set client_order_id = ''",
        "update trading.trade_keys set exchange_trade_id = ''",
        "update trading.hourly_pnl set hour = hour + interval '1 minute'",
    ],
)
def test_key_and_rollup_tables_refuse_empty_ids_and_hours_off_the_hour(seeded, statement):
    order_id = place(seeded, "buy", "1", "100", client_order_id="c-1")
    fill(seeded, order_id, "1", "100")
    with pytest.raises(psycopg.errors.CheckViolation):
        seeded.execute(statement)


def test_the_tables_a_fill_writes_keep_table_checks_only_for_rules_over_several_columns(seeded):
    # one-column rules are domains (migration 0013): a table check is planned again in every
    # statement that writes the table, a domain's once per session
    rows = seeded.execute(
        "select conrelid::regclass::text, conname from pg_constraint"
        " where contype = 'c' and conrelid = any (array['trading.orders', 'trading.trades', 'trading.positions',"
        " 'trading.order_keys', 'trading.trade_keys', 'trading.hourly_pnl']::regclass[])"
        " order by 1, 2"
    ).fetchall()
    assert rows == [
        ("trading.orders", "orders_check"),
        ("trading.orders", "orders_check1"),
        ("trading.orders", "orders_check2"),
        ("trading.orders", "orders_check3"),
        ("trading.positions", "positions_check"),
        ("trading.positions", "positions_check1"),
        ("trading.trades", "trades_fee_quote_check"),
    ]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        *((c, v) for c in ("tick_size", "lot_size", "multiplier") for v in POSITIVE_FINITE_REFUSED),
        *(("min_notional", v) for v in (*FINITE_REFUSED, "-0.000001")),
    ],
)
def test_an_instrument_written_around_upsert_instrument_needs_finite_sizes(seeded, column, value):
    with pytest.raises(psycopg.errors.CheckViolation):
        seeded.execute(
            sql.SQL("update ref.instruments set {} = {}::numeric where symbol = 'BTCUSDT'").format(
                sql.Identifier(column), sql.Literal(value)
            )
        )
