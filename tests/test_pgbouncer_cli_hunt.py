"""The CLI, SecuritySystem, migrate, ingest and the notify worker behind a real PgBouncer (1.18) in
transaction pooling.

With default_pool_size 1 (pgbouncer_helpers) every client of a database shares one server
connection, as a busy pooler's do: what one client leaves in its session, the next one finds.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from market_helpers import DAY, TICKS_HEADER
from notify_servers import HttpReceiver, slack_worker
from pgbouncer_helpers import admin_url, through
from spreadedge import db
from spreadedge.cli import main
from spreadedge.migrate import MigrationError, migrate
from spreadedge.notify.worker import PooledUrlError
from spreadedge.security import SecuritySystem
from spreadedge.settings import Settings

# what a client of the pooler finds in its session: no actor, no max_quote_age, the server's
# IntervalStyle and isolation level
CLEAN_SESSION = (None, None, "postgres", "read committed")
SESSION = (
    "select nullif(current_setting('spreadedge.actor', true), ''),"
    " nullif(current_setting('spreadedge.max_quote_age', true), ''),"
    " current_setting('IntervalStyle'), current_setting('default_transaction_isolation')"
)
HINT = "use the database server's own URL for it, not the pooler's"


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False)


def with_server_defaults(url: str) -> None:
    """Give the database an IntervalStyle and an isolation level other than the CLI's pins."""
    name = sql.Identifier(conninfo_to_dict(url)["dbname"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("alter database {} set intervalstyle = 'iso_8601'").format(name))
        conn.execute(
            sql.SQL("alter database {} set default_transaction_isolation = 'repeatable read'").format(name)
        )


def look(url: str) -> tuple[object, ...]:
    """What another client of the pooler finds in its session."""
    with psycopg.connect(url, autocommit=True) as other:
        row = other.execute(SESSION).fetchone()
    assert row is not None
    return tuple(row)


SERVER_DEFAULTS = (None, None, "iso_8601", "repeatable read")


def test_cli_command_leaves_its_actor_and_settings_to_no_other_client_of_the_pooler(
    bouncer: int, seeded_url: str
) -> None:
    with_server_defaults(seeded_url)
    url = through(bouncer, seeded_url)
    result = invoke(url, "risk", "kill", "alpha", "--reason", "pooler")
    assert result.exit_code == 0, result.output
    assert look(url) == SERVER_DEFAULTS


def test_cli_command_through_the_pooler_is_audited_as_the_operator(bouncer: int, seeded_url: str) -> None:
    url = through(bouncer, seeded_url)
    result = invoke(url, "risk", "kill", "alpha")
    assert result.exit_code == 0, result.output
    with psycopg.connect(seeded_url, autocommit=True) as direct:
        actors = direct.execute(
            "select distinct actor from audit.log where table_name = 'monitor.risk_limits'"
        ).fetchall()
    assert actors == [(db.cli_actor(),)]


def test_cli_connection_keeps_its_actor_and_settings_on_a_new_server_connection(
    bouncer: int, seeded_url: str, project_settings: Settings
) -> None:
    # the pooler's server connections are closed (RECONNECT; server_lifetime does the same): the
    # command's next statement runs on a new one, which its connect never set up
    with_server_defaults(seeded_url)
    settings = replace(project_settings, database_url=through(bouncer, seeded_url))
    with db.connect(settings, actor="cli:alice", autocommit=True) as conn:
        with psycopg.connect(admin_url(bouncer), autocommit=True) as admin:
            admin.execute("reconnect")
        row = conn.execute(
            "select current_setting('spreadedge.actor'), current_setting('IntervalStyle'),"
            " current_setting('transaction_isolation')"
        ).fetchone()
    assert row == ("cli:alice", "postgres", "read committed")


def test_cli_transaction_keeps_its_actor_on_a_new_server_connection(
    bouncer: int, seeded_url: str, project_settings: Settings
) -> None:
    settings = replace(project_settings, database_url=through(bouncer, seeded_url))
    with db.connect(settings, actor="cli:alice", autocommit=True) as conn:
        with psycopg.connect(admin_url(bouncer), autocommit=True) as admin:
            admin.execute("reconnect")
        with conn.transaction():
            conn.execute("select monitor.set_kill_switch(strategy => 'alpha', enabled => true)")
    with psycopg.connect(seeded_url, autocommit=True) as direct:
        actors = direct.execute(
            "select distinct actor from audit.log where table_name = 'monitor.risk_limits'"
        ).fetchall()
    assert actors == [("cli:alice",)]


def test_spreads_max_age_is_left_to_no_other_client_of_the_pooler(bouncer: int, seeded_url: str) -> None:
    with_server_defaults(seeded_url)
    url = through(bouncer, seeded_url)
    result = invoke(url, "spreads", "--max-age", "5 minutes")
    assert result.exit_code == 0, result.output
    assert look(url) == SERVER_DEFAULTS


def test_security_system_leaves_its_actor_to_no_other_client_of_the_pooler(bouncer: int, db_url: str) -> None:
    with_server_defaults(db_url)
    url = through(bouncer, db_url)
    assert asyncio.run(SecuritySystem(url, actor="gateway").logout("no such token")) is False
    assert look(url) == SERVER_DEFAULTS


def test_migrate_through_the_pooler_refuses_and_holds_no_lock(
    bouncer: int, db_url: str, project_settings: Settings
) -> None:
    with pytest.raises(MigrationError) as refused:
        migrate(through(bouncer, db_url), project_settings, echo=lambda line: None)
    assert "transaction pooling" in str(refused.value)
    assert HINT in str(refused.value)
    with psycopg.connect(db_url, autocommit=True) as direct:
        locks = direct.execute("select count(*) from pg_locks where locktype = 'advisory'").fetchone()
    assert locks == (0,)


def test_ingest_through_the_pooler_refuses_and_loads_nothing(
    bouncer: int, seeded_url: str, tmp_path: Path
) -> None:
    ticks = tmp_path / "ticks.csv"
    ticks.write_text(TICKS_HEADER + f"binance,BTCUSDT,{DAY}T12:00:00Z,t1,60000,0.5,buy\n")
    result = invoke(through(bouncer, seeded_url), "ingest", "ticks", str(ticks))
    assert result.exit_code == 1
    assert "transaction pooling" in result.output
    assert HINT in result.output
    with psycopg.connect(seeded_url, autocommit=True) as direct:
        assert direct.execute("select count(*) from market.ticks").fetchone() == (0,)


def test_notify_worker_through_the_pooler_refuses_and_leaves_no_settings(
    bouncer: int, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    # what it did: LISTEN never woke it (a message went out at the next poll, up to --poll), and
    # its statement_timeout of 10 s was every other client's of the pooler
    url = through(bouncer, seeded_url)
    worker = slack_worker(url, http_receiver)
    with pytest.raises(PooledUrlError) as refused:
        worker.run(threading.Event(), poll_seconds=1)
    worker.close()
    assert "LISTEN" in str(refused.value)
    assert HINT in str(refused.value)
    with psycopg.connect(url, autocommit=True) as other:
        timeout = other.execute("select current_setting('statement_timeout')").fetchone()
    assert timeout == ("0",)
