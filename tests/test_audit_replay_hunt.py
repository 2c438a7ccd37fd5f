"""The audit log as the truth of what happened: replaying each audited table's audit rows in order,
from nothing, gives the table's current content, row by row and column by column (a guard: no
path found that breaks it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from auth_helpers import MASTER_KEY, OTHER_MASTER_KEY, login, make_user, store_key
from monitor_helpers import fire_btc_above_70k
from ops_helpers import cli
from trading_helpers import call, fill, legs, list_okx_btc_spot, open_spread, place


def _strict(text: str | None) -> Any:
    # why numbers as strings: a replay must keep a numeric's scale (1.50 is not 1.5), not only its value
    return None if text is None else json.loads(text, parse_float=str, parse_int=str)


def replay_mismatches(conn: psycopg.Connection) -> list[tuple[str, str, Any, Any]]:
    """Each row whose image replayed from audit.log (by audit_id) differs from the table's row:
    (table, key, replayed image, current image); a key-changing UPDATE ends the old key's row."""
    found = []
    for table, relid, key1, key2, redacted in conn.execute(
        "select table_name, relid::text, key1, key2, redacted from internal.audited_tables() order by 1"
    ).fetchall():
        replayed: dict[str, Any] = {}
        for operation, row_key, old_key, new_row in conn.execute(
            "select operation, row_key, audit.row_key(old_row, %s, %s), new_row::text from audit.log"
            " where table_name = %s order by audit_id",
            [key1, key2, table],
        ).fetchall():
            if operation in ("UPDATE", "DELETE"):
                replayed.pop(old_key, None)
            if operation != "DELETE":
                replayed[row_key] = _strict(new_row)
        current = {
            row_key: _strict(image)
            for row_key, image in conn.execute(
                f"select audit.row_key(to_jsonb(t), %s, %s), (to_jsonb(t) - %s::text[])::text from {relid} t",
                [key1, key2, redacted],
            ).fetchall()
        }
        found += [
            (table, key, replayed.get(key), current.get(key))
            for key in sorted(set(replayed) | set(current))
            if replayed.get(key) != current.get(key)
        ]
    return found


def test_the_demo_day_replays_from_the_audit_log_to_every_tables_content(db_url):
    assert cli("demo", "--orders", "120", database_url=db_url).exit_code == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert replay_mismatches(conn) == []


def test_a_day_through_every_sql_write_path_replays_from_the_audit_log(auth_db):
    conn = auth_db
    list_okx_btc_spot(conn)
    call(conn, "ref.upsert_instrument", exchange="binance", symbol="BTCUSDT", base_asset="BTC",
         quote_asset="USDT", market_type="spot", tick_size=Decimal("0.010"), lot_size=Decimal("0.00010"),
         min_notional=Decimal("5.0"), maker_fee=Decimal("0.00100"), taker_fee=Decimal("0.0010"),
         multiplier=Decimal("1.0"))  # fmt: skip
    bought = place(conn, "buy", "2", "100")
    call(conn, "trading.acknowledge_order", order_id=bought, exchange_order_id="E-1")
    fill(conn, bought, "1", "100", fee=Decimal("0.10"))
    fill(conn, bought, "1", "100.50", fee=Decimal("0.001"), fee_currency="BTC")
    for closing in ("trading.cancel_order", "trading.reject_order"):
        call(conn, closing, order_id=place(conn, "sell", "1", "105"), reason="test")
    call(conn, "trading.expire_order", order_id=place(conn, "sell", "1", "105"))
    buy, sell = legs(conn, open_spread(conn))
    fill(conn, buy, "2", "100")
    fill(conn, sell, "2", "101")
    fill(conn, place(conn, "buy", "3", "50000", exchange="okx", symbol="BTC-USDT-SWAP"), "3", "50000")
    call(conn, "trading.record_funding", strategy="alpha", exchange="okx", symbol="BTC-USDT-SWAP",
         amount=Decimal("-1.2500"), paid_at=datetime.now(UTC))  # fmt: skip
    conn.execute("select trading.take_portfolio_snapshot()")
    call(conn, "monitor.set_risk_limit", strategy="alpha", max_position_notional=Decimal("10000.00"),
         channels=["email"])  # fmt: skip
    call(conn, "monitor.set_kill_switch", strategy="alpha", enabled=True, reason="test")
    call(conn, "monitor.set_kill_switch", strategy="alpha", enabled=False, reason="done")
    fire_btc_above_70k(conn, [])
    call(conn, "monitor.acknowledge_alert", alert_id=1, acknowledged_by="alice")
    call(conn, "monitor.set_alert_rule_enabled", name="btc-above-70k", enabled=False)
    user_id = make_user(conn, "carol", "trader")
    login(conn, "carol")
    call(conn, "auth.grant_role", user_id=user_id, role_name="viewer")
    call(conn, "auth.revoke_role", user_id=user_id, role_name="viewer")
    key_id = store_key(conn, user_id)
    call(conn, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY)
    call(conn, "auth.revoke_api_key", key_id=key_id)
    call(conn, "auth.disable_user", user_id=user_id)
    call(conn, "auth.enable_user", user_id=user_id)
    call(conn, "auth.set_security_policy", session_idle_timeout=timedelta(hours=2, microseconds=1))
    conn.execute("update auth.user_roles set role_name = 'auditor' where user_id = %s", [user_id])
    assert replay_mismatches(conn) == []


def test_orders_removed_by_cleanup_replay_as_deleted_and_their_story_ends_with_the_cleanup(seeded, db_url):
    long_ago = datetime.now(UTC) - timedelta(days=60)
    bought = place(seeded, "buy", "0.01", "50000", placed_at=long_ago, client_order_id="rt-buy")
    fill(seeded, bought, "0.01", "50000", fee="0.5", executed_at=long_ago, exchange_trade_id="rt-1")
    sold = place(seeded, "sell", "0.01", "51000", placed_at=long_ago, client_order_id="rt-sell")
    fill(seeded, sold, "0.01", "51000", executed_at=long_ago, exchange_trade_id="rt-2")
    seeded.execute("update trading.orders set updated_at = created_at")
    for args in (("partitions", "maintain"), ("cleanup", "orders", "--older-than", "30d")):
        assert cli(*args, database_url=db_url).exit_code == 0
    assert seeded.execute(
        "select operation, actor from audit.history('trading.orders', %s)", [f'{{"order_id": {bought}}}']
    ).fetchall() == [("INSERT", None), ("UPDATE", None), ("UPDATE", None), ("DELETE", "cleanup")]
    assert replay_mismatches(seeded) == []
