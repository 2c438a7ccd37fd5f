"""Autovacuum's sessions beside the metrics and health checks that read pg_stat_activity: a worker
vacuuming a table of the database is in a transaction, as a client session in one is, but it is no
transaction anyone left open, and no connection.

A cluster of the module's own, whose autovacuum launcher visits its databases every second
(autovacuum_naptime), and a table whose vacuum sleeps at every page (autovacuum_vacuum_cost_delay),
so that a worker is found in its transaction within seconds and stays there; the cluster is stopped
after the module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings

# at most this long for the launcher to start a worker on the table
AUTOVACUUM_WAIT = 60.0


@pytest.fixture(scope="module")
def vacuuming(
    make_cluster: Callable[..., Cluster], project_settings: Settings
) -> Iterator[psycopg.Connection]:
    """A connection to the migrated database of a cluster of the module's own, while an autovacuum
    worker vacuums a table of it (the worker's transaction is open)."""
    cluster = make_cluster()
    cluster.start()
    try:
        migrate(cluster.url(), project_settings, echo=lambda line: None)
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            # why: a job's run is a client session of the database, which the connection counts
            # below would see at a minute's stroke
            conn.execute("select cron.unschedule(jobid) from cron.job")
            conn.execute("alter system set autovacuum_naptime = '1s'")
            conn.execute("select pg_reload_conf()")
            conn.execute(
                "create table public.vacuum_probe (id integer, pad text) with (autovacuum_vacuum_threshold = 0,"
                " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100,"
                " autovacuum_vacuum_cost_limit = 1, autovacuum_enabled = true)"
            )
            conn.execute(
                "insert into public.vacuum_probe select i, repeat('x', 200) from generate_series(1, 20000) i"
            )
            conn.execute("delete from public.vacuum_probe")
            deadline = time.monotonic() + AUTOVACUUM_WAIT
            while not conn.execute(
                "select exists (select from pg_stat_activity where backend_type = 'autovacuum worker'"
                " and datname = current_database() and xact_start is not null"
                " and query like '%%vacuum_probe%%')"
            ).fetchone()[0]:
                if time.monotonic() > deadline:
                    pytest.fail("no autovacuum worker vacuumed public.vacuum_probe")
                time.sleep(0.2)
            # the worker's transaction older than any a statement of the test could be in
            time.sleep(1.5)
            yield conn
    finally:
        cluster.stop(immediate=True)


# bug: db.oldest_xact_age counted autovacuum workers' transactions (health's long_transactions did
# not): the metric read 0.061 s beside health's "no transaction open longer than 00:00:00", and an
# alert rule on it fired on a large table's hours-long vacuum that held nothing back
def test_an_autovacuum_workers_transaction_is_not_the_oldest_transaction(vacuuming):
    metric = vacuuming.execute(
        "select value from internal.system_metrics() where name = 'db.oldest_xact_age'"
    ).fetchone()[0]

    assert metric == 0


def test_an_autovacuum_workers_transaction_does_not_fail_long_transactions(vacuuming):
    row = vacuuming.execute("select ok, detail from internal.health_long_transactions('1 second')").fetchone()

    assert row == (True, "no transaction open longer than 00:00:01")


# a worker of autovacuum vacuuming a table of this database right now, as the statement sees it
WORKER_THERE = (
    "exists (select from pg_stat_activity where backend_type = 'autovacuum worker'"
    " and datname = current_database() and query like '%vacuum_probe%')"
)


# bug: db.connections counted every session of the database: an autovacuum worker is 'active' while
# it vacuums (hours on a large table), so an alert rule on active connections fired on it
def test_an_autovacuum_worker_is_not_an_active_connection(vacuuming):
    row = vacuuming.execute(
        "select m.value, " + WORKER_THERE + " from internal.system_metrics() m"
        " where m.name = 'db.connections' and m.labels = '{\"state\": \"active\"}'"
    ).fetchone()

    # this session, running the statement, is the one active connection
    assert row == (1, True)


def test_the_performance_summary_counts_no_autovacuum_worker_among_the_connections(vacuuming):
    row = vacuuming.execute(
        "select connections, active_connections, " + WORKER_THERE + " from ops.performance_summary()"
    ).fetchone()

    assert row == (1, 1, True)
