"""ops.health_report and spreadedge health; the backup catalog's functions."""

from __future__ import annotations

import json

import psycopg
import pytest

from ops_helpers import cli
from packaging_helpers import without_code_sql


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
        "writable",
        "cron_jobs",
        "last_backup",
        "replication",
        "replication_slots",
        "synchronous_standby",
        "long_transactions",
        "disk_usage",
        "blocking_sessions",
        "wal_archiving",
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


@pytest.fixture
def cron_db(pg_cluster, project_settings):
    """The migrated database pg_cron serves (the session cluster's own "spreadedge"), with its
    three jobs; jobs and runs a test adds are removed after it."""
    from spreadedge.migrate import migrate

    url = pg_cluster.url("spreadedge")
    migrate(url, project_settings, echo=lambda line: None)
    with psycopg.connect(url, autocommit=True) as conn:
        jobs = conn.execute("select coalesce(max(jobid), 0) from cron.job").fetchone()[0]
        runs = conn.execute("select coalesce(max(runid), 0) from cron.job_run_details").fetchone()[0]
        yield conn
        conn.execute("select cron.unschedule(jobid) from cron.job where jobid > %s", [jobs])
        conn.execute("delete from cron.job_run_details where runid > %s and status = 'failed'", [runs])


def _failed_run(conn, job_name, started="now() + interval '1 hour'"):
    conn.execute(
        "insert into cron.job_run_details (jobid, runid, database, username, command, status, return_message,"
        " start_time, end_time)"
        " select j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command, 'failed',"
        f" E'ERROR:  division by zero\\n', {started}, {started}"
        " from cron.job j where j.jobname = %s",
        [job_name],
    )


def test_a_failed_cron_job_of_another_database_does_not_fail_cron_jobs(cron_db):
    cron_db.execute(
        "select cron.schedule_in_database('other-db-job', '0 0 31 2 *', 'select 1/0', 'postgres')"
    )
    _failed_run(cron_db, "other-db-job")

    assert cron_db.execute("select ok, detail from internal.health_cron_jobs()").fetchone() == (
        True,
        "3 active jobs, none failed on its last run",
    )


def test_a_failed_cron_job_of_this_database_fails_cron_jobs_naming_its_error_on_one_line(cron_db):
    _failed_run(cron_db, "spreadedge-collect-metrics")

    assert cron_db.execute("select ok, detail from internal.health_cron_jobs()").fetchone() == (
        False,
        "failed on their last run: spreadedge-collect-metrics (ERROR:  division by zero)",
    )


def test_a_cron_job_run_that_failed_before_the_last_migrate_does_not_fail_cron_jobs(cron_db):
    _failed_run(
        cron_db,
        "spreadedge-collect-metrics",
        "(select max(finished_at) - interval '1 second' from ops.migrate_runs)",
    )

    assert cron_db.execute("select ok, detail from internal.health_cron_jobs()").fetchone() == (
        True,
        "3 active jobs, none failed on its last run",
    )


def test_every_finished_migrate_is_recorded_in_migrate_runs(cron_db, pg_cluster, project_settings):
    from spreadedge.migrate import migrate

    count, last = cron_db.execute("select count(*), max(finished_at) from ops.migrate_runs").fetchone()
    migrate(pg_cluster.url("spreadedge"), project_settings, echo=lambda line: None)

    assert cron_db.execute(
        "select count(*), max(finished_at) > %s, bool_and(role_name = current_user) from ops.migrate_runs",
        [last],
    ).fetchone() == (count + 1, True, True)


def test_default_partitions_empty_counts_the_rows_of_each_default_partition(db):
    db.execute(
        "insert into audit.log (table_name, operation, row_key, new_row, logged_at)"
        " select 'x.y', 'INSERT', '{\"a\": 1}', '{\"a\": 1}', '2099-05-15' from generate_series(1, 5)"
    )

    assert db.execute("select ok, detail from internal.health_default_partitions()").fetchone() == (
        False,
        "rows in default partitions: audit.log_default (5 rows)",
    )


def test_health_without_any_sql_is_refused_naming_the_directory(db_url, tmp_path, monkeypatch):
    # every applied migration was reported "applied but unknown to this code"; outside the project
    # the code's own SQL is used, so only a spreadedge that carries none is refused
    migrations = without_code_sql(monkeypatch, tmp_path / "code")
    result = cli("health", database_url=db_url, env={"SPREADEDGE_PROJECT_DIR": str(tmp_path)})
    assert (result.exit_code, result.output) == (
        1,
        f"Error: {migrations} is not a directory: run spreadedge from the project "
        "directory (the one with migrations/ and functions/) or set SPREADEDGE_PROJECT_DIR\n",
    )


@pytest.mark.parametrize(
    ("kind", "compress_type", "message"),
    [
        (
            "weekly",
            "zst",
            "backup kind must be full, diff, incr, logical_schema, logical_data or logical_full, got weekly",
        ),
        ("full", "zip", "compress_type must be gz, bz2, lz4, zst or none, got zip"),
    ],
)
def test_a_backup_run_of_an_unknown_kind_or_compression_is_refused_naming_it(
    db, kind, compress_type, message
):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select ops.start_backup_run(%s, %s)", [kind, compress_type])
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S09", message)
    assert db.execute("select count(*) from ops.backup_runs").fetchone() == (0,)
