"""ref.upsert_instrument while trading goes on: a symbol listed again in another case, and the
messages that refuse a listing's rules."""

from decimal import Decimal as D
from typing import Any

import psycopg
import pytest

from trading_helpers import call, expect_refusal, fill, order, place, race

ETHUSDT = {
    "exchange": "binance",
    "symbol": "ETHUSDT",
    "base_asset": "ETH",
    "quote_asset": "USDT",
    "market_type": "spot",
    "tick_size": D("0.01"),
    "lot_size": D("0.0001"),
}
# binance BTCUSDT exactly as the seed lists it
BTCUSDT = ETHUSDT | {
    "symbol": "BTCUSDT",
    "base_asset": "BTC",
    "min_notional": D("5"),
    "multiplier": D("1"),
}


def upsert(conn: psycopg.Connection, **changes: Any) -> int:
    return call(conn, "ref.upsert_instrument", **(ETHUSDT | changes))


def test_a_new_symbol_differing_only_in_case_from_a_listed_one_is_an_invalid_argument(seeded):
    # btcusdt would be a second binance BTC/USDT, outside the risk limits scoped to BTCUSDT
    refused = expect_refusal(
        seeded,
        "22S09",
        'symbol "btcusdt" differs only in case from "BTCUSDT", listed on binance',
        lambda: upsert(seeded, symbol="btcusdt", base_asset="BTC"),
    )
    assert refused.diag.message_hint == "Symbols are matched exactly: give BTCUSDT as the exchange lists it."


def test_a_symbol_in_another_case_on_another_exchange_is_listed(seeded):
    # only the exchange's own symbols count: kraken lists nothing called BTCUSDT
    assert upsert(seeded, exchange="kraken", symbol="btcusdt", base_asset="BTC") == 5


def test_two_listings_of_one_new_symbol_in_two_cases_at_once_list_only_the_first(seeded, seeded_url):
    _, second = race(
        seeded,
        seeded_url,
        lambda conn: upsert(conn),
        lambda conn: upsert(conn, symbol="ethusdt"),
        wait_event="advisory",
    )
    assert isinstance(second, psycopg.Error)
    assert (second.sqlstate, second.diag.message_primary) == (
        "22S09",
        'symbol "ethusdt" differs only in case from "ETHUSDT", listed on binance',
    )
    assert seeded.execute(
        "select symbol from ref.instruments where lower(symbol) = 'ethusdt'"
    ).fetchall() == [("ETHUSDT",)]


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({"taker_fee": D("5")}, "taker fee rate must be a fraction between -1 and 1, got 5"),
        (
            {"maker_fee": D("-1e131071")},
            "maker fee rate must be a fraction between -1 and 1, got -1.000e+131071",
        ),
    ],
    ids=["taker-fee-alone", "huge-maker-fee"],
)
def test_a_fee_rate_out_of_range_is_refused_naming_that_rate_alone(seeded, rates, message):
    # a null rate keeps the listed one: the message read "got maker <NULL> and taker 5", and a
    # huge rate was shown with all its 131,072 digits
    expect_refusal(seeded, "22S09", message, lambda: upsert(seeded, **rates))


def test_a_huge_multiplier_of_a_spot_instrument_is_refused_in_scientific_notation(seeded):
    expect_refusal(
        seeded,
        "22S09",
        "multiplier of a spot instrument must be 1, got 1.000e+131071",
        lambda: upsert(seeded, multiplier=D("1e131071")),
    )


@pytest.mark.parametrize(
    ("listing", "message"),
    [
        (
            {"quote_asset": None},
            'base and quote assets must be alphanumeric codes of at most 32 characters, got "ETH" and null',
        ),
        (
            {"market_type": None},
            "market type null is not one of spot, margin, futures, perpetual, option",
        ),
    ],
    ids=["null-quote-asset", "null-market-type"],
)
def test_a_missing_asset_or_market_type_is_refused_as_null(seeded, listing, message):
    # it read "<NULL>", as if a code of that name had been given
    expect_refusal(seeded, "22S09", message, lambda: upsert(seeded, **listing))


def test_an_upsert_that_changes_nothing_holds_up_no_placement_or_fill(seeded, seeded_url):
    # a sync job re-upserting every listing in one transaction held each row FOR UPDATE to its
    # commit: every placement and fill of them waited, and a spread trade could deadlock with it
    order_id = place(seeded, "buy", "2", "100")
    with psycopg.connect(seeded_url) as sync, psycopg.connect(seeded_url, autocommit=True) as engine:
        assert call(sync, "ref.upsert_instrument", **BTCUSDT) == 1
        engine.execute("set lock_timeout = '2s'")
        placed = place(engine, "buy", "1", "100")
        filled = fill(engine, order_id, "1", "100")
        sync.commit()
    assert (order(seeded, placed)["status"], order(seeded, order_id)["filled_quantity"], filled) == (
        "new",
        D("1"),
        1,
    )
    assert seeded.execute(
        "select count(*) from audit.log where table_name = 'ref.instruments' and operation = 'UPDATE'"
    ).fetchone() == (0,)


def test_an_upsert_that_changes_a_rule_still_waits_for_a_placement_in_flight(seeded, seeded_url):
    # the lock that keeps a placement checked against the rules in force when it commits
    _, result = race(
        seeded,
        seeded_url,
        lambda conn: place(conn, "buy", "1", "100.01"),
        lambda conn: call(conn, "ref.upsert_instrument", **(BTCUSDT | {"tick_size": D("0.1")})),
    )
    assert result == 1
    assert seeded.execute("select tick_size from ref.instruments where instrument_id = 1").fetchone() == (
        D("0.1"),
    )
