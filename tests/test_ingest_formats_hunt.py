"""spreadedge ingest of messy real-world exports: a file given twice, CSV files joined together (the
header row again), JSON Lines joined together (a byte-order mark on a later line) and a JSON object
naming a field twice."""

from decimal import Decimal

import pytest

from market_helpers import (
    DAY,
    QUOTES_HEADER,
    RECENT_NOON,
    TICKS_HEADER,
    load,
    rejects_of,
    tick_line,
)
from spreadedge import ingest


def stored_ticks(conn):
    return conn.execute(
        "select exchange_trade_id, traded_at, price, quantity from market.ticks order by exchange_trade_id"
    ).fetchall()


def test_the_same_file_given_twice_is_refused_before_anything_loads(seeded_url, seeded, tmp_path):
    # it loaded twice: its rows counted again as duplicates, its rejects twice in the summary and
    # once in its rejects file, which was printed twice
    path = tmp_path / "ticks.csv"
    path.write_text(TICKS_HEADER + f"binance,BTCUSDT,{DAY}T12:00:00Z,1,100,1,buy\n")
    link = tmp_path / "link.csv"
    link.symlink_to(path)
    for again in (path, link):
        with pytest.raises(ingest.IngestError) as refused:
            load(seeded_url, "ticks", path, again)
        assert str(refused.value) == f"{again}: the same file as {path} is given twice (nothing was loaded)"
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0


def test_a_csv_header_row_repeated_by_files_joined_together_is_not_a_rejected_row(
    seeded_url, seeded, tmp_path
):
    # `cat a.csv b.csv`: the second header row was rejected as "unknown exchange exchange", and a
    # --strict run loaded nothing; a file saved with a byte-order mark repeats that too
    path = tmp_path / "joined.csv"
    path.write_text(
        TICKS_HEADER
        + f"binance,BTCUSDT,{DAY}T12:00:00Z,1,100,1,buy\n"
        + TICKS_HEADER
        + f"binance,BTCUSDT,{DAY}T12:00:01Z,2,100,1,buy\n"
        + "\ufeff"
        + TICKS_HEADER.replace(",", ", ")
        + f"binance,BTCUSDT,{DAY}T12:00:02Z,3,-1,1,buy\n",
        encoding="utf-8",
    )
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.duplicates, summary.rejected) == (2, 0, 1)
    assert rejects_of(path) == ["line,reason", "6,price must be positive: -1"]
    assert [row[0] for row in stored_ticks(seeded)] == ["1", "2"]


def test_records_after_a_header_row_again_in_another_column_order_are_read_by_its_names(
    seeded_url, seeded, tmp_path
):
    # they were read by the first header's names: bid sizes loaded as ask sizes and back
    path = tmp_path / "joined.csv"
    path.write_text(
        QUOTES_HEADER
        + f"binance,BTCUSDT,{DAY}T12:00:00Z,100,1,101,2\n"
        + "symbol,exchange,quoted_at,ask,ask_size,bid,bid_size,note\n"
        + f"BTCUSDT,binance,{DAY}T12:00:01Z,111,7,110,3,x\n"
    )
    summary = load(seeded_url, "quotes", path)
    assert (summary.loaded, summary.rejected) == (2, 0)
    assert seeded.execute(
        "select bid, bid_size, ask, ask_size from market.quotes order by quoted_at"
    ).fetchall() == [
        (Decimal("100"), Decimal("1"), Decimal("101"), Decimal("2")),
        (Decimal("110"), Decimal("3"), Decimal("111"), Decimal("7")),
    ]


def test_a_header_row_again_without_a_required_field_stops_the_run_after_the_records_before_it(
    seeded_url, seeded, tmp_path
):
    # its records were read by the first header's names
    path = tmp_path / "joined.csv"
    path.write_text(
        TICKS_HEADER
        + f"binance,BTCUSDT,{DAY}T12:00:00Z,1,100,1,buy\n"
        + "exchange,symbol,traded_at,exchange_trade_id,qty,price,side\n"
        + f"binance,BTCUSDT,{DAY}T12:00:01Z,2,7,100,buy\n"
    )
    with pytest.raises(ingest.IngestError) as stopped:
        load(seeded_url, "ticks", path)
    assert str(stopped.value) == (
        f"{path}: the header row again on line 3 (files joined together?) has no quantity column (the records"
        " before it were loaded, nothing after it, nor any later file; this run loaded 1 rows, skipped 0"
        " duplicates and rejected 0 rows)"
    )
    assert [row[0] for row in stored_ticks(seeded)] == ["1"]


def test_a_byte_order_mark_at_the_start_of_a_later_json_line_is_ignored(seeded_url, seeded, tmp_path):
    # `cat a.jsonl b.jsonl` of files saved with one: the record was rejected as not valid JSON
    path = tmp_path / "joined.jsonl"
    path.write_text("\ufeff" + tick_line("1") + "\ufeff" + tick_line("2") + "\ufeff{oops\n", encoding="utf-8")
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.rejected) == (2, 1)
    assert rejects_of(path) == [
        "line,reason",
        "3,not valid JSON: Expecting property name enclosed in double quotes",
    ]


def test_a_json_object_naming_a_loaded_field_twice_is_rejected_and_one_naming_another_field_twice_loads(
    seeded_url, seeded, tmp_path
):
    # json keeps the last value: the trade loaded at a price of 2, whichever the file meant
    start = f'{{"exchange": "binance", "traded_at": "{DAY}T12:00:00Z", "quantity": "1", '
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        start
        + '"symbol": "BTCUSDT", "exchange_trade_id": "1", "price": "1", "price": "2"}\n'
        + start
        + '"symbol": "BTCUSDT", "exchange_trade_id": "2", "price": 2, "x": 1, "x": 2, "m": {"y": 1, "y": 2}}\n'
        + start
        + '"symbol": "BTCUSDT", "exchange_trade_id": "3", "price": "1", "symbol": "ETHUSDT"}\n'
    )
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.rejected) == (1, 2)
    assert rejects_of(path) == [
        "line,reason",
        "1,price named more than once",
        "3,symbol named more than once",
    ]
    assert stored_ticks(seeded) == [("2", RECENT_NOON, Decimal("2"), Decimal("1"))]


@pytest.mark.parametrize(
    ("name", "text", "encoding"),
    [
        ("ticks.csv", TICKS_HEADER + f"binance,BTCUSDT,{DAY}T12:00:00Z,1,100,1,buy\n", "utf-16"),
        ("ticks.jsonl", tick_line("1"), "utf-16-le"),
    ],
)
def test_a_utf16_file_is_refused_as_not_utf8_before_anything_loads(
    seeded_url, seeded, tmp_path, name, text, encoding
):
    # a CSV file was refused as having no exchange, symbol, ... columns, though its header names
    # them all; a JSON Lines file had every line rejected as not valid JSON and the run exited 0
    good, utf16 = tmp_path / "good.csv", tmp_path / name
    good.write_text(TICKS_HEADER + f"binance,BTCUSDT,{DAY}T12:00:00Z,g1,100,1,buy\n")
    utf16.write_bytes(text.encode(encoding))
    with pytest.raises(ingest.IngestError) as refused:
        load(seeded_url, "ticks", good, utf16)
    assert str(refused.value) == (
        f"{utf16}: its first line holds NUL characters: it is not UTF-8 text (UTF-16? save it as UTF-8)"
        " (nothing was loaded)"
    )
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0
