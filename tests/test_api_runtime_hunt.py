"""The API server at run time: requests the database cannot answer soon are bounded 503s, not hangs."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest

from api_fixtures import api_login, assert_unavailable, live_server, serve_process, strategies_locked
from spreadedge.api import database

server = live_server


def orders(url: str, token: str, timeout: float = 30) -> httpx.Response:
    return httpx.get(
        f"{url}/api/v1/historical/orders", headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )


def api_backends(url: str) -> list[tuple[str, str | None]]:
    """(state, wait_event_type) of the API's connections (spreadedge_app) to the database."""
    with psycopg.connect(url, autocommit=True) as watcher:
        return watcher.execute(
            "select state, wait_event_type from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
            " and query like '%%order_history_page%%' order by pid"
        ).fetchall()


@pytest.fixture(scope="module")
def alice(history_db: tuple[str, dict[str, int]], migration_ids: list[str]) -> str:
    """A session token of alice (sessions live in the database, so any server takes it)."""
    with server(history_db[0], migration_ids) as url:
        return api_login(url, "alice").json()["token"]


def test_the_api_connections_cancel_a_statement_after_30_seconds(
    history_db: tuple[str, dict[str, int]],
) -> None:
    async def setting() -> Any:
        pool = database.make_pool(history_db[0], min_size=1, max_size=1)
        await pool.open(wait=True)
        try:
            async with pool.connection() as conn:
                return await (await conn.execute("show statement_timeout")).fetchone()
        finally:
            await pool.close()

    # it was 0 (none): a request waiting on a lock held its connection for as long as the lock
    assert asyncio.run(setting()) == ("30s",)


def test_a_request_waiting_on_a_lock_is_a_503_naming_the_statement_timeout(
    history_db: tuple[str, dict[str, int]], migration_ids: list[str], alice: str
) -> None:
    with server(history_db[0], migration_ids, statement_timeout=1) as url, strategies_locked(history_db[0]):
        response = orders(url, alice)
    # the statement_timeout's cancel (57014) says the wait was ended by the server, not by the client
    assert_unavailable(
        response,
        "the database cancelled the request (canceling statement due to statement timeout): retry later",
        "57014",
    )


def test_a_request_whose_client_hung_up_frees_its_connection_while_the_lock_is_still_held(
    history_db: tuple[str, dict[str, int]], migration_ids: list[str], alice: str
) -> None:
    url_db = history_db[0]
    with server(url_db, migration_ids, statement_timeout=1) as url, strategies_locked(url_db):
        with pytest.raises(httpx.ReadTimeout):
            orders(url, alice, timeout=0.3)
        time.sleep(2)
        # it stayed active, waiting on the lock, with no client left to answer
        assert api_backends(url_db) == [("idle", "Client")]


def test_a_pool_whose_connections_all_serve_slow_requests_is_a_503_saying_they_are_busy(
    history_db: tuple[str, dict[str, int]], migration_ids: list[str], alice: str
) -> None:
    answers: list[httpx.Response] = []
    with server(history_db[0], migration_ids, pool_size=1, statement_timeout=20) as url:
        with strategies_locked(history_db[0]):
            slow = threading.Thread(target=lambda: answers.append(orders(url, alice)))
            slow.start()
            time.sleep(0.5)
            started = time.monotonic()
            busy = orders(url, alice)
            waited = time.monotonic() - started
        slow.join()
    assert (busy.status_code, busy.json()["detail"], busy.headers["retry-after"]) == (
        503,
        "every database connection of the server is serving another request: retry in a few seconds",
        "5",
    )
    assert 4 < waited < 10  # the pool's wait, 5 s
    assert [a.status_code for a in answers] == [200]  # the slow one, once the lock went


def test_health_while_every_connection_serves_a_slow_request_says_busy_not_unreachable(
    history_db: tuple[str, dict[str, int]], migration_ids: list[str], alice: str
) -> None:
    with server(history_db[0], migration_ids, pool_size=1, statement_timeout=20) as url:
        with strategies_locked(history_db[0]):
            slow = threading.Thread(target=lambda: orders(url, alice))
            slow.start()
            time.sleep(0.5)
            health = httpx.get(f"{url}/api/v1/historical/health", timeout=30)
        slow.join()
    assert health.status_code == 503
    # it said {"database": "the database is unavailable"}: down, while it answered everyone else
    assert health.json()["checks"] == [
        {
            "name": "database",
            "ok": False,
            "detail": "every database connection of the server is serving another request: "
            "retry in a few seconds",
        }
    ]


def test_serve_stopped_by_sigterm_answers_the_request_in_flight_and_exits_0(
    history_db: tuple[str, dict[str, int]], alice: str
) -> None:
    with serve_process(history_db[0], "--statement-timeout", "20") as (proc, url):
        answers: list[httpx.Response] = []
        with strategies_locked(history_db[0]):
            in_flight = threading.Thread(target=lambda: answers.append(orders(url, alice)))
            in_flight.start()
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
        in_flight.join()
        output, _ = proc.communicate(timeout=30)
    assert [a.status_code for a in answers] == [200]
    # it died of the signal uvicorn raised again after its graceful shutdown: -15, 143 to a shell
    assert proc.returncode == 0, output
