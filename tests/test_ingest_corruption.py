"""spreadedge ingest, more edges: compressed files corrupt in the middle, and CSV records that
swallow the lines after an unclosed quote."""

import gzip
from pathlib import Path

from market_helpers import DAY, QUOTES_HEADER, invoke, rejects_of, summary_of


def quote_row(second: int, ask: str = "101") -> str:
    return f"binance,BTCUSDT,{DAY}T12:00:{second:02d}Z,100,1,{ask},2\n"


def test_a_gzip_file_corrupt_in_the_middle_is_refused_before_anything_of_the_run_loads(
    seeded_url, seeded, tmp_path: Path
):
    good, corrupt = tmp_path / "good.csv", tmp_path / "corrupt.csv.gz"
    good.write_text(QUOTES_HEADER + quote_row(0))
    # stored (level 0) deflate blocks: one byte changed in transit changes one character of the
    # text, ask 101 -> 901, a valid quote; only the member's CRC at the end tells
    data = bytearray(gzip.compress((QUOTES_HEADER + quote_row(1) + quote_row(2) + quote_row(3)).encode(), 0))
    at = data.index(b"12:00:02Z,100,1,101") + len(b"12:00:02Z,100,1,")
    data[at] = ord("9")
    corrupt.write_bytes(bytes(data))
    result = invoke(seeded_url, "ingest", "quotes", str(good), str(corrupt))
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]
    assert last.startswith(
        f"Error: {corrupt}: the compressed data is corrupt: the data is not valid gzip (CRC check failed "
    ), result.output
    assert last.endswith(") (nothing was loaded)")
    assert seeded.execute("select count(*) from market.quotes").fetchone()[0] == 0


def test_a_quote_left_open_in_a_csv_file_rejects_its_record_naming_the_lines_it_swallowed(
    seeded_url, seeded, tmp_path: Path
):
    path = tmp_path / "quotes.csv"
    rows = [quote_row(second) for second in range(10)]
    rows[3] = rows[3].replace(",100,", ',"100,')  # the quote never closes: lines 5 to 11 are its field
    path.write_text(QUOTES_HEADER + "".join(rows))
    result = invoke(seeded_url, "ingest", "quotes", str(path))
    assert result.exit_code == 0, result.output
    assert rejects_of(path) == [
        "line,reason",
        "5,bid holds line breaks (the record runs from line 5 to line 11: a quote left open?)",
    ]
    assert seeded.execute("select count(*) from market.quotes").fetchone()[0] == 3


def test_a_trade_id_with_the_lines_after_a_quote_left_open_is_rejected_not_stored(
    seeded_url, seeded, tmp_path: Path
):
    path = tmp_path / "ticks.csv"
    path.write_text(
        "exchange,symbol,traded_at,price,quantity,side,exchange_trade_id\n"
        + f'binance,BTCUSDT,{DAY}T12:00:00Z,100,1,buy,"t1\n'
        + f"binance,BTCUSDT,{DAY}T12:00:01Z,100,1,buy,t2\n"
        + f'binance,BTCUSDT,{DAY}T12:00:02Z,100,1,buy,t3"\n'
        + f"binance,BTCUSDT,{DAY}T12:00:03Z,100,1,buy,t4\n"
    )
    result = invoke(seeded_url, "ingest", "ticks", str(path))
    assert result.exit_code == 0, result.output
    assert rejects_of(path) == [
        "line,reason",
        "2,exchange_trade_id holds line breaks (the record runs from line 2 to line 4: a quote left open?)",
    ]
    assert seeded.execute("select exchange_trade_id from market.ticks").fetchall() == [("t4",)]


def test_a_quote_left_open_past_the_field_size_limit_names_the_lines_it_swallowed(
    seeded_url, seeded, tmp_path: Path
):
    path = tmp_path / "quotes.csv"
    # 3,000 rows of 49 characters after the open quote: the field passes 128 KB on line 2,677, and
    # the rows after it are read as rows again
    rows = [quote_row(0).replace(",100,", ',"100,')] + [quote_row(1)] * 3000
    path.write_text(QUOTES_HEADER + "".join(rows))
    result = invoke(seeded_url, "ingest", "quotes", str(path))
    assert rejects_of(path) == [
        "line,reason",
        "2,not valid CSV: field larger than field limit (131072)"
        " (the record runs from line 2 to line 2677: a quote left open?)",
    ]
    assert (result.exit_code, summary_of(result.output)) == (0, (1, 324, 1))
