"""Bad input gets a 400 or 422 problem naming the parameter; never a 500, never internals."""

from __future__ import annotations

import httpx
import pytest

from api_fixtures import Api


@pytest.mark.parametrize(
    ("path", "params", "status", "parameter"),
    [
        ("orders", {"limit": 0}, 422, "limit"),
        ("orders", {"limit": 1001}, 422, "limit"),
        ("orders", {"limit": "ten"}, 422, "limit"),
        ("orders", {"status": "done"}, 422, "status"),
        ("orders", {"side": "long"}, 422, "side"),
        ("orders", {"start_date": "yesterday"}, 422, "start_date"),
        ("orders", {"start_date": "2026-02-01", "end_date": "2026-01-01"}, 400, "end_date"),
        ("orders", {"cursor": "not-a-cursor"}, 400, "cursor"),
        ("trades", {"cursor": "MTIzOmFiYw"}, 400, "cursor"),
        ("trades/summary", {"group_by": "week"}, 422, "group_by"),
        ("positions", {"status": "half"}, 422, "status"),
        ("portfolio/snapshots", {"limit": -1}, 422, "limit"),
        ("orders/abc", {}, 422, "order_id"),
        ("orders/0", {}, 422, "order_id"),
        ("orders/99999999999999999999", {}, 422, "order_id"),
    ],
)
def test_bad_parameter_is_named(api: Api, path: str, params: dict, status: int, parameter: str) -> None:
    response = api.get(path, "alice", **params)
    assert response.status_code == status, response.text
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["parameter"] == parameter
    assert body["status"] == status


@pytest.mark.parametrize("value", ["20261204", "1.5e10", "-1"])
def test_a_number_as_a_date_is_unprocessable_not_read_as_unix_time(api: Api, value: str) -> None:
    response = api.get("trades/summary", "alice", start_date=value)
    assert (response.status_code, response.json()["parameter"]) == (422, "start_date")


def test_a_cursor_of_the_trades_given_to_the_orders_is_a_bad_request_naming_it(api: Api) -> None:
    cursor = api.get("trades", "root", limit=1).json()["next_cursor"]
    response = api.get("orders", "root", limit=1, cursor=cursor)
    assert (response.status_code, response.json()["parameter"]) == (400, "cursor")
    assert response.json()["sqlstate"] == "22S09"


def test_an_unknown_query_parameter_is_unprocessable_naming_it(api: Api) -> None:
    # a typo used to be ignored: ?symbols=ETHUSD returned every order, as if filtered
    response = api.get("orders", "alice", symbols="ETHUSD")
    assert (response.status_code, response.json()["parameter"]) == (422, "symbols")
    assert response.headers["content-type"] == "application/problem+json"


def test_a_repeated_query_parameter_is_unprocessable_naming_it(api: Api) -> None:
    # ?status=filled&status=cancelled used to return the cancelled orders alone
    response = httpx.get(
        f"{api.url}/api/v1/historical/orders",
        params=[("status", "filled"), ("status", "cancelled")],
        headers={"Authorization": f"Bearer {api.tokens['alice']}"},
    )
    assert (response.status_code, response.json()["parameter"]) == (422, "status")


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("start_date", "9999-12-31T23:59:59-14:00"), ("end_date", "0001-01-01T00:00:00+14:00")],
)
def test_a_time_outside_the_years_1_to_9999_in_utc_is_unprocessable(
    api: Api, parameter: str, value: str
) -> None:
    # these used to be echoed back as "10000-01-01T13:59:59.000000Z" and "0001-12-31T10:00:00.000000Z"
    response = api.get("trades/summary", "alice", **{parameter: value})
    assert (response.status_code, response.json()["parameter"]) == (422, parameter)


def test_a_nul_character_is_a_bad_request(api: Api) -> None:
    response = api.get("orders", "alice", symbol="BTC\x00USDT")
    assert response.status_code == 400


def test_sql_in_a_filter_is_only_a_value(api: Api) -> None:
    response = api.get("orders", "alice", symbol="BTCUSDT' or '1'='1")
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


def test_an_error_shows_no_sql(api: Api) -> None:
    body = api.get("orders", "alice", cursor="x" * 64).json()
    assert "select" not in body["detail"].lower()
    assert "trading." not in body["detail"]


def test_an_unknown_path_is_a_404_problem(api: Api) -> None:
    response = api.get("nothing-here", "alice")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_a_method_the_path_does_not_allow_is_a_405_problem_naming_the_allowed_ones(api: Api) -> None:
    response = httpx.delete(f"{api.url}/api/v1/historical/orders")
    assert (response.status_code, response.headers["allow"]) == (405, "GET")
    assert response.headers["content-type"] == "application/problem+json"


def test_a_login_body_that_is_not_json_is_unprocessable_naming_the_body(api: Api) -> None:
    response = httpx.post(
        f"{api.url}/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()["parameter"]) == (422, "body")
