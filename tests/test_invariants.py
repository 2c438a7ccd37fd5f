"""ops.check_invariants: silent on a sound database, and names each kind of drift it is built to see.

Each corruption test breaks one thing behind the API's back, the way a bug or a hand edit would,
and asserts the exact violation rows. Corruptions that must not leave an audit row run with
session_replication_role = replica, which skips the audit triggers.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from market_helpers import RECENT_NOON
from spreadedge.cli import main
from trading_helpers import call, fill, list_okx_btc_spot, open_spread, place, trade


def violations(conn: psycopg.Connection) -> list[tuple[str, dict, str]]:
    return conn.execute(
        "select invariant, subject, detail from ops.check_invariants() order by 1, 2::text"
    ).fetchall()


@pytest.fixture
def traded(seeded: psycopg.Connection) -> psycopg.Connection:
    """alpha: BTCUSDT bought, partly sold, then sold through zero; a partial fill of a cancelled
    order; an okx perpetual position with funding; a portfolio snapshot."""
    # every fill at one time: the BTCUSDT rollups are one hour's and one day's row
    at = RECENT_NOON
    trade(seeded, "buy", "0.5", "30000", fee="1.5", executed_at=at)
    trade(seeded, "buy", "0.25", "30400", executed_at=at)
    trade(seeded, "sell", "0.3", "31000", fee="0.0001", fee_currency="BTC", executed_at=at)
    partial = place(seeded, "sell", "1", "29000")
    fill(seeded, partial, "0.7", "29000", executed_at=at)
    call(seeded, "trading.cancel_order", order_id=partial, reason="test")
    fill(seeded, partial, "0.1", "29010", executed_at=at)  # late fill
    trade(
        seeded, "buy", "3", "60000.5", exchange="okx", symbol="BTC-USDT-SWAP", strategy="beta", executed_at=at
    )
    call(
        seeded,
        "trading.record_funding",
        strategy="beta",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        amount=Decimal("-0.42"),
        paid_at=RECENT_NOON - timedelta(hours=4),
    )
    seeded.execute("select trading.take_portfolio_snapshot()")
    return seeded


def position_key(conn: psycopg.Connection) -> dict[str, int]:
    strategy_id, instrument_id = conn.execute(
        "select strategy_id, instrument_id from trading.positions p"
        " join ref.instruments i using (instrument_id) where i.symbol = 'BTCUSDT'"
    ).fetchone()
    return {"strategy_id": strategy_id, "instrument_id": instrument_id}


SWAP_MULTIPLIER_0_02 = (
    "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
    " quote_asset => 'USDT', market_type => 'perpetual', tick_size => 0.1, lot_size => 1,"
    " min_notional => 0, multiplier => 0.02)"
)


def test_a_change_of_multiplier_after_trades_is_not_reported_as_drift(seeded):
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    trade(seeded, "sell", "4", "61000", exchange="okx", symbol="BTC-USDT-SWAP")  # realizes 40 at 0.01
    seeded.execute(SWAP_MULTIPLIER_0_02)
    trade(seeded, "sell", "2", "62000", exchange="okx", symbol="BTC-USDT-SWAP")  # realizes 80 at 0.02
    assert violations(seeded) == []
    assert seeded.execute("select realized_pnl_gross from trading.positions").fetchone() == (Decimal("120"),)


def test_a_trade_records_the_multiplier_it_was_realized_at(seeded):
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    seeded.execute(SWAP_MULTIPLIER_0_02)
    trade(seeded, "sell", "4", "61000", exchange="okx", symbol="BTC-USDT-SWAP")
    trade(seeded, "buy", "1", "30000")
    rows = seeded.execute(
        "select i.symbol, t.side::text, t.multiplier from trading.trades t"
        " join ref.instruments i using (instrument_id) order by t.trade_id"
    ).fetchall()
    assert rows == [
        ("BTC-USDT-SWAP", "buy", Decimal("0.01")),
        ("BTC-USDT-SWAP", "sell", Decimal("0.02")),
        ("BTCUSDT", "buy", Decimal("1")),
    ]


def test_a_traded_database_has_no_violations(traded):
    assert violations(traded) == []


def test_a_fresh_database_has_no_violations(db):
    assert violations(db) == []


def test_a_position_quantity_edited_by_hand_is_reported(traded):
    traded.execute(
        "update trading.positions set quantity = quantity + 0.5"
        " where instrument_id = (select instrument_id from ref.instruments where symbol = 'BTCUSDT')"
    )
    [row] = violations(traded)
    assert row[:2] == ("position_fold", position_key(traded))
    assert row[2] == "quantity: 0.1499 -> -0.3501 (stored -> fold of the trades and funding)"


def test_missing_funding_on_a_position_is_reported(traded):
    traded.execute("set session_replication_role = replica")
    traded.execute("update trading.positions set funding = 0 where funding <> 0")
    traded.execute("reset session_replication_role")
    found = {(r[0], r[2]) for r in violations(traded)}
    assert ("position_fold", "funding: 0 -> -0.42 (stored -> fold of the trades and funding)") in found
    assert any(invariant == "audit_current" for invariant, _ in found)


def test_a_trade_realizing_the_wrong_pnl_is_reported(traded):
    trade_id = traded.execute(
        "select trade_id from trading.trades where realized_pnl_gross <> 0 order by trade_id limit 1"
    ).fetchone()[0]
    traded.execute("set session_replication_role = replica")  # trades are append-only
    traded.execute(
        "update trading.trades set realized_pnl_gross = realized_pnl_gross + 1 where trade_id = %s",
        [trade_id],
    )
    traded.execute("reset session_replication_role")
    found = [r for r in violations(traded) if r[0] == "trade_realized"]
    assert len(found) == 1
    assert found[0][1] == {"trade_id": trade_id}
    assert found[0][2].startswith("realized_pnl_gross ")
    assert found[0][2].endswith("but its step of the position fold realized 260.086666666667")


def test_a_trade_closing_the_wrong_quantity_is_reported(traded):
    trade_id = traded.execute(
        "select trade_id from trading.trades where closed_quantity > 0 order by trade_id limit 1"
    ).fetchone()[0]
    traded.execute("set session_replication_role = replica")  # trades are append-only
    traded.execute("update trading.trades set closed_quantity = 0 where trade_id = %s", [trade_id])
    traded.execute("reset session_replication_role")
    found = [r for r in violations(traded) if r[0] == "trade_realized"]
    assert found == [
        (
            "trade_realized",
            {"trade_id": trade_id},
            "closed_quantity 0, but its step of the position fold closed 0.3001",
        )
    ]


def test_an_order_with_a_lost_fill_is_reported(traded):
    order_id = traded.execute(
        "select order_id from trading.orders where status = 'cancelled' and filled_quantity = 0.8"
    ).fetchone()[0]
    traded.execute(
        "update trading.orders set filled_quantity = 0.7, avg_fill_price = 29000 where order_id = %s",
        [order_id],
    )
    [row] = [r for r in violations(traded) if r[0].startswith("order")]
    assert row == (
        "order_fills",
        {"order_id": order_id},
        "filled_quantity 0.7, avg_fill_price 29000; its trades: 0.8, 29001.250000000000000000",
    )


def test_an_order_filled_but_still_open_is_reported(traded):
    order_id = traded.execute(
        "select order_id from trading.orders where status = 'filled' limit 1"
    ).fetchone()[0]
    traded.execute("update trading.orders set status = 'partially_filled' where order_id = %s", [order_id])
    [row] = [r for r in violations(traded) if r[0] == "order_status"]
    assert row[1] == {"order_id": order_id}
    assert row[2].startswith("status partially_filled with ")


def test_a_trade_without_its_key_row_is_reported(traded):
    trade_id = traded.execute("select max(trade_id) from trading.trades").fetchone()[0]
    traded.execute("delete from trading.trade_keys where trade_id = %s", [trade_id])
    assert [r for r in violations(traded) if r[0] == "trade_keys"] == [
        ("trade_keys", {"trade_id": trade_id}, "trade has no trading.trade_keys row")
    ]


def test_a_daily_and_hourly_rollup_off_by_one_fill_is_reported(traded):
    btc = "(select instrument_id from ref.instruments where symbol = 'BTCUSDT')"
    traded.execute(f"update trading.daily_pnl set trades = trades - 1 where instrument_id = {btc}")
    traded.execute(f"update trading.hourly_pnl set volume = volume + 1 where instrument_id = {btc}")
    found = [r for r in violations(traded) if r[0].startswith("rollup")]
    assert [r[0] for r in found] == ["rollup_daily", "rollup_hourly"]
    assert found[0][2] == "trades: 4 -> 5 (stored -> sum of the trades and funding)"
    assert found[1][2] == "volume: 2.85 -> 1.85 (stored -> sum of the trades and funding)"


def test_a_snapshot_total_that_does_not_add_up_is_reported(traded):
    traded.execute("update trading.portfolio_snapshots set capital = capital + 1 where strategy_id is null")
    [row] = [r for r in violations(traded) if r[0] == "snapshot_total"]
    assert row[2] == "capital: 10001 -> 10000 (total row -> sum of the strategy rows)"


def test_a_change_that_skipped_the_audit_log_is_reported(traded):
    strategy_id = traded.execute("select strategy_id from trading.strategies where name = 'beta'").fetchone()[
        0
    ]
    traded.execute("set session_replication_role = replica")
    traded.execute("update trading.strategies set capital = 5 where strategy_id = %s", [strategy_id])
    traded.execute("reset session_replication_role")
    assert violations(traded) == [
        (
            "audit_current",
            {"key": {"strategy_id": strategy_id}, "table": "trading.strategies"},
            f"differs from audit row {audit_id(traded, 'trading.strategies', strategy_id)}: capital: 0 -> 5 (image -> row)",
        )
    ]
    # the next audited change carries the unaudited one as its old row: the chain shows the gap
    traded.execute("update trading.strategies set capital = 6 where strategy_id = %s", [strategy_id])
    [row] = violations(traded)
    assert row[0] == "audit_chain"
    assert row[2].startswith("UPDATE whose old row is not the image of audit row ")
    assert row[2].endswith(": capital: 5 -> 0")


def test_a_row_inserted_without_an_audit_row_is_reported(traded):
    traded.execute("set session_replication_role = replica")
    traded.execute("insert into trading.strategies (name) values ('ghost')")
    traded.execute("reset session_replication_role")
    strategy_id = traded.execute(
        "select strategy_id from trading.strategies where name = 'ghost'"
    ).fetchone()[0]
    assert violations(traded) == [
        (
            "audit_current",
            {"key": {"strategy_id": strategy_id}, "table": "trading.strategies"},
            "the row has no audit image",
        )
    ]


def test_a_row_deleted_without_an_audit_row_is_reported(traded):
    limit_id = call(traded, "monitor.set_risk_limit", strategy="alpha", max_order_notional=Decimal("1000"))
    inserted = traded.execute(
        "select max(audit_id) from audit.log where table_name = 'monitor.risk_limits'"
    ).fetchone()[0]
    traded.execute("set session_replication_role = replica")
    traded.execute("delete from monitor.risk_limits where limit_id = %s", [limit_id])
    traded.execute("reset session_replication_role")
    assert violations(traded) == [
        (
            "audit_current",
            {"key": {"limit_id": limit_id}, "table": "monitor.risk_limits"},
            f"the row does not exist, but the audit log never deleted it (latest audit row {inserted}: INSERT)",
        )
    ]


def test_redacted_columns_are_not_compared(auth_db):
    auth_db.execute(
        "select auth.create_user(username => 'ann', password => 'Correct-Horse-42', roles => '{trader}')"
    )
    assert violations(auth_db) == []


def audit_id(conn: psycopg.Connection, table: str, strategy_id: int) -> int:
    return conn.execute(
        "select max(audit_id) from audit.log where table_name = %s and row_key::jsonb = %s::jsonb",
        [table, f'{{"strategy_id": {strategy_id}}}'],
    ).fetchone()[0]


def run_check(url: str, *args: str):
    return CliRunner().invoke(main, ["--database-url", url, "check", *args])


def test_check_command_passes_on_the_demo_day(db_url):
    assert CliRunner().invoke(main, ["--database-url", db_url, "demo", "--orders", "120"]).exit_code == 0
    result = run_check(db_url)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("no violations: ")


def test_check_command_exits_1_and_prints_each_violation(traded, db_url):
    traded.execute("update trading.orders set status = 'open' where status = 'filled'")
    result = run_check(db_url, "--json")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    filled = traded.execute(
        "select count(*) from trading.orders where status = 'open' and filled_quantity > 0"
    )
    assert len(lines) == filled.fetchone()[0] == 4
    assert {line["invariant"] for line in lines} == {"order_status"}
    assert result.stderr == "4 violation(s)\n"


def _audited_gadgets(conn: psycopg.Connection) -> None:
    """public.gadgets, audited by audit.log_changes('id') on insert, update and delete."""
    conn.execute("create table public.gadgets (id int primary key, label text)")
    for event, transitions in [
        ("insert", "new table as new_rows"),
        ("update", "old table as old_rows new table as new_rows"),
        ("delete", "old table as old_rows"),
    ]:
        conn.execute(
            sql.SQL(
                "create trigger {} after {} on public.gadgets referencing {}"
                " for each statement execute function audit.log_changes('id')"
            ).format(sql.Identifier(f"_900_audit_{event}"), sql.SQL(event), sql.SQL(transitions))
        )


def test_an_audited_update_of_a_key_column_is_not_reported(db):
    _audited_gadgets(db)
    db.execute("insert into public.gadgets values (1, 'a'), (5, 'e')")
    db.execute("update public.gadgets set id = id + 1, label = label || '!'")
    db.execute("insert into public.gadgets values (1, 'again')")  # the old key, free again
    assert violations(db) == []


def test_a_change_that_skipped_the_audit_log_before_a_key_update_is_reported(db):
    _audited_gadgets(db)
    db.execute("insert into public.gadgets values (1, 'a')")
    (inserted,) = db.execute("select max(audit_id) from audit.log").fetchone()
    db.execute("set session_replication_role = replica")
    db.execute("update public.gadgets set label = 'b'")
    db.execute("reset session_replication_role")
    db.execute("update public.gadgets set id = 2")
    (moved,) = db.execute("select max(audit_id) from audit.log").fetchone()
    assert violations(db) == [
        (
            "audit_chain",
            {"key": {"id": 1}, "table": "public.gadgets", "audit_id": moved},
            f'UPDATE whose old row is not the image of audit row {inserted}: label: "b" -> "a"',
        )
    ]


def test_a_trade_key_row_of_another_instrument_is_reported_with_both_instruments(traded):
    trade_id, exchange_trade_id, instrument_id = traded.execute(
        "select k.trade_id, k.exchange_trade_id, k.instrument_id from trading.trade_keys k order by k.trade_id limit 1"
    ).fetchone()
    (other,) = traded.execute(
        "select min(instrument_id) from ref.instruments where instrument_id <> %s", [instrument_id]
    ).fetchone()
    traded.execute("update trading.trade_keys set instrument_id = %s where trade_id = %s", [other, trade_id])
    (executed_at, side) = traded.execute(
        "select executed_at::text, side::text from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()
    assert [r for r in violations(traded) if r[0] == "trade_keys"] == [
        (
            "trade_keys",
            {"trade_id": trade_id},
            f"key row says instrument {other}, {side} {exchange_trade_id} / {executed_at};"
            f" the trade instrument {instrument_id}, {side} {exchange_trade_id} / {executed_at}",
        )
    ]


def test_a_trade_key_row_of_the_other_side_is_reported_with_both_sides(traded):
    trade_id, exchange_trade_id, instrument_id, side = traded.execute(
        "select k.trade_id, k.exchange_trade_id, k.instrument_id, k.side::text from trading.trade_keys k"
        " order by k.trade_id limit 1"
    ).fetchone()
    other = "sell" if side == "buy" else "buy"
    traded.execute("update trading.trade_keys set side = %s where trade_id = %s", [other, trade_id])
    (executed_at,) = traded.execute(
        "select executed_at::text from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()
    assert [r for r in violations(traded) if r[0] == "trade_keys"] == [
        (
            "trade_keys",
            {"trade_id": trade_id},
            f"key row says instrument {instrument_id}, {other} {exchange_trade_id} / {executed_at};"
            f" the trade instrument {instrument_id}, {side} {exchange_trade_id} / {executed_at}",
        )
    ]


def test_a_first_audit_image_that_is_a_delete_is_reported_in_plain_words(traded):
    traded.execute("set session_replication_role = replica")
    traded.execute("insert into trading.strategies (name) values ('ghost')")
    traded.execute("reset session_replication_role")
    traded.execute("delete from trading.strategies where name = 'ghost'")
    [row] = violations(traded)
    assert (row[0], row[2]) == ("audit_chain", "the first image of this row is a DELETE, not an INSERT")


def test_a_position_opened_at_edited_by_hand_is_reported(traded):
    key = position_key(traded)
    where = "where strategy_id = %(strategy_id)s and instrument_id = %(instrument_id)s"
    (opened,) = traded.execute(
        f"select to_jsonb(opened_at)::text from trading.positions {where}", key
    ).fetchone()
    traded.execute(f"update trading.positions set opened_at = opened_at - interval '1 hour' {where}", key)
    (edited,) = traded.execute(
        f"select to_jsonb(opened_at)::text from trading.positions {where}", key
    ).fetchone()
    assert [r for r in violations(traded) if r[0] == "position_fold"] == [
        ("position_fold", key, f"opened_at: {edited} -> {opened} (stored -> fold of the trades and funding)")
    ]


def _spread_trade(conn: psycopg.Connection) -> tuple[int, int, int]:
    """alpha's BTC/USDT spread trade of 2, bought on binance and sold on okx: (id, buy order, sell order)."""
    list_okx_btc_spot(conn)
    spread_trade_id = open_spread(conn)
    buy, sell = conn.execute(
        "select buy_order_id, sell_order_id from trading.spread_trades where spread_trade_id = %s",
        [spread_trade_id],
    ).fetchone()
    return spread_trade_id, buy, sell


def test_a_spread_trade_with_its_legs_swapped_is_reported(seeded):
    spread_trade_id, buy, sell = _spread_trade(seeded)
    seeded.execute(
        "update trading.spread_trades set buy_order_id = sell_order_id, sell_order_id = buy_order_id"
        " where spread_trade_id = %s",
        [spread_trade_id],
    )
    assert [r for r in violations(seeded) if not r[0].startswith("audit")] == [
        (
            "spread_legs",
            {"spread_trade_id": spread_trade_id},
            f"buy leg order {sell} is a sell order; sell leg order {buy} is a buy order",
        )
    ]


def test_a_spread_trade_whose_quantity_is_not_its_legs_is_reported(seeded):
    spread_trade_id, buy, sell = _spread_trade(seeded)
    seeded.execute(
        "update trading.spread_trades set quantity = 3 where spread_trade_id = %s", [spread_trade_id]
    )
    assert [r for r in violations(seeded) if not r[0].startswith("audit")] == [
        (
            "spread_legs",
            {"spread_trade_id": spread_trade_id},
            f"quantity 3, but buy leg order {buy} is for 2; quantity 3, but sell leg order {sell} is for 2",
        )
    ]


def test_a_sound_spread_trade_is_not_reported(seeded):
    _spread_trade(seeded)
    assert violations(seeded) == []


def test_changes_made_from_a_session_in_another_time_zone_are_not_reported(seeded):
    # an audit image writes its times in the writer's TimeZone: checked from UTC, every time column
    # of these rows read as a difference (audit_current) or a broken chain (audit_chain)
    seeded.execute("set timezone = 'Asia/Kolkata'")
    trade(seeded, "buy", "0.5", "30000", fee="1.5")
    trade(seeded, "sell", "0.2", "30500")
    seeded.execute("reset timezone")
    assert violations(seeded) == []


def test_a_time_changed_behind_the_audit_log_is_reported_whatever_the_writers_time_zone(seeded):
    seeded.execute("set timezone = 'Asia/Kolkata'")
    call(seeded, "trading.create_strategy", name="gamma")
    seeded.execute("reset timezone")
    strategy_id = seeded.execute(
        "select strategy_id from trading.strategies where name = 'gamma'"
    ).fetchone()[0]
    seeded.execute("set session_replication_role = replica")
    seeded.execute(
        "update trading.strategies set created_at = created_at + interval '1 second' where strategy_id = %s",
        [strategy_id],
    )
    seeded.execute("reset session_replication_role")
    [(invariant, subject, detail)] = violations(seeded)
    assert (invariant, subject) == (
        "audit_current",
        {"key": {"strategy_id": strategy_id}, "table": "trading.strategies"},
    )
    assert "created_at: " in detail
