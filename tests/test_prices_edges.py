"""Edges of asset prices and strategy creation: delisted pairs, and a strategy name another owner
already holds."""

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from market_helpers import RECENT_NOON, instrument_id, quote
from trading_helpers import call, list_okx_btc_spot, list_spot, trade

# --- asset prices ---------------------------------------------------------------------------------


def delist(conn: psycopg.Connection, exchange: str, symbol: str) -> None:
    # why an UPDATE: delisting is setting is_active false (schema/60_market.sql); no function does it
    conn.execute(
        "update ref.instruments set is_active = false where instrument_id = %s",
        [instrument_id(conn, exchange, symbol)],
    )


def test_a_third_currency_fee_is_priced_from_a_listed_pair_before_a_delisted_one_on_the_fill_exchange(seeded):
    # okx BTC-USDT was delisted when BTC stood at 50001; binance quotes it now at 60001
    list_spot(seeded, "okx", "ETH-USDT", base_asset="ETH")
    list_okx_btc_spot(seeded)
    quote(seeded, RECENT_NOON - timedelta(hours=20), "50000", "50002", exchange="okx", symbol="BTC-USDT")
    delist(seeded, "okx", "BTC-USDT")
    quote(seeded, RECENT_NOON, "60000", "60002")
    trade_id = trade(
        seeded,
        "buy",
        "1",
        "3000",
        exchange="okx",
        symbol="ETH-USDT",
        fee=Decimal("0.0001"),
        fee_currency="BTC",
    )
    fee_quote = seeded.execute(
        "select fee_quote from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()[0]
    assert fee_quote == Decimal("6.0001")


def test_an_asset_is_priced_from_a_listed_perpetual_before_a_delisted_spot_pair(seeded):
    quote(seeded, RECENT_NOON - timedelta(hours=20), "50000", "50002")
    delist(seeded, "binance", "BTCUSDT")
    quote(seeded, RECENT_NOON, "61000", "61002", exchange="okx", symbol="BTC-USDT-SWAP")
    price = seeded.execute("select trading.asset_price(1::smallint, 'BTC', 'USDT')").fetchone()[0]
    assert price == Decimal("61001")


def test_an_asset_priced_only_by_a_delisted_pair_is_priced_at_its_last_mark(seeded):
    quote(seeded, RECENT_NOON, "50000", "50002")
    delist(seeded, "binance", "BTCUSDT")
    price = seeded.execute("select trading.asset_price(1::smallint, 'BTC', 'USDT')").fetchone()[0]
    assert price == Decimal("50001")


# --- create_strategy for a given owner ------------------------------------------------------------


@pytest.mark.parametrize("existing_owner", ["platform", "another user"])
def test_creating_a_strategy_for_a_user_under_a_name_another_owner_holds_is_refused_with_23S06(
    auth_db, existing_owner
):
    vic = make_user(auth_db, "vic")
    if existing_owner == "another user":
        call(auth_db, "trading.create_strategy", name="gamma", owner_user_id=make_user(auth_db, "bob"))
    else:
        call(auth_db, "trading.create_strategy", name="gamma")
    with pytest.raises(psycopg.Error) as caught:
        call(auth_db, "trading.create_strategy", name="gamma", owner_user_id=vic)
    assert caught.value.sqlstate == "23S06"
    owners = auth_db.execute(
        "select count(*) from trading.strategies where owner_user_id = %s", [vic]
    ).fetchone()
    assert owners == (0,)


def test_an_admin_creating_a_strategy_for_a_user_under_a_name_another_user_holds_is_refused(auth_db):
    root = make_user(auth_db, "root", "admin")
    bob = make_user(auth_db, "bob")
    vic = make_user(auth_db, "vic")
    call(auth_db, "trading.create_strategy", name="gamma", owner_user_id=bob)
    with acting_as(auth_db, "spreadedge_app", root), pytest.raises(psycopg.Error) as caught:
        call(auth_db, "trading.create_strategy", name="gamma", owner_user_id=vic)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S06",
        f'strategy "gamma" exists and belongs to user {bob}, not to user {vic}',
    )


def test_creating_a_strategy_again_for_its_owner_returns_its_id(auth_db):
    vic = make_user(auth_db, "vic")
    first = call(auth_db, "trading.create_strategy", name="gamma", owner_user_id=vic)
    assert call(auth_db, "trading.create_strategy", name="gamma", owner_user_id=vic) == first
