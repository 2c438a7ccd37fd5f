"""Small helpers shared by the trading tests: calling the SQL API and reading state."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from spreadedge import sqlcall

BUSINESS_TABLES = (
    "trading.orders",
    "trading.order_keys",
    "trading.order_events",
    "trading.trades",
    "trading.trade_keys",
    "trading.positions",
    "trading.funding_payments",
    "trading.daily_pnl",
    "trading.portfolio_snapshots",
    "trading.strategies",
    "ref.instruments",
    "audit.log",
)


def call(conn: psycopg.Connection, function: str, **kwargs: Any) -> Any:
    """Call schema.function with named arguments and return the first column of the first row."""
    row = conn.execute(sqlcall.select_value(function, kwargs), kwargs).fetchone()
    return None if row is None else row[0]


def rows(conn: psycopg.Connection, function: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Rows of a set-returning schema.function called with named arguments, as dicts."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sqlcall.select_rows(function, kwargs), kwargs).fetchall()


def position(
    conn: psycopg.Connection, strategy: str, exchange: str, symbol: str, **kwargs: Any
) -> dict[str, Any]:
    return rows(conn, "trading.get_position", strategy=strategy, exchange=exchange, symbol=symbol, **kwargs)[
        0
    ]


def counts(conn: psycopg.Connection) -> dict[str, int]:
    """Row counts of every business table and the audit log."""
    result = {}
    for table in BUSINESS_TABLES:
        schema, name = table.split(".")
        query = sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        result[table] = conn.execute(query).fetchone()[0]
    return result


def order(conn: psycopg.Connection, order_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("select * from trading.orders where order_id = %s", [order_id]).fetchone()


def list_spot(
    conn: psycopg.Connection, exchange: str, symbol: str, base_asset: str = "BTC", **settings: Any
) -> None:
    """A spot instrument of base_asset/USDT (the exchange's default fees unless settings give them)."""
    call(
        conn,
        "ref.upsert_instrument",
        exchange=exchange,
        symbol=symbol,
        base_asset=base_asset,
        quote_asset="USDT",
        market_type="spot",
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.0001"),
        **settings,
    )


def list_perpetual(conn: psycopg.Connection, exchange: str, symbol: str, multiplier: str) -> None:
    """A BTC/USDT perpetual of multiplier BTC a contract (listed, or its contract size changed)."""
    conn.execute(
        "select ref.upsert_instrument(exchange => %s, symbol => %s, base_asset => 'BTC', quote_asset => 'USDT',"
        " market_type => 'perpetual', tick_size => 0.1, lot_size => 1, min_notional => 0, multiplier => %s)",
        [exchange, symbol, Decimal(multiplier)],
    )


# a perpetual spread trade buying on okx (BTC-USDT-SWAP, seeded) and selling on bybit (BTCUSDT)
PERPETUALS = {"buy_exchange": "okx", "sell_exchange": "bybit", "market_type": "perpetual"}
PERPETUAL_PRICES = {"buy_price": Decimal("60000"), "sell_price": Decimal("60100")}


def list_binance_eth_btc(conn: psycopg.Connection) -> None:
    """ETH/BTC spot on binance: an instrument quoted in BTC, not USDT."""
    call(
        conn,
        "ref.upsert_instrument",
        exchange="binance",
        symbol="ETHBTC",
        base_asset="ETH",
        quote_asset="BTC",
        market_type="spot",
        tick_size=Decimal("0.00001"),
        lot_size=Decimal("0.001"),
        min_notional=Decimal("0"),
    )


def list_okx_btc_spot(conn: psycopg.Connection) -> None:
    """BTC/USDT spot on okx too (the seed lists it on binance only): a pair for spread trades."""
    list_spot(conn, "okx", "BTC-USDT", min_notional=Decimal("5"))


def open_spread(conn: psycopg.Connection, quantity: str = "2", **kwargs: Any) -> int:
    """alpha's spread trade of BTC/USDT, buying on binance at 100 and selling on okx at 101, unless
    kwargs say otherwise; returns its id."""
    kwargs.setdefault("strategy", "alpha")
    kwargs.setdefault("buy_price", Decimal("100"))
    kwargs.setdefault("sell_price", Decimal("101"))
    kwargs.setdefault("buy_exchange", "binance")
    kwargs.setdefault("sell_exchange", "okx")
    kwargs.setdefault("symbol", "BTC/USDT")
    return call(conn, "trading.open_spread_trade", quantity=Decimal(quantity), **kwargs)


def legs(conn: psycopg.Connection, spread_trade_id: int) -> tuple[int, int]:
    """The buy and the sell order of a spread trade."""
    return conn.execute(
        "select buy_order_id, sell_order_id from trading.spread_trades where spread_trade_id = %s",
        [spread_trade_id],
    ).fetchone()


def place(
    conn: psycopg.Connection,
    side: str,
    quantity: str,
    price: str | None = None,
    *,
    strategy: str = "alpha",
    exchange: str = "binance",
    symbol: str = "BTCUSDT",
    **kwargs: Any,
) -> int:
    return call(
        conn,
        "trading.place_order",
        strategy=strategy,
        exchange=exchange,
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity),
        price=None if price is None else Decimal(price),
        **kwargs,
    )


_trade_counter = iter(range(1, 10**9))


def fill(conn: psycopg.Connection, order_id: int, quantity: str, price: str, **kwargs: Any) -> int:
    kwargs.setdefault("exchange_trade_id", f"x{next(_trade_counter)}")
    return call(
        conn,
        "trading.record_fill",
        order_id=order_id,
        quantity=Decimal(quantity),
        price=Decimal(price),
        **kwargs,
    )


def trade(conn: psycopg.Connection, side: str, quantity: str, price: str, **kwargs: Any) -> int:
    """Place an order and fill it completely at one price; returns the trade id."""
    fill_args = {k: kwargs.pop(k) for k in ("fee", "fee_currency", "fee_quote", "executed_at") if k in kwargs}
    order_id = place(conn, side, quantity, price, **kwargs)
    return fill(conn, order_id, quantity, price, **fill_args)


def waits_for_a_lock(
    conn: psycopg.Connection, pid: int, event: str | None = None, ended: Callable[[], bool] = lambda: False
) -> bool:
    """Whether backend pid comes to wait for a lock (of this wait event, e.g. 'advisory', if
    given) within 30 s; False as soon as ``ended()`` says its work ended without waiting."""
    for _ in range(300):
        waiting = conn.execute(
            "select wait_event from pg_stat_activity where pid = %s and wait_event_type = 'Lock'", [pid]
        ).fetchone()
        if waiting is not None and (event is None or waiting[0] == event):
            return True
        if ended():
            return False
        time.sleep(0.1)
    return False


def race(
    monitor: psycopg.Connection,
    url: str,
    first: Callable[[psycopg.Connection], Any],
    second: Callable[[psycopg.Connection], Any],
    *,
    commit: bool = True,
    wait_event: str | None = None,
    must_wait: bool = True,
) -> tuple[Any, Any]:
    """Run first in an open transaction, then second in an autocommit session, which must come to
    wait for a lock (of wait_event, if given) unless not must_wait (it may then end, refused, before
    it waits); end first (commit, or roll back), and return first's result and second's (or the
    psycopg error it raised)."""

    def attempt(conn: psycopg.Connection) -> Any:
        try:
            return second(conn)
        except psycopg.Error as exc:  # returned for the test to assert on
            return exc

    with (
        psycopg.connect(url) as holder,
        psycopg.connect(url, autocommit=True) as other,
        ThreadPoolExecutor(1) as pool,
    ):
        held = first(holder)
        running = pool.submit(attempt, other)
        waited = waits_for_a_lock(monitor, other.info.backend_pid, wait_event, running.done)
        if commit:
            holder.commit()
        else:
            holder.rollback()
        result = running.result(timeout=30)
    assert waited or not must_wait, "the second session did not wait for the first"
    return held, result


def expect_refusal(
    conn: psycopg.Connection, sqlstate: str, message: str, action: Callable[[], Any]
) -> psycopg.Error:
    """Run action; it must raise sqlstate with this message and leave every table as it was."""
    before = counts(conn)
    with pytest.raises(psycopg.Error) as caught:
        action()
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (sqlstate, message)
    assert counts(conn) == before
    return caught.value
