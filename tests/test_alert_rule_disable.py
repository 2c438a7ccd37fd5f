"""Disabling an alert rule resolves its open alert at once (bug: nothing evaluates a disabled rule,
so its open alert was listed, counted in alerts.open and unresolved for good)."""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from market_helpers import quote
from monitor_helpers import (
    BTC_ABOVE_70K_FIRED,
    add_rule,
    alert_state,
    btc_above_70k_disabled_by,
    evaluate,
    fire_btc_above_70k,
    notifications,
    now_to_the_second,
)
from trading_helpers import call, waits_for_a_lock

DISABLED = btc_above_70k_disabled_by("alice")


def _fire(conn: psycopg.Connection, channels: list[str]) -> datetime:
    """btc-above-70k fired, at the returned time; the actor is alice."""
    at = fire_btc_above_70k(conn, channels)
    conn.execute("set spreadedge.actor = 'alice'")
    return at


def _disable(conn: psycopg.Connection) -> datetime:
    """Disable btc-above-70k; the time of its transaction."""
    with conn.transaction():
        call(conn, "monitor.set_alert_rule_enabled", name="btc-above-70k", enabled=False)
        return conn.execute("select now()").fetchone()[0]


def _events(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select alert_id, transition::text, value, notified, actor, occurred_at"
        " from monitor.alert_events order by event_id"
    ).fetchall()


def test_disabling_a_rule_resolves_its_firing_alert_and_notifies_the_resolution(seeded):
    fired_at = _fire(seeded, ["slack", "email"])
    disabled_at = _disable(seeded)
    assert alert_state(seeded, 1) == ("resolved", disabled_at, None)
    assert _events(seeded) == [
        (1, "fired", Decimal("71000"), True, None, fired_at),
        (1, "resolved", None, True, "alice", disabled_at),
    ]
    assert notifications(seeded) == [
        ("email", "pending", BTC_ABOVE_70K_FIRED),
        ("slack", "pending", BTC_ABOVE_70K_FIRED),
        ("email", "pending", DISABLED),
        ("slack", "pending", DISABLED),
    ]
    assert seeded.execute(
        "select n.alert_event_id, n.payload ->> 'transition', n.payload -> 'value', n.payload ->> 'disabled_by'"
        " from monitor.notifications n where n.notification_id = 3"
    ).fetchone() == (2, "resolved", None, "alice")
    assert seeded.execute(
        "select count(*) from monitor.alert_list where status <> 'resolved'"
    ).fetchone() == (0,)


def test_an_alert_resolved_by_disabling_its_rule_no_longer_counts_in_alerts_open(seeded):
    _fire(seeded, [])
    _disable(seeded)
    collected_at = now_to_the_second(seeded) + timedelta(seconds=1)
    call(seeded, "monitor.collect_metrics", collected_at=collected_at)
    assert seeded.execute(
        "select labels ->> 'severity', value from monitor.metrics"
        " where name = 'alerts.open' and recorded_at = %s order by 1",
        [collected_at],
    ).fetchall() == [("critical", Decimal("0")), ("info", Decimal("0")), ("warning", Decimal("0"))]


def test_disabling_a_rule_resolves_its_acknowledged_alert(seeded):
    _fire(seeded, ["slack"])
    call(seeded, "monitor.acknowledge_alert", alert_id=1, acknowledged_by="bob")
    acknowledged_at = seeded.execute("select acknowledged_at from monitor.alerts").fetchone()[0]
    disabled_at = _disable(seeded)
    assert alert_state(seeded, 1) == ("resolved", disabled_at, None)
    assert _events(seeded)[1:] == [
        (1, "acknowledged", None, False, "bob", acknowledged_at),
        (1, "resolved", None, True, "alice", disabled_at),
    ]
    assert [subject for _, _, subject in notifications(seeded)] == [BTC_ABOVE_70K_FIRED, DISABLED]


def test_disabling_a_rule_whose_firing_was_silent_queues_no_notification(seeded):
    _fire(seeded, [])
    disabled_at = _disable(seeded)
    assert _events(seeded)[1:] == [(1, "resolved", None, False, "alice", disabled_at)]
    assert notifications(seeded) == []


def test_a_rule_re_enabled_after_disabling_fires_a_new_alert(seeded):
    _fire(seeded, ["slack"])
    disabled_at = _disable(seeded)
    call(seeded, "monitor.set_alert_rule_enabled", name="btc-above-70k", enabled=True)
    assert evaluate(seeded, disabled_at + timedelta(seconds=1)) == [
        ("btc-above-70k", "fired", Decimal("71000"), True)
    ]
    assert seeded.execute(
        "select alert_id, status::text from monitor.alerts order by alert_id"
    ).fetchall() == [
        (1, "resolved"),
        (2, "firing"),
    ]
    assert [subject for _, _, subject in notifications(seeded)] == [
        BTC_ABOVE_70K_FIRED,
        DISABLED,
        BTC_ABOVE_70K_FIRED,
    ]


def test_disabling_a_disabled_rule_or_one_without_an_open_alert_writes_nothing(seeded):
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")
    call(seeded, "monitor.set_alert_rule_enabled", name="btc-above-70k", enabled=False)
    version = seeded.execute("select xmin::text from monitor.alert_rules").fetchone()
    call(seeded, "monitor.set_alert_rule_enabled", name="btc-above-70k", enabled=False)
    assert seeded.execute("select xmin::text, is_enabled from monitor.alert_rules").fetchone() == (
        *version,
        False,
    )
    assert seeded.execute(
        "select (select count(*) from monitor.alerts), (select count(*) from monitor.alert_events),"
        " (select count(*) from monitor.notifications)"
    ).fetchone() == (0, 0, 0)


def test_disabling_a_rule_waits_for_a_running_evaluation_and_resolves_the_alert_it_opened(seeded, seeded_url):
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")
    at = now_to_the_second(seeded)
    quote(seeded, at - timedelta(seconds=30), "70999", "71001")
    with psycopg.connect(seeded_url, autocommit=True) as disabler, ThreadPoolExecutor(1) as pool:
        with seeded.transaction():
            assert evaluate(seeded, at) == [("btc-above-70k", "fired", Decimal("71000"), False)]
            disabled = pool.submit(call, disabler, "monitor.set_alert_rule_enabled", name="btc-above-70k",
                                   enabled=False)  # fmt: skip
            assert waits_for_a_lock(seeded, disabler.info.backend_pid, "advisory")
        disabled.result(timeout=30)
    assert seeded.execute(
        "select a.status::text, r.is_enabled from monitor.alerts a join monitor.alert_rules r using (rule_id)"
    ).fetchone() == ("resolved", False)


def test_disabling_a_rule_resolves_an_alert_opened_ahead_of_now_no_earlier_than_it_opened(seeded):
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")
    ahead = now_to_the_second(seeded) + timedelta(hours=1)
    quote(seeded, ahead - timedelta(seconds=30), "70999", "71001")
    assert evaluate(seeded, ahead) == [("btc-above-70k", "fired", Decimal("71000"), False)]
    _disable(seeded)
    assert alert_state(seeded, 1) == ("resolved", ahead, None)
    assert [(transition, at) for _, transition, _, _, _, at in _events(seeded)] == [
        ("fired", ahead),
        ("resolved", ahead),
    ]
