"""Helpers of the monitoring tests: rules, evaluation, and the rows an evaluation or a breach wrote."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from market_helpers import quote
from trading_helpers import call, rows


def add_rule(
    conn: psycopg.Connection, name: str, kind: str, operator: str, threshold: str, **kwargs: Any
) -> int:
    if "labels" in kwargs:
        kwargs["labels"] = Jsonb(kwargs["labels"])
    return call(
        conn,
        "monitor.add_alert_rule",
        name=name,
        kind=kind,
        operator=operator,
        threshold=Decimal(threshold),
        **kwargs,
    )


def evaluate(conn: psycopg.Connection, at: datetime | None = None) -> list[tuple[str, str, Decimal, bool]]:
    """(rule, transition, value, notified) of every transition an evaluation made."""
    found = rows(conn, "monitor.evaluate_alert_rules", **({} if at is None else {"evaluated_at": at}))
    return [(row["rule"], row["transition"], row["value"], row["notified"]) for row in found]


def metric(conn: psycopg.Connection, name: str, value: str, at: datetime, **labels: str) -> None:
    call(conn, "monitor.record_metric", name=name, value=Decimal(value), labels=Jsonb(labels), recorded_at=at)


def notifications(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(channel, status, subject) of every outbox row, in order."""
    return conn.execute(
        "select channel::text, status::text, subject from monitor.notifications order by notification_id"
    ).fetchall()


def now_to_the_second(conn: psycopg.Connection) -> datetime:
    """The database's now(), truncated to the second."""
    return conn.execute("select date_trunc('second', now())").fetchone()[0]


def alert_state(conn: psycopg.Connection, alert_id: int) -> tuple[Any, ...]:
    """(status, resolved_at, resolved_value) of an alert."""
    return conn.execute(
        "select status::text, resolved_at, resolved_value from monitor.alerts where alert_id = %s", [alert_id]
    ).fetchone()


# btc-above-70k: a critical price rule without cooldown, which the alert-rule tests fire and disable
BTC_ABOVE_70K = "btc-above-70k"
BTC_ABOVE_70K_FIRED = "[CRITICAL] btc-above-70k fired: price binance/BTCUSDT last = 71000 (threshold > 70000)"


def btc_above_70k_disabled_by(actor: str) -> str:
    """The subject of the resolution of btc-above-70k's alert when actor disabled the rule."""
    return (
        f"[CRITICAL] btc-above-70k resolved: the rule was disabled by {actor}"
        " (price binance/BTCUSDT last > 70000)"
    )


def fire_btc_above_70k(conn: psycopg.Connection, channels: list[str]) -> datetime:
    """btc-above-70k (critical, no cooldown) fired at the returned time."""
    add_rule(conn, BTC_ABOVE_70K, "price", ">", "70000", exchange="binance", symbol="BTCUSDT",
             channels=channels, severity="critical", cooldown=timedelta(0))  # fmt: skip
    at = now_to_the_second(conn)
    quote(conn, at - timedelta(seconds=30), "70999", "71001")
    assert evaluate(conn, at) == [(BTC_ABOVE_70K, "fired", Decimal("71000"), bool(channels))]
    return at
