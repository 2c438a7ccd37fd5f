"""Login, logout and bearer tokens: who gets in, and what status everyone else gets."""

from __future__ import annotations

import httpx

from api_fixtures import Api, api_login


def test_login_returns_a_token_that_opens_the_history(api: Api) -> None:
    response = api_login(api.url, "alice")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "user_id", "expires_at"}
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert httpx.get(f"{api.url}/api/v1/historical/orders", headers=headers).status_code == 200


def test_login_with_a_wrong_password_is_unauthorized_and_says_nothing_more(api: Api) -> None:
    response = api_login(api.url, "alice", "Wrong-Password-99")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert (
        response.json()["detail"] == api_login(api.url, "no-such-user", "Wrong-Password-99").json()["detail"]
    )


def test_login_without_a_password_is_unprocessable_naming_it(api: Api) -> None:
    response = httpx.post(f"{api.url}/api/v1/auth/login", json={"username": "alice"})
    assert response.status_code == 422
    assert response.json()["parameter"] == "password"


def test_no_token_is_unauthorized(api: Api) -> None:
    response = api.get("orders", None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_unknown_token_is_unauthorized(api: Api) -> None:
    response = httpx.get(f"{api.url}/api/v1/historical/positions", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["sqlstate"] == "28S02"


def test_logout_ends_the_session(api: Api) -> None:
    token = api_login(api.url, "bob").json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{api.url}/api/v1/auth/logout", headers=headers).status_code == 204
    assert httpx.get(f"{api.url}/api/v1/historical/trades", headers=headers).status_code == 401
    assert httpx.post(f"{api.url}/api/v1/auth/logout", headers=headers).status_code == 401


def test_a_user_without_the_permission_is_forbidden(api: Api) -> None:
    for path in (
        "orders",
        "trades",
        "positions",
        "trades/summary",
        "portfolio/snapshots",
        "portfolio/latest",
    ):
        response = api.get(path, "nobody")
        assert response.status_code == 403, path
        assert response.json()["sqlstate"] == "42S01"


def test_every_endpoint_but_health_needs_a_token(api: Api) -> None:
    schema = httpx.get(f"{api.url}/openapi.json").json()
    paths = [p for p in schema["paths"] if p.startswith("/api/v1/historical/") and not p.endswith("/health")]
    assert len(paths) == 7
    for path in paths:
        response = httpx.get(api.url + path.replace("{order_id}", "1"))
        assert response.status_code == 401, path
    assert httpx.get(f"{api.url}/api/v1/historical/health").status_code == 200
