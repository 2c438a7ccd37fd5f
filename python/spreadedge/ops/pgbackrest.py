"""pgBackRest for the cluster: configuration, stanza, backups, info, verify, expire, restore.

Everything pgBackRest needs lives in one work directory (``backup/`` under the cluster home, or
the fallback the embedded cluster uses when its user cannot reach the home): ``pgbackrest.conf``
(mode 0600, owned by the server's user, because the server's ``archive_command`` reads it too),
``repo/``, ``log/`` and ``lock/``. When we are root, pgBackRest runs as the server's system user.

``init`` never replaces a working configuration with one that does not work: the new file is
written beside it, the stanza is created with it (which fails on a wrong passphrase for an existing
encrypted repository), and only then does it replace the old one; if anything after that fails
(WAL archiving does not reach the repository), the old file is put back as it was. A mistyped
passphrase therefore cannot break the server's ``archive_command``.

The repository passphrase comes from the environment variable the settings name. ``init`` writes
it into the 0600 configuration file (the server's archive-push needs it and has no other way to
get it); later commands give pgBackRest the variable's value, when set, through pgBackRest's own
environment variable, so it takes precedence over the file and a wrong one fails clearly. It never
goes on a command line, into a log or into an error message.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from spreadedge import interrupts, pooler, runas
from spreadedge.cluster import Cluster
from spreadedge.ops import OpsError
from spreadedge.settings import BackupSettings, Settings

PGBACKREST = os.environ.get("SPREADEDGE_PGBACKREST", "pgbackrest")
BACKUP_TYPES = ("full", "diff", "incr")
CIPHER_VARIABLE = "PGBACKREST_REPO1_CIPHER_PASS"
# pgBackRest's error codes and messages that mean the passphrase does not open the repository; the
# last: an info file (which pgBackRest writes and keeps a copy of) that does not parse, because the
# wrong key decrypted it to garbage, or ciphertext was read as text without a passphrase
_CRYPTO_ERRORS = re.compile(
    r"\[(095|096)\]|unable to (decrypt|open).*(cipher|encrypt)|CryptoError"
    r"|unable to load info file.*\n\s*FormatError:",
    re.I,
)
WRONG_PASSPHRASE = "the repository passphrase is wrong or missing (it cannot decrypt the repository)"
LOCKED = (
    "another pgBackRest command (a backup or expire) of the stanza is running: run this when it has ended"
)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%\)")
# How long a backup waits for its WAL to reach the repository (pgBackRest's archive-timeout)
ARCHIVE_TIMEOUT = timedelta(minutes=2)


@dataclass(frozen=True)
class Server:
    """What pgBackRest needs to know about the running server, as the server reports it."""

    data_dir: Path
    port: int
    socket_dir: str
    user: str


def refuse_non_superuser(conn: psycopg.Connection[Any]) -> None:
    """Refuse (OpsError) to configure pgBackRest as a role that is not a superuser, before anything.

    why: as a database owner that is not a superuser (a managed service, a DBA's database), backup
    init created the stanza in the repository, then failed on ALTER SYSTEM SET archive_mode with
    "permission denied" and a hint to connect as the database owner, which the role was; a stanza
    was left behind for a server whose WAL never reached it
    """
    row = conn.execute(
        "select r.rolname, r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user"
    ).fetchone()
    if row is None or row[1]:
        return
    raise OpsError(
        f"spreadedge backup init refused, nothing was changed: the role {row[0]} is not a superuser, "
        "and physical backups need one: init sets archive_mode and archive_command (ALTER SYSTEM) "
        "and reloads the server's configuration, and pgBackRest connects as the role init runs as "
        "to start and stop every backup and switch WAL files\n"
        "run spreadedge backup init once with DATABASE_URL naming a superuser, on the machine that "
        "holds the data directory (pgbackrest.conf then names that role: backup full, diff, incr, "
        "verify and expire connect as it); logical dumps need no superuser (spreadedge backup logical)"
    )


def server_of(conn: psycopg.Connection[Any]) -> Server:
    """Data directory, port, socket directory and user of the server ``conn`` talks to (superuser)."""
    row = conn.execute(
        "select current_setting('data_directory'), current_setting('port')::integer,"
        " split_part(current_setting('unix_socket_directories'), ',', 1), current_user"
    ).fetchone()
    assert row is not None
    return Server(Path(row[0]), int(row[1]), row[2].strip(), row[3])


@dataclass(frozen=True)
class Repository:
    """pgBackRest's files for these settings."""

    settings: BackupSettings
    work_dir: Path

    @property
    def config_file(self) -> Path:
        return self.work_dir / "pgbackrest.conf"

    @property
    def repo_path(self) -> Path:
        return self.settings.repo_path or self.work_dir / "repo"

    @property
    def configured(self) -> bool:
        return self.config_file.exists()

    def compress_type(self) -> str:
        """The compress-type the written configuration uses (the settings' before init)."""
        if self.configured:
            for line in self.config_file.read_text().splitlines():
                if line.startswith("compress-type="):
                    return line.split("=", 1)[1].strip()
        return self.settings.compress_type

    def archive_command(self) -> str:
        """The server's archive_command: pgBackRest pushes each WAL segment to the repository."""
        return (
            " ".join(
                shlex.quote(part)
                for part in (PGBACKREST, f"--config={self.config_file}", f"--stanza={self.settings.stanza}")
            )
            + " archive-push %p"
        )


def repository(settings: Settings) -> Repository:
    """The pgBackRest files of the cluster these settings point at."""
    work_dir = settings.home / "backup"
    if not runas.can_reach(settings.home):
        work_dir = Cluster(settings.home, settings.port).fallback_base() / "backup"
    return Repository(settings.backup, work_dir)


def passphrase(settings: BackupSettings) -> str | None:
    """The repository passphrase from the environment, or None when the variable is unset or empty.

    OpsError (naming the variable, never the value) when pgbackrest.conf could not hold it as it
    is: pgBackRest trims the white space around a value and a line ends at a line break, so the
    server's archive-push would read another passphrase than the one the repository was made with.
    """
    secret = os.environ.get(settings.passphrase_env) or None
    if secret is not None and (secret != secret.strip() or any(not c.isprintable() for c in secret)):
        raise OpsError(
            f"{settings.passphrase_env} must not begin or end with white space nor hold line breaks"
            " or control characters (pgbackrest.conf cannot keep such a passphrase as it is)"
        )
    return secret


# -- running pgBackRest ------------------------------------------------------------------------


def run(
    repo: Repository,
    *args: str,
    on_line: Callable[[str], None] | None = None,
    stanza: bool = True,
    config: Path | None = None,
) -> str:
    """Run a pgBackRest command as the server's user; its standard output, or OpsError.

    ``on_line`` receives each line of output as it comes (for progress); ``config`` is a
    configuration file to use instead of the repository's (init's new one, before it is in place).
    """
    if config is None and not repo.configured:
        raise OpsError(
            f"pgBackRest is not configured ({repo.config_file} is missing): run `spreadedge backup init`"
        )
    command = [PGBACKREST, f"--config={config or repo.config_file}"]
    if stanza:
        command.append(f"--stanza={repo.settings.stanza}")
    env = dict(os.environ)
    secret = passphrase(repo.settings)
    env.pop(CIPHER_VARIABLE, None)
    if secret is not None:
        env[CIPHER_VARIABLE] = secret
    with subprocess.Popen(
        runas.command([*command, *args]),
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        encoding="utf-8",
        # a wrong passphrase decrypts to bytes that are not text
        errors="replace",
        env=env,
    ) as process:
        assert process.stdout is not None
        lines = []
        try:
            for line in process.stdout:
                lines.append(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            returncode = process.wait()
        except BaseException:
            interrupts.stop_children(process)  # an interrupt: pgBackRest never left running on
            raise
    output = "".join(lines)
    if returncode != 0:
        raise OpsError(_failure(args[0] if args else "pgbackrest", output, secret))
    return output


def _failure(action: str, output: str, secret: str | None) -> str:
    """A short reason from pgBackRest's output (its errors with their causes): printable, any
    secret taken out."""
    # why the causes: "unable to load info file '...' or '...':" ended the message, the reason
    # (Permission denied, a missing file) on the lines after it left out
    errors = _error_lines(output)
    # the whole output: the cause and pgBackRest's hints follow the ERROR line
    wrong_passphrase = _CRYPTO_ERRORS.search(_printable(output)) is not None
    if wrong_passphrase:
        # below its ERROR lines is what the wrong key decrypted an info file to
        errors = [line for line in errors if "ERROR:" in line]
    reason = _printable("\n".join(errors or output.strip().splitlines()[-3:]))
    if secret:
        reason = reason.replace(secret, "***")
    if wrong_passphrase:
        return f"pgBackRest {action} failed: {WRONG_PASSPHRASE}\n{reason}"
    # why: a second backup while one runs failed with only "unable to acquire lock on file ...:
    # Resource temporarily unavailable", which does not say that another command holds it
    # (pgBackRest's own hint says so only when the lock is held, not when its file cannot be opened)
    if "ERROR: [050]:" in output and "is another pgBackRest process running?" in output:
        return f"pgBackRest {action} failed: {LOCKED}\n{reason}"
    return f"pgBackRest {action} failed:\n{reason}"


def _error_lines(output: str) -> list[str]:
    """pgBackRest's ERROR lines, each with the causes indented below it (not its HINT lines, which
    speak of pgBackRest's options, not of spreadedge's commands)."""
    lines: list[str] = []
    in_error = False
    for line in output.splitlines():
        if "ERROR:" in line:
            in_error = True
            lines.append(line.strip())
        elif in_error and line[:1].isspace() and line.strip():
            if not line.strip().startswith("HINT:"):
                lines.append(line.strip())
        else:
            in_error = False
    return lines


def _printable(text: str) -> str:
    """Text with what a wrong passphrase decrypts to (unprintable bytes) cut out, lines cut short."""
    lines = []
    for line in text.splitlines():
        cut = re.split(r"[^\x20-\x7e\t]", line, maxsplit=1)[0]
        lines.append(cut[:300] + (" ..." if cut != line or len(cut) > 300 else ""))
    return "\n".join(lines)


# -- init --------------------------------------------------------------------------------------


def configure(
    repo: Repository, server: Server, secret: str | None, start_archiving: Callable[[], bool]
) -> bool:
    """Configure pgBackRest, keeping the working configuration unless the new one works.

    The new pgbackrest.conf is written beside the current one and the stanza created with it
    (on an existing repository this proves the passphrase opens it); then it replaces the current
    one, ``start_archiving`` runs (archive_command and archive_mode; False when the server must be
    restarted before archiving is on) and pgBackRest checks that WAL reaches the repository. On any
    failure the previous file is back in place, byte for byte (or none, when there was none), so
    the server's archive_command keeps working. True when checked; False when ``start_archiving``
    said archiving is not on yet (the new file stays: it opened the repository).
    """
    for path in (repo.work_dir, repo.repo_path, *(repo.work_dir / name for name in ("log", "lock", "spool"))):
        runas.make_private_dir(path)
    candidate = repo.config_file.with_name(repo.config_file.name + ".new")
    try:
        _write_private(candidate, _config_text(repo, server, secret))
        run(repo, "stanza-create", config=candidate)
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    previous = repo.config_file.with_name(repo.config_file.name + ".previous")
    previous.unlink(missing_ok=True)
    had_previous = repo.configured
    if had_previous:
        os.link(repo.config_file, previous)  # the same file: its bytes, mode and owner
    try:
        candidate.replace(repo.config_file)
        if not start_archiving():
            return False
        run(repo, "check")
    except BaseException:
        if had_previous:
            previous.replace(repo.config_file)
        else:
            repo.config_file.unlink(missing_ok=True)
        raise
    finally:
        candidate.unlink(missing_ok=True)
        with suppress(FileNotFoundError):
            previous.unlink()
    return True


def _config_text(repo: Repository, server: Server, secret: str | None) -> str:
    """pgbackrest.conf for the repository and the server."""
    lines = [
        "# Written by spreadedge backup init: run it again to change these settings.",
        "[global]",
        f"repo1-path={repo.repo_path}",
        f"repo1-retention-full={repo.settings.retention_full}",
        f"repo1-retention-diff={repo.settings.retention_diff}",
        f"compress-type={repo.settings.compress_type}",
        f"log-path={repo.work_dir / 'log'}",
        f"lock-path={repo.work_dir / 'lock'}",
        f"spool-path={repo.work_dir / 'spool'}",
        "log-level-console=warn",
        "log-level-file=info",
        "start-fast=y",
        f"archive-timeout={int(ARCHIVE_TIMEOUT.total_seconds())}",
    ]
    if secret is not None:
        lines += ["repo1-cipher-type=aes-256-cbc", f"repo1-cipher-pass={secret}"]
    lines += [
        "",
        f"[{repo.settings.stanza}]",
        f"pg1-path={server.data_dir}",
        f"pg1-port={server.port}",
        f"pg1-socket-path={server.socket_dir}",
        f"pg1-user={server.user}",
    ]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write a new file of mode 0600, owned by the server's user (it may hold the passphrase)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    runas.give(path)


def enable_archiving(conn: psycopg.Connection[Any], repo: Repository) -> bool:
    """Point archive_command at pgBackRest and turn archive_mode on (ALTER SYSTEM, reload).

    True when the server must restart for archive_mode to take effect.
    """
    for name, value in (("archive_mode", "on"), ("archive_command", repo.archive_command())):
        # as given behind a pooler too: ALTER SYSTEM refuses a transaction block (25001)
        with pooler.unpinned(conn):
            conn.execute(sql.SQL("alter system set {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    conn.execute("select pg_reload_conf()")
    row = conn.execute("select current_setting('archive_mode')").fetchone()
    return row is None or row[0] != "on"


# -- backups and what the repository holds -------------------------------------------------------


@dataclass(frozen=True)
class BackupInfo:
    """One backup of the repository, as pgBackRest info reports it."""

    label: str
    type: str
    started_at: datetime
    stopped_at: datetime
    size_bytes: int
    repo_size_bytes: int
    wal_start: str
    wal_stop: str


def backup(repo: Repository, kind: str, progress: Callable[[float], None] | None = None) -> BackupInfo:
    """Take a full, differential or incremental backup; the new backup's info.

    ``progress`` receives the share done (0-100) as pgBackRest reports files copied.
    """
    if kind not in BACKUP_TYPES:
        raise OpsError(f"backup type must be one of {', '.join(BACKUP_TYPES)}, got {kind!r}")

    def on_line(line: str) -> None:
        match = _PERCENT.search(line)
        if match and progress is not None:
            progress(float(match.group(1)))

    run(repo, "backup", f"--type={kind}", "--log-level-console=detail", on_line=on_line)
    backups = info(repo)
    if not backups:
        raise OpsError("pgBackRest reported no backup after a successful backup command")
    return backups[-1]


def info(repo: Repository) -> list[BackupInfo]:
    """Every backup of the stanza, oldest first."""
    output = run(repo, "info", "--output=json")
    # strict=False: a wrong passphrase puts undecryptable bytes into the error messages
    stanzas = json.loads(output, strict=False)
    backups = []
    for stanza in stanzas:
        _check_readable(stanza)
        for item in stanza.get("backup", []):
            backups.append(
                BackupInfo(
                    label=item["label"],
                    type=item["type"],
                    started_at=datetime.fromtimestamp(item["timestamp"]["start"]).astimezone(),
                    stopped_at=datetime.fromtimestamp(item["timestamp"]["stop"]).astimezone(),
                    size_bytes=int(item["info"]["size"]),
                    repo_size_bytes=int(item["info"]["repository"]["delta"]),
                    wal_start=item["archive"]["start"],
                    wal_stop=item["archive"]["stop"],
                )
            )
    return backups


def _check_readable(stanza: dict[str, Any]) -> None:
    """OpsError when pgBackRest could not read the stanza's repository (it still exits 0)."""
    status = stanza.get("status", {})
    if status.get("code", 0) in (0, 2):  # 2: no backup yet
        return
    messages = " ".join(str(repo.get("status", {}).get("message", "")) for repo in stanza.get("repo", []))
    # why not every info file that does not load: one the server's user may not read (the
    # repository's permissions changed) was reported as a wrong passphrase
    if _CRYPTO_ERRORS.search(messages) and stanza.get("cipher", "none") != "none":
        raise OpsError(f"pgBackRest info failed: {WRONG_PASSPHRASE}")
    reason = _printable(messages or status.get("message", ""))
    raise OpsError(f"pgBackRest info failed: stanza {stanza.get('name')}: {reason}")


def verify(repo: Repository) -> str:
    """pgBackRest verify: every file of the repository (backups and WAL) against its checksum."""
    output = run(repo, "verify", "--log-level-console=info")
    if re.search(r"status: error", output):
        problems = _printable(
            "\n".join(
                line.strip()
                for line in output.splitlines()
                if "No usable" in line or "invalid" in line or "missing" in line
            )
        )
        if "No usable backup.info" in output and "cipher-type" in output:
            raise OpsError(f"pgBackRest verify failed: {WRONG_PASSPHRASE}\n{problems}")
        raise OpsError(f"pgBackRest verify found errors:\n{problems}")
    return output


def expire(repo: Repository) -> str:
    """Apply the retention settings: expire old backups and the WAL only they needed."""
    return run(repo, "expire", "--log-level-console=info")


# -- restore -----------------------------------------------------------------------------------

# The file a restore leaves in the new home: the first `db start` checks the master key in use
# against the restored API keys, then removes it (cli_ops.finish_restore). It holds no secret.
RESTORE_MARKER = "restore-pending"
_RESTORE_MARKER_TEXT = (
    "# Written by spreadedge restore: the first `spreadedge db start` of this home checks the master\n"
    "# key in use against the restored API keys, then removes this file.\n"
)


def restore_marker(target: Cluster) -> Path:
    """The file that says ``target``'s home was restored and its master key not checked yet."""
    return target.home / RESTORE_MARKER


def restore(
    repo: Repository | Callable[[], Repository],
    target: Cluster,
    target_time: datetime | None,
    backup_set: str | None,
) -> None:
    """Restore into ``target``'s home (a new or empty directory), to ``target_time`` when given.

    The restored cluster recovers from the repository's WAL when it first starts, then promotes;
    its archiving is off, so it never pushes WAL into the stanza it came from. ``Cluster.start``
    returns once recovery has ended; the home's marker (``restore_marker``) has the first
    ``db start`` check the master key. Nothing is written into a home that holds anything, and
    what a failed restore wrote is removed, so it can be run again into the same directory.
    ``repo`` may be a function that sets the repository up once the home exists (``restore_from``).
    """
    home = target.home
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise OpsError(f"{home} is not empty: restore into a new (or empty) directory")
    home_existed = home.exists()
    fallback_existed = target.fallback_base().exists()
    data_dir = target.data_dir
    try:
        if not isinstance(repo, Repository):
            home.mkdir(parents=True, exist_ok=True)
            repo = repo()
        if target_time is not None or backup_set is not None:
            check_target(info(repo), target_time, backup_set)
        target.prepare_dirs()
        args = ["restore", f"--pg1-path={data_dir.resolve()}", "--archive-mode=off"]
        if target_time is not None:
            stamp = target_time.isoformat(sep=" ")
            args += ["--type=time", f"--target={stamp}", "--target-action=promote"]
        if backup_set is not None:
            args.append(f"--set={backup_set}")
        run(repo, *args)
        # why: the API keys came back encrypted under a master key no backup holds; a home whose
        # key is another one (rotated since, or missing) started quietly and its API keys failed
        # to decrypt later, so its first start checks the key
        restore_marker(target).write_text(_RESTORE_MARKER_TEXT)
    except BaseException:
        _remove_restored(target, home_existed, fallback_existed)
        raise


def check_target(
    backups: list[BackupInfo],
    target_time: datetime | None,
    backup_set: str | None,
    now: datetime | None = None,
) -> None:
    """OpsError unless recovery from these backups can reach ``target_time`` (and ``backup_set``).

    PostgreSQL stops replaying at the first commit after the target time, but never before the
    end of the backup it starts from: a target in the future fails the restored cluster's start
    ("recovery ended before configured recovery target was reached"), and a backup that ended
    after the target would silently come back as of its own end, later than asked.
    """
    chosen = None
    if backup_set is not None:
        chosen = next((b for b in backups if b.label == backup_set), None)
        if chosen is None:
            raise OpsError(f"no backup {backup_set} in the repository (see spreadedge backup list)")
    if target_time is None:
        return
    current = now or datetime.now(UTC)
    if target_time > current:
        raise OpsError(
            f"--target-time {target_time.isoformat()} is in the future"
            f" (now {current.isoformat(timespec='seconds')}): recovery could never reach it;"
            " leave --target-time out to restore to the end of the archived WAL"
        )

    def ended_before(backup: BackupInfo) -> bool:
        # pgBackRest keeps the stop time in whole seconds: the backup ended within that second
        return backup.stopped_at + timedelta(seconds=1) <= target_time

    if chosen is not None and not ended_before(chosen):
        raise OpsError(
            f"backup {chosen.label} ended at {chosen.stopped_at.astimezone(UTC).isoformat()}, not before"
            f" --target-time {target_time.isoformat()}: it cannot be restored to an earlier time;"
            " leave --set out to use the newest backup that ended before it"
        )
    if chosen is None and not any(ended_before(b) for b in backups):
        first = (
            f"the first one ended at {backups[0].stopped_at.astimezone(UTC).isoformat()}"
            if backups
            else "the repository holds no backup"
        )
        raise OpsError(f"no backup ended before --target-time {target_time.isoformat()}: {first}")


def _remove_restored(target: Cluster, home_existed: bool, fallback_existed: bool) -> None:
    """Remove what a failed restore wrote: the home it created (or the empty home's new contents)."""
    if not fallback_existed:
        shutil.rmtree(target.fallback_base(), ignore_errors=True)
    if not home_existed:
        shutil.rmtree(target.home, ignore_errors=True)
        return
    for path in target.home.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def copy_password(source_home: Path, target: Cluster) -> None:
    """Give the restored cluster the source cluster's password file (the roles came with it)."""
    source = source_home / "password"
    if source.exists():
        shutil.copy2(source, target.password_file)
        target.password_file.chmod(0o600)


# -- restore from the repository alone (a new machine) -------------------------------------------

# The restored home's directory of pgBackRest's files for its recovery, when restored from a
# repository directory alone; the first `db start` removes it once recovery has ended.
RESTORE_WORK_DIR = "restore"
# the first bytes of an info file: pgBackRest's INI text, or OpenSSL's salted ciphertext
_PLAIN_INFO = b"[backrest]"
_ENCRYPTED_INFO = b"Salted__"


def restore_work_dir(target: Cluster) -> Path:
    """Where a restore from a repository directory keeps pgBackRest's files in ``target``'s home
    (the fallback, as for the cluster, when the server's user cannot reach the home)."""
    if runas.can_reach(target.home):
        return target.home / RESTORE_WORK_DIR
    return target.fallback_base() / RESTORE_WORK_DIR


def find_stanza(path: Path, preferred: str) -> tuple[str, bool]:
    """The stanza the pgBackRest repository directory ``path`` holds, and whether it is encrypted.

    ``preferred`` (the settings' stanza) when the repository holds it, else its only stanza.
    OpsError, saying what to give instead, when ``path`` is no repository the server can read.
    """
    where = (
        "give the repository directory (repo1-path of the lost pgbackrest.conf;"
        " backup/repo under its home by default)"
    )
    if not path.exists():
        raise OpsError(f"no pgBackRest repository at {path}: it does not exist; {where}")
    if not path.is_dir():
        raise OpsError(f"no pgBackRest repository at {path}: it is not a directory; {where}")
    try:
        stanzas = sorted({info_file.parent.name for info_file in (path / "backup").glob("*/backup.info*")})
    except OSError as exc:
        raise OpsError(f"cannot read the repository {path}: {exc.strerror}") from None
    if not stanzas:
        raise OpsError(
            f"no pgBackRest repository at {path}: it holds no backup/<stanza>/backup.info; {where}"
        )
    if preferred in stanzas:
        stanza = preferred
    elif len(stanzas) == 1:
        stanza = stanzas[0]
    else:
        raise OpsError(
            f"the repository {path} holds the stanzas {', '.join(stanzas)}, not {preferred}:"
            " name the one to restore with SPREADEDGE_BACKUP_STANZA"
        )
    directory = path / "backup" / stanza
    info_file = next(f for f in (directory / "backup.info", directory / "backup.info.copy") if f.exists())
    try:
        with info_file.open("rb") as f:
            head = f.read(len(_PLAIN_INFO))
    except OSError as exc:
        raise OpsError(f"cannot read the repository {path}: {exc.strerror} ({info_file})") from None
    if not head.startswith((_PLAIN_INFO, _ENCRYPTED_INFO)):
        raise OpsError(f"no pgBackRest repository at {path}: {info_file} is not a pgBackRest info file")
    # why: as root pgBackRest runs as the server's user, which cannot read a copy root made
    # (pgBackRest said only "unable to open ... Permission denied" for some file)
    archive = path / "archive" / stanza
    if not runas.can_read(info_file) or (archive.exists() and not runas.can_reach(archive)):
        raise OpsError(
            f"the server's user {runas.RUN_USER} cannot read the repository {path}:"
            f" give it the repository (chown -R {runas.RUN_USER} {path})"
        )
    return stanza, head.startswith(_ENCRYPTED_INFO)


def restore_from(
    path: Path,
    settings: BackupSettings,
    target: Cluster,
    target_time: datetime | None,
    backup_set: str | None,
) -> str:
    """Restore into ``target`` from the pgBackRest repository directory ``path`` alone (the lost
    home's pgbackrest.conf is not needed); the stanza restored.

    pgBackRest's configuration for it (the passphrase of an encrypted repository included: the
    server's archive-get reads it while the restored cluster recovers) is written into the new
    home's ``restore/`` (mode 0600, the server's user's), which the first ``db start`` removes.
    OpsError, writing nothing, when the repository holds no backup or cannot be opened.
    """
    path = path.absolute()
    stanza, encrypted = find_stanza(path, settings.stanza)
    secret = passphrase(settings)
    if encrypted and secret is None:
        raise OpsError(f"the repository {path} is encrypted: set {settings.passphrase_env} to its passphrase")

    def setup() -> Repository:
        work_dir = restore_work_dir(target)
        repo = Repository(replace(settings, stanza=stanza, repo_path=path), work_dir)
        for directory in (work_dir, *(work_dir / name for name in ("log", "lock", "spool"))):
            runas.make_private_dir(directory)
        _write_private(repo.config_file, _restore_config_text(repo, target, secret if encrypted else None))
        if not info(repo):
            raise OpsError(f"the repository {path} holds no backup of stanza {stanza}: nothing to restore")
        return repo

    restore(setup, target, target_time, backup_set)
    return stanza


def _restore_config_text(repo: Repository, target: Cluster, secret: str | None) -> str:
    """pgbackrest.conf for restoring ``target`` from the repository and for its recovery."""
    lines = [
        "# Written by spreadedge restore --repo for the restored cluster's recovery (archive-get):",
        "# the first `spreadedge db start` removes it once the cluster has promoted.",
        "[global]",
        f"repo1-path={repo.repo_path}",
        f"log-path={repo.work_dir / 'log'}",
        f"lock-path={repo.work_dir / 'lock'}",
        f"spool-path={repo.work_dir / 'spool'}",
        "log-level-console=warn",
        "log-level-file=info",
    ]
    if secret is not None:
        lines += ["repo1-cipher-type=aes-256-cbc", f"repo1-cipher-pass={secret}"]
    lines += ["", f"[{repo.settings.stanza}]", f"pg1-path={target.data_dir.resolve()}"]
    return "\n".join(lines) + "\n"
