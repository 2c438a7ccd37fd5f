"""Ops and API hunt: the answers operators and dashboards got wrong for odd input or odd states."""

from __future__ import annotations

import httpx
import pytest

from api_fixtures import Api, live_server
from conftest import free_port
from db_fixtures import janitor
from spreadedge.cluster import Cluster


@pytest.mark.parametrize(("query", "parameter"), [("symbol=%FF", "symbol"), ("strategy=caf%E9", "strategy")])
def test_a_query_value_that_is_not_utf8_is_a_bad_request_naming_it(
    api: Api, query: str, parameter: str
) -> None:
    # ?symbol=%FF was decoded with replacement characters and answered 200 with an empty page, as
    # if the filter had matched nothing
    response = httpx.get(
        f"{api.url}/api/v1/historical/orders?{query}",
        headers={"Authorization": f"Bearer {api.tokens['alice']}"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["parameter"] == parameter


def test_a_percent_encoded_utf8_value_still_filters(api: Api) -> None:
    response = api.get("orders", "alice", symbol="ETHUSD", exchange="kraken")
    assert response.status_code == 200
    assert [o["symbol"] for o in response.json()["items"]] == ["ETHUSD"]
    response = api.get("orders", "alice", symbol="café")
    assert (response.status_code, response.json()["items"]) == (200, [])


def test_health_of_a_database_not_migrated_is_503_naming_the_migrations_check(
    pg_cluster: Cluster, template_db: str, migration_ids: list[str]
) -> None:
    # template_db: the cluster's roles exist (a migrated database of the cluster made them)
    name = f"bare_{free_port()}"
    with janitor(pg_cluster, name), live_server(pg_cluster.url(name), migration_ids) as url:
        response = httpx.get(f"{url}/api/v1/historical/health", timeout=30)
    assert response.status_code == 503
    # it said "database: internal error; see the server log" (and logged an error 3F000)
    assert [(c["name"], c["ok"], c["detail"]) for c in response.json()["checks"]] == [
        ("database", True, "reachable"),
        ("migrations", False, "ops.health is missing: the database is not migrated (spreadedge migrate)"),
    ]
