"""What an operator meets at the edges of the CLI: serve's address and project, server conditions."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from click.testing import CliRunner

from packaging_helpers import without_code_sql
from spreadedge.cli import main
from spreadedge.cluster import Cluster

PROJECT = Path(__file__).resolve().parent.parent
# never connected to: serve only hands it to the API, which the refused commands never start
UNUSED_URL = "postgresql://nobody@127.0.0.1:1/nothing"


def with_options(url: str, options: str) -> str:
    """``url`` with libpq's ``options`` (server settings for the session) added."""
    return f"{url}&options={quote(options)}"


def test_serve_on_a_port_in_use_exits_1_naming_the_port(busy_port: int):
    env = {"SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": UNUSED_URL}

    result = CliRunner().invoke(main, ["serve", "--port", str(busy_port)], env=env)

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output == (
        f"Error: cannot listen on 127.0.0.1 port {busy_port}: Address already in use; "
        "choose another with --port (or SPREADEDGE_API_PORT)\n"
    )


def test_serve_on_a_host_that_does_not_resolve_exits_1_naming_the_host():
    env = {"SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": UNUSED_URL}

    result = CliRunner().invoke(main, ["serve", "--host", "no-such-host.invalid"], env=env)

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output.startswith("Error: cannot listen on 'no-such-host.invalid': ")
    assert result.output.endswith(" (see --host)\n")


def test_serve_without_any_sql_is_refused_naming_the_directory(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
):
    # the busy port: without the check, serve would fail there rather than serve forever; outside
    # the project the code's own SQL is used, so only a spreadedge that carries none is refused
    migrations = without_code_sql(monkeypatch, tmp_path / "code")
    env = {"SPREADEDGE_PROJECT_DIR": str(tmp_path), "DATABASE_URL": UNUSED_URL}

    result = CliRunner().invoke(main, ["serve", "--port", str(busy_port)], env=env)

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output == (
        f"Error: {migrations} is not a directory: run spreadedge from the project "
        "directory (the one with migrations/ and functions/) or set SPREADEDGE_PROJECT_DIR\n"
    )


def test_a_statement_timeout_is_a_message_not_a_traceback(db_url: str, db: psycopg.Connection):
    url = with_options(db_url, "-c statement_timeout=100")
    with psycopg.connect(db_url) as holder:
        # the demo's lock: the demo waits for it until its statement_timeout cancels the wait
        holder.execute("select pg_advisory_xact_lock(hashtext('spreadedge.demo'))")

        result = CliRunner().invoke(main, ["--database-url", url, "demo", "--orders", "10"])

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output.endswith("\nError: canceling statement due to statement timeout\n")


def test_a_write_to_a_read_only_database_is_a_message_with_a_hint(db_url: str, db: psycopg.Connection):
    url = with_options(db_url, "-c default_transaction_read_only=on")

    result = CliRunner().invoke(main, ["--database-url", url, "demo", "--orders", "10"])

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output.splitlines()[-2:] == [
        "Error: cannot execute INSERT in a read-only transaction",
        "hint: this database is read-only (a standby, or default_transaction_read_only is on): "
        "connect to the primary",
    ]
    assert db.execute("select count(*) from trading.orders").fetchone() == (0,)


def test_a_cluster_created_again_gets_a_password_that_works_over_tcp(make_cluster: Callable[..., Cluster]):
    cluster = make_cluster()
    cluster.start()
    cluster.stop()
    # the data directory gone (deleted by hand, or /var/lib/spreadedge wiped), the home's password kept
    shutil.rmtree(cluster.data_dir.resolve())

    cluster.start()

    password = (cluster.home / "password").read_text().strip()
    tcp = {"host": "127.0.0.1", "port": cluster.port, "user": "spreadedge", "dbname": "spreadedge"}
    with psycopg.connect(**tcp, password=password) as conn:
        assert conn.execute("select current_user").fetchone() == ("spreadedge",)


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql://trader:s3cr%21t@db.example:5433/trading",
        "host=db.example port=5433 user=trader password='s3cr!t x' dbname=trading",
    ],
    ids=["url", "key-value"],
)
def test_db_url_never_prints_the_password_of_database_url(database_url: str):
    result = CliRunner().invoke(main, ["db", "url"], env={"DATABASE_URL": database_url})

    assert result.exit_code == 0, result.output
    assert result.output == database_url.replace("s3cr%21t", "***").replace("'s3cr!t x'", "***") + "\n"
