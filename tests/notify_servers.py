"""Real loopback receivers for the notification tests: an HTTP server and an SMTP server, and the
notification and the worker that the tests send to them.

Both servers listen on 127.0.0.1 at a free port and are stopped when their fixture ends.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import free_port
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings
from trading_helpers import call


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Records every POST; answers with the queued statuses, then 200."""

    port: int
    requests: list[Received] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    delay_s: float = 0.0
    # quote the request path in the reason phrase of an error answer, as some proxies do
    echo_path: bool = False
    # the reason phrase of every answer (None: the standard one)
    reason: str | None = None
    # where a 3xx answer points (a GET there is recorded and answered 200)
    location: str = "/moved"
    # answer the status line and headers (Content-Length 1000) but hold the body back this long
    hold_body_s: float = 0.0
    # extra headers of each answer, in order (as statuses); an answer with any sends no Date of
    # its own, so a test can set the Date that an HTTP-date Retry-After is measured from
    headers: deque[dict[str, str]] = field(default_factory=deque)
    # called with each POST once it is recorded, before it is answered
    on_post: Callable[[Received], None] | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(receiver.delay_s)
            with receiver.lock:
                received = Received(self.path, dict(self.headers), body)
                receiver.requests.append(received)
                status = receiver.statuses.popleft() if receiver.statuses else 200
                headers = receiver.headers.popleft() if receiver.headers else {}
            if receiver.on_post is not None:
                receiver.on_post(received)
            reason = receiver.reason
            if receiver.echo_path and status >= 400:
                reason = f"{self.responses[status][0]}: {self.path}"
            if headers:
                self.send_response_only(status, reason)
            else:
                self.send_response(status, reason)
            for name, value in headers.items():
                self.send_header(name, value)
            if 300 <= status < 400:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", "1000" if receiver.hold_body_s else "0")
            self.end_headers()
            receiver.arrived.set()
            if receiver.hold_body_s:
                self.wfile.flush()
                time.sleep(receiver.hold_body_s)

        def do_GET(self) -> None:
            with receiver.lock:
                receiver.requests.append(Received(self.path, dict(self.headers), b"", "GET"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# The receiver refuses recipients at this domain, as a server refuses an unknown user.
UNKNOWN_DOMAIN = "@unknown.desk.test"


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.endswith(UNKNOWN_DOMAIN):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 OK"


@dataclass
class SmtpReceiver:
    port: int
    mailbox: _Mailbox


@contextmanager
def smtp_server(handler: Any, **options: Any) -> Iterator[int]:
    """An aiosmtpd server on 127.0.0.1 at a free port answering with ``handler`` (and aiosmtpd's
    ``options``); its port. Stopped on the way out."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    mailbox = _Mailbox()
    with smtp_server(mailbox) as port:
        yield SmtpReceiver(port, mailbox)


# The one login the TLS receiver accepts.
SMTP_LOGIN = ("desk", "smtp-pa55-do-not-log")


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key (PEM files in directory)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@dataclass
class SmtpTlsReceiver(SmtpReceiver):
    """An SMTP server that requires STARTTLS (a self-signed certificate) and the SMTP_LOGIN."""

    cert_file: Path


def accepting_login(expected: tuple[str, str]) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator that accepts this (user name, password) alone."""

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        login = (auth_data.login.decode(), auth_data.password.decode())
        return AuthResult(success=login == expected)

    return authenticate


@pytest.fixture
def smtp_tls_receiver(tmp_path: Path) -> Iterator[SmtpTlsReceiver]:
    cert_file, key_file = _self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)

    mailbox = _Mailbox()
    with smtp_server(
        mailbox,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=accepting_login(SMTP_LOGIN),
    ) as port:
        yield SmtpTlsReceiver(port, mailbox, cert_file)


def queue(conn: psycopg.Connection, channel: str) -> None:
    """One notification on the channel (a kill switch turned on)."""
    call(conn, "monitor.set_risk_limit", strategy="alpha", channels=[channel])
    call(conn, "monitor.set_kill_switch", strategy="alpha", enabled=True, reason="test")


def slack_worker(url: str, receiver: HttpReceiver, **settings: Any) -> Worker:
    """A worker named b delivering slack to receiver (with these other settings)."""
    configured = NotifySettings(slack_webhook_url=receiver.url("/hooks/slack/T0KEN"), **settings)
    return Worker(url, configured, configured_channels(configured), name="b")
