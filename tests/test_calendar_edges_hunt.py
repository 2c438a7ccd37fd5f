"""Calendar edges and the long run: days, months and years at their boundaries, the rollup
watermark, times far back or ahead (a bug hunt)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from spreadedge.demo import run_demo
from spreadedge.settings import SettingsError, load_settings
from trading_helpers import waits_for_a_lock


def _rollups_ran_on_the_users_own_ticks(db) -> None:
    """A database whose candle rollups have run (pg_cron's every minute, say) over the user's own
    market data: its watermark is now."""
    db.execute(
        "select ref.upsert_instrument(exchange => 'kraken', symbol => 'XYZUSD', base_asset => 'XYZ',"
        " quote_asset => 'USD', market_type => 'spot', tick_size => 0.01, lot_size => 0.001)"
    )
    db.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select instrument_id, now() - interval '1 minute', '1', 10, 1 from ref.instruments where symbol = 'XYZUSD'"
    )
    db.execute("select * from market.rollup_candles()")


# bug: the demo built its day's candles with rollup_candles(open_window => 1 day), a window counted
# back from the watermark, not from the day: in a database whose rollups had run (watermark now,
# at 20:12 say), the demo day's candles began at 20:12, and its 1d candle held the last four hours
# of the day's trades only
def test_demo_day_candles_hold_the_whole_day_in_a_database_whose_rollups_have_run(db):
    _rollups_ran_on_the_users_own_ticks(db)
    day = run_demo(db, orders=20).day
    ticks, first, volume = db.execute(
        "select count(*), min(t.traded_at), sum(t.quantity) from market.ticks t"
        " join ref.instruments i using (instrument_id) join ref.exchanges e using (exchange_id)"
        " where e.code = 'binance' and i.symbol = 'BTCUSDT' and t.traded_at >= %s and t.traded_at < %s",
        [day, day + timedelta(days=1)],
    ).fetchone()
    minutes, first_minute = db.execute(
        "select count(*), min(c.open_time) from market.candles c"
        " join ref.instruments i using (instrument_id) join ref.exchanges e using (exchange_id)"
        " where e.code = 'binance' and i.symbol = 'BTCUSDT' and c.interval = '1m'"
    ).fetchone()
    assert (minutes, first_minute) == (1440, first.replace(second=0, microsecond=0))
    assert db.execute(
        "select c.open_time, c.trade_count, c.volume from market.candles c"
        " join ref.instruments i using (instrument_id) join ref.exchanges e using (exchange_id)"
        " where e.code = 'binance' and i.symbol = 'BTCUSDT' and c.interval = '1d'"
    ).fetchall() == [(day, ticks, volume)]


# bug: the settings took a retention of up to 9999 years, and migrate rendered it into pg_partman's
# configuration; now() - 7000 years is before 4713 BC, the earliest time PostgreSQL stores, so
# every hourly maintenance of the table failed with "timestamp out of range" (55S12) and made no
# partition ahead, until its writes were refused
def test_a_retention_of_more_than_1000_years_is_refused_naming_the_setting(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_RETENTION_TICKS": "7000 years"})
    assert str(caught.value) == (
        "retention_ticks must be at most 1000 years (older than any time PostgreSQL stores, "
        "4713 BC, it fails every partition maintenance of its table), got '7000 years'"
    )


def test_a_retention_of_1000_years_is_accepted(tmp_path: Path):
    settings = load_settings(project_dir=tmp_path, env={"SPREADEDGE_RETENTION_TICKS": "1000 years"})
    assert settings.render.retention_ticks == "1000 years"


# bug: market.rollup_candles returns at once, writing nothing, when another run holds its lock
# (pg_cron's, every minute); a demo loaded during a scheduled run had no candles and no indicators
def test_demo_day_candles_are_built_when_a_scheduled_rollup_runs_at_the_same_time(db_url):
    with (
        psycopg.connect(db_url, autocommit=True) as scheduled,
        psycopg.connect(db_url, autocommit=True) as watcher,
        psycopg.connect(db_url, autocommit=True) as demo,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        scheduled.execute("begin")
        scheduled.execute("select pg_advisory_xact_lock(hashtext('spreadedge.rollup_candles'))")
        loading = pool.submit(run_demo, demo, orders=20)
        waited = waits_for_a_lock(watcher, demo.info.backend_pid, "advisory", ended=loading.done)
        scheduled.execute("commit")
        day = loading.result(timeout=300).day
        assert waited
        minutes, days = watcher.execute(
            "select count(*) filter (where c.interval = '1m'), count(*) filter (where c.interval = '1d')"
            " from market.candles c join ref.instruments i using (instrument_id)"
            " join ref.exchanges e using (exchange_id)"
            " where e.code = 'binance' and i.symbol = 'BTCUSDT' and c.open_time >= %s",
            [day],
        ).fetchone()
        assert (minutes, days) == (1440, 1)
