"""The notification worker against real loopback servers: SMTP email, Slack, Discord and a signed
webhook; retries with backoff, the dead letter, two workers, LISTEN/NOTIFY and secrets."""

import hashlib
import hmac
import logging
import threading
from dataclasses import replace

import psycopg
import pytest

from conftest import free_port
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings, load_settings
from trading_helpers import call, place

SECRET = "s3cr3t-hmac-key-do-not-log"


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


@pytest.mark.parametrize(
    ("channel", "setting", "body"),
    [
        ("slack", "slack_webhook_url", {"text": "[RISK] alpha: kill switch on: test"}),
        ("discord", "discord_webhook_url", {"content": "[RISK] alpha: kill switch on: test"}),
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
