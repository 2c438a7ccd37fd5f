"""Every PnL rule of the trading model, with expected values worked out by hand."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from psycopg import errors

from market_helpers import RECENT_NOON
from trading_helpers import call, counts, fill, list_binance_eth_btc, place, position, rows, trade

# three consecutive recent UTC days, so their monthly trade partitions exist
DAY2 = RECENT_NOON.date() - timedelta(days=5)
DAY1, DAY3 = DAY2 - timedelta(days=1), DAY2 + timedelta(days=1)


def test_buys_in_the_same_direction_reweight_the_average_entry(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "buy", "3", "104")
    # avg = (1 x 100 + 3 x 104) / 4 = 412 / 4 = 103
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (pos["quantity"], pos["avg_entry_price"], pos["realized_pnl_gross"]) == (D("4"), D("103"), D("0"))


def test_partial_close_of_a_long_realizes_the_closed_part(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "sell", "0.5", "110")
    # 0.5 x (110 - 100) = 5; the rest keeps its entry
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (pos["quantity"], pos["avg_entry_price"], pos["realized_pnl_gross"]) == (
        D("1.5"),
        D("100"),
        D("5"),
    )


def test_closing_a_long_at_a_loss_realizes_a_negative_pnl(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "sell", "2", "95")
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (pos["quantity"], pos["avg_entry_price"], pos["realized_pnl_gross"]) == (D("0"), None, D("-10"))


def test_covering_a_short_below_entry_realizes_a_gain(seeded):
    trade(seeded, "sell", "2", "100")
    trade(seeded, "buy", "1", "90")
    # short 2 @ 100, buy back 1 @ 90: 1 x (100 - 90) = 10
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (pos["quantity"], pos["avg_entry_price"], pos["realized_pnl_gross"]) == (
        D("-1"),
        D("100"),
        D("10"),
    )


def test_a_fill_crossing_zero_realizes_the_closed_part_and_opens_the_rest_at_the_fill_price(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "sell", "3", "120")
    # closes 1 long: 1 x (120 - 100) = 20; opens 2 short @ 120
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (pos["quantity"], pos["avg_entry_price"], pos["realized_pnl_gross"]) == (
        D("-2"),
        D("120"),
        D("20"),
    )


def test_a_quote_currency_fee_is_realized_as_paid(seeded):
    trade(seeded, "buy", "1", "100", fee=D("0.1"))
    trade(seeded, "sell", "1", "110", fee=D("0.11"), fee_currency="USDT")
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (pos["realized_pnl_gross"], pos["fees_paid"], pos["realized_pnl"]) == (
        D("10"),
        D("0.21"),
        D("9.79"),
    )


def test_a_base_asset_fee_on_spot_reduces_the_quantity_received_and_counts_at_the_fill_price(seeded):
    trade_id = trade(seeded, "buy", "1", "50000", fee=D("0.001"), fee_currency="BTC")
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    # received 1 - 0.001 BTC at 50000; the fee is worth 0.001 x 50000 = 50 USDT
    assert (pos["quantity"], pos["avg_entry_price"], pos["fees_paid"]) == (D("0.999"), D("50000"), D("50"))
    row = seeded.execute(
        "select fee_quote, position_delta from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()
    assert row == (D("50"), D("0.999"))


def test_a_base_asset_fee_on_a_sell_increases_the_quantity_delivered(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "sell", "1", "110", fee=D("0.01"), fee_currency="btc")
    # delivered 1.01 BTC: closes 1.01 x (110 - 100) = 10.1; fee 0.01 x 110 = 1.1
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (pos["quantity"], pos["realized_pnl_gross"], pos["fees_paid"], pos["realized_pnl"]) == (
        D("0.99"),
        D("10.1"),
        D("1.1"),
        D("9.0"),
    )


def test_a_third_currency_fee_counts_at_the_quote_value_given(seeded):
    trade(seeded, "buy", "1", "100", fee=D("0.01"), fee_currency="BNB", fee_quote=D("3.05"))
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (pos["quantity"], pos["fees_paid"]) == (D("1"), D("3.05"))


def test_a_third_currency_fee_is_priced_from_market_data_when_no_value_is_given(seeded):
    trade(seeded, "buy", "1", "300", strategy="beta", symbol="BNBUSDT")
    trade(seeded, "buy", "1", "100", fee=D("0.01"), fee_currency="BNB")
    # 0.01 BNB at the last BNBUSDT price 300 = 3 USDT
    assert position(seeded, "alpha", "binance", "BTCUSDT")["fees_paid"] == D("3")


def test_an_unpriced_third_currency_fee_is_refused_with_a_hint_and_writes_nothing(seeded):
    order_id = place(seeded, "buy", "1", "100")
    before = counts(seeded)
    with pytest.raises(errors.DataError) as caught:
        fill(seeded, order_id, "1", "100", fee=D("0.5"), fee_currency="XYZ")
    assert caught.value.sqlstate == "22S08"
    assert (
        caught.value.diag.message_primary
        == "fee of 0.5 XYZ cannot be valued in USDT: no market price for XYZ/USDT"
    )
    assert caught.value.diag.message_hint == "Pass fee_quote => the fee's value in USDT."
    assert counts(seeded) == before


def test_funding_payments_add_to_realized_pnl(seeded):
    trade(seeded, "buy", "100", "50000", exchange="okx", symbol="BTC-USDT-SWAP")
    call(
        seeded,
        "trading.record_funding",
        strategy="alpha",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        amount=D("12.5"),
        paid_at=datetime.now(UTC),
    )
    call(
        seeded,
        "trading.record_funding",
        strategy="alpha",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        amount=D("-2.5"),
        paid_at=f"{DAY1 - timedelta(days=8)} 08:00:00+00",
    )
    pos = position(seeded, "alpha", "okx", "BTC-USDT-SWAP")
    assert (pos["funding"], pos["realized_pnl_gross"], pos["realized_pnl"]) == (D("10"), D("0"), D("10"))


def test_the_contract_multiplier_scales_realized_pnl(seeded):
    trade(seeded, "buy", "100", "50000", exchange="okx", symbol="BTC-USDT-SWAP")
    trade(seeded, "sell", "40", "51000", exchange="okx", symbol="BTC-USDT-SWAP")
    # 40 contracts x 0.01 BTC x (51000 - 50000) = 400
    pos = position(seeded, "alpha", "okx", "BTC-USDT-SWAP")
    assert (pos["quantity"], pos["realized_pnl_gross"]) == (D("60"), D("400"))


def test_unrealized_pnl_uses_the_mark_price_given(seeded):
    trade(seeded, "sell", "100", "50000", exchange="okx", symbol="BTC-USDT-SWAP")
    pos = position(seeded, "alpha", "okx", "BTC-USDT-SWAP", mark_price=D("49000"))
    # short 100 x 0.01 x (49000 - 50000) x -1 = +1000
    assert (pos["unrealized_pnl"], pos["mark"]) == (D("1000"), D("49000"))


def test_unrealized_pnl_falls_back_to_the_latest_market_price(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "buy", "1", "130", strategy="beta")
    pos = position(seeded, "alpha", "binance", "BTCUSDT")
    # alpha long 2 @ 100 marked at the latest BTCUSDT fill, 130: 2 x 30 = 60
    assert (pos["unrealized_pnl"], pos["mark"]) == (D("60"), D("130"))


def test_a_position_never_traded_reads_as_flat_zeros(seeded):
    pos = position(seeded, "alpha", "kraken", "ETHUSD")
    assert pos == {
        "quantity": D("0"),
        "avg_entry_price": None,
        "realized_pnl_gross": D("0"),
        "fees_paid": D("0"),
        "funding": D("0"),
        "realized_pnl": D("0"),
        "unrealized_pnl": D("0"),
        "mark": None,
    }


def test_each_trade_keeps_the_realized_pnl_and_fee_it_caused(seeded):
    trade(seeded, "buy", "2", "100", fee=D("0.2"))
    closing = trade(seeded, "sell", "2", "105", fee=D("0.21"))
    row = seeded.execute(
        "select realized_pnl_gross, fee_quote, realized_pnl from trading.trades where trade_id = %s",
        [closing],
    ).fetchone()
    assert row == (D("10"), D("0.21"), D("9.79"))


def test_pnl_summary_by_strategy_sums_trades_and_funding(seeded):
    trade(seeded, "buy", "2", "100", fee=D("0.2"))
    trade(seeded, "sell", "2", "105", fee=D("0.21"))
    trade(seeded, "buy", "100", "50000", strategy="beta", exchange="okx", symbol="BTC-USDT-SWAP")
    call(
        seeded,
        "trading.record_funding",
        strategy="beta",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        amount=D("-3"),
        paid_at=datetime.now(UTC),
    )
    summary = {r["strategy_name"]: r for r in rows(seeded, "trading.pnl_summary", group_by="strategy")}
    alpha, beta = summary["alpha"], summary["beta"]
    assert (alpha["trades"], alpha["volume"], alpha["fees"], alpha["realized_pnl"]) == (
        2,
        D("4"),
        D("0.41"),
        D("9.59"),
    )
    assert (beta["trades"], beta["funding"], beta["realized_pnl"]) == (1, D("-3"), D("-3"))


def test_pnl_summary_keeps_pnl_in_different_quote_assets_apart(seeded):
    # a strategy trading BTC/USDT and ETH/BTC: its USDT and its BTC were summed into one number
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "2", "100", fee=D("0.2"))
    trade(seeded, "sell", "2", "105", fee=D("0.21"))
    trade(seeded, "buy", "1", "0.05", symbol="ETHBTC", fee=D("0.00005"))
    trade(seeded, "sell", "1", "0.06", symbol="ETHBTC", fee=D("0.00006"))
    summary = [
        (r["strategy_name"], r["quote_asset"], r["trades"], r["notional"], r["fees"], r["realized_pnl"])
        for r in rows(seeded, "trading.pnl_summary", group_by="strategy")
    ]
    assert summary == [
        ("alpha", "BTC", 2, D("0.11"), D("0.00011"), D("0.00989")),
        ("alpha", "USDT", 2, D("410"), D("0.41"), D("9.59")),
    ]


def test_pnl_summary_over_a_partial_day_reads_only_the_trades_inside_it(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY2} 09:00:00+00")
    trade(seeded, "sell", "1", "110", executed_at=f"{DAY2} 15:00:00+00")
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY2} 18:00:00+00")
    trade(seeded, "sell", "1", "90", executed_at=f"{DAY3} 01:00:00+00")
    window = rows(
        seeded,
        "trading.pnl_summary",
        strategy="alpha",
        since=f"{DAY2} 12:00:00+00",
        until=f"{DAY3} 00:00:00+00",
        group_by="total",
    )
    # the 15:00 sell (+10) and the 18:00 buy fall inside; the 09:00 buy and next day's sell do not
    assert [(r["trades"], r["realized_pnl_gross"]) for r in window] == [(2, D("10"))]


def test_pnl_summary_joins_whole_days_from_the_rollup_with_partial_days_from_trades(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY1} 23:00:00+00")
    trade(seeded, "sell", "1", "110", executed_at=f"{DAY2} 10:00:00+00")
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY3} 05:00:00+00")
    trade(seeded, "sell", "1", "101", executed_at=f"{DAY3} 20:00:00+00")
    by_day = rows(
        seeded,
        "trading.pnl_summary",
        strategy="alpha",
        since=f"{DAY1} 22:00:00+00",
        until=f"{DAY3} 06:00:00+00",
        group_by="day",
    )
    assert [(str(r["day"]), r["trades"], r["realized_pnl_gross"]) for r in by_day] == [
        (str(DAY1), 1, D("0")),
        (str(DAY2), 1, D("10")),
        (str(DAY3), 1, D("0")),
    ]


def daylight_saving_midnight(zone: str) -> datetime:
    """The latest UTC midnight before yesterday after which a day of ``zone`` lasts 23 or 25 hours."""
    tz = ZoneInfo(zone)
    midnight = datetime.combine(RECENT_NOON.date() - timedelta(days=2), time(0), UTC)
    for _ in range(400):
        next_local_day = (midnight.astimezone(tz) + timedelta(days=1)).astimezone(UTC)
        if next_local_day - midnight != timedelta(hours=24):
            return midnight
        midnight -= timedelta(days=1)
    raise AssertionError(f"{zone} changed its clocks on no day of the last 400")


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Australia/Sydney"])
def test_pnl_summary_counts_the_same_in_a_session_whose_clocks_change_that_day(seeded, zone):
    midnight = daylight_saving_midnight(zone)
    for hours, side in [(3, "buy"), (4, "sell"), (12.5, "buy"), (24.5, "sell")]:
        at = midnight + timedelta(hours=hours)
        trade(seeded, side, "1", "100", fee="1", executed_at=at, placed_at=at)
    seeded.execute("select set_config('timezone', %s, false)", [zone])
    window = rows(
        seeded,
        "trading.pnl_summary",
        strategy="alpha",
        since=midnight + timedelta(hours=12),
        until=midnight + timedelta(hours=54),
        group_by="total",
    )
    # the 12:30 and next day's 00:30 fills only, each once: the UTC day's rollup holds the
    # 03:00 and 04:00 fills too, and the hour after midnight is in both rollups
    assert [(r["trades"], r["fees"]) for r in window] == [(2, D("2"))]


def test_pnl_summary_by_instrument_names_exchange_and_symbol(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "buy", "10", "50000", exchange="okx", symbol="BTC-USDT-SWAP")
    keys = [
        (r["exchange"], r["symbol"], r["strategy_name"])
        for r in rows(seeded, "trading.pnl_summary", group_by="instrument")
    ]
    assert keys == [("binance", "BTCUSDT", None), ("okx", "BTC-USDT-SWAP", None)]


@pytest.mark.parametrize("group_by", ["strategy,week", "", " "])
def test_pnl_summary_refuses_an_unknown_or_empty_grouping(seeded, group_by):
    with pytest.raises(errors.DataError) as caught:
        rows(seeded, "trading.pnl_summary", group_by=group_by)
    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary == (
        f'group_by "{group_by}" is not a list of strategy, exchange, instrument, day or total'
    )


def test_portfolio_snapshot_records_each_strategy_and_the_total(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "sell", "1", "110")
    trade(seeded, "buy", "1", "120", strategy="beta")
    snapshot = {r["strategy_id"]: r for r in rows(seeded, "trading.take_portfolio_snapshot")}
    alpha_id = call(seeded, "trading.create_strategy", name="alpha")
    beta_id = call(seeded, "trading.create_strategy", name="beta")
    # mark = latest BTCUSDT fill = 120; alpha: long 1 @ 100 -> unrealized 20, realized 10, capital 10000
    alpha = snapshot[alpha_id]
    assert (
        alpha["realized_pnl"],
        alpha["unrealized_pnl"],
        alpha["equity"],
        alpha["gross_exposure"],
        alpha["open_positions"],
    ) == (D("10"), D("20"), D("10030"), D("120"), 1)
    # beta: long 1 @ 120 at mark 120 -> equity = capital 0
    assert (snapshot[beta_id]["equity"], snapshot[beta_id]["net_exposure"]) == (D("0"), D("120"))
    total = snapshot[None]
    assert (total["equity"], total["gross_exposure"], total["open_positions"]) == (D("10030"), D("240"), 2)


def test_pnl_summary_joins_whole_hours_from_the_hourly_rollup_with_partial_hours_from_trades(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY2} 09:10:00+00")
    trade(seeded, "sell", "1", "110", executed_at=f"{DAY2} 09:50:00+00")
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY2} 10:30:00+00")
    trade(seeded, "sell", "1", "105", executed_at=f"{DAY2} 11:20:00+00")
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY2} 11:40:00+00")
    window = rows(
        seeded,
        "trading.pnl_summary",
        strategy="alpha",
        since=f"{DAY2} 09:30:00+00",
        until=f"{DAY2} 11:30:00+00",
        group_by="total",
    )
    # 09:50 sell (+10) from trades, 10:00-11:00 hour from the hourly rollup (the 10:30 buy), 11:20 sell (+5)
    assert [(r["trades"], r["realized_pnl_gross"]) for r in window] == [(3, D("15"))]


def test_pnl_summary_values_each_trade_at_the_multiplier_it_was_realized_at(seeded):
    swap = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}
    trade(seeded, "buy", "10", "60000", executed_at=f"{DAY2} 09:10:00+00", **swap)  # at 0.01
    seeded.execute(
        "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
        " quote_asset => 'USDT', market_type => 'perpetual', tick_size => 0.1, lot_size => 1,"
        " min_notional => 0, multiplier => 0.02)"
    )
    trade(seeded, "sell", "4", "61000", executed_at=f"{DAY2} 09:20:00+00", **swap)  # at 0.02
    # a window inside one hour: both trades are read from trading.trades, not from a rollup
    window = rows(
        seeded,
        "trading.pnl_summary",
        strategy="alpha",
        since=f"{DAY2} 09:05:00+00",
        until=f"{DAY2} 09:30:00+00",
        group_by="total",
    )
    # 10 x 60000 x 0.01 + 4 x 61000 x 0.02, and 4 x 0.02 x 1000 realized
    assert [(r["trades"], r["notional"], r["realized_pnl_gross"]) for r in window] == [
        (2, D("10880"), D("80"))
    ]


@pytest.mark.parametrize("since", ["294276-12-31 23:30:00+00", "294276-12-31 22:30:00+00"])
def test_pnl_summary_since_the_last_representable_day_is_an_empty_period_not_an_error(seeded, since):
    # rounding such a since up to the next hour or day overflowed: 22008 timestamp out of range
    trade(seeded, "buy", "1", "100")
    assert rows(seeded, "trading.pnl_summary", since=since, group_by="total") == []
