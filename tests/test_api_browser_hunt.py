"""The history API as a browser dashboard on another origin and HTTP caches and proxies use it: CORS
(an explicit allowlist, off by default), Cache-Control on every answer, gzip when asked. Real HTTP
requests to live servers run with spreadedge serve's uvicorn protocol and options."""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from api_fixtures import Api, api_login, live_server, serve_process, serving, strategies_locked
from db_fixtures import PROJECT
from spreadedge.api import create_app
from spreadedge.api.server import uvicorn_options
from spreadedge.cli import main

DASH = "https://dash.example"
EVIL = "https://evil.example"
# what spreadedge serve runs uvicorn with
SERVE = uvicorn_options(timeout_keep_alive=5, limit_concurrency=1000)
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, " + (
    "Access-Control-Request-Private-Network"
)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def preflight(
    url: str, method: str = "GET", headers: str = "authorization", origin: str = DASH
) -> httpx.Response:
    return httpx.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
        timeout=30,
    )


@pytest.fixture(scope="module")
def dash_api(history_db: tuple[str, dict[str, int]], migration_ids: list[str]) -> Iterator[Api]:
    """The live API with https://dash.example allowed (--cors-origin), and the seeded users' tokens."""
    with live_server(history_db[0], migration_ids, uvicorn_options=SERVE, cors_origins=[DASH]) as base:
        tokens = {user: api_login(base, user).json()["token"] for user in ("alice", "root", "nobody")}
        yield Api(base, tokens)


@pytest.fixture(scope="module")
def plain_api(history_db: tuple[str, dict[str, int]], migration_ids: list[str]) -> Iterator[Api]:
    """The live API as spreadedge serve runs it without --cors-origin."""
    with live_server(history_db[0], migration_ids, uvicorn_options=SERVE) as base:
        yield Api(base, {"alice": api_login(base, "alice").json()["token"]})


def bearer(api: Api, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {api.tokens[user]}"}


# ---------------------------------------------------------------------------------------------
# CORS


def test_a_preflight_from_an_allowed_origin_allows_the_methods_and_the_authorization_header(
    dash_api: Api,
) -> None:
    response = preflight(f"{dash_api.url}/api/v1/historical/orders")
    # it was a 405 "Method Not Allowed": no dashboard on another origin could send its token
    assert response.status_code == 200
    assert cors_headers(response) == {
        "access-control-allow-origin": DASH,
        "access-control-allow-methods": "GET, HEAD, POST",
        "access-control-allow-headers": "Accept, Accept-Language, Authorization, Content-Language, Content-Type",
        "access-control-max-age": "600",
    }
    assert response.headers["vary"] == PREFLIGHT_VARY


def test_a_preflight_of_a_login_allows_its_json_body(dash_api: Api) -> None:
    response = preflight(f"{dash_api.url}/api/v1/auth/login", "POST", "content-type")
    assert (response.status_code, response.headers["access-control-allow-origin"]) == (200, DASH)


def test_a_read_from_an_allowed_origin_names_it_and_exposes_retry_after(dash_api: Api) -> None:
    response = httpx.get(
        f"{dash_api.url}/api/v1/historical/positions",
        headers={"Origin": DASH, **bearer(dash_api)},
        timeout=30,
    )
    assert response.status_code == 200
    # never "*", never with credentials: the token is a header, not a cookie
    assert cors_headers(response) == {
        "access-control-allow-origin": DASH,
        "access-control-expose-headers": "Retry-After",
    }
    assert response.headers["vary"] == "Origin"


def test_an_origin_not_allowed_is_never_reflected(dash_api: Api) -> None:
    response = httpx.get(
        f"{dash_api.url}/api/v1/historical/positions",
        headers={"Origin": EVIL, **bearer(dash_api)},
        timeout=30,
    )
    assert response.status_code == 200
    assert cors_headers(response) == {"access-control-expose-headers": "Retry-After"}
    # so that a cache never hands this answer to an allowed origin's page, or the reverse
    assert response.headers["vary"] == "Origin"


def test_a_preflight_from_an_origin_not_allowed_is_a_400_problem_without_its_origin(dash_api: Api) -> None:
    response = preflight(f"{dash_api.url}/api/v1/historical/orders", origin=EVIL)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == (
        "CORS preflight refused: its origin not allowed (see spreadedge serve --cors-origin)"
    )


def test_a_preflight_asking_for_another_header_is_refused_naming_it(dash_api: Api) -> None:
    response = preflight(f"{dash_api.url}/api/v1/historical/orders", headers="authorization, x-tenant")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "CORS preflight refused: its headers not allowed (see spreadedge serve --cors-origin)"
    )


@pytest.mark.parametrize(
    ("path", "user", "status"),
    [
        ("orders", None, 401),
        ("orders", "nobody", 403),
        ("orders/999999999", "alice", 404),
        ("orders?limit=0", "alice", 422),
    ],
)
def test_an_error_answer_carries_the_cors_headers(
    dash_api: Api, path: str, user: str | None, status: int
) -> None:
    headers = {"Origin": DASH, **(bearer(dash_api, user) if user else {})}
    response = httpx.get(f"{dash_api.url}/api/v1/historical/{path}", headers=headers, timeout=30)
    # without them the browser hides the status and the problem from the dashboard's script
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert cors_headers(response) == {
        "access-control-allow-origin": DASH,
        "access-control-expose-headers": "Retry-After",
    }


def test_a_413_of_a_login_body_too_large_carries_the_cors_headers(dash_api: Api) -> None:
    response = httpx.post(
        f"{dash_api.url}/api/v1/auth/login",
        content=b"x" * (65 * 1024),
        headers={"Origin": DASH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert (response.status_code, response.headers["access-control-allow-origin"]) == (413, DASH)


def test_a_503_carries_the_cors_headers_and_lets_the_script_read_retry_after(
    history_db: tuple[str, dict[str, int]], migration_ids: list[str]
) -> None:
    url = history_db[0]
    with live_server(
        url, migration_ids, uvicorn_options=SERVE, cors_origins=[DASH], pool_size=1, statement_timeout=0.5
    ) as base:
        token = api_login(base, "alice").json()["token"]
        with strategies_locked(url):
            response = httpx.get(
                f"{base}/api/v1/historical/orders",
                headers={"Origin": DASH, "Authorization": f"Bearer {token}"},
                timeout=30,
            )
    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    assert cors_headers(response) == {
        "access-control-allow-origin": DASH,
        "access-control-expose-headers": "Retry-After",
    }
    assert response.headers["cache-control"] == "no-store"


def test_a_500_carries_the_cors_headers_and_no_store(migration_ids: list[str]) -> None:
    app = create_app("postgresql://nobody@127.0.0.1:1/nothing", migration_ids, cors_origins=[DASH])

    async def broken() -> None:
        raise RuntimeError("a bug")

    # a route with a bug: FastAPI answers it from its outermost middleware, outside add_middleware's
    app.add_api_route("/api/v1/broken", broken)
    # served as spreadedge serve serves it, the bug's traceback kept out of the test's log
    with serving(app, log_level="critical", **SERVE) as base:
        response = httpx.get(f"{base}/api/v1/broken", headers={"Origin": DASH}, timeout=30)
    assert response.status_code == 500
    assert response.json()["detail"] == "internal error; see the server log"
    assert (response.headers["access-control-allow-origin"], response.headers["cache-control"]) == (
        DASH,
        "no-store",
    )


def test_without_cors_origins_a_preflight_is_405_and_no_origin_is_allowed(plain_api: Api) -> None:
    response = preflight(f"{plain_api.url}/api/v1/historical/orders")
    assert (response.status_code, response.headers["allow"]) == (405, "GET")
    response = httpx.get(
        f"{plain_api.url}/api/v1/historical/positions",
        headers={"Origin": DASH, **bearer(plain_api)},
        timeout=30,
    )
    assert response.status_code == 200
    assert cors_headers(response) == {}


@pytest.mark.parametrize(
    ("origin", "error"),
    [
        ("*", "--cors-origin '*' would let any web page read what a logged-in user's token can"),
        ("https://Dash.example/", "a browser sends that origin as 'https://dash.example'"),
        ("https://dash.example:443", "a browser sends that origin as 'https://dash.example'"),
        ("dash.example", "--cors-origin 'dash.example' is not an origin"),
    ],
)
def test_serve_refuses_an_origin_no_browser_sends(origin: str, error: str) -> None:
    env = {"SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"}
    result = CliRunner().invoke(main, ["serve", "--cors-origin", DASH, "--cors-origin", origin], env=env)
    assert result.exit_code == 2
    assert error in result.output


def test_serve_allows_the_origins_of_its_environment_variable(history_db: tuple[str, dict[str, int]]) -> None:
    origins = {"SPREADEDGE_API_CORS_ORIGINS": f"http://localhost:3000 {DASH}"}
    with serve_process(history_db[0], env=origins) as (_, base):
        answers = [preflight(f"{base}/api/v1/historical/orders", origin=o) for o in (DASH, EVIL)]
    assert [(a.status_code, a.headers.get("access-control-allow-origin")) for a in answers] == [
        (200, DASH),
        (400, None),
    ]


# ---------------------------------------------------------------------------------------------
# Cache-Control


@pytest.mark.parametrize(
    "path",
    [
        "orders",
        "orders?limit=0",
        "positions",
        "trades",
        "trades/summary",
        "portfolio/snapshots",
        "portfolio/latest",
        "orders/999999999",
    ],
)
def test_an_answer_holding_a_traders_data_says_no_store(dash_api: Api, path: str) -> None:
    response = httpx.get(f"{dash_api.url}/api/v1/historical/{path}", headers=bearer(dash_api), timeout=30)
    # it said nothing: a shared proxy or the browser's disk cache could keep a trader's positions
    assert response.headers["cache-control"] == "no-store"


def test_a_login_answer_holding_a_token_says_no_store(dash_api: Api) -> None:
    response = api_login(dash_api.url, "alice")
    assert (response.status_code, response.headers["cache-control"]) == (200, "no-store")


def test_an_answer_refusing_a_token_says_no_store(dash_api: Api) -> None:
    # a 404 or a 401 is cacheable unless it says otherwise
    response = httpx.get(f"{dash_api.url}/api/v1/historical/orders", timeout=30)
    assert (response.status_code, response.headers["cache-control"]) == (401, "no-store")


def test_health_says_no_cache(dash_api: Api) -> None:
    response = httpx.get(f"{dash_api.url}/api/v1/historical/health", timeout=30)
    assert (response.status_code, response.headers["cache-control"]) == (200, "no-cache")


# ---------------------------------------------------------------------------------------------
# gzip


def raw_get(url: str, headers: dict[str, str]) -> tuple[httpx.Headers, bytes]:
    """The answer's headers and its body as sent (not decoded)."""
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        return response.headers, b"".join(response.iter_raw())


def test_a_page_is_gzipped_when_the_client_asks(dash_api: Api) -> None:
    url = f"{dash_api.url}/api/v1/historical/orders?limit=1000"
    plain_headers, plain = raw_get(url, {**bearer(dash_api, "root"), "Accept-Encoding": "identity"})
    headers, body = raw_get(url, {**bearer(dash_api, "root"), "Accept-Encoding": "gzip, deflate, br"})
    assert (headers["content-encoding"], headers["vary"]) == ("gzip", "Accept-Encoding, Origin")
    assert int(headers["content-length"]) == len(body) < len(plain)
    assert gzip.decompress(body) == plain
    assert "content-encoding" not in plain_headers


def test_a_head_gets_the_headers_of_its_gzipped_get(dash_api: Api) -> None:
    url = f"{dash_api.url}/api/v1/historical/orders?limit=1000"
    asking = {**bearer(dash_api, "root"), "Accept-Encoding": "gzip"}
    get_headers, _ = raw_get(url, asking)
    head = httpx.head(url, headers=asking, timeout=30)
    assert (head.status_code, head.content) == (200, b"")
    assert (head.headers["content-encoding"], head.headers["content-length"]) == (
        "gzip",
        get_headers["content-length"],
    )


@pytest.mark.parametrize("accept_encoding", ["", "identity", "gzip;q=0", "br, gzip;q=0"])
def test_a_client_that_does_not_take_gzip_gets_the_page_as_it_is(
    plain_api: Api, accept_encoding: str
) -> None:
    url = f"{plain_api.url}/api/v1/historical/orders?limit=1000"
    headers, body = raw_get(url, {**bearer(plain_api), "Accept-Encoding": accept_encoding})
    # as wrk (the bench) asks: not held, not compressed, no Vary added
    assert ("content-encoding" in headers, "vary" in headers) == (False, False)
    assert body.startswith(b"{")


def test_a_small_answer_is_not_gzipped(dash_api: Api) -> None:
    headers, body = raw_get(
        f"{dash_api.url}/api/v1/historical/orders?limit=1", {**bearer(dash_api), "Accept-Encoding": "gzip"}
    )
    assert len(body) < 1400
    assert "content-encoding" not in headers


def test_a_gzip_client_that_disconnects_has_its_statement_cancelled(
    history_db: tuple[str, dict[str, int]], migration_ids: list[str]
) -> None:
    url = history_db[0]
    app_name = "api-browser-gzip"

    def backend(waiting: bool) -> int:
        with psycopg.connect(url, autocommit=True) as watcher:
            for _ in range(600):
                rows = watcher.execute(
                    "select pid, state, wait_event_type from pg_stat_activity"
                    " where application_name = %s and backend_type = 'client backend'",
                    [app_name],
                ).fetchall()
                if len(rows) == 1 and ((rows[0][2] == "Lock") if waiting else (rows[0][1] == "idle")):
                    return int(rows[0][0])
                time.sleep(0.05)
        raise AssertionError("the API's connection never was " + ("waiting on a lock" if waiting else "idle"))

    with live_server(
        f"{url}&application_name={app_name}",
        migration_ids,
        uvicorn_options=SERVE,
        pool_size=1,
        statement_timeout=600,
    ) as base:
        token = api_login(base, "alice").json()["token"]
        host, port = base.removeprefix("http://").split(":")
        with strategies_locked(url):
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                sock.sendall(
                    f"GET /api/v1/historical/orders?limit=1000 HTTP/1.1\r\nHost: test\r\n"
                    f"Authorization: Bearer {token}\r\nAccept-Encoding: gzip\r\n\r\n".encode()
                )
                waiting = backend(waiting=True)
            # the statement is cancelled while the lock is still held: its connection is idle
            idle = backend(waiting=False)
    assert idle == waiting
