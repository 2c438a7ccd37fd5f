"""History page cursors: one passed back with other filters, and ones the API did not return
however they are malformed."""

from __future__ import annotations

from datetime import timedelta, timezone

import psycopg
import pytest

from api_fixtures import T0, Api, seed_history
from trading_helpers import call


def refused(db: psycopg.Connection, function: str, **arguments: object) -> tuple[str | None, str | None]:
    with pytest.raises(psycopg.Error) as error:
        call(db, function, **arguments)
    return error.value.sqlstate, error.value.diag.column_name


# bug: a cursor was only a position, whatever filters it came with: the cursor of ?status=filled
# passed back with ?status=cancelled paged the cancelled orders older than the filled one, silently
# leaving out the cancelled order placed after it (the page was {"items": [], "next_cursor": null})
@pytest.mark.parametrize(
    ("function", "first", "then"),
    [
        ("trading.order_history_page", {"status": "filled"}, {"status": "cancelled"}),
        ("trading.order_history_page", {"status": "filled"}, {}),
        ("trading.trade_history_page", {"strategy": "bob-arb"}, {"strategy": "alice-arb"}),
        ("trading.trade_history_page", {"start_date": T0}, {"start_date": T0 + timedelta(minutes=1)}),
        ("trading.portfolio_snapshot_page", {"start_date": T0}, {}),
    ],
)
def test_a_cursor_passed_back_with_other_filters_is_refused_naming_the_cursor(
    db: psycopg.Connection, function: str, first: dict[str, object], then: dict[str, object]
) -> None:
    seed_history(db)
    cursor = call(db, function, page_size=1, **first)["next_cursor"]
    assert cursor is not None
    assert refused(db, function, page_size=1, cursor=cursor, **then) == ("22S09", "cursor")


def test_a_cursor_passed_back_with_the_same_filters_and_another_limit_pages_on(
    db: psycopg.Connection,
) -> None:
    ids = seed_history(db)
    filters = {"status": "filled", "start_date": T0, "end_date": T0 + timedelta(hours=5)}
    cursor = call(db, "trading.order_history_page", page_size=1, **filters)["next_cursor"]
    # the same instants written with another offset are the same filters
    same = filters | {"start_date": T0.astimezone(timezone(timedelta(hours=5, minutes=30)))}
    page = call(db, "trading.order_history_page", page_size=10, cursor=cursor, **same)
    assert [item["order_id"] for item in page["items"]] == [ids["a2"], ids["b1"], ids["a1"]]


@pytest.mark.parametrize("cursor", ["abc", "b3JkZXJzOjE6Mi4=", "b3JkZXJz+jE6Mi4", "x" * 100])
def test_a_cursor_this_api_did_not_return_is_a_bad_request_however_it_is_malformed(
    api: Api, cursor: str
) -> None:
    # "abc" (too short for the old pattern), padding, a "+" and a cursor longer than 64 characters
    # were 422s from the route's pattern, where the README promises a 400 for a cursor this API
    # did not return, as "not-a-cursor" got
    response = api.get("orders", "alice", cursor=cursor)
    assert response.status_code == 400, response.text
    assert (response.json()["parameter"], response.json()["sqlstate"]) == ("cursor", "22S09")


def test_a_cursor_of_a_filtered_page_is_refused_over_http_with_other_filters(api: Api) -> None:
    cursor = api.get("orders", "root", limit=1, status="filled").json()["next_cursor"]
    response = api.get("orders", "root", limit=1, status="cancelled", cursor=cursor)
    assert response.status_code == 400, response.text
    assert (response.json()["parameter"], response.json()["sqlstate"]) == ("cursor", "22S09")
    assert response.json()["detail"].endswith("was returned for other filters than these")
