"""Rules of the tuning views, index advice and session naming that a plausible slip in their SQL (a
bound off by one, a dropped condition, a flipped ORDER BY, a wrong unit) broke without any other test
noticing: each test here kills one or more mutants of the mutation run of 59_ops_wal_archiving.sql,
59_ops_sessions.sql, 61_ops_tuning.sql and 62_ops_index_advice.sql, weighted to what would mislead an
operator (a slow statement hidden or ranked wrong, an index in use or needed for a rule offered for
dropping, a table needing an index not listed, a figure in the wrong unit, the wrong session named).

The run: 71 mutants, 11 caught by the existing tests, 60 survived: 48 holes, each killed by a test
below (proven: it fails with its mutant, passes without), 5 equivalent and 7 more: 6 left open
and 1 killed in another file.

Equivalent:
- slow_queries' mean_exec_time >= the threshold as >: the mean is a measured double and the
  threshold is read to 6 decimals; no test can make the two equal on purpose.
- duplicate_indexes without b.indexrelid <> a.indexrelid: an index paired with itself fails the
  last clause (not later than itself, and it backs no constraint, or it would be out already).
- duplicate_indexes without ac.relam = bc.relam: equal operator classes (compared column by
  column) belong to one access method.
- wal_archiving_state's last_failed_time > last_archived_time as >=: the one archiver process
  records a failure and a success one after the other, never at the same microsecond.
- trial_index_cost's p_max_mb <= 0 as < 0: with 0 MB only a table of 0 bytes passes the size
  check, and an index on an empty table never cuts its cost by min_saving (tried: no GIN advice on
  an empty jsonb table even with a 1 MB cap).

Left open:
- index_advice without s.toplevel (statements run inside functions examined too): no comment says
  why top-level only, and whether advice on a function's statements is wrong is a design question.
- index_candidates' BRIN test at correlation >= 0 instead of 0.9: the planner costs a BRIN of an
  uncorrelated column above the btree candidate of the same column, so no advice changed.
- health_blocking_sessions' min(waited) for max(waited): the detail shows whole seconds, so a test
  needs two waits more than a second apart (slow).
- wal_archiving_state's v_archives without "not pg_is_in_recovery()" (a standby with archive_mode
  on counted as archiving): needs a standby cluster.
- failing without coalesce(last_archived_time, '-infinity') (a server whose archiving never
  succeeded read as not failing) and failing without v_archives (a failure kept in
  pg_stat_archiver from before archive_mode was turned off read by wal.archive_failing): each
  needs an archiving cluster of its own (archive_mode on needs a restart) in a state the existing
  module clusters do not reach.
A seventh survivor, health's v_late as oldest > now() - p_max_wait (a WAL file waiting longer than
the limit behind an archive_command that hangs read as fine, a fresh one as late), is killed by the
hung-archiver tests of tests/test_wal_archiving_hunt.py, which have the archiving cluster it needs.

Every expected value is worked out in its comment."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from db_fixtures import database_copy
from test_held_locks_hunt import _session_line
from test_ops_tuning import _events, _read_account

# -- helpers ----------------------------------------------------------------------------------------


def _other_database(db_url: str) -> str:
    """The URL of the cluster's postgres database: statements and locks of another database."""
    return make_conninfo(db_url, dbname="postgres")


def _flush(db: psycopg.Connection) -> None:
    """This session's table and index counters, visible to the next statement."""
    db.execute("select pg_stat_force_next_flush()")


def _queued(db: psycopg.Connection, waiter: psycopg.Connection, sql: bytes) -> None:
    """``waiter`` sends ``sql`` without waiting for it; returns once it waits for a lock (30 s cap)."""
    waiter.pgconn.send_query(sql)
    deadline = time.monotonic() + 30
    while not db.execute(
        "select exists (select from pg_locks where pid = %s and not granted)", [waiter.info.backend_pid]
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.02)


def _drain(waiter: psycopg.Connection) -> None:
    """The result of what ``waiter`` sent, once its lock came (or the error it ended with)."""
    while waiter.pgconn.get_result() is not None:
        pass


# -- ops.slow_queries ---------------------------------------------------------------------------------


def test_a_slow_query_threshold_of_15_digits_is_that_number_not_infinity(db):
    # 10^15 ms or more is Infinity; 999,999,999,999,999 (15 digits) is below it
    db.execute("set spreadedge.slow_query_ms = '999999999999999'")

    assert db.execute("select internal.slow_query_ms()").fetchone() == (999999999999999.0,)


def test_slow_queries_lists_the_heaviest_total_first(db):
    db.execute("select pg_sleep(0.11)")  # 110 ms in all
    for _ in range(3):
        db.execute("select 1, pg_sleep(0.11)")  # 330 ms in all

    rows = db.execute("select query from ops.slow_queries where query like '%pg_sleep%'").fetchall()

    assert rows == [("select $1, pg_sleep($2)",), ("select pg_sleep($1)",)]


def test_slow_queries_leaves_out_the_slow_statements_of_another_database(db, db_url):
    with psycopg.connect(_other_database(db_url), autocommit=True) as other:
        other.execute("select 2, pg_sleep(0.12)")

    assert db.execute("select query from ops.slow_queries where query like '%pg_sleep%'").fetchall() == []


def test_slow_queries_shows_pg_stat_statements_figures_in_ms(db):
    db.execute("create table public.one as select 1 as n")  # one page, in shared buffers from now on
    db.execute("select pg_sleep(0.12) from public.one").fetchall()
    db.execute("select pg_sleep(0.15) from public.one").fetchall()

    # the same statement reads both: the view's figures and pg_stat_statements' own (ms already)
    row = db.execute(
        "select q.calls, q.total_exec_ms, q.mean_exec_ms, q.max_exec_ms, q.cache_hit_ratio,"
        " s.calls, round(s.total_exec_time::numeric, 3), round(s.mean_exec_time::numeric, 3),"
        " round(s.max_exec_time::numeric, 3),"
        " round(s.shared_blks_hit::numeric / nullif(s.shared_blks_hit + s.shared_blks_read, 0), 4)"
        " from ops.slow_queries q join pg_stat_statements s on s.queryid = q.queryid and s.toplevel"
        " where q.query = 'select pg_sleep($1) from public.one'"
    ).fetchone()
    view, own = row[:5], row[5:]

    assert view == own
    calls, total, mean, longest, hit_ratio = view
    # two sleeps of 120 and 150 ms: 270 ms and more in all, the longest 150 ms and more; the
    # page read from shared buffers both times: every block a hit
    assert (calls, total >= 270, mean >= 135, longest >= 150, longest < total, hit_ratio) == (
        2,
        True,
        True,
        True,
        True,
        1,
    )


def test_a_slow_statements_share_counts_the_time_of_top_level_statements_only(db):
    db.execute(
        "create function public.nap() returns void language plpgsql as $$ begin perform pg_sleep(0.12); end $$"
    )
    db.execute("select pg_sleep(0.12)")
    db.execute("select public.nap()")  # 120 ms at top level, and 120 ms again in its pg_sleep

    share, expected = db.execute(
        "select q.share_of_total_time,"
        " round((s.total_exec_time / (select sum(a.total_exec_time) from pg_stat_statements a"
        "  where a.dbid = s.dbid and a.toplevel))::numeric, 4)"
        " from ops.slow_queries q join pg_stat_statements s on s.queryid = q.queryid and s.toplevel"
        " where q.query = 'select pg_sleep($1)' and q.toplevel"
    ).fetchone()

    # about 120 / (120 + 120 + the rest): near a half; counting nap's pg_sleep twice, near a third
    assert share == expected
    assert share > 0.4


# -- ops.index_usage ----------------------------------------------------------------------------------


def test_index_usage_says_which_index_is_unique_primary_or_backs_a_constraint(db):
    db.execute("create table public.books (id int primary key, code text, venue int)")
    db.execute("create unique index books_code_uq on public.books (code)")
    db.execute("create index books_venue on public.books (venue)")

    rows = db.execute(
        "select index_name, is_unique, is_primary, backs_constraint from ops.index_usage"
        " where schema_name = 'public' and table_name = 'books' order by index_name"
    ).fetchall()

    # a unique index made by CREATE UNIQUE INDEX backs no constraint; the plain one neither
    assert rows == [
        ("books_code_uq", True, False, False),
        ("books_pkey", True, True, True),
        ("books_venue", False, False, False),
    ]


# -- ops.unused_indexes -------------------------------------------------------------------------------


def _partitioned_book(db: psycopg.Connection) -> None:
    """public.book, partitioned by id into two partitions of 1,000 rows each (ids 1-2000)."""
    db.execute("create table public.book (id int, venue int, payload text) partition by range (id)")
    db.execute("create table public.book_1 partition of public.book for values from (1) to (1001)")
    db.execute("create table public.book_2 partition of public.book for values from (1001) to (2001)")
    db.execute("insert into public.book select i, i % 50, md5(i::text) from generate_series(1, 2000) i")


def test_a_partitioned_index_scanned_once_through_a_partition_is_not_unused(db):
    _partitioned_book(db)
    db.execute("create index book_venue on public.book (venue)")
    db.execute("set enable_seqscan = off")
    db.execute("select * from public.book where id = 5 and venue = 5").fetchall()  # book_1's index only
    db.execute("reset enable_seqscan")
    _flush(db)
    assert db.execute(
        "select sum(idx_scan) from pg_stat_user_indexes where relname in ('book_1', 'book_2')"
    ).fetchone() == (1,)

    assert (
        db.execute("select index_name from ops.unused_indexes where table_name like 'book%'").fetchall() == []
    )


def test_a_partitioned_index_never_scanned_is_offered_once_dropped_without_concurrently(db):
    _partitioned_book(db)
    db.execute("create index book_venue on public.book (venue)")

    rows = db.execute(
        "select table_name, index_name, drop_statement from ops.unused_indexes where table_name like 'book%'"
    ).fetchall()

    # its partitions' indexes go with it; DROP INDEX CONCURRENTLY refuses a partitioned index
    assert rows == [("book", "book_venue", "drop index book_venue")]


def test_a_unique_index_never_scanned_is_not_offered_for_dropping(db):
    db.execute("create table public.books (id int, code text)")
    db.execute("create unique index books_code_uq on public.books (code)")  # backs no constraint

    assert db.execute("select index_name from ops.unused_indexes where table_name = 'books'").fetchall() == []


def test_the_index_of_an_exclusion_constraint_never_scanned_is_not_offered_for_dropping(db):
    db.execute("create table public.books (id int, during tstzrange, exclude using gist (during with &&))")

    assert db.execute("select index_name from ops.unused_indexes where table_name = 'books'").fetchall() == []


def test_an_index_of_an_extensions_table_is_not_offered_for_dropping(db):
    db.execute("create table public.books (id int, venue int)")
    db.execute("create index books_venue on public.books (venue)")
    db.execute("alter extension hypopg add table public.books")

    assert db.execute("select index_name from ops.unused_indexes where table_name = 'books'").fetchall() == []


# -- ops.duplicate_indexes ----------------------------------------------------------------------------


def _duplicates(db: psycopg.Connection, *indexes: str) -> list[tuple]:
    db.execute("create table public.books (id int, symbol text, venue int)")
    for index in indexes:
        db.execute(index)
    return db.execute(
        "select index_name, covered_by from ops.duplicate_indexes where table_name = 'books' order by 1, 2"
    ).fetchall()


def test_an_expression_index_is_not_covered_by_an_index_on_another_expression(db):
    # both indkeys read {0} and {0,3}: an expression's column number is 0
    assert (
        _duplicates(
            db,
            "create index books_lower on public.books (lower(symbol))",
            "create index books_upper_venue on public.books (upper(symbol), venue)",
        )
        == []
    )


def test_an_index_is_not_covered_by_a_partial_index(db):
    assert (
        _duplicates(
            db,
            "create index books_symbol on public.books (symbol)",
            "create index books_symbol_venue_open on public.books (symbol, venue) where venue > 0",
        )
        == []
    )


def test_an_index_is_not_covered_by_one_where_its_column_is_not_the_leading_one(db):
    # id and venue are both integers: the same operator class and collation in first place
    assert (
        _duplicates(
            db,
            "create index books_venue on public.books (venue)",
            "create index books_id_venue on public.books (id, venue)",
        )
        == []
    )


def test_an_index_is_not_covered_by_one_of_another_operator_class(db):
    # text_pattern_ops serves LIKE 'x%', the default text_ops does not (outside the C collation)
    assert (
        _duplicates(
            db,
            "create index books_symbol_pattern on public.books (symbol text_pattern_ops)",
            "create index books_symbol_venue on public.books (symbol, venue)",
        )
        == []
    )


def test_a_unique_index_is_not_covered_by_a_unique_index_of_more_columns(db):
    # unique (id, venue) lets id repeat: dropping unique (id) drops the rule
    assert (
        _duplicates(
            db,
            "create unique index books_id_uq on public.books (id)",
            "create unique index books_id_venue_uq on public.books (id, venue)",
        )
        == []
    )


def test_a_unique_index_is_not_covered_by_a_deferrable_unique_constraint(db):
    # a deferrable constraint checks at commit: a transaction may hold duplicates until then
    assert (
        _duplicates(
            db,
            "create unique index books_id_uq on public.books (id)",
            "alter table public.books add constraint books_id_key unique (id) deferrable",
        )
        == []
    )


def test_of_two_identical_indexes_only_the_later_is_offered(db):
    assert _duplicates(
        db,
        "create index books_venue_a on public.books (venue)",
        "create index books_venue_b on public.books (venue)",
    ) == [("books_venue_b", "books_venue_a")]


# -- ops.missing_index_candidates ---------------------------------------------------------------------


def _scanned(db: psycopg.Connection, table: str, rows: int, scans: int) -> None:
    """public.<table> of ``rows`` rows, read by ``scans`` sequential scans of the whole table."""
    db.execute(f"create table public.{table} (id int, payload text)")
    db.execute(f"insert into public.{table} select i, md5(i::text) from generate_series(1, %s) i", [rows])
    for _ in range(scans):
        db.execute(f"select count(*) from public.{table} where payload = 'x'").fetchone()


def _candidates(db: psycopg.Connection) -> list[tuple]:
    _flush(db)
    return db.execute(
        "select table_name, seq_scan, seq_tup_read, idx_scan, live_rows, avg_rows_per_seq_scan"
        " from ops.missing_index_candidates"
    ).fetchall()


def test_a_table_of_exactly_1000_rows_read_by_scans_of_1000_rows_is_a_missing_index_candidate(db):
    _scanned(db, "events", 1000, 3)

    # both thresholds are "1,000 or more": 1,000 live rows, 3,000 rows / 3 scans = 1,000 a scan
    assert _candidates(db) == [("public.events", 3, 3000, 0, 1000, 1000)]


def test_a_table_with_as_many_index_scans_as_sequential_scans_is_no_missing_index_candidate(db):
    _scanned(db, "events", 5000, 2)
    db.execute("create index events_id on public.events (id)")  # its build may count as a scan
    _flush(db)
    [seq_scans] = db.execute(
        "select seq_scan from pg_stat_user_tables where relid = 'public.events'::regclass"
    ).fetchone()
    for scan in range(seq_scans):
        db.execute("select * from public.events where id = %s", [scan + 1]).fetchall()
    _flush(db)
    assert db.execute(
        "select seq_scan = idx_scan from pg_stat_user_tables where relid = 'public.events'::regclass"
    ).fetchone() == (True,)

    assert _candidates(db) == []


def test_missing_index_candidates_lists_the_table_with_the_most_rows_read_first(db):
    _scanned(db, "small", 2000, 3)  # 6,000 rows read
    _scanned(db, "large", 5000, 3)  # 15,000 rows read

    assert [row[0] for row in _candidates(db)] == ["public.large", "public.small"]


def test_a_partitioned_table_is_a_missing_index_candidate_with_its_partitions_summed(db):
    _partitioned_book(db)
    for _ in range(3):
        db.execute("select count(*) from public.book where payload = 'x'").fetchone()

    # 3 scans of each of 2 partitions of 1,000 rows: 6 scans, 6,000 rows, 1,000 a scan
    assert _candidates(db) == [("public.book", 6, 6000, 0, 2000, 1000)]


# -- ops.table_health ---------------------------------------------------------------------------------


def test_table_health_dead_ratio_is_of_all_rows_live_and_dead(db):
    _scanned(db, "events", 2000, 0)
    db.execute("delete from public.events where id <= 500")
    _flush(db)

    row = db.execute(
        "select live_rows, dead_rows, dead_ratio from ops.table_health"
        " where schema_name = 'public' and table_name = 'events'"
    ).fetchone()

    # 500 dead of 2,000 rows: 0.25 (not 500 / 1,500 live)
    assert row == (1500, 500, pytest.approx(0.25))


def test_table_health_bloat_is_in_bytes(db):
    _events(db, rows=20_000)
    db.execute("delete from public.events where id % 10 <> 0")  # 9 rows of 10 gone, all over the table
    db.execute("vacuum analyze public.events")

    bloat, size = db.execute(
        "select bloat_bytes, size_bytes from ops.table_health where schema_name = 'public' and table_name = 'events'"
    ).fetchone()

    # whole pages of 8 kB, and most of the table: 2,000 rows left in pages made for 20,000
    assert (bloat % 8192, bloat > size / 2) == (0, True)


# -- ops.performance_summary --------------------------------------------------------------------------


def test_performance_summary_counts_this_databases_statements_and_averages_per_call(db, db_url):
    with psycopg.connect(_other_database(db_url), autocommit=True) as other:
        other.execute("select 3, pg_sleep(0.05)")
    db.execute("set pg_stat_statements.track = 'top'")  # no statement of the summary itself counted
    for _ in range(3):
        db.execute("select 1, pg_sleep(0.01)")

    row = db.execute(
        "select p.statements, p.calls, p.avg_exec_ms, s.statements, s.calls, s.avg_exec_ms"
        " from ops.performance_summary() p,"
        " (select count(*) as statements, sum(a.calls) as calls,"
        "         round((sum(a.total_exec_time) / sum(a.calls))::numeric, 3) as avg_exec_ms"
        "  from pg_stat_statements a"
        "  where a.dbid = (select oid from pg_database where datname = current_database())) s"
    ).fetchone()

    assert row[:3] == row[3:]


def test_performance_summary_does_not_count_a_session_idle_in_its_transaction_as_active(db, db_url):
    with psycopg.connect(db_url) as idle:
        idle.execute("select 1")  # idle in transaction from now on

        row = db.execute("select connections, active_connections from ops.performance_summary()").fetchone()

    assert row == (2, 1)


# -- ops.index_advice ---------------------------------------------------------------------------------


def test_index_advice_for_one_statement_examines_the_heaviest(db):
    _events(db)
    _read_account(db, times=5)  # 5 reads of 50,000 rows
    db.execute(
        "create table public.fills as select i as id, i % 500 as venue from generate_series(1, 5000) i"
    )
    db.execute("analyze public.fills")
    db.execute("select * from public.fills where venue = 1").fetchall()  # 1 read of 5,000 rows

    rows = db.execute("select table_name, columns from ops.index_advice(statements => 1)").fetchall()

    assert rows == [("public.events", ["account"])]


@pytest.mark.parametrize("min_saving", ["0", "1"])
def test_index_advice_refuses_a_min_saving_of_0_or_1_with_22s09(db, min_saving):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select * from ops.index_advice(min_saving => %s::numeric)", [min_saving])

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "index advice needs statements >= 1, 0 < min_saving < 1 and gin_trial_max_mb >= 0,"
        f" got 20, {min_saving} and 64",
    )


def test_index_advice_gives_nothing_that_cuts_less_than_min_saving(db):
    _events(db)
    _read_account(db)
    [saving] = db.execute("select saving from ops.index_advice()").fetchone()
    assert 0.5 < saving < 0.995

    assert db.execute("select * from ops.index_advice(min_saving => 0.995)").fetchall() == []


def test_index_advice_recommends_the_cheapest_candidate_of_a_two_column_filter(db):
    _events(db)
    for account in range(3):
        db.execute(
            "select * from public.events where account = %s and payload = %s", [account, f"p{account}"]
        ).fetchall()

    # payload is unique: its index alone finds the row, cheaper than account's 10 rows; of equal
    # cost, the pairs are larger
    assert db.execute("select columns from ops.index_advice()").fetchall() == [(["payload"],)]


# -- ops.index_build_statements -----------------------------------------------------------------------


def test_index_build_statements_skip_a_partition_whose_index_is_attached_already(db):
    _partitioned_book(db)
    # a build cut short after the parent's index: a partition made since got an index of its own
    db.execute("create index book_venue_btree_tune on only public.book (venue)")
    db.execute("create table public.book_3 partition of public.book for values from (2001) to (3001)")

    statements = [
        row[0]
        for row in db.execute(
            "select statement from ops.index_build_statements('public.book', 'btree', '{venue}') order by step"
        ).fetchall()
    ]

    built = [s for s in statements if s.startswith("create index concurrently")]
    assert built == [
        "create index concurrently if not exists book_1_venue_btree_tune on public.book_1 using btree (venue)",
        "create index concurrently if not exists book_2_venue_btree_tune on public.book_2 using btree (venue)",
    ]


# -- 59_ops_sessions.sql ------------------------------------------------------------------------------


def test_lock_holders_names_the_oldest_transaction_first_with_its_start(db, db_url):
    db.execute("create table public.locked ()")
    with (
        psycopg.connect(db_url, application_name="first") as first,
        psycopg.connect(db_url, application_name="second") as second,
    ):
        first.execute("select from public.locked")
        time.sleep(1.1)  # transaction starts a second apart, as session lines show them
        second.execute("select from public.locked")
        time.sleep(1.1)
        first.execute("select 1")  # its latest statement began after second's transaction

        holders = db.execute("select internal.lock_holders('public.locked')").fetchone()[0]

        assert holders == ", ".join(_session_line(db, c.info.backend_pid) for c in (first, second))


def test_lock_holders_leaves_out_a_lock_on_the_same_table_in_another_database(db, pg_cluster, template_db):
    # every clone of the template has trading.orders under the same oid
    with database_copy(pg_cluster, template_db, "other") as url, psycopg.connect(url) as other:
        other.execute("lock table trading.orders in access share mode")

        assert db.execute("select internal.lock_holders('trading.orders')").fetchone() == (None,)


def test_lock_waits_leaves_out_the_waits_of_another_database(db, db_url):
    with (
        psycopg.connect(_other_database(db_url), autocommit=True) as holder,
        psycopg.connect(_other_database(db_url), autocommit=True) as waiter,
    ):
        holder.execute("select pg_advisory_lock(47)")
        _queued(db, waiter, b"select pg_advisory_lock(47)")
        try:
            waits = db.execute("select count(*) from internal.lock_waits()").fetchone()
            health = db.execute("select ok from internal.health_blocking_sessions('0 seconds')").fetchone()
        finally:
            holder.execute("select pg_advisory_unlock(47)")
            _drain(waiter)

    assert (waits, health) == ((0,), (True,))


def test_a_lock_wait_shorter_than_the_limit_keeps_blocking_sessions_ok(db, db_url):
    db.execute("create table public.locked ()")
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as waiter:
        holder.execute("lock table public.locked")
        _queued(db, waiter, b"select from public.locked")
        try:
            row = db.execute("select ok, detail from internal.health_blocking_sessions('1 hour')").fetchone()
        finally:
            holder.rollback()
            _drain(waiter)

    assert row == (True, "no session waiting for a lock longer than 01:00:00")


def test_blocking_sessions_names_the_oldest_transaction_first(db, db_url):
    db.execute("create table public.first ()")
    db.execute("create table public.second ()")
    with (
        psycopg.connect(db_url, application_name="old") as old,
        psycopg.connect(db_url, application_name="new") as new,
        psycopg.connect(db_url, autocommit=True) as waiter_1,
        psycopg.connect(db_url, autocommit=True) as waiter_2,
    ):
        old.execute("lock table public.first")
        time.sleep(1.1)  # transaction starts a second apart
        new.execute("lock table public.second")
        _queued(db, waiter_2, b"select from public.second")  # the newer holder's waiter queues first
        _queued(db, waiter_1, b"select from public.first")
        try:
            lines = [_session_line(db, c.info.backend_pid) for c in (old, new)]
            detail = db.execute(
                "select detail from internal.health_blocking_sessions('0 seconds')"
            ).fetchone()[0]
        finally:
            old.rollback()
            new.rollback()
            _drain(waiter_1)
            _drain(waiter_2)

    assert detail.index(lines[0]) < detail.index(lines[1])


def test_blocking_sessions_says_that_a_blocker_is_itself_waiting_for_a_lock(db, db_url):
    db.execute("create table public.locked ()")
    with (
        psycopg.connect(db_url, application_name="psql") as reader,
        psycopg.connect(db_url, autocommit=True, application_name="migrate") as migrate,
        psycopg.connect(db_url, autocommit=True) as fill,
    ):
        reader.execute("select from public.locked")  # a psql left in its transaction
        _queued(db, migrate, b"alter table public.locked add column n integer")  # queued behind it
        _queued(db, fill, b"select from public.locked")  # queued behind the ALTER
        try:
            line = _session_line(db, migrate.info.backend_pid)
            detail = db.execute(
                "select detail from internal.health_blocking_sessions('0 seconds')"
            ).fetchone()[0]
        finally:
            reader.rollback()
            _drain(migrate)
            _drain(fill)

    assert f"{line} itself waiting for a lock, blocking 1 (the longest for " in detail
