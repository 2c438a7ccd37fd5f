"""Tuning views, index advice (pg_stat_statements + hypopg) and spreadedge tune."""

from __future__ import annotations

import psycopg
import pytest

from ops_helpers import cli, tune_index_state


def _events(db: psycopg.Connection, rows: int = 50_000) -> None:
    db.execute("create table public.events (id bigint, account integer, payload text)")
    db.execute(
        "insert into public.events select i, i %% 5000, md5(i::text) from generate_series(1, %s) i", [rows]
    )
    db.execute("analyze public.events")


def _read_account(db: psycopg.Connection, times: int = 3) -> None:
    for account in range(times):
        db.execute("select * from public.events where account = %s", [account]).fetchall()


def test_a_slow_statement_appears_in_slow_queries_after_a_slow_workload(db):
    db.execute("select pg_sleep(0.12)")
    db.execute("select pg_sleep(0.12)")

    rows = db.execute(
        "select calls, mean_exec_ms >= 100, query from ops.slow_queries where query like '%%pg_sleep%%'"
    ).fetchall()

    assert rows == [(2, True, "select pg_sleep($1)")]


def test_the_slow_query_threshold_follows_the_session_setting(db):
    db.execute("select pg_sleep(0.02)")
    db.execute("set spreadedge.slow_query_ms = 10")

    rows = db.execute("select calls from ops.slow_queries where query like '%%pg_sleep%%'").fetchall()

    assert rows == [(1,)]


def test_index_advice_recommends_a_btree_on_the_filtered_column_of_a_slow_query(db):
    _events(db)
    _read_account(db)

    advice = db.execute(
        "select advice, statement, table_name, index_method, columns, saving >= 0.5, create_index"
        " from ops.index_advice()"
    ).fetchall()

    assert advice == [
        (
            1,
            "select * from public.events where account = $1",
            "public.events",
            "btree",
            ["account"],
            True,
            "create index concurrently events_account_btree_tune on public.events using btree (account)",
        )
    ]


def test_index_advice_recommends_nothing_for_a_well_indexed_query(db):
    _events(db)
    db.execute("create index on public.events (account)")
    _read_account(db)

    assert db.execute("select * from ops.index_advice()").fetchall() == []


def _tagged(db: psycopg.Connection, rows: int = 50_000) -> None:
    db.execute("create table public.tagged (id bigint, tags jsonb)")
    db.execute(
        """insert into public.tagged
           select i, jsonb_build_object('desk', 'd' || i %% 500, 'venue', 'v' || i %% 7)
           from generate_series(1, %s) i""",
        [rows],
    )
    db.execute("analyze public.tagged")


def _read_desk(db: psycopg.Connection, times: int = 3) -> None:
    for desk in range(times):
        db.execute(
            "select id from public.tagged where tags @> %s::jsonb", [f'{{"desk": "d{desk}"}}']
        ).fetchall()


def test_index_advice_recommends_a_gin_index_for_a_jsonb_containment_query(db):
    _tagged(db)
    _read_desk(db)

    advice = db.execute(
        "select statement, table_name, index_method, columns, saving >= 0.5, create_index from ops.index_advice()"
    ).fetchall()

    assert advice == [
        (
            "select id from public.tagged where tags @> $1::jsonb",
            "public.tagged",
            "gin",
            ["tags"],
            True,
            "create index concurrently tagged_tags_gin_tune on public.tagged using gin (tags)",
        )
    ]


def test_index_advice_leaves_no_index_behind_after_a_gin_trial_build(db):
    _tagged(db)
    _read_desk(db)

    db.execute("select * from ops.index_advice()").fetchall()

    assert db.execute("select count(*) from pg_indexes where tablename = 'tagged'").fetchone() == (0,)


def test_index_advice_gives_no_gin_advice_when_trial_builds_are_off(db):
    _tagged(db)
    _read_desk(db)

    assert db.execute("select * from ops.index_advice(gin_trial_max_mb => 0)").fetchall() == []


def test_index_advice_gives_no_gin_advice_for_a_table_over_the_trial_size(db):
    _tagged(db)
    _read_desk(db)
    assert db.execute("select pg_relation_size('public.tagged') > 2 * 1024 * 1024").fetchone() == (True,)

    assert db.execute("select * from ops.index_advice(gin_trial_max_mb => 2)").fetchall() == []


def test_index_advice_skips_a_gin_trial_when_a_writer_holds_the_table(db, db_url):
    _tagged(db)
    _read_desk(db)
    db.execute(
        "set statement_timeout = '20s'"
    )  # without the trial's lock_timeout, advice would wait for the writer
    with psycopg.connect(db_url) as writer:
        writer.execute("insert into public.tagged values (0, '{}')")  # open transaction: ROW EXCLUSIVE held

        advice = db.execute("select * from ops.index_advice()").fetchall()

        writer.rollback()
    assert advice == []


def test_index_advice_refuses_a_negative_gin_trial_size_with_22s09(db):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select * from ops.index_advice(gin_trial_max_mb => -1)")
    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary == (
        "index advice needs statements >= 1, 0 < min_saving < 1 and gin_trial_max_mb >= 0, got 20, 0.5 and -1"
    )


def test_tune_report_prints_the_gin_advice_of_a_trial_build(db, db_url):
    _tagged(db)
    _read_desk(db)

    result = cli("tune", "report", "--gin-trial-max-mb", "8", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "[1] create index concurrently tagged_tags_gin_tune on public.tagged using gin (tags)"
    )


def test_tune_apply_computes_the_advice_with_the_options_it_is_given(db, db_url):
    _tagged(db)
    _read_desk(db)

    result = cli("tune", "apply", "1", "--gin-trial-max-mb", "0", database_url=db_url)

    assert result.exit_code == 1
    assert "there is no advice 1: tune report lists 0" in result.output
    assert db.execute("select count(*) from pg_indexes where tablename = 'tagged'").fetchone() == (0,)


def test_index_build_statements_refuse_an_unknown_column_with_22s22(db):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select * from ops.index_build_statements('trading.orders', 'btree', '{no_such_column}')")
    assert caught.value.sqlstate == "22S22"
    assert caught.value.diag.message_primary == "table trading.orders has no column among {no_such_column}"


def test_tune_apply_builds_the_index_on_every_partition_then_the_parent(seeded, db_url):
    db = seeded
    db.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select (select min(instrument_id) from ref.instruments), now() - (i || ' seconds')::interval, 't' || i, 100, 1 from generate_series(1, 40000) i"
    )
    db.execute("analyze market.ticks")
    for trade_id in ("t1", "t2", "t3"):
        db.execute("select * from market.ticks where exchange_trade_id = %s", [trade_id]).fetchall()

    result = cli("tune", "apply", "1", database_url=db_url)

    assert result.exit_code == 0, result.output
    valid, children, partitions = tune_index_state(db)
    assert (valid, children) == (True, partitions)


def _interrupted_build(db: psycopg.Connection, db_url: str) -> None:
    """CREATE INDEX CONCURRENTLY of the advised index, cut short by lock_timeout while it waits for
    a writer's open transaction: as an interrupted tune apply, it leaves an invalid index."""
    with psycopg.connect(db_url) as writer:
        writer.execute("insert into public.events values (0, 0, 'x')")
        db.execute("set lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            db.execute("create index concurrently events_account_btree_tune on public.events (account)")
        db.execute("reset lock_timeout")
        writer.rollback()


def _validity(db: psycopg.Connection, index: str) -> list[tuple[bool]]:
    return db.execute("select indisvalid from pg_index where indexrelid = %s::regclass", [index]).fetchall()


def test_tune_apply_replaces_an_invalid_index_left_by_an_interrupted_build(db, db_url):
    _events(db)
    _read_account(db)
    _interrupted_build(db, db_url)
    assert _validity(db, "public.events_account_btree_tune") == [(False,)]

    result = cli("tune", "apply", "1", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "built the btree index on public.events (account)"
    assert _validity(db, "public.events_account_btree_tune") == [(True,)]


def test_tune_apply_reports_a_build_that_leaves_the_index_invalid_as_failed(db, db_url):
    _events(db)
    _read_account(db)
    database = psycopg.sql.Identifier(db.execute("select current_database()").fetchone()[0])
    db.execute(psycopg.sql.SQL("alter database {} set lock_timeout = '200ms'").format(database))

    with psycopg.connect(db_url) as writer:
        writer.execute("insert into public.events values (0, 0, 'x')")  # the build waits for it
        result = cli("tune", "apply", "1", database_url=db_url)
        writer.rollback()

    assert result.exit_code == 1
    assert result.output.splitlines()[-2:] == [
        "Error: building the btree index on public.events failed: canceling statement due to lock timeout",
        "the index public.events_account_btree_tune is left INVALID (queries do not use it, writes still"
        " maintain it): tune apply drops and builds it again",
    ]
    assert _validity(db, "public.events_account_btree_tune") == [(False,)]


def test_tune_drop_unused_drops_only_indexes_tune_built_after_confirmation(db, db_url):
    _events(db, rows=1000)
    for statement in (
        "create index events_account_btree_tune on public.events (account)",
        "comment on index public.events_account_btree_tune is 'spreadedge tune: btree (account)'",
        "create index events_id_idx on public.events (id)",
    ):
        db.execute(statement)

    refused = cli("tune", "drop-unused", database_url=db_url)
    dropped = cli("tune", "drop-unused", "--yes", database_url=db_url)

    assert refused.exit_code == 1  # no answer to the confirmation: aborted
    assert dropped.exit_code == 0, dropped.output
    indexes = db.execute("select indexname from pg_indexes where tablename = 'events' order by 1").fetchall()
    assert indexes == [("events_id_idx",)]


def test_duplicate_indexes_lists_an_index_that_is_a_prefix_of_another(db):
    _events(db, rows=10)
    db.execute("create index events_account_idx on public.events (account)")
    db.execute("create index events_account_id_idx on public.events (account, id)")

    rows = db.execute(
        "select index_name, covered_by from ops.duplicate_indexes where table_name = 'events'"
    ).fetchall()

    assert rows == [("events_account_idx", "events_account_id_idx")]


def test_missing_index_candidates_lists_a_table_read_by_sequential_scans(db):
    _events(db, rows=5000)
    for _ in range(3):
        db.execute("select count(*) from public.events where payload = 'x'").fetchall()
    db.execute("select pg_stat_force_next_flush()")

    rows = db.execute(
        "select table_name, seq_scan >= 3 from ops.missing_index_candidates where table_name = 'public.events'"
    ).fetchall()

    assert rows == [("public.events", True)]


def test_table_health_reports_dead_rows_after_a_delete(db):
    _events(db, rows=2000)
    db.execute("delete from public.events where id <= 500")
    db.execute("select pg_stat_force_next_flush()")

    row = db.execute(
        "select dead_rows from ops.table_health where schema_name = 'public' and table_name = 'events'"
    ).fetchone()

    assert row == (500,)


def test_performance_summary_counts_this_databases_connections_and_size(db):
    row = db.execute(
        "select connections >= 1, database_size_bytes = pg_database_size(current_database()),"
        " max_connections = current_setting('max_connections')::int from ops.performance_summary()"
    ).fetchone()

    assert row == (True, True, True)


def test_tune_drop_unused_keeps_an_index_tune_apply_built_minutes_ago(db, db_url):
    _events(db)
    _read_account(db)
    assert cli("tune", "apply", "1", database_url=db_url).exit_code == 0

    result = cli("tune", "drop-unused", "--yes", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "no unused index to drop"
    assert result.output.startswith("kept public.events_account_btree_tune: unused only since ")
    assert _validity(db, "public.events_account_btree_tune") == [(True,)]


def test_tune_apply_by_index_name_builds_that_advice_whatever_its_number(db, db_url):
    _events(db)
    _read_account(db)
    db.execute(
        "create table public.fills as select i as id, i % 3000 as venue from generate_series(1, 50000) i"
    )
    db.execute("analyze public.fills")
    for venue in range(3):
        db.execute("select * from public.fills where venue = %s", [venue]).fetchall()
    assert len(db.execute("select * from ops.index_advice()").fetchall()) == 2

    result = cli("tune", "apply", "fills_venue_btree_tune", database_url=db_url)

    assert result.exit_code == 0, result.output
    built = db.execute(
        "select indexname from pg_indexes where indexname like '%%_tune' order by 1"
    ).fetchall()
    assert built == [("fills_venue_btree_tune",)]


def test_tune_apply_refuses_an_index_name_no_advice_builds(db, db_url):
    _events(db)
    _read_account(db)

    result = cli("tune", "apply", "events_payload_btree_tune", database_url=db_url)

    assert result.exit_code == 1
    assert (
        "no advice builds an index named 'events_payload_btree_tune' now (tune report lists 1)"
        in result.output
    )
