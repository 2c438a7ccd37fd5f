"""Keyset pages stay exact while orders and trades are written between page reads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest

from api_fixtures import T0, api_login, live_server, seed_history
from trading_helpers import call, fill, place


def walk(url: str, path: str, token: str, limit: int, between: Callable[[], None]) -> list[int]:
    """Every id of every page, calling ``between`` after each page."""
    key = "order_id" if path == "orders" else "trade_id"
    seen, cursor = [], None
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        body = httpx.get(
            f"{url}/api/v1/historical/{path}", params=params, headers={"Authorization": f"Bearer {token}"}
        ).json()
        seen += [item[key] for item in body["items"]]
        between()
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_order_pages_skip_and_repeat_nothing_while_orders_are_placed(
    db: psycopg.Connection, db_url: str, migration_ids: list[str]
) -> None:
    seed_history(db)
    before = [
        r[0]
        for r in db.execute("select order_id from trading.orders order by created_at desc, order_id desc")
    ]
    placed = iter(range(100))

    def place_more() -> None:
        # one newer than everything, one older than everything, both while a client pages through
        place(db, "buy", "0.01", "50000", strategy="alice-arb", client_order_id=f"new-{next(placed)}")
        place(
            db, "buy", "0.01", "50000", strategy="alice-arb", placed_at=T0 - timedelta(hours=1 + next(placed))
        )

    with live_server(db_url, migration_ids) as url:
        token = api_login(url, "root").json()["token"]
        seen = walk(url, "orders", token, 2, place_more)
    assert len(seen) == len(set(seen))
    assert [o for o in seen if o in before] == before


def test_trade_pages_skip_and_repeat_nothing_under_concurrent_fills(
    db: psycopg.Connection, db_url: str, migration_ids: list[str]
) -> None:
    seed_history(db)
    before = [
        r[0]
        for r in db.execute("select trade_id from trading.trades order by executed_at desc, trade_id desc")
    ]
    stop = threading.Event()

    def fill_continuously() -> None:
        with psycopg.connect(db_url, autocommit=True) as writer:
            n = 0
            while not stop.is_set() and n < 200:
                order_id = place(writer, "buy", "0.01", "50000", strategy="bob-arb")
                fill(writer, order_id, "0.01", "50000", fee=Decimal("0"))
                n += 1

    writer = threading.Thread(target=fill_continuously)
    with live_server(db_url, migration_ids) as url:
        token = api_login(url, "root").json()["token"]
        writer.start()
        try:
            seen = walk(url, "trades", token, 1, lambda: None)
        finally:
            stop.set()
            writer.join()
    assert len(seen) == len(set(seen))
    assert [t for t in seen if t in before] == before


def test_a_cursor_cut_short_is_refused_not_read_as_an_earlier_position(db: psycopg.Connection) -> None:
    # "<time>:2586" cut by one base64 character used to decode to "<time>:258", a valid position
    # that silently skipped the rows tied in time with ids 258 to 2585
    cursor = call(db, "internal.page_cursor", p_list="orders", p_at=T0, p_id=2586)
    assert call(db, "trading.order_history_page", cursor=cursor) == {"items": [], "next_cursor": None}
    with pytest.raises(psycopg.Error) as refused:
        call(db, "trading.order_history_page", cursor=cursor[:-1])
    assert (refused.value.sqlstate, refused.value.diag.column_name) == ("22S09", "cursor")


@pytest.mark.parametrize(
    ("issuer", "function"),
    [
        ("trades", "trading.order_history_page"),
        ("orders", "trading.trade_history_page"),
        ("orders", "trading.portfolio_snapshot_page"),
        ("snapshots", "trading.order_history_page"),
    ],
)
def test_a_cursor_of_another_list_is_refused_not_read_as_a_position(
    db: psycopg.Connection, issuer: str, function: str
) -> None:
    # a trades cursor given to the orders list used to page the orders from the trade's time and id
    cursor = call(db, "internal.page_cursor", p_list=issuer, p_at=T0, p_id=2586)
    with pytest.raises(psycopg.Error) as refused:
        call(db, function, cursor=cursor)
    assert (refused.value.sqlstate, refused.value.diag.column_name) == ("22S09", "cursor")
    assert f"is a cursor of the {issuer} history" in refused.value.diag.message_primary
