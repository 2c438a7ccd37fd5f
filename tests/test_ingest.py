"""spreadedge ingest: CSV and JSON Lines (plain, gzip, zstd) through COPY and SQL validation."""

import gzip
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
import zstandard
from psycopg import sql

from market_helpers import DAY, QUOTES_HEADER, RECENT_NOON, TICKS_HEADER, invoke, summary_of
from spreadedge import ingest

GOOD_QUOTE = f"binance,BTCUSDT,{DAY}T12:00:00Z,100,1,101,2\n"


def tick_line(trade_id, price="100", at=f"{DAY}T12:00:00Z", symbol="BTCUSDT"):
    return (
        json.dumps(
            {
                "exchange": "binance",
                "symbol": symbol,
                "traded_at": at,
                "exchange_trade_id": trade_id,
                "price": price,
                "quantity": "0.5",
                "side": "buy",
            }
        )
        + "\n"
    )


def test_valid_quotes_load_and_bad_ones_go_to_the_rejects_file_with_line_and_reason(
    seeded_url, seeded, tmp_path
):
    path = tmp_path / "quotes.csv"
    path.write_text(
        QUOTES_HEADER
        + GOOD_QUOTE
        + f"binance,NOPE,{DAY}T12:00:00Z,100,1,101,2\n"
        + f"binance,BTCUSDT,{DAY}T12:00:01Z,-1,1,101,2\n"
        + f"binance,BTCUSDT,{DAY}T12:00:02Z,102,1,101,2\n"
        + "binance,BTCUSDT,yesterday noon,100,1,101,2\n"
        + f"binance,BTCUSDT,{DAY}T12:00:03Z,100,-2,101,2\n"
        + f"binance,BTCUSDT,{DAY}T12:00:04.25+01:00,100.5,1,101,2\n"
    )
    result = invoke(seeded_url, "ingest", "quotes", str(path))
    assert result.exit_code == 0, result.output
    assert summary_of(result.output) == (2, 0, 5)
    assert (tmp_path / "quotes.csv.rejects.csv").read_text().splitlines() == [
        "line,reason",
        "3,unknown instrument NOPE on exchange binance",
        "4,bid must be positive: -1",
        "5,crossed book: bid 102 above ask 101",
        "6,quoted_at is not a time: yesterday noon",
        "7,bid_size must not be negative: -2",
    ]
    assert seeded.execute("select quoted_at, bid from market.quotes order by quoted_at").fetchall() == [
        (RECENT_NOON.replace(hour=11, second=4, microsecond=250000), Decimal("100.5")),
        (RECENT_NOON, Decimal("100")),
    ]


def test_a_tick_file_loaded_twice_stores_each_trade_once(seeded_url, seeded, tmp_path):
    path = tmp_path / "ticks.jsonl"
    path.write_text(tick_line("t1") + tick_line("t2") + tick_line("t1"))
    first = invoke(seeded_url, "ingest", "ticks", str(path))
    second = invoke(seeded_url, "ingest", "ticks", str(path))
    assert (summary_of(first.output), summary_of(second.output)) == ((2, 1, 0), (0, 3, 0))
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 2


def test_strict_loads_nothing_when_any_row_is_bad(seeded_url, seeded, tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(QUOTES_HEADER + GOOD_QUOTE)
    bad.write_text(QUOTES_HEADER + f"binance,BTCUSDT,{DAY}T12:00:09Z,100,1,99,2\n")
    result = invoke(seeded_url, "ingest", "quotes", "--strict", "--batch-rows", "1", str(good), str(bad))
    assert result.exit_code == 1
    assert summary_of(result.output) == (0, 0, 1)
    assert "--strict: nothing was loaded because rows were rejected" in result.output
    assert seeded.execute("select count(*) from market.quotes").fetchone()[0] == 0


def test_strict_loads_everything_when_every_row_is_good(seeded_url, seeded, tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text(QUOTES_HEADER + GOOD_QUOTE + GOOD_QUOTE.replace("12:00:00", "12:00:01"))
    result = invoke(seeded_url, "ingest", "quotes", "--strict", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (2, 0, 0))


def test_line_numbers_stay_right_across_batches_and_unreadable_lines(seeded_url, tmp_path):
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        tick_line("a")
        + "{not json\n"
        + tick_line("b", price="0")
        + "\n"
        + tick_line("c")
        + "[1]\n"
        + tick_line("d", symbol="ZZZ")
    )
    result = invoke(seeded_url, "ingest", "ticks", "--batch-rows", "2", str(path))
    assert summary_of(result.output) == (2, 0, 4)
    assert (tmp_path / "ticks.jsonl.rejects.csv").read_text().splitlines() == [
        "line,reason",
        "2,not valid JSON: Expecting property name enclosed in double quotes",
        "3,price must be positive: 0",
        "6,not a JSON object",
        "7,unknown instrument ZZZ on exchange binance",
    ]


def test_gzip_and_zstd_files_are_read(seeded_url, seeded, tmp_path):
    gz, zst = tmp_path / "a.jsonl.gz", tmp_path / "b.csv.zst"
    gz.write_bytes(gzip.compress(tick_line("g1").encode()))
    zst.write_bytes(
        zstandard.ZstdCompressor().compress(
            b"exchange,symbol,traded_at,exchange_trade_id,price,quantity,side\n"
            b"binance,BTCUSDT," + DAY.encode() + b"T12:00:01Z,z1,101.5,2,sell\n"
        )
    )
    result = invoke(seeded_url, "ingest", "ticks", str(gz), str(zst))
    assert summary_of(result.output) == (2, 0, 0)
    assert seeded.execute(
        "select exchange_trade_id, price, side::text from market.ticks order by 1"
    ).fetchall() == [
        ("g1", Decimal("100"), "buy"),
        ("z1", Decimal("101.5"), "sell"),
    ]


def test_candles_off_their_interval_or_with_a_bad_range_are_rejected(seeded_url, seeded, tmp_path):
    path = tmp_path / "candles.csv"
    header = "exchange,symbol,interval,open_time,open,high,low,close,volume,quote_volume,trade_count\n"
    path.write_text(
        header
        + f"binance,BTCUSDT,5m,{DAY}T12:05:00Z,100,102,99,101,3,300,7\n"
        + f"binance,BTCUSDT,5m,{DAY}T12:06:00Z,100,102,99,101,3,300,7\n"
        + f"binance,BTCUSDT,1h,{DAY}T12:00:00Z,100,100.5,99,101,3,300,7\n"
        + f"binance,BTCUSDT,2m,{DAY}T12:00:00Z,100,102,99,101,3,300,7\n"
        + f"binance,BTCUSDT,1m,{DAY}T12:00:00Z,100,102,99,101,3,300,1.5\n"
    )
    result = invoke(seeded_url, "ingest", "candles", str(path))
    assert summary_of(result.output) == (1, 0, 4)
    assert (tmp_path / "candles.csv.rejects.csv").read_text().splitlines() == [
        "line,reason",
        f"3,open_time {DAY}T12:06:00Z is not the start of a 5m candle",
        "4,high 100.5 and low 99 do not bound open 100 and close 101",
        '5,"interval is not one of 1m, 5m, 15m, 1h, 4h, 1d: 2m"',
        "6,trade_count is not a whole number: 1.5",
    ]


def test_a_file_name_without_a_known_format_is_refused_before_loading(seeded_url, tmp_path):
    path = tmp_path / "quotes.txt"
    path.write_text(QUOTES_HEADER + GOOD_QUOTE)
    result = invoke(seeded_url, "ingest", "quotes", str(path))
    assert result.exit_code == 1
    assert "cannot tell the format from the name" in result.output


def test_a_batch_not_committed_leaves_nothing_behind(seeded_url, seeded):
    conn = psycopg.connect(seeded_url)
    loader = ingest.Loader(conn, "ticks", strict=False)
    record = json.loads(tick_line("k1"))
    assert loader.load_batch([(1, record)]) == (1, 0, [])
    conn.close()  # killed before the commit
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0


def test_strict_load_of_a_staged_batch_inserts_nothing_and_returns_the_rejects(seeded):
    with seeded.transaction():
        seeded.execute("select market.stage_rows('ticks')")
        seeded.execute(
            "insert into pg_temp.staged_ticks (line_no, exchange, symbol, traded_at, exchange_trade_id, price, quantity)"
            f" values (1, 'binance', 'BTCUSDT', '{DAY}T12:00:00Z', 'a', '1', '1'),"
            f"        (2, 'binance', 'BTCUSDT', '{DAY}T12:00:00Z', 'b', '1', 'x')"
        )
        result = seeded.execute("select * from market.load_staged_ticks(p_strict => true)").fetchone()
    assert result == (0, 0, 1, [{"line": 2, "reason": "quantity is not a number: x"}])
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0


def test_staging_an_unknown_kind_is_refused(db):
    with pytest.raises(psycopg.DataError) as caught:
        db.execute("select market.stage_rows('trades')")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        'kind "trades" is not quotes, ticks or candles',
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T12:00:00Z", datetime(2026, 11, 20, 12, tzinfo=UTC)),
        ("2026-11-20 12:00:00", datetime(2026, 11, 20, 12, tzinfo=UTC)),
        # a fraction finer than microseconds is cut, not rounded: .9999996 was stored as the next
        # second, in a minute (a candle; at 23:59:59, a day and its partition) it was not in
        ("2026-11-20T12:00:00.123456789-05:30", datetime(2026, 11, 20, 17, 30, 0, 123456, tzinfo=UTC)),
        ("2026-11-20T12:00:59.9999996Z", datetime(2026, 11, 20, 12, 0, 59, 999999, tzinfo=UTC)),
        ("2026-11-30T23:59:59.9999999Z", datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2024-02-29T00:00:00+0100", datetime(2024, 2, 28, 23, tzinfo=UTC)),
        # RFC 3339 allows t and z in lower case (they were rejected as unparsable)
        ("2026-11-20t12:00:00z", datetime(2026, 11, 20, 12, tzinfo=UTC)),
        ("2026-11-20t12:00:00.5+01:00", datetime(2026, 11, 20, 11, 0, 0, 500000, tzinfo=UTC)),
        ("1763640000123", datetime(2025, 11, 20, 12, 0, 0, 123000, tzinfo=UTC)),
        (" 1763640000123 ", datetime(2025, 11, 20, 12, 0, 0, 123000, tzinfo=UTC)),
        ("176364000012x", None),
        ("-763640000123", None),
        ("2025-02-29T00:00:00Z", None),
        ("2026-13-01T00:00:00Z", None),
        ("2026-11-20T24:00:00Z", None),
        ("2026-11-20T12:60:00Z", None),
        ("2026-11-20T12:00:00+25:00", None),
        ("2026-11-20", None),
        ("1763640000", None),
        ("", None),
    ],
)
def test_parse_time_reads_iso_8601_and_epoch_milliseconds_only(db, text, expected):
    assert db.execute("select internal.parse_time(%s)", [text]).fetchone()[0] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", Decimal("1")),
        (" -0.5 ", Decimal("-0.5")),
        ("1e3", Decimal("1000")),
        (".25", Decimal("0.25")),
        ("NaN", None),
        ("Infinity", None),
        ("1,5", None),
        ("1e99999", None),
        ("", None),
    ],
)
def test_parse_decimal_reads_plain_numbers_only(db, text, expected):
    assert db.execute("select internal.parse_decimal(%s)", [text]).fetchone()[0] == expected


@pytest.mark.parametrize(
    "call",
    [
        "internal.number_problem('price', v.t, v.n, true)",
        "internal.time_problem('traded_at', v.t, v.at)",
        "internal.parse_decimal(v.t)",
        "internal.parse_time(v.t)",
    ],
)
def test_the_loaders_row_checks_are_inlined_into_their_query(db, call):
    # why it matters: a SQL function PostgreSQL does not inline is a function call per loaded value
    # (an immutable one that calls a stable function such as format() is never inlined)
    query = sql.SQL(
        "explain (verbose, costs off) select {} from (values ('1', 1.0, now()), ('x', null, null)) as v (t, n, at)"
    ).format(sql.SQL(call))
    plan = db.execute(query).fetchall()
    name = call.split("(")[0]
    assert not any(name + "(" in line for (line,) in plan), plan


# -- a byte-order mark, a header without a required column ------------------------------------

BOM = "\ufeff"


def test_a_byte_order_mark_at_the_start_of_a_csv_file_is_ignored(seeded_url, seeded, tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text(BOM + QUOTES_HEADER.replace("\n", "\r\n") + GOOD_QUOTE.replace("\n", "\r\n"))
    result = invoke(seeded_url, "ingest", "quotes", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (1, 0, 0))
    assert not (tmp_path / "quotes.csv.rejects.csv").exists()
    assert seeded.execute("select quoted_at, bid from market.quotes").fetchall() == [
        (RECENT_NOON, Decimal("100"))
    ]


def test_a_byte_order_mark_at_the_start_of_a_jsonl_file_is_ignored(seeded_url, seeded, tmp_path):
    path = tmp_path / "ticks.jsonl"
    path.write_text(BOM + tick_line("b1") + tick_line("b2"))
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (2, 0, 0))
    assert not (tmp_path / "ticks.jsonl.rejects.csv").exists()
    assert seeded.execute("select exchange_trade_id from market.ticks order by 1").fetchall() == [
        ("b1",),
        ("b2",),
    ]


def test_a_byte_order_mark_at_the_start_of_a_compressed_file_is_ignored(seeded_url, seeded, tmp_path):
    gz, zst = tmp_path / "a.jsonl.gz", tmp_path / "b.csv.zst"
    gz.write_bytes(gzip.compress((BOM + tick_line("g1")).encode()))
    zst.write_bytes(
        zstandard.ZstdCompressor().compress(
            (BOM + TICKS_HEADER + f"binance,BTCUSDT,{DAY}T12:00:01Z,z1,101,2,sell\n").encode()
        )
    )
    result = invoke(seeded_url, "ingest", "ticks", str(gz), str(zst))
    assert (result.exit_code, summary_of(result.output)) == (0, (2, 0, 0))
    assert seeded.execute("select exchange_trade_id from market.ticks order by 1").fetchall() == [
        ("g1",),
        ("z1",),
    ]


def test_a_csv_header_without_a_required_column_refuses_the_run_before_anything_loads(
    seeded_url, seeded, tmp_path
):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(TICKS_HEADER + f"binance,BTCUSDT,{DAY}T12:00:00Z,t1,100,1,buy\n")
    bad.write_text(
        "exchange,symbol,traded_at,exchange_trade_id,qty,px\n" + f"binance,BTCUSDT,{DAY}T12:00:01Z,t2,1,100\n"
    )
    result = invoke(seeded_url, "ingest", "ticks", str(good), str(bad))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {bad}: the header row has no price, quantity columns; ticks need "
        "exchange, symbol, traded_at, exchange_trade_id, price, quantity (nothing was loaded)"
    )
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0
    assert list(tmp_path.glob("*.rejects.csv")) == []


def test_a_csv_header_that_is_not_valid_csv_refuses_the_run_before_anything_loads(
    seeded_url, seeded, tmp_path
):
    path = tmp_path / "ticks.csv"
    path.write_text(
        TICKS_HEADER.replace("side", "x" * 140_000) + f"binance,BTCUSDT,{DAY}T12:00:00Z,t1,100,1,buy\n"
    )
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {path}: the header row is not valid CSV: field larger than field limit (131072) (nothing was loaded)"
    )
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0


def test_a_csv_header_may_leave_out_side_and_received_at(seeded_url, seeded, tmp_path):
    # a guard for the header check: the loaders accept these two empty
    path = tmp_path / "ticks.csv"
    path.write_text(
        "exchange,symbol,traded_at,exchange_trade_id,price,quantity\n"
        + f"binance,BTCUSDT,{DAY}T12:00:00Z,t1,100,1\n"
    )
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (1, 0, 0))
    assert seeded.execute("select side from market.ticks").fetchall() == [(None,)]


# -- numbers too long for numeric ---------------------------------------------------------------

LONG_FRACTION = "0." + "0" * 16400 + "1"  # more fractional digits than numeric holds (16,383)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9" * 100, Decimal("9" * 100)),
        ("0." + "0" * 97 + "1", Decimal("1e-98")),
        ("9" * 101, None),
        (LONG_FRACTION, None),
        ("1" * 140_000, None),
    ],
)
def test_parse_decimal_reads_numbers_of_at_most_100_characters(db, text, expected):
    assert db.execute("select internal.parse_decimal(%s)", [text]).fetchone()[0] == expected


def test_a_csv_number_too_long_for_numeric_is_a_rejected_row_and_the_rest_loads(seeded_url, seeded, tmp_path):
    path = tmp_path / "ticks.csv"
    path.write_text(
        TICKS_HEADER
        + f"binance,BTCUSDT,{DAY}T12:00:00Z,t1,100,1,buy\n"
        + f"binance,BTCUSDT,{DAY}T12:00:01Z,t2,{LONG_FRACTION},1,buy\n"
        + f"binance,BTCUSDT,{DAY}T12:00:02Z,t3,100,1,buy\n"
    )
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (2, 0, 1))
    assert (tmp_path / "ticks.csv.rejects.csv").read_text().splitlines() == [
        "line,reason",
        "3,price is too long: 0.000000000000000000… (16403 characters; a number has at most 100)",
    ]
    assert seeded.execute("select exchange_trade_id from market.ticks order by 1").fetchall() == [
        ("t1",),
        ("t3",),
    ]


def test_a_json_integer_too_long_for_numeric_is_a_rejected_row_and_the_rest_loads(
    seeded_url, seeded, tmp_path
):
    path = tmp_path / "ticks.jsonl"
    # written by hand: json.dumps will not write an int of more than 4,300 digits
    long_line = tick_line("j2").replace('"quantity": "0.5"', '"quantity": ' + "1" * 140_000)
    path.write_text(tick_line("j1") + long_line + tick_line("j3"))
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (2, 0, 1))
    assert (tmp_path / "ticks.jsonl.rejects.csv").read_text().splitlines() == [
        "line,reason",
        "2,quantity is too long: 11111111111111111111… (140000 characters; a number has at most 100)",
    ]
    assert seeded.execute("select exchange_trade_id from market.ticks order by 1").fetchall() == [
        ("j1",),
        ("j3",),
    ]


# -- rows with no partition for their time ------------------------------------------------------


def partitions_text(conn, table):
    """The partitions' times of ``table`` as the reject reasons write them, from pg_partman."""
    oldest, newest = conn.execute(
        "select oldest_start, newest_end from ops.partition_status() where parent_table = %s", [table]
    ).fetchone()
    return f"{oldest.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} to {newest.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


# plausible (after 2009, not ahead) but older than the daily partitions kept behind (7 days)
OLD_DAY = f"{RECENT_NOON - timedelta(days=60):%Y-%m-%d}"


def test_a_tick_with_no_partition_for_its_time_is_rejected_and_the_rest_loads(seeded_url, seeded, tmp_path):
    path = tmp_path / "ticks.csv"
    path.write_text(
        TICKS_HEADER
        + f"binance,BTCUSDT,{DAY}T12:00:00Z,t1,100,1,buy\n"
        + f"binance,BTCUSDT,{DAY}T12:00:01Z,t2,100,1,buy\n"
        + f"binance,BTCUSDT,{OLD_DAY}T12:00:02Z,t3,100,1,buy\n"
        + f"binance,BTCUSDT,{DAY}T12:00:03Z,t4,100,1,buy\n"
    )
    result = invoke(seeded_url, "ingest", "ticks", "--batch-rows", "2", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (3, 0, 1))
    assert (tmp_path / "ticks.csv.rejects.csv").read_text().splitlines() == [
        "line,reason",
        f"4,traded_at {OLD_DAY}T12:00:02Z is outside the partitions of market.ticks "
        f"({partitions_text(seeded, 'market.ticks')})",
    ]
    assert seeded.execute("select exchange_trade_id from market.ticks order by 1").fetchall() == [
        ("t1",),
        ("t2",),
        ("t4",),
    ]


def test_strict_loads_nothing_when_a_quote_has_no_partition_for_its_time(seeded_url, seeded, tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text(QUOTES_HEADER + GOOD_QUOTE + f"binance,BTCUSDT,{OLD_DAY}T12:00:00Z,100,1,101,2\n")
    result = invoke(seeded_url, "ingest", "quotes", "--strict", str(path))
    assert (result.exit_code, summary_of(result.output)) == (1, (0, 0, 1))
    assert (tmp_path / "quotes.csv.rejects.csv").read_text().splitlines() == [
        "line,reason",
        f"3,quoted_at {OLD_DAY}T12:00:00Z is outside the partitions of market.quotes "
        f"({partitions_text(seeded, 'market.quotes')})",
    ]
    assert seeded.execute("select count(*) from market.quotes").fetchone()[0] == 0


def test_a_candle_with_no_partition_for_its_open_time_is_rejected(seeded_url, seeded, tmp_path):
    # monthly partitions, 3 months kept behind: a year back has none
    old_day = f"{RECENT_NOON - timedelta(days=365):%Y-%m-%d}"
    path = tmp_path / "candles.csv"
    path.write_text(
        "exchange,symbol,interval,open_time,open,high,low,close,volume,quote_volume,trade_count\n"
        + f"binance,BTCUSDT,1d,{old_day}T00:00:00Z,100,102,99,101,3,300,7\n"
        + f"binance,BTCUSDT,1d,{DAY}T00:00:00Z,100,102,99,101,3,300,7\n"
    )
    result = invoke(seeded_url, "ingest", "candles", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (1, 0, 1))
    assert (tmp_path / "candles.csv.rejects.csv").read_text().splitlines() == [
        "line,reason",
        f"2,open_time {old_day}T00:00:00Z is outside the partitions of market.candles "
        f"({partitions_text(seeded, 'market.candles')})",
    ]


def test_a_tick_on_the_day_of_a_dropped_partition_is_rejected_naming_the_gap(seeded_url, seeded, tmp_path):
    gap = RECENT_NOON.replace(hour=0) - timedelta(days=2)
    partition = seeded.execute(
        "select c.oid::regclass::text from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'market.ticks'::regclass"
        " and pg_get_expr(c.relpartbound, c.oid) like %s",
        [f"FOR VALUES FROM ('{gap:%Y-%m-%d}%"],
    ).fetchone()[0]
    seeded.execute(sql.SQL("drop table {}").format(sql.Identifier(*partition.split("."))))
    path = tmp_path / "ticks.jsonl"
    path.write_text(tick_line("t1", at=f"{gap:%Y-%m-%d}T06:00:00Z") + tick_line("t2"))
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (1, 0, 1))
    oldest, newest = partitions_text(seeded, "market.ticks").split(" to ")
    after = gap + timedelta(days=1)
    assert (tmp_path / "ticks.jsonl.rejects.csv").read_text().splitlines() == [
        "line,reason",
        f'1,"traded_at {gap:%Y-%m-%d}T06:00:00Z is outside the partitions of market.ticks ({oldest} to '
        f'{gap:%Y-%m-%dT%H:%M:%SZ}, {after:%Y-%m-%dT%H:%M:%SZ} to {newest})"',
    ]


# -- line numbers of records that span lines ----------------------------------------------------


def test_a_rejected_csv_record_spanning_lines_is_reported_at_its_first_line(seeded_url, tmp_path):
    path = tmp_path / "ticks.csv"
    path.write_text(
        TICKS_HEADER.replace("\n", ",note\n")
        + f'binance,BTCUSDT,{DAY}T12:00:10Z,m1,-5,1,buy,"line a\nline b\nline c"\n'
        + "\n"
        + f"binance,BTCUSDT,{DAY}T12:00:11Z,m2,-6,1,buy,x\n"
    )
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert summary_of(result.output) == (0, 0, 2)
    assert (tmp_path / "ticks.csv.rejects.csv").read_text().splitlines() == [
        "line,reason",
        "2,price must be positive: -5",
        "6,price must be positive: -6",
    ]


# -- compressed files cut short or not what their names say -------------------------------------


def test_a_truncated_zstd_file_loads_the_records_before_the_cut_and_exits_with_an_error(
    seeded_url, seeded, tmp_path
):
    path = tmp_path / "ticks.csv.zst"
    compressor = zstandard.ZstdCompressor()
    whole = compressor.compress((TICKS_HEADER + f"binance,BTCUSDT,{DAY}T12:00:00Z,z1,100,1,buy\n").encode())
    cut = compressor.compress(f"binance,BTCUSDT,{DAY}T12:00:01Z,z2,100,1,buy\n".encode())
    path.write_bytes(whole + cut[: len(cut) // 2])  # a second frame cut in half: a failed download
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {path}: cannot read past the record on line 2: the compressed data ends early (the file is"
        " truncated) (the records before it were loaded, nothing after it, nor any later file; this run"
        " loaded 1 rows, skipped 0 duplicates and rejected 0 rows)"
    )
    assert seeded.execute("select exchange_trade_id from market.ticks").fetchall() == [("z1",)]


def test_a_zstd_file_of_several_frames_loads_them_all(seeded_url, seeded, tmp_path):
    path = tmp_path / "ticks.jsonl.zst"
    compressor = zstandard.ZstdCompressor()
    path.write_bytes(
        compressor.compress(tick_line("f1").encode()) + compressor.compress(tick_line("f2").encode())
    )
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (2, 0, 0))


def test_strict_loads_nothing_from_a_truncated_gzip_file(seeded_url, seeded, tmp_path):
    path = tmp_path / "ticks.jsonl.gz"
    # a whole gzip member, then only the header of a second: the data ends early
    path.write_bytes(gzip.compress(tick_line("g1").encode()) + gzip.compress(tick_line("g2").encode())[:10])
    result = invoke(seeded_url, "ingest", "ticks", "--strict", str(path))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {path}: cannot read past the record on line 1: the compressed data ends early (the file is"
        " truncated) (--strict: nothing was loaded)"
    )
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0


def test_a_file_named_gz_that_is_not_gzip_is_refused_before_anything_loads(seeded_url, seeded, tmp_path):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.csv.gz"
    good.write_text(tick_line("p1"))
    bad.write_text(TICKS_HEADER + f"binance,BTCUSDT,{DAY}T12:00:00Z,p2,100,1,buy\n")
    result = invoke(seeded_url, "ingest", "ticks", str(good), str(bad))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {bad}: cannot read its first record: the data is not valid gzip (Not a gzipped file (b'ex'))"
    )
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0


def test_a_compressed_file_whose_name_does_not_say_so_is_refused(seeded_url, seeded, tmp_path):
    path = tmp_path / "ticks.jsonl"
    path.write_bytes(zstandard.ZstdCompressor().compress(tick_line("c1").encode()))
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {path}: the file holds zstd (.zst) compressed data, but its name does not say so"
    )
    assert not (tmp_path / "ticks.jsonl.rejects.csv").exists()


def test_a_carriage_return_inside_a_json_line_neither_splits_it_nor_moves_later_line_numbers(
    seeded_url, seeded, tmp_path
):
    path = tmp_path / "ticks.jsonl"
    # JSON allows \r as whitespace between members; JSON Lines end at \n (\r\n included)
    path.write_bytes(
        (
            tick_line("r1").replace(', "symbol"', ',\r"symbol"')
            + tick_line("r2", price="-1").replace("\n", "\r\n")
        ).encode()
        + tick_line("r3", price="-2").encode()
    )
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (1, 0, 2))
    assert (tmp_path / "ticks.jsonl.rejects.csv").read_text().splitlines() == [
        "line,reason",
        "2,price must be positive: -1",
        "3,price must be positive: -2",
    ]
    assert seeded.execute("select exchange_trade_id from market.ticks").fetchall() == [("r1",)]


def test_a_row_without_an_exchange_or_symbol_is_rejected_as_missing_it_and_spaces_around_them_are_ignored(
    seeded_url, seeded, tmp_path
):
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        tick_line("e1").replace('"exchange": "binance", ', "")
        + tick_line("e2").replace('"symbol": "BTCUSDT"', '"symbol": " "')
        + tick_line("e3").replace('"exchange": "binance"', '"exchange": " binance "')
    )
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (1, 0, 2))
    assert (tmp_path / "ticks.jsonl.rejects.csv").read_text().splitlines() == [
        "line,reason",
        "1,exchange is missing",
        "2,symbol is missing",
    ]
    assert seeded.execute("select exchange_trade_id from market.ticks").fetchall() == [("e3",)]


def test_of_rows_of_one_key_in_a_batch_the_first_in_the_file_is_stored(seeded_url, seeded, tmp_path):
    # 300 times, each quoted twice with another bid, in no time order (a file in time order was
    # stored first-wins by luck): which of the two was stored was arbitrary
    times = [RECENT_NOON + timedelta(seconds=(s * 7919) % 300) for s in range(300)]
    first = [f"binance,BTCUSDT,{t:%Y-%m-%dT%H:%M:%SZ},100,1,101,2\n" for t in times]
    second = [f"binance,BTCUSDT,{t:%Y-%m-%dT%H:%M:%SZ},99,1,101,2\n" for t in times]
    path = tmp_path / "quotes.csv"
    path.write_text(QUOTES_HEADER + "".join(a + b for a, b in zip(first, second, strict=True)))
    result = invoke(seeded_url, "ingest", "quotes", str(path))
    assert summary_of(result.output) == (300, 300, 0)
    assert seeded.execute("select bid, count(*) from market.quotes group by bid").fetchall() == [
        (Decimal("100"), 300)
    ]
