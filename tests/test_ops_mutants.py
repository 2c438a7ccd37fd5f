"""Rules of partition cleanup, row retention, backup bookkeeping and the invariant checks that no
other test pinned down: each test here fails with a small, plausible bug in the SQL (a mutant: a
bound off by one, a dropped condition, a widened list) that the rest of the suite let through.

Mutation run (functions/63_ops_partitions.sql, 63_ops_row_retention.sql,
63_ops_default_partitions.sql, 64_ops_backups.sql, 85_ops_invariants.sql): 30 mutants tried, 1 of
them stillborn (a syntax error, left out), 10 caught by the suite, 19 survived; of these 1 was
equivalent (a pending notification has neither delivered_at nor dead_at, a check of
monitor.notifications, so adding 'pending' to the notifications rule deletes nothing) and 18 were
holes, each closed by one test below.

Corruptions are written behind the API's back with session_replication_role = replica (triggers and
foreign keys skipped), as tests/test_invariants.py does; only the invariant under test is asserted,
not the audit checks' own reports of such a write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import test_ops_health
from market_helpers import instrument_id
from test_invariants import violations
from trading_helpers import call, fill, legs, list_okx_btc_spot, open_spread, place, rows, trade


def behind_the_log(conn: psycopg.Connection, statement: str, params: list[Any] | None = None) -> None:
    """Run statement with triggers and foreign keys skipped (as a bug or a hand edit would)."""
    conn.execute("set session_replication_role = replica")
    conn.execute(statement, params)
    conn.execute("reset session_replication_role")


def reported(conn: psycopg.Connection, invariant: str) -> list[tuple[dict, str]]:
    """(subject, detail) of each violation of one invariant."""
    return [(subject, detail) for name, subject, detail in violations(conn) if name == invariant]


def test_a_trade_whose_position_delta_is_not_its_signed_quantity_is_reported_as_trade_realized(seeded):
    trade_id = trade(seeded, "buy", "1", "100")
    behind_the_log(seeded, "update trading.trades set position_delta = 2 where trade_id = %s", [trade_id])
    # a lone buy realizes and closes nothing, so only its delta is wrong: a buy of 1 with no fee
    # in the base asset changes the position by 1
    assert reported(seeded, "trade_realized") == [
        (
            {"trade_id": trade_id},
            "position_delta 2, but a buy of 1 with a fee of 0 USDT changes the position by 1",
        )
    ]


def test_a_trade_key_row_at_another_time_is_reported_as_trade_keys(seeded):
    trade_id = trade(seeded, "buy", "1", "100")
    behind_the_log(
        seeded,
        "update trading.trade_keys set executed_at = executed_at + interval '1 second' where trade_id = %s",
        [trade_id],
    )
    # the key row finds the trade's partition by its time: one second off hides the trade
    [(subject, detail)] = reported(seeded, "trade_keys")
    assert subject == {"trade_id": trade_id}
    assert detail.startswith("key row says instrument ")


def test_an_order_whose_average_fill_price_is_not_its_trades_is_reported_as_order_fills(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100")
    behind_the_log(seeded, "update trading.orders set avg_fill_price = 101 where order_id = %s", [order_id])
    # the filled quantity agrees (1): only the price is off
    assert reported(seeded, "order_fills") == [
        (
            {"order_id": order_id},
            "filled_quantity 1, avg_fill_price 101; its trades: 1, 100.000000000000000000",
        )
    ]


def test_a_first_order_event_that_does_not_go_from_nothing_is_reported_as_order_events(seeded):
    order_id = place(seeded, "buy", "1", "100")
    event_id = seeded.execute(
        "select min(event_id) from trading.order_events where order_id = %s", [order_id]
    ).fetchone()[0]
    behind_the_log(
        seeded, "update trading.order_events set from_status = 'open' where event_id = %s", [event_id]
    )
    assert reported(seeded, "order_events") == [
        (
            {"order_id": order_id, "event_id": event_id},
            "the first event goes from open to new, not from nothing (the placement)",
        )
    ]


def test_a_rejected_order_with_a_fill_is_reported_as_order_status(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100")
    behind_the_log(seeded, "update trading.orders set status = 'rejected' where order_id = %s", [order_id])
    # a rejected order never reached the exchange: it can have filled nothing
    assert reported(seeded, "order_status") == [
        ({"order_id": order_id}, "status rejected with 1 of 1 filled")
    ]


def test_a_position_closed_flat_is_not_reported_for_its_opened_at(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "sell", "1", "110")
    # flat: record_fill cleared opened_at, and the fold expects none although a trade opened it
    assert seeded.execute("select opened_at from trading.positions").fetchall() == [(None,)]
    assert violations(seeded) == []


def test_a_spread_leg_on_the_same_pair_of_another_market_type_is_reported_as_spread_legs(seeded):
    list_okx_btc_spot(seeded)
    spread_trade_id = open_spread(seeded)
    buy, _ = legs(seeded, spread_trade_id)
    # alpha's sell of 2 BTC/USDT on okx, as the leg is, but of the perpetual: the same base and
    # quote asset, another market type
    perpetual = place(seeded, "sell", "2", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    behind_the_log(
        seeded,
        "update trading.spread_trades set sell_order_id = %s where spread_trade_id = %s",
        [perpetual, spread_trade_id],
    )
    assert reported(seeded, "spread_legs") == [
        (
            {"spread_trade_id": spread_trade_id},
            f"the buy leg order {buy} trades BTC/USDT spot, the sell leg order {perpetual} BTC/USDT perpetual",
        )
    ]


def test_a_row_whose_insert_image_went_with_a_pruned_audit_partition_is_not_reported_by_audit_chain(seeded):
    order_id = place(seeded, "buy", "1", "100")
    call(seeded, "trading.cancel_order", order_id=order_id, reason="test")
    # audit.log under a retention: its oldest partitions go, and with them the INSERT images of
    # rows that are still there; the UPDATE left is the first image the check sees
    seeded.execute(
        "select ops.configure_partitioning('audit.log', premake, '400 days')"
        " from partman.part_config where parent_table = 'audit.log'"
    )
    behind_the_log(
        seeded,
        "delete from audit.log where table_name = 'trading.orders' and operation = 'INSERT'"
        " and (row_key::jsonb ->> 'order_id')::bigint = %s",
        [order_id],
    )
    assert reported(seeded, "audit_chain") == []


def ticks_at(conn: psycopg.Connection, *times: tuple[str, datetime]) -> str:
    """Ticks (exchange_trade_id, traded_at) of binance BTCUSDT; the partition of the first."""
    for exchange_trade_id, traded_at in times:
        conn.execute(
            "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
            " values (%s, %s, %s, 100, 1)",
            [instrument_id(conn), traded_at, exchange_trade_id],
        )
    return conn.execute(
        "select tableoid::regclass::text from market.ticks where exchange_trade_id = %s", [times[0][0]]
    ).fetchone()[0]


def tick_ids(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("select exchange_trade_id from market.ticks order by traded_at")]


def test_cleanup_plan_drops_whole_a_partition_that_ends_exactly_at_the_cutoff(seeded):
    day = seeded.execute("select date_trunc('day', now() - interval '3 days', 'UTC')").fetchone()[0]
    partition = ticks_at(seeded, ("old", day + timedelta(hours=6)))
    plan = rows(
        seeded,
        "ops.cleanup_plan",
        target="ticks",
        older_than=timedelta(days=1),
        cutoff=day + timedelta(days=1),
    )
    assert [(r["action"], r["object_name"], r["row_count"]) for r in plan] == [
        ("drop partition", partition, 1)
    ]


def test_a_successful_physical_backup_leaves_a_later_run_still_running_alone(db):
    earlier = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    later = db.execute("select ops.start_backup_run('incr', 'zst')").fetchone()[0]
    # only a run begun before the one that succeeded can have lost pgBackRest's lock to it
    db.execute("select ops.finish_backup_run(%s, true, '20260101-000000F', 100, 10)", [earlier])
    runs = db.execute("select run_id, status from ops.backup_runs order by run_id").fetchall()
    assert runs == [(earlier, "succeeded"), (later, "running")]


def test_a_failed_physical_backup_run_is_never_marked_expired(db):
    run_id = db.execute("select ops.start_backup_run('full', 'zst')").fetchone()[0]
    db.execute("select ops.finish_backup_run(%s, false, '20260101-000000F', detail => 'disk full')", [run_id])
    # its label is not listed (pgBackRest never kept the backup), but there was nothing to expire
    marked = db.execute(
        "select ops.mark_expired_backup_runs('{}', clock_timestamp() + interval '1 second')"
    ).fetchone()[0]
    assert (marked, db.execute("select expired_at from ops.backup_runs").fetchone()) == (0, (None,))


LONG_AGO = datetime.now(UTC) - timedelta(days=60)


def old_order(conn: psycopg.Connection, side: str, quantity: str, filled: str | None = None) -> int:
    """alpha's BTCUSDT order placed LONG_AGO (filled that much then), last changed when placed."""
    order_id = place(conn, side, quantity, "100", placed_at=LONG_AGO)
    if filled is not None:
        fill(conn, order_id, filled, "100", executed_at=LONG_AGO)
    conn.execute("update trading.orders set updated_at = created_at where order_id = %s", [order_id])
    return order_id


def order_ids(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("select order_id from trading.orders order by order_id")]


def test_cleanup_orders_keeps_an_old_partially_filled_order_of_a_flat_position(seeded):
    working = old_order(seeded, "buy", "1", filled="0.5")
    old_order(seeded, "sell", "0.5", filled="0.5")  # the position is flat again
    # the filled sell may go; the buy still works on the exchange for its other half
    deleted = seeded.execute("select ops.cleanup_delete_batch('orders', '30 days')").fetchone()[0]
    assert (deleted, order_ids(seeded)) == (1, [working])


def test_cleanup_plan_keeps_the_filled_orders_of_an_open_short_position(seeded):
    short = old_order(seeded, "sell", "1", filled="1")
    # short 1: the position still depends on its fill (the plan judges by removable_orders alone)
    plan = rows(seeded, "ops.cleanup_plan", target="orders", older_than=timedelta(days=30))
    assert [(r["action"], r["object_name"], r["row_count"]) for r in plan] == [
        ("keep", partition_of(seeded, short), 1)
    ]


def partition_of(conn: psycopg.Connection, order_id: int) -> str:
    return conn.execute(
        "select tableoid::regclass::text from trading.orders where order_id = %s", [order_id]
    ).fetchone()[0]


def test_cleanup_plan_keeps_an_old_order_that_changed_after_the_cutoff(seeded):
    order_id = place(seeded, "buy", "1", "100", placed_at=LONG_AGO)
    call(seeded, "trading.cancel_order", order_id=order_id, reason="test")  # cancelled now
    partition = seeded.execute(
        "select tableoid::regclass::text from trading.orders where order_id = %s", [order_id]
    ).fetchone()[0]
    plan = rows(seeded, "ops.cleanup_plan", target="orders", older_than=timedelta(days=30))
    assert [(r["action"], r["object_name"], r["row_count"]) for r in plan] == [("keep", partition, 1)]


def test_cleanup_plan_never_drops_the_newest_partition_whole(seeded):
    # partition maintenance stopped long enough for every partition to end before the cutoff: the
    # ticks partitions from two days ago on are gone, and the newest left is of three days ago
    seeded.execute(
        "do $$ declare p record; begin"
        " for p in select format('%I.%I', sp.partition_schemaname, sp.partition_tablename) as name"
        "          from partman.show_partitions('market.ticks') sp"
        "          cross join lateral partman.show_partition_info(sp.partition_schemaname || '.' ||"
        "              sp.partition_tablename, '1 day', 'market.ticks') i"
        "          where i.child_start_time >= date_trunc('day', now() - interval '2 days', 'UTC') loop"
        "   execute 'drop table ' || p.name; end loop; end $$"
    )
    day = seeded.execute("select date_trunc('day', now() - interval '3 days', 'UTC')").fetchone()[0]
    newest = ticks_at(seeded, ("old", day + timedelta(hours=1)))
    # its rows go one by one: pg_partman makes the next partitions after the newest, and a table
    # left with none could take no row and get no partition again
    plan = rows(seeded, "ops.cleanup_plan", target="ticks", older_than=timedelta(days=1))
    assert [(r["action"], r["object_name"], r["row_count"]) for r in plan] == [("delete rows", newest, 1)]


def test_dropping_an_orders_partition_deletes_none_of_the_orders_of_the_next_one(seeded):
    # a month that ends before a 30-day cutoff whatever today is, and the first instant after it
    month = seeded.execute("select date_trunc('month', now() - interval '75 days', 'UTC')").fetchone()[0]
    next_month = seeded.execute("select %s::timestamptz + interval '1 month'", [month]).fetchone()[0]
    inside = place(seeded, "buy", "1", "100", placed_at=month + timedelta(days=1))
    after = place(seeded, "buy", "1", "100", placed_at=next_month)
    for order_id in (inside, after):
        call(seeded, "trading.cancel_order", order_id=order_id, reason="test")
    seeded.execute("update trading.orders set updated_at = created_at")
    partition = seeded.execute(
        "select tableoid::regclass::text from trading.orders where order_id = %s", [inside]
    ).fetchone()[0]
    # partitions are [start, end): the order at the next month's start is the next partition's
    dropped = seeded.execute(
        "select ops.cleanup_drop_partition('orders', '30 days', %s)", [partition]
    ).fetchone()[0]
    assert (dropped, order_ids(seeded)) == (1, [after])


# the migrated database pg_cron serves, its test jobs and failed runs removed after a test
cron_db = test_ops_health.cron_db
CRASHED_JOB = "ops-mutants-crashed-job"


def test_a_cron_run_the_server_restart_interrupted_counts_as_ended_once_a_later_run_started(cron_db):
    cron_db.execute("select cron.schedule(%s, '0 0 31 2 *', 'select 1')", [CRASHED_JOB])
    ended = "select internal.count_ended_rows('cron.job_run_details', now() - interval '10 days')"
    before = cron_db.execute(ended).fetchone()[0]
    try:
        # pg_cron marks a run cut short by a restart failed, with no end time; the job's next run
        # (its newest, which stays) started after the restart
        for status, days_ago, finished in (("failed", 20, False), ("succeeded", 19, True)):
            cron_db.execute(
                "insert into cron.job_run_details (jobid, runid, database, username, command, status,"
                " return_message, start_time, end_time)"
                " select j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command, %(status)s,"
                " 'server restarted', now() - %(days)s * interval '1 day',"
                " case when %(finished)s then now() - %(days)s * interval '1 day' end"
                " from cron.job j where j.jobname = %(job)s",
                {"job": CRASHED_JOB, "status": status, "days": days_ago, "finished": finished},
            )
        assert cron_db.execute(ended).fetchone()[0] - before == 1
    finally:
        cron_db.execute(
            "delete from cron.job_run_details where jobid = (select jobid from cron.job where jobname = %s)",
            [CRASHED_JOB],
        )


def test_a_fill_dated_before_every_trades_partition_is_refused_not_stored_in_the_default(seeded):
    order_id = place(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.Error) as caught:
        fill(seeded, order_id, "1", "100", executed_at=datetime(2010, 1, 4, tzinfo=UTC))
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "trading.trades has no partition for executed_at 2010-01-04T00:00:00+00:00",
    )
