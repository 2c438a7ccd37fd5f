"""Fixtures of the REST API tests: a live uvicorn server on loopback over a seeded database.

The module-scoped history (``history_db``) is read-only for the tests that use it: two traders
(alice and bob, each owning one strategy), an admin (root), a user without any role (nobody), and
a few orders, fills and a portfolio snapshot (of 05:00, two days ago) whose values the tests check
exactly.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from auth_helpers import PASSWORD, make_user
from conftest import free_port
from db_fixtures import PROJECT, _seed, janitor
from spreadedge.api import create_app
from spreadedge.cluster import Cluster
from spreadedge.migrate import render_migrations
from spreadedge.settings import Settings
from trading_helpers import call, fill, place

# The seeded history starts at 01:00 UTC two days ago and ends before 06:00 the same day: every
# fill time is valid, in a partition that exists, and on one UTC day.
T0 = (datetime.now(UTC) - timedelta(days=2)).replace(hour=1, minute=0, second=0, microsecond=0)


@contextlib.contextmanager
def live_server(
    conninfo: str, migration_ids: list[str], *, uvicorn_options: dict[str, Any] | None = None, **options: Any
) -> Iterator[str]:
    """Serve the API (create_app with ``options``; pool_size 4 unless given) over ``conninfo`` on a
    free loopback port, uvicorn run with ``uvicorn_options`` (spreadedge serve's:
    spreadedge.api.server.uvicorn_options); yields its base URL."""
    with serving(
        create_app(conninfo, migration_ids, **({"pool_size": 4} | options)),
        log_level="warning",
        lifespan="on",
        **({"loop": "asyncio"} | (uvicorn_options or {})),
    ) as url:
        yield url


@contextlib.contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn (``config``: uvicorn.Config's options) in a thread of this process,
    on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextlib.contextmanager
def serve_process(
    database_url: str, *options: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``spreadedge --database-url DATABASE_URL serve --port P OPTIONS`` as a process of its own
    (the environment's variables and ``env``), once its health answers: the process (stdout and
    stderr on one pipe) and its base URL. A process still running on the way out is terminated
    (killed after 30 s)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "spreadedge"), "--database-url", database_url]
    command += ["serve", "--port", str(port), *options]
    environment = {**os.environ, "SPREADEDGE_PROJECT_DIR": str(PROJECT), **(env or {})}
    with subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.TransportError):
                    httpx.get(f"{base}/api/v1/historical/health", timeout=5)
                    break
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
            yield proc, base
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


@dataclass(frozen=True)
class Api:
    """A live server and the session tokens of the seeded users."""

    url: str
    tokens: dict[str, str]

    def get(self, path: str, user: str | None = "alice", **params: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        query = {k: v for k, v in params.items() if v is not None}
        return httpx.get(f"{self.url}/api/v1/historical/{path}", params=query, headers=headers, timeout=30)


def api_login(url: str, username: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/auth/login", json={"username": username, "password": password}, timeout=30
    )


def assert_unavailable(response: httpx.Response, detail: str, sqlstate: str) -> None:
    """``response`` is the API's 503 problem (application/problem+json, Retry-After 5) saying
    ``detail``, of SQLSTATE ``sqlstate``."""
    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": detail,
        "parameter": None,
        "sqlstate": sqlstate,
    }


@contextlib.contextmanager
def strategies_locked(url: str) -> Iterator[None]:
    """trading.strategies locked against readers (as a migration's ALTER TABLE would) until the end."""
    with psycopg.connect(url) as holder:
        holder.execute("lock table trading.strategies in access exclusive mode")
        yield
        holder.rollback()


def seed_history(conn: psycopg.Connection) -> dict[str, int]:
    """The history the read tests check; returns the ids it created, by name."""
    _seed(conn)
    conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
    ids = {
        "alice": make_user(conn, "alice", "trader"),
        "bob": make_user(conn, "bob", "trader"),
        "root": make_user(conn, "root", "admin"),
        "nobody": make_user(conn, "nobody", "viewer"),
    }
    conn.execute("select auth.revoke_role(user_id => %s, role_name => 'viewer')", [ids["nobody"]])
    for owner in ("alice", "bob"):
        call(conn, "trading.create_strategy", name=f"{owner}-arb", owner_user_id=ids[owner])

    def at(minutes: int) -> datetime:
        return T0 + timedelta(minutes=minutes)

    # alice: a round trip on binance BTCUSDT (+1000 gross, fees 6 + 6.1), a cancelled ETH order, and
    # a buy of 0.5 filled 0.2 that leaves her long 0.2 at 59000
    ids["a1"] = place(conn, "buy", "1", "60000", strategy="alice-arb", placed_at=at(0))
    fill(conn, ids["a1"], "1", "60000", fee=Decimal("6"), executed_at=at(1), exchange_trade_id="a1-1")
    ids["a2"] = place(conn, "sell", "1", "61000", strategy="alice-arb", placed_at=at(60))
    fill(conn, ids["a2"], "0.4", "61000", fee=Decimal("2.44"), executed_at=at(61), exchange_trade_id="a2-1")
    fill(conn, ids["a2"], "0.6", "61000", fee=Decimal("3.66"), executed_at=at(62), exchange_trade_id="a2-2")
    ids["a3"] = place(
        conn, "buy", "2", "3000", strategy="alice-arb", exchange="kraken", symbol="ETHUSD", placed_at=at(120)
    )
    call(conn, "trading.cancel_order", order_id=ids["a3"], reason="spread closed")
    ids["a4"] = place(conn, "buy", "0.5", "59000", strategy="alice-arb", placed_at=at(180))
    fill(conn, ids["a4"], "0.2", "59000", executed_at=at(181), exchange_trade_id="a4-1")
    # bob: a losing round trip on the same instrument (-1000 gross, no fees)
    ids["b1"] = place(conn, "buy", "1", "59000", strategy="bob-arb", placed_at=at(30))
    fill(conn, ids["b1"], "1", "59000", executed_at=at(31), exchange_trade_id="b1-1")
    ids["b2"] = place(conn, "sell", "1", "58000", strategy="bob-arb", placed_at=at(90))
    fill(conn, ids["b2"], "1", "58000", executed_at=at(91), exchange_trade_id="b2-1")
    # the snapshot of 05:00: trading.take_portfolio_snapshot takes one now only, and nothing
    # happens after the last fill (03:01), so the portfolio now is the portfolio at 05:00; the
    # fixture moves the rows it writes there (a liberty with the table no caller has)
    with conn.transaction():
        [taken_at] = conn.execute(
            "select distinct taken_at from trading.take_portfolio_snapshot()"
        ).fetchone()
        conn.execute(
            "update trading.portfolio_snapshots set taken_at = %s where taken_at = %s", [at(240), taken_at]
        )
    return ids


@pytest.fixture(scope="module")
def history_db(pg_cluster: Cluster, template_db: str) -> Iterator[tuple[str, dict[str, int]]]:
    """A database cloned from the template for this test module, with the seeded history."""
    name = f"api_{free_port()}"
    with janitor(pg_cluster, name, template_db):
        url = pg_cluster.url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            ids = seed_history(conn)
        yield url, ids


@pytest.fixture(scope="module")
def migration_ids(project_settings: Settings) -> list[str]:
    return [m.id for m in render_migrations(project_settings)]


@pytest.fixture(scope="module")
def api(history_db: tuple[str, dict[str, int]], migration_ids: list[str]) -> Iterator[Api]:
    """The live API over the seeded history, with a session token per user."""
    url, _ids = history_db
    with live_server(url, migration_ids) as base:
        tokens = {}
        for user in ("alice", "bob", "root", "nobody"):
            response = api_login(base, user)
            assert response.status_code == 200, response.text
            tokens[user] = response.json()["token"]
        yield Api(base, tokens)


@pytest.fixture(scope="module")
def ids(history_db: tuple[str, dict[str, int]]) -> dict[str, int]:
    return history_db[1]
