"""Property test: positions built by record_fill equal an independent average-cost model."""

import itertools
from decimal import ROUND_HALF_UP, Decimal, localcontext

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_helpers import call, position, trade

_strategies = itertools.count(1)
INSTRUMENTS = {  # (exchange, symbol): (tick, lot, multiplier), as seeded
    ("kraken", "ETHUSD"): (Decimal("0.01"), Decimal("0.001"), Decimal("1")),
    ("okx", "BTC-USDT-SWAP"): (Decimal("0.1"), Decimal("1"), Decimal("0.01")),
}


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def model(fills, multiplier):
    """Reference average-cost position: (quantity, avg entry, realized gross) after the fills."""
    quantity, entry, realized = Decimal(0), None, Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 80
        for side, size, price in fills:
            delta = size if side == "buy" else -size
            if quantity == 0 or (delta > 0) == (quantity > 0):
                new = quantity + delta
                # PostgreSQL divides at 24 decimals (the numerator is scaled to 24), then rounds to 18
                entry = (
                    price
                    if quantity == 0
                    else _round(_round((quantity * entry + delta * price) / new, 24), 18)
                )
                quantity = new
                continue
            closed = min(abs(delta), abs(quantity))
            realized += _round(closed * multiplier * (price - entry) * (1 if quantity > 0 else -1), 12)
            new = quantity + delta
            entry = None if new == 0 else (entry if (new > 0) == (quantity > 0) else price)
            quantity = new
    return quantity, entry, realized


fill_lists = st.sampled_from(sorted(INSTRUMENTS)).flatmap(
    lambda key: st.tuples(
        st.just(key),
        st.lists(
            st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 3000), st.integers(1, 500_000)),
            min_size=1,
            max_size=12,
        ),
    )
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fill_lists)
def test_positions_equal_the_average_cost_model(seeded, case):
    (exchange, symbol), raw = case
    tick, lot, multiplier = INSTRUMENTS[(exchange, symbol)]
    strategy = f"model-{next(_strategies)}"
    call(seeded, "trading.create_strategy", name=strategy)
    fills = [(side, lots * lot, ticks * tick) for side, lots, ticks in raw]
    for side, size, price in fills:
        trade(seeded, side, str(size), str(price), strategy=strategy, exchange=exchange, symbol=symbol)
    pos = position(seeded, strategy, exchange, symbol)
    assert (pos["quantity"], pos["avg_entry_price"], pos["realized_pnl_gross"]) == model(fills, multiplier)
