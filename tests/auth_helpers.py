"""Helpers of the security tests: users, logins and roles through the auth functions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from trading_helpers import call, rows

PASSWORD = "Correct-Horse-42"
MASTER_KEY = "master-key-0123456789-abcdefghijklmnop"
OTHER_MASTER_KEY = "other-master-key-9876543210-zyxwvutsrq"
SECRET_COLUMNS = (
    "password_hash",
    "totp_secret",
    "token_hash",
    "api_key",
    "api_secret",
    "passphrase",
    "fingerprint",
    "verifier",
)


def make_user(conn: psycopg.Connection, username: str, *roles: str, password: str = PASSWORD) -> int:
    return call(
        conn, "auth.create_user", username=username, password=password, roles=list(roles or ["trader"])
    )


def login(conn: psycopg.Connection, username: str, password: str = PASSWORD, **kwargs: Any) -> dict[str, Any]:
    return rows(conn, "auth.login", username=username, password=password, **kwargs)[0]


def events(conn: psycopg.Connection, event_type: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "select * from audit.security_events where event_type = %s order by event_id", [event_type]
        ).fetchall()


@contextlib.contextmanager
def acting_as(
    conn: psycopg.Connection, role: str, user_id: int | None = None
) -> Iterator[psycopg.Connection]:
    """Run the block as a database role (SET ROLE) scoped to an application user, then reset both."""
    conn.execute(psycopg.sql.SQL("set role {}").format(psycopg.sql.Identifier(role)))
    if user_id is not None:
        conn.execute("select set_config('spreadedge.user_id', %s, false)", [str(user_id)])
    try:
        yield conn
    finally:
        conn.execute("reset role")
        conn.execute("reset spreadedge.user_id")


def age_session(conn: psycopg.Connection, user_id: int, by: str) -> None:
    """Move a user's sessions back in time (as if `by` had passed since login and last use)."""
    conn.execute(
        "update auth.sessions set created_at = created_at - %(by)s::interval,"
        " last_seen_at = last_seen_at - %(by)s::interval, idle_expires_at = idle_expires_at - %(by)s::interval,"
        " expires_at = expires_at - %(by)s::interval where user_id = %(user)s",
        {"by": by, "user": user_id},
    )


def disable_directly(conn: psycopg.Connection, user_id: int) -> None:
    """Mark a user disabled without auth.disable_user, so their sessions stay unrevoked (as a restore
    of an older auth.sessions, or an operator's UPDATE, would leave them)."""
    conn.execute("update auth.users set disabled_at = now() where user_id = %s", [user_id])


def store_key(conn, user_id, api_key="AKIA-binance-0001", exchange="binance", label="main", **kwargs):
    kwargs.setdefault("master_key", MASTER_KEY)
    return call(
        conn,
        "auth.store_api_key",
        user_id=user_id,
        exchange=exchange,
        label=label,
        api_key=api_key,
        api_secret=kwargs.pop("api_secret", "s3cret-binance-0001"),
        **kwargs,
    )


def reveal_key(conn, key_id, master_key=MASTER_KEY):
    with acting_as(conn, "spreadedge_engine"):
        return rows(conn, "auth.reveal_api_key", key_id=key_id, master_key=master_key)[0]
