"""Connections: to ``DATABASE_URL`` when one is set, else to the embedded cluster."""

from __future__ import annotations

import getpass
import os
import re

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from spreadedge.cluster import default_cluster
from spreadedge.settings import Settings, SettingsError

# The password of a URL (postgresql://user:PASSWORD@host) or of a key=value string (password=...).
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^@/?#:]*:([^@/?#]*)@")
_KEYWORD_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'?|\S+)")


class DatabaseUrlError(SettingsError):
    """DATABASE_URL (or --database-url) is not a connection string libpq can read."""


def conninfo(settings: Settings, *, start: bool = True) -> str:
    """The connection URL for these settings; starts the embedded cluster first when ``start``.

    A ``DATABASE_URL`` libpq cannot parse is refused here with a message that never shows its
    password (libpq's own message quotes the text it could not read, password included).
    """
    if settings.database_url:
        check_url(settings.database_url)
        return settings.database_url
    cluster = default_cluster(settings)
    if start:
        cluster.start()
    return cluster.url()


def check_url(url: str) -> None:
    """Refuse a connection string libpq cannot parse; DatabaseUrlError without the password."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise DatabaseUrlError(
            "DATABASE_URL (or --database-url) is not a PostgreSQL connection URL "
            "(postgresql://user:password@host:port/dbname) or key=value string: "
            f"{redact(str(exc).strip(), url)}"
        ) from None


def redact(message: str, url: str) -> str:
    """``message`` with the password written in ``url`` replaced by ``***``."""
    passwords = [
        match.group(1) for pattern in (_URL_PASSWORD, _KEYWORD_PASSWORD) if (match := pattern.search(url))
    ]
    for password in passwords:
        # the quoted form first: replaced after the bare one, it would be left as '***'
        for written in sorted({password, password.strip("'")}, key=len, reverse=True):
            if written:
                message = message.replace(written, "***")
    return message


def cli_actor() -> str:
    """The audit actor of a CLI command: ``cli:<login name>``, or ``cli:uid N`` for a uid with none."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        # why: a uid with no passwd entry and no USER or LOGNAME (a container run with an
        # arbitrary uid) has no name; the uid still says who acted
        return f"cli:uid {os.getuid()}"


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
