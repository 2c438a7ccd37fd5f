"""A real PgBouncer (Debian's ``pgbouncer``) on loopback in front of a test cluster.

It runs as a child process of the test, as the unprivileged user ``spreadedge`` when the tests run
as root (as the cluster does), with its config, auth file, log and unix socket in a private temp
dir; it is always stopped at the end. One server connection per database and user
(default_pool_size 1), so every client of a database shares the same server connection, as a busy
pooler's clients do, deterministically.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import free_port
from spreadedge import runas
from spreadedge.cluster import SUPERUSER, Cluster

PGBOUNCER = "/usr/sbin/pgbouncer"


@contextlib.contextmanager
def pgbouncer(cluster: Cluster, *, pool_mode: str = "transaction", pool_size: int = 1) -> Iterator[int]:
    """A PgBouncer in ``pool_mode`` in front of ``cluster`` (every database, as the superuser,
    through its socket); yields its loopback port."""
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="spreadedge-pgbouncer-"))
    try:
        home.chmod(0o700)
        (home / "userlist.txt").write_text(f'"{SUPERUSER}" ""\n')
        (home / "pgbouncer.ini").write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={cluster.socket_dir.resolve()} port={cluster.port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {port}",
                    f"unix_socket_dir = {home}",
                    "auth_type = trust",
                    f"auth_file = {home / 'userlist.txt'}",
                    f"pool_mode = {pool_mode}",
                    f"default_pool_size = {pool_size}",
                    "max_client_conn = 100",
                    f"logfile = {home / 'pgbouncer.log'}",
                    "server_check_delay = 0",
                    f"admin_users = {SUPERUSER}",
                    "",
                ]
            )
        )
        for path in (home, *home.iterdir()):
            runas.give(path)
        process = subprocess.Popen(
            runas.command([PGBOUNCER, "-q", str(home / "pgbouncer.ini")]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        try:
            _wait_ready(port, process)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with psycopg.connect(admin_url(port), autocommit=True, connect_timeout=2) as conn:
                conn.execute("show version")
            return
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pgbouncer did not start") from None
            time.sleep(0.05)


def pooled_url(port: int, dbname: str) -> str:
    """A URL of ``dbname`` through the PgBouncer on ``port`` (TCP, loopback)."""
    return make_conninfo(host="127.0.0.1", port=port, user=SUPERUSER, dbname=dbname)


def admin_url(port: int) -> str:
    """PgBouncer's own admin console (``SHOW POOLS``, ...)."""
    return make_conninfo(host="127.0.0.1", port=port, user=SUPERUSER, dbname="pgbouncer")


@pytest.fixture
def bouncer(pg_cluster: Cluster) -> Iterator[int]:
    """A PgBouncer in transaction pooling in front of the session's cluster; its port."""
    with pgbouncer(pg_cluster) as port:
        yield port


def through(port: int, url: str) -> str:
    """``url``'s database through the pooler on ``port``."""
    return pooled_url(port, conninfo_to_dict(url)["dbname"])
