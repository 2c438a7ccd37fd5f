"""market.quotes, ticks and candles: partitioning, retention from the settings, duplicates refused."""

from dataclasses import replace
from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, instrument_id
from spreadedge.migrate import run

T0 = RECENT_NOON


def test_quotes_and_ticks_are_partitioned_by_day_candles_and_indicators_by_month(db):
    config = db.execute(
        "select parent_table, partition_interval, partition_type, premake from partman.part_config"
        " where parent_table like 'market.%' order by 1"
    ).fetchall()
    assert config == [
        ("market.candles", "1 mon", "native", 4),
        ("market.quotes", "1 day", "native", 4),
        ("market.technical_indicators", "1 mon", "native", 4),
        ("market.ticks", "1 day", "native", 4),
    ]


def test_daily_partitions_cover_the_history_days_and_the_premake_days(db):
    # 7 days behind (the default partition_history_days), today, and 4 days ahead
    partitions = db.execute(
        "select min(partition_tablename), max(partition_tablename), count(*)"
        " from partman.show_partitions('market.ticks')"
    ).fetchone()
    # the day of the migrate that made them (the test template's), not today's: a run may cross midnight
    expected = db.execute(
        "select 'ticks_p' || to_char(d - 7, 'YYYY_MM_DD'), 'ticks_p' || to_char(d + 4, 'YYYY_MM_DD')"
        " from (select (max(finished_at) at time zone 'UTC')::date as d from ops.migrate_runs) migrated"
    ).fetchone()
    assert partitions == (*expected, 12)


def test_a_migration_renders_the_market_retention_settings(project_settings, tmp_path):
    settings = replace(
        project_settings,
        render=replace(project_settings.render, retention_ticks="30 days", partition_history_days=2),
    )
    run(settings, "", render_only=tmp_path, echo=lambda line: None)
    rendered = (tmp_path / "0003_market_data.sql").read_text()
    assert (
        "set retention = '30 days', retention_keep_table = false\nwhere parent_table = 'market.ticks'"
        in rendered
    )
    assert "where parent_table = 'market.quotes'" not in rendered
    assert "date_trunc('day', now()) - interval '2 days'" in rendered


def test_the_same_tick_is_not_stored_twice(seeded):
    instrument = instrument_id(seeded)
    insert = (
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " values (%s, %s, 'T-1', 100, 1)"
    )
    seeded.execute(insert, [instrument, T0])
    with pytest.raises(psycopg.errors.UniqueViolation):
        seeded.execute(insert, [instrument, T0])


def test_the_same_candle_is_not_stored_twice(seeded):
    instrument = instrument_id(seeded)
    insert = (
        "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
        " quote_volume, trade_count) values (%s, '1m', %s, 100, 101, 99, 100.5, 2, 200, 3)"
    )
    seeded.execute(insert, [instrument, T0])
    with pytest.raises(psycopg.errors.UniqueViolation):
        seeded.execute(insert, [instrument, T0])


def test_a_crossed_quote_is_refused_by_the_table(seeded):
    with pytest.raises(psycopg.errors.CheckViolation):
        seeded.execute(
            "insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size)"
            " values (%s, %s, 101, 1, 100, 1)",
            [instrument_id(seeded), T0],
        )


def test_a_quote_lands_in_the_partition_of_its_day(seeded):
    seeded.execute(
        "insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size)"
        " values (%s, now(), %s, 1, %s, 2)",
        [instrument_id(seeded), Decimal("99.5"), Decimal("100.5")],
    )
    # the day of the stored quoted_at: a later now() may be of the next day
    partition, day = seeded.execute(
        "select tableoid::regclass::text, to_char(quoted_at at time zone 'UTC', 'YYYY_MM_DD') from market.quotes"
    ).fetchone()
    assert partition == f"market.quotes_p{day}"
