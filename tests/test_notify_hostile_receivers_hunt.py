"""The notify worker against broken and hostile SMTP and HTTP receivers on loopback: a server that
offers only AUTH LOGIN, one whose reply never ends, one whose replies carry terminal escape
sequences, and ones that quote the credentials they were sent (base64-encoded) back in an error."""

import base64
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest
from aiosmtpd.smtp import AuthResult

from notify_servers import HttpReceiver, SmtpReceiver, _Mailbox, queue, smtp_server
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings

LOGIN = ("desk", "l0gin-pa55-do-not-log")
BUSY = "busy@desk.test"  # the recipient the escaping server refuses for now


def outbox(conn: psycopg.Connection) -> list[tuple[str, int, str | None]]:
    return conn.execute(
        "select status::text, attempts, last_error from monitor.notifications order by notification_id"
    ).fetchall()


def notify_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "spreadedge.notify"]


def email_worker(url: str, port: int, **settings: Any) -> Worker:
    configured = NotifySettings(smtp_host="127.0.0.1", smtp_port=port, email_from="risk@desk.test",
                                **settings)  # fmt: skip
    return Worker(url, configured, configured_channels(configured), name="b")


@pytest.fixture
def aiosmtpd_receiver() -> Iterator[Callable[..., SmtpReceiver]]:
    """Starts aiosmtpd servers on loopback with the given handler and options; stops them at the end."""
    with ExitStack() as servers:

        def start(handler: Any, **options: Any) -> SmtpReceiver:
            # why auth_require_tls off: a loopback host may log in without STARTTLS (settings allow it)
            port = servers.enter_context(smtp_server(handler, auth_require_tls=False, **options))
            return SmtpReceiver(port, handler)

        yield start


def refusing_all_but(expected: tuple[str, str]) -> Callable[..., AuthResult]:
    """An authenticator that takes this (user name, password) alone and answers any other 535."""

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        login = (auth_data.login.decode(), auth_data.password.decode())
        # handled=False: aiosmtpd answers 535 (it sends nothing for a refusal it calls handled)
        return AuthResult(success=login == expected, handled=False, auth_data=auth_data)

    return authenticate


def test_an_smtp_server_offering_only_auth_login_is_sent_the_password_and_takes_the_message(
    seeded, seeded_url, aiosmtpd_receiver
):
    # Office 365 and many Exchange servers offer LOGIN and no PLAIN
    receiver = aiosmtpd_receiver(
        _Mailbox(), authenticator=refusing_all_but(LOGIN), auth_exclude_mechanism=["PLAIN"]
    )
    queue(seeded, "email")
    user, password = LOGIN
    with email_worker(seeded_url, receiver.port, smtp_username=user, smtp_password=password,
                      email_to=("ops@desk.test",), timeout_seconds=5) as w:  # fmt: skip
        assert w.drain() == 1
    assert outbox(seeded) == [("delivered", 1, None)]
    assert [recipients for _, recipients, _ in receiver.mailbox.messages] == [["ops@desk.test"]]


def echoing_refusal(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    """An authenticator refusing every login with a reply that quotes, base64-encoded, what it got."""
    if mechanism == "PLAIN":
        sent = b"\0" + auth_data.login + b"\0" + auth_data.password
    else:  # LOGIN sends the password on a line of its own
        sent = auth_data.password
    # handled=False: aiosmtpd sends the message (it sends nothing for a refusal it calls handled)
    return AuthResult(
        success=False, handled=False, message=f"535 5.7.8 refused {base64.b64encode(sent).decode()}"
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_an_smtp_login_refusal_quoting_the_base64_credentials_is_stored_and_logged_without_them(
    seeded, seeded_url, aiosmtpd_receiver, caplog, mechanism
):
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    receiver = aiosmtpd_receiver(_Mailbox(), authenticator=echoing_refusal, auth_exclude_mechanism=[other])
    queue(seeded, "email")
    caplog.set_level(logging.INFO, logger="spreadedge.notify")
    user, password = LOGIN
    with email_worker(seeded_url, receiver.port, smtp_username=user, smtp_password=password,
                      email_to=("ops@desk.test",), max_attempts=1, timeout_seconds=5) as w:  # fmt: skip
        assert w.drain() == 1
    expected = "SMTP: SMTPAuthenticationError: (535, b'5.7.8 refused ***') (refused for good: not retried)"
    assert outbox(seeded) == [("dead", 1, expected)]
    assert notify_log(caplog) == [
        f"notification 1 (email) attempt 1 failed: {expected}; now in the dead letter"
    ]


def test_a_webhook_refusal_quoting_the_basic_credentials_is_stored_without_them(
    seeded, seeded_url, http_receiver: HttpReceiver
):
    credentials = base64.b64encode(b"desk:w3bhook-pa55-do-not-log").decode()
    http_receiver.statuses.append(401)
    http_receiver.reason = f"Unauthorized Basic {credentials}"  # a proxy echoing what it refused
    queue(seeded, "webhook")
    settings = NotifySettings(
        webhook_url=f"http://desk:w3bhook-pa55-do-not-log@127.0.0.1:{http_receiver.port}/events",
        webhook_secret="s3cr3t-hmac-key-do-not-log",
    )  # fmt: skip
    with Worker(seeded_url, settings, configured_channels(settings)) as w:
        assert w.run_once() == 1
    assert http_receiver.requests[0].headers["Authorization"] == f"Basic {credentials}"
    # a 401 is a refusal for good (dead at once); the text keeps the credentials out all the same
    assert outbox(seeded) == [("dead", 1, "HTTP 401 Unauthorized Basic *** (refused for good: not retried)")]


class _EscapingRefusal(_Mailbox):
    """Refuses BUSY for now with a reply full of terminal escape sequences (and a NUL and a bell),
    which would clear the operator's line and forge one of their own; takes every other recipient."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address == BUSY:
            return "450 4.2.1 \x1b[2K\x1b[1G\x00\x07notification 1 (email) delivered"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_recipient_refusal_with_escape_sequences_is_logged_without_them(
    seeded, seeded_url, aiosmtpd_receiver, caplog
):
    receiver = aiosmtpd_receiver(_EscapingRefusal())
    queue(seeded, "email")
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    with email_worker(seeded_url, receiver.port, email_to=("ops@desk.test", BUSY)) as w:
        assert w.drain() == 1
    # refused for now (450): the attempt failed for busy alone, who is still owed the message
    # (tests/test_notify_recipients_owed_hunt.py); the reply is stored and logged on one line
    error = (
        "SMTP refused 1 of 2 recipients: busy@desk.test (450 4.2.1 [2K [1G notification 1 (email) delivered)"
    )
    assert outbox(seeded) == [("pending", 1, error)]
    assert notify_log(caplog) == [f"notification 1 (email) attempt 1 failed: {error}; now pending a retry"]


class _PasswordQuotingRefusal(_Mailbox):
    """Refuses BUSY with a reply quoting the password the session logged in with."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address == BUSY:
            return f"550 5.7.1 not for {session.auth_data.password.decode()}"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_recipient_refusal_quoting_the_smtp_password_is_logged_without_it(
    seeded, seeded_url, aiosmtpd_receiver, caplog
):
    receiver = aiosmtpd_receiver(_PasswordQuotingRefusal(), authenticator=refusing_all_but(LOGIN))
    queue(seeded, "email")
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    user, password = LOGIN
    with email_worker(seeded_url, receiver.port, smtp_username=user, smtp_password=password,
                      email_to=("ops@desk.test", BUSY)) as w:  # fmt: skip
        assert w.drain() == 1
    assert outbox(seeded) == [("delivered", 1, None)]
    assert notify_log(caplog) == [
        "notification 1 (email) delivered, but not to every recipient: SMTP refused 1 of 2 recipients: "
        "busy@desk.test (550 5.7.1 not for ***)"
    ]


class EndlessGreeting:
    """A TCP server whose SMTP greeting never ends: "220-" continuation lines until the client goes.

    A short pause every 1,000 lines keeps it from filling memory on loopback at full speed.
    """

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self.server.getsockname()[1]

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    while not self.closed.is_set():
                        conn.sendall(b"220-desk.test still greeting you\r\n" * 1000)
                        self.closed.wait(0.01)
                except OSError:  # the client hung up
                    pass


@pytest.fixture
def endless_greeting() -> Iterator[EndlessGreeting]:
    server = EndlessGreeting()
    server.thread.start()
    try:
        yield server
    finally:
        server.closed.set()
        server.thread.join()
        server.server.close()


def test_an_smtp_reply_that_never_ends_is_a_failed_attempt_once_it_passes_100_lines(
    seeded, seeded_url, endless_greeting
):
    queue(seeded, "email")
    with email_worker(
        seeded_url, endless_greeting.port, email_to=("ops@desk.test",), timeout_seconds=2, max_attempts=1
    ) as w:
        assert w.run_once() == 1
    assert outbox(seeded) == [("dead", 1, "SMTP: SMTPException: a reply of more than 100 lines")]
