"""Days counted on UTC's clock whatever the session TimeZone: history pages, health limits and
partitions ahead, partition retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from trading_helpers import call, fill, place


def clock_change_zone(at: datetime, *, forward: bool) -> str:
    """A POSIX time zone on UTC that moves its clocks an hour forward (a local day of 23 hours
    around ``at``) or back (25 hours) at ``at``, and back (or forward) again three days later.
    A real zone (America/New_York) does the same twice a year; this one does it when the test
    needs it."""
    if forward:  # a rule's time is read on the clock in effect before the change: UTC here
        day = at.timetuple().tm_yday - 1  # zero-based, 29 February counted
        return f"XST0XDT-1,{day}/{at:%H:%M:%S},{(day + 3) % 365}/0"
    local = at + timedelta(hours=1)  # the clocks read UTC+1 until the change
    day = local.timetuple().tm_yday - 1
    return f"XST0XDT-1,{(day - 3) % 365}/0,{day}/{local:%H:%M:%S}"


def set_time_zone(conn: psycopg.Connection, zone: str) -> None:
    conn.execute("select set_config('TimeZone', %s, false)", [zone])


def local_day_hours(conn: psycopg.Connection, *, ahead: bool) -> float:
    """Hours in the session's '1 day' from now: ahead, or back."""
    query = (
        "select extract(epoch from now() + interval '1 day' - now()) / 3600"
        if ahead
        else "select extract(epoch from now() - (now() - interval '1 day')) / 3600"
    )
    return float(conn.execute(query).fetchone()[0])


# bug: a history page read the rows up to clock_timestamp() + '1 day' (an order may be placed up
# to a day ahead), a day of the session's TimeZone: in a session whose next day is 23 hours (the
# eve of a spring-forward in New York) an order or a fill dated 23.5 hours ahead, on the UTC
# session's page, was missing from the page
@pytest.mark.parametrize("page_function", ["trading.order_history_page", "trading.trade_history_page"])
def test_a_row_dated_23_and_a_half_hours_ahead_is_on_the_page_in_a_session_whose_next_day_is_23_hours(
    seeded: psycopg.Connection, page_function: str
) -> None:
    order_id = place(
        seeded, "buy", "0.01", "50000", placed_at=datetime.now(UTC) + timedelta(hours=23, minutes=20)
    )
    fill(seeded, order_id, "0.01", "50000", executed_at=datetime.now(UTC) + timedelta(hours=23, minutes=30))
    set_time_zone(seeded, clock_change_zone(datetime.now(UTC) + timedelta(hours=12), forward=True))
    assert local_day_hours(seeded, ahead=True) == 23  # the zone is what the test needs

    page = call(seeded, page_function)

    assert [item["order_id"] for item in page["items"]] == [order_id]


def _backup_finished(conn: psycopg.Connection, ago: timedelta) -> None:
    conn.execute(
        "insert into ops.backup_runs (kind, compress_type, started_at, finished_at, status, label)"
        " values ('full', 'zst', now() - %s - interval '10 minutes', now() - %s, 'succeeded', 'L1')",
        [ago, ago],
    )


# bug: the backup age limit was subtracted from now() in the session's TimeZone: in a session
# whose last day was 23 hours, a backup 23.5 hours old failed a '1 day' limit, the detail saying
# "23:30:00 ago (limit 1 day)"; in one whose last day was 25 hours, one 24.5 hours old passed
@pytest.mark.parametrize(("forward", "hours_ago", "ok"), [(True, 23.5, True), (False, 24.5, False)])
def test_a_backup_age_limit_in_days_is_whole_days_whatever_the_session_time_zone(
    db: psycopg.Connection, forward: bool, hours_ago: float, ok: bool
) -> None:
    _backup_finished(db, timedelta(hours=hours_ago))
    set_time_zone(db, clock_change_zone(datetime.now(UTC) - timedelta(hours=12), forward=forward))
    assert local_day_hours(db, ahead=False) == (23 if forward else 25)

    report = call(db, "ops.health_report", max_backup_age=timedelta(days=1))

    [check] = [c for c in report["checks"] if c["name"] == "last_backup"]
    assert check["ok"] is ok


def _ticks_partitions_until(conn: psycopg.Connection, end: timedelta) -> None:
    """market.ticks with its partitions up to today's and one more from tomorrow to now() + ``end``."""
    conn.execute(
        """
        do $$
        declare
            v_name text;
        begin
            for v_name in select format('%I.%I', p.partition_schemaname, p.partition_tablename)
                          from partman.show_partitions('market.ticks') p
                          cross join lateral partman.show_partition_info(
                              p.partition_schemaname || '.' || p.partition_tablename) i
                          where i.child_start_time > now() loop
                execute format('alter table market.ticks detach partition %s', v_name);
                execute format('drop table %s', v_name);
            end loop;
        end
        $$
        """
    )
    start = conn.execute("select date_trunc('day', now(), 'UTC') + interval '24 hours'").fetchone()[0]
    stop = conn.execute("select now() + %s", [end]).fetchone()[0]
    # why only when it ends after it starts: in the first minutes after midnight UTC today's
    # partition already reaches nearly 24 hours ahead, past an end of 23.5 hours: it is then the
    # newest, and reaches less than a day ahead all the same
    if stop > start:
        conn.execute(
            sql.SQL(
                "create table market.ticks_p_ahead partition of market.ticks for values from ({}) to ({})"
            ).format(sql.Literal(start), sql.Literal(stop))
        )


# bug: "partitions ahead" compared the newest partition's end with now() + its interval added in
# the session's TimeZone: in a session whose next day is 25 hours, a daily table whose partitions
# reach 24.5 hours ahead was reported "not created ahead" (and one reaching 23.5 hours ahead was
# healthy where the next day is 23 hours)
@pytest.mark.parametrize(("forward", "hours_ahead", "ok"), [(False, 24.5, True), (True, 23.5, False)])
def test_partitions_ahead_counts_a_day_as_24_hours_whatever_the_session_time_zone(
    db: psycopg.Connection, forward: bool, hours_ahead: float, ok: bool
) -> None:
    _ticks_partitions_until(db, timedelta(hours=hours_ahead))
    set_time_zone(db, clock_change_zone(datetime.now(UTC) + timedelta(hours=12), forward=forward))
    assert local_day_hours(db, ahead=True) == (23 if forward else 25)

    checks = {row[0]: (row[1], row[2]) for row in db.execute("select * from ops.health(null)")}

    assert checks["partitions_ahead"][0] is ok
    assert ("market.ticks" in checks["partitions_ahead"][1]) is not ok


# bug: ops.configure_partitioning took a retention with a negative part: '1 mon -29 days'
# compares as a day but pg_partman subtracts it part by part, so on 1 March its cutoff was
# 2 March, in the future, and the next maintenance dropped today's partition with its rows
# (ops.cleanup_cutoff and the health limits refuse such an interval)
@pytest.mark.parametrize(
    ("retention", "message"),
    [
        ("1 mon -29 days", "retention must be a positive interval with no negative part, got 1 mon -29 days"),
        (
            "1 day -23 hours",
            "retention must be a positive interval with no negative part, got 1 day -23:00:00",
        ),
        # pg_partman's maintenance failed on it at every run with "timestamp out of range"
        ("1000000 years", "retention 1000000 years reaches back before the earliest time PostgreSQL stores"),
    ],
)
def test_configure_partitioning_refuses_a_retention_with_a_negative_part_or_out_of_range_with_22s09(
    db: psycopg.Connection, retention: str, message: str
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        db.execute(
            "select ops.configure_partitioning(parent_table => 'market.ticks', premake => 4, retention => %s)",
            [retention],
        )

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S09", message)
    assert db.execute(
        "select retention from partman.part_config where parent_table = 'market.ticks'"
    ).fetchone() == (None,)


# bug: internal.check_time (placed_at, executed_at, opened_at, ...) accepted a time up to
# now() + '1 day', a day of the session's TimeZone: in a session whose next day is 25 hours, an
# order placed 24.5 hours ahead was stored, while a UTC session refused it
def test_a_placement_24_and_a_half_hours_ahead_is_refused_in_a_session_whose_next_day_is_25_hours(
    seeded: psycopg.Connection,
) -> None:
    set_time_zone(seeded, clock_change_zone(datetime.now(UTC) + timedelta(hours=12), forward=False))
    assert local_day_hours(seeded, ahead=True) == 25

    with pytest.raises(psycopg.Error) as caught:
        place(seeded, "buy", "0.01", "50000", placed_at=datetime.now(UTC) + timedelta(hours=24, minutes=30))

    assert caught.value.sqlstate == "22S09"
    assert seeded.execute("select count(*) from trading.orders").fetchone() == (0,)


# bug: trading.record_fill's one-test fast path compared executed_at with now() + '1 day', 25 hours
# in such a session, so a fill 24.5 hours ahead skipped internal.check_time and was stored
def test_a_fill_24_and_a_half_hours_ahead_is_refused_in_a_session_whose_next_day_is_25_hours(
    seeded: psycopg.Connection,
) -> None:
    order_id = place(seeded, "buy", "0.01", "50000")
    set_time_zone(seeded, clock_change_zone(datetime.now(UTC) + timedelta(hours=12), forward=False))
    assert local_day_hours(seeded, ahead=True) == 25

    with pytest.raises(psycopg.Error) as caught:
        fill(
            seeded, order_id, "0.01", "50000", executed_at=datetime.now(UTC) + timedelta(hours=24, minutes=30)
        )

    assert caught.value.sqlstate == "22S09"
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (0,)


# bug: ingestion's time check (internal.time_problem) let a row 24.5 hours ahead through in such a
# session, where a UTC session's load rejected it
def test_an_ingested_time_24_and_a_half_hours_ahead_is_out_of_range_in_a_session_whose_next_day_is_25_hours(
    db: psycopg.Connection,
) -> None:
    set_time_zone(db, clock_change_zone(datetime.now(UTC) + timedelta(hours=12), forward=False))
    assert local_day_hours(db, ahead=True) == 25
    ahead = datetime.now(UTC) + timedelta(hours=24, minutes=30)

    problem = db.execute(
        "select internal.time_problem('traded_at', %s, %s)", [ahead.isoformat(), ahead]
    ).fetchone()[0]

    assert problem == f"traded_at is out of range: {ahead.isoformat()}"


# bug: the latest fill's price (a mark without market data) was looked for first up to
# clock_timestamp() + '1 day', 23 hours in a session on the eve of a spring-forward: a fill dated
# 23.5 hours ahead (accepted from a UTC session) fell past it, and an older fill's price was the mark
def test_the_latest_fill_price_counts_a_fill_23_and_a_half_hours_ahead_in_a_session_whose_next_day_is_23_hours(
    seeded: psycopg.Connection,
) -> None:
    now = datetime.now(UTC)
    fill(seeded, place(seeded, "buy", "0.01", "50000"), "0.01", "50000", executed_at=now - timedelta(hours=1))
    later = place(seeded, "buy", "0.01", "51000", placed_at=now + timedelta(hours=23))
    fill(seeded, later, "0.01", "51000", executed_at=now + timedelta(hours=23, minutes=30))
    set_time_zone(seeded, clock_change_zone(now + timedelta(hours=12), forward=True))
    assert local_day_hours(seeded, ahead=True) == 23

    price = seeded.execute(
        "select internal.latest_fill_price(instrument_id) from ref.instruments where symbol = 'BTCUSDT'"
        " and exchange_id = (select exchange_id from ref.exchanges where code = 'binance')"
    ).fetchone()[0]

    assert price == 51000
