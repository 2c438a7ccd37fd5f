"""The README followed literally by a new user, beyond what test_readme_examples.py checks: every
`spreadedge ...` command line of its code blocks, its REST API table and curl flow, its managers'
snippet on the demo day, and the settings, variables and defaults it names, read from README.md
itself so that the two cannot drift apart unnoticed."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import Iterator
from dataclasses import fields
from decimal import Decimal
from typing import Any

import click
import httpx
import psycopg
import pytest
from click.testing import CliRunner

from api_fixtures import live_server
from db_fixtures import PROJECT, janitor
from spreadedge.cli import main
from spreadedge.cluster import Cluster
from spreadedge.demo import run_demo
from spreadedge.managers import ManagerConfig
from spreadedge.settings import BackupSettings, NotifySettings, RenderSettings
from test_readme_examples import README, readme_blocks, section

PASSWORD = "Correct-Horse-9-battery"


@pytest.fixture(scope="module")
def demo_url(pg_cluster: Cluster, template_db: str) -> Iterator[str]:
    """The demo day (120 orders), as after `make run`; bcrypt at cost 4 and no role bound to 2FA,
    so that the README's users log in at test speed with a password alone."""
    with janitor(pg_cluster, "readme_walkthrough", template_db):
        url = pg_cluster.url("readme_walkthrough")
        with psycopg.connect(url, autocommit=True) as conn:
            run_demo(conn, orders=120)
            conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
        yield url


@pytest.fixture(scope="module")
def server(demo_url: str, migration_ids: list[str]) -> Iterator[str]:
    with live_server(demo_url, migration_ids) as base:
        yield base


# -- the CLI lines of the code blocks -------------------------------------------------------------


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}


def _command_lines() -> Iterator[str]:
    """Each `spreadedge ...` line of the README's code blocks (a `\\` continuation joined), and the
    CLI table's continuation lines (`| list ...`, `[--window I] ...`), without their comments."""
    for block in readme_blocks():
        for line in re.sub(r"\s*\\\n\s*", " ", block.text).splitlines():
            text = re.split(r"\s{2,}(?=\S)|\s#", line.strip(), maxsplit=1)[0]
            words = text.split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # a variable set for the command
                words.pop(0)
            if words and words[0] in ("spreadedge", ".venv/bin/spreadedge"):
                yield " ".join(words)
            elif text.startswith(("| ", "[--")):
                yield text


def cli_problems() -> list[str]:
    """What a README command line writes that the CLI does not have: a command or an option.

    A line is segments split at ` | `: the first names a command from the top (`spreadedge tune
    report`), the next ones a sibling (`apply N`), and one starting with an option (`--data-only`,
    `[--window I]`, a continuation line) goes on with the command before it."""
    problems: list[str] = []
    group: click.Group = main
    current: click.Command = main
    for line in _command_lines():
        starts = line.split()[0] in ("spreadedge", ".venv/bin/spreadedge")
        for n, segment in enumerate(re.split(r"\s+\|\s+|^\|\s+", line)):
            words = segment.split()[1:] if starts and n == 0 else segment.split()
            if words and not words[0].startswith(("-", "[")):
                base: click.Command = main if starts and n == 0 else group
                while words and isinstance(base, click.Group) and not words[0].startswith(("-", "[")):
                    names = words[0].split("|")  # `db start|stop|status`: each a command
                    if not all(name in base.commands for name in names):
                        problems.append(f"{base.name} has no command {words[0]!r}: {line}")
                        break
                    group, base = base, base.commands[names[0]]
                    words.pop(0)
                current = base
            for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", " ".join(words)):
                if option not in _options(current) | _options(main) | {"--help"}:
                    problems.append(f"{current.name} has no {option}: {line}")
    return problems


def test_every_command_and_option_a_readme_command_line_writes_exists():
    assert list(_command_lines())  # the parser still finds them
    assert cli_problems() == []


# -- the REST API -----------------------------------------------------------------------------------


def _endpoint_table() -> dict[tuple[str, str], list[str] | None]:
    """The README's endpoint table: (method, path) -> the query parameters it writes (None: it
    writes none, the line says something else)."""
    (block,) = [
        b.text for b in readme_blocks() if b.heading == "## The history REST API" and "POST /api" in b.text
    ]
    table: dict[tuple[str, str], list[str] | None] = {}
    for line in block.splitlines():
        found = re.match(r"(GET|POST)\s+(\S+)\s*(.*)", line)
        if found:
            method, path, rest = found.groups()
            query = [part.split("=")[0] for part in rest[1:].split("&")] if rest.startswith("?") else None
            table[(method.lower(), path)] = query
    return table


def test_the_rest_api_table_lists_every_endpoint_with_the_query_parameters_it_takes(server: str):
    document = httpx.get(f"{server}/openapi.json", timeout=30).json()
    served = {
        (method, path): [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    written = _endpoint_table()
    assert sorted(written) == sorted(served)
    assert {key: query or [] for key, query in written.items()} == served


def test_the_page_limit_is_what_the_readme_says(server: str):
    low, high, default = map(int, re.search(r"`limit` is (\d+) to (\d+) \(default (\d+)\)", README).groups())
    parameters = httpx.get(f"{server}/openapi.json", timeout=30).json()["paths"]["/api/v1/historical/orders"]
    [limit] = [p["schema"] for p in parameters["get"]["parameters"] if p["name"] == "limit"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (low, high, default)


def _readme_login_body() -> dict[str, str]:
    """The JSON the README's curl line posts to log in, with the password typed at the prompt."""
    (block,) = [
        b.text for b in readme_blocks() if b.heading == "## The history REST API" and "curl" in b.text
    ]
    body = re.search(r"-d '(\{[^']*\})'", block)
    assert body is not None
    return {key: PASSWORD if value == "..." else value for key, value in json.loads(body[1]).items()}


def test_the_readme_curl_flow_creates_a_user_logs_in_and_reads_orders(server: str, demo_url: str):
    created = CliRunner().invoke(
        main,
        ["--database-url", demo_url, "users", "create", "alice", "--role", "trader"],
        input=f"{PASSWORD}\n" * 2,
    )
    assert created.exit_code == 0, created.output

    login = httpx.post(f"{server}/api/v1/auth/login", json=_readme_login_body(), timeout=30)
    assert login.status_code == 200, login.text
    # the table's shape: -> {"token", "user_id", "expires_at"}
    assert sorted(login.json()) == ["expires_at", "token", "user_id"]
    orders = httpx.get(
        f"{server}/api/v1/historical/orders?symbol=BTCUSDT&limit=100",
        headers={"Authorization": f"Bearer {login.json()['token']}"},
        timeout=30,
    )
    # a trader sees only their own strategies' rows: alice has none yet
    assert (orders.status_code, orders.json()) == (200, {"items": [], "next_cursor": None})


def test_an_admin_following_the_readme_pages_the_demo_orders_and_opens_one(server: str, demo_url: str):
    with psycopg.connect(demo_url, autocommit=True) as conn:
        conn.execute(
            "select auth.create_user(username => 'root', password => %s, roles => '{admin}')", [PASSWORD]
        )
    token = httpx.post(
        f"{server}/api/v1/auth/login", json={"username": "root", "password": PASSWORD}, timeout=30
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    first = httpx.get(f"{server}/api/v1/historical/orders?limit=100", headers=headers, timeout=30).json()
    rest = httpx.get(
        f"{server}/api/v1/historical/orders",
        params={"limit": 50, "cursor": first["next_cursor"]},  # the limit may change, the cursor not
        headers=headers,
        timeout=30,
    ).json()
    ids = [item["order_id"] for item in first["items"] + rest["items"]]
    assert (len(ids), len(set(ids)), rest["next_cursor"]) == (120, 120, None)
    detail = httpx.get(f"{server}/api/v1/historical/orders/{ids[0]}", headers=headers, timeout=30)
    assert sorted(detail.json()) == ["events", "order", "trades"]


# bug: a logout of a session that was not live answered a 401 problem whose sqlstate was null,
# where a GET with the same token says 28S02 (invalid_session): a client switching on the
# problem's sqlstate, as the README's "Errors" invites, could not tell it from any other 401
def test_logout_of_a_session_already_ended_is_a_401_problem_with_sqlstate_28s02(server: str, demo_url: str):
    with psycopg.connect(demo_url, autocommit=True) as conn:
        conn.execute(
            "select auth.create_user(username => 'carol', password => %s, roles => '{viewer}')", [PASSWORD]
        )
    token = httpx.post(
        f"{server}/api/v1/auth/login", json={"username": "carol", "password": PASSWORD}, timeout=30
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{server}/api/v1/auth/logout", headers=headers, timeout=30).status_code == 204

    again = httpx.post(f"{server}/api/v1/auth/logout", headers=headers, timeout=30)
    read = httpx.get(f"{server}/api/v1/historical/orders", headers=headers, timeout=30)

    assert (again.status_code, again.headers["content-type"]) == (401, "application/problem+json")
    assert (again.json()["sqlstate"], read.json()["sqlstate"]) == ("28S02", "28S02")


# -- the managers' snippet ----------------------------------------------------------------------------


def test_the_managers_snippet_runs_as_written_on_the_demo_day(demo_url: str, monkeypatch):
    (snippet,) = [
        b.text for b in readme_blocks() if b.lang == "python" and b.heading == "## The Python managers"
    ]
    # as its comment says: the strategy must exist, made with spreadedge psql
    with psycopg.connect(demo_url, autocommit=True) as conn:
        conn.execute("select trading.create_strategy(name => 'arb')")
    monkeypatch.setenv("DATABASE_URL", demo_url)  # database_url=None: DATABASE_URL
    # the snippet's awaits run in one coroutine, which closes its managers' pools in its own loop
    ending = "for manager in (orders, positions, get_database_manager(config)):\n    await manager.close()"
    names: dict[str, Any] = {}
    body = textwrap.indent(f"{snippet}\n{ending}\nreturn locals()", "    ")
    exec(f"async def snippet():\n{body}", names)

    done = asyncio.run(names["snippet"]())

    assert (done["order"].status, done["order"].quantity) == ("new", Decimal("0.5"))
    assert [o.order_id for o in done["working"] if o.strategy == "arb"] == []  # the fill completed it
    assert done["entry"].order_type == "market"
    assert [(p.strategy, p.symbol, str(p.quantity)) for p in done["open_now"] if p.strategy == "arb"] == [
        ("arb", "BTCUSDT", "0.5")
    ]
    assert [(str(row.trades), str(row.fees)) for row in done["pnl"]] == [("1", "0.03")]
    assert done["report"].healthy, done["report"].checks


def test_the_manager_defaults_are_the_ones_the_readme_names():
    (snippet,) = [
        b.text for b in readme_blocks() if b.lang == "python" and b.heading == "## The Python managers"
    ]
    written = dict(re.findall(r"\b(timeout|health_timeout|call_timeout)=([\d.]+)", snippet))
    config = ManagerConfig()
    assert {name: float(value) for name, value in written.items()} == {
        "timeout": config.timeout,
        "health_timeout": config.health_timeout,
        "call_timeout": config.call_timeout,
    }


# -- settings and variables -------------------------------------------------------------------------


def test_every_render_and_backup_setting_the_readme_names_is_one():
    text = section("## Settings and migrations")
    render = re.search(r"\(`\[render\]`: (.*?)\), where notifications go", text, re.S)
    backup = re.search(r"`\[backup\]` \((.*?);", text, re.S)
    assert render is not None and backup is not None
    named_render = set(re.findall(r"`([a-z]+_[a-z_]+)`", render[1]))
    named_backup = set(re.findall(r"`([a-z_]+)`", backup[1]))
    assert named_render == {f.name for f in fields(RenderSettings)}
    assert named_backup == {f.name for f in fields(BackupSettings)}


def test_every_notify_setting_the_readme_names_is_one():
    text = section("## Monitoring, alerts, notifications and risk limits")
    named = set(
        re.findall(r"`((?:smtp|email|webhook|slack|discord)_[a-z_]+|[a-z_]+_(?:seconds|attempts))`", text)
    )
    assert named and named <= {f.name for f in fields(NotifySettings)}


def test_every_spreadedge_variable_the_readme_names_is_read_by_the_code():
    derived = {f"SPREADEDGE_{f.name.upper()}" for f in fields(RenderSettings) + fields(NotifySettings)}
    derived |= {f"SPREADEDGE_BACKUP_{f.name.upper()}" for f in fields(BackupSettings)}
    code = "\n".join(
        path.read_text(encoding="utf-8")
        for pattern in ("python/**/*.py", "tests/*.py", "Makefile")
        for path in PROJECT.glob(pattern)
        if path.name != "test_readme_walkthrough_hunt.py"
    )
    named = set(re.findall(r"\bSPREADEDGE_[A-Z_]*[A-Z]\b", README))
    assert named
    assert sorted(name for name in named if name not in derived and name not in code) == []


# -- defaults the README states ------------------------------------------------------------------------


def _default(*path: str, option: str) -> Any:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    [param] = [p for p in command.params if option in getattr(p, "opts", [])]
    return param.default


def test_the_cli_defaults_the_readme_states_are_the_clis():
    host, port = re.search(r"serves the seeds' history endpoints on ([\d.]+):(\d+)", README).groups()
    timeout = re.search(r"after\s+`--statement-timeout` seconds \(default (\d+)", README)[1]
    batch = re.search(r"\(`--batch-rows`, ([\d,]+)\)", README)[1]
    orders = re.search(r"exactly --orders orders\s+\(([\d,]+) by default\)", README)[1]
    assert (
        _default("serve", option="--host"),
        _default("serve", option="--port"),
        _default("serve", option="--statement-timeout"),
        _default("ingest", option="--batch-rows"),
        _default("demo", option="--orders"),
    ) == (host, int(port), float(timeout), int(batch.replace(",", "")), int(orders.replace(",", "")))
