"""Replaying what the exchange sent: an application that restarts re-reads the exchange's messages
from a checkpoint it saved a little earlier and delivers again messages already applied.

A day of a strategy is generated as a message log (placements, acknowledgements, partial fills,
cancels and expiries, late fills after them, rejects, a risk-limit rejection, a fee reported after
its fill, funding payments, a spread trade and its legs), applied once, and then replayed whole and
from random checkpoints to its end, through the SQL API and through the Python managers: every call
must return what it returned the first time, and the whole state (orders, their events, trades,
positions, the PnL rollups, funding, spread trades, risk events, notifications, the audit log and
ops.check_invariants) must stay exactly as it was.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest

from market_helpers import RECENT_NOON
from spreadedge.managers import ManagerConfig, OrderRequest, PersistentOrderManager
from trading_helpers import call, expect_refusal, fill, list_okx_btc_spot, order, place

# the log's day: yesterday (UTC), so every time is in the past and inside one day's partitions
DAY_START = RECENT_NOON.replace(hour=0)
SPOT = ("binance", "BTCUSDT")
SWAP = ("okx", "BTC-USDT-SWAP")
# a limit that the day's one oversized order breaks (its placement is stored rejected)
MAX_ORDER_NOTIONAL = D("30000")

# one order's story, in the order the exchange tells it
SCENARIOS = (
    "filled",
    "filled_acknowledged_late",
    "acknowledged_after_filled",
    "partially_filled_working",
    "partially_filled_cancelled",
    "cancelled_then_late_fill_completes",
    "cancelled_then_late_partial_fill",
    "cancelled_unfilled",
    "expired",
    "expired_then_late_fill_completes",
    "rejected",
    "fee_reported_later",
)


@dataclass
class Message:
    """One message of the log: ``kind`` names the call, ``ref`` the order (its client order id)."""

    kind: str
    ref: str | None
    args: dict[str, Any] = field(default_factory=dict)


def _split(rng: random.Random, quantity: D, lot: D, parts: int) -> list[D]:
    """``quantity`` in ``parts`` positive multiples of ``lot`` (fewer when it has fewer lots)."""
    lots = int(quantity / lot)
    parts = max(1, min(parts, lots))
    cuts = sorted(rng.sample(range(1, lots), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, lots]
    return [lot * (bounds[k + 1] - bounds[k]) for k in range(parts)]


def _order_story(rng: random.Random, number: int, scenario: str) -> list[Message]:
    ref = f"day-{number}"
    exchange, symbol = SWAP if rng.random() < 0.3 else SPOT
    if exchange == "okx":
        lot, quantity = D(1), D(rng.randint(4, 40))
        price = D("60000") + D(rng.randint(-5000, 5000)) * D("0.1")
    else:
        lot, quantity = D("0.0001"), D(rng.randint(40, 3000)) * D("0.0001")
        price = D("60000") + D(rng.randint(-50000, 50000)) * D("0.01")
    side = rng.choice(("buy", "sell"))
    placement = Message(
        "place",
        ref,
        {
            "strategy": "alpha",
            "exchange": exchange,
            "symbol": symbol,
            "side": side,
            "quantity": quantity,
            "price": price,
            "client_order_id": ref,
        },
    )
    trades = iter(range(1, 100))

    def fills(quantities: list[D], fee: bool = True) -> list[Message]:
        messages = []
        for part in quantities:
            # a fee in the quote asset, as most venues charge; rounded to the quote asset's 8 decimals
            amount = (part * price * D("0.0004") * (D("0.01") if exchange == "okx" else 1)).quantize(
                D("1e-8")
            )
            messages.append(
                Message(
                    "fill",
                    ref,
                    {
                        "exchange_trade_id": f"{ref}-t{next(trades)}",
                        "quantity": part,
                        "price": price,
                        "fee": amount if fee else D(0),
                    },
                )
            )
        return messages

    ack = Message("ack", ref, {"exchange_order_id": f"EX-{number}"})
    whole = _split(rng, quantity, lot, rng.randint(1, 3))
    some = _split(rng, quantity, lot, 2)
    if scenario == "filled":
        return [placement, ack, *fills(whole)]
    if scenario == "filled_acknowledged_late":
        return [placement, *fills(some[:1]), ack, *fills(some[1:])]
    if scenario == "acknowledged_after_filled":
        return [placement, *fills(whole), ack]
    if scenario == "partially_filled_working":
        return [placement, ack, *fills(some[:1])]
    if scenario == "partially_filled_cancelled":
        return [placement, ack, *fills(some[:1]), Message("cancel", ref, {"reason": "spread closed"})]
    if scenario == "cancelled_then_late_fill_completes":
        return [
            placement,
            ack,
            *fills(some[:1]),
            Message("cancel", ref, {"reason": "spread closed"}),
            *fills(some[1:]),
        ]
    if scenario == "cancelled_then_late_partial_fill":
        return [placement, ack, Message("cancel", ref, {"reason": "user"}), *fills(some[:1])]
    if scenario == "cancelled_unfilled":
        return [placement, ack, Message("cancel", ref, {"reason": None})]
    if scenario == "expired":
        return [placement, ack, Message("expire", ref, {"reason": "GTT ran out"})]
    if scenario == "expired_then_late_fill_completes":
        return [placement, ack, *fills(some[:1]), Message("expire", ref, {"reason": "IOC"}), *fills(some[1:])]
    if scenario == "rejected":
        return [placement, Message("reject", ref, {"reason": "insufficient balance"})]
    assert scenario == "fee_reported_later"
    (first,) = fills([quantity], fee=False)
    fee = (quantity * price * D("0.001") * (D("0.01") if exchange == "okx" else 1)).quantize(D("1e-8"))
    return [
        placement,
        ack,
        first,
        Message("fee", ref, {"exchange_trade_id": first.args["exchange_trade_id"], "fee": fee}),
    ]


def day_log(seed: int) -> list[Message]:
    """A day of strategy alpha: every scenario at least twice in random order, interleaved as the
    exchange would interleave them, an order the risk limit rejects, three funding payments and a
    spread trade with its legs' acknowledgements and fills; each message stamped with its time."""
    rng = random.Random(seed)
    scenarios = [*SCENARIOS, *SCENARIOS, *rng.choices(SCENARIOS, k=8)]
    rng.shuffle(scenarios)
    stories = [_order_story(rng, number, scenario) for number, scenario in enumerate(scenarios, 1)]
    stories.append(
        [
            Message(
                "place",
                "day-big",
                {
                    "strategy": "alpha",
                    "exchange": "binance",
                    "symbol": "BTCUSDT",
                    "side": "buy",
                    "quantity": D("1"),
                    "price": D("60000"),
                    "client_order_id": "day-big",
                },
            )
        ]
    )
    stories.append(
        [
            Message(
                "spread",
                "arb-1",
                {
                    "strategy": "alpha",
                    "symbol": "BTC/USDT",
                    "buy_exchange": "binance",
                    "sell_exchange": "okx",
                    "quantity": D("0.05"),
                    "buy_price": D("60000"),
                    "sell_price": D("60050"),
                    "client_spread_id": "arb-1",
                },
            ),
            Message("ack", "arb-1-buy", {"exchange_order_id": "EX-arb-b"}),
            Message("ack", "arb-1-sell", {"exchange_order_id": "EX-arb-s"}),
            Message(
                "fill",
                "arb-1-buy",
                {"exchange_trade_id": "arb-b1", "quantity": D("0.03"), "price": D("60000"), "fee": D("0.72")},
            ),
            Message(
                "fill",
                "arb-1-sell",
                {
                    "exchange_trade_id": "arb-s1",
                    "quantity": D("0.05"),
                    "price": D("60050"),
                    "fee": D("1.20125"),
                },
            ),
            Message(
                "fill",
                "arb-1-buy",
                {"exchange_trade_id": "arb-b2", "quantity": D("0.02"), "price": D("60000"), "fee": D("0.48")},
            ),
        ]
    )
    for hour in (0, 8, 16):
        stories.append(
            [
                Message(
                    "funding",
                    None,
                    {
                        "strategy": "alpha",
                        "exchange": "okx",
                        "symbol": "BTC-USDT-SWAP",
                        "amount": D(rng.randint(-500, 500)) / 100,
                        "paid_at": DAY_START + timedelta(hours=hour),
                    },
                )
            ]
        )
    log: list[Message] = []
    while any(stories):
        story = rng.choice([s for s in stories if s])
        log.append(story.pop(0))
    # each message a little after the one before, all of them within the day
    for index, message in enumerate(log):
        at = DAY_START + timedelta(seconds=60 + index * 300)
        if message.kind == "place":
            message.args["placed_at"] = at
        elif message.kind == "fill":
            message.args["executed_at"] = at
        elif message.kind == "spread":
            message.args["opened_at"] = at
    return log


Outcome = tuple[str, Any]


class Applier:
    """Applies messages through the SQL API on one autocommit connection; the outcome of each is
    ("ok", what it returned) or ("error", its SQLSTATE). Client order ids are resolved to the order
    ids their placements returned."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.orders: dict[str, int] = {}

    def order_id(self, ref: str) -> int:
        if ref not in self.orders:
            # a spread trade's leg: placed by trading.open_spread_trade under client_spread_id-side
            self.orders[ref] = self.conn.execute(
                "select order_id from trading.orders where client_order_id = %s", [ref]
            ).fetchone()[0]
        return self.orders[ref]

    def call(self, message: Message) -> Any:
        args = dict(message.args)
        if message.kind == "place":
            return call(self.conn, "trading.place_order", **args)
        if message.kind == "spread":
            return call(self.conn, "trading.open_spread_trade", **args)
        if message.kind == "funding":
            return call(self.conn, "trading.record_funding", **args)
        function = {
            "ack": "trading.acknowledge_order",
            "fill": "trading.record_fill",
            "fee": "trading.record_fill_fee",
            "cancel": "trading.cancel_order",
            "expire": "trading.expire_order",
            "reject": "trading.reject_order",
        }[message.kind]
        return call(self.conn, function, order_id=self.order_id(message.ref), **args)

    def apply(self, message: Message) -> Outcome:
        try:
            result = self.call(message)
        except psycopg.Error as error:
            return ("error", error.sqlstate)
        if message.kind == "place":
            self.orders[message.ref] = result
        return ("ok", result)


def snapshot(conn: psycopg.Connection) -> dict[str, Any]:
    """Everything the day wrote, row by row and column by column (times included)."""
    tables = {
        "orders": "select * from trading.orders order by order_id",
        "order_keys": "select * from trading.order_keys order by order_id",
        "order_events": "select * from trading.order_events order by event_id",
        "trades": "select * from trading.trades order by trade_id",
        "trade_keys": "select * from trading.trade_keys order by trade_id",
        "positions": "select * from trading.positions order by strategy_id, instrument_id",
        "daily_pnl": "select * from trading.daily_pnl order by 1, 2, 3",
        "hourly_pnl": "select * from trading.hourly_pnl order by 1, 2, 3",
        "funding": "select * from trading.funding_payments order by funding_id",
        "spread_trades": "select * from trading.spread_trades order by spread_trade_id",
        "risk_events": "select * from monitor.risk_events order by risk_event_id",
        "notifications": "select * from monitor.notifications order by notification_id",
        "audit_rows": "select count(*) from audit.log",
        "invariants": "select * from ops.check_invariants()",
    }
    return {name: conn.execute(query).fetchall() for name, query in tables.items()}


def prepared(conn: psycopg.Connection) -> None:
    """okx lists BTC/USDT spot (the spread trade's sell leg) and alpha has an order notional limit."""
    list_okx_btc_spot(conn)
    call(
        conn,
        "monitor.set_risk_limit",
        strategy="alpha",
        exchange="binance",
        symbol="BTCUSDT",
        max_order_notional=MAX_ORDER_NOTIONAL,
    )


def apply_log(applier: Applier, log: list[Message]) -> list[Outcome]:
    return [applier.apply(message) for message in log]


def test_the_generated_day_applies_cleanly_and_tells_every_story(seeded):
    # a guard on the generator: a log that the database refused in part would test nothing
    prepared(seeded)
    log = day_log(7)
    outcomes = apply_log(Applier(seeded), log)
    assert [(m.kind, m.ref, o) for m, o in zip(log, outcomes, strict=True) if o[0] == "error"] == []
    statuses = dict(
        seeded.execute("select status::text, count(*) from trading.orders group by status").fetchall()
    )
    assert {"filled", "partially_filled", "cancelled", "expired", "rejected"} <= set(statuses)
    late = seeded.execute("select count(*) filter (where is_late), count(*) from trading.trades").fetchone()
    assert late[0] > 0 and late[1] > 40
    assert seeded.execute("select count(*) from monitor.risk_events").fetchone() == (1,)
    assert snapshot(seeded)["invariants"] == []


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_the_whole_day_replayed_returns_the_same_results_and_changes_nothing(seeded, seed):
    prepared(seeded)
    log = day_log(seed)
    applier = Applier(seeded)
    first = apply_log(applier, log)
    before = snapshot(seeded)
    assert apply_log(applier, log) == first
    assert snapshot(seeded) == before


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_the_day_replayed_from_random_checkpoints_returns_the_same_results_and_changes_nothing(seeded, seed):
    prepared(seeded)
    log = day_log(seed)
    applier = Applier(seeded)
    first = apply_log(applier, log)
    before = snapshot(seeded)
    rng = random.Random(seed * 1000)
    for checkpoint in sorted(rng.sample(range(len(log)), 4)):
        assert apply_log(applier, log[checkpoint:]) == first[checkpoint:], checkpoint
        assert snapshot(seeded) == before, checkpoint


def test_a_restart_mid_day_replays_from_its_checkpoint_and_carries_on(seeded):
    # the application applies the first two thirds, restarts, and goes on from a checkpoint a
    # quarter of the way in: what it applied already answers as before, the rest applies
    prepared(seeded)
    log = day_log(11)
    cut, checkpoint = 2 * len(log) // 3, len(log) // 4
    first = apply_log(Applier(seeded), log[:cut])
    after_restart = apply_log(Applier(seeded), log[checkpoint:])
    assert after_restart[: cut - checkpoint] == first[checkpoint:]
    assert [outcome for outcome in after_restart if outcome[0] != "ok"] == []
    assert snapshot(seeded)["invariants"] == []


# --- the two calls a replay was refused (every whole-day and checkpoint test above failed on them)


def _one_order_story(conn: psycopg.Connection) -> int:
    """A buy of 2 acknowledged, filled 1, cancelled, and completed by a late fill of 1."""
    order_id = place(conn, "buy", "2", "100", client_order_id="story-1")
    call(conn, "trading.acknowledge_order", order_id=order_id, exchange_order_id="EX-story-1")
    fill(conn, order_id, "1", "100", exchange_trade_id="story-t1")
    return order_id


def test_a_cancel_delivered_again_after_a_late_fill_completed_the_order_changes_nothing(seeded):
    order_id = _one_order_story(seeded)
    call(seeded, "trading.cancel_order", order_id=order_id, reason="spread closed")
    fill(seeded, order_id, "1", "100", exchange_trade_id="story-t2")
    before = snapshot(seeded)
    # was 55S01 "order N cannot go from filled to cancelled": the replay stopped at it
    assert call(seeded, "trading.cancel_order", order_id=order_id, reason="spread closed") is None
    assert snapshot(seeded) == before
    assert (order(seeded, order_id)["status"], order(seeded, order_id)["status_reason"]) == ("filled", None)


def test_an_expiry_delivered_again_after_a_late_fill_completed_the_order_changes_nothing(seeded):
    order_id = _one_order_story(seeded)
    call(seeded, "trading.expire_order", order_id=order_id, reason="IOC")
    fill(seeded, order_id, "1", "100", exchange_trade_id="story-t2")
    before = snapshot(seeded)
    assert call(seeded, "trading.expire_order", order_id=order_id, reason="IOC") is None
    assert snapshot(seeded) == before


def test_a_cancel_or_expiry_a_filled_order_never_had_is_still_an_illegal_transition(seeded):
    order_id = _one_order_story(seeded)
    fill(seeded, order_id, "1", "100", exchange_trade_id="story-t2")
    expect_refusal(
        seeded,
        "55S01",
        f"order {order_id} cannot go from filled to cancelled",
        lambda: call(seeded, "trading.cancel_order", order_id=order_id),
    )
    # cancelled, then completed by a late fill: it never expired
    other = place(seeded, "buy", "1", "100")
    call(seeded, "trading.cancel_order", order_id=other)
    fill(seeded, other, "1", "100")
    expect_refusal(
        seeded,
        "55S01",
        f"order {other} cannot go from filled to expired",
        lambda: call(seeded, "trading.expire_order", order_id=other),
    )


def _fee_later(conn: psycopg.Connection) -> tuple[int, int]:
    """A buy of 1 filled at 100 without its fee (a websocket match), the fee 0.1 USDT set later."""
    order_id = place(conn, "buy", "1", "100", client_order_id="fee-1")
    trade_id = fill(conn, order_id, "1", "100", exchange_trade_id="CB-1", executed_at=RECENT_NOON)
    call(conn, "trading.record_fill_fee", order_id=order_id, exchange_trade_id="CB-1", fee=D("0.1"))
    return order_id, trade_id


def test_the_fill_delivered_again_without_its_fee_after_the_fee_was_set_is_the_same_fill(seeded):
    order_id, trade_id = _fee_later(seeded)
    before = snapshot(seeded)
    # was 23S06 "exchange trade id "CB-1" is already recorded as trade N with different values"
    assert fill(seeded, order_id, "1", "100", exchange_trade_id="CB-1", executed_at=RECENT_NOON) == trade_id
    assert (
        fill(seeded, order_id, "1", "100", exchange_trade_id="CB-1", fee=D(0), fee_currency="BNB") == trade_id
    )
    # and the fee message again, after it
    assert call(
        seeded, "trading.record_fill_fee", order_id=order_id, exchange_trade_id="CB-1", fee=D("0.1")
    ) == (trade_id)
    assert snapshot(seeded) == before
    assert seeded.execute("select fee from trading.trades where trade_id = %s", [trade_id]).fetchone() == (
        D("0.1"),
    )


def test_a_fill_recorded_with_its_fee_delivered_again_without_one_is_the_same_fill(seeded):
    # REST first, with the fee; the websocket's match, which carries none, after it
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-2", fee=D("0.1"))
    before = snapshot(seeded)
    assert fill(seeded, order_id, "1", "100", exchange_trade_id="CB-2") == trade_id
    assert snapshot(seeded) == before


def test_a_fill_whose_fee_was_set_later_delivered_again_with_another_fee_is_still_a_conflict(seeded):
    order_id, trade_id = _fee_later(seeded)
    expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "CB-1" is already recorded as trade {trade_id} with different values',
        lambda: fill(seeded, order_id, "1", "100", exchange_trade_id="CB-1", fee=D("0.2")),
    )


def test_a_fill_recorded_without_a_fee_delivered_again_with_one_is_still_a_conflict(seeded):
    # the fee of a fill recorded without one is set with trading.record_fill_fee, never by a
    # redelivery: a redelivery writes nothing
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-3")
    expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "CB-3" is already recorded as trade {trade_id} with different values',
        lambda: fill(seeded, order_id, "1", "100", exchange_trade_id="CB-3", fee=D("0.1")),
    )


# --- through the Python managers


class ManagerApplier:
    """Applies placements, cancels, fills and fees through PersistentOrderManager (the rest through
    the SQL API, which the managers do not wrap); a placement's outcome is its order id, a cancel's
    the order id it returned."""

    def __init__(self, manager: PersistentOrderManager, sql: Applier) -> None:
        self.manager = manager
        self.sql = sql

    async def apply(self, message: Message) -> Outcome:
        args = dict(message.args)
        try:
            if message.kind == "place":
                # why no placed_at: OrderRequest has none (the order is placed now)
                args.pop("placed_at")
                placed = await self.manager.place_order(OrderRequest(**args))
                self.sql.orders[message.ref] = placed.order_id
                return ("ok", placed.order_id)
            if message.kind == "cancel":
                cancelled = await self.manager.cancel_order(self.sql.order_id(message.ref), **args)
                return ("ok", cancelled.order_id)
            if message.kind == "fill":
                return ("ok", await self.manager.record_fill(self.sql.order_id(message.ref), **args))
            if message.kind == "fee":
                return ("ok", await self.manager.record_fill_fee(self.sql.order_id(message.ref), **args))
        except psycopg.Error as error:
            return ("error", error.sqlstate)
        return self.sql.apply(message)


def test_the_day_replayed_through_the_order_manager_returns_the_same_ids_and_changes_nothing(
    config: ManagerConfig, seeded
) -> None:
    prepared(seeded)
    log = day_log(23)
    checkpoint = random.Random(23).randrange(len(log) // 2)

    async def run() -> tuple[list[Outcome], dict[str, Any], list[Outcome], list[Outcome]]:
        async with PersistentOrderManager(config) as manager:
            applier = ManagerApplier(manager, Applier(seeded))
            first = [await applier.apply(message) for message in log]
            state = snapshot(seeded)
            whole = [await applier.apply(message) for message in log]
            restarted = ManagerApplier(manager, Applier(seeded))
            tail = [await restarted.apply(message) for message in log[checkpoint:]]
            return first, state, whole, tail

    first, before, whole, tail = asyncio.run(run())
    assert [outcome for outcome in first if outcome[0] != "ok"] == []
    assert whole == first
    assert tail == first[checkpoint:]
    assert snapshot(seeded) == before
