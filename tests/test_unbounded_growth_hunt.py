"""Tables that grew forever: monitor.notifications (every message delivered or dead), auth.sessions
(every session ever opened) and pg_cron's cron.job_run_details (three runs a minute) had no
partitions to drop and nothing ever deleted a row of them. Now ops.row_retention keeps each row
for a while once it has ended (30, 30 and 14 days by default; retention_notifications,
retention_sessions, retention_cron_runs), the hourly ops.run_partition_maintenance deletes the
older ones, and `spreadedge cleanup notifications|sessions|cron_runs` does it by hand. Rows that
have not ended stay however old; money history is never touched."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

import test_ops_health
from auth_helpers import login, make_user
from ops_helpers import checksums, cli
from spreadedge.ops import cleanup
from spreadedge.settings import SettingsError, load_settings
from trading_helpers import call, fill, place

# the migrated database pg_cron serves, its test jobs and failed runs removed after a test
cron_db = test_ops_health.cron_db
LONG_AGO = datetime.now(UTC) - timedelta(days=60)
# jobs this module schedules (never due: 31 February) in pg_cron's database, and in another one
JOB = "growth-hunt-job"
OTHER_DB_JOB = "growth-hunt-elsewhere"


def _notification(db: psycopg.Connection, status: str, ended_days_ago: int | None) -> int:
    """An outbox row of the test's risk event, created 90 days ago, in status; delivered or dead
    ended_days_ago days ago."""
    ended = None if ended_days_ago is None else datetime.now(UTC) - timedelta(days=ended_days_ago)
    return db.execute(
        "insert into monitor.notifications (channel, status, subject, payload, risk_event_id, created_at,"
        " delivered_at, dead_at)"
        " select 'email', %(status)s, 'old', '{}', max(risk_event_id), now() - interval '90 days',"
        " %(delivered)s, %(dead)s from monitor.risk_events returning notification_id",
        {
            "status": status,
            "delivered": ended if status == "delivered" else None,
            "dead": ended if status == "dead" else None,
        },
    ).fetchone()[0]


def _risk_event(db: psycopg.Connection) -> None:
    """A rejected order of alpha, its risk event and its pending notification."""
    call(db, "monitor.set_risk_limit", strategy="alpha", max_order_notional=Decimal("1000"))
    place(db, "buy", "0.02", "60000")


def _money_history(db: psycopg.Connection) -> None:
    """A 60-day-old filled order (with its trade and position) and funding payment."""
    order_id = place(db, "buy", "0.01", "50000", placed_at=LONG_AGO, client_order_id="old-filled")
    fill(db, order_id, "0.01", "50000", executed_at=LONG_AGO)
    perpetual = place(
        db,
        "buy",
        "1",
        "50000",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        placed_at=LONG_AGO,
        client_order_id="old-perp",
    )
    fill(db, perpetual, "1", "50000", executed_at=LONG_AGO)
    call(db, "trading.record_funding", strategy="alpha", exchange="okx", symbol="BTC-USDT-SWAP",
         amount=Decimal("-1.25"), paid_at=LONG_AGO)  # fmt: skip


def _session(
    db: psycopg.Connection, username: str, revoked_days_ago: int | None, expired_days_ago: int | None
) -> int:
    """A session of username, logged in 90 days ago; revoked or (idle and absolute) expired so many
    days ago, else live."""
    token = login(db, username)["session_token"]
    session_id = db.execute(
        "select session_id from auth.sessions where token_hash = %s",
        [hashlib.sha256(token.encode()).digest()],
    ).fetchone()[0]
    db.execute(
        "update auth.sessions set created_at = now() - interval '90 days', last_seen_at = now() - interval '90 days',"
        " revoked_at = now() - %(revoked)s::integer * interval '1 day',"
        " revoked_reason = case when %(revoked)s::integer is not null then 'logout' end,"
        " idle_expires_at = coalesce(now() - %(expired)s::integer * interval '1 day', now() + interval '1 hour'),"
        " expires_at = coalesce(now() - %(expired)s::integer * interval '1 day', now() + interval '1 day')"
        " where session_id = %(session)s",
        {"revoked": revoked_days_ago, "expired": expired_days_ago, "session": session_id},
    )
    return session_id


def _sessions(db: psycopg.Connection) -> dict[str, int]:
    make_user(db, "carol")
    return {
        "revoked long ago": _session(db, "carol", 40, None),
        "expired long ago": _session(db, "carol", None, 40),
        "live since 90 days": _session(db, "carol", None, None),
        "revoked lately": _session(db, "carol", 10, None),
        "expired lately": _session(db, "carol", None, 10),
    }


def _ids(db: psycopg.Connection, query: str) -> set[int]:
    return {row[0] for row in db.execute(query)}


def test_the_hourly_maintenance_deletes_notifications_delivered_or_dead_before_retention_and_keeps_the_rest(
    seeded,
):
    _money_history(seeded)
    _risk_event(seeded)
    pending = _ids(seeded, "select notification_id from monitor.notifications")
    seeded.execute("update monitor.notifications set created_at = now() - interval '90 days'")
    gone = {_notification(seeded, "delivered", 31), _notification(seeded, "dead", 45)}
    kept = pending | {
        _notification(seeded, "delivered", 29),
        _notification(seeded, "dead", 2),
        _notification(seeded, "pending", None),
    }
    seeded.execute(
        "update monitor.notifications set status = 'delivering', next_attempt_at = now() + interval '5 minutes'"
        " where notification_id = %s",
        [max(kept)],
    )
    before = checksums(seeded)

    seeded.execute("call ops.run_partition_maintenance()")

    left = _ids(seeded, "select notification_id from monitor.notifications")
    assert (left, left & gone) == (kept, set())
    after = checksums(seeded)
    assert {table: after[table] for table in after if table != "monitor.notifications"} == {
        table: before[table] for table in before if table != "monitor.notifications"
    }
    assert seeded.execute(
        "select (select count(*) from trading.orders where created_at < now() - interval '59 days'),"
        " (select count(*) from trading.trades where executed_at < now() - interval '59 days'),"
        " (select count(*) from trading.funding_payments where paid_at < now() - interval '59 days'),"
        " (select count(*) from monitor.risk_events)"
    ).fetchone() == (2, 2, 1, 1)


def test_the_hourly_maintenance_deletes_sessions_revoked_or_expired_before_retention_and_keeps_live_ones(
    auth_db,
):
    sessions = _sessions(auth_db)
    events = auth_db.execute(
        "select count(*), md5(string_agg(e::text, '|' order by e.event_id)) from audit.security_events e"
    ).fetchone()

    auth_db.execute("call ops.run_partition_maintenance()")

    assert _ids(auth_db, "select session_id from auth.sessions") == {
        sessions["live since 90 days"],
        sessions["revoked lately"],
        sessions["expired lately"],
    }
    assert (
        auth_db.execute(
            "select count(*), md5(string_agg(e::text, '|' order by e.event_id)) from audit.security_events e"
        ).fetchone()
        == events
    )


@pytest.fixture
def cron_runs(cron_db: psycopg.Connection) -> Iterator[dict[str, int]]:
    """Finished runs of a job of pg_cron's database (two 20 days old, its newest 20 days old too,
    one 5 days old in between is not: see below) and of a job of another database (20 days old),
    names to run ids; removed after the test."""
    cron_db.execute("select cron.schedule(%s, '0 0 31 2 *', 'select 1')", [JOB])
    cron_db.execute(
        "select cron.schedule_in_database(%s, '0 0 31 2 *', 'select 1', 'postgres')", [OTHER_DB_JOB]
    )
    jobs = [
        row[0]
        for row in cron_db.execute(
            "select jobid from cron.job where jobname in (%s, %s)", [JOB, OTHER_DB_JOB]
        )
    ]

    def run(job: str, status: str, days_ago: int, finished: bool = True) -> int:
        return cron_db.execute(
            "insert into cron.job_run_details (jobid, runid, database, username, command, status, return_message,"
            " start_time, end_time)"
            " select j.jobid, nextval('cron.runid_seq'), j.database, j.username, j.command, %(status)s, '1 row',"
            " now() - %(days)s::integer * interval '1 day', case when %(finished)s then now() - %(days)s::integer * interval '1 day' end"
            " from cron.job j where j.jobname = %(job)s returning runid",
            {"job": job, "status": status, "days": days_ago, "finished": finished},
        ).fetchone()[0]

    try:
        yield {
            "succeeded 20 days ago": run(JOB, "succeeded", 20),
            "failed 20 days ago": run(JOB, "failed", 20),
            "running since 20 days": run(JOB, "running", 20, finished=False),
            "succeeded 5 days ago": run(JOB, "succeeded", 5),
            "newest, 16 days ago": run(JOB, "succeeded", 16),
            "other database's, 20 days ago": run(OTHER_DB_JOB, "succeeded", 20),
            "other database's newest": run(OTHER_DB_JOB, "succeeded", 20),
        }
    finally:
        cron_db.execute("delete from cron.job_run_details where jobid = any(%s)", [jobs])


def test_the_hourly_maintenance_deletes_cron_runs_past_retention_but_each_jobs_newest_and_other_databases(
    cron_db, cron_runs
):
    cron_db.execute("call ops.run_partition_maintenance()")

    left = _ids(cron_db, "select runid from cron.job_run_details")
    assert {name: runid in left for name, runid in cron_runs.items()} == {
        "succeeded 20 days ago": False,
        "failed 20 days ago": False,
        "running since 20 days": True,
        "succeeded 5 days ago": True,
        "newest, 16 days ago": True,
        "other database's, 20 days ago": True,
        "other database's newest": True,
    }


def test_partitions_maintain_with_retention_sessions_none_keeps_every_session(auth_db, db_url):
    sessions = _sessions(auth_db)

    result = cli("partitions", "maintain", database_url=db_url, env={"SPREADEDGE_RETENTION_SESSIONS": "none"})

    assert result.exit_code == 0, result.output
    assert _ids(auth_db, "select session_id from auth.sessions") == set(sessions.values())
    assert auth_db.execute(
        "select table_name, retention from ops.row_retention order by table_name"
    ).fetchall() == [
        ("auth.sessions", None),
        ("cron.job_run_details", timedelta(days=14)),
        ("monitor.notifications", timedelta(days=30)),
    ]


def test_partitions_maintain_applies_a_shorter_retention_notifications(seeded, db_url):
    _risk_event(seeded)
    pending = _ids(seeded, "select notification_id from monitor.notifications")
    old = _notification(seeded, "delivered", 10)
    recent = _notification(seeded, "dead", 5)

    result = cli(
        "partitions", "maintain", database_url=db_url, env={"SPREADEDGE_RETENTION_NOTIFICATIONS": "1 week"}
    )

    assert result.exit_code == 0, result.output
    assert old not in pending
    assert _ids(seeded, "select notification_id from monitor.notifications") == pending | {recent}


def test_cleanup_sessions_dry_run_counts_the_ended_sessions_and_removes_nothing(auth_db, db_url):
    sessions = _sessions(auth_db)

    result = cli("cleanup", "sessions", "--older-than", "30d", "--dry-run", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert "delete rows  auth.sessions     2" in result.output
    assert "dry run: 2 rows older than " in result.output
    assert _ids(auth_db, "select session_id from auth.sessions") == set(sessions.values())


def test_cleanup_notifications_deletes_the_ended_ones_in_batches_of_batch_rows(seeded):
    _risk_event(seeded)
    pending = _ids(seeded, "select notification_id from monitor.notifications")
    for days in (31, 32, 33, 34, 35):
        _notification(seeded, "delivered", days)
    kept = _notification(seeded, "delivered", 20)
    at = cleanup.cutoff(seeded, timedelta(days=30))
    batches: list[int] = []

    outcome = cleanup.run(
        seeded, "notifications", timedelta(days=30), at, batch_rows=2, progress=batches.append
    )

    assert (batches, outcome) == ([2, 2, 1], cleanup.Outcome(0, 0, 5))
    assert _ids(seeded, "select notification_id from monitor.notifications") == pending | {kept}


def test_one_batch_of_a_row_target_deletes_at_most_batch_rows(auth_db):
    _sessions(auth_db)
    _session(auth_db, "carol", 50, None)
    batch = "select ops.cleanup_delete_batch(target => 'sessions', older_than => '30 days', batch_rows => 2)"

    assert [auth_db.execute(batch).fetchone()[0] for _ in range(3)] == [2, 1, 0]
    assert auth_db.execute("select count(*) from auth.sessions").fetchone() == (3,)


def test_cleanup_cron_runs_dry_run_counts_the_finished_runs_past_the_age(cron_db, cron_runs, pg_cluster):
    result = cli(
        "cleanup", "cron_runs", "--older-than", "14d", "--dry-run", database_url=pg_cluster.url("spreadedge")
    )

    assert result.exit_code == 0, result.output
    assert "delete rows  cron.job_run_details     2" in result.output
    assert "dry run: 2 rows older than " in result.output
    assert set(cron_runs.values()) <= _ids(cron_db, "select runid from cron.job_run_details")


def test_cleanup_cron_runs_where_pg_cron_does_not_run_is_refused(db, db_url):
    result = cli("cleanup", "cron_runs", "--older-than", "14d", database_url=db_url)

    assert result.exit_code == 1, result.output
    database = db.execute("select current_database()").fetchone()[0]
    assert f"Error: cannot clean up cron_runs: pg_cron does not run in database {database}" in result.output
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select * from ops.cleanup_plan(target => 'cron_runs', older_than => '14 days')")
    assert caught.value.sqlstate == "22S21"


@pytest.mark.parametrize("retention", ["0 days", "-1 day", "1 mon -29 days"])
def test_configure_row_retention_refuses_a_retention_that_is_not_a_positive_age(db, retention):
    with pytest.raises(psycopg.Error) as caught:
        db.execute(
            "select ops.configure_row_retention(table_name => 'auth.sessions', retention => %s::interval)",
            [retention],
        )

    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary.startswith(
        "retention must be a positive interval with no negative part"
    )
    assert db.execute(
        "select retention from ops.row_retention where table_name = 'auth.sessions'"
    ).fetchone() == (timedelta(days=30),)


def test_configure_row_retention_refuses_a_table_it_does_not_cover(db):
    with pytest.raises(psycopg.Error) as caught:
        db.execute(
            "select ops.configure_row_retention(table_name => 'trading.trades', retention => '30 days')"
        )

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S21",
        "table trading.trades has no row retention: it covers auth.sessions, cron.job_run_details, monitor.notifications",
    )


def test_settings_refuse_a_retention_sessions_that_is_not_an_interval(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_RETENTION_SESSIONS": "30d"})

    assert str(caught.value) == (
        "retention_sessions must be an interval like '24 months' (days, weeks, months or years) or 'none', got '30d'"
    )


def test_settings_default_row_retentions_in_code_and_in_the_example_file(tmp_path: Path):
    example = Path(__file__).resolve().parent.parent / "spreadedge.toml.example"
    for env in ({}, {"SPREADEDGE_SETTINGS": str(example)}):
        render = load_settings(project_dir=tmp_path, env=env).render
        assert (render.retention_notifications, render.retention_sessions, render.retention_cron_runs) == (
            "30 days",
            "30 days",
            "14 days",
        )
