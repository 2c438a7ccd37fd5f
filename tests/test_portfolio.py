"""Portfolio snapshots: one snapshot per taken_at; a second one at the same time is a 23S06 conflict."""

import threading
from datetime import UTC, datetime

import psycopg
import pytest

from trading_helpers import rows, waits_for_a_lock

HINT = "Take it at another time: within one transaction now() does not move, so pass taken_at => clock_timestamp()."
TAKEN_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


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
    rows(seeded, "trading.take_portfolio_snapshot", taken_at=TAKEN_AT)
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        rows(seeded, "trading.take_portfolio_snapshot", taken_at=TAKEN_AT)
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_hint) == (
        "23S06",
        "a portfolio snapshot taken at 2025-06-01T12:00:00.000000Z already exists",
        HINT,
    )


def test_a_snapshot_another_session_takes_at_the_same_time_meanwhile_is_a_conflicting_duplicate(
    seeded, seeded_url
):
    failures: list[Exception] = []

    def racer(conn: psycopg.Connection) -> None:
        try:
            rows(conn, "trading.take_portfolio_snapshot", taken_at=TAKEN_AT)
        except Exception as exc:  # asserted on below
            failures.append(exc)

    with psycopg.connect(seeded_url) as first, psycopg.connect(seeded_url, autocommit=True) as second:
        rows(first, "trading.take_portfolio_snapshot", taken_at=TAKEN_AT)  # not committed yet
        thread = threading.Thread(target=racer, args=(second,))
        thread.start()
        waited = waits_for_a_lock(seeded, second.info.backend_pid)
        first.commit()
        thread.join(timeout=30)
    assert waited
    assert [(e.sqlstate, e.diag.message_primary, e.diag.message_detail) for e in failures] == [
        (
            "23S06",
            "a portfolio snapshot taken at 2025-06-01T12:00:00.000000Z already exists",
            "Another session took it while this one was computing.",
        )
    ]
    # the first session's snapshot alone: alpha, beta and the total
    assert seeded.execute("select count(*) from trading.portfolio_snapshots").fetchone()[0] == 3
