"""The history API and the async managers: odd input answered with the project's errors and plain decimals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from api_fixtures import Api
from spreadedge import errors
from spreadedge.managers import ManagerConfig, PersistentOrderManager, PersistentPositionManager
from test_managers import BUY

BEYOND_BIGINT = 2**63


def _with_order_manager(
    config: ManagerConfig, action: Callable[[PersistentOrderManager], Awaitable[Any]]
) -> Any:
    async def run() -> Any:
        async with PersistentOrderManager(config) as manager:
            return await action(manager)

    return asyncio.run(run())


@pytest.mark.parametrize("method", ["cancel_order", "record_fill"])
def test_an_order_id_beyond_bigint_raises_unknown_order_from_the_manager(
    config: ManagerConfig, method: str
) -> None:
    # it was psycopg's UndefinedFunction (42883: no trading.cancel_order(order_id => numeric)), as
    # psycopg sends such an int as numeric, where order ids 0 and -1 raise UnknownOrder
    calls = {
        "cancel_order": lambda m: m.cancel_order(BEYOND_BIGINT),
        "record_fill": lambda m: m.record_fill(BEYOND_BIGINT, "t-1", Decimal("0.1"), Decimal("60000")),
    }
    with pytest.raises(errors.UnknownOrder, match=f"^order {BEYOND_BIGINT} does not exist$") as caught:
        _with_order_manager(config, calls[method])
    assert caught.value.sqlstate == "23S04"


def test_a_nul_character_in_a_text_argument_raises_invalid_argument_naming_it(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    # it was psycopg's DataError ("PostgreSQL text fields cannot contain NUL (0x00) bytes"), which
    # named no argument and is none of the project's exception classes
    order = replace(BUY, client_order_id="m\x00-1")
    with pytest.raises(errors.InvalidArgument) as caught:
        _with_order_manager(config, lambda m: m.place_order(order))
    assert caught.value.sqlstate == "22S09"
    assert caught.value.message == "client_order_id holds a NUL character, which PostgreSQL text cannot store"
    assert seeded.execute("select count(*) from trading.orders").fetchone() == (0,)


@pytest.mark.parametrize("field", ["username", "password", "totp_code"])
def test_a_nul_character_in_a_login_field_is_a_bad_request_naming_the_field(api: Api, field: str) -> None:
    # it was a 400 that named no parameter: "a parameter holds a character PostgreSQL cannot store"
    body = {"username": "alice", "password": "x", "totp_code": None} | {field: "a\x00b"}
    response = httpx.post(f"{api.url}/api/v1/auth/login", json=body, timeout=30)
    assert response.status_code == 400
    problem = response.json()
    assert (problem["parameter"], problem["detail"]) == (
        field,
        f"{field}: holds a NUL character, which PostgreSQL text cannot store",
    )


def test_an_open_position_marked_at_its_entry_price_has_an_unrealized_pnl_of_plain_zero(
    config: ManagerConfig,
) -> None:
    # it was Decimal('0E-12'): the view rounds to 12 places and kept the zeros, so str() printed
    # "0E-12" (exponent form) where every other amount of the position prints plainly
    order = replace(BUY, quantity=Decimal("0.1"), client_order_id=None)

    async def main() -> list[Any]:
        async with PersistentOrderManager(config) as orders, PersistentPositionManager(config) as positions:
            placed = await orders.place_order(order)
            await orders.record_fill(placed.order_id, "t-1", Decimal("0.1"), Decimal("60000"))
            return await positions.get_open_positions()

    [position] = asyncio.run(main())
    assert (position.mark_price, position.avg_entry_price) == (Decimal("60000"), Decimal("60000"))
    assert str(position.unrealized_pnl) == "0"
