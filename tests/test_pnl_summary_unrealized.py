"""trading.pnl_summary's unrealized_pnl: the positions open now, marked as trading.get_position marks
them without a mark price, summed per group, when the period reaches the present; null for a period
in the past, on a day row before today's, and 0 for a group with nothing open."""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest

from auth_helpers import acting_as
from market_helpers import RECENT_NOON, invoke, quote
from spreadedge.managers import ManagerConfig, PersistentPositionManager
from trading_helpers import fill, list_binance_eth_btc, place, position, rows, trade

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
THREE_DAYS_AGO = NOW - timedelta(days=3)
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}
ZEROS = {
    "trades": 0,
    "volume": D(0),
    "notional": D(0),
    "fees": D(0),
    "realized_pnl_gross": D(0),
    "funding": D(0),
    "realized_pnl": D(0),
}
FACTS = (*ZEROS, "unrealized_pnl")


def summary(conn: psycopg.Connection, group_by: str, **kwargs) -> list[tuple]:
    """(keys..., quote_asset, unrealized_pnl) of each row: the keys are the grouped columns."""
    keys = {
        "strategy": ("strategy_name",),
        "exchange": ("exchange",),
        "instrument": ("exchange", "symbol"),
        "day": ("day",),
        "total": (),
    }
    names = [k for part in group_by.split(",") for k in keys[part]]
    return [
        (*(r[n] for n in names), r["quote_asset"], r["unrealized_pnl"])
        for r in rows(conn, "trading.pnl_summary", group_by=group_by, **kwargs)
    ]


def three_open_positions(conn: psycopg.Connection) -> None:
    """alpha long 2 BTCUSDT at 100 (mid 110: +20) and short 3 BNBUSDT at 50 (mid 45: +15), both on
    binance; beta long 10 contracts of okx's perpetual (0.01 BTC each) at 60000 (mid 60100: +10)."""
    trade(conn, "buy", "2", "100")
    trade(conn, "sell", "3", "50", symbol="BNBUSDT")
    trade(conn, "buy", "10", "60000", strategy="beta", **SWAP)
    quote(conn, RECENT_NOON, "109", "111")
    quote(conn, RECENT_NOON, "44", "46", symbol="BNBUSDT")
    quote(conn, RECENT_NOON, "60090", "60110", **SWAP)


def test_a_long_and_a_short_position_are_marked_at_their_quote_mid_as_get_position_marks_them(seeded):
    three_open_positions(seeded)

    # 2 x (110 - 100) and -3 x (45 - 50)
    assert summary(seeded, "instrument", strategy="alpha") == [
        ("binance", "BNBUSDT", "USDT", D("15")),
        ("binance", "BTCUSDT", "USDT", D("20")),
    ]
    assert [
        position(seeded, "alpha", "binance", symbol)["unrealized_pnl"] for symbol in ("BNBUSDT", "BTCUSDT")
    ] == [D("15"), D("20")]


def test_a_perpetuals_unrealized_pnl_counts_its_contracts_at_the_multiplier(seeded):
    three_open_positions(seeded)

    # 10 contracts x 0.01 BTC x (60100 - 60000), not 10 x 100
    assert summary(seeded, "instrument", strategy="beta") == [("okx", "BTC-USDT-SWAP", "USDT", D("10"))]


def test_a_position_without_market_data_is_marked_at_the_latest_fill_as_get_position_marks_it(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "buy", "1", "130", strategy="beta")  # the latest fill: the mark of both

    # alpha 2 x (130 - 100); beta 1 x (130 - 130)
    assert summary(seeded, "strategy") == [("alpha", "USDT", D("60")), ("beta", "USDT", D("0"))]
    assert (
        position(seeded, "alpha", "binance", "BTCUSDT")["mark"],
        position(seeded, "alpha", "binance", "BTCUSDT")["unrealized_pnl"],
    ) == (D("130"), D("60"))


def test_a_group_with_a_position_that_has_no_mark_has_a_null_unrealized_pnl_as_get_position(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "sell", "3", "50", symbol="BNBUSDT")
    # no market data and, its fill removed behind the API's back (the triggers off), no fill: the
    # BNB position has no mark at all, the one state in which get_position's unrealized PnL is null
    seeded.execute("set session_replication_role = replica")
    seeded.execute(
        "delete from trading.trades where instrument_id ="
        " (select instrument_id from ref.instruments where symbol = 'BNBUSDT')"
    )
    seeded.execute("reset session_replication_role")

    got = position(seeded, "alpha", "binance", "BNBUSDT")
    assert (got["mark"], got["unrealized_pnl"]) == (None, None)
    # BTCUSDT is marked at its own fill (0); the strategy's sum is not the BTCUSDT part alone
    assert summary(seeded, "instrument") == [
        ("binance", "BNBUSDT", "USDT", None),
        ("binance", "BTCUSDT", "USDT", D("0")),
    ]
    assert summary(seeded, "strategy") == [("alpha", "USDT", None)]


def test_a_closed_position_adds_no_unrealized_pnl(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "sell", "2", "105")
    quote(seeded, RECENT_NOON, "119", "121")

    [row] = rows(seeded, "trading.pnl_summary", group_by="total")
    assert (row["trades"], row["realized_pnl"], row["unrealized_pnl"]) == (2, D("10"), D("0"))


def test_unrealized_pnl_is_summed_by_strategy_exchange_instrument_and_in_total(seeded):
    three_open_positions(seeded)

    assert summary(seeded, "strategy") == [("alpha", "USDT", D("35")), ("beta", "USDT", D("10"))]
    assert summary(seeded, "exchange") == [("binance", "USDT", D("35")), ("okx", "USDT", D("10"))]
    assert summary(seeded, "instrument") == [
        ("binance", "BNBUSDT", "USDT", D("15")),
        ("binance", "BTCUSDT", "USDT", D("20")),
        ("okx", "BTC-USDT-SWAP", "USDT", D("10")),
    ]
    assert summary(seeded, "total") == [("USDT", D("45"))]
    assert summary(seeded, "strategy,instrument") == [
        ("alpha", "binance", "BNBUSDT", "USDT", D("15")),
        ("alpha", "binance", "BTCUSDT", "USDT", D("20")),
        ("beta", "okx", "BTC-USDT-SWAP", "USDT", D("10")),
    ]


def test_by_day_the_unrealized_pnl_is_on_todays_row_only(seeded):
    # a round trip three days ago: a row of its own day, with nothing open then to mark
    trade(seeded, "buy", "1", "90", executed_at=THREE_DAYS_AGO)
    trade(seeded, "sell", "1", "95", executed_at=THREE_DAYS_AGO + timedelta(minutes=1))
    three_open_positions(seeded)

    assert summary(seeded, "day") == [(THREE_DAYS_AGO.date(), "USDT", None), (TODAY, "USDT", D("45"))]
    assert summary(seeded, "strategy,day") == [
        ("alpha", THREE_DAYS_AGO.date(), "USDT", None),
        ("alpha", TODAY, "USDT", D("35")),
        ("beta", TODAY, "USDT", D("10")),
    ]


def test_a_group_with_an_open_position_and_no_trade_in_the_period_has_a_row(seeded):
    trade(seeded, "buy", "2", "100", executed_at=THREE_DAYS_AGO)
    trade(seeded, "buy", "1", "100", strategy="beta")  # a trade in the period, of another strategy
    quote(seeded, RECENT_NOON, "109", "111")

    got = rows(seeded, "trading.pnl_summary", since=NOW - timedelta(days=1), group_by="strategy,day")

    assert [{k: r[k] for k in ("strategy_name", "day", *FACTS)} for r in got] == [
        {"strategy_name": "alpha", "day": TODAY, **ZEROS, "unrealized_pnl": D("20")},
        {
            "strategy_name": "beta",
            "day": TODAY,
            **ZEROS,
            "trades": 1,
            "volume": D("1"),
            "notional": D("100"),
            "unrealized_pnl": D("10"),
        },
    ]


def test_a_period_up_to_now_has_the_unrealized_pnl_of_now(seeded):
    trade(seeded, "buy", "2", "100", executed_at=THREE_DAYS_AGO)
    quote(seeded, RECENT_NOON, "109", "111")
    # [since, now()) is up to now (the dashboard's query): its positions are those of now
    [(until_now,)] = seeded.execute(
        "select unrealized_pnl from trading.pnl_summary(since => now() - interval '30 days', until => now())"
    ).fetchall()
    assert until_now == D("20")


def test_a_period_ending_in_the_past_has_no_unrealized_pnl(seeded):
    trade(seeded, "buy", "2", "100", executed_at=THREE_DAYS_AGO)
    quote(seeded, RECENT_NOON, "109", "111")

    assert summary(seeded, "strategy", until=NOW - timedelta(hours=1)) == [("alpha", "USDT", None)]
    # without a trade in a past period, the open position adds no row
    assert summary(seeded, "strategy", since=NOW - timedelta(days=1), until=NOW - timedelta(hours=1)) == []
    # nor to a period that starts after now: its positions are not known yet
    assert summary(seeded, "strategy", since=NOW + timedelta(days=1)) == []


def test_unrealized_pnl_in_usdt_and_in_btc_are_kept_apart(seeded):
    list_binance_eth_btc(seeded)
    trade(seeded, "buy", "2", "100")
    trade(seeded, "buy", "10", "0.05", symbol="ETHBTC")
    quote(seeded, RECENT_NOON, "109", "111")
    quote(seeded, RECENT_NOON, "0.051", "0.053", symbol="ETHBTC")

    # 10 x (0.052 - 0.05) BTC and 2 x (110 - 100) USDT
    assert summary(seeded, "strategy") == [("alpha", "BTC", D("0.02")), ("alpha", "USDT", D("20"))]
    assert summary(seeded, "total") == [("BTC", D("0.02")), ("USDT", D("20"))]


def bnb_bought_by_alice_at_600_then_by_bob_at_700(conn):
    """BNB has no market data: alice's fill at 600 is hers, bob's later one at 700 is his private price."""
    bought = place(conn, "buy", "1", "600", strategy="alice-arb", symbol="BNBUSDT")
    fill(conn, bought, "1", "600", executed_at=NOW - timedelta(minutes=2))
    bought = place(conn, "buy", "1", "700", strategy="bob-arb", symbol="BNBUSDT")
    fill(conn, bought, "1", "700", executed_at=NOW - timedelta(minutes=1))


def test_a_trader_is_never_marked_at_another_traders_private_fill(desks, auth_db):
    bnb_bought_by_alice_at_600_then_by_bob_at_700(auth_db)

    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        mine = summary(auth_db, "strategy")
        marked = position(auth_db, "alice-arb", "binance", "BNBUSDT")["mark"]
    # at her own 600, not at bob's 700 (which made it 100)
    assert (mine, marked) == ([("alice-arb", "USDT", D("0"))], D("600"))
    # unscoped (the engine), every fill is seen, as get_position sees it there
    assert summary(auth_db, "strategy") == [("alice-arb", "USDT", D("100")), ("bob-arb", "USDT", D("0"))]


def test_an_unrealized_pnl_too_large_for_numeric_is_22s09_as_in_get_position(seeded):
    trade(seeded, "buy", "3", "100")
    quote(seeded, RECENT_NOON, "4e131071", "4e131071")  # within numeric, 3 x it is not

    with pytest.raises(psycopg.errors.DataError) as caught:
        rows(seeded, "trading.pnl_summary")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "unrealized PnL (quantity 3.000e+00 x multiplier 1.000e+00 x (mark 4.000e+131071 - entry 1.000e+02))"
        " is too large a number",
    )


def test_the_pnl_command_shows_the_unrealized_pnl_as_its_last_column(seeded, seeded_url):
    trade(seeded, "buy", "2", "100", executed_at=THREE_DAYS_AGO)
    quote(seeded, RECENT_NOON, "109", "111")

    assert invoke(seeded_url, "pnl").output.splitlines() == [
        "strategy  quote  trades  volume  notional  fees  gross pnl  funding  net pnl  unrealized pnl",
        "--------  -----  ------  ------  --------  ----  ---------  -------  -------  --------------",
        "alpha     USDT        1       2    200.00  0.00       0.00     0.00     0.00           20.00",
    ]
    # a period in the past: the column is there, empty (its cells padded to the header's width)
    past = invoke(seeded_url, "pnl", "--until", f"{NOW - timedelta(hours=1):%Y-%m-%dT%H:%M:%S}Z")
    assert (
        past.output.splitlines()[2]
        == "alpha     USDT        1       2    200.00  0.00       0.00     0.00     0.00" + " " * 16
    )


def test_the_position_managers_pnl_rows_carry_the_unrealized_pnl(seeded, config: ManagerConfig):
    trade(seeded, "buy", "2", "100", executed_at=THREE_DAYS_AGO)
    quote(seeded, RECENT_NOON, "109", "111")

    async def run():
        async with PersistentPositionManager(config) as positions:
            return (
                await positions.pnl_summary(strategy="alpha"),
                await positions.pnl_summary(strategy="alpha", until=NOW - timedelta(hours=1)),
            )

    now, past = asyncio.run(run())
    assert [(r.strategy_name, r.trades, r.realized_pnl, r.unrealized_pnl) for r in now] == [
        ("alpha", 1, D("0"), D("20"))
    ]
    assert [(r.strategy_name, r.unrealized_pnl) for r in past] == [("alpha", None)]
