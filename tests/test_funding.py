"""trading.record_funding: a perpetual's funding payment, and what it is refused for."""

import threading
from datetime import UTC, datetime
from decimal import Decimal as D

import psycopg
import pytest

from trading_helpers import call, waits_for_a_lock

SWAP_TO_FUTURES = (
    "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
    " quote_asset => 'USDT', market_type => 'futures', tick_size => 0.1, lot_size => 1,"
    " min_notional => 0, multiplier => 0.01)"
)


def test_funding_waiting_on_a_change_of_the_market_type_is_refused_for_the_new_type(seeded, seeded_url):
    failures: list[psycopg.Error] = []

    def record(conn: psycopg.Connection) -> None:
        try:
            call(
                conn,
                "trading.record_funding",
                strategy="alpha",
                exchange="okx",
                symbol="BTC-USDT-SWAP",
                amount=D("1"),
                paid_at=datetime.now(UTC),
            )
        except psycopg.Error as exc:  # asserted on below
            failures.append(exc)

    with psycopg.connect(seeded_url) as changer, psycopg.connect(seeded_url, autocommit=True) as caller:
        changer.execute(SWAP_TO_FUTURES)  # not committed yet: the swap has no funding, so it may change
        thread = threading.Thread(target=record, args=(caller,))
        thread.start()
        assert waits_for_a_lock(seeded, caller.info.backend_pid)
        changer.commit()
        thread.join(timeout=30)
    assert [(e.sqlstate, e.diag.message_primary) for e in failures] == [
        ("22S10", "funding applies to perpetuals only; BTC-USDT-SWAP on okx is a futures instrument")
    ]
    assert seeded.execute("select count(*) from trading.funding_payments").fetchone() == (0,)


# bug: paid_at defaulted to now(), so a call retried after its reply was lost (the connection
# dropped after the commit) was a second payment at another time: the funding counted twice
def test_a_funding_payment_without_paid_at_is_refused_and_writes_nothing(seeded):
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "trading.record_funding", strategy="alpha", exchange="okx", symbol="BTC-USDT-SWAP",
             amount=D("-1.25"))  # fmt: skip
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "paid_at is required: the exchange's funding time of the payment",
    )
    assert seeded.execute("select count(*) from trading.funding_payments").fetchone() == (0,)
