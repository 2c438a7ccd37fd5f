"""Operations: cleanup and partition reports judged by UTC partition bounds in any session TimeZone;
retention must be a positive interval."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

NEW_YORK = "America/New_York"
# market.candles is partitioned by UTC month: March 2024 runs to 2024-04-01 00:00Z. Read in a New
# York session, pg_partman's show_partition_info adds "1 month" to 2024-02-29 19:00 EST and ends
# the partition on 2024-03-29 23:00Z, three days early.
MARCH = "market.candles_p2024_03"
CUTOFF = "2024-03-30 00:00:00+00"


def _march_candles(db: psycopg.Connection) -> None:
    """The March 2024 candles partition, with a candle older than CUTOFF and one younger."""
    db.execute(
        "select partman.create_partition_time('market.candles', array['2024-03-01 00:00Z'::timestamptz])"
    )
    db.execute(
        "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
        " quote_volume, trade_count) select min(instrument_id), '1h', t, 1, 1, 1, 1, 1, 1, 1"
        " from ref.instruments, unnest(array['2024-03-10 00:00Z', '2024-03-30 12:00Z']::timestamptz[]) t"
        " group by t"
    )
    db.execute("select set_config('TimeZone', %s, false)", [NEW_YORK])


def _candle_times(db: psycopg.Connection) -> list[str]:
    rows = db.execute(
        "select to_char(open_time at time zone 'UTC', 'YYYY-MM-DD HH24:MI') from market.candles order by 1"
    )
    return [row[0] for row in rows]


# bug: the cleanup judged a partition old by pg_partman's show_partition_info, which adds the
# partition interval in the session TimeZone; in a New York session (PGTZ) March 2024 "ended" on
# March 29, so a cutoff of March 30 dropped the whole partition with the candle of March 30 12:00,
# younger than the cutoff, and the dry run said so
def test_cleanup_plan_in_a_new_york_session_deletes_rows_of_a_partition_younger_than_the_cutoff(seeded):
    _march_candles(seeded)

    plan = seeded.execute(
        "select * from ops.cleanup_plan(target => 'candles', older_than => '1 day', cutoff => %s)", [CUTOFF]
    ).fetchall()

    assert plan == [("delete rows", MARCH, 1)]


def test_cleanup_drop_partition_in_a_new_york_session_keeps_a_partition_with_rows_younger_than_the_cutoff(
    seeded,
):
    _march_candles(seeded)

    dropped = seeded.execute(
        "select ops.cleanup_drop_partition(target => 'candles', older_than => '1 day',"
        " partition_name => %s, cutoff => %s)",
        [MARCH, CUTOFF],
    ).fetchone()

    assert dropped == (0,)
    assert _candle_times(seeded) == ["2024-03-10 00:00", "2024-03-30 12:00"]


def test_a_cleanup_run_in_a_new_york_session_removes_only_rows_older_than_the_cutoff(seeded):
    _march_candles(seeded)

    for (name,) in seeded.execute(
        "select object_name from ops.cleanup_plan(target => 'candles', older_than => '1 day', cutoff => %s)"
        " where action = 'drop partition'",
        [CUTOFF],
    ).fetchall():
        seeded.execute(
            "select ops.cleanup_drop_partition(target => 'candles', older_than => '1 day',"
            " partition_name => %s, cutoff => %s)",
            [name, CUTOFF],
        )
    while seeded.execute(
        "select ops.cleanup_delete_batch(target => 'candles', older_than => '1 day', cutoff => %s)", [CUTOFF]
    ).fetchone() != (0,):
        pass

    assert _candle_times(seeded) == ["2024-03-30 12:00"]


# bug: partitions status showed each table's newest partition end as pg_partman computes it in the
# session TimeZone: in a New York session the candles partition of March 2024 "ended" on
# 2024-03-29 23:00Z instead of 2024-04-01 00:00Z
def test_partition_status_shows_utc_partition_bounds_in_a_new_york_session(seeded):
    _march_candles(seeded)
    # March 2024 left as the only (and so the newest) candles partition
    for (name,) in seeded.execute(
        "select inhrelid::regclass::text from pg_inherits"
        " where inhparent = 'market.candles'::regclass and inhrelid <> %s::regclass",
        [MARCH],
    ).fetchall():
        seeded.execute(f"drop table {name}")

    row = seeded.execute(
        "select partitions, oldest_start, newest_end from ops.partition_status() where parent_table = 'market.candles'"
    ).fetchone()

    assert row == (1, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))


def _ticks_retention(db: psycopg.Connection) -> str | None:
    return db.execute(
        "select retention from partman.part_config where parent_table = 'market.ticks'"
    ).fetchone()[0]


# bug: ops.configure_partitioning took any retention: with '-1 day' the next maintenance dropped
# every partition ending before tomorrow, today's ticks with it (the settings refuse such a
# value, the SQL function did not)
@pytest.mark.parametrize(
    ("retention", "shown"), [("-1 day", "-1 days"), ("0 days", "00:00:00"), ("-2 hours", "-02:00:00")]
)
def test_configure_partitioning_refuses_a_retention_that_is_not_positive_with_22s09(seeded, retention, shown):
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute(
            "select ops.configure_partitioning(parent_table => 'market.ticks', premake => 4, retention => %s)",
            [retention],
        )

    assert caught.value.sqlstate == "22S09"
    assert f"retention must be a positive interval, got {shown}\n" in str(caught.value)
    assert _ticks_retention(seeded) is None


def test_maintenance_after_a_refused_negative_retention_keeps_todays_ticks(seeded):
    seeded.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select min(instrument_id), now(), 'today', 100, 1 from ref.instruments"
    )
    try:
        seeded.execute(
            "select ops.configure_partitioning(parent_table => 'market.ticks', premake => 4, retention => '-1 day')"
        )
    except psycopg.Error as refused:  # the fixed code refuses it; the old one took it
        assert refused.sqlstate == "22S09"

    seeded.execute("call ops.run_partition_maintenance()")

    assert seeded.execute("select exchange_trade_id from market.ticks").fetchall() == [("today",)]
