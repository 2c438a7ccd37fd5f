"""Helpers of the monitoring tests: rules, evaluation, and the rows an evaluation or a breach wrote."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

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
