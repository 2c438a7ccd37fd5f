"""The delivery channels: SMTP email, Slack and Discord webhooks, a generic HMAC-signed webhook.

Each channel sends one :class:`Message` or raises :class:`DeliveryError` with a reason that holds
no secret: webhook URLs (Slack's and Discord's carry their token) and passwords never appear in
an error, a log line or the outbox's ``last_error``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

from spreadedge.settings import NotifySettings

SIGNATURE_HEADER = "X-Spreadedge-Signature"
TIMESTAMP_HEADER = "X-Spreadedge-Timestamp"
ID_HEADER = "X-Spreadedge-Notification-Id"
DISCORD_LIMIT = 2000  # characters of a Discord message's content


class DeliveryError(Exception):
    """A message could not be delivered; the text is safe to store and log."""


@dataclass(frozen=True)
class Message:
    """One claimed row of the outbox."""

    notification_id: int
    channel: str
    subject: str
    payload: dict[str, Any]
    attempts: int

    @property
    def text(self) -> str:
        return str(self.payload.get("text") or self.subject)


class Channel(Protocol):
    """Sends a message, or raises DeliveryError."""

    def send(self, message: Message) -> None: ...


def _redactor(settings: NotifySettings) -> Callable[[str], str]:
    secrets = sorted(settings.secrets(), key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return redact


def _post_json(
    url: str, body: bytes, headers: dict[str, str], timeout: float, redact: Callable[[str], str]
) -> None:
    """POST a JSON body; any answer but 2xx, or no answer, is a DeliveryError without the URL."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {redact(str(exc.reason))}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"connection failed: {redact(str(exc.reason))}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"connection failed: {type(exc).__name__}: {redact(str(exc))}") from None


@dataclass(frozen=True)
class SlackChannel:
    """A Slack incoming webhook: ``{"text": ...}``."""

    url: str
    timeout: float
    redact: Callable[[str], str]

    def send(self, message: Message) -> None:
        body = json.dumps({"text": message.text}).encode()
        _post_json(self.url, body, {}, self.timeout, self.redact)


@dataclass(frozen=True)
class DiscordChannel:
    """A Discord webhook: ``{"content": ...}``, cut to Discord's 2,000 characters."""

    url: str
    timeout: float
    redact: Callable[[str], str]

    def send(self, message: Message) -> None:
        body = json.dumps({"content": message.text[:DISCORD_LIMIT]}).encode()
        _post_json(self.url, body, {}, self.timeout, self.redact)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 under the secret of ``<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(frozen=True)
class WebhookChannel:
    """A generic webhook: the payload as the JSON body, signed (see :func:`signature`).

    Receivers check the signature over the timestamp header and the raw body, refuse old
    timestamps, and deduplicate by the notification id header (a retry sends the same id).
    """

    url: str
    secret: str
    timeout: float
    redact: Callable[[str], str]

    def send(self, message: Message) -> None:
        body = json.dumps({"notification_id": message.notification_id, **message.payload}).encode()
        timestamp = str(int(time.time()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self.secret, timestamp, body),
            ID_HEADER: str(message.notification_id),
        }
        _post_json(self.url, body, headers, self.timeout, self.redact)


@dataclass(frozen=True)
class EmailChannel:
    """SMTP email: the subject, the text and the payload as JSON, to every address of email_to."""

    settings: NotifySettings
    redact: Callable[[str], str]

    def send(self, message: Message) -> None:
        settings = self.settings
        email = EmailMessage()
        email["Subject"] = message.subject
        email["From"] = settings.email_from
        email["To"] = ", ".join(settings.email_to)
        email.set_content(f"{message.text}\n\n{json.dumps(message.payload, indent=2, sort_keys=True)}\n")
        try:
            with smtplib.SMTP(
                settings.smtp_host or "", settings.smtp_port, timeout=settings.timeout_seconds
            ) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls()
                if settings.smtp_username:
                    smtp.login(settings.smtp_username, settings.smtp_password or "")
                smtp.send_message(email)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {self.redact(str(exc))}") from None


class ChannelSettingsError(ValueError):
    """The notify settings configure a channel only in part."""


def configured_channels(settings: NotifySettings) -> dict[str, Channel]:
    """The channels these settings configure, by name (email, slack, discord, webhook)."""
    redact = _redactor(settings)
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
