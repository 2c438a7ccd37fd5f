"""Rules of market data ingestion (parsing, validation, loading), of the latest prices and of the
audit log that no other test pinned down: each test here fails on a small, plausible bug in the rule
it names (a mutant of the SQL: a bound off by one, a dropped condition, a changed constant) that the
rest of the suite let through.

Mutation run of functions/42_market_ingest_parse.sql, 43_market_ingest_load.sql,
41_market_latest_prices.sql and 80_audit.sql: 65 mutants tried, 38 caught by the rest of the suite,
27 survived; 3 of those are equivalent (a symbol's other listings need no "not on this exchange"
filter, since a rejected row's exchange never lists it; a BASELINE is the first row of its table in
the log, so a story segment that starts at none reads the same rows as one that starts at it; an
UPDATE that keeps the key adds only a segment already told), and each of the other 24 is killed by
one test below (run both ways: fails with its mutant, passes without)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from market_helpers import DAY, RECENT_NOON, instrument_id, quote

NOON = f"{DAY}T12:00:00Z"
QUOTE = {
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "quoted_at": NOON,
    "bid": "100",
    "bid_size": "1",
    "ask": "101",
    "ask_size": "1",
}
TICK = {
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "traded_at": NOON,
    "exchange_trade_id": "t1",
    "price": "100",
    "quantity": "1",
}
CANDLE = {
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "interval": "1m",
    "open_time": NOON,
    "open": "100",
    "high": "110",
    "low": "90",
    "close": "105",
    "volume": "1",
    "quote_volume": "100",
    "trade_count": "5",
}


def stage(conn: psycopg.Connection, kind: str, *rows: dict[str, Any]) -> None:
    """market.stage_rows of kind, then rows (the staging table's text columns) as lines 1, 2, ...;
    in the caller's transaction."""
    conn.execute("select market.stage_rows(%s)", [kind])
    for line_no, row in enumerate(rows, 1):
        conn.execute(
            sql.SQL("insert into {} ({}) values ({})").format(
                sql.Identifier("pg_temp", f"staged_{kind}"),
                sql.SQL(", ").join(map(sql.Identifier, ["line_no", *row])),
                sql.SQL(", ").join(sql.Placeholder() * (len(row) + 1)),
            ),
            [line_no, *row.values()],
        )


def load_now(conn: psycopg.Connection, kind: str, strict: bool = False) -> tuple:
    """(loaded, duplicates, rejected, rejects) of market.load_staged_<kind>."""
    return conn.execute(
        sql.SQL("select * from {}(%s)").format(sql.Identifier("market", f"load_staged_{kind}")), [strict]
    ).fetchone()


def load_staged(conn: psycopg.Connection, kind: str, *rows: dict[str, Any], strict: bool = False) -> tuple:
    """(loaded, duplicates, rejected, rejects) of a load of rows staged in one transaction."""
    with conn.transaction():
        stage(conn, kind, *rows)
        return load_now(conn, kind, strict)


def rejects(conn: psycopg.Connection, kind: str, *rows: dict[str, Any]) -> list[str]:
    """The reject reasons of a load of rows, in line order."""
    return [r["reason"] for r in load_staged(conn, kind, *rows)[3]]


def parse_time(conn: psycopg.Connection, text: str) -> datetime | None:
    return conn.execute("select internal.parse_time(%s)", [text]).fetchone()[0]


def parse_decimal(conn: psycopg.Connection, text: str) -> Decimal | None:
    return conn.execute("select internal.parse_decimal(%s)", [text]).fetchone()[0]


# -- parsing ------------------------------------------------------------------------------------------


def test_a_decimal_with_a_three_digit_exponent_is_read(db):
    assert parse_decimal(db, "1e-100") == Decimal("1e-100")


def test_a_decimal_with_a_plus_sign_is_read(db):
    assert parse_decimal(db, "+2.5") == Decimal("2.5")


def test_a_time_in_year_zero_is_not_a_time_and_does_not_fail_the_batch(db):
    # there is no year 0000 in timestamptz: its cast raises, and one such row aborted the batch
    assert parse_time(db, "0000-01-01T00:00:00Z") is None


def test_a_time_of_second_60_is_not_a_time(db):
    # PostgreSQL reads 12:00:60 as 12:01:00, a minute (a candle) the row does not name
    assert parse_time(db, "2026-11-20T12:00:60Z") is None


def test_an_offset_of_plus_14_hours_is_read_on_a_day_past_the_28th(db):
    # day 30 is past the fast path's days 01-28, so internal.parse_time_checked reads it; +14:00
    # (Kiribati) is the largest offset in use: 12:00 there is 22:00 UTC the day before
    assert parse_time(db, "2026-11-30T12:00:00+14:00") == datetime(2026, 11, 29, 22, tzinfo=UTC)


def test_a_time_without_an_offset_is_read_as_utc_whatever_the_session_time_zone(db):
    db.execute("set timezone = 'Asia/Tokyo'")
    assert parse_time(db, "2026-11-20 12:00:00") == datetime(2026, 11, 20, 12, tzinfo=UTC)


# -- reject reasons -----------------------------------------------------------------------------------


def test_a_time_of_blanks_is_rejected_as_missing(seeded):
    assert rejects(seeded, "ticks", TICK | {"traded_at": "   "}) == ["traded_at is missing"]


def test_a_field_of_exactly_100_characters_that_is_not_a_number_is_not_called_too_long(seeded):
    # 100 characters is what internal.parse_decimal reads: such a field is simply not a number
    price = "x" * 100
    assert rejects(seeded, "ticks", TICK | {"price": price}) == [f"price is not a number: {price}"]


def test_a_quote_with_sizes_of_zero_loads(seeded):
    # an empty side of the book: a size must not be negative, zero is fine
    assert load_staged(seeded, "quotes", QUOTE | {"bid_size": "0", "ask_size": "0"})[:3] == (1, 0, 0)


def test_a_quote_with_an_unreadable_received_at_is_rejected_naming_it(seeded):
    assert rejects(seeded, "quotes", QUOTE | {"received_at": "yesterday"}) == [
        "received_at is not a time: yesterday"
    ]


# -- loading ------------------------------------------------------------------------------------------


def test_staging_again_in_one_transaction_empties_the_rows_staged_before(seeded):
    with seeded.transaction():
        seeded.execute("select market.stage_rows('ticks')")
        seeded.execute("insert into pg_temp.staged_ticks (line_no) values (1)")
        seeded.execute("select market.stage_rows('ticks')")
        staged = seeded.execute("select count(*) from pg_temp.staged_ticks").fetchone()[0]
    assert staged == 0


def test_a_quote_whose_bid_equals_its_ask_loads(seeded):
    # a locked book (bid = ask) is not crossed: only a bid above the ask is
    assert load_staged(seeded, "quotes", QUOTE | {"bid": "100", "ask": "100"})[:3] == (1, 0, 0)


def test_a_strict_quote_load_with_a_rejected_row_stores_none_of_the_good_ones(seeded):
    loaded = load_staged(seeded, "quotes", QUOTE, QUOTE | {"quoted_at": "never", "bid": "99"}, strict=True)
    stored = seeded.execute("select count(*) from market.quotes").fetchone()[0]
    assert (loaded[:3], stored) == ((0, 0, 1), 0)


def test_a_trade_id_of_exactly_128_characters_loads(seeded):
    assert load_staged(seeded, "ticks", TICK | {"exchange_trade_id": "9" * 128})[:3] == (1, 0, 0)


def test_a_side_in_capitals_with_spaces_around_loads_as_that_side(seeded):
    load_staged(seeded, "ticks", TICK | {"side": " SELL "})
    assert seeded.execute("select side::text from market.ticks").fetchall() == [("sell",)]


def test_a_trade_of_quantity_zero_is_a_rejected_row_not_a_failed_batch(seeded):
    # the table's check (quantity > 0) would otherwise fail the whole batch with 23514
    assert load_staged(seeded, "ticks", TICK | {"quantity": "0"}, TICK | {"exchange_trade_id": "t2"}) == (
        1,
        0,
        1,
        [{"line": 1, "reason": "quantity must be positive: 0"}],
    )


def test_of_two_trades_of_one_key_in_a_batch_the_first_in_the_file_is_stored(seeded):
    loaded = load_staged(seeded, "ticks", TICK | {"price": "100"}, TICK | {"price": "200"})
    prices = seeded.execute("select price from market.ticks").fetchall()
    assert (loaded[:3], prices) == ((1, 1, 0), [(Decimal("100"),)])


def test_a_candle_whose_close_is_below_its_low_is_rejected_though_its_open_is_not(seeded):
    # low 97 is under open 100 but above close 95; the table's check would fail the whole batch
    assert rejects(
        seeded, "candles", CANDLE | {"open": "100", "close": "95", "low": "97", "high": "110"}
    ) == ["high 110 and low 97 do not bound open 100 and close 95"]


def test_a_candle_that_closed_seconds_ago_is_marked_loaded(seeded):
    # the minute before the current one closed at most a minute ago: closed, it is marked loaded
    # (the rollups keep it), however recently it closed
    open_time = seeded.execute("select date_trunc('minute', now()) - interval '1 minute'").fetchone()[0]
    load_staged(seeded, "candles", CANDLE | {"open_time": open_time.isoformat()})
    assert seeded.execute(
        "select loaded from market.candles where open_time = %s", [open_time]
    ).fetchone() == (True,)


# -- latest prices ------------------------------------------------------------------------------------


def latest(conn: psycopg.Connection) -> tuple:
    """(bid, ask, quoted_at, last_price, traded_at) of binance BTCUSDT's market.latest_prices row."""
    return conn.execute(
        "select bid, ask, quoted_at, last_price, traded_at from market.latest_prices where instrument_id = %s",
        [instrument_id(conn)],
    ).fetchone()


def test_a_quote_ten_minutes_ahead_of_the_clock_is_not_taken_as_the_latest(seeded):
    # a minute covers synchronized clocks' skew; ten minutes ahead is a wrong clock or time zone
    quote(seeded, RECENT_NOON, "100", "101")
    quote(seeded, datetime.now(UTC) + timedelta(minutes=10), "200", "201")
    assert latest(seeded)[:3] == (Decimal("100"), Decimal("101"), RECENT_NOON)


def test_of_trades_of_one_instrument_at_two_times_in_one_batch_the_newer_is_the_last_price(seeded):
    seeded.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " values (%(i)s, %(early)s, 'b', 100, 1), (%(i)s, %(late)s, 'a', 105, 1)",
        {"i": instrument_id(seeded), "early": RECENT_NOON, "late": RECENT_NOON + timedelta(seconds=1)},
    )
    assert latest(seeded)[3:] == (Decimal("105"), RECENT_NOON + timedelta(seconds=1))


# -- audit --------------------------------------------------------------------------------------------


def test_a_truncate_logs_each_rows_image_without_the_columns_left_out(seeded):
    seeded.execute("""
        create table public.vault (id int primary key, label text, secret text);
        create trigger _900_audit_truncate before truncate on public.vault
            for each statement execute function audit.log_truncate('id', '-secret');
        insert into public.vault values (7, 'a', 's1');
        truncate public.vault""")
    assert seeded.execute(
        "select operation, row_key, old_row from audit.log where table_name = 'public.vault'"
    ).fetchall() == [("DELETE", '{"id": 7}', {"id": 7, "label": "a"})]


def test_audit_history_of_a_key_with_a_null_value_is_an_empty_story_not_a_refusal(seeded):
    # null matches any json type of a logged key (the seed's strategies are logged with numbers):
    # no row has that key, so there is nothing to tell
    assert (
        seeded.execute(
            "select * from audit.history('trading.strategies', '{\"strategy_id\": null}')"
        ).fetchall()
        == []
    )


def test_recording_the_baseline_again_leaves_tables_already_in_the_log_alone(seeded):
    # finish_migrate calls it on every migrate: a second BASELINE per row would read as a change
    before = seeded.execute("select count(*) from audit.log where operation = 'BASELINE'").fetchone()[0]
    seeded.execute("call audit.record_baseline()")
    after = seeded.execute("select count(*) from audit.log where operation = 'BASELINE'").fetchone()[0]
    assert (before > 0, after) == (True, before)
