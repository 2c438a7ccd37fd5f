"""Edges of the history pages and the trade summary, called in SQL: rows tied in time on a UTC month
boundary, a cursor another trader was given, and the exact ends of a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from trading_helpers import call, fill, list_spot, place

# this month's first instant: its partition and the one before it always exist
MONTH = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
US = timedelta(microseconds=1)


@pytest.fixture
def traders(seeded: psycopg.Connection) -> dict[str, int]:
    """alice owns alice-1 and alice-2, bob owns bob-1; BTCUSDT on binance and kraken."""
    list_spot(seeded, "kraken", "BTCUSDT", min_notional=Decimal("0"))
    seeded.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
    users = {"alice": make_user(seeded, "alice", "trader"), "bob": make_user(seeded, "bob", "trader")}
    for name, owner in (("alice-1", "alice"), ("alice-2", "alice"), ("bob-1", "bob")):
        call(seeded, "trading.create_strategy", name=name, owner_user_id=users[owner])
    return users


def order_at(db: psycopg.Connection, strategy: str, exchange: str, at: datetime) -> int:
    order_id = place(db, "buy", "0.01", "50000", strategy=strategy, exchange=exchange, placed_at=at)
    fill(db, order_id, "0.01", "50000", executed_at=at)
    return order_id


def walk(db: psycopg.Connection, function: str, key: str, page_size: int, **filters: object) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        page = call(db, function, page_size=page_size, cursor=cursor, **filters)
        assert len(page["items"]) <= page_size
        ids = [item[key] for item in page["items"]]
        # a row already seen: the cursor led back, and the walk would never end
        assert not set(ids) & set(seen), f"rows {sorted(set(ids) & set(seen))} repeated on a later page"
        seen += ids
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


@pytest.mark.parametrize(
    ("function", "key"),
    [("trading.order_history_page", "order_id"), ("trading.trade_history_page", "trade_id")],
)
def test_one_row_pages_walk_rows_tied_on_a_month_boundary_in_id_order(
    seeded: psycopg.Connection, traders: dict[str, int], function: str, key: str
) -> None:
    # the first slice of a page after a cursor at the month's first instant is one microsecond
    # long: the rows tied with it, then the month before, on two pairs of one trader
    times = [MONTH - US, MONTH, MONTH, MONTH + US, MONTH, MONTH - US]
    pairs = [("alice-1", "binance"), ("alice-2", "kraken")]
    ids = [order_at(seeded, *pairs[n % 2], at) for n, at in enumerate(times)]
    if key == "trade_id":
        ids = [r[0] for r in seeded.execute("select trade_id from trading.trades order by order_id")]
    newest_first = [ids[3], ids[4], ids[2], ids[1], ids[5], ids[0]]
    with acting_as(seeded, "spreadedge_app", traders["alice"]):
        assert walk(seeded, function, key, 1, symbol="BTCUSDT") == newest_first
        assert walk(seeded, function, key, 1) == newest_first
        assert walk(seeded, function, key, 1, start_date=MONTH, end_date=MONTH + US) == newest_first[1:4]


def test_a_cursor_given_to_another_trader_pages_only_the_callers_rows(
    seeded: psycopg.Connection, traders: dict[str, int]
) -> None:
    # a cursor is only a position: bob's, passed to alice, pages her rows older than it
    at = MONTH + timedelta(minutes=1)
    mine = [order_at(seeded, "alice-1", "binance", at - timedelta(seconds=n)) for n in range(3)]
    order_at(seeded, "bob-1", "binance", at)
    order_at(seeded, "bob-1", "binance", at - timedelta(seconds=5))
    with acting_as(seeded, "spreadedge_app", traders["bob"]):
        bobs = call(seeded, "trading.order_history_page", page_size=1)
    with acting_as(seeded, "spreadedge_app", traders["alice"]):
        page = call(seeded, "trading.order_history_page", cursor=bobs["next_cursor"])
        summary = call(seeded, "trading.trade_summary", group_by="exchange")
    assert [item["order_id"] for item in page["items"]] == mine
    assert [(g["key"], g["trades"]) for g in summary["groups"]] == [("binance", 3)]


def test_order_pages_include_start_date_and_exclude_end_date_to_the_microsecond(
    seeded: psycopg.Connection, traders: dict[str, int]
) -> None:
    at = MONTH + timedelta(minutes=2)
    order_at(seeded, "alice-1", "binance", at - US)
    inside = order_at(seeded, "alice-1", "binance", at)
    last = order_at(seeded, "alice-1", "binance", at + timedelta(seconds=1) - US)
    order_at(seeded, "alice-1", "binance", at + timedelta(seconds=1))
    page = call(
        seeded,
        "trading.order_history_page",
        start_date=at,
        end_date=at + timedelta(seconds=1),
        page_size=1000,
    )
    assert [item["order_id"] for item in page["items"]] == [last, inside]
    assert page["next_cursor"] is None


# bug: an order's fills were listed in trade id order, so a fill delivered late (by REST after the
# websocket missed it) came after a later one, though the detail lists fills oldest first
def test_order_detail_lists_a_fill_delivered_late_by_its_execution_time(seeded: psycopg.Connection) -> None:
    order_id = place(seeded, "buy", "1", "60000")
    now = datetime.now(UTC).replace(microsecond=0)
    fill(seeded, order_id, "0.4", "60000", exchange_trade_id="t-2", executed_at=now - timedelta(minutes=1))
    fill(seeded, order_id, "0.6", "60000", exchange_trade_id="t-1", executed_at=now - timedelta(minutes=2))
    detail = call(seeded, "trading.order_detail", order_id=order_id)
    assert [t["exchange_trade_id"] for t in detail["trades"]] == ["t-1", "t-2"]
