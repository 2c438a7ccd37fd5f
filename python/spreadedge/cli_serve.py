"""``spreadedge serve``: the history REST API under uvicorn."""

from __future__ import annotations

import os

import click

from spreadedge import db
from spreadedge.settings import Settings

# What the worker processes of ``--workers N`` read to build their app (see app_from_environment).
URL_VARIABLE = "SPREADEDGE_API_CONNINFO"
MIGRATIONS_VARIABLE = "SPREADEDGE_API_MIGRATIONS"
POOL_VARIABLE = "SPREADEDGE_API_POOL_SIZE"


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
@click.option("--access-log", is_flag=True, help="Log every request (method, path, status).")
@click.pass_obj
def serve(settings: Settings, host: str, port: int, workers: int, pool_size: int, access_log: bool) -> None:
    """Serve the history REST API (/api/v1/...; OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from spreadedge.migrate import render_migrations

    os.environ[URL_VARIABLE] = db.conninfo(settings)
    os.environ[MIGRATIONS_VARIABLE] = ",".join(m.id for m in render_migrations(settings))
    os.environ[POOL_VARIABLE] = str(pool_size)
    click.echo(f"serving the history API on http://{host}:{port} (OpenAPI: /openapi.json)")
    uvicorn.run(
        "spreadedge.cli_serve:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        loop="uvloop",
        http="httptools",
        log_level="info",
    )


def app_from_environment() -> object:
    """The app for a uvicorn (worker) process, from what ``serve`` put in the environment."""
    from spreadedge.api import create_app

    migrations = os.environ.get(MIGRATIONS_VARIABLE, "")
    return create_app(
        os.environ[URL_VARIABLE],
        [m for m in migrations.split(",") if m],
        pool_size=int(os.environ.get(POOL_VARIABLE, "10")),
    )
