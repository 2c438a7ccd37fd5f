"""The embedded default cluster: a private PostgreSQL 15 under ``.spreadedge/``.

Without ``DATABASE_URL`` every command runs against this cluster. It has its own port (TCP on
127.0.0.1 only, SCRAM password in ``.spreadedge/password``) and its own socket directory (trust
for the ``spreadedge`` superuser), preloads ``pg_stat_statements`` and ``pg_cron`` and runs in UTC.

PostgreSQL refuses to run as root. When root drives the cluster, initdb, pg_ctl and postgres run
as the unprivileged system user ``spreadedge`` (see ``runas``). If that user cannot reach
``.spreadedge/`` (a clone under ``/root``, which is 0700), the cluster lives in
``/var/lib/spreadedge/<hash>/`` and ``.spreadedge/cluster``, ``run`` and ``postgresql.log`` are
symlinks to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from psycopg import sql
from psycopg.conninfo import make_conninfo

from spreadedge import deadline, interrupts, runas
from spreadedge.settings import Settings

PG_BINDIR = Path(os.environ.get("SPREADEDGE_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "spreadedge"
DATABASE = "spreadedge"
# Where the cluster lives when the server's system user cannot traverse to .spreadedge/.
FALLBACK_ROOT = runas.RUN_USER_HOME
CONFIG_FILE = "spreadedge.conf"
# after a kill -9 of the postmaster, how long start waits for its backends to exit
CRASHED_BACKEND_PATIENCE = 30.0
# how long `db stop` waits for the server to shut down (seconds), unless told otherwise
STOP_PATIENCE = 60


class ClusterError(Exception):
    """The embedded cluster cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class ClusterStatus:
    """A snapshot of the embedded cluster, as ``spreadedge db status`` shows it."""

    initialized: bool
    running: bool
    pid: int | None
    port: int
    data_dir: Path
    socket_dir: Path


class Cluster:
    """A PostgreSQL cluster under ``home``, listening on ``port`` and on a private socket."""

    def __init__(self, home: Path, port: int, server_env: Mapping[str, str] | None = None) -> None:
        self.home = Path(home).resolve()
        self.port = port
        # environment variables added to the server's own (pg_ctl start passes it to postgres):
        # a test's LD_PRELOAD of libfaketime, say; empty for the embedded default
        self.server_env = dict(server_env or {})
        self.data_dir = self.home / "cluster"
        self.socket_dir = self.home / "run"
        self.log_file = self.home / "postgresql.log"
        self.password_file = self.home / "password"
        # the pg_cron jobs the last start pointed at this server: (job, its database, host and
        # port they named)
        self.repointed_cron_jobs: list[tuple[str, str, str, int]] = []
        # the cron.host and port the data directory's configuration named before this start
        # rewrote it (the last start's; a restored cluster's source's): this server's old address
        self._previous_address: tuple[str, int] | None = None
        self._lock_depth = 0

    # -- public interface -------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> bool:
        """Create the cluster unless it exists; True when it was created now."""
        with self._lock():
            if self.initialized:
                return False
            if not (PG_BINDIR / "initdb").exists():
                raise ClusterError(
                    f"PostgreSQL 15 server binaries not found in {PG_BINDIR}; run `make bootstrap`"
                )
            self._prepare_dirs()
            # why: a password file left by an earlier cluster of this home (its data directory
            # deleted, or /var/lib/spreadedge wiped) holds a password the new cluster never had;
            # without the file, start gives the new cluster's superuser one and writes it
            self.password_file.unlink(missing_ok=True)
            self._run(
                PG_BINDIR / "initdb",
                f"--username={SUPERUSER}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                # C.UTF-8 classifies characters properly; C collation keeps text comparison fast.
                "--locale=C.UTF-8",
                "--lc-collate=C",
                f"--pgdata={self.data_dir.resolve()}",
                action="initdb",
            )
            self._ensure_include()
            self._write_config()
            return True

    def start(self) -> bool:
        """Initialize if needed and start the server; True when it was started now."""
        with self._lock():
            self._check_modes()
            status = self.status()
            if status.running:
                self.check_port(status)
                self._check_socket(status.port)
                if not self.password_file.exists():
                    # why: a start cut short once the server ran (Ctrl-C while pg_ctl waited: the
                    # server starts on in its own session) left no database and no password, and
                    # every later start said "already running" and left them missing for good
                    self._finish_start()
                return False
            self._check_port_free()
            self._check_owner()
            self.init()
            self._check_version()
            self._check_paths()
            self._wait_for_crashed_backends()
            # why again: an init interrupted after initdb left postgresql.conf without the include,
            # and the server would start on PostgreSQL's default port 5432 without our settings
            self._ensure_include()
            self._previous_address = self._configured_address()
            self._write_config()
            self._remove_stale_files()
            self._restore_run_files()
            log = self.log_file.resolve()
            try:
                self._run(
                    PG_BINDIR / "pg_ctl",
                    *("start", "-w", "-t", "60", "-D", str(self.data_dir.resolve()), "-l", str(log)),
                    action="pg_ctl start",
                    env=self.server_env,
                )
            except ClusterError as exc:
                raise ClusterError(f"{exc}\n--- last lines of {log} ---\n{_tail(log)}") from None
            self._finish_start()
            return True

    def _finish_start(self) -> None:
        """What a start does once the server runs: wait out recovery, create the database, then
        give the superuser its TCP password. The password file is written last, so its absence
        says a start did not finish (see ``start``)."""
        self._wait_until_writable()
        self.ensure_database(DATABASE)
        self.repointed_cron_jobs = self._repoint_cron_jobs()
        if not self.password_file.exists():
            self._set_password()

    def check_port(self, status: ClusterStatus | None = None) -> None:
        """Refuse (ClusterError) when the cluster runs on another port than ``port``: its URL with
        ``port`` would not connect, and ``start`` cannot move a running server."""
        status = status or self.status()
        if status.running and status.port != self.port:
            raise ClusterError(
                f"the embedded cluster is running on port {status.port}, not {self.port}; "
                "stop it with `spreadedge db stop` to change SPREADEDGE_PORT"
            )

    def prepare_dirs(self) -> None:
        """Create the data and socket directories and the log without initdb (a restore fills them)."""
        with self._lock():
            self._prepare_dirs()

    def fallback_base(self) -> Path:
        """Where this cluster's files live when the server's user cannot reach the home."""
        return self._fallback_base()

    def stop(self, *, immediate: bool = False, timeout: int = STOP_PATIENCE) -> bool:
        """Stop the server; True when it was running.

        A fast shutdown ends every session, then writes a checkpoint. A session that does not end
        (its backend frozen, or stuck in the kernel) holds it: after ``timeout`` seconds,
        ClusterError naming the processes left, while the shutdown goes on. ``immediate`` kills
        the server's processes without a checkpoint; the next start recovers from the WAL, as
        after a crash.
        """
        # why before the lock: taking it creates the home and its cluster.lock, so `db stop` in
        # the wrong directory would leave a .spreadedge/ behind where no cluster ever was
        if not (self.data_dir.exists() or self.data_dir.is_symlink()):
            return False
        with self._lock():
            status = self.status()
            if not status.running:
                return False
            mode = "immediate" if immediate else "fast"
            # why no wait in pg_ctl: after its -t it said only "server does not shut down", in
            # the operator's locale, and not which session held the shutdown or what to do
            self._run(
                PG_BINDIR / "pg_ctl",
                *("stop", "-m", mode, "-W", "-D", str(self.data_dir.resolve())),
                action="pg_ctl stop",
            )
            give_up_at = time.monotonic() + timeout
            while self.status().running:
                if time.monotonic() > give_up_at:
                    raise ClusterError(self._shutdown_stuck(status.pid, mode, timeout))
                time.sleep(0.05)
            return True

    def _shutdown_stuck(self, postmaster: int | None, mode: str, timeout: int) -> str:
        """Why a shutdown has not finished after ``timeout`` s, and what to do."""
        # the checkpointer waits for the others, to write the shutdown checkpoint
        holding = [
            f"{pid} ({title})"
            for pid in sorted(self.server_processes())
            if pid != postmaster and (title := _process_title(pid)) != "checkpointer"
        ]
        waiting = ", ".join(holding[:5]) + (f" and {len(holding) - 5} more" if len(holding) > 5 else "")
        if mode == "immediate":
            hint = f"end them with `kill -KILL {postmaster}` and the pids above"
        else:
            hint = (
                "it goes on in the background; run `spreadedge db stop` again to wait longer, or stop "
                "it now with `spreadedge db stop --immediate` (sessions are killed without a checkpoint, "
                "and the next start recovers from the WAL, as after a crash)"
            )
        return (
            f"the embedded cluster (pid {postmaster}) did not shut down within {timeout} s "
            f"({mode} shutdown), still running: {waiting or 'the postmaster'}; {hint}"
        )

    def status(self) -> ClusterStatus:
        """Whether the cluster exists and runs, and where."""
        pid, port = self._postmaster()
        return ClusterStatus(
            initialized=self.initialized,
            running=pid is not None,
            pid=pid,
            port=port if port is not None else self.port,
            data_dir=self.data_dir.resolve(),
            socket_dir=self.socket_dir.resolve(),
        )

    def url(self, dbname: str = DATABASE) -> str:
        """A libpq URL for ``dbname`` as the superuser, through the private socket."""
        host = quote(str(self.socket_dir.resolve()), safe="")
        return f"postgresql://{SUPERUSER}@/{quote(dbname, safe='')}?host={host}&port={self.port}"

    def conninfo(self, dbname: str = DATABASE) -> str:
        """The same connection as :meth:`url`, as a libpq key/value string."""
        return make_conninfo(
            host=str(self.socket_dir.resolve()), port=self.port, user=SUPERUSER, dbname=dbname
        )

    def ensure_database(self, name: str) -> bool:
        """Create database ``name`` unless it exists; True when it was created now."""
        if not self.status().running:
            raise ClusterError("the embedded cluster is not running; start it with `spreadedge db start`")
        with deadline.connect(self.conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            return True

    def destroy(self) -> bool:
        """Stop the server and delete the cluster, its socket directory, log and password; False
        when the home holds no cluster. ClusterError, deleting nothing, when the home holds a
        ``cluster`` or ``run`` that is not an embedded cluster's (a mistaken SPREADEDGE_HOME)."""
        self._refuse_foreign()  # before the lock, which would leave cluster.lock in a foreign home
        with self._lock():
            self._refuse_foreign()
            found = any(path.exists() or path.is_symlink() for path in (self.data_dir, self.socket_dir))
            if found:
                # why immediate: its data is deleted next, so a session that holds a fast
                # shutdown (a frozen backend) must not make destroy fail after a minute
                self.stop(immediate=True)
                # the data directory last: while it is there, a destroy cut short can be run again
                for path in (self.password_file, self.log_file, self.socket_dir, self.data_dir):
                    if path.is_symlink():
                        path.unlink()
                    elif path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)
            shutil.rmtree(self._fallback_base(), ignore_errors=True)
            self._lock_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.home.rmdir()  # only when nothing else lives there
        return found

    # -- files and programs ------------------------------------------------------------

    def _run(self, *args: str | Path, action: str, env: Mapping[str, str] | None = None) -> str:
        """Run a PostgreSQL program (as the system user when we are root), with ``env`` added to
        our environment; ClusterError if it fails."""
        command = runas.command([str(arg) for arg in args])
        with subprocess.Popen(
            command,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env} if env else None,
        ) as process:
            try:
                stdout, stderr = process.communicate()
            except BaseException:
                # why not subprocess.run's SIGKILL: an interrupted initdb (SIGTERM to the command
                # alone, or as root its runuser killed) went on as an orphan or was killed half
                # done, leaving a data directory with PG_VERSION that the next start took for a
                # cluster; SIGTERM lets initdb remove what it wrote, and it is waited for
                interrupts.stop_children(process)
                raise
        if process.returncode != 0:
            output = (stderr or stdout).strip()
            raise ClusterError(f"{action} failed for the embedded cluster in {self.home}:\n{output}")
        return stdout

    def _prepare_dirs(self) -> None:
        """Create the data and socket directories and the log, owned by whoever runs the server."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._ensure_run_user()
        base = self.home
        unusable = _unusable_path(self.home, self.port)
        if unusable is not None and not runas.is_root():
            raise ClusterError(
                f"the embedded cluster cannot live in {self.home}: {unusable}; "
                "choose another directory with SPREADEDGE_HOME=<dir>"
            )
        if self.data_dir.is_symlink() or not runas.can_reach(self.home) or unusable is not None:
            # why the fallback for a path PostgreSQL cannot take: /var/lib/spreadedge/<hash> is
            # short and plain, and the server only ever sees the resolved paths
            base = self._fallback_base()
            runas.make_private_dir(FALLBACK_ROOT)
            runas.make_private_dir(base)
            for path in (self.data_dir, self.socket_dir, self.log_file):
                if not path.is_symlink():
                    path.symlink_to(base / path.name)
        runas.make_private_dir(base / "cluster")
        runas.make_private_dir(base / "run")
        log = base / "postgresql.log"
        log.touch(mode=0o600)
        runas.give(log)

    def _fallback_base(self) -> Path:
        return FALLBACK_ROOT / hashlib.sha256(str(self.home).encode()).hexdigest()[:16]

    # -- server state -----------------------------------------------------------------------

    def _postmaster(self) -> tuple[int | None, int | None]:
        """Pid and port of this cluster's running postmaster, or (None, None)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, IndexError, ValueError):
            return None, None
        if not _is_postmaster_of(pid, self.data_dir.resolve()):
            return None, None
        return pid, port

    def server_processes(self) -> list[int]:
        """Live postgres processes working in this cluster's data directory: the server's, or after
        a crash the backends of the dead postmaster, which run on until they next wait for something.
        Processes of another user are invisible unless we are root or that user."""
        data_dir = self.data_dir.resolve()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (
                    (entry / "comm").read_text().strip() == "postgres"
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # not a zombie
                    and Path(os.readlink(entry / "cwd")) == data_dir
                ):
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours to look at
        return found

    def _wait_for_crashed_backends(self, patience: float = CRASHED_BACKEND_PATIENCE) -> None:
        """Wait until the backends of a crashed (kill -9) postmaster have exited: PostgreSQL refuses
        to start while they hold the old shared memory."""
        give_up_at = time.monotonic() + patience
        while pids := self.server_processes():
            if time.monotonic() > give_up_at:
                raise ClusterError(
                    f"{len(pids)} postgres processes of a crashed server still run in {self.data_dir} "
                    f"(pids {', '.join(map(str, pids))}) after {patience:.0f} s; they exit once they notice "
                    "the postmaster is gone: wait, or end them, then start again"
                )
            time.sleep(0.05)

    def _check_owner(self) -> None:
        """Refuse (ClusterError) a data directory that does not belong to the user its server
        runs as (runas.RUN_USER for root, else us): PostgreSQL cannot open it."""
        if not (self.data_dir.exists() or self.data_dir.is_symlink()):
            return
        data_dir = self.data_dir.resolve()
        self._ensure_run_user()  # a deleted system user is created again, as on the first run
        server = _server_uid()
        try:
            owner = data_dir.stat().st_uid
        except OSError:
            return  # a dangling fallback link: init creates it again
        if server is None or owner == server:
            return
        paths = " ".join(str(path.resolve()) for path in (self.data_dir, self.socket_dir, self.log_file))
        if runas.is_root():
            fix = f"give its files to that user with `chown -R {runas.RUN_USER}: {paths}`, then start again"
        else:
            fix = (
                "run spreadedge as the data directory's owner (or as root, when root made the "
                f"cluster: its server then runs as {runas.RUN_USER})"
            )
        raise ClusterError(
            f"the embedded cluster's data directory {data_dir} belongs to {_user_name(owner)}, but its "
            f"server runs as {_user_name(server)}, so it cannot start (a .spreadedge/ restored from "
            f"another machine, or the system user re-created?): {fix}"
        )

    def _check_version(self) -> None:
        """Refuse (ClusterError) a data directory made by another PostgreSQL major version."""
        made_by = (self.data_dir / "PG_VERSION").read_text().strip()
        runs = _server_major()
        if made_by == runs:
            return
        if made_by.isdigit() and int(made_by) < int(runs):
            way_out = (
                f"upgrade it with PostgreSQL {runs}'s pg_upgrade (which needs PostgreSQL {made_by}'s "
                "binaries)"
            )
        else:
            way_out = (
                f"no cluster moves to an older PostgreSQL: run it with PostgreSQL {made_by} and copy its "
                f"data out with pg_dump into a new cluster"
            )
        raise ClusterError(
            f"the embedded cluster in {self.home} was made by PostgreSQL {made_by}, and spreadedge runs "
            f"PostgreSQL {runs} ({PG_BINDIR}), which cannot start it: {way_out}; or set SPREADEDGE_HOME to "
            "another directory for a new cluster (`spreadedge db destroy` deletes this one with its data)"
        )

    def _check_modes(self) -> None:
        """Refuse (ClusterError) a data directory others may open (PostgreSQL refuses to start it,
        and anyone could have changed its configuration) and a password file others may read."""
        problems = []
        data_dir = self.data_dir.resolve()
        with contextlib.suppress(OSError):
            mode = data_dir.stat().st_mode & 0o777
            if mode & 0o027:
                problems.append(
                    f"its data directory {data_dir} has mode {mode:04o}, and PostgreSQL starts only a "
                    "data directory others may not open (0700, or 0750); check its configuration files, "
                    f"which anyone could change, and run `chmod -R go-rwx {data_dir}`"
                )
        with contextlib.suppress(OSError):
            mode = self.password_file.stat().st_mode & 0o777
            if mode & 0o077:
                problems.append(
                    f"{self.password_file} has mode {mode:04o}, so other users may have read the "
                    "superuser's password: delete it, and the next `spreadedge db start` gives the "
                    "superuser a new one"
                )
        if problems:
            raise ClusterError(
                f"the embedded cluster in {self.home} is open to other users: " + "; ".join(problems)
            )

    def _ensure_run_user(self) -> None:
        try:
            runas.ensure_user()
        except subprocess.CalledProcessError as exc:
            raise ClusterError(f"cannot create the system user {runas.RUN_USER}: {exc.stderr}") from None

    def _check_socket(self, port: int) -> None:
        """Refuse (ClusterError) a running server whose socket is gone: every command connects
        through it. A server makes its socket only when it starts, so it must be restarted."""
        socket_file = self.socket_dir / f".s.PGSQL.{port}"
        if not socket_file.exists():
            raise ClusterError(
                f"the embedded cluster is running but its socket {socket_file} is gone (its directory "
                "was deleted?), so nothing can connect to it; restart it with `spreadedge db stop` "
                "then `spreadedge db start`"
            )

    def _restore_run_files(self) -> None:
        """Create the socket directory and the log again when they were deleted since init (a
        temporary-file cleaner, a hand): the server cannot start without its socket directory, and
        as root pg_ctl cannot create the log in a home its user may not write to."""
        # why: init only runs once, so a deleted run/ made every later start fail ("could not
        # create lock file ... No such file or directory") until the cluster was destroyed
        if self.data_dir.is_symlink():
            # the fallback layout (see _prepare_dirs): the links lead to the data directory's side
            base = self.data_dir.resolve().parent
            for path in (self.socket_dir, self.log_file):
                if not (path.exists() or path.is_symlink()):
                    path.symlink_to(base / path.name)
        if not self.socket_dir.resolve().is_dir():
            runas.make_private_dir(self.socket_dir.resolve())
        log = self.log_file.resolve()
        if not log.exists():
            log.touch(mode=0o600)
            runas.give(log)

    def _remove_stale_files(self) -> None:
        """Drop lock files a crashed server left behind: no server of ours runs (checked)."""
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        for path in self.socket_dir.glob(".s.PGSQL.*"):
            path.unlink(missing_ok=True)

    def _check_paths(self) -> None:
        """Refuse to start when PostgreSQL cannot take the paths the server would see."""
        unusable = _unusable_path(self.data_dir.resolve(), self.port, self.socket_dir.resolve())
        if unusable is None:
            unusable = _unusable_path(self.log_file.resolve(), self.port, self.socket_dir.resolve())
        if unusable is not None:
            raise ClusterError(
                f"the embedded cluster in {self.home} cannot start: {unusable}; "
                "choose another directory with SPREADEDGE_HOME=<dir>"
            )

    def _ensure_include(self) -> None:
        """Make postgresql.conf include CONFIG_FILE (once)."""
        conf = self.data_dir / "postgresql.conf"
        include = f"include '{CONFIG_FILE}'"
        if not conf.exists() or include in conf.read_text().splitlines():
            return
        with conf.open("a") as f:
            f.write(
                f"\n# The embedded cluster's settings, rewritten at every start: override them below.\n"
                f"{include}\n"
            )

    def _refuse_foreign(self) -> None:
        """Refuse (ClusterError) when the home holds a ``cluster``, ``run``, log or password that
        is not an embedded cluster's: destroy deletes those names, and a mistaken SPREADEDGE_HOME
        (``/``, a user's home) holds others of the same names."""
        problems = []
        try:
            if self.data_dir.exists():
                if not self.data_dir.is_dir():
                    problems.append(f"{self.data_dir} is not a directory")
                elif any(self.data_dir.iterdir()) and not (self.data_dir / "PG_VERSION").exists():
                    problems.append(f"{self.data_dir} is not a PostgreSQL data directory")
            if self.socket_dir.exists():
                if not self.socket_dir.is_dir():
                    problems.append(f"{self.socket_dir} is not a directory")
                else:
                    others = sorted(
                        p.name for p in self.socket_dir.iterdir() if not _SOCKET_FILE.fullmatch(p.name)
                    )
                    if others:
                        problems.append(
                            f"{self.socket_dir} holds files that are not the server's: "
                            + ", ".join(others[:5])
                        )
        except OSError as exc:
            problems.append(f"cannot look into {exc.filename}: {exc.strerror}")
        for path in (self.log_file, self.password_file):
            if path.is_dir() and not path.is_symlink():
                problems.append(f"{path} is a directory")
        if problems:
            raise ClusterError(
                f"{self.home} does not look like the home of an embedded cluster, so nothing was deleted: "
                + "; ".join(problems)
                + " (check SPREADEDGE_HOME)"
            )

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise ClusterError(
                    f"port {self.port} on 127.0.0.1 is already in use by another program "
                    f"({exc.strerror}); choose a free port with SPREADEDGE_PORT=<port>"
                ) from None

    def _write_config(self) -> None:
        socket_dir = _conf_string(str(self.socket_dir.resolve()))
        lines = [
            "# Written by spreadedge (python/spreadedge/cluster.py) at every start: do not edit.",
            "# Override a setting below the include line in postgresql.conf instead.",
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = {socket_dir}",
            "unix_socket_permissions = 0700",
            "shared_preload_libraries = 'pg_stat_statements,pg_cron'",
            f"cron.database_name = '{DATABASE}'",
            f"cron.host = {socket_dir}",
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
            "pg_stat_statements.track = all",
            "max_connections = 100",
            f"shared_buffers = '{_shared_buffers_mb()}MB'",
            "fsync = on",
        ]
        path = self.data_dir / CONFIG_FILE
        path.write_text("\n".join(lines) + "\n")
        runas.give(path)

    def _wait_until_writable(self, timeout: float = 600.0) -> None:
        """Wait while the server recovers (a restored cluster replays WAL, then promotes)."""
        give_up_at = time.monotonic() + timeout
        with deadline.connect(self.conninfo("postgres"), autocommit=True) as conn:
            while True:
                row = conn.execute("select pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    return
                if time.monotonic() > give_up_at:
                    raise ClusterError(
                        f"the cluster in {self.home} is still recovering after {timeout:.0f} s"
                    )
                time.sleep(0.2)

    def _configured_address(self) -> tuple[str, int] | None:
        """The cron.host and port CONFIG_FILE names (None when it names no such pair): before a
        start rewrites it, the address this server had at its last start, or a restored
        cluster's source's."""
        try:
            text = (self.data_dir / CONFIG_FILE).read_text()
        except OSError:
            return None
        host = re.search(r"^cron\.host = '((?:[^']|'')*)'$", text, re.MULTILINE)
        port = re.search(r"^port = ([0-9]+)$", text, re.MULTILINE)
        if host is None or port is None:
            return None
        return host.group(1).replace("''", "'"), int(port.group(1))

    def _repoint_cron_jobs(self) -> list[tuple[str, str, str, int]]:
        """Point at this server the pg_cron jobs that connect elsewhere: those of pg_cron's
        database, and those of any database that connected to this server's old address.

        A job keeps the host and port it was scheduled with (cron.host: the socket directory); a
        cluster restored into another home or started on another port left its jobs (metrics,
        alert rules, partition maintenance) failing with "connection failed", or running on the
        source of a restore while that still ran. A job of another database that connects to
        the host and port this server had before this start (``_previous_address``: a second
        deployment's jobs, scheduled with cron.schedule_in_database) ran on this server then and
        is pointed at it too; one that connects to any other server is left as it is (it was
        pointed there on purpose). Returns the jobs changed, with their database and the host and
        port they named (none: nothing to do).
        """
        old_host, old_port = self._previous_address or (None, None)
        with deadline.connect(self.conninfo(DATABASE), autocommit=True) as conn:
            row = conn.execute("select pg_catalog.to_regclass('cron.job') is not null").fetchone()
            if row is None or not row[0]:
                return []
            # why the same test as health's cron_jobs (internal.health_cron_jobs): what it calls
            # another server is what is repointed, so health is ok after a start
            rows = conn.execute(
                "with here as ("
                "  select pg_catalog.current_setting('cron.host') as host,"
                "         pg_catalog.current_setting('port')::integer as port),"
                " elsewhere as ("
                "  select j.jobid, j.nodename, j.nodeport from cron.job j, here h"
                "  where (j.nodename <> h.host or j.nodeport <> h.port)"
                "    and (j.database = pg_catalog.current_database()"
                "         or (j.nodename = %(old_host)s and j.nodeport = %(old_port)s))"
                "  for update of j)"
                " update cron.job j set nodename = h.host, nodeport = h.port"
                " from elsewhere e, here h where j.jobid = e.jobid"
                " returning coalesce(j.jobname, j.jobid::text), j.database, e.nodename, e.nodeport",
                {"old_host": old_host, "old_port": old_port},
            ).fetchall()
        return sorted((name, database, host, port) for name, database, host, port in rows)

    def _set_password(self) -> None:
        """Give the superuser a random password for TCP; only its SCRAM verifier leaves here."""
        password = secrets.token_urlsafe(32)
        with deadline.connect(self.conninfo("postgres"), autocommit=True) as conn:
            verifier = conn.pgconn.encrypt_password(password.encode(), SUPERUSER.encode(), b"scram-sha-256")
            conn.execute(
                sql.SQL("alter role {} password {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(verifier.decode())
                )
            )
        partial = self.password_file.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        partial.replace(self.password_file)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialize init/start/stop/destroy between processes (re-entrant within one)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with self._locked_file():
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    @contextlib.contextmanager
    def _locked_file(self) -> Iterator[None]:
        """Hold an exclusive flock on the home's cluster.lock, the file that is there now."""
        while True:
            try:
                self.home.mkdir(parents=True, exist_ok=True)
                handle = self._lock_path.open("a")
            except OSError as exc:
                raise ClusterError(
                    f"cannot use {self.home} as the embedded cluster's home: {exc.strerror} "
                    f"({exc.filename}); choose another directory with SPREADEDGE_HOME=<dir>"
                ) from None
            with handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                # why: a destroy deletes cluster.lock while it holds it; whoever waited on that
                # file held a lock no one else takes, and ran alongside the next command (two
                # initdb's in one directory), which locked the new cluster.lock
                try:
                    current = self._lock_path.stat()
                except FileNotFoundError:
                    continue
                held = os.fstat(handle.fileno())
                if (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
                    continue
                yield
                return

    @property
    def _lock_path(self) -> Path:
        return self.home / "cluster.lock"


def default_cluster(settings: Settings) -> Cluster:
    """The embedded cluster these settings point at."""
    return Cluster(settings.home, settings.port)


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live postgres whose working directory is ``data_dir``."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return False
        return Path(os.readlink(f"/proc/{pid}/cwd")) == data_dir
    except PermissionError:
        # a postgres whose directory we may not read (root without CAP_SYS_PTRACE, in a container):
        # ours only when it runs as our servers do; another user's (the system's PostgreSQL, given
        # the pid of a stale pid file after a reboot) never is, or `db start` would do nothing
        owner = _owner(pid)
        return owner is not None and owner == _server_uid()
    except OSError:
        return False


def _process_title(pid: int) -> str:
    """A server process's title ("checkpointer", "spreadedge spreadedge [local] idle"); "" when gone."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
    return title.strip().removeprefix("postgres: ")


def _user_name(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}, which no user has"


def _server_major() -> str:
    """The major version of the PostgreSQL in PG_BINDIR ("15")."""
    result = subprocess.run(
        [str(PG_BINDIR / "pg_ctl"), "--version"], capture_output=True, text=True, check=False
    )
    found = re.search(r"\) ([0-9]+)", result.stdout)
    if result.returncode != 0 or found is None:
        raise ClusterError(f"cannot tell the version of PostgreSQL in {PG_BINDIR}: {result.stderr.strip()}")
    return found.group(1)


def _owner(pid: int) -> int | None:
    """The user id a process runs as (None when it is gone)."""
    try:
        return Path(f"/proc/{pid}").stat().st_uid
    except OSError:
        return None


def _server_uid() -> int | None:
    """The user id the embedded cluster's server runs as: runas.RUN_USER's as root, else ours."""
    if not runas.is_root():
        return os.geteuid()
    try:
        return pwd.getpwnam(runas.RUN_USER).pw_uid
    except KeyError:
        return None


# Characters pg_ctl's shell command line (double quotes), unix_socket_directories and libpq's
# host list (commas) cannot carry in a path.
_PATH_UNSAFE = frozenset('"$`\\,')
# The socket's path, ".s.PGSQL.<port>", must fit a sockaddr_un (107 bytes and a NUL).
_SOCKET_PATH_MAX = 107
_SOCKET_FILE = re.compile(r"\.s\.PGSQL\.[0-9]+(\.lock)?")


def _unusable_path(path: Path, port: int, socket_dir: Path | None = None) -> str | None:
    """Why PostgreSQL's programs cannot take ``path`` (a home, or a data directory with the
    ``socket_dir`` of its server), or None when they can."""
    bad = sorted({char for char in str(path) if char in _PATH_UNSAFE or unicodedata.category(char) == "Cc"})
    if bad:
        return (
            f"its path holds {' '.join(repr(char) for char in bad)}, which PostgreSQL's programs cannot take"
        )
    socket = (socket_dir or path / "run") / f".s.PGSQL.{port}"
    if len(os.fsencode(socket)) > _SOCKET_PATH_MAX:
        return (
            f"the server's socket {socket} would be longer than the {_SOCKET_PATH_MAX} bytes of a socket path"
        )
    return None


def _conf_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _shared_buffers_mb() -> int:
    """A quarter of the memory, between 128 MB and 512 MB."""
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return max(128, min(512, total_mb // 4))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read the log: {exc.strerror})"
