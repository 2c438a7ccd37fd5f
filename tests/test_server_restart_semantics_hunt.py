"""How the database judges its state after its server crashed and recovered (an immediate
shutdown: no checkpoint, crash recovery at the next start, the cumulative statistics discarded).

One cluster for the module: migrated, given its workload, shut down immediately and started
again once (the ``recovered`` fixture); every test looks at the recovered server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from ops_helpers import cli
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings

# a bound on every wait of this file: something that takes longer is stuck, not slow
PATIENCE = 60.0
# a job migrate schedules, whose run is in flight when the server goes down
JOB = "spreadedge-collect-metrics"
# an index tune apply built long ago (its comment dates the build), which the queries use
USED_INDEX = "events_account_btree_tune"


@dataclass
class Recovered:
    """The recovered cluster, how often the queries had scanned USED_INDEX before the crash,
    when the server discarded its statistics (the shared statistics' reset time after the start
    that recovered), and the run of JOB (started 20 days ago) that was running at the crash, as
    pg_cron left it after the start (status, message, whether it has an end time)."""

    cluster: Cluster
    scans_before_crash: int
    discarded_at: str
    interrupted_run: int
    interrupted_as: tuple[str, str, bool]


def _run_once_marked(conn: psycopg.Connection, runid: int) -> tuple[str, str, bool]:
    """The run's status, message and whether it has an end time, once pg_cron's launcher has
    marked it after the start (bounded by PATIENCE)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        row = conn.execute(
            "select status, return_message, end_time is not null from cron.job_run_details where runid = %s",
            [runid],
        ).fetchone()
        if row[0] != "running" or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


@pytest.fixture(scope="module")
def recovered(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Recovered]:
    cluster = make_cluster()
    cluster.start()
    try:
        migrate(cluster.url(), project_settings, echo=lambda line: None)
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("create table public.events (id bigint, account integer, payload text)")
            conn.execute(
                "insert into public.events select i, i % 500, md5(i::text) from generate_series(1, 5000) i"
            )
            conn.execute(f"create index {USED_INDEX} on public.events (account)")
            # built by tune apply 30 days ago: old enough for drop-unused's default --min-age (7d)
            built = conn.execute(
                "select to_char((now() - interval '30 days') at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
            ).fetchone()[0]
            conn.execute(
                sql.SQL("comment on index public.{} is {}").format(
                    sql.Identifier(USED_INDEX), sql.Literal(f"spreadedge tune: btree (account) at {built}")
                )
            )
            conn.execute("analyze public.events")
            for account in range(5):
                conn.execute("select * from public.events where account = %s", [account]).fetchall()
            conn.execute("select pg_stat_force_next_flush()")
            # pg_cron's record of a run of JOB still going when the server goes down
            interrupted = conn.execute(
                "insert into cron.job_run_details (jobid, runid, database, username, command, status, start_time)"
                " select j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command, 'running',"
                " now() - interval '20 days' from cron.job j where j.jobname = %s returning runid",
                [JOB],
            ).fetchone()[0]
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            scans = conn.execute(
                "select idx_scan from pg_stat_user_indexes where indexrelname = %s", [USED_INDEX]
            ).fetchone()[0]
        cluster.stop(immediate=True)
        cluster.start()
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            discarded_at = conn.execute(
                "select to_char(stats_reset at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"') from pg_stat_archiver"
            ).fetchone()[0]
            interrupted_as = _run_once_marked(conn, interrupted)
        yield Recovered(cluster, scans, discarded_at, interrupted, interrupted_as)
    finally:
        cluster.stop(immediate=True)


# bug: crash recovery discards every cumulative statistic (idx_scan too) and leaves
# pg_stat_database.stats_reset as it was (null: never reset), so ops.unused_indexes listed every
# index as never scanned since an unknown time, and tune drop-unused dropped at once the index the
# queries had been using, a tune-built one older than --min-age (or, with --include-schema-indexes,
# every non-unique schema index)
def test_tune_drop_unused_keeps_an_index_the_queries_used_before_a_crash(recovered: Recovered) -> None:
    assert recovered.scans_before_crash == 5

    result = cli("tune", "drop-unused", "--yes", database_url=recovered.cluster.url())

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"kept public.{USED_INDEX}: unused only since {recovered.discarded_at} (statistics reset or built),"
        " less than 7d",
        "no unused index to drop",
    ]
    with psycopg.connect(recovered.cluster.url()) as conn:
        assert conn.execute("select to_regclass(%s) is not null", [f"public.{USED_INDEX}"]).fetchone() == (
            True,
        )


# bug: pg_cron marks a run still going when the server goes down failed with "server restarted"
# and no end time; row retention deleted only runs whose end time was before the cutoff, so every
# crash, restart or restore left those runs in cron.job_run_details for good (the hourly
# maintenance and `spreadedge cleanup cron_runs` never deleted them)
def test_cron_run_retention_deletes_a_run_the_crash_interrupted_once_a_later_run_is_past_it(
    recovered: Recovered,
) -> None:
    assert recovered.interrupted_as == ("failed", "server restarted", False)
    with psycopg.connect(recovered.cluster.url(), autocommit=True) as conn:
        conn.execute(
            "insert into cron.job_run_details (jobid, runid, database, username, command, status,"
            " return_message, start_time, end_time)"
            " select j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command, 'succeeded', '1',"
            " now() - interval '16 days', now() - interval '16 days' from cron.job j where j.jobname = %s",
            [JOB],
        )

        conn.execute(
            "select ops.cleanup_delete_batch(target => 'cron_runs', older_than => '14 days', batch_rows => 1000)"
        )

        # why only the interrupted run: pg_cron's own runs of JOB since the start may make the
        # later one no longer the job's newest, and retention deletes it then
        left = conn.execute(
            "select count(*) from cron.job_run_details where runid = %s", [recovered.interrupted_run]
        ).fetchone()
    assert left == (0,)
