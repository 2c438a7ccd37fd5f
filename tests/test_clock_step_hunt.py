"""The database server's wall clock stepping (an NTP correction, a VM resumed, a mis-set host clock
fixed), on a cluster with libfaketime preloaded (tests/clock_helpers.py): what depends on now() and
clock_timestamp() must lose nothing and strand nothing across a step."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from clock_helpers import Clock, clocked_cluster
from db_fixtures import _seed, database_copy, janitor
from market_helpers import instrument_id
from notify_servers import queue
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings

TEMPLATE = "clock_template"


@pytest.fixture(scope="module")
def clock_cluster(
    make_cluster: Callable[..., Cluster], project_settings: Settings
) -> Iterator[tuple[Cluster, Clock]]:
    """A running cluster with a steppable clock and a migrated template database."""
    with clocked_cluster(make_cluster) as (cluster, clock):
        cluster.start()
        try:
            with janitor(cluster, TEMPLATE):
                migrate(cluster.url(TEMPLATE), project_settings, echo=lambda line: None)
                yield cluster, clock
        finally:
            cluster.stop(immediate=True)


@pytest.fixture
def clock(clock_cluster: tuple[Cluster, Clock]) -> Iterator[Clock]:
    """The test cluster's clock, back at the real time after the test."""
    yield clock_cluster[1]
    clock_cluster[1].set("+0")


@pytest.fixture
def stepped_url(clock_cluster: tuple[Cluster, Clock], clock: Clock) -> Iterator[str]:
    """URL of a fresh migrated database on the cluster with the steppable clock."""
    with database_copy(clock_cluster[0], TEMPLATE, "clock") as url:
        yield url


@pytest.fixture
def stepped(stepped_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database whose server clock the test steps."""
    with psycopg.connect(stepped_url, autocommit=True) as conn:
        yield conn


def test_ticks_after_a_forward_jump_corrected_get_their_candles(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # a rollup ran while the clock was two days ahead; once the clock is set right the trades of
    # the next two days must still be built (the watermark must not wait two days ahead of them)
    _seed(stepped)
    btc = instrument_id(stepped, "binance", "BTCUSDT")
    add_tick = (
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " values (%s, date_trunc('minute', clock_timestamp()) - %s::interval, %s, %s, 1)"
    )
    stepped.execute(add_tick, [btc, "2 minutes", "1", 100])
    stepped.execute("select market.rollup_candles()")
    clock.set("+2d")
    stepped.execute("select market.rollup_candles()")
    clock.set("+0")
    stepped.execute(add_tick, [btc, "0 minutes", "2", 101])
    stepped.execute("select market.rollup_candles()")
    clock.set("+3d")  # time passes beyond the watermark of the jump: the next runs start there
    stepped.execute("select market.rollup_candles()")
    built = stepped.execute(
        "select count(*), sum(trade_count) from market.candles where instrument_id = %s and interval = '1m'",
        [btc],
    ).fetchone()
    assert built == (2, 2)


def claim(conn: psycopg.Connection) -> list[int]:
    """The notifications a worker claims now (committed: the claim is left unreported)."""
    with conn.transaction():
        return [
            row[0]
            for row in conn.execute(
                "select notification_id from monitor.claim_notifications(worker => 'w', channels => '{slack}')"
            )
        ]


def queued_and_failed_once(conn: psycopg.Connection) -> int:
    """A slack notification whose first attempt failed: pending again, 30 s from now."""
    _seed(conn)
    queue(conn, "slack")
    with conn.transaction():
        (notification,) = conn.execute(
            "select notification_id from monitor.claim_notifications(worker => 'w', channels => '{slack}')"
        ).fetchone()
        conn.execute(
            "select monitor.fail_notification(notification_id => %s, worker => 'w', error => 'HTTP 502',"
            " backoff => '30 seconds')",
            [notification],
        )
    return notification


def test_a_failed_notification_is_due_after_the_clock_steps_back(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # its retry was 30 s away; after the clock steps back two hours it must not wait two hours more
    notification = queued_and_failed_once(stepped)
    clock.set("-2h")
    due_in = stepped.execute(
        "select monitor.next_notification_due(channels => '{slack}') <= clock_timestamp()"
    ).fetchone()[0]
    assert (due_in, claim(stepped)) == (True, [notification])


def test_a_failed_notification_keeps_its_backoff_across_a_step_back_of_seconds(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # a step of less than a minute (or a failure reported while a claim runs, a moment after the
    # claim read the clock) lengthens no wait by more than that: the 30 s backoff holds
    queued_and_failed_once(stepped)
    clock.set("-30s")
    due_in = stepped.execute(
        "select monitor.next_notification_due(channels => '{slack}') > clock_timestamp()"
    ).fetchone()[0]
    assert (due_in, claim(stepped)) == (True, [])


def test_an_abandoned_claim_is_taken_again_after_the_clock_steps_back(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # claimed and committed without a report: its 5-minute lease must not last two hours more
    _seed(stepped)
    queue(stepped, "slack")
    (notification,) = claim(stepped)
    clock.set("-2h")
    assert claim(stepped) == [notification]


def test_partition_maintenance_days_ahead_then_set_right_routes_no_row_to_a_default(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # maintenance ran with the clock five days ahead (more than the premake), then the clock was
    # set right: maintenance goes on working and today's rows land in their own partitions
    _seed(stepped)
    btc = instrument_id(stepped, "binance", "BTCUSDT")
    clock.set("+5d")
    stepped.execute("call ops.run_partition_maintenance()")
    clock.set("+0")
    stepped.execute("call ops.run_partition_maintenance()")
    stepped.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " values (%s, clock_timestamp(), '1', 100, 1)",
        [btc],
    )
    health = stepped.execute(
        "select (select ok from internal.health_default_partitions()), (select ok from internal.health_partitions_ahead()),"
        " (select count(*) from market.ticks_default)"
    ).fetchone()
    assert health == (True, True, 0)
