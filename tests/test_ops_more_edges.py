"""More operations edges: cleanup racing a late fill, and the like."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from spreadedge.ops import OpsError, cleanup, logical
from trading_helpers import call, fill, place, waits_for_a_lock

LONG_AGO = datetime.now(UTC) - timedelta(days=40)


def test_cleanup_orders_keeps_an_old_cancelled_order_whose_late_fill_commits_while_it_waits(
    seeded, seeded_url
):
    cancelled = place(seeded, "buy", "0.01", "50000", placed_at=LONG_AGO, client_order_id="old-cancelled")
    call(seeded, "trading.cancel_order", order_id=cancelled, reason="test")
    seeded.execute("update trading.orders set updated_at = created_at")
    age = timedelta(days=30)
    with psycopg.connect(seeded_url, autocommit=True) as cleaner, ThreadPoolExecutor(1) as pool:
        at = cleanup.cutoff(cleaner, age)
        with seeded.transaction():
            late = fill(seeded, cancelled, "0.01", "50000")
            # cleanup judged the order removable (cancelled, unfilled) before the fill commits
            running = pool.submit(
                cleanup.run, cleaner, "orders", age, at, batch_rows=100, progress=lambda rows: None
            )
            assert waits_for_a_lock(seeded, cleaner.info.backend_pid, "transactionid")
        outcome = running.result(timeout=30)

    assert outcome == cleanup.Outcome(0, 0, 0)
    assert seeded.execute("select order_id, status::text from trading.orders").fetchall() == [
        (cancelled, "filled")
    ]
    assert seeded.execute(
        "select count(*) from trading.order_events where order_id = %s", [cancelled]
    ).fetchone() == (3,)
    assert seeded.execute("select order_id from trading.trades").fetchall() == [(cancelled,)]
    assert seeded.execute("select trade_id from trading.trades").fetchone() == (late,)
    assert seeded.execute("select count(*) from ops.check_invariants()").fetchone() == (0,)


def test_a_logical_dump_to_the_name_of_an_existing_dump_is_refused_and_keeps_it(db_url, tmp_path):
    # dump names carry a one-second stamp: a second dump of one mode in that second has the name
    path = logical.dump_path(
        tmp_path, "spreadedge", "schema", "gz", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    logical.dump(db_url, path, "schema", "gz")
    first = path.read_bytes()

    with pytest.raises(OpsError) as caught:
        logical.dump(db_url, path, "schema", "gz")

    assert (
        str(caught.value) == f"{path} exists already: a dump is never overwritten (run it again in a second)"
    )
    assert path.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# bug: a fraction outside [0, 1] read "file system -50.0% used" and was healthy, and a null limit
# was always healthy
@pytest.mark.parametrize(
    ("used", "limit", "message"),
    [
        ("-0.5", "0.9", "disk_used_fraction must be between 0 and 1, got -0.5"),
        ("1.5", "2", "disk_used_fraction must be between 0 and 1, got 1.5"),
        ("0.5", None, "max_disk_used_fraction must be above 0 and at most 1, got null"),
        ("0.5", "0", "max_disk_used_fraction must be above 0 and at most 1, got 0"),
    ],
)
def test_a_health_report_with_a_disk_fraction_or_limit_out_of_range_is_refused(db, used, limit, message):
    with pytest.raises(psycopg.Error) as caught:
        db.execute(
            "select ops.health_report(disk_used_fraction => %s::numeric, max_disk_used_fraction => %s::numeric)",
            [used, limit],
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S09", message)
