"""Backups pgBackRest has expired: the catalog marks their runs (expired_at), `backup list` shows
it, and health's last_backup does not count them.

One cluster is initialized for the module with retention_full=1, so each full backup expires the
one before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ops_helpers import backup_ready, cli
from spreadedge.cluster import Cluster
from spreadedge.settings import Settings


@dataclass
class Repo:
    cluster: Cluster
    env: dict[str, str]
    second_output: str


@pytest.fixture(scope="module")
def repo(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Repo]:
    cluster = make_cluster()
    env = backup_ready(cluster, project_settings, SPREADEDGE_BACKUP_RETENTION_FULL="1")
    first = cli("backup", "full", env=env)
    assert first.exit_code == 0, first.output
    # retention_full=1: pgBackRest expires the first full backup after this one
    second = cli("backup", "full", env=env)
    assert second.exit_code == 0, second.output
    yield Repo(cluster, env, second.output)
    cluster.stop()


def _runs(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select run_id, label, expired_at is not null from ops.backup_runs order by run_id"
        ).fetchall()


# bug: the run of a backup pgBackRest expired stayed 'succeeded' as if the repository held it
def test_a_backup_expired_by_the_next_backup_is_marked_expired(repo):
    runs = _runs(repo.cluster.url())

    assert [expired for _, _, expired in runs[:2]] == [True, False]


def test_the_backup_that_expires_others_says_how_many_runs_it_marked(repo):
    assert "ops.backup_runs: 1 run(s) marked expired (pgBackRest no longer holds the backup)" in (
        repo.second_output.splitlines()
    )


def test_backup_list_shows_when_a_run_expired(repo):
    result = cli("backup", "list", env=repo.env)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("runs (ops.backup_runs):")
    header = lines[start + 1].split()
    assert header[header.index("stored") + 1] == "expired"
    with psycopg.connect(repo.cluster.url()) as conn:
        label, expired_at = conn.execute(
            "select label, expired_at from ops.backup_runs order by run_id limit 1"
        ).fetchone()
    row = next(line for line in lines[start:] if label in line)
    # the last columns: expired (a date and a time), then the empty detail
    assert row.split()[-2:] == expired_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ").split()


# bug: `backup expire` left the runs of the backups it expired 'succeeded' and unmarked
def test_backup_expire_marks_a_run_whose_backup_the_repository_no_longer_holds(repo):
    with psycopg.connect(repo.cluster.url(), autocommit=True) as conn:
        run_id = conn.execute("select ops.start_backup_run('full', 'lz4')").fetchone()[0]
        conn.execute("select ops.finish_backup_run(%s, true, '20200101-000000F')", [run_id])

    result = cli("backup", "expire", env=repo.env)

    assert result.exit_code == 0, result.output
    assert [(label, expired) for r, label, expired in _runs(repo.cluster.url()) if r == run_id] == [
        ("20200101-000000F", True)
    ]


# bug: health's last_backup reported a backup pgBackRest had expired as the last good one
def test_health_last_backup_fails_when_the_only_backup_has_expired(db):
    run_id = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, true, '20260101-000000F')", [run_id])
    marked = db.execute(
        "select ops.mark_expired_backup_runs('{}', clock_timestamp() + interval '1 second')"
    ).fetchone()[0]

    row = db.execute("select ok, detail from internal.health_last_backup('1 hour')").fetchone()

    assert marked == 1
    assert row == (
        False,
        "no successful physical backup in ops.backup_runs that pgBackRest still holds (1 expired)",
    )


def test_health_last_backup_names_the_newest_backup_that_is_not_expired(db):
    older = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, true, '20260101-000000F')", [older])
    newer = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, true, '20260102-000000F')", [newer])
    db.execute(
        "update ops.backup_runs set finished_at = finished_at + interval '1 minute' where run_id = %s",
        [newer],
    )
    # the newer one expired (only the older one listed): the check reads the older one
    db.execute(
        "select ops.mark_expired_backup_runs('{20260101-000000F}', clock_timestamp() + interval '2 minutes')"
    )

    ok, detail = db.execute("select ok, detail from internal.health_last_backup('1 hour')").fetchone()

    assert ok is True
    assert detail.startswith("last physical backup 20260101-000000F (full) finished ")


def test_a_run_that_finished_after_the_list_was_read_is_not_marked_expired(db):
    listed_at = db.execute("select clock_timestamp() - interval '1 second'").fetchone()[0]
    run_id = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, true, '20260101-000000F')", [run_id])

    marked = db.execute("select ops.mark_expired_backup_runs('{}', %s)", [listed_at]).fetchone()[0]

    assert marked == 0
    assert db.execute("select expired_at from ops.backup_runs").fetchone() == (None,)


def test_a_run_listed_again_is_no_longer_marked_expired(db):
    run_id = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, true, '20260101-000000F')", [run_id])
    later = datetime.now(UTC) + timedelta(minutes=1)
    db.execute("select ops.mark_expired_backup_runs('{}', %s)", [later])

    db.execute("select ops.mark_expired_backup_runs('{20260101-000000F}', %s)", [later])

    assert db.execute("select expired_at from ops.backup_runs").fetchone() == (None,)


def test_mark_expired_backup_runs_refuses_a_null_list_with_22s09(db):
    with pytest.raises(psycopg.Error) as raised:
        db.execute("select ops.mark_expired_backup_runs(null, now())")

    assert raised.value.sqlstate == "22S09"


def test_a_logical_dump_is_never_marked_expired(db):
    run_id = db.execute("select ops.start_backup_run('logical_full', 'zst')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, true, 'spreadedge-full.dump.zst')", [run_id])

    marked = db.execute(
        "select ops.mark_expired_backup_runs('{}', clock_timestamp() + interval '1 second')"
    ).fetchone()[0]

    assert marked == 0
