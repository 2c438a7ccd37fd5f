"""A person at psql or pgcli calling the SQL API as they would type it: literals, not bound
parameters (an integer typed as 1, a text typed as '{email}'), named and positional notation,
optional arguments left out. Each statement here is the text such a person types, sent as is."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from notify_servers import queue
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from trading_helpers import order, place

# the old signature of trading.asset_price, as functions/ created it before it took an integer
OLD_ASSET_PRICE = """
create function trading.asset_price(p_exchange_id smallint, p_asset text, p_quote_asset text)
    returns numeric stable security definer set search_path = '' language sql
as $$ select internal.asset_price_as(p_exchange_id, p_asset, p_quote_asset, false, null) $$
"""


def _quote_btc(conn: psycopg.Connection) -> None:
    """A quote of binance BTCUSDT now: its mark is the mid, 67000.5."""
    conn.execute(
        "insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size)"
        " select instrument_id, now(), 67000, 1, 67001, 1 from ref.instruments where symbol = 'BTCUSDT'"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "select trading.asset_price(1, 'BTC', 'USDT')",
        "select trading.asset_price('1', 'BTC', 'USDT')",
        "select trading.asset_price(p_exchange_id => 1, p_asset => 'BTC', p_quote_asset => 'USDT')",
    ],
)
def test_asset_price_takes_an_exchange_id_typed_as_a_plain_number(
    seeded: psycopg.Connection, statement: str
) -> None:
    # why it matters: the exchange id was a smallint argument, and an integer literal does not
    # turn into one implicitly: psql answered 42883 "function does not exist"
    _quote_btc(seeded)
    assert seeded.execute("select exchange_id from ref.exchanges where code = 'binance'").fetchone() == (1,)
    assert seeded.execute(statement).fetchone() == (Decimal("67000.500000000000"),)


def test_asset_price_of_an_exchange_id_no_smallint_holds_prefers_no_exchange(
    seeded: psycopg.Connection,
) -> None:
    _quote_btc(seeded)
    assert seeded.execute("select trading.asset_price(100000, 'BTC', 'USDT')").fetchone() == (
        Decimal("67000.500000000000"),
    )


def test_a_migrated_database_that_had_the_smallint_asset_price_keeps_only_the_new_one(
    seeded: psycopg.Connection, db_url: str, project_settings: Settings
) -> None:
    # why: functions/ is re-applied over an upgraded database; a lingering smallint overload
    # would make a quoted id ('1') ambiguous and the grant by name fail
    seeded.execute("drop function trading.asset_price(integer, text, text)")
    seeded.execute(OLD_ASSET_PRICE)
    migrate(db_url, project_settings, echo=lambda line: None)
    signatures = seeded.execute(
        "select p.oid::regprocedure::text from pg_proc p where p.oid::regprocedure::text like 'trading.asset_price(%'"
    ).fetchall()
    assert signatures == [("trading.asset_price(integer,text,text)",)]
    _quote_btc(seeded)
    assert seeded.execute("select trading.asset_price('1', 'BTC', 'USDT')").fetchone() == (
        Decimal("67000.500000000000"),
    )


@pytest.mark.parametrize(
    "call_text", ["trading.reject_order(order_id => {id})", "trading.reject_order({id})"]
)
def test_reject_order_without_a_reason_rejects_the_order_as_cancel_and_expire_do(
    seeded: psycopg.Connection, call_text: str
) -> None:
    # why it matters: reject_order alone had no default for reason, so the call README's table
    # writes like cancel_order's was 42883 "function does not exist"
    order_id = place(seeded, "buy", "0.01", "50000")
    seeded.execute(f"select {call_text.format(id=order_id)}")
    rejected = order(seeded, order_id)
    assert (rejected["status"], rejected["status_reason"]) == ("rejected", None)


def test_reject_order_with_a_reason_keeps_it(seeded: psycopg.Connection) -> None:
    order_id = place(seeded, "buy", "0.01", "50000")
    seeded.execute(f"select trading.reject_order(order_id => {order_id}, reason => 'insufficient balance')")
    rejected = order(seeded, order_id)
    assert (rejected["status"], rejected["status_reason"]) == ("rejected", "insufficient balance")


@pytest.mark.parametrize(
    ("channels", "shown"), [("'{Email}'", "{Email}"), ("'{sms}'", "{sms}"), ("null", "null")]
)
def test_claiming_notifications_of_channels_that_are_none_is_invalid_argument(
    seeded: psycopg.Connection, channels: str, shown: str
) -> None:
    # why it matters: the channels were matched as text, so '{Email}' claimed nothing while an
    # email notification waited: in psql the outbox looked empty
    queue(seeded, "email")
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute(f"select * from monitor.claim_notifications(worker => 'me', channels => {channels})")
    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary == (
        f"channels must be a list of email, slack, discord, webhook, got {shown}"
    )
    assert (
        caught.value.diag.message_hint == "Name the channels in lower case, e.g. channels => '{email,slack}'."
    )
    assert seeded.execute("select status from monitor.notifications").fetchall() == [("pending",)]


@pytest.mark.parametrize("channels", ["'{Email}'", "'{sms}'", "null"])
def test_the_next_due_time_of_channels_that_are_none_is_invalid_argument(
    seeded: psycopg.Connection, channels: str
) -> None:
    queue(seeded, "email")
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute(f"select monitor.next_notification_due(channels => {channels})")
    assert caught.value.sqlstate == "22S09"


def test_claiming_notifications_of_real_channels_still_claims_them(seeded: psycopg.Connection) -> None:
    queue(seeded, "email")
    claimed = seeded.execute(
        "select notification_id, channel::text from monitor.claim_notifications(worker => 'me', channels => '{email}')"
    ).fetchall()
    assert claimed == [(1, "email")]
    assert seeded.execute("select monitor.next_notification_due('{}')").fetchone() == (None,)
