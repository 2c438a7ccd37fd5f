"""An evaluation at a time earlier than a rule's latest transition (a backfill, a skewed clock, a
manual run at a past time after pg_cron ran at now) leaves that rule alone, so every alert's
story, and every rule's, reads forwards: no resolution before the opening or the acknowledgement,
no alert opened before the previous one resolved, no late notification before the rule's latest
transition. Other rules are evaluated as usual."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from monitor_helpers import add_rule, evaluate, metric, notifications
from trading_helpers import call, waits_for_a_lock

T = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def _minutes(minutes: int) -> datetime:
    return T + timedelta(minutes=minutes)


def _order_test(
    conn: psycopg.Connection,
    values: dict[int, str],
    cooldown: int = 15,
    channels: tuple[str, ...] = ("slack",),
) -> None:
    """order-test (app.order_test > 10, 1-minute window; 15-minute cooldown and slack unless given) and
    the metric's values at T + minutes."""
    for minute, value in values.items():
        metric(conn, "app.order_test", value, _minutes(minute))
    add_rule(conn, "order-test", "system", ">", "10", metric="app.order_test", channels=list(channels),
             evaluation_window=timedelta(minutes=1), cooldown=timedelta(minutes=cooldown))  # fmt: skip


def _story(conn: psycopg.Connection) -> list[tuple[int, str, datetime]]:
    """(alert, transition, time) of every recorded transition, in write order."""
    return conn.execute(
        "select alert_id, transition::text, occurred_at from monitor.alert_events order by event_id"
    ).fetchall()


def test_an_evaluation_earlier_than_an_alerts_opening_does_not_resolve_it(seeded):
    _order_test(seeded, {-10: "5", 0: "20"})
    assert evaluate(seeded, _minutes(0)) == [("order-test", "fired", Decimal("20"), True)]
    assert evaluate(seeded, _minutes(-10)) == []
    assert seeded.execute("select status::text, resolved_at from monitor.alerts").fetchall() == [
        ("firing", None)
    ]


def test_an_evaluation_earlier_than_an_acknowledgement_does_not_resolve_the_alert(seeded):
    _order_test(seeded, {0: "20", 10: "5"})
    evaluate(seeded, _minutes(0))
    call(seeded, "monitor.acknowledge_alert", alert_id=1, acknowledged_by="alice")  # at now(), after T + 10
    assert evaluate(seeded, _minutes(10)) == []
    assert seeded.execute("select status::text, resolved_at from monitor.alerts").fetchall() == [
        ("acknowledged", None)
    ]


def test_an_evaluation_earlier_than_a_rules_last_resolution_does_not_open_another_alert(seeded):
    # why no channels: nothing is notified, so only the resolution at T + 2 is later than T - 10
    _order_test(seeded, {-10: "20", 0: "20", 2: "5"}, channels=())
    evaluate(seeded, _minutes(0))
    evaluate(seeded, _minutes(2))
    assert evaluate(seeded, _minutes(-10)) == []
    assert _story(seeded) == [(1, "fired", _minutes(0)), (1, "resolved", _minutes(2))]


def test_no_late_notification_is_recorded_before_a_rules_latest_transition(seeded):
    # why a zero cooldown: an alert opened at T - 5, after a firing notified at T, counts -5 minutes
    # since that notification, which no cooldown has passed, so it opens silently; a run at T + 1
    # then counts +1 minute and notifies it late, before the first alert resolved at T + 10
    _order_test(seeded, {-5: "20", 0: "20", 1: "20", 10: "5"}, cooldown=0)
    evaluate(seeded, _minutes(0))
    evaluate(seeded, _minutes(10))
    evaluate(seeded, _minutes(-5))
    assert evaluate(seeded, _minutes(1)) == []
    assert [n[2].split(":")[0] for n in notifications(seeded)] == [
        "[WARNING] order-test fired",
        "[WARNING] order-test resolved",
    ]


def test_a_rule_left_alone_for_its_later_transition_does_not_stop_the_others(seeded):
    _order_test(seeded, {-10: "5", 0: "20"})
    evaluate(seeded, _minutes(0))
    metric(seeded, "app.other_test", "50", _minutes(-10))
    add_rule(seeded, "other-test", "system", ">", "10", metric="app.other_test")
    assert evaluate(seeded, _minutes(-10)) == [("other-test", "fired", Decimal("50"), False)]


# An acknowledgement committed while an evaluation at an earlier time waits for the alert's row
# (the evaluation read the alert as firing, with no acknowledgement yet)
def test_an_alert_acknowledged_while_an_evaluation_waits_for_it_is_not_resolved_before_that(
    seeded, seeded_url
):
    _order_test(seeded, {0: "20", 10: "5"})
    evaluate(seeded, _minutes(0))
    with psycopg.connect(seeded_url, autocommit=True) as evaluator, ThreadPoolExecutor(1) as pool:
        with seeded.transaction():
            call(seeded, "monitor.acknowledge_alert", alert_id=1, acknowledged_by="alice")
            resolving = pool.submit(evaluate, evaluator, _minutes(10))
            assert waits_for_a_lock(seeded, evaluator.info.backend_pid, "transactionid")
        assert resolving.result(timeout=30) == []
    assert seeded.execute("select status::text, resolved_at from monitor.alerts").fetchall() == [
        ("acknowledged", None)
    ]
