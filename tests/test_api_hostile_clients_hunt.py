"""The history API against hostile or broken HTTP clients, over raw sockets to a live server run as
``spreadedge serve`` runs it (its uvicorn protocol and limits).

Memory is proven by structure, not measured: the server answers (413, 431) and closes the connection
before the client has sent what it announced, so it cannot have read it whole. No assertion is about
speed: every wait is bounded by GUARD seconds, far beyond the timeouts the tests set, so a server that
never answers fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from api_fixtures import api_login, live_server, strategies_locked
from spreadedge.api import database
from spreadedge.api.server import uvicorn_options

# Seconds any wait of these tests takes at most.
GUARD = 30
APP = "api-hostile"
# the most a test client sends of a body or head that it announced or never ends
CAP = 16 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> Any:
        assert self.headers["content-type"] == "application/problem+json"
        return json.loads(self.body)


@contextlib.contextmanager
def served(url: str, migration_ids: list[str], name: str = "api", **options: Any) -> Iterator[str]:
    """The API over ``url`` as spreadedge serve runs it, its connections named ``name``."""
    with live_server(
        f"{url}&application_name={name}",
        migration_ids,
        uvicorn_options=uvicorn_options(timeout_keep_alive=5, limit_concurrency=1000),
        **options,
    ) as base:
        yield base


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=GUARD)


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does neither."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(
                f"the server neither answered nor closed; it sent {received[:200]!r}"
            ) from None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return Answer(int(status_line.split()[1]), headers, body)


def send_until_answered(sock: socket.socket, head: bytes, chunk: bytes) -> int:
    """Send ``head``, then ``chunk`` after ``chunk`` until the server answers or closes (or CAP bytes
    went); the bytes of ``chunk`` sent."""
    sock.sendall(head)
    sent = 0
    while sent < CAP:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            break
        sent += len(chunk)
    return sent


def login_head(*headers: str) -> bytes:
    lines = ["POST /api/v1/auth/login HTTP/1.1", "Host: test", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture(scope="module")
def tokens(history_db: tuple[str, dict[str, int]], migration_ids: list[str]) -> dict[str, str]:
    """Session tokens of alice and bob (sessions live in the database, so any server takes them)."""
    with live_server(history_db[0], migration_ids) as url:
        return {user: api_login(url, user).json()["token"] for user in ("alice", "bob")}


@pytest.fixture(scope="module")
def api(history_db: tuple[str, dict[str, int]], migration_ids: list[str]) -> Iterator[str]:
    """The API as spreadedge serve runs it, for the tests that leave it as it was."""
    with served(history_db[0], migration_ids) as base:
        yield base


# ---------------------------------------------------------------------------------------------
# request bodies


def test_a_login_announcing_a_500_mb_body_is_a_413_before_the_body_is_sent(api: str) -> None:
    with connect(api) as sock:
        sent = send_until_answered(sock, login_head("Content-Length: 500000000"), b"x" * 65536)
        answer = parse(read_to_close(sock))
    # it read the whole body into memory first (and then answered 400, not JSON)
    assert sent < 500_000_000
    assert (answer.status, answer.headers["connection"]) == (413, "close")
    assert answer.problem() == {
        "type": "about:blank",
        "title": "Request Entity Too Large",
        "status": 413,
        "detail": "the request body takes more than 65536 bytes",
        "parameter": None,
        "sqlstate": None,
    }


def test_a_login_announcing_a_500_mb_body_with_expect_100_continue_is_a_413_not_an_invitation(
    api: str,
) -> None:
    with connect(api) as sock:
        sock.sendall(login_head("Content-Length: 500000000", "Expect: 100-continue"))
        answer = parse(read_to_close(sock))
    # it answered "100 Continue", asking the client to send its 500 MB
    assert (answer.status, answer.problem()["status"]) == (413, 413)


def test_a_chunked_login_body_that_never_ends_is_a_413_once_past_64_kib(api: str) -> None:
    chunk = b"2000\r\n" + b" " * 0x2000 + b"\r\n"
    with connect(api) as sock:
        sent = send_until_answered(sock, login_head("Transfer-Encoding: chunked"), chunk)
        answer = parse(read_to_close(sock))
    assert sent < CAP
    assert (answer.status, answer.headers["connection"]) == (413, "close")
    assert answer.problem()["detail"] == "the request body takes more than 65536 bytes"


def test_a_login_body_of_64_kib_is_still_read_and_answered(api: str) -> None:
    body = json.dumps({"username": "alice", "password": "wrong"}).encode()
    body += b" " * (64 * 1024 - len(body))
    response = httpx.post(
        f"{api}/api/v1/auth/login", content=body, headers={"content-type": "application/json"}, timeout=GUARD
    )
    assert response.status_code == 401


# ---------------------------------------------------------------------------------------------
# request heads


def test_a_header_line_that_never_ends_is_a_431_once_the_head_passes_64_kib(api: str) -> None:
    with connect(api) as sock:
        sent = send_until_answered(
            sock, b"GET /api/v1/historical/health HTTP/1.1\r\nHost: test\r\nX-Endless: ", b"a" * 8192
        )
        answer = parse(read_to_close(sock))
    # it buffered the header line for as long as it came
    assert sent < CAP
    assert (answer.status, answer.headers["connection"]) == (431, "close")
    assert answer.problem() == {
        "type": "about:blank",
        "title": "Request Header Fields Too Large",
        "status": 431,
        "detail": "the request line and headers take more than 65536 bytes",
        "parameter": None,
        "sqlstate": None,
    }


@pytest.fixture
def head_timeout_1s(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request head must come within a second (spreadedge serve --head-timeout 1)."""
    monkeypatch.setenv("SPREADEDGE_API_HEAD_TIMEOUT", "1")


@pytest.mark.usefixtures("head_timeout_1s")
def test_a_client_sending_its_head_a_byte_at_a_time_is_a_408_and_disconnected(api: str) -> None:
    head = b"GET /api/v1/historical/health HTTP/1.1\r\nHost: test\r\nX-Slow: "
    with connect(api) as sock:
        sock.sendall(head)
        # a byte every tenth of a second, for GUARD seconds at most
        for _ in range(GUARD * 10):
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                break
            sock.sendall(b"a")
        answer = parse(read_to_close(sock))
    # it kept the connection for as long as a byte came now and then (slowloris)
    assert (answer.status, answer.headers["connection"]) == (408, "close")
    assert answer.problem()["detail"] == "the request head did not arrive within 1 s"


@pytest.mark.usefixtures("head_timeout_1s")
def test_a_connection_that_never_sends_a_request_is_closed_without_an_answer(api: str) -> None:
    with connect(api) as sock:
        # it was kept open for ever
        assert read_to_close(sock) == b""


@pytest.mark.usefixtures("head_timeout_1s")
def test_a_keep_alive_connection_gets_its_second_request_answered_within_the_head_timeout(api: str) -> None:
    request = b"GET /api/v1/historical/health HTTP/1.1\r\nHost: test\r\n\r\n"
    with connect(api) as sock:
        sock.sendall(request)
        first = sock.recv(65536)
        time.sleep(0.5)
        sock.sendall(
            request + b"GET /api/v1/historical/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        rest = read_to_close(sock)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.count(b"HTTP/1.1 200 ") == 2


def test_other_clients_are_served_while_slow_clients_hold_connections(api: str) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(50):
            slow = stack.enter_context(connect(api))
            slow.sendall(b"GET /api/v1/historical/health HTTP/1.1\r\nHost: te")
        response = httpx.get(f"{api}/api/v1/historical/health", timeout=GUARD)
    assert response.status_code == 200


# ---------------------------------------------------------------------------------------------
# clients that disconnect while their statement runs


def api_backend(url: str, *, waiting_on_lock: bool) -> int:
    """The pid of the API's one server process once it waits on a lock (or, else, once it is idle)."""
    with psycopg.connect(url, autocommit=True) as watcher:
        for _ in range(GUARD * 20):
            rows = watcher.execute(
                "select pid, state, wait_event_type from pg_stat_activity"
                " where application_name = %s and backend_type = 'client backend'",
                [APP],
            ).fetchall()
            if len(rows) == 1:
                pid, state, wait_event_type = rows[0]
                if (wait_event_type == "Lock") if waiting_on_lock else (state == "idle"):
                    return int(pid)
            time.sleep(0.05)
    raise AssertionError(
        f"the API's connection never was {'waiting on a lock' if waiting_on_lock else 'idle'}"
    )


def orders_request(token: str) -> bytes:
    return (
        f"GET /api/v1/historical/orders HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


def test_a_request_whose_client_disconnects_has_its_statement_cancelled_while_the_lock_is_held(
    history_db: tuple[str, dict[str, int]], migration_ids: list[str], tokens: dict[str, str]
) -> None:
    url = history_db[0]
    with served(url, migration_ids, APP, pool_size=1, statement_timeout=600) as base, strategies_locked(url):
        with connect(base) as sock:
            sock.sendall(orders_request(tokens["alice"]))
            waiting = api_backend(url, waiting_on_lock=True)
        # it waited on the lock for as long as it was held (up to the statement_timeout), its
        # connection taken from every other client, with no client left to answer
        idle = api_backend(url, waiting_on_lock=False)
    assert idle == waiting


def test_the_connection_of_a_cancelled_request_serves_the_next_user_their_rows_only(
    history_db: tuple[str, dict[str, int]], migration_ids: list[str], tokens: dict[str, str]
) -> None:
    url = history_db[0]
    with served(url, migration_ids, APP, pool_size=1, statement_timeout=600) as base:
        with strategies_locked(url), connect(base) as sock:
            sock.sendall(orders_request(tokens["alice"]))
            cancelled_on = api_backend(url, waiting_on_lock=True)
        served_on = api_backend(url, waiting_on_lock=False)
        response = httpx.get(
            f"{base}/api/v1/historical/orders",
            headers={"Authorization": f"Bearer {tokens['bob']}"},
            timeout=GUARD,
        )
    assert served_on == cancelled_on
    assert response.status_code == 200
    assert {order["strategy"] for order in response.json()["items"]} == {"bob-arb"}


def test_a_cancelled_session_statement_leaves_its_connection_idle_and_scoped_to_no_user(
    history_db: tuple[str, dict[str, int]], tokens: dict[str, str]
) -> None:
    url = history_db[0]

    async def after_a_cancelled_request() -> tuple[Any, ...]:
        pool = database.make_pool(f"{url}&application_name={APP}", min_size=1, max_size=1)
        await pool.open(wait=True)
        try:
            with strategies_locked(url):
                request = asyncio.create_task(
                    database.call(pool, "trading.order_history_page", {}, token=tokens["alice"])
                )
                await asyncio.to_thread(api_backend, url, waiting_on_lock=True)
                request.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(request, GUARD)
            async with pool.connection() as conn:
                status = conn.info.transaction_status
                row = await (
                    await conn.execute("select current_setting('spreadedge.user_id', true)")
                ).fetchone()
                return (status, *row)
        finally:
            await pool.close()

    status, setting = asyncio.run(after_a_cancelled_request())
    # '' once a transaction-local setting of it has ended, null before
    assert (status, setting or None) == (psycopg.pq.TransactionStatus.IDLE, None)
