"""The master key of the exchange API keys: made, read and kept here, never stored in the database.

The key reaches PostgreSQL only as a bind parameter of ``auth.store_api_key``,
``auth.reveal_api_key`` and ``auth.rotate_master_key``. It comes from ``SPREADEDGE_MASTER_KEY``,
else from the file named by ``SPREADEDGE_MASTER_KEY_FILE``, else from ``master.key`` in the
embedded cluster's home (``.spreadedge/``). A key file must be private to its owner (mode 0600).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from spreadedge import sqlfiles
from spreadedge.settings import Settings

ENV_KEY = "SPREADEDGE_MASTER_KEY"
ENV_KEY_FILE = "SPREADEDGE_MASTER_KEY_FILE"
KEY_FILE_NAME = "master.key"
# The SQL side refuses shorter keys; token_urlsafe(32) gives 43 characters of 256 random bits.
MIN_LENGTH = 32


class MasterKeyError(Exception):
    """No usable master key, or a key file that cannot be written or trusted."""


def generate() -> str:
    """A new master key: 256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def default_key_file(settings: Settings) -> Path:
    """Where the master key lives when neither variable says otherwise."""
    return settings.project_dir / settings.home / KEY_FILE_NAME


def write_key_file(path: Path, key: str) -> None:
    """Write a key to a new file, readable by its owner only; an existing file is never replaced."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MasterKeyError(f"cannot create master key file {path}: {exc.strerror}") from exc
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise MasterKeyError(f"{path} already exists: a master key is never overwritten") from exc
    except OSError as exc:
        raise MasterKeyError(f"cannot create master key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")


def read_key_file(path: Path) -> str:
    """The key in a key file; refuses a file that others can read or that holds too short a key."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise MasterKeyError(
            f"master key file {path} does not exist (spreadedge keys generate makes one)"
        ) from exc
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(f"master key file {path} is readable by others: chmod 600 {path}")
    try:
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        # why not str(exc): a decode error quotes a byte of the file, which is a byte of the key
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise MasterKeyError(f"cannot read master key file {path}: {reason}") from exc
    if len(key) < MIN_LENGTH:
        raise MasterKeyError(f"master key file {path} holds fewer than {MIN_LENGTH} characters")
    return key


def key_file(settings: Settings, env: Mapping[str, str] | None = None) -> Path:
    """The key file in use: the one ``SPREADEDGE_MASTER_KEY_FILE`` names, else the default one."""
    env = os.environ if env is None else env
    named = env.get(ENV_KEY_FILE)
    return Path(named) if named else default_key_file(settings)


def load(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The master key from the environment, the key file it names, or the default key file.

    A key from the environment with white space at either end is refused; a key file's surrounding
    white space (its final newline) is not part of the key.
    """
    env = os.environ if env is None else env
    key = env.get(ENV_KEY)
    if key:
        # why refused, not stripped: the key is used as given (pgcrypto's passphrase and the
        # verifier's HMAC key), so a stripped key would be another key; and a key file is read
        # without its surrounding white space, so a key with some would never work from a file
        if key != key.strip():
            raise MasterKeyError(
                f"{ENV_KEY} starts or ends with white space (often a newline kept from a file):"
                f" remove it, or name a key file with {ENV_KEY_FILE}"
            )
        if len(key) < MIN_LENGTH:
            raise MasterKeyError(f"{ENV_KEY} holds fewer than {MIN_LENGTH} characters")
        return key
    path = key_file(settings, env)
    if not env.get(ENV_KEY_FILE) and not path.exists():
        raise MasterKeyError(
            f"no master key: set {ENV_KEY} or {ENV_KEY_FILE}, or run spreadedge keys generate"
        )
    return read_key_file(path)


def copy_key_file(source: Path, target: Path) -> bool:
    """Copy a key file to ``target`` (a new file, mode 0600); False when ``source`` does not exist.

    MasterKeyError when the source cannot be trusted (readable by others, too short) or the target
    cannot be written or exists already.
    """
    if not source.exists():
        return False
    write_key_file(target, read_key_file(source))
    return True


def source(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """Where ``load`` takes the key from: the variable's name or the key file's path (never the key)."""
    env = os.environ if env is None else env
    return ENV_KEY if env.get(ENV_KEY) else str(key_file(settings, env))


def check(conn: psycopg.Connection[Any], settings: Settings) -> int | None:
    """The master key version the API keys of ``conn``'s database are encrypted under, once the key
    in use (``load``) has proved to be its key; None when no API key was ever stored there.

    MasterKeyError (naming where the key came from, never the key) when there is no usable key or
    it is another one: internal.current_master_key_version compares it with the version's verifier.
    """
    if not sqlfiles.procedure_exists(conn, "internal.current_master_key_version(text,boolean)"):
        return None
    row = conn.execute("select key_version from auth.master_keys where retired_at is null").fetchone()
    if row is None:
        return None
    env = os.environ
    # why not load's own message: it says to generate a key, whose new key cannot decrypt these
    if not env.get(ENV_KEY) and not key_file(settings, env).exists():
        raise MasterKeyError(f"no master key: {key_file(settings, env)} does not exist")
    key = load(settings, env)
    try:
        with conn.transaction():
            conn.execute("select internal.current_master_key_version(%s, false)", [key])
    except psycopg.Error as exc:
        if exc.sqlstate != "28S03":
            raise
        raise MasterKeyError(
            f"the master key ({source(settings)}) is not master key version {row[0]},"
            " which the API keys are encrypted under"
        ) from None
    return int(row[0])
