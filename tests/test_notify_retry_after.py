"""A webhook receiver that rate-limits (HTTP 429, or 503 with Retry-After) is retried no sooner than
it asked, no later than the worker's max_backoff, and each refusal still counts an attempt.

next_attempt_at is clock_timestamp() + the wait, taken inside monitor.fail_notification: the tests
read the database's clock before and after the worker's run, so the row's time lies between those
two plus the wait, exactly.
"""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import psycopg
import pytest

from notify_servers import HttpReceiver, queue
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings
from trading_helpers import call, rows

SECRET = "s3cr3t-hmac-key-do-not-log"
TOKEN = "SUPERSECRETtoken"  # the secret part of a Slack or Discord webhook URL
SETTING = {"slack": "slack_webhook_url", "discord": "discord_webhook_url", "webhook": "webhook_url"}


def settings_for(channel: str, receiver: HttpReceiver, **numbers: Any) -> NotifySettings:
    url = receiver.url(f"/hooks/{channel}/{TOKEN}")
    secret = {"webhook_secret": SECRET} if channel == "webhook" else {}
    return NotifySettings(**{SETTING[channel]: url}, **secret, **numbers)


def clock(conn: psycopg.Connection) -> datetime:
    return conn.execute("select clock_timestamp()").fetchone()[0]


def fail_once(conn: psycopg.Connection, url: str, settings: NotifySettings) -> tuple[datetime, datetime]:
    """One attempt by a worker with these settings; the database's clock before and after it."""
    with Worker(url, settings, configured_channels(settings)) as w:
        before = clock(conn)
        assert w.run_once() == 1
        after = clock(conn)
    return before, after


def the_row(conn: psycopg.Connection) -> tuple[str, int, datetime, str]:
    return conn.execute(
        "select status::text, attempts, next_attempt_at, last_error from monitor.notifications"
    ).fetchone()


@pytest.mark.parametrize("channel", ["slack", "discord", "webhook"])
def test_a_429_with_retry_after_seconds_is_retried_no_sooner_than_asked(
    seeded, seeded_url, http_receiver, channel
):
    queue(seeded, channel)
    http_receiver.statuses.append(429)
    http_receiver.headers.append({"Retry-After": "120"})
    before, after = fail_once(seeded, seeded_url, settings_for(channel, http_receiver, backoff_seconds=30))
    status, attempts, due, error = the_row(seeded)
    assert (status, attempts, error) == (
        "pending",
        1,
        "HTTP 429 Too Many Requests (rate limited: retry after 120 s)",
    )
    assert before + timedelta(seconds=120) <= due <= after + timedelta(seconds=120)


def test_a_503_with_retry_after_is_retried_no_sooner_than_asked(seeded, seeded_url, http_receiver):
    queue(seeded, "slack")
    http_receiver.statuses.append(503)
    http_receiver.headers.append({"Retry-After": "90"})
    before, after = fail_once(seeded, seeded_url, settings_for("slack", http_receiver, backoff_seconds=30))
    status, attempts, due, error = the_row(seeded)
    assert (status, attempts, error) == (
        "pending",
        1,
        "HTTP 503 Service Unavailable (unavailable: retry after 90 s)",
    )
    assert before + timedelta(seconds=90) <= due <= after + timedelta(seconds=90)


def test_a_retry_after_http_date_waits_from_the_answers_date_until_it(seeded, seeded_url, http_receiver):
    queue(seeded, "slack")
    # why a date in 2001: the wait is the distance between the two headers, whatever the clocks
    sent = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    headers = {
        "Date": format_datetime(sent, usegmt=True),
        "Retry-After": format_datetime(sent + timedelta(seconds=300), usegmt=True),
    }
    http_receiver.statuses.append(429)
    http_receiver.headers.append(headers)
    before, after = fail_once(seeded, seeded_url, settings_for("slack", http_receiver, backoff_seconds=30))
    status, attempts, due, error = the_row(seeded)
    assert (status, attempts, error) == (
        "pending",
        1,
        "HTTP 429 Too Many Requests (rate limited: retry after 300 s)",
    )
    assert before + timedelta(seconds=300) <= due <= after + timedelta(seconds=300)


def test_a_retry_after_http_date_without_a_date_header_is_not_tried_before_it(
    seeded, seeded_url, http_receiver
):
    queue(seeded, "slack")
    # whole seconds, as an HTTP-date has them, and far beyond the backoff
    asked = (clock(seeded) + timedelta(seconds=600)).replace(microsecond=0)
    http_receiver.statuses.append(429)
    http_receiver.headers.append({"Retry-After": format_datetime(asked.astimezone(UTC), usegmt=True)})
    before, after = fail_once(seeded, seeded_url, settings_for("slack", http_receiver, backoff_seconds=30))
    status, attempts, due, error = the_row(seeded)
    assert (status, attempts) == ("pending", 1)
    assert error.startswith("HTTP 429 Too Many Requests (rate limited: retry after ")
    # measured from the worker's clock while it ran: at most (after - before) past the date
    assert asked <= due <= asked + (after - before)


@pytest.mark.parametrize("retry_after", ["315360000", "9" * 400], ids=["ten years", "400 digits"])
def test_a_retry_after_beyond_max_backoff_waits_max_backoff(seeded, seeded_url, http_receiver, retry_after):
    queue(seeded, "slack")
    http_receiver.statuses.append(429)
    http_receiver.headers.append({"Retry-After": retry_after})
    settings = settings_for("slack", http_receiver, backoff_seconds=30, max_backoff_seconds=600)
    before, after = fail_once(seeded, seeded_url, settings)
    status, attempts, due, error = the_row(seeded)
    assert (status, attempts) == ("pending", 1)
    assert error.startswith("HTTP 429 Too Many Requests (rate limited: retry after ")
    assert before + timedelta(seconds=600) <= due <= after + timedelta(seconds=600)


@pytest.mark.parametrize(
    ("headers", "note"),
    [
        ({"Retry-After": "soon"}, "rate limited; Retry-After not understood"),
        ({"Retry-After": "-120"}, "rate limited; Retry-After not understood"),
        ({"Retry-After": "Mon, 32 Oct 2015 07:28:00 GMT"}, "rate limited; Retry-After not understood"),
        ({}, "rate limited"),
    ],
    ids=["words", "negative", "impossible date", "missing"],
)
def test_a_429_without_a_readable_retry_after_waits_the_usual_backoff(
    seeded, seeded_url, http_receiver, headers, note
):
    queue(seeded, "slack")
    http_receiver.statuses.append(429)
    http_receiver.headers.append(headers)
    before, after = fail_once(seeded, seeded_url, settings_for("slack", http_receiver, backoff_seconds=45))
    status, attempts, due, error = the_row(seeded)
    assert (status, attempts, error) == ("pending", 1, f"HTTP 429 Too Many Requests ({note})")
    assert before + timedelta(seconds=45) <= due <= after + timedelta(seconds=45)


def test_a_receiver_that_always_answers_429_ends_in_the_dead_letter_after_max_attempts(
    seeded, seeded_url, http_receiver
):
    queue(seeded, "webhook")
    http_receiver.statuses.extend([429] * 5)
    http_receiver.headers.extend([{"Retry-After": "0"}] * 5)
    settings = settings_for("webhook", http_receiver, backoff_seconds=0, max_attempts=3)
    with Worker(seeded_url, settings, configured_channels(settings)) as w:
        assert w.drain() == 3  # Retry-After 0 and backoff 0: due again at once
    assert len(http_receiver.requests) == 3
    status, attempts, _, error = the_row(seeded)
    assert (status, attempts, error) == (
        "dead",
        3,
        "HTTP 429 Too Many Requests (rate limited: retry after 0 s)",
    )


def test_a_rate_limited_answer_quoting_the_url_is_stored_without_the_token(seeded, seeded_url, http_receiver):
    queue(seeded, "discord")
    http_receiver.echo_path = True
    http_receiver.statuses.append(429)
    http_receiver.headers.append({"Retry-After": "120"})
    fail_once(seeded, seeded_url, settings_for("discord", http_receiver))
    _, _, _, error = the_row(seeded)
    assert error == "HTTP 429 Too Many Requests: *** (rate limited: retry after 120 s)"


def test_fail_notification_refuses_a_negative_retry_after_with_22S09(seeded):
    queue(seeded, "slack")
    with pytest.raises(psycopg.Error) as refused, seeded.transaction():
        [claimed] = rows(seeded, "monitor.claim_notifications", worker="w1", channels=["slack"])
        call(seeded, "monitor.fail_notification", notification_id=claimed["notification_id"], worker="w1",
             error="HTTP 429", retry_after=timedelta(seconds=-1))  # fmt: skip
    assert refused.value.sqlstate == "22S09"
    # psycopg sends timedelta(seconds=-1) as -1 days + 86399 seconds; PostgreSQL shows it so
    assert refused.value.diag.message_primary == "retry_after must be zero or more, got -1 days +23:59:59"
    status, attempts, _, error = the_row(seeded)
    assert (status, attempts, error) == ("pending", 0, None)  # the claim rolled back with it
