"""Concurrent fills and funding on shared positions: no lost update, no deadlock, sums agree."""

import random
import threading
from datetime import timedelta
from decimal import Decimal as D

import psycopg

from market_helpers import RECENT_NOON
from trading_helpers import call, place, trade, waits_for_a_lock

ROLLUPS = [
    (
        "trading.daily_pnl",
        "day",
        "(executed_at at time zone 'UTC')::date",
        "(paid_at at time zone 'UTC')::date",
    ),
    (
        "trading.hourly_pnl",
        "hour",
        "date_trunc('hour', executed_at, 'UTC')",
        "date_trunc('hour', paid_at, 'UTC')",
    ),
]
# rows where a rollup differs from the sums of trades and funding of its bucket (test-owned SQL text)
ROLLUP_CHECK = """
with facts as (
    select strategy_id, {of_trade} as bucket, instrument_id, count(*) as trades, sum(quantity) as volume,
           sum(fee_quote) as fees, sum(realized_pnl_gross) as gross, 0 as funding
    from trading.trades group by 1, 2, 3
    union all
    select strategy_id, {of_funding}, instrument_id, 0, 0, 0, 0, sum(amount)
    from trading.funding_payments group by 1, 2, 3
), expected as (
    select strategy_id, bucket as {bucket}, instrument_id, sum(trades) trades, sum(volume) volume, sum(fees) fees,
           sum(gross) gross, sum(funding) funding
    from facts group by 1, 2, 3
)
select * from expected e full join {rollup} r using (strategy_id, {bucket}, instrument_id)
where (e.trades, e.volume, e.fees, e.gross, e.funding)
      is distinct from (r.trades, r.volume, r.fees, r.realized_pnl_gross, r.funding)
"""
WORKERS = 6
FILLS_PER_WORKER = 40
FOLD = """
with recursive ordered as (
    select t.*, row_number() over (partition by t.strategy_id, t.instrument_id order by t.trade_id) as n
    from trading.trades t
), fold as (
    select o.strategy_id, o.instrument_id, o.n, s.quantity, s.avg_entry_price, s.realized_pnl_gross
    from ordered o
    cross join lateral trading.position_after_fill(0, null, o.position_delta, o.price, o.multiplier) s
    where o.n = 1
    union all
    select o.strategy_id, o.instrument_id, o.n, s.quantity, s.avg_entry_price,
           f.realized_pnl_gross + s.realized_pnl_gross
    from fold f
    join ordered o on o.strategy_id = f.strategy_id and o.instrument_id = f.instrument_id and o.n = f.n + 1
    cross join lateral trading.position_after_fill(f.quantity, f.avg_entry_price, o.position_delta, o.price, o.multiplier) s
)
select distinct on (strategy_id, instrument_id) strategy_id, instrument_id, quantity, avg_entry_price,
       realized_pnl_gross
from fold order by strategy_id, instrument_id, n desc
"""


def worker(url, seed, orders, failures):
    rng = random.Random(seed)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(FILLS_PER_WORKER):
                order_id = rng.choice(orders)
                price = D(rng.randrange(9000, 11000)) / 100
                call(
                    conn,
                    "trading.record_fill",
                    order_id=order_id,
                    exchange_trade_id=f"w{seed}-{i}",
                    quantity=D("0.01"),
                    price=price,
                    fee=D("0.001"),
                )
                if i % 10 == 0:
                    call(
                        conn,
                        "trading.record_funding",
                        strategy="alpha",
                        exchange="okx",
                        symbol="BTC-USDT-SWAP",
                        amount=D("0.5"),
                        paid_at=RECENT_NOON - timedelta(days=seed, hours=i // 10),
                    )
    except Exception as exc:  # collected and asserted on by the test
        failures.append(exc)


def test_concurrent_fills_on_shared_positions_lose_nothing(seeded, seeded_url):
    orders = [
        call(
            seeded,
            "trading.place_order",
            strategy=strategy,
            exchange=exchange,
            symbol=symbol,
            side=side,
            quantity=D("10"),
            price=D("100"),
        )
        for strategy in ("alpha", "beta")
        for exchange, symbol in (("binance", "BTCUSDT"), ("okx", "BTC-USDT-SWAP"))
        for side in ("buy", "sell")
    ]
    failures: list[Exception] = []
    threads = [
        threading.Thread(target=worker, args=(seeded_url, n, orders, failures)) for n in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []

    assert seeded.execute("select count(*) from trading.trades").fetchone()[0] == WORKERS * FILLS_PER_WORKER
    # each order's filled quantity equals the sum of its trades
    assert (
        seeded.execute("""
        select o.order_id from trading.orders o
        left join (select order_id, sum(quantity) q from trading.trades group by 1) t using (order_id)
        where o.filled_quantity <> coalesce(t.q, 0)""").fetchall()
        == []
    )
    # each position equals the fold of its trades, in recording order, and its funding and fees the sums
    folded = {(r[0], r[1]): r[2:] for r in seeded.execute(FOLD)}
    stored = {
        (r[0], r[1]): r[2:]
        for r in seeded.execute(
            "select strategy_id, instrument_id, quantity, avg_entry_price, realized_pnl_gross from trading.positions "
            "where trade_count > 0"
        )
    }
    assert stored == folded
    assert (
        seeded.execute("""
        select p.strategy_id from trading.positions p
        left join (select strategy_id, instrument_id, sum(amount) a from trading.funding_payments group by 1, 2) f
            using (strategy_id, instrument_id)
        where p.funding <> coalesce(f.a, 0)
           or p.fees_paid <> (select coalesce(sum(fee_quote), 0) from trading.trades t
                              where t.strategy_id = p.strategy_id and t.instrument_id = p.instrument_id)""").fetchall()
        == []
    )
    # the hourly and daily rollups equal the trades and funding
    for rollup, bucket, of_trade, of_funding in ROLLUPS:
        assert (
            seeded.execute(
                ROLLUP_CHECK.format(rollup=rollup, bucket=bucket, of_trade=of_trade, of_funding=of_funding)
            ).fetchall()
            == []
        ), rollup


SWAP_MULTIPLIER_0_02 = (
    "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
    " quote_asset => 'USDT', market_type => 'perpetual', tick_size => 0.1, lot_size => 1,"
    " min_notional => 0, multiplier => 0.02)"
)


SWAP_TICK_1 = (
    "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
    " quote_asset => 'USDT', market_type => 'perpetual', tick_size => 1, lot_size => 1,"
    " min_notional => 0, multiplier => 0.01)"
)


def _race_a_multiplier_change(
    seeded, seeded_url, function: str, change: str = SWAP_MULTIPLIER_0_02, **kwargs
) -> tuple[bool, list[Exception]]:
    """Call function while another transaction has changed the swap (its multiplier to 0.02 unless
    change says otherwise) and not yet committed; commit the change once the call waits for it.
    Whether it waited, and what it raised."""
    failures: list[Exception] = []

    def racer(conn: psycopg.Connection) -> None:
        try:
            call(conn, function, **kwargs)
        except Exception as exc:  # asserted on by the test
            failures.append(exc)

    with psycopg.connect(seeded_url) as changer, psycopg.connect(seeded_url, autocommit=True) as caller:
        changer.execute(change)  # not committed yet
        thread = threading.Thread(target=racer, args=(caller,))
        thread.start()
        waited = waits_for_a_lock(seeded, caller.info.backend_pid)
        changer.commit()
        thread.join(timeout=30)
    return waited, failures


def test_a_first_fill_racing_a_multiplier_change_opens_its_position_at_the_new_multiplier(seeded, seeded_url):
    order_id = call(
        seeded,
        "trading.place_order",
        strategy="alpha",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        side="buy",
        quantity=D("10"),
        price=D("60000"),
    )
    waited, failures = _race_a_multiplier_change(
        seeded,
        seeded_url,
        "trading.record_fill",
        order_id=order_id,
        exchange_trade_id="race-1",
        quantity=D("10"),
        price=D("60000"),
    )
    assert (waited, failures) == (True, [])
    assert seeded.execute("select quantity, multiplier from trading.positions").fetchall() == [
        (D("10"), D("0.02"))
    ]


def test_a_closing_fill_racing_a_multiplier_change_realizes_pnl_at_the_new_multiplier(seeded, seeded_url):
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    order_id = place(seeded, "sell", "10", "61000", exchange="okx", symbol="BTC-USDT-SWAP")
    waited, failures = _race_a_multiplier_change(
        seeded,
        seeded_url,
        "trading.record_fill",
        order_id=order_id,
        exchange_trade_id="race-2",
        quantity=D("10"),
        price=D("61000"),
    )
    assert (waited, failures) == (True, [])
    # 1,000 a contract on 10 contracts of 0.02 BTC (at the old 0.01 it would read 100)
    assert seeded.execute(
        "select p.quantity, p.realized_pnl_gross, t.realized_pnl_gross from trading.positions p"
        " join trading.trades t using (strategy_id, instrument_id) where t.exchange_trade_id = 'race-2'"
    ).fetchall() == [(D("0"), D("200"), D("200"))]


def test_a_first_funding_racing_a_multiplier_change_opens_its_position_at_the_new_multiplier(
    seeded, seeded_url
):
    waited, failures = _race_a_multiplier_change(
        seeded,
        seeded_url,
        "trading.record_funding",
        strategy="alpha",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        amount=D("1.5"),
        paid_at=RECENT_NOON,
    )
    assert (waited, failures) == (True, [])
    assert seeded.execute("select funding, multiplier from trading.positions").fetchall() == [
        (D("1.5"), D("0.02"))
    ]


def test_a_placement_racing_a_tick_size_change_is_checked_against_the_new_tick(seeded, seeded_url):
    waited, failures = _race_a_multiplier_change(
        seeded,
        seeded_url,
        "trading.place_order",
        change=SWAP_TICK_1,
        strategy="alpha",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        side="buy",
        quantity=D("10"),
        price=D("60000.5"),  # a multiple of the old tick 0.1, not of the new 1
    )
    assert waited
    assert [(f.sqlstate, f.diag.message_primary) for f in failures] == [
        ("22S03", "price 60000.5 is not a multiple of the tick size 1 of BTC-USDT-SWAP")
    ]
    assert seeded.execute("select count(*) from trading.orders").fetchone() == (0,)
