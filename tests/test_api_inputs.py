"""History API inputs: client addresses that are not IPs, requests that name no parameter, and a
trade summary asked for no grouping."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from api_fixtures import Api
from auth_helpers import PASSWORD
from trading_helpers import call


def login_from(api: Api, forwarded_for: str) -> httpx.Response:
    # why X-Forwarded-For: uvicorn (proxy_headers, on by default) trusts it from 127.0.0.1, where a
    # reverse proxy in front of `spreadedge serve` sits, and takes the client's address from it
    return httpx.post(
        f"{api.url}/api/v1/auth/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=30,
    )


@pytest.mark.parametrize(
    ("forwarded_for", "recorded"),
    [("unknown", None), ("fe80::1%eth0", "fe80::1"), ("192.0.2.7", "192.0.2.7")],
)
def test_a_login_from_a_client_address_that_is_not_an_ip_logs_in_and_records_what_is_an_ip(
    api: Api, history_db: tuple[str, dict[str, int]], forwarded_for: str, recorded: str | None
) -> None:
    # a proxy's "unknown" and a link-local IPv6 peer's zone (%eth0) were passed to auth.login as
    # inet: a 400 "invalid input syntax for type inet", so such a client could never log in
    response = login_from(api, forwarded_for)
    assert response.status_code == 200, response.text
    url, ids = history_db
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "select host(ip_address) from auth.sessions where user_id = %s order by session_id desc limit 1",
            [ids["alice"]],
        ).fetchone()
    assert stored == (recorded,)


@pytest.mark.parametrize("body", [None, b"[]", b"null"])
def test_a_login_without_a_json_object_is_unprocessable_naming_the_body(api: Api, body: bytes | None) -> None:
    # it was a 422 "Field required" that named no parameter
    response = httpx.post(
        f"{api.url}/api/v1/auth/login", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert (response.status_code, response.json()["parameter"]) == (422, "body")
    assert response.json()["detail"].startswith("body: ")


@pytest.mark.parametrize(
    ("path", "parameter"), [("orders", "symbol"), ("trades", "exchange"), ("trades/summary", "strategy")]
)
def test_a_nul_character_in_a_filter_is_a_bad_request_naming_the_filter(
    api: Api, path: str, parameter: str
) -> None:
    # it was a 400 that said "a parameter holds ... (NUL)" without saying which
    response = api.get(path, "alice", **{parameter: "BTC\x00USDT"})
    assert (response.status_code, response.json()["parameter"]) == (400, parameter)
    assert (
        response.json()["detail"] == f"{parameter}: holds a NUL character, which PostgreSQL text cannot store"
    )


def test_a_trade_summary_grouped_by_null_is_refused_naming_group_by(seeded: psycopg.Connection) -> None:
    # group_by => null fell through to the day grouping and answered {"group_by": null, ...}
    with pytest.raises(psycopg.errors.DataError) as refused:
        call(seeded, "trading.trade_summary", group_by=None)
    assert (refused.value.sqlstate, refused.value.diag.column_name, refused.value.diag.message_primary) == (
        "22S09",
        "group_by",
        "group_by must be one of strategy, exchange, symbol, day, got null",
    )
