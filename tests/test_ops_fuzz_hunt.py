"""Odd arguments to the ops, monitor and auth SQL API: each answers with a project SQLSTATE and a
message naming the value, never a bare PostgreSQL error (22003, 22008, 0A000, 23514) or a silent
wrong answer. Found by calling every function of those schemas with NaN, infinities, huge and
negative numbers, extreme times and intervals, odd text, JSON and arrays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from monitor_helpers import fire_btc_above_70k
from trading_helpers import call, rows


def _refused(conn: psycopg.Connection, function: str, **kwargs: Any) -> psycopg.Error:
    """The error of calling function with kwargs (the call must fail)."""
    with pytest.raises(psycopg.Error) as caught:
        rows(conn, function, **kwargs)
    return caught.value


@pytest.mark.parametrize(
    ("function", "extra"),
    [
        ("ops.cleanup_cutoff", {}),
        ("ops.cleanup_plan", {"target": "orders"}),
        ("ops.cleanup_delete_batch", {"target": "orders"}),
    ],
)
@pytest.mark.parametrize(
    ("older_than", "shown"), [("1 mon -29 days", "1 mon -29 days"), ("1 day -1 hour", "1 day -01:00:00")]
)
def test_cleanup_older_than_with_a_negative_part_is_invalid_argument(
    db: psycopg.Connection, function: str, extra: dict[str, Any], older_than: str, shown: str
) -> None:
    # '1 mon -29 days' compares as one day but is subtracted part by part: on 1 March 2027 the
    # cutoff was 2 March, in the future, and the cleanup removed today's finished rows too
    error = _refused(db, function, older_than=older_than, **extra)
    assert error.sqlstate == "22S09"
    assert (
        error.diag.message_primary
        == f"older_than must be a positive interval with no negative part, got {shown}"
    )


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        # a null replication lag or transaction age limit was always healthy
        ("max_replication_lag", None, "max_replication_lag must be a positive interval with no negative part, got null"),
        ("max_transaction_age", None, "max_transaction_age must be a positive interval with no negative part, got null"),
        # a negative one was unhealthy (or healthy) whatever the state
        ("max_transaction_age", "-1 day", "max_transaction_age must be a positive interval with no negative part, got -1 days"),
        ("max_backup_age", "1 mon -29 days", "max_backup_age must be a positive interval with no negative part, got 1 mon -29 days"),
        # a bare 22008 "timestamp out of range"
        ("max_backup_age", "1000000 years", "max_backup_age 1000000 years reaches back before the earliest time PostgreSQL stores"),
    ],
)  # fmt: skip
def test_health_report_limit_out_of_its_domain_is_invalid_argument(
    db: psycopg.Connection, argument: str, value: str | None, message: str
) -> None:
    error = _refused(db, "ops.health_report", **{argument: value})
    assert (error.sqlstate, error.diag.message_primary) == ("22S09", message)


def test_health_report_with_default_limits_still_reports(db: psycopg.Connection) -> None:
    report = call(db, "ops.health_report")
    assert [c["name"] for c in report["checks"]][6:11] == [
        "last_backup",
        "replication",
        "replication_slots",
        "synchronous_standby",
        "long_transactions",
    ]


@pytest.mark.parametrize(
    ("setting", "threshold"),
    [
        ("1" + "0" * 400, float("inf")),  # beyond double precision: a bare 22003
        ("0." + "0" * 400 + "1", 0.0),  # below its smallest: a bare 22003 too
        ("1000000000000000", float("inf")),
        ("007.2500009", 7.25),
        ("12", 12.0),
        ("not a number", 100.0),
    ],
)
def test_slow_query_threshold_of_any_number_of_digits_is_read(
    db: psycopg.Connection, setting: str, threshold: float
) -> None:
    db.execute("select set_config('spreadedge.slow_query_ms', %s, false)", [setting])
    assert db.execute("select internal.slow_query_ms()").fetchone()[0] == threshold
    # the view and the summary read it (they raised the 22003 with it)
    slow = db.execute("select count(*) from ops.slow_queries").fetchone()[0]
    summary = rows(db, "ops.performance_summary")[0]["slow_queries"]
    if threshold == float("inf"):
        assert (slow, summary) == (0, 0)
    else:  # each statement run adds to pg_stat_statements, so the second count is no smaller
        assert summary >= slow


@pytest.mark.parametrize("argument", ["size_bytes", "repo_size_bytes"])
def test_finish_backup_run_with_a_negative_size_is_invalid_argument(
    db: psycopg.Connection, argument: str
) -> None:
    run_id = call(db, "ops.start_backup_run", kind="full", compress_type="gz")
    error = _refused(db, "ops.finish_backup_run", run_id=run_id, succeeded=True, **{argument: -1})
    # it was a bare 23514 naming backup_runs_size_bytes_check
    assert error.sqlstate == "22S09"
    shown = ("-1", "null") if argument == "size_bytes" else ("null", "-1")
    assert error.diag.message_primary == (
        f"size_bytes and repo_size_bytes must be zero or more (or null), got {shown[0]} and {shown[1]}"
    )
    assert db.execute("select status from ops.backup_runs where run_id = %s", [run_id]).fetchone() == (
        "running",
    )


def test_finish_backup_run_without_an_outcome_is_invalid_argument(db: psycopg.Connection) -> None:
    run_id = call(db, "ops.start_backup_run", kind="full", compress_type="gz")
    # it was recorded as failed without a word
    error = _refused(db, "ops.finish_backup_run", run_id=run_id, succeeded=None)
    assert (error.sqlstate, error.diag.message_primary) == (
        "22S09",
        "succeeded must be true or false, got null",
    )
    assert db.execute("select status from ops.backup_runs where run_id = %s", [run_id]).fetchone() == (
        "running",
    )


@pytest.mark.parametrize("at", ["infinity", "-infinity"])
def test_totp_code_at_an_infinite_time_is_invalid_argument(db: psycopg.Connection, at: str) -> None:
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select auth.totp_code('12345678901234567890'::bytea, %s::timestamptz)", [at])
    # it was a bare 0A000 "cannot convert infinity to bigint"
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"a TOTP code needs a finite time, got {at}",
    )


@pytest.mark.parametrize(
    ("function", "arguments", "sqlstate"),
    [
        (
            "monitor.add_alert_rule",
            {"name": "two-d", "kind": "price", "operator": ">", "threshold": 1, "exchange": "binance",
             "symbol": "BTCUSDT"},
            "22S12",
        ),
        ("monitor.set_risk_limit", {"strategy": "alpha", "max_order_notional": 1000}, "22S13"),
    ],
)  # fmt: skip
def test_two_dimensional_channels_are_refused_with_the_project_sqlstate(
    seeded: psycopg.Connection, function: str, arguments: dict[str, Any], sqlstate: str
) -> None:
    # array_position raised a bare 0A000 "searching for elements in multidimensional arrays is
    # not supported"
    error = _refused(seeded, function, channels=[["email"], ["slack"]], **arguments)
    assert error.sqlstate == sqlstate
    assert "{{email},{slack}}" in error.diag.message_primary


def test_null_channel_is_still_refused(seeded: psycopg.Connection) -> None:
    error = _refused(
        seeded, "monitor.set_risk_limit", strategy="alpha", max_order_notional=1000, channels=[None]
    )
    assert (error.sqlstate, error.diag.message_primary) == (
        "22S13",
        "channels must be a list of email, slack, discord, webhook, got {NULL}",
    )


def test_fail_notification_with_a_max_backoff_past_the_latest_time_is_invalid_argument(
    seeded: psycopg.Connection,
) -> None:
    fire_btc_above_70k(seeded, ["slack"])
    with seeded.transaction(force_rollback=True):
        (claimed,) = rows(seeded, "monitor.claim_notifications", worker="w", channels=["slack"])
        with pytest.raises(psycopg.Error) as caught, seeded.transaction():
            call(seeded, "monitor.fail_notification", notification_id=claimed["notification_id"], worker="w",
                 error="503", backoff=timedelta(days=999_999_999), max_backoff=timedelta(days=999_999_999))  # fmt: skip
    # it was a bare 22008 "timestamp out of range", on every failure of the message
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "max_backoff 999999999 days reaches past the latest time PostgreSQL stores",
    )
