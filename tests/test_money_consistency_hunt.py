"""Money path: the derived numbers (pnl_summary, the rollups, positions, snapshots) agree with the
trades and funding payments they are derived from, computed again here independently."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from decimal import localcontext
from typing import Any

import psycopg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql

from market_helpers import quote as quote_row
from reliability_model import EXACT, round_half_up
from trading_helpers import call, fill, list_binance_eth_btc, place, rows

# why relative: a fill may be at most a day ahead of now, and trades partitions exist around now
BASE = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}
# (exchange, symbol): (lot, tick, base asset, quote asset)
MARKETS = {
    ("binance", "BTCUSDT"): (D("0.1"), D("100"), "BTC", "USDT"),
    ("okx", "BTC-USDT-SWAP"): (D("1"), D("100"), "BTC", "USDT"),
    ("kraken", "ETHUSD"): (D("0.01"), D("10"), "ETH", "USD"),
    ("binance", "ETHBTC"): (D("0.01"), D("0.01"), "ETH", "BTC"),
}
DIMS = ("strategy", "exchange", "instrument", "day")


def expected_summary(
    conn: psycopg.Connection, since: datetime | None, until: datetime | None, group_by: str
) -> list[tuple[Any, ...]]:
    """pnl_summary computed from trades and funding payments alone, in Python, with the unrealized
    PnL of the positions open now, each as trading.get_position gives it (unrealized_pnl)."""
    dims = set() if group_by == "total" else set(group_by.split(","))
    facts = conn.execute(
        "select s.name, e.code, i.symbol, t.executed_at, i.quote_asset, t.quantity, t.price, t.multiplier,"
        "       t.fee_quote, t.realized_pnl_gross, 0::numeric, 1"
        " from trading.trades t join trading.strategies s using (strategy_id)"
        " join ref.instruments i on i.instrument_id = t.instrument_id join ref.exchanges e using (exchange_id)"
        " union all"
        " select s.name, e.code, i.symbol, f.paid_at, i.quote_asset, 0, 0, 0, 0, 0, f.amount, 0"
        " from trading.funding_payments f join trading.strategies s using (strategy_id)"
        " join ref.instruments i on i.instrument_id = f.instrument_id join ref.exchanges e using (exchange_id)"
    ).fetchall()
    # now() of the test's one transaction: the present pnl_summary sees
    now, today = conn.execute("select now(), (now() at time zone 'UTC')::date").fetchone()
    present = (since is None or since <= now) and (until is None or until > now)
    positions = conn.execute(
        "select s.name, e.code, i.symbol, i.quote_asset, g.unrealized_pnl"
        " from trading.positions p join trading.strategies s using (strategy_id)"
        " join ref.instruments i on i.instrument_id = p.instrument_id join ref.exchanges e using (exchange_id)"
        " cross join lateral trading.get_position(strategy => s.name, exchange => e.code, symbol => i.symbol) g"
        " where p.quantity <> 0"
    ).fetchall()
    with localcontext(EXACT):
        grouped = _grouped(facts, since, until, dims)
        unrealized: dict[tuple[Any, ...], list[D | None]] = defaultdict(list)
        for name, exchange, symbol, quote, value in positions if present else []:
            unrealized[_key(dims, name, exchange, symbol, today, quote)].append(value)
        # a group with an open position and no trade or funding in the period has a row of zeros
        keys = {row[:5] for row in grouped}
        grouped += [(*key, 0, *[D(0)] * 6) for key in unrealized if key not in keys]
        result = []
        for row in grouped:
            values = unrealized.get(row[:5], [])
            if not present or ("day" in dims and row[3] != today) or None in values:
                result.append((*row, None))
            else:
                result.append((*row, sum(values, D(0))))
        return sorted(result, key=lambda row: tuple((value is None, str(value)) for value in row[:5]))


def _key(dims: set[str], name: str, exchange: str, symbol: str, day: Any, quote: str) -> tuple[Any, ...]:
    return (
        name if "strategy" in dims else None,
        exchange if dims & {"exchange", "instrument"} else None,
        symbol if "instrument" in dims else None,
        day if "day" in dims else None,
        quote,
    )


def _grouped(
    facts: list[tuple[Any, ...]], since: datetime | None, until: datetime | None, dims: set[str]
) -> list[tuple[Any, ...]]:
    groups: dict[tuple[Any, ...], list[D]] = defaultdict(lambda: [D(0)] * 7)
    for name, exchange, symbol, at, quote, qty, price, mult, fee, gross, funding, count in facts:
        if (since is not None and at < since) or (until is not None and at >= until):
            continue
        key = _key(dims, name, exchange, symbol, at.astimezone(UTC).date(), quote)
        sums = groups[key]
        for index, value in enumerate((count, qty, qty * price * mult, fee, gross, funding)):
            sums[index] += value
    return [
        (*key, int(count), volume, notional, fees, gross, funding, gross - fees + funding)
        for key, (count, volume, notional, fees, gross, funding, _) in groups.items()
    ]


def summary(
    conn: psycopg.Connection, since: datetime | None, until: datetime | None, group_by: str
) -> list[tuple[Any, ...]]:
    found = [
        tuple(row.values())
        for row in rows(conn, "trading.pnl_summary", since=since, until=until, group_by=group_by)
    ]
    return sorted(found, key=lambda row: tuple((value is None, str(value)) for value in row[:5]))


_ids = iter(range(1, 10**9))

# one operation: (kind, strategy, market, side, lots, ticks, minutes after BASE, fee kind, fee size)
operations = st.lists(
    st.tuples(
        st.sampled_from(["fill", "fill", "fill", "late", "funding", "multiplier", "quote"]),
        st.sampled_from(["alpha", "beta"]),
        st.sampled_from(sorted(MARKETS)),
        st.sampled_from(["buy", "sell"]),
        st.integers(1, 5),
        st.integers(1, 50),
        st.integers(0, 4 * 24 * 60 - 1),
        st.sampled_from(["none", "quote", "base", "third", "rebate", "market"]),
        st.integers(1, 9),
    ),
    min_size=1,
    max_size=10,
)
bounds = st.one_of(
    st.none(),
    st.integers(-60, 4 * 24 * 60 + 60).map(lambda minutes: BASE + timedelta(minutes=minutes)),
    st.integers(-3600, 4 * 24 * 3600).map(lambda seconds: BASE + timedelta(seconds=seconds, microseconds=7)),
    st.integers(-1, 4 * 24).map(lambda hours: BASE + timedelta(hours=hours)),
)


def run_operations(conn: psycopg.Connection, ops: list[tuple[Any, ...]]) -> None:
    for index, (kind, strategy, market, side, lots, ticks, minutes, fee_kind, fee_size) in enumerate(ops):
        exchange, symbol = market
        lot, tick, base, quote = MARKETS[market]
        # some exactly on a minute, hour or day boundary
        at = BASE + timedelta(
            minutes=minutes if fee_size > 3 else minutes // 60 * 60, seconds=7 if fee_size > 6 else 0
        )
        if kind == "funding":
            amount = D(fee_size - 5) / 4
            paid_at = at + timedelta(microseconds=index)
            call(conn, "trading.record_funding", strategy=strategy, amount=amount, paid_at=paid_at, **SWAP)
            continue
        quantity, price = lots * lot, ticks * tick
        if kind == "multiplier":
            multiplier = ("0.01", "0.1", "1", "0.5")[fee_size % 4]
            conn.execute(
                "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
                " quote_asset => 'USDT', market_type => 'perpetual', tick_size => 0.1, lot_size => 1,"
                " multiplier => %s)",
                [D(multiplier)],
            )
            continue
        if kind == "quote":
            quote_row(
                conn,
                datetime.now(UTC) - timedelta(minutes=minutes),
                str(price),
                str(price + tick * fee_size),
                exchange=exchange,
                symbol=symbol,
            )
            continue
        fee_args: dict[str, Any] = {}
        if fee_kind == "quote":
            fee_args = {"fee": D(fee_size) / 100, "fee_currency": quote}
        elif fee_kind == "rebate":
            fee_args = {"fee": -D(fee_size) / 1000, "fee_currency": quote}
        elif fee_kind == "base":
            fee_args = {"fee": quantity * fee_size / 1000, "fee_currency": base}
        elif fee_kind == "third":
            fee_args = {"fee": D(fee_size) / 10, "fee_currency": "BNB", "fee_quote": D(fee_size) / 8}
        elif fee_kind == "market":
            # valued at the market price of BNB (a BNBUSDT fill or quote) or of USDT in BTC (1 / BTCUSDT)
            fee_args = {"fee": D(fee_size) / 10, "fee_currency": "USDT" if quote == "BTC" else "BNB"}
        size = quantity * 2 if kind == "late" else quantity
        order_id = place(
            conn, side, str(size), str(price), strategy=strategy, exchange=exchange, symbol=symbol
        )
        if kind == "late":
            fill(
                conn,
                order_id,
                str(quantity),
                str(price),
                executed_at=at,
                **{k: v for k, v in fee_args.items() if fee_kind != "market"},
            )
            call(conn, "trading.cancel_order", order_id=order_id, reason="hunt")
            # the late fill is executed an hour to a day before the first
            at = at - timedelta(minutes=(ticks * 37) % (24 * 60) + 1)
        conn.execute("savepoint fill")
        try:
            fill(conn, order_id, str(quantity), str(price), executed_at=at, **fee_args)
        except psycopg.Error as error:
            # a fee with no market price to value it (the test does not model the price)
            assert fee_kind == "market" and error.sqlstate == "22S08", error
            conn.execute("rollback to savepoint fill")
        else:
            conn.execute("release savepoint fill")


@settings(
    max_examples=30,
    deadline=None,
    # why derandomize: the same examples on every run, so CI never fails on a case a run before passed
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=operations,
    ranges=st.lists(st.tuples(bounds, bounds), min_size=1, max_size=4),
    zone=st.sampled_from(["UTC", "Asia/Kathmandu", "America/St_Johns", "Australia/Sydney"]),
    data=st.data(),
)
def test_pnl_summary_equals_the_sums_of_the_trades_and_funding_for_any_period_and_grouping(
    seeded: psycopg.Connection, ops: list[tuple[Any, ...]], ranges: list[Any], zone: str, data: st.DataObject
) -> None:
    seeded.execute("begin")
    try:
        seeded.execute(sql.SQL("set local timezone = {}").format(sql.Literal(zone)))
        list_binance_eth_btc(seeded)
        run_operations(seeded, ops)
        for since, until in ranges:
            if since is not None and until is not None and since > until:
                since, until = until, since
            chosen = data.draw(st.sets(st.sampled_from(DIMS)), label="group_by")
            group_by = ",".join(sorted(chosen)) or "total"
            assert summary(seeded, since, until, group_by) == expected_summary(
                seeded, since, until, group_by
            ), (
                since,
                until,
                group_by,
            )
        assert rows(seeded, "ops.check_invariants") == []
    finally:
        seeded.execute("rollback")


def _round12(value: D) -> D:
    return round_half_up(value, 12)


def latest_marks(conn: psycopg.Connection) -> dict[str, D]:
    """Each instrument's mark: the mid of its newest quote with both sides, else its latest fill."""
    marks: dict[str, D] = {}
    for symbol, price in conn.execute(
        "select distinct on (t.instrument_id) i.symbol, t.price from trading.trades t"
        " join ref.instruments i using (instrument_id) order by t.instrument_id, t.executed_at desc, t.trade_id desc"
    ).fetchall():
        marks[symbol] = price
    for symbol, bid, bid_size, ask, ask_size in conn.execute(
        "select distinct on (q.instrument_id) i.symbol, q.bid, q.bid_size, q.ask, q.ask_size from market.quotes q"
        " join ref.instruments i using (instrument_id) order by q.instrument_id, q.quoted_at desc"
    ).fetchall():
        if bid_size > 0 and ask_size > 0:
            marks[symbol] = conn.execute("select (%s::numeric + %s::numeric) / 2", [bid, ask]).fetchone()[0]
    return marks


def expected_snapshot(conn: psycopg.Connection, asset: str = "USDT") -> dict[str | None, tuple[D, ...]] | str:
    """Each strategy's (realized, unrealized, gross, net exposure, open positions) in asset (USDT or
    BTC), and the total's (key None), from the positions and their marks; the symbol of the first
    position that cannot be valued in asset instead, if any."""
    marks = latest_marks(conn)
    # BTC in USDT: binance's spot pair first, else the perpetual
    btc = marks.get("BTCUSDT", marks.get("BTC-USDT-SWAP"))
    if asset == "USDT":
        rates = {"USDT": D(1), "BTC": btc}
    else:
        inverse = None if btc is None else conn.execute("select 1 / %s::numeric", [btc]).fetchone()[0]
        rates = {"BTC": D(1), "USDT": inverse}
    totals: dict[str | None, list[D]] = {}
    with localcontext(EXACT):
        for name in ("alpha", "beta"):
            totals[name] = [D(0)] * 5
        for name, symbol, quote, quantity, entry, realized, multiplier in conn.execute(
            "select s.name, i.symbol, p.quote_asset, p.quantity, p.avg_entry_price, p.realized_pnl, i.multiplier"
            " from trading.positions p join trading.strategies s using (strategy_id)"
            " join ref.instruments i using (instrument_id) order by s.name, i.symbol"
        ).fetchall():
            if quantity == 0 and realized == 0 and quote != asset:
                continue
            rate = rates.get(quote)
            if rate is None:
                return symbol

            def value(amount: D, rate: D = rate) -> D:
                return amount if rate == 1 else _round12(amount * rate)

            mark = marks.get(symbol, entry)
            sums = totals[name]
            sums[0] += value(realized)
            if quantity != 0:
                sums[1] += value(_round12(quantity * multiplier * (mark - entry)))
                sums[4] += 1
                sums[2] += value(abs(quantity) * mark * multiplier)
                sums[3] += value(quantity * mark * multiplier)
        totals[None] = [sum((totals[name][index] for name in ("alpha", "beta")), D(0)) for index in range(5)]
    return {key: tuple(values) for key, values in totals.items()}


def check_unrealized(conn: psycopg.Connection) -> None:
    """get_position and position_summary at the market mark, and get_position at a mark given, equal
    quantity x multiplier x (mark - entry) rounded to 12 decimals."""
    marks = latest_marks(conn)
    for name, exchange, symbol, quantity, entry, multiplier in conn.execute(
        "select s.name, e.code, i.symbol, p.quantity, p.avg_entry_price, i.multiplier from trading.positions p"
        " join trading.strategies s using (strategy_id) join ref.instruments i using (instrument_id)"
        " join ref.exchanges e using (exchange_id)"
    ).fetchall():
        expected = D(0)
        for given_mark in (D("12345.678"), None):
            mark = given_mark or marks.get(symbol)
            with localcontext(EXACT):
                expected = D(0) if quantity == 0 else _round12(quantity * multiplier * (mark - entry))
            found = rows(
                conn,
                "trading.get_position",
                strategy=name,
                exchange=exchange,
                symbol=symbol,
                mark_price=given_mark,
            )
            assert (found[0]["unrealized_pnl"], found[0]["mark"]) == (expected, mark), (
                name,
                symbol,
                given_mark,
            )
        shown = conn.execute(
            "select unrealized_pnl, mark_price from trading.position_summary"
            " where strategy = %s and exchange = %s and symbol = %s",
            [name, exchange, symbol],
        ).fetchone()
        assert shown == (expected, marks.get(symbol)), (name, symbol)


def check_snapshot(conn: psycopg.Connection, asset: str = "USDT") -> None:
    expected = expected_snapshot(conn, asset)
    conn.execute("savepoint snap")
    try:
        taken = rows(
            conn, "trading.take_portfolio_snapshot", taken_at=datetime.now(UTC), valuation_asset=asset
        )
    except psycopg.Error as error:
        assert isinstance(expected, str) and error.sqlstate == "22S23", (expected, error)
        event(f"snapshot in {asset}: unpriced")
        conn.execute("rollback to savepoint snap")
        return
    assert not isinstance(expected, str), f"a snapshot with {expected} unpriced was taken"
    names = dict(conn.execute("select strategy_id, name from trading.strategies").fetchall())
    found = {
        names.get(row["strategy_id"]): (
            row["realized_pnl"],
            row["unrealized_pnl"],
            row["gross_exposure"],
            row["net_exposure"],
            D(row["open_positions"]),
        )
        for row in taken
    }
    assert found == expected
    event(f"snapshot in {asset}: taken")
    conn.execute("rollback to savepoint snap")


@settings(
    max_examples=30,
    deadline=None,
    # why derandomize: the same examples on every run, so CI never fails on a case a run before passed
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_a_portfolio_snapshot_equals_the_positions_marked_at_their_latest_fills(
    seeded: psycopg.Connection, ops: list[tuple[Any, ...]]
) -> None:
    seeded.execute("begin")
    try:
        list_binance_eth_btc(seeded)
        run_operations(seeded, ops)
        check_snapshot(seeded, "USDT")
        check_snapshot(seeded, "BTC")
        check_unrealized(seeded)
        assert rows(seeded, "ops.check_invariants") == []
    finally:
        seeded.execute("rollback")
