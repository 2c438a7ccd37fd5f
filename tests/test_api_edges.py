"""History API edges: a database that refuses writes (a standby) and offsets whose "+" a URL query
turned into a space."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from api_fixtures import Api, api_login, live_server

READ_ONLY = "the database is read-only (a standby, or writes are switched off): retry when it takes writes"


@pytest.fixture(scope="module")
def read_only_api(history_db: tuple[str, dict[str, int]], migration_ids: list[str]) -> Iterator[str]:
    """A second server over the seeded history whose connections refuse writes, as a standby's do."""
    url, _ids = history_db
    conninfo = make_conninfo(url, options="-c default_transaction_read_only=on")
    with live_server(conninfo, migration_ids) as base:
        yield base


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_login_to_a_read_only_database_is_503_not_a_500(read_only_api: str) -> None:
    # auth.login writes the session; the 25006 it got was a 500 "internal error; see the server log"
    response = api_login(read_only_api, "alice")
    assert response.status_code == 503, response.text
    assert response.json()["detail"] == READ_ONLY
    assert response.json()["sqlstate"] == "25006"


def test_a_read_whose_session_is_due_its_idle_slide_on_a_read_only_database_is_answered(
    api: Api, read_only_api: str, history_db: tuple[str, dict[str, int]]
) -> None:
    # auth.validate_session slides the idle timeout at most once a minute, and that write made a
    # read on a standby a 500 once a minute for every session, then a 503; it skips the slide in a
    # read-only transaction (tests/test_read_only_database_hunt.py: on a real standby)
    token = api_login(api.url, "bob").json()["token"]
    with psycopg.connect(history_db[0], autocommit=True) as conn:
        conn.execute(
            "update auth.sessions set last_seen_at = last_seen_at - interval '2 minutes'"
            " where token_hash = digest(%s, 'sha256')",
            [token],
        )
    response = httpx.get(f"{read_only_api}/api/v1/historical/orders", headers=bearer(token), timeout=30)
    assert response.status_code == 200, response.text
    assert [order["strategy"] for order in response.json()["items"]] == ["bob-arb", "bob-arb"]


def test_health_of_a_read_only_database_is_503_naming_the_writable_check(read_only_api: str) -> None:
    # it was 200 "healthy", so a load balancer kept a server whose every login failed in rotation
    response = httpx.get(f"{read_only_api}/api/v1/historical/health", timeout=30)
    assert response.status_code == 503
    failing = {c["name"]: c["detail"] for c in response.json()["checks"] if not c["ok"]}
    assert failing == {
        "writable": "the database is read-only (a standby, or writes are switched off): logins and logouts "
        "fail; reads of live sessions are served"
    }


@pytest.mark.parametrize(
    "query",
    [
        "start_date=2026-12-04T10:00:00+05:30",
        "end_date=2026-12-04 10:00:00.5+0530",
        "start_date=2026-12-04T10:00+05",
    ],
)
def test_an_offset_whose_plus_came_as_a_space_is_unprocessable_saying_to_encode_it(
    api: Api, query: str
) -> None:
    # a query string reads "+" as a space; the answer was "unexpected extra characters at the end
    # of the input", which did not say what was wrong with a time written as the README writes it
    response = httpx.get(
        f"{api.url}/api/v1/historical/orders?{query}", headers=bearer(api.tokens["alice"]), timeout=30
    )
    parameter = query.split("=")[0]
    assert (response.status_code, response.json()["parameter"]) == (422, parameter)
    assert response.json()["detail"] == (
        f"{parameter}: Value error, the offset's '+' came as a space: a URL query reads '+' as a space,"
        " so send +05:30 as %2B05:30"
    )
