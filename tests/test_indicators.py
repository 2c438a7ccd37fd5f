"""Indicators in SQL checked against an independent computation in Python (decimal arithmetic)."""

import random
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal, getcontext

import psycopg
import pytest

from indicator_reference import atr, bollinger, ema, macd, rsi, sma, vwap
from market_helpers import RECENT_NOON, instrument_id

getcontext().prec = 40
# 80 one-minute candles across a UTC midnight, recent enough for their monthly partitions to exist
START = (RECENT_NOON - timedelta(days=2)).replace(hour=23, minute=20)
TOLERANCE = Decimal("1e-10")


def make_candles(count=80, seed=7):
    rng = random.Random(seed)
    close = Decimal("100")
    rows = []
    for i in range(count):
        open_ = close
        close = (open_ + Decimal(rng.randint(-150, 150)) / 100).quantize(Decimal("0.01"))
        high = max(open_, close) + Decimal(rng.randint(0, 80)) / 100
        low = min(open_, close) - Decimal(rng.randint(0, 80)) / 100
        volume = Decimal(rng.randint(0, 500)) / 100
        quote_volume = (volume * (high + low + close) / 3).quantize(Decimal("0.0001"))
        rows.append((START + timedelta(minutes=i), open_, high, low, close, volume, quote_volume))
    return rows


@pytest.fixture
def candles(seeded):
    instrument = instrument_id(seeded)
    rows = make_candles()
    with seeded.cursor() as cur:
        cur.executemany(
            "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
            " quote_volume, trade_count) values (%s, '1m', %s, %s, %s, %s, %s, %s, %s, 1)",
            [(instrument, *row) for row in rows],
        )
    return rows


def make_large_candles(count=120, seed=11):
    """Candles around 1,500,000 (steps of up to 1,119.40, ranges of up to 671.64 beyond them):
    where numeric division at its default 16 significant digits leaves too few decimals."""
    rng = random.Random(seed)
    scale = Decimal(1_500_000) / 67_000
    close = Decimal(1_500_000)
    rows = []
    for i in range(count):
        open_ = close
        close = (open_ + Decimal(rng.randint(-5000, 5000)) / 100 * scale).quantize(Decimal("0.01"))
        high = (max(open_, close) + Decimal(rng.randint(0, 3000)) / 100 * scale).quantize(Decimal("0.01"))
        low = (min(open_, close) - Decimal(rng.randint(0, 3000)) / 100 * scale).quantize(Decimal("0.01"))
        volume = Decimal(rng.randint(1, 5000)) / 1000
        quote_volume = (volume * (high + low + close) / 3).quantize(Decimal("0.0001"))
        rows.append((START + timedelta(minutes=i), open_, high, low, close, volume, quote_volume))
    return rows


@pytest.fixture
def large_candles(seeded):
    instrument = instrument_id(seeded)
    rows = make_large_candles()
    with seeded.cursor() as cur:
        cur.executemany(
            "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
            " quote_volume, trade_count) values (%s, '1m', %s, %s, %s, %s, %s, %s, %s, 1)",
            [(instrument, *row) for row in rows],
        )
    return rows


def rounded(values):
    """The exact values (to 40 digits) rounded half-up to 12 decimals, as numeric round does."""
    return [None if v is None else v.quantize(Decimal("1e-12"), rounding=ROUND_HALF_UP) for v in values]


def expected_at_large_prices(rows, indicator):
    closes = [row[4] for row in rows]
    line, sig, hist = macd(closes)
    bands = bollinger(closes)
    return {
        "sma 21": sma(closes, 21),
        "ema 20": ema(closes, 20),
        "ema 26": ema(closes, 26),
        "rsi": rsi(closes),
        "macd line": line,
        "macd signal": sig,
        "macd histogram": hist,
        "bollinger middle": [b[0] for b in bands],
        "bollinger upper": [b[1] for b in bands],
        "bollinger lower": [b[2] for b in bands],
        "vwap": vwap(rows),
        "atr": atr(rows),
    }[indicator]


LARGE_PRICE_QUERIES = {
    "sma 21": "select sma from market.sma('binance', 'BTCUSDT', '1m', 21)",
    "ema 20": "select ema from market.ema('binance', 'BTCUSDT', '1m', 20)",
    "ema 26": "select ema from market.ema('binance', 'BTCUSDT', '1m', 26)",
    "rsi": "select rsi from market.rsi('binance', 'BTCUSDT', '1m')",
    "macd line": "select macd from market.macd('binance', 'BTCUSDT', '1m')",
    "macd signal": "select signal from market.macd('binance', 'BTCUSDT', '1m')",
    "macd histogram": "select histogram from market.macd('binance', 'BTCUSDT', '1m')",
    "bollinger middle": "select middle from market.bollinger('binance', 'BTCUSDT', '1m')",
    "bollinger upper": "select upper from market.bollinger('binance', 'BTCUSDT', '1m')",
    "bollinger lower": "select lower from market.bollinger('binance', 'BTCUSDT', '1m')",
    "vwap": "select vwap from market.vwap('binance', 'BTCUSDT', '1m')",
    "atr": "select atr from market.atr('binance', 'BTCUSDT', '1m')",
}


@pytest.mark.parametrize("indicator", list(LARGE_PRICE_QUERIES))
def test_at_prices_around_1_500_000_an_indicator_is_its_exact_value_rounded_half_up_to_12_decimals(
    large_candles, seeded, indicator
):
    actual = column(seeded, LARGE_PRICE_QUERIES[indicator])
    expected = rounded(expected_at_large_prices(large_candles, indicator))
    assert [(i, a, e) for i, (a, e) in enumerate(zip(actual, expected, strict=True)) if a != e] == []


def close_enough(actual, expected):
    if expected is None or actual is None:
        return actual is expected
    return abs(actual - expected) <= TOLERANCE


def assert_series(actual, expected):
    assert len(actual) == len(expected)
    mismatches = [
        (i, a, e) for i, (a, e) in enumerate(zip(actual, expected, strict=True)) if not close_enough(a, e)
    ]
    assert mismatches == []


def column(conn, query, *params):
    return [row[-1] for row in conn.execute(query, params).fetchall()]


def test_sma_matches_the_independent_computation(candles, seeded):
    closes = [row[4] for row in candles]
    actual = column(seeded, "select * from market.sma('binance', 'BTCUSDT', '1m', 20)")
    assert_series(actual, sma(closes, 20))
    assert actual[18] is None and actual[19] is not None


def test_ema_matches_the_independent_computation(candles, seeded):
    closes = [row[4] for row in candles]
    assert_series(column(seeded, "select * from market.ema('binance', 'BTCUSDT', '1m', 10)"), ema(closes, 10))


def test_rsi_with_wilder_smoothing_matches_the_independent_computation(candles, seeded):
    closes = [row[4] for row in candles]
    actual = column(seeded, "select * from market.rsi('binance', 'BTCUSDT', '1m')")
    assert_series(actual, rsi(closes))
    assert actual[13] is None and actual[14] is not None


def test_macd_signal_and_histogram_match_the_independent_computation(candles, seeded):
    closes = [row[4] for row in candles]
    rows = seeded.execute(
        "select macd, signal, histogram from market.macd('binance', 'BTCUSDT', '1m')"
    ).fetchall()
    line, sig, hist = macd(closes)
    assert_series([r[0] for r in rows], line)
    assert_series([r[1] for r in rows], sig)
    assert_series([r[2] for r in rows], hist)
    assert rows[32][1] is None and rows[33][1] is not None


def test_bollinger_bands_match_the_independent_computation(candles, seeded):
    closes = [row[4] for row in candles]
    rows = seeded.execute(
        "select middle, upper, lower from market.bollinger('binance', 'BTCUSDT', '1m')"
    ).fetchall()
    expected = bollinger(closes)
    for part in range(3):
        assert_series([r[part] for r in rows], [e[part] for e in expected])


def test_vwap_restarts_at_utc_midnight_and_matches_the_independent_computation(candles, seeded):
    actual = column(seeded, "select * from market.vwap('binance', 'BTCUSDT', '1m')")
    assert_series(actual, vwap(candles))
    midnight = 40  # 23:20 + 40 minutes
    assert actual[midnight] == (candles[midnight][6] / candles[midnight][5]).quantize(Decimal("1e-12"))


def test_atr_matches_the_independent_computation(candles, seeded):
    assert_series(column(seeded, "select * from market.atr('binance', 'BTCUSDT', '1m')"), atr(candles))


def test_compute_indicators_stores_the_standard_set_for_every_candle(candles, seeded):
    written = seeded.execute("select market.compute_indicators('binance', 'BTCUSDT', '1m')").fetchone()[0]
    stored = seeded.execute(
        "select sma_20, ema_20, rsi_14, macd_signal, bb_upper, vwap, atr_14 from market.technical_indicators"
        " order by open_time"
    ).fetchall()
    closes = [row[4] for row in candles]
    assert written == len(stored) == 80
    expected = zip(
        sma(closes, 20),
        ema(closes, 20),
        rsi(closes),
        macd(closes)[1],
        [b[1] for b in bollinger(closes)],
        vwap(candles),
        atr(candles),
        strict=True,
    )
    for got, want in zip(stored, expected, strict=True):
        assert all(close_enough(g, w) for g, w in zip(got, want, strict=True))


def test_computing_again_replaces_the_stored_rows(candles, seeded):
    seeded.execute("select market.compute_indicators('binance', 'BTCUSDT', '1m')")
    assert seeded.execute("select market.compute_indicators('binance', 'BTCUSDT', '1m')").fetchone()[0] == 80
    assert seeded.execute("select count(*) from market.technical_indicators").fetchone()[0] == 80


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "select * from market.sma('binance', 'BTCUSDT', '1m', null)",
            "indicator periods and bollinger k must not be null: sma null, ema 20, rsi 14, bollinger 20"
            " and k 2, atr 14, macd 12/26/9",
        ),
        (
            "select * from market.bollinger('binance', 'BTCUSDT', '1m', 20, null)",
            "indicator periods and bollinger k must not be null: sma 20, ema 20, rsi 14, bollinger 20"
            " and k null, atr 14, macd 12/26/9",
        ),
        ("select * from market.rsi('binance', 'BTCUSDT', null)", "candle_interval must be given"),
    ],
)
def test_a_null_period_k_or_interval_is_refused(candles, seeded, query, message):
    with pytest.raises(psycopg.DataError) as caught:
        seeded.execute(query)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S09", message)


def test_an_rsi_period_longer_than_the_series_leaves_every_row_warming_up(candles, seeded):
    actual = column(seeded, "select * from market.rsi('binance', 'BTCUSDT', '1m', 2147483647)")
    assert actual == [None] * 80


def test_indicators_of_a_short_flat_series_with_zero_volume_candles(seeded):
    """A hand-computed series: flat closes, then moves; volume 0 on the first two candles of each
    UTC day (SMA 3, EMA 3, RSI 3, ATR 3, VWAP)."""
    instrument = instrument_id(seeded)
    start = START.replace(minute=57)  # 23:57: the day changes at the fourth candle
    closes = ["10", "10", "10", "11", "10.5", "10.5", "12"]
    volumes = ["0", "0", "2", "0", "0", "7", "8"]
    previous = None
    for i, (close, volume) in enumerate(zip(closes, volumes, strict=True)):
        open_ = previous or close
        high = max(Decimal(open_), Decimal(close)) + Decimal("0.5")
        low = min(Decimal(open_), Decimal(close)) - Decimal("0.25")
        seeded.execute(
            "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
            " quote_volume, trade_count) values (%s, '1m', %s, %s, %s, %s, %s, %s, %s, 1)",
            [
                instrument,
                start + timedelta(minutes=i),
                open_,
                high,
                low,
                close,
                volume,
                Decimal(volume) * Decimal(close),
            ],
        )
        previous = close
    rows = seeded.execute(
        "select s.sma, e.ema, r.rsi, a.atr, v.vwap"
        " from market.sma('binance', 'BTCUSDT', '1m', 3) s"
        " join market.ema('binance', 'BTCUSDT', '1m', 3) e using (open_time)"
        " join market.rsi('binance', 'BTCUSDT', '1m', 3) r using (open_time)"
        " join market.atr('binance', 'BTCUSDT', '1m', 3) a using (open_time)"
        " join market.vwap('binance', 'BTCUSDT', '1m') v using (open_time) order by open_time"
    ).fetchall()
    D = Decimal
    assert rows == [
        (None, None, None, None, None),
        (None, None, None, None, None),
        (D("10.000000000000"), D("10.000000000000"), None, D("0.750000000000"), D("10.000000000000")),
        # changes 0, 0, +1: average loss 0, so 100; TR max(1.75, 1.5, 0.25): (0.75 x 2 + 1.75) / 3
        (D("10.333333333333"), D("10.500000000000"), D("100"), D("1.083333333333"), None),
        # change -0.5: gain 1/3 * 2/3 = 2/9, loss 0.5/3 = 1/6: 100 * (2/9) / (2/9 + 1/6) = 400/7
        # TR 1.25: 41/36
        (D("10.500000000000"), D("10.500000000000"), D("57.142857142857"), D("1.138888888889"), None),
        # TR 0.75: 109/108; VWAP 73.5 / 7
        (
            D("10.666666666667"),
            D("10.500000000000"),
            D("57.142857142857"),
            D("1.009259259259"),
            D("10.500000000000"),
        ),
        # change +1.5: gain 48.5/81, loss 6/81; TR 2.25: 461/324; VWAP 169.5 / 15
        (
            D("11.000000000000"),
            D("11.250000000000"),
            D("88.990825688073"),
            D("1.422839506173"),
            D("11.300000000000"),
        ),
    ]


def test_vwap_from_a_since_inside_a_day_is_still_the_vwap_since_the_start_of_that_day(candles, seeded):
    since = START + timedelta(minutes=10)  # 23:30: the day started before the first candle asked for
    actual = column(seeded, "select * from market.vwap('binance', 'BTCUSDT', '1m', since => %s)", since)
    assert_series(actual, vwap(candles)[10:])
    # the first row: the quote volume of the day's first 11 candles over their volume
    assert actual[0] == rounded(vwap(candles))[10] != rounded(vwap(candles[10:]))[0]


def test_a_period_below_one_is_refused_naming_every_period(candles, seeded):
    with pytest.raises(psycopg.DataError) as caught:
        seeded.execute("select * from market.sma('binance', 'BTCUSDT', '1m', 0)")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "indicator periods must be at least 1 with macd fast below slow, and bollinger k positive and finite:"
        " sma 0, ema 20, rsi 14, bollinger 20 and k 2, atr 14, macd 12/26/9",
    )


# since = until holds no candle ([since, until)): refused as a reversed range is, not answered with
# no rows as if the instrument had none (the equal case killed a mutant of the second mutation run)
@pytest.mark.parametrize("since", ["2026-01-02", "2026-01-01"], ids=["after", "equal"])
def test_a_range_whose_since_is_not_before_its_until_is_refused(candles, seeded, since):
    with pytest.raises(psycopg.DataError) as caught:
        seeded.execute(
            "select * from market.ema('binance', 'BTCUSDT', '1m', since => %s::timestamptz,"
            " until => '2026-01-01 00:00Z')",
            [f"{since} 00:00Z"],
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"since {since} 00:00:00+00 is not before until 2026-01-01 00:00:00+00",
    )
