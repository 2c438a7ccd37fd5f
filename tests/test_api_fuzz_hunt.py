"""Odd arguments to the trading and market SQL API (a fuzz of every public function with NaN,
infinities, numbers at numeric's ends, extreme times and odd text): each refusal it found raised a
bare PostgreSQL error, or the value was stored; here each is a project SQLSTATE naming it."""

from __future__ import annotations

from decimal import Decimal as D

import psycopg
import pytest

from market_helpers import RECENT_NOON, instrument_id, quote
from test_indicators import make_candles
from trading_helpers import expect_refusal, fill, place, position, rows

# numbers each within numeric (it ends at 10^131072) whose products are not
NEAR_NUMERIC_END = D("9e131071")
HUGE_PRICE = D("1e40000")


# Unrealized PnL (bug: a mark price far from the entry overflowed numeric in the product
# quantity x multiplier x (mark - entry), and get_position failed with a bare 22003)
def test_get_position_at_a_mark_whose_unrealized_pnl_overflows_is_an_invalid_argument(
    seeded: psycopg.Connection,
) -> None:
    order_id = place(seeded, "buy", "2", "100")
    fill(seeded, order_id, "2", "100")
    expect_refusal(
        seeded,
        "22S09",
        "unrealized PnL (quantity 2.000e+00 x multiplier 1.000e+00 x (mark 9.000e+131071 - entry 1.000e+02))"
        " is too large a number",
        lambda: position(seeded, "alpha", "binance", "BTCUSDT", mark_price=NEAR_NUMERIC_END),
    )


def test_get_position_at_a_mark_of_10_to_the_65000_gives_the_exact_unrealized_pnl(
    seeded: psycopg.Connection,
) -> None:
    # beyond the cheap bound (10^43690) but within numeric: computed, not refused
    order_id = place(seeded, "buy", "2", "100")
    fill(seeded, order_id, "2", "100")
    mark = D("1e65000")
    got = position(seeded, "alpha", "binance", "BTCUSDT", mark_price=mark)
    two_times_mark_less_100 = D("1" + "9" * 64997 + "800")  # 2 x (10^65000 - 100), exactly
    assert (got["unrealized_pnl"], got["mark"]) == (two_times_mark_less_100, mark)


# Fee valuation (bug: fee x price was not bounded: a fee of 1e99999 BNB at a BNB price of 1e40000,
# or in the base asset of a perpetual filled at 1e40000, failed with a bare 22003)
@pytest.mark.parametrize(
    ("instrument", "fee_currency", "message"),
    [
        (
            ("binance", "BTCUSDT"),
            "BNB",
            "fee value in USDT (fee 1.000e+99999 BNB x price 1.000e+40000) must be below 10^100000 in magnitude",
        ),
        (
            ("okx", "BTC-USDT-SWAP"),
            "BTC",
            "fee value in USDT (fee 1.000e+99999 BTC x price 1.000e+40000) must be below 10^100000 in magnitude",
        ),
    ],
    ids=["third-currency-at-its-market-price", "perpetual-base-asset-at-the-fill-price"],
)
def test_a_fee_whose_value_in_the_quote_asset_overflows_is_an_invalid_argument(
    seeded: psycopg.Connection, instrument: tuple[str, str], fee_currency: str, message: str
) -> None:
    exchange, symbol = instrument
    quote(seeded, RECENT_NOON, str(HUGE_PRICE), str(HUGE_PRICE), symbol="BNBUSDT")
    order_id = place(seeded, "buy", "1", str(HUGE_PRICE), exchange=exchange, symbol=symbol)
    expect_refusal(
        seeded,
        "22S09",
        message,
        lambda: fill(seeded, order_id, "1", str(HUGE_PRICE), fee=D("1e99999"), fee_currency=fee_currency),
    )


# (bug: a fee of 1e70000 BNB at 1e40000 was stored as a fee_quote of 1e110000, past the 10^100000
# that keeps fees_paid and the rollups' sums of fees within numeric)
def test_a_fee_valued_at_10_to_the_100000_or_more_in_the_quote_asset_is_an_invalid_argument(
    seeded: psycopg.Connection,
) -> None:
    quote(seeded, RECENT_NOON, str(HUGE_PRICE), str(HUGE_PRICE), symbol="BNBUSDT")
    order_id = place(seeded, "buy", "1", "100")
    expect_refusal(
        seeded,
        "22S09",
        "fee value in USDT (fee 1.000e+60000 BNB x price 1.000e+40000) must be below 10^100000 in magnitude",
        lambda: fill(seeded, order_id, "1", "100", fee=D("1e60000"), fee_currency="BNB"),
    )


def test_a_fee_valued_just_below_10_to_the_100000_is_recorded_at_its_exact_value(
    seeded: psycopg.Connection,
) -> None:
    quote(seeded, RECENT_NOON, str(HUGE_PRICE), str(HUGE_PRICE), symbol="BNBUSDT")
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", fee=D("9.99e59999"), fee_currency="BNB")
    stored = seeded.execute("select fee_quote from trading.trades where trade_id = %s", [trade_id]).fetchone()
    assert stored == (D("9.99e99999"),)


# Fee currency (bug: any length passed, and a fee currency of 100,000 characters was stored in the
# immutable trade; asset codes are at most 32 characters, as ref.upsert_instrument's)
def test_a_fee_currency_of_more_than_32_characters_is_an_invalid_argument(seeded: psycopg.Connection) -> None:
    order_id = place(seeded, "buy", "1", "100")
    expect_refusal(
        seeded,
        "22S09",
        f'fee currency must be an alphanumeric asset code of at most 32 characters, got "{"X" * 80}"',
        lambda: fill(seeded, order_id, "1", "100", fee=D("1"), fee_currency="X" * 100_000, fee_quote=D("1")),
    )


def test_a_fee_currency_of_32_characters_is_recorded(seeded: psycopg.Connection) -> None:
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", fee=D("1"), fee_currency="X" * 32, fee_quote=D("0.5"))
    stored = seeded.execute(
        "select fee_currency, fee_quote from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()
    assert stored == ("X" * 32, D("0.5"))


# Bollinger k (bug: a k near numeric's end overflowed k x the standard deviation: a bare 22003)
@pytest.fixture
def btc_candles(seeded: psycopg.Connection) -> None:
    """25 one-minute candles of binance BTCUSDT: the last 6 have 20-candle bands."""
    instrument = instrument_id(seeded)
    with seeded.cursor() as cur:
        cur.executemany(
            "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
            " quote_volume, trade_count) values (%s, '1m', %s, %s, %s, %s, %s, %s, %s, 1)",
            [(instrument, *row) for row in make_candles(count=25)],
        )


def last_bands(conn: psycopg.Connection, k: D) -> dict[str, D]:
    return rows(conn, "market.bollinger", exchange="binance", symbol="BTCUSDT", candle_interval="1m", k=k)[-1]


@pytest.mark.parametrize(
    ("k", "shown"),
    [(D("1e1000"), "1.000e+1000"), (NEAR_NUMERIC_END, "9.000e+131071")],
    ids=["bound", "near-end"],
)
def test_a_bollinger_k_of_10_to_the_1000_or_more_is_an_invalid_argument(
    seeded: psycopg.Connection, btc_candles: None, k: D, shown: str
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        last_bands(seeded, k)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"bollinger k must be below 10^1000, got {shown}",
    )


def test_a_bollinger_k_just_below_10_to_the_1000_gives_bands_k_over_2_times_as_wide(
    seeded: psycopg.Connection, btc_candles: None
) -> None:
    k = D("9.99e999")
    wide, usual = last_bands(seeded, k), last_bands(seeded, D("2"))
    ratio = (wide["upper"] - wide["middle"]) / (usual["upper"] - usual["middle"])
    assert abs(ratio / (k / 2) - 1) < D("1e-9")


# Messages (bug: a refused number was written out in full, all 131,072 digits of -1e131071 or
# 16,383 decimals of 1e-16383, in the message the caller and the server log got)
@pytest.mark.parametrize(
    ("tick_size", "shown"),
    [("-1e131071", "-1.000e+131071"), ("-1e-16383", "-1.000e-16383"), ("-0.5", "-0.5")],
)
def test_a_refused_number_is_shown_in_at_most_40_characters(
    seeded: psycopg.Connection, tick_size: str, shown: str
):
    from test_instruments import upsert

    expect_refusal(
        seeded,
        "22S09",
        f"tick size must be positive and finite, got {shown}",
        lambda: upsert(seeded, tick_size=D(tick_size)),
    )
