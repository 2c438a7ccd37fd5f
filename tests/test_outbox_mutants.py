"""Rules of the notification outbox and of the alerts that fill it that a plausible slip in their
SQL (a bound off by one, a dropped condition, a sort flipped) broke without any other test
noticing: each test here kills one or more mutants of the second mutation run of
68_monitor_notifications.sql and 67_monitor_alerts.sql (none of them a mutant that
test_monitor_mutants.py already kills).

The run: 42 mutants, weighted to what pages an operator twice or never (15 of the alerts, 27 of the
outbox), 30 caught by the existing tests, 12 survived: 11 holes, closed by the 10 tests below, and 1
equivalent; none left open. (Not run: attempts no longer counted at a claim, which loops the
worker's drain for good rather than failing a test.) The caught include a claim without SKIP LOCKED
or without any lock, a claim that ignores next_attempt_at or takes only rows due strictly before its
clock reading, the dead letter one attempt early or late, the backoff exponent off by one, a requeue
that keeps the attempts, the cooldown bound of a late notification, an acknowledged alert notified
late and a resolution always or never notified.

Holes, each killed by one test below: a claim taking a delivered message again once its lease has
passed; next_notification_due counting a delivered message (a worker wakes for nothing at its
lease's end); next_notification_due reading the latest pending message rather than the earliest; a
report by a worker that did not claim the message; a failure reported for a message already
delivered (it went back to pending and was sent again); a requeue of a delivered message; a claim
taking a dead letter again once its lease has passed; the backoff's cap tested at one doubling too
many or too few (two mutants, one test); a failure that left the claim's waiting_since (a clock
stepped back mid-send dropped the backoff); a resolution recorded strictly after the acknowledgement
(an acknowledged alert opened ahead of now never resolved while the clock was behind).

Equivalent: the backoff's cap tested with <= for < (at equality backoff x 2^(attempts - 1) is
max_backoff, so either branch waits the same).

Every expected value is worked out by hand in its comment."""

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from monitor_helpers import add_rule, evaluate, metric, now_to_the_second
from test_notify import queue
from trading_helpers import call, rows

# -- helpers ----------------------------------------------------------------------------------------


def claim(conn: psycopg.Connection, worker: str = "w", batch_size: int = 10) -> list[tuple[int, int]]:
    """(notification_id, attempts) of the slack messages this worker claims."""
    claimed = rows(
        conn, "monitor.claim_notifications", worker=worker, channels=["slack"], batch_size=batch_size
    )
    return [(row["notification_id"], row["attempts"]) for row in claimed]


def fail(conn: psycopg.Connection, notification_id: int, **kwargs: object) -> str:
    """Report worker w's attempt at the message failed; the new status."""
    return call(conn, "monitor.fail_notification", notification_id=notification_id, worker="w",
                error="HTTP 500", **kwargs)  # fmt: skip


def state(conn: psycopg.Connection) -> list[tuple[str, int]]:
    """(status, attempts) of every outbox row, in order."""
    return conn.execute(
        "select status::text, attempts from monitor.notifications order by notification_id"
    ).fetchall()


def delivered(conn: psycopg.Connection) -> None:
    """One slack message queued, claimed by worker w (attempt 1) and reported delivered."""
    queue(conn, ["slack"])
    with conn.transaction():
        assert claim(conn) == [(1, 1)]
        call(conn, "monitor.complete_notification", notification_id=1, worker="w")


def refused(action) -> tuple[str, str]:
    """(SQLSTATE, message) of the error the action raises."""
    with pytest.raises(psycopg.Error) as caught:
        action()
    return caught.value.sqlstate, caught.value.diag.message_primary


# -- the claim ----------------------------------------------------------------------------------------


def test_a_delivered_message_is_not_claimed_again_once_its_lease_has_passed(seeded):
    delivered(seeded)
    # its next_attempt_at is still the claim's lease (claimed + 5 minutes): let it pass
    seeded.execute("update monitor.notifications set next_attempt_at = now() - interval '1 second'")

    assert claim(seeded) == []
    assert state(seeded) == [("delivered", 1)]


def test_a_delivered_message_leaves_nothing_due(seeded):
    delivered(seeded)

    # not its lease's end (claimed + 5 minutes): a worker would wake then for nothing
    assert call(seeded, "monitor.next_notification_due", channels=["slack"]) is None


def test_the_next_due_time_is_the_earliest_pending_messages(seeded):
    queue(seeded, ["slack"], orders=1)
    soon = now_to_the_second(seeded) + timedelta(hours=1)
    seeded.execute(
        "update monitor.notifications set next_attempt_at = %s + interval '1 hour' * (2 - notification_id)",
        [soon],
    )  # 1 due in two hours, 2 in one

    assert call(seeded, "monitor.next_notification_due", channels=["slack"]) == soon


# -- the report ----------------------------------------------------------------------------------------


def test_a_message_one_worker_claimed_cannot_be_reported_by_another(seeded):
    queue(seeded, ["slack"])
    assert claim(seeded, worker="a") == [(1, 1)]  # committed: delivering, claimed by a

    assert refused(lambda: call(seeded, "monitor.complete_notification", notification_id=1, worker="b")) == (
        "55S06",
        'notification 1 is not claimed by worker "b"',
    )
    assert state(seeded) == [("delivering", 1)]


def test_a_delivered_message_reported_failed_afterwards_is_refused_and_stays_delivered(seeded):
    delivered(seeded)

    # still claimed_by w, but no longer delivering: a failure now would send it again
    assert refused(lambda: fail(seeded, 1)) == ("55S06", 'notification 1 is not claimed by worker "w"')
    assert state(seeded) == [("delivered", 1)]


def test_a_failure_reported_after_the_clock_stepped_back_mid_send_keeps_its_backoff(seeded):
    queue(seeded, ["slack"])
    with seeded.transaction():
        claim(seeded)
        # the claim stamped its wait an hour later than the clock reads when the send fails (the
        # clock stepped back an hour while the message was being sent)
        seeded.execute(
            "update monitor.notifications set waiting_since = clock_timestamp() + interval '1 hour'"
        )
        assert fail(seeded, 1, backoff=timedelta(seconds=60)) == "pending"

    # the failure's wait starts now, by the clock as it now reads: 60 s away, not due at once
    assert claim(seeded) == []
    assert state(seeded) == [("pending", 1)]


# -- backoff, dead letter and requeue -------------------------------------------------------------------


def test_the_backoff_reaches_max_backoff_at_the_attempt_whose_doubling_passes_it(seeded):
    queue(seeded, ["slack"])
    waits = []
    for _ in range(2):
        with seeded.transaction():
            claim(seeded)
            assert (
                fail(seeded, 1, backoff=timedelta(seconds=60), max_backoff=timedelta(seconds=100))
                == "pending"
            )
        waits.append(seeded.execute(
            "select round(extract(epoch from next_attempt_at - waiting_since)) from monitor.notifications"
        ).fetchone()[0])  # fmt: skip
        seeded.execute("update monitor.notifications set next_attempt_at = now() - interval '1 second'")

    # attempt 1: 60 x 2^0 = 60 < 100; attempt 2: 60 x 2^1 = 120, capped at 100
    assert waits == [Decimal("60"), Decimal("100")]


def test_a_dead_letter_is_not_claimed_again_once_its_lease_has_passed(seeded):
    queue(seeded, ["slack"])
    with seeded.transaction():
        claim(seeded)
        assert fail(seeded, 1, max_attempts=1) == "dead"  # attempt 1 of 1
    # its next_attempt_at is still the claim's lease (claimed + 5 minutes): let it pass
    seeded.execute("update monitor.notifications set next_attempt_at = now() - interval '1 second'")

    assert claim(seeded) == []  # only requeue_notification gives it another round
    assert state(seeded) == [("dead", 1)]


def test_requeueing_a_delivered_message_is_refused_and_sends_nothing_again(seeded):
    delivered(seeded)

    assert refused(lambda: call(seeded, "monitor.requeue_notification", notification_id=1)) == (
        "55S06",
        "notification 1 is not in the dead letter: it is delivered",
    )
    assert state(seeded) == [("delivered", 1)]


# -- alerts ---------------------------------------------------------------------------------------------


def test_an_acknowledged_alert_opened_ahead_of_now_resolves_at_its_acknowledgement_time(seeded):
    ahead = now_to_the_second(seeded) + timedelta(hours=1)  # an evaluation ran an hour ahead
    metric(seeded, "app.lag", "20", ahead)
    add_rule(seeded, "lag", "system", ">", "10", metric="app.lag", channels=["slack"])
    assert evaluate(seeded, ahead) == [("lag", "fired", Decimal("20"), True)]
    call(seeded, "monitor.acknowledge_alert", alert_id=1, acknowledged_by="alice")  # at ahead, not now
    metric(seeded, "app.lag", "5", now_to_the_second(seeded) - timedelta(seconds=10))

    # a run at now records the rule's transitions at its latest time, the acknowledgement's
    # (ahead): a resolution at that very time follows it, it is not before it
    assert evaluate(seeded) == [("lag", "resolved", Decimal("5"), True)]
    assert seeded.execute("select status::text, resolved_at from monitor.alerts").fetchone() == (
        "resolved",
        ahead,
    )
