"""More edges of monitoring: the notification worker under a database's session timeouts."""

import logging
import os
import secrets
import threading

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from conftest import free_port
from notify_servers import HttpReceiver, queue, slack_worker


def test_a_worker_idle_longer_than_the_databases_idle_session_timeout_delivers_without_reconnecting(
    seeded: psycopg.Connection, seeded_url: str, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    # why it matters: between notifications the worker's delivery connection sits idle as long as
    # its listener does; a DBA's idle_session_timeout ended it, so every wake-up after a quiet spell
    # met a dead connection: a "lost the database connection" warning and a reconnect pause before
    # the message went out
    seeded.execute(
        sql.SQL("alter database {} set idle_session_timeout = '200ms'").format(
            sql.Identifier(seeded.info.dbname)
        )
    )
    caplog.set_level(logging.INFO, logger="spreadedge.notify")
    stop = threading.Event()
    w = slack_worker(seeded_url, http_receiver, backoff_seconds=0)
    thread = threading.Thread(target=w.run, kwargs={"stop": stop, "poll_seconds": 300})
    thread.start()
    try:
        for _ in range(200):  # until it listens
            if "delivering slack" in caplog.text:
                break
            threading.Event().wait(0.05)
        stop.wait(1.0)  # idle, five times the timeout
        queue(seeded, "slack")
        assert http_receiver.arrived.wait(timeout=30)
    finally:
        stop.set()
        seeded.execute("select pg_notify('spreadedge_notifications', '')")
        thread.join(timeout=30)
        w.close()
    assert not thread.is_alive()
    assert seeded.execute("select status::text, attempts from monitor.notifications").fetchall() == [
        ("delivered", 1)
    ]
    assert "lost the database connection" not in caplog.text


def test_the_delivery_session_of_a_worker_over_tcp_notices_a_vanished_host_within_90_seconds(
    seeded: psycopg.Connection, http_receiver: HttpReceiver
) -> None:
    # why it matters: the worker holds its claim's transaction open while it sends, with no
    # idle-in-transaction timeout; when its host dies mid-send, the row stays locked (skipped by
    # every other worker) until the server's TCP keepalive gives up: 7200 s + 9 x 75 s by Linux's
    # default, over two hours for a critical alert. Probes after 60 s, every 10 s, 3 missed: 90 s
    login = f"notify_tcp_{os.getpid()}_{free_port()}"
    password = secrets.token_hex(16)
    seeded.execute(
        sql.SQL("create role {} login password {} in role spreadedge_app").format(
            sql.Identifier(login), sql.Literal(password)
        )
    )
    try:
        conninfo = make_conninfo(
            host="127.0.0.1", port=seeded.info.port, dbname=seeded.info.dbname, user=login, password=password
        )
        with slack_worker(conninfo, http_receiver, backoff_seconds=0) as w:
            keepalives = (
                w._connection()
                .execute(
                    "select name, setting from pg_settings where name like 'tcp_keepalives_%' order by name"
                )
                .fetchall()
            )
    finally:
        seeded.execute(sql.SQL("drop role {}").format(sql.Identifier(login)))
    assert keepalives == [
        ("tcp_keepalives_count", "3"),
        ("tcp_keepalives_idle", "60"),
        ("tcp_keepalives_interval", "10"),
    ]
