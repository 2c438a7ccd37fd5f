"""Concurrency under load (issue 8, item 3): many clients for a bounded time record fills, cancels,
late and duplicate fills and funding on the same few positions. Every write whose COMMIT a client
saw acknowledged is stored exactly once with its values, nothing else is stored, every position is
the sum of its acknowledged trades, no deadlock reaches a caller and the invariants hold. The second
test adds pre-trade risk rejections whose notifications two workers deliver to a loopback webhook,
and readers of the history API, all under the same load.

Each client keeps its own ledger of acknowledged calls; the ledgers are compared with the database
after every thread has been joined. 40001 (serialization failure) is retried by the client wrapper
and counted; a deadlock (40P01) is never retried: the functions take their locks in one order, so
one reaching a caller is a bug this suite reports.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import psycopg
import pytest

from api_fixtures import api_login, live_server
from auth_helpers import make_user
from notify_servers import HttpReceiver
from reliability import Tally, scaled
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings
from trading_helpers import call

pytestmark = pytest.mark.reliability

STRATEGIES = ("alpha", "beta")


@dataclass(frozen=True)
class Market:
    """A seeded instrument and the steps the load uses on it (quantities are multiples of unit)."""

    exchange: str
    symbol: str
    unit: Decimal
    tick: Decimal
    multiplier: Decimal


MARKETS = (
    Market("binance", "BTCUSDT", Decimal("0.01"), Decimal("0.01"), Decimal("1")),
    Market("binance", "BNBUSDT", Decimal("0.01"), Decimal("0.1"), Decimal("1")),
    Market("kraken", "ETHUSD", Decimal("0.01"), Decimal("0.01"), Decimal("1")),
    Market("okx", "BTC-USDT-SWAP", Decimal("1"), Decimal("0.1"), Decimal("0.01")),
)
PERPETUAL = MARKETS[3]
# Errors a caller can cause in this load and must be told about: a fill racing another one past the
# order's quantity (23S05), a fill of a rejected order or a cancel of a filled or rejected one (55S01)
EXPECTED = {"fill": {"23S05", "55S01"}, "cancel": {"55S01"}, "place": set(), "funding": set()}
RETRIED = "40001"
DEADLOCK = "40P01"
ATTEMPTS = 5
# the webhook's HMAC key of the second test; never printed
SECRET = "load-test-hmac-key-not-for-logs"


@dataclass(frozen=True)
class Placed:
    order_id: int
    strategy: str
    market: Market
    side: str
    quantity: Decimal
    price: Decimal


@dataclass(frozen=True)
class Fill:
    order_id: int
    exchange_trade_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal


@dataclass(frozen=True)
class Funding:
    strategy: str
    paid_at: datetime
    amount: Decimal


@dataclass
class Ledger:
    """What one client saw acknowledged (the call returned, so its COMMIT did), and what failed."""

    placed: dict[int, Placed] = field(default_factory=dict)
    trades: dict[int, list[Fill]] = field(default_factory=dict)
    funding: dict[int, list[Funding]] = field(default_factory=dict)
    cancels: set[int] = field(default_factory=set)
    ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@dataclass
class Board:
    """What the clients share: orders to fill and cancel, cancelled orders, fills to deliver twice."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    orders: list[Placed] = field(default_factory=list)
    cancelled: list[Placed] = field(default_factory=list)
    acknowledged: list[tuple[Placed, Fill]] = field(default_factory=list)
    redeliver: deque[tuple[Placed, Fill]] = field(default_factory=deque)

    def pick(self, rng: random.Random, items: list[Placed]) -> Placed | None:
        with self.lock:
            return rng.choice(items) if items else None


class Refused(Exception):
    """An expected business error (already counted): the call wrote nothing."""


class Client:
    """One trading application: one connection, random actions until the deadline."""

    def __init__(self, n: int, url: str, board: Board, deadline: float, stop: threading.Event) -> None:
        self.n = n
        self.url = url
        self.board = board
        self.deadline = deadline
        self.stop = stop
        self.rng = random.Random(8_000 + n)
        self.ledger = Ledger()
        self.serial = 0
        self.hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.conn: psycopg.Connection[Any] | None = None
        self.payments: list[Funding] = []  # this client's acknowledged payments, to report again

    def run(self) -> None:
        actions: list[Callable[[], None]] = [
            self.place_and_fill,
            self.fill_any,
            self.cancel_any,
            self.late_fill,
            self.redeliver,
            self.fund,
        ]
        try:
            with psycopg.connect(self.url, autocommit=True, application_name=f"load client {self.n}") as conn:
                self.conn = conn
                while time.monotonic() < self.deadline and not self.stop.is_set():
                    action = self.rng.choices(actions, weights=(4, 2, 1.5, 1, 1, 1))[0]
                    with contextlib.suppress(Refused):
                        action()
        except psycopg.Error as exc:  # asserted on by the test, with the SQLSTATE
            self.ledger.failures.append(f"client {self.n}: {exc.sqlstate} {type(exc).__name__}: {exc}")
        except Exception as exc:  # asserted on by the test
            self.ledger.failures.append(f"client {self.n}: {type(exc).__name__}: {exc}")

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def call(self, kind: str, function: str, **kwargs: Any) -> Any:
        """Call one stored function (autocommit: returning means committed). 40001 is retried and
        counted; an expected business error is counted and raises Refused; a deadlock is counted
        (the test asserts there are none) and raises Refused; anything else propagates."""
        assert self.conn is not None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return call(self.conn, function, **kwargs)
            except psycopg.Error as exc:
                state = exc.sqlstate or type(exc).__name__
                if state == RETRIED and attempt < ATTEMPTS:
                    self.ledger.errors[f"{RETRIED} retried"] += 1
                    continue
                if state in EXPECTED[kind] or state == DEADLOCK:
                    self.ledger.errors[state] += 1
                    raise Refused from exc
                raise
        raise AssertionError("unreachable")

    def place(self) -> Placed:
        strategy = self.rng.choice(STRATEGIES)
        market = self.rng.choice(MARKETS)
        side = self.rng.choice(("buy", "sell"))
        quantity = market.unit * self.rng.randint(5, 20)
        price = market.tick * self.rng.randint(int(100 / market.tick), int(110 / market.tick))
        key = f"c{self.n}-o{self.next_serial()}"
        args = {
            "strategy": strategy,
            "exchange": market.exchange,
            "symbol": market.symbol,
            "side": side,
            "quantity": quantity,
            "price": price,
            "client_order_id": key,
        }
        order_id = self.call("place", "trading.place_order", **args)
        if self.rng.random() < 0.1:  # the placement retried (a lost acknowledgement): the same order
            again = self.call("place", "trading.place_order", **args)
            if again != order_id:
                self.ledger.failures.append(f"retried placement {key} returned order {again}, not {order_id}")
        placed = Placed(order_id, strategy, market, side, quantity, price)
        self.ledger.placed[order_id] = placed
        self.ledger.ops["orders placed"] += 1
        with self.board.lock:
            self.board.orders.append(placed)
        return placed

    def fill(self, placed: Placed, quantity: Decimal, kind: str = "fills") -> Fill:
        market = placed.market
        price = market.tick * self.rng.randint(int(95 / market.tick), int(115 / market.tick))
        fill = Fill(
            placed.order_id,
            f"c{self.n}-t{self.next_serial()}",
            quantity,
            price,
            Decimal(self.rng.randint(0, 50)) / 1000,
        )
        if self.rng.random() < 0.15:  # another client delivers the same fill, maybe at the same time
            with self.board.lock:
                self.board.redeliver.append((placed, fill))
        self.record(placed, fill, kind)
        return fill

    def record(self, placed: Placed, fill: Fill, kind: str) -> int:
        trade_id = self.call(
            "fill",
            "trading.record_fill",
            order_id=fill.order_id,
            exchange_trade_id=fill.exchange_trade_id,
            quantity=fill.quantity,
            price=fill.price,
            fee=fill.fee,
        )
        self.ledger.trades.setdefault(trade_id, []).append(fill)
        self.ledger.ops[kind] += 1
        with self.board.lock:
            self.board.acknowledged.append((placed, fill))
        return trade_id

    def place_and_fill(self) -> None:
        placed = self.place()
        pieces = self.rng.randint(1, 4)
        units = int(placed.quantity / placed.market.unit)
        for _ in range(pieces):
            if units <= 0 or self.rng.random() < 0.2:
                break  # left working, for another client to fill or cancel
            take = self.rng.randint(1, units)
            self.fill(placed, placed.market.unit * take)
            units -= take

    def fill_any(self) -> None:
        placed = self.board.pick(self.rng, self.board.orders)
        if placed is not None:
            self.fill(placed, placed.market.unit * self.rng.randint(1, 6), "fills of other clients' orders")

    def cancel_any(self) -> None:
        placed = self.board.pick(self.rng, self.board.orders)
        if placed is None:
            return
        self.call("cancel", "trading.cancel_order", order_id=placed.order_id, reason=f"client {self.n}")
        self.ledger.cancels.add(placed.order_id)
        self.ledger.ops["cancels"] += 1
        with self.board.lock:
            self.board.cancelled.append(placed)

    def late_fill(self) -> None:
        placed = self.board.pick(self.rng, self.board.cancelled)
        if placed is not None:
            self.fill(placed, placed.market.unit * self.rng.randint(1, 3), "fills after a cancel")

    def redeliver(self) -> None:
        with self.board.lock:
            if self.board.redeliver:
                placed, fill = self.board.redeliver.popleft()
            elif self.board.acknowledged:
                placed, fill = self.rng.choice(self.board.acknowledged)
            else:
                return
        self.record(placed, fill, "fills delivered twice")

    def fund(self) -> None:
        strategy = self.rng.choice(STRATEGIES)
        if self.payments and self.rng.random() < 0.1:  # the same payment reported again
            funding = self.rng.choice(self.payments)
        else:
            # unique per client and call: 16 clients interleave in microseconds of one hour
            paid_at = self.hour + timedelta(microseconds=self.next_serial() * 16 + self.n)
            amount = Decimal(self.rng.choice((-1, 1)) * self.rng.randint(1, 500)) / 100
            funding = Funding(strategy, paid_at, amount)
        funding_id = self.call(
            "funding",
            "trading.record_funding",
            strategy=funding.strategy,
            exchange=PERPETUAL.exchange,
            symbol=PERPETUAL.symbol,
            amount=funding.amount,
            paid_at=funding.paid_at,
        )
        self.ledger.funding.setdefault(funding_id, []).append(funding)
        self.payments.append(funding)
        self.ledger.ops["funding payments"] += 1


@contextlib.contextmanager
def running(targets: list[Callable[[], None]], stop: threading.Event, name: str) -> Iterator[None]:
    """Start a thread per target; on leaving (also on failure) set ``stop`` and join them all."""
    threads = [threading.Thread(target=t, name=f"{name}-{i}", daemon=True) for i, t in enumerate(targets)]
    try:
        for thread in threads:
            thread.start()
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        alive = [t.name for t in threads if t.is_alive()]
        assert alive == [], f"threads still running: {alive}"


def run_load(url: str, clients: int, seconds: int, extra: Callable[[], None] | None = None) -> list[Ledger]:
    """``clients`` trading clients for ``seconds``; ``extra`` runs in the calling thread meanwhile."""
    board = Board()
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    load = [Client(n, url, board, deadline, stop) for n in range(clients)]
    with running([c.run for c in load], stop, "load"):
        if extra is not None:
            extra()
        # why wait here: leaving `running` stops the clients; a failed client stops them early
        while time.monotonic() < deadline and not any(c.ledger.failures for c in load):
            time.sleep(0.1)
    return [c.ledger for c in load]


def merged(ledgers: list[Ledger], tally: Tally) -> Ledger:
    """All clients' ledgers in one; conflicting acknowledgements become failures."""
    total = Ledger()
    for ledger in ledgers:
        total.placed.update(ledger.placed)
        for trade_id, fills in ledger.trades.items():
            total.trades.setdefault(trade_id, []).extend(fills)
        for funding_id, payments in ledger.funding.items():
            total.funding.setdefault(funding_id, []).extend(payments)
        total.cancels |= ledger.cancels
        total.ops.update(ledger.ops)
        total.errors.update(ledger.errors)
        total.failures.extend(ledger.failures)
    for kind, count in sorted(total.ops.items()):
        tally.op(kind, count)
    for state, count in sorted(total.errors.items()):
        for _ in range(count):
            tally.error(state)
    for trade_id, fills in total.trades.items():
        if len(set(fills)) != 1:
            total.failures.append(
                f"trade {trade_id} acknowledged for different fills: {sorted(set(fills), key=str)}"
            )
    for funding_id, payments in total.funding.items():
        if len(set(payments)) != 1:
            total.failures.append(
                f"funding {funding_id} acknowledged for different payments: {set(payments)}"
            )
    return total


def assert_nothing_lost(conn: psycopg.Connection[Any], ledgers: list[Ledger], tally: Tally) -> Ledger:
    """The database holds exactly what the clients saw acknowledged, and the invariants hold."""
    acked = merged(ledgers, tally)
    assert acked.failures == []
    assert acked.errors[DEADLOCK] == 0
    # every kind of action was acknowledged at least once, so the checks below saw all of them
    assert {
        "orders placed",
        "fills",
        "fills of other clients' orders",
        "fills after a cancel",
        "fills delivered twice",
        "cancels",
        "funding payments",
    } <= set(acked.ops)

    # trades: the acknowledged ones, exactly, and no other (by trade id, with their values)
    stored_trades = {
        row[0]: Fill(*row[1:])
        for row in conn.execute(
            "select trade_id, order_id, exchange_trade_id, quantity, price, fee from trading.trades"
        )
    }
    assert stored_trades == {trade_id: fills[0] for trade_id, fills in acked.trades.items()}
    assert conn.execute("select count(*) from trading.trades where is_late").fetchone()[0] > 0

    # orders: the acknowledged placements, each filled by exactly its acknowledged trades
    orders = {
        row[0]: row[1:]
        for row in conn.execute(
            "select order_id, filled_quantity, status::text, quantity, price from trading.orders"
        )
    }
    assert set(orders) == set(acked.placed)
    filled: dict[int, Decimal] = {}
    for fills in acked.trades.values():
        filled[fills[0].order_id] = filled.get(fills[0].order_id, Decimal(0)) + fills[0].quantity
    assert {o: row[0] for o, row in orders.items() if row[0] != 0} == {o: q for o, q in filled.items() if q}
    assert {o: (row[2], row[3]) for o, row in orders.items()} == {
        o: (p.quantity, p.price) for o, p in acked.placed.items()
    }
    # a cancel that was acknowledged stuck, unless a late fill completed the order
    assert sorted(o for o in acked.cancels if orders[o][1] not in ("cancelled", "filled")) == []

    # positions: the sums of their acknowledged trades and funding (no lost update)
    ids = {
        (row[0], row[1], row[2]): (row[3], row[4])
        for row in conn.execute(
            "select s.name, e.code, i.symbol, s.strategy_id, i.instrument_id from trading.strategies s"
            " cross join ref.instruments i join ref.exchanges e using (exchange_id)"
        )
    }
    expected: dict[tuple[int, int], list[Decimal]] = {}
    for fills in acked.trades.values():
        fill = fills[0]
        placed = acked.placed[fill.order_id]
        key = ids[(placed.strategy, placed.market.exchange, placed.market.symbol)]
        sums = expected.setdefault(key, [Decimal(0), Decimal(0), Decimal(0), Decimal(0)])
        sums[0] += fill.quantity if placed.side == "buy" else -fill.quantity
        sums[1] += fill.fee
        sums[2] += 1
    for payments in acked.funding.values():
        key = ids[(payments[0].strategy, PERPETUAL.exchange, PERPETUAL.symbol)]
        expected.setdefault(key, [Decimal(0), Decimal(0), Decimal(0), Decimal(0)])[3] += payments[0].amount
    stored_positions = {
        (row[0], row[1]): list(row[2:])
        for row in conn.execute(
            "select strategy_id, instrument_id, quantity, fees_paid, trade_count, funding from trading.positions"
        )
    }
    assert stored_positions == expected

    # funding: the acknowledged payments, exactly
    stored_funding = {
        row[0]: Funding(*row[1:])
        for row in conn.execute(
            "select f.funding_id, s.name, f.paid_at, f.amount from trading.funding_payments f"
            " join trading.strategies s using (strategy_id)"
        )
    }
    assert stored_funding == {funding_id: payments[0] for funding_id, payments in acked.funding.items()}

    assert tally.check(conn) == []
    return acked


def test_sixteen_clients_filling_cancelling_and_funding_lose_nothing(
    seeded: psycopg.Connection[Any], seeded_url: str, tally: Tally
) -> None:
    ledgers = run_load(seeded_url, 16, scaled(8, 300))
    assert_nothing_lost(seeded, ledgers, tally)


# alpha's max_order_notional in the second test: of its orders (notional 5 to 22), about one in
# seven is above it and is rejected, with a risk event and a webhook notification
MAX_ORDER_NOTIONAL = Decimal("19")


@dataclass
class Readers:
    """What the API readers saw: responses by path and status, items read, and failures."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[str] = field(default_factory=Counter)
    items: int = 0
    failures: list[str] = field(default_factory=list)


def read_history(base: str, token: str, path: str, stop: threading.Event, seen: Readers) -> None:
    """GET a page of ``path`` and the page after it, until ``stop``; count every status."""
    key = "order_id" if path == "orders" else "trade_id"
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            while not stop.is_set():
                cursor = None
                for _ in range(2):
                    params: dict[str, Any] = {"limit": 100} | ({"cursor": cursor} if cursor else {})
                    response = client.get(f"/api/v1/historical/{path}", params=params)
                    with seen.lock:
                        seen.statuses[f"GET {path} {response.status_code}"] += 1
                    if response.status_code != 200:
                        break
                    body = response.json()
                    ids = [item[key] for item in body["items"]]
                    if len(ids) != len(set(ids)):
                        seen.failures.append(f"{path}: a page repeats an id")
                    with seen.lock:
                        seen.items += len(ids)
                    cursor = body["next_cursor"]
                    if cursor is None:
                        break
    except Exception as exc:  # asserted on by the test (the token is in a header, never in exc)
        seen.failures.append(f"{path}: {type(exc).__name__}: {exc}")


def deliver(worker: Worker, stop: threading.Event, failures: list[str]) -> None:
    """`spreadedge notify worker` in a thread: LISTEN, drain, until ``stop``."""
    try:
        with worker:
            worker.run(stop=stop, poll_seconds=0.2)
    except Exception as exc:  # asserted on by the test
        failures.append(f"{worker.name}: {type(exc).__name__}")


def test_notification_workers_and_api_under_the_same_load(
    seeded: psycopg.Connection[Any],
    seeded_url: str,
    migration_ids: list[str],
    http_receiver: HttpReceiver,
    tally: Tally,
) -> None:
    seeded.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
    make_user(seeded, "reader", "admin")
    call(
        seeded,
        "monitor.set_risk_limit",
        strategy="alpha",
        max_order_notional=MAX_ORDER_NOTIONAL,
        channels=["webhook"],
    )
    settings = NotifySettings(
        webhook_url=http_receiver.url("/events"), webhook_secret=SECRET, backoff_seconds=0, batch_size=5
    )
    workers = [
        Worker(seeded_url, settings, configured_channels(settings), name=f"load-{i}") for i in range(2)
    ]
    worker_failures: list[str] = []
    readers = Readers()
    with live_server(seeded_url, migration_ids) as base:
        login = api_login(base, "reader")
        assert login.status_code == 200  # no body in the message: it holds the token
        token = login.json()["token"]
        stop_workers, stop_readers = threading.Event(), threading.Event()
        with running(
            [partial(deliver, w, stop_workers, worker_failures) for w in workers], stop_workers, "notify"
        ):
            with running(
                [
                    partial(read_history, base, token, path, stop_readers, readers)
                    for path in ("orders", "trades")
                ],
                stop_readers,
                "api",
            ):
                ledgers = run_load(seeded_url, 12, scaled(8, 300))
            with http_receiver.lock:
                during = len(http_receiver.requests)
    # what was still queued when the load stopped
    with Worker(seeded_url, settings, configured_channels(settings), name="load-after") as last:
        after = last.drain()
    tally.op("notifications delivered under load", during)
    tally.op("notifications delivered after the load", after)
    for kind, count in sorted(readers.statuses.items()):
        tally.op(f"api {kind}", count)

    assert worker_failures == [] and readers.failures == []
    acked = assert_nothing_lost(seeded, ledgers, tally)

    # the risk limit rejected exactly the alpha orders above it, each with one risk event
    breaching = {
        o
        for o, p in acked.placed.items()
        if p.strategy == "alpha" and p.quantity * p.price * p.market.multiplier > MAX_ORDER_NOTIONAL
    }
    rejected = {
        row[0] for row in seeded.execute("select order_id from trading.orders where status = 'rejected'")
    }
    assert rejected == breaching and len(rejected) > 0
    events = [row[0] for row in seeded.execute("select order_id from monitor.risk_events order by order_id")]
    assert events == sorted(rejected)

    # every notification delivered exactly once (by id at the webhook), at the first attempt, none dead
    outbox = seeded.execute(
        "select n.notification_id, n.channel::text, n.status::text, n.attempts, e.order_id"
        " from monitor.notifications n join monitor.risk_events e using (risk_event_id)"
        " order by n.notification_id"
    ).fetchall()
    assert [row[1:4] for row in outbox] == [("webhook", "delivered", 1)] * len(rejected)
    assert sorted(row[4] for row in outbox) == sorted(rejected)
    received = sorted(int(r.headers["X-Spreadedge-Notification-Id"]) for r in http_receiver.requests)
    assert received == [row[0] for row in outbox]
    assert during > 0

    # the API answered every request of the readers with 200, and read the load's rows
    assert {kind for kind in readers.statuses if not kind.endswith(" 200")} == set()
    assert readers.statuses["GET orders 200"] > 0 and readers.statuses["GET trades 200"] > 0
    assert readers.items > 0
