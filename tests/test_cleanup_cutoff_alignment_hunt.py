"""Cleanup of market data by whole candle buckets: ticks go by whole UTC minutes and candles by
whole UTC days (the cutoff rounded down), so a later market.rollup_candles whose window reaches
back to the cutoff rebuilds every candle exactly as it was, never from part of what it held."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

from market_helpers import RECENT_NOON, instrument_id
from ops_helpers import cli

# a recent day (yesterday), so the daily tick and monthly candle partitions exist
DAY = RECENT_NOON.replace(hour=0)
CANDLE_COLUMNS = "interval, open_time, open, high, low, close, volume, quote_volume, trade_count"


def _tick(db: psycopg.Connection, trade_id: str, traded_at: datetime, price: str) -> None:
    db.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " values (%s, %s, %s, %s, 1)",
        [instrument_id(db), traded_at, trade_id, Decimal(price)],
    )


def _one_minute_candle(db: psycopg.Connection, open_time: datetime, open_: str, close: str) -> None:
    """A 1m candle (high 1 above, low 1 below open and close; volume 2, 3 trades)."""
    db.execute(
        "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
        " quote_volume, trade_count) values (%(i)s, '1m', %(t)s, %(o)s, greatest(%(o)s, %(c)s) + 1,"
        " least(%(o)s, %(c)s) - 1, %(c)s, 2, %(c)s * 2, 3)",
        {"i": instrument_id(db), "t": open_time, "o": Decimal(open_), "c": Decimal(close)},
    )


def _candles(db: psycopg.Connection) -> list[tuple]:
    return db.execute(f"select {CANDLE_COLUMNS} from market.candles order by interval, open_time").fetchall()


def _rollup(db: psycopg.Connection, open_window: str = "1000 years") -> None:
    db.execute("select * from market.rollup_candles(open_window => %s)", [open_window])


def _tick_ids(db: psycopg.Connection) -> list[str]:
    return [row[0] for row in db.execute("select exchange_trade_id from market.ticks order by traded_at")]


def _removed(output: str, target: str) -> int:
    """The rows a spreadedge cleanup run printed it removed, in dropped partitions and batches."""
    found = re.search(rf"{target}: dropped \d+ partitions \((\d+) rows\), deleted (\d+) rows", output)
    assert found, output
    return int(found.group(1)) + int(found.group(2))


def _out_of_the_last_seconds_of_a_minute(db: psycopg.Connection) -> None:
    """Waits (by the server's clock) until a minute has 10 s or more left, so a CLI run right
    after falls in the same minute as the rows the test wrote by now()."""
    while db.execute("select extract(second from now() at time zone 'UTC') >= 50").fetchone()[0]:
        time.sleep(1)


# bug: a tick cleanup cut through a minute: with a cutoff of 12:00:30 the tick of 12:00:10 went and
# that of 12:00:50 stayed, and a rollup reaching back rebuilt the minute's 1m candle (and every
# longer one holding it) as 1 trade at 200 instead of 2 trades opening at 100
def test_cleanup_delete_batch_of_ticks_keeps_the_minute_of_its_cutoff_whole_and_rebuilt_candles_unchanged(
    seeded,
):
    _tick(seeded, "t0", DAY + timedelta(hours=11, minutes=59, seconds=30), "90")
    _tick(seeded, "t1", DAY + timedelta(hours=12, seconds=10), "100")
    _tick(seeded, "t2", DAY + timedelta(hours=12, seconds=50), "200")
    _rollup(seeded)
    built = _candles(seeded)

    deleted = seeded.execute(
        "select ops.cleanup_delete_batch('ticks', '1 hour', 100, cutoff => %s)",
        [DAY + timedelta(hours=12, seconds=30)],
    ).fetchone()[0]
    _rollup(seeded)

    minute = seeded.execute(
        "select open, high, low, close, volume, trade_count from market.candles"
        " where interval = '1m' and open_time = %s",
        [DAY + timedelta(hours=12)],
    ).fetchone()
    assert minute == (Decimal("100"), Decimal("200"), Decimal("100"), Decimal("200"), Decimal("2"), 2)
    assert _candles(seeded) == built
    assert (deleted, _tick_ids(seeded)) == (1, ["t1", "t2"])


# bug: the dry run of a tick cleanup counted the part of the cutoff's minute before it as going
def test_cleanup_plan_of_ticks_counts_only_the_whole_minutes_before_its_cutoff(seeded):
    _tick(seeded, "t0", DAY + timedelta(hours=11, minutes=59, seconds=30), "90")
    _tick(seeded, "t1", DAY + timedelta(hours=12, seconds=10), "100")
    _tick(seeded, "t2", DAY + timedelta(hours=12, seconds=50), "200")

    plan = seeded.execute(
        "select action, row_count from ops.cleanup_plan('ticks', '1 hour', cutoff => %s)",
        [DAY + timedelta(hours=12, seconds=30)],
    ).fetchall()

    assert plan == [("delete rows", 1)]


# bug: a candle cleanup deleted candles by open time: cut at 12:30, a day lost its 1d candle and
# its candles opening before 12:30 (1m to 4h) and kept the later ones, and a wide rollup built
# the day's 1d candle back from its last 4h candle alone
def test_cleanup_delete_batch_of_candles_keeps_the_day_of_its_cutoff_whole_and_a_wide_rollup_changes_nothing(
    seeded,
):
    _one_minute_candle(seeded, DAY - timedelta(minutes=1), "80", "85")
    _one_minute_candle(seeded, DAY, "100", "105")
    _one_minute_candle(seeded, DAY + timedelta(hours=5), "110", "120")
    _one_minute_candle(seeded, DAY + timedelta(hours=12), "120", "90")
    _one_minute_candle(seeded, DAY + timedelta(hours=23, minutes=59), "95", "130")
    _rollup(seeded)
    built = _candles(seeded)

    deleted = seeded.execute(
        "select ops.cleanup_delete_batch('candles', '1 hour', 1000, cutoff => %s)",
        [DAY + timedelta(hours=12, minutes=30)],
    ).fetchone()[0]
    _rollup(seeded)

    day = seeded.execute(
        "select open, high, low, close, volume, trade_count from market.candles"
        " where interval = '1d' and open_time = %s",
        [DAY],
    ).fetchone()
    assert day == (Decimal("100"), Decimal("131"), Decimal("89"), Decimal("130"), Decimal("8"), 12)
    assert _candles(seeded) == [c for c in built if c[1] >= DAY]
    # the day before went whole: its 1m, 5m, 15m, 1h, 4h and 1d candles
    assert deleted == 6


# bug: spreadedge cleanup ticks cut the minute of now() - --older-than, as the batches did
def test_spreadedge_cleanup_ticks_keeps_the_whole_minute_of_its_cutoff(seeded, db_url):
    _out_of_the_last_seconds_of_a_minute(seeded)
    minute = seeded.execute("select date_trunc('minute', now() - interval '2 hours', 'UTC')").fetchone()[0]
    _tick(seeded, "before", minute - timedelta(seconds=1), "90")
    _tick(seeded, "first", minute, "100")
    _tick(seeded, "last", minute + timedelta(seconds=59, microseconds=999999), "200")

    result = cli("cleanup", "ticks", "--older-than", "2h", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert _removed(result.output, "ticks") == 1
    assert _tick_ids(seeded) == ["first", "last"]


# bug: spreadedge cleanup candles deleted the candles of the day of now() - --older-than that
# opened before it: the day's 1d candle with its first ones
def test_spreadedge_cleanup_candles_keeps_the_whole_day_of_its_cutoff(seeded, db_url):
    _out_of_the_last_seconds_of_a_minute(seeded)
    day = seeded.execute("select date_trunc('day', now() - interval '1 hour', 'UTC')").fetchone()[0]
    _one_minute_candle(seeded, day - timedelta(minutes=1), "80", "85")
    _one_minute_candle(seeded, day, "100", "105")
    _rollup(seeded)
    built = _candles(seeded)

    result = cli("cleanup", "candles", "--older-than", "1h", "--dry-run", database_url=db_url)
    assert result.exit_code == 0, result.output
    assert f"dry run: 6 rows older than {day:%Y-%m-%d %H:%M:%S}Z would go" in result.output
    result = cli("cleanup", "candles", "--older-than", "1h", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert _removed(result.output, "candles") == 6
    assert _candles(seeded) == [c for c in built if c[1] >= day]


# bug: ops.cleanup_cutoff took no target: a caller (spreadedge cleanup) had no way to have the
# cutoff of a minute or a day it removes whole
def test_cleanup_cutoff_of_ticks_is_its_utc_minute_and_of_candles_its_utc_day(db):
    db.execute("set timezone = 'Asia/Kathmandu'")  # +05:45: its midnight is no UTC day's start

    row = db.execute(
        "select ops.cleanup_cutoff('90 minutes', target => 'ticks') = date_trunc('minute', now() - interval '90 minutes', 'UTC'),"
        " ops.cleanup_cutoff('90 minutes', target => 'candles') = date_trunc('day', now() - interval '90 minutes', 'UTC'),"
        " ops.cleanup_cutoff('90 minutes', target => 'quotes') = now() - interval '90 minutes',"
        " ops.cleanup_cutoff('90 minutes') = now() - interval '90 minutes'"
    ).fetchone()

    assert row == (True, True, True, True)


# guard (passes on the old code too): the hourly retention drops whole partitions, and the
# partitions of market.candles are UTC months, so pg_partman's retention removes whole UTC days of
# candles (every interval of them) also when the maintenance runs from a New York session
def test_scheduled_retention_of_candles_drops_whole_utc_days_and_a_wide_rollup_changes_nothing(seeded):
    month = seeded.execute("select date_trunc('month', now(), 'UTC') - interval '1 month'").fetchone()[0]
    _one_minute_candle(seeded, month - timedelta(minutes=1), "80", "85")
    _one_minute_candle(seeded, month, "100", "105")
    _rollup(seeded)
    built = _candles(seeded)
    # a retention reaching back into that month's third day: the month before it is past it
    days = seeded.execute("select extract(day from now() - %s)::integer - 2", [month]).fetchone()[0]
    seeded.execute(
        "select ops.configure_partitioning(parent_table => 'market.candles', premake => 4, retention => %s)",
        [timedelta(days=days)],
    )
    seeded.execute("set timezone = 'America/New_York'")

    seeded.execute("call ops.run_partition_maintenance()")
    _rollup(seeded)

    assert _candles(seeded) == [c for c in built if c[1] >= month]
    assert len(_candles(seeded)) == 6
