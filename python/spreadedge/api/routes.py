"""The endpoints: each one call of a stored function, its JSON passed through as built in SQL."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BeforeValidator

from spreadedge.api import database, models
from spreadedge.api.problems import Problem

JSON = "application/json"
MAX_ID = 2**63 - 1
_PROBLEM = {"model": models.Problem, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**_PROBLEM, "description": HTTPStatus(status).phrase} for status in (400, 401, 403, 422, 503)
}
_bearer = HTTPBearer(auto_error=False, description="A session token from POST /api/v1/auth/login.")

Text = Annotated[str | None, Query(max_length=200)]

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# a time whose "+hh:mm" offset came through a URL query unencoded: the "+" arrives as a space
_PLUS_AS_SPACE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:.,]+ [0-9]{2}(:?[0-9]{2})?")
# a time whose UTC offset is whole hours, written as ISO 8601 allows: ±hh
_HOUR_OFFSET = re.compile(_ISO_DATE.pattern + r"[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?[+-][0-9]{2}")


def iso_8601(value: object) -> object:
    """The value if it starts with an ISO 8601 date (YYYY-MM-DD), an hour-only offset (±hh) written
    as ±hh:00; else a ValueError."""
    # why: pydantic reads a number as Unix time, so 20261204 (a date in ISO 8601's basic format)
    # would silently be 1970-08-23T12:06:44Z and the page or summary of the wrong period
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError(
            "expected an ISO 8601 date or time: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z, ±HH:MM or ±HH]"
        )
    # why: a query string reads "+" as a space, so ...T10:00:00+05:30 typed into a URL (as the README
    # writes offsets) was refused with "unexpected extra characters at the end of the input"
    if isinstance(value, str) and _PLUS_AS_SPACE.fullmatch(value):
        raise ValueError(
            "the offset's '+' came as a space: a URL query reads '+' as a space, so send +05:30 as %2B05:30"
        )
    # why: pydantic reads ±hh:mm and ±hhmm but not ±hh, so 2026-12-01T00:00:00+05 was refused
    # with "unexpected extra characters at the end of the input"
    if isinstance(value, str) and _HOUR_OFFSET.fullmatch(value):
        return f"{value}:00"
    return value


def in_utc(value: datetime | None) -> datetime | None:
    """The time in UTC (a time without an offset is UTC); a ValueError if UTC has no such year."""
    if value is None:
        return None
    # why: 9999-12-31T23:59:59-14:00 is in year 10000 in UTC, 0001-01-01T00:00:00+14:00 in 1 BC;
    # PostgreSQL took both and echoed "10000-01-01T…Z" and "0001-12-31T…Z" (the wrong year) back
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time in UTC must be within the years 1 to 9999") from None


IsoTime = Annotated[datetime | None, BeforeValidator(iso_8601), AfterValidator(in_utc)]
Since = Annotated[IsoTime, Query(description="Inclusive lower bound (ISO 8601; UTC if no offset).")]
Until = Annotated[IsoTime, Query(description="Exclusive upper bound (ISO 8601; UTC if no offset).")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page (1-1000).")]
# why no pattern: a cursor this API did not return is the SQL's to refuse, a 400 naming it (as the
# README says); a pattern here made "abc" or a padded "...=" a 422, and cursors with their filters
# are longer than its 64 characters
Cursor = Annotated[
    str | None,
    Query(
        max_length=200,
        description="next_cursor of the previous page, with the same filters (the limit may change).",
    ),
]


async def only_known_parameters(request: Request) -> None:
    """422 naming a query parameter the endpoint does not take, or one given more than once."""
    # why: FastAPI ignores an unknown parameter and keeps the last of repeated ones, so a typo
    # (?symbols=BTCUSDT, ?from=...) returned the unfiltered history, and ?status=filled&status=open
    # only the open orders, both as if the filter had been applied
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_parameters(route)
    given = Counter(name for name, _value in request.query_params.multi_items())
    for given_name, times in given.items():
        name = given_name[:80]
        if given_name not in known:
            raise Problem(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                f"{name}: not a parameter of this endpoint; it takes {', '.join(sorted(known)) or 'none'}",
                parameter=name,
            )
        if times > 1:
            raise Problem(
                HTTPStatus.UNPROCESSABLE_ENTITY, f"{name}: given more than once; give it once", parameter=name
            )


def _query_parameters(route: APIRoute) -> frozenset[str]:
    """The query parameters of the route: its own and those of its dependencies."""
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(field.alias for field in dependant.query_params)
        pending.extend(dependant.dependencies)
    return frozenset(names)


def _raw_query_items(query_string: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (name, value) pairs of a raw query string as bytes, percent-decoded as Starlette splits them."""
    for pair in query_string.split(b"&"):
        if pair:
            name, _, value = pair.partition(b"=")
            yield unquote_to_bytes(name.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))


async def storable_parameters(request: Request) -> None:
    """400 naming a query parameter that is not UTF-8 text, or holds a NUL character, which
    PostgreSQL text cannot store."""
    # why the bytes: Starlette decodes a query with errors="replace", so ?symbol=%FF (a Latin-1
    # client's byte) was read as "\ufffd" and answered 200 with an empty page, as if no such orders
    # existed (uvicorn refuses bytes above 0x7f sent unencoded, so percent-encoding is the way in)
    for raw_name, raw_value in _raw_query_items(request.scope.get("query_string", b"")):
        try:
            value = raw_value.decode("utf-8")
            name = raw_name.decode("utf-8")[:80]
        except UnicodeDecodeError:
            name = raw_name.decode("utf-8", "replace")[:80]
            raise Problem(
                HTTPStatus.BAD_REQUEST,
                f"{name}: is not UTF-8 text; percent-encode the UTF-8 bytes of its characters",
                parameter=name,
            ) from None
        # why here: psycopg refuses the NUL before sending, without saying which parameter held
        # it, so the answer was a 400 that named none
        if "\x00" in value:
            raise Problem(
                HTTPStatus.BAD_REQUEST,
                f"{name}: holds a NUL character, which PostgreSQL text cannot store",
                parameter=name,
            )


router = APIRouter(
    prefix="/api/v1", dependencies=[Depends(only_known_parameters), Depends(storable_parameters)]
)


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The session token of the request; 401 when there is none."""
    if credentials is None or not credentials.credentials:
        raise Problem(HTTPStatus.UNAUTHORIZED, "a bearer session token is required: POST /api/v1/auth/login")
    return credentials.credentials


Token = Annotated[str, Depends(bearer_token)]


async def _json(request: Request, function: str, token: str | None, **arguments: Any) -> Response:
    body = await database.call(request.app.state.pool, function, arguments, token=token)
    return Response(content=body, media_type=JSON)


@router.get("/historical/orders", response_model=models.OrderPage, responses=ERRORS, tags=["history"])
async def list_orders(
    request: Request,
    token: Token,
    symbol: Text = None,
    exchange: Text = None,
    strategy: Text = None,
    status: models.OrderStatus | None = None,
    side: models.Side | None = None,
    start_date: Since = None,
    end_date: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    """Orders newest first, one keyset page at a time (trading.order_history_page)."""
    return await _json(
        request,
        "trading.order_history_page",
        token,
        symbol=symbol,
        exchange=exchange,
        strategy=strategy,
        status=status,
        side=side,
        start_date=start_date,
        end_date=end_date,
        page_size=limit,
        cursor=cursor,
    )


@router.get(
    "/historical/orders/{order_id}",
    response_model=models.OrderDetail,
    responses={**ERRORS, 404: {**_PROBLEM, "description": "Unknown order"}},
    tags=["history"],
)
async def get_order(
    request: Request, token: Token, order_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    """One order with its status changes and trades (trading.order_detail); 404 if not visible."""
    return await _json(request, "trading.order_detail", token, order_id=order_id)


@router.get("/historical/positions", response_model=models.PositionList, responses=ERRORS, tags=["history"])
async def list_positions(
    request: Request,
    token: Token,
    status: Annotated[
        models.PositionStatus | None, Query(description="open or closed; both if absent.")
    ] = None,
    strategy: Text = None,
    exchange: Text = None,
    symbol: Text = None,
) -> Response:
    """Positions with mark price and PnL (trading.position_list)."""
    return await _json(
        request,
        "trading.position_list",
        token,
        status=status,
        strategy=strategy,
        exchange=exchange,
        symbol=symbol,
    )


@router.get("/historical/trades", response_model=models.TradePage, responses=ERRORS, tags=["history"])
async def list_trades(
    request: Request,
    token: Token,
    symbol: Text = None,
    exchange: Text = None,
    strategy: Text = None,
    start_date: Since = None,
    end_date: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    """Trades (fills) newest first, one keyset page at a time (trading.trade_history_page)."""
    return await _json(
        request,
        "trading.trade_history_page",
        token,
        symbol=symbol,
        exchange=exchange,
        strategy=strategy,
        start_date=start_date,
        end_date=end_date,
        page_size=limit,
        cursor=cursor,
    )


@router.get(
    "/historical/trades/summary", response_model=models.TradeSummary, responses=ERRORS, tags=["history"]
)
async def trade_summary(
    request: Request,
    token: Token,
    start_date: Since = None,
    end_date: Until = None,
    strategy: Text = None,
    group_by: models.GroupBy = "strategy",
) -> Response:
    """Counts, volume, fees, realized PnL and win rate per group (trading.trade_summary)."""
    return await _json(
        request,
        "trading.trade_summary",
        token,
        start_date=start_date,
        end_date=end_date,
        strategy=strategy,
        group_by=group_by,
    )


@router.get(
    "/historical/portfolio/snapshots", response_model=models.SnapshotPage, responses=ERRORS, tags=["history"]
)
async def list_snapshots(
    request: Request,
    token: Token,
    strategy: Text = None,
    start_date: Since = None,
    end_date: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    """Portfolio snapshot rows newest first (trading.portfolio_snapshot_page)."""
    return await _json(
        request,
        "trading.portfolio_snapshot_page",
        token,
        strategy=strategy,
        start_date=start_date,
        end_date=end_date,
        page_size=limit,
        cursor=cursor,
    )


@router.get(
    "/historical/portfolio/latest", response_model=models.LatestPortfolio, responses=ERRORS, tags=["history"]
)
async def latest_portfolio(request: Request, token: Token) -> Response:
    """The most recent portfolio snapshot the caller can see (trading.portfolio_latest)."""
    return await _json(request, "trading.portfolio_latest", token)
