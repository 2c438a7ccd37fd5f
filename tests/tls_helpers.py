"""A test cluster that requires TLS, as managed services do: a throwaway CA, a server certificate
for localhost and 127.0.0.1, a client certificate, and a pg_hba.conf that rejects TCP without TLS.

The private socket stays ``trust`` (the fixtures migrate and clone through it); over TCP:

- role ``tls_cert`` (a superuser): TLS and a client certificate whose CN is the role (``cert``);
- every other role: TLS and its password (``scram-sha-256``);
- anything without TLS: rejected.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql

from spreadedge import runas
from spreadedge.cluster import SUPERUSER, Cluster

# The migrated database the tests' databases are cloned from (not ``spreadedge``: pg_cron's
# launcher stays connected to that one, and a template must have no session).
TEMPLATE = "tls_template"
# The role that logs in with a client certificate (CN=tls_cert) and no password.
CERT_ROLE = "tls_cert"
HBA = f"""\
local all all trust
hostssl all {CERT_ROLE} 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 scram-sha-256
hostnossl all all 0.0.0.0/0 reject
"""
SSL_SETTINGS = """
# tls_helpers.py: TLS on, client certificates checked against the throwaway CA
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = 'ca.crt'
"""


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, text=True)


def _certificate(directory: Path, name: str, subject: str, extensions: str | None = None) -> None:
    """``name.key`` and ``name.crt`` signed by ``ca`` in ``directory``."""
    _openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=directory)  # fmt: skip
    ext: list[str | Path] = []
    if extensions is not None:
        (directory / f"{name}.ext").write_text(extensions)
        ext = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.crt", *ext, cwd=directory)  # fmt: skip
    (directory / f"{name}.key").chmod(0o600)


def make_certificates(directory: Path) -> None:
    """A CA (``ca.crt``), a server certificate for localhost and 127.0.0.1 (``server.*``) and a
    client certificate for :data:`CERT_ROLE` (``client.*``), in ``directory``."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=spreadedge test CA", cwd=directory)  # fmt: skip
    _certificate(directory, "server", "/CN=localhost", "subjectAltName = DNS:localhost, IP:127.0.0.1\n")
    _certificate(directory, "client", f"/CN={CERT_ROLE}")


@dataclass
class TlsServer:
    """A running cluster that requires TLS over TCP; ``certs`` holds the client's files."""

    cluster: Cluster
    certs: Path
    password: str

    @property
    def ca(self) -> Path:
        return self.certs / "ca.crt"

    def url(self, dbname: str, *, host: str = "localhost", **params: str) -> str:
        """The superuser's URL over TCP; ``params`` default to verify-full against the test CA."""
        query = {"sslmode": "verify-full", "sslrootcert": str(self.ca), **params}
        secret = quote(self.password, safe="")
        return f"postgresql://{SUPERUSER}:{secret}@{host}:{self.cluster.port}/{dbname}?{urlencode(query, quote_via=quote)}"

    def cert_url(self, dbname: str, **params: str) -> str:
        """:data:`CERT_ROLE`'s URL over TCP, with the client's certificate and key (no password)."""
        query = {
            "sslmode": "verify-full",
            "sslrootcert": str(self.ca),
            "sslcert": str(self.certs / "client.crt"),
            "sslkey": str(self.certs / "client.key"),
            **params,
        }
        return f"postgresql://{CERT_ROLE}@localhost:{self.cluster.port}/{dbname}?{urlencode(query, quote_via=quote)}"

    def clone(self, name: str, template: str = TEMPLATE) -> None:
        """Create database ``name`` from the migrated ``template``."""
        with psycopg.connect(self.cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("create database {} template {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )


def require_tls(cluster: Cluster, certs: Path) -> TlsServer:
    """Turn TLS on for ``cluster`` (running) with the server files of ``certs``, and make TCP
    without it rejected (see :data:`HBA`); reloads the server."""
    data_dir = cluster.data_dir.resolve()
    for name in ("server.crt", "server.key", "ca.crt"):
        target = data_dir / name
        target.write_bytes((certs / name).read_bytes())
        target.chmod(0o600)
        runas.give(target)
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write(SSL_SETTINGS)
    (data_dir / "pg_hba.conf").write_text(HBA)
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login superuser").format(sql.Identifier(CERT_ROLE)))
        conn.execute("select pg_reload_conf()")
    # the reload is asynchronous: wait until a new session sees TLS on
    for _ in range(100):
        with psycopg.connect(cluster.conninfo("postgres")) as conn:
            if conn.execute("show ssl").fetchone() == ("on",):
                break
        time.sleep(0.05)
    return TlsServer(cluster, certs, cluster.password_file.read_text().strip())
