"""``spreadedge notify worker``: deliver the outbox, woken by LISTEN/NOTIFY.

A batch is one transaction: ``monitor.claim_notifications`` locks up to ``batch_size`` due rows of
the channels this worker has (FOR UPDATE SKIP LOCKED, so several workers share the outbox and
never take the same row), each is sent, and each result is reported with
``monitor.complete_notification`` or ``monitor.fail_notification`` (which backs off or moves it
to the dead letter) before the commit. A worker that dies mid-batch rolls back: its rows are
pending again. Between batches the worker sleeps until the next retry is due or a NOTIFY on
``spreadedge_notifications`` (sent when rows are queued) wakes it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from spreadedge import sqlcall
from spreadedge.notify.channels import Channel, DeliveryError, Message
from spreadedge.settings import NotifySettings

log = logging.getLogger("spreadedge.notify")

LISTEN_CHANNEL = "spreadedge_notifications"
_CLAIM = sqlcall.select_rows("monitor.claim_notifications", ["worker", "channels", "batch_size"])
_COMPLETE = sqlcall.select_value("monitor.complete_notification", ["notification_id", "worker"])
_FAIL = sqlcall.select_value(
    "monitor.fail_notification",
    ["notification_id", "worker", "error", "max_attempts", "backoff", "max_backoff"],
)
_NEXT_DUE = sqlcall.select_value("monitor.next_notification_due", ["channels"])


def default_worker_name() -> str:
    """host:pid:random, unique per worker process and instance."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Delivers the outbox rows of the channels it is given."""

    def __init__(
        self,
        conninfo: str,
        settings: NotifySettings,
        channels: dict[str, Channel],
        *,
        name: str | None = None,
    ) -> None:
        if not channels:
            raise ValueError("no channel is configured: set smtp_host, a webhook URL or more ([notify])")
        self.conninfo = conninfo
        self.settings = settings
        self.channels = channels
        self.name = name or default_worker_name()
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, autocommit=True, application_name="spreadedge notify")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run_once(self) -> int:
        """Claim one batch, deliver it and report every result in one transaction; how many rows."""
        conn = self._connection()
        with conn.transaction():
            rows = conn.execute(
                _CLAIM,
                {
                    "worker": self.name,
                    "channels": sorted(self.channels),
                    "batch_size": self.settings.batch_size,
                },
            ).fetchall()
            for row in rows:
                self._deliver(conn, Message(*row))
        return len(rows)

    def _deliver(self, conn: psycopg.Connection[Any], message: Message) -> None:
        try:
            self.channels[message.channel].send(message)
        except DeliveryError as exc:
            status = conn.execute(
                _FAIL,
                {
                    "notification_id": message.notification_id,
                    "worker": self.name,
                    "error": str(exc),
                    "max_attempts": self.settings.max_attempts,
                    "backoff": timedelta(seconds=self.settings.backoff_seconds),
                    "max_backoff": timedelta(seconds=self.settings.max_backoff_seconds),
                },
            ).fetchone()
            state = status[0] if status else "unknown"
            log.warning(
                "notification %s (%s) attempt %s failed: %s; now %s",
                message.notification_id,
                message.channel,
                message.attempts,
                exc,
                "in the dead letter" if state == "dead" else "pending a retry",
            )
            return
        conn.execute(_COMPLETE, {"notification_id": message.notification_id, "worker": self.name})
        log.info("notification %s (%s) delivered", message.notification_id, message.channel)

    def drain(self) -> int:
        """Deliver batches until none is due; how many rows were handled."""
        total = 0
        while handled := self.run_once():
            total += handled
        return total

    def seconds_until_due(self, longest: float) -> float:
        """Seconds until the next pending row of these channels is due, at most ``longest``."""
        row = self._connection().execute(_NEXT_DUE, {"channels": sorted(self.channels)}).fetchone()
        if row is None or row[0] is None:
            return longest
        return max(0.0, min(longest, (row[0] - datetime.now(UTC)).total_seconds()))

    def run(self, stop: threading.Event | None = None, poll_seconds: float = 30.0) -> None:
        """Deliver until ``stop`` is set (or forever): drain, then sleep until due or woken."""
        stop = stop or threading.Event()
        with psycopg.connect(
            self.conninfo, autocommit=True, application_name="spreadedge notify listen"
        ) as listener:
            listener.execute(sql.SQL("listen {}").format(sql.Identifier(LISTEN_CHANNEL)))
            log.info("worker %s delivering %s", self.name, ", ".join(sorted(self.channels)))
            while not stop.is_set():
                self.drain()
                for _ in listener.notifies(timeout=self.seconds_until_due(poll_seconds), stop_after=1):
                    pass
