"""The in-database schedules with the real pg_cron of the session's cluster: the jobs run and
succeed, as the migrating role, in the database pg_cron serves, over its socket; health's cron_jobs
check names a failing job on one line (a job that cannot connect too) and is ok again once the job
succeeds; a re-migrate keeps the jobs as an operator left them; an evaluation that overlaps
another (pg_cron's and a person's) opens and notifies an alert once, and two collections at once
are read once by a last rule.

Two waits for pg_cron in the whole module (both in the ``cron_minutes`` fixture, on a cluster of
the module's own whose clock is stepped to just before pg_cron's next minute: seconds each, at
most 75 s), and one restart of that cluster; every other test calls the functions directly."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest

import test_ops_health
from clock_helpers import Clock, clocked_cluster
from conftest import free_port
from monitor_helpers import add_rule, evaluate, metric, notifications
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from test_ops_health import _failed_run
from trading_helpers import call, place, race

# the migrated database pg_cron serves, its test jobs and runs removed after a test
cron_db = test_ops_health.cron_db
# at most this long for pg_cron's next minute, which strikes within 60 s of any moment
CRON_WAIT = 75.0
# the jobs this module schedules in pg_cron's database
PROBE = "hunt-probe"
RAISES = "hunt-raises"
ELSEWHERE = "hunt-elsewhere"
PROJECT_JOBS = (
    "spreadedge-collect-metrics",
    "spreadedge-evaluate-alert-rules",
    "spreadedge-partition-maintenance",
)
# the error RAISES's job raises: its DETAIL, HINT and (a DO block's) CONTEXT follow on lines of their own
RAISING = "do $$ begin raise exception 'hunt boom' using detail = 'the detail', hint = 'the hint'; end $$"


@dataclass
class CronMinutes:
    """What two minutes of pg_cron did. The latest finished run of each watched job after the
    first minute (jobname -> (status, return_message, started)) and health's check then; the same
    of RAISES and ELSEWHERE after the second minute, once fixed; the rows the probe job wrote; the
    migrating role, this server's port and the port ELSEWHERE was pointed at; and whether each
    project job connects to this server (jobname, nodename is cron.host, nodeport is the port,
    username is the migrating role, database is this one)."""

    runs: dict[str, tuple[str, str, Any]]
    health: tuple[bool, str]
    recovered_runs: dict[str, tuple[str, str, Any]]
    recovered_health: tuple[bool, str]
    probe_rows: set[tuple[str, str, bool]]
    role: str
    port: int
    elsewhere_port: int
    connections: list[tuple[str, bool, bool, bool, bool]]


def _finished_runs(
    conn: psycopg.Connection, after_runid: int, jobs: tuple[str, ...]
) -> dict[str, tuple[str, str, Any]]:
    found = conn.execute(
        "select distinct on (j.jobname) j.jobname, r.status, r.return_message, r.start_time"
        " from cron.job_run_details r join cron.job j on j.jobid = r.jobid"
        " where r.runid > %s and j.jobname = any (%s) and r.status in ('succeeded', 'failed')"
        " order by j.jobname, r.runid desc",
        [after_runid, list(jobs)],
    ).fetchall()
    return {name: (status, message, started) for name, status, message, started in found}


def _wait_for_runs(
    conn: psycopg.Connection, after_runid: int, jobs: tuple[str, ...]
) -> dict[str, tuple[str, str, Any]]:
    """The latest finished run of each job after after_runid, waiting (at most CRON_WAIT) until every
    job has one."""
    deadline = time.monotonic() + CRON_WAIT
    while True:
        runs = _finished_runs(conn, after_runid, jobs)
        if set(runs) == set(jobs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def _max_runid(conn: psycopg.Connection) -> int:
    return conn.execute("select coalesce(max(runid), 0) from cron.job_run_details").fetchone()[0]


def _quiet(conn: psycopg.Connection) -> None:
    """Wait (at most CRON_WAIT) until no pg_cron run is in flight and the server's next minute is at
    least 15 s away: a test that stops the server then cuts no real run of its jobs."""
    deadline = time.monotonic() + CRON_WAIT
    while time.monotonic() < deadline:
        in_flight, to_next_minute = conn.execute(
            "select (select count(*) from cron.job_run_details where status not in ('succeeded', 'failed')),"
            " 60 - extract(second from clock_timestamp())"
        ).fetchone()
        if in_flight == 0 and to_next_minute >= 15:
            return
        time.sleep(0.5)
    pytest.fail("pg_cron's runs did not settle")


def _health(conn: psycopg.Connection) -> tuple[bool, str]:
    return conn.execute("select ok, detail from internal.health_cron_jobs()").fetchone()


@pytest.fixture(scope="module")
def cron_cluster(
    make_cluster: Callable[..., Cluster], project_settings: Settings
) -> Iterator[tuple[Cluster, Clock]]:
    """A running cluster of the module's own, its database pg_cron serves migrated, and its
    clock (libfaketime), which the tests step to just before pg_cron's next minute."""
    with clocked_cluster(make_cluster) as (cluster, clock):
        cluster.start()
        try:
            migrate(cluster.url(), project_settings, echo=lambda line: None)
            yield cluster, clock
        finally:
            cluster.stop(immediate=True)


@pytest.fixture(scope="module")
def cron_minutes(cron_cluster: tuple[Cluster, Clock]) -> CronMinutes:
    """pg_cron's database, with three jobs of this module every minute (a probe that records who
    runs it, where and how; one that raises; one pointed at a port nothing listens on) and the
    hourly maintenance every minute: one minute of pg_cron; then the two failing jobs fixed:
    another minute. Everything is put back before the tests look at what happened."""
    cluster, clock = cron_cluster
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        jobs = conn.execute("select coalesce(max(jobid), 0) from cron.job").fetchone()[0]
        runs = _max_runid(conn)
        maintenance = conn.execute(
            "select jobid, schedule from cron.job where jobname = 'spreadedge-partition-maintenance'"
        ).fetchone()
        elsewhere_port = free_port()
        try:
            conn.execute(
                "create table public.hunt_cron_probe (role_name name, database_name name, over_socket boolean)"
            )
            # why one transaction: pg_cron must never see ELSEWHERE still pointed at this server
            with conn.transaction():
                conn.execute(
                    "select cron.schedule(%s, '* * * * *', 'insert into public.hunt_cron_probe"
                    " select current_user, current_database(), inet_server_addr() is null')",
                    [PROBE],
                )
                conn.execute("select cron.schedule(%s, '* * * * *', %s)", [RAISES, RAISING])
                conn.execute("select cron.schedule(%s, '* * * * *', 'select 1')", [ELSEWHERE])
                conn.execute(
                    "update cron.job set nodeport = %s where jobname = %s", [elsewhere_port, ELSEWHERE]
                )
                conn.execute("select cron.alter_job(%s, schedule => '* * * * *')", [maintenance[0]])
            clock.strike_minute_soon()
            found = _wait_for_runs(conn, runs, (PROBE, RAISES, ELSEWHERE, *PROJECT_JOBS))
            health = _health(conn)
            fixed = _max_runid(conn)
            with conn.transaction():
                conn.execute(
                    "select cron.alter_job(jobid, command => 'select 1') from cron.job where jobname = %s",
                    [RAISES],
                )
                conn.execute(
                    "update cron.job set nodeport = current_setting('port')::integer where jobname = %s",
                    [ELSEWHERE],
                )
            clock.strike_minute_soon()
            recovered = _wait_for_runs(conn, fixed, (RAISES, ELSEWHERE))
            return CronMinutes(
                runs=found,
                health=health,
                recovered_runs=recovered,
                recovered_health=_health(conn),
                probe_rows=set(conn.execute("select * from public.hunt_cron_probe").fetchall()),
                role=conn.execute("select current_user").fetchone()[0],
                port=int(conn.execute("select current_setting('port')").fetchone()[0]),
                elsewhere_port=elsewhere_port,
                connections=conn.execute(
                    "select jobname, nodename = current_setting('cron.host'),"
                    " nodeport = current_setting('port')::integer, username = current_user,"
                    " database = current_database()"
                    " from cron.job where jobname like 'spreadedge-%%' order by jobname"
                ).fetchall(),
            )
        finally:
            conn.execute("select cron.alter_job(%s, schedule => %s)", [maintenance[0], maintenance[1]])
            conn.execute("select cron.unschedule(jobid) from cron.job where jobid > %s", [jobs])
            conn.execute("drop table if exists public.hunt_cron_probe")
            conn.execute("delete from cron.job_run_details where runid > %s and status = 'failed'", [runs])


# -- the jobs run, for real ------------------------------------------------------------------------


def test_pg_cron_runs_the_per_minute_jobs_and_the_maintenance_and_they_succeed(cron_minutes):
    assert {name: cron_minutes.runs.get(name, ("never ran",))[:2] for name in PROJECT_JOBS} == {
        "spreadedge-collect-metrics": ("succeeded", "1 row"),
        "spreadedge-evaluate-alert-rules": ("succeeded", "1 row"),
        # a procedure that commits table by table, called by pg_cron
        "spreadedge-partition-maintenance": ("succeeded", "CALL"),
    }


def test_pg_cron_runs_a_job_as_the_migrating_role_in_its_database_over_the_socket(cron_minutes):
    assert cron_minutes.probe_rows == {(cron_minutes.role, "spreadedge", True)}


def test_the_jobs_migrate_scheduled_connect_to_this_server_through_cron_host(cron_minutes):
    assert cron_minutes.connections == [(name, True, True, True, True) for name in sorted(PROJECT_JOBS)]


# -- health's cron_jobs, with failures pg_cron recorded itself -------------------------------------


# bug: pg_cron records a run it could not connect for (the cluster started on another port, or
# restored into another home) with no start time; health ordered the runs and compared them with
# the last migrate by start time, so it never saw them: ok while every job failed every minute.
# And a failed job's DETAIL, HINT and CONTEXT lines split the CLI's line of the check.
def test_health_names_a_job_that_could_not_connect_and_a_raised_error_on_one_line(cron_minutes):
    assert (cron_minutes.runs[ELSEWHERE][::2], cron_minutes.runs[RAISES][0]) == (("failed", None), "failed")
    assert cron_minutes.health == (
        False,
        f"failed on their last run: {ELSEWHERE} (connection failed; the job connects to port"
        f" {cron_minutes.elsewhere_port}, the server listens on port {cron_minutes.port}),"
        f" {RAISES} (ERROR:  hunt boom DETAIL:  the detail HINT:  the hint)",
    )


def test_health_is_ok_again_once_the_failing_jobs_succeed(cron_minutes):
    runs = {name: run[:2] for name, run in cron_minutes.recovered_runs.items()}

    assert (runs, cron_minutes.recovered_health[0]) == (
        {RAISES: ("succeeded", "1 row"), ELSEWHERE: ("succeeded", "1 row")},
        True,
    )
    assert cron_minutes.recovered_health[1].endswith(" active jobs, none failed on its last run")


def _maintenance_run_across_a_restart(
    cluster: Cluster, status: str, message: str | None, ended: bool
) -> tuple[tuple[str, str, bool], tuple[bool, str]]:
    """Record a run of the partition maintenance as pg_cron would have (status and return message,
    an end time now when ended), restart the server, and read the run's latest state (status,
    return message, failed) and health's cron_jobs. Waits first for pg_cron's own runs to settle."""
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        _quiet(conn)
        conn.execute(
            "insert into cron.job_run_details (jobid, runid, job_pid, database, username, command, status,"
            " return_message, start_time, end_time) select j.jobid, nextval('cron.runid_seq'), 1, j.database,"
            " j.username, j.command, %s, %s, now(), case when %s then clock_timestamp() end from cron.job j"
            " where j.jobname = 'spreadedge-partition-maintenance'",
            [status, message, ended],
        )
    cluster.stop()
    cluster.start()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        latest = conn.execute(
            "select status, return_message, failed from internal.cron_job_latest_runs()"
            " where jobname = 'spreadedge-partition-maintenance'"
        ).fetchone()
        return latest, _health(conn)


# bug: pg_cron marks a run still starting or running when the server went down "failed" with the
# message "server restarted" as it starts again; health failed cron_jobs on it until the job's
# next run (an hour for the partition maintenance) after any crash, restart, or restore of a backup
# taken while a job ran (the restore drill's health failed now and then for it)
def test_a_run_the_servers_restart_interrupted_does_not_fail_cron_jobs(cron_cluster):
    latest, health = _maintenance_run_across_a_restart(cron_cluster[0], "running", None, ended=False)

    assert latest == ("failed", "server restarted", False)
    assert health == (True, "3 active jobs, none failed on its last run")


# the message libpq gives when the server ends a session in a query (pg_cron records it as the
# run's return_message), with the FATAL the server sent before, when libpq read it
CLOSED = (
    "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n"
    "\tbefore or while processing the request.\n"
)
TERMINATED = "FATAL:  terminating connection due to administrator command\n" + CLOSED


# bug: when pg_cron saw a job's session closed by a fast shutdown before it was stopped itself, it
# recorded the run failed with libpq's message; health failed cron_jobs on it after a plain
# restart, until the job's next run (the CI's restart, a second after a minute struck, cut that
# minute's metrics collection)
@pytest.mark.parametrize("message", [CLOSED, TERMINATED], ids=["closed", "terminated"])
def test_a_run_whose_session_the_servers_shutdown_closed_does_not_fail_cron_jobs(cron_cluster, message):
    latest, health = _maintenance_run_across_a_restart(cron_cluster[0], "failed", message, ended=True)

    assert (latest, health) == (
        ("failed", message, False),
        (True, "3 active jobs, none failed on its last run"),
    )


# -- health's cron_jobs, with runs written here (no wait) ------------------------------------------


def test_a_run_whose_session_was_terminated_since_the_server_started_still_fails_cron_jobs(cron_db):
    cron_db.execute(
        "insert into cron.job_run_details (jobid, runid, database, username, command, status, return_message,"
        " start_time, end_time) select j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command,"
        " 'failed', %s, now() + interval '1 hour', now() + interval '1 hour' from cron.job j"
        " where j.jobname = 'spreadedge-partition-maintenance'",
        [TERMINATED],
    )

    assert _health(cron_db) == (
        False,
        "failed on their last run: spreadedge-partition-maintenance (FATAL:  terminating connection due to"
        " administrator command server closed the connection unexpectedly This probably means the server"
        " terminated abnormally before or while processing the request.)",
    )


def test_a_connection_failure_before_the_last_migrate_still_fails_cron_jobs(cron_db):
    # pg_cron's record of it: failed, no start or end time (a migrate does not reconnect a job)
    cron_db.execute(
        "insert into cron.job_run_details (jobid, runid, database, username, command, status, return_message)"
        " select j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command, 'failed', 'connection failed'"
        " from cron.job j where j.jobname = 'spreadedge-evaluate-alert-rules'"
    )

    assert _health(cron_db) == (
        False,
        "failed on their last run: spreadedge-evaluate-alert-rules (connection failed)",
    )


def test_a_job_run_that_succeeded_after_a_failed_one_makes_cron_jobs_ok(cron_db):
    _failed_run(cron_db, "spreadedge-collect-metrics")
    cron_db.execute(
        "insert into cron.job_run_details (jobid, runid, database, username, command, status, return_message,"
        " start_time, end_time)"
        " select j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command, 'succeeded', '1 row',"
        " now() + interval '2 hours', now() + interval '2 hours' from cron.job j"
        " where j.jobname = 'spreadedge-collect-metrics'"
    )

    assert _health(cron_db) == (True, "3 active jobs, none failed on its last run")


# bug: health's cron_jobs raised a raw 42501 "permission denied for schema cron" for a member of
# spreadedge_owner (operators run health as the database owner), and the whole report failed
def test_health_report_of_a_role_that_may_not_read_pg_cron_fails_cron_jobs_with_a_message(cron_db):
    cron_db.execute("set role spreadedge_owner")
    try:
        checks = cron_db.execute(
            "select c from jsonb_array_elements(ops.health_report() -> 'checks') c where c ->> 'name' = 'cron_jobs'"
        ).fetchone()[0]
    finally:
        cron_db.execute("reset role")

    assert checks == {
        "name": "cron_jobs",
        "ok": False,
        "detail": "pg_cron runs in this database, but spreadedge_owner may not read its jobs: run health as a superuser",
    }


# bug: cron.job shows a role only its own jobs, so a role that may read pg_cron's schema read
# "0 active jobs, none failed" for the superuser's failing ones, as if there were none
def test_cron_jobs_of_a_role_that_sees_only_its_own_jobs_says_so(cron_db):
    _failed_run(cron_db, "spreadedge-collect-metrics")
    cron_db.execute("grant usage on schema cron to spreadedge_owner")
    cron_db.execute("set role spreadedge_owner")
    try:
        health = _health(cron_db)
    finally:
        cron_db.execute("reset role")
        cron_db.execute("revoke usage on schema cron from spreadedge_owner")

    assert health == (
        True,
        "0 active jobs of spreadedge_owner (it sees no other role's), none failed on its last run",
    )


# -- a re-migrate ----------------------------------------------------------------------------------


def test_a_migrate_keeps_a_schedule_and_a_pause_an_operator_chose_and_adds_no_job(
    cron_db, pg_cluster, project_settings
):
    jobs = dict(
        cron_db.execute("select jobname, jobid from cron.job where jobname like 'spreadedge-%%'").fetchall()
    )
    try:
        cron_db.execute(
            "select cron.alter_job(%s, schedule => '*/5 * * * *')", [jobs["spreadedge-collect-metrics"]]
        )
        cron_db.execute(
            "select cron.alter_job(%s, active => false)", [jobs["spreadedge-evaluate-alert-rules"]]
        )

        migrate(pg_cluster.url("spreadedge"), project_settings, echo=lambda line: None)

        after = cron_db.execute(
            "select jobname, jobid, schedule, active from cron.job where jobname like 'spreadedge-%%' order by jobname"
        ).fetchall()
    finally:
        cron_db.execute(
            "select cron.alter_job(%s, schedule => '* * * * *')", [jobs["spreadedge-collect-metrics"]]
        )
        cron_db.execute(
            "select cron.alter_job(%s, active => true)", [jobs["spreadedge-evaluate-alert-rules"]]
        )

    assert after == [
        ("spreadedge-collect-metrics", jobs["spreadedge-collect-metrics"], "*/5 * * * *", True),
        ("spreadedge-evaluate-alert-rules", jobs["spreadedge-evaluate-alert-rules"], "* * * * *", False),
        ("spreadedge-partition-maintenance", jobs["spreadedge-partition-maintenance"], "17 * * * *", True),
    ]


# -- the jobs' work beside a person's (two sessions, no wait) --------------------------------------


def test_two_evaluations_at_once_open_and_notify_one_alert(db, db_url):
    now = db.execute("select now()").fetchone()[0]
    metric(db, "app.ws_lag_ms", "900", now)
    add_rule(db, "ws-lag", "system", ">", "500", metric="app.ws_lag_ms", channels=["slack"])

    first, second = race(db, db_url, evaluate, evaluate, must_wait=False)
    again = evaluate(db)

    assert (first, second, again) == ([("ws-lag", "fired", Decimal("900"), True)], [], [])
    assert db.execute("select count(*) from monitor.alert_events").fetchone()[0] == 1
    assert [(channel, status) for channel, status, _ in notifications(db)] == [("slack", "pending")]


def test_two_collections_at_once_each_write_their_own_values_and_a_last_rule_counts_the_orders_once(
    seeded, db_url
):
    place(seeded, "buy", "0.01", "50000")
    place(seeded, "buy", "0.01", "50000")
    add_rule(seeded, "orders-today", "trading", ">=", "2", metric="orders.by_status")

    counts = race(
        seeded,
        db_url,
        lambda conn: call(conn, "monitor.collect_metrics"),
        lambda conn: call(conn, "monitor.collect_metrics"),
        must_wait=False,
    )

    assert min(counts) > 0
    assert seeded.execute(
        "select count(distinct recorded_at), count(*) from monitor.metrics where name = 'orders.by_status' and value > 0"
    ).fetchone() == (2, 2)
    # last is the total of each series' latest value: 2 orders, not 4
    assert evaluate(seeded) == [("orders-today", "fired", Decimal("2"), False)]
