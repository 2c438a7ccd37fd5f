"""Model-based property tests of the trading API (issue 8, item 2).

A hypothesis state machine places, fills (in parts, completely, late, twice), acknowledges, cancels,
rejects and expires orders and records funding, across two strategies and the four seeded
instruments, through the SQL API with named arguments. After every step the orders, their events,
the trades, the positions and trading.get_position equal the reference model in
tests/reliability_model.py exactly; at the end of every example pnl_summary agrees with it and
ops.check_invariants() finds nothing. A rule sends invalid calls, one defect each: each raises the
documented SQLSTATE of its defect (a code of ops.error_codes) and writes nothing.

Each example gets two new strategies (create_strategy is idempotent on name, so new names are new
positions) and its own client order id and exchange trade id prefixes, so examples share one
database without seeing each other. Mark prices are always given, so nothing depends on the fills
of other examples.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any, ClassVar

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from reliability import SOAK, Tally, scaled
from reliability_model import (
    EXACT,
    INSTRUMENTS,
    PERPETUAL,
    WORKING,
    Book,
    IllegalTransition,
    Instrument,
    Order,
)
from trading_helpers import call, counts, rows

_examples = itertools.count(1)
# why a fixed origin: fill and funding times spread over the last days, whole hours for funding
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
NAN, INF = Decimal("NaN"), Decimal("Infinity")
BAD_TIMES = (datetime(2001, 1, 1, tzinfo=UTC), NOW + timedelta(days=3), "infinity", "-infinity")


class TradingMachine(RuleBasedStateMachine):
    """The SQL API and the reference model, step by step. Set conn, tally and codes on a subclass."""

    conn: ClassVar[psycopg.Connection]
    tally: ClassVar[Tally]
    codes: ClassVar[frozenset[str]]

    def __init__(self) -> None:
        super().__init__()
        self.tag = f"rm{next(_examples)}"
        self.strategies = (f"{self.tag}-a", f"{self.tag}-b")
        for name in self.strategies:
            call(self.conn, "trading.create_strategy", name=name)
        self.book = Book()
        self.serial = itertools.count(1)
        self.funding_ids: dict[tuple[str, datetime], int] = {}
        # trade id -> the record_fill arguments it was recorded with (for the duplicates)
        self.fill_args: dict[int, dict[str, Any]] = {}

    # -- helpers -------------------------------------------------------------------------------

    def key(self, what: str) -> str:
        return f"{self.tag}-{what}{next(self.serial)}"

    def orders(self, accept: Callable[[Order], bool]) -> list[Order]:
        return [order for _, order in sorted(self.book.orders.items()) if accept(order)]

    def refused(self, sqlstate: str, function: str, **kwargs: Any) -> None:
        """The call raises ``sqlstate`` (a documented code) and no business or audit row changes."""
        assert sqlstate in self.codes
        before = counts(self.conn)
        with pytest.raises(psycopg.Error) as caught:
            call(self.conn, function, **kwargs)
        assert caught.value.sqlstate == sqlstate, (function, kwargs, caught.value)
        assert counts(self.conn) == before
        self.tally.error(caught.value)

    def unchanged(self, function: str, expected: int, **kwargs: Any) -> None:
        """A retried call returns the first call's id and writes nothing."""
        before = counts(self.conn)
        assert call(self.conn, function, **kwargs) == expected
        assert counts(self.conn) == before

    def draw_fill(self, data: st.DataObject, order: Order, quantity: Decimal) -> dict[str, Any]:
        """Arguments of a valid fill of ``quantity``: a price, a fee of some kind, a time."""
        instrument = order.instrument
        if order.price is None:
            price = data.draw(st.integers(1, 10**6)) * instrument.tick
        else:
            price = max(order.price + data.draw(st.integers(-500, 500)) * instrument.tick, instrument.tick)
        args: dict[str, Any] = {"quantity": quantity, "price": price}
        kind = data.draw(st.sampled_from(["none", "quote", "base", "third"]))
        if kind == "quote":
            args["fee"] = Decimal(data.draw(st.integers(-100, 10_000))).scaleb(-4)
            args["fee_currency"] = data.draw(
                st.sampled_from([instrument.quote, instrument.quote.lower(), None])
            )
        elif kind == "base":
            # a spot base fee (or rebate) is a part of the quantity, smaller than it; a perpetual's is
            # only valued
            args["fee"] = (quantity * data.draw(st.integers(-99, 99))).scaleb(-4)
            args["fee_currency"] = instrument.base
        elif kind == "third":
            args["fee"] = Decimal(data.draw(st.integers(1, 1000))).scaleb(-5)
            args["fee_currency"] = "ETH" if "BNB" in (instrument.base, instrument.quote) else "BNB"
            args["fee_quote"] = Decimal(data.draw(st.integers(0, 10**6))).scaleb(-6)
        minutes = data.draw(st.none() | st.integers(0, 4000))
        if minutes is not None:
            args["executed_at"] = NOW - timedelta(minutes=minutes)
        self.tally.op(f"fees: {kind}")
        return args

    def fill(self, data: st.DataObject, order: Order, quantity: Decimal, kind: str) -> None:
        args = self.draw_fill(data, order, quantity)
        exchange_trade_id = self.key("t")
        trade_id = call(
            self.conn,
            "trading.record_fill",
            order_id=order.order_id,
            exchange_trade_id=exchange_trade_id,
            **args,
        )
        currency = (args.get("fee_currency") or order.instrument.quote).upper()
        self.fill_args[trade_id] = args
        self.book.fill(
            order,
            trade_id,
            exchange_trade_id,
            quantity,
            args["price"],
            args.get("fee", Decimal(0)),
            currency,
            args.get("fee_quote"),
        )
        self.tally.op(kind)

    def close(self, order: Order, to: str, function: str, kind: str) -> None:
        try:
            self.book.close(order, to)
        except IllegalTransition:
            self.refused("55S01", function, order_id=order.order_id, reason="model")
            return
        call(self.conn, function, order_id=order.order_id, reason="model")
        self.tally.op(kind)

    # -- rules ---------------------------------------------------------------------------------

    @initialize(data=st.data(), orders=st.integers(1, 3))
    def first_orders(self, data: st.DataObject, orders: int) -> None:
        # why: hypothesis enables a random subset of the rules in each example; without orders to
        # start with, an example that leaves place out would only ever record funding
        for _ in range(orders):
            self.place(data)

    @rule(data=st.data())
    def place(self, data: st.DataObject) -> None:
        strategy = data.draw(st.sampled_from(self.strategies))
        instrument: Instrument = data.draw(st.sampled_from(INSTRUMENTS))
        side = data.draw(st.sampled_from(["buy", "sell"]))
        # market orders only where no minimum notional applies: theirs is checked at the market price
        market = instrument.min_notional == 0 and data.draw(st.booleans())
        price = None if market else data.draw(st.integers(1, 10**7)) * instrument.tick
        lots = data.draw(st.integers(1, 5000))
        if price is not None:
            least = instrument.min_notional / (instrument.lot * price * instrument.multiplier)
            lots = max(lots, int(least.to_integral_value(rounding=ROUND_CEILING)))
        quantity = lots * instrument.lot
        client_order_id = self.key("c") if data.draw(st.booleans()) else None
        order_id = call(
            self.conn,
            "trading.place_order",
            strategy=strategy,
            exchange=instrument.exchange,
            symbol=instrument.symbol,
            side=side,
            quantity=quantity,
            price=price,
            client_order_id=client_order_id,
        )
        self.book.place(
            Order(
                order_id,
                strategy,
                instrument,
                side,
                quantity,
                price,
                "market" if market else "limit",
                client_order_id,
            )
        )
        self.tally.op("places")

    @precondition(lambda self: any(o.client_order_id for o in self.book.orders.values()))
    @rule(data=st.data())
    def retry_place(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from(self.orders(lambda o: o.client_order_id is not None)))
        self.unchanged(
            "trading.place_order",
            order.order_id,
            strategy=order.strategy,
            exchange=order.instrument.exchange,
            symbol=order.instrument.symbol,
            side=order.side,
            quantity=order.quantity,
            price=order.price,
            client_order_id=order.client_order_id,
        )
        self.tally.op("retried places")

    @precondition(lambda self: any(o.status in WORKING for o in self.book.orders.values()))
    @rule(data=st.data())
    def fill_part(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from(self.orders(lambda o: o.status in WORKING)))
        lots = data.draw(st.integers(1, int(order.remaining / order.instrument.lot)))
        self.fill(data, order, lots * order.instrument.lot, "fills")

    @precondition(lambda self: any(o.status in WORKING for o in self.book.orders.values()))
    @rule(data=st.data())
    def fill_rest(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from(self.orders(lambda o: o.status in WORKING)))
        self.fill(data, order, order.remaining, "complete fills")

    @precondition(
        lambda self: any(
            o.status in ("cancelled", "expired") and o.remaining for o in self.book.orders.values()
        )
    )
    @rule(data=st.data(), complete=st.booleans())
    def late_fill(self, data: st.DataObject, complete: bool) -> None:
        order = data.draw(
            st.sampled_from(self.orders(lambda o: o.status in ("cancelled", "expired") and o.remaining > 0))
        )
        lots = int(order.remaining / order.instrument.lot)
        quantity = order.remaining if complete else data.draw(st.integers(1, lots)) * order.instrument.lot
        self.fill(data, order, quantity, "late fills")

    @precondition(lambda self: bool(self.book.trades))
    @rule(data=st.data(), conflicting=st.booleans())
    def redeliver_fill(self, data: st.DataObject, conflicting: bool) -> None:
        """A fill delivered again: the same values give the same trade id and write nothing; another
        quantity or price under the same exchange trade id is 23S06 and writes nothing."""
        trade = data.draw(st.sampled_from(self.book.trades))
        args = dict(self.fill_args[trade.trade_id])
        key = {"order_id": trade.order_id, "exchange_trade_id": trade.exchange_trade_id}
        if not conflicting:
            self.unchanged("trading.record_fill", trade.trade_id, **key, **args)
            self.tally.op("duplicate fills")
            return
        lot, tick = (
            self.book.orders[trade.order_id].instrument.lot,
            self.book.orders[trade.order_id].instrument.tick,
        )
        if data.draw(st.booleans()):
            args["quantity"] = trade.quantity + lot
        else:
            args["price"] = trade.price + tick
        self.refused("23S06", "trading.record_fill", **key, **args)
        self.tally.op("conflicting duplicate fills")

    @precondition(lambda self: bool(self.book.orders))
    @rule(data=st.data(), change=st.sampled_from(["acknowledge", "cancel", "reject", "expire"]))
    def change_status(self, data: st.DataObject, change: str) -> None:
        """Acknowledge, cancel, reject or expire any order: legal moves apply, repeats are no-ops,
        illegal ones raise 55S01 and write nothing."""
        order = data.draw(st.sampled_from(self.orders(lambda o: True)))
        if change != "acknowledge":
            to = {"cancel": "cancelled", "reject": "rejected", "expire": "expired"}[change]
            self.close(order, to, f"trading.{change}_order", f"{change}s")
            return
        try:
            self.book.acknowledge(order)
        except IllegalTransition:
            self.refused("55S01", "trading.acknowledge_order", order_id=order.order_id)
            return
        # an order's exchange id is one (another is 23S06): the same on every acknowledgement
        exchange_order_id = f"{self.tag}-x{order.order_id}"
        call(
            self.conn,
            "trading.acknowledge_order",
            order_id=order.order_id,
            exchange_order_id=exchange_order_id,
        )
        self.tally.op("acknowledges")

    @rule(strategy=st.integers(0, 1), hours=st.integers(0, 200), amount=st.integers(-(10**6), 10**6))
    def funding(self, strategy: int, hours: int, amount: int) -> None:
        name, paid_at, value = (
            self.strategies[strategy],
            NOW - timedelta(hours=hours),
            Decimal(amount).scaleb(-4),
        )
        known = self.book.position(name, PERPETUAL).payments.get(paid_at)
        args = {
            "strategy": name,
            "exchange": PERPETUAL.exchange,
            "symbol": PERPETUAL.symbol,
            "paid_at": paid_at,
        }
        if known is None:
            funding_id = call(self.conn, "trading.record_funding", amount=value, **args)
            self.book.fund(name, paid_at, value)
            self.funding_ids[(name, paid_at)] = funding_id
            self.tally.op("funding payments")
        elif known == value:
            self.unchanged("trading.record_funding", self.funding_ids[(name, paid_at)], amount=value, **args)
            self.tally.op("repeated funding payments")
        else:
            self.refused("23S06", "trading.record_funding", amount=value, **args)
            self.tally.op("conflicting funding payments")

    @precondition(lambda self: bool(self.funding_ids))
    @rule(data=st.data(), conflicting=st.booleans())
    def repeat_funding(self, data: st.DataObject, conflicting: bool) -> None:
        name, paid_at = data.draw(st.sampled_from(sorted(self.funding_ids)))
        amount = self.book.position(name, PERPETUAL).payments[paid_at]
        args = {
            "strategy": name,
            "exchange": PERPETUAL.exchange,
            "symbol": PERPETUAL.symbol,
            "paid_at": paid_at,
        }
        if conflicting:
            self.refused("23S06", "trading.record_funding", amount=amount + Decimal("0.0001"), **args)
            self.tally.op("conflicting funding payments")
        else:
            self.unchanged("trading.record_funding", self.funding_ids[(name, paid_at)], amount=amount, **args)
            self.tally.op("repeated funding payments")

    @rule(data=st.data())
    def invalid_call(self, data: st.DataObject) -> None:
        invalid = data.draw(st.sampled_from([i for i in INVALID_CALLS if i.applies(self)]))
        self.refused(invalid.sqlstate, invalid.function, **invalid.build(self, data))
        self.tally.op("invalid calls")

    # -- the model and the database agree ------------------------------------------------------

    @invariant()
    def database_equals_model(self) -> None:
        conn, book = self.conn, self.book
        names = list(self.strategies)
        stored_orders = conn.execute(
            "select o.order_id, s.name, i.symbol, o.side::text, o.order_type::text, o.quantity, o.price,"
            "       o.client_order_id, o.status::text, o.filled_quantity, o.avg_fill_price"
            " from trading.orders o join trading.strategies s using (strategy_id)"
            " join ref.instruments i using (instrument_id) where s.name = any(%s) order by o.order_id",
            [names],
        ).fetchall()
        assert stored_orders == [
            (
                o.order_id,
                o.strategy,
                o.instrument.symbol,
                o.side,
                o.order_type,
                o.quantity,
                o.price,
                o.client_order_id,
                o.status,
                o.filled,
                o.avg_fill_price,
            )
            for o in self.orders(lambda o: True)
        ]
        events = conn.execute(
            "select order_id, from_status::text, to_status::text, trade_id from trading.order_events"
            " where order_id = any(%s) order by order_id, event_id",
            [list(book.orders)],
        ).fetchall()
        assert events == [(o.order_id, *event) for o in self.orders(lambda o: True) for event in o.events]
        trades = conn.execute(
            "select t.trade_id, t.order_id, t.exchange_trade_id, t.quantity, t.price, t.fee, t.fee_currency,"
            "       t.fee_quote, t.position_delta, t.realized_pnl_gross, t.is_late"
            " from trading.trades t join trading.strategies s using (strategy_id)"
            " where s.name = any(%s) order by t.trade_id",
            [names],
        ).fetchall()
        assert trades == [
            (
                t.trade_id,
                t.order_id,
                t.exchange_trade_id,
                t.quantity,
                t.price,
                t.fee,
                t.fee_currency,
                t.fee_quote,
                t.position_delta,
                t.realized_pnl_gross,
                t.is_late,
            )
            for t in book.trades
        ]
        positions = conn.execute(
            "select s.name, i.symbol, p.quantity, p.avg_entry_price, p.realized_pnl_gross, p.fees_paid,"
            "       p.funding, p.realized_pnl, p.trade_count"
            " from trading.positions p join trading.strategies s using (strategy_id)"
            " join ref.instruments i using (instrument_id) where s.name = any(%s) order by 1, 2",
            [names],
        ).fetchall()
        assert positions == sorted(
            (
                name,
                i.symbol,
                p.quantity,
                p.avg_entry_price,
                p.realized_pnl_gross,
                p.fees_paid,
                p.funding,
                p.realized_pnl,
                p.trade_count,
            )
            for (name, i), p in book.positions.items()
        )
        for (name, instrument), p in sorted(
            book.positions.items(), key=lambda item: (item[0][0], item[0][1].symbol)
        ):
            mark = (p.avg_entry_price or Decimal(1000)) + 7 * instrument.tick
            got = rows(
                conn,
                "trading.get_position",
                strategy=name,
                exchange=instrument.exchange,
                symbol=instrument.symbol,
                mark_price=mark,
            )
            assert got == [
                {
                    "quantity": p.quantity,
                    "avg_entry_price": p.avg_entry_price,
                    "realized_pnl_gross": p.realized_pnl_gross,
                    "fees_paid": p.fees_paid,
                    "funding": p.funding,
                    "realized_pnl": p.realized_pnl,
                    "unrealized_pnl": p.unrealized(mark, instrument.multiplier),
                    "mark": mark,
                }
            ]

    def teardown(self) -> None:
        for name in self.strategies:
            mine = [(i, p) for (owner, i), p in self.book.positions.items() if owner == name]
            trades = [t for t in self.book.trades if self.book.orders[t.order_id].strategy == name]
            total = rows(self.conn, "trading.pnl_summary", strategy=name, group_by="total")
            # one total per quote asset: amounts in USD and in USDT are never added up
            quotes = sorted({i.quote for i, _ in mine})
            assert [
                (
                    r["quote_asset"],
                    r["trades"],
                    r["volume"],
                    r["fees"],
                    r["realized_pnl_gross"],
                    r["funding"],
                    r["realized_pnl"],
                )
                for r in total
            ] == [
                (
                    quote,
                    sum(1 for t in trades if self.book.orders[t.order_id].instrument.quote == quote),
                    sum(
                        (
                            t.quantity
                            for t in trades
                            if self.book.orders[t.order_id].instrument.quote == quote
                        ),
                        Decimal(0),
                    ),
                    sum((p.fees_paid for i, p in mine if i.quote == quote), Decimal(0)),
                    sum((p.realized_pnl_gross for i, p in mine if i.quote == quote), Decimal(0)),
                    sum((p.funding for i, p in mine if i.quote == quote), Decimal(0)),
                    sum((p.realized_pnl for i, p in mine if i.quote == quote), Decimal(0)),
                )
                for quote in quotes
            ]
        assert self.tally.check(self.conn) == []


# -- invalid calls: one defect each, and the SQLSTATE that defect must raise ---------------------


@dataclass(frozen=True)
class Invalid:
    sqlstate: str
    function: str
    # (machine, data) -> the call's named arguments
    build: Callable[[TradingMachine, st.DataObject], dict[str, Any]]
    # the machine has something to aim the call at
    applies: Callable[[TradingMachine], bool] = lambda machine: True


def _order_args(machine: TradingMachine, **changes: Any) -> dict[str, Any]:
    """A valid limit order on binance BTCUSDT (notional 500), with ``changes``."""
    args = {
        "strategy": machine.strategies[0],
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "side": "buy",
        "quantity": Decimal("0.0100"),
        "price": Decimal("50000.00"),
    }
    return args | changes


def _place(sqlstate: str, pick: Callable[[st.DataObject], dict[str, Any]]) -> Invalid:
    return Invalid(sqlstate, "trading.place_order", lambda m, d: _order_args(m, **pick(d)))


def _one_of(name: str, values: list[Any]) -> Callable[[st.DataObject], dict[str, Any]]:
    return lambda data: {name: data.draw(st.sampled_from(values))}


def _fillable(machine: TradingMachine) -> list[Order]:
    return machine.orders(lambda o: o.status != "rejected" and o.remaining > 0)


def _fill(
    sqlstate: str,
    pick: Callable[[st.DataObject, Order], dict[str, Any]],
    orders: Callable[[TradingMachine], list[Order]] = _fillable,
) -> Invalid:
    """A fill of one of ``orders``: a valid one-lot fill with ``pick``'s changes."""

    def build(machine: TradingMachine, data: st.DataObject) -> dict[str, Any]:
        order = data.draw(st.sampled_from(orders(machine)))
        args = {
            "order_id": order.order_id,
            "exchange_trade_id": machine.key("bad"),
            "quantity": order.instrument.lot,
            "price": order.price or order.instrument.tick,
        }
        return args | pick(data, order)

    return Invalid(sqlstate, "trading.record_fill", build, lambda machine: bool(orders(machine)))


def _funding(sqlstate: str, pick: Callable[[st.DataObject], dict[str, Any]]) -> Invalid:
    def build(machine: TradingMachine, data: st.DataObject) -> dict[str, Any]:
        args = {
            "strategy": machine.strategies[1],
            "exchange": "okx",
            "symbol": "BTC-USDT-SWAP",
            "amount": Decimal("1.5"),
            "paid_at": NOW - timedelta(hours=500),
        }
        return args | pick(data)

    return Invalid(sqlstate, "trading.record_funding", build)


def _read(sqlstate: str, function: str, args: dict[str, Any]) -> Invalid:
    return Invalid(sqlstate, function, lambda m, d: {"strategy": m.strategies[0]} | args)


_BAD_QUANTITIES = [Decimal(0), Decimal("-0.0100"), NAN, INF, -INF, None]
_BAD_PRICES = [Decimal(0), Decimal("-50000.00"), NAN, INF, -INF]

INVALID_CALLS: list[Invalid] = [
    _place("22S01", _one_of("quantity", _BAD_QUANTITIES)),
    _place("22S02", _one_of("price", _BAD_PRICES)),
    _place("22S02", lambda d: {"price": None, "order_type": "limit"}),
    _place("22S02", lambda d: {"price": None, "order_type": "stop_market"}),
    _place("22S03", _one_of("price", [Decimal("50000.005"), Decimal("0.001"), Decimal("50000.0001")])),
    _place("22S03", lambda d: {"order_type": "stop_limit", "stop_price": Decimal("49999.995")}),
    _place("22S04", _one_of("quantity", [Decimal("0.01005"), Decimal("0.00001"), Decimal("1.00000001")])),
    _place(
        "22S05",
        lambda d: {
            "quantity": Decimal("0.0001"),
            "price": d.draw(st.sampled_from([Decimal("100.00"), Decimal("49999.99"), Decimal("0.01")])),
        },
    ),
    _place(
        "22S05", lambda d: {"symbol": "BNBUSDT", "quantity": Decimal("0.001"), "price": Decimal("4999.9")}
    ),
    _place("22S06", _one_of("side", ["BUY", "Sell", "hold", "", " buy", None])),
    _place("22S07", _one_of("order_type", ["lmt", "LIMIT", "", "stop"])),
    _place("22S07", lambda d: {"order_type": "market"}),
    _place("22S07", lambda d: {"stop_price": Decimal("49000.00")}),
    _place("22S09", _one_of("placed_at", list(BAD_TIMES))),
    _place("23S01", _one_of("exchange", ["binanse", "", "BINANCE"])),
    _place("23S02", _one_of("symbol", ["ETHUSD", "btcusdt", "BTC-USDT-SWAP", ""])),
    _place("23S03", _one_of("strategy", ["no-such-strategy", "", "ALPHA"])),
    _fill("23S04", lambda d, o: {"order_id": d.draw(st.sampled_from([-1, 0, 10**15]))}),
    _fill("22S09", lambda d, o: {"exchange_trade_id": d.draw(st.sampled_from(["", None]))}),
    _fill("22S01", lambda d, o: {"quantity": d.draw(st.sampled_from(_BAD_QUANTITIES))}),
    _fill("22S02", lambda d, o: {"price": d.draw(st.sampled_from([*_BAD_PRICES, None]))}),
    _fill("22S09", lambda d, o: {"fee": d.draw(st.sampled_from([NAN, INF, -INF, None]))}),
    _fill("22S09", lambda d, o: {"executed_at": d.draw(st.sampled_from(BAD_TIMES))}),
    _fill(
        "22S09",
        lambda d, o: {
            "fee": Decimal(1),
            "fee_currency": d.draw(st.sampled_from(["us-dt", "", "US DT", "usdt!"])),
        },
    ),
    _fill(
        "23S05",
        lambda d, o: {"quantity": o.remaining + o.instrument.lot},
        lambda m: m.orders(lambda o: o.status != "rejected"),
    ),
    _fill("55S01", lambda d, o: {}, lambda m: m.orders(lambda o: o.status == "rejected")),
    _fill("22S08", lambda d, o: {"fee": Decimal("0.01"), "fee_currency": "ZZZ"}),
    _fill(
        "22S09",
        lambda d, o: {
            "fee": Decimal("0.01"),
            "fee_currency": "ZZZ",
            "fee_quote": d.draw(st.sampled_from([NAN, INF, -INF])),
        },
    ),
    _fill(
        "22S09",
        # a base-asset fee or rebate not smaller in size than the (one-lot) fill
        lambda d, o: {
            "fee": o.instrument.lot * d.draw(st.sampled_from([1, 3, -1, -3])),
            "fee_currency": o.instrument.base,
        },
        lambda m: [o for o in _fillable(m) if o.instrument.market_type == "spot"],
    ),
    Invalid(
        "23S04", "trading.cancel_order", lambda m, d: {"order_id": d.draw(st.sampled_from([-1, 10**15]))}
    ),
    _funding(
        "22S10", lambda d: {"exchange": "binance", "symbol": d.draw(st.sampled_from(["BTCUSDT", "BNBUSDT"]))}
    ),
    _funding("22S09", _one_of("amount", [NAN, INF, -INF, None])),
    _funding("22S09", _one_of("paid_at", list(BAD_TIMES))),
    _funding("23S03", _one_of("strategy", ["no-such-strategy", ""])),
    _funding("23S02", _one_of("symbol", ["BTCUSDT", "BTC-USD-SWAP"])),
    _read("22S02", "trading.get_position", {"exchange": "okx", "symbol": "BTC-USDT-SWAP", "mark_price": NAN}),
    _read(
        "22S02", "trading.get_position", {"exchange": "kraken", "symbol": "ETHUSD", "mark_price": Decimal(-1)}
    ),
    _read("22S09", "trading.pnl_summary", {"group_by": "week"}),
]


@pytest.mark.reliability
def test_random_operations_keep_the_database_equal_to_the_model(
    seeded: psycopg.Connection, tally: Tally
) -> None:
    """Random place / fill / late fill / duplicate / cancel / reject / expire / funding / invalid
    sequences: after every step the database equals the reference model, every refused call raised
    its documented SQLSTATE and wrote nothing, and each example ends with no invariant violated."""
    stored = {
        r[0:2]: r[2:]
        for r in seeded.execute(
            "select e.code, i.symbol, i.base_asset, i.quote_asset, i.market_type::text, i.tick_size,"
            "       i.lot_size, i.min_notional, i.multiplier"
            " from ref.instruments i join ref.exchanges e using (exchange_id)"
        ).fetchall()
    }
    assert {
        (i.exchange, i.symbol): (i.base, i.quote, i.market_type, i.tick, i.lot, i.min_notional, i.multiplier)
        for i in INSTRUMENTS
    } == stored

    class Machine(TradingMachine):
        conn = seeded
        codes = frozenset(r[0] for r in seeded.execute("select sqlstate from ops.error_codes"))

    Machine.tally = tally
    with localcontext(EXACT):
        run_state_machine_as_test(
            Machine,
            settings=settings(
                max_examples=scaled(20, 150),
                stateful_step_count=scaled(25, 60),
                deadline=None,
                derandomize=not SOAK,
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            ),
        )
    assert tally.check(seeded) == []


@pytest.mark.reliability
def test_a_base_asset_rebate_as_large_as_the_fill_is_refused(
    seeded: psycopg.Connection, tally: Tally
) -> None:
    """A sell of 0.001 BTC with a BTC rebate of 0.003 would have added 0.002 BTC to the position
    (and a rebate of exactly 0.001 would have moved nothing): refused like a fee that large, 22S09."""
    call(seeded, "trading.create_strategy", name="rebate")
    order_id = call(
        seeded,
        "trading.place_order",
        strategy="rebate",
        exchange="binance",
        symbol="BTCUSDT",
        side="sell",
        quantity=Decimal("0.0010"),
        price=Decimal("50000.00"),
    )
    before = counts(seeded)
    for fee in (Decimal("-0.0030"), Decimal("-0.0010"), Decimal("0.0010")):
        with pytest.raises(psycopg.errors.DataError) as caught:
            call(
                seeded,
                "trading.record_fill",
                order_id=order_id,
                exchange_trade_id="rebate-1",
                quantity=Decimal("0.0010"),
                price=Decimal("50000.00"),
                fee=fee,
                fee_currency="BTC",
            )
        assert caught.value.sqlstate == "22S09"
        assert "not smaller in size than the fill quantity" in str(caught.value)
        tally.error(caught.value)
    assert counts(seeded) == before
    # a rebate smaller than the fill delivers less than the quantity sold
    call(
        seeded,
        "trading.record_fill",
        order_id=order_id,
        exchange_trade_id="rebate-2",
        quantity=Decimal("0.0010"),
        price=Decimal("50000.00"),
        fee=Decimal("-0.0004"),
        fee_currency="BTC",
    )
    tally.op("fills")
    assert rows(
        seeded,
        "trading.get_position",
        strategy="rebate",
        exchange="binance",
        symbol="BTCUSDT",
        mark_price=Decimal("50000.00"),
    )[0]["quantity"] == Decimal("-0.0006")
    assert tally.check(seeded) == []
