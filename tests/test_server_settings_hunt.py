"""spreadedge on an operator's own server whose settings differ from PostgreSQL's defaults
(``ALTER DATABASE … SET``, ``ALTER ROLE … SET``, postgresql.conf): DateStyle, IntervalStyle,
default_transaction_isolation, search_path and standard_conforming_strings.

Every client connection pins the settings its code is written for (deadline.SESSION_SETTINGS),
migrate works in public, and the stored functions read the same whatever standard_conforming_strings
their caller's session has. TimeZone is tests/test_session_time_zone_hunt.py's, and
default_transaction_read_only tests/test_read_only_database_hunt.py's.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from api_fixtures import api_login, live_server
from auth_helpers import make_user
from db_fixtures import PROJECT, janitor
from ops_helpers import cli
from spreadedge.cluster import Cluster
from spreadedge.managers import ManagerConfig, OrderRequest, PersistentOrderManager
from spreadedge.migrate import migrate, render_migrations
from spreadedge.settings import Settings
from trading_helpers import call, fill, place, position

# A quoted literal, with the E of an escape string before it when there is one.
_LITERAL = re.compile(r"(\b[Ee])?'((?:[^']|'')*)'")


def alter_database(url: str, name: str, value: str) -> None:
    """``ALTER DATABASE <the url's database> SET name = value``: new sessions get it."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("alter database {} set {} = {}").format(
                sql.Identifier(dbname), sql.Identifier(name), sql.Literal(value)
            )
        )


# -- DateStyle and IntervalStyle: psycopg reads only ISO times and postgres-style intervals ---------


# bug: under a database DateStyle other than ISO, every command that read a time ended in a
# traceback: NotImplementedError: can't parse timestamptz with DateStyle 'German, DMY' (spreads,
# metrics show, partitions status and maintain, cleanup, migrate and migrate --status)
@pytest.mark.parametrize("date_style", ["German", "SQL, DMY", "Postgres, MDY"])
def test_migrate_status_reads_its_times_under_a_database_date_style_that_is_not_iso(
    db_url: str, project_settings: Settings, date_style: str
) -> None:
    alter_database(db_url, "DateStyle", date_style)

    result = cli("migrate", "--status", database_url=db_url)

    assert result.exit_code == 0, result.output
    count = len(render_migrations(project_settings))
    assert result.output.splitlines()[-1] == f"{count} applied, 0 pending"


# bug: the managers' placement failed after it committed, reading the order back:
# NotImplementedError: can't parse timestamptz with DateStyle 'German, DMY'
def test_a_manager_places_an_order_under_a_database_date_style_of_german(
    seeded: psycopg.Connection, seeded_url: str, project_settings: Settings
) -> None:
    alter_database(seeded_url, "DateStyle", "German")
    config = ManagerConfig(database_url=seeded_url, actor="test-manager", settings=project_settings)

    async def run():
        async with PersistentOrderManager(config) as manager:
            return await manager.place_order(
                OrderRequest("alpha", "binance", "BTCUSDT", "buy", Decimal("0.5"), Decimal("60000"))
            )

    order = asyncio.run(run())

    [created_at] = seeded.execute(
        "select created_at from trading.orders where order_id = %s", [order.order_id]
    ).fetchone()
    assert (order.status, order.created_at) == ("new", created_at)
    assert order.created_at.utcoffset() is not None and order.created_at.tzinfo == UTC


# bug: the API answered a correct login 500 (internal error): reading the session's expires_at
# raised NotImplementedError under the database's DateStyle 'SQL, DMY'
def test_an_api_login_succeeds_under_a_database_date_style_of_sql_dmy(
    auth_db: psycopg.Connection, db_url: str, project_settings: Settings
) -> None:
    make_user(auth_db, "alice", "trader")
    alter_database(db_url, "DateStyle", "SQL, DMY")

    with live_server(db_url, [m.id for m in render_migrations(project_settings)]) as base:
        response = api_login(base, "alice")

    assert response.status_code == 200, response.text
    [expires_at] = auth_db.execute("select expires_at from auth.sessions").fetchone()
    assert datetime.fromisoformat(response.json()["expires_at"]) == expires_at


# bug: health's text showed intervals in the database's IntervalStyle: "no transaction open longer
# than PT15M" under iso_8601, "@ 15 mins" under postgres_verbose, where the README shows 00:15:00
@pytest.mark.parametrize("interval_style", ["iso_8601", "sql_standard", "postgres_verbose"])
def test_health_shows_its_limits_in_one_style_whatever_the_database_interval_style(
    db_url: str, interval_style: str
) -> None:
    alter_database(db_url, "IntervalStyle", interval_style)

    result = cli("health", "--json", database_url=db_url)

    checks = {check["name"]: check for check in json.loads(result.output)["checks"]}
    assert checks["long_transactions"]["detail"] == "no transaction open longer than 00:15:00"


# -- default_transaction_isolation: the stored functions are written for READ COMMITTED --------------


# bug: under a database default of serializable, a fill through the managers that waited for
# another fill of the same position (the same strategy and instrument) failed when that one
# committed: "could not serialize access due to concurrent update" (40001), a fill lost
def test_a_manager_fill_that_waits_for_another_fill_of_its_position_is_recorded_under_serializable(
    seeded: psycopg.Connection, seeded_url: str, project_settings: Settings
) -> None:
    first, second = place(seeded, "buy", "0.1", "60000"), place(seeded, "buy", "0.2", "60000")
    alter_database(seeded_url, "default_transaction_isolation", "serializable")
    config = ManagerConfig(database_url=seeded_url, actor="test-manager", settings=project_settings)

    async def second_fill() -> int:
        async with PersistentOrderManager(config) as manager:
            return await manager.record_fill(second, "m-2", Decimal("0.2"), Decimal("60000"))

    with psycopg.connect(seeded_url) as holder, ThreadPoolExecutor(1) as pool:
        holder.execute("set transaction isolation level read committed")
        fill(holder, first, "0.1", "60000", exchange_trade_id="h-1")
        running = pool.submit(asyncio.run, second_fill())
        assert _a_session_waits_for_a_lock(seeded, running.done)
        holder.commit()
        trade_id = running.result(timeout=60)

    assert trade_id > 0
    assert position(seeded, "alpha", "binance", "BTCUSDT")["quantity"] == Decimal("0.3")


def _a_session_waits_for_a_lock(monitor: psycopg.Connection, ended: Callable[[], bool]) -> bool:
    """Whether another session of the database comes to wait for a lock within 30 s."""
    for _ in range(300):
        if monitor.execute(
            "select exists (select from pg_stat_activity where datname = current_database()"
            " and wait_event_type = 'Lock')"
        ).fetchone()[0]:
            return True
        if ended():
            return False
        time.sleep(0.1)
    return False


# -- search_path: migrate keeps its bookkeeping and the extensions in public ------------------------


@pytest.fixture
def bare_database(pg_cluster: Cluster) -> Iterator[str]:
    """The URL of a new, empty database (not migrated), dropped after the test."""
    name = "bare_search_path"
    with janitor(pg_cluster, name):
        yield pg_cluster.url(name)


# bug: under a role or database search_path with another schema first, migrate created yoyo's
# tables (and pgcrypto, pg_stat_statements and hypopg) in that schema, and failed: on yoyo_lock
# ("relation "yoyo_lock" does not exist", 42P01), or, every migration committed, on functions/
# ("function public.pg_stat_statements(boolean) does not exist", 42883), the database half migrated
def test_migrate_creates_the_extensions_and_its_bookkeeping_in_public_under_a_search_path_of_another_schema(
    bare_database: str, project_settings: Settings
) -> None:
    with psycopg.connect(bare_database, autocommit=True) as conn:
        conn.execute("create schema app")
    alter_database(bare_database, "search_path", "app, public")

    migrate(bare_database, project_settings, echo=lambda line: None)

    with psycopg.connect(bare_database, autocommit=True) as conn:
        extensions = conn.execute(
            "select e.extname, n.nspname from pg_catalog.pg_extension e"
            " join pg_catalog.pg_namespace n on n.oid = e.extnamespace"
            " where e.extname in ('pgcrypto', 'pg_stat_statements', 'hypopg') order by 1"
        ).fetchall()
        in_app = conn.execute(
            "select count(*) from pg_catalog.pg_class where relnamespace = 'app'::regnamespace"
        ).fetchone()[0]
    assert extensions == [("hypopg", "public"), ("pg_stat_statements", "public"), ("pgcrypto", "public")]
    assert in_app == 0


# -- standard_conforming_strings: a backslash in a function's literal means itself either way ---------


def nonstandard_strings(conn: psycopg.Connection) -> None:
    """The session reads '\\' in a quoted literal as an escape (a legacy application's setting)."""
    conn.execute("set escape_string_warning = off")
    conn.execute("set standard_conforming_strings = off")


# bug: with standard_conforming_strings off in the caller's session (a database's, or a legacy
# application's setting), trading.create_strategy failed for every name: its check of control
# characters read '[\x01-\x1f\x7f-\x9f]' as raw bytes, "invalid byte sequence for encoding UTF8:
# 0x9f" (22021)
def test_create_strategy_works_in_a_session_with_standard_conforming_strings_off(
    db: psycopg.Connection,
) -> None:
    nonstandard_strings(db)

    strategy_id = call(db, "trading.create_strategy", name="gamma")

    assert db.execute(
        "select name from trading.strategies where strategy_id = %s", [strategy_id]
    ).fetchone() == ("gamma",)


# bug: with standard_conforming_strings off, the loaders' parsers read '\.' as "any character": a
# time "2024-01-31 10:00:00x123Z" or a number "1x5" raised (22023, 22P02) and failed the whole
# batch, where they are a rejected row (null)
@pytest.mark.parametrize(
    ("parser", "text"),
    [("internal.parse_time", "2024-01-31 10:00:00x123Z"), ("internal.parse_decimal", "1x5")],
)
def test_a_malformed_field_is_null_in_a_session_with_standard_conforming_strings_off(
    db: psycopg.Connection, parser: str, text: str
) -> None:
    nonstandard_strings(db)

    value = db.execute(sql.SQL("select {}(%s)").format(sql.SQL(parser)), [text]).fetchone()[0]

    assert value is None


# The guard of the fixes above: a function's body is parsed in its caller's session, so a literal
# of functions/ with a backslash must be an escape string (E'\\d'), which reads the same whatever
# standard_conforming_strings says.
def test_no_literal_of_functions_holds_a_backslash_outside_an_escape_string() -> None:
    found = []
    for path in sorted(Path(PROJECT, "functions").glob("*.sql*")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = "" if line.lstrip().startswith("--") else line.split("--", 1)[0]
            found += [
                f"{path.name}:{number}: {match.group(0)[:60]}"
                for match in _LITERAL.finditer(code)
                if match.group(1) is None and "\\" in match.group(2)
            ]

    assert found == []
