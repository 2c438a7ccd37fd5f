"""Connections: to ``DATABASE_URL`` when one is set, else to the embedded cluster."""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

from spreadedge.cluster import default_cluster
from spreadedge.settings import Settings


def conninfo(settings: Settings, *, start: bool = True) -> str:
    """The connection URL for these settings; starts the embedded cluster first when ``start``."""
    if settings.database_url:
        return settings.database_url
    cluster = default_cluster(settings)
    if start:
        cluster.start()
    return cluster.url()


def connect(
    settings: Settings, *, actor: str | None = None, autocommit: bool = False
) -> psycopg.Connection[TupleRow]:
    """Connect; with ``actor``, the session's ``spreadedge.actor`` names who acts (for the audit log).

    The actor is set at session level and committed at once, so a later rollback keeps it.
    """
    conn = psycopg.connect(conninfo(settings), autocommit=autocommit)
    if actor is not None:
        try:
            conn.execute("select set_config('spreadedge.actor', %s, false)", (actor,))
            if not autocommit:
                conn.commit()
        except BaseException:
            conn.close()
            raise
    return conn
