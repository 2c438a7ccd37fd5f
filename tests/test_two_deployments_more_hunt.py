"""Two deployments on one server (README "Two deployments on one server"), what is the server's:
pg_cron's jobs of the second database when the server moves, a physical backup (it holds both
databases) and, after a restore, the second database's API keys.

One migrated server for the module (its `spreadedge` database and a second deployment `live`,
pgBackRest set up, one full backup); one small cluster (not migrated) moved to another port.
All are stopped at the module's end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from click.testing import Result

from auth_helpers import make_user, store_key
from conftest import free_port
from ops_helpers import backup_ready, cli
from spreadedge import masterkey
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.ops import pgbackrest
from spreadedge.settings import Settings

PASSPHRASE = "two deployments passphrase of the repository 69"
MASTER_KEY = "two-deployments-master-key-0123456789-abcdef"
LIVE_KEY = "the-live-deployments-own-master-key-01234567"
SECRETS = (PASSPHRASE, MASTER_KEY, LIVE_KEY)
LIVE = "live"
# never due during the test (1 January, 00:00)
NEVER = "0 0 1 1 *"


@dataclass
class Server:
    cluster: Cluster
    env: dict[str, str]
    backup: Result


@pytest.fixture(scope="module")
def server(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Server]:
    """Both deployments migrated, pgBackRest set up, and a full backup taken through `spreadedge`."""
    cluster = make_cluster()
    env = backup_ready(cluster, project_settings, SPREADEDGE_BACKUP_PASSPHRASE=PASSPHRASE)
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(LIVE)))
        migrate(cluster.url(LIVE), project_settings, echo=lambda line: None)
        backup = cli("backup", "full", env=env)
        assert backup.exit_code == 0, backup.output
        yield Server(cluster, env, backup)
    finally:
        cluster.stop()


def _runs(url: str) -> list[tuple[str, str, str | None, str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select kind, status, label, detail from ops.backup_runs order by run_id"
        ).fetchall()


# -- a physical backup holds both databases ------------------------------------------------------


# bug: the backup was recorded in ops.backup_runs of the database the command connected to only:
# the second deployment's health said "no successful physical backup recorded" (and its metric
# backup.last_success_age_seconds had none) on a server backed up daily
def test_a_physical_backup_counts_in_the_other_deployments_last_backup(server):
    with psycopg.connect(server.cluster.url(LIVE)) as conn:
        row = conn.execute("select ok, detail from internal.health_last_backup('1 hour')").fetchone()
    (label,) = [run[2] for run in _runs(server.cluster.url())]

    assert row[0] is True
    assert row[1].startswith(f"last physical backup {label} (full) finished ")


def test_the_other_deployments_run_names_the_backup_and_the_database_it_was_taken_through(server):
    (taken,) = _runs(server.cluster.url())

    assert _runs(server.cluster.url(LIVE)) == [
        (
            "full",
            "succeeded",
            taken[2],
            "taken through database spreadedge (a physical backup holds every database of the server)",
        )
    ]


def test_the_backup_says_which_other_databases_it_was_recorded_in(server):
    assert "recorded in ops.backup_runs of database live too (the backup holds it)\n" in server.backup.output
    assert "postgres" not in server.backup.output
    assert not any(secret in server.backup.output for secret in SECRETS)


# bug (with the fix above): the runs of expired backups were marked in the command's database only,
# so the other database's health went on counting a backup pgBackRest no longer held
def test_an_expire_marks_the_other_deployments_runs_of_backups_pgbackrest_no_longer_holds(server):
    with psycopg.connect(server.cluster.url(LIVE), autocommit=True) as conn:
        conn.execute(
            "insert into ops.backup_runs (kind, compress_type, started_at, finished_at, status, label)"
            " values ('full', 'lz4', now() - interval '1 day 1 hour', now() - interval '1 day', 'succeeded',"
            " '20200101-000000F')"
        )
    result = cli("backup", "expire", env=server.env)
    with psycopg.connect(server.cluster.url(LIVE)) as conn:
        expired = conn.execute(
            "select label from ops.backup_runs where expired_at is not null order by run_id"
        ).fetchall()

    assert result.exit_code == 0, result.output
    assert "ops.backup_runs of database live: 1 run(s) marked expired" in result.output
    assert expired == [("20200101-000000F",)]


# -- after a restore, the second deployment's API keys --------------------------------------------


def _restored_start(server: Server, key: str) -> Result:
    """`db start` of a home a restore left (its restore-pending marker), with ``key`` in its key file."""
    key_file = server.cluster.home / masterkey.KEY_FILE_NAME
    key_file.unlink(missing_ok=True)
    masterkey.write_key_file(key_file, key)
    pgbackrest.restore_marker(server.cluster).touch()
    try:
        return cli("db", "start", env=server.env)
    finally:
        pgbackrest.restore_marker(server.cluster).unlink(missing_ok=True)
        key_file.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def keys_stored(server: Server) -> None:
    """An API key in each deployment: `spreadedge`'s under MASTER_KEY, live's under LIVE_KEY."""
    for dbname, key in (("spreadedge", MASTER_KEY), (LIVE, LIVE_KEY)):
        with psycopg.connect(server.cluster.url(dbname), autocommit=True) as conn:
            conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
            store_key(conn, make_user(conn, f"alice_{dbname}", "trader"), master_key=key)


# bug: the first start after a restore checked the master key against the `spreadedge` database's
# API keys only: a second deployment whose keys were stored under another master key learnt it at
# its first `keys` command on the restored server, its key perhaps not kept with the repository
def test_the_first_start_warns_of_another_deployments_keys_its_master_key_does_not_open(server, keys_stored):
    result = _restored_start(server, MASTER_KEY)
    key_file = server.cluster.home / masterkey.KEY_FILE_NAME

    assert result.exit_code == 0, result.output
    assert f"master key {key_file} opens the restored API keys (version 1)\n" in result.output
    assert (
        f"warning: database live: the master key ({key_file}) is not master key version 1, which the API"
        " keys are encrypted under: its commands need the master key its API keys were stored under"
        " (SPREADEDGE_MASTER_KEY or SPREADEDGE_MASTER_KEY_FILE); keep it with the repository\n"
    ) in result.output
    assert not any(secret in result.output for secret in SECRETS)


def test_the_first_start_says_when_the_master_key_opens_the_other_deployments_keys_too(server, keys_stored):
    with psycopg.connect(server.cluster.url(LIVE), autocommit=True) as conn:
        conn.execute(
            "select auth.rotate_master_key(old_master_key => %s, new_master_key => %s)",
            [LIVE_KEY, MASTER_KEY],
        )
    result = _restored_start(server, MASTER_KEY)
    key_file = server.cluster.home / masterkey.KEY_FILE_NAME

    assert result.exit_code == 0, result.output
    assert (
        f"master key {key_file} opens the restored API keys of database live too (version 2)\n"
        in result.output
    )
    assert "warning" not in result.output


# -- pg_cron's jobs of the second database when the server moves ---------------------------------


@dataclass
class Moved:
    old: Cluster
    port: int
    start: Result
    jobs: dict[str, tuple[str, str, int]]


@pytest.fixture(scope="module")
def moved(make_cluster: Callable[..., Cluster]) -> Iterator[Moved]:
    """A cluster with jobs of a second database (one on this server, one pointed at another
    server), started again on another port with `db start`."""
    old = make_cluster()
    old.start()
    with psycopg.connect(old.url(), autocommit=True) as conn:
        conn.execute("create extension pg_cron")
        conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(LIVE)))
        conn.execute("select cron.schedule_in_database('live-here', %s, 'select 1', %s)", [NEVER, LIVE])
        conn.execute("select cron.schedule_in_database('live-remote', %s, 'select 1', %s)", [NEVER, LIVE])
        # a job sent to another server on purpose (a replica's host, say)
        conn.execute(
            "update cron.job set nodename = 'replica.invalid', nodeport = 5999 where jobname = 'live-remote'"
        )
        conn.execute("select cron.schedule('spreadedge-here', %s, 'select 1')", [NEVER])
    old.stop()
    port = free_port()
    new = Cluster(old.home, port)
    try:
        start = cli("db", "start", env={"SPREADEDGE_HOME": str(old.home), "SPREADEDGE_PORT": str(port)})
        assert start.exit_code == 0, start.output
        with psycopg.connect(new.url()) as conn:
            rows = conn.execute("select jobname, database, nodename, nodeport from cron.job").fetchall()
        yield Moved(old, port, start, {name: (database, host, p) for name, database, host, p in rows})
    finally:
        new.stop()


# bug: `db start` pointed only the `spreadedge` database's jobs at a server started on another port
# (or restored into another home); a second deployment's jobs (cron.schedule_in_database) kept the
# old port and failed "connection failed" for ever, or, in a restore drill beside its source, ran
# on the source
def test_a_start_on_another_port_points_the_second_deployments_jobs_at_it(moved):
    assert moved.jobs["live-here"] == (LIVE, str(moved.old.socket_dir), moved.port)
    assert moved.jobs["spreadedge-here"] == ("spreadedge", str(moved.old.socket_dir), moved.port)


def test_a_job_of_another_database_pointed_at_another_server_keeps_its_host_and_port(moved):
    assert moved.jobs["live-remote"] == (LIVE, "replica.invalid", 5999)


def test_db_start_names_the_database_of_each_job_it_points_at_the_server(moved):
    lines = [line for line in moved.start.output.splitlines() if line.startswith("pg_cron job")]

    assert lines == [
        f"pg_cron job live-here of database live connected to host {moved.old.socket_dir} port"
        f" {moved.old.port}: pointed at this server",
        f"pg_cron job spreadedge-here connected to host {moved.old.socket_dir} port {moved.old.port}:"
        " pointed at this server",
    ]
