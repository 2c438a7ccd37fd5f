"""Rules of portfolio snapshots, the PnL rollups a fill or a funding payment writes, funding
payments and the trading views that a plausible slip in their SQL broke without any other test
noticing: each test here kills one such mutant of the second mutation run of
35_trading_portfolio.sql, 22_trading_rollups.sql, 32_trading_funding.sql and 50_trading_views.sql
(after test_pnl_mutants.py and test_fill_mutants.py, whose holes are not repeated here).

The run: 48 mutants weighted to money (a sign, a multiplier, a fee or funding term dropped, a
period boundary off by one, a snapshot total that is not the sum of its strategies, a closed
position counted as open): 35 caught by the existing tests, 2 equivalent, 1 left open and 10
holes, killed by the 8 tests below.
Equivalent: add_to_rollups adding abs(volume) (every volume it is given is a fill's positive
quantity, or 0 for a funding payment or a fee set later); record_funding's insert with a bare ON
CONFLICT DO NOTHING (funding_payments' only other unique key is its always-generated identity).
Left open: record_funding dropping its FOR UPDATE of the position (it orders its locks as
record_fill does so that the two never deadlock; only a timed race of both would show it).
The view mutants after the first (whose dropped multiplier test_money_consistency_hunt.py
catches) were run, for time, against test_pnl_mutants.py, test_managers.py,
test_managers_edges.py and test_health_mutants.py only: test_money_consistency_hunt.py, which
compares position_summary's unrealized PnL with its own, may catch the abs(quantity) one too.

Holes, and the test that kills each:
- 35: the rate converting a position's quote asset marked as the session sees the market, not
  as the strategy's owner does (another trader's fill priced it):
  test_a_snapshot_converts_a_traders_position_at_the_rate_their_own_fills_give_not_anothers
- 35: the check for a snapshot already taken at taken_at dropped (the insert's conflict then
  refused it as a race, with the detail "Another session took it"):
  test_a_second_snapshot_at_the_same_time_is_refused_before_it_is_computed_not_as_a_race
- 35: the test that the total row was written dropped (a race with a snapshot that missed a new
  strategy committed that strategy's row alone, a snapshot without a total):
  test_a_snapshot_raced_by_one_taken_before_a_new_strategy_writes_not_that_strategys_row_alone
- 32: another amount at a recorded paid_at returning the recorded payment's id instead of 23S06
  (a corrected amount silently dropped):
  test_another_amount_at_a_recorded_funding_time_is_a_conflicting_duplicate_and_changes_nothing
- 32: the position's updated_at left as it was by a funding payment:
  test_a_funding_payment_is_the_positions_latest_update
- 50: open_positions listing closed positions, and position_summary's unrealized PnL of
  abs(quantity) (a short's sign lost):
  test_open_positions_lists_a_short_perpetual_at_its_contract_value_and_no_closed_position
- 50: position_summary's realized PnL recomputed without funding, and with funding counted twice:
  test_position_summary_shows_a_realized_pnl_with_its_funding_counted_once
- 50: position_summary's unrealized PnL rounded to 8 decimals:
  test_position_summary_rounds_an_unrealized_pnl_to_12_decimals

Every expected value is worked out by hand in its comment."""

import threading
from datetime import timedelta
from decimal import Decimal as D

import psycopg
import pytest

from auth_helpers import acting_as
from market_helpers import RECENT_NOON, quote
from trading_helpers import call, list_binance_eth_btc, rows, trade, waits_for_a_lock

# a recent UTC day, so its monthly trades partition exists
DAY = RECENT_NOON.date() - timedelta(days=5)
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}


def snapshot(conn: psycopg.Connection, **arguments: object) -> dict[str | None, dict]:
    """The rows of a snapshot taken now, by strategy name (None: the total row)."""
    names = dict(conn.execute("select strategy_id, name from trading.strategies").fetchall())
    return {
        names.get(r["strategy_id"]): r for r in rows(conn, "trading.take_portfolio_snapshot", **arguments)
    }


def funding(conn: psycopg.Connection, amount: str, paid_at: object, strategy: str = "alpha") -> int:
    return call(conn, "trading.record_funding", strategy=strategy, amount=D(amount), paid_at=paid_at, **SWAP)


# -- portfolio snapshots ----------------------------------------------------------------------------


def test_a_snapshot_converts_a_traders_position_at_the_rate_their_own_fills_give_not_anothers(desks, auth_db):
    list_binance_eth_btc(auth_db)
    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        # alice holds 1 ETH bought at 0.05 BTC, and priced BTC herself: 0.0001 BTC at 50000
        trade(auth_db, "buy", "1", "0.05", strategy="alice-arb", symbol="ETHBTC")
        trade(auth_db, "buy", "0.0001", "50000", strategy="alice-arb")
    with acting_as(auth_db, "spreadedge_app", desks["bob"]):
        # bob's later BTCUSDT fill at 60000 is no price alice may see
        trade(auth_db, "buy", "0.0001", "60000", strategy="bob-arb")
    # taken unscoped (the engine, pg_cron). alice's rate for BTC in USDT is her own 50000: the ETH
    # is 1 x 0.05 x 50000 = 2500 USDT, her BTC 0.0001 x 50000 = 5, gross 2505 (at bob's 60000 the
    # ETH would be 3000)
    row = snapshot(auth_db)["alice-arb"]
    assert (row["gross_exposure"], row["net_exposure"], row["unrealized_pnl"]) == (
        D("2505"),
        D("2505"),
        D("0"),
    )


def test_a_second_snapshot_at_the_same_time_is_refused_before_it_is_computed_not_as_a_race(seeded):
    taken_at = seeded.execute("select date_trunc('second', clock_timestamp())").fetchone()[0]
    rows(seeded, "trading.take_portfolio_snapshot", taken_at=taken_at)
    # the snapshot already there is seen before anything is computed: no session took it
    # "meanwhile", so the error carries no such detail
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        rows(seeded, "trading.take_portfolio_snapshot", taken_at=taken_at)
    assert (caught.value.sqlstate, caught.value.diag.message_detail) == ("23S06", None)


def test_a_snapshot_raced_by_one_taken_before_a_new_strategy_writes_not_that_strategys_row_alone(
    seeded, seeded_url
):
    taken_at = seeded.execute("select date_trunc('second', clock_timestamp())").fetchone()[0]
    failures: list[psycopg.Error] = []

    def racer(conn: psycopg.Connection) -> None:
        try:
            rows(conn, "trading.take_portfolio_snapshot", taken_at=taken_at)
        except psycopg.Error as exc:  # asserted on below
            failures.append(exc)

    with psycopg.connect(seeded_url) as first, psycopg.connect(seeded_url, autocommit=True) as second:
        rows(first, "trading.take_portfolio_snapshot", taken_at=taken_at)  # alpha, beta, total: not committed
        call(seeded, "trading.create_strategy", name="gamma", capital=D("500"))  # after the first one
        thread = threading.Thread(target=racer, args=(second,))
        thread.start()
        waited = waits_for_a_lock(seeded, second.info.backend_pid)
        first.commit()
        thread.join(timeout=30)
    assert waited
    # the second snapshot's alpha, beta and total rows conflict with the first's; its gamma row
    # alone would be a snapshot without a total: it is refused whole
    assert [e.sqlstate for e in failures] == ["23S06"]
    assert seeded.execute(
        "select count(*), count(strategy_id) from trading.portfolio_snapshots where taken_at = %s", [taken_at]
    ).fetchone() == (3, 2)


# -- trading.record_funding ---------------------------------------------------------------------------


def test_another_amount_at_a_recorded_funding_time_is_a_conflicting_duplicate_and_changes_nothing(seeded):
    first = funding(seeded, "-3", f"{DAY} 08:00:00+00")
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        funding(seeded, "-5", f"{DAY} 08:00:00+00")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S06",
        f"funding at {DAY} 08:00:00+00 for BTC-USDT-SWAP on okx is already recorded as -3 (got -5)",
    )
    # the payment of 08:00 is still the one of -3, and the position's funding -3
    assert seeded.execute("select funding_id, amount from trading.funding_payments").fetchall() == [
        (first, D("-3"))
    ]
    assert rows(seeded, "trading.get_position", strategy="alpha", **SWAP)[0]["funding"] == D("-3")


def test_a_funding_payment_is_the_positions_latest_update(seeded):
    trade(seeded, "buy", "10", "60000", **SWAP)
    with seeded.transaction():
        funding(seeded, "-1", f"{DAY} 08:00:00+00")
        paid = seeded.execute("select now()").fetchone()[0]
    [updated] = seeded.execute("select updated_at from trading.positions").fetchone()
    assert updated == paid


# -- the trading views ------------------------------------------------------------------------------


def open_positions(conn: psycopg.Connection) -> list[tuple]:
    """(strategy, symbol, quantity, unrealized_pnl, realized_pnl) of trading.open_positions."""
    return conn.execute(
        "select strategy, symbol, quantity, unrealized_pnl, realized_pnl from trading.open_positions"
        " order by strategy, symbol"
    ).fetchall()


def test_open_positions_lists_a_short_perpetual_at_its_contract_value_and_no_closed_position(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "sell", "1", "110")  # closed
    trade(seeded, "sell", "10", "60000", **SWAP)
    quote(seeded, RECENT_NOON, "60090", "60110", **SWAP)
    # short 10 contracts of 0.01 BTC at 60000, marked at the mid 60100: -10 x 0.01 x 100 = -10;
    # the closed BTCUSDT position (realized 10) is not open
    assert open_positions(seeded) == [("alpha", "BTC-USDT-SWAP", D("-10"), D("-10"), D("0"))]


def test_position_summary_shows_a_realized_pnl_with_its_funding_counted_once(seeded):
    trade(seeded, "buy", "10", "60000", fee=D("0.5"), **SWAP)
    funding(seeded, "-1", f"{DAY} 08:00:00+00")
    # realized: gross 0, less the fee 0.5, plus funding -1: -1.5
    assert seeded.execute(
        "select funding, fees_paid, realized_pnl from trading.position_summary where symbol = 'BTC-USDT-SWAP'"
    ).fetchone() == (D("-1"), D("0.5"), D("-1.5"))


def test_position_summary_rounds_an_unrealized_pnl_to_12_decimals(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "buy", "2", "100.01")
    trade(seeded, "sell", "1", "100.01")
    quote(seeded, RECENT_NOON, "109", "111")
    # entry (100 + 2 x 100.01) / 3 = 100.006666666666666667, long 2 after the sell, marked at the
    # mid 110: 2 x 9.993333333333333333 = 19.986666666666666666, to 12 decimals 19.986666666667
    # (to 8, 19.98666667), as trading.get_position shows it
    row = seeded.execute(
        "select unrealized_pnl from trading.position_summary where symbol = 'BTCUSDT'"
    ).fetchone()
    assert row == (D("19.986666666667"),)
