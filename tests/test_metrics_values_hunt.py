"""What monitor.collect_metrics records, value by value, against an independent computation of a
known state: orders in every status, positions open, flat and flipped in three quote assets and
on a perpetual, fills this hour, earlier today and yesterday (UTC), funding, quotes, risk events."""

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg

from market_helpers import quote
from ops_helpers import cli
from trading_helpers import call, fill, list_binance_eth_btc, list_perpetual, place, trade

# why 11 hours back: AT (10:30 of TODAY) must be past, or its quote, in the future, is no mark
# (market.latest_prices ignores quotes more than a minute ahead): run between 00:00 and 10:30 UTC,
# the known state is yesterday's
TODAY = (datetime.now(UTC) - timedelta(hours=11)).replace(hour=0, minute=0, second=0, microsecond=0)
HOUR = TODAY + timedelta(hours=10)
AT = HOUR + timedelta(minutes=30)
US = timedelta(microseconds=1)

Series = dict[tuple[str, tuple[tuple[str, str], ...]], D]


def collected(conn: psycopg.Connection, at: datetime = AT) -> Series:
    """Every value recorded at ``at``, keyed by name and sorted labels."""
    return {
        (name, tuple(sorted(labels.items()))): value
        for name, labels, value in conn.execute(
            "select name, labels, value from monitor.metrics where recorded_at = %s", [at]
        )
    }


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


SYSTEM_PREFIXES = (
    "db.",
    "alerts.",
    "notifications.",
    "replication.",
    "cron.",
    "backup.",
    "partitions.",
    "wal.",
)


def trading_part(series: Series) -> Series:
    return {k: v for k, v in series.items() if not k[0].startswith(SYSTEM_PREFIXES)}


def build_known_state(conn: psycopg.Connection) -> None:
    """The state the expected values below are computed from (times relative to HOUR, 10:00 UTC
    of today)."""
    list_binance_eth_btc(conn)
    call(conn, "trading.create_strategy", name="gamma")
    # alpha, BTCUSDT: +1 @ 100 yesterday (placed 25 h before AT: not among the last 24 hours' orders),
    # -0.4 @ 110 at 09:15 (realizes 4), -1 @ 120 at 10:00:00.000000 (realizes 0.6 x 20 = 12 and
    # flips to -0.4 @ 120)
    trade(conn, "buy", "1", "100", placed_at=AT - timedelta(hours=25), executed_at=TODAY - timedelta(hours=12),
          fee=D("1"))  # fmt: skip
    trade(conn, "sell", "0.4", "110", placed_at=TODAY + timedelta(hours=9, minutes=15),
          executed_at=TODAY + timedelta(hours=9, minutes=15), fee=D("0.5"))  # fmt: skip
    trade(conn, "sell", "1", "120", placed_at=HOUR - timedelta(minutes=1), executed_at=HOUR)
    # alpha, the 0.01 BTC perpetual: 10 contracts @ 60000, fee 3, funding +2
    trade(conn, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP",
          placed_at=HOUR + timedelta(minutes=20), executed_at=HOUR + timedelta(minutes=20), fee=D("3"))  # fmt: skip
    call(conn, "trading.record_funding", strategy="alpha", exchange="okx", symbol="BTC-USDT-SWAP",
         amount=D("2"), paid_at=HOUR + timedelta(minutes=25))  # fmt: skip
    # alpha, ETH/BTC: 2 @ 0.05 the last microsecond of yesterday, fee 0.0001 BTC
    trade(conn, "buy", "2", "0.05", symbol="ETHBTC", placed_at=TODAY - US, executed_at=TODAY - US,
          fee=D("0.0001"), fee_currency="BTC")  # fmt: skip
    # alpha's working orders: one new, one open
    place(conn, "buy", "0.1", "90", placed_at=AT - timedelta(minutes=5))
    call(conn, "trading.acknowledge_order", order_id=place(conn, "buy", "0.1", "91",
                                                             placed_at=AT - timedelta(minutes=4)))  # fmt: skip
    # beta, ETHUSD: +1 @ 3000 the last microsecond of 09:00-10:00, +0.25 @ 3000 of an order of 1
    # at 10:08 (partially filled), -0.5 @ 3100 at 10:10, fee 1 (realizes 50 - 1)
    eth = {"strategy": "beta", "exchange": "kraken", "symbol": "ETHUSD"}
    trade(conn, "buy", "1", "3000", placed_at=HOUR - US, executed_at=HOUR - US, **eth)
    partial = place(conn, "buy", "1", "3000", placed_at=HOUR + timedelta(minutes=8), **eth)
    fill(conn, partial, "0.25", "3000", executed_at=HOUR + timedelta(minutes=8))
    trade(conn, "sell", "0.5", "3100", placed_at=HOUR + timedelta(minutes=10),
          executed_at=HOUR + timedelta(minutes=10), fee=D("1"), **eth)  # fmt: skip
    # beta, BTCUSDT: +0.2 @ 100 at 10:05
    trade(conn, "buy", "0.2", "100", strategy="beta", placed_at=HOUR + timedelta(minutes=5),
          executed_at=HOUR + timedelta(minutes=5))  # fmt: skip
    # beta's closed orders: cancelled, rejected, expired
    for closing in ("trading.cancel_order", "trading.reject_order", "trading.expire_order"):
        order_id = place(conn, "buy", "0.1", "95", strategy="beta", placed_at=AT - timedelta(minutes=3))
        call(conn, closing, order_id=order_id, reason="test")
    # BTCUSDT quoted 130 / 132: marked at 131 (the others at their latest fill)
    quote(conn, AT - timedelta(minutes=1), "130", "132")
    # risk events: one in the last hour, one before it
    call(conn, "monitor.set_kill_switch", strategy="gamma", enabled=True)
    call(conn, "monitor.set_kill_switch", strategy="gamma", enabled=False)
    conn.execute(
        "update monitor.risk_events set occurred_at = case when reason like 'kill switch on%%' then %s else %s end",
        [AT - timedelta(minutes=61), AT - timedelta(minutes=59)],
    )


def expected_trading_values() -> Series:
    mark_btcusdt = D("131")
    statuses = {"new": 1, "open": 1, "partially_filled": 1, "filled": 7, "cancelled": 1, "rejected": 1,
                "expired": 1}  # fmt: skip
    want: Series = {key("orders.by_status", status=s): D(n) for s, n in statuses.items()}
    want |= {key("orders.working", strategy="alpha"): D(2), key("orders.working", strategy="beta"): D(1),
             key("orders.working", strategy="gamma"): D(0)}  # fmt: skip
    want |= {key("positions.open", strategy="alpha"): D(3), key("positions.open", strategy="beta"): D(2)}
    amounts = {
        # alpha USDT: BTCUSDT -0.4 @ 120 and 10 contracts x 0.01 @ 60000 (marked at its fill)
        ("alpha", "USDT"): {
            "exposure.gross": D("0.4") * mark_btcusdt + 10 * D("0.01") * 60000,
            "exposure.net": D("-0.4") * mark_btcusdt + 10 * D("0.01") * 60000,
            "pnl.realized": (4 + 12 - D("1.5")) + (-3 + 2),
            "pnl.realized_today": (4 + 12 - D("0.5")) + (-3 + 2),
            "pnl.unrealized": D("-0.4") * (mark_btcusdt - 120),
        },
        ("alpha", "BTC"): {
            "exposure.gross": D("0.1"),
            "exposure.net": D("0.1"),
            "pnl.realized": D("-0.0001"),
            "pnl.realized_today": D(0),
            "pnl.unrealized": D(0),
        },
        # beta USD: +0.75 @ 3000 marked at 3100
        ("beta", "USD"): {
            "exposure.gross": D("0.75") * 3100,
            "exposure.net": D("0.75") * 3100,
            "pnl.realized": D(49),
            "pnl.realized_today": D(49),
            "pnl.unrealized": D("0.75") * 100,
        },
        ("beta", "USDT"): {
            "exposure.gross": D("0.2") * mark_btcusdt,
            "exposure.net": D("0.2") * mark_btcusdt,
            "pnl.realized": D(0),
            "pnl.realized_today": D(0),
            "pnl.unrealized": D("0.2") * (mark_btcusdt - 100),
        },
    }
    for (strategy, asset), values in amounts.items():
        want |= {key(name, strategy=strategy, quote_asset=asset): v for name, v in values.items()}
    want |= {key("trades.count", period="hour"): D(5), key("trades.count", period="day"): D(7)}
    want |= {
        key("trades.volume", period="hour", base_asset="BTC"): 1 + D("0.2") + 10 * D("0.01"),
        key("trades.volume", period="hour", base_asset="ETH"): D("0.25") + D("0.5"),
        key("trades.volume", period="day", base_asset="BTC"): D("0.4") + 1 + D("0.2") + 10 * D("0.01"),
        key("trades.volume", period="day", base_asset="ETH"): 1 + D("0.25") + D("0.5"),
        key("trades.notional", period="hour", quote_asset="USDT"): D(120) + 20 + 6000,
        key("trades.notional", period="hour", quote_asset="USD"): D(750) + 1550,
        key("trades.notional", period="hour", quote_asset="BTC"): D(0),
        key("trades.notional", period="day", quote_asset="USDT"): D(44) + 120 + 20 + 6000,
        key("trades.notional", period="day", quote_asset="USD"): D(3000) + 750 + 1550,
        key("trades.notional", period="day", quote_asset="BTC"): D(0),
    }
    want[key("risk.events")] = D(1)
    return want


def test_every_trading_and_risk_value_of_a_known_state(seeded: psycopg.Connection) -> None:
    build_known_state(seeded)
    call(seeded, "monitor.collect_metrics", collected_at=AT)
    assert trading_part(collected(seeded)) == expected_trading_values()


def test_the_system_values_are_the_statistics_of_the_collecting_transaction(db: psycopg.Connection) -> None:
    with db.transaction():
        call(db, "monitor.collect_metrics", collected_at=AT)
        got = {
            k: v
            for k, v in collected(db).items()
            if k[0].startswith(("db.", "wal.", "alerts.", "notifications."))
        }
        stats = db.execute(
            "select xact_commit, xact_rollback, round(blks_hit::numeric / nullif(blks_hit + blks_read, 0), 6)"
            " from pg_stat_database where datname = current_database()"
        ).fetchone()
        states = dict(
            db.execute(
                "select coalesce(state, 'unknown'), count(*) from pg_stat_activity"
                " where datname = current_database() and backend_type = 'client backend' group by 1"
            ).fetchall()
        )
        size = db.execute("select pg_database_size(current_database())").fetchone()[0]
        clients = db.execute(
            "select count(*) filter (where backend_type = 'client backend'),"
            " current_setting('max_connections')::integer from pg_stat_activity"
        ).fetchone()
    assert got.pop(key("db.commits")) == stats[0]
    assert got.pop(key("db.rollbacks")) == stats[1]
    assert got.pop(key("db.cache_hit_ratio")) == stats[2]
    assert abs(got.pop(key("db.size_bytes")) - size) <= 1024 * 1024
    for state in ("active", "idle", "idle in transaction", "idle in transaction (aborted)",
                  "fastpath function call", "disabled", "unknown"):  # fmt: skip
        assert got.pop(key("db.connections", state=state)) == states.get(state, 0), state
    assert got.pop(key("db.oldest_xact_age")) == 0
    assert got.pop(key("db.slow_queries")) == 0
    # the failures health checks for (migration 0053): none here, and the superuser sees every session
    assert got.pop(key("db.connections_used_ratio")) == round(D(clients[0]) / clients[1], 6)
    for name in ("db.lock_waits", "db.lock_wait_max_seconds", "db.sessions_hidden"):
        assert got.pop(key(name)) == 0, name
    # WAL archiving (migration 0054): archive_mode is off here, nothing archives, nothing fails
    for name in ("wal.archive_failing", "wal.archive_waiting_files", "wal.archive_waiting_seconds"):
        assert got.pop(key(name)) == 0, name
    for severity in ("info", "warning", "critical"):
        assert got.pop(key("alerts.open", severity=severity)) == 0
    assert got == {key("notifications.pending"): 0, key("notifications.dead"): 0}


def test_a_non_utc_session_collects_the_same_values(seeded: psycopg.Connection) -> None:
    build_known_state(seeded)
    seeded.execute("set timezone = 'Pacific/Kiritimati'")
    call(seeded, "monitor.collect_metrics", collected_at=AT)
    assert trading_part(collected(seeded)) == expected_trading_values()


def test_a_fill_at_the_first_microsecond_of_an_hour_counts_in_that_hour(seeded: psycopg.Connection) -> None:
    trade(seeded, "buy", "1", "100", placed_at=HOUR - US, executed_at=HOUR - US)
    trade(seeded, "buy", "2", "100", placed_at=HOUR, executed_at=HOUR)
    call(seeded, "monitor.collect_metrics", collected_at=HOUR)
    got = collected(seeded, HOUR)
    assert [got[key("trades.count", period=p)] for p in ("hour", "day")] == [1, 2]
    assert [got[key("trades.volume", period=p, base_asset="BTC")] for p in ("hour", "day")] == [2, 3]


def test_nothing_traded_reads_zero_for_every_always_recorded_series(seeded: psycopg.Connection) -> None:
    call(seeded, "monitor.collect_metrics", collected_at=AT)
    assert trading_part(collected(seeded)) == {
        **{key("orders.by_status", status=s): D(0)
           for s in ("new", "open", "partially_filled", "filled", "cancelled", "rejected", "expired")},
        key("orders.working", strategy="alpha"): D(0),
        key("orders.working", strategy="beta"): D(0),
        key("trades.count", period="hour"): D(0),
        key("trades.count", period="day"): D(0),
        **{key("trades.notional", period=p, quote_asset=q): D(0) for p in ("hour", "day") for q in ("USD", "USDT")},
        key("risk.events"): D(0),
    }  # fmt: skip


def test_two_collections_in_a_minute_show_the_newer(seeded: psycopg.Connection, db_url: str) -> None:
    now = seeded.execute("select now()").fetchone()[0]
    first, second = now - timedelta(seconds=50), now - timedelta(seconds=10)
    order_id = place(seeded, "buy", "0.1", "90")
    call(seeded, "monitor.collect_metrics", collected_at=first)
    call(seeded, "trading.cancel_order", order_id=order_id)
    call(seeded, "monitor.collect_metrics", collected_at=second)
    result = cli("metrics", "show", "--name", "orders.working", database_url=db_url)
    assert result.exit_code == 0, result.output
    assert [line.split()[:4] for line in result.output.splitlines()[2:4]] == [
        ["orders.working", '{"strategy":', '"alpha"}', "0"],
        ["orders.working", '{"strategy":', '"beta"}', "0"],
    ]


# bug: the volume was the rollups' contracts x the instrument's current multiplier, so 10
# contracts of 0.01 BTC filled before a change of the contract size to 0.1 read as 1 BTC
def test_collected_volume_counts_each_fill_at_the_multiplier_it_was_filled_at(
    seeded: psycopg.Connection,
) -> None:
    swap = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}
    trade(seeded, "buy", "10", "60000", placed_at=HOUR, executed_at=HOUR, **swap)
    list_perpetual(seeded, "okx", "BTC-USDT-SWAP", "0.1")
    trade(seeded, "buy", "5", "60000", placed_at=HOUR, executed_at=HOUR + timedelta(minutes=1), **swap)
    trade(seeded, "buy", "0.5", "60000", placed_at=HOUR, executed_at=HOUR + timedelta(minutes=2))

    call(seeded, "monitor.collect_metrics", collected_at=AT)

    got = collected(seeded)
    want = 10 * D("0.01") + 5 * D("0.1") + D("0.5")
    assert [got[key("trades.volume", period=p, base_asset="BTC")] for p in ("hour", "day")] == [want, want]


# bug: the age was now() (the collecting transaction's start) minus each transaction's start, so
# a transaction begun after the collector's read as -0.3 s
def test_the_oldest_transaction_age_is_measured_at_the_clock_never_negative(db_url: str) -> None:
    with psycopg.connect(db_url) as collector, psycopg.connect(db_url) as other:
        began = collector.execute("select now()").fetchone()[0]
        time.sleep(0.3)
        other_began = other.execute("select now()").fetchone()[0]
        call(collector, "monitor.collect_metrics", collected_at=AT)
        age, clock = collector.execute(
            "select value, clock_timestamp() from monitor.metrics where name = 'db.oldest_xact_age'"
        ).fetchone()
        collector.rollback()
    assert other_began - began >= timedelta(seconds=0.3)
    assert D(0) <= age <= D((clock - other_began).total_seconds()).quantize(D("0.001"))


# bug: with pg_stat_statements.track = all, a statement run at top level and inside a function
# has two entries, and the metric counted one slow statement twice
def test_a_slow_statement_run_at_top_level_and_in_a_function_counts_once(db: psycopg.Connection) -> None:
    db.execute(
        "create function public.slow() returns void language plpgsql as $$ begin perform pg_sleep(1.05); end $$"
    )
    db.execute("select pg_sleep(1.05)")
    db.execute("select public.slow()")

    call(db, "monitor.collect_metrics", collected_at=AT)

    # pg_sleep($1), and public.slow()
    assert collected(db)[key("db.slow_queries")] == 2
