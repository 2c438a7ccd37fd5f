"""spreadedge ingest: candles over candles the rollups built or that were loaded while still open,
trade counts written as whole numbers of another form, and CSV lines of spaces or empty fields."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from market_helpers import (
    DAY,
    QUOTES_HEADER,
    RECENT_NOON,
    as_stored,
    candle_file,
    invoke,
    load,
    rejects_of,
    stored_candle,
    summary_of,
    tick,
)


def built_from_one_trade(conn):
    """The noon minute as the rollups build it from the one trade the feed saw: 101, 1 trade."""
    tick(conn, RECENT_NOON + timedelta(seconds=30), "101", "1", trade_id="a")
    conn.execute("select * from market.rollup_candles(until => %s)", [RECENT_NOON + timedelta(minutes=5)])


def test_an_exchange_candle_replaces_the_one_the_rollups_built_from_part_of_its_trades(
    seeded_url, seeded, tmp_path
):
    built_from_one_trade(seeded)
    path = candle_file(tmp_path, "candles.csv", ("1m", RECENT_NOON, "100,110,90,105,10,1000,50"))
    summary = load(seeded_url, "candles", path)
    # it was skipped as a duplicate (0, 1, 0) and the minute kept 101 101 101 101, 1 trade
    assert (summary.loaded, summary.duplicates, summary.rejected) == (1, 0, 0)
    assert stored_candle(seeded, "1m", RECENT_NOON) == as_stored("100,110,90,105,10,1000,50", loaded=True)


def test_of_two_exchange_candles_of_one_key_over_a_built_one_the_first_in_the_file_is_stored(
    seeded_url, seeded, tmp_path
):
    built_from_one_trade(seeded)
    path = candle_file(
        tmp_path,
        "candles.csv",
        ("1m", RECENT_NOON, "100,110,90,105,10,1000,50"),
        ("1m", RECENT_NOON, "200,210,190,205,20,4000,60"),
    )
    summary = load(seeded_url, "candles", path)
    assert (summary.loaded, summary.duplicates, summary.rejected) == (1, 1, 0)
    assert stored_candle(seeded, "1m", RECENT_NOON)[0] == D("100")


def test_an_exchange_candle_loaded_again_is_a_duplicate_and_keeps_its_first_values(
    seeded_url, seeded, tmp_path
):
    first = candle_file(tmp_path, "first.csv", ("1m", RECENT_NOON, "100,110,90,105,10,1000,50"))
    again = candle_file(tmp_path, "again.csv", ("1m", RECENT_NOON, "200,210,190,205,20,4000,60"))
    load(seeded_url, "candles", first)
    summary = load(seeded_url, "candles", again)
    assert (summary.loaded, summary.duplicates, summary.rejected) == (0, 1, 0)
    assert stored_candle(seeded, "1m", RECENT_NOON) == as_stored("100,110,90,105,10,1000,50", loaded=True)


def test_a_candle_still_open_when_loaded_is_replaced_when_loaded_again_once_closed(
    seeded_url, seeded, tmp_path
):
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # the day's candle as the exchange had it at load time (its last row of a download), then whole
    load(seeded_url, "candles", candle_file(tmp_path, "open.csv", ("1d", today, "100,101,99,100,5,500,7")))
    assert stored_candle(seeded, "1d", today)[7] is False  # it was marked loaded: never rewritten again
    summary = load(
        seeded_url,
        "candles",
        candle_file(tmp_path, "closed.csv", ("1d", today, "100,130,80,120,90,9000,900")),
    )
    assert (summary.loaded, summary.duplicates, summary.rejected) == (1, 0, 0)
    assert stored_candle(seeded, "1d", today)[:7] == (
        D("100"),
        D("130"),
        D("80"),
        D("120"),
        D("90"),
        D("9000"),
        900,
    )


def test_a_trade_count_written_as_a_whole_number_with_a_point_or_an_exponent_loads(
    seeded_url, seeded, tmp_path
):
    minute = timedelta(minutes=1)
    path = candle_file(
        tmp_path,
        "candles.csv",
        ("1m", RECENT_NOON, "100,110,90,105,10,1000,50.0"),
        ("1m", RECENT_NOON + minute, "100,110,90,105,10,1000,5E+1"),
        ("1m", RECENT_NOON + 2 * minute, "100,110,90,105,10,1000,1.5"),
        ("1m", RECENT_NOON + 3 * minute, "100,110,90,105,10,1000,-1"),
        ("1m", RECENT_NOON + 4 * minute, "100,110,90,105,10,1000,3e9"),
    )
    summary = load(seeded_url, "candles", path)
    assert (summary.loaded, summary.duplicates, summary.rejected) == (2, 0, 3)
    assert rejects_of(path) == [
        "line,reason",
        "4,trade_count is not a whole number: 1.5",
        "5,trade_count is not a whole number: -1",
        "6,trade_count is not a whole number: 3e9",
    ]
    assert seeded.execute("select trade_count from market.candles order by open_time").fetchall() == [
        (50,),
        (50,),
    ]


QUOTE = f"binance,BTCUSDT,{DAY}T12:00:0{{}}Z,100,1,101,1\n"


def test_csv_lines_of_spaces_or_of_empty_fields_are_blank_and_later_rejects_keep_their_lines(
    seeded_url, seeded, tmp_path
):
    path = tmp_path / "quotes.csv"
    path.write_text(
        QUOTES_HEADER
        + QUOTE.format(0)
        + "   \n"
        + ",,,,,,\n"
        + QUOTE.format(1).replace(",100,", ",102,")
        + "\t\n"
    )
    summary = load(seeded_url, "quotes", path)
    # the line of spaces and the one of commas were rejected as "exchange is missing"
    assert (summary.loaded, summary.duplicates, summary.rejected) == (1, 0, 1)
    assert rejects_of(path) == ["line,reason", "5,crossed book: bid 102 above ask 101"]


def test_strict_loads_a_csv_file_ending_in_empty_rows_of_a_spreadsheet(seeded_url, seeded, tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_bytes(
        (QUOTES_HEADER + QUOTE.format(0) + QUOTE.format(1) + ",,,,,,\n,,,,,,\n")
        .replace("\n", "\r\n")
        .encode()
    )
    result = invoke(seeded_url, "ingest", "quotes", "--strict", str(path))
    assert (result.exit_code, summary_of(result.output)) == (0, (2, 0, 0))
