"""Backups: what the catalog records when pgBackRest makes another type than asked, and when the
end of a run cannot be recorded; refusals of the restore and backup commands.

One cluster is initialized for the module and its first backup asked for as incremental.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ops_helpers import backed_up, cli
from spreadedge import runas
from spreadedge.cluster import Cluster
from spreadedge.ops import OpsError, catalog
from spreadedge.settings import Settings

PASSPHRASE = "hunt passphrase 36 of the repo"
LOCKED = (
    "another pgBackRest command (a backup or expire) of the stanza is running: run this when it has ended"
)


@dataclass
class Repo:
    cluster: Cluster
    env: dict[str, str]
    first_output: str


@pytest.fixture(scope="module")
def repo(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Repo]:
    # an empty repository: pgBackRest makes a full backup of it
    with backed_up(make_cluster, project_settings, "incr", PASSPHRASE) as (cluster, env, first):
        yield Repo(cluster, env, first.output)


# bug: a backup asked for as incr that pgBackRest made full was recorded as incr in
# ops.backup_runs (and printed as "incr backup ...F"): the catalog lied about the type
def test_an_incr_backup_pgbackrest_made_full_is_recorded_as_full(repo):
    with psycopg.connect(repo.cluster.url()) as conn:
        rows = conn.execute(
            "select kind, status, label ~ '^[0-9]{8}-[0-9]{6}F$' from ops.backup_runs"
        ).fetchall()

    assert rows == [("full", "succeeded", True)]


def test_an_incr_backup_pgbackrest_made_full_says_so(repo):
    lines = repo.first_output.splitlines()

    assert "pgBackRest made a full backup instead of incr: it had nothing to build on" in lines
    assert lines[-1].startswith("full backup ")


def test_finish_backup_run_takes_the_kind_the_label_shows(db):
    diff = db.execute("select ops.start_backup_run('diff', 'zst')").fetchone()[0]
    incr = db.execute("select ops.start_backup_run('incr', 'zst')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, true, '20260101-000000F')", [diff])
    db.execute("select ops.finish_backup_run(%s, true, '20260101-000000F_20260101-010000D')", [incr])

    rows = db.execute("select run_id, kind from ops.backup_runs order by run_id").fetchall()

    assert rows == [(diff, "full"), (incr, "diff")]


# -- recording the end of a run while the server cannot be reached ---------------------------------


@pytest.fixture
def retry_seconds(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Set how long recording a run's end keeps trying."""
    return lambda seconds: monkeypatch.setattr(catalog, "FINISH_RETRY_SECONDS", seconds, raising=False)


def _flaky(db_url: str, failures: int) -> Callable[[], psycopg.Connection]:
    """Connections to db_url, but the ``failures`` after the first cannot reach the server."""
    calls = []

    def connect() -> psycopg.Connection:
        calls.append(1)
        if 1 < len(calls) <= 1 + failures:
            return psycopg.connect("host=/nonexistent-spreadedge port=1 connect_timeout=1")
        return psycopg.connect(db_url, autocommit=True)

    return connect


# bug: when the end of a failed run could not be recorded (the server restarting during a long
# backup), the connection error replaced the backup's own error
def test_a_failed_run_whose_end_cannot_be_recorded_raises_its_own_error(db, db_url, retry_seconds):
    retry_seconds(0)
    with (
        pytest.raises(OpsError) as raised,
        catalog.recorded_run(_flaky(db_url, 100), "full", "zst"),
    ):
        raise OpsError("pgBackRest backup failed:\nERROR: [047]: disk full")

    run_id = db.execute("select run_id from ops.backup_runs").fetchone()[0]
    assert str(raised.value).splitlines()[:2] == ["pgBackRest backup failed:", "ERROR: [047]: disk full"]
    assert (
        str(raised.value)
        .splitlines()[2]
        .startswith(f"(run {run_id} stays 'running' in ops.backup_runs: its end could not be recorded: ")
    )


# bug: ... and the run stayed 'running' for good, though the server was back a moment later
def test_a_failed_run_is_recorded_failed_once_the_server_is_back(db, db_url, retry_seconds):
    retry_seconds(10)
    with pytest.raises(OpsError), catalog.recorded_run(_flaky(db_url, 2), "incr", "zst"):
        raise OpsError("pgBackRest backup failed:\nERROR: [047]: disk full")

    rows = db.execute("select status, detail from ops.backup_runs").fetchall()
    assert rows == [("failed", "pgBackRest backup failed:\nERROR: [047]: disk full")]


# bug: a backup stopped by Ctrl-C was recorded failed with the detail "KeyboardInterrupt"
def test_a_run_stopped_by_ctrl_c_is_recorded_failed_as_interrupted(db, db_url, retry_seconds):
    retry_seconds(0)
    with pytest.raises(KeyboardInterrupt), catalog.recorded_run(_flaky(db_url, 0), "full", "zst"):
        raise KeyboardInterrupt

    rows = db.execute("select status, detail from ops.backup_runs").fetchall()
    assert rows == [("failed", "interrupted (Ctrl-C or SIGINT) before it finished")]


def test_a_successful_run_is_recorded_once_the_server_is_back(db, db_url, retry_seconds):
    retry_seconds(10)
    with catalog.recorded_run(_flaky(db_url, 2), "full", "zst") as result:
        result.label = "20260101-000000F"

    rows = db.execute("select kind, status, label from ops.backup_runs").fetchall()
    assert rows == [("full", "succeeded", "20260101-000000F")]


def test_a_successful_run_whose_end_cannot_be_recorded_names_the_backup(db, db_url, retry_seconds):
    retry_seconds(0)
    with (
        pytest.raises(OpsError) as raised,
        catalog.recorded_run(_flaky(db_url, 100), "full", "zst") as result,
    ):
        result.label = "20260101-000000F"

    assert str(raised.value).startswith("the backup succeeded (20260101-000000F), but run ")


# -- two backups at once, restore refusals -----------------------------------------------------------


# bug: the second backup failed with "unable to acquire lock on file ...: Resource temporarily
# unavailable", not saying that another backup was running
def test_a_second_backup_while_one_runs_is_refused_saying_so(repo):
    lock = repo.cluster.home / "backup" / "lock" / "spreadedge-backup.lock"
    with open(lock, "a") as held:
        runas.give(lock)  # pgBackRest runs as the server's user
        fcntl.flock(held, fcntl.LOCK_EX)  # what a running backup holds
        result = cli("backup", "full", env=repo.env)

    assert result.exit_code == 1
    assert result.output.splitlines()[1] == f"Error: pgBackRest backup failed: {LOCKED}"
    with psycopg.connect(repo.cluster.url()) as conn:
        last = conn.execute(
            "select kind, status, detail from ops.backup_runs order by run_id desc limit 1"
        ).fetchone()
    assert last[:2] == ("full", "failed")
    assert last[2].startswith(f"pgBackRest backup failed: {LOCKED}\nERROR: [050]: unable to acquire lock")


def test_restore_before_the_first_backup_is_refused(repo, tmp_path):
    home = tmp_path / "restored"
    before = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)

    result = cli("restore", "--to", str(home), "--target-time", before.isoformat(), env=repo.env)

    assert result.exit_code == 1
    assert f"Error: no backup ended before --target-time {before.isoformat()}: the first one ended at " in (
        result.output
    )
    assert not home.exists()
