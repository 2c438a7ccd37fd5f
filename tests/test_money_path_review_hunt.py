"""A skeptical review of the money paths landed together: trading.record_fill_fee,
trading.record_exchange_fill, pnl_summary's unrealized_pnl and acknowledge_order's exchange order id
uniqueness, tried with real calls (concurrency, isolation levels, scope, invariants).

Each test here failed on the code before its fix (see the report of the review)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest

from spreadedge.migrate import migrate
from trading_helpers import call, fill, order, place, race

PERP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}  # seeded: tick 0.1, lot 1, multiplier 0.01
UNSEEN = 'exchange order id "{id}" of instrument {instrument} was recorded by a transaction that committed after this one\'s snapshot'


def in_transaction(
    isolation: str, work: Callable[[psycopg.Connection], Any]
) -> Callable[[psycopg.Connection], Any]:
    """work in a transaction of its own at this isolation level (on an autocommit connection): its
    snapshot is taken by the call's statement, before the call waits for its turn."""

    def run(conn: psycopg.Connection) -> Any:
        conn.execute(f"begin isolation level {isolation}")
        try:
            result = work(conn)
        except psycopg.Error:
            conn.execute("rollback")
            raise
        conn.execute("commit")
        return result

    return run


def acknowledge(order_id: int, exchange_order_id: str) -> Callable[[psycopg.Connection], Any]:
    return lambda conn: call(
        conn, "trading.acknowledge_order", order_id=order_id, exchange_order_id=exchange_order_id
    )


def liquidation(exchange_trade_id: str, **kwargs: Any) -> Callable[[psycopg.Connection], Any]:
    arguments = {
        "strategy": "alpha",
        "side": "sell",
        "quantity": D("1"),
        "price": D("55000"),
        "kind": "liquidation",
    }
    arguments.update(PERP)
    arguments.update(kwargs)
    return lambda conn: call(
        conn, "trading.record_exchange_fill", exchange_trade_id=exchange_trade_id, **arguments
    )


def instrument_id(conn: psycopg.Connection, exchange: str, symbol: str) -> int:
    return conn.execute(
        "select i.instrument_id from ref.instruments i join ref.exchanges e using (exchange_id)"
        " where e.code = %s and i.symbol = %s",
        [exchange, symbol],
    ).fetchone()[0]


def invariants(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("select invariant, detail from ops.check_invariants()").fetchall()


# --- an exchange order id taken while a REPEATABLE READ or SERIALIZABLE call waited for its turn ---
# The id's advisory lock makes two acknowledgements (or exchange fills) with one id take turns, and
# the one that waited looks for the id before it writes it. A snapshot taken before the turn (the
# call's statement took it, then waited) missed the id the other committed, and the unique index
# refused the write with a bare 23505 unique_violation naming an internal index: not the 23S06 of
# READ COMMITTED, nor the 40001 the README promises at these levels, which an application retries
# (the retry then sees the other order and answers 23S06, or for an exchange fill adds to it).


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_an_acknowledgement_whose_snapshot_missed_the_id_taken_meanwhile_is_a_serialization_failure(
    seeded, db_url, isolation
):
    first = place(seeded, "buy", "1", "100")
    second = place(seeded, "buy", "1", "100")

    _, error = race(
        seeded, db_url, acknowledge(first, "E-1"), in_transaction(isolation, acknowledge(second, "E-1")),
        wait_event="advisory",
    )  # fmt: skip

    assert isinstance(error, psycopg.Error)
    assert (error.sqlstate, error.diag.message_primary) == (
        "40001",
        UNSEEN.format(id="E-1", instrument=instrument_id(seeded, "binance", "BTCUSDT")),
    )
    assert (order(seeded, second)["status"], order(seeded, second)["exchange_order_id"]) == ("new", None)
    # the retry sees the order that has it
    with pytest.raises(psycopg.Error) as caught:
        in_transaction(isolation, acknowledge(second, "E-1"))(seeded)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S06",
        f'exchange order id "E-1" is already recorded for order {first}',
    )
    assert invariants(seeded) == []


def test_an_acknowledgement_under_repeatable_read_with_a_free_id_records_it(seeded, db_url):
    order_id = place(seeded, "buy", "1", "100")
    in_transaction("repeatable read", acknowledge(order_id, "E-2"))(seeded)
    assert (order(seeded, order_id)["status"], order(seeded, order_id)["exchange_order_id"]) == (
        "open",
        "E-2",
    )
    assert seeded.execute(
        "select exchange_order_id from trading.order_keys where order_id = %s", [order_id]
    ).fetchone() == ("E-2",)


@pytest.mark.parametrize("same_trade", [True, False], ids=["the-same-fill-twice", "two-fills-of-one-order"])
def test_an_exchange_fill_whose_snapshot_missed_its_exchange_order_recorded_meanwhile_is_a_serialization_failure(
    seeded, db_url, same_trade
):
    opened = place(seeded, "buy", "10", "60000", **PERP)
    fill(seeded, opened, "10", "60000")

    first, error = race(
        seeded,
        db_url,
        liquidation("L-1", exchange_order_id="EO-1"),
        in_transaction(
            "repeatable read", liquidation("L-1" if same_trade else "L-2", exchange_order_id="EO-1")
        ),
        wait_event="advisory",
    )

    assert isinstance(error, psycopg.Error)
    if same_trade:
        # without an exchange order id this was already 40001 (the trade key's insert)
        assert error.sqlstate == "40001"
    else:
        assert (error.sqlstate, error.diag.message_primary) == (
            "40001",
            UNSEEN.format(id="EO-1", instrument=instrument_id(seeded, **PERP)),
        )
    # the retry: the same fill again, or the order's second fill
    again = in_transaction(
        "repeatable read", liquidation("L-1" if same_trade else "L-2", exchange_order_id="EO-1")
    )(seeded)
    assert (again == first) is same_trade
    assert seeded.execute(
        "select count(*), sum(o.quantity), sum(o.filled_quantity) from trading.orders o"
        " join trading.exchange_initiated_orders x using (order_id)"
    ).fetchone() == (1, D("1") if same_trade else D("2"), D("1") if same_trade else D("2"))
    assert invariants(seeded) == []


# --- trading.pnl_summary dropped by every migrate ---
# The drop of its form without unrealized_pnl (a result column cannot be added in place) was in
# functions/, which every migrate re-applies: each later migrate dropped the function again, so a
# grant of it to a role of the operator's own was silently lost, and a view of theirs over it made
# every later migrate fail (2BP01). Migration 0078 drops it once, as migration 0027 did for
# quote_asset.


def test_a_later_migrate_keeps_pnl_summary_with_an_operators_grant_and_view_over_it(db_url, project_settings):
    with psycopg.connect(db_url, autocommit=True) as conn:
        # spreadedge_auditor is not given pnl_summary by functions/99_privileges.sql
        conn.execute("grant execute on function trading.pnl_summary to spreadedge_auditor")
        conn.execute("create view public.desk_pnl as select * from trading.pnl_summary(group_by => 'total')")
        before = conn.execute(
            "select 'trading.pnl_summary(text, timestamptz, timestamptz, text)'::regprocedure::oid"
        ).fetchone()

    migrate(db_url, project_settings, echo=lambda line: None)

    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(
            "select 'trading.pnl_summary(text, timestamptz, timestamptz, text)'::regprocedure::oid,"
            " has_function_privilege('spreadedge_auditor', 'trading.pnl_summary(text, timestamptz, timestamptz, text)', 'execute'),"
            " to_regclass('public.desk_pnl') is not null"
        ).fetchone() == (before[0], True, True)
        assert conn.execute("select count(*) from public.desk_pnl").fetchone() == (0,)


# --- an exchange fill whose notional overflows numeric ---
# A placed order's fills are bounded by its notional, which place_order checks (22S09 when too large
# for numeric); an exchange fill has no placement, and a quantity and price each within numeric but
# whose product is not failed in record_fill with a bare numeric overflow (22003). Found by the SQL
# API fuzz once it called record_exchange_fill with a valid kind (tests/test_sql_api_fuzz_hunt.py).


@pytest.mark.parametrize(
    ("quantity", "price", "shown"),
    [
        ("9.99e131071", "55000", "quantity 9.990e+131071 x price 5.500e+04 x multiplier 1.000e-02"),
        ("1e70000", "1e70000", "quantity 1.000e+70000 x price 1.000e+70000 x multiplier 1.000e-02"),
    ],
)
def test_an_exchange_fill_whose_notional_overflows_numeric_is_an_invalid_argument(
    seeded, quantity, price, shown
):
    before = seeded.execute(
        "select (select count(*) from trading.orders), (select count(*) from trading.trades)"
    ).fetchone()
    with pytest.raises(psycopg.Error) as caught:
        liquidation("L-huge", quantity=D(quantity), price=D(price))(seeded)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"fill notional ({shown}) is too large a number",
    )
    assert (
        seeded.execute(
            "select (select count(*) from trading.orders), (select count(*) from trading.trades)"
        ).fetchone()
        == before
    )
