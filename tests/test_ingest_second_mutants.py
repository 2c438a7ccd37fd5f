"""Rules of market data ingestion and of the latest prices that neither the first mutation run
(test_ingest_audit_mutants.py) nor the rest of the suite pinned down: each test here fails on a
small, plausible bug in the rule it names (a mutant of the SQL) that the rest of the suite let
through.

Second mutation run of functions/42_market_ingest_parse.sql, 43_market_ingest_load.sql and
41_market_latest_prices.sql: 36 mutants tried, 19 caught by the rest of the suite, 17
survived, none equivalent; each survivor is killed by one test below (run both ways: fails with its
mutant, passes without):

- 42:99 a day ahead read as 48 hours -> test_a_quote_25_hours_ahead_is_rejected_as_out_of_range
- 42:119 too long from 102 characters -> test_a_field_of_101_characters_is_rejected_as_too_long
- 43:163 / 43:241 a blank received_at checked as a time (quotes / ticks) ->
  test_a_quote_with_a_blank_received_at_loads_as_received_now, test_a_tick_with_a_blank_received_at_loads_as_received_now
- 43:175 / 43:259 received_at stored as now() whatever was given (quotes / ticks) ->
  test_a_quotes_received_at_is_stored_as_given, test_a_ticks_received_at_is_stored_as_given
- 43:394 a strict candle load counting its valid rows as duplicates ->
  test_a_strict_candle_load_with_a_rejected_row_counts_no_duplicates
- 43:191 the quotes' staging table left full after a load -> test_a_quote_load_empties_the_staging_table
- 43:137 the exchange not trimmed before the blank test -> test_an_exchange_of_blanks_is_rejected_as_missing
- 43:309 the interval not trimmed before the enum test -> test_a_candle_interval_with_spaces_around_loads
- 43:322 ten digits on the trade count's fast path (22003, batch aborted) ->
  test_a_trade_count_of_ten_digits_is_a_rejected_row_not_a_failed_batch
- 43:351 volume required positive -> test_a_candle_of_zero_volume_loads
- 43:361 the low checked against the close alone -> test_a_candle_whose_low_is_above_its_open_is_rejected_though_its_close_is_not
- 43:389 updated_at left alone on a replace -> test_a_candle_replacing_a_built_one_records_when_it_was_written
- 43:189 the quotes' rejects in reverse line order -> test_a_quote_loads_rejects_come_in_line_order
- 41:44 a kept row without a quote (made by a trade) never takes one ->
  test_a_first_quote_after_a_first_trade_becomes_the_latest_quote
- 41:74 the row-locking insert without the horizon (an empty row for a future trade) ->
  test_a_trade_ten_minutes_ahead_leaves_an_instrument_without_a_latest_prices_row"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from market_helpers import DAY, RECENT_NOON, instrument_id, quote
from test_ingest_audit_mutants import CANDLE, QUOTE, TICK, load_now, load_staged, rejects, stage


def latest(conn: psycopg.Connection) -> tuple | None:
    """(bid, ask, quoted_at, last_price, traded_at) of binance BTCUSDT's market.latest_prices row."""
    return conn.execute(
        "select bid, ask, quoted_at, last_price, traded_at from market.latest_prices where instrument_id = %s",
        [instrument_id(conn)],
    ).fetchone()


# -- parsing ------------------------------------------------------------------------------------------


def test_a_quote_25_hours_ahead_is_rejected_as_out_of_range(seeded):
    # a day ahead is the most internal.time_problem accepts (a clock or time zone gone wrong)
    at = (datetime.now(UTC) + timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rejects(seeded, "quotes", QUOTE | {"quoted_at": at}) == [f"quoted_at is out of range: {at}"]


# -- validation and loading ------------------------------------------------------------------------------


def test_a_quote_with_a_blank_received_at_loads_as_received_now(seeded):
    # a blank received_at is "not given", not a missing time: the load's now() is stored
    assert load_staged(seeded, "quotes", QUOTE | {"received_at": "  "})[:3] == (1, 0, 0)


def test_a_tick_with_a_blank_received_at_loads_as_received_now(seeded):
    assert load_staged(seeded, "ticks", TICK | {"received_at": ""})[:3] == (1, 0, 0)


def test_a_quotes_received_at_is_stored_as_given(seeded):
    received = f"{DAY}T12:00:05Z"
    load_staged(seeded, "quotes", QUOTE | {"received_at": received})
    assert seeded.execute("select received_at from market.quotes").fetchall() == [
        (RECENT_NOON + timedelta(seconds=5),)
    ]


def test_a_ticks_received_at_is_stored_as_given(seeded):
    load_staged(seeded, "ticks", TICK | {"received_at": f"{DAY}T12:00:05Z"})
    assert seeded.execute("select received_at from market.ticks").fetchall() == [
        (RECENT_NOON + timedelta(seconds=5),)
    ]


def test_a_strict_candle_load_with_a_rejected_row_counts_no_duplicates(seeded):
    loaded = load_staged(seeded, "candles", CANDLE, CANDLE | {"open": "x"}, strict=True)
    assert loaded[:3] == (0, 0, 1)


def test_a_quote_load_empties_the_staging_table(seeded):
    # a second load in the same transaction finds nothing staged: no row counted twice
    with seeded.transaction():
        stage(seeded, "quotes", QUOTE)
        load_now(seeded, "quotes")
        assert load_now(seeded, "quotes") == (0, 0, 0, [])


def test_an_exchange_of_blanks_is_rejected_as_missing(seeded):
    assert rejects(seeded, "quotes", QUOTE | {"exchange": "   "}) == ["exchange is missing"]


def test_a_candle_interval_with_spaces_around_loads(seeded):
    assert load_staged(seeded, "candles", CANDLE | {"interval": " 1m "})[:3] == (1, 0, 0)


def test_a_trade_count_of_ten_digits_is_a_rejected_row_not_a_failed_batch(seeded):
    # 9999999999 does not fit an integer: read by the digits' fast path, its cast raises 22003
    assert rejects(seeded, "candles", CANDLE | {"trade_count": "9999999999"}) == [
        "trade_count is not a whole number: 9999999999"
    ]


def test_a_candle_of_zero_volume_loads(seeded):
    # a minute without trades: volume and quote volume must not be negative, zero is fine
    assert load_staged(seeded, "candles", CANDLE | {"volume": "0", "quote_volume": "0"})[:3] == (1, 0, 0)


def test_a_candle_whose_low_is_above_its_open_is_rejected_though_its_close_is_not(seeded):
    # open 95 < low 97 <= close 100: the low must bound the open too
    assert rejects(seeded, "candles", CANDLE | {"open": "95", "low": "97", "close": "100"}) == [
        "high 110 and low 97 do not bound open 95 and close 100"
    ]


def test_a_candle_replacing_a_built_one_records_when_it_was_written(seeded):
    # the built candle was written an hour ago; the load rewrites it, so updated_at moves on
    seeded.execute(
        "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
        " quote_volume, trade_count, loaded, updated_at)"
        " values (%s, '1m', %s, 1, 1, 1, 1, 1, 1, 1, false, now() - interval '1 hour')",
        [instrument_id(seeded), RECENT_NOON],
    )
    assert load_staged(seeded, "candles", CANDLE)[:3] == (1, 0, 0)
    assert seeded.execute(
        "select updated_at > now() - interval '10 minutes' from market.candles"
    ).fetchall() == [(True,)]


# -- latest prices ------------------------------------------------------------------------------------


def test_a_first_quote_after_a_first_trade_becomes_the_latest_quote(seeded):
    # the trade made the row with no quote (quoted_at null): the quote must fill it in
    seeded.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " values (%s, %s, 'a', 100, 1)",
        [instrument_id(seeded), RECENT_NOON],
    )
    quote(seeded, RECENT_NOON, "99", "101")
    assert latest(seeded) == (Decimal("99"), Decimal("101"), RECENT_NOON, Decimal("100"), RECENT_NOON)


def test_a_trade_ten_minutes_ahead_leaves_an_instrument_without_a_latest_prices_row(seeded):
    # the trade is stored but not taken as the latest, so no (empty) row is made for it either
    seeded.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " values (%s, now() + interval '10 minutes', 'a', 100, 1)",
        [instrument_id(seeded)],
    )
    assert latest(seeded) is None


def test_a_quote_loads_rejects_come_in_line_order(seeded):
    # the rejects file and the operator read them as the file's lines, first line first
    loaded = load_staged(seeded, "quotes", QUOTE | {"bid": "x"}, QUOTE | {"ask": "y"})
    assert [r["line"] for r in loaded[3]] == [1, 2]


def test_a_field_of_101_characters_is_rejected_as_too_long(seeded):
    # over the 100 characters internal.parse_decimal reads: quoted by its first 20
    assert rejects(seeded, "quotes", QUOTE | {"bid": "1" * 101}) == [
        f"bid is too long: {'1' * 20}… (101 characters; a number has at most 100)"
    ]


def test_a_field_of_51_two_byte_characters_is_rejected_as_not_a_number_not_as_too_long(seeded):
    # 102 bytes but 51 characters: within the 100 characters a number may have, and no number
    arabic_ones = "\u0661" * 51
    assert rejects(seeded, "quotes", QUOTE | {"bid": arabic_ones}) == [f"bid is not a number: {arabic_ones}"]
