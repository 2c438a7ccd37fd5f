"""Hostile input (issue 8, item 5): injection, oversized and malformed payloads, non-finite numbers,
far times and Unicode twins through the REST API, the CLI, ingestion and the SQL API.

Every test sends what an attacker or a broken feed would send and proves the product refuses it
cleanly (a 4xx problem, a project SQLSTATE, a rejects-file line, a clean CLI message) or stores it
harmlessly, and that afterwards nothing was lost or damaged: the row counts are unchanged, no row
sits in a default partition and ``ops.check_invariants()`` finds nothing.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import httpx
import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from api_fixtures import Api
from conftest import free_port
from db_fixtures import _seed, janitor
from reliability import Tally, scaled
from spreadedge.cli import main
from spreadedge.cluster import Cluster
from trading_helpers import call, counts, place

pytestmark = pytest.mark.reliability

# Classic injection payloads. NUL is not here: PostgreSQL text cannot hold it, so it has tests of
# its own (it must be refused cleanly, never stored truncated).
PAYLOADS = [
    "' or 1=1 --",
    "'; drop table trading.orders; --",
    "$$",
    "$$; select pg_sleep(0); $$",
    "%s",
    "{}",
    "') union select password_hash, null from auth.users --",
    "\\",
    "\\'; select 1; --",
    "*/ select 1 /*",
    "' || (select string_agg(username, ',') from auth.users) || '",
    "x" * scaled(190, 190),
]
# a shorter list for the slower channels (a CLI run opens a connection each time)
CLI_PAYLOADS = [PAYLOADS[0], PAYLOADS[1], PAYLOADS[2], PAYLOADS[6], PAYLOADS[8]]


def default_partition_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Rows in every default partition of the database, by partition name."""
    names = conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where c.relispartition and pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' order by 1, 2"
    ).fetchall()
    result = {}
    for schema, table in names:
        query = sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))
        result[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]
    return result


def all_lists_empty(body: Any) -> bool:
    """True when every list in a JSON body is empty (no rows came back)."""
    if isinstance(body, list):
        return not body
    if isinstance(body, dict):
        return all(all_lists_empty(value) for value in body.values())
    return True


@pytest.fixture(scope="module")
def shared_url(pg_cluster: Cluster, template_db: str) -> Iterator[str]:
    """One seeded database for this module's non-API tests (bcrypt cost 4): attacks that are
    refused write nothing, and the SQL API tests roll their transaction back."""
    name = f"hostile_{free_port()}"
    with janitor(pg_cluster, name, template_db):
        url = pg_cluster.url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            _seed(conn)
            conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
        yield url


@pytest.fixture
def shared(shared_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(shared_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def client(api: Api) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def openapi(client: httpx.Client) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def query_parameters(openapi: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, parameter) for every query parameter of every GET endpoint of the OpenAPI document."""
    found = []
    for path, operations in openapi["paths"].items():
        for parameter in operations.get("get", {}).get("parameters", []):
            if parameter["in"] == "query":
                found.append((path, parameter["name"]))
    return found


@pytest.fixture
def history_conn(history_db: tuple[str, dict[str, int]]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(history_db[0], autocommit=True) as conn:
        yield conn


def assert_intact(conn: psycopg.Connection, before: dict[str, int], tally: Tally) -> None:
    """Nothing written, trading.orders still there, no default-partition row, no violation."""
    assert counts(conn) == before
    assert set(default_partition_rows(conn).values()) == {0}
    assert tally.check(conn) == []


def problem(response: httpx.Response) -> None:
    """A refusal must be an RFC 9457 problem, and never a server error."""
    assert response.status_code < 500, (response.request.url.path, response.status_code)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == response.status_code


# --- injection through the REST API ----------------------------------------------------------------


def test_openapi_document_lists_the_query_parameters_attacked(openapi: dict[str, Any]) -> None:
    # why: the injection tests take their parameters from here, so an empty list would test nothing
    parameters = query_parameters(openapi)
    assert ("/api/v1/historical/orders", "symbol") in parameters
    assert len(parameters) >= 20


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_injection_in_every_query_parameter_is_a_4xx_or_an_empty_200(
    api: Api,
    client: httpx.Client,
    openapi: dict[str, Any],
    history_conn: psycopg.Connection,
    tally: Tally,
    payload: str,
) -> None:
    before = counts(history_conn)
    headers = {"Authorization": f"Bearer {api.tokens['root']}"}
    for path, parameter in query_parameters(openapi):
        response = client.get(path, params={parameter: payload}, headers=headers)
        tally.op("api requests")
        problem(response)
        if response.status_code == 200:
            # only a text filter takes any string; no strategy, exchange or symbol has this name
            assert all_lists_empty(response.json()), (path, parameter)
        else:
            tally.error(f"HTTP {response.status_code}")
    assert_intact(history_conn, before, tally)


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_injection_in_the_order_id_path_is_a_422(api: Api, tally: Tally, payload: str) -> None:
    quoted = urllib.parse.quote(payload, safe="")
    response = httpx.get(
        f"{api.url}/api/v1/historical/orders/{quoted}",
        headers={"Authorization": f"Bearer {api.tokens['root']}"},
        timeout=30,
    )
    tally.op("api requests")
    tally.error(f"HTTP {response.status_code}")
    problem(response)
    # a payload holding "/" is another path (404); any other is not an order id (422)
    assert response.status_code == (404 if "/" in payload else 422)


@pytest.mark.parametrize("field", ["username", "password", "totp_code"])
def test_injection_in_the_login_body_is_refused_with_a_401(
    client: httpx.Client, history_conn: psycopg.Connection, tally: Tally, field: str
) -> None:
    before = counts(history_conn)
    for payload in PAYLOADS:
        # why a user that does not exist: a wrong password for a real one would lock it out
        body = {"username": "nobody-at-all", "password": "wrong-Password-1", field: payload}
        response = client.post(LOGIN, json=body)
        tally.op("api requests")
        problem(response)
        # totp_code is at most 20 characters (422); anything else is a refused login
        assert response.status_code in ({401, 422} if field == "totp_code" else {401}), payload
        tally.error(f"HTTP {response.status_code}")
    assert_intact(history_conn, before, tally)


# --- oversized and malformed requests --------------------------------------------------------------

LOGIN = "/api/v1/auth/login"
ORDERS = "/api/v1/historical/orders"
JSON_HEADERS = {"content-type": "application/json"}


def _deep(levels: int) -> bytes:
    return b'{"username": ' + b"[" * levels + b"]" * levels + b', "password": "x"}'


def raw_status(url: str, target: str, token: str) -> int | None:
    """The status of a GET of ``target`` sent as raw bytes (httpx refuses URLs this long);
    None when the server closes the connection without an answer."""
    parsed = urllib.parse.urlsplit(url)
    head = f"GET {target} HTTP/1.1\r\nHost: {parsed.netloc}\r\nAuthorization: Bearer {token}\r\n"
    with socket.create_connection((parsed.hostname, parsed.port), timeout=60) as conn:
        conn.sendall(head.encode() + b"Connection: close\r\n\r\n")
        answer = conn.makefile("rb").readline()
    return int(answer.split()[1]) if answer else None


@pytest.mark.parametrize(
    "target",
    [ORDERS + "?symbol=" + "A" * 1_000_000, ORDERS + "?" + "&".join(["a=b"] * 100_000)],
    ids=["1 MB parameter", "100000 parameters"],
)
def test_a_huge_query_string_is_a_4xx_or_a_closed_connection_and_the_server_stays_up(
    api: Api, tally: Tally, target: str
) -> None:
    status = raw_status(api.url, target, api.tokens["root"])
    tally.op("api requests", 2)
    tally.error(f"HTTP {status}" if status else "connection closed")
    # why a closed connection is allowed: h11 drops a request head over its limit without a word
    assert status is None or 400 <= status < 500
    assert api.get("orders", "root", limit=1).status_code == 200


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (json.dumps({"username": "u" * 10_000_000, "password": "x"}).encode(), JSON_HEADERS),
        (b'{"username": "alice", "password":', JSON_HEADERS),
        (b'["alice", "x"]', JSON_HEADERS),
        (b"null", JSON_HEADERS),
        (b"username=alice&password=x", {"content-type": "text/plain"}),
        (b"username=alice&password=x", {"content-type": "application/x-www-form-urlencoded"}),
        (b'{"username": "\xff\xfe", "password": "x"}', JSON_HEADERS),
        (b'{"username": "al\\u0000ice", "password": "x"}', JSON_HEADERS),
        (b'{"username": "\\ud800", "password": "x"}', JSON_HEADERS),
        (_deep(100_000), JSON_HEADERS),
    ],
    ids=[
        "10 MB body",
        "invalid JSON",
        "a JSON array",
        "JSON null",
        "text/plain",
        "a form",
        "invalid UTF-8",
        "a NUL",
        "a lone surrogate",
        "deeply nested",
    ],
)
def test_an_oversized_or_malformed_login_body_is_a_4xx_and_the_server_stays_up(
    api: Api, tally: Tally, content: bytes, headers: dict[str, str]
) -> None:
    response = httpx.post(f"{api.url}{LOGIN}", content=content, headers=headers, timeout=60)
    tally.op("api requests", 2)
    tally.error(f"HTTP {response.status_code}")
    problem(response)
    assert 400 <= response.status_code < 500
    assert api.get("orders", "root", limit=1).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "symbol=%FF%FE",
        "strategy=a%00b",
        "limit=" + "9" * 5000,
        "start_date=294276-12-31T00:00:00Z",
        "symbol=" + "%C3%A9" * 150,
        "cursor=" + "A" * 5000,
    ],
    ids=[
        "invalid UTF-8",
        "a NUL",
        "a 5000-digit limit",
        "year 294276",
        "300 bytes of UTF-8",
        "a long cursor",
    ],
)
def test_a_malformed_query_is_a_4xx_or_an_empty_200(api: Api, tally: Tally, query: str) -> None:
    response = httpx.get(
        f"{api.url}{ORDERS}?{query}", headers={"Authorization": f"Bearer {api.tokens['root']}"}, timeout=60
    )
    tally.op("api requests")
    if response.status_code != 200:
        tally.error(f"HTTP {response.status_code}")
    problem(response)
    if response.status_code == 200:
        assert all_lists_empty(response.json())


def test_a_huge_bearer_token_is_a_401(api: Api, tally: Tally) -> None:
    response = httpx.get(
        f"{api.url}{ORDERS}", headers={"Authorization": "Bearer " + "t" * 60_000}, timeout=60
    )
    tally.op("api requests")
    tally.error(f"HTTP {response.status_code}")
    problem(response)
    assert response.status_code == 401


# --- injection through the CLI ---------------------------------------------------------------------

# Commands whose text parameters the CLI test attacks, with the arguments they need otherwise;
# an UPPER-CASE word is the positional argument of that name, replaced by the payload in its turn.
CLI_BASE: dict[tuple[str, ...], list[str]] = {
    ("pnl",): [],
    ("spreads",): [],
    ("users", "create"): ["USERNAME", "--password", "Correct-Horse-42"],
    ("users", "disable"): ["USERNAME"],
    ("users", "enable"): ["USERNAME"],
    ("users", "unlock"): ["USERNAME"],
    ("keys", "list"): [],
    ("alerts", "ack"): ["1"],
    ("alerts", "disable"): ["NAME"],
    ("alerts", "enable"): ["NAME"],
    ("alerts", "add-rule"): [
        "NAME",
        "--kind",
        "price",
        "--operator",
        ">",
        "--threshold",
        "1",
        "--exchange",
        "binance",
        "--symbol",
        "BTCUSDT",
    ],
    ("risk", "show"): [],
    ("risk", "set"): ["STRATEGY", "--max-order-notional", "100"],
    ("risk", "kill"): ["STRATEGY"],
    ("risk", "unkill"): ["STRATEGY"],
    ("metrics", "show"): [],
    ("cleanup",): ["orders", "--older-than", "30d", "--dry-run"],
    ("health",): [],
    ("tune", "apply"): ["ADVICE"],
    ("tune", "drop-unused"): [],
}
# Text parameters not attacked here, and why.
CLI_SKIPPED = {
    ("psql", "args"): "passed as argv to psql itself, which it runs",
    ("pgcli", "args"): "passed as argv to pgcli itself, which it runs",
    ("serve", "host"): "binds a server and blocks",
    ("serve", "cors_origins"): "binds a server and blocks; a malformed origin refused before it serves is "
    "tests/test_api_browser_hunt.py's",
    ("keys", "store", "username"): "prompts for the API key and secret on a terminal",
    ("keys", "store", "exchange"): "prompts for the API key and secret on a terminal",
    ("keys", "store", "label"): "prompts for the API key and secret on a terminal",
    ("backup", "logical", "mode"): "runs pg_dump",
    ("backup", "schedule", "schedule"): "writes a cron file for pgBackRest",
    ("backup", "schedule", "user"): "writes a cron file for pgBackRest",
    ("restore", "logical", "to_database"): "restores a dump file",
}


def cli_text_parameters() -> list[tuple[tuple[str, ...], click.Parameter]]:
    """(command path, parameter) for every free-text parameter of every CLI command."""
    found: list[tuple[tuple[str, ...], click.Parameter]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
            return
        found.extend((path, p) for p in command.params if p.type is click.STRING)

    walk(main, ())
    return found


def cli_argv(path: tuple[str, ...], parameter: click.Parameter, payload: str) -> list[str]:
    argv = list(CLI_BASE[path])
    if isinstance(parameter, click.Argument):
        return [*path, *[payload if word == (parameter.name or "").upper() else word for word in argv]]
    flag = parameter.opts[0]
    if flag in argv:
        index = argv.index(flag)
        del argv[index : index + 2]
    return [*path, *argv, flag, payload]


def clean_exit(result: Result) -> bool:
    """Exit 0, 1 (a ClickException) or 2 (a usage error) with no traceback."""
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    return result.exit_code in (0, 1, 2) and not crashed and "Traceback" not in result.output


def test_every_cli_text_parameter_is_attacked_or_skipped_for_a_reason() -> None:
    uncovered = [
        (path, p.name)
        for path, p in cli_text_parameters()
        if path not in CLI_BASE and (*path, p.name) not in CLI_SKIPPED
    ]
    assert uncovered == []


@pytest.mark.parametrize("path", list(CLI_BASE), ids=" ".join)
def test_injection_in_a_cli_text_parameter_exits_cleanly(
    shared: psycopg.Connection, shared_url: str, tally: Tally, path: tuple[str, ...]
) -> None:
    parameters = [p for command, p in cli_text_parameters() if command == path]
    assert parameters
    runner = CliRunner()
    for parameter in parameters:
        for payload in CLI_PAYLOADS:
            result = runner.invoke(main, ["--database-url", shared_url, *cli_argv(path, parameter, payload)])
            tally.op("cli runs")
            if result.exit_code:
                tally.error(f"exit {result.exit_code}")
            assert clean_exit(result), (parameter.name, payload, result.exit_code)
    assert shared.execute("select to_regclass('trading.orders') is not null").fetchone() == (True,)
    assert set(default_partition_rows(shared).values()) == {0}
    assert tally.check(shared) == []


# --- injection and garbage through ingestion --------------------------------------------------------

NOW = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
INGEST_ROWS: dict[str, dict[str, str]] = {
    "quotes": {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "quoted_at": "",
        "bid": "100",
        "bid_size": "1",
        "ask": "101",
        "ask_size": "2",
        "received_at": "",
    },
    "ticks": {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "traded_at": "",
        "exchange_trade_id": "",
        "price": "100",
        "quantity": "0.5",
        "side": "buy",
        "received_at": "",
    },
    "candles": {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "interval": "1m",
        "open_time": "",
        "open": "100",
        "high": "101",
        "low": "99",
        "close": "100",
        "volume": "1",
        "quote_volume": "100",
        "trade_count": "3",
    },
}
TIME_FIELD = {"quotes": "quoted_at", "ticks": "traded_at", "candles": "open_time"}
# fields any string is a valid value of: stored as sent, byte for byte
FREE_TEXT = {"exchange_trade_id"}


def ingest_file(tmp_path: Path, kind: str, fmt: str, rows: list[dict[str, str]]) -> Path:
    path = tmp_path / f"{kind}.{fmt}"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(INGEST_ROWS[kind]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(out.getvalue(), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def rejected_lines(path: Path) -> set[int]:
    rejects = path.with_name(path.name + ".rejects.csv")
    if not rejects.exists():
        return set()
    with rejects.open(encoding="utf-8") as lines:
        return {int(row["line"]) for row in csv.DictReader(lines)}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("kind", list(INGEST_ROWS))
def test_injection_in_every_ingestion_field_is_rejected_or_stored_as_sent(
    shared: psycopg.Connection, shared_url: str, tmp_path: Path, tally: Tally, kind: str, fmt: str
) -> None:
    rows, attacked = [], []
    for field in INGEST_ROWS[kind]:
        for payload in PAYLOADS:
            row = dict(INGEST_ROWS[kind])
            # a distinct time per row, so no row is another's duplicate
            # (and per format: the two files share the database)
            at = NOW - timedelta(minutes=len(rows) + (0 if fmt == "csv" else 600))
            row[TIME_FIELD[kind]] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            if kind == "ticks":
                row["exchange_trade_id"] = f"t-{fmt}-{len(rows)}"
            row[field] = payload
            rows.append(row)
            attacked.append((field, payload, at))
    path = ingest_file(tmp_path, kind, fmt, rows)
    result = CliRunner().invoke(main, ["--database-url", shared_url, "ingest", kind, str(path)])
    tally.op("ingested rows", len(rows))
    assert clean_exit(result) and result.exit_code == 0, result.output
    rejected = rejected_lines(path)
    tally.op("rejected rows", len(rejected))
    first = 2 if fmt == "csv" else 1
    stored = [attacked[line - first] for line in range(first, first + len(rows)) if line not in rejected]
    assert {field for field, _, _ in stored} <= FREE_TEXT
    for _field, payload, at in stored:
        found = shared.execute(
            "select count(*) from market.ticks where exchange_trade_id = %s and traded_at = %s", [payload, at]
        )
        assert found.fetchone() == (1,)
    assert shared.execute("select to_regclass('trading.orders') is not null").fetchone() == (True,)
    assert set(default_partition_rows(shared).values()) == {0}
    assert tally.check(shared) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "a NUL in a field",
            b"exchange,symbol,traded_at,exchange_trade_id,price,quantity,side\n"
            b"binance,BTC\x00USDT,2026-01-01T00:00:00Z,n1,100,1,buy\n",
        ),
        (
            "invalid UTF-8",
            b"exchange,symbol,traded_at,exchange_trade_id,price,quantity,side\n"
            b"binance,BTC\xff\xfeUSDT,2026-01-01T00:00:00Z,n1,100,1,buy\n",
        ),
        ("a binary file", bytes(range(256)) * 64),
        (
            "a 1 MB field",
            b"exchange,symbol,traded_at,exchange_trade_id,price,quantity,side\n"
            b"binance,BTCUSDT,2026-01-01T00:00:00Z," + b"9" * 1_000_000 + b",100,1,buy\n",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_malformed_ingestion_file_fails_cleanly_and_loads_nothing(
    shared: psycopg.Connection, shared_url: str, tmp_path: Path, tally: Tally, name: str, content: bytes
) -> None:
    path = tmp_path / "ticks.csv"
    path.write_bytes(content)
    before = shared.execute("select count(*) from market.ticks").fetchone()
    result = CliRunner().invoke(main, ["--database-url", shared_url, "ingest", "ticks", str(path)])
    tally.op("ingest runs")
    if result.exit_code != 0:
        tally.error(f"exit {result.exit_code}")
    assert clean_exit(result), (name, result.exit_code, type(result.exception).__name__)
    assert shared.execute("select count(*) from market.ticks").fetchone() == before
    assert set(default_partition_rows(shared).values()) == {0}


# --- non-finite and huge numbers through the SQL API ------------------------------------------------

ORDER = {
    "strategy": "alpha",
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "side": "buy",
    "quantity": Decimal("1"),
    "price": Decimal("100"),
}
STOP = {**ORDER, "order_type": "stop_limit", "stop_price": Decimal("99")}
FILL = {
    "exchange_trade_id": "nan-1",
    "quantity": Decimal("0.1"),
    "price": Decimal("100"),
    "fee": Decimal("1"),
    "fee_currency": "BNB",
    "fee_quote": Decimal("1"),
}
FUNDING = {"strategy": "alpha", "exchange": "okx", "symbol": "BTC-USDT-SWAP", "amount": Decimal("1")}
INSTRUMENT = {
    "exchange": "binance",
    "symbol": "NEWUSDT",
    "base_asset": "NEW",
    "quote_asset": "USDT",
    "market_type": "spot",
    "tick_size": Decimal("0.01"),
    "lot_size": Decimal("0.1"),
    "min_notional": Decimal("5"),
    "maker_fee": Decimal("0.001"),
    "taker_fee": Decimal("0.001"),
    "multiplier": Decimal("1"),
}
RULE = {
    "name": "nan-rule",
    "kind": "price",
    "operator": ">",
    "threshold": Decimal("1"),
    "exchange": "binance",
    "symbol": "BTCUSDT",
}
RISK = {
    "strategy": "alpha",
    "max_order_notional": Decimal("1"),
    "max_position_notional": Decimal("1"),
    "max_daily_loss": Decimal("1"),
}
METRIC = {"name": "hostile.value", "value": Decimal("1")}

NUMERIC_ARGUMENTS = [
    ("trading.place_order", ORDER, "quantity", "22S01"),
    ("trading.place_order", ORDER, "price", "22S02"),
    ("trading.place_order", STOP, "stop_price", "22S02"),
    ("trading.record_fill", FILL, "quantity", "22S01"),
    ("trading.record_fill", FILL, "price", "22S02"),
    ("trading.record_fill", FILL, "fee", "22S09"),
    ("trading.record_fill", FILL, "fee_quote", "22S09"),
    ("trading.record_funding", FUNDING, "amount", "22S09"),
    *[
        ("ref.upsert_instrument", INSTRUMENT, name, "22S09")
        for name in ("tick_size", "lot_size", "min_notional", "maker_fee", "taker_fee", "multiplier")
    ],
    ("monitor.add_alert_rule", RULE, "threshold", "22S12"),
    *[
        ("monitor.set_risk_limit", RISK, name, "22S13")
        for name in ("max_order_notional", "max_position_notional", "max_daily_loss")
    ],
    ("monitor.record_metric", METRIC, "value", "22S14"),
]


def with_order(conn: psycopg.Connection, function: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if function != "trading.record_fill":
        return dict(arguments)
    return {"order_id": place(conn, "buy", "1", "100"), **arguments}


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    ("function", "arguments", "argument", "sqlstate"),
    NUMERIC_ARGUMENTS,
    ids=[f"{f}.{a}" for f, _, a, _ in NUMERIC_ARGUMENTS],
)
def test_a_non_finite_number_is_refused_with_its_sqlstate_and_nothing_written(
    shared: psycopg.Connection,
    tally: Tally,
    function: str,
    arguments: dict[str, Any],
    argument: str,
    sqlstate: str,
    value: str,
) -> None:
    with shared.transaction(force_rollback=True):
        kwargs = with_order(shared, function, arguments) | {argument: Decimal(value)}
        before = counts(shared)
        with pytest.raises(psycopg.Error) as caught, shared.transaction():
            call(shared, function, **kwargs)
        tally.error(caught.value)
        assert caught.value.sqlstate == sqlstate
        assert counts(shared) == before
        assert tally.check(shared) == []


@pytest.mark.parametrize(
    ("function", "arguments", "argument", "sqlstate"),
    NUMERIC_ARGUMENTS,
    ids=[f"{f}.{a}" for f, _, a, _ in NUMERIC_ARGUMENTS],
)
def test_a_number_beyond_numeric_is_refused_by_postgresql_before_the_call(
    shared: psycopg.Connection,
    tally: Tally,
    function: str,
    arguments: dict[str, Any],
    argument: str,
    sqlstate: str,
) -> None:
    # why 22003 and not a project code: numeric's own input refuses 1e1000000 while binding the
    # parameter, before any function runs
    with shared.transaction(force_rollback=True):
        kwargs = with_order(shared, function, arguments) | {argument: Decimal("1e1000000")}
        before = counts(shared)
        with pytest.raises(psycopg.errors.NumericValueOutOfRange) as caught, shared.transaction():
            call(shared, function, **kwargs)
        tally.error(caught.value)
        assert counts(shared) == before


# --- far past and far future times -----------------------------------------------------------------

FAR_TIMES = [
    "1970-01-01 00:00:00+00",
    "4713-11-24 00:00:00+00 BC",
    "-infinity",
    "2010-06-01 00:00:00+00",
    "2100-01-01 00:00:00+00",
    "294276-12-31 23:59:59+00",
    "infinity",
]
TIMED = [
    ("trading.place_order", ORDER, "placed_at"),
    ("trading.record_fill", FILL, "executed_at"),
    ("trading.record_funding", FUNDING, "paid_at"),
    ("trading.take_portfolio_snapshot", {}, "taken_at"),
    ("monitor.record_metric", METRIC, "recorded_at"),
]


# tables that are not partitioned: a 2010 row there is an ordinary row in its one table
UNPARTITIONED = {"trading.record_funding"}


@pytest.mark.parametrize("when", FAR_TIMES)
@pytest.mark.parametrize(("function", "arguments", "argument"), TIMED, ids=[f"{f}.{a}" for f, _, a in TIMED])
def test_a_far_time_is_refused_with_22S09_or_stored_outside_any_default_partition(
    shared: psycopg.Connection,
    tally: Tally,
    function: str,
    arguments: dict[str, Any],
    argument: str,
    when: str,
) -> None:
    with shared.transaction(force_rollback=True):
        kwargs = with_order(shared, function, arguments) | {argument: when}
        before = counts(shared)
        if when.startswith("2010") and function in UNPARTITIONED:
            assert call(shared, function, **kwargs) is not None
            tally.op("far times stored")
        else:
            with pytest.raises(psycopg.Error) as caught, shared.transaction():
                call(shared, function, **kwargs)
            tally.error(caught.value)
            assert caught.value.sqlstate == "22S09"
            assert counts(shared) == before
        assert set(default_partition_rows(shared).values()) == {0}


def test_an_order_placed_before_the_partitions_kept_is_refused_naming_the_table(
    shared: psycopg.Connection, tally: Tally
) -> None:
    # 2010 passes the argument check (after 2009-01-03) but no partition holds it: before the
    # default partitions refused rows, this order was stored in trading.orders_default
    with pytest.raises(psycopg.DataError) as caught:
        call(shared, "trading.place_order", **ORDER, placed_at="2010-06-01 00:00:00+00")
    tally.error(caught.value)
    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary == (
        "trading.orders has no partition for created_at 2010-06-01T00:00:00+00:00"
    )


@pytest.mark.parametrize(
    "when",
    [
        "1970-01-01T00:00:00Z",
        "2010-06-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "-infinity",
        "infinity",
        "0000-01-01T00:00:00Z",
        "99999999999999",
    ],
)
def test_a_far_ingestion_time_is_rejected_or_refused_and_lands_in_no_default_partition(
    shared: psycopg.Connection, shared_url: str, tmp_path: Path, tally: Tally, when: str
) -> None:
    row = dict(INGEST_ROWS["ticks"], traded_at=when, exchange_trade_id="far-1")
    path = ingest_file(tmp_path, "ticks", "csv", [row])
    before = shared.execute("select count(*) from market.ticks").fetchone()
    result = CliRunner().invoke(main, ["--database-url", shared_url, "ingest", "ticks", str(path)])
    tally.op("ingest runs")
    assert clean_exit(result), result.output
    # rejected to the rejects file, or the batch refused whole by its default partition (22S09)
    assert rejected_lines(path) == {2} or (result.exit_code == 1 and "has no partition" in result.output)
    assert shared.execute("select count(*) from market.ticks").fetchone() == before
    assert set(default_partition_rows(shared).values()) == {0}


@pytest.mark.parametrize(
    ("start_date", "status"),
    [
        ("0001-01-01T00:00:00Z", 200),
        ("1970-01-01", 200),
        ("9999-12-31T23:59:59Z", 200),
        ("294276-12-31T00:00:00Z", 422),
        ("infinity", 422),
        ("-infinity", 422),
    ],
)
def test_a_far_api_date_is_a_200_or_a_422(api: Api, tally: Tally, start_date: str, status: int) -> None:
    for path in ("orders", "trades", "trades/summary", "portfolio/snapshots"):
        response = api.get(path, "root", start_date=start_date)
        tally.op("api requests")
        problem(response)
        assert response.status_code == status, (path, response.text)


# --- Unicode in names, ids and labels ----------------------------------------------------------------

UNICODE_NAMES = [
    "caf\u00e9",  # NFC
    "\u05e9\u05dc\u05d5\u05dd-arb",  # right-to-left
    "\U0001f680 moon",  # emoji outside the BMP
    "\u4ea4\u6613\u7b56\u7565",  # CJK
    "\U0001f468\u200d\U0001f469\u200d\U0001f467"[:1] + "-family",  # an emoji alone, no joiner
    "\u00e9" * 100,  # 100 characters, 200 bytes
]
# names that look like another name, or like nothing: refused for strategies
LOOK_ALIKES = [
    "cafe\u0301",  # NFD twin of café
    "alpha\u200b",  # zero-width space
    "al\u200dpha",  # zero-width joiner
    "\u202eahpla",  # right-to-left override
    "\ufeffalpha",  # byte order mark
    "al\u00adpha",  # soft hyphen
    "alpha\u0007",  # a control character
]
# opaque ids from exchanges: any text, stored byte for byte (two spellings are two ids)
OPAQUE_IDS = ["caf\u00e9", "cafe\u0301", "\u202eid", "\U0001f680" * 50, "a\u200db", "\u05d0-1"]


@pytest.mark.parametrize("name", UNICODE_NAMES, ids=range(len(UNICODE_NAMES)))
def test_a_unicode_strategy_name_is_stored_and_found_byte_exact(
    shared: psycopg.Connection, tally: Tally, name: str
) -> None:
    with shared.transaction(force_rollback=True):
        strategy_id = call(shared, "trading.create_strategy", name=name)
        stored = shared.execute("select name from trading.strategies where strategy_id = %s", [strategy_id])
        assert stored.fetchone()[0].encode() == name.encode()
        assert call(shared, "trading.create_strategy", name=name) == strategy_id
        assert place(shared, "buy", "1", "100", strategy=name) > 0
        tally.op("unicode names")


@pytest.mark.parametrize("name", LOOK_ALIKES, ids=range(len(LOOK_ALIKES)))
def test_a_strategy_name_that_looks_like_another_is_refused_with_22S09(
    shared: psycopg.Connection, tally: Tally, name: str
) -> None:
    with shared.transaction(force_rollback=True):
        before = counts(shared)
        with pytest.raises(psycopg.DataError) as caught, shared.transaction():
            call(shared, "trading.create_strategy", name=name)
        tally.error(caught.value)
        assert caught.value.sqlstate == "22S09"
        assert counts(shared) == before


@pytest.mark.parametrize("username", ["caf\u00e9", "cafe\u0301", "\u0430lice", "alice\u200b", "\U0001f680"])
def test_a_username_outside_ascii_is_refused_with_22S09(
    shared: psycopg.Connection, tally: Tally, username: str
) -> None:
    # why ASCII only: a Cyrillic a (U+0430) would otherwise log in as a look-alike of alice
    with shared.transaction(force_rollback=True), pytest.raises(psycopg.DataError) as caught:
        call(shared, "auth.create_user", username=username, password="Correct-Horse-42", roles=["trader"])
    tally.error(caught.value)
    assert caught.value.sqlstate == "22S09"


@pytest.mark.parametrize("key", OPAQUE_IDS, ids=range(len(OPAQUE_IDS)))
def test_a_unicode_client_order_id_and_trade_id_are_stored_byte_exact(
    shared: psycopg.Connection, tally: Tally, key: str
) -> None:
    with shared.transaction(force_rollback=True):
        order_id = place(shared, "buy", "1", "100", client_order_id=key)
        trade_id = call(
            shared,
            "trading.record_fill",
            order_id=order_id,
            exchange_trade_id=key,
            quantity=Decimal("0.5"),
            price=Decimal("100"),
        )
        stored = shared.execute(
            "select o.client_order_id, t.exchange_trade_id from trading.orders o"
            " join trading.trades t using (order_id) where t.trade_id = %s",
            [trade_id],
        ).fetchone()
        assert [value.encode() for value in stored] == [key.encode(), key.encode()]
        # the retried placement with the same id is the same order
        assert place(shared, "buy", "1", "100", client_order_id=key) == order_id
        tally.op("unicode ids")


def test_the_nfc_and_nfd_spellings_of_a_client_order_id_are_two_orders(
    shared: psycopg.Connection, tally: Tally
) -> None:
    # exchanges' ids are opaque: their bytes are the key, whatever they look like
    with shared.transaction(force_rollback=True):
        nfc = place(shared, "buy", "1", "100", client_order_id="caf\u00e9")
        nfd = place(shared, "buy", "1", "100", client_order_id="cafe\u0301")
        assert nfc != nfd
        tally.op("unicode ids", 2)


@pytest.mark.parametrize(
    "label", ["caf\u00e9", "cafe\u0301", "\u202ertl", "\U0001f680", "a\u200db", "\u05d0"]
)
def test_a_unicode_metric_label_and_alert_rule_description_are_stored_byte_exact(
    shared: psycopg.Connection, tally: Tally, label: str
) -> None:
    with shared.transaction(force_rollback=True):
        call(
            shared,
            "monitor.record_metric",
            name="hostile.value",
            value=Decimal("1"),
            labels=psycopg.types.json.Jsonb({"desk": label}),
        )
        stored = shared.execute(
            "select labels ->> 'desk' from monitor.metrics where name = 'hostile.value'"
        ).fetchone()
        assert stored[0].encode() == label.encode()
        call(shared, "monitor.add_alert_rule", **RULE, description=label)
        described = shared.execute("select description from monitor.alert_rules where name = 'nan-rule'")
        assert described.fetchone()[0].encode() == label.encode()
        tally.op("unicode labels")
