"""spreadedge ingest: CSV and JSON Lines (plain, gzip, zstd) through COPY and SQL validation."""

import gzip
import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
import zstandard
from click.testing import CliRunner
from psycopg import sql

from market_helpers import RECENT_NOON
from spreadedge import ingest
from spreadedge.cli import main

QUOTES_HEADER = "exchange,symbol,quoted_at,bid,bid_size,ask,ask_size\n"
# the day of the rows loaded: recent, so that its daily partitions exist
DAY = f"{RECENT_NOON:%Y-%m-%d}"
GOOD_QUOTE = f"binance,BTCUSDT,{DAY}T12:00:00Z,100,1,101,2\n"
SUMMARY = re.compile(
    r"loaded (\d+) rows, skipped (\d+) duplicates, rejected (\d+) rows in [0-9.]+ s \([0-9,]+ rows/s\)"
)


def invoke(url, *args):
    return CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False)


def summary_of(output):
    return tuple(int(n) for n in SUMMARY.search(output).groups())


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
        ("2026-11-20T12:00:00.123456789-05:30", datetime(2026, 11, 20, 17, 30, 0, 123457, tzinfo=UTC)),
        ("2024-02-29T00:00:00+0100", datetime(2024, 2, 28, 23, tzinfo=UTC)),
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
