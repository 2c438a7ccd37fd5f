"""The notify worker: huge payload numbers, non-ASCII SMTP passwords and backoffs across DST, against real loopback receivers."""

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from psycopg import sql

from conftest import free_port
from market_helpers import quote
from monitor_helpers import add_rule, evaluate, now_to_the_second
from notify_servers import SmtpReceiver, _Mailbox, accepting_login, queue
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings

SECRET = "s3cr3t-hmac-key-do-not-log"
HUGE = "1" + "0" * 5000  # a finite numeric threshold with more digits than Python's int() reads


def outbox(conn):
    return conn.execute(
        "select channel::text, status::text, attempts, last_error from monitor.notifications order by notification_id"
    ).fetchall()


def test_a_payload_with_a_5001_digit_integer_is_delivered_with_it_exact(seeded, seeded_url, http_receiver):
    add_rule(seeded, "below-huge", "price", "<", HUGE, exchange="binance", symbol="BTCUSDT",
             channels=["webhook"], cooldown=timedelta(0))  # fmt: skip
    at = now_to_the_second(seeded)
    quote(seeded, at - timedelta(seconds=30), "70999", "71001")
    assert [row[1] for row in evaluate(seeded, at)] == ["fired"]
    settings = NotifySettings(
        webhook_url=http_receiver.url("/events"), webhook_secret=SECRET, backoff_seconds=0
    )
    with Worker(seeded_url, settings, configured_channels(settings)) as w:
        assert w.drain() == 1
    [request] = http_receiver.requests
    assert b'"threshold": ' + HUGE.encode() + b"," in request.body
    assert outbox(seeded) == [("webhook", "delivered", 1, None)]


UTF8_LOGIN = ("desk", "pässwort-ünïcode-do-not-log")  # RFC 4616: PLAIN credentials are UTF-8


@pytest.fixture
def smtp_utf8_login_receiver() -> Iterator[SmtpReceiver]:
    """An SMTP server on loopback that takes only the UTF8_LOGIN (AUTH without TLS: loopback)."""

    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        # why not auth_required: aiosmtpd warns about it without TLS (an error here); the worker
        # logs in whenever smtp_username is set, and a refused login fails the attempt anyway
        auth_require_tls=False,
        authenticator=accepting_login(UTF8_LOGIN),
    )
    controller.start()
    try:
        yield SmtpReceiver(port, mailbox)
    finally:
        controller.stop()


def test_an_smtp_password_with_non_ascii_characters_logs_in_and_delivers(
    seeded, seeded_url, smtp_utf8_login_receiver, caplog
):
    queue(seeded, "email")
    user, password = UTF8_LOGIN
    settings = NotifySettings(
        smtp_host="127.0.0.1", smtp_port=smtp_utf8_login_receiver.port, smtp_username=user,
        smtp_password=password, email_from="risk@desk.test", email_to=("ops@desk.test",),
    )  # fmt: skip
    caplog.set_level(logging.INFO, logger="spreadedge.notify")
    with Worker(seeded_url, settings, configured_channels(settings)) as w:
        assert w.drain() == 1
    assert outbox(seeded) == [("email", "delivered", 1, None)]
    [(_, recipients, message)] = smtp_utf8_login_receiver.mailbox.messages
    assert recipients == ["ops@desk.test"]
    assert message["Subject"] == "[RISK] alpha: kill switch on: test"


BERLIN = ZoneInfo("Europe/Berlin")


def days_to_first_offset_change(start: datetime) -> int:
    """The fewest whole days from start over which Berlin's UTC offset changes (one DST switch)."""
    offset = start.astimezone(BERLIN).utcoffset()
    return next(
        n for n in range(1, 400) if (start + timedelta(days=n)).astimezone(BERLIN).utcoffset() != offset
    )


def test_a_backoff_of_whole_days_across_a_dst_change_waits_exactly_its_seconds(
    seeded, seeded_url, http_receiver
):
    # the worker's sessions run in Europe/Berlin (a database default, as a server in Germany has)
    database = seeded.execute("select current_database()").fetchone()[0]
    seeded.execute(
        sql.SQL("alter database {} set timezone = 'Europe/Berlin'").format(sql.Identifier(database))
    )
    queue(seeded, "slack")
    http_receiver.statuses.append(500)
    before = seeded.execute("select clock_timestamp()").fetchone()[0]
    seconds = days_to_first_offset_change(before) * 86_400
    settings = NotifySettings(slack_webhook_url=http_receiver.url("/hooks/slack/T0KEN"),
                              backoff_seconds=seconds, max_backoff_seconds=seconds)  # fmt: skip
    with Worker(seeded_url, settings, configured_channels(settings)) as w:
        assert w.run_once() == 1
    after = seeded.execute("select clock_timestamp()").fetchone()[0]
    [(status, due)] = seeded.execute(
        "select status::text, next_attempt_at from monitor.notifications"
    ).fetchall()
    assert status == "pending"
    # README: a failure waits backoff_seconds x 2^(attempt - 1) seconds, at most max_backoff_seconds
    assert before + timedelta(seconds=seconds) <= due <= after + timedelta(seconds=seconds)
