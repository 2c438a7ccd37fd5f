"""A realistic demo trading day, written through the SQL API only.

Six exchanges, spot and perpetual instruments, four strategies: spot arbitrage between exchanges
(BTC and ETH), a spot/perpetual basis trade and a perpetual market maker whose inventory flips
sides. Orders fill in one to three partial fills; some are cancelled part-filled, a few rejected,
some left working. Fees come in the quote asset, in the base asset (Gate.io buys) and in BNB
(Binance spot, priced from the BNBUSDT market). Perpetual positions pay or receive funding every
eight hours. Market data of the day (quotes, ticks, candles, indicators) comes from
``spreadedge.demo_market``.

A database holds one demo day. The demo is written in one transaction, so it is there whole or not
at all; once it is there, running the demo again (on a later day, or with another number of
orders) writes nothing and says which day is loaded. Its ids (``demo-1``, ``demo-t1``) do not
carry the day, and the API would take a second day's orders for retries of the first's.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import psycopg

from spreadedge import sqlcall


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
]
BY_KEY = {(i.exchange, i.symbol): i for i in INSTRUMENTS}
START_PRICES = {"BTC": Decimal("67000"), "ETH": Decimal("3400"), "BNB": Decimal("610")}

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


class DemoDay:
    """Generates one day of trading as a list of steps, each a call of the SQL API."""

    def __init__(self, day: datetime, seed: int = 7) -> None:
        self.day = day
        self.rng = random.Random(seed)
        self.prices = dict(START_PRICES)
        self.order_seq = 0
        self.trade_seq = 0
        self.perp_inventory: dict[tuple[str, str], Decimal] = {}

    def _price(self, instrument: Instrument, bump: Decimal = Decimal("0")) -> Decimal:
        # each venue quotes around the asset price with its own small offset
        offset = Decimal(self.rng.uniform(-8, 8)).quantize(Decimal("0.01")) / Decimal("10000")
        raw = self.prices[instrument.base] * (1 + offset + bump)
        return (raw / instrument.tick).to_integral_value() * instrument.tick

    def _qty(self, instrument: Instrument, notional: float) -> Decimal:
        raw = Decimal(notional) / self.prices[instrument.base] / instrument.multiplier
        lots = max(1, int((raw / instrument.lot).to_integral_value(rounding=ROUND_DOWN)))
        return lots * instrument.lot

    def _walk(self) -> None:
        for asset in self.prices:
            self.prices[asset] *= Decimal(1 + self.rng.gauss(0, 0.0008))

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
            yield (
                "fill",
                {
                    "client_order_id": ref,
                    "exchange_trade_id": f"demo-t{self.trade_seq}",
                    "quantity": part,
                    "price": price,
                    "executed_at": at + timedelta(milliseconds=150 * (n + 1)),
                    **self._fee(instrument, side, part, price),
                },
            )

    def _fee(self, instrument: Instrument, side: str, quantity: Decimal, price: Decimal) -> dict[str, Any]:
        # VIP-tier rates, as an arbitrage desk pays
        rate = Decimal("0.0004") if instrument.market_type == "spot" else Decimal("0.0002")
        notional = quantity * price * instrument.multiplier
        if instrument.exchange == "gateio" and side == "buy":
            return {"fee": (quantity * rate).quantize(Decimal("0.00000001")), "fee_currency": instrument.base}
        if instrument.exchange == "binance" and instrument.market_type == "spot" and instrument.base != "BNB":
            bnb = (notional * rate * Decimal("0.75") / self.prices["BNB"]).quantize(Decimal("0.00000001"))
            return {"fee": bnb, "fee_currency": "BNB"}
        return {"fee": (notional * rate).quantize(Decimal("0.00000001")), "fee_currency": instrument.quote}

    def steps(self, orders: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every step of the day, in time order, for about `orders` orders."""
        for instrument in INSTRUMENTS:
            yield "instrument", {"instrument": instrument}
        for name, (description, capital) in STRATEGIES.items():
            yield "strategy", {"name": name, "description": description, "capital": capital}
        start = self.day
        # BNB for fees first, so BNB-denominated fees can be priced from the market
        yield from self._order(
            start,
            "btc-spot-arb",
            ("binance", "BNBUSDT"),
            "buy",
            Decimal("5"),
            self._price(BY_KEY[("binance", "BNBUSDT")]),
        )
        step = timedelta(seconds=86_000 / max(1, orders // 2))
        funding_times = [start + timedelta(hours=h) for h in (8, 16, 24)]
        at = start + timedelta(seconds=30)
        while self.order_seq < orders and at < start + timedelta(hours=24):
            self._walk()
            while funding_times and at >= funding_times[0]:
                yield from self._funding(funding_times.pop(0))
            kind = self.rng.random()
            if kind < 0.35:
                yield from self._arb(at, "btc-spot-arb", BTC_SPOT, 4000)
            elif kind < 0.55:
                yield from self._arb(at, "eth-spot-arb", ETH_SPOT, 2500)
            elif kind < 0.70:
                spot, perp = self.rng.choice(BTC_SPOT), self.rng.choice(PERPS)
                yield from self._pair(at, "btc-basis", spot, perp, 5000)
            else:
                yield from self._make_market(at)
            at += step
        for when in funding_times:
            if when < datetime.now(UTC):
                yield from self._funding(when)

    def _arb(
        self, at: datetime, strategy: str, venues: list[tuple[str, str]], notional: float
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        buy, sell = self.rng.sample(venues, 2)
        yield from self._pair(at, strategy, buy, sell, notional)

    def _pair(
        self, at: datetime, strategy: str, buy: tuple[str, str], sell: tuple[str, str], notional: float
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        buy_i, sell_i = BY_KEY[buy], BY_KEY[sell]
        quantity = self._qty(buy_i, notional * self.rng.uniform(0.5, 1.5))
        sell_qty = self._qty(sell_i, float(quantity * self.prices[buy_i.base]))
        yield from self._order(at, strategy, buy, "buy", quantity, self._price(buy_i, Decimal("-0.0007")))
        yield from self._order(at, strategy, sell, "sell", sell_qty, self._price(sell_i, Decimal("0.0007")))

    def _make_market(self, at: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        key = self.rng.choice(PERPS)
        instrument = BY_KEY[key]
        inventory = self.perp_inventory.get(key, Decimal("0"))
        # lean against the inventory so it keeps crossing zero (flips)
        side = "sell" if inventory > 0 or (inventory == 0 and self.rng.random() < 0.5) else "buy"
        quantity = self._qty(instrument, 3000 * self.rng.uniform(0.5, 2.5))
        self.perp_inventory[key] = inventory + (quantity if side == "buy" else -quantity)
        bump = Decimal("0.0003") if side == "sell" else Decimal("-0.0003")
        yield from self._order(at, "btc-perp-mm", key, side, quantity, self._price(instrument, bump))

    def _funding(self, when: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        for exchange, symbol in PERPS:
            instrument = BY_KEY[(exchange, symbol)]
            rate = Decimal(self.rng.uniform(-0.0002, 0.0004)).quantize(Decimal("0.000001"))
            for strategy in ("btc-basis", "btc-perp-mm"):
                size = Decimal(self.rng.uniform(0.05, 0.5)) * self.prices["BTC"]
                amount = -(size * rate * (1 if strategy == "btc-perp-mm" else -1)).quantize(
                    Decimal("0.000001")
                )
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

    One transaction (a savepoint when the caller has one open, which the caller then commits).
    """
    start = day or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    conn.execute("select set_config('spreadedge.actor', 'demo', false)")
    order_ids: dict[str, int] = {}
    done: dict[str, int] = {}
    with conn.transaction():
        # why the lock: two demos started together would both find no demo and write two days
        conn.execute("select pg_advisory_xact_lock(hashtext('spreadedge.demo'))")
        loaded = loaded_demo_day(conn)
        if loaded is not None:
            return DemoRun(day=loaded, written={}, already_loaded=True)
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
