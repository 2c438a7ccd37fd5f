"""SecuritySystem: the seeds' async security calls, each one call to an ``auth`` function.

Passwords, TOTP codes, session tokens and the master key go to PostgreSQL as bind parameters only,
never into SQL text, logs or exception messages; the functions decide everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import psycopg

from spreadedge import errors, pooler, sqlcall
from spreadedge.deadline import CONNECT_TIMEOUT, connect_settings


@dataclass(frozen=True)
class Session:
    """What ``auth.validate_session`` says about a live session."""

    session_id: int
    user_id: int
    username: str
    roles: list[str]
    permissions: list[str]


class SecuritySystem:
    """Users, sessions and exchange API keys over one database (``conninfo``).

    ``master_key`` is needed only to store API keys; see :mod:`spreadedge.masterkey`.
    """

    def __init__(self, conninfo: str, *, master_key: str | None = None, actor: str | None = None) -> None:
        self._conninfo = conninfo
        self._master_key = master_key
        self._actor = actor

    async def _call(self, function: str, **arguments: Any) -> list[tuple[Any, ...]]:
        """``select * from <function>(name => %s, ...)`` in one autocommitted transaction."""
        query = sqlcall.select_rows(function, arguments)
        # why connect_settings: a server that never completes the startup (its postmaster stopped,
        # its host frozen) held each call for 130 s, psycopg's own bound
        async with await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            # no statement of it is prepared (it runs one), nor ever found on a pooler's server
            # connection that another client's prepared
            prepare_threshold=None,
            **connect_settings(self._conninfo, CONNECT_TIMEOUT),
        ) as conn:
            # why for the call's transaction, not the session: behind a pooler in transaction
            # pooling (PgBouncer) the actor and the settings landed on whichever server connection
            # the pooler lent, so another client's audit rows and security events were written
            # as this actor. DateStyle ISO and the rest (deadline.SESSION_SETTINGS): psycopg reads
            # a login's expires_at in ISO alone; READ COMMITTED by its BEGIN.
            await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)
            settings = dict(pooler.TRANSACTION_SETTINGS)
            if self._actor is not None:
                settings["spreadedge.actor"] = self._actor
            async with conn.transaction():
                await conn.execute(pooler.pin_transaction(settings))
                cursor = await conn.execute(query, arguments)
                return await cursor.fetchall()

    async def authenticate_user(
        self,
        username: str,
        password: str,
        ip_address: str | IPv4Address | IPv6Address | None,
        user_agent: str | None,
        totp_code: str | None = None,
    ) -> tuple[bool, str | None, str]:
        """Log in: ``(True, session token, message)`` or ``(False, None, why)``."""
        try:
            rows = await self._call(
                "auth.login",
                username=username,
                password=password,
                totp_code=totp_code,
                ip_address=client_address(ip_address),
                user_agent=user_agent,
            )
        except psycopg.Error as exc:
            return False, None, _message(exc)
        success, token, _user_id, _expires_at, message = rows[0]
        return bool(success), token, message

    async def validate_session(self, session_id: str) -> Session:
        """The session's user, roles and permissions; raises ``InvalidSession`` when it is not live."""
        if "\x00" in session_id:
            raise _not_live()
        try:
            rows = await self._call("auth.validate_session", token=session_id)
        except psycopg.Error as exc:
            raise errors.translate(exc) from None
        session_key, user_id, username, roles, permissions, _expires_at = rows[0]
        return Session(session_key, user_id, username, list(roles), list(permissions))

    async def logout(self, session_id: str) -> bool:
        """End a session; False when it was not live (unknown, revoked, expired or of a disabled user)."""
        if "\x00" in session_id:
            return False
        rows = await self._call("auth.logout", token=session_id)
        return bool(rows[0][0])

    async def create_api_key(
        self,
        user_id: int | str,
        exchange_id: str,
        api_key: str,
        secret_key: str,
        passphrase: str | None = None,
        *,
        label: str | None = None,
        permissions: tuple[str, ...] = ("read", "trade"),
    ) -> tuple[bool, str]:
        """Store an exchange API key encrypted under the master key: ``(success, message)``."""
        if self._master_key is None:
            return False, "no master key: give SecuritySystem(master_key=...) (see spreadedge.masterkey)"
        # why here: the seeds pass the id as a string ("42"); one that is no number is refused as
        # every other mistake is, with (False, message), not a ValueError
        try:
            numeric_id = int(user_id)
        except (TypeError, ValueError):
            return False, f"user id {user_id!r} is not a number"
        try:
            rows = await self._call(
                "auth.store_api_key",
                user_id=numeric_id,
                exchange=exchange_id,
                label=label or exchange_id,
                api_key=api_key,
                api_secret=secret_key,
                passphrase=passphrase,
                permissions=list(permissions),
                master_key=self._master_key,
            )
        except psycopg.Error as exc:
            return False, _message(exc)
        return True, f"API key {rows[0][0]} stored"


def client_address(value: str | IPv4Address | IPv6Address | None) -> str | None:
    """The client's address as ``auth.login`` records it (an ``inet``), or None when it is no IP.

    An IPv6 zone (``fe80::1%eth0``) is dropped and anything else that is not an IP address (a
    proxy's ``unknown``, an empty string) is recorded as none, as the REST API does: the address
    only annotates the login, and PostgreSQL's inet refuses both, which refused the login itself.
    """
    if value is None:
        return None
    try:
        return str(ip_address(str(value).partition("%")[0]))
    except ValueError:
        return None


def _not_live() -> errors.SpreadedgeError:
    """``InvalidSession`` as ``auth.validate_session`` raises it, for a token that cannot be one.

    why: a token with a NUL character is not one auth.login made (hex), but psycopg refuses to
    send it, so the caller got a raw ``psycopg.DataError`` (and ``logout`` raised) where every
    other token that is not live gives ``InvalidSession`` (and ``logout`` False)
    """
    return errors.BY_NAME["invalid_session"](
        "the session is unknown, expired or revoked", hint="Log in again (auth.login)."
    )


def _message(exc: psycopg.Error) -> str:
    """The server's message for a project error (never the SQL or its parameters)."""
    translated = errors.translate(exc)
    if isinstance(translated, errors.SpreadedgeError):
        return translated.message
    return f"database error {exc.sqlstate or ''}".strip()
