"""ops.check_invariants and `spreadedge check`, second mutation round: each test here fails with a
small, plausible slip in the check (a dropped condition or compared column, a join narrowed, a
time zone lost, a branch swapped) that the suite before it let through.

Mutation run (functions/85_ops_invariants.sql, python/spreadedge/ops/invariants.py and the check
command in python/spreadedge/cli_ops.py; the first round is in tests/test_ops_mutants.py): 54
mutants tried, 9 caught by the suite, 45 survived; of these 4 were equivalent and 41 were holes,
each closed by a test below. Equivalent: dropping "p.strategy_id is null" or "t.taken_at is null"
from the where of position_fold or snapshot_total (a missing position row or total row compares
its nulls with the fold's or the sums' non-null values, so the row is reported anyway: the tests
of those reports instead kill the mutants that drop their own message branch); order_fills'
"is distinct from" as "<>" and its filled quantity compared without coalesce (the check
(filled_quantity = 0) = (avg_fill_price is null) on trading.orders leaves no order whose other
comparison does not report it).

Corruptions are written behind the API's back with session_replication_role = replica (triggers
and foreign keys skipped; check constraints still hold), as tests/test_ops_mutants.py does; only
the invariant under test is asserted, not the audit checks' own reports of such a write.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, instrument_id
from spreadedge.ops import invariants
from test_invariants import _audited_gadgets, run_check, violations
from test_ops_mutants import behind_the_log, reported
from trading_helpers import call, fill, place, trade

HOUR = f"{RECENT_NOON:%Y-%m-%dT%H:%M:%SZ}"
SWAP = {"strategy": "beta", "exchange": "okx", "symbol": "BTC-USDT-SWAP"}


def strategy_id(conn: psycopg.Connection, name: str) -> int:
    return conn.execute("select strategy_id from trading.strategies where name = %s", [name]).fetchone()[0]


def last_audit_id(conn: psycopg.Connection) -> int:
    return conn.execute("select max(audit_id) from audit.log").fetchone()[0]


# -- position_fold, position_instrument, trade_realized -------------------------------------------


def test_a_position_paid_funding_before_any_trade_is_sound(seeded):
    # record_funding makes the position row with its first fact: a funding payment with no trade
    # is a position, not one the fold has no facts for
    call(seeded, "trading.record_funding", **SWAP, amount=Decimal("-0.42"), paid_at=RECENT_NOON)
    assert violations(seeded) == []


def test_a_traded_position_whose_row_is_gone_is_reported_as_position_fold(seeded):
    trade(seeded, "buy", "1", "100")
    key = {"strategy_id": strategy_id(seeded, "alpha"), "instrument_id": instrument_id(seeded)}
    behind_the_log(seeded, "delete from trading.positions where strategy_id = %s", [key["strategy_id"]])
    assert reported(seeded, "position_fold") == [
        (key, "trades or funding exist but the position row does not")
    ]


@pytest.mark.parametrize(
    ("column", "detail"),
    [
        # one buy of 1 at 100 with a fee of 0.1 USDT: fees 0.1, one trade
        ("fees_paid", "fees_paid: 1.1 -> 0.1 (stored -> fold of the trades and funding)"),
        ("trade_count", "trade_count: 2 -> 1 (stored -> fold of the trades and funding)"),
    ],
)
def test_a_position_count_or_fee_total_edited_is_reported_as_position_fold(seeded, column, detail):
    trade(seeded, "buy", "1", "100", fee="0.1")
    key = {"strategy_id": strategy_id(seeded, "alpha"), "instrument_id": instrument_id(seeded)}
    behind_the_log(
        seeded,
        psycopg.sql.SQL("update trading.positions set {0} = {0} + 1").format(psycopg.sql.Identifier(column)),
    )
    assert reported(seeded, "position_fold") == [(key, detail)]


def test_a_position_quote_asset_that_is_not_its_instruments_is_reported_as_position_instrument(seeded):
    trade(seeded, "buy", "1", "100")
    key = {"strategy_id": strategy_id(seeded, "alpha"), "instrument_id": instrument_id(seeded)}
    behind_the_log(seeded, "update trading.positions set quote_asset = 'USD'")
    assert reported(seeded, "position_instrument") == [
        (key, 'quote_asset: "USD" -> "USDT" (stored -> ref.instruments)')
    ]


def test_two_strategies_trading_one_instrument_are_folded_apart(seeded):
    # alpha buys 1 at 100, beta opens a short of 1 at 110, alpha sells its 1 at 120: beta's sell
    # closes nothing of alpha's long, and realizes nothing
    trade(seeded, "buy", "1", "100")
    trade(seeded, "sell", "1", "110", strategy="beta")
    trade(seeded, "sell", "1", "120")
    assert violations(seeded) == []


# -- trade_fee ------------------------------------------------------------------------------------


def test_a_zero_fee_in_a_third_currency_valued_at_something_is_reported_as_trade_fee(seeded):
    trade_id = trade(seeded, "buy", "1", "100", fee="0", fee_currency="BNB")
    behind_the_log(seeded, "update trading.trades set fee_quote = 0.5 where trade_id = %s", [trade_id])
    # no fee is worth nothing, whatever its currency
    assert reported(seeded, "trade_fee") == [
        ({"trade_id": trade_id}, "fee_quote 0.5, but a fee of 0 BNB on a fill at 100 is worth 0.0 USDT")
    ]


def test_a_rebate_in_a_third_currency_valued_as_a_rebate_is_sound(seeded):
    trade(seeded, "buy", "1", "100", fee="-0.01", fee_currency="BNB", fee_quote=Decimal("-3.1"))
    assert violations(seeded) == []


# -- trade_order, trade_keys ----------------------------------------------------------------------


def test_a_trade_whose_order_key_is_of_another_instrument_is_reported_as_trade_order(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100")
    alpha, btc, bnb = (
        strategy_id(seeded, "alpha"),
        instrument_id(seeded),
        instrument_id(seeded, symbol="BNBUSDT"),
    )
    behind_the_log(
        seeded, "update trading.order_keys set instrument_id = %s where order_id = %s", [bnb, order_id]
    )
    assert reported(seeded, "trade_order") == [
        (
            {"trade_id": trade_id},
            f"of strategy {alpha}, instrument {btc}, but its order {order_id} is of strategy {alpha}, instrument {bnb}",
        )
    ]


def test_a_trade_whose_order_has_no_key_row_is_reported_as_trade_order(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100")
    behind_the_log(seeded, "delete from trading.order_keys where order_id = %s", [order_id])
    assert reported(seeded, "trade_order") == [
        ({"trade_id": trade_id}, f"its order {order_id} has no trading.order_keys row")
    ]


def test_a_trade_key_row_of_another_exchange_trade_id_is_reported_as_trade_keys(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="t-1")
    behind_the_log(
        seeded, "update trading.trade_keys set exchange_trade_id = 't-2' where trade_id = %s", [trade_id]
    )
    (executed_at,) = seeded.execute(
        "select executed_at::text from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()
    btc = instrument_id(seeded)
    assert reported(seeded, "trade_keys") == [
        (
            {"trade_id": trade_id},
            f"key row says instrument {btc}, buy t-2 / {executed_at}; the trade instrument {btc}, buy t-1 / {executed_at}",
        )
    ]


def test_a_trade_key_row_without_its_trade_is_reported_as_trade_keys(seeded):
    behind_the_log(
        seeded,
        "insert into trading.trade_keys (exchange_trade_id, trade_id, executed_at, instrument_id, side)"
        " values ('ghost', 999999, %s, %s, 'buy')",
        [RECENT_NOON, instrument_id(seeded)],
    )
    assert reported(seeded, "trade_keys") == [({"trade_id": 999999}, "trading.trade_keys row has no trade")]


# -- order_fills, order_status, order_keys, order_events ------------------------------------------


def test_an_order_filled_at_an_average_that_rounds_on_a_long_tail_is_sound(seeded):
    # 0.1 at 100, then 0.01 at 99.5: 10.995 / 0.11 = 99.954545...45|4545..., rounded as record_fill
    # rounds it (computed far past 18 places, then to 18): ...545. Divided at the scale of its
    # operands alone (19 places: ...5455) and then rounded to 18, it would read ...546
    order_id = place(seeded, "buy", "0.11", "100")
    fill(seeded, order_id, "0.1", "100")
    fill(seeded, order_id, "0.01", "99.5")
    assert seeded.execute("select avg_fill_price from trading.orders").fetchone() == (
        Decimal("99.954545454545454545"),
    )
    assert violations(seeded) == []


@pytest.mark.parametrize(
    ("quantity", "filled", "status"),
    [
        ("2", "1", "filled"),  # filled, but only half of it
        ("1", "1", "new"),  # new, but filled
        ("1", None, "partially_filled"),  # partially filled, with nothing filled
        ("1", "1", "cancelled"),  # cancelled, but wholly filled: a completing late fill makes it filled
    ],
)
def test_an_order_status_that_disagrees_with_its_filled_quantity_is_reported_as_order_status(
    seeded, quantity, filled, status
):
    order_id = place(seeded, "buy", quantity, "100")
    if filled:
        fill(seeded, order_id, filled, "100")
    behind_the_log(seeded, "update trading.orders set status = %s where order_id = %s", [status, order_id])
    assert reported(seeded, "order_status") == [
        ({"order_id": order_id}, f"status {status} with {filled or 0} of {quantity} filled")
    ]


@pytest.mark.parametrize("column", ["client_order_id", "exchange_id"])
def test_an_order_key_of_another_client_order_id_or_exchange_is_reported_as_order_keys(seeded, column):
    order_id = place(seeded, "buy", "1", "100", client_order_id="c-1")
    exchanges = dict(seeded.execute("select code, exchange_id from ref.exchanges").fetchall())
    value, detail = {
        "client_order_id": ("c-2", 'client_order_id: "c-2" -> "c-1"'),
        "exchange_id": (exchanges["okx"], f"exchange_id: {exchanges['okx']} -> {exchanges['binance']}"),
    }[column]
    behind_the_log(
        seeded,
        psycopg.sql.SQL("update trading.order_keys set {} = %s where order_id = %s").format(
            psycopg.sql.Identifier(column)
        ),
        [value, order_id],
    )
    assert reported(seeded, "order_keys") == [({"order_id": order_id}, f"{detail} (key row -> order)")]


def test_an_order_whose_exchange_order_id_is_on_the_order_row_alone_is_sound(seeded):
    # orders acknowledged before migration 0067 with an id another order already had keep it on
    # the order row alone: a key without one is not compared
    order_id = place(seeded, "buy", "1", "100")
    seeded.execute("update trading.orders set exchange_order_id = 'E-1' where order_id = %s", [order_id])
    assert violations(seeded) == []


def test_an_order_key_kept_by_a_risk_event_alone_is_sound(seeded):
    # a rejected order's risk event keeps its key when orders cleanup removes the order
    call(seeded, "monitor.set_risk_limit", strategy="alpha", max_order_notional=Decimal("50"))
    order_id = place(seeded, "buy", "1", "100")
    assert seeded.execute(
        "select o.status::text, count(r.*) from trading.orders o"
        " left join monitor.risk_events r using (order_id) where order_id = %s group by 1",
        [order_id],
    ).fetchone() == ("rejected", 1)
    seeded.execute("delete from trading.order_events where order_id = %s", [order_id])
    seeded.execute("delete from trading.orders where order_id = %s", [order_id])
    assert violations(seeded) == []


def test_an_order_event_after_the_first_that_goes_from_nothing_is_reported_as_order_events(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100")
    placed, filled = (
        r[0]
        for r in seeded.execute(
            "select event_id from trading.order_events where order_id = %s order by event_id", [order_id]
        )
    )
    behind_the_log(seeded, "update trading.order_events set from_status = null where event_id = %s", [filled])
    assert reported(seeded, "order_events") == [
        (
            {"order_id": order_id, "event_id": filled},
            f"goes from nothing to filled, but event {placed} before it went to new",
        )
    ]


# -- rollup_hourly, rollup_daily ------------------------------------------------------------------


def test_rollups_are_checked_by_utc_hour_and_day_from_a_session_in_another_time_zone(seeded):
    # 20:15 UTC is 01:45 the next day in Kolkata (UTC+05:30); 12:15 UTC is 17:45 there, whose
    # local hour began at 11:30 UTC: read in the session's zone, every rollup row would be off
    trade(seeded, "buy", "1", "100", executed_at=RECENT_NOON + timedelta(hours=8, minutes=15))
    call(
        seeded,
        "trading.record_funding",
        **SWAP,
        amount=Decimal("-0.42"),
        paid_at=RECENT_NOON + timedelta(minutes=15),
    )
    seeded.execute("set timezone = 'Asia/Kolkata'")
    assert violations(seeded) == []


@pytest.mark.parametrize(
    ("table", "column", "invariant", "period", "detail"),
    [
        # a buy of 1 at 100 (fee 0.1 USDT) and a sell of 1 at 110 in one hour: notional 210,
        # fees 0.1, realized 10; each stored value is 1 more
        ("hourly_pnl", "notional", "rollup_hourly", {"hour": HOUR}, "notional: 211 -> 210"),
        ("hourly_pnl", "fees", "rollup_hourly", {"hour": HOUR}, "fees: 1.1 -> 0.1"),
        (
            "daily_pnl",
            "realized_pnl_gross",
            "rollup_daily",
            {"day": HOUR[:10]},
            "realized_pnl_gross: 11.000000000000 -> 10.000000000000",
        ),
    ],
)
def test_a_rollup_sum_edited_is_reported(seeded, table, column, invariant, period, detail):
    trade(seeded, "buy", "1", "100", fee="0.1", executed_at=RECENT_NOON)
    trade(seeded, "sell", "1", "110", executed_at=RECENT_NOON)
    behind_the_log(
        seeded,
        psycopg.sql.SQL("update trading.{0} set {1} = {1} + 1").format(
            psycopg.sql.Identifier(table), psycopg.sql.Identifier(column)
        ),
    )
    subject = {"strategy_id": strategy_id(seeded, "alpha"), **period, "instrument_id": instrument_id(seeded)}
    assert reported(seeded, invariant) == [(subject, f"{detail} (stored -> sum of the trades and funding)")]


def test_a_daily_rollup_row_without_trades_or_funding_is_reported_as_rollup_daily(seeded):
    trade(seeded, "buy", "1", "100", executed_at=RECENT_NOON)
    alpha, btc = strategy_id(seeded, "alpha"), instrument_id(seeded)
    seeded.execute(
        "insert into trading.daily_pnl (strategy_id, day, instrument_id, quote_asset)"
        " values (%s, '2026-01-02', %s, 'USDT')",
        [alpha, btc],
    )
    assert reported(seeded, "rollup_daily") == [
        (
            {"strategy_id": alpha, "day": "2026-01-02", "instrument_id": btc},
            "a rollup row, but no trades or funding payments in its day",
        )
    ]


# -- snapshot_total -------------------------------------------------------------------------------


def snapshot(conn: psycopg.Connection) -> dict:
    """Take a portfolio snapshot (now: it must be); its subject in snapshot_total's reports."""
    conn.execute("select trading.take_portfolio_snapshot()")
    return conn.execute(
        "select distinct jsonb_build_object('taken_at', taken_at) from trading.portfolio_snapshots"
    ).fetchone()[0]


def test_a_snapshot_total_of_open_positions_that_does_not_add_up_is_reported(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "buy", "1", "60000", **SWAP)
    subject = snapshot(seeded)
    behind_the_log(
        seeded, "update trading.portfolio_snapshots set open_positions = 3 where strategy_id is null"
    )
    # alpha's one open position and beta's one
    assert reported(seeded, "snapshot_total") == [
        (subject, "open_positions: 3 -> 2 (total row -> sum of the strategy rows)")
    ]


def test_a_snapshot_without_its_total_row_is_reported(seeded):
    subject = snapshot(seeded)
    behind_the_log(seeded, "delete from trading.portfolio_snapshots where strategy_id is null")
    # alpha's row and beta's
    assert reported(seeded, "snapshot_total") == [(subject, "2 strategy rows but no total row")]


# -- audit_chain, audit_current -------------------------------------------------------------------


def gadget_key(audit_id: int | None = None) -> dict:
    key = {"key": {"id": 1}, "table": "public.gadgets"}
    return key if audit_id is None else {**key, "audit_id": audit_id}


def test_an_insert_of_a_key_the_log_never_deleted_is_reported_as_audit_chain(db):
    _audited_gadgets(db)
    db.execute("insert into public.gadgets values (1, 'a')")
    inserted = last_audit_id(db)
    behind_the_log(db, "delete from public.gadgets")
    db.execute("insert into public.gadgets values (1, 'b')")
    assert violations(db) == [
        (
            "audit_chain",
            gadget_key(last_audit_id(db)),
            f"INSERT of a row last seen by an INSERT (audit row {inserted}), not deleted",
        )
    ]


def test_an_update_of_a_row_the_log_deleted_is_reported_as_audit_chain(db):
    _audited_gadgets(db)
    db.execute("insert into public.gadgets values (1, 'a')")
    db.execute("delete from public.gadgets")
    deleted = last_audit_id(db)
    behind_the_log(db, "insert into public.gadgets values (1, 'a')")
    db.execute("update public.gadgets set label = 'b'")
    assert violations(db) == [
        ("audit_chain", gadget_key(last_audit_id(db)), f"UPDATE of a row deleted by audit row {deleted}")
    ]


def test_an_update_of_a_key_the_log_moved_away_is_reported_as_audit_chain(db):
    _audited_gadgets(db)
    db.execute("insert into public.gadgets values (1, 'a')")
    db.execute("update public.gadgets set id = 2")
    moved = last_audit_id(db)
    behind_the_log(db, "insert into public.gadgets values (1, 'a')")
    db.execute("update public.gadgets set label = 'b' where id = 1")
    assert violations(db) == [
        (
            "audit_chain",
            gadget_key(last_audit_id(db)),
            f"UPDATE of a row moved to another key by audit row {moved}",
        )
    ]


def test_a_row_the_log_deleted_that_exists_is_reported_as_audit_current(db):
    _audited_gadgets(db)
    db.execute("insert into public.gadgets values (1, 'a')")
    db.execute("delete from public.gadgets")
    deleted = last_audit_id(db)
    behind_the_log(db, "insert into public.gadgets values (1, 'a')")
    assert violations(db) == [
        ("audit_current", gadget_key(), f"the row exists, but audit row {deleted} deleted it")
    ]


def test_a_row_without_an_audit_image_is_not_reported_while_retention_prunes_the_log(seeded):
    # its INSERT image may have gone with a dropped partition
    seeded.execute(
        "select ops.configure_partitioning('audit.log', premake, '400 days')"
        " from partman.part_config where parent_table = 'audit.log'"
    )
    _audited_gadgets(seeded)
    behind_the_log(seeded, "insert into public.gadgets values (1, 'a')")
    assert violations(seeded) == []


def test_a_column_dropped_after_its_rows_were_logged_is_not_reported(db):
    # the images written before the migration keep the column; only shared keys are compared
    _audited_gadgets(db)
    db.execute("insert into public.gadgets values (1, 'a')")
    db.execute("alter table public.gadgets drop column label")
    assert violations(db) == []


# -- invariants.check and `spreadedge check` ------------------------------------------------------


def two_violations(conn: psycopg.Connection) -> int:
    """An order filled but marked new (order_status), and alpha's BTCUSDT position one more than its
    trades (position_fold), which the SQL reports first; the order's id."""
    order_id = place(conn, "buy", "1", "100")
    fill(conn, order_id, "1", "100")
    behind_the_log(conn, "update trading.orders set status = 'new' where order_id = %s", [order_id])
    behind_the_log(conn, "update trading.positions set quantity = 2")
    return order_id


def test_check_returns_the_violations_in_the_order_of_their_invariants(seeded):
    two_violations(seeded)
    found = [v.invariant for v in invariants.check(seeded) if not v.invariant.startswith("audit")]
    assert found == ["order_status", "position_fold"]


def test_check_command_prints_each_violation_on_an_aligned_line(seeded_url, seeded):
    order_id = two_violations(seeded)
    result = run_check(seeded_url)
    assert result.exit_code == 1
    subject = json.dumps({"order_id": order_id})
    assert f"order_status     {subject}  status new with 1 of 1 filled" in result.stdout.splitlines()


def test_check_command_prints_nothing_in_json_on_a_sound_database(seeded_url):
    result = run_check(seeded_url, "--json")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
