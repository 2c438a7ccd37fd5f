"""Edges of the security functions: what revoking sessions counts, revoking a role that is not one,
the failed logins user_accounts shows, the client address of a login from Python, and expiries
counted in whole days whatever the session's TimeZone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from ipaddress import IPv6Address
from zoneinfo import ZoneInfo

import psycopg
import pytest

from auth_helpers import PASSWORD, age_session, events, login, make_user
from spreadedge.security import SecuritySystem
from trading_helpers import call


def session_states(conn: psycopg.Connection) -> list[tuple[int, str | None]]:
    return conn.execute("select session_id, revoked_reason from auth.sessions order by session_id").fetchall()


def test_revoke_sessions_counts_and_marks_only_the_live_sessions(auth_db):
    user_id = make_user(auth_db, "alice")
    login(auth_db, "alice")
    age_session(auth_db, user_id, "13 hours")  # past the 12-hour lifetime: over already
    login(auth_db, "alice")

    assert call(auth_db, "auth.revoke_sessions", user_id=user_id) == 1

    assert session_states(auth_db) == [(1, None), (2, "revoked")]
    assert [e["details"] for e in events(auth_db, "session_revoked")] == [
        {"sessions": 1, "reason": "revoked"}
    ]


def test_revoke_sessions_of_a_user_whose_sessions_all_idled_out_revokes_none_and_records_nothing(auth_db):
    user_id = make_user(auth_db, "alice")
    login(auth_db, "alice")
    age_session(auth_db, user_id, "31 minutes")  # past the 30-minute idle timeout

    assert call(auth_db, "auth.revoke_sessions", user_id=user_id) == 0

    assert (session_states(auth_db), events(auth_db, "session_revoked")) == ([(1, None)], [])


def test_disable_user_still_revokes_the_live_sessions(auth_db):
    user_id = make_user(auth_db, "alice")
    login(auth_db, "alice")

    call(auth_db, "auth.disable_user", user_id=user_id)

    assert session_states(auth_db) == [(1, "user disabled")]


@pytest.mark.parametrize("role_name", ["Admin", "admins", None])
def test_revoke_role_of_a_role_that_does_not_exist_is_refused_with_23S10(auth_db, role_name):
    user_id = make_user(auth_db, "alice", "admin")

    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        call(auth_db, "auth.revoke_role", user_id=user_id, role_name=role_name)

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S10",
        f'role "{role_name or "null"}" does not exist',
    )
    assert auth_db.execute("select roles from auth.user_accounts").fetchone()[0] == ["admin"]


def test_user_accounts_shows_no_failed_logins_once_the_window_has_passed(auth_db):
    make_user(auth_db, "alice")
    for _ in range(4):
        login(auth_db, "alice", "wrong")
    # 15 minutes (the default window) and a second ago: the next failure counts as the first
    auth_db.execute("update auth.users set last_failed_at = last_failed_at - interval '15 minutes 1 second'")

    assert auth_db.execute("select failed_logins, is_locked from auth.user_accounts").fetchone() == (0, False)


def test_user_accounts_shows_the_failed_logins_within_the_window(auth_db):
    make_user(auth_db, "alice")
    for _ in range(4):
        login(auth_db, "alice", "wrong")
    auth_db.execute("update auth.users set last_failed_at = last_failed_at - interval '14 minutes'")

    assert auth_db.execute("select failed_logins, is_locked from auth.user_accounts").fetchone() == (4, False)


@pytest.mark.parametrize(
    ("address", "recorded"),
    [
        ("unknown", None),
        ("", None),
        ("fe80::1%eth0", "fe80::1"),
        (IPv6Address("fe80::1%eth0"), "fe80::1"),
        ("192.0.2.7", "192.0.2.7"),
    ],
)
def test_security_system_logs_in_whatever_the_client_address_and_records_an_ip_only(
    db_url, auth_db, address, recorded
):
    make_user(auth_db, "alice")
    security = SecuritySystem(db_url)

    success, token, message = asyncio.run(security.authenticate_user("alice", PASSWORD, address, "ua/1"))

    assert (success, message, len(token or "")) == (True, "logged in", 64)
    [event] = events(auth_db, "login_succeeded")
    assert (None if event["ip_address"] is None else str(event["ip_address"])) == recorded


DST_ZONE = "America/New_York"


def days_past_the_next_spring_forward(zone: str) -> int:
    """A number of days from now whose span holds the zone's next change to a later UTC offset (a
    day of 23 hours on its clock), ending a day or more after it."""
    tz = ZoneInfo(zone)
    now = datetime.now(UTC)
    offset = now.astimezone(tz).utcoffset()
    days = 1
    while (later := (now + timedelta(days=days)).astimezone(tz).utcoffset()) == offset or later < offset:
        offset = later
        days += 1
    return days + 1


def test_a_session_lifetime_in_days_is_whole_days_in_a_time_zone_with_a_dst_change(auth_db):
    days = days_past_the_next_spring_forward(DST_ZONE)
    auth_db.execute(
        "select auth.set_security_policy(session_max_lifetime => make_interval(days => %s))", [days]
    )
    make_user(auth_db, "alice")
    auth_db.execute("select set_config('TimeZone', %s, false)", [DST_ZONE])

    login(auth_db, "alice")

    lifetime = auth_db.execute(
        "select extract(epoch from expires_at - created_at) from auth.sessions"
    ).fetchone()
    assert lifetime[0] == days * 86400


def test_a_lockout_in_days_is_whole_days_in_a_time_zone_with_a_dst_change(auth_db):
    days = days_past_the_next_spring_forward(DST_ZONE)
    auth_db.execute(
        "select auth.set_security_policy(max_failed_logins => 1, lockout_duration => make_interval(days => %s))",
        [days],
    )
    make_user(auth_db, "alice")
    auth_db.execute("select set_config('TimeZone', %s, false)", [DST_ZONE])

    login(auth_db, "alice", "wrong")

    lockout = auth_db.execute(
        "select extract(epoch from locked_until - last_failed_at) from auth.users"
    ).fetchone()
    assert lockout[0] == days * 86400


def test_a_policy_change_made_in_a_time_zone_with_a_dst_change_keeps_a_session_lifetime_in_days(auth_db):
    days = days_past_the_next_spring_forward(DST_ZONE)
    auth_db.execute(
        "select auth.set_security_policy(session_max_lifetime => make_interval(days => %s))", [days]
    )
    make_user(auth_db, "alice")
    login(auth_db, "alice")
    auth_db.execute("select set_config('TimeZone', %s, false)", [DST_ZONE])

    auth_db.execute("select auth.set_security_policy(session_idle_timeout => '20 minutes')")

    lifetime = auth_db.execute(
        "select extract(epoch from expires_at - created_at) from auth.sessions"
    ).fetchone()
    assert lifetime[0] == days * 86400
