"""``spreadedge notify worker``: deliver the outbox, woken by LISTEN/NOTIFY.

Each message is one transaction: ``monitor.claim_notifications`` locks one due row of the channels
this worker has (FOR UPDATE SKIP LOCKED, so several workers share the outbox and never take the
same row), it is sent, and its result is reported with ``monitor.complete_notification`` or
``monitor.fail_notification`` (which backs off, no sooner than a rate-limiting receiver's
Retry-After asks, or moves it to the dead letter: after max_attempts, or at once for a refusal no
retry would change, a channel's permanent error) before the commit.
Any exception while building or sending a message is a failure of that message alone. A worker
that dies rolls back only the message it was sending: that row is pending again, and every message
it delivered before stays delivered. (A claim some other client committed without a report is
claimed again once its lease has passed: see ``monitor.claim_notifications``.)

Why a transaction per message rather than one per batch with a savepoint per message: a savepoint
keeps a message's "delivered" uncommitted until the whole batch commits, so a crash, a lost
connection or a database error later in the batch would send every message already delivered in
it again. The price is one claim round trip per message, small beside an SMTP or HTTP send.
An email the SMTP server takes for some recipients has them recorded on its row
(``monitor.record_notification_recipients``, in the same transaction): a retry goes only to the
recipients still owed it, whichever worker makes it (see :class:`PartialDelivery`).
``run_once`` delivers up to ``batch_size`` messages. Between batches the worker sleeps until the
next retry is due or a NOTIFY on ``spreadedge_notifications`` (sent when rows are queued) wakes it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader

from spreadedge import connection_limits, deadline, pooler, sqlcall, textable
from spreadedge.notify.channels import (
    Channel,
    DeliveryError,
    Message,
    PartialDelivery,
    one_line,
    redactor,
)
from spreadedge.settings import NotifySettings, SettingsError

log = logging.getLogger("spreadedge.notify")

LISTEN_CHANNEL = "spreadedge_notifications"
RECONNECT_SECONDS = 5.0  # pause before reconnecting after a lost database connection
# longest pause between tries of a database that refuses the worker's writes (see _REFUSALS): the
# pause starts as the reconnect's and doubles with each refusal in a row, up to this
REFUSED_MAX_PAUSE = 60.0
# Server errors that refuse the worker's writes for as long as it takes an operator to act, after
# which it backs off (REFUSED_MAX_PAUSE) and tries again on new connections, and what each means:
# read_only_sql_transaction, and disk_full (53100: a data file that cannot grow; a pg_wal that
# cannot is a PANIC, the server stops, and the worker's next connections are refused meanwhile).
# why not as a lost connection: a retry 5 s later meets the same refusal, and the log said "lost
# the database connection" of a server that answers, and whose disk is full
_REFUSALS = {
    "25006": "the database refuses writes (a standby, or default_transaction_read_only is on)",
    "53100": "the database server's disk is full",
}
# longest stretch of waiting for a NOTIFY before the worker looks at its stop event again: a stop
# (SIGTERM from systemd, docker or kubectl) is honoured within it
STOP_CHECK_SECONDS = 0.5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Seconds a statement of the worker may take (its sessions' statement_timeout); a second later its
# connection is given up whatever the server does (deadline.BoundedConnection). A claim, a report
# or a look at the outbox takes milliseconds; one that waits longer (a lock held by a migration)
# is cancelled, logged and tried again on a new connection.
# why: a server that stopped answering mid-claim or mid-report (a stalled backend, a frozen host)
# never ends the statement, and its own statement_timeout never fires: the worker waited forever,
# delivering nothing, and SIGTERM only set a stop flag it never looked at again
STATEMENT_TIMEOUT = 10.0
ERROR_LENGTH = 1000  # characters of a failure's text kept (monitor.fail_notification keeps as many)
_CLAIM = sqlcall.select_rows("monitor.claim_notifications", ["worker", "channels", "batch_size"])
_COMPLETE = sqlcall.select_value("monitor.complete_notification", ["notification_id", "worker"])
_FAIL = sqlcall.select_value(
    "monitor.fail_notification",
    [
        "notification_id",
        "worker",
        "error",
        "max_attempts",
        "backoff",
        "max_backoff",
        "retry_after",
        "permanent",
    ],
)
_RECORD_RECIPIENTS = sqlcall.select_value(
    "monitor.record_notification_recipients",
    ["notification_id", "worker", "delivered_to", "undeliverable_to"],
)
_NO_IDLE_TIMEOUT = sql.SQL("set idle_in_transaction_session_timeout = 0")
# why the wait is computed on the database's clock: next_attempt_at is the database's time, and
# compared with this host's clock running ahead, a due time the database has not reached read as
# past: the worker claimed nothing and asked again at once, spinning for as long as the skew
_NEXT_DUE = sql.SQL("select extract(epoch from {} - pg_catalog.clock_timestamp())").format(
    sqlcall.call("monitor.next_notification_due", ["channels"])
)
# why on both connections: the listener sits idle by design between notifications, and the
# delivery connection sits idle just as long while the listener waits; a database or role
# idle_session_timeout ended them, so every wake-up after a quiet spell met a dead connection: a
# "lost the database connection" warning and the reconnect pause before the message went out
_NO_IDLE_SESSION_TIMEOUT = sql.SQL("set idle_session_timeout = 0")
# why server-side TCP keepalives (ignored over a Unix socket): with no idle-in-transaction timeout
# (see _NO_IDLE_TIMEOUT), a worker whose host dies or drops off the network mid-send left its
# claim's transaction open, the row locked and skipped by every other worker, until the server's
# operating system gave up on the connection: about two hours and eleven minutes by Linux's
# default. Probes after 60 s of silence, every 10 s, 3 unanswered: a vanished worker is noticed
# within about 90 s and its message is pending again. A live worker's kernel answers the probes
# however long its send takes, so a slow send is not cut short.
_KEEPALIVES = sql.SQL(
    "select pg_catalog.set_config('tcp_keepalives_idle', '60', false),"
    " pg_catalog.set_config('tcp_keepalives_interval', '10', false),"
    " pg_catalog.set_config('tcp_keepalives_count', '3', false)"
)
_STATEMENT_TIMEOUT = sql.SQL("select pg_catalog.set_config('statement_timeout', {}, false)").format(
    sql.Literal(f"{STATEMENT_TIMEOUT * 1000:.0f}ms")
)
# the waiting messages of channels this worker lacks: pending, and delivering when committed (a
# claim never reported, which waits for a worker as a pending row does)
_UNSERVED = sql.SQL(
    "select channel::text, count(*) from monitor.notification_list"
    " where status in ('pending', 'delivering') and channel::text <> all ({channels}) group by 1 order by 1"
).format(channels=sql.Placeholder("channels"))
# what configures each channel, for the warning about pending messages of a channel not configured
_CHANNEL_SETTINGS = {
    "email": "smtp_host and email_to",
    "slack": "slack_webhook_url",
    "discord": "discord_webhook_url",
    "webhook": "webhook_url and webhook_secret",
}


def load_payload(text: str) -> dict[str, Any]:
    """An outbox payload (jsonb text) with its numbers exact: numerics as Decimal, never float."""
    payload = textable.load_exact_json(text)
    if not isinstance(payload, dict):
        raise ValueError(f"the payload is a JSON {type(payload).__name__}, not an object")
    return payload


class PooledUrlError(SettingsError):
    """The worker's URL reaches the database through a pooler in transaction pooling."""


class _WorkerConnection(deadline.BoundedConnection):
    """A connection of the worker: every wait on the server given up a second after its
    statement_timeout (:data:`STATEMENT_TIMEOUT`)."""

    seconds = STATEMENT_TIMEOUT + deadline.SERVER_CANCEL_MARGIN


def _connect(conninfo: str, application_name: str) -> psycopg.Connection[Any]:
    """A connection of the worker: its startup given up after deadline.CONNECT_TIMEOUT, TCP
    keepalives on both ends (a vanished server or worker noticed on an idle connection), and
    every statement bounded (``_WorkerConnection``)."""
    conn = deadline.connect(
        conninfo,
        cls=_WorkerConnection,
        autocommit=True,
        application_name=application_name,
        # why never prepared: psycopg prepares a statement that ran 5 times, and a migration that
        # re-creates monitor.claim_notifications with other result columns made PostgreSQL refuse
        # the prepared claim (0A000, "cached plan must not change result type"): the worker
        # exited, and a report refused so after a send sent the message again. A claim, a report
        # or a look at the outbox is planned in microseconds, beside an SMTP or HTTP send.
        prepare_threshold=None,
        **deadline.tcp_settings(conninfo),
    )
    try:
        # why: behind transaction pooling the worker's LISTEN registered on a server connection the
        # pooler then lent to others, so no NOTIFY ever woke it (a message waited for the next
        # poll, up to --poll, 30 s), and its statement_timeout (10 s), idle_session_timeout and
        # keepalives below landed on that server connection for every other client of the pooler
        why = pooler.pooled_refusal(
            conn,
            "spreadedge notify worker",
            "one session for its LISTEN (what wakes it when a notification is queued) and its settings",
        )
        if why is not None:
            raise PooledUrlError(f"{why}; hint: {pooler.SESSION_HINT}")
        conn.execute(_STATEMENT_TIMEOUT)
        conn.execute(_NO_IDLE_SESSION_TIMEOUT)
        conn.execute(_KEEPALIVES)
    except BaseException:
        conn.close()
        raise
    return conn


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
        self.redact = redactor(settings)
        self._conn: psycopg.Connection[Any] | None = None
        # refusals in a row of the worker's writes (see run)
        self._refusals = 0
        # committed outcomes since the worker was made: delivered, failed (retried later), dead
        self.outcomes: Counter[str] = Counter()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = _connect(self.conninfo, "spreadedge notify")
            # why the payload comes as text: it is decoded in _deliver, where any error fails that
            # message alone; decoded by psycopg while fetching the claimed row, an error (a numeral
            # of over 4,300 digits made int() raise) escaped the worker with the claim rolled back,
            # so the message was never counted, never dead, and first in line again: no message
            # went out after it, on every restart
            self._conn.adapters.register_loader("jsonb", TextLoader)
            # why: the claim's transaction stays open while the message is sent (at most about
            # timeout_seconds); a server or role idle_in_transaction_session_timeout
            # shorter than that would end the session after the send and before the report,
            # rolling the attempt back too, so the message would be sent again without end and
            # never reach the dead letter. The worker's own timeouts bound the wait instead.
            self._conn.execute(_NO_IDLE_TIMEOUT)
            # READ COMMITTED whatever the database's or role's default (deadline.connect sets it):
            # under serializable (or repeatable read), a claim made while another worker delivers
            # and commits a neighbouring row can fail its report with 40001 after the send: the
            # message is pending again (sent twice) and the worker stops. READ COMMITTED is what
            # FOR UPDATE SKIP LOCKED sharing is made for: each row is locked and re-checked on its
            # own, and no report can fail that way.
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
        """Deliver up to ``batch_size`` due messages, each in its own transaction; how many."""
        handled = 0
        while handled < self.settings.batch_size and self._deliver_next():
            handled += 1
        return handled

    def _deliver_next(self) -> bool:
        """Claim one due message, send it and report the result, in one transaction; False: none due."""
        conn = self._connection()
        message: Message | None = None
        committing = False
        try:
            with conn.transaction():
                # why by column name: a claim that returns a column more (as claim_notifications
                # did with delivery_id) must not break the unpacking of the ones this worker reads
                row = (
                    conn.cursor(row_factory=dict_row)
                    .execute(
                        _CLAIM, {"worker": self.name, "channels": sorted(self.channels), "batch_size": 1}
                    )
                    .fetchone()
                )
                if row is None:
                    return False
                payload = row["payload"]
                message = Message(
                    notification_id=row["notification_id"],
                    channel=row["channel"],
                    subject=row["subject"],
                    payload={},
                    attempts=row["attempts"],
                    delivered_to=tuple(row["delivered_to"]),
                    undeliverable_to=tuple(row["undeliverable_to"]),
                    delivery_id=str(row["delivery_id"]),
                )
                outcome = self._deliver(conn, message, payload)
                committing = True
        except psycopg.Error as exc:
            if message is not None:
                self._warn_unrecorded(message, exc, committing)
            raise
        self.outcomes[outcome] += 1  # after the commit: a report rolled back is no outcome
        return True

    def _warn_unrecorded(self, message: Message, error: psycopg.Error, committing: bool) -> None:
        """Log that the attempt on a claimed message was not recorded, and that it is sent again.

        why: the message may have reached its receiver, and its report failed (a full disk, a lost
        connection): it is pending again and sent again, the at-least-once delivery; the log said
        only "lost the database connection", and a receiver that got it twice had no trace of why
        """
        # why: an ERROR at the commit rolled it back, as does anything before it; a connection lost,
        # or a PANIC, at the commit may come after the commit record was written
        unknown = committing and not (error.sqlstate and error.diag.severity_nonlocalized == "ERROR")
        log.warning(
            "notification %s (%s) attempt %s: the database %s its outcome (%s): %s, even if this attempt"
            " reached the receiver (delivery is at least once)",
            message.notification_id,
            message.channel,
            message.attempts,
            "may not have recorded" if unknown else "did not record",
            self.redact(one_line(error.diag.message_primary or str(error)).strip()),
            "unless its commit went through, it is sent again"
            if unknown
            else "it is pending again and is sent again",
        )

    def _deliver(self, conn: psycopg.Connection[Any], message: Message, payload: str) -> str:
        """Decode the payload of one claimed message, send it and report it; delivered, failed or dead."""
        try:
            # payload numbers are numerics: Decimal keeps every digit, a float would round them
            message = replace(message, payload=load_payload(payload))
            reached = self.channels[message.channel].send(message)
        except DeliveryError as exc:
            return self._fail(conn, message, str(exc), exc.retry_after, permanent=exc.permanent)
        except PartialDelivery as exc:
            # why recorded before the report, in the claim's transaction: who has the message
            # must outlive this worker, so that no retry (this worker's or another's, after a
            # restart) sends it again to them; a worker that dies before the commit records
            # nothing, and the message goes again to everyone it was owed to (at least once)
            self._record(conn, message, exc.delivered_to, exc.undeliverable_to)
            if exc.owed or exc.permanent:
                # refused for now (4xx): the attempt failed for them, retried for them alone;
                # permanent: refused for good by everyone owed it while no one has it (dead)
                return self._fail(conn, message, str(exc), permanent=exc.permanent)
            conn.execute(_COMPLETE, {"notification_id": message.notification_id, "worker": self.name})
            log.warning(
                "notification %s (%s) delivered, but not to every recipient: %s",
                message.notification_id,
                message.channel,
                exc,
            )
        except Exception as exc:
            # a bug or a value a channel cannot send: this message fails (retried, then dead
            # letter); the text is redacted, and no traceback is logged (it could quote a URL)
            return self._fail(conn, message, f"{type(exc).__name__}: {self.redact(str(exc))}")
        else:
            if reached:  # an email's recipients: the row's delivered_to names everyone who has it
                self._record(conn, message, reached, ())
            conn.execute(_COMPLETE, {"notification_id": message.notification_id, "worker": self.name})
            log.info("notification %s (%s) delivered", message.notification_id, message.channel)
        return "delivered"

    def _record(
        self,
        conn: psycopg.Connection[Any],
        message: Message,
        delivered_to: tuple[str, ...],
        undeliverable_to: tuple[str, ...],
    ) -> None:
        """Record on the claimed row the recipients this attempt reached and those refused for good."""
        conn.execute(
            _RECORD_RECIPIENTS,
            {
                "notification_id": message.notification_id,
                "worker": self.name,
                "delivered_to": list(delivered_to),
                "undeliverable_to": list(undeliverable_to),
            },
        )

    def _fail(
        self,
        conn: psycopg.Connection[Any],
        message: Message,
        error: str,
        retry_after: float | None = None,
        *,
        permanent: bool = False,
    ) -> str:
        """Report a failed attempt; failed (a retry is pending) or dead.

        ``retry_after`` is the seconds the receiver asked to wait: when the next attempt is due is
        monitor.fail_notification's decision (no sooner than that, no later than max_backoff).
        ``permanent``: the receiver refused the message for good, and it goes to the dead letter
        at once (monitor.fail_notification's decision too).
        """
        # one line and no NUL (which PostgreSQL text refuses: the report would fail and the worker
        # with it, on this message again after every restart); the outbox keeps 1,000 characters
        error = one_line(error)[:ERROR_LENGTH]
        status = conn.execute(
            _FAIL,
            {
                "notification_id": message.notification_id,
                "worker": self.name,
                "error": error,
                "max_attempts": self.settings.max_attempts,
                "backoff": timedelta(seconds=self.settings.backoff_seconds),
                "max_backoff": timedelta(seconds=self.settings.max_backoff_seconds),
                "retry_after": None if retry_after is None else timedelta(seconds=retry_after),
                "permanent": permanent,
            },
        ).fetchone()
        state = status[0] if status else "unknown"
        log.warning(
            "notification %s (%s) attempt %s failed: %s; now %s",
            message.notification_id,
            message.channel,
            message.attempts,
            error,
            "in the dead letter" if state == "dead" else "pending a retry",
        )
        return "dead" if state == "dead" else "failed"

    def warn_unserved(self) -> dict[str, int]:
        """Log a warning for each channel this worker lacks that has pending messages; their counts.

        why: such messages stay pending, with no error, until a worker with the channel runs (risk
        limits notify by email by default): the operator must learn it from the worker's log.
        """
        rows = self._connection().execute(_UNSERVED, {"channels": sorted(self.channels)}).fetchall()
        for channel, count in rows:
            log.warning(
                "%s pending notification(s) for %s, a channel this worker does not deliver: they wait"
                " for a worker that has it ([notify] %s)",
                count,
                channel,
                _CHANNEL_SETTINGS.get(channel, channel),
            )
        return dict(rows)

    def drain(self) -> int:
        """Deliver batches until none is due; how many rows were handled.

        Warns first about pending messages of channels this worker does not deliver.
        """
        self.warn_unserved()
        total = 0
        while handled := self.run_once():
            total += handled
        return total

    def seconds_until_due(self, longest: float) -> float:
        """Seconds until the next pending row of these channels is due, at most ``longest``."""
        row = self._connection().execute(_NEXT_DUE, {"channels": sorted(self.channels)}).fetchone()
        if row is None or row[0] is None:
            return longest
        return max(0.0, min(longest, float(row[0])))

    def run(self, stop: threading.Event | None = None, poll_seconds: float = 30.0) -> None:
        """Deliver until ``stop`` is set (or forever): drain, then sleep until due or woken.

        A database connection lost once the worker runs (a restart, a failover, a terminated
        backend) is logged and both connections are opened again after a pause: a worker that
        exited would page no one. A message being reported when the connection dropped is pending
        again and sent again. A database unreachable at the start raises (a wrong URL says so).
        A database that refuses writes (25006: a hot standby, as after a failover that left the URL
        on it, or default_transaction_read_only on), or whose disk is full (53100), is logged and
        tried again, on new connections, after a pause that doubles with each refusal in a row up to
        REFUSED_MAX_PAUSE. A database that refuses new connections because a connection limit is
        reached (53300: max_connections, the role's or the database's CONNECTION LIMIT), at the
        start too, is logged naming the limit and tried again after the reconnect pause. A message
        sent whose report the database did not record is logged: it is sent again.

        Run in the main thread, SIGTERM and SIGINT stop it gracefully: the message in flight is
        sent and reported (or, failing, reported failed), then ``run`` logs the stop and returns;
        a second signal stops it at once (KeyboardInterrupt), the message in flight pending again.
        """
        stop = stop or threading.Event()
        with self._stopped_by_signals(stop) as received:
            # why not in the loop: a database unreachable at the start (a wrong URL) raises
            self._first_connection(stop, poll_seconds)
            while not stop.is_set():
                try:
                    self._listen_and_deliver(stop, poll_seconds)
                except psycopg.Error as exc:
                    # why 25006 here: its LISTEN or claim raised it (an InternalError to psycopg) out
                    # of run, and the worker exited; a service manager restarting it made it exit
                    # again and again for as long as the database refused writes
                    if exc.sqlstate not in _REFUSALS and not isinstance(exc, psycopg.OperationalError):
                        raise
                    self.close()
                    stop.wait(self._pause_after(exc, poll_seconds))
            if received:
                log.info("worker %s stopped on %s", self.name, received[0])

    def _first_connection(self, stop: threading.Event, poll_seconds: float) -> None:
        """Connect before the first delivery, waiting while a connection limit refuses it (53300).

        why: a worker started while the server's connection slots were all taken (or its role's
        CONNECTION LIMIT was reached) exited with the error at once, and stayed down for good
        unless a service manager restarted it, though the URL was right
        """
        while not stop.is_set():
            try:
                self._connection()
                return
            except psycopg.OperationalError as exc:
                self.close()
                pause = min(poll_seconds, RECONNECT_SECONDS)
                if not self._refused(exc, pause):
                    raise
                stop.wait(pause)

    def _refused(self, error: psycopg.OperationalError, pause: float) -> bool:
        """Log a new connection refused by a connection limit (53300), and say whether it was."""
        limit = connection_limits.refusal(error)
        if limit is None:
            return False
        # why its own words: "lost the database connection" sent an operator to a database that
        # was up and answering every session it already had
        log.warning(
            "worker %s cannot connect: the database refuses new connections, %s; trying again in %g s",
            self.name,
            limit,
            pause,
        )
        return True

    def _pause_after(self, error: psycopg.Error, poll_seconds: float) -> float:
        """Log why the worker's connections failed; the seconds to wait before it tries again."""
        refusal = _REFUSALS.get(error.sqlstate or "")
        if refusal is not None:
            self._refusals += 1
            doublings = min(self._refusals - 1, 16)
            pause = min(REFUSED_MAX_PAUSE, min(poll_seconds, RECONNECT_SECONDS) * 2**doublings)
            log.warning(
                "worker %s cannot claim notifications (%s): %s; trying again in %g s",
                self.name,
                self.redact(one_line(error.diag.message_primary or str(error)).strip()),
                refusal,
                pause,
            )
            return pause
        pause = min(poll_seconds, RECONNECT_SECONDS)
        if isinstance(error, psycopg.OperationalError) and self._refused(error, pause):
            return pause
        log.warning(
            "worker %s lost the database connection (%s); reconnecting in %g s",
            self.name,
            self.redact(one_line(str(error)).strip()),
            pause,
        )
        return pause

    @contextmanager
    def _stopped_by_signals(self, stop: threading.Event) -> Iterator[list[str]]:
        """In the main thread, SIGTERM and SIGINT set ``stop``; yields the names of those received.

        why: Python's default SIGTERM kills the process at once, mid-send: the message went out
        but its report was rolled back (sent again later), the exit status was -15 and nothing was
        logged; and SIGINT's KeyboardInterrupt did the same to the message in flight. Every
        service manager stops the worker with SIGTERM.
        """
        received: list[str] = []
        if threading.current_thread() is not threading.main_thread():
            yield received  # signals reach the main thread alone; its caller stops it by ``stop``
            return

        def on_signal(signum: int, frame: object) -> None:
            # no logging here: a handler runs between two bytecodes of the main thread, which may
            # hold the logging lock; the stop is logged when run returns
            if stop.is_set():
                raise KeyboardInterrupt  # a second signal: stop now
            received.append(signal.Signals(signum).name)
            stop.set()

        previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
        try:
            yield received
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _listen_and_deliver(self, stop: threading.Event, poll_seconds: float) -> None:
        with _connect(self.conninfo, "spreadedge notify listen") as listener:
            listener.execute(sql.SQL("listen {}").format(sql.Identifier(LISTEN_CHANNEL)))
            log.info("worker %s delivering %s", self.name, ", ".join(sorted(self.channels)))
            self.warn_unserved()
            while not stop.is_set():
                # why one message at a time, checking stop: a stop waits for the message in flight
                # alone, not for the rest of the outbox
                while not stop.is_set() and self._deliver_next():
                    pass
                self._refusals = 0  # the claims are taken again
                if not stop.is_set():
                    self._sleep(listener, stop, self.seconds_until_due(poll_seconds))

    def _sleep(self, listener: psycopg.Connection[Any], stop: threading.Event, seconds: float) -> None:
        """Wait up to ``seconds`` for a NOTIFY, looking at ``stop`` every STOP_CHECK_SECONDS.

        why in slices: a wait for notifies cannot be interrupted by ``stop`` (nor by a signal
        handler that only sets it); a stopped worker slept on until the next NOTIFY or poll, up to
        poll_seconds. A NOTIFY sent between two slices waits on the socket and ends the next one.
        """
        until = time.monotonic() + seconds
        while not stop.is_set():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            for _ in listener.notifies(timeout=min(remaining, STOP_CHECK_SECONDS), stop_after=1):
                return
