"""Every service of spreadedge against a server that refuses new connections (53300), for real.

A server of this module's own runs with a small ``max_connections``, and plain psycopg connections
fill it: every slot (``sorry, too many clients already``), every slot but the ones reserved for
superusers (``remaining connection slots are reserved ...``), or a role's CONNECTION LIMIT. The REST
API answers 503 naming the limit and serves again once connections free up, without a restart; the
managers raise DatabaseUnavailable naming it and recover; the notify worker started meanwhile waits,
logs the limit and delivers once it can connect; the CLI says which limit with a hint; ``spreadedge
migrate`` runs on the superuser's reserved slots. Every connection held is closed in a ``finally``;
the cluster's pg_cron jobs are switched off, so that none takes a slot while a test counts them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from api_fixtures import live_server, seed_history
from auth_helpers import PASSWORD
from frozen_helpers import seeded_cluster
from notify_servers import HttpReceiver, slack_worker
from ops_helpers import cli
from spreadedge import managers
from spreadedge.cluster import Cluster
from spreadedge.managers import ManagerConfig, PersistentOrderManager, get_database_manager
from spreadedge.settings import Settings
from trading_helpers import call

# The server's connection slots: few, so that a test fills them with plain connections.
MAX_CONNECTIONS = 10
# a role with no superuser rights, which the reserved slots refuse; and one with CONNECTION LIMIT 1
FILLER = "slot_filler"
LIMITED = "limited_login"
# the notify worker's role, whose CONNECTION LIMIT a test sets to 0 while the worker runs
NOTIFIER = "slot_notifier"
# why a guard: every wait is bounded; a hang is a failure, not a stuck run (nothing is timed)
GUARD = 30

MAX_CONNECTIONS_TAKEN = (
    "the database refuses new connections: every connection slot of the database server is taken "
    "(max_connections)"
)
REFUSED_PROBLEM = {
    "type": "about:blank",
    "title": "Service Unavailable",
    "status": 503,
    "detail": f"{MAX_CONNECTIONS_TAKEN}; retry in a few seconds",
    "parameter": None,
    "sqlstate": "53300",
}
HINT = (
    "the server refuses new connections until one ends: close idle sessions (pg_stat_activity), or "
    "raise the limit (max_connections, ALTER ROLE or ALTER DATABASE ... CONNECTION LIMIT); then retry"
)


@pytest.fixture(scope="module")
def own(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated cluster with the seeded history and MAX_CONNECTIONS slots, its pg_cron jobs off."""
    cluster = seeded_cluster(make_cluster, project_settings, seed_history)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"alter system set max_connections = {MAX_CONNECTIONS}")
        conn.execute("update cron.job set active = false")
        conn.execute(f"create role {FILLER} login")
        conn.execute(f"create role {LIMITED} login connection limit 1")
        conn.execute(f"create role {NOTIFIER} login in role spreadedge_owner")
    cluster.stop()
    cluster.start()
    yield cluster


def url_of(cluster: Cluster, role: str) -> str:
    """``cluster``'s database as ``role`` (trusted on the private socket)."""
    return make_conninfo(cluster.conninfo(), user=role)


@contextmanager
def filled(cluster: Cluster, role: str | None = None) -> Iterator[list[psycopg.Connection]]:
    """Connections (as ``role``, default the superuser) opened until the server refuses one; closed
    on the way out, whatever happens."""
    conninfo = cluster.conninfo() if role is None else url_of(cluster, role)
    settled(cluster)
    held: list[psycopg.Connection] = []
    pids: list[int] = []
    try:
        for _ in range(MAX_CONNECTIONS + 1):
            try:
                held.append(psycopg.connect(conninfo, autocommit=True))
                pids.append(held[-1].info.backend_pid)
            except psycopg.OperationalError as exc:
                assert "too many clients already" in str(exc) or "reserved for" in str(exc), exc
                break
        else:
            raise AssertionError(f"the server took {len(held)} connections, more than max_connections")
        yield held
    finally:
        for conn in held:
            conn.close()
        gone(cluster, pids)


def settled(cluster: Cluster) -> None:
    """Once no other client's server process is left (an earlier test's API server or worker).

    why: a backend exits a moment after its client closes the connection; one still exiting when
    filled() counted the slots freed its slot after, and the API's pool got a connection where
    the test meant it to be refused
    """
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        for _ in range(GUARD * 20):
            row = conn.execute(
                "select count(*) from pg_stat_activity"
                " where backend_type = 'client backend' and pid <> pg_backend_pid()"
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError("other clients' server processes never exited")


def gone(cluster: Cluster, pids: list[int]) -> None:
    """Once the server processes ``pids`` have exited: a closed connection's slot is free only then.

    why: a backend exits a moment after its client closes the connection, and the next test's
    connection found the slot still taken
    """
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        for _ in range(GUARD * 20):
            row = conn.execute("select count(*) from pg_stat_activity where pid = any(%s)", [pids]).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError(f"server processes {pids} never exited")


def session_token(cluster: Cluster, username: str = "alice") -> str:
    """A session of ``username``, logged in in SQL (the API may have no connection to do it)."""
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        row = conn.execute(
            "select session_token from auth.login(username => %s, password => %s)", [username, PASSWORD]
        ).fetchone()
    assert row is not None and row[0] is not None
    return str(row[0])


def orders(url: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{url}/api/v1/historical/orders", headers={"Authorization": f"Bearer {token}"}, timeout=GUARD
    )


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/historical/health", timeout=GUARD)


def health_until_healthy(url: str) -> httpx.Response:
    """Health, asked again while it is 503, for at most GUARD seconds (the pool reconnects for a
    request that finds no connection)."""
    deadline = time.monotonic() + GUARD
    response = health(url)
    while response.status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
        response = health(url)
    return response


# -- the REST API -------------------------------------------------------------------------------


def test_a_history_request_while_every_connection_slot_is_taken_answers_503_naming_max_connections(
    own: Cluster, migration_ids: list[str]
) -> None:
    token = session_token(own)
    with filled(own), live_server(own.url(), migration_ids, pool_size=1) as url:
        response = orders(url, token)
    assert (response.status_code, response.headers["content-type"]) == (503, "application/problem+json")
    assert response.json() == REFUSED_PROBLEM
    assert response.headers["retry-after"] == "5"


def test_health_while_every_connection_slot_is_taken_names_max_connections(
    own: Cluster, migration_ids: list[str]
) -> None:
    with filled(own), live_server(own.url(), migration_ids, pool_size=1) as url:
        response = health(url)
    assert response.status_code == 503
    assert (response.json()["status"], response.json()["checks"]) == (
        "unhealthy",
        [{"name": "database", "ok": False, "detail": f"{MAX_CONNECTIONS_TAKEN}; retry in a few seconds"}],
    )


def test_the_api_started_while_every_slot_is_taken_serves_once_connections_free_up_without_a_restart(
    own: Cluster, migration_ids: list[str]
) -> None:
    token = session_token(own)
    with filled(own) as held, live_server(own.url(), migration_ids, pool_size=1) as url:
        during = orders(url, token)
        for conn in held:
            conn.close()
        after = health_until_healthy(url)
        served = orders(url, token)
    assert during.status_code == 503
    assert after.status_code == 200
    assert served.status_code == 200


# -- the managers --------------------------------------------------------------------------------


def own_config(own: Cluster, project_settings: Settings, **changes: object) -> ManagerConfig:
    return replace(
        ManagerConfig(database_url=own.url(), actor="slots", settings=project_settings),
        min_connections=1,
        max_connections=1,
        **changes,
    )


def test_a_manager_started_while_every_slot_is_taken_raises_database_unavailable_naming_max_connections(
    own: Cluster, project_settings: Settings
) -> None:
    config = own_config(own, project_settings, timeout=2.0)

    async def start() -> None:
        await PersistentOrderManager(config).start()

    with filled(own), pytest.raises(managers.DatabaseUnavailable) as raised:
        asyncio.run(asyncio.wait_for(start(), GUARD))
    assert str(raised.value) == (
        f"the database is unavailable: no working connection within 2 s; {MAX_CONNECTIONS_TAKEN}"
    )


def test_health_check_while_every_slot_is_taken_names_max_connections_then_recovers(
    own: Cluster, project_settings: Settings
) -> None:
    config = own_config(own, project_settings, health_timeout=2.0)

    manager = get_database_manager(config)

    async def check() -> managers.HealthReport:
        return await asyncio.wait_for(manager.health_check(), GUARD)

    async def run() -> tuple[managers.HealthReport, managers.HealthReport]:
        try:
            with filled(own):
                during = await check()
            return during, await check()
        finally:
            await manager.close()

    during, after = asyncio.run(run())
    assert (during.healthy, during.checks) == (
        False,
        {
            "database": (
                False,
                f"the database is unavailable: no working connection within 2 s; {MAX_CONNECTIONS_TAKEN}",
            )
        },
    )
    assert after.healthy, after.checks


# -- the notify worker ---------------------------------------------------------------------------


def test_a_notify_worker_started_while_every_slot_is_taken_waits_naming_the_limit_and_delivers_once_free(
    own: Cluster, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spreadedge.notify")
    with psycopg.connect(own.url(), autocommit=True) as conn:
        notify_once(conn, "alpha")
    stop = threading.Event()
    worker = slack_worker(own.url(), http_receiver)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop=stop, poll_seconds=1.0)
        except BaseException as exc:  # what ended the worker, for the assertion
            failures.append(exc)

    thread = threading.Thread(target=run, name="slots-worker")
    try:
        with filled(own):
            thread.start()
            for _ in range(GUARD * 20):  # until it has been refused once
                if "refuses new connections" in caplog.text or not thread.is_alive():
                    break
                time.sleep(0.05)
        for _ in range(GUARD * 20):  # until it delivers
            if http_receiver.requests or not thread.is_alive():
                break
            time.sleep(0.05)
    finally:
        stop.set()
        if thread.ident is not None:
            thread.join(GUARD)
        worker.close()
    assert failures == []
    assert (
        "worker b cannot connect: the database refuses new connections, every connection slot of the "
        "database server is taken (max_connections); trying again in 1 s"
    ) in caplog.messages
    assert len(http_receiver.requests) == 1


def test_a_running_notify_worker_refused_its_reconnect_by_its_roles_limit_logs_the_limit_and_delivers_after(
    own: Cluster, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spreadedge.notify")
    refused = (
        "worker b cannot connect: the database refuses new connections, the database role has reached "
        "its CONNECTION LIMIT; trying again in 1 s"
    )
    stop = threading.Event()
    worker = slack_worker(url_of(own, NOTIFIER), http_receiver)
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop, "poll_seconds": 1.0})
    with psycopg.connect(own.url(), autocommit=True) as admin:
        try:
            thread.start()
            wait_for(lambda: "delivering slack" in caplog.text or not thread.is_alive())
            # a limit binds new connections alone: the worker's sessions end, and it must reconnect
            admin.execute(f"alter role {NOTIFIER} connection limit 0")
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", [NOTIFIER]
            )
            wait_for(lambda: refused in caplog.messages or not thread.is_alive())
            notify_once(admin, "beta")
            admin.execute(f"alter role {NOTIFIER} connection limit -1")
            wait_for(lambda: bool(http_receiver.requests) or not thread.is_alive())
        finally:
            admin.execute(f"alter role {NOTIFIER} connection limit -1")
            stop.set()
            if thread.ident is not None:
                thread.join(GUARD)
            worker.close()
    assert refused in caplog.messages
    assert len(http_receiver.requests) == 1


def notify_once(conn: psycopg.Connection, strategy: str) -> None:
    """One slack notification: ``strategy``'s kill switch turned on (each test its own strategy:
    turning on a switch that is on notifies nothing)."""
    call(conn, "monitor.set_risk_limit", strategy=strategy, channels=["slack"])
    call(conn, "monitor.set_kill_switch", strategy=strategy, enabled=True, reason="test")


def wait_for(condition: Callable[[], bool]) -> None:
    """Until ``condition()`` holds, for at most GUARD seconds (the assertions tell what came of it)."""
    for _ in range(GUARD * 20):
        if condition():
            return
        time.sleep(0.05)


# -- the CLI -------------------------------------------------------------------------------------


def test_a_cli_command_while_every_slot_is_taken_says_so_with_a_hint_and_exits_1(own: Cluster) -> None:
    with filled(own):
        result = cli("pnl", database_url=own.url())
    assert result.exit_code == 1
    assert "FATAL:  sorry, too many clients already" in result.output
    assert result.output.endswith(
        f"\nhint: every connection slot of the database server is taken (max_connections); {HINT}\n"
    )
    assert "Traceback" not in result.output


def test_a_cli_command_of_a_role_at_its_connection_limit_says_so_with_a_hint_and_exits_1(
    own: Cluster,
) -> None:
    with psycopg.connect(url_of(own, LIMITED), autocommit=True):
        result = cli("pnl", database_url=url_of(own, LIMITED))
    assert result.exit_code == 1
    assert f'FATAL:  too many connections for role "{LIMITED}"' in result.output
    assert result.output.endswith(f"\nhint: the database role has reached its CONNECTION LIMIT; {HINT}\n")


def test_a_cli_command_of_a_role_left_only_the_reserved_slots_names_them_in_its_hint(own: Cluster) -> None:
    with filled(own, FILLER):
        result = cli("pnl", database_url=url_of(own, FILLER))
    assert result.exit_code == 1
    assert result.output.endswith(
        "\nhint: only the connection slots the database server reserves for superusers are left "
        f"(max_connections, less superuser_reserved_connections); {HINT}\n"
    )


def test_migrate_as_the_superuser_runs_on_the_reserved_slots_when_every_other_is_taken(own: Cluster) -> None:
    with filled(own, FILLER) as held:
        result = cli("migrate", database_url=own.url())
    assert len(held) == MAX_CONNECTIONS - 3  # superuser_reserved_connections: 3
    assert result.exit_code == 0, result.output
