"""A fill's fee is valued as the strategy's owner sees the market, never at another trader's
private fill; and what \\df+ says a fill writes."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from auth_helpers import acting_as
from trading_helpers import fill, place

NOW = datetime.now(UTC).replace(microsecond=0)


def test_record_fill_is_described_as_writing_both_pnl_rollups(db):
    # \df+ said a fill wrote the daily rollup only; it writes the hourly one pnl_summary reads too
    described = db.execute(
        "select obj_description('trading.record_fill(bigint, text, numeric, numeric, numeric, text,"
        " timestamptz, numeric)'::regprocedure, 'pg_proc')"
    ).fetchone()[0]
    assert "the hourly and daily PnL rollups" in described


def test_an_unscoped_fill_never_values_a_traders_fee_at_another_traders_private_fill(desks, auth_db):
    # BNB has no market data; bob's BNB fill at 312.34 is his private price
    bought = place(auth_db, "buy", "1", "312.3", strategy="bob-arb", symbol="BNBUSDT")
    fill(auth_db, bought, "1", "312.34", executed_at=NOW - timedelta(minutes=1))
    # the engine (unscoped) records alice's fill with a BNB fee and no fee_quote: valued at bob's
    # fill, alice would read 3.1234 as its fee_quote, bob's price times 0.01
    order_id = place(auth_db, "buy", "0.01", "60000", strategy="alice-arb")
    with pytest.raises(psycopg.errors.DataError) as caught:
        fill(auth_db, order_id, "0.01", "60000", fee=Decimal("0.01"), fee_currency="BNB")
    assert caught.value.sqlstate == "22S08"
    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        assert auth_db.execute("select fee_quote from trading.trade_history").fetchall() == []
