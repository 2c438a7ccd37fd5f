"""Orders and the async managers: odd numbers and types given to the managers are refused by name."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import psycopg
import pytest

from spreadedge import errors
from spreadedge.managers import ManagerConfig, PersistentOrderManager
from test_api_and_managers_odd_inputs import _with_order_manager
from test_managers import BUY
from trading_helpers import counts


# Decimals beyond numeric (bug: the server refused them while binding, with a bare 22003 "value
# overflows numeric format" that named no argument and is none of the project's exception classes)
@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("quantity", "1E+131072", "1E+131072"),
        ("quantity", "1E-16384", "1E-16384"),
        ("price", "-1.5E+200000", "-1.5E+200000"),
        ("price", "0E-20000", "0E-20000"),
        ("price", "1" * 131073, "1.111E+131072"),
    ],
    ids=["quantity-too-large", "quantity-too-precise", "price-too-large", "zero-too-precise", "all-digits"],
)
def test_a_decimal_beyond_numeric_raises_invalid_argument_naming_it(
    config: ManagerConfig, seeded: psycopg.Connection, field: str, value: str, shown: str
) -> None:
    before = counts(seeded)
    order = replace(BUY, **{field: Decimal(value)})
    with pytest.raises(errors.InvalidArgument) as caught:
        _with_order_manager(config, lambda manager: manager.place_order(order))
    assert (caught.value.sqlstate, caught.value.message) == (
        "22S09",
        f"{field} {shown} is beyond PostgreSQL numeric: at most 131072 digits before the decimal point "
        "and 16383 after it",
    )
    assert counts(seeded) == before


@pytest.mark.parametrize(
    ("value", "refusal", "message"),
    [
        ("9.9E+131071", errors.InvalidArgument, "order notional (quantity 9.900e+131071 x price 6.000e+04"),
        ("1E-16383", errors.QuantityOffLot, "quantity 1.000e-16383 is not a multiple of the lot size 0.0001"),
        ("0E+200000", errors.InvalidQuantity, "quantity must be positive and finite, got 0"),
    ],
    ids=["largest-digits", "smallest-scale", "zero-with-a-large-exponent"],
)
def test_a_decimal_at_the_edge_of_numeric_reaches_the_sql_checks(
    config: ManagerConfig, value: str, refusal: type[errors.SpreadedgeError], message: str
) -> None:
    # numeric holds it, so the SQL judges it (its notional overflows, it is off the lot, it is zero)
    order = replace(BUY, quantity=Decimal(value))
    with pytest.raises(refusal) as caught:
        _with_order_manager(config, lambda manager: manager.place_order(order))
    assert caught.value.message.startswith(message)


def test_a_decimal_fill_price_beyond_numeric_raises_invalid_argument(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    async def run(manager: PersistentOrderManager) -> int:
        order = await manager.place_order(BUY)
        return await manager.record_fill(order.order_id, "t-1", Decimal("0.5"), Decimal("1E+131072"))

    with pytest.raises(errors.InvalidArgument, match=r"^price 1E\+131072 is beyond PostgreSQL numeric"):
        _with_order_manager(config, run)
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (0,)


# Bools (bug: a bool is an int to Python and went out as a PostgreSQL boolean: 42883, no function
# trading.place_order(quantity => boolean), a raw psycopg error)
def test_a_bool_quantity_is_refused_with_a_type_error(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    before = counts(seeded)
    order = replace(BUY, quantity=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^quantity must not be a bool, got True$"):
        _with_order_manager(config, lambda manager: manager.place_order(order))
    assert counts(seeded) == before


def test_a_bool_order_id_is_refused_with_a_type_error(config: ManagerConfig) -> None:
    with pytest.raises(TypeError, match=r"^order_id must not be a bool, got True$"):
        _with_order_manager(config, lambda manager: manager.cancel_order(True))  # type: ignore[arg-type]
