"""The notification worker at runtime: how it stops (SIGTERM, SIGINT, a stop event) with a message
in flight or asleep, as a service manager stops it."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from notify_servers import HttpReceiver, queue, slack_worker


def outbox(conn: psycopg.Connection) -> list[tuple[str, int]]:
    return conn.execute("select status::text, attempts from monitor.notifications order by 1").fetchall()


@dataclass
class SlowReceiver:
    """An HTTP receiver that reads a request, then holds its 200 back for ``hold_s``."""

    server: socket.socket
    hold_s: float
    arrived: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    requests: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}/hooks/slack/T0KEN"

    def serve(self) -> None:
        self.server.settimeout(0.1)  # a close does not wake accept(): look at closed every 0.1 s
        while not self.closed.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(30)
                conn.recv(65536)
                self.requests += 1
                self.arrived.set()
                time.sleep(self.hold_s)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def slow_receiver() -> Iterator[SlowReceiver]:
    receiver = SlowReceiver(socket.create_server(("127.0.0.1", 0)), hold_s=1.5)
    thread = threading.Thread(target=receiver.serve, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.closed.set()
        thread.join(timeout=10)
        receiver.server.close()


def start_cli_worker(url: str, slack_url: str) -> subprocess.Popen[bytes]:
    """`spreadedge notify worker --poll 300` in a process of its own, once it LISTENs."""
    env = {**os.environ, "DATABASE_URL": url, "SPREADEDGE_SLACK_WEBHOOK_URL": slack_url}
    program = "from spreadedge.cli import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", program, "notify", "worker", "--poll", "300"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(600):
            listening = conn.execute(
                "select count(*) from pg_stat_activity where application_name = 'spreadedge notify listen'"
                " and datname = current_database() and query ilike 'listen%'"
            ).fetchone()
            if listening == (1,) or process.poll() is not None:
                break
            time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    return process


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_send_lets_the_message_be_delivered_once_and_exits_0_with_a_log_line(
    seeded: psycopg.Connection, seeded_url: str, slow_receiver: SlowReceiver, stop_signal: signal.Signals
) -> None:
    # why it matters: SIGTERM (every service manager's stop) killed the worker mid-send with
    # status -15 and no log: the receiver had the message, the report was rolled back, and it was
    # sent again by the next worker; SIGINT did the same (KeyboardInterrupt mid-send)
    process = start_cli_worker(seeded_url, slow_receiver.url)
    try:
        queue(seeded, "slack")
        assert slow_receiver.arrived.wait(timeout=30)
        process.send_signal(stop_signal)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert outbox(seeded) == [("delivered", 1)]
    assert slow_receiver.requests == 1
    assert f"stopped on {stop_signal.name}" in err.decode()


def test_sigterm_stops_a_sleeping_worker_promptly_with_status_0(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    process = start_cli_worker(seeded_url, http_receiver.url("/hooks/slack/T0KEN"))
    try:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert took < 5  # not the 300 s poll
    assert "stopped on SIGTERM" in err.decode()


def test_a_set_stop_event_ends_a_sleeping_worker_without_a_notify(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver
) -> None:
    # why it matters: the stop event was looked at only after a NOTIFY or the poll (300 s here):
    # a worker run in a thread could not be stopped without waking it through the database
    stop = threading.Event()
    w = slack_worker(seeded_url, http_receiver)
    thread = threading.Thread(target=w.run, kwargs={"stop": stop, "poll_seconds": 300})
    thread.start()
    try:
        queue(seeded, "slack")
        assert http_receiver.arrived.wait(timeout=30)
        time.sleep(0.5)  # asleep again, on LISTEN
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        stop.set()
        if thread.is_alive():
            seeded.execute("select pg_notify('spreadedge_notifications', '')")
            thread.join(timeout=30)
        w.close()
    assert outbox(seeded) == [("delivered", 1)]
