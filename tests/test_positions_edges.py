"""Edges of funding, positions and the PnL rollups: funding on a flat position, a funding payment
delivered twice at once, marks of zero, windows that straddle UTC midnight, a trader's scope."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from trading_helpers import call, position, rows, trade, waits_for_a_lock

# why relative: a fill may be at most a day ahead of now, and trades partitions exist around now
DAY = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}
FUNDING = (
    "select trading.record_funding(strategy => 'alpha', exchange => 'okx', symbol => 'BTC-USDT-SWAP',"
    " amount => %s, paid_at => %s)"
)


def test_funding_on_a_closed_position_adds_to_its_realized_pnl_and_leaves_it_flat(seeded):
    trade(seeded, "buy", "10", "50000", executed_at=DAY + timedelta(hours=1), **SWAP)
    trade(seeded, "sell", "10", "50100", executed_at=DAY + timedelta(hours=2), **SWAP)
    call(
        seeded,
        "trading.record_funding",
        strategy="alpha",
        amount=D("-0.7"),
        paid_at=DAY + timedelta(hours=8),
        **SWAP,
    )
    pos = position(seeded, "alpha", mark_price=D("1"), **SWAP)
    # 10 contracts x 0.01 x 100 realized, then 0.7 of funding paid
    assert (pos["quantity"], pos["avg_entry_price"], pos["realized_pnl_gross"], pos["funding"]) == (
        D("0"),
        None,
        D("10"),
        D("-0.7"),
    )
    assert (pos["realized_pnl"], pos["unrealized_pnl"]) == (D("9.3"), D("0"))
    assert rows(seeded, "ops.check_invariants") == []


def test_a_funding_payment_delivered_twice_at_once_is_recorded_once_under_one_id(seeded, seeded_url):
    paid_at = DAY + timedelta(hours=16)
    second: list[object] = []

    def record_again(conn: psycopg.Connection) -> None:
        second.append(conn.execute(FUNDING, [D("1.5"), paid_at]).fetchone()[0])

    with psycopg.connect(seeded_url) as first, psycopg.connect(seeded_url, autocommit=True) as other:
        first_id = first.execute(FUNDING, [D("1.50"), paid_at]).fetchone()[0]  # not committed yet
        thread = threading.Thread(target=record_again, args=(other,))
        thread.start()
        assert waits_for_a_lock(seeded, other.info.backend_pid)
        first.commit()
        thread.join(timeout=30)
    assert second == [first_id]
    assert seeded.execute("select count(*), sum(amount) from trading.funding_payments").fetchone() == (
        1,
        D("1.50"),
    )
    assert position(seeded, "alpha", **SWAP)["funding"] == D("1.50")
    assert rows(seeded, "ops.check_invariants") == []


@pytest.mark.parametrize("mark", [D("0"), D("-1")])
def test_get_position_refuses_a_mark_of_zero_or_below_as_an_invalid_price(seeded, mark):
    trade(seeded, "buy", "10", "50000", **SWAP)
    with pytest.raises(psycopg.errors.DataError) as caught:
        position(seeded, "alpha", mark_price=mark, **SWAP)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S02",
        f"mark price must be positive and finite, got {mark}",
    )


def test_pnl_summary_of_a_window_across_midnights_counts_each_fill_and_funding_once_by_utc_day(seeded):
    # before the window, in its partial first hour, its whole hours, a whole day, its partial last hour
    trade(seeded, "buy", "10", "50000", executed_at=DAY + timedelta(hours=22, minutes=10), **SWAP)
    trade(seeded, "sell", "2", "50100", executed_at=DAY + timedelta(hours=22, minutes=40), **SWAP)
    trade(seeded, "sell", "2", "50200", executed_at=DAY + timedelta(hours=23, minutes=59), **SWAP)
    trade(seeded, "sell", "2", "50300", executed_at=DAY + timedelta(days=1, hours=12), **SWAP)
    trade(seeded, "sell", "2", "49900", executed_at=DAY + timedelta(days=2, minutes=30), **SWAP)
    trade(seeded, "sell", "2", "50000", executed_at=DAY + timedelta(days=2, hours=1, minutes=20), **SWAP)
    for hours, amount in ((23, "-1"), (24, "-2"), (48, "-4"), (49, "-8")):
        call(
            seeded,
            "trading.record_funding",
            strategy="alpha",
            amount=D(amount),
            paid_at=DAY + timedelta(hours=hours),
            **SWAP,
        )
    summary = rows(
        seeded,
        "trading.pnl_summary",
        since=DAY + timedelta(hours=22, minutes=30),
        until=DAY + timedelta(days=2, hours=1, minutes=10),
        group_by="day",
    )
    # each sell of 2 contracts x 0.01 realizes 0.02 x (price - 50000); the 22:10 buy is before
    # since and the 01:20 sell after until; the 01:00 funding is inside, in the last partial hour
    assert [
        (r["day"], r["trades"], r["realized_pnl_gross"], r["funding"], r["realized_pnl"]) for r in summary
    ] == [
        (DAY.date(), 2, D("6"), D("-1"), D("5")),
        ((DAY + timedelta(days=1)).date(), 1, D("6"), D("-2"), D("4")),
        ((DAY + timedelta(days=2)).date(), 1, D("-2"), D("-12"), D("-14")),
    ]


def test_pnl_summary_in_a_traders_session_sums_only_their_strategies_funding(auth_db):
    users = {name: make_user(auth_db, name, "trader") for name in ("alice", "bob")}
    for name, user_id in users.items():
        call(auth_db, "trading.create_strategy", name=f"{name}-arb", owner_user_id=user_id)
        call(
            auth_db,
            "trading.record_funding",
            strategy=f"{name}-arb",
            amount=D(len(name)),
            paid_at=DAY,
            **SWAP,
        )
    with acting_as(auth_db, "spreadedge_app", users["alice"]):
        summary = rows(auth_db, "trading.pnl_summary", group_by="strategy")
    assert [(r["strategy_name"], r["trades"], r["funding"], r["realized_pnl"]) for r in summary] == [
        ("alice-arb", 0, D("5"), D("5"))
    ]
