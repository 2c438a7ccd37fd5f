"""An email the SMTP server refuses for some recipients: those it refused for now (4xx) are still
owed the message, and the outbox row says so (monitor.notifications.delivered_to), so the next
attempt, by this worker or another after a restart, goes to them alone; those it refused for good
(5xx) are never tried again (undeliverable_to), and the message is delivered once no one is owed."""

import logging
from collections import deque
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import psycopg
import pytest

from notify_servers import queue, smtp_server
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings
from trading_helpers import call

OPS = "ops@desk.test"
BUSY = "busy@desk.test"  # the recipient the server refuses for now
GONE = "gone@desk.test"  # the recipient the server refuses for good
CTO = "cto@desk.test"
MAILBOX_BUSY = "450 4.2.1 mailbox busy"
NO_SUCH_USER = "550 5.1.1 no such user here"


class ScriptedMailbox:
    """Answers each RCPT TO with the next queued answer of its address (none queued: 250), and
    records every RCPT TO asked and every message taken (with the recipients it was taken for)."""

    def __init__(self) -> None:
        self.answers: dict[str, deque[str]] = {}
        self.always: dict[str, str] = {}  # addresses refused on every attempt, with this answer
        self.asked: list[str] = []
        self.taken: list[list[str]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.asked.append(address)
        queued = self.answers.get(address)
        answer = queued.popleft() if queued else self.always.get(address, "250 OK")
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message_from_bytes(envelope.content)  # a whole message
        self.taken.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[int, ScriptedMailbox]]:
    handler = ScriptedMailbox()
    with smtp_server(handler) as port:
        yield port, handler


def email_worker(url: str, port: int, *recipients: str, name: str = "w1", **settings: Any) -> Worker:
    """A worker delivering email to these recipients, retrying at once (backoff 0) unless told."""
    configured = NotifySettings(
        smtp_host="127.0.0.1", smtp_port=port, email_from="risk@desk.test", email_to=recipients,
        **{"backoff_seconds": 0, **settings},
    )  # fmt: skip
    return Worker(url, configured, configured_channels(configured), name=name)


def outbox(conn: psycopg.Connection) -> list[tuple[str, int, str | None]]:
    return conn.execute(
        "select status::text, attempts, last_error from monitor.notifications order by notification_id"
    ).fetchall()


def recipients_state(conn: psycopg.Connection) -> tuple[list[str], list[str]]:
    """(delivered_to, undeliverable_to) of the one notification, as the outbox view shows them."""
    row = conn.execute("select delivered_to, undeliverable_to from monitor.notification_list").fetchone()
    assert row is not None
    return row[0], row[1]


def notify_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "spreadedge.notify"]


def test_a_recipient_refused_for_now_is_sent_the_next_attempt_alone_and_the_message_ends_delivered(
    seeded, seeded_url, mailbox, caplog
):
    port, server = mailbox
    server.answers[BUSY] = deque([MAILBOX_BUSY])
    queue(seeded, "email")
    caplog.set_level(logging.INFO, logger="spreadedge.notify")
    with email_worker(seeded_url, port, OPS, BUSY) as w:
        assert w.drain() == 2
        assert w.outcomes == {"failed": 1, "delivered": 1}
    assert server.asked == [OPS, BUSY, BUSY]
    assert server.taken == [[OPS], [BUSY]]
    assert outbox(seeded) == [("delivered", 2, None)]
    assert recipients_state(seeded) == ([OPS, BUSY], [])
    assert notify_log(caplog) == [
        "notification 1 (email) attempt 1 failed: SMTP refused 1 of 2 recipients: "
        "busy@desk.test (450 4.2.1 mailbox busy); now pending a retry",
        "notification 1 (email) delivered",
    ]


def test_a_recipient_always_refused_for_now_ends_the_message_dead_and_the_other_has_one_copy(
    seeded, seeded_url, mailbox
):
    port, server = mailbox
    server.always[BUSY] = MAILBOX_BUSY
    queue(seeded, "email")
    with email_worker(seeded_url, port, OPS, BUSY, max_attempts=3) as w:
        assert w.drain() == 3
        assert w.outcomes == {"failed": 2, "dead": 1}
    assert server.asked == [OPS, BUSY, BUSY, BUSY]
    assert server.taken == [[OPS]]
    assert outbox(seeded) == [
        ("dead", 3, "SMTP refused 1 of 1 recipients: busy@desk.test (450 4.2.1 mailbox busy)")
    ]
    assert recipients_state(seeded) == ([OPS], [])


def test_a_worker_restart_between_attempts_keeps_who_is_still_owed_the_message(seeded, seeded_url, mailbox):
    port, server = mailbox
    server.answers[BUSY] = deque([MAILBOX_BUSY])
    queue(seeded, "email")
    with email_worker(seeded_url, port, OPS, BUSY, batch_size=1) as first:
        assert first.run_once() == 1  # one attempt, then the worker is gone
    assert outbox(seeded) == [
        ("pending", 1, "SMTP refused 1 of 2 recipients: busy@desk.test (450 4.2.1 mailbox busy)")
    ]
    assert recipients_state(seeded) == ([OPS], [])
    with email_worker(seeded_url, port, OPS, BUSY, name="w2") as second:
        assert second.drain() == 1
    assert server.taken == [[OPS], [BUSY]]
    assert outbox(seeded) == [("delivered", 2, None)]


def test_a_recipient_refused_for_good_is_never_tried_again_while_one_refused_for_now_is(
    seeded, seeded_url, mailbox, caplog
):
    port, server = mailbox
    server.answers[BUSY] = deque([MAILBOX_BUSY])
    server.always[GONE] = NO_SUCH_USER
    queue(seeded, "email")
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    with email_worker(seeded_url, port, OPS, BUSY, GONE) as w:
        assert w.drain() == 2
    assert server.asked == [OPS, BUSY, GONE, BUSY]
    assert server.taken == [[OPS], [BUSY]]
    assert outbox(seeded) == [("delivered", 2, None)]
    assert recipients_state(seeded) == ([OPS, BUSY], [GONE])
    assert notify_log(caplog) == [
        "notification 1 (email) attempt 1 failed: SMTP refused 2 of 3 recipients: "
        "busy@desk.test (450 4.2.1 mailbox busy); gone@desk.test (550 5.1.1 no such user here); now pending a retry"
    ]


def test_a_recipient_refused_for_now_then_for_good_leaves_the_message_delivered_to_the_others(
    seeded, seeded_url, mailbox, caplog
):
    port, server = mailbox
    server.answers[BUSY] = deque([MAILBOX_BUSY, NO_SUCH_USER])
    queue(seeded, "email")
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    with email_worker(seeded_url, port, OPS, BUSY) as w:
        assert w.drain() == 2
        assert w.drain() == 0
    assert server.asked == [OPS, BUSY, BUSY]
    assert server.taken == [[OPS]]
    assert outbox(seeded) == [("delivered", 2, None)]
    assert recipients_state(seeded) == ([OPS], [BUSY])
    assert notify_log(caplog)[-1] == (
        "notification 1 (email) delivered, but not to every recipient: SMTP refused 1 of 1 recipients: "
        "busy@desk.test (550 5.1.1 no such user here)"
    )


def test_a_recipient_added_to_email_to_between_attempts_is_sent_the_retry_and_one_removed_is_not(
    seeded, seeded_url, mailbox
):
    port, server = mailbox
    server.answers[BUSY] = deque([MAILBOX_BUSY])
    queue(seeded, "email")
    with email_worker(seeded_url, port, OPS, BUSY, batch_size=1) as before:
        assert before.run_once() == 1
    # the operator replaces busy with the CTO in email_to and restarts the worker
    with email_worker(seeded_url, port, OPS, CTO, name="w2") as after:
        assert after.drain() == 1
    assert server.taken == [[OPS], [CTO]]
    assert outbox(seeded) == [("delivered", 2, None)]
    assert recipients_state(seeded) == ([OPS, CTO], [])


def test_a_retry_owed_to_no_recipient_of_email_to_any_more_is_delivered_without_sending(
    seeded, seeded_url, mailbox
):
    port, server = mailbox
    server.answers[BUSY] = deque([MAILBOX_BUSY])
    queue(seeded, "email")
    with email_worker(seeded_url, port, OPS, BUSY, batch_size=1) as before:
        assert before.run_once() == 1
    with email_worker(seeded_url, port, OPS, name="w2") as after:  # busy removed from email_to
        assert after.drain() == 1
    assert server.taken == [[OPS]]
    assert outbox(seeded) == [("delivered", 2, None)]
    assert recipients_state(seeded) == ([OPS], [])


def test_an_email_refused_for_every_recipient_before_anyone_has_it_is_retried_for_those_refused_for_now(
    seeded, seeded_url, mailbox
):
    port, server = mailbox
    server.answers[BUSY] = deque([MAILBOX_BUSY])
    server.answers[GONE] = deque([NO_SUCH_USER])
    queue(seeded, "email")
    with email_worker(seeded_url, port, BUSY, GONE) as w:
        assert w.drain() == 2
    # no one had it after the first attempt: the second asks again for the one refused for now
    # alone (a 5xx is for good, whoever has the message), and it takes it
    assert server.asked == [BUSY, GONE, BUSY]
    assert server.taken == [[BUSY]]
    assert outbox(seeded) == [("delivered", 2, None)]
    assert recipients_state(seeded) == ([BUSY], [GONE])


def test_recording_recipients_of_a_notification_the_worker_has_not_claimed_is_55S06(seeded):
    queue(seeded, "email")
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.record_notification_recipients", notification_id=1, worker="w1",
             delivered_to=[OPS], undeliverable_to=[])  # fmt: skip
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "55S06",
        'notification 1 is not claimed by worker "w1"',
    )
    assert recipients_state(seeded) == ([], [])
