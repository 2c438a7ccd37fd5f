"""The failures `spreadedge health` checks for are metrics too, so that a system alert rule pages
someone: a session waiting on a lock another holds, a replication slot holding back WAL, commits
waiting for a synchronous standby that is not there, a failing pg_cron job, an old backup, a table
with no partition ahead, rows in a default partition, a full server, a collector that cannot see,
WAL archiving that fails (migration 0054: a cluster of this module's own archiving to /bin/true,
then /bin/false or nothing).

Each value is compared with the state measured as the metric measures it; where the clock or the
WAL position moves while the collection runs, the value lies between a measurement before it and
one after it (no timed assertion). Every wait is bounded, and every lock, slot and setting a test
makes is undone even when it fails.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from frozen_helpers import seeded_cluster
from ops_helpers import archive_current_wal, cli
from spreadedge.cluster import Cluster
from spreadedge.settings import Settings
from syncrep_helpers import CAP, wait_for
from test_ops_health import _failed_run, cron_db  # noqa: F401 (a fixture)
from test_partitions_hunt import _drop_partitions_ending_after

README = Path(__file__).resolve().parents[1] / "README.md"


def _collected(conn: psycopg.Connection, name: str) -> Decimal | None:
    """The value of an unlabelled metric the latest collect_metrics recorded (None: not recorded)."""
    row = conn.execute(
        "select m.value from monitor.metrics m where m.name = %s and m.labels = '{}'"
        " order by m.recorded_at desc limit 1",
        [name],
    ).fetchone()
    return None if row is None else row[0]


def _collect(conn: psycopg.Connection) -> None:
    conn.execute("delete from monitor.metrics")
    conn.execute("select monitor.collect_metrics()")


def lock_waiter(db: psycopg.Connection, url: str) -> tuple[psycopg.Connection, threading.Thread]:
    """A connection blocked on LOCK TABLE public.held (held by the caller) in a thread, returned
    once it waits; it gives up after a minute whatever happens."""
    waiter = psycopg.connect(url, application_name="waiter")
    waiter.execute("set lock_timeout = '60s'")  # CAP; in the transaction LOCK TABLE needs

    def wait() -> None:
        with contextlib.suppress(psycopg.Error):
            waiter.execute("lock table public.held")

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    pid = waiter.info.backend_pid
    wait_for(
        lambda: db.execute(
            "select exists (select from pg_locks where pid = %s and not granted and waitstart is not null)",
            [pid],
        ).fetchone()[0],
        "the waiter never waited for the lock",
    )
    return waiter, thread


@pytest.fixture
def held_lock(db: psycopg.Connection, db_url: str) -> Iterator[int]:
    """A table held by one connection (a psql left in a transaction) and another connection
    waiting to lock it; yields the waiter's pid."""
    db.execute("create table public.held (x integer)")
    with psycopg.connect(db_url, application_name="lunch") as holder:
        holder.execute("lock table public.held")
        waiter, thread = lock_waiter(db, db_url)
        try:
            yield waiter.info.backend_pid
        finally:
            holder.rollback()
            thread.join(CAP)
            waiter.close()
    assert not thread.is_alive()


def _lock_waited(conn: psycopg.Connection, pid: int) -> Decimal:
    """How long ``pid`` has waited for its lock, as db.lock_wait_max_seconds measures it."""
    return conn.execute(
        "select round(extract(epoch from clock_timestamp() - waitstart), 3) from pg_locks"
        " where pid = %s and not granted",
        [pid],
    ).fetchone()[0]


# bug: a session waiting on a lock another session holds was a health check alone: nothing that
# collect_metrics recorded showed it, and no alert rule could page anyone for it
def test_a_session_waiting_on_a_lock_held_by_another_connection_is_one_lock_wait(db, held_lock):
    before = _lock_waited(db, held_lock)
    _collect(db)
    after = _lock_waited(db, held_lock)

    assert _collected(db, "db.lock_waits") == 1
    assert before <= _collected(db, "db.lock_wait_max_seconds") <= after


def test_no_lock_wait_reads_zero(db):
    _collect(db)

    assert (_collected(db, "db.lock_waits"), _collected(db, "db.lock_wait_max_seconds")) == (0, 0)


# the collector run as the database owner (`spreadedge metrics collect` on a server of your own):
# pg_stat_activity hides other roles' wait events from it, pg_locks does not
def test_a_lock_wait_of_another_role_counts_for_a_collector_without_pg_read_all_stats(db, held_lock):
    db.execute("set role spreadedge_owner")
    try:
        _collect(db)
        hidden = db.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and backend_type is null"
        ).fetchone()[0]
    finally:
        db.execute("reset role")

    assert _collected(db, "db.lock_waits") == 1
    assert hidden >= 3  # the holder, the waiter and this session are the superuser's
    assert _collected(db, "db.sessions_hidden") == hidden


def test_a_superuser_collector_sees_every_session(db, held_lock):
    _collect(db)

    assert _collected(db, "db.sessions_hidden") == 0


def test_connections_used_is_the_share_of_max_connections_the_client_sessions_take(db, held_lock):
    db.execute("begin")  # one snapshot of pg_stat_activity for the collection and the count
    try:
        db.execute("select monitor.collect_metrics()")
        sessions, limit = db.execute(
            "select count(*) filter (where backend_type = 'client backend'),"
            " current_setting('max_connections')::integer from pg_stat_activity"
        ).fetchone()
        value = _collected(db, "db.connections_used_ratio")
    finally:
        db.execute("rollback")

    assert sessions >= 3  # the holder, the waiter and this one
    assert value == round(Decimal(sessions) / limit, 6)


@pytest.fixture
def slot(db: psycopg.Connection) -> Iterator[str]:
    """A physical replication slot reserving WAL from now on, that nobody reads; dropped after."""
    db.execute("select pg_create_physical_replication_slot('failure_metrics_hunt', true)")
    try:
        yield "failure_metrics_hunt"
    finally:
        db.execute("select pg_drop_replication_slot('failure_metrics_hunt')")


def _held_back(conn: psycopg.Connection, slot: str) -> int:
    """What ``slot`` holds back, measured as the metric (and health) measures it."""
    return conn.execute(
        "select pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint from pg_replication_slots"
        " where slot_name = %s",
        [slot],
    ).fetchone()[0]


# bug: a slot nobody reads holds back WAL until the disk fills; health named it, no metric did
def test_a_slot_holding_back_wal_is_the_wal_retained(db, slot):
    db.execute("create table public.ballast as select generate_series(1, 50000) n")  # about 2 MB of WAL
    before = _held_back(db, slot)
    _collect(db)
    after = _held_back(db, slot)

    assert before > 1_000_000
    assert before <= _collected(db, "replication.slot_wal_retained_bytes") <= after
    assert _collected(db, "replication.slots_lost") == 0


def test_no_slot_holds_back_nothing(db):
    _collect(db)

    assert (
        _collected(db, "replication.slot_wal_retained_bytes"),
        _collected(db, "replication.slots_lost"),
    ) == (
        0,
        0,
    )


@pytest.fixture(scope="module")
def stalled(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated cluster of this module's own whose synchronous standby never comes
    (synchronous_standby_names 'nobody'), with its pg_cron jobs switched off; reset after."""
    cluster = seeded_cluster(
        make_cluster, project_settings, lambda conn: conn.execute("update cron.job set active = false")
    )
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("alter system set synchronous_standby_names = 'nobody'")
        conn.execute("select pg_reload_conf()")
        try:
            yield cluster
        finally:
            conn.execute("alter system reset synchronous_standby_names")
            conn.execute("select pg_reload_conf()")
            wait_for(
                lambda: (
                    conn.execute(
                        "select count(*) from pg_stat_activity where wait_event = 'SyncRep'"
                    ).fetchone()
                    == (0,)
                ),
                "commits still waited for the synchronous standby",
            )


# bug: with the synchronous standby gone every commit hangs; only health said so
def test_a_commit_waiting_for_a_missing_synchronous_standby_is_counted(stalled):
    with (
        psycopg.connect(stalled.url(), autocommit=True) as conn,
        psycopg.connect(stalled.url()) as writer,
    ):
        conn.execute("set synchronous_commit = local")  # the collection's own commit does not wait
        writer.execute("create temp table probe (x integer)")  # a transaction that writes WAL waits
        committing = threading.Thread(target=writer.commit, daemon=True)
        committing.start()
        try:
            wait_for(
                lambda: conn.execute(
                    "select exists (select from pg_stat_activity where pid = %s and wait_event = 'SyncRep')",
                    [writer.info.backend_pid],
                ).fetchone()[0],
                "the commit never waited for the synchronous standby",
            )
            with conn.transaction():  # one snapshot of pg_stat_activity for the collection and the count
                conn.execute("select monitor.collect_metrics()")
                waiting = conn.execute(
                    "select count(*) from pg_stat_activity where wait_event = 'SyncRep'"
                ).fetchone()[0]
                value = _collected(conn, "replication.sync_commits_waiting")
        finally:
            # why a connection of its own: the writer's is busy in its thread until the cancel
            with psycopg.connect(stalled.url(), autocommit=True) as canceller:
                canceller.execute("select pg_cancel_backend(%s)", [writer.info.backend_pid])
                committing.join(CAP)
                if committing.is_alive():  # never leave the writer's connection busy for ever
                    canceller.execute("select pg_terminate_backend(%s)", [writer.info.backend_pid])
                    committing.join(CAP)
    assert not committing.is_alive()
    assert waiting >= 1  # the probe; the synchronous standby comes for no other commit either
    assert value == waiting


# bug: a pg_cron job failing every minute (the maintenance, the alert evaluation itself) was seen
# only by whoever ran health
def test_a_job_whose_latest_run_failed_is_a_job_failing(cron_db):  # noqa: F811
    cron_db.execute("begin isolation level repeatable read")  # pg_cron's own runs stay out of view
    try:
        _failed_run(cron_db, "spreadedge-collect-metrics")
        cron_db.execute("select monitor.collect_metrics()")
        value = cron_db.execute(
            "select value from monitor.metrics where name = 'cron.jobs_failing' order by recorded_at desc limit 1"
        ).fetchone()[0]
        health = cron_db.execute("select ok from internal.health_cron_jobs()").fetchone()[0]
    finally:
        cron_db.execute("rollback")

    assert (value, health) == (1, False)


def test_a_collector_that_may_not_read_pg_cron_records_no_jobs_failing(cron_db):  # noqa: F811
    cron_db.execute("begin")
    try:
        cron_db.execute("set local role spreadedge_owner")
        cron_db.execute("select monitor.collect_metrics()")
        recorded = cron_db.execute(
            "select count(*) from monitor.metrics where name = 'cron.jobs_failing'"
            " and recorded_at = transaction_timestamp()"
        ).fetchone()[0]
    finally:
        cron_db.execute("rollback")

    assert recorded == 0  # not a 0 that says none fails


def _backup_finished(conn: psycopg.Connection, finished_at: str, expired: bool = False) -> None:
    conn.execute(
        "insert into ops.backup_runs (kind, compress_type, status, label, started_at, finished_at, expired_at)"
        " values ('full', 'lz4', 'succeeded', '20260101-000000F', %s::timestamptz - interval '1 minute',"
        " %s::timestamptz, case when %s then now() end)",
        [finished_at, finished_at, expired],
    )


def _age(conn: psycopg.Connection, since: str) -> Decimal:
    return conn.execute(
        "select round(extract(epoch from clock_timestamp() - %s::timestamptz), 3)", [since]
    ).fetchone()[0]


# bug: a backup job that stopped (its cron entry removed, pgBackRest failing) was seen only by health
def test_the_last_backup_age_counts_from_the_newest_backup_pgbackrest_still_holds(db):
    _backup_finished(db, "2026-01-01 00:00:00Z")
    _backup_finished(db, "2026-01-02 00:00:00Z", expired=True)  # expired: no backup any more
    before = _age(db, "2026-01-01 00:00:00Z")
    _collect(db)
    after = _age(db, "2026-01-01 00:00:00Z")

    assert before <= _collected(db, "backup.last_success_age_seconds") <= after


def test_a_database_never_backed_up_counts_its_age_from_the_first_migrate(db):
    first = db.execute("select min(finished_at) from ops.migrate_runs").fetchone()[0].isoformat()
    before = _age(db, first)
    _collect(db)
    after = _age(db, first)

    assert before <= _collected(db, "backup.last_success_age_seconds") <= after


# bug: a table whose maintenance stopped ran out of partitions (writes refused) with no alert
def test_a_table_without_a_partition_ahead_makes_partitions_ahead_zero(db):
    _collect(db)
    fresh = _collected(db, "partitions.min_ahead")
    _drop_partitions_ending_after(db, "trading.orders", "now() + interval '1 month'")
    _collect(db)

    assert fresh is not None and fresh >= 1
    assert _collected(db, "partitions.min_ahead") == 0
    assert db.execute("select ok from internal.health_partitions_ahead()").fetchone() == (False,)


def test_partitions_ahead_is_the_fewest_of_any_table(db):
    _collect(db)

    # counted here from pg_partman's own list of each table's partitions
    fewest = db.execute(
        """
        select min(a.ahead)
        from partman.part_config c
        cross join lateral (select count(*) as ahead
                            from partman.show_partitions(c.parent_table) p
                            cross join lateral partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i
                            where i.child_start_time >= now()) a
        """
    ).fetchone()[0]
    assert _collected(db, "partitions.min_ahead") == fewest


def test_rows_in_a_default_partition_are_counted(db):
    db.execute(
        "insert into audit.log (table_name, operation, row_key, new_row, logged_at)"
        " select 'x.y', 'INSERT', '{\"a\": 1}', '{\"a\": 1}', '2099-05-15' from generate_series(1, 5)"
    )
    _collect(db)

    assert _collected(db, "partitions.default_rows") == 5


def test_a_dead_notification_is_counted(seeded):
    seeded.execute(
        "select monitor.add_alert_rule(name => 'dead-letter', kind => 'system', metric => 'db.lock_waits',"
        " aggregate => 'last', operator => '>=', threshold => 0, evaluation_window => '5 minutes',"
        " channels => '{webhook}')"
    )
    seeded.execute("select monitor.collect_metrics()")
    seeded.execute("select * from monitor.evaluate_alert_rules()")
    # a webhook that answers 404: refused for good, the message goes to the dead letter at once
    with seeded.transaction():
        (notification,) = seeded.execute(
            "select notification_id from monitor.claim_notifications(worker => 'w1', channels => '{webhook}')"
        ).fetchone()
        seeded.execute(
            "select monitor.fail_notification(notification_id => %s, worker => 'w1', error => 'HTTP 404',"
            " permanent => true)",
            [notification],
        )
    _collect(seeded)

    assert _collected(seeded, "notifications.dead") == 1


WAL_METRICS = ("wal.archive_failing", "wal.archive_waiting_files", "wal.archive_waiting_seconds")


def _wal_metrics(conn: psycopg.Connection) -> tuple[Decimal | None, ...]:
    return tuple(_collected(conn, name) for name in WAL_METRICS)


# the test clusters do not archive: health's wal_archiving is ok, and so the metrics read 0 (a
# series no longer recorded would keep the last value it had while archive_mode was on)
def test_archive_mode_off_reads_zero_for_every_archiving_metric(db):
    _collect(db)

    assert db.execute("show archive_mode").fetchone() == ("off",)
    assert _wal_metrics(db) == (0, 0, 0)


def _set_archive_command(conn: psycopg.Connection, command: str) -> None:
    conn.execute(sql.SQL("alter system set archive_command = {}").format(sql.Literal(command)))
    conn.execute("select pg_reload_conf()")
    wait_for(
        lambda: conn.execute("show archive_command").fetchone() == (command,),
        f"archive_command {command!r} was never reloaded",
    )


def _write_wal(conn: psycopg.Connection) -> None:
    """Some WAL, so that pg_switch_wal switches to a new segment."""
    conn.execute("create table if not exists public.ballast (n integer)")
    conn.execute("insert into public.ballast values (1)")


@pytest.fixture(scope="module")
def archiver(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated cluster of this module's own that archives its WAL (archive_mode on, restarted;
    archive_command /bin/true: every segment archived at once), its pg_cron jobs switched off;
    stopped after."""
    cluster = seeded_cluster(
        make_cluster, project_settings, lambda conn: conn.execute("update cron.job set active = false")
    )
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("alter system set archive_mode = on")
            conn.execute("alter system set archive_command = '/bin/true'")
        cluster.stop()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def archiving(archiver: Cluster) -> Iterator[psycopg.Connection]:
    """A connection to the archiving cluster, everything archived; afterwards archive_command is
    /bin/true again and the WAL left waiting archived, whatever happened."""
    with psycopg.connect(archiver.url(), autocommit=True) as conn:
        _write_wal(conn)
        archive_current_wal(conn)
        try:
            yield conn
        finally:
            _set_archive_command(conn, "/bin/true")
            _write_wal(conn)
            archive_current_wal(conn)


@pytest.fixture
def failing(archiving: psycopg.Connection) -> psycopg.Connection:
    """The archiving cluster's archive_command failing (/bin/false) and a segment switched, waiting
    (bounded) until the archiver has failed to archive it."""
    _set_archive_command(archiving, "/bin/false")
    _write_wal(archiving)
    [segment] = archiving.execute("select pg_walfile_name(pg_current_wal_lsn())").fetchone()
    archiving.execute("select pg_switch_wal()")
    wait_for(
        lambda: archiving.execute(
            "select coalesce(last_failed_wal >= %s and last_failed_time > coalesce(last_archived_time,"
            " '-infinity'), false) from pg_stat_archiver",
            [segment],
        ).fetchone()[0],
        f"archiving {segment} never failed",
    )
    return archiving


def _waiting(conn: psycopg.Connection) -> tuple[int, Decimal]:
    """The WAL files waiting to be archived and how long the oldest has waited, measured as the
    metrics measure them."""
    return conn.execute(
        "select count(*), round(extract(epoch from clock_timestamp() - min(modification)), 3)"
        " from pg_ls_archive_statusdir() where name like '%.ready'"
    ).fetchone()


def _archiving_healthy(conn: psycopg.Connection) -> bool:
    """health's wal_archiving check, with its default limit."""
    return conn.execute("select ok from internal.health_wal_archiving('10 minutes')").fetchone()[0]


def test_archiving_that_keeps_up_reads_zero(archiving):
    _collect(archiving)

    assert archiving.execute("show archive_mode").fetchone() == ("on",)
    assert _wal_metrics(archiving) == (0, 0, 0)


# bug: with the archive command failing, pg_wal grew until the disk was full (then the server
# stopped) and no backup could be restored past the last segment archived; health's wal_archiving
# said so, no metric did, and no alert rule could page anyone for it
def test_an_archive_command_that_fails_is_archiving_failing_with_the_wal_waiting(failing):
    files_before, age_before = _waiting(failing)
    _collect(failing)
    files_after, age_after = _waiting(failing)

    assert _collected(failing, "wal.archive_failing") == 1
    assert files_before >= 1
    assert files_before <= _collected(failing, "wal.archive_waiting_files") <= files_after
    assert age_before <= _collected(failing, "wal.archive_waiting_seconds") <= age_after
    assert _archiving_healthy(failing) is False


def test_archive_mode_on_without_an_archive_command_is_archiving_failing(archiving):
    _set_archive_command(archiving, "")
    _collect(archiving)

    assert _collected(archiving, "wal.archive_failing") == 1
    assert _archiving_healthy(archiving) is False


# the collector run as the database owner: pg_stat_archiver is every role's, the archive status
# directory is for superusers and pg_monitor only; the waiting WAL is not recorded rather than 0
def test_a_collector_that_may_not_list_the_waiting_wal_records_only_archiving_failing(failing):
    failing.execute("delete from monitor.metrics")
    failing.execute("set role spreadedge_owner")
    try:
        failing.execute("select monitor.collect_metrics()")
    finally:
        failing.execute("reset role")

    assert _wal_metrics(failing) == (1, None, None)


def _readme_rules() -> list[list[str]]:
    """The `spreadedge alerts add-rule` lines of the README's example rules for the failure metrics."""
    text = README.read_text()
    block = text[text.index("Alert rules for the failures health checks for") :]
    block = block[block.index("```sh") + len("```sh") : block.index("```", block.index("```sh") + 5)]
    lines = re.sub(r"\\\n\s*", " ", block).splitlines()
    return [shlex.split(line.split("#")[0])[3:] for line in lines if "alerts add-rule" in line]


def test_every_example_rule_of_the_readme_is_accepted(db, db_url):
    rules = _readme_rules()
    for rule in rules:
        result = cli("alerts", "add-rule", *rule, database_url=db_url)
        assert result.exit_code == 0, (rule, result.output)

    assert len(rules) == 12


# the whole path: the condition -> collect_metrics -> evaluate_alert_rules -> an alert open -> its
# notification queued, with the README's rule on the age of the last backup
def test_an_old_backup_opens_the_readme_alert_and_queues_its_notifications(db, db_url):
    rule = next(rule for rule in _readme_rules() if "backup.last_success_age_seconds" in rule)
    assert cli("alerts", "add-rule", *rule, database_url=db_url).exit_code == 0
    _backup_finished(db, (datetime.now(UTC) - timedelta(hours=27)).isoformat())
    db.execute("select monitor.collect_metrics()")
    transitions = db.execute(
        "select rule, transition::text, notified from monitor.evaluate_alert_rules()"
    ).fetchall()

    assert transitions == [("backup-old", "fired", True)]
    assert db.execute(
        "select a.status::text, a.severity::text from monitor.alerts a"
        " join monitor.alert_rules r using (rule_id) where r.name = 'backup-old'"
    ).fetchall() == [("firing", "critical")]
    assert db.execute(
        "select channel::text, status::text from monitor.notifications order by channel"
    ).fetchall() == [("email", "pending"), ("slack", "pending")]


# the whole path with the README's rule on archiving: failing at every collection of its 5 minutes
# (dated 4 and 2 minutes ago and now; the values are the state as each collection runs) fires it
def test_archiving_failing_for_five_minutes_opens_the_readme_alert(archiver, failing):
    rule = next(rule for rule in _readme_rules() if "wal.archive_failing" in rule)
    failing.execute("delete from monitor.metrics")
    for minutes_ago in (4, 2, 0):
        failing.execute("select monitor.collect_metrics(now() - make_interval(mins => %s))", [minutes_ago])
    assert cli("alerts", "add-rule", *rule, database_url=archiver.url()).exit_code == 0
    try:
        transitions = failing.execute(
            "select rule, transition::text, value, notified from monitor.evaluate_alert_rules()"
        ).fetchall()
    finally:  # the cluster is the module's: its rule, alert and notification go
        failing.execute(
            "truncate monitor.notifications, monitor.alert_events, monitor.alerts, monitor.alert_rules"
        )

    assert transitions == [("wal-archiving-failing", "fired", 1, True)]
