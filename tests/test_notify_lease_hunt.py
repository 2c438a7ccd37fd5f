"""The notification worker's two bounds in time: one attempt ends within about timeout_seconds
however a receiver drips its answer, and a claim committed without a report (abandoned) is
delivered after its lease, while a message a live worker is sending is never taken from it."""

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from notify_servers import HttpReceiver, queue, slack_worker
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings

DRIP_SECONDS = 0.15  # between two bytes: each read is well within the 1 s timeout
HTTP_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"  # 57 bytes: 8.6 s
SMTP_BANNER = b"220 desk.test ESMTP spreadedge drip test ready\r\n"  # 48 bytes: 7.2 s


def outbox(conn: psycopg.Connection) -> list[tuple[str, int, str | None]]:
    return conn.execute(
        "select status::text, attempts, last_error from monitor.notifications order by notification_id"
    ).fetchall()


@dataclass
class Dripper:
    """A TCP server that, per connection, reads what the client sends first (unless ``greet``),
    then drips ``answer`` one byte every DRIP_SECONDS, then closes."""

    answer: bytes
    greet: bool  # the server speaks first (SMTP's banner)
    server: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    closed: threading.Event = field(default_factory=threading.Event)
    connections: int = 0

    @property
    def port(self) -> int:
        return self.server.getsockname()[1]

    def serve(self) -> None:
        self.server.settimeout(0.1)
        while not self.closed.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(10)
                try:
                    if not self.greet:
                        conn.recv(65536)
                    for byte in self.answer:
                        if self.closed.is_set():
                            break
                        conn.sendall(bytes([byte]))
                        time.sleep(DRIP_SECONDS)
                except OSError:  # the client hung up
                    pass


@pytest.fixture
def dripper(request: pytest.FixtureRequest) -> Iterator[Dripper]:
    answer, greet = request.param
    server = Dripper(answer, greet)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closed.set()
        thread.join(timeout=15)
        server.server.close()


@pytest.mark.parametrize("dripper", [(HTTP_ANSWER, False)], indirect=True)
@pytest.mark.parametrize("setting", ["slack_webhook_url", "discord_webhook_url", "webhook_url"])
def test_a_webhook_receiver_dripping_its_answer_is_a_failed_attempt_within_the_timeout(
    seeded: psycopg.Connection, seeded_url: str, dripper: Dripper, setting: str
) -> None:
    # why it matters: timeout_seconds bounded each read alone; a receiver dripping its answer a
    # byte at a time held the worker (and every message behind) as long as it dripped, forever
    channel = setting.removesuffix("_webhook_url").removesuffix("_url")
    queue(seeded, channel)
    notify = NotifySettings(
        **{setting: f"http://127.0.0.1:{dripper.port}/hooks/T0KEN"},
        webhook_secret="s3cr3t-hmac-key",
        timeout_seconds=1,
    )
    with Worker(seeded_url, notify, configured_channels(notify), name="b") as w:
        started = time.monotonic()
        assert w.run_once() == 1
        took = time.monotonic() - started
    assert took < 3
    assert outbox(seeded) == [("pending", 1, "no complete answer within 1 s")]


@pytest.mark.parametrize("dripper", [(SMTP_BANNER, True)], indirect=True)
def test_an_smtp_server_dripping_its_replies_is_a_failed_attempt_within_the_timeout(
    seeded: psycopg.Connection, seeded_url: str, dripper: Dripper
) -> None:
    queue(seeded, "email")
    notify = NotifySettings(
        smtp_host="127.0.0.1", smtp_port=dripper.port, email_to=("ops@desk.test",), timeout_seconds=1,
    )  # fmt: skip
    with Worker(seeded_url, notify, configured_channels(notify), name="b") as w:
        started = time.monotonic()
        assert w.run_once() == 1
        took = time.monotonic() - started
    assert took < 3
    assert outbox(seeded) == [("pending", 1, "SMTP: no complete answer within 1 s")]


def claim_and_commit(url: str, channel: str = "slack") -> None:
    """Claim the channel's message in autocommit, as psql does, and report nothing."""
    with psycopg.connect(url, autocommit=True) as conn:
        claimed = conn.execute(
            "select notification_id from monitor.claim_notifications('psql', %s, 10)", [[channel]]
        )
        assert claimed.fetchall() == [(1,)]


def end_lease(conn: psycopg.Connection) -> None:
    conn.execute("update monitor.notifications set next_attempt_at = now() - interval '1 second'")


def test_an_abandoned_claim_is_due_when_its_five_minute_lease_ends(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    # why it matters: next_notification_due left 'delivering' rows out, so no worker ever woke for
    # a message whose claim was committed and never reported
    queue(seeded, "slack")
    claim_and_commit(seeded_url)
    with slack_worker(seeded_url, http_receiver) as w:
        assert w.run_once() == 0  # its lease: a client that claims, commits and sends is spared
        assert 290 < w.seconds_until_due(3600.0) <= 300
    assert http_receiver.requests == []


def test_an_abandoned_claim_is_delivered_by_a_worker_once_its_lease_has_passed(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    # why it matters: a claim committed without a report (psql in autocommit, a client that
    # committed and died) left the row 'delivering' for good: the alert was never sent, never dead
    queue(seeded, "slack")
    claim_and_commit(seeded_url)
    end_lease(seeded)
    with slack_worker(seeded_url, http_receiver) as w:
        assert w.seconds_until_due(300.0) == 0.0
        assert w.run_once() == 1
    assert len(http_receiver.requests) == 1
    assert seeded.execute(
        "select status::text, attempts, claimed_by from monitor.notifications"
    ).fetchall() == [("delivered", 2, "b")]


def test_an_abandoned_claim_at_its_last_attempt_goes_to_the_dead_letter_when_it_fails(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    queue(seeded, "slack")
    claim_and_commit(seeded_url)  # attempt 1, never reported
    end_lease(seeded)
    http_receiver.statuses.append(500)
    with slack_worker(seeded_url, http_receiver, max_attempts=2, backoff_seconds=0) as w:
        assert w.run_once() == 1
    assert outbox(seeded) == [("dead", 2, "HTTP 500 Internal Server Error")]


def test_a_message_a_live_worker_is_sending_is_never_taken_by_another_even_after_its_lease(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    queue(seeded, "slack")
    with psycopg.connect(seeded_url) as sender:
        claimed = sender.execute(
            "select notification_id from monitor.claim_notifications('a', '{slack}', 10)"
        )
        assert claimed.fetchall() == [(1,)]
        # the sending transaction itself moves the lease an hour back: the row stays locked by it
        sender.execute("update monitor.notifications set next_attempt_at = now() - interval '1 hour'")
        with slack_worker(seeded_url, http_receiver) as other:
            assert other.seconds_until_due(300.0) == 300.0
            assert other.run_once() == 0
        sender.execute("select monitor.complete_notification(1, 'a')")
        sender.commit()
    assert http_receiver.requests == []
    assert outbox(seeded) == [("delivered", 1, None)]


def test_an_abandoned_claim_of_a_channel_the_worker_lacks_is_named_in_its_warning(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    # it waits for a worker with that channel, as a pending message does
    queue(seeded, "email")
    claim_and_commit(seeded_url, "email")
    with slack_worker(seeded_url, http_receiver) as w:
        assert w.warn_unserved() == {"email": 1}


def test_an_abandoned_claim_counts_among_the_pending_notifications_metric(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    # why it matters: the metric counted only 'pending' rows, so an abandoned claim, still to be
    # delivered, showed on no dashboard and fired no rule on notifications.pending
    queue(seeded, "slack")
    claim_and_commit(seeded_url)
    seeded.execute("select monitor.collect_metrics()")
    assert seeded.execute(
        "select value from monitor.metrics where name = 'notifications.pending' order by recorded_at desc limit 1"
    ).fetchone() == (1,)
