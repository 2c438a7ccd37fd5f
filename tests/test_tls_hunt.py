"""spreadedge against a PostgreSQL server that requires TLS (verify-full, client certificates), as
managed services do: every path that connects honours the URL's TLS settings, keeps the SSL key's
passphrase off command lines, and refuses what the clients it runs cannot honour."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import httpx
import psycopg
import pytest

from conftest import free_port
from ops_helpers import cli
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from tls_helpers import CERT_ROLE, TEMPLATE, TlsServer, make_certificates, require_tls

PROJECT = Path(__file__).resolve().parent.parent
PASSPHRASE = "k3y-Pass phrase"
_names = count(1)


@pytest.fixture(scope="module")
def tls(
    make_cluster: Callable[..., Cluster], project_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsServer]:
    """A cluster of this module's own that requires TLS over TCP, with a migrated template; the
    client's files (``ca.crt``, ``client.*``, ``client_encrypted.key``) in ``certs``."""
    cluster = make_cluster()
    cluster.start()
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f"create database {TEMPLATE}")
    migrate(cluster.url(TEMPLATE), project_settings, echo=lambda line: None)
    certs = tmp_path_factory.mktemp("certs")
    make_certificates(certs)
    subprocess.run(
        ["openssl", "pkey", "-in", "client.key", "-aes256", "-passout", f"pass:{PASSPHRASE}",
         "-out", "client_encrypted.key"],
        cwd=certs, check=True, capture_output=True,
    )  # fmt: skip
    (certs / "client_encrypted.key").chmod(0o600)
    server = require_tls(cluster, certs)
    try:
        yield server
    finally:
        cluster.stop()


@pytest.fixture
def dbname(tls: TlsServer) -> str:
    """A fresh migrated database of the TLS cluster."""
    name = f"tls_{next(_names)}"
    tls.clone(name)
    return name


def run(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``spreadedge ARGS`` in a process of its own (psql replaces its process)."""
    return subprocess.run(
        [sys.executable, "-c", "from spreadedge.cli import main; main()", *args],
        env={**os.environ, **_cli_env(database_url), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _cli_env(database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SPREADEDGE_PROJECT_DIR": str(PROJECT),
        "PYTHONPATH": os.pathsep.join([str(PROJECT / "python"), str(PROJECT)]),
    }


def command_lines_of(process: subprocess.Popen[str], program: str) -> list[str]:
    """The command lines of ``program`` seen among ``process``'s descendants while it runs."""
    seen: set[str] = set()
    while process.poll() is None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if Path(line.split(" ", 1)[0]).name == program:
                seen.add(line)
        time.sleep(0.005)
    return sorted(seen)


def test_cli_commands_connect_with_verify_full_to_a_server_that_rejects_plain_tcp(
    tls: TlsServer, dbname: str
) -> None:
    url = tls.url(dbname)
    for args in (
        ["migrate", "--status"],
        ["pnl"],
        ["risk", "show"],
        ["users", "list"],
        ["metrics", "collect"],
    ):
        result = cli(*args, database_url=url)
        assert result.exit_code == 0, (args, result.output)
    with psycopg.connect(url) as conn:
        assert conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone() == (True,)


def test_a_url_without_tls_is_rejected_by_the_server_without_showing_the_password(
    tls: TlsServer, dbname: str
) -> None:
    result = cli("pnl", database_url=tls.url(dbname, sslmode="disable"))
    assert result.exit_code == 1
    assert "no encryption" in result.output
    assert tls.password not in result.output


def test_a_certificate_of_another_ca_fails_verify_full_clearly(tls: TlsServer, dbname: str) -> None:
    result = cli("pnl", database_url=tls.url(dbname, sslrootcert=str(tls.certs / "server.crt")))
    assert result.exit_code == 1
    assert "certificate verify failed" in result.output
    assert tls.password not in result.output


def test_a_world_readable_client_key_is_refused_naming_the_file_and_the_mode(
    tls: TlsServer, dbname: str
) -> None:
    key = tls.certs / "client_world.key"
    key.write_bytes((tls.certs / "client.key").read_bytes())
    key.chmod(0o644)
    result = cli("pnl", database_url=tls.cert_url(dbname, sslkey=str(key)))
    assert result.exit_code == 1
    assert f'private key file "{key}" has group or world access' in result.output


def test_psql_connects_with_the_urls_client_certificate(tls: TlsServer, dbname: str) -> None:
    query = "select ssl, client_dn from pg_stat_ssl where pid = pg_backend_pid()"
    result = run("psql", "-Atc", query, database_url=tls.cert_url(dbname))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"t|/CN={CERT_ROLE}\n"


def test_psql_refuses_require_auth_which_its_libpq_would_ignore(tls: TlsServer, dbname: str) -> None:
    # require_auth=password forbids the SCRAM exchange the server asks for: every other command
    # refuses to connect, and psql (libpq 15) connected regardless
    url = tls.url(dbname, require_auth="password")
    assert cli("pnl", database_url=url).exit_code == 1
    result = run("psql", "-Atc", "select 'connected'", database_url=url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "DATABASE_URL sets require_auth, which psql cannot honour" in result.stderr


def test_psql_refuses_sslcertmode_which_its_libpq_would_ignore(tls: TlsServer, dbname: str) -> None:
    result = run("psql", "-Atc", "select 'connected'", database_url=tls.url(dbname, sslcertmode="require"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "DATABASE_URL sets sslcertmode, which psql cannot honour" in result.stderr


def test_backup_logical_refuses_sslrootcert_system_naming_a_ca_file_instead(
    tls: TlsServer, dbname: str, tmp_path: Path
) -> None:
    # the system's trusted roots are the test CA here (OpenSSL reads SSL_CERT_FILE)
    url = tls.url(dbname, sslrootcert="system")
    assert cli("pnl", database_url=url, env={"SSL_CERT_FILE": str(tls.ca)}).exit_code == 0
    result = cli(
        "backup", "logical", "--out", str(tmp_path), database_url=url, env={"SSL_CERT_FILE": str(tls.ca)}
    )
    assert result.exit_code == 1
    assert "DATABASE_URL sets sslrootcert=system, which pg_dump cannot honour" in result.output
    assert "sslrootcert=/etc/ssl/certs/ca-certificates.crt" in result.output


def test_backup_logical_keeps_the_ssl_key_passphrase_off_pg_dumps_command_line(
    tls: TlsServer, dbname: str, tmp_path: Path
) -> None:
    url = tls.cert_url(dbname, sslkey=str(tls.certs / "client_encrypted.key"), sslpassword=PASSPHRASE)
    backup = subprocess.Popen(
        [sys.executable, "-c", "from spreadedge.cli import main; main()", "backup", "logical",
         "--out", str(tmp_path)],
        env={**os.environ, **_cli_env(url)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    lines = command_lines_of(backup, "pg_dump")
    output = backup.communicate(timeout=60)[0]
    assert backup.returncode == 0, output
    assert lines, "pg_dump was never seen running"
    # (the lines themselves are not shown: they would show the passphrase)
    assert not [line for line in lines if PASSPHRASE in line or "sslpassword" in line]
    assert len(list(tmp_path.glob(f"{dbname}-full-*.dump*"))) == 1


def test_restore_logical_keeps_the_ssl_key_passphrase_off_pg_restores_command_line(
    tls: TlsServer, dbname: str, tmp_path: Path
) -> None:
    url = tls.cert_url(dbname, sslkey=str(tls.certs / "client_encrypted.key"), sslpassword=PASSPHRASE)
    assert cli("backup", "logical", "--out", str(tmp_path), database_url=url).exit_code == 0
    (dump,) = tmp_path.glob(f"{dbname}-full-*.dump*")
    restore = subprocess.Popen(
        [sys.executable, "-c", "from spreadedge.cli import main; main()", "restore", "logical",
         "--to-database", f"{dbname}_restored", str(dump)],
        env={**os.environ, **_cli_env(url)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    lines = command_lines_of(restore, "pg_restore")
    output = restore.communicate(timeout=60)[0]
    assert restore.returncode == 0, output
    assert any("--use-list" in line for line in lines), "pg_restore was never seen restoring"
    assert not [line for line in lines if PASSPHRASE in line or "sslpassword" in line]
    with psycopg.connect(tls.cluster.conninfo(f"{dbname}_restored")) as conn:
        assert conn.execute("select to_regclass('trading.trades') is not null").fetchone() == (True,)


def test_serve_answers_health_over_a_pool_with_client_certificates(tls: TlsServer, dbname: str) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from spreadedge.cli import main; main()", "serve", "--port", str(port)],
        env={**os.environ, **_cli_env(tls.cert_url(dbname))},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/historical/health", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("serve never answered")
        assert response.status_code == 200, response.text
        assert response.json()["checks"][0] == {"name": "database", "ok": True, "detail": "reachable"}
    finally:
        server.terminate()
        server.wait(timeout=30)
