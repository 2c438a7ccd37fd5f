"""The delivery channels: SMTP email, Slack and Discord webhooks, a generic HMAC-signed webhook.

Each channel sends one :class:`Message` or raises :class:`DeliveryError` with a reason that holds
no secret: webhook URLs (Slack's and Discord's carry their token) and passwords never appear in
an error, a log line or the outbox's ``last_error``. Errors are passed through :func:`redactor`,
which removes each secret, the credentials base64-encoded as they are sent, and every part of a
channel URL that may carry a token (its path, query, userinfo and each long path segment), since
errors often quote a URL only in part.

A refusal that no retry would change is permanent (:attr:`DeliveryError.permanent`): the worker
sends the message to the dead letter at once instead of backing off until max_attempts. It is
an HTTP answer of :data:`PERMANENT_HTTP` (a deleted Slack or Discord webhook's 404 or 410, a
revoked token's 401 or 403, a body the receiver will never take), or an SMTP 5xx reply, which
RFC 5321 (4.2.1) says the client should not repeat: at the login, at MAIL FROM, at DATA, or for
every recipient still owed the message while no one has it. Everything else may pass later and is
retried: other HTTP answers (408, 425 and 429 among them, and every 5xx), SMTP 4xx replies, no
answer, a refused or cut connection, a timeout, and a reply too broken to read.

Every attempt names the message alike (:attr:`Message.delivery_id`, random per outbox row): the
email's Message-ID and the webhook's signed ``delivery_id``, so a receiver that took an attempt
whose answer was lost knows the retry for the same message. Slack's and Discord's incoming webhooks
take no such name: a retry after a lost answer may show there twice.

One attempt takes at most about ``timeout_seconds`` in all (:class:`_Deadline`): the timeout of
each socket read alone let a receiver that drips its answer a byte at a time hold the worker for
as long as it liked.

Payload numbers are exact: the worker loads payloads with ``Decimal`` numbers and
:func:`exact_json` writes them with all their digits (``50000.000000000000000001``, never a float).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import importlib.metadata
import json
import re
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, parseaddr, parsedate_to_datetime
from typing import Any, Protocol

from spreadedge.settings import NOTIFY_URLS, NotifySettings, is_http_url, not_http_url_message
from spreadedge.textable import exact_json


def _package_version() -> str:
    try:
        return importlib.metadata.version("spreadedge")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "0"


SIGNATURE_HEADER = "X-Spreadedge-Signature"
TIMESTAMP_HEADER = "X-Spreadedge-Timestamp"
ID_HEADER = "X-Spreadedge-Notification-Id"
DELIVERY_ID_HEADER = "X-Spreadedge-Delivery-Id"
# HTTP answers that refuse the request itself, which every retry repeats: a malformed or refused
# body (400, 413, 415, 422), credentials refused (401, 403: a revoked token), a webhook that no
# longer exists (404; Slack's "no_service", Discord's "Unknown Webhook"; 410: gone), a method or
# URL it will never take (405, 414), headers too large (431), and a permanent redirect (301, 308),
# which the worker never follows. Not here, as a retry may pass: 408 (request timeout), 409
# (conflict with the receiver's current state), 421 (misdirected), 423 (locked), 425 (too early),
# 429 (rate limited) and every 5xx.
PERMANENT_HTTP = frozenset({301, 308, 400, 401, 403, 404, 405, 410, 413, 414, 415, 422, 431})
# what a permanent failure's text ends with, in the outbox's last_error and the log
REFUSED_FOR_GOOD = "refused for good: not retried"
DISCORD_LIMIT = 2000  # characters of a Discord message's content
# why our own: Discord's Cloudflare front refuses urllib's default "Python-urllib/3.x" with a 403
# (error code 1010) before the request reaches Discord; its documented form is
# "DiscordBot ($url, $version)", which any receiver accepts.
USER_AGENT = f"DiscordBot (spreadedge notify, {_package_version()})"
# Line breaks and other control characters: a header holding one is refused (or would inject headers).
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# A URL path segment at least this long may be a token (Slack's are 24 characters) and is redacted.
_SECRET_SEGMENT = 8
# Retry-After's delay-seconds form (RFC 9110: digits; a fraction is taken too, as Discord's waits
# are fractional); anything else must be an HTTP-date.
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# why a ceiling: a timedelta holds at most ~2.7 million years, and the worker passes the wait as
# one; monitor.fail_notification caps it at max_backoff (a year at most) anyway.
_LONGEST_WAIT = 999_999_999 * 86_400.0


class DeliveryError(Exception):
    """A message could not be delivered; the text is safe to store and log.

    ``retry_after``: the seconds the receiver asked to wait before the next attempt (HTTP 429 or
    503 with Retry-After), or None; ``monitor.fail_notification`` decides what to make of it.
    ``permanent``: the receiver refused the message for good (see the module's text): no retry
    is made, the message goes to the dead letter at once.
    """

    def __init__(self, text: str, retry_after: float | None = None, *, permanent: bool = False) -> None:
        super().__init__(text)
        self.retry_after = retry_after
        self.permanent = permanent


class PartialDelivery(Exception):
    """An email went to some recipients and not to others; the text says to whom not and why.

    ``delivered_to``: the recipients the server took it for in this attempt; ``owed``: those it
    refused for now (4xx, or a reply that is no 5xx), still owed the message: the attempt failed
    for them, and the retry goes to them alone; ``undeliverable_to``: those it refused for good
    (5xx), not tried again (until a requeue). The worker records the first and last on the outbox
    row (monitor.record_notification_recipients), so that no retry sends the message again to a
    recipient who has it, whichever worker makes it. ``permanent``: every recipient owed it
    refused it for good while no one has it: the message goes to the dead letter at once.
    """

    def __init__(
        self,
        text: str,
        *,
        delivered_to: tuple[str, ...],
        owed: tuple[str, ...],
        undeliverable_to: tuple[str, ...],
        permanent: bool = False,
    ) -> None:
        super().__init__(text)
        self.delivered_to = delivered_to
        self.owed = owed
        self.undeliverable_to = undeliverable_to
        self.permanent = permanent


@dataclass(frozen=True)
class Message:
    """One claimed row of the outbox."""

    notification_id: int
    channel: str
    subject: str
    payload: dict[str, Any]
    attempts: int
    # email: the recipients earlier attempts reached, and those refused for good (the row's
    # delivered_to and undeliverable_to); this attempt leaves them out
    delivered_to: tuple[str, ...] = ()
    undeliverable_to: tuple[str, ...] = ()
    # the row's delivery_id: the message's name to receivers, the same at every attempt
    delivery_id: str = ""

    @property
    def text(self) -> str:
        return str(self.payload.get("text") or self.subject)


class Channel(Protocol):
    """Sends a message, or raises DeliveryError.

    A channel with several recipients (email) returns those the message reached in this attempt,
    for the outbox row's delivered_to; the others return None.
    """

    def send(self, message: Message) -> tuple[str, ...] | None: ...


def _url_fragments(url: str) -> list[str]:
    """The parts of a URL that may carry a secret, as errors may quote them on their own."""
    stripped = url.strip()
    fragments = [url, stripped]
    try:
        parts = urllib.parse.urlsplit(stripped)
    except ValueError:  # an unbalanced "[" in the host: split all of it
        tail = stripped
    else:
        userinfo, at, _ = parts.netloc.rpartition("@")
        fragments += [parts.path, parts.query, parts.fragment, userinfo if at else ""]
        tail = f"{parts.path}?{parts.query}#{parts.fragment}"
    fragments += [part for part in re.split(r"[/?&=#;\s]", tail) if len(part) >= _SECRET_SEGMENT]
    fragments += [urllib.parse.unquote(fragment) for fragment in fragments]
    # a lone "/" (the path of a bare host) is no secret, and replacing it would garble the text
    return [fragment for fragment in fragments if fragment.strip("/")]


def _encoded_credentials(settings: NotifySettings) -> list[str]:
    """The credentials as they go over the wire, base64-encoded (which hides nothing).

    why: a receiver may quote what it refused, as sent: an SMTP server its ``AUTH PLAIN``
    response or the password line of ``AUTH LOGIN``, a proxy the ``Authorization: Basic`` header
    of a webhook URL with user information; decoded, each is the password.
    """
    sent: list[str] = []
    if settings.smtp_password:
        # LOGIN's password line, and PLAIN's "<authzid>\0<user>\0<password>" (smtplib's)
        sent += [settings.smtp_password, f"\0{settings.smtp_username or ''}\0{settings.smtp_password}"]
    encoded = [base64.b64encode(text.encode()).decode("ascii") for text in sent]
    for name in NOTIFY_URLS:
        url = getattr(settings, name)
        try:
            authorization = _basic_auth(url)[1] if url else None
        except ValueError:  # a URL urllib cannot split is refused before it is sent
            continue
        if authorization:
            encoded.append(authorization.removeprefix("Basic "))
    return encoded


def redactor(settings: NotifySettings) -> Callable[[str], str]:
    """A function that replaces every secret of these settings in a text with ``***``.

    The secrets are the settings' secret values, the credentials base64-encoded as sent (see
    :func:`_encoded_credentials`) and, for each channel URL, its path, query, userinfo and every
    path segment of 8 characters or more: urllib and HTTP servers quote a URL in part
    (``InvalidURL … '/services/T0/B0/SECRET'``, a reason phrase echoing the path).
    """
    secrets = set(settings.secrets()) | set(_encoded_credentials(settings))
    for name in NOTIFY_URLS:
        url = getattr(settings, name)
        if url:
            secrets.update(_url_fragments(url))
    ordered = sorted(secrets, key=len, reverse=True)  # longest first: a fragment inside a secret

    def redact(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, "***")
        return text

    return redact


def email_subject(subject: str) -> str:
    """The subject as one header line: each run of line breaks or control characters is a space."""
    return _HEADER_BREAKS.sub(" ", subject)


def one_line(text: str) -> str:
    """A text on one line: each run of line breaks or control characters (NUL too) is a space.

    For the outbox's last_error and the log: a receiver's reason phrase or reply may hold a NUL,
    which PostgreSQL text refuses, or escape sequences meant for the operator's terminal.
    """
    return _HEADER_BREAKS.sub(" ", text)


class _Deadline:
    """Ends the network exchange of one attempt once ``seconds`` have passed, however it stands.

    why: a socket's timeout bounds each read alone, so a receiver that drips its answer (a byte
    every 0.3 s against a 1 s timeout) held the worker, and its claim on the message, for as long
    as it dripped: forever, for one that never stops. Each socket the attempt connects is held
    here as a duplicate, and a watchdog timer shuts it down at the deadline (a socket connected
    after it, at once): the blocked read or write ends, TLS or not (a duplicate shares the
    connection, and stays valid while TLS wraps and replaces the original), and :attr:`cut` says
    why. Used as a context manager around one attempt; the duplicates are closed at its end.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._cut = False
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self._passed = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            for held in self._held:
                held.close()
            self._held.clear()

    @property
    def cut(self) -> bool:
        """Whether the deadline shut a connection down: the attempt ended unanswered."""
        # why under the lock: the read the shutdown ends may look before _expire has said so
        with self._lock:
            return self._cut

    def message(self) -> str:
        return f"no complete answer within {_seconds_text(self.seconds)} s"

    def remaining(self, timeout: Any) -> float:
        """The timeout of a connect: at most the time left (a little, once none is left)."""
        left = max(self._end - time.monotonic(), 0.001)
        # not a number: None or socket's "global default" (no timeout of its own)
        return min(timeout, left) if isinstance(timeout, int | float) else left

    def hold(self, sock: socket.socket) -> socket.socket:
        """Watch a socket just connected, and return it (shut down at once if the deadline passed)."""
        with self._lock:
            held = sock.dup()
            self._held.append(held)
            if self._passed:
                self._shut(held)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self._passed = True
            for held in self._held:
                self._shut(held)

    def _shut(self, held: socket.socket) -> None:
        try:
            held.shutdown(socket.SHUT_RDWR)
        except OSError:  # the other side closed it already: the exchange is over
            return
        self._cut = True


class _WatchedHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose socket a :class:`_Deadline` shuts down when the attempt's time is up."""

    def __init__(self, host: str, *, deadline: _Deadline, **options: Any) -> None:
        super().__init__(host, **options)
        self._deadline = deadline
        # why here: connect() makes its socket with this, and HTTPS wraps it in TLS right after,
        # before connect() returns; a handshake a server drips is bounded too
        self._create_connection = self._connect_held

    def _connect_held(self, address: tuple[str, int], timeout: Any, source: Any = None) -> socket.socket:
        sock = socket.create_connection(address, self._deadline.remaining(timeout), source)
        return self._deadline.hold(sock)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, http.client.HTTPSConnection):
    """An HTTPSConnection watched by a :class:`_Deadline`."""


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def do_open(self, http_class: Any, req: Any, **options: Any) -> Any:
        return super().do_open(_WatchedHTTPConnection, req, deadline=self._deadline, **options)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def do_open(self, http_class: Any, req: Any, **options: Any) -> Any:
        return super().do_open(_WatchedHTTPSConnection, req, deadline=self._deadline, **options)


def _post_json(
    url: str, body: bytes, headers: dict[str, str], timeout: float, redact: Callable[[str], str]
) -> None:
    """POST a JSON body; any answer but 2xx, or no answer, is a DeliveryError without the URL.

    A URL with user information (``https://user:password@host/hook``) is sent with HTTP Basic
    authentication: urllib would otherwise read ``user:password@host`` as the host name. The
    whole exchange takes at most about ``timeout`` seconds (see :class:`_Deadline`); a status
    line read by then is the receiver's verdict, as its body is not waited for.
    """
    with _Deadline(timeout) as deadline:
        try:
            url, authorization = _basic_auth(url)
            if authorization:
                headers = {**headers, "Authorization": authorization}
            # built inside the try: Request refuses a URL with a ValueError that quotes it
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            )
            opener = urllib.request.build_opener(
                _RefuseRedirects, _WatchedHTTPHandler(deadline), _WatchedHTTPSHandler(deadline)
            )
            # why not read the answer's body: the status is the receiver's verdict, and a body
            # that is huge, endless or held back would hold the worker, or fail a message it had
            # accepted
            with opener.open(request, timeout=timeout):
                pass
        except urllib.error.HTTPError as exc:  # a whole answer, whatever the deadline did after
            exc.close()
            raise _http_error(exc, redact) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if deadline.cut:
                raise DeliveryError(deadline.message()) from None
            if isinstance(exc, urllib.error.URLError):
                raise DeliveryError(f"connection failed: {redact(str(exc.reason))}") from None
            raise DeliveryError(f"connection failed: {type(exc).__name__}: {redact(str(exc))}") from None


def _http_error(exc: urllib.error.HTTPError, redact: Callable[[str], str]) -> DeliveryError:
    """The DeliveryError of an answer that is not 2xx, with the wait a rate-limiting receiver asked.

    A 429 (and a 503 with Retry-After) says when to try again: the error carries those seconds,
    and its text says so without quoting the header (only the seconds read from it).
    """
    text = f"HTTP {exc.code} {redact(str(exc.reason))}"
    permanent = exc.code in PERMANENT_HTTP
    if 300 <= exc.code < 400:
        if permanent:
            return DeliveryError(f"{text} (redirects are not followed; {REFUSED_FOR_GOOD})", permanent=True)
        return DeliveryError(f"{text} (redirects are not followed)")
    if permanent:
        return DeliveryError(f"{text} ({REFUSED_FOR_GOOD})", permanent=True)
    header = exc.headers.get("Retry-After") if exc.headers else None
    if exc.code != 429 and not (exc.code == 503 and header is not None):
        return DeliveryError(text)
    why = "rate limited" if exc.code == 429 else "unavailable"
    if header is None:
        return DeliveryError(f"{text} ({why})")
    seconds = retry_after_seconds(header, exc.headers.get("Date"))
    if seconds is None:
        return DeliveryError(f"{text} ({why}; Retry-After not understood)")
    return DeliveryError(f"{text} ({why}: retry after {_seconds_text(seconds)} s)", seconds)


def retry_after_seconds(value: str, date: str | None = None) -> float | None:
    """The seconds a Retry-After value asks to wait; None for one that is not understood.

    The value is delay-seconds (``120``) or an HTTP-date (``Wed, 21 Oct 2015 07:28:00 GMT``). A
    date is measured from the answer's ``Date`` when it has one, else from this machine's clock:
    the receiver wrote both with its own clock, so a skew between the clocks does not count. A
    date already past asks for no wait (0).
    """
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return min(float(value), _LONGEST_WAIT)
    asked = _http_date(value)
    if asked is None:
        return None
    sent = (_http_date(date) if date else None) or datetime.now(UTC)
    return min(max(0.0, (asked - sent).total_seconds()), _LONGEST_WAIT)


def _http_date(value: str) -> datetime | None:
    """An HTTP-date as an aware datetime (UTC when it names no zone); None if it is not one."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds_text(seconds: float) -> str:
    """Seconds for an error text: at most three decimals, none when whole (``120``, ``0.5``)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is an HTTPError, never followed.

    urllib would follow a 301, 302 or 303 as a GET without the body (the message lost, yet the
    final 200 counted as delivered) and send the Authorization and signature headers to wherever
    the Location points.
    """

    def redirect_request(self, *args: Any) -> None:
        return None


def _basic_auth(url: str) -> tuple[str, str | None]:
    """The URL without its user information, and the Basic Authorization header it stood for."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    credentials = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    return (
        urllib.parse.urlunsplit(parts._replace(netloc=host)),
        "Basic " + base64.b64encode(credentials).decode("ascii"),
    )


def slack_text(text: str) -> str:
    """The text with ``&``, ``<`` and ``>`` escaped, as Slack requires.

    why: Slack reads ``<...>`` as markup, so a reason holding ``<!channel>`` would page the whole
    channel and ``<https://host|label>`` would show a link; ``a < b`` would lose its text.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class SlackChannel:
    """A Slack incoming webhook: ``{"text": ...}``."""

    url: str
    timeout: float
    redact: Callable[[str], str]

    def send(self, message: Message) -> None:
        body = json.dumps({"text": slack_text(message.text)}).encode()
        _post_json(self.url, body, {}, self.timeout, self.redact)


@dataclass(frozen=True)
class DiscordChannel:
    """A Discord webhook: ``{"content": ...}``, cut to Discord's 2,000 characters.

    Mentions in the text ping no one (``allowed_mentions`` parses none): a reason or a rule's text
    holding ``@everyone`` or ``<@&role>`` would otherwise page the whole server.
    """

    url: str
    timeout: float
    redact: Callable[[str], str]

    def send(self, message: Message) -> None:
        content = message.text[:DISCORD_LIMIT]
        body = json.dumps({"content": content, "allowed_mentions": {"parse": []}}).encode()
        _post_json(self.url, body, {}, self.timeout, self.redact)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 under the secret of ``<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(frozen=True)
class WebhookChannel:
    """A generic webhook: the payload as the JSON body, signed (see :func:`signature`).

    Receivers check the signature over the timestamp header and the raw body, refuse old
    timestamps, and deduplicate by the signed body's delivery_id (a retry sends the same one, and
    no other database's message has it; notification_id repeats across databases); the id headers,
    unsigned, are a convenience.
    """

    url: str
    secret: str
    timeout: float
    redact: Callable[[str], str]

    def send(self, message: Message) -> None:
        body = exact_json(
            {
                "notification_id": message.notification_id,
                "delivery_id": message.delivery_id,
                **message.payload,
            }
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self.secret, timestamp, body),
            ID_HEADER: str(message.notification_id),
            DELIVERY_ID_HEADER: message.delivery_id,
        }
        _post_json(self.url, body, headers, self.timeout, self.redact)


_AUTH_CHALLENGES = 5  # server challenges answered in one AUTH exchange (smtplib's _MAXCHALLENGE)
_REPLY_LINES = 100  # lines of one SMTP reply (an EHLO's has a dozen); more fail the attempt
_REPLY_LINE = 8192  # bytes of one SMTP reply line (smtplib's _MAXLINE)


class _Utf8AuthSMTP(smtplib.SMTP):
    """smtplib.SMTP whose AUTH sends the user name and password as UTF-8, within a deadline.

    why: smtplib encodes them as ASCII, so a password with ``ä`` never logged in (every attempt
    failed, then the dead letter), and the UnicodeEncodeError it raised named the character and
    its place in the password, which went to the log and the outbox. PLAIN's credentials are UTF-8
    (RFC 4616), as are LOGIN's and CRAM-MD5's in every server that takes more than ASCII.

    The :class:`_Deadline` shuts its socket down when the attempt's time is up: a server that
    drips its replies held the worker as long as it dripped.
    """

    def __init__(self, host: str, port: int, *, timeout: float, deadline: _Deadline) -> None:
        self._deadline = deadline  # before the connect, which the constructor makes
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._deadline.hold(super()._get_socket(host, port, self._deadline.remaining(timeout)))

    def auth(
        self, mechanism: str, authobject: Callable[..., str | None], *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        # smtplib.SMTP.auth with UTF-8 for its two .encode("ascii")
        mechanism = mechanism.upper()
        # why smtplib's own counter: its auth_login answers the first challenge with the user name
        # and the next with the password by reading it; a counter of our own left it at 0, so
        # LOGIN (the only mechanism of Office 365 and many Exchange servers) sent the user name as
        # the password and never logged in
        initial_response = authobject() if initial_response_ok else None
        if initial_response is not None:
            response = base64.b64encode(initial_response.encode()).decode("ascii")
            code, reply = self.docmd("AUTH", f"{mechanism} {response}")
            self._auth_challenge_count = 1
        else:
            code, reply = self.docmd("AUTH", mechanism)
            self._auth_challenge_count = 0
        while code == 334:
            self._auth_challenge_count += 1
            answer = authobject(base64.decodebytes(reply)) or ""
            code, reply = self.docmd(base64.b64encode(answer.encode()).decode("ascii"))
            if self._auth_challenge_count > _AUTH_CHALLENGES:
                raise smtplib.SMTPException("the server keeps sending AUTH challenges")
        if code in (235, 503):
            return code, reply
        raise smtplib.SMTPAuthenticationError(code, reply)

    def getreply(self) -> tuple[int, bytes]:
        """smtplib's getreply, but a reply of more than _REPLY_LINES lines is refused.

        why: smtplib keeps every continuation line (``250-…``) until the reply's last, and a
        server that never ends its reply filled the worker's memory as fast as it sent, until
        the deadline (860 MB in 3 s on loopback): lines are at most 8 KiB (smtplib's limit),
        so a reply now holds at most 800 KiB.
        """
        lines: list[bytes] = []
        if self.file is None:
            self.file = self.sock.makefile("rb")
        while True:
            try:
                line = self.file.readline(_REPLY_LINE + 1)
            except OSError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from None
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            # why no reply code in these errors (smtplib's own say 500): a 5xx is the server's
            # refusal for good, and a reply too broken to read is no refusal (it is retried)
            if len(line) > _REPLY_LINE:
                self.close()
                raise smtplib.SMTPException("a reply line of more than 8192 bytes")
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:  # a broken code: no continuation line is read (as smtplib)
                return -1, b"\n".join(lines)
            if line[3:4] != b"-":
                return code, b"\n".join(lines)
            if len(lines) >= _REPLY_LINES:
                self.close()
                raise smtplib.SMTPException(f"a reply of more than {_REPLY_LINES} lines")

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        if challenge is None:
            return None  # no initial response, as smtplib's
        return f"{self.user} " + hmac.new(self.password.encode(), challenge, "md5").hexdigest()


@dataclass(frozen=True)
class EmailChannel:
    """SMTP email: the subject, the text and the payload as JSON, to every address of email_to.

    Sent to the addresses of email_to that the message is still owed to: those of no earlier
    attempt's ``delivered_to`` or ``undeliverable_to`` (the ``To`` header names all of email_to).
    email_to is read at each attempt: an address added since an earlier attempt is owed the
    message, one removed no longer is. Recipients the server refuses raise
    :class:`PartialDelivery`, whether it takes the message for the others or for none. Every
    attempt carries the same Message-ID, ``<notification-ID.DELIVERY_ID@sender domain>``: a server
    or mail client that got an attempt whose answer was lost knows the retry for the same message.
    Any other 5xx reply (login, MAIL FROM, DATA) is a :class:`DeliveryError` that is permanent.
    """

    settings: NotifySettings
    redact: Callable[[str], str]

    def send(self, message: Message) -> tuple[str, ...]:
        """Send to the recipients still owed the message; those it reached (all of them)."""
        settings = self.settings
        with _Deadline(settings.timeout_seconds) as deadline:
            return self._send(message, deadline)

    def _send(self, message: Message, deadline: _Deadline) -> tuple[str, ...]:
        settings = self.settings
        done = set(message.delivered_to) | set(message.undeliverable_to)
        # why the addresses alone: the server answers each RCPT TO by its address, and
        # delivered_to records those (email_to may say "Ops <ops@desk.test>")
        addresses = dict.fromkeys(parseaddr(entry)[1] for entry in settings.email_to)
        owed = [to for to in addresses if to not in done]
        if not owed:
            return ()  # everyone in email_to has it or refused it for good (email_to changed since)
        # set once the server answered every RCPT TO and took the message (or refused it for all)
        refused: dict[str, tuple[int, bytes]] | None = None
        try:
            # built inside the try: EmailMessage refuses a header value it cannot write
            email = EmailMessage()
            email["Subject"] = email_subject(message.subject)
            email["From"] = settings.email_from
            email["To"] = ", ".join(settings.email_to)
            # why: RFC 5322 requires Date, and Gmail refuses a message without a Message-ID
            email["Date"] = formatdate(usegmt=True)
            email["Message-ID"] = message_id(message, settings.email_from)
            email.set_content(f"{message.text}\n\n{exact_json(message.payload, indent=2, sort_keys=True)}\n")
            host, port = settings.smtp_host or "", settings.smtp_port
            with _Utf8AuthSMTP(host, port, timeout=settings.timeout_seconds, deadline=deadline) as smtp:
                if settings.smtp_starttls:
                    # why a default context: starttls() without one checks neither the certificate
                    # nor the host name, so anyone on the path would get the login. A private CA:
                    # SSL_CERT_FILE or SSL_CERT_DIR.
                    smtp.starttls(context=ssl.create_default_context())
                if settings.smtp_username:
                    smtp.login(settings.smtp_username, settings.smtp_password or "")
                # the server refused these recipients and accepted the others (refusing every
                # recipient raises SMTPRecipientsRefused)
                try:
                    refused = smtp.send_message(email, to_addrs=owed)
                except smtplib.SMTPRecipientsRefused as exc:
                    # why caught here: an error of the QUIT that closes the session would
                    # replace it, and its per-recipient answers would be lost; each is judged as
                    # when the server takes the message for others (a 5xx for good, else for now)
                    refused = exc.recipients
        except (OSError, ValueError, smtplib.SMTPException) as exc:
            # why not after the message was taken: what fails then is the QUIT that closes the
            # session (a reply other than 221, such as "421 shutting down", raises when the with
            # block ends); the server has the message, and a retry would send it again on every
            # attempt, then count it dead though it went out each time
            if refused is None:
                # why any error once cut: smtplib reads a reply cut mid-line as a reply of its
                # own (code 22 for "220 ready" cut after two digits)
                if deadline.cut:
                    raise DeliveryError(f"SMTP: {deadline.message()}") from None
                text = f"SMTP: {type(exc).__name__}: {self.redact(str(exc))}"
                # a 5xx to the login, MAIL FROM or DATA: the server will answer a retry alike
                if isinstance(exc, smtplib.SMTPResponseException) and _permanent(exc.smtp_code):
                    raise DeliveryError(f"{text} ({REFUSED_FOR_GOOD})", permanent=True) from None
                raise DeliveryError(text) from None
        if refused:
            reasons = [
                f"{to} ({code} {self.redact(_smtp_text(reply))})"
                for to, (code, reply) in sorted(refused.items())
            ]
            delivered_to = tuple(to for to in owed if to not in refused)
            still_owed = tuple(to for to in owed if to in refused and not _permanent(refused[to][0]))
            # why permanent then: every recipient owed it refused it for good and no one has it,
            # so no retry would deliver it to anyone (counted delivered, it would read as sent)
            permanent = not (delivered_to or still_owed or message.delivered_to)
            text = f"SMTP refused {len(refused)} of {len(owed)} recipients: " + "; ".join(reasons)
            raise PartialDelivery(
                f"{text} ({REFUSED_FOR_GOOD})" if permanent else text,
                delivered_to=delivered_to,
                owed=still_owed,
                undeliverable_to=tuple(to for to in owed if to in refused and _permanent(refused[to][0])),
                permanent=permanent,
            )
        return tuple(owed)


def _permanent(code: int) -> bool:
    """Whether an SMTP reply code refuses for good (5xx); any other refusal may pass (4xx: busy,
    too many recipients; a reply no server should give), and the recipient stays owed."""
    return 500 <= code < 600


def message_id(message: Message, sender: str) -> str:
    """The email's Message-ID, the same at every attempt of the message:
    ``<notification-ID.DELIVERY_ID@domain>``, the domain the sender's (else the local host name).

    why not make_msgid: it is new at every call, so a server that took an attempt whose answer
    was lost (a timeout after DATA) saw the retry as another message, and so did the reader.
    why the delivery_id: notification ids repeat from one database to the next, and two
    deployments mailing one desk would give two alerts one Message-ID (the second dropped as a
    duplicate by Gmail and others).
    """
    domain = parseaddr(sender)[1].rpartition("@")[2] or socket.getfqdn()
    return f"<notification-{message.notification_id}.{message.delivery_id}@{domain}>"


def _smtp_text(reply: bytes) -> str:
    """An SMTP server's reply text on one line, without control characters (see :func:`one_line`).

    why one_line too: str.split leaves escape sequences and NULs, and a server's reply would
    reach the operator's terminal with them (clearing the line, forging one of its own).
    """
    return " ".join(one_line(reply.decode(errors="replace")).split())


class ChannelSettingsError(ValueError):
    """The notify settings configure a channel only in part."""


def configured_channels(settings: NotifySettings) -> dict[str, Channel]:
    """The channels these settings configure, by name (email, slack, discord, webhook)."""
    for name in NOTIFY_URLS:
        url = getattr(settings, name)
        if url and not is_http_url(url):  # load_settings refuses them too; settings built in code
            raise ChannelSettingsError(not_http_url_message(name))
    redact = redactor(settings)
    channels: dict[str, Channel] = {}
    if settings.smtp_host:
        if not settings.email_to:
            raise ChannelSettingsError("smtp_host is set but email_to names no recipient")
        channels["email"] = EmailChannel(settings, redact)
    if settings.slack_webhook_url:
        channels["slack"] = SlackChannel(settings.slack_webhook_url, settings.timeout_seconds, redact)
    if settings.discord_webhook_url:
        channels["discord"] = DiscordChannel(settings.discord_webhook_url, settings.timeout_seconds, redact)
    if settings.webhook_url:
        if not settings.webhook_secret:
            raise ChannelSettingsError("webhook_url is set but webhook_secret (the HMAC key) is not")
        channels["webhook"] = WebhookChannel(
            settings.webhook_url, settings.webhook_secret, settings.timeout_seconds, redact
        )
    return channels
