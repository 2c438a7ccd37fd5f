"""The history endpoints over HTTP: what each returns, filter by filter, as row-level security allows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg

from api_fixtures import T0, Api
from trading_helpers import call, fill, place

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def iso(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def order_ids(api: Api, user: str = "alice", **params: object) -> list[int]:
    response = api.get("orders", user, **params)
    assert response.status_code == 200, response.text
    return [item["order_id"] for item in response.json()["items"]]


def test_orders_of_a_trader_are_only_their_own_newest_first(api: Api, ids: dict[str, int]) -> None:
    assert order_ids(api, "alice") == [ids["a4"], ids["a3"], ids["a2"], ids["a1"]]
    assert order_ids(api, "bob") == [ids["b2"], ids["b1"]]


def test_orders_of_an_admin_are_everyone_s(api: Api, ids: dict[str, int]) -> None:
    expected = [ids[k] for k in ("a4", "a3", "b2", "a2", "b1", "a1")]
    assert order_ids(api, "root") == expected


def test_orders_filter_by_symbol(api: Api, ids: dict[str, int]) -> None:
    assert order_ids(api, symbol="ETHUSD") == [ids["a3"]]


def test_orders_filter_by_exchange(api: Api, ids: dict[str, int]) -> None:
    assert order_ids(api, exchange="kraken") == [ids["a3"]]


def test_orders_filter_by_status(api: Api, ids: dict[str, int]) -> None:
    assert order_ids(api, status="filled") == [ids["a2"], ids["a1"]]
    assert order_ids(api, status="partially_filled") == [ids["a4"]]
    assert order_ids(api, status="cancelled") == [ids["a3"]]


def test_orders_filter_by_side(api: Api, ids: dict[str, int]) -> None:
    assert order_ids(api, side="sell") == [ids["a2"]]


def test_orders_filter_by_time_range_inclusive_start_exclusive_end(api: Api, ids: dict[str, int]) -> None:
    assert order_ids(api, start_date=iso(60), end_date=iso(180)) == [ids["a3"], ids["a2"]]


def test_orders_filter_by_another_traders_strategy_matches_nothing(api: Api) -> None:
    assert order_ids(api, "alice", strategy="bob-arb") == []
    assert order_ids(api, "root", strategy="bob-arb") != []


def test_order_item_has_decimal_strings_and_utc_times(api: Api, ids: dict[str, int]) -> None:
    item = api.get("orders", "alice", side="sell").json()["items"][0]
    assert item == {
        "order_id": ids["a2"],
        "created_at": (T0 + timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "strategy": "alice-arb",
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "side": "sell",
        "order_type": "limit",
        "quantity": "1",
        "price": "61000",
        "stop_price": None,
        "status": "filled",
        "filled_quantity": "1",
        "avg_fill_price": "61000",
        "client_order_id": None,
        "exchange_order_id": None,
        "status_reason": None,
        "updated_at": item["updated_at"],
        "exchange_initiated": None,
    }
    assert ISO_UTC.match(item["updated_at"])


def test_orders_pages_walk_every_row_once_in_order(api: Api, ids: dict[str, int]) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        body = api.get("orders", "root", limit=4, cursor=cursor).json()
        seen += [item["order_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None or pages > 2:  # a cursor that led back would walk for ever
            break
    assert seen == [ids[k] for k in ("a4", "a3", "b2", "a2", "b1", "a1")]
    assert pages == 2


def test_orders_last_page_has_no_next_cursor(api: Api) -> None:
    assert api.get("orders", "alice", limit=4).json()["next_cursor"] is None
    assert api.get("orders", "alice", limit=3).json()["next_cursor"] is not None


def test_order_detail_has_events_and_trades_oldest_first(api: Api, ids: dict[str, int]) -> None:
    body = api.get(f"orders/{ids['a2']}").json()
    assert body["order"]["order_id"] == ids["a2"]
    assert [(e["from_status"], e["to_status"]) for e in body["events"]] == [
        (None, "new"),
        ("new", "partially_filled"),
        ("partially_filled", "filled"),
    ]
    assert [(t["exchange_trade_id"], t["quantity"], t["fee"], t["realized_pnl"]) for t in body["trades"]] == [
        ("a2-1", "0.4", "2.44", "397.56"),
        ("a2-2", "0.6", "3.66", "596.34"),
    ]


def test_order_detail_lists_every_event_of_an_order_placed_ahead_of_now(seeded: psycopg.Connection) -> None:
    # placed_at may be up to a day ahead; the fill and the cancel are written at now(), before it
    order_id = place(seeded, "buy", "1", "60000", placed_at=datetime.now(UTC) + timedelta(hours=3))
    fill(seeded, order_id, "0.4", "60000")
    call(seeded, "trading.cancel_order", order_id=order_id, reason="spread closed")
    detail = call(seeded, "trading.order_detail", order_id=order_id)
    assert [(e["from_status"], e["to_status"]) for e in detail["events"]] == [
        (None, "new"),
        ("new", "partially_filled"),
        ("partially_filled", "cancelled"),
    ]


def test_order_detail_of_another_traders_order_is_not_found(api: Api, ids: dict[str, int]) -> None:
    response = api.get(f"orders/{ids['b1']}", "alice")
    assert response.status_code == 404
    assert response.json()["sqlstate"] == "23S04"
    assert api.get(f"orders/{ids['b1']}", "root").status_code == 200


def test_order_detail_of_an_unknown_order_is_not_found(api: Api) -> None:
    response = api.get("orders/999999999")
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown order 999999999"


def test_trades_of_a_trader_newest_first(api: Api) -> None:
    items = api.get("trades", "alice").json()["items"]
    assert [t["exchange_trade_id"] for t in items] == ["a4-1", "a2-2", "a2-1", "a1-1"]
    assert [t["realized_pnl"] for t in items] == ["0", "596.34", "397.56", "-6"]


def test_trades_filter_by_time_and_paginate(api: Api) -> None:
    first = api.get("trades", "root", start_date=iso(30), end_date=iso(91), limit=2).json()
    second = api.get(
        "trades", "root", start_date=iso(30), end_date=iso(91), limit=2, cursor=first["next_cursor"]
    ).json()
    assert [t["exchange_trade_id"] for t in first["items"] + second["items"]] == ["a2-2", "a2-1", "b1-1"]
    assert second["next_cursor"] is None


def test_trades_summary_by_strategy_for_an_admin(api: Api) -> None:
    body = api.get("trades/summary", "root").json()
    assert body["group_by"] == "strategy"
    assert body["groups"] == [
        {
            "key": "alice-arb",
            "quote_asset": "USDT",
            "trades": 4,
            "volume": "2.2",
            "notional": "132800",
            "fees": "12.1",
            "realized_pnl": "987.9",
            "closing_trades": 2,
            "winning_trades": 2,
            "win_rate": "1",
        },
        {
            "key": "bob-arb",
            "quote_asset": "USDT",
            "trades": 2,
            "volume": "2",
            "notional": "117000",
            "fees": "0",
            "realized_pnl": "-1000",
            "closing_trades": 1,
            "winning_trades": 0,
            "win_rate": "0",
        },
    ]


def test_trades_summary_of_a_trader_leaves_out_other_traders(api: Api) -> None:
    groups = api.get("trades/summary", "bob", group_by="symbol").json()["groups"]
    assert groups == [
        {
            "key": "BTCUSDT",
            "quote_asset": "USDT",
            "trades": 2,
            "volume": "2",
            "notional": "117000",
            "fees": "0",
            "realized_pnl": "-1000",
            "closing_trades": 1,
            "winning_trades": 0,
            "win_rate": "0",
        }
    ]


def test_trades_summary_by_day_within_dates(api: Api) -> None:
    body = api.get("trades/summary", "root", group_by="day", start_date=iso(61), end_date=iso(91)).json()
    assert [(g["key"], g["trades"], g["realized_pnl"]) for g in body["groups"]] == [
        (T0.strftime("%Y-%m-%d"), 2, "993.9")
    ]


def test_positions_open_and_closed(api: Api) -> None:
    open_items = api.get("positions", "alice", status="open").json()["items"]
    assert [
        (p["strategy"], p["symbol"], p["quantity"], p["avg_entry_price"], p["realized_pnl"], p["trade_count"])
        for p in open_items
    ] == [("alice-arb", "BTCUSDT", "0.2", "59000", "987.9", 4)]
    assert api.get("positions", "alice", status="closed").json()["items"] == []
    closed = api.get("positions", "bob", status="closed").json()["items"]
    assert [(p["strategy"], p["quantity"], p["realized_pnl"]) for p in closed] == [("bob-arb", "0", "-1000")]


def test_positions_of_a_trader_leave_out_other_traders(api: Api) -> None:
    strategies = {p["strategy"] for p in api.get("positions", "alice").json()["items"]}
    assert strategies == {"alice-arb"}
    assert {p["strategy"] for p in api.get("positions", "root").json()["items"]} == {"alice-arb", "bob-arb"}


def test_snapshots_of_a_trader_are_their_strategies_without_the_total(api: Api) -> None:
    items = api.get("portfolio/snapshots", "alice").json()["items"]
    assert [(s["strategy"], s["realized_pnl"]) for s in items] == [("alice-arb", "987.9")]


def test_snapshots_of_an_admin_include_the_total_row(api: Api) -> None:
    items = api.get("portfolio/snapshots", "root", strategy=None).json()["items"]
    assert {s["strategy"] for s in items} == {None, "alpha", "beta", "alice-arb", "bob-arb"}
    total = next(s for s in items if s["strategy"] is None)
    assert total["realized_pnl"] == "-12.1"


def test_latest_portfolio(api: Api) -> None:
    body = api.get("portfolio/latest", "root").json()
    assert body["taken_at"] == (T0 + timedelta(minutes=240)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert body["total"]["strategy"] is None
    assert [s["strategy"] for s in body["strategies"]] == ["alice-arb", "alpha", "beta", "bob-arb"]
    mine = api.get("portfolio/latest", "bob").json()
    assert mine["total"] is None
    assert [s["strategy"] for s in mine["strategies"]] == ["bob-arb"]


def test_trades_filter_by_symbol_exchange_and_strategy(api: Api) -> None:
    def trade_ids(**params: object) -> list[str]:
        return [t["exchange_trade_id"] for t in api.get("trades", "root", **params).json()["items"]]

    assert trade_ids(symbol="BTCUSDT", strategy="bob-arb") == ["b2-1", "b1-1"]
    assert trade_ids(exchange="binance", strategy="alice-arb") == ["a4-1", "a2-2", "a2-1", "a1-1"]
    assert trade_ids(exchange="kraken") == []


def test_positions_filter_by_strategy_exchange_and_symbol(api: Api) -> None:
    def keys(**params: object) -> list[tuple[str, str, str]]:
        items = api.get("positions", "root", **params).json()["items"]
        return [(p["strategy"], p["exchange"], p["symbol"]) for p in items]

    assert keys(strategy="bob-arb") == [("bob-arb", "binance", "BTCUSDT")]
    assert keys(exchange="binance", symbol="BTCUSDT") == [
        ("alice-arb", "binance", "BTCUSDT"),
        ("bob-arb", "binance", "BTCUSDT"),
    ]
    assert keys(symbol="ETHUSD") == []


def test_snapshots_filter_by_strategy_and_time_and_paginate(api: Api) -> None:
    taken = (T0 + timedelta(minutes=240)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    items = api.get("portfolio/snapshots", "root", strategy="bob-arb").json()["items"]
    assert [(s["strategy"], s["taken_at"], s["realized_pnl"]) for s in items] == [("bob-arb", taken, "-1000")]
    assert api.get("portfolio/snapshots", "root", end_date=iso(240)).json()["items"] == []
    first = api.get("portfolio/snapshots", "root", limit=3).json()
    second = api.get("portfolio/snapshots", "root", limit=3, cursor=first["next_cursor"]).json()
    ids = [s["snapshot_id"] for s in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 5
    assert second["next_cursor"] is None
