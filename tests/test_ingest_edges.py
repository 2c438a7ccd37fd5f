"""spreadedge ingest at its edges: JSON values that are not strings or numbers, unknown exchanges,
trade ids too long for the index, CSV headers with spaces or a name twice, and empty compressed
files."""

import gzip
import hashlib
import json
from decimal import Decimal

import pytest

from market_helpers import DAY, TICKS_HEADER, load, rejects_of, tick_line
from spreadedge import ingest


def test_a_json_array_object_boolean_or_nan_in_a_staged_field_is_rejected_not_stored_as_its_python_text(
    seeded_url, seeded, tmp_path
):
    # their str() was staged: trade ids "['a']", "{'b': '1'}", "true" and "nan" were stored
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        tick_line(["a"])
        + tick_line({"b": 1})
        + tick_line(True)
        + tick_line("n1").replace('"n1"', "NaN")
        + tick_line("ok", meta={"ignored": [1, 2]})  # a field that is not staged holds anything
    )
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.duplicates, summary.rejected) == (1, 0, 4)
    assert rejects_of(path) == [
        "line,reason",
        '1,"exchange_trade_id is not a string or number: [""a""]"',
        '2,"exchange_trade_id is not a string or number: {""b"": ""1""}"',
        "3,exchange_trade_id is not a string or number: true",
        "4,exchange_trade_id is not a string or number: NaN",
    ]
    assert seeded.execute("select exchange_trade_id from market.ticks").fetchall() == [("ok",)]


def test_a_row_of_an_unknown_exchange_is_rejected_as_an_unknown_exchange_not_instrument(
    seeded_url, seeded, tmp_path
):
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        tick_line("u1", exchange="Binance")
        + tick_line("u2", symbol="NOPE")
        + tick_line("u3", exchange="kraken")
    )
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.rejected) == (0, 3)
    assert rejects_of(path) == [
        "line,reason",
        "1,unknown exchange Binance",
        "2,unknown instrument NOPE on exchange binance",
        "3,unknown instrument BTCUSDT on exchange kraken (listed on binance)",
    ]


@pytest.mark.parametrize("kind", ["quotes", "candles"])
def test_a_quote_or_candle_of_an_unknown_exchange_is_rejected_as_an_unknown_exchange(
    seeded_url, seeded, tmp_path, kind
):
    path = tmp_path / f"{kind}.jsonl"
    path.write_text(json.dumps({"exchange": "binanse", "symbol": "BTCUSDT"}) + "\n")
    summary = load(seeded_url, kind, path)
    assert (summary.loaded, summary.rejected) == (0, 1)
    assert rejects_of(path) == ["line,reason", "1,unknown exchange binanse"]


def test_a_csv_header_with_spaces_around_its_names_loads(seeded_url, seeded, tmp_path):
    # it was refused as having no symbol, traded_at, ... columns
    path = tmp_path / "ticks.csv"
    path.write_text(
        "exchange, symbol, traded_at, exchange_trade_id, price, quantity, side \n"
        + f"binance, BTCUSDT, {DAY}T12:00:00Z, s1, 100.5, 2, sell\n"
    )
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.rejected) == (1, 0)
    assert seeded.execute(
        "select exchange_trade_id, price, quantity, side::text from market.ticks"
    ).fetchall() == [("s1", Decimal("100.5"), Decimal("2"), "sell")]


def test_a_csv_header_naming_a_field_twice_refuses_the_run_before_anything_loads(
    seeded_url, seeded, tmp_path
):
    # the last column of the name was loaded: a price of 105 where the file's first price was 100
    good, twice = tmp_path / "good.csv", tmp_path / "twice.csv"
    good.write_text(TICKS_HEADER + f"binance,BTCUSDT,{DAY}T12:00:00Z,g1,100,1,buy\n")
    twice.write_text(
        TICKS_HEADER.replace("side", "price")  # price, then price again where side was
        + f"binance,BTCUSDT,{DAY}T12:00:01Z,t1,100,1,105\n"
    )
    with pytest.raises(ingest.IngestError) as refused:
        load(seeded_url, "ticks", good, twice)
    assert str(refused.value) == f"{twice}: the header row names price more than once (nothing was loaded)"
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0


@pytest.mark.parametrize("name", ["ticks.jsonl.gz", "ticks.csv.zst"])
def test_an_empty_compressed_file_is_refused_as_truncated_before_anything_loads(
    seeded_url, seeded, tmp_path, name
):
    # a download that failed before its first byte loaded no rows and the run exited 0
    good, empty = tmp_path / "good.jsonl.gz", tmp_path / name
    good.write_bytes(gzip.compress(tick_line("g1").encode()))
    empty.write_bytes(b"")
    with pytest.raises(ingest.IngestError) as refused:
        load(seeded_url, "ticks", good, empty)
    assert str(refused.value) == (
        f"{empty}: cannot read its first record: the compressed data ends early (the file is truncated)"
    )
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0


def test_a_trade_id_too_long_for_the_index_is_a_rejected_row_and_the_rest_of_the_batch_loads(
    seeded_url, seeded, tmp_path
):
    # a btree entry holds about 2.7 kB: the insert failed with 54000 and took the whole batch
    long_id = "".join(
        hashlib.sha256(str(n).encode()).hexdigest() for n in range(100)
    )  # 6,400, incompressible
    path = tmp_path / "ticks.jsonl"
    path.write_text(tick_line("l1") + tick_line(long_id) + tick_line("l3"))
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.rejected) == (2, 1)
    assert rejects_of(path) == [
        "line,reason",
        f"2,exchange_trade_id is too long: {long_id[:20]}… (6400 characters; a trade id has at most 128)",
    ]
    assert seeded.execute("select exchange_trade_id from market.ticks order by 1").fetchall() == [
        ("l1",),
        ("l3",),
    ]
