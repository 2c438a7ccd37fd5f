"""Connections: DATABASE_URL wins over the embedded cluster; the actor survives a rollback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import free_port
from spreadedge import db
from spreadedge.cli import main
from spreadedge.cluster import Cluster
from spreadedge.db import DatabaseUrlError
from spreadedge.settings import Settings


def settings_for(cluster: Cluster, database_url: str | None = None) -> Settings:
    return Settings(project_dir=Path.cwd(), database_url=database_url, home=cluster.home, port=cluster.port)


def test_conninfo_is_the_embedded_cluster_url_without_database_url(pg_cluster: Cluster):
    assert db.conninfo(settings_for(pg_cluster)) == pg_cluster.url()


def test_conninfo_is_database_url_when_one_is_set(pg_cluster: Cluster):
    url = "postgresql://someone@db.example/trading"

    assert db.conninfo(settings_for(pg_cluster, url), start=False) == url


def test_connect_sets_the_actor_for_the_whole_session(pg_cluster: Cluster):
    with db.connect(settings_for(pg_cluster), actor="alice") as conn:
        conn.rollback()
        actor = conn.execute("select current_setting('spreadedge.actor')").fetchone()

    assert actor == ("alice",)


def test_a_database_url_libpq_cannot_parse_is_refused_without_its_password(pg_cluster: Cluster):
    url = "postgresq://trader:s3cret-pw@db.example/trading"

    with pytest.raises(DatabaseUrlError) as caught:
        db.conninfo(settings_for(pg_cluster, url), start=False)

    assert str(caught.value) == (
        "DATABASE_URL (or --database-url) is not a PostgreSQL connection URL "
        "(postgresql://user:password@host:port/dbname) or key=value string: "
        'missing "=" after "postgresq://trader:***@db.example/trading" in connection info string'
    )


def test_cli_reports_a_malformed_database_url_without_traceback_or_password():
    url = "postgresql://trader:s3c%zzret@db.example/trading"

    result = CliRunner().invoke(main, ["--database-url", url, "migrate", "--status"])

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert 'invalid percent-encoded token: "***"' in result.output
    assert "s3c" not in result.output


def test_cli_reports_an_unreachable_database_without_traceback_or_password():
    port = free_port()
    url = f"postgresql://trader:s3cret-pw@127.0.0.1:{port}/trading"

    result = CliRunner().invoke(main, ["--database-url", url, "migrate"])

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output.startswith(
        f'Error: connection failed: connection to server at "127.0.0.1", port {port} failed: Connection refused'
    )
    assert "s3cret" not in result.output


def test_migrate_render_only_needs_no_valid_database_url(tmp_path: Path):
    result = CliRunner().invoke(
        main, ["--database-url", "not a url", "migrate", "--render-only", str(tmp_path / "rendered")]
    )

    assert result.exit_code == 0, result.output
    assert (tmp_path / "rendered" / "0001_initial.sql").exists()


def test_psql_gets_the_password_of_database_url_in_its_environment_not_its_command_line(monkeypatch):
    started: list[tuple[list[str], dict[str, str]]] = []

    def execve(program: object, argv: list[str], env: dict[str, str] | None = None) -> None:
        started.append((argv, dict(os.environ) if env is None else env))
        raise SystemExit(0)

    for name in ("execv", "execve", "execvp", "execvpe"):  # whichever starts psql
        monkeypatch.setattr(f"spreadedge.cli.os.{name}", execve)
    url = "postgresql://trader:s3cret-pw@127.0.0.1:6543/trading"

    result = CliRunner().invoke(main, ["--database-url", url, "psql", "-c", "select 1"])

    assert result.exit_code == 0, result.output
    [(argv, env)] = started
    assert argv == ["psql", "-c", "select 1"]
    assert {name: env[name] for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD")} == {
        "PGHOST": "127.0.0.1",
        "PGPORT": "6543",
        "PGUSER": "trader",
        "PGDATABASE": "trading",
        "PGPASSWORD": "s3cret-pw",
    }


def test_psql_with_a_database_named_by_the_caller_stays_on_the_embedded_cluster(pg_cluster: Cluster):
    env = {**os.environ, "SPREADEDGE_HOME": str(pg_cluster.home), "SPREADEDGE_PORT": str(pg_cluster.port)}
    env.pop("DATABASE_URL", None)
    # where psql would otherwise go when -d replaced the connection: nowhere, never port 5432
    env.update(PGHOST="/nonexistent", PGPORT="1")
    command = "from spreadedge.cli import main; main()"
    query = "select current_database(), current_setting('port')"

    shown = subprocess.run(
        [sys.executable, "-c", command, "psql", "-d", "postgres", "-X", "-A", "-t", "-c", query],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip

    assert (shown.returncode, shown.stdout, shown.stderr) == (0, f"postgres|{pg_cluster.port}\n", "")


# bug: every other command records its actor (cli:<login name>) in the audit log; writes made in
# spreadedge psql were logged with none
def test_psql_sessions_carry_the_cli_actor_a_space_in_the_login_name_included(pg_cluster: Cluster):
    env = {**os.environ, "SPREADEDGE_HOME": str(pg_cluster.home), "SPREADEDGE_PORT": str(pg_cluster.port)}
    env.pop("DATABASE_URL", None)
    env.update(LOGNAME="desk ops", USER="desk ops", PGOPTIONS="-c work_mem=7MB")
    command = "from spreadedge.cli import main; main()"
    query = "select current_setting('spreadedge.actor') || '|' || current_setting('work_mem')"

    shown = subprocess.run(
        [sys.executable, "-c", command, "psql", "-X", "-A", "-t", "-c", query],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip

    assert (shown.returncode, shown.stdout, shown.stderr) == (0, "cli:desk ops|7MB\n", "")


def test_psql_is_refused_rather_than_given_the_ssl_key_passphrase_on_its_command_line(monkeypatch):
    started: list[list[str]] = []

    def execve(program: object, argv: list[str], env: dict[str, str] | None = None) -> None:
        started.append(argv)
        raise SystemExit(0)

    for name in ("execv", "execve", "execvp", "execvpe"):
        monkeypatch.setattr(f"spreadedge.cli.os.{name}", execve)
    url = "postgresql://trader@127.0.0.1:6543/trading?sslmode=require&sslkey=/k.pem&sslpassword=k3y-pass"

    result = CliRunner().invoke(main, ["--database-url", url, "psql"])

    # sslpassword has no libpq variable: psql got the whole URL, passphrase and all, in --dbname
    assert (result.exit_code, started) == (1, [])
    assert (
        "DATABASE_URL holds sslpassword, which psql and pgcli could only be given on their command line"
        in (result.output)
    )
    assert "k3y-pass" not in result.output
