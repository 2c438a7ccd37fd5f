"""Health and new connections against a server that answers slowly or not at all, for real.

Health answers within a short bound of its own (``--health-timeout``, default 3 s, and a second
when the server does not answer at all), whatever the history statement_timeout: a load balancer's
probe or an uptime checker waits a few seconds, not the 30 s a history request may take. A new
connection to a server whose postmaster is frozen (SIGSTOP: the kernel still accepts the
connection, its startup never completes) is given up after a ``connect_timeout``, by the API's and
the managers' pools and by the CLI. Every frozen process is continued in a ``finally``, on a
cluster of this module's own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from api_fixtures import live_server, seed_history
from frozen_helpers import frozen, postmaster, seeded_cluster
from spreadedge.cluster import Cluster
from spreadedge.managers import ManagerConfig, PersistentOrderManager
from spreadedge.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
# the documented default of spreadedge serve --health-timeout
HEALTH_TIMEOUT = 3.0
# a history statement_timeout far longer than health's bound: health must not wait for it
STATEMENT_TIMEOUT = 60.0
# the CLI's connect_timeout (seconds)
CLI_CONNECT_TIMEOUT = 10
# why a guard: without the bounds these waits last a minute or more; every wait is capped at its
# bound plus this, so a hang is a failure and not a stuck run (no assertion is about speed)
GUARD = 10
HEALTH_CAP = HEALTH_TIMEOUT + 1 + GUARD


@pytest.fixture(scope="module")
def own(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated cluster with the seeded history, of this module's own: a test may freeze it."""
    yield seeded_cluster(make_cluster, project_settings, seed_history)


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/historical/health", timeout=HEALTH_CAP)


def database_check(response: httpx.Response) -> tuple[int, str, list[dict[str, object]]]:
    body = response.json()
    return response.status_code, body["status"], body["checks"]


def test_health_while_a_lock_holds_its_statement_answers_503_within_its_own_timeout(
    own: Cluster, migration_ids: list[str]
) -> None:
    with live_server(own.url(), migration_ids, statement_timeout=STATEMENT_TIMEOUT) as url:
        assert health(url).status_code == 200
        with psycopg.connect(own.url()) as blocker:
            # what a migration's lock on a partitioned table does: ops.health counts the rows of
            # every default partition, and waits for this one
            [default_partition] = blocker.execute(
                "select parent_table || '_default' from partman.part_config order by parent_table limit 1"
            ).fetchone() or [None]
            blocker.execute(
                sql.SQL("lock table {} in access exclusive mode").format(
                    sql.Identifier(*default_partition.split("."))
                )
            )
            response = health(url)
    assert database_check(response) == (
        503,
        "unhealthy",
        [
            {
                "name": "database",
                "ok": False,
                "detail": "the database cancelled the request (canceling statement due to statement "
                "timeout): retry later",
            }
        ],
    )


def test_health_while_the_whole_server_is_frozen_answers_503_within_its_own_timeout_and_a_second(
    own: Cluster, migration_ids: list[str]
) -> None:
    with live_server(own.url(), migration_ids, statement_timeout=STATEMENT_TIMEOUT) as url:
        assert health(url).status_code == 200
        with frozen(own.server_processes()):
            response = health(url)
    assert database_check(response) == (
        503,
        "unhealthy",
        [
            {
                "name": "database",
                "ok": False,
                "detail": "the database did not answer within 4 s (the health timeout of 3 s and a "
                "second): the request was given up and its connection closed; retry later",
            }
        ],
    )


def connection_errors(records: list[logging.LogRecord], pool: str) -> list[str]:
    return [
        record.getMessage()
        for record in records
        if record.name == "psycopg.pool" and record.getMessage().startswith(f"error connecting in '{pool}'")
    ]


def test_the_api_pool_gives_up_a_new_connection_to_a_frozen_postmaster(
    own: Cluster, migration_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    given_up: list[str] = []
    # the pool's first connections are made once the server is up: their startup never completes
    with (
        frozen([postmaster(own)]),
        live_server(own.url(), migration_ids, statement_timeout=STATEMENT_TIMEOUT),
    ):
        deadline = time.monotonic() + 5 + GUARD  # connect_timeout: the API's wait for a connection
        while not given_up and time.monotonic() < deadline:
            time.sleep(0.1)
            given_up = connection_errors(caplog.records, "spreadedge-api")
    assert given_up[:1] == ["error connecting in 'spreadedge-api': connection timeout expired"]


def test_the_managers_pool_gives_up_a_new_connection_to_a_frozen_postmaster(
    own: Cluster, project_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    # connect_timeout: call_timeout, in whole seconds (at least 2)
    config = ManagerConfig(
        database_url=own.url(), settings=project_settings, call_timeout=2.0, timeout=2 + GUARD
    )

    async def run() -> str:
        manager = PersistentOrderManager(config)
        with pytest.raises(psycopg.OperationalError) as caught:
            await asyncio.wait_for(manager.start(), 2 * (2 + GUARD))
        return str(caught.value)

    with frozen([postmaster(own)]):
        unavailable = asyncio.run(run())
    assert unavailable == "the database is unavailable: no working connection within 12 s"
    assert connection_errors(caplog.records, "PersistentOrderManager")[:1] == [
        "error connecting in 'PersistentOrderManager': connection timeout expired"
    ]


def test_a_cli_command_against_a_frozen_postmaster_gives_up_its_connection(own: Cluster) -> None:
    environment = {**os.environ, "SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": own.url()}
    environment.pop("PGCONNECT_TIMEOUT", None)
    with frozen([postmaster(own)]):
        process = subprocess.Popen(
            [sys.executable, "-c", "from spreadedge.cli import main; main()", "pnl"],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = process.communicate(timeout=CLI_CONNECT_TIMEOUT + GUARD)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert (process.returncode, out, err.decode()) == (1, b"", "Error: connection timeout expired\n")
