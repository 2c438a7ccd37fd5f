"""Refusals no retry changes, retries a receiver can recognise, and requeues after a fix.

- A webhook answer that refuses the request itself (a deleted Slack or Discord webhook's 404, a
  revoked token's 401) or an SMTP 5xx (for every recipient, at MAIL FROM, at DATA) sends the message
  to the dead letter at its first attempt, its last_error saying so: it was retried until
  max_attempts, pending for hours at the default backoff, before the operator saw anything.
- Every attempt of a message names it alike: an email's Message-ID was new at each attempt, so a
  server that took an attempt whose answer was lost saw the retry as another message; the webhook's
  signed body carries the row's delivery_id, which no other database's message has.
- A requeue of a dead email goes to the recipients refused for good before (the operator fixed the
  cause), never again to those who have it.

All against real loopback SMTP and HTTP servers (tests/notify_servers.py).
"""

import hashlib
import hmac
import http
import logging
from collections import deque
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import psycopg
import pytest

from notify_servers import HttpReceiver, queue, slack_worker, smtp_server
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings
from trading_helpers import call, rows

OPS = "ops@desk.test"
BUSY = "busy@desk.test"
GONE = "gone@desk.test"
SECRET = "s3cr3t-hmac-key-do-not-log"
REFUSED = "(refused for good: not retried)"


class StagedMailbox:
    """An SMTP server whose answers are scripted per stage: MAIL FROM, each RCPT TO (by address) and
    DATA answer with the next queued answer of theirs (none queued: 250 OK). Records each RCPT TO
    asked, the Message-ID of every message sent at DATA (taken or not), and each message taken."""

    def __init__(self) -> None:
        self.mail: deque[str] = deque()
        self.rcpt: dict[str, deque[str]] = {}
        self.data: deque[str] = deque()
        self.asked: list[str] = []
        self.message_ids: list[str] = []
        self.taken: list[list[str]] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        answer = self.mail.popleft() if self.mail else "250 OK"
        if answer.startswith("250"):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return answer

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.asked.append(address)
        queued = self.rcpt.get(address)
        answer = queued.popleft() if queued else "250 OK"
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.message_ids.append(message_from_bytes(envelope.content)["Message-ID"])
        answer = self.data.popleft() if self.data else "250 OK"
        if answer.startswith("250"):
            self.taken.append(list(envelope.rcpt_tos))
        return answer


@pytest.fixture
def mailbox() -> Iterator[tuple[int, StagedMailbox]]:
    handler = StagedMailbox()
    with smtp_server(handler) as port:
        yield port, handler


def email_worker(url: str, port: int, *recipients: str, **settings: Any) -> Worker:
    """A worker delivering email to these recipients, retrying at once (backoff 0), 5 attempts."""
    configured = NotifySettings(
        smtp_host="127.0.0.1", smtp_port=port, email_from="Risk desk <risk@desk.test>", email_to=recipients,
        **{"backoff_seconds": 0, **settings},
    )  # fmt: skip
    return Worker(url, configured, configured_channels(configured), name="w1")


def http_worker(url: str, channel: str, receiver: HttpReceiver) -> Worker:
    """A worker delivering this channel to receiver, 5 attempts (the default), retrying at once."""
    if channel == "webhook":
        configured = NotifySettings(
            webhook_url=receiver.url("/events"), webhook_secret=SECRET, backoff_seconds=0
        )
    else:
        configured = NotifySettings(**{f"{channel}_webhook_url": receiver.url(f"/hooks/{channel}/T0KEN")},
                                    backoff_seconds=0)  # fmt: skip
    return Worker(url, configured, configured_channels(configured), name="w1")


def outbox(conn: psycopg.Connection) -> list[tuple[str, int, str | None]]:
    return conn.execute(
        "select status::text, attempts, last_error from monitor.notification_list order by notification_id"
    ).fetchall()


def recipients_state(conn: psycopg.Connection) -> tuple[list[str], list[str]]:
    row = conn.execute("select delivered_to, undeliverable_to from monitor.notification_list").fetchone()
    assert row is not None
    return row[0], row[1]


def delivery_id(conn: psycopg.Connection) -> str:
    row = conn.execute("select delivery_id::text from monitor.notification_list").fetchone()
    assert row is not None
    return row[0]


def requeue(conn: psycopg.Connection) -> None:
    call(conn, "monitor.requeue_notification", notification_id=1)


# ---------------------------------------------------------------------------------------------------
# Refusals for good: the dead letter at the first attempt


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
def test_a_webhook_refusal_for_good_sends_the_message_to_the_dead_letter_at_its_first_attempt(
    seeded, seeded_url, http_receiver, status
):
    queue(seeded, "slack")
    http_receiver.statuses.append(status)
    with slack_worker(seeded_url, http_receiver, backoff_seconds=0) as w:  # 5 attempts
        assert w.drain() == 1
        assert w.outcomes == {"dead": 1}
    assert len(http_receiver.requests) == 1
    assert outbox(seeded) == [("dead", 1, f"HTTP {status} {http.HTTPStatus(status).phrase} {REFUSED}")]


@pytest.mark.parametrize("channel", ["discord", "webhook"])
def test_a_deleted_discord_or_generic_webhook_404_is_dead_at_its_first_attempt(
    seeded, seeded_url, http_receiver, channel
):
    queue(seeded, channel)
    http_receiver.statuses.append(404)
    http_receiver.reason = "Unknown Webhook"  # Discord's answer for a deleted webhook
    with http_worker(seeded_url, channel, http_receiver) as w:
        assert w.drain() == 1
    assert len(http_receiver.requests) == 1
    assert outbox(seeded) == [("dead", 1, f"HTTP 404 Unknown Webhook {REFUSED}")]


def test_a_refusal_for_good_is_logged_as_gone_to_the_dead_letter(seeded, seeded_url, http_receiver, caplog):
    queue(seeded, "slack")
    http_receiver.statuses.append(404)
    http_receiver.reason = "no_service"  # Slack's answer for a removed webhook
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    with slack_worker(seeded_url, http_receiver) as w:
        assert w.drain() == 1
    assert [r.getMessage() for r in caplog.records if r.name == "spreadedge.notify"] == [
        f"notification 1 (slack) attempt 1 failed: HTTP 404 no_service {REFUSED}; now in the dead letter"
    ]


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
def test_a_webhook_answer_that_may_pass_later_is_retried_not_dead(seeded, seeded_url, http_receiver, status):
    queue(seeded, "slack")
    http_receiver.statuses.append(status)
    with slack_worker(seeded_url, http_receiver, backoff_seconds=0) as w:
        assert w.drain() == 2
        assert w.outcomes == {"failed": 1, "delivered": 1}
    assert outbox(seeded) == [("delivered", 2, None)]


def test_an_email_refused_for_good_by_every_recipient_is_dead_at_its_first_attempt_naming_them(
    seeded, seeded_url, mailbox
):
    port, server = mailbox
    server.rcpt[BUSY] = deque(["550 5.1.1 no such user here"])
    server.rcpt[GONE] = deque(["553 5.1.3 mailbox name not allowed"])
    queue(seeded, "email")
    with email_worker(seeded_url, port, BUSY, GONE) as w:
        assert w.drain() == 1
    assert server.asked == [BUSY, GONE]
    assert server.taken == []
    assert outbox(seeded) == [
        ("dead", 1, "SMTP refused 2 of 2 recipients: busy@desk.test (550 5.1.1 no such user here); "
                    f"gone@desk.test (553 5.1.3 mailbox name not allowed) {REFUSED}")
    ]  # fmt: skip
    assert recipients_state(seeded) == ([], [BUSY, GONE])


@pytest.mark.parametrize(
    ("stage", "answer", "error"),
    [
        ("mail", "550 5.7.1 sender not allowed",
         "SMTP: SMTPSenderRefused: (550, b'5.7.1 sender not allowed', 'risk@desk.test')"),
        ("data", "554 5.6.0 message refused",
         "SMTP: SMTPDataError: (554, b'5.6.0 message refused')"),
    ],
)  # fmt: skip
def test_an_smtp_5xx_at_mail_from_or_data_is_dead_at_its_first_attempt(
    seeded, seeded_url, mailbox, stage, answer, error
):
    port, server = mailbox
    getattr(server, stage).append(answer)
    queue(seeded, "email")
    with email_worker(seeded_url, port, OPS) as w:
        assert w.drain() == 1
    assert server.taken == []
    assert outbox(seeded) == [("dead", 1, f"{error} {REFUSED}")]


@pytest.mark.parametrize(("stage", "answer"), [("mail", "451 4.3.0 try later"), ("data", "452 4.3.1 full")])
def test_an_smtp_4xx_at_mail_from_or_data_is_retried(seeded, seeded_url, mailbox, stage, answer):
    port, server = mailbox
    getattr(server, stage).append(answer)
    queue(seeded, "email")
    with email_worker(seeded_url, port, OPS) as w:
        assert w.drain() == 2
    assert server.taken == [[OPS]]
    assert outbox(seeded) == [("delivered", 2, None)]


def test_fail_notification_permanent_sends_a_claimed_notification_to_the_dead_letter_at_once(seeded):
    queue(seeded, "slack")
    with seeded.transaction():
        [claimed] = rows(seeded, "monitor.claim_notifications", worker="w1", channels=["slack"])
        status = call(seeded, "monitor.fail_notification", notification_id=claimed["notification_id"],
                      worker="w1", error="HTTP 410 Gone", max_attempts=5, permanent=True)  # fmt: skip
    assert status == "dead"
    assert outbox(seeded) == [("dead", 1, "HTTP 410 Gone")]


def test_fail_notification_with_a_null_permanent_is_22S09(seeded):
    queue(seeded, "slack")
    with pytest.raises(psycopg.Error) as refused, seeded.transaction():
        [claimed] = rows(seeded, "monitor.claim_notifications", worker="w1", channels=["slack"])
        call(seeded, "monitor.fail_notification", notification_id=claimed["notification_id"], worker="w1",
             error="HTTP 410 Gone", permanent=None)  # fmt: skip
    assert (refused.value.sqlstate, refused.value.diag.message_primary) == (
        "22S09",
        "permanent must be true or false, got null",
    )
    assert outbox(seeded) == [("pending", 0, None)]  # the claim rolled back with it


# ---------------------------------------------------------------------------------------------------
# One name for the message at every attempt


def test_every_attempt_of_an_email_carries_the_same_message_id_made_of_the_rows_delivery_id(
    seeded, seeded_url, mailbox
):
    port, server = mailbox
    server.data.append("451 4.3.0 try again later")  # as a reply lost after DATA: the retry follows
    queue(seeded, "email")
    with email_worker(seeded_url, port, OPS) as w:
        assert w.drain() == 2
    assert server.taken == [[OPS]]
    first, retry = server.message_ids
    assert retry == first
    assert first == f"<notification-1.{delivery_id(seeded)}@desk.test>"


def test_two_notifications_never_share_a_message_id(seeded, seeded_url, mailbox):
    port, server = mailbox
    queue(seeded, "email")
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=False, reason="test")
    with email_worker(seeded_url, port, OPS) as w:
        assert w.drain() == 2
    ids = seeded.execute("select delivery_id::text from monitor.notification_list order by 1").fetchall()
    assert len({i for (i,) in ids}) == 2
    assert sorted(server.message_ids) == sorted(
        f"<notification-{n}.{d}@desk.test>"
        for n, d in seeded.execute("select notification_id, delivery_id from monitor.notification_list")
    )


def test_every_attempt_of_a_webhook_carries_the_rows_delivery_id_signed_and_in_a_header(
    seeded, seeded_url, http_receiver
):
    queue(seeded, "webhook")
    http_receiver.statuses.append(500)
    with http_worker(seeded_url, "webhook", http_receiver) as w:
        assert w.drain() == 2
    first, retry = (r.json().get("delivery_id") for r in http_receiver.requests)
    assert retry == first
    expected = delivery_id(seeded)
    assert first == expected
    assert [r.headers["X-Spreadedge-Delivery-Id"] for r in http_receiver.requests] == [expected, expected]
    for request in http_receiver.requests:  # the body, delivery_id in it, is what the signature covers
        signed = request.headers["X-Spreadedge-Timestamp"].encode() + b"." + request.body
        assert request.headers["X-Spreadedge-Signature"] == (
            "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        )


# ---------------------------------------------------------------------------------------------------
# Requeue of a dead email


def test_a_requeued_email_goes_to_those_refused_for_good_and_not_again_to_those_who_have_it(
    seeded, seeded_url, mailbox
):
    port, server = mailbox
    server.rcpt[BUSY] = deque(["450 4.2.1 mailbox busy"] * 2)
    server.rcpt[GONE] = deque(["550 5.1.1 no such user here"])
    queue(seeded, "email")
    with email_worker(seeded_url, port, OPS, BUSY, GONE, max_attempts=2) as w:
        assert w.drain() == 2
        assert outbox(seeded)[0][0] == "dead"
        assert recipients_state(seeded) == ([OPS], [GONE])
        requeue(seeded)  # the operator made gone's mailbox and busy's has room again
        assert recipients_state(seeded) == ([OPS], [])
        assert w.drain() == 1
    assert server.taken == [[OPS], [BUSY, GONE]]
    assert outbox(seeded) == [("delivered", 1, None)]
    assert recipients_state(seeded) == ([OPS, BUSY, GONE], [])


def test_an_email_refused_by_every_recipient_then_requeued_once_fixed_is_sent_to_them_all(
    seeded, seeded_url, mailbox
):
    port, server = mailbox
    server.rcpt[OPS] = deque(["550 5.7.1 relaying denied"])
    server.rcpt[BUSY] = deque(["550 5.7.1 relaying denied"])
    queue(seeded, "email")
    with email_worker(seeded_url, port, OPS, BUSY) as w:
        assert w.drain() == 1
        assert outbox(seeded)[0][:2] == ("dead", 1)
        requeue(seeded)  # the relay now takes the sender
        assert w.drain() == 1
    assert server.taken == [[OPS, BUSY]]
    assert outbox(seeded) == [("delivered", 1, None)]
    assert recipients_state(seeded) == ([OPS, BUSY], [])


def test_requeue_keeps_last_error_until_the_next_attempt(seeded, seeded_url, http_receiver):
    queue(seeded, "slack")
    http_receiver.statuses.append(404)
    with slack_worker(seeded_url, http_receiver) as w:
        assert w.drain() == 1
    requeue(seeded)
    assert outbox(seeded) == [("pending", 0, f"HTTP 404 Not Found {REFUSED}")]
