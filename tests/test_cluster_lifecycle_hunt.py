"""The embedded cluster under operators' habits: a session that holds a shutdown, a data directory
of another PostgreSQL or another user, permissions opened to everyone, a destroy racing a start."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from ops_helpers import cli
from spreadedge import runas
from spreadedge.cluster import PG_BINDIR, Cluster

as_root_only = pytest.mark.skipif(not runas.is_root(), reason="the server runs as another user only for root")


def _env(cluster: Cluster) -> dict[str, str]:
    return {"SPREADEDGE_HOME": str(cluster.home), "SPREADEDGE_PORT": str(cluster.port)}


@contextlib.contextmanager
def frozen_session(cluster: Cluster) -> Iterator[int]:
    """A session whose backend is stopped (SIGSTOP): it cannot end when told to; its pid. The
    backend is killed on the way out, whatever happens."""
    conn = psycopg.connect(cluster.url(), autocommit=True)
    backend = conn.execute("select pg_backend_pid()").fetchone()[0]
    os.kill(backend, signal.SIGSTOP)
    try:
        yield backend
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(backend, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(backend, signal.SIGCONT)
        conn.close()


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    give_up_at = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < give_up_at, f"process {pid} still runs after {timeout} s"
        time.sleep(0.05)


# bug: pg_ctl waited 60 s, then `db stop` failed with "pg_ctl: server does not shut down" and
# nothing on which session held it or what to do; there was no way to stop it at once
def test_db_stop_a_frozen_session_holds_names_it_and_how_to_force_the_stop(make_cluster):
    cluster = make_cluster()
    cluster.start()
    postmaster = cluster.status().pid

    with frozen_session(cluster) as backend:
        held = cli("db", "stop", "--timeout", "2", env=_env(cluster))
        forced = cli("db", "stop", "--immediate", env=_env(cluster))
        running = cluster.status().running

    assert (held.exit_code, held.output) == (
        1,
        f"Error: the embedded cluster (pid {postmaster}) did not shut down within 2 s (fast shutdown), "
        f"still running: {backend} (spreadedge spreadedge [local] idle); it goes on in the background; "
        "run `spreadedge db stop` again to wait longer, or stop it now with `spreadedge db stop "
        "--immediate` (sessions are killed without a checkpoint, and the next start recovers from the "
        "WAL, as after a crash)\n",
    )
    assert (forced.exit_code, forced.output) == (
        0,
        "embedded cluster stopped (immediate shutdown: the next start recovers from the WAL)\n",
    )
    assert running is False


def test_db_start_after_an_immediate_stop_recovers_what_was_committed(make_cluster):
    cluster = make_cluster()
    cluster.start()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("create table kept as select 42 as answer")

    assert cli("db", "stop", "--immediate", env=_env(cluster)).exit_code == 0
    started = cli("db", "start", env=_env(cluster))

    assert started.exit_code == 0, started.output
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("select answer from kept").fetchall() == [(42,)]


# bug: destroy stopped the server with a fast shutdown, so a frozen session made it wait 60 s and
# fail, deleting nothing, for a cluster whose data it was about to delete anyway
def test_db_destroy_deletes_a_cluster_a_frozen_session_holds(make_cluster):
    cluster = make_cluster()
    cluster.start()
    data_dir = cluster.data_dir.resolve()

    with frozen_session(cluster) as backend:
        result = cli("db", "destroy", "--yes", env=_env(cluster))
        _wait_gone(backend)

    assert (result.exit_code, result.output) == (0, "embedded cluster destroyed\n")
    assert not data_dir.exists()
    assert cluster.server_processes() == []


# bug: the start failed with pg_ctl's "could not start server" and the log's FATAL, with no word
# on what to do with a .spreadedge/ brought from a machine with another PostgreSQL
@pytest.mark.parametrize(
    ("made_by", "way_out"),
    [
        ("14", "upgrade it with PostgreSQL 15's pg_upgrade (which needs PostgreSQL 14's binaries)"),
        (
            "16",
            "no cluster moves to an older PostgreSQL: run it with PostgreSQL 16 and copy its data out "
            "with pg_dump into a new cluster",
        ),
    ],
)
def test_db_start_refuses_a_data_directory_of_another_postgresql_naming_both_versions(
    make_cluster: Callable[..., Cluster], made_by: str, way_out: str
):
    cluster = make_cluster()
    cluster.init()
    (cluster.data_dir / "PG_VERSION").write_text(f"{made_by}\n")

    result = cli("db", "start", env=_env(cluster))

    assert (result.exit_code, result.output) == (
        1,
        f"Error: the embedded cluster in {cluster.home} was made by PostgreSQL {made_by}, and spreadedge "
        f"runs PostgreSQL 15 ({PG_BINDIR}), which cannot start it: {way_out}; or set SPREADEDGE_HOME to "
        "another directory for a new cluster (`spreadedge db destroy` deletes this one with its data)\n",
    )
    assert cluster.status().running is False
    assert (cluster.data_dir / "PG_VERSION").read_text() == f"{made_by}\n"


# bug: a .spreadedge/ restored from another machine (or its system user deleted and created
# again) belongs to a uid the server no longer runs as: "pg_ctl: could not open PID file ...:
# Permission denied" and an old log
@as_root_only
def test_db_start_refuses_a_data_directory_of_a_uid_the_server_does_not_run_as(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.stop()
    orphan = 54321  # a uid no user has on this machine
    for path in (cluster.data_dir, cluster.socket_dir, cluster.log_file):
        subprocess.run(["chown", "-R", f"{orphan}:{orphan}", str(path)], check=True)
    server = subprocess.run(["id", "-u", runas.RUN_USER], capture_output=True, text=True, check=True)

    result = cli("db", "start", env=_env(cluster))

    assert (result.exit_code, result.output) == (
        1,
        f"Error: the embedded cluster's data directory {cluster.data_dir} belongs to uid {orphan}, which "
        f"no user has, but its server runs as user spreadedge (uid {server.stdout.strip()}), so it cannot "
        "start (a .spreadedge/ restored from another machine, or the system user re-created?): give its "
        f"files to that user with `chown -R spreadedge: {cluster.data_dir} {cluster.socket_dir} "
        f"{cluster.log_file}`, then start again\n",
    )
    assert cluster.data_dir.stat().st_uid == orphan


@as_root_only
def test_db_start_after_the_chown_it_names_starts_the_cluster(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.stop()
    for path in (cluster.data_dir, cluster.socket_dir, cluster.log_file):
        subprocess.run(["chown", "-R", "54321:54321", str(path)], check=True)
    subprocess.run(
        ["chown", "-R", "spreadedge:", str(cluster.data_dir), str(cluster.socket_dir), str(cluster.log_file)],
        check=True,
    )

    result = cli("db", "start", env=_env(cluster))

    assert result.exit_code == 0, result.output
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("select current_database()").fetchone() == ("spreadedge",)


# bug: after `chmod -R 777 .spreadedge` the start failed with the log's "data directory has
# invalid permissions", and once the operator chmod'ed the data directory alone it started with
# the superuser's TCP password still readable by every user of the machine
def test_db_start_refuses_a_cluster_opened_to_other_users(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.stop()
    subprocess.run(["chmod", "-R", "777", str(cluster.home)], check=True)
    data_dir = cluster.data_dir.resolve()

    result = cli("db", "start", env=_env(cluster))

    assert (result.exit_code, result.output) == (
        1,
        f"Error: the embedded cluster in {cluster.home} is open to other users: its data directory "
        f"{data_dir} has mode 0777, and PostgreSQL starts only a data directory others may not open "
        "(0700, or 0750); check its configuration files, which anyone could change, and run "
        f"`chmod -R go-rwx {data_dir}`; {cluster.home / 'password'} has mode 0777, so other users may "
        "have read the superuser's password: delete it, and the next `spreadedge db start` gives the "
        "superuser a new one\n",
    )
    assert cluster.status().running is False


def test_db_start_refuses_a_running_cluster_whose_password_others_may_read(make_cluster):
    cluster = make_cluster()
    cluster.start()
    password = cluster.home / "password"
    password.chmod(0o644)

    result = cli("db", "start", env=_env(cluster))

    assert (result.exit_code, result.output) == (
        1,
        f"Error: the embedded cluster in {cluster.home} is open to other users: {password} has mode "
        "0644, so other users may have read the superuser's password: delete it, and the next "
        "`spreadedge db start` gives the superuser a new one\n",
    )


def test_db_start_after_the_steps_it_names_gives_the_superuser_a_new_password(make_cluster):
    cluster = make_cluster()
    cluster.start()
    password = cluster.home / "password"
    exposed = password.read_text().strip()
    password.chmod(0o644)

    password.unlink()
    result = cli("db", "start", env=_env(cluster))

    assert result.exit_code == 0, result.output
    renewed = password.read_text().strip()
    tcp = {"host": "127.0.0.1", "port": cluster.port, "user": "spreadedge", "dbname": "spreadedge"}
    with psycopg.connect(**tcp, password=renewed) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**tcp, password=exposed)
    assert password.stat().st_mode & 0o777 == 0o600


def _wait_for_a_waiter(lock_path: Path, timeout: float = 30.0) -> None:
    """Wait until a process waits for the flock of ``lock_path`` (a "->" line of /proc/locks)."""
    inode = f":{lock_path.stat().st_ino} "
    give_up_at = time.monotonic() + timeout
    while not any("->" in line and inode in line for line in Path("/proc/locks").read_text().splitlines()):
        assert time.monotonic() < give_up_at, f"nothing waited on {lock_path} within {timeout} s"
        time.sleep(0.01)


# bug: a destroy deletes cluster.lock while it holds it; a start that waited on that file went on
# holding a lock on a deleted file, so the next command locked the new cluster.lock at once and
# ran alongside it (two initdb's in one directory, a start while the other's initdb ran)
def test_a_start_that_waited_on_a_lock_file_a_destroy_deleted_holds_the_new_lock_file(make_cluster):
    cluster = make_cluster()
    cluster.home.mkdir()
    lock_path = cluster.home / "cluster.lock"
    failures: list[BaseException] = []

    def start() -> None:
        try:
            cluster.start()
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    with lock_path.open("a") as destroying:
        fcntl.flock(destroying, fcntl.LOCK_EX)
        waiter = threading.Thread(target=start)
        waiter.start()
        _wait_for_a_waiter(lock_path)
        lock_path.unlink()
    give_up_at = time.monotonic() + 60
    while not (cluster.data_dir / "PG_VERSION").exists() and waiter.is_alive():
        assert time.monotonic() < give_up_at, "the start did not begin within 60 s"
        time.sleep(0.01)
    try:
        with lock_path.open("a") as newcomer, pytest.raises(BlockingIOError):
            fcntl.flock(newcomer, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        waiter.join(timeout=120)
    assert not waiter.is_alive()
    assert failures == []
    assert cluster.status().running
