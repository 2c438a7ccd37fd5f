"""Connections: to ``DATABASE_URL`` when one is set, else to the embedded cluster."""

from __future__ import annotations

import contextlib
import getpass
import os
import re

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from spreadedge import deadline, pooler
from spreadedge.cluster import Cluster, ClusterError, default_cluster
from spreadedge.settings import Settings, SettingsError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# The password of a URL (postgresql://user:PASSWORD@host), read as libpq reads it: the user
# information is everything up to the first "@" before any "/", so "?" and "#" belong to the
# password (libpq connects with "pa?ss#word"; a pattern stopping at them redacted nothing)
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^@/:]*:([^@/]*)@")
# What was meant as one when it holds an unencoded "/" (a base64 password): libpq then reads no
# password at all, but `db url` printed the whole URL, the secret in it
_URL_PASSWORD_WITH_SLASH = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^@/?#:]*:([^?]*)@")
# The parameters whose value is a secret: libpq marks them for display as "*" (password, the
# passphrase of the client's SSL key sslpassword, oauth_client_secret), and these three always.
# why not password alone: `db url` printed DATABASE_URL's ?sslpassword=... whole
SECRET_KEYWORDS = tuple(
    sorted(
        {"password", "sslpassword", "oauth_client_secret"}
        | {option.keyword.decode() for option in pq.Conninfo.get_defaults() if option.dispchar == b"*"}
    )
)
_SECRET_NAME = "|".join(map(re.escape, SECRET_KEYWORDS))
# A secret parameter of a URL's query: its value ends at the next "&"
_QUERY_PASSWORD = re.compile(rf"[?&](?:{_SECRET_NAME})=([^&]*)")
# A secret of a key=value string (password=... or password='...'), sslpassword=... included.
# why the escapes in an unquoted value: libpq reads password=se\ cret as "se cret", and \S+ took
# only "se\", so `db url` showed the rest of the password
_KEYWORD_PASSWORD = re.compile(rf"\b(?:{_SECRET_NAME})\s*=\s*('(?:[^'\\]|\\.)*'?|(?:\\[\s\S]|[^\s\\])+\\?)")


# Seconds a CLI command waits for a new connection to complete (libpq's connect_timeout) unless the
# URL or PGCONNECT_TIMEOUT sets one (see deadline.connect, the one way the CLI connects).
CONNECT_TIMEOUT = deadline.CONNECT_TIMEOUT


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
        check_new_cluster(settings, cluster)
        cluster.start()
    return cluster.url()


def check_new_cluster(settings: Settings, cluster: Cluster) -> None:
    """Refuse (ClusterError) to create the embedded cluster when there is no SQL to migrate it with.

    why: without migrations/, every command created and started a cluster in its .spreadedge/ and
    then said to run spreadedge migrate, which refuses there: a dead end that left a server running.
    Outside the project the code's own SQL is used (settings.code_sql_dir), so this refuses only a
    spreadedge that carries none (a package built without its setup.py). A cluster that exists is
    used wherever it is run from (a cron entry with SPREADEDGE_HOME).
    """
    if not cluster.initialized and not settings.migrations_dir.is_dir():
        raise ClusterError(
            f"{settings.migrations_dir} is not a directory, so no embedded cluster is created in "
            f"{cluster.home}: run spreadedge from the project directory (the one with migrations/ and "
            "functions/), set SPREADEDGE_PROJECT_DIR, or give --database-url (DATABASE_URL)"
        )


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
    """``message`` with the password (and every other secret, such as sslpassword) written in
    ``url`` replaced by ``***``."""
    patterns = (
        (_URL_PASSWORD, _URL_PASSWORD_WITH_SLASH, _QUERY_PASSWORD)
        if _URL.match(url)
        else (_KEYWORD_PASSWORD,)
    )
    passwords = [match.group(1) for pattern in patterns for match in pattern.finditer(url)]
    with contextlib.suppress(psycopg.Error):
        # the secrets as libpq reads them (percent-decoded), should a message quote them so
        params = conninfo_to_dict(url)
        passwords.extend(str(params.get(keyword) or "") for keyword in SECRET_KEYWORDS)
    written = {form for password in passwords for form in (password, password.strip("'")) if form}
    # the longest first: the quoted form, or the slash pattern's, replaced after a part of it,
    # would be left partly shown ('***', ***/rest)
    for form in sorted(written, key=len, reverse=True):
        message = message.replace(form, "***")
    return message


def server_message(exc: psycopg.Error) -> str:
    """The server's primary message, with its hint on a second line when there is one."""
    message = exc.diag.message_primary or str(exc).strip()
    hint = exc.diag.message_hint
    return f"{message}\nhint: {hint}" if hint else message


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

    The actor is set at session level and committed at once, so a later rollback keeps it. Behind
    a pooler (PgBouncer's transaction pooling) it is set, with the session settings, at the start
    of each transaction instead (:class:`spreadedge.pooler.PinnedConnection`).
    """
    url = conninfo(settings)
    conn: psycopg.Connection[TupleRow] = deadline.connect(
        url, cls=pooler.PinnedConnection, autocommit=autocommit
    )
    if isinstance(conn, pooler.PinnedConnection) and conn.pin is not None:
        if actor is not None:
            conn.pin_transactions({**pooler.TRANSACTION_SETTINGS, "spreadedge.actor": actor})
        return conn
    if actor is not None:
        try:
            conn.execute("select set_config('spreadedge.actor', %s, false)", (actor,))
            if not autocommit:
                conn.commit()
        except BaseException:
            conn.close()
            raise
    return conn
