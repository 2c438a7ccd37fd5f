"""The CLI and the notify worker against a server that stops answering, for real, in subprocesses.

A backend stopped (SIGSTOP) mid-statement keeps its connection open and never answers, not even
the cancel request a Ctrl-C sends; a postmaster stopped keeps accepting connections whose startup
never completes. Every frozen process is continued in a ``finally``, on a cluster of this module's
own; every wait is capped, so a hang is a failure and not a stuck run (no assertion is about speed).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from frozen_helpers import frozen, postmaster
from notify_servers import HttpReceiver
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
CLI = "from spreadedge.cli import main; main()"
# why generous: without the bounds these waits last forever; a hang is a failure, not a stuck run
CAP = 60


@pytest.fixture(scope="module")
def own(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated cluster of this module's own: a test may freeze it."""
    cluster = make_cluster()
    cluster.start()
    migrate(cluster.url(), project_settings, echo=lambda line: None)
    yield cluster


def environment(url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": url, **extra}
    env.pop("PGCONNECT_TIMEOUT", None)
    return env


def finish(process: subprocess.Popen[bytes], cap: float = CAP) -> tuple[int, str, str]:
    """The process's status, output and errors once it ends (killed at ``cap`` seconds: a hang)."""
    try:
        out, err = process.communicate(timeout=cap)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return -9, out.decode(), err.decode()
    return process.returncode, out.decode(), err.decode()


def wait_for_listener(conn: psycopg.Connection, process: subprocess.Popen[bytes]) -> None:
    """Wait until the worker ``process`` LISTENs (it has looked at the outbox once by then)."""
    for _ in range(CAP * 20):
        listening = conn.execute(
            "select count(*) from pg_stat_activity where application_name = 'spreadedge notify listen'"
            " and query ilike 'listen%'"
        ).fetchone()
        if listening == (1,) or process.poll() is not None:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()


def blocked_backend(conn: psycopg.Connection, blocker_pid: int) -> int:
    """The pid of the backend waiting for ``blocker_pid``'s lock (waits for it to wait)."""
    for _ in range(CAP * 20):
        row = conn.execute(
            "select pid from pg_stat_activity where %s = any(pg_blocking_pids(pid))", [blocker_pid]
        ).fetchone()
        if row is not None:
            return int(row[0])
        time.sleep(0.05)
    raise AssertionError("no backend waited for the lock")


INTERRUPTED_UNANSWERED = (
    "interrupted: the database server did not answer, so the connection was closed; the transaction in"
    " progress is rolled back unless its commit had already reached the server"
)


def test_ctrl_c_of_a_cli_command_whose_server_is_frozen_exits_by_sigint_saying_the_server_did_not_answer(
    own: Cluster,
) -> None:
    # why it matters: psycopg asks the server to cancel and gives the connection up when nothing
    # comes (5 s, or 10 s when the cancel request is not taken either), and its own warnings
    # reached the terminal as bare lines, followed by "any transaction in progress was rolled
    # back", which a frozen server had not done, and a commit it had received might yet do
    with psycopg.connect(own.url()) as blocker, psycopg.connect(own.url(), autocommit=True) as watcher:
        blocker.execute("lock table trading.strategies in access exclusive mode")
        process = subprocess.Popen(
            [sys.executable, "-c", CLI, "pnl"],
            env=environment(own.url()), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            backend = blocked_backend(watcher, blocker.info.backend_pid)
            # the whole server: the cancel request is not taken either
            with frozen([postmaster(own), backend]):
                os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
                status, out, err = finish(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert (status, out, err) == (-signal.SIGINT, "", f"\n{INTERRUPTED_UNANSWERED}\n")


def test_sigterm_stops_a_notify_worker_whose_backend_froze_mid_claim_with_status_0(
    own: Cluster, http_receiver: HttpReceiver
) -> None:
    # why it matters: SIGTERM set the worker's stop flag, but the claim it waited for never came
    # back and the flag was never looked at again: the worker (and a service manager's stop) hung
    env = environment(own.url(), SPREADEDGE_SLACK_WEBHOOK_URL=http_receiver.url("/hooks/slack/T0KEN"))
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "notify", "worker", "--poll", "300"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with psycopg.connect(own.url()) as blocker, psycopg.connect(own.url(), autocommit=True) as watcher:
            wait_for_listener(watcher, process)
            blocker.execute("lock table monitor.notifications in access exclusive mode")
            watcher.execute(sql.SQL("notify {}").format(sql.Identifier("spreadedge_notifications")))
            backend = blocked_backend(watcher, blocker.info.backend_pid)
            with frozen([backend]):
                process.send_signal(signal.SIGTERM)
                status, _, err = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # the log without its times and the worker's name
    logged = [re.sub(r"^\S+ \S+ (\w+) worker \S+ ", r"\1 ", line) for line in err.splitlines()]
    assert (status, logged) == (
        0,
        [
            "INFO delivering slack",
            "WARNING lost the database connection (the database did not answer within 11 s: its connection"
            " was given up); reconnecting in 5 s",
            "INFO stopped on SIGTERM",
        ],
    )


def test_restore_logical_against_a_frozen_postmaster_gives_up_its_connection(
    own: Cluster, tmp_path: Path
) -> None:
    # why it matters: restore's own connections (and the embedded cluster's start, the notify
    # worker's and migrate's) were psycopg.connect without a connect_timeout: 130 s of silence
    dump = tmp_path / "spreadedge.dump"
    dump.write_bytes(b"")
    command = [sys.executable, "-c", CLI, "restore", "logical", str(dump), "--to-database", "restored"]
    with frozen([postmaster(own)]):
        process = subprocess.Popen(
            command, env=environment(own.url()), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        status, out, err = finish(process)
    assert (status, out, err) == (1, "", "Error: connection timeout expired\n")
