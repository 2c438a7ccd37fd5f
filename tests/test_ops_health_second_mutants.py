"""Rules of partition lifecycle and health that neither the suite nor the first mutation rounds
(tests/test_ops_mutants.py, tests/test_health_mutants.py) pinned down: each test here fails with a
small, plausible bug in the SQL (a mutant) that the rest of the suite let through.

Mutation run (functions/63_ops_partitions.sql, functions/60_ops_health.sql): 40 mutants tried
(none a repeat of the first rounds'; one more, disk_usage's <= made <, was dropped from the count
as a repeat of test_health_mutants'), 1 of them equivalent by reading (configure_partitioning's
retention <= '0' made < '0': internal.check_age refuses a zero interval anyway), 14 caught by
the suite and 25 holes, 24 of them closed by the tests below. Left open: replication_slots
judging only an inactive slot's WAL against max_retained_wal (an active slot over the limit
passes): an active slot needs a streaming standby or a walsender the test cluster does not run.

Holes, each killed by one test below:
- partitions_ahead: newest end exactly now() + interval failed (< made <=)
- partition_coverage: partitions after a gap counted ahead (the contiguity condition dropped)
- partition_status: default_rows counted with check_default's non-exact count (1 for 3)
- long_transactions: another database's transaction counted (the datname condition dropped)
- disk_usage: a fraction of 0 refused (< 0 made <= 0)
- cron_jobs: a paused job's failed last run judged (j.active dropped)
- configure_partitioning: retention_keep_table left as it was (detached partitions kept on disk)
- configure_partitioning: infinite_time_partitions left as it was (a quiet table runs out)
- lock_for_maintenance: premake - 1 partitions ahead taken for enough (no lock before attaching)
- lock_for_maintenance: a table with no retention locked ACCESS EXCLUSIVE every run
  (coalesce(v_drop, false) made true)
- create_first_partition: a default row at the next partition's start taken for one of now's
  (< $2 made <= $2)
- repair_default_partitions: a row exactly at the horizon accepted (>= made >)
- repair_default_partitions: the horizon without its last interval (a row of the day after the
  newest partition refused)
- repair_default_partitions: the day between the newest partition and a row one day after it not
  made (>= v_newest made > v_newest + interval)
- cleanup_delete_batch: a batch of 0 rows accepted (< 1 made < 0)
- health_migrations: pending migrations ignored (only unknown ones failed)
- writable: a read-only transaction taken for writable (transaction_read_only dropped)
- last_backup: a failed run counted as a backup (status condition dropped)
- last_backup: an incremental backup not counted ('incr' dropped from the kinds)
- last_backup: the oldest backup's label named (the label's order flipped)
- configure_partitioning: a premake of 0 accepted (< 1 made < 0)
- run_partition_maintenance: a table with automatic_maintenance off maintained (condition dropped)
- maintenance_lock_wait: the whole deadlock_timeout instead of half (500 made 1000)
- cron_jobs: a job connecting to another server passed (elsewhere dropped from the count)

Every test runs on a fresh clone of the migrated template (db, seeded) or on the database pg_cron
serves (cron_db); times that must fall on a bound are written and judged in one transaction, whose
now() does not move."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

import test_ops_health
from test_health_mutants import drop_ticks_partition, ticks_partitions

# the migrated database pg_cron serves, its test jobs and failed runs removed after a test
cron_db = test_ops_health.cron_db


def plant_tick(conn: psycopg.Connection, traded_at: str) -> None:
    """A tick at the SQL time ``traded_at`` in market.ticks' default partition (its trigger refuses
    one: planted as a replica, as a bug or a hand edit would)."""
    conn.execute("set session_replication_role = replica")
    conn.execute(
        sql.SQL(
            "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
            " select min(instrument_id), {}, 'stray ' || gen_random_uuid(), 100, 1 from ref.instruments"
        ).format(sql.SQL(traded_at))
    )
    conn.execute("reset session_replication_role")


def ticks_config(conn: psycopg.Connection, columns: str) -> tuple:
    return conn.execute(
        sql.SQL("select {} from partman.part_config where parent_table = 'market.ticks'").format(
            sql.SQL(columns)
        )
    ).fetchone()


def maintenance_locks(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(relation, mode) of the locks internal.lock_for_maintenance takes on market.ticks and its
    default partition, read in its transaction (rolled back after)."""
    with conn.transaction():
        conn.execute("select internal.lock_for_maintenance(internal.require_managed('market.ticks'))")
        return conn.execute(
            "select relation::regclass::text, mode from pg_locks"
            " where pid = pg_backend_pid() and locktype = 'relation'"
            "   and relation in ('market.ticks'::regclass, 'market.ticks_default'::regclass)"
            " order by 1, 2"
        ).fetchall()


# -- partitions_ahead -----------------------------------------------------------------------------


def test_a_newest_partition_ending_exactly_one_interval_from_now_is_created_ahead(db):
    # "one partition interval ahead": the partitions must reach now() + 1 day for a daily table;
    # ending exactly there they do (only one ending before it is short)
    with db.transaction():
        now = db.execute("select now()").fetchone()[0]
        for name, start, _ in ticks_partitions(db):
            if start > now:
                drop_ticks_partition(db, name)
        [(_, _, today_end)] = [p for p in ticks_partitions(db) if p[1] <= now < p[2]]
        db.execute(
            sql.SQL(
                "create table market.ticks_to_a_day_from_now partition of market.ticks for values from ({}) to ({})"
            ).format(sql.Literal(today_end), sql.SQL("now() + interval '1 day'"))
        )
        ok, detail = db.execute("select ok, detail from internal.health_partitions_ahead()").fetchone()

    assert (ok, detail.endswith(" partitioned tables have their next partition")) == (True, True)


def test_partitions_after_a_gap_are_not_counted_ahead(db):
    # tomorrow's partition dropped: the partitions after it start behind a gap, and the rows of
    # tomorrow would be refused, so none of them is ahead (the metric partitions.min_ahead reads 0)
    with db.transaction():
        now = db.execute("select now()").fetchone()[0]
        [tomorrow] = [name for name, start, _ in ticks_partitions(db) if start > now][:1]
        drop_ticks_partition(db, tomorrow)
        ahead = db.execute(
            "select ahead from internal.partition_coverage() where parent_table = 'market.ticks'"
        ).fetchone()

    assert ahead == (0,)


# -- default partitions ---------------------------------------------------------------------------


def test_partition_status_counts_every_row_of_a_default_partition(seeded):
    for _ in range(3):
        plant_tick(seeded, "now() - interval '10 years'")

    assert seeded.execute(
        "select default_rows from ops.partition_status() where parent_table = 'market.ticks'"
    ).fetchone() == (3,)


# -- long transactions, disk --------------------------------------------------------------------


def test_a_transaction_open_in_another_database_is_not_a_long_transaction_of_this_one(db):
    # a transaction open in the server's postgres database (another deployment's, say) holds back
    # no vacuum here: with a limit of 0 it is older than the limit, and still not this health's
    with psycopg.connect(db.info.dsn, dbname="postgres") as other:
        other.execute("select 1")  # begins its transaction (psycopg is not autocommit by default)
        row = db.execute("select ok, detail from internal.health_long_transactions(interval '0')").fetchone()

    assert row == (True, "no transaction open longer than 00:00:00")


def test_a_file_system_measured_empty_is_accepted_by_disk_usage(db):
    # 0 used is a fraction within [0, 1], not an invalid argument
    ok, detail = db.execute("select ok, detail from internal.health_disk(0, 0.9)").fetchone()

    assert (ok, detail.split("; ", 1)[1]) == (True, "file system 0.0% used (limit 90.0%)")


# -- cron jobs ------------------------------------------------------------------------------------

PAUSED_JOB = "ops-second-mutants-paused-job"


def test_a_paused_job_whose_last_run_failed_does_not_fail_cron_jobs(cron_db):
    # an operator paused the job (cron.alter_job active false): its last failed run pages nobody
    cron_db.execute("select cron.schedule(%s, '0 0 31 2 *', 'select 1')", [PAUSED_JOB])
    test_ops_health._failed_run(cron_db, PAUSED_JOB)
    cron_db.execute(
        "select cron.alter_job(jobid, active => false) from cron.job where jobname = %s", [PAUSED_JOB]
    )

    ok, detail = cron_db.execute("select ok, detail from internal.health_cron_jobs()").fetchone()

    assert (ok, PAUSED_JOB in detail) == (True, False)


# -- configure_partitioning -----------------------------------------------------------------------


def test_configure_partitioning_makes_retention_drop_partitions_not_keep_them_detached(db):
    # pg_partman's default keeps a partition past retention as a table of its own (detached, still
    # on disk); the project's retention frees the space
    db.execute(
        "update partman.part_config set retention_keep_table = true where parent_table = 'market.ticks'"
    )

    db.execute("select ops.configure_partitioning('market.ticks', 4, '3 days')")

    assert ticks_config(db, "retention, retention_keep_table") == ("3 days", False)


def test_configure_partitioning_makes_partitions_ahead_by_the_calendar(db):
    # infinite_time_partitions off: pg_partman makes no partition ahead of a table that gets no
    # rows, and a quiet table ran out of partitions
    db.execute(
        "update partman.part_config set infinite_time_partitions = false where parent_table = 'market.ticks'"
    )

    db.execute("select ops.configure_partitioning('market.ticks', 4, null)")

    assert ticks_config(db, "infinite_time_partitions") == (True,)


# -- maintenance locks, first partition, repair ----------------------------------------------------


def test_maintenance_locks_a_table_with_fewer_partitions_ahead_than_premake(db):
    # premake 4; the newest partition ends 4 days after today's start (D + 4): only D+1..D+3 ahead,
    # so the maintenance will attach one and takes its locks first (SHARE UPDATE EXCLUSIVE on the
    # table, ACCESS EXCLUSIVE on its default), bounded by its lock_timeout
    now = db.execute("select now()").fetchone()[0]
    [(_, today_start, _)] = [p for p in ticks_partitions(db) if p[1] <= now < p[2]]
    for name, start, _ in ticks_partitions(db):
        if (start - today_start).days >= 4:
            drop_ticks_partition(db, name)
    locks = maintenance_locks(db)

    assert ("market.ticks", "ShareUpdateExclusiveLock") in locks
    assert ("market.ticks_default", "AccessExclusiveLock") in locks


def test_the_first_partition_attaches_beside_a_default_row_of_the_next_day(seeded):
    # every partition of market.ticks gone; a stray row of tomorrow 00:00 in the default is outside
    # today's partition [today, tomorrow), so the partition of now() attaches
    for name, _, _ in ticks_partitions(seeded):
        drop_ticks_partition(seeded, name)
    with seeded.transaction():
        plant_tick(seeded, "date_trunc('day', now(), 'UTC') + interval '1 day'")
        row = seeded.execute(
            "select internal.create_first_partition(internal.require_managed('market.ticks'))"
            " = date_trunc('day', now(), 'UTC')"
        ).fetchone()

    assert row == (True,)


def test_repair_refuses_a_row_dated_exactly_at_the_partitions_it_may_make(seeded):
    # repair makes partitions up to one interval after the newest (or premake ahead of now): a row
    # at that bound itself would need the partition after it, and is refused before anything moves
    with pytest.raises(psycopg.Error) as caught, seeded.transaction():
        plant_tick(
            seeded,
            "(select greatest(internal.newest_partition_end(c), now() + c.premake * c.partition_interval::interval)"
            " + c.partition_interval::interval from partman.part_config c where c.parent_table = 'market.ticks')",
        )
        seeded.execute("select * from ops.repair_default_partitions()")

    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary.startswith("market.ticks_default holds a row dated ")


def test_maintenance_locks_nothing_of_a_table_with_nothing_due(db):
    # the hourly run: partitions ahead reach past premake (1 here: the template's reach at least
    # 4 days ahead, whenever it was made) and no retention, so neither the table nor its default
    # is locked (every fill and read of it would queue behind such a lock)
    db.execute(
        "update partman.part_config set retention = null, premake = 1 where parent_table = 'market.ticks'"
    )
    locks = maintenance_locks(db)

    assert [lock for lock in locks if lock[1] in ("ShareUpdateExclusiveLock", "AccessExclusiveLock")] == []


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        # a batch of 0 deletes nothing and returns 0, which ends the caller's loop as "nothing left"
        (
            "select ops.cleanup_delete_batch('quotes', interval '1 day', 0)",
            "batch_rows must be at least 1, got 0",
        ),
        # no partition ahead: the table runs out of partitions at midnight
        ("select ops.configure_partitioning('market.ticks', 0, null)", "premake must be at least 1, got 0"),
    ],
    ids=["cleanup-batch", "premake"],
)
def test_a_zero_where_at_least_one_is_needed_is_refused_with_22s09(db, statement, message):
    with pytest.raises(psycopg.Error) as caught:
        db.execute(statement)

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S09", message)


# -- last backup ----------------------------------------------------------------------------------


def physical_backup(conn: psycopg.Connection, kind: str, label: str, hours_ago: int) -> None:
    conn.execute(
        "insert into ops.backup_runs (kind, compress_type, started_at, finished_at, status, label)"
        " values (%s, 'zst', now() - %s * interval '1 hour' - interval '10 minutes',"
        " now() - %s * interval '1 hour', 'succeeded', %s)",
        [kind, hours_ago, hours_ago, label],
    )


def test_a_recent_incremental_backup_passes_last_backup(db):
    physical_backup(db, "incr", "I", 1)

    ok, detail = db.execute("select ok, detail from internal.health_last_backup('26 hours')").fetchone()

    assert (ok, detail.split(" finished ")[0]) == (True, "last physical backup I (incr)")


def test_last_backup_names_the_newest_backup_with_its_kind(db):
    physical_backup(db, "full", "old", 10)
    physical_backup(db, "diff", "new", 1)

    ok, detail = db.execute("select ok, detail from internal.health_last_backup('26 hours')").fetchone()

    assert (ok, detail.split(" finished ")[0]) == (True, "last physical backup new (diff)")


# -- repair, configure_partitioning, maintenance, migrations, writable, backups, cron -----------------


def test_repair_moves_a_row_of_the_day_after_the_newest_partition(seeded):
    # the newest partition ends at E; a row at E + 12 hours needs the one partition after it,
    # which repair makes (its bound is one interval past the newest)
    plant_tick(
        seeded,
        "internal.newest_partition_end(internal.require_managed('market.ticks')) + interval '12 hours'",
    )

    assert seeded.execute("select * from ops.repair_default_partitions()").fetchall() == [("market.ticks", 1)]


def test_maintenance_leaves_a_table_whose_automatic_maintenance_is_off(db):
    db.execute(
        "update partman.part_config set automatic_maintenance = 'off' where parent_table = 'market.ticks'"
    )
    with db.transaction():
        now = db.execute("select now()").fetchone()[0]
        for name, start, _ in ticks_partitions(db):
            if start > now:
                drop_ticks_partition(db, name)
    before = ticks_partitions(db)

    db.execute("call ops.run_partition_maintenance()")

    assert ticks_partitions(db) == before


def test_the_maintenance_lock_wait_is_half_the_deadlock_timeout(db):
    db.execute("set deadlock_timeout = '2s'")

    assert db.execute("select internal.maintenance_lock_wait()").fetchone() == ("1000",)


def test_a_pending_migration_fails_the_migrations_check(db):
    applied = [
        r[0] for r in db.execute("select migration_id from public._spreadedge_migration_checksum order by 1")
    ]

    assert db.execute(
        "select ok, detail from internal.health_migrations(%s)", [[*applied, "9999_next"]]
    ).fetchone() == (False, f"{len(applied)} applied; pending: 9999_next")


def test_a_read_only_transaction_fails_writable(db):
    with db.transaction():
        db.execute("set transaction read only")
        row = db.execute("select ok from internal.health_writable()").fetchone()

    assert row == (False,)


def test_a_failed_backup_is_no_backup_for_last_backup(db):
    db.execute(
        "insert into ops.backup_runs (kind, compress_type, started_at, finished_at, status, label)"
        " values ('full', 'zst', now() - interval '2 hours', now() - interval '1 hour', 'failed', 'F')"
    )

    assert db.execute("select ok from internal.health_last_backup('26 hours')").fetchone() == (False,)


ELSEWHERE_JOB = "ops-second-mutants-elsewhere-job"


def test_a_job_connecting_to_another_port_fails_cron_jobs(cron_db):
    cron_db.execute("select cron.schedule(%s, '0 0 31 2 *', 'select 1')", [ELSEWHERE_JOB])
    cron_db.execute("update cron.job set nodeport = nodeport + 1 where jobname = %s", [ELSEWHERE_JOB])

    ok, detail = cron_db.execute("select ok, detail from internal.health_cron_jobs()").fetchone()

    assert (ok, f"run on another server: {ELSEWHERE_JOB} (the job connects to port" in detail) == (
        False,
        True,
    )


def test_repair_fills_the_day_between_the_newest_partition_and_a_row_one_day_after_it(seeded):
    # maintenance behind: the newest partition of market.ticks ends at E (today's end); a stray row
    # at E + 1 day exactly gets its own partition [E + 1 day, E + 2 days) from pg_partman, and the
    # day [E, E + 1 day) between must be made too, or its rows are refused
    now = seeded.execute("select now()").fetchone()[0]
    for name, start, _ in ticks_partitions(seeded):
        if start > now:
            drop_ticks_partition(seeded, name)
    newest_end = ticks_partitions(seeded)[-1][2]
    plant_tick(
        seeded, "internal.newest_partition_end(internal.require_managed('market.ticks')) + interval '1 day'"
    )

    seeded.execute("select * from ops.repair_default_partitions()")

    assert newest_end in [start for _, start, _ in ticks_partitions(seeded)]
