"""More edges of the notification worker: a database whose default isolation is serializable, and
an SMTP server that answers QUIT with something other than 221 after it took the message."""

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from notify_servers import HttpReceiver, smtp_server
from spreadedge.notify import Message, Worker, configured_channels
from spreadedge.settings import NotifySettings
from trading_helpers import call

SECRET = "s3cr3t-hmac-key-do-not-log"


def kill_switch_on_and_off(conn: psycopg.Connection, channel: str) -> None:
    """Two notifications on the channel: the kill switch turned on, then off."""
    call(conn, "monitor.set_risk_limit", strategy="alpha", channels=[channel])
    for enabled in (True, False):
        call(conn, "monitor.set_kill_switch", strategy="alpha", enabled=enabled, reason="test")


def outbox(conn: psycopg.Connection) -> list[tuple[int, str, int, str | None]]:
    return conn.execute(
        "select notification_id, status::text, attempts, claimed_by from monitor.notifications"
        " order by notification_id"
    ).fetchall()


def test_a_message_sent_while_another_worker_delivers_is_reported_once_under_a_serializable_default(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    # why it matters: a DBA's default_transaction_isolation = serializable made the first worker's
    # report fail with 40001 after its send: the message went out, was pending again (sent twice)
    # and the worker stopped on the exception
    seeded.execute(
        sql.SQL("alter database {} set default_transaction_isolation = 'serializable'").format(
            sql.Identifier(seeded.info.dbname)
        )
    )
    kill_switch_on_and_off(seeded, "webhook")
    settings = NotifySettings(webhook_url=http_receiver.url("/events"), webhook_secret=SECRET, batch_size=1)
    webhook = configured_channels(settings)["webhook"]

    with Worker(seeded_url, settings, {"webhook": webhook}, name="second") as second:

        class DeliveredMeanwhile:
            """The webhook, sent once the second worker has delivered (and committed) the next row."""

            def send(self, message: Message) -> None:
                assert second.run_once() == 1
                webhook.send(message)

        with Worker(seeded_url, settings, {"webhook": DeliveredMeanwhile()}, name="first") as first:
            assert first.run_once() == 1
    assert [r.headers["X-Spreadedge-Notification-Id"] for r in http_receiver.requests] == ["2", "1"]
    assert outbox(seeded) == [(1, "delivered", 1, "first"), (2, "delivered", 1, "second")]


class _QuitRefused:
    """An SMTP handler that takes every message and answers QUIT with 421, not 221."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        return "421 4.3.2 service shutting down"


@pytest.fixture
def quit_refused() -> Iterator[tuple[int, _QuitRefused]]:
    handler = _QuitRefused()
    with smtp_server(handler) as port:
        yield port, handler


def test_an_email_the_server_took_is_delivered_once_when_its_quit_reply_is_not_221(
    seeded: psycopg.Connection, seeded_url: str, quit_refused: tuple[int, _QuitRefused]
) -> None:
    # why it matters: the QUIT reply raised after the message was accepted, so it counted as a
    # failed attempt: sent again on each of max_attempts attempts, then dead though delivered
    port, handler = quit_refused
    kill_switch_on_and_off(seeded, "email")
    settings = NotifySettings(
        smtp_host="127.0.0.1", smtp_port=port, email_to=("ops@desk.test",), backoff_seconds=0
    )
    with Worker(seeded_url, settings, configured_channels(settings), name="w") as w:
        assert w.drain() == 2
    assert handler.messages == 2
    assert outbox(seeded) == [(1, "delivered", 1, "w"), (2, "delivered", 1, "w")]
