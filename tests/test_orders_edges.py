"""Edges of orders, strategies and their callers (the managers and the trading CLI commands)."""

from __future__ import annotations

from decimal import Decimal as D

import psycopg
import pytest
from click.testing import CliRunner

from spreadedge.cli import main
from trading_helpers import call, expect_refusal, place


# Strategy names (bug: a variation selector, a Braille blank or a default-ignorable code point
# outside the listed ranges made a second strategy that looks exactly like an existing one)
@pytest.mark.parametrize(
    "name",
    [
        "alpha\ufe0f",  # variation selector 16: invisible after a letter
        "alpha\U000e0100",  # variation selector 17 (supplement)
        "alpha\U000e0000",  # an unassigned default-ignorable code point in the tag block
        "al\ufff0pha",  # an unassigned default-ignorable code point
        "alpha\u2800",  # Braille pattern blank: renders as a space
    ],
    ids=["variation-selector", "variation-selector-supplement", "tag-block", "specials", "braille-blank"],
)
def test_a_strategy_name_with_a_variation_selector_or_other_invisible_is_refused(
    seeded: psycopg.Connection, name: str
) -> None:
    expect_refusal(
        seeded,
        "22S09",
        f'strategy name "{name}" is not in Unicode NFC or holds an invisible character or a space other than U+0020',
        lambda: call(seeded, "trading.create_strategy", name=name),
    )


# pnl --since/--until (bug: a time at the edge of the calendar with an offset raised OverflowError
# with a traceback: it has no UTC time Python can hold)
@pytest.mark.parametrize(
    ("option", "value"),
    [("--until", "9999-12-31T23:00:00-05:00"), ("--since", "0001-01-01T00:30:00+01:00")],
    ids=["after-9999", "before-year-1"],
)
def test_pnl_with_a_time_beyond_the_calendar_in_utc_names_the_option_and_the_value(
    option: str, value: str
) -> None:
    result = CliRunner().invoke(main, ["--database-url", "postgresql://nowhere/none", "pnl", option, value])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for '{option}': '{value}' is out of range in UTC (0001-01-01 to 9999-12-31)"
    )


# Stop prices (bug: a stop price on a market or limit order was refused with no hint, where the
# same mistake with a price hints at the type that takes one)
@pytest.mark.parametrize(
    ("price", "hint"),
    [
        (None, "Omit stop_price for a market order, or use order_type => 'stop_market'."),
        ("100", "Omit stop_price for a limit order, or use order_type => 'stop_limit'."),
    ],
    ids=["market", "limit"],
)
def test_a_stop_price_on_a_market_or_limit_order_hints_at_the_stop_type(
    seeded: psycopg.Connection, price: str | None, hint: str
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        place(seeded, "buy", "1", price, stop_price=D("99"))
    order_type = "market" if price is None else "limit"
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_hint) == (
        "22S07",
        f"{order_type} orders take no stop price, got 99",
        hint,
    )
