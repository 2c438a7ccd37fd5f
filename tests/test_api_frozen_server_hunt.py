"""The history API against a server that stops answering in the middle of a request, for real.

A server process stopped with SIGSTOP keeps its connection open and never answers (its
statement_timeout never fires), as a stalled backend, a frozen host or a network partition without a
reset does: a request must still answer, a 503 problem within the server's statement_timeout and a
second, its connection discarded, and the API must serve again once the server continues. A single
backend, or the whole server (postmaster and every child), is frozen on a cluster of this module's
own; every frozen process is continued in a ``finally``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import psycopg
import pytest

from api_fixtures import api_login, live_server, seed_history
from frozen_helpers import frozen, seeded_cluster
from spreadedge.cluster import Cluster
from spreadedge.settings import Settings

# The API's statement_timeout here; a request is given up a second after it.
STATEMENT_TIMEOUT = 2.0
# why a guard: without the deadline these requests never answer; every wait is capped at its bound
# plus this, so a hang is a failure and not a stuck run (no assertion is about speed)
GUARD = 10
CAP = STATEMENT_TIMEOUT + 1 + GUARD
APP = "api-frozen"

GIVEN_UP = {
    "type": "about:blank",
    "title": "Service Unavailable",
    "status": 503,
    "detail": "the database did not answer within 3 s (the statement_timeout of 2 s and a second): "
    "the request was given up and its connection closed; retry later",
    "parameter": None,
    "sqlstate": None,
}


@pytest.fixture(scope="module")
def own(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated cluster with the seeded history, of this module's own: a test may freeze it whole."""
    yield seeded_cluster(make_cluster, project_settings, seed_history)


@contextmanager
def served(cluster: Cluster, migration_ids: list[str], pool_size: int = 2) -> Iterator[str]:
    """The API over ``cluster``, its connections named APP, statement_timeout 2 s."""
    with live_server(
        f"{cluster.url()}&application_name={APP}",
        migration_ids,
        pool_size=pool_size,
        statement_timeout=STATEMENT_TIMEOUT,
    ) as url:
        yield url


def api_backends(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [
            int(pid)
            for (pid,) in conn.execute(
                "select pid from pg_stat_activity where application_name = %s order by pid", [APP]
            )
        ]


def api_backends_once_gone(url: str, gone: int) -> list[int]:
    """The API's server processes once process ``gone`` has exited (it never does if still in use)."""
    for _ in range(GUARD * 20):
        pids = api_backends(url)
        if gone not in pids:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"server process {gone} of the API never exited")


def backend_waiting_on_a_lock(url: str) -> int:
    """The API's server process once it waits on a lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(GUARD * 20):
            row = conn.execute(
                "select pid from pg_stat_activity where application_name = %s and wait_event_type = 'Lock'",
                [APP],
            ).fetchone()
            if row is not None:
                return int(row[0])
            time.sleep(0.05)
    raise AssertionError("no request of the API waited on a lock")


def orders(url: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{url}/api/v1/historical/orders", headers={"Authorization": f"Bearer {token}"}, timeout=CAP
    )


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/historical/health", timeout=CAP)


def test_a_history_request_whose_server_process_freezes_mid_statement_answers_503(
    own: Cluster, migration_ids: list[str]
) -> None:
    with served(own, migration_ids) as url:
        token = api_login(url, "alice").json()["token"]
        with psycopg.connect(own.url()) as blocker:
            # the request's statement is on the server, waiting, when its server process freezes
            blocker.execute("lock table trading.strategies in access exclusive mode")
            with httpx.Client(timeout=CAP) as client:
                pending = client.build_request(
                    "GET", f"{url}/api/v1/historical/orders", headers={"Authorization": f"Bearer {token}"}
                )
                with ThreadPoolExecutor(1) as pool:
                    answer = pool.submit(client.send, pending)
                    pid = backend_waiting_on_a_lock(own.url())
                    with frozen([pid]):
                        blocker.rollback()
                        response = answer.result()
    assert (response.status_code, response.headers["content-type"]) == (503, "application/problem+json")
    assert response.json() == GIVEN_UP
    assert response.headers["retry-after"] == "5"


def test_health_while_the_whole_server_is_frozen_answers_503_naming_the_database(
    own: Cluster, migration_ids: list[str]
) -> None:
    with served(own, migration_ids) as url:
        assert health(url).status_code == 200
        with frozen(own.server_processes()):
            response = health(url)
    assert response.status_code == 503
    body = response.json()
    # health is bounded by its own timeout (default 3 s), not the history requests' statement_timeout
    assert (body["status"], body["checks"]) == (
        "unhealthy",
        [
            {
                "name": "database",
                "ok": False,
                "detail": "the database did not answer within 4 s (the health timeout of 3 s and a second): "
                "the request was given up and its connection closed; retry later",
            }
        ],
    )


def test_requests_answer_200_on_a_new_connection_once_the_frozen_server_continues(
    own: Cluster, migration_ids: list[str]
) -> None:
    with served(own, migration_ids, pool_size=1) as url:
        token = api_login(url, "alice").json()["token"]
        assert orders(url, token).status_code == 200
        [before] = api_backends(own.url())
        with frozen(own.server_processes()):
            during = orders(url, token)
        after = [health(url).status_code, orders(url, token).status_code]
        serving = api_backends_once_gone(own.url(), before)
    assert during.json() == GIVEN_UP
    assert after == [200, 200]
    # the connection that met the frozen server was closed, never handed out again
    assert len(serving) == 1 and before not in serving


def test_a_request_while_the_server_stays_frozen_after_its_connections_were_given_up_is_503_unavailable(
    own: Cluster, migration_ids: list[str]
) -> None:
    with served(own, migration_ids, pool_size=1) as url:
        assert health(url).status_code == 200
        with frozen(own.server_processes()):
            given_up = health(url)
            # the pool's new connection waits on the frozen server: no connection serves a request
            waiting = health(url)
    assert given_up.status_code == 503
    assert (waiting.status_code, waiting.json()["checks"]) == (
        503,
        [{"name": "database", "ok": False, "detail": "the database is unavailable"}],
    )
