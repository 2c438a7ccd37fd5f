"""Portfolio snapshots: taken now only (within a minute); one snapshot per taken_at, a second one at
the same time is a 23S06 conflict."""

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from trading_helpers import call, counts, position, rows, trade, waits_for_a_lock

HINT = "Take it at another time: within one transaction now() does not move, so pass taken_at => clock_timestamp()."
NOT_NOW_HINT = (
    "Omit taken_at (it defaults to now()): a snapshot records the portfolio as it is, not as it was."
)


def db_now(conn: psycopg.Connection) -> datetime:
    """The database clock, to the second: a taken_at that is now."""
    return conn.execute("select date_trunc('second', clock_timestamp())").fetchone()[0]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_second_default_snapshot_in_one_transaction_is_a_conflicting_duplicate(seeded_url):
    with psycopg.connect(seeded_url) as conn:
        taken_at = rows(conn, "trading.take_portfolio_snapshot")[0]["taken_at"]
        with pytest.raises(psycopg.errors.IntegrityError) as caught:
            rows(conn, "trading.take_portfolio_snapshot")
        conn.rollback()
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_hint) == (
        "23S06",
        f"a portfolio snapshot taken at {_iso(taken_at)} already exists",
        HINT,
    )


def test_a_second_snapshot_at_the_same_explicit_time_is_a_conflicting_duplicate(seeded):
    taken_at = db_now(seeded)
    rows(seeded, "trading.take_portfolio_snapshot", taken_at=taken_at)
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        rows(seeded, "trading.take_portfolio_snapshot", taken_at=taken_at)
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_hint) == (
        "23S06",
        f"a portfolio snapshot taken at {_iso(taken_at)} already exists",
        HINT,
    )


def test_a_snapshot_another_session_takes_at_the_same_time_meanwhile_is_a_conflicting_duplicate(
    seeded, seeded_url
):
    failures: list[Exception] = []
    taken_at = db_now(seeded)

    def racer(conn: psycopg.Connection) -> None:
        try:
            rows(conn, "trading.take_portfolio_snapshot", taken_at=taken_at)
        except Exception as exc:  # asserted on below
            failures.append(exc)

    with psycopg.connect(seeded_url) as first, psycopg.connect(seeded_url, autocommit=True) as second:
        rows(first, "trading.take_portfolio_snapshot", taken_at=taken_at)  # not committed yet
        thread = threading.Thread(target=racer, args=(second,))
        thread.start()
        waited = waits_for_a_lock(seeded, second.info.backend_pid)
        first.commit()
        thread.join(timeout=30)
    assert waited
    assert [(e.sqlstate, e.diag.message_primary, e.diag.message_detail) for e in failures] == [
        (
            "23S06",
            f"a portfolio snapshot taken at {_iso(taken_at)} already exists",
            "Another session took it while this one was computing.",
        )
    ]
    # the first session's snapshot alone: alpha, beta and the total
    assert seeded.execute("select count(*) from trading.portfolio_snapshots").fetchone()[0] == 3


@pytest.mark.parametrize(
    "offset", [timedelta(days=-30), timedelta(minutes=-2), timedelta(minutes=2), timedelta(hours=23)]
)
def test_a_snapshot_taken_at_another_time_than_now_is_refused_and_writes_nothing(seeded, offset):
    # why: the snapshot holds the positions and marks of now; a month ago, this position did not exist
    trade(seeded, "buy", "1", "100")
    taken_at = db_now(seeded) + offset
    before = counts(seeded)
    with pytest.raises(psycopg.errors.DataError) as caught:
        rows(seeded, "trading.take_portfolio_snapshot", taken_at=taken_at)
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_hint) == (
        "22S09",
        f"taken_at must be the time the snapshot is taken (now, within a minute), got {_iso(taken_at)}",
        NOT_NOW_HINT,
    )
    assert caught.value.diag.column_name == "taken_at"
    assert counts(seeded) == before


@pytest.mark.parametrize(
    ("taken_at", "shown"), [(None, "null"), ("infinity", "infinity"), ("-infinity", "-infinity")]
)
def test_a_snapshot_taken_at_no_real_time_is_refused_naming_it(seeded, taken_at, shown):
    with pytest.raises(psycopg.errors.DataError) as caught:
        rows(seeded, "trading.take_portfolio_snapshot", taken_at=taken_at)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"taken_at must be the time the snapshot is taken (now, within a minute), got {shown}",
    )


def test_a_snapshot_taken_at_a_caller_clock_within_a_minute_of_now_is_taken(seeded):
    trade(seeded, "buy", "1", "100")
    taken_at = db_now(seeded) + timedelta(seconds=30)
    snapshot = rows(seeded, "trading.take_portfolio_snapshot", taken_at=taken_at)
    total = next(r for r in snapshot if r["strategy_id"] is None)
    assert (total["taken_at"], total["open_positions"]) == (taken_at, 1)


def test_a_snapshot_s_unrealized_pnl_is_the_positions_unrealized_pnl_to_the_same_decimals(seeded):
    # avg entry (100 + 202 + 0.10001) / 3.001 = 100.666447850716427858 (18 decimals), mark 100.01:
    # 3.001 x (100.01 - avg) is -1.97 to 12 decimals, as trading.get_position shows it
    for quantity, price in [("1", "100"), ("2", "101"), ("0.001", "100.01")]:
        trade(seeded, "buy", quantity, price, exchange="kraken", symbol="ETHUSD")
    alpha_id = call(seeded, "trading.create_strategy", name="alpha")
    snapshot = {
        r["strategy_id"]: r for r in rows(seeded, "trading.take_portfolio_snapshot", valuation_asset="USD")
    }
    shown = position(seeded, "alpha", "kraken", "ETHUSD")["unrealized_pnl"]
    assert (str(snapshot[alpha_id]["unrealized_pnl"]), str(snapshot[None]["unrealized_pnl"]), str(shown)) == (
        "-1.970000000000",
        "-1.970000000000",
        "-1.970000000000",
    )
