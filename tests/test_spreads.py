"""Cross-exchange spreads: market.current_spreads, market.spread_opportunities, spreadedge spreads."""

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner

from market_helpers import RECENT_NOON, opportunities, quote
from spreadedge.cli import main
from trading_helpers import call, list_spot, rows

T0 = RECENT_NOON


@pytest.fixture
def two_venues(seeded):
    """BTC/USDT spot on binance (seeded) and okx, both with a 0.1 % taker fee, and gateio at 0.2 %."""
    for exchange, symbol in (("okx", "BTC-USDT"), ("gateio", "BTC_USDT")):
        list_spot(seeded, exchange, symbol, min_notional=Decimal("5"))
    return seeded


def net_bps(ask, bid, buy_fee, sell_fee):
    """The independent computation: net proceeds of selling one unit minus its cost, in bps of the ask."""
    ask, bid = Decimal(ask), Decimal(bid)
    value = (bid * (1 - Decimal(sell_fee)) - ask * (1 + Decimal(buy_fee))) / ask * 10000
    return value.quantize(Decimal("0.0001"))


def test_current_spreads_buy_on_one_exchange_and_sell_on_another_net_of_taker_fees(two_venues):
    quote(two_venues, T0, "100", "100.1", size="2")
    quote(
        two_venues, T0 + timedelta(seconds=1), "100.5", "100.6", exchange="okx", symbol="BTC-USDT", size="0.5"
    )
    spreads = two_venues.execute("""
        select symbol, market_type::text, buy_exchange, ask, sell_exchange, bid, gross_bps, net_bps, oldest_quote_at
        from market.current_spreads""").fetchall()
    assert spreads == [
        (
            "BTC/USDT",
            "spot",
            "binance",
            Decimal("100.1"),
            "okx",
            Decimal("100.5"),
            Decimal("39.9600"),
            net_bps("100.1", "100.5", "0.001", "0.001"),
            T0,
        )
    ]
    assert spreads[0][7] == Decimal("19.9201")


def test_a_cheaper_venue_can_beat_a_higher_bid_once_fees_are_counted(two_venues):
    quote(two_venues, T0, "99.9", "100", size="1")
    quote(two_venues, T0, "100.4", "100.5", exchange="okx", symbol="BTC-USDT")
    quote(two_venues, T0, "100.45", "100.55", exchange="gateio", symbol="BTC_USDT")
    best = two_venues.execute(
        "select buy_exchange, sell_exchange, net_bps from market.current_spreads"
    ).fetchone()
    assert best == ("binance", "okx", net_bps("100", "100.4", "0.001", "0.001"))
    assert net_bps("100", "100.45", "0.001", "0.002") < best[2]


def test_the_cheapest_buy_sells_at_the_second_best_bid_when_the_best_is_on_its_own_exchange(two_venues):
    # binance has both the lowest ask and the highest bid: its best sale is okx's, the second best
    quote(two_venues, T0, "100.5", "100.51")
    quote(two_venues, T0, "100.45", "100.9", exchange="okx", symbol="BTC-USDT")
    quote(two_venues, T0, "100.4", "101", exchange="gateio", symbol="BTC_USDT")
    best = two_venues.execute(
        "select buy_exchange, ask, sell_exchange, bid, net_bps from market.current_spreads"
    ).fetchall()
    assert best == [
        (
            "binance",
            Decimal("100.51"),
            "okx",
            Decimal("100.45"),
            net_bps("100.51", "100.45", "0.001", "0.001"),
        )
    ]


def test_two_instruments_of_a_pair_on_one_exchange_count_as_one_place_to_sell(two_venues):
    # okx quotes BTC/USDT spot twice, and both bids beat every other exchange's: the cheapest buy,
    # on okx, still sells on the best other exchange
    list_spot(two_venues, "okx", "BTC-USDT-2")
    quote(two_venues, T0, "99.99", "100", exchange="okx", symbol="BTC-USDT")
    quote(two_venues, T0, "99.98", "100.2", exchange="okx", symbol="BTC-USDT-2")
    quote(two_venues, T0, "99.9", "100.3")
    quote(two_venues, T0, "99.5", "100.4", exchange="gateio", symbol="BTC_USDT")
    best = two_venues.execute(
        "select buy_exchange, buy_symbol, sell_exchange, sell_symbol, net_bps from market.current_spreads"
    ).fetchall()
    assert best == [("okx", "BTC-USDT", "binance", "BTCUSDT", net_bps("100", "99.9", "0.001", "0.001"))]


def test_instruments_of_another_market_type_are_not_compared(two_venues):
    quote(two_venues, T0, "100", "100.1")
    quote(two_venues, T0, "105", "105.1", exchange="okx", symbol="BTC-USDT-SWAP")
    assert two_venues.execute("select count(*) from market.current_spreads").fetchone()[0] == 0


def test_equal_spreads_go_to_the_buy_exchange_then_the_sell_exchange_first_by_code(seeded):
    # kraken was added before bybit, so their ids and their codes sort the other way round
    list_spot(seeded, "kraken", "XBTUSDT", taker_fee=Decimal("0.001"))
    list_spot(seeded, "bybit", "BTCUSDT", taker_fee=Decimal("0.001"))
    quote(seeded, T0, "100", "100.1", exchange="kraken", symbol="XBTUSDT")
    quote(seeded, T0, "100", "100.1", exchange="bybit", symbol="BTCUSDT")
    best = seeded.execute("select buy_exchange, sell_exchange from market.current_spreads").fetchall()
    assert best == [("bybit", "kraken")]


def test_current_spreads_has_one_row_per_pair_and_market_type_in_their_order(two_venues):
    for exchange, symbol in (("binance", "ETHUSDT2"), ("okx", "ETH-USDT")):
        list_spot(two_venues, exchange, symbol, base_asset="ETH")
    quote(two_venues, T0, "3000", "3000.5", symbol="ETHUSDT2")
    quote(two_venues, T0, "3001", "3001.5", exchange="okx", symbol="ETH-USDT")
    quote(two_venues, T0, "100", "100.1")
    quote(two_venues, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    spreads = two_venues.execute(
        "select symbol, buy_exchange, sell_exchange, net_bps from market.current_spreads"
    ).fetchall()
    assert spreads == [
        ("BTC/USDT", "binance", "okx", net_bps("100.1", "100.5", "0.001", "0.001")),
        ("ETH/USDT", "binance", "okx", net_bps("3000.5", "3001", "0.001", "0.001")),
    ]


def test_spread_opportunities_lists_the_buckets_at_or_above_the_minimum(two_venues):
    quote(two_venues, T0, "100", "100.1")
    quote(two_venues, T0 + timedelta(milliseconds=500), "100", "100.2")  # last of its second counts
    quote(two_venues, T0 + timedelta(milliseconds=100), "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    quote(two_venues, T0 + timedelta(seconds=1), "100", "100.1")
    quote(two_venues, T0 + timedelta(seconds=1), "100.2", "100.3", exchange="okx", symbol="BTC-USDT")
    found = rows(
        two_venues,
        "market.spread_opportunities",
        symbol="btc/usdt",
        since=T0,
        until=T0 + timedelta(minutes=1),
        min_net_bps=Decimal("5"),
    )
    assert [
        (r["bucket_start"], r["buy_exchange"], r["ask"], r["sell_exchange"], r["bid"], r["net_bps"])
        for r in found
    ] == [
        (
            T0,
            "binance",
            Decimal("100.2"),
            "okx",
            Decimal("100.5"),
            net_bps("100.2", "100.5", "0.001", "0.001"),
        ),
    ]


def test_spread_opportunities_of_a_pair_nothing_trades_is_refused(two_venues):
    with pytest.raises(psycopg.IntegrityError) as caught:
        rows(two_venues, "market.spread_opportunities", symbol="DOGE/USDT", since=T0, until=T0)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S20",
        "no instrument trades DOGE/USDT",
    )


def test_spread_opportunities_needs_a_base_quote_symbol(two_venues):
    with pytest.raises(psycopg.DataError) as caught:
        rows(two_venues, "market.spread_opportunities", symbol="BTCUSDT", since=T0, until=T0)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        'symbol "BTCUSDT" is not BASE/QUOTE',
    )


def test_the_spreads_command_prints_the_current_spreads(two_venues, db_url):
    quote(two_venues, T0, "100", "100.1")
    quote(two_venues, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    result = CliRunner().invoke(main, ["--database-url", db_url, "spreads", "--symbol", "BTC/USDT"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "symbol    market  buy on     ask  sell on    bid  gross_bps  net_bps  as of",
        "--------  ------  -------  -----  -------  -----  ---------  -------  -----------------------",
        f"BTC/USDT  spot    binance  100.1  okx      100.5      39.96  19.9201  {T0:%Y-%m-%d %H:%M:%S}.000",
    ]


def test_the_spreads_command_leaves_out_spreads_below_min_bps(two_venues, db_url):
    quote(two_venues, T0, "100", "100.1")
    quote(two_venues, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    result = CliRunner().invoke(main, ["--database-url", db_url, "spreads", "--min-bps", "20"])
    assert result.output == "no current spreads (no quotes, or none above --min-bps or within --max-age)\n"


@pytest.mark.parametrize("bound", ["nan", "inf", "-Infinity"])
def test_the_spreads_command_refuses_a_min_bps_that_is_not_a_finite_number(db_url, bound):
    result = CliRunner().invoke(main, ["--database-url", db_url, "spreads", "--min-bps", bound])
    assert result.exit_code == 2
    assert f"Invalid value for '--min-bps': '{bound}' is not a finite decimal number" in result.output


def test_the_spreads_command_says_a_symbol_without_a_slash_names_no_asset_pair(two_venues, db_url):
    quote(two_venues, T0, "100", "100.1")
    quote(two_venues, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    result = CliRunner().invoke(main, ["--database-url", db_url, "spreads", "--symbol", "BTCUSDT"])
    assert (result.exit_code, result.output) == (
        0,
        "no current spreads for 'BTCUSDT': spreads are by asset pair, written BASE/QUOTE (e.g. BTC/USDT)\n",
    )


def list_instrument(conn, exchange, symbol, market_type, multiplier="1"):
    """A BTC/USDT instrument of any market type, with the exchange's default fees for it."""
    call(
        conn,
        "ref.upsert_instrument",
        exchange=exchange,
        symbol=symbol,
        base_asset="BTC",
        quote_asset="USDT",
        market_type=market_type,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.001"),
        multiplier=Decimal(multiplier),
    )


@pytest.fixture
def two_perpetuals(seeded):
    """BTC/USDT perpetuals of different contract sizes: okx's seeded BTC-USDT-SWAP (0.01 BTC a
    contract) and binance's BTCUSDT-PERP (1 BTC a contract), both with the default 0.05 % taker fee."""
    list_instrument(seeded, "binance", "BTCUSDT-PERP", "perpetual")
    return seeded


def test_spread_opportunities_sizes_and_quantity_are_in_base_asset_units(two_perpetuals):
    # okx offers 300 contracts of 0.01 BTC (3 BTC) at its ask, binance bids for 4 contracts of 1 BTC
    quote(two_perpetuals, T0, "100", "100.1", exchange="okx", symbol="BTC-USDT-SWAP", size="300")
    quote(two_perpetuals, T0, "101", "101.1", symbol="BTCUSDT-PERP", size="4")
    found = opportunities(two_perpetuals, T0)
    assert [
        (r["buy_exchange"], r["ask_size"], r["sell_exchange"], r["bid_size"], r["quantity"], r["net_bps"])
        for r in found
    ] == [
        (
            "okx",
            Decimal("3.00"),
            "binance",
            Decimal("4"),
            Decimal("3.00"),
            net_bps("100.1", "101", "0.0005", "0.0005"),
        )
    ]


def test_current_spreads_sizes_are_in_base_asset_units(two_perpetuals):
    quote(two_perpetuals, T0, "100", "100.1", exchange="okx", symbol="BTC-USDT-SWAP", size="300")
    quote(two_perpetuals, T0, "101", "101.1", symbol="BTCUSDT-PERP", size="4")
    assert two_perpetuals.execute(
        "select market_type::text, buy_symbol, ask_size, sell_symbol, bid_size from market.current_spreads"
    ).fetchall() == [("perpetual", "BTC-USDT-SWAP", Decimal("3.00"), "BTCUSDT-PERP", Decimal("4"))]


def test_current_spreads_never_compares_options(seeded):
    # a 150 call and a 100 call of BTC/USDT are different assets: their premiums are no spread
    list_instrument(seeded, "binance", "BTC-261225-100-C", "option")
    list_instrument(seeded, "okx", "BTC-USDT-261225-150-C", "option")
    quote(seeded, T0, "20", "20.5", symbol="BTC-261225-100-C")
    quote(seeded, T0, "4", "4.2", exchange="okx", symbol="BTC-USDT-261225-150-C")
    assert seeded.execute("select * from market.current_spreads").fetchall() == []


def test_current_spreads_never_compares_dated_futures(seeded):
    # instruments keep no expiry: a December and a March future could not be told apart
    list_instrument(seeded, "binance", "BTCUSDT_261225", "futures")
    list_instrument(seeded, "okx", "BTC-USDT-270326", "futures")
    quote(seeded, T0, "101", "101.1", symbol="BTCUSDT_261225")
    quote(seeded, T0, "104", "104.1", exchange="okx", symbol="BTC-USDT-270326")
    assert seeded.execute("select * from market.current_spreads").fetchall() == []


def test_spread_opportunities_never_compare_options(seeded):
    list_instrument(seeded, "binance", "BTC-261225-100-C", "option")
    list_instrument(seeded, "okx", "BTC-USDT-261225-150-C", "option")
    quote(seeded, T0, "20", "20.5", symbol="BTC-261225-100-C")
    quote(seeded, T0, "4", "4.2", exchange="okx", symbol="BTC-USDT-261225-150-C")
    found = opportunities(seeded, T0, min_net_bps=Decimal("-100000"))
    assert found == []


def test_spread_opportunities_never_compare_dated_futures(seeded):
    list_instrument(seeded, "binance", "BTCUSDT_261225", "futures")
    list_instrument(seeded, "okx", "BTC-USDT-270326", "futures")
    quote(seeded, T0, "101", "101.1", symbol="BTCUSDT_261225")
    quote(seeded, T0, "104", "104.1", exchange="okx", symbol="BTC-USDT-270326")
    found = opportunities(seeded, T0, min_net_bps=Decimal("-100000"))
    assert found == []


def test_the_spreads_command_says_no_instrument_trades_an_unknown_pair(two_venues, db_url):
    quote(two_venues, T0, "100", "100.1")
    quote(two_venues, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    result = CliRunner().invoke(main, ["--database-url", db_url, "spreads", "--symbol", "BTC/USD"])
    assert (result.exit_code, result.output) == (1, "Error: no instrument trades BTC/USD\n")


def test_the_spreads_command_refuses_a_symbol_that_is_not_base_slash_quote(two_venues, db_url):
    result = CliRunner().invoke(main, ["--database-url", db_url, "spreads", "--symbol", "BTC/USDT/SPOT"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == 'Error: symbol "BTC/USDT/SPOT" is not BASE/QUOTE'


def test_the_spreads_command_shows_quote_times_in_utc_whatever_the_session_time_zone(two_venues, db_url):
    quote(two_venues, T0, "100", "100.1")
    quote(two_venues, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    result = CliRunner().invoke(main, ["--database-url", db_url, "spreads"], env={"PGTZ": "Asia/Tokyo"})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2].endswith(f"{T0:%Y-%m-%d %H:%M:%S}.000")


def stale_and_fresh(conn):
    """binance and okx quoted now (okx bids 19.9 bps net over binance's ask); gateio's bid, two days
    old, would be far above both."""
    now = conn.execute("select now()").fetchone()[0]
    quote(conn, now, "100", "100.1")
    quote(conn, now, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    quote(conn, now - timedelta(days=2), "103", "103.1", exchange="gateio", symbol="BTC_USDT")


def test_a_quote_older_than_the_sessions_max_quote_age_is_left_out_of_current_spreads(two_venues):
    stale_and_fresh(two_venues)
    two_venues.execute("set spreadedge.max_quote_age = '1 minute'")

    assert two_venues.execute(
        "select buy_exchange, sell_exchange, net_bps from market.current_spreads"
    ).fetchall() == [("binance", "okx", Decimal("19.9201"))]


@pytest.mark.parametrize("setting", ["soon", "0", "-1 minute", "1 mon -28 days"])
def test_a_max_quote_age_that_is_no_positive_interval_is_refused_naming_the_setting(two_venues, setting):
    # "soon" failed every read with a raw 22007 naming no setting; 0 and less showed no spread at
    # all, and so did '1 mon -28 days' (2 days as compared) in March
    stale_and_fresh(two_venues)
    two_venues.execute("select set_config('spreadedge.max_quote_age', %s, false)", [setting])
    with pytest.raises(psycopg.DataError) as refused:
        two_venues.execute("select * from market.current_spreads")
    assert (refused.value.sqlstate, refused.value.diag.message_primary) == (
        "22S09",
        f'spreadedge.max_quote_age must be a positive interval with no negative part, got "{setting}"',
    )


def test_without_a_max_quote_age_every_newest_quote_counts(two_venues):
    stale_and_fresh(two_venues)

    assert two_venues.execute(
        "select buy_exchange, sell_exchange from market.current_spreads"
    ).fetchall() == [("binance", "gateio")]


def test_the_spreads_command_with_max_age_shows_the_spread_of_fresh_quotes(two_venues, seeded_url):
    stale_and_fresh(two_venues)

    result = CliRunner().invoke(main, ["--database-url", seeded_url, "spreads", "--max-age", "1 minute"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2].split()[:6] == [
        "BTC/USDT",
        "spot",
        "binance",
        "100.1",
        "okx",
        "100.5",
    ]


@pytest.mark.parametrize("max_age", ["soon", "-1 minute", "0"])
def test_the_spreads_command_refuses_a_max_age_that_is_no_positive_interval(seeded_url, max_age):
    result = CliRunner().invoke(main, ["--database-url", seeded_url, "spreads", "--max-age", max_age])

    assert result.exit_code == 2 and "Invalid value for '--max-age'" in result.output


def test_max_quote_age_counts_from_the_statement_not_from_the_start_of_a_long_transaction(two_venues):
    # a strategy polling the view on a connection not in autocommit (psycopg's default) reads it
    # in one long transaction, where now() stays at the transaction's start
    two_venues.execute("set spreadedge.max_quote_age = '1 second'")
    with two_venues.transaction():
        two_venues.execute("select now()")  # the transaction's now() is fixed from here
        two_venues.execute("select pg_sleep(1.2)")
        # binance's newest quote is 1.5 s old by the clock (its feed stalled), okx's is fresh
        for exchange, symbol, age, bid, ask in (
            ("binance", "BTCUSDT", "1.5 seconds", "100", "100.1"),
            ("okx", "BTC-USDT", "0 seconds", "100.5", "100.6"),
        ):
            two_venues.execute(
                "insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size)"
                " select i.instrument_id, clock_timestamp() - %s::interval, %s, 1, %s, 1"
                " from ref.instruments i join ref.exchanges e using (exchange_id)"
                " where e.code = %s and i.symbol = %s",
                [age, Decimal(bid), Decimal(ask), exchange, symbol],
            )
        spreads = two_venues.execute(
            "select buy_exchange, sell_exchange from market.current_spreads"
        ).fetchall()
    # measured from now(), 1.2 s before, the stale binance ask was paired with okx's fresh bid
    assert spreads == []


# an empty side of a book (size 0) is no price to trade at: as the cheapest ask or the highest bid
# it showed a spread nobody could take and hid the real one
@pytest.mark.parametrize(
    ("bid", "bid_size", "ask", "ask_size"),
    [("99", "1", "99.5", "0"), ("101", "0", "101.5", "1")],
    ids=["empty ask side", "empty bid side"],
)
def test_a_quote_side_of_size_zero_is_neither_bought_nor_sold(two_venues, bid, bid_size, ask, ask_size):
    quote(two_venues, T0, bid, ask, bid_size=bid_size, ask_size=ask_size)
    quote(two_venues, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    quote(two_venues, T0, "100.45", "100.55", exchange="gateio", symbol="BTC_USDT")
    assert two_venues.execute(
        "select buy_exchange, sell_exchange from market.current_spreads"
    ).fetchall() == [("gateio", "okx")]


@pytest.mark.parametrize(
    ("bid", "bid_size", "ask", "ask_size"),
    [("99", "1", "99.5", "0"), ("101", "0", "101.5", "1")],
    ids=["empty ask side", "empty bid side"],
)
def test_spread_opportunities_never_buy_or_sell_a_quote_side_of_size_zero(
    two_venues, bid, bid_size, ask, ask_size
):
    quote(two_venues, T0, bid, ask, bid_size=bid_size, ask_size=ask_size)
    # the one that pays: buy on gateio at 100.35 (0.2 % fee), sell on okx at 100.7 (0.1 %)
    quote(two_venues, T0, "100.7", "100.8", exchange="okx", symbol="BTC-USDT")
    quote(two_venues, T0, "100.3", "100.35", exchange="gateio", symbol="BTC_USDT")
    found = opportunities(two_venues, T0)
    assert [(r["buy_exchange"], r["sell_exchange"], r["quantity"]) for r in found] == [
        ("gateio", "okx", Decimal("1"))
    ]
