"""Disaster recovery on a new machine: the machine of a live embedded cluster (trading data, an
API key under a master key, pg_cron jobs) dies after a pgBackRest backup; all that is left is its
repository directory, copied off the machine, and a copy of the master key file kept apart. The
operator restores from those alone (`restore --repo PATH --master-key FILE --to DIR`, the lost
home's pgbackrest.conf gone), starts it on another port (`db start`), and the business goes on:
every row back, the API keys decrypting, and pg_cron's jobs (metrics, alert rules, partition
maintenance) pointed at the new server and running there. Wrong inputs are clear errors.

One source cluster and one restored cluster for the module (a second restored one for the wrong
key); all are stopped at its end. One bounded wait for pg_cron's next minute (at most 75 s).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from auth_helpers import make_user, reveal_key, store_key
from conftest import free_port, new_home
from db_fixtures import _seed
from ops_helpers import archive_current_wal, checksums, cli
from spreadedge import masterkey
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from trading_helpers import fill, place

PASSPHRASE = "new machine passphrase of the repository 51"
MASTER_KEY = "new-machine-master-key-0123456789-abcdefghij"
OTHER_KEY = "not-the-master-key-of-these-api-keys-0123456"
PROJECT_JOBS = (
    "spreadedge-collect-metrics",
    "spreadedge-evaluate-alert-rules",
    "spreadedge-partition-maintenance",
)
OTHER_DATABASE = "hunt_other_db"
OTHER_JOB = "hunt-other-database-job"
OTHER_REMOTE_JOB = "hunt-other-database-remote-job"
COMPARED = ("ref.", "trading.", "auth.users", "auth.api_keys", "auth.master_keys", "auth.user_roles")
CRON_WAIT = 75.0
SECRETS = (PASSPHRASE, MASTER_KEY, OTHER_KEY)


@dataclass
class NewMachine:
    source: Cluster
    restored: Cluster
    restore_env: dict[str, str]
    restored_env: dict[str, str]
    restore_output: str
    start_output: str
    before: dict[str, tuple[int, str]]
    key_id: int
    repo: Path
    empty_repo: Path
    kept_key: Path
    scratch: Path


def _ok(*args: str, env: dict[str, str]) -> str:
    result = cli(*args, env=env)
    assert result.exit_code == 0, result.output
    assert not any(secret in result.output for secret in SECRETS)
    return result.output


def _failed(*args: str, env: dict[str, str]) -> str:
    result = cli(*args, env=env)
    assert result.exit_code == 1, result.output
    assert not any(secret in result.output for secret in SECRETS)
    return result.output


def _compared(sums: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
    return {table: value for table, value in sums.items() if table.startswith(COMPARED)}


def _jobs(conn: psycopg.Connection) -> list[tuple[str, str, str, int]]:
    return conn.execute(
        "select jobname, database, nodename, nodeport from cron.job order by jobname"
    ).fetchall()


@pytest.fixture(scope="module")
def machine(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[NewMachine]:
    source = make_cluster()
    source.start()
    migrate(source.url(), project_settings, echo=lambda line: None)
    scratch = source.home.parent  # 0755: the server's user reaches what is moved here
    source_env = {
        "SPREADEDGE_HOME": str(source.home),
        "SPREADEDGE_PORT": str(source.port),
        "SPREADEDGE_BACKUP_PASSPHRASE": PASSPHRASE,
    }
    masterkey.write_key_file(source.home / masterkey.KEY_FILE_NAME, MASTER_KEY)
    _ok("backup", "init", "--compress-type", "lz4", env=source_env)
    # the stanza with no backup yet, as a repository copied before the first backup (cp -a: its
    # files stay the server's user's)
    empty_repo = scratch / "empty-repo"
    subprocess.run(["cp", "-a", str(source.home / "backup" / "repo"), str(empty_repo)], check=True)
    with psycopg.connect(source.url(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(OTHER_DATABASE)))
        # a job of another database of the cluster: never due during the test (1 January, 00:00)
        conn.execute(
            "select cron.schedule_in_database(%s, '0 0 1 1 *', 'select 1', %s)", [OTHER_JOB, OTHER_DATABASE]
        )
        # and one of it sent to another server on purpose (a replica's host, say)
        conn.execute(
            "select cron.schedule_in_database(%s, '0 0 1 1 *', 'select 1', %s)",
            [OTHER_REMOTE_JOB, OTHER_DATABASE],
        )
        conn.execute(
            "update cron.job set nodename = 'replica.invalid', nodeport = 5999 where jobname = %s",
            [OTHER_REMOTE_JOB],
        )
        _seed(conn)
        conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
        alice = make_user(conn, "alice", "trader")
        key_id = store_key(conn, alice, master_key=MASTER_KEY)
        bought = place(conn, "buy", "0.02", "50000", client_order_id="new-machine-1")
        fill(conn, bought, "0.02", "50000", fee=Decimal("0.5"))
        _ok("backup", "full", env=source_env)
        # trading goes on after the backup: the restore replays it from the archived WAL
        sold = place(conn, "sell", "0.01", "51000", client_order_id="new-machine-2")
        fill(conn, sold, "0.01", "51000", fee=Decimal("0.25"))
        before = _compared(checksums(conn))
        archive_current_wal(conn)
    # the machine dies: its repository was copied off it (moved: its owner stays the server's
    # user), a copy of the master key file was kept apart; its home, pgbackrest.conf and master
    # key are gone
    source.stop()
    repo = scratch / "offsite-repo"
    (source.home / "backup" / "repo").rename(repo)
    kept_key = scratch / "kept-master.key"
    masterkey.write_key_file(kept_key, MASTER_KEY)
    shutil.rmtree(source.home / "backup")
    (source.home / masterkey.KEY_FILE_NAME).unlink()
    # the new machine: its own (empty) home, the passphrase in the environment
    restore_env = {
        "SPREADEDGE_HOME": str(scratch / "new-machine-home"),
        "SPREADEDGE_BACKUP_PASSPHRASE": PASSPHRASE,
    }
    restored = make_cluster()
    restore_output = _ok(
        "restore",
        "--repo",
        str(repo),
        "--master-key",
        str(kept_key),
        "--to",
        str(restored.home),
        env=restore_env,
    )
    # the restored home's commands run without the passphrase: its recovery reads restore/
    restored_env = {"SPREADEDGE_HOME": str(restored.home), "SPREADEDGE_PORT": str(restored.port)}
    start_output = _ok("db", "start", env=restored_env)
    yield NewMachine(
        source,
        restored,
        restore_env,
        restored_env,
        restore_output,
        start_output,
        before,
        key_id,
        repo,
        empty_repo,
        kept_key,
        scratch,
    )
    restored.stop()


# -- the business goes on on the new machine ----------------------------------------------------------


def test_a_restore_from_the_repository_alone_brings_every_row_back(machine):
    with psycopg.connect(machine.restored.url()) as conn:
        assert _compared(checksums(conn)) == machine.before

    assert machine.restore_output.splitlines()[:2] == [
        f"restoring {machine.repo} into {machine.restored.data_dir}",
        "restored stanza spreadedge",
    ]
    assert not (machine.source.home / "backup").exists()


def test_the_api_keys_decrypt_with_the_master_key_file_given(machine):
    key_file = machine.restored.home / masterkey.KEY_FILE_NAME

    assert f"master key {machine.kept_key} copied to {key_file} (mode 0600)" in machine.restore_output
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert f"master key {key_file} opens the restored API keys (version 1)\n" in machine.start_output
    with psycopg.connect(machine.restored.url(), autocommit=True) as conn:
        assert reveal_key(conn, machine.key_id, MASTER_KEY)["api_secret"] == "s3cret-binance-0001"


def test_the_first_start_removes_the_recovery_configuration_that_holds_the_passphrase(machine):
    work_dir = machine.restored.home / "restore"

    assert f"removed {work_dir} (pgBackRest's configuration for the recovery)\n" in machine.start_output
    assert not work_dir.exists()


def test_the_first_start_points_the_restored_jobs_at_the_new_server(machine):
    with psycopg.connect(machine.restored.url()) as conn:
        jobs = [job for job in _jobs(conn) if job[0] in PROJECT_JOBS]
        health = conn.execute("select ok, detail from internal.health_cron_jobs()").fetchone()

    here = (str(machine.restored.socket_dir), machine.restored.port)
    assert jobs == [(job, "spreadedge", *here) for job in PROJECT_JOBS]
    # the other database's job ran on the source (this server's copy of it): it is pointed too
    assert [line for line in machine.start_output.splitlines() if line.startswith("pg_cron job")] == [
        f"pg_cron job {OTHER_JOB} of database {OTHER_DATABASE} connected to host {machine.source.socket_dir}"
        f" port {machine.source.port}: pointed at this server",
        *(
            f"pg_cron job {job} connected to host {machine.source.socket_dir} port {machine.source.port}:"
            " pointed at this server"
            for job in PROJECT_JOBS
        ),
    ]
    assert health == (True, "3 active jobs, none failed on its last run")


def test_a_job_of_another_database_on_the_source_is_pointed_at_the_new_server(machine):
    with psycopg.connect(machine.restored.url()) as conn:
        other = [job for job in _jobs(conn) if job[0] == OTHER_JOB]

    assert other == [(OTHER_JOB, OTHER_DATABASE, str(machine.restored.socket_dir), machine.restored.port)]


# why: a job sent to another server on purpose (not the source of the restore) must stay there
def test_a_job_of_another_database_keeps_its_host_and_port(machine):
    with psycopg.connect(machine.restored.url()) as conn:
        other = [job for job in _jobs(conn) if job[0] == OTHER_REMOTE_JOB]

    assert other == [(OTHER_REMOTE_JOB, OTHER_DATABASE, "replica.invalid", 5999)]


def test_pg_cron_runs_the_restored_jobs_on_the_new_server(machine):
    with psycopg.connect(machine.restored.url(), autocommit=True) as conn:
        deadline = time.monotonic() + CRON_WAIT
        while True:
            # a run that started in this server (one pg_cron could not connect for has no start)
            runs = conn.execute(
                "select r.status, r.return_message from cron.job_run_details r join cron.job j using (jobid)"
                " where j.jobname = 'spreadedge-collect-metrics' and r.status in ('succeeded', 'failed')"
                " and r.start_time >= pg_postmaster_start_time() order by r.runid"
            ).fetchall()
            if runs or time.monotonic() > deadline:
                break
            time.sleep(0.5)

    assert runs[:1] == [("succeeded", "1 row")]


def test_a_start_on_another_port_points_the_jobs_at_that_port(machine):
    port = free_port()
    env = {**machine.restored_env, "SPREADEDGE_PORT": str(port)}
    machine.restored.stop()
    try:
        output = _ok("db", "start", env=env)
        with psycopg.connect(Cluster(machine.restored.home, port).url()) as conn:
            jobs = [job for job in _jobs(conn) if job[0] in PROJECT_JOBS]
        again = _ok("db", "start", env=env)
    finally:
        Cluster(machine.restored.home, port).stop()
        machine.restored.start()

    assert jobs == [(job, "spreadedge", str(machine.restored.socket_dir), port) for job in PROJECT_JOBS]
    assert [line for line in output.splitlines() if line.startswith("pg_cron job")] == [
        f"pg_cron job {OTHER_JOB} of database {OTHER_DATABASE} connected to host {machine.restored.socket_dir}"
        f" port {machine.restored.port}: pointed at this server",
        *(
            f"pg_cron job {job} connected to host {machine.restored.socket_dir} port {machine.restored.port}:"
            " pointed at this server"
            for job in PROJECT_JOBS
        ),
    ]
    assert again == f"embedded cluster already running on port {port} ({machine.restored.data_dir})\n"


# -- wrong inputs: clear errors, nothing written -------------------------------------------------------


def _restore_into_new_home(
    machine: NewMachine, repo: Path, key: Path, env: dict[str, str] | None = None
) -> tuple[str, Path]:
    target = new_home()
    output = _failed(
        "restore",
        "--repo",
        str(repo),
        "--master-key",
        str(key),
        "--to",
        str(target),
        env=env or machine.restore_env,
    )
    return output, target


def test_a_repository_path_that_does_not_exist_is_refused(machine):
    missing = machine.scratch / "no-such-repo"
    output, target = _restore_into_new_home(machine, missing, machine.kept_key)

    assert output.splitlines()[-1] == (
        f"Error: no pgBackRest repository at {missing}: it does not exist; give the repository directory"
        " (repo1-path of the lost pgbackrest.conf; backup/repo under its home by default)"
    )
    assert not target.exists()


def test_a_directory_that_is_no_repository_is_refused(machine):
    output, target = _restore_into_new_home(machine, machine.scratch, machine.kept_key)

    assert output.splitlines()[-1] == (
        f"Error: no pgBackRest repository at {machine.scratch}: it holds no backup/<stanza>/backup.info;"
        " give the repository directory (repo1-path of the lost pgbackrest.conf; backup/repo under its"
        " home by default)"
    )
    assert not target.exists()


def test_a_repository_without_a_backup_is_refused_and_nothing_is_left(machine):
    output, target = _restore_into_new_home(machine, machine.empty_repo, machine.kept_key)

    assert output.splitlines()[-1] == (
        f"Error: the repository {machine.empty_repo} holds no backup of stanza spreadedge: nothing to restore"
    )
    assert not target.exists()


def test_an_encrypted_repository_without_its_passphrase_is_refused(machine):
    env = {**machine.restore_env, "SPREADEDGE_BACKUP_PASSPHRASE": ""}
    output, target = _restore_into_new_home(machine, machine.repo, machine.kept_key, env)

    assert output.splitlines()[-1] == (
        f"Error: the repository {machine.repo} is encrypted: set SPREADEDGE_BACKUP_PASSPHRASE to its passphrase"
    )
    assert not target.exists()


def test_a_master_key_file_others_can_read_is_refused_before_restoring(machine):
    shared = machine.scratch / "shared-master.key"
    masterkey.write_key_file(shared, MASTER_KEY)
    shared.chmod(0o644)
    output, target = _restore_into_new_home(machine, machine.repo, shared)

    assert output == f"Error: master key file {shared} is readable by others: chmod 600 {shared}\n"
    assert not target.exists()


def test_a_wrong_master_key_fails_the_first_start_until_the_right_one_is_there(machine):
    wrong = machine.scratch / "wrong-master.key"
    masterkey.write_key_file(wrong, OTHER_KEY)
    target = Cluster(new_home(), free_port())
    env = {"SPREADEDGE_HOME": str(target.home), "SPREADEDGE_PORT": str(target.port)}
    try:
        _ok(
            "restore",
            "--repo",
            str(machine.repo),
            "--master-key",
            str(wrong),
            "--to",
            str(target.home),
            env=machine.restore_env,
        )
        refused = _failed("db", "start", env=env)
        kept = (target.home / "restore" / "pgbackrest.conf").exists()
        key_file = target.home / masterkey.KEY_FILE_NAME
        key_file.unlink()
        masterkey.write_key_file(key_file, MASTER_KEY)
        checked = _ok("db", "start", env=env)
    finally:
        target.destroy()

    assert [line for line in refused.splitlines()[1:] if not line.startswith("pg_cron job")] == [
        f"Error: the restored cluster runs, but its API keys cannot be decrypted: the master key ({key_file})"
        " is not master key version 1, which the API keys are encrypted under",
        f"hint: put the master key they were stored under into {key_file} (mode 0600), then run"
        " `spreadedge db start` again to check it",
    ]
    assert kept
    assert checked.splitlines()[1:] == [
        f"master key {key_file} opens the restored API keys (version 1)",
        f"removed {target.home / 'restore'} (pgBackRest's configuration for the recovery)",
    ]
