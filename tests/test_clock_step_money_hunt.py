"""The server's wall clock stepping (tests/clock_helpers.py, the cluster of
tests/test_clock_step_hunt.py) where money is counted: the daily loss of the risk check, portfolio
snapshots, health ages and the history pages, across a forward jump set right and a step back."""

from __future__ import annotations

from decimal import Decimal

import psycopg

import test_clock_step_hunt as steppable
from clock_helpers import Clock
from db_fixtures import _seed
from trading_helpers import call, order, place, trade

# the steppable cluster's fixtures, as tests/test_clock_step_hunt.py defines them
clock_cluster, clock, stepped_url, stepped = (
    steppable.clock_cluster,
    steppable.clock,
    steppable.stepped_url,
    steppable.stepped,
)


def test_a_loss_made_while_the_clock_ran_days_ahead_counts_in_todays_daily_loss(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    _seed(stepped)
    clock.set("+2d")
    trade(stepped, "buy", "0.1", "60000")
    trade(stepped, "sell", "0.1", "59000")  # a loss of 100, stamped two days ahead
    clock.set("+0")
    call(stepped, "monitor.set_risk_limit", strategy="alpha", max_daily_loss=Decimal("100"))
    order_id = place(stepped, "buy", "0.01", "59000")
    assert order(stepped, order_id)["status_reason"] == "realized loss today 100 reached max_daily_loss 100"


def test_the_latest_portfolio_is_the_snapshot_taken_last_after_the_clock_is_set_right(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # a snapshot taken two days ahead holds a position closed since: the latest portfolio must be
    # the one taken after it, not the stale one for two days
    _seed(stepped)
    clock.set("+2d")
    trade(stepped, "buy", "0.1", "60000")
    stepped.execute("select trading.take_portfolio_snapshot()")
    clock.set("+0")
    trade(stepped, "sell", "0.1", "60000")
    (taken_at,) = stepped.execute(
        "select internal.iso_utc(taken_at) from trading.take_portfolio_snapshot() limit 1"
    ).fetchone()
    latest = call(stepped, "trading.portfolio_latest")
    assert (latest["taken_at"], latest["total"]["open_positions"]) == (taken_at, 0)


def backed_up(conn: psycopg.Connection, label: str) -> None:
    """A successful physical backup run, finished at the server's clock."""
    (run_id,) = conn.execute("select ops.start_backup_run('full', 'zst')").fetchone()
    conn.execute("select ops.finish_backup_run(%s, true, %s)", [run_id, label])


def test_a_backup_stamped_days_ahead_does_not_keep_health_ok_once_the_clock_is_set_right(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # its age is unknown once the clock is set right: it must not count as a backup taken now
    # for two days more (backups could stop and health stay green all that time)
    clock.set("+2d")
    backed_up(stepped, "20261209-000000F")
    clock.set("+0")
    ok, detail = stepped.execute("select ok, detail from internal.health_last_backup('26 hours')").fetchone()
    assert (ok, detail) == (
        False,
        "no successful physical backup in ops.backup_runs that pgBackRest still holds"
        " (1 finished later than the database clock reads: it has stepped back since, and their age is unknown)",
    )


def test_the_last_backup_age_never_reads_negative_after_the_clock_is_set_right(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # it counts from the first migrate, the newest time it can vouch for, not -2 days
    clock.set("+2d")
    backed_up(stepped, "20261209-000000F")
    clock.set("+0")
    (age,) = stepped.execute(
        "select value from internal.system_metrics() where name = 'backup.last_success_age_seconds'"
    ).fetchone()
    (since_migrate,) = stepped.execute(
        "select extract(epoch from clock_timestamp() - min(finished_at)) from ops.migrate_runs"
    ).fetchone()
    assert 0 < age <= since_migrate


def test_a_backup_taken_once_the_clock_is_set_right_is_the_last_backup(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    clock.set("+2d")
    backed_up(stepped, "20261209-000000F")
    clock.set("+0")
    backed_up(stepped, "20261207-000000F")
    ok, detail = stepped.execute("select ok, detail from internal.health_last_backup('26 hours')").fetchone()
    assert (ok, detail.split(" finished ")[0]) == (True, "last physical backup 20261207-000000F (full)")


def test_a_transaction_begun_while_the_clock_ran_ahead_fails_health_once_it_is_set_right(
    stepped: psycopg.Connection, stepped_url: str, clock: Clock
) -> None:
    # begun two days ahead and still open: its age reads -2 days, and a leaked transaction
    # holding back vacuum must not pass for a young one for two days
    clock.set("+2d")
    with psycopg.connect(stepped_url) as open_one:
        (pid,) = open_one.execute("select pg_backend_pid()").fetchone()
        clock.set("+0")
        ok, detail = stepped.execute(
            "select ok, detail from internal.health_long_transactions('1 hour')"
        ).fetchone()
    assert (ok, detail) == (
        False,
        f"1 transactions begun later than the database clock reads (it has stepped back since,"
        f" and their age is unknown): pid {pid} (spreadedge, idle in transaction)",
    )


def test_the_oldest_transaction_age_never_reads_days_below_zero_after_the_clock_is_set_right(
    stepped: psycopg.Connection, stepped_url: str, clock: Clock
) -> None:
    clock.set("+2d")
    with psycopg.connect(stepped_url) as open_one:
        open_one.execute("select 1")
        clock.set("+0")
        (age,) = stepped.execute(
            "select value from internal.system_metrics() where name = 'db.oldest_xact_age'"
        ).fetchone()
    assert age >= 0
