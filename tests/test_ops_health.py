"""ops.health_report and spreadedge health; the backup catalog's functions."""

from __future__ import annotations

import json

import psycopg
import pytest

from ops_helpers import cli


def test_health_fails_without_a_backup_and_exits_1(db_url):
    result = cli("health", database_url=db_url)

    assert result.exit_code == 1
    assert (
        "FAIL  last_backup               no successful physical backup recorded in ops.backup_runs"
        in result.output
    )
    assert result.output.rstrip().endswith("UNHEALTHY")


def test_health_after_a_successful_backup_is_healthy_json_with_every_check(db, db_url):
    run_id = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, true, '20260101-000000F', 100, 10)", [run_id])

    result = cli("health", "--json", database_url=db_url)

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["healthy"] is True
    assert [check["name"] for check in document["checks"]] == [
        "migrations",
        "partitions_registered",
        "partitions_ahead",
        "default_partitions_empty",
        "cron_jobs",
        "last_backup",
        "replication",
        "long_transactions",
        "disk_usage",
    ]


def test_ops_health_without_arguments_is_the_report_with_the_default_limits(db):
    document, report = db.execute(
        "select ops.health() - 'checked_at', ops.health_report() - 'checked_at'"
    ).fetchone()

    assert document == report
    assert (document["healthy"], [c["name"] for c in document["checks"] if not c["ok"]]) == (
        False,
        ["last_backup"],
    )


def test_health_names_a_transaction_open_too_long(db, db_url):
    with psycopg.connect(db_url) as other:
        other.execute("select 1")  # opens a transaction and leaves it open
        row = db.execute(
            "select ok, detail like '1 transactions open longer than 00:00:00: pid %%'"
            " from internal.health_long_transactions('0 seconds')"
        ).fetchone()

    assert row == (False, True)


def test_finishing_an_unknown_backup_run_is_refused_with_23s21(db):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select ops.finish_backup_run(9999, true)")

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S21",
        "backup run 9999 does not exist",
    )


def test_finishing_a_backup_run_twice_is_refused_with_55s10(db):
    run_id = db.execute("select ops.start_backup_run('diff', 'gz')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, false, detail => 'disk full')", [run_id])

    with pytest.raises(psycopg.Error) as caught:
        db.execute("select ops.finish_backup_run(%s, true)", [run_id])

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "55S10",
        f"backup run {run_id} is already finished (failed)",
    )


def test_a_successful_physical_backup_marks_an_earlier_run_left_running_as_interrupted(db):
    killed = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    dump = db.execute("select ops.start_backup_run('logical_full', 'zst')").fetchone()[0]
    later = db.execute("select ops.start_backup_run('incr', 'zst')").fetchone()[0]

    db.execute(
        "select ops.finish_backup_run(%s, true, '20260101-000000F_20260101-010000I', 100, 10)", [later]
    )

    runs = db.execute("select run_id, status, detail from ops.backup_runs order by run_id").fetchall()
    assert runs == [
        (
            killed,
            "failed",
            f"interrupted: backup run {later} of the cluster succeeded after it began, so no process was running it",
        ),
        (dump, "running", None),
        (later, "succeeded", None),
    ]


def test_a_failed_physical_backup_leaves_an_earlier_running_run_alone(db):
    earlier = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    later = db.execute("select ops.start_backup_run('diff', 'zst')").fetchone()[0]

    db.execute("select ops.finish_backup_run(%s, false, detail => 'unable to acquire lock')", [later])

    assert db.execute("select status from ops.backup_runs where run_id = %s", [earlier]).fetchone() == (
        "running",
    )
