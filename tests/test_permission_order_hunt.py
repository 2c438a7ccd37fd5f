"""The permission check comes before any lookup: a user without the permission an API function
needs gets 42S01 permission_denied, whatever names or ids they pass; a lookup that ran first (a
plpgsql declare initializer runs before the body) answered 23S03/23S04/23S20 for an unknown
strategy, instrument, pair or order, an answer that depended on data the caller may not see."""

from __future__ import annotations

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from trading_helpers import call, rows

UNKNOWN_ORDER = 987_654_321

# (function, named arguments naming things that do not exist, the permission it needs, set-returning)
CASES = [
    (
        "trading.get_position",
        {"strategy": "no-such-strategy", "exchange": "binance", "symbol": "NOPEUSDT"},
        "positions:read",
        True,
    ),
    (
        "trading.record_funding",
        {
            "strategy": "no-such-strategy",
            "exchange": "binance",
            "symbol": "NOPEUSDT",
            "amount": 1,
            "paid_at": "2026-01-01T00:00:00Z",
        },
        "orders:write",
        False,
    ),
    (
        "trading.open_spread_trade",
        {
            "strategy": "no-such-strategy",
            "symbol": "NOPE/USDT",
            "buy_exchange": "binance",
            "sell_exchange": "okx",
            "quantity": 1,
        },
        "orders:write",
        False,
    ),
    ("trading.acknowledge_order", {"order_id": UNKNOWN_ORDER}, "orders:write", False),
    ("trading.cancel_order", {"order_id": UNKNOWN_ORDER}, "orders:write", False),
    ("trading.reject_order", {"order_id": UNKNOWN_ORDER, "reason": "refused"}, "orders:write", False),
    ("trading.expire_order", {"order_id": UNKNOWN_ORDER}, "orders:write", False),
]


@pytest.mark.parametrize(
    ("function", "kwargs", "permission", "set_returning"), CASES, ids=[c[0] for c in CASES]
)
def test_permission_is_checked_before_lookups_so_unknown_names_give_permission_denied(
    seeded, function, kwargs, permission, set_returning
):
    seeded.execute(
        "insert into auth.roles (role_name, description) values ('guest', 'No permission at all.')"
    )
    guest = make_user(seeded, "gus", "guest")
    with acting_as(seeded, "spreadedge_app", guest), pytest.raises(psycopg.Error) as caught:
        (rows if set_returning else call)(seeded, function, **kwargs)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {guest} lacks the permission {permission}",
    )
