"""A realistic demo trading day, written through the SQL API only.

Six exchanges, spot and perpetual instruments, four strategies: spot arbitrage between exchanges
(BTC and ETH), a spot/perpetual basis trade and a perpetual market maker whose inventory flips
sides. Orders fill in one to three partial fills; some are cancelled part-filled, a few rejected,
some left working. Fees come in the quote asset, in the base asset (Gate.io buys) and in BNB
(Binance spot, valued at the BNBUSDT mid of the fill's time). Perpetual positions pay or receive funding at
00:00, 08:00 and 16:00 UTC of the day: position notional x the perpetual's rate, a long paying a
positive rate; a strategy without a position then gets no payment. Market data of the day (quotes,
ticks, candles, indicators) comes from ``spreadedge.demo_market``, and every order is priced from
it: takers buy at the ask and sell at the bid, the market maker quotes at the touch. The day holds
exactly the number of orders asked for, spread evenly over it.

A database holds one demo day. The demo is written in one transaction, so it is there whole or not
at all; once it is there, running the demo again (on a later day, or with another number of
orders) writes nothing and says which day is loaded. Its ids (``demo-1``, ``demo-t1``) do not
carry the day, and the API would take a second day's orders for retries of the first's. Nor does
it load into a database that already has one of its strategies, instruments or client order ids
(a user's own ``btc-basis``): it would add its trades to that strategy and rewrite that
instrument's rules, so it refuses (23S06) and writes nothing.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import psycopg

from spreadedge import errors, sqlcall


@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str
    base: str
    quote: str
    market_type: str
    tick: Decimal
    lot: Decimal
    min_notional: Decimal = Decimal("5")
    multiplier: Decimal = Decimal("1")


def _i(
    exchange: str, symbol: str, base: str, quote: str, market: str, tick: str, lot: str, **kw: Any
) -> Instrument:
    return Instrument(exchange, symbol, base, quote, market, Decimal(tick), Decimal(lot), **kw)


INSTRUMENTS = [
    _i("binance", "BTCUSDT", "BTC", "USDT", "spot", "0.01", "0.00001"),
    _i("binance", "ETHUSDT", "ETH", "USDT", "spot", "0.01", "0.0001"),
    _i("binance", "BNBUSDT", "BNB", "USDT", "spot", "0.1", "0.001"),
    _i("binance", "BTCUSDT-PERP", "BTC", "USDT", "perpetual", "0.1", "0.001"),
    _i("coinbase", "BTC-USD", "BTC", "USD", "spot", "0.01", "0.00000001", min_notional=Decimal("1")),
    _i("coinbase", "ETH-USD", "ETH", "USD", "spot", "0.01", "0.00000001", min_notional=Decimal("1")),
    _i("kraken", "XBTUSD", "BTC", "USD", "spot", "0.1", "0.00000001", min_notional=Decimal("0.5")),
    _i("kraken", "ETHUSD", "ETH", "USD", "spot", "0.01", "0.00000001", min_notional=Decimal("0.5")),
    _i("bybit", "BTCUSDT", "BTC", "USDT", "spot", "0.01", "0.000001", min_notional=Decimal("1")),
    _i("bybit", "BTCUSDT-PERP", "BTC", "USDT", "perpetual", "0.1", "0.001"),
    _i("gateio", "BTC_USDT", "BTC", "USDT", "spot", "0.1", "0.00001", min_notional=Decimal("3")),
    _i("gateio", "ETH_USDT", "ETH", "USDT", "spot", "0.01", "0.0001", min_notional=Decimal("3")),
    _i("okx", "BTC-USDT", "BTC", "USDT", "spot", "0.1", "0.00000001"),
    _i(
        "okx",
        "BTC-USDT-SWAP",
        "BTC",
        "USDT",
        "perpetual",
        "0.1",
        "1",
        min_notional=Decimal("0"),
        multiplier=Decimal("0.01"),
    ),
    # why a stablecoin pair: the USD positions of coinbase and kraken had no price in USDT, and
    # trading.take_portfolio_snapshot() (in USDT, or in USD) failed with 22S23 on the demo day
    _i("kraken", "USDTUSD", "USDT", "USD", "spot", "0.0001", "0.01", min_notional=Decimal("1")),
]
BY_KEY = {(i.exchange, i.symbol): i for i in INSTRUMENTS}
START_PRICES = {"BTC": Decimal("67000"), "ETH": Decimal("3400"), "BNB": Decimal("610")}  # of the market walk
# Stablecoins: priced near 1 by a walk of their own (demo_market.market_records)
STABLE_PRICES = {"USDT": Decimal("1.0002")}

STRATEGIES = {
    "btc-spot-arb": ("Buys BTC on the cheaper exchange, sells on the dearer one.", Decimal("250000")),
    "eth-spot-arb": ("Buys ETH on the cheaper exchange, sells on the dearer one.", Decimal("100000")),
    "btc-basis": ("Long BTC spot against short BTC perpetual.", Decimal("200000")),
    "btc-perp-mm": (
        "Market maker on BTC perpetuals; inventory flips between long and short.",
        Decimal("50000"),
    ),
}
BTC_SPOT = [
    ("binance", "BTCUSDT"),
    ("coinbase", "BTC-USD"),
    ("kraken", "XBTUSD"),
    ("bybit", "BTCUSDT"),
    ("gateio", "BTC_USDT"),
    ("okx", "BTC-USDT"),
]
ETH_SPOT = [("binance", "ETHUSDT"), ("coinbase", "ETH-USD"), ("kraken", "ETHUSD"), ("gateio", "ETH_USDT")]
PERPS = [("binance", "BTCUSDT-PERP"), ("bybit", "BTCUSDT-PERP"), ("okx", "BTC-USDT-SWAP")]


def _call(conn: psycopg.Connection, function: str, **kwargs: Any) -> Any:
    row = conn.execute(sqlcall.select_value(function, kwargs), kwargs).fetchone()
    return None if row is None else row[0]


# funding is paid every eight hours, at 00:00, 08:00 and 16:00 UTC, on the position held then
FUNDING_HOURS = (0, 8, 16)
DAY = timedelta(days=1)
# the order times spread evenly over the day, from 30 s after 00:00 to 30 s before the next 00:00
ORDER_WINDOW = DAY - timedelta(seconds=60)
# the basis desk builds its long spot / short perpetual book up to this much notional, then unwinds
BASIS_LIMIT = Decimal("150000")
# the market whose quotes price the BNB that Binance spot fees are paid in
BNB_MARKET = ("binance", "BNBUSDT")

Quote = tuple[datetime, Decimal, Decimal]


class DemoDay:
    """Generates one day of trading as a list of steps, each a call of the SQL API.

    Orders are priced from the day's quotes (``spreadedge.demo_market``, the market data the demo
    loads): takers buy at the ask and sell at the bid, the market maker quotes at the touch. The
    same day and number of orders always give the same steps.
    """

    def __init__(self, day: datetime, seed: int = 7) -> None:
        from spreadedge.demo_market import quote_path  # imported here: it imports this module

        self.day = day
        self.rng = random.Random(seed)
        self.quotes: dict[tuple[str, str], list[Quote]] = quote_path(day)
        self.order_seq = 0
        self.trade_seq = 0
        # (strategy, exchange, symbol) -> [(executed_at, signed quantity)] of every fill so far
        self.fills: dict[tuple[str, str, str], list[tuple[datetime, Decimal]]] = {}

    def _quote(self, key: tuple[str, str], at: datetime) -> tuple[Decimal, Decimal]:
        """Bid and ask of the instrument's latest quote at or before `at` (the first quote before it)."""
        path = self.quotes[key]
        n = bisect.bisect_right(path, at, key=lambda q: q[0])
        _, bid, ask = path[max(0, n - 1)]
        return bid, ask

    def _mid(self, key: tuple[str, str], at: datetime) -> Decimal:
        bid, ask = self._quote(key, at)
        return (bid + ask) / 2

    def _position(self, strategy: str, key: tuple[str, str], before: datetime | None = None) -> Decimal:
        """The strategy's filled position on the instrument (of the fills before `before`, if given)."""
        fills = self.fills.get((strategy, *key), [])
        return sum((q for at, q in fills if before is None or at < before), Decimal("0"))

    def _qty(self, key: tuple[str, str], at: datetime, notional: Decimal) -> Decimal:
        instrument = BY_KEY[key]
        raw = notional / self._mid(key, at) / instrument.multiplier
        lots = max(1, int((raw / instrument.lot).to_integral_value(rounding=ROUND_DOWN)))
        return lots * instrument.lot

    def _notional(self, base: float) -> Decimal:
        return Decimal(base * self.rng.uniform(0.5, 1.5)).quantize(Decimal("0.01"))

    def _order(
        self, at: datetime, strategy: str, key: tuple[str, str], side: str, quantity: Decimal, price: Decimal
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Steps for one limit order and how it ends: fills, a cancel, a reject or nothing yet."""
        instrument = BY_KEY[key]
        self.order_seq += 1
        ref = f"demo-{self.order_seq}"
        yield (
            "place",
            {
                "strategy": strategy,
                "exchange": instrument.exchange,
                "symbol": instrument.symbol,
                "side": side,
                "quantity": quantity,
                "price": price,
                "client_order_id": ref,
                "placed_at": at,
            },
        )
        fate = self.rng.random()
        if fate < 0.02:
            yield "reject", {"client_order_id": ref, "reason": "insufficient margin"}
            return
        yield (
            "acknowledge",
            {"client_order_id": ref, "exchange_order_id": f"{instrument.exchange[:2].upper()}{ref}"},
        )
        if fate < 0.05:
            return  # still working at the end of the day
        parts = self.rng.choice([1, 1, 2, 3])
        cancel_after = fate < 0.12 and parts > 1
        remaining = quantity
        for n in range(parts):
            part = (
                remaining
                if n == parts - 1
                else max(
                    instrument.lot, (remaining / 2 / instrument.lot).to_integral_value() * instrument.lot
                )
            )
            if part > remaining or part <= 0:
                break
            if cancel_after and n == parts - 1:
                yield "cancel", {"client_order_id": ref, "reason": "spread closed"}
                return
            remaining -= part
            self.trade_seq += 1
            executed_at = at + timedelta(milliseconds=150 * (n + 1))
            self.fills.setdefault((strategy, *key), []).append(
                (executed_at, part if side == "buy" else -part)
            )
            yield (
                "fill",
                {
                    "client_order_id": ref,
                    "exchange_trade_id": f"demo-t{self.trade_seq}",
                    "quantity": part,
                    "price": price,
                    "executed_at": executed_at,
                    **self._fee(instrument, side, part, price, executed_at),
                },
            )

    def _fee(
        self, instrument: Instrument, side: str, quantity: Decimal, price: Decimal, at: datetime
    ) -> dict[str, Any]:
        # VIP-tier rates, as an arbitrage desk pays
        rate = Decimal("0.0004") if instrument.market_type == "spot" else Decimal("0.0002")
        notional = quantity * price * instrument.multiplier
        if instrument.exchange == "gateio" and side == "buy":
            return {"fee": (quantity * rate).quantize(Decimal("0.00000001")), "fee_currency": instrument.base}
        if instrument.exchange == "binance" and instrument.market_type == "spot" and instrument.base != "BNB":
            bnb_price = self._mid(BNB_MARKET, at)
            bnb = (notional * rate * Decimal("0.75") / bnb_price).quantize(Decimal("0.00000001"))
            # why fee_quote: without it, record_fill values BNB at its mark when the fill is
            # recorded (the demo loads a past day at once: one price for every fee of the day);
            # a desk values a fee at the price of its fill's time, as here
            return {"fee": bnb, "fee_currency": "BNB", "fee_quote": bnb * bnb_price}
        return {"fee": (notional * rate).quantize(Decimal("0.00000001")), "fee_currency": instrument.quote}

    def steps(self, orders: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every step of the day, in time order: exactly `orders` orders, spread over the day."""
        for instrument in INSTRUMENTS:
            yield "instrument", {"instrument": instrument}
        for name, (description, capital) in STRATEGIES.items():
            yield "strategy", {"name": name, "description": description, "capital": capital}
        start = self.day
        funding_times = [start + timedelta(hours=h) for h in FUNDING_HOURS]
        # BNB first: the desk holds the BNB its Binance spot fees are paid in (and the demo's first
        # order, demo-1, is how a loaded demo is recognised: FIRST_ORDER)
        yield from self._order(
            start, "btc-spot-arb", BNB_MARKET, "buy", Decimal("5"), self._quote(BNB_MARKET, start)[1]
        )
        while self.order_seq < orders:
            # why by order count, not a fixed step: the day holds exactly `orders` orders (the CLI's
            # progress bar counts to it) and they span the whole day whatever `orders` is
            at = start + timedelta(seconds=30) + ORDER_WINDOW * self.order_seq / orders
            while funding_times and at >= funding_times[0]:
                yield from self._funding(funding_times.pop(0))
            kind = self.rng.random()
            pair = orders - self.order_seq >= 2  # the last order of the day may not be half a pair
            if kind < 0.35 and pair:
                yield from self._arb(at, "btc-spot-arb", BTC_SPOT, 4000)
            elif kind < 0.55 and pair:
                yield from self._arb(at, "eth-spot-arb", ETH_SPOT, 2500)
            elif kind < 0.70 and pair:
                yield from self._basis(at)
            else:
                yield from self._make_market(at)
        for when in funding_times:
            if when < datetime.now(UTC):
                yield from self._funding(when)

    def _arb(
        self, at: datetime, strategy: str, venues: list[tuple[str, str]], notional: float
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Buy at the lowest ask, sell at the highest bid of another venue, both as takers."""
        buy = min(venues, key=lambda v: self._quote(v, at)[1])
        sell = max((v for v in venues if v != buy), key=lambda v: self._quote(v, at)[0])
        yield from self._pair(at, strategy, buy, sell, self._notional(notional))

    def _basis(self, at: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        """Long spot against short perpetual up to BASIS_LIMIT of notional, then unwind."""
        spot, perp = self.rng.choice(BTC_SPOT), self.rng.choice(PERPS)
        short = sum(-self._position("btc-basis", p) * BY_KEY[p].multiplier * self._mid(p, at) for p in PERPS)
        if short < BASIS_LIMIT:
            yield from self._pair(at, "btc-basis", spot, perp, self._notional(5000))
        else:
            yield from self._pair(at, "btc-basis", perp, spot, self._notional(5000))

    def _pair(
        self, at: datetime, strategy: str, buy: tuple[str, str], sell: tuple[str, str], notional: Decimal
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        quantity = self._qty(buy, at, notional)
        # the sell leg matches the buy leg's size in the base asset
        base_qty = quantity * BY_KEY[buy].multiplier
        sell_qty = self._qty(sell, at, base_qty * self._mid(sell, at))
        yield from self._order(at, strategy, buy, "buy", quantity, self._quote(buy, at)[1])
        yield from self._order(at, strategy, sell, "sell", sell_qty, self._quote(sell, at)[0])

    def _make_market(self, at: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        """A passive order at the touch, leaning against the filled inventory so it keeps flipping."""
        key = self.rng.choice(PERPS)
        inventory = self._position("btc-perp-mm", key)
        side = "sell" if inventory > 0 or (inventory == 0 and self.rng.random() < 0.5) else "buy"
        quantity = self._qty(key, at, Decimal(3000 * self.rng.uniform(0.5, 2.5)))
        bid, ask = self._quote(key, at)
        yield from self._order(at, "btc-perp-mm", key, side, quantity, ask if side == "sell" else bid)

    def _funding(self, when: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each perpetual's funding at `when` on every position held then: a long pays a positive
        rate, a short receives it; no position, no payment."""
        for key in PERPS:
            instrument = BY_KEY[key]
            rate = Decimal(self.rng.uniform(-0.0002, 0.0004)).quantize(Decimal("0.000001"))
            mark = self._mid(key, when)
            for strategy in ("btc-basis", "btc-perp-mm"):
                position = self._position(strategy, key, before=when)
                if position == 0:
                    continue
                amount = -(position * instrument.multiplier * mark * rate).quantize(Decimal("0.000001"))
                yield (
                    "funding",
                    {
                        "strategy": strategy,
                        "exchange": instrument.exchange,
                        "symbol": instrument.symbol,
                        "amount": amount,
                        "paid_at": when,
                    },
                )


def apply_step(conn: psycopg.Connection, kind: str, args: dict[str, Any], order_ids: dict[str, int]) -> None:
    """Apply one demo step through the SQL API."""
    if kind == "instrument":
        i: Instrument = args["instrument"]
        _call(
            conn,
            "ref.upsert_instrument",
            exchange=i.exchange,
            symbol=i.symbol,
            base_asset=i.base,
            quote_asset=i.quote,
            market_type=i.market_type,
            tick_size=i.tick,
            lot_size=i.lot,
            min_notional=i.min_notional,
            multiplier=i.multiplier,
        )
    elif kind == "strategy":
        _call(conn, "trading.create_strategy", **args)
    elif kind == "place":
        order_ids[args["client_order_id"]] = _call(conn, "trading.place_order", **args)
    elif kind == "funding":
        _call(conn, "trading.record_funding", **args)
    else:
        rest = {k: v for k, v in args.items() if k != "client_order_id"}
        order_id = order_ids[args["client_order_id"]]
        function = {
            "fill": "trading.record_fill",
            "cancel": "trading.cancel_order",
            "reject": "trading.reject_order",
            "acknowledge": "trading.acknowledge_order",
        }[kind]
        _call(conn, function, order_id=order_id, **rest)


# The demo's first order (its BNB for fees, on binance), placed at the start of the demo day; client
# order ids are unique per exchange (trading.order_keys)
FIRST_ORDER = ("binance", "demo-1")
_LOADED_DAY = (
    "select k.created_at from trading.order_keys k join ref.exchanges e using (exchange_id)"
    " where e.code = %s and k.client_order_id = %s"
)


# What the demo writes under names of its own: its strategies, its instruments (by exchange and
# symbol, in any case, as ref.upsert_instrument compares them) and its client order ids (demo-N) on
# its exchanges. why refused, not shared: create_strategy returns a strategy of that name and
# upsert_instrument updates the rules of a listed one, so a user's btc-basis got 3,000 demo orders
# and their binance BTCUSDT the demo's tick, lot and minimum notional, and a user's order demo-2
# ended the demo with "client order id "demo-2" is already used", an id the user never typed
_CONFLICTS = """
    select conflict from (
        select 1, s.name, 0, format('strategy "%%s"', s.name)
        from trading.strategies s where s.name = any(%(strategies)s)
        union all
        select 2, e.code || ' ' || i.symbol, 0, format('instrument %%s %%s', e.code, i.symbol)
        from ref.instruments i join ref.exchanges e using (exchange_id)
        where e.code || ' ' || lower(i.symbol) = any(%(instruments)s)
        union all
        select 3, e.code, length(k.client_order_id), format('order %%s on %%s', k.client_order_id, e.code)
        from trading.order_keys k join ref.exchanges e using (exchange_id)
        where e.code = any(%(exchanges)s) and k.client_order_id ~ '^demo-[0-9]+$'
    ) c (kind, name, width, conflict)
    order by kind, name, width, conflict
"""
# conflicts named in the error; the rest are counted
_CONFLICTS_NAMED = 5


def demo_conflicts(conn: psycopg.Connection) -> list[str]:
    """What the database already holds under the demo's names (strategy "btc-basis", instrument
    binance BTCUSDT, order demo-2 on okx): empty when the demo can load without touching any of it."""
    rows = conn.execute(
        _CONFLICTS,
        {
            "strategies": list(STRATEGIES),
            "instruments": [f"{i.exchange} {i.symbol.lower()}" for i in INSTRUMENTS],
            "exchanges": sorted({i.exchange for i in INSTRUMENTS}),
        },
    ).fetchall()
    return [row[0] for row in rows]


def _refuse(conflicts: list[str]) -> errors.SpreadedgeError:
    named = ", ".join(conflicts[:_CONFLICTS_NAMED])
    more = len(conflicts) - _CONFLICTS_NAMED
    return errors.BY_NAME["conflicting_duplicate"](
        f"the demo loads only into a database without its strategies, instruments and order ids; this one"
        f" has {named}{f' and {more} more' if more > 0 else ''}: nothing written",
        hint="Load the demo into a database of its own: spreadedge --database-url URL migrate, then"
        " spreadedge --database-url URL demo.",
    )


@dataclass(frozen=True)
class DemoRun:
    """What run_demo did: the demo day in the database, and counts of what this run wrote."""

    day: datetime
    written: dict[str, int]
    already_loaded: bool


def loaded_demo_day(conn: psycopg.Connection) -> datetime | None:
    """The day of the demo already in the database (its first order's time, UTC), or None."""
    row = conn.execute(_LOADED_DAY, FIRST_ORDER).fetchone()
    return None if row is None else row[0].astimezone(UTC)


def run_demo(
    conn: psycopg.Connection,
    *,
    orders: int = 3000,
    day: datetime | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> DemoRun:
    """Write the demo day (yesterday, UTC, by default) unless a demo day is already loaded.

    Raises errors.ConflictingDuplicate (23S06), writing nothing, in a database that holds any of the
    demo's strategies, instruments or client order ids (``demo_conflicts``) without the demo day.

    One transaction (a savepoint when the caller has one open, which the caller then commits).
    """
    start = day or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    order_ids: dict[str, int] = {}
    done: dict[str, int] = {}
    with conn.transaction():
        # why for the transaction only: set for the session, the caller's later writes on this
        # connection were logged as the demo's
        conn.execute("select set_config('spreadedge.actor', 'demo', true)")
        # why the lock: two demos started together would both find no demo and write two days
        conn.execute("select pg_advisory_xact_lock(hashtext('spreadedge.demo'))")
        loaded = loaded_demo_day(conn)
        if loaded is not None:
            return DemoRun(day=loaded, written={}, already_loaded=True)
        if conflicts := demo_conflicts(conn):
            raise _refuse(conflicts)
        steps = DemoDay(start).steps(orders)
        # why batches: the progress bar is redrawn once per batch, not once per order
        while batch := list(itertools.islice(steps, 200)):
            for kind, args in batch:
                apply_step(conn, kind, args, order_ids)
                done[kind] = done.get(kind, 0) + 1
            progress(sum(kind == "place" for kind, _ in batch))
        from spreadedge.demo_market import load_demo_market  # imported here: it imports this module

        done.update(load_demo_market(conn, start))
    return DemoRun(day=start, written=done, already_loaded=False)
