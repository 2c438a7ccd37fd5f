"""Deployment settings: where the database is and how migrations are rendered.

Settings come, in increasing priority, from built-in defaults, the optional TOML file
``spreadedge.toml`` in the project directory (or the file named by ``SPREADEDGE_SETTINGS``),
and ``SPREADEDGE_*`` environment variables. ``DATABASE_URL`` (or ``--database-url``) selects an
external database; without it every command uses the embedded cluster under ``.spreadedge/``.

The project directory is ``SPREADEDGE_PROJECT_DIR``, else the working directory. The SQL
(``migrations/``, ``functions/``, ``schema/``) is the project directory's when its ``migrations/``
holds SQL files (the checkout, or a copy of it), else this code's own (code_sql_dir): the copy an
installed package carries in ``spreadedge/sql/``, or the checkout it runs from.

Only the ``[render]`` section feeds the Jinja templates of ``migrations/`` and ``schema/``:
changing one of those values after a migration was applied changes its rendered SQL, which
``spreadedge migrate`` then refuses (applied migrations are frozen).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import unicodedata
import urllib.parse
from dataclasses import dataclass, field, fields, replace
from email.utils import parseaddr
from pathlib import Path
from typing import Any, ClassVar

DEFAULT_PORT = 54329
RETENTION = re.compile(r"[1-9][0-9]{0,3} (day|week|month|year)s?")
SETTINGS_FILE = "spreadedge.toml"
# Retention settings that must stay none: pg_partman drops a partition by its age alone, with the
# working orders, the fills of open positions and the spread legs in it (trades are never deleted);
# spreadedge cleanup orders removes old orders by the rules of what may go. Refused here, where
# they are read, because migration 0001 would render them into pg_partman's configuration.
NO_RETENTION = ("retention_orders", "retention_order_events", "retention_trades")


# Where the SQL of this code is: a built package (wheel) carries migrations/, functions/ and
# schema/ in spreadedge/sql/ (copied there by setup.py); a checkout has them at its root, two levels
# above python/spreadedge/.
PACKAGE_SQL_DIR = Path(__file__).resolve().parent / "sql"
CHECKOUT_DIR = Path(__file__).resolve().parents[2]


def code_sql_dir() -> Path:
    """The directory holding this code's own migrations/, functions/ and schema/.

    why not the working directory alone: an installed spreadedge (a wheel in a trading
    application's virtual environment, or the CLI installed for an operator) runs from anywhere,
    and its migrations are the ones its Python code was written for, wherever it runs.
    """
    if (PACKAGE_SQL_DIR / "migrations").is_dir() or not (CHECKOUT_DIR / "migrations").is_dir():
        return PACKAGE_SQL_DIR
    return CHECKOUT_DIR


def holds_sql_migrations(directory: Path) -> bool:
    """Whether ``directory`` is a migrations/ of spreadedge's kind: it holds a ``*.sql`` or
    ``*.sql.j2`` file (one it cannot list counts, so that reading it reports why).

    why: a trading application's directory may have a migrations/ of its own (Alembic's and
    Flask-Migrate's: env.py, versions/); taken for spreadedge's, migrate found no migration there
    and reported a fresh database "up to date" with nothing in it.
    """
    try:
        return directory.is_dir() and any(
            path.name.endswith((".sql", ".sql.j2")) for path in directory.iterdir()
        )
    except OSError:
        return True


@dataclass(frozen=True)
class RenderSettings:
    """Values the migration templates are rendered with (see ``spreadedge.toml.example``)."""

    # Partitions pg_partman keeps created ahead of now, per partitioned table.
    partition_premake: int = 4
    # Months of partitions created behind now when a monthly table is first partitioned.
    partition_history_months: int = 3
    # Days of partitions created behind now when a daily table (quotes, ticks) is first partitioned.
    partition_history_days: int = 7
    # Retention per table as a PostgreSQL interval, or None to keep everything.
    # Orders, order events and trades must keep None (NO_RETENTION): load_settings refuses a value.
    retention_orders: str | None = None
    retention_order_events: str | None = None
    retention_trades: str | None = None
    retention_audit: str | None = None
    retention_quotes: str | None = None
    retention_ticks: str | None = None
    retention_candles: str | None = None
    retention_indicators: str | None = None
    # monitor.metrics is partitioned by day; a value a minute per series adds up.
    retention_metrics: str | None = "90 days"
    # How long the tables with no partitions keep a row once it has ended (ROW_RETENTION_SETTINGS
    # of spreadedge.ops.partitions): notifications delivered or dead, sessions revoked or expired,
    # pg_cron's finished runs. Rendered into no migration (0052 writes these defaults):
    # `spreadedge partitions maintain` writes them, so a change is never refused by migrate.
    retention_notifications: str | None = "30 days"
    retention_sessions: str | None = "30 days"
    retention_cron_runs: str | None = "14 days"

    def as_context(self) -> dict[str, Any]:
        """The Jinja context: every field by name."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


COMPRESS_TYPES = ("gz", "bz2", "lz4", "zst")


@dataclass(frozen=True)
class BackupSettings:
    """How ``spreadedge backup`` configures pgBackRest and pg_dump (``[backup]``, ``SPREADEDGE_BACKUP_*``)."""

    # pgBackRest's stanza name for the cluster.
    stanza: str = "spreadedge"
    # Repository directory; None: backup/repo under the cluster home.
    repo_path: Path | None = None
    # Full backups kept (older ones and what depends on them expire); differential backups kept.
    retention_full: int = 2
    retention_diff: int = 6
    # gz, bz2, lz4 or zst, for pgBackRest and for logical dumps alike.
    compress_type: str = "zst"
    # Where logical dumps go; None: backup/dumps under the cluster home.
    dump_dir: Path | None = None
    # The environment variable holding the repository passphrase (never the passphrase itself).
    passphrase_env: str = "SPREADEDGE_BACKUP_PASSPHRASE"


@dataclass(frozen=True)
class NotifySettings:
    """Where `spreadedge notify worker` delivers, and how it retries (``[notify]``, see the example).

    Secret values (the SMTP password, the Slack and Discord webhook URLs, which carry their token,
    and the generic webhook's HMAC key) are left out of ``repr`` and never logged: read them from
    ``SPREADEDGE_*`` environment variables rather than the file.
    """

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    email_from: str = "spreadedge@localhost"
    email_to: tuple[str, ...] = ()
    slack_webhook_url: str | None = field(default=None, repr=False)
    discord_webhook_url: str | None = field(default=None, repr=False)
    # why not in repr: a URL with user information carries a password (sent as HTTP Basic)
    webhook_url: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    # Attempts before a notification goes to the dead letter; waits double from backoff_seconds.
    # load_settings takes 1 to 1000 attempts, backoffs of 0 to a year and a timeout of at most an hour.
    max_attempts: int = 5
    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 3600.0
    timeout_seconds: float = 10.0
    batch_size: int = 10

    SECRETS: ClassVar[tuple[str, ...]] = (
        "smtp_password",
        "slack_webhook_url",
        "discord_webhook_url",
        "webhook_secret",
    )

    def secrets(self) -> list[str]:
        """The secret values set, to redact from anything shown or stored."""
        return [value for name in self.SECRETS if (value := getattr(self, name))]


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to find and shape its database."""

    project_dir: Path
    database_url: str | None = None
    # The directory of migrations/, functions/ and schema/; None: the project directory's.
    sql_dir: Path | None = None
    home: Path = field(default=Path(".spreadedge"))
    port: int = DEFAULT_PORT
    render: RenderSettings = field(default_factory=RenderSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)

    @property
    def migrations_dir(self) -> Path:
        return (self.sql_dir or self.project_dir) / "migrations"

    @property
    def functions_dir(self) -> Path:
        return (self.sql_dir or self.project_dir) / "functions"

    @property
    def schema_dir(self) -> Path:
        return (self.sql_dir or self.project_dir) / "schema"

    def with_database_url(self, url: str | None) -> Settings:
        return self if url is None else replace(self, database_url=url)


class SettingsError(ValueError):
    """A settings file or variable holds a value that cannot be used."""


def _field_names(settings_class: type) -> set[str]:
    """The settings a section takes: its dataclass's fields.

    why not ``__dataclass_fields__``: it holds the ClassVar pseudo-fields too (NotifySettings'
    SECRETS), which would be taken as a setting and then crash the constructor with a TypeError.
    """
    return {item.name for item in fields(settings_class)}


def _section(
    section: str, values: dict[str, Any], known: set[str], env: dict[str, str], prefix: str = "SPREADEDGE_"
) -> dict[str, Any]:
    """A section's values from the file, refused when unknown, with <prefix><NAME> overriding each."""
    if not isinstance(values, dict):
        raise SettingsError(f"[{section}] must be a table of settings, got {values!r}")
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown [{section}] setting(s): {', '.join(unknown)}")
    merged: dict[str, Any] = dict(values)
    for name in known:
        env_value = env.get(f"{prefix}{name.upper()}")
        if env_value is not None:
            merged[name] = env_value
    return merged


def _integer(name: str, value: Any) -> int:
    """A whole number from the file (a TOML integer) or the environment (its digits).

    why not int(value): int() takes a TOML boolean (true is 1) and cuts 4.7 down to 4, so a
    mistyped value would silently render into a migration, which then stays frozen.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # why ASCII digits only: int() also reads '1_0' as 10 and '٣' (an Arabic-Indic three) as 3
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    raise SettingsError(f"{name} must be an integer, got {value!r}")


_DIGITS = re.compile(r"[+-]?[0-9]+")


def _positive_integers(merged: dict[str, Any], names: tuple[str, ...]) -> None:
    """Turn the named values into integers of at least 1 (and at most their _MAXIMA), in place;
    SettingsError otherwise."""
    for name in names:
        if name in merged:
            merged[name] = _integer(name, merged[name])
            if merged[name] < 1:
                raise SettingsError(f"{name} must be at least 1, got {merged[name]}")
            if name in _MAXIMA and merged[name] > _MAXIMA[name]:
                raise SettingsError(f"{name} must be at most {_MAXIMA[name]:,}, got {merged[name]:,}")


# why maxima for the partition counts: a premake of 99999999999999999999 rendered into migration
# 0001, which then failed with an error naming no setting, and one of 100000 had pg_partman create
# 100,000 partitions of every table (days of quotes and ticks, months of orders) before it committed
_MAXIMA = {"partition_premake": 366, "partition_history_months": 1200, "partition_history_days": 3660}


# why a bound on a retention's years: pg_partman subtracts the retention from now(), and 7000 years
# back is before 4713 BC, the earliest time PostgreSQL stores: every hourly maintenance of the
# table failed with "timestamp out of range" and made no partition ahead (9999 days, weeks or
# months reach back 27, 191 or 833 years, within range)
_MAX_RETENTION_YEARS = 1000


def _retention_years(text: str) -> int:
    """The years a retention matching RETENTION counts (0 for days, weeks and months)."""
    number, unit = text.split()
    return int(number) if unit.startswith("year") else 0


def _render_from(values: dict[str, Any], env: dict[str, str]) -> RenderSettings:
    known = _field_names(RenderSettings)
    merged = _section("render", values, known, env)
    _positive_integers(merged, ("partition_premake", "partition_history_months", "partition_history_days"))
    for name in known:
        if not name.startswith("retention_"):
            continue
        if merged.get(name) in ("", "none"):
            merged[name] = None
        elif name in merged and not RETENTION.fullmatch(str(merged[name])):
            raise SettingsError(
                f"{name} must be an interval like '24 months' (days, weeks, months or years) or 'none', "
                f"got {merged[name]!r}"
            )
        elif name in merged and _retention_years(str(merged[name])) > _MAX_RETENTION_YEARS:
            raise SettingsError(
                f"{name} must be at most {_MAX_RETENTION_YEARS} years (older than any time PostgreSQL "
                f"stores, 4713 BC, it fails every partition maintenance of its table), got {merged[name]!r}"
            )
        elif name in NO_RETENTION and merged.get(name) is not None:
            raise SettingsError(
                f"{name} must be none, got {merged[name]!r}: pg_partman would drop whole partitions by age, "
                "with open orders and the fills of open positions; remove old orders with "
                "spreadedge cleanup orders --older-than 30d"
            )
    return RenderSettings(**merged)


# An environment variable's name: what passphrase_env must be for os.environ to hold the passphrase.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _backup_from(values: dict[str, Any], env: dict[str, str], file_dir: Path) -> BackupSettings:
    """The [backup] section; a relative path of the file is taken from ``file_dir`` (the settings
    file's directory), one of a SPREADEDGE_BACKUP_* variable from the working directory."""
    known = _field_names(BackupSettings)
    merged = _section("backup", values, known, env, prefix="SPREADEDGE_BACKUP_")
    _positive_integers(merged, ("retention_full", "retention_diff"))
    if merged.get("compress_type", "zst") not in COMPRESS_TYPES:
        raise SettingsError(
            f"backup compress_type must be one of {', '.join(COMPRESS_TYPES)}, "
            f"got {merged['compress_type']!r}"
        )
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(merged.get("stanza", "spreadedge"))):
        raise SettingsError(
            f"backup stanza must be letters, digits, '_', '.' or '-', got {merged['stanza']!r}"
        )
    for name in ("stanza", "repo_path", "compress_type", "dump_dir", "passphrase_env"):
        if name in merged and merged[name] is not None and not isinstance(merged[name], str):
            raise SettingsError(f"backup {name} must be a string, got {merged[name]!r}")
    # why refused: os.environ.get("") (or of a name no variable can have) is None, so `backup init`
    # made the repository unencrypted even with SPREADEDGE_BACKUP_PASSPHRASE set, and an empty
    # SPREADEDGE_BACKUP_PASSPHRASE_ENV is what an unset variable in a compose file gives
    if "passphrase_env" in merged and not _ENV_NAME.fullmatch(merged["passphrase_env"]):
        raise SettingsError(
            "backup passphrase_env must be the name of an environment variable (letters, digits and '_', "
            f"not starting with a digit), got {merged['passphrase_env']!r}"
        )
    for name in ("repo_path", "dump_dir"):
        if merged.get(name):
            # why the file's directory: the working directory differs between runs, and the cron
            # entries of `backup schedule` run in the user's home, so `dump_dir = "dumps"` put the
            # scheduled dumps somewhere else than the ones run from the project
            from_env = env.get(f"SPREADEDGE_BACKUP_{name.upper()}") is not None
            merged[name] = (Path(merged[name]) if from_env else file_dir / merged[name]).resolve()
    return BackupSettings(**merged)


_NOTIFY_INTEGERS = ("smtp_port", "max_attempts", "batch_size")
# Upper bounds of the notify numbers: backoffs at most a year, the timeout at most an hour and
# max_attempts at most 1000. why: beyond some bound a value crashes the worker on the first
# failed delivery, and again on the same message after every restart: a backoff past ~290,000
# years overflows the timestamp of the next attempt (22008), past ~2.7 million years Python's
# timedelta; a timeout past ~290 years Python's clock (OverflowError); max_attempts past 2^31 - 1
# the integer parameter of monitor.fail_notification (42883). The bounds sit far below those
# limits, at the most an operator could mean.
_YEAR_SECONDS = 365 * 24 * 3600
_NOTIFY_SECONDS = {
    "backoff_seconds": _YEAR_SECONDS,
    "max_backoff_seconds": _YEAR_SECONDS,
    "timeout_seconds": 3600,
}
_NOTIFY_NUMBERS = tuple(_NOTIFY_SECONDS)
_NOTIFY_CEILINGS = {"max_attempts": 1000}
NOTIFY_URLS = ("slack_webhook_url", "discord_webhook_url", "webhook_url")


def is_http_url(value: str) -> bool:
    """Whether a channel URL is http(s) with a host and no whitespace or control character.

    Checked when settings are loaded (and again when channels are configured) so that urllib never
    meets a URL it refuses: its errors quote the URL, and the Slack and Discord URLs are secrets.
    """
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in value):
        return False
    try:
        parts = urllib.parse.urlsplit(value)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def not_http_url_message(source: str) -> str:
    """The error for a channel URL that is not http(s); it never quotes the value (a secret)."""
    return (
        f"{source} is not an http(s) URL: it needs http:// or https://, a host and no spaces or "
        "control characters (the value is not shown)"
    )


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _boolean(name: str, value: Any) -> bool:
    """A TOML boolean, or one of the words for true or false (environment variables are text).

    why refuse the rest: a typo (SPREADEDGE_SMTP_STARTTLS=ture) read as false would send the SMTP
    password in the clear.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise SettingsError(f"{name} must be true or false (1/0, yes/no, on/off), got {value!r}")


def _is_loopback(host: str) -> bool:
    """Whether an SMTP host is this machine: localhost or a loopback address (127.0.0.0/8, ::1)."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _refuse_login_in_the_clear(merged: dict[str, Any]) -> None:
    """Refuse smtp_username without smtp_starttls when the SMTP host is another machine.

    why: smtplib logs in on a plain connection when told to, so the password would cross the
    network in the clear (AUTH PLAIN is base64, not encryption). A loopback host is allowed: the
    password never leaves the machine (a local relay, or a tunnel such as stunnel that does TLS).
    """
    host = merged.get("smtp_host")
    if merged.get("smtp_username") and not merged.get("smtp_starttls") and host and not _is_loopback(host):
        raise SettingsError(
            f"smtp_username is set but smtp_starttls is not: the SMTP password would be sent to {host} "
            "in the clear; set smtp_starttls = true (or use a relay on localhost)"
        )


def _is_one_address(value: str) -> bool:
    """Whether a text is one email address (``ops@desk.test`` or ``Ops <ops@desk.test>``).

    why: a value with a line break, or two addresses run together, makes every email fail to be
    built or sent; found only when a risk alert is due, it would go to the dead letter unread.
    """
    if any((char.isspace() and char != " ") or unicodedata.category(char) == "Cc" for char in value):
        return False
    return bool(parseaddr(value)[1])


def _notify_from(values: dict[str, Any], env: dict[str, str]) -> NotifySettings:
    known = _field_names(NotifySettings)
    merged = _section("notify", values, known, env)
    _positive_integers(merged, _NOTIFY_INTEGERS)
    if "smtp_port" in merged and merged["smtp_port"] > 65535:
        raise SettingsError(f"smtp_port must be a port between 1 and 65535, got {merged['smtp_port']}")
    for name, ceiling in _NOTIFY_CEILINGS.items():
        if name in merged and merged[name] > ceiling:
            raise SettingsError(f"{name} must be at most {ceiling}, got {merged[name]}")
    for name, ceiling in _NOTIFY_SECONDS.items():
        if name in merged:
            value = merged[name]
            try:
                if isinstance(value, bool):
                    raise TypeError(value)
                merged[name] = float(value)
            except (TypeError, ValueError) as exc:
                raise SettingsError(f"{name} must be a number of seconds, got {value!r}") from exc
            # written as a negated range so that NaN, which compares false with everything, fails it
            if not 0 <= merged[name] <= ceiling:
                raise SettingsError(f"{name} must be from 0 to {ceiling:g} seconds, got {value!r}")
    # why: a timeout of 0 puts the socket in non-blocking mode, where every delivery fails at once
    if merged.get("timeout_seconds") == 0:
        raise SettingsError("timeout_seconds must be more than zero seconds, got 0")
    if "smtp_starttls" in merged:
        merged["smtp_starttls"] = _boolean("smtp_starttls", merged["smtp_starttls"])
    if isinstance(merged.get("email_to"), str):
        merged["email_to"] = [part.strip() for part in merged["email_to"].split(",") if part.strip()]
    if "email_to" in merged:
        if not isinstance(merged["email_to"], list) or not all(
            isinstance(to, str) for to in merged["email_to"]
        ):
            raise SettingsError(f"email_to must be a list of addresses, got {merged['email_to']!r}")
        for to in merged["email_to"]:
            if not _is_one_address(to):
                raise SettingsError(f"email_to must be a list of email addresses, got {to!r}")
        merged["email_to"] = tuple(merged["email_to"])
    for name in ("smtp_host", "smtp_username", "email_from"):
        if name in merged and merged[name] is not None and not isinstance(merged[name], str):
            raise SettingsError(f"{name} must be a string, got {merged[name]!r}")
    if merged.get("email_from") and not _is_one_address(merged["email_from"]):
        raise SettingsError(f"email_from must be an email address, got {merged['email_from']!r}")
    # why apart, and without the value: these are secrets; a TOML number (an unquoted numeric
    # password) would otherwise reach the worker, whose redactor fails on it with a TypeError
    for name in ("smtp_password", "webhook_secret"):
        if merged.get(name) is not None and not isinstance(merged[name], str):
            raise SettingsError(
                f"[notify] {name} must be a string (quote it in the file); the value is not shown"
            )
    # why email_from apart: it has a default and no "none"; None would go out as "From: None"
    if merged.get("email_from") == "":
        del merged["email_from"]
    for name in known - {*_NOTIFY_INTEGERS, *_NOTIFY_NUMBERS, "smtp_starttls", "email_to", "email_from"}:
        if merged.get(name) == "":
            merged[name] = None
    for name in NOTIFY_URLS:
        value = merged.get(name)
        if value is not None and not (isinstance(value, str) and is_http_url(value)):
            variable = f"SPREADEDGE_{name.upper()}"
            source = variable if variable in env else f"[notify] {name}"
            raise SettingsError(not_http_url_message(source))
    _refuse_login_in_the_clear(merged)
    return NotifySettings(**merged)


SECTIONS = ("cluster", "render", "notify", "backup")


def _read_file(named: str | None, default: Path) -> dict[str, Any]:
    """The settings file as a dict: the file SPREADEDGE_SETTINGS names (SettingsError when it does
    not exist), else spreadedge.toml in the project (nothing when it does not exist)."""
    path = Path(named) if named is not None else default
    if not path.exists():
        # why refuse a named one: its values would silently be the defaults, rendered into
        # migrations (and frozen there) and leaving [notify] empty; the project's own file is optional
        if named is not None:
            raise SettingsError(f"SPREADEDGE_SETTINGS names {path}, which does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise SettingsError(f"cannot read the settings file {path}: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise SettingsError(
            f"{path}: unknown section(s) or setting(s) outside a section: {', '.join(unknown)} "
            f"(the sections are {', '.join(f'[{name}]' for name in SECTIONS)})"
        )
    return data


def load_settings(project_dir: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read defaults, the settings file and the environment into one Settings."""
    env = dict(os.environ) if env is None else env
    project = (project_dir or Path(env.get("SPREADEDGE_PROJECT_DIR", Path.cwd()))).resolve()
    named = env.get("SPREADEDGE_SETTINGS") or None
    data = _read_file(named, project / SETTINGS_FILE)
    file_dir = Path(named).resolve().parent if named is not None else project
    render = _render_from(data.get("render", {}), env)
    notify = _notify_from(data.get("notify", {}), env)
    cluster = _section("cluster", data.get("cluster", {}), {"port"}, env)
    port_source = "SPREADEDGE_PORT" if "SPREADEDGE_PORT" in env else "[cluster] port"
    port = _integer(port_source, cluster.get("port", DEFAULT_PORT))
    if not 1 <= port <= 65535:
        raise SettingsError(f"{port_source} must be a port between 1 and 65535, got {port}")
    home_text = env.get("SPREADEDGE_HOME") or None
    home = Path(home_text) if home_text is not None else project / ".spreadedge"
    return Settings(
        project_dir=project,
        database_url=env.get("DATABASE_URL") or None,
        # why the code's SQL when the project has no migrations of its own: an installed spreadedge
        # run from a trading application's or an operator's directory refused every command that
        # reads them
        sql_dir=None if holds_sql_migrations(project / "migrations") else code_sql_dir(),
        home=home.resolve(),
        port=port,
        render=render,
        backup=_backup_from(data.get("backup", {}), env, file_dir),
        notify=notify,
    )
