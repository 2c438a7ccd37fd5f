"""The order and trade history pages merge their drivers exactly: every walk equals one ordered query.

A page reads each (strategy, instrument) pair, strategy or instrument a few rows at a time and
reads on only those that can still reach the page. These tests give it many drivers whose newest
rows are unevenly spread (one pair holding several pages, equal times broken by id, drivers with
no rows at all) and compare every walk through the pages with the plain ordered query of the rows
the caller may see.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from trading_helpers import call, list_spot, place
from trading_helpers import fill as fill_order

T0 = (datetime.now(UTC) - timedelta(days=20)).replace(second=0, microsecond=0)
EXCHANGES = ("binance", "coinbase", "kraken", "bybit", "gateio", "okx")
ALICE_STRATEGIES = ("alice-1", "alice-2", "alice-3")
BOB_STRATEGIES = ("bob-1", "bob-2")


@pytest.fixture
def desk(db: psycopg.Connection) -> dict[str, int]:
    """BTCUSDT on six exchanges and ETHUSDT on binance; alice owns three strategies, bob two, root is
    an admin. Orders: an even spread over every pair, a burst of alice's newest on one pair, a run of
    equal times, and a pair of alice's that never traded; every other order is filled at the time
    it was placed, so the trades have the same shape. Returns the user ids."""
    for exchange in EXCHANGES:
        for symbol, base in (("BTCUSDT", "BTC"), ("ETHUSDT", "ETH")):
            list_spot(db, exchange, symbol, base_asset=base, min_notional=Decimal("0"))
    db.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
    users = {"alice": make_user(db, "alice", "trader"), "bob": make_user(db, "bob", "trader")}
    users["root"] = make_user(db, "root", "admin")
    for owner, names in (("alice", ALICE_STRATEGIES), ("bob", BOB_STRATEGIES)):
        for name in names:
            call(db, "trading.create_strategy", name=name, owner_user_id=users[owner])
    rng = random.Random(20261121)
    strategies = ALICE_STRATEGIES + BOB_STRATEGIES
    # an even spread: every strategy on every exchange but alice-3 on okx, at random times
    for n in range(150):
        strategy, exchange = rng.choice(strategies), rng.choice(EXCHANGES)
        if (strategy, exchange) == ("alice-3", "okx"):
            continue
        symbol = "ETHUSDT" if n % 5 == 0 else "BTCUSDT"
        _place(
            db, strategy, exchange, symbol, T0 + timedelta(minutes=rng.randrange(0, 10_000)), fill=n % 2 == 0
        )
    # alice-2 on kraken holds the 40 newest orders: one pair fills several pages alone
    for n in range(40):
        _place(db, "alice-2", "kraken", "BTCUSDT", T0 + timedelta(minutes=20_000 + n), fill=n % 2 == 0)
    # equal times on three pairs: the id alone orders them
    for strategy, exchange in (("alice-1", "binance"), ("alice-3", "bybit"), ("bob-1", "binance")):
        for n in range(4):
            _place(db, strategy, exchange, "BTCUSDT", T0 + timedelta(minutes=15_000), fill=n % 2 == 0)
    return users


def _place(
    db: psycopg.Connection, strategy: str, exchange: str, symbol: str, at: datetime, *, fill: bool
) -> None:
    order_id = place(
        db, "buy", "0.01", "50000", strategy=strategy, exchange=exchange, symbol=symbol, placed_at=at
    )
    if fill:
        fill_order(db, order_id, "0.01", "50000", executed_at=at)


FILTERS = ("symbol", "exchange", "strategy", "status", "start_date", "end_date")
PAGES = {
    "orders": (
        "select trading.order_history_page(symbol => %(symbol)s, exchange => %(exchange)s,"
        " strategy => %(strategy)s, status => %(status)s, start_date => %(start_date)s,"
        " end_date => %(end_date)s, page_size => %(page_size)s, cursor => %(cursor)s)::text",
        "order_id",
    ),
    "trades": (
        "select trading.trade_history_page(symbol => %(symbol)s, exchange => %(exchange)s,"
        " strategy => %(strategy)s, start_date => %(start_date)s, end_date => %(end_date)s,"
        " page_size => %(page_size)s, cursor => %(cursor)s)::text",
        "trade_id",
    ),
}
# the same rows by one plain ordered query over the strategies of some owners (run as superuser)
EXPECTED = {
    "orders": "select o.order_id from trading.orders o"
    " join trading.strategies s on s.strategy_id = o.strategy_id"
    " join auth.users u on u.user_id = s.owner_user_id"
    " join ref.instruments i on i.instrument_id = o.instrument_id"
    " join ref.exchanges e on e.exchange_id = i.exchange_id"
    " where u.username = any(%(owners)s)"
    "   and (%(symbol)s::text is null or i.symbol = %(symbol)s)"
    "   and (%(exchange)s::text is null or e.code = %(exchange)s)"
    "   and (%(strategy)s::text is null or s.name = %(strategy)s)"
    "   and (%(status)s::text is null or o.status::text = %(status)s)"
    "   and (%(start_date)s::timestamptz is null or o.created_at >= %(start_date)s)"
    "   and (%(end_date)s::timestamptz is null or o.created_at < %(end_date)s)"
    " order by o.created_at desc, o.order_id desc",
    "trades": "select t.trade_id from trading.trades t"
    " join trading.strategies s on s.strategy_id = t.strategy_id"
    " join auth.users u on u.user_id = s.owner_user_id"
    " join ref.instruments i on i.instrument_id = t.instrument_id"
    " join ref.exchanges e on e.exchange_id = i.exchange_id"
    " where u.username = any(%(owners)s)"
    "   and (%(symbol)s::text is null or i.symbol = %(symbol)s)"
    "   and (%(exchange)s::text is null or e.code = %(exchange)s)"
    "   and (%(strategy)s::text is null or s.name = %(strategy)s)"
    "   and (%(start_date)s::timestamptz is null or t.executed_at >= %(start_date)s)"
    "   and (%(end_date)s::timestamptz is null or t.executed_at < %(end_date)s)"
    " order by t.executed_at desc, t.trade_id desc",
}


def walk(db: psycopg.Connection, kind: str, page_size: int, **filters: object) -> list[int]:
    """The ids of every page of the orders or trades history, first to last."""
    query, key = PAGES[kind]
    seen: list[int] = []
    cursor = None
    while True:
        text = db.execute(
            query, {name: None for name in FILTERS} | filters | {"page_size": page_size, "cursor": cursor}
        ).fetchone()[0]
        page = json.loads(text)
        assert len(page["items"]) <= page_size
        ids = [item[key] for item in page["items"]]
        # a row already seen: the cursor led back, and the walk would never end
        assert not set(ids) & set(seen), f"rows {sorted(set(ids) & set(seen))} repeated on a later page"
        seen += ids
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def expected(db: psycopg.Connection, kind: str, owners: list[str], **filters: object) -> list[int]:
    params = {name: None for name in FILTERS} | filters | {"owners": owners}
    return [r[0] for r in db.execute(EXPECTED[kind], params)]


KINDS = pytest.mark.parametrize("kind", ["orders", "trades"])


@KINDS
@pytest.mark.parametrize("page_size", [1, 3, 7, 20, 1000])
def test_symbol_pages_of_a_scoped_trader_merge_every_pair_exactly(
    db: psycopg.Connection, desk: dict[str, int], kind: str, page_size: int
) -> None:
    want = expected(db, kind, ["alice"], symbol="BTCUSDT")
    with acting_as(db, "spreadedge_app", desk["alice"]):
        got = walk(db, kind, page_size, symbol="BTCUSDT")
    assert len(want) > 50
    assert got == want


@KINDS
def test_symbol_pages_of_an_admin_merge_every_instrument_exactly(
    db: psycopg.Connection, desk: dict[str, int], kind: str
) -> None:
    want = expected(db, kind, ["alice", "bob"], symbol="BTCUSDT")
    with acting_as(db, "spreadedge_app", desk["root"]):
        got = walk(db, kind, 7, symbol="BTCUSDT")
    assert got == want


@KINDS
def test_pages_of_a_scoped_trader_without_a_symbol_merge_every_strategy_exactly(
    db: psycopg.Connection, desk: dict[str, int], kind: str
) -> None:
    want = expected(db, kind, ["alice"])
    with acting_as(db, "spreadedge_app", desk["alice"]):
        got = walk(db, kind, 9)
    assert got == want


@KINDS
def test_exchange_and_strategy_pages_of_an_admin_read_one_pair(
    db: psycopg.Connection, desk: dict[str, int], kind: str
) -> None:
    want = expected(db, kind, ["alice", "bob"], exchange="kraken", strategy="alice-2")
    with acting_as(db, "spreadedge_app", desk["root"]):
        got = walk(db, kind, 6, exchange="kraken", strategy="alice-2")
    assert len(want) >= 20
    assert got == want


@KINDS
def test_time_filters_apply_to_every_pair(db: psycopg.Connection, desk: dict[str, int], kind: str) -> None:
    window = {"start_date": T0 + timedelta(minutes=2_000), "end_date": T0 + timedelta(minutes=20_010)}
    want = expected(db, kind, ["alice"], symbol="BTCUSDT", **window)
    with acting_as(db, "spreadedge_app", desk["alice"]):
        got = walk(db, kind, 4, symbol="BTCUSDT", **window)
    assert len(want) > 20
    assert got == want


def test_order_status_filter_applies_to_every_pair(db: psycopg.Connection, desk: dict[str, int]) -> None:
    unfilled = [
        r[0]
        for r in db.execute(
            "select o.order_id from trading.orders o join trading.strategies s using (strategy_id)"
            " where s.name like 'alice-%' and o.filled_quantity = 0 order by o.order_id"
        )
    ]
    for order_id in unfilled[::3]:
        call(db, "trading.cancel_order", order_id=order_id, reason="test")
    want = expected(db, "orders", ["alice"], symbol="BTCUSDT", status="cancelled")
    with acting_as(db, "spreadedge_app", desk["alice"]):
        got = walk(db, "orders", 4, symbol="BTCUSDT", status="cancelled")
    assert len(want) > 10
    assert got == want


@KINDS
def test_a_pair_that_never_traded_and_another_traders_strategy_give_empty_pages(
    db: psycopg.Connection, desk: dict[str, int], kind: str
) -> None:
    with acting_as(db, "spreadedge_app", desk["alice"]):
        assert walk(db, kind, 5, exchange="okx", strategy="alice-3") == []
        assert walk(db, kind, 5, strategy="bob-1") == []


@pytest.fixture
def months(db: psycopg.Connection, desk: dict[str, int]) -> dict[str, int]:
    """The desk, plus orders (every other one filled) months back and up to half a day ahead, on
    several pairs of both owners, so that pages cross the slices a page is merged in: the month of
    its newest possible row, the month before, and everything older. 85 days back is still inside
    the oldest partition the default settings make (three months before this month)."""
    now = datetime.now(UTC).replace(microsecond=0)
    spread = (
        ("alice-1", "binance"),
        ("alice-2", "kraken"),
        ("alice-3", "bybit"),
        ("bob-1", "coinbase"),
        ("bob-2", "binance"),
    )
    for days in (85, 62, 40, 31):
        for n, (strategy, exchange) in enumerate(spread):
            _place(
                db, strategy, exchange, "BTCUSDT", now - timedelta(days=days, minutes=7 * n), fill=n % 2 == 0
            )
    for hours in (-1, 6, 12):
        _place(db, "alice-1", "okx", "BTCUSDT", now + timedelta(hours=hours), fill=True)
    return desk


@KINDS
@pytest.mark.parametrize("page_size", [1, 4, 30])
def test_symbol_pages_of_a_scoped_trader_merge_months_of_pairs_exactly(
    db: psycopg.Connection, months: dict[str, int], kind: str, page_size: int
) -> None:
    want = expected(db, kind, ["alice"], symbol="BTCUSDT")
    with acting_as(db, "spreadedge_app", months["alice"]):
        got = walk(db, kind, page_size, symbol="BTCUSDT")
    assert got == want


@KINDS
def test_pages_of_an_admin_and_of_a_trader_without_a_symbol_merge_months_exactly(
    db: psycopg.Connection, months: dict[str, int], kind: str
) -> None:
    want_all = expected(db, kind, ["alice", "bob"], symbol="BTCUSDT")
    want_alice = expected(db, kind, ["alice"])
    with acting_as(db, "spreadedge_app", months["root"]):
        got_all = walk(db, kind, 6, symbol="BTCUSDT")
    with acting_as(db, "spreadedge_app", months["alice"]):
        got_alice = walk(db, kind, 5)
    assert got_all == want_all
    assert got_alice == want_alice


@KINDS
def test_a_time_window_across_months_reads_only_its_rows(
    db: psycopg.Connection, months: dict[str, int], kind: str
) -> None:
    now = datetime.now(UTC)
    window = {"start_date": now - timedelta(days=70), "end_date": now - timedelta(days=35)}
    want = expected(db, kind, ["alice", "bob"], symbol="BTCUSDT", **window)
    with acting_as(db, "spreadedge_app", months["root"]):
        got = walk(db, kind, 3, symbol="BTCUSDT", **window)
    # 62 and 40 days back, on the five pairs (trades: the three filled of each five)
    assert len(want) == (10 if kind == "orders" else 6)
    assert got == want


ROWS = {
    "orders": "select r.order_id from internal.order_page_rows(%(instruments)s, %(strategies)s, null, null,"
    " null, null, null, null, 1000) r",
    "trades": "select r.trade_id from internal.trade_page_rows(%(instruments)s, %(strategies)s,"
    " null, null, null, null, 1000) r",
}


@KINDS
def test_the_row_reader_called_directly_returns_only_the_callers_strategies(
    db: psycopg.Connection, desk: dict[str, int], kind: str
) -> None:
    # why: it runs as its owner (row-level security does not apply inside) and is granted to every
    # reading role, so the strategies it was asked for must be cut down to the caller's own
    bob = [r[0] for r in db.execute("select strategy_id from trading.strategies where name like 'bob-%'")]
    instruments = [r[0] for r in db.execute("select instrument_id from ref.instruments")]
    mine = expected(db, kind, ["alice"])
    with acting_as(db, "spreadedge_app", desk["alice"]):
        asked_for_bob = [r[0] for r in db.execute(ROWS[kind], {"instruments": None, "strategies": bob})]
        by_instrument = [
            r[0] for r in db.execute(ROWS[kind], {"instruments": instruments, "strategies": None})
        ]
    assert asked_for_bob == []
    assert by_instrument == mine
