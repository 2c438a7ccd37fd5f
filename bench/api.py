"""History reads: orders?symbol=...&limit=100 on a table of 10 M orders, in SQL and through the API.

``prepare`` bulk-loads orders up to the target and creates a trader who owns half the history's
strategies, so row-level security filters what they read. ``time_history_sql`` times
``trading.order_history_page`` as that trader does through the API (role spreadedge_app, scoped to
the user), from Python with a prepared statement. ``measure_http`` starts ``spreadedge serve`` (two
workers) on a free loopback port and drives it with wrk for a fixed time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from bench.latency import Latency, summarize
from bench.scratch import free_port, user_password
from bench.sqlfile import statements

SYMBOLS = ("BTCUSDT", "ETHUSDT")
API_ROLE = "spreadedge_app"
PAGE = sql.SQL("select trading.order_history_page(symbol => %(symbol)s, page_size => 100)")
SCOPE = sql.SQL("select set_config('spreadedge.user_id', %(user_id)s, true)")
WORKERS = 2


@dataclass(frozen=True)
class Reader:
    user_id: int
    username: str
    password: str


@dataclass(frozen=True)
class HttpResult:
    """What wrk measured. ``requests_per_s`` counts successful (2xx or 3xx) responses only;
    ``requests`` is every response wrk completed, ``non_2xx`` the failed ones among them, and
    ``socket_errors`` the requests that got no response at all (connect, read, write, timeout)."""

    requests_per_s: float
    p99_ms: float
    p50_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    elapsed_s: float
    connections: int
    duration_s: int
    workers: int

    def as_json(self) -> dict[str, float | int]:
        return asdict(self)


def prepare(conninfo: str, target_orders: int) -> Reader:
    """Orders up to ``target_orders`` and the reading trader."""
    password = user_password()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("set session_replication_role = replica")
        with conn.transaction():
            for stmt in statements("api_orders.sql"):
                conn.execute(stmt, {"target": target_orders})
        conn.execute("reset session_replication_role")
        conn.execute("vacuum (analyze) trading.orders, trading.order_keys")
        for stmt in statements("api_reader.sql"):
            conn.execute(stmt, {"password": password})
        row = conn.execute("select auth.user_id_of('bench-reader')").fetchone()
    assert row is not None
    return Reader(int(row[0]), "bench-reader", password)


def order_count(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("select count(*) from trading.orders").fetchone()
    return int(row[0]) if row else 0


def time_history_sql(conninfo: str, reader: Reader, *, runs: int, budget_s: float) -> Latency:
    """orders_history_page for one symbol, 100 rows, as the scoped trader; one transaction a run."""
    timings: list[float] = []
    with psycopg.connect(conninfo) as conn:
        conn.adapters.register_loader("json", TextLoader)  # as the API passes it on: unparsed
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(API_ROLE)))
        conn.commit()
        deadline = time.monotonic() + budget_s
        n = 0
        while len(timings) < runs and (len(timings) < 10 or time.monotonic() < deadline):
            params = {"symbol": SYMBOLS[n % len(SYMBOLS)]}
            with conn.transaction():
                conn.execute(SCOPE, {"user_id": str(reader.user_id)})
                started = time.perf_counter()
                row = conn.execute(PAGE, params, prepare=True).fetchone()
                elapsed = (time.perf_counter() - started) * 1000
            if n < len(SYMBOLS) and (row is None or len(json.loads(row[0])["items"]) != 100):
                raise RuntimeError("order_history_page did not return a full page of 100 orders")
            n += 1
            if n > 20:  # after a warm-up
                timings.append(elapsed)
    return summarize(timings)


def measure_http(conninfo: str, reader: Reader, *, duration_s: int, connections: int) -> HttpResult:
    """``spreadedge serve`` driven by wrk on loopback for ``duration_s`` seconds."""
    port = free_port()
    spreadedge = Path(sys.executable).with_name("spreadedge")
    command = [str(spreadedge), "--database-url", conninfo, "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", str(WORKERS), "--pool-size", str(connections // WORKERS)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server)
        login = httpx.post(
            f"{base}/api/v1/auth/login", json={"username": reader.username, "password": reader.password}
        )
        login.raise_for_status()
        token = login.json()["token"]
        url = f"{base}/api/v1/historical/orders?symbol={SYMBOLS[0]}&limit=100"
        probe = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        if probe.status_code != 200 or len(probe.json()["items"]) != 100:
            raise RuntimeError(f"the API did not return a full page: {probe.status_code}")
        result = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--latency", "-H",
             f"Authorization: Bearer {token}", url],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return _parse_wrk(result.stdout, connections=connections, duration_s=duration_s)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"spreadedge serve exited: {server.stderr.read().decode() if server.stderr else ''}"
            )
        try:
            if httpx.get(f"{base}/api/v1/historical/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("spreadedge serve did not become healthy in 30 s")


# wrk's time units (src/units.c): microseconds to hours
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _latency_ms(text: str, percent: str) -> float:
    match = re.search(rf"^\s*{percent}%\s+([0-9.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {percent}% latency in the wrk output:\n{text}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def _parse_wrk(text: str, *, connections: int, duration_s: int) -> HttpResult:
    """wrk's report as an HttpResult whose rate counts successful responses only.

    why not wrk's own Requests/sec: it counts every completed response, a 401, 429 or 500 as
    much as a page, so an API refusing every request still showed its full rate.
    """
    total = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h),", text, re.MULTILINE)
    non_2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", text, re.MULTILINE)
    sockets = re.search(
        r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text, re.MULTILINE
    )
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    requests = int(total.group(1))
    elapsed_s = float(total.group(2)) * _UNITS_MS[total.group(3)] / 1000
    failed = int(non_2xx.group(1)) if non_2xx else 0
    if elapsed_s <= 0:
        raise RuntimeError(f"wrk ran for no time:\n{text}")
    return HttpResult(
        requests_per_s=(requests - failed) / elapsed_s,
        p99_ms=_latency_ms(text, "99"),
        p50_ms=_latency_ms(text, "50"),
        requests=requests,
        non_2xx=failed,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        elapsed_s=elapsed_s,
        connections=connections,
        duration_s=duration_s,
        workers=WORKERS,
    )
