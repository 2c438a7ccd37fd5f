"""An independent reference model of orders, fills, positions and funding (issue 8, item 2).

Pure Python on Decimal: it never asks the database how to compute anything. It follows the rules in
the README ("The trading model", "Orders") and reproduces PostgreSQL's numeric rounding where the SQL
rounds: an average (entry or fill price) is ``round(numerator * 1.000…(24 zeros) / divisor, 18)``,
where PostgreSQL first divides at the numerator's scale (its digits after the point, at least 24)
rounding half away from zero, then rounds to 18; realized PnL is rounded to 12 decimals.
tests/test_reliability_model.py drives the SQL API and this model side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal, localcontext

_ONE_24 = Decimal("1.000000000000000000000000")
# why: Python's default 28 digits would round products PostgreSQL's numeric keeps exact
EXACT = Context(prec=400)
WORKING = ("new", "open", "partially_filled")
# why: the legal moves of trading.is_legal_transition, written out again from the README
_LEGAL = {
    "new": {"open", "partially_filled", "filled", "cancelled", "rejected", "expired"},
    "open": {"partially_filled", "filled", "cancelled", "expired"},
    "partially_filled": {"filled", "cancelled", "expired"},
    "cancelled": {"filled"},
    "expired": {"filled"},
}


class IllegalTransition(Exception):
    """The model refuses a state change: the database must raise 55S01."""


def round_half_up(value: Decimal, places: int) -> Decimal:
    """PostgreSQL's round(numeric, places): half away from zero."""
    with localcontext(EXACT):
        return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def weighted_average(numerator: Decimal, divisor: Decimal) -> Decimal:
    """round(numerator * 1.0(24) / divisor, 18) as PostgreSQL computes it."""
    with localcontext(EXACT) as ctx:
        scaled = numerator * _ONE_24
        # PostgreSQL divides at the larger scale of its operands (the quotient's 16 significant
        # digits never exceed it here: averages of prices are far above 1e-8), rounding half up;
        # truncating at 400 digits first keeps that rounding exact
        scale = max(-scaled.as_tuple().exponent, -divisor.as_tuple().exponent)  # type: ignore[operator]
        ctx.rounding = ROUND_DOWN
        quotient = scaled / divisor
    return round_half_up(round_half_up(quotient, scale), 18)


@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str
    base: str
    quote: str
    market_type: str
    tick: Decimal
    lot: Decimal
    min_notional: Decimal
    multiplier: Decimal


# as tests/db_fixtures.py seeds them (the test checks ref.instruments against this)
INSTRUMENTS = (
    Instrument(
        "binance",
        "BTCUSDT",
        "BTC",
        "USDT",
        "spot",
        Decimal("0.01"),
        Decimal("0.0001"),
        Decimal(5),
        Decimal(1),
    ),
    Instrument(
        "binance", "BNBUSDT", "BNB", "USDT", "spot", Decimal("0.1"), Decimal("0.001"), Decimal(5), Decimal(1)
    ),
    Instrument(
        "kraken", "ETHUSD", "ETH", "USD", "spot", Decimal("0.01"), Decimal("0.001"), Decimal(0), Decimal(1)
    ),
    Instrument(
        "okx",
        "BTC-USDT-SWAP",
        "BTC",
        "USDT",
        "perpetual",
        Decimal("0.1"),
        Decimal(1),
        Decimal(0),
        Decimal("0.01"),
    ),
)
PERPETUAL = INSTRUMENTS[3]


@dataclass
class Order:
    order_id: int
    strategy: str
    instrument: Instrument
    side: str
    quantity: Decimal
    price: Decimal | None
    order_type: str
    client_order_id: str | None
    status: str = "new"
    filled: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    # (from_status, to_status, trade_id) in the order they happened
    events: list[tuple[str | None, str, int | None]] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    def move(self, to: str, trade_id: int | None = None) -> None:
        if to not in _LEGAL.get(self.status, set()):
            raise IllegalTransition(f"{self.status} -> {to}")
        self.events.append((self.status, to, trade_id))
        self.status = to


@dataclass
class Trade:
    trade_id: int
    order_id: int
    exchange_trade_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    fee_quote: Decimal
    position_delta: Decimal
    realized_pnl_gross: Decimal
    is_late: bool


@dataclass
class Position:
    quantity: Decimal = Decimal(0)
    avg_entry_price: Decimal | None = None
    realized_pnl_gross: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)
    funding: Decimal = Decimal(0)
    trade_count: int = 0
    # paid_at -> amount
    payments: dict[object, Decimal] = field(default_factory=dict)

    @property
    def realized_pnl(self) -> Decimal:
        return self.realized_pnl_gross - self.fees_paid + self.funding

    def unrealized(self, mark: Decimal, multiplier: Decimal) -> Decimal:
        if self.quantity == 0:
            return Decimal(0)
        assert self.avg_entry_price is not None
        with localcontext(EXACT):
            return round_half_up(self.quantity * multiplier * (mark - self.avg_entry_price), 12)

    def apply(self, delta: Decimal, price: Decimal, multiplier: Decimal) -> Decimal:
        """Average cost: apply a signed quantity change at a price; returns the realized gross PnL."""
        with localcontext(EXACT):
            return self._apply(delta, price, multiplier)

    def _apply(self, delta: Decimal, price: Decimal, multiplier: Decimal) -> Decimal:
        quantity, entry = self.quantity, self.avg_entry_price
        if quantity == 0 or delta == 0 or (delta > 0) == (quantity > 0):
            new = quantity + delta
            if new == 0:
                self.avg_entry_price = None
            elif quantity == 0:
                self.avg_entry_price = price
            else:
                assert entry is not None
                self.avg_entry_price = weighted_average(quantity * entry + delta * price, new)
            self.quantity = new
            return Decimal(0)
        assert entry is not None
        closed = min(abs(delta), abs(quantity))
        direction = 1 if quantity > 0 else -1
        realized = round_half_up(closed * multiplier * (price - entry) * direction, 12)
        new = quantity + delta
        if new == 0:
            self.avg_entry_price = None
        elif (new > 0) != (quantity > 0):
            self.avg_entry_price = price
        self.quantity = new
        self.realized_pnl_gross += realized
        return realized


def fee_effect(
    instrument: Instrument, fee: Decimal, currency: str, price: Decimal, fee_quote: Decimal | None
):
    """(fee value in the quote asset, base quantity it takes) as the README's fee rules say."""
    if fee == 0:
        return Decimal(0), Decimal(0)
    if currency == instrument.quote:
        return fee, Decimal(0)
    if currency == instrument.base:
        return fee * price, (fee if instrument.market_type in ("spot", "margin") else Decimal(0))
    assert fee_quote is not None, "the model values third-currency fees only through fee_quote"
    return fee_quote, Decimal(0)


@dataclass
class Book:
    """Everything one example did: orders, trades and positions of its own strategies."""

    orders: dict[int, Order] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    positions: dict[tuple[str, Instrument], Position] = field(default_factory=dict)

    def position(self, strategy: str, instrument: Instrument) -> Position:
        return self.positions.setdefault((strategy, instrument), Position())

    def place(self, order: Order) -> None:
        order.events.append((None, "new", None))
        self.orders[order.order_id] = order

    def fill(
        self,
        order: Order,
        trade_id: int,
        exchange_trade_id: str,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        currency: str,
        fee_quote: Decimal | None,
    ) -> Trade:
        with localcontext(EXACT):
            return self._fill(order, trade_id, exchange_trade_id, quantity, price, fee, currency, fee_quote)

    def _fill(
        self,
        order: Order,
        trade_id: int,
        exchange_trade_id: str,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        currency: str,
        fee_quote: Decimal | None,
    ) -> Trade:
        assert order.status != "rejected" and quantity <= order.remaining
        value, base_fee = fee_effect(order.instrument, fee, currency, price, fee_quote)
        delta = (quantity if order.side == "buy" else -quantity) - base_fee
        position = self.position(order.strategy, order.instrument)
        realized = position.apply(delta, price, order.instrument.multiplier)
        position.fees_paid += value
        position.trade_count += 1
        trade = Trade(
            trade_id,
            order.order_id,
            exchange_trade_id,
            quantity,
            price,
            fee,
            currency,
            value,
            delta,
            realized,
            order.status in ("cancelled", "expired"),
        )
        self.trades.append(trade)
        numerator = (order.avg_fill_price or Decimal(0)) * order.filled + price * quantity
        order.filled += quantity
        order.avg_fill_price = weighted_average(numerator, order.filled)
        if order.filled == order.quantity:
            order.move("filled", trade_id)
        elif order.status not in ("cancelled", "expired", "partially_filled"):
            order.move("partially_filled", trade_id)
        return trade

    def close(self, order: Order, to: str) -> None:
        """cancel / reject / expire: a no-op when already there, else a legal move or IllegalTransition."""
        if order.status != to:
            order.move(to)

    def acknowledge(self, order: Order) -> None:
        if order.status == "rejected":
            raise IllegalTransition("rejected -> open")
        if order.status == "new":
            order.move("open")

    def fund(self, strategy: str, paid_at: object, amount: Decimal) -> bool:
        """Record a payment; False when the same payment is already there (the database's no-op)."""
        position = self.position(strategy, PERPETUAL)
        if paid_at in position.payments:
            assert position.payments[paid_at] == amount
            return False
        position.payments[paid_at] = amount
        with localcontext(EXACT):
            position.funding += amount
        return True
