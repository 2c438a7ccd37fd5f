"""The notification worker against real loopback servers: SMTP email, Slack, Discord and a signed
webhook; retries with backoff, the dead letter, two workers, LISTEN/NOTIFY and secrets."""

import base64
import hashlib
import hmac
import http
import json
import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from importlib import metadata

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from conftest import free_port
from notify_servers import SMTP_LOGIN
from spreadedge.notify import Message, Worker, configured_channels
from spreadedge.notify.channels import ChannelSettingsError
from spreadedge.settings import NotifySettings, SettingsError, load_settings
from trading_helpers import call, place, rows

SECRET = "s3cr3t-hmac-key-do-not-log"
SLACK_TOKEN = "SUPERSECRETtoken"  # the secret part of a Slack webhook URL
EXACT = "50000.000000000000000001"  # a numeric that a float rounds to 50000.0


def queue(conn, channels, orders=0):
    """A kill switch change (one notification per channel), then `orders` rejected orders."""
    call(conn, "monitor.set_risk_limit", strategy="alpha", channels=channels)
    call(conn, "monitor.set_kill_switch", strategy="alpha", enabled=True, reason="test")
    for _ in range(orders):
        place(conn, "buy", "0.01", "60000")


def outbox(conn):
    return conn.execute(
        "select channel::text, status::text, attempts, last_error from monitor.notifications order by notification_id"
    ).fetchall()


def worker(url, **settings):
    notify = NotifySettings(backoff_seconds=0, **settings)
    return Worker(url, notify, configured_channels(notify))


def test_email_is_delivered_over_smtp(seeded, seeded_url, smtp_receiver):
    queue(seeded, ["email"])
    with worker(seeded_url, smtp_host="127.0.0.1", smtp_port=smtp_receiver.port, email_from="risk@desk.test",
                email_to=("ops@desk.test", "cto@desk.test")) as w:  # fmt: skip
        assert w.drain() == 1
    [(sender, recipients, message)] = smtp_receiver.mailbox.messages
    assert (sender, recipients) == ("risk@desk.test", ["ops@desk.test", "cto@desk.test"])
    assert message["Subject"] == "[RISK] alpha: kill switch on: test"
    assert '"limit_kind": "kill_switch"' in message.get_payload()
    assert outbox(seeded) == [("email", "delivered", 1, None)]


def test_an_email_refused_for_one_recipient_is_delivered_to_the_others_once_and_says_so(
    seeded, seeded_url, smtp_receiver, caplog
):
    queue(seeded, ["email"])
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    with worker(seeded_url, smtp_host="127.0.0.1", smtp_port=smtp_receiver.port,
                email_to=("ops@desk.test", "gone@unknown.desk.test")) as w:  # fmt: skip
        assert w.drain() == 1
    assert [recipients for _, recipients, _ in smtp_receiver.mailbox.messages] == [["ops@desk.test"]]
    assert outbox(seeded) == [("email", "delivered", 1, None)]
    assert [record.getMessage() for record in caplog.records] == [
        "notification 1 (email) delivered, but not to every recipient: SMTP refused 1 of 2 recipients: "
        "gone@unknown.desk.test (550 5.1.1 no such user here)"
    ]


def test_an_email_refused_for_every_recipient_is_a_failed_attempt(seeded, seeded_url, smtp_receiver):
    queue(seeded, ["email"])
    with worker(seeded_url, smtp_host="127.0.0.1", smtp_port=smtp_receiver.port, max_attempts=1,
                email_to=("gone@unknown.desk.test",)) as w:  # fmt: skip
        assert w.drain() == 1
    assert smtp_receiver.mailbox.messages == []
    assert outbox(seeded) == [
        ("email", "dead", 1, "SMTP refused 1 of 1 recipients: gone@unknown.desk.test "
                             "(550 5.1.1 no such user here) (refused for good: not retried)")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("channel", "setting", "body"),
    [
        ("slack", "slack_webhook_url", {"text": "[RISK] alpha: kill switch on: test"}),
        (
            "discord",
            "discord_webhook_url",
            {"content": "[RISK] alpha: kill switch on: test", "allowed_mentions": {"parse": []}},
        ),
    ],
)
def test_slack_and_discord_webhooks_get_their_message_shape(
    seeded, seeded_url, http_receiver, channel, setting, body
):
    queue(seeded, [channel])
    with worker(seeded_url, **{setting: http_receiver.url(f"/hooks/{channel}/T0KEN")}) as w:
        assert w.drain() == 1
    [request] = http_receiver.requests
    assert (request.path, request.json()) == (f"/hooks/{channel}/T0KEN", body)
    assert outbox(seeded) == [(channel, "delivered", 1, None)]


def test_the_generic_webhook_posts_the_payload_signed_with_hmac_sha256(seeded, seeded_url, http_receiver):
    queue(seeded, ["webhook"])
    with worker(seeded_url, webhook_url=http_receiver.url("/events"), webhook_secret=SECRET) as w:
        w.drain()
    [request] = http_receiver.requests
    signed = request.headers["X-Spreadedge-Timestamp"].encode() + b"." + request.body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert request.headers["X-Spreadedge-Signature"] == expected
    payload = request.json()
    assert (payload["notification_id"], payload["source"], payload["limit_kind"], payload["reason"]) == (
        1,
        "risk",
        "kill_switch",
        "kill switch on: test",
    )
    assert request.headers["X-Spreadedge-Notification-Id"] == "1"


def test_a_webhook_url_with_user_information_is_posted_with_basic_authentication(
    seeded, seeded_url, http_receiver
):
    queue(seeded, ["webhook"])
    url = http_receiver.url("/events").replace("http://", "http://desk:p%40ss@")
    with worker(seeded_url, webhook_url=url, webhook_secret=SECRET) as w:
        assert w.drain() == 1
    [request] = http_receiver.requests
    assert request.path == "/events"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"desk:p@ss").decode()
    assert outbox(seeded) == [("webhook", "delivered", 1, None)]


def test_a_failed_delivery_is_retried_and_then_delivered(seeded, seeded_url, http_receiver):
    queue(seeded, ["slack"])
    http_receiver.statuses.extend([500, 503])
    with worker(seeded_url, slack_webhook_url=http_receiver.url("/slack")) as w:
        assert w.drain() == 3  # backoff 0: due again at once
    assert outbox(seeded) == [("slack", "delivered", 3, None)]


def test_the_backoff_doubles_after_each_failure(seeded, seeded_url, http_receiver):
    queue(seeded, ["slack"])
    http_receiver.statuses.extend([500, 500])
    settings = NotifySettings(slack_webhook_url=http_receiver.url("/slack"), backoff_seconds=60)
    with Worker(seeded_url, settings, configured_channels(settings)) as w:
        waits = []
        for _ in range(2):
            assert w.run_once() == 1
            waits.append(seeded.execute(
                "select extract(epoch from next_attempt_at - clock_timestamp()) from monitor.notifications"
            ).fetchone()[0])  # fmt: skip
            seeded.execute("update monitor.notifications set next_attempt_at = now()")
    assert 50 < waits[0] <= 60 and 110 < waits[1] <= 120
    assert outbox(seeded) == [("slack", "pending", 2, "HTTP 500 Internal Server Error")]


def test_after_the_configured_attempts_a_message_goes_to_the_dead_letter(seeded, seeded_url, http_receiver):
    queue(seeded, ["webhook"])
    http_receiver.statuses.extend([500] * 10)
    with worker(
        seeded_url, webhook_url=http_receiver.url("/events"), webhook_secret=SECRET, max_attempts=3
    ) as w:
        assert w.drain() == 3
    assert len(http_receiver.requests) == 3
    assert outbox(seeded) == [("webhook", "dead", 3, "HTTP 500 Internal Server Error")]
    assert seeded.execute("select status::text from monitor.notification_list").fetchone() == ("dead",)


def test_two_workers_never_deliver_one_message_twice(seeded, seeded_url, http_receiver):
    queue(seeded, ["webhook"], orders=40)
    http_receiver.delay_s = 0.002  # so the two workers' batches interleave
    workers = [
        worker(seeded_url, webhook_url=http_receiver.url("/events"), webhook_secret=SECRET, batch_size=3)
        for _ in range(2)
    ]
    handled = [0, 0]

    def drain(i):
        handled[i] = workers[i].drain()

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for w in workers:
        w.close()
    delivered = sorted(int(r.headers["X-Spreadedge-Notification-Id"]) for r in http_receiver.requests)
    assert delivered == list(range(1, 42))
    assert sum(handled) == 41 and min(handled) > 0
    assert {row[1] for row in outbox(seeded)} == {"delivered"}


def test_a_running_worker_is_woken_by_notify_when_a_message_is_queued(seeded, seeded_url, http_receiver):
    stop = threading.Event()
    w = worker(seeded_url, slack_webhook_url=http_receiver.url("/slack"))
    thread = threading.Thread(target=w.run, kwargs={"stop": stop, "poll_seconds": 300})
    thread.start()
    try:
        queue(seeded, ["slack"])
        assert http_receiver.arrived.wait(timeout=60)  # long before the 300 s poll
    finally:
        stop.set()
        seeded.execute("select pg_notify('spreadedge_notifications', '')")
        thread.join()
        w.close()
    assert outbox(seeded)[0][1] == "delivered"


def test_secrets_never_reach_the_log_the_outbox_or_the_settings_repr(seeded, seeded_url, caplog):
    queue(seeded, ["slack", "webhook"])
    port = free_port()  # nothing listens there
    settings = NotifySettings(
        slack_webhook_url=f"http://127.0.0.1:{port}/services/{SECRET}",
        webhook_url=f"http://127.0.0.1:{port}/events",
        webhook_secret=SECRET,
        max_attempts=1,
    )
    caplog.set_level(logging.INFO, logger="spreadedge.notify")
    with Worker(seeded_url, settings, configured_channels(settings)) as w:
        w.drain()
    stored = " ".join(str(row) for row in outbox(seeded))
    assert "connection failed" in stored and "dead" in stored
    assert SECRET not in caplog.text and SECRET not in stored and SECRET not in repr(settings)
    assert SECRET not in repr(replace(settings, smtp_password=SECRET))


def test_reporting_a_notification_the_worker_did_not_claim_raises_55S06(seeded):
    queue(seeded, ["email"])
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.complete_notification", notification_id=1, worker="nobody")
    assert caught.value.sqlstate == "55S06"


def test_channels_this_worker_does_not_have_stay_pending(seeded, seeded_url, http_receiver):
    queue(seeded, ["email", "slack"])
    with worker(seeded_url, slack_webhook_url=http_receiver.url("/slack")) as w:
        assert w.drain() == 1
    assert [row[:2] for row in outbox(seeded)] == [("email", "pending"), ("slack", "delivered")]


def test_pending_messages_of_a_channel_configured_nowhere_are_named_in_a_warning(
    seeded, seeded_url, http_receiver, caplog
):
    kill_switch_flips(seeded, ["email", "discord", "slack"], "one", "two")
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    with worker(seeded_url, slack_webhook_url=http_receiver.url("/slack")) as w:
        assert w.drain() == 2
    assert [record.getMessage() for record in caplog.records] == [
        "2 pending notification(s) for discord, a channel this worker does not deliver: they wait for a"
        " worker that has it ([notify] discord_webhook_url)",
        "2 pending notification(s) for email, a channel this worker does not deliver: they wait for a"
        " worker that has it ([notify] smtp_host and email_to)",
    ]


def test_a_webhook_without_its_hmac_secret_is_refused(seeded):
    with pytest.raises(ValueError, match="webhook_secret"):
        configured_channels(NotifySettings(webhook_url="http://127.0.0.1:1/x"))


def test_notify_settings_come_from_the_file_and_the_environment(tmp_path):
    (tmp_path / "spreadedge.toml").write_text(
        '[notify]\nsmtp_host = "mail.test"\nemail_to = ["ops@desk.test"]\n'
    )
    env = {
        "SPREADEDGE_MAX_ATTEMPTS": "3",
        "SPREADEDGE_SMTP_PASSWORD": SECRET,
        "SPREADEDGE_SMTP_STARTTLS": "true",
    }
    notify = load_settings(project_dir=tmp_path, env=env).notify
    assert (notify.smtp_host, notify.email_to, notify.max_attempts, notify.smtp_starttls) == (
        "mail.test",
        ("ops@desk.test",),
        3,
        True,
    )
    assert notify.secrets() == [SECRET] and SECRET not in repr(notify)


def kill_switch_flips(conn, channels, *reasons):
    """A risk limit on these channels, then the kill switch turned on, off, on... with each reason."""
    call(conn, "monitor.set_risk_limit", strategy="alpha", channels=channels)
    for number, reason in enumerate(reasons):
        call(conn, "monitor.set_kill_switch", strategy="alpha", enabled=number % 2 == 0, reason=reason)


class WorkerKilled(BaseException):
    """Stands for the worker process dying (a signal, an OOM kill) in the middle of a send."""


class FailingFor:
    """A channel that raises ``error`` for one notification id and passes the others on."""

    def __init__(self, channel, notification_id, error):
        self.channel, self.notification_id, self.error = channel, notification_id, error

    def send(self, message: Message) -> None:
        if message.notification_id == self.notification_id:
            raise self.error
        self.channel.send(message)


def test_an_email_subject_with_a_line_break_goes_out_flattened_and_each_email_once(
    seeded, seeded_url, smtp_receiver
):
    kill_switch_flips(seeded, ["email"], "maintenance", "ops ticket 42\nsee runbook", "third")
    with worker(
        seeded_url, smtp_host="127.0.0.1", smtp_port=smtp_receiver.port, email_to=("ops@desk.test",)
    ) as w:
        assert w.drain() == 3
        assert w.drain() == 0
    assert [message["Subject"] for _, _, message in smtp_receiver.mailbox.messages] == [
        "[RISK] alpha: kill switch on: maintenance",
        "[RISK] alpha: kill switch off: ops ticket 42 see runbook",
        "[RISK] alpha: kill switch on: third",
    ]
    assert outbox(seeded) == [("email", "delivered", 1, None)] * 3


def test_an_exception_while_sending_one_message_fails_only_that_message(seeded, seeded_url, http_receiver):
    kill_switch_flips(seeded, ["webhook"], "one", "two", "three")
    settings = NotifySettings(
        webhook_url=http_receiver.url("/events"), webhook_secret=SECRET, backoff_seconds=0, max_attempts=2
    )
    failing = FailingFor(configured_channels(settings)["webhook"], 2, RuntimeError(f"cannot render {SECRET}"))
    with Worker(seeded_url, settings, {"webhook": failing}) as w:
        assert w.drain() == 4
    assert [int(r.headers["X-Spreadedge-Notification-Id"]) for r in http_receiver.requests] == [1, 3]
    assert outbox(seeded) == [
        ("webhook", "delivered", 1, None),
        ("webhook", "dead", 2, "RuntimeError: cannot render ***"),
        ("webhook", "delivered", 1, None),
    ]


def test_a_worker_that_dies_mid_batch_keeps_what_it_delivered_and_rolls_back_only_the_message_in_flight(
    seeded, seeded_url, http_receiver
):
    kill_switch_flips(seeded, ["webhook"], "one", "two", "three")
    settings = NotifySettings(webhook_url=http_receiver.url("/events"), webhook_secret=SECRET)
    dying = FailingFor(configured_channels(settings)["webhook"], 2, WorkerKilled())
    with Worker(seeded_url, settings, {"webhook": dying}) as w, pytest.raises(WorkerKilled):
        w.run_once()
    assert [int(r.headers["X-Spreadedge-Notification-Id"]) for r in http_receiver.requests] == [1]
    assert outbox(seeded) == [
        ("webhook", "delivered", 1, None),
        ("webhook", "pending", 0, None),
        ("webhook", "pending", 0, None),
    ]


@pytest.mark.parametrize(
    "url",
    [
        f"hooks.slack.com/services/T0AAA/B0BBB/{SLACK_TOKEN}",
        f"ftp://hooks.slack.com/services/T0AAA/B0BBB/{SLACK_TOKEN}",
        f"https:///services/T0AAA/B0BBB/{SLACK_TOKEN}",
        f"https://hooks.slack.com/services/T0AAA/B0BBB/SUPER {SLACK_TOKEN}",
        f"https://hooks.slack.com/services/T0AAA/B0BBB/{SLACK_TOKEN}\n",
    ],
    ids=["no-scheme", "ftp", "no-host", "space", "newline"],
)
def test_settings_refuse_a_webhook_url_that_is_not_http_without_showing_it(tmp_path, url):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_SLACK_WEBHOOK_URL": url})
    message = str(caught.value)
    assert message == (
        "SPREADEDGE_SLACK_WEBHOOK_URL is not an http(s) URL: it needs http:// or https://, a host and no "
        "spaces or control characters (the value is not shown)"
    )
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_settings_name_the_file_setting_of_a_url_that_is_not_http(tmp_path):
    (tmp_path / "spreadedge.toml").write_text(
        '[notify]\ndiscord_webhook_url = "discord.com/api/webhooks/1/x"\n'
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == (
        "[notify] discord_webhook_url is not an http(s) URL: it needs http:// or https://, a host and no "
        "spaces or control characters (the value is not shown)"
    )


def test_channels_refuse_a_scheme_less_url_of_settings_built_in_code():
    settings = NotifySettings(slack_webhook_url=f"hooks.slack.com/services/T0AAA/B0BBB/{SLACK_TOKEN}")
    with pytest.raises(ChannelSettingsError) as caught:
        configured_channels(settings)
    assert str(caught.value) == (
        "slack_webhook_url is not an http(s) URL: it needs http:// or https://, a host and no "
        "spaces or control characters (the value is not shown)"
    )


def test_a_delivery_error_quoting_the_url_path_is_stored_and_logged_without_the_token(
    seeded, seeded_url, http_receiver, caplog
):
    queue(seeded, ["slack"])
    http_receiver.echo_path = True  # the reason phrase quotes the path: "Not Found: /services/..."
    http_receiver.statuses.append(404)
    caplog.set_level(logging.INFO, logger="spreadedge.notify")
    with worker(seeded_url, slack_webhook_url=http_receiver.url(f"/services/T0AAA/B0BBB/{SLACK_TOKEN}"),
                max_attempts=1) as w:  # fmt: skip
        assert w.drain() == 1
    [(channel, status, attempts, last_error)] = outbox(seeded)
    assert SLACK_TOKEN not in last_error and SLACK_TOKEN not in caplog.text
    assert (channel, status, attempts, last_error) == (
        "slack", "dead", 1, "HTTP 404 Not Found: *** (refused for good: not retried)"
    )  # fmt: skip


def test_the_webhook_body_carries_the_payload_numbers_exactly_and_verifies(seeded, seeded_url, http_receiver):
    queue(seeded, ["webhook"])
    seeded.execute(
        "update monitor.notifications set payload = jsonb_set(payload, '{observed_value}', %s::jsonb)",
        [EXACT],
    )
    stored = seeded.execute("select payload ->> 'observed_value' from monitor.notifications").fetchone()[0]
    with worker(seeded_url, webhook_url=http_receiver.url("/events"), webhook_secret=SECRET) as w:
        assert w.drain() == 1
    [request] = http_receiver.requests
    signed = request.headers["X-Spreadedge-Timestamp"].encode() + b"." + request.body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert request.headers["X-Spreadedge-Signature"] == expected
    observed = json.loads(request.body, parse_float=Decimal)["observed_value"]
    assert (stored, str(observed)) == (EXACT, EXACT)
    assert f'"observed_value": {EXACT}'.encode() in request.body


def test_the_email_body_carries_the_payload_numbers_exactly(seeded, seeded_url, smtp_receiver):
    queue(seeded, ["email"])
    seeded.execute(
        "update monitor.notifications set payload = jsonb_set(payload, '{observed_value}', %s::jsonb)",
        [EXACT],
    )
    with worker(
        seeded_url, smtp_host="127.0.0.1", smtp_port=smtp_receiver.port, email_to=("ops@desk.test",)
    ) as w:
        assert w.drain() == 1
    [(_, _, message)] = smtp_receiver.mailbox.messages
    assert f'  "observed_value": {EXACT},' in message.get_payload().splitlines()


@pytest.mark.parametrize(
    ("function", "arguments"),
    [
        ("monitor.claim_notifications", {"worker": "vic", "channels": ["email"]}),
        ("monitor.complete_notification", {"notification_id": 1, "worker": "w1"}),
        ("monitor.fail_notification", {"notification_id": 1, "worker": "w1", "error": "x"}),
        ("monitor.next_notification_due", {"channels": ["email"]}),
    ],
    ids=["claim", "complete", "fail", "next-due"],
)
def test_a_scoped_user_without_alerts_manage_cannot_use_the_worker_functions(auth_db, function, arguments):
    vic = make_user(auth_db, "vic", "viewer")
    queue(auth_db, ["email"])
    if arguments.get("worker") == "w1":  # a report on the row that worker w1 claimed
        rows(auth_db, "monitor.claim_notifications", worker="w1", channels=["email"])
    before = outbox(auth_db)
    with acting_as(auth_db, "spreadedge_app", vic), pytest.raises(psycopg.Error) as caught:
        call(auth_db, function, **arguments)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {vic} lacks the permission alerts:manage",
    )
    assert outbox(auth_db) == before


def test_an_unscoped_app_session_still_claims_and_completes_notifications(seeded):
    queue(seeded, ["email"])
    with acting_as(seeded, "spreadedge_app"), seeded.transaction():
        [claimed] = rows(seeded, "monitor.claim_notifications", worker="w1", channels=["email"])
        call(seeded, "monitor.complete_notification", notification_id=claimed["notification_id"], worker="w1")
    assert outbox(seeded) == [("email", "delivered", 1, None)]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_attempt_not_followed(seeded, seeded_url, http_receiver, status):
    queue(seeded, ["webhook"])
    http_receiver.statuses.append(status)
    http_receiver.location = "/moved"  # followed, the POST would become a GET without the payload
    url = http_receiver.url("/events").replace("http://", "http://desk:p%40ss@")
    with worker(seeded_url, webhook_url=url, webhook_secret=SECRET, max_attempts=1) as w:
        assert w.drain() == 1
    assert [(r.method, r.path) for r in http_receiver.requests] == [("POST", "/events")]
    reason = http.HTTPStatus(status).phrase
    # a permanent redirect (301, 308) is a refusal for good: no retry would pass either
    note = "; refused for good: not retried" if status in (301, 308) else ""
    assert outbox(seeded) == [
        ("webhook", "dead", 1, f"HTTP {status} {reason} (redirects are not followed{note})")
    ]


def test_a_2xx_answer_whose_body_never_comes_is_delivered(seeded, seeded_url, http_receiver):
    queue(seeded, ["slack"])
    http_receiver.hold_body_s = 2  # headers say 1000 bytes follow; none do within the timeout
    with worker(seeded_url, slack_webhook_url=http_receiver.url("/slack"), timeout_seconds=0.5) as w:
        assert w.drain() == 1
    assert len(http_receiver.requests) == 1
    assert outbox(seeded) == [("slack", "delivered", 1, None)]


def test_a_reason_phrase_with_a_nul_byte_and_control_characters_is_stored_flattened(
    seeded, seeded_url, http_receiver
):
    queue(seeded, ["slack"])
    http_receiver.statuses.append(502)
    http_receiver.reason = "bad\x00gateway\x1b[31m red"
    with worker(seeded_url, slack_webhook_url=http_receiver.url("/slack"), max_attempts=1) as w:
        assert w.drain() == 1
    assert outbox(seeded) == [("slack", "dead", 1, "HTTP 502 bad gateway [31m red")]


def test_starttls_refuses_a_server_certificate_it_cannot_verify(seeded, seeded_url, smtp_tls_receiver):
    queue(seeded, ["email"])
    user, password = SMTP_LOGIN
    with worker(seeded_url, smtp_host="127.0.0.1", smtp_port=smtp_tls_receiver.port, smtp_starttls=True,
                smtp_username=user, smtp_password=password, email_to=("ops@desk.test",),
                max_attempts=1) as w:  # fmt: skip
        assert w.drain() == 1
    assert smtp_tls_receiver.mailbox.messages == []
    [(channel, status, attempts, error)] = outbox(seeded)
    assert (channel, status, attempts) == ("email", "dead", 1)
    assert error.startswith("SMTP: SSLCertVerificationError: ")
    assert password not in error


def test_starttls_with_a_trusted_certificate_logs_in_and_delivers(
    seeded, seeded_url, smtp_tls_receiver, monkeypatch, caplog
):
    queue(seeded, ["email"])
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_tls_receiver.cert_file))  # trust the test's own CA
    caplog.set_level(logging.DEBUG, logger="spreadedge.notify")
    user, password = SMTP_LOGIN
    with worker(seeded_url, smtp_host="127.0.0.1", smtp_port=smtp_tls_receiver.port, smtp_starttls=True,
                smtp_username=user, smtp_password=password, email_to=("ops@desk.test",)) as w:  # fmt: skip
        assert w.drain() == 1
    assert [recipients for _, recipients, _ in smtp_tls_receiver.mailbox.messages] == [["ops@desk.test"]]
    assert outbox(seeded) == [("email", "delivered", 1, None)]
    assert password not in caplog.text


def test_the_backoff_of_a_large_attempt_number_is_capped_not_overflowed(seeded, seeded_url, http_receiver):
    queue(seeded, ["slack"])
    seeded.execute("update monitor.notifications set attempts = 40")  # a long-failing message
    http_receiver.statuses.append(500)
    hours4 = 4 * 3600.0  # x 2^30 is beyond an interval's range
    settings = NotifySettings(slack_webhook_url=http_receiver.url("/slack"), max_attempts=100,
                              backoff_seconds=hours4, max_backoff_seconds=hours4)  # fmt: skip
    with Worker(seeded_url, settings, configured_channels(settings)) as w:
        assert w.run_once() == 1
    wait = seeded.execute(
        "select extract(epoch from next_attempt_at - clock_timestamp()) from monitor.notifications"
    ).fetchone()[0]
    assert hours4 - 10 < wait <= hours4
    assert outbox(seeded) == [("slack", "pending", 41, "HTTP 500 Internal Server Error")]


def test_a_requeued_dead_letter_wakes_a_sleeping_worker(seeded, seeded_url, http_receiver):
    queue(seeded, ["slack"])
    http_receiver.statuses.append(500)
    stop = threading.Event()
    w = worker(seeded_url, slack_webhook_url=http_receiver.url("/slack"), max_attempts=1)
    thread = threading.Thread(target=w.run, kwargs={"stop": stop, "poll_seconds": 300})
    thread.start()
    try:
        assert http_receiver.arrived.wait(timeout=60)
        for _ in range(200):  # the failure is reported just after the answer
            if outbox(seeded)[0][1] == "dead":
                break
            threading.Event().wait(0.05)
        http_receiver.arrived.clear()
        call(seeded, "monitor.requeue_notification", notification_id=1)
        assert http_receiver.arrived.wait(timeout=20)  # long before the 300 s poll
    finally:
        stop.set()
        seeded.execute("select pg_notify('spreadedge_notifications', '')")
        thread.join()
        w.close()
    assert len(http_receiver.requests) == 2


def test_a_running_worker_reconnects_after_losing_the_database(seeded, seeded_url, http_receiver, caplog):
    caplog.set_level(logging.INFO, logger="spreadedge.notify")
    stop = threading.Event()
    w = worker(seeded_url, slack_webhook_url=http_receiver.url("/slack"))
    thread = threading.Thread(target=w.run, kwargs={"stop": stop, "poll_seconds": 300})
    thread.start()
    try:
        for _ in range(200):  # until it listens, then cut both its connections (a restart, a failover)
            if "delivering slack" in caplog.text:
                break
            threading.Event().wait(0.05)
        [(terminated,)] = seeded.execute(
            "select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity"
            " where application_name like 'spreadedge notify%'"
        ).fetchall()
        assert terminated == 2
        queue(seeded, ["slack"])
        assert http_receiver.arrived.wait(timeout=30)
    finally:
        stop.set()
        seeded.execute("select pg_notify('spreadedge_notifications', '')")
        thread.join(timeout=30)
        w.close()
    assert not thread.is_alive()
    assert outbox(seeded) == [("slack", "delivered", 1, None)]
    assert "lost the database connection" in caplog.text


def test_an_email_carries_a_date_and_a_message_id(seeded, seeded_url, smtp_receiver):
    queue(seeded, ["email"])
    with worker(seeded_url, smtp_host="127.0.0.1", smtp_port=smtp_receiver.port,
                email_from="Risk desk <risk@desk.test>", email_to=("ops@desk.test",)) as w:  # fmt: skip
        assert w.drain() == 1
    [(_, _, message)] = smtp_receiver.mailbox.messages
    sent = parsedate_to_datetime(message["Date"])
    assert sent.utcoffset() == timedelta(0) and abs(datetime.now(UTC) - sent) < timedelta(minutes=5)
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@desk.test>")


def test_slack_text_escapes_the_characters_slack_reads_as_markup(seeded, seeded_url, http_receiver):
    kill_switch_flips(seeded, ["slack"], "<!channel> spread < 0 & <https://evil.test|runbook>")
    with worker(seeded_url, slack_webhook_url=http_receiver.url("/slack")) as w:
        assert w.drain() == 1
    [request] = http_receiver.requests
    assert request.json() == {
        "text": "[RISK] alpha: kill switch on: &lt;!channel&gt; spread &lt; 0 &amp; "
        "&lt;https://evil.test|runbook&gt;"
    }


@pytest.mark.parametrize(
    ("channel", "settings"),
    [
        ("slack", {"slack_webhook_url": "/slack"}),
        ("discord", {"discord_webhook_url": "/discord"}),
        ("webhook", {"webhook_url": "/events", "webhook_secret": SECRET}),
    ],
)
def test_webhooks_are_posted_with_a_user_agent_of_their_own(
    seeded, seeded_url, http_receiver, channel, settings
):
    queue(seeded, [channel])
    urls = {
        name: http_receiver.url(value) if name.endswith("_url") else value for name, value in settings.items()
    }
    with worker(seeded_url, **urls) as w:  # Discord's Cloudflare refuses "Python-urllib/3.x" (403, 1010)
        assert w.drain() == 1
    [request] = http_receiver.requests
    assert (
        request.headers["User-Agent"] == f"DiscordBot (spreadedge notify, {metadata.version('spreadedge')})"
    )


def test_a_discord_message_mentioning_everyone_pings_no_one(seeded, seeded_url, http_receiver):
    kill_switch_flips(seeded, ["discord"], "@everyone <@&123> check the book")
    with worker(seeded_url, discord_webhook_url=http_receiver.url("/discord")) as w:
        assert w.drain() == 1
    [request] = http_receiver.requests
    assert request.json() == {
        "content": "[RISK] alpha: kill switch on: @everyone <@&123> check the book",
        "allowed_mentions": {"parse": []},
    }


def test_a_worker_whose_database_is_unreachable_at_the_start_raises():
    settings = NotifySettings(slack_webhook_url="http://127.0.0.1:9/slack")
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=5"
    with Worker(url, settings, configured_channels(settings)) as w, pytest.raises(psycopg.OperationalError):
        w.run(poll_seconds=0.1)
