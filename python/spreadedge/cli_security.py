"""``spreadedge users …`` and ``spreadedge keys …``: thin commands over the ``auth`` functions.

Secrets are read from hidden prompts (or the master key from its file or variable) and go to the
database only as bind parameters; nothing secret is ever printed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg

from spreadedge import db, masterkey, textable
from spreadedge.settings import Settings


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    return db.connect(settings, actor=db.cli_actor(), autocommit=True)


def _user_id(conn: psycopg.Connection[Any], username: str) -> int:
    row = conn.execute("select auth.user_id_of(username => %s)", [username]).fetchone()
    assert row is not None
    return int(row[0])


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _utc(value: datetime) -> str:
    # why astimezone: the server returns timestamptz in the session's TimeZone (PGTZ, the
    # database's setting), and the CLI's columns say UTC
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- users ---------------------------------------------------------------------------------------


@click.group(name="users")
def users_group() -> None:
    """Application users: create, list, disable, enable, unlock."""


@users_group.command(name="create")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    default=("trader",),
    show_default=True,
    type=click.Choice(["admin", "trader", "viewer", "auditor"]),
    help="Application role (repeat for several).",
)
@click.password_option(
    help="The password; leave it out to be prompted (hidden, twice). Unsafe: a password given here is"
    " visible in ps to every local user and kept in the shell's history."
)
@click.pass_obj
def create_user(settings: Settings, username: str, roles: tuple[str, ...], password: str) -> None:
    """Create a user; the password must meet the security policy (auth.security_policy)."""
    with _connect(settings) as conn:
        row = conn.execute(
            "select auth.create_user(username => %s, password => %s, roles => %s)",
            [username, password, list(roles)],
        ).fetchone()
    assert row is not None
    # why dict.fromkeys: --role admin --role admin grants admin once
    click.echo(f"user {username} created (id {row[0]}, roles {', '.join(dict.fromkeys(roles))})")


@users_group.command(name="list")
@click.pass_obj
def list_users(settings: Settings) -> None:
    """List users with their roles and login state (no secrets)."""
    with _connect(settings) as conn:
        rows = conn.execute(
            "select user_id, username, roles, is_enabled, is_locked, totp_enabled, last_login_at"
            " from auth.user_accounts order by user_id"
        ).fetchall()
    if not rows:
        click.echo("no users")
        return
    headers = ["id", "username", "roles", "enabled", "locked", "2fa", "last login (UTC)"]
    cells = [
        [
            str(user_id),
            username,
            ",".join(roles),
            _yes_no(enabled),
            _yes_no(locked),
            _yes_no(totp),
            _utc(last_login) if last_login else "never",
        ]
        for user_id, username, roles, enabled, locked, totp, last_login in rows
    ]
    click.echo(textable.render(headers, cells, [True, False, False, False, False, False, False]))


def _user_command(function: str, done: str, help_text: str) -> click.Command:
    """A command ``USERNAME`` that calls ``auth.<function>(user_id => ...)`` and says it is done."""

    @click.argument("username")
    @click.pass_obj
    def command(settings: Settings, username: str) -> None:
        with _connect(settings) as conn:
            user_id = _user_id(conn, username)
            conn.execute(
                psycopg.sql.SQL("select {}(user_id => %s)").format(psycopg.sql.Identifier("auth", function)),
                [user_id],
            )
        click.echo(f"user {username} {done}")

    return click.command(help=help_text)(command)


users_group.add_command(
    _user_command(
        "disable_user",
        "disabled; its sessions are revoked",
        "Disable a user: no more logins, sessions revoked.",
    ),
    "disable",
)
users_group.add_command(_user_command("enable_user", "enabled", "Enable a disabled user."), "enable")
users_group.add_command(
    _user_command("unlock_user", "unlocked", "Lift a lockout after too many failed logins."), "unlock"
)


# -- keys ----------------------------------------------------------------------------------------


@click.group(name="keys")
def keys_group() -> None:
    """Exchange API keys, encrypted under a master key that never enters the database."""


@keys_group.command(name="generate")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Key file to create (default: SPREADEDGE_MASTER_KEY_FILE, else .spreadedge/master.key).",
)
@click.pass_obj
def generate_key(settings: Settings, out: Path | None) -> None:
    """Make a new random master key in a file only its owner can read; never overwrites one."""
    path = out or masterkey.key_file(settings)
    masterkey.write_key_file(path, masterkey.generate())
    click.echo(f"master key written to {path} (mode 0600); keep a copy somewhere safe")


@keys_group.command(name="store")
@click.option("--user", "username", required=True, help="The user the key belongs to.")
@click.option("--exchange", required=True, help="Exchange code, e.g. binance.")
@click.option("--label", required=True, help="Your name for the key, unique per user and exchange.")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    default=("read", "trade"),
    show_default=True,
    type=click.Choice(["read", "trade", "withdraw"]),
    help="What the exchange lets the key do (repeat for several).",
)
@click.option("--with-passphrase", is_flag=True, help="Also prompt for the key's passphrase (OKX, Coinbase).")
@click.pass_obj
def store_key(
    settings: Settings,
    username: str,
    exchange: str,
    label: str,
    permissions: tuple[str, ...],
    with_passphrase: bool,
) -> None:
    """Store an exchange API key; the key, secret and passphrase are prompted without echo."""
    master_key = masterkey.load(settings)
    with _connect(settings) as conn:
        # why before the prompts: a mistyped user is refused before any secret is typed
        user_id = _user_id(conn, username)
        api_key = click.prompt("API key", hide_input=True)
        api_secret = click.prompt("API secret", hide_input=True)
        passphrase = click.prompt("Passphrase", hide_input=True) if with_passphrase else None
        row = conn.execute(
            "select auth.store_api_key(user_id => %s, exchange => %s, label => %s, api_key => %s,"
            " api_secret => %s, passphrase => %s, permissions => %s, master_key => %s)",
            [user_id, exchange, label, api_key, api_secret, passphrase, list(permissions), master_key],
        ).fetchone()
    assert row is not None
    click.echo(f"API key {row[0]} stored for {username} on {exchange} ({label})")


@keys_group.command(name="list")
@click.option("--user", "username", default=None, help="Only this user's keys.")
@click.pass_obj
def list_keys(settings: Settings, username: str | None) -> None:
    """List stored API keys (never their secrets)."""
    with _connect(settings) as conn:
        # why look the user up: a mistyped user is named, not shown as a user without keys
        user_id = None if username is None else _user_id(conn, username)
        rows = conn.execute(
            "select k.key_id, u.username, k.exchange, k.label, k.permissions, k.key_version,"
            " k.created_at, k.revoked_at is not null"
            " from auth.api_key_list k join auth.user_accounts u on u.user_id = k.user_id"
            " where %(user_id)s::bigint is null or k.user_id = %(user_id)s"
            " order by k.key_id",
            {"user_id": user_id},
        ).fetchall()
    if not rows:
        click.echo("no API keys")
        return
    headers = ["id", "user", "exchange", "label", "permissions", "key version", "stored (UTC)", "revoked"]
    cells = [
        [
            str(key_id),
            user,
            exchange,
            label,
            ",".join(perms),
            str(version),
            _utc(created),
            _yes_no(revoked),
        ]
        for key_id, user, exchange, label, perms, version, created, revoked in rows
    ]
    click.echo(textable.render(headers, cells, [True, False, False, False, False, True, False, False]))


@keys_group.command(name="revoke")
# why the range: key ids are bigint, and a larger number finds no function to call
@click.argument("key_id", type=click.IntRange(1, 2**63 - 1))
@click.pass_obj
def revoke_key(settings: Settings, key_id: int) -> None:
    """Revoke an API key: the engine can no longer reveal it. A revoked key stays revoked."""
    with _connect(settings) as conn, conn.transaction():
        # why read first: auth.revoke_api_key is idempotent, and an operator who revokes a key
        # that was already revoked should not be told they just did (a revoke by someone else
        # between the two statements is still reported as this one's)
        before = conn.execute(
            "select revoked_at from auth.api_key_list where key_id = %s", [key_id]
        ).fetchone()
        conn.execute("select auth.revoke_api_key(key_id => %s)", [key_id])
    if before is not None and before[0] is not None:
        click.echo(f"API key {key_id} was already revoked at {_utc(before[0])} UTC")
    else:
        click.echo(f"API key {key_id} revoked")


@keys_group.command(name="rotate")
@click.option(
    "--new-key-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File with the new master key (make it with spreadedge keys generate --out FILE).",
)
@click.pass_obj
def rotate_keys(settings: Settings, new_key_file: Path) -> None:
    """Re-encrypt every API key under a new master key, in one transaction.

    The current key comes from SPREADEDGE_MASTER_KEY or its key file. If it is wrong, nothing
    changes. Afterwards, point SPREADEDGE_MASTER_KEY(_FILE) at the new key.
    """
    old_key = masterkey.load(settings)
    new_key = masterkey.read_key_file(new_key_file)
    with _connect(settings) as conn:
        row = conn.execute(
            "select auth.rotate_master_key(old_master_key => %s, new_master_key => %s)", [old_key, new_key]
        ).fetchone()
    assert row is not None
    click.echo(f"re-encrypted {row[0]} API keys under the new master key; use {new_key_file} from now on")
