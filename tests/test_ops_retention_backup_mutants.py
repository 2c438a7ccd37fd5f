"""Rules of row retention, the default partitions' refusal, the backup catalog and how health and
maintenance name sessions that a plausible slip in their SQL (a bound off by one, a dropped
condition, a lost check or lock) broke without any other test noticing: each test here kills one or
more mutants of the mutation run of functions/63_ops_row_retention.sql,
63_ops_default_partitions.sql, 64_ops_backups.sql, 59_ops_sessions.sql and 59_ops_wal_archiving.sql
(none a repeat of tests/test_ops_mutants.py, test_ops_health_second_mutants.py,
test_health_mutants.py or test_ops_tuning_mutants.py).

The run: 50 mutants, 15 caught by the tests before this file, 35 survived: 30 holes, each killed by
a test below (proven: it fails with its mutant, passes without), 2 equivalent, 3 left open.

Equivalent:
- apply_row_retention's "exit when v_rows < 10000" as "< 1000": a batch of 1,000 to 9,999 rows is
  followed by one more that deletes nothing and stops; the same rows go.
- health_wal_archiving's off branch without "not s.archives": a server archives only with
  archive_mode on or always, so archive_mode off already means it does not archive.

Left open:
- health_blocking_sessions without its "(a prepared transaction)" name for a blocker with no
  session: needs max_prepared_transactions above 0, a setting the test clusters lack (a restart).
- wal_archiving_state's unset without "v_archives and" (a server that does not archive read as
  unset, so wal.archive_failing 1): the test clusters set an archive_command or archive_library,
  so unset reads false either way; it needs a cluster with both empty.
- health_wal_archiving's size of the WAL waiting from every .ready file instead of the segments
  alone: the two differ only while a timeline history or backup file waits, which needs an
  archiving cluster that has switched timelines.

The holes, by the tests below: notifications, sessions and pg_cron runs ended exactly at the cutoff
or interrupted by a restart with the next run at the cutoff; a row changed while a cleanup batch
waits for it judged again; an unchanged retention audited; a table whose delete always fails
retried forever; an owner without pg_cron's schema failing maintenance; a default partition left
without its trigger or naming the wrong column; the backup catalog's checks (a compression, a null
kind, tab-only labels, a zero size, a second finish, a null listed_at), kinds (a failed run's,
a dump's effect on a running physical backup), finish times, and expiry (at listed_at exactly,
marked twice, a null among the labels, incremental backups, FOR UPDATE); session lines in UTC and
with what pg_stat_activity hides, a lock wait read from an older transaction, the count of
waiters and the order of a blocker with no transaction.

Every test runs on a fresh clone of the migrated template (db, seeded, auth_db) or on the database
pg_cron serves (cron_db), its runs removed after it; cutoffs are fixed timestamps, and a time
that must fall on a bound is written and judged in one transaction, whose now() does not move."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.abc import Query

import test_ops_health
from auth_helpers import make_user
from test_held_locks_hunt import _session_line
from test_ops_tuning_mutants import _drain, _queued
from test_unbounded_growth_hunt import _risk_event

# the migrated database pg_cron serves, its test jobs and failed runs removed after a test
cron_db = test_ops_health.cron_db
JOB = "retention-mutants-job"
# a fixed cutoff: the rows below are dated around it, whatever today is
CUTOFF = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def _refused(conn: psycopg.Connection, statement: Query, params: list | None = None) -> tuple[str, str]:
    """The SQLSTATE and message of the error statement raises."""
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, params)
    return caught.value.sqlstate, caught.value.diag.message_primary


# -- 63_ops_row_retention.sql ---------------------------------------------------------------------


def _session(conn: psycopg.Connection, user_id: int, name: str, **times: datetime | None) -> int:
    """A session of user_id logged in a day before CUTOFF with these times (idle_expires_at,
    expires_at, revoked_at); its id."""
    return conn.execute(
        "insert into auth.sessions (user_id, token_hash, created_at, last_seen_at, idle_expires_at, expires_at,"
        " revoked_at)"
        " values (%(user)s, sha256(%(name)s::bytea), %(cutoff)s::timestamptz - interval '1 day',"
        " %(cutoff)s::timestamptz - interval '1 day', %(idle)s, %(expires)s, %(revoked)s)"
        " returning session_id",
        {
            "user": user_id,
            "name": name,
            "cutoff": CUTOFF,
            "idle": times["idle_expires_at"],
            "expires": times["expires_at"],
            "revoked": times.get("revoked_at"),
        },
    ).fetchone()[0]


def test_a_session_revoked_exactly_at_the_cutoff_has_not_ended_before_it(auth_db):
    user_id = make_user(auth_db, "carol")
    later = CUTOFF + timedelta(hours=1)
    _session(auth_db, user_id, "at", idle_expires_at=later, expires_at=later, revoked_at=CUTOFF)
    _session(auth_db, user_id, "before", idle_expires_at=later, expires_at=later,
             revoked_at=CUTOFF - timedelta(microseconds=1))  # fmt: skip
    # ended before the cutoff: only the one revoked a microsecond earlier
    assert auth_db.execute("select internal.count_ended_rows('auth.sessions', %s)", [CUTOFF]).fetchone() == (
        1,
    )


@pytest.fixture
def job(cron_db: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """cron_db with JOB scheduled (never due: 31 February); the runs a test gives it removed after."""
    cron_db.execute("select cron.schedule(%s, '0 0 31 2 *', 'select 1')", [JOB])
    try:
        yield cron_db
    finally:
        cron_db.execute(
            "delete from cron.job_run_details where jobid = (select jobid from cron.job where jobname = %s)",
            [JOB],
        )


def _run(conn: psycopg.Connection, status: str, started: datetime, ended: datetime | None) -> None:
    """A run of JOB in pg_cron's database, as pg_cron records it."""
    conn.execute(
        "insert into cron.job_run_details (jobid, runid, database, username, command, status, return_message,"
        " start_time, end_time)"
        " select j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command, %s, '1 row', %s, %s"
        " from cron.job j where j.jobname = %s",
        [status, started, ended, JOB],
    )


def _ended_runs(conn: psycopg.Connection) -> int:
    return conn.execute("select internal.count_ended_rows('cron.job_run_details', %s)", [CUTOFF]).fetchone()[
        0
    ]


def test_a_cron_run_ending_exactly_at_the_cutoff_has_not_ended_before_it(job):
    before = _ended_runs(job)
    _run(job, "succeeded", CUTOFF - timedelta(minutes=1), CUTOFF)
    _run(job, "succeeded", CUTOFF + timedelta(hours=1), CUTOFF + timedelta(hours=1))  # the job's newest
    assert _ended_runs(job) - before == 0


def test_a_cron_run_the_restart_interrupted_stays_while_its_jobs_next_run_started_at_the_cutoff(job):
    before = _ended_runs(job)
    # cut short by a restart 10 days before the cutoff (failed, no end time); the job's next run
    # started exactly at the cutoff, not before it: the interrupted run is not known to have
    # ended before the cutoff
    _run(job, "failed", CUTOFF - timedelta(days=10), None)
    _run(job, "succeeded", CUTOFF, CUTOFF + timedelta(seconds=1))
    assert _ended_runs(job) - before == 0


def test_the_row_retention_of_an_owner_who_may_not_use_pg_crons_schema_leaves_its_runs_and_fails_nothing(
    cron_db,
):
    # the database owner, not the superuser pg_cron runs the hourly job as: pg_cron grants no
    # usage of its schema, so its runs are not the owner's to clean up
    assert cron_db.execute("select has_schema_privilege('spreadedge_owner', 'cron', 'usage')").fetchone() == (
        False,
    )
    cron_db.execute("set role spreadedge_owner")
    try:
        failed = cron_db.execute("call internal.apply_row_retention('{}')").fetchone()
    finally:
        cron_db.execute("reset role")
    assert failed == ([],)


def test_a_dead_notification_requeued_while_a_cleanup_batch_waits_for_it_is_kept(seeded, db_url):
    _risk_event(seeded)  # one pending notification, made dead 40 days ago here
    [notification_id] = seeded.execute(
        "update monitor.notifications set status = 'dead', dead_at = now() - interval '40 days'"
        " returning notification_id"
    ).fetchone()
    with psycopg.connect(db_url) as operator, psycopg.connect(db_url, autocommit=True) as cleanup:
        operator.execute("select monitor.requeue_notification(%s)", [notification_id])  # not committed
        # the batch picks the dead row from its snapshot, then waits for the operator's lock
        _queued(seeded, cleanup, b"select internal.delete_ended_rows('monitor.notifications',"
                                 b" now() - interval '30 days', 100)")  # fmt: skip
        operator.commit()
        results = []
        while (result := cleanup.pgconn.get_result()) is not None:
            results.append(result)
    # judged again as it is now, pending: nothing deleted
    assert [r.get_value(0, 0) for r in results] == [b"0"]
    assert seeded.execute(
        "select status::text from monitor.notifications where notification_id = %s", [notification_id]
    ).fetchone() == ("pending",)


def test_setting_a_row_retention_to_the_value_it_has_writes_no_audit_row(db):
    audited = "select count(*) from audit.log where table_name = 'ops.row_retention'"
    before = db.execute(audited).fetchone()[0]
    # partitions maintain sets the three settings at every run, most often to what they were
    db.execute("select ops.configure_row_retention('auth.sessions', '30 days')")
    db.execute("select ops.configure_row_retention('auth.sessions', '7 days')")
    assert db.execute(audited).fetchone()[0] - before == 1


def test_a_table_whose_retention_delete_fails_is_reported_and_the_others_are_still_cleaned(auth_db):
    _risk_event(auth_db)
    auth_db.execute(
        "update monitor.notifications set status = 'delivered', delivered_at = now() - interval '40 days'"
    )
    user_id = make_user(auth_db, "carol")
    long_ago = datetime.now(UTC) - timedelta(days=40)
    _session(auth_db, user_id, "ended", idle_expires_at=long_ago, expires_at=long_ago)
    auth_db.execute(
        "create function public.refuse() returns trigger language plpgsql"
        " as $$ begin raise exception 'notifications are kept'; end $$"
    )
    auth_db.execute(
        "create trigger refuse before delete on monitor.notifications for each row execute function public.refuse()"
    )
    # bounded: a table whose every batch fails must not be tried again and again
    auth_db.execute("set statement_timeout = '60s'")
    [failed] = auth_db.execute("call internal.apply_row_retention('{}')").fetchone()
    assert failed == ["monitor.notifications: notifications are kept"]
    assert auth_db.execute(
        "select (select count(*) from monitor.notifications), (select count(*) from auth.sessions)"
    ).fetchone() == (1, 0)


# -- 63_ops_default_partitions.sql ----------------------------------------------------------------

# each partitioned table the triggers guard, and the time column its partitions are by
GUARDED = [
    ("trading.orders", "created_at"),
    ("trading.order_events", "occurred_at"),
    ("trading.trades", "executed_at"),
    ("market.quotes", "quoted_at"),
    ("market.ticks", "traded_at"),
    ("market.candles", "open_time"),
    ("market.technical_indicators", "open_time"),
    ("monitor.metrics", "recorded_at"),
]


@pytest.mark.parametrize(("table", "column"), GUARDED)
def test_a_row_with_no_partition_for_its_time_is_refused_naming_table_and_time(db, table, column):
    # routed to the default partition by its time alone, and refused there before any other check
    statement = sql.SQL("insert into {} ({}) values (%s)").format(
        sql.Identifier(*table.split(".")), sql.Identifier(column)
    )
    assert _refused(db, statement, [datetime(2010, 1, 4, tzinfo=UTC)]) == (
        "22S09",
        f"{table} has no partition for {column} 2010-01-04T00:00:00+00:00",
    )


# -- 64_ops_backups.sql ----------------------------------------------------------------------------


def _finished(conn: psycopg.Connection, kind: str, label: str, succeeded: bool = True) -> int:
    """A run of kind started and finished with label; its id."""
    run_id = conn.execute("select ops.start_backup_run(%s, 'zst')", [kind]).fetchone()[0]
    conn.execute("select ops.finish_backup_run(%s, %s, %s)", [run_id, succeeded, label])
    return run_id


def test_every_compression_the_table_takes_starts_a_run(db):
    for compress_type in ("gz", "bz2", "lz4", "zst", "none"):
        db.execute("select ops.start_backup_run('full', %s)", [compress_type])
    assert db.execute("select array_agg(compress_type order by run_id) from ops.backup_runs").fetchone() == (
        ["gz", "bz2", "lz4", "zst", "none"],
    )


def test_a_backup_run_of_no_kind_is_refused_naming_null(db):
    assert _refused(db, "select ops.start_backup_run(null, 'zst')") == (
        "22S09",
        "backup kind must be full, diff, incr, logical_schema, logical_data or logical_full, got null",
    )


@pytest.mark.parametrize("label", ["\t", "\n", " \r\n "])
def test_a_label_of_tabs_or_line_breaks_only_is_refused(db, label):
    run_id = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    assert _refused(db, "select ops.finish_backup_run(%s, true, %s)", [run_id, label]) == (
        "22S09",
        f'label must name the backup (or be null), got "{label}"',
    )


def test_a_backup_of_zero_bytes_is_recorded(db):
    run_id = db.execute("select ops.start_backup_run('logical_schema', 'none')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, true, 'schema.dump', 0, 0)", [run_id])
    assert db.execute("select status, size_bytes, repo_size_bytes from ops.backup_runs").fetchone() == (
        "succeeded",
        0,
        0,
    )


def test_a_failed_run_keeps_the_kind_it_was_started_with_whatever_its_label(db):
    # only a backup pgBackRest made says by its label what it is
    run_id = _finished(db, "incr", "20260101-000000F", succeeded=False)
    assert db.execute("select kind from ops.backup_runs where run_id = %s", [run_id]).fetchone() == ("incr",)


def test_a_run_finished_in_a_transaction_begun_before_it_started_ends_when_it_started(db, db_url):
    with psycopg.connect(db_url) as finisher:
        finisher.execute("select now()")  # its transaction, and its now(), begin here
        run_id = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
        finisher.execute("select ops.finish_backup_run(%s, false, detail => 'disk full')", [run_id])
        finisher.commit()
    assert db.execute("select finished_at = started_at from ops.backup_runs").fetchone() == (True,)


def test_a_logical_dump_that_succeeds_leaves_a_physical_backup_still_running_alone(db):
    physical = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    _finished(db, "logical_full", "spreadedge-full.dump.zst")
    # a dump takes no pgBackRest lock: the physical backup may still be running
    assert db.execute(
        "select status, detail from ops.backup_runs where run_id = %s", [physical]
    ).fetchone() == (
        "running",
        None,
    )


def test_a_run_that_finished_at_the_very_time_the_list_was_read_is_not_marked_expired(db):
    with db.transaction():  # now() does not move: the run finishes at listed_at
        _finished(db, "full", "20260101-000000F")
        marked = db.execute("select ops.mark_expired_backup_runs('{}', now())").fetchone()[0]
    assert marked == 0


def test_a_run_marked_expired_is_not_marked_again(db):
    _finished(db, "full", "20260101-000000F")
    later = datetime.now(UTC) + timedelta(minutes=1)
    first = db.execute("select ops.mark_expired_backup_runs('{}', %s)", [later]).fetchone()[0]
    expired_at = db.execute("select expired_at from ops.backup_runs").fetchone()[0]
    again = db.execute("select ops.mark_expired_backup_runs('{}', %s)", [later]).fetchone()[0]
    assert (first, again) == (1, 0)
    assert db.execute("select expired_at from ops.backup_runs").fetchone() == (expired_at,)


def test_a_null_among_the_labels_listed_does_not_keep_an_unlisted_run_from_expiring(db):
    _finished(db, "full", "20260101-000000F")
    kept = _finished(db, "full", "20260102-000000F")
    later = datetime.now(UTC) + timedelta(minutes=1)
    marked = db.execute(
        "select ops.mark_expired_backup_runs(array['20260102-000000F', null], %s)", [later]
    ).fetchone()[0]
    assert marked == 1
    assert db.execute("select run_id from ops.backup_runs where expired_at is null").fetchall() == [(kept,)]


def test_mark_expired_backup_runs_refuses_a_null_listed_at_with_22s09(db):
    _finished(db, "full", "20260101-000000F")
    assert _refused(db, "select ops.mark_expired_backup_runs('{}', null)") == (
        "22S09",
        "labels and listed_at must not be null, got {} and null",
    )


def test_an_incremental_backup_pgbackrest_no_longer_lists_is_marked_expired(db):
    _finished(db, "incr", "20260101-000000F_20260101-010000I")
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert db.execute("select ops.mark_expired_backup_runs('{}', %s)", [later]).fetchone() == (1,)


def test_finishing_a_run_that_succeeded_again_is_refused_with_55s10(db):
    run_id = _finished(db, "full", "20260101-000000F")
    assert _refused(db, "select ops.finish_backup_run(%s, false, detail => 'killed')", [run_id]) == (
        "55S10",
        f"backup run {run_id} is already finished (succeeded)",
    )
    assert db.execute("select status, detail from ops.backup_runs").fetchone() == ("succeeded", None)


def test_a_second_finish_of_a_run_waits_for_the_first_and_is_refused(db, db_url):
    run_id = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    with psycopg.connect(db_url) as first, psycopg.connect(db_url, autocommit=True) as second:
        first.execute("select ops.finish_backup_run(%s, true, '20260101-000000F')", [run_id])
        _queued(db, second, b"select ops.finish_backup_run(%d, false, detail => 'killed')" % run_id)
        first.commit()
        results = []
        while (result := second.pgconn.get_result()) is not None:
            results.append(result)
    assert [r.error_field(psycopg.pq.DiagnosticField.SQLSTATE) for r in results] == [b"55S10"]
    assert db.execute("select status, detail from ops.backup_runs").fetchone() == ("succeeded", None)


# -- 59_ops_sessions.sql ---------------------------------------------------------------------------


def test_lock_holders_gives_a_transactions_start_in_utc_in_a_new_york_session(db, db_url):
    db.execute("create table public.locked ()")
    with psycopg.connect(db_url, application_name="psql") as holder:
        holder.execute("select from public.locked")
        line = _session_line(db, holder.info.backend_pid)  # its start in UTC, ending in Z
        db.execute("set timezone = 'America/New_York'")
        holders = db.execute("select internal.lock_holders('public.locked')").fetchone()[0]
    assert holders == line


def test_lock_holders_says_what_pg_stat_activity_hides_from_the_role_reading_it(db, db_url):
    db.execute("create table public.locked ()")
    with psycopg.connect(db_url, application_name="psql") as holder:
        holder.execute("select from public.locked")
        pid, user = holder.info.backend_pid, holder.info.user
        # the database owner, not in pg_read_all_stats: another role's state and times are null
        db.execute("set role spreadedge_owner")
        try:
            holders = db.execute("select internal.lock_holders('public.locked')").fetchone()[0]
        finally:
            db.execute("reset role")
    assert holders == f"pid {pid} ({user}, application psql, state hidden, transaction open since none)"


def test_a_lock_wait_begun_after_the_reading_transaction_began_is_not_negative(db, db_url):
    db.execute("create table public.locked ()")
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as waiter:
        holder.execute("lock table public.locked")
        with db.transaction():
            db.execute("select now()")  # this transaction's now() is before the wait begins
            _queued(db, waiter, b"select from public.locked")
            deadline = time.monotonic() + 10
            while db.execute(
                "select waitstart is null from pg_locks where pid = %s and not granted",
                [waiter.info.backend_pid],
            ).fetchone()[0]:  # waitstart is set a moment after the wait begins
                assert time.monotonic() < deadline, "the wait never got its start time"
                time.sleep(0.01)
            waited = db.execute("select waited from internal.lock_waits()").fetchall()
        holder.rollback()
        _drain(waiter)
    [(seconds,)] = waited
    assert seconds > timedelta(0)


def test_blocking_sessions_counts_every_session_waiting_for_a_blocker(db, db_url):
    db.execute("create table public.locked ()")
    with (
        psycopg.connect(db_url, application_name="psql") as holder,
        psycopg.connect(db_url, autocommit=True) as fill_1,
        psycopg.connect(db_url, autocommit=True) as fill_2,
    ):
        holder.execute("lock table public.locked")
        _queued(db, fill_1, b"select from public.locked")
        _queued(db, fill_2, b"select from public.locked")
        try:
            line = _session_line(db, holder.info.backend_pid)
            detail = db.execute(
                "select detail from internal.health_blocking_sessions('0 seconds')"
            ).fetchone()[0]
        finally:
            holder.rollback()
            _drain(fill_1)
            _drain(fill_2)
    assert f"{line}, blocking 2 (the longest for " in detail


def test_blocking_sessions_names_a_blocker_with_no_transaction_open_last(db, db_url):
    db.execute("create table public.locked ()")
    with (
        psycopg.connect(db_url, autocommit=True, application_name="advisory") as idle,
        psycopg.connect(db_url, application_name="psql") as open_,
        psycopg.connect(db_url, autocommit=True) as waiter_1,
        psycopg.connect(db_url, autocommit=True) as waiter_2,
    ):
        idle.execute("select pg_advisory_lock(49)")  # a session-level lock: no transaction stays open
        open_.execute("lock table public.locked")
        _queued(db, waiter_1, b"select pg_advisory_lock(49)")
        _queued(db, waiter_2, b"select from public.locked")
        pids = (open_.info.backend_pid, idle.info.backend_pid)
        try:
            detail = db.execute(
                "select detail from internal.health_blocking_sessions('0 seconds')"
            ).fetchone()[0]
        finally:
            idle.execute("select pg_advisory_unlock(49)")
            open_.rollback()
            _drain(waiter_1)
            _drain(waiter_2)
    # the transaction open in psql first; the session holding its lock outside any transaction last
    first, second = detail.split(" wait for: ")[1].split("; ")
    assert first.startswith(f"pid {pids[0]} (")
    assert second.startswith(f"pid {pids[1]} (") and "transaction open since none), blocking 1" in second
