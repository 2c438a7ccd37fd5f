"""GET /api/v1/historical/health: 200 when the database can take writes where they belong, else 503."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import psycopg
import pytest

from api_fixtures import live_server
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/historical/health", timeout=30)


def health_once_the_pool_reconnects(url: str, within: float = 60) -> httpx.Response:
    """Health, asked again while it is 503 for at most ``within`` seconds.

    why: after an outage the pool reconnects for a request that finds no connection, and the
    first request after the database is back may come while an attempt given up is being retried.
    """
    deadline = time.monotonic() + within
    response = health(url)
    while response.status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
        response = health(url)
    return response


@pytest.fixture
def own_cluster(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Cluster:
    """A migrated cluster of the test's own, which it may stop and start."""
    cluster = make_cluster()
    cluster.start()
    migrate(cluster.url(), project_settings, echo=lambda line: None)
    return cluster


def failing(response: httpx.Response) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in response.json()["checks"] if not c["ok"]}


def test_health_of_a_migrated_database_is_200_with_every_check_and_pool_stats(
    db_url: str, migration_ids: list[str]
) -> None:
    with live_server(db_url, migration_ids) as url:
        response = health(url)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert [c["name"] for c in body["checks"]] == [
        "database",
        "migrations",
        "partitions_ahead",
        "default_partitions_empty",
        "writable",
    ]
    assert body["pool"]["max_size"] == 4


def test_health_with_a_pending_migration_is_503_naming_it(db_url: str, migration_ids: list[str]) -> None:
    with live_server(db_url, [*migration_ids, "9999_future"]) as url:
        response = health(url)
    assert response.status_code == 503
    assert failing(response) == {"migrations": f"{len(migration_ids)} applied; pending: 9999_future"}


def test_health_with_rows_in_a_default_partition_is_503_naming_it(
    db: psycopg.Connection, db_url: str, migration_ids: list[str]
) -> None:
    db.execute("set session_replication_role = replica")  # only to plant the stray row
    db.execute(
        "insert into trading.order_events (occurred_at, order_id, to_status)"
        " values ('2099-01-01 00:00+00', 1, 'new')"
    )
    with live_server(db_url, migration_ids) as url:
        response = health(url)
    assert response.status_code == 503
    assert failing(response) == {
        "default_partitions_empty": "rows in default partitions: trading.order_events_default (1 rows)"
    }


def test_health_without_the_next_partition_is_503_naming_the_table(
    db: psycopg.Connection, db_url: str, migration_ids: list[str]
) -> None:
    ahead = db.execute(
        "select p.partition_schemaname, p.partition_tablename"
        " from partman.show_partitions('market.ticks') p,"
        " partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i"
        " where i.child_start_time > now()"
    ).fetchall()
    assert ahead
    for schema, table in ahead:
        db.execute(psycopg.sql.SQL("drop table {}").format(psycopg.sql.Identifier(schema, table)))
    with live_server(db_url, migration_ids) as url:
        response = health(url)
    assert response.status_code == 503
    assert list(failing(response)) == ["partitions_ahead"]
    assert failing(response)["partitions_ahead"].startswith(
        "not created ahead: market.ticks (newest partition ends "
    )


def test_health_turns_503_when_the_database_stops_and_history_reads_get_503(
    own_cluster: Cluster, migration_ids: list[str]
) -> None:
    cluster = own_cluster
    with live_server(cluster.url(), migration_ids) as url:
        assert health(url).status_code == 200
        cluster.stop()
        response = health(url)
        assert response.status_code == 503
        assert failing(response) == {"database": "the database is unavailable"}
        orders = httpx.get(
            f"{url}/api/v1/historical/orders", headers={"Authorization": "Bearer any"}, timeout=30
        )
        assert orders.status_code == 503
        assert orders.json()["detail"] == "the database is unavailable"
        cluster.start()
        assert health_once_the_pool_reconnects(url).status_code == 200


# bug: the API's pool retried a lost database on psycopg_pool's backoff (1, 2, 4, 8, 16 ... s from
# the first failure), so after an outage of 20 s with requests coming in every read stayed 503 for
# up to ten seconds more, the database back
def test_reads_are_served_again_within_seconds_of_the_database_returning_from_a_long_outage(
    own_cluster: Cluster, migration_ids: list[str]
) -> None:
    cluster = own_cluster
    with live_server(cluster.url(), migration_ids) as url:
        assert health(url).status_code == 200
        cluster.stop()
        outage_ends = time.monotonic() + 20
        while time.monotonic() < outage_ends:
            assert health(url).status_code == 503
            time.sleep(0.5)
        cluster.start()
        response = health_once_the_pool_reconnects(url, within=4)
    assert response.status_code == 200


def test_health_right_after_a_database_restart_is_200(own_cluster: Cluster, migration_ids: list[str]) -> None:
    cluster = own_cluster
    with live_server(cluster.url(), migration_ids) as url:
        assert health(url).status_code == 200
        cluster.stop()
        cluster.start()
        responses = [health(url) for _ in range(4)]  # the pool's 4 connections, stale or new
    assert [r.status_code for r in responses] == [200, 200, 200, 200]


def test_head_of_health_is_200_with_the_headers_of_get_and_no_body(
    db_url: str, migration_ids: list[str]
) -> None:
    # HEAD used to be a 405 (FastAPI routes a GET endpoint for GET only): an uptime checker
    # sending HEAD saw a healthy server as down
    with live_server(db_url, migration_ids) as url:
        response = httpx.head(f"{url}/api/v1/historical/health", timeout=30)
    assert (response.status_code, response.headers["content-type"], response.content) == (
        200,
        "application/json",
        b"",
    )
