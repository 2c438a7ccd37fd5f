"""``spreadedge serve``: the history REST API under uvicorn."""

from __future__ import annotations

import os
import signal
import socket
from types import FrameType
from urllib.parse import urlsplit

import click
import psycopg
from psycopg import sql

from spreadedge import db, deadline
from spreadedge.cli_monitor import _finite_seconds
from spreadedge.settings import Settings

# What the worker processes of ``--workers N`` read to build their app (see app_from_environment).
URL_VARIABLE = "SPREADEDGE_API_CONNINFO"
MIGRATIONS_VARIABLE = "SPREADEDGE_API_MIGRATIONS"
POOL_VARIABLE = "SPREADEDGE_API_POOL_SIZE"
TIMEOUT_VARIABLE = "SPREADEDGE_API_STATEMENT_TIMEOUT"
HEALTH_TIMEOUT_VARIABLE = "SPREADEDGE_API_HEALTH_TIMEOUT"
# read by the HTTP protocol of each worker (spreadedge.api.server.HttpProtocol)
HEAD_TIMEOUT_VARIABLE = "SPREADEDGE_API_HEAD_TIMEOUT"
# the origins of --cors-origin, separated by spaces
CORS_VARIABLE = "SPREADEDGE_API_CORS_ORIGINS"


def cors_origin_error(origin: str) -> str | None:
    """Why ``origin`` cannot be allowed to read the API from a browser, or None: it must be an
    origin as a browser sends it (``https://host`` or ``http://host:port``, lower case, no path).

    why so strict: a browser's Origin is compared as a string, so ``https://Dash.example/`` or
    ``https://dash.example:443`` would never match and the dashboard would fail with no word why;
    ``*`` or ``null`` would let any site (or any sandboxed page) read what a token can.
    """
    if origin in ("*", "null"):
        return (
            f"--cors-origin {origin!r} would let any web page read what a logged-in user's token can:"
            " name each dashboard's origin (https://dash.example)"
        )
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not origin.isascii():
        return f"--cors-origin {origin!r} is not an origin: give scheme and host, as https://dash.example"
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    canonical = f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")
    if parts.username is not None or parts.password is not None or origin != canonical:
        return (
            f"--cors-origin {origin!r} never matches: a browser sends that origin as {canonical!r}"
            " (lower case, no path, no default port)"
        )
    return None


def _cors_origins(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for origin in value:
        error = cors_origin_error(origin)
        if error is not None:
            raise click.BadParameter(error, ctx, param)
    return value


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    envvar="SPREADEDGE_API_HOST",
    show_default=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    envvar="SPREADEDGE_API_PORT",
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    envvar="SPREADEDGE_API_WORKERS",
    show_default=True,
    help="Server processes (each with its own connection pool).",
)
@click.option(
    "--pool-size",
    type=click.IntRange(1, 200),
    default=10,
    envvar="SPREADEDGE_API_POOL_SIZE",
    show_default=True,
    help="Most database connections per worker.",
)
@click.option(
    "--statement-timeout",
    type=click.FloatRange(0.001, 86400),
    # why: FloatRange lets NaN through, and the API then served with a pool that never connected
    # (every connection's statement_timeout failed: "cannot convert float NaN to integer")
    callback=_finite_seconds,
    default=30.0,
    envvar=TIMEOUT_VARIABLE,
    show_default=True,
    help="Seconds a request's database statement may run (waiting on a lock included); then 503.",
)
@click.option(
    "--health-timeout",
    type=click.FloatRange(0.001, 86400),
    callback=_finite_seconds,
    default=3.0,
    envvar=HEALTH_TIMEOUT_VARIABLE,
    show_default=True,
    help="Seconds health may take (its wait for a connection and its statement); then 503. "
    "A second more when the database does not answer at all.",
)
@click.option(
    "--head-timeout",
    type=click.FloatRange(0.001, 86400),
    callback=_finite_seconds,
    default=10.0,
    envvar=HEAD_TIMEOUT_VARIABLE,
    show_default=True,
    help="Seconds a client has to send a request's line and headers (a slow client holds a "
    "connection no longer); then 408 and the connection closed.",
)
@click.option(
    "--timeout-keep-alive",
    type=click.IntRange(1, 3600),
    default=5,
    envvar="SPREADEDGE_API_TIMEOUT_KEEP_ALIVE",
    show_default=True,
    help="Seconds an idle keep-alive connection is kept open for its next request.",
)
@click.option(
    "--limit-concurrency",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    envvar="SPREADEDGE_API_LIMIT_CONCURRENCY",
    show_default=True,
    help="Connections and requests in flight a worker takes at once (each waits at most 5 s for a "
    "database connection); more are answered 503 at once.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    callback=_cors_origins,
    envvar=CORS_VARIABLE,
    metavar="ORIGIN",
    help="An origin (https://dash.example) whose pages may call the API from a browser (CORS); "
    "repeat for more. None by default. The variable takes several, separated by spaces.",
)
@click.option("--access-log", is_flag=True, help="Log every request (method, path, status).")
@click.pass_obj
def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    pool_size: int,
    statement_timeout: float,
    health_timeout: float,
    head_timeout: float,
    timeout_keep_alive: int,
    limit_concurrency: int,
    cors_origins: tuple[str, ...],
    access_log: bool,
) -> None:
    """Serve the history REST API (/api/v1/...; OpenAPI at /openapi.json, docs at /docs).

    A request body (a login's) of more than 64 KiB is answered 413, a request line and headers of
    more than 64 KiB 431; a request whose client disconnects is given up, its statement cancelled.
    """
    import uvicorn

    from spreadedge.api.server import uvicorn_options
    from spreadedge.migrate import MigrationError, check_project, render_migrations

    try:
        # why: without migrations/ there are none to expect, and the health endpoint
        # would report every applied migration as unknown (503) for as long as the API runs
        check_project(settings)
        migrations = render_migrations(settings)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from exc
    _check_address_free(host, port)
    conninfo = db.conninfo(settings)
    _check_api_role(conninfo)
    os.environ[URL_VARIABLE] = conninfo
    os.environ[MIGRATIONS_VARIABLE] = ",".join(m.id for m in migrations)
    os.environ[POOL_VARIABLE] = str(pool_size)
    os.environ[TIMEOUT_VARIABLE] = str(statement_timeout)
    os.environ[HEALTH_TIMEOUT_VARIABLE] = str(health_timeout)
    os.environ[HEAD_TIMEOUT_VARIABLE] = str(head_timeout)
    os.environ[CORS_VARIABLE] = " ".join(cors_origins)
    click.echo(f"serving the history API on http://{host}:{port} (OpenAPI: /openapi.json)")
    # why: after its graceful shutdown (every request in flight answered) uvicorn raises the signal
    # that stopped it once more, under the handler it found; with SIGTERM's default the process then
    # died of the signal (status 143 to a shell, a failed stop to a supervisor) though all went well
    signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.run(
            "spreadedge.cli_serve:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
            log_level="info",
            **uvicorn_options(timeout_keep_alive=timeout_keep_alive, limit_concurrency=limit_concurrency),
        )
    except SystemExit as exc:
        # why: uvicorn exits with status 3 when it cannot start (its log says why); every
        # spreadedge command fails with status 1, status 2 being a usage error
        if exc.code not in (None, 0):
            raise SystemExit(1) from exc
        raise


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handling (before it serves, or after its graceful shutdown)."""
    raise SystemExit(0)


def _check_address_free(host: str, port: int) -> None:
    """Refuse (ClickException naming the address) a host that does not resolve or a port in use.

    Why before uvicorn: it would log the error after the "serving ..." line and exit with status 3.
    The same SO_REUSEADDR uvicorn binds with, so a port in TIME_WAIT is not refused.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot listen on {host!r}: {exc.strerror} (see --host)") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot listen on {host} port {port}: {exc.strerror}; "
                    "choose another with --port (or SPREADEDGE_API_PORT)"
                ) from None


# the login role's name, whether it may SET ROLE to the API's role (PostgreSQL 15: a member of it,
# however indirectly; a superuser is; true when that role does not exist: a database not migrated,
# which health reports), and the GRANT that makes it one
_ACTS_AS = (
    "select current_user, to_regrole({role}) is null or pg_catalog.pg_has_role({role}, 'MEMBER'),"
    " format('grant %I to %I;', {role}, current_user)"
)


def _check_api_role(conninfo: str) -> None:
    """Refuse (ClickException naming the GRANT) a login role that may not act as the API's role.

    why: every pooled connection runs SET ROLE spreadedge_app, so that row-level security binds;
    served as a database owner that is not a superuser (a managed service), the API started,
    logged "permission denied to set role" once a second and answered every request 503, "the
    database is unavailable", health included. A database that cannot be reached now is left to
    the pool (the API serves, and health says so, until it can be).
    """
    from spreadedge.api.database import API_ROLE

    try:
        with deadline.connect(conninfo, autocommit=True) as conn:
            row = conn.execute(sql.SQL(_ACTS_AS).format(role=sql.Literal(API_ROLE))).fetchone()
    except psycopg.OperationalError:
        return
    if row is None or row[1]:
        return
    role, _, grant = row
    raise click.ClickException(
        f"spreadedge serve refused: the role {role} may not act as {API_ROLE}, which every request "
        f"of the API runs as (SET ROLE {API_ROLE}, so that row-level security applies)\n"
        f"Serve with a login role that is a member of {API_ROLE}, or ask a superuser (or a role with "
        f"CREATEROLE) to run: {grant}\n"
        '(README: "As a database owner that is not a superuser")'
    )


def app_from_environment() -> object:
    """The app for a uvicorn (worker) process, from what ``serve`` put in the environment."""
    from spreadedge.api import create_app

    migrations = os.environ.get(MIGRATIONS_VARIABLE, "")
    return create_app(
        os.environ[URL_VARIABLE],
        [m for m in migrations.split(",") if m],
        pool_size=int(os.environ.get(POOL_VARIABLE, "10")),
        statement_timeout=float(os.environ.get(TIMEOUT_VARIABLE, "30")),
        health_timeout=float(os.environ.get(HEALTH_TIMEOUT_VARIABLE, "3")),
        cors_origins=os.environ.get(CORS_VARIABLE, "").split(),
    )
