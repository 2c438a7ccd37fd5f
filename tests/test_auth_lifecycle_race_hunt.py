"""The security functions while other sessions are live: logins, validations, role grants, password
changes, TOTP codes and API keys racing a policy change or each other, on real concurrent connections."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg

from auth_helpers import (
    MASTER_KEY,
    OTHER_MASTER_KEY,
    PASSWORD,
    age_session,
    events,
    login,
    make_user,
    reveal_key,
    store_key,
)
from test_auth_more_edges import session_is_live
from test_auth_totp import code_at, db_now, enrolled
from trading_helpers import call, race

NEEDS_2FA = "two-factor authentication is required for this account's role: enroll first"


def set_policy(setting: str, value: str):
    """A racer that changes one policy setting (left uncommitted by race's first session)."""
    statement = psycopg.sql.SQL("select auth.set_security_policy({} => %s)").format(
        psycopg.sql.Identifier(setting)
    )
    return lambda conn: conn.execute(statement, [value])


def session_times(conn: psycopg.Connection) -> list[tuple[timedelta, timedelta]]:
    """Each session's lifetime and idle timeout, as measured from its last use."""
    return conn.execute(
        "select expires_at - created_at, idle_expires_at - last_seen_at from auth.sessions order by session_id"
    ).fetchall()


def test_a_login_racing_a_policy_making_its_role_use_2fa_waits_and_is_refused(auth_db, db_url):
    make_user(auth_db, "bob", "trader")
    _, outcome = race(
        auth_db, db_url, set_policy("totp_required_roles", "{trader}"), lambda conn: login(conn, "bob")
    )
    assert (outcome["success"], outcome["message"]) == (False, NEEDS_2FA)
    assert auth_db.execute("select count(*) from auth.sessions").fetchone()[0] == 0


def test_a_policy_making_a_role_use_2fa_waits_for_a_login_under_way_and_revokes_its_session(auth_db, db_url):
    make_user(auth_db, "bob", "trader")
    held, outcome = race(
        auth_db, db_url, lambda conn: login(conn, "bob"), set_policy("totp_required_roles", "{trader}")
    )
    assert not isinstance(outcome, psycopg.Error)
    assert session_is_live(auth_db, held["session_token"]) is False
    assert auth_db.execute("select revoked_reason from auth.sessions").fetchall() == [("2FA required",)]


def test_a_login_racing_a_shorter_session_lifetime_gets_the_new_lifetime(auth_db, db_url):
    make_user(auth_db, "bob")
    _, outcome = race(
        auth_db, db_url, set_policy("session_max_lifetime", "1 hour"), lambda conn: login(conn, "bob")
    )
    assert outcome["success"] is True
    assert session_times(auth_db) == [(timedelta(hours=1), timedelta(minutes=30))]


def test_a_shorter_session_lifetime_waits_for_a_login_under_way_and_shortens_its_session(auth_db, db_url):
    make_user(auth_db, "bob")
    _, outcome = race(
        auth_db, db_url, lambda conn: login(conn, "bob"), set_policy("session_max_lifetime", "1 hour")
    )
    assert not isinstance(outcome, psycopg.Error)
    assert session_times(auth_db) == [(timedelta(hours=1), timedelta(minutes=30))]


def test_a_slide_racing_a_shorter_idle_timeout_slides_by_the_new_timeout(auth_db, db_url):
    user_id = make_user(auth_db, "bob")
    token = login(auth_db, "bob")["session_token"]
    age_session(auth_db, user_id, "2 minutes")
    _, outcome = race(
        auth_db,
        db_url,
        set_policy("session_idle_timeout", "5 minutes"),
        lambda conn: call(conn, "auth.validate_session", token=token),
    )
    assert not isinstance(outcome, psycopg.Error)
    assert session_times(auth_db) == [(timedelta(hours=12), timedelta(minutes=5))]


def test_a_slide_racing_a_shorter_idle_timeout_that_ends_the_session_is_refused_with_28S02(auth_db, db_url):
    user_id = make_user(auth_db, "bob")
    token = login(auth_db, "bob")["session_token"]
    age_session(auth_db, user_id, "10 minutes")
    _, outcome = race(
        auth_db,
        db_url,
        set_policy("session_idle_timeout", "5 minutes"),
        lambda conn: call(conn, "auth.validate_session", token=token),
    )
    assert isinstance(outcome, psycopg.Error)
    assert (outcome.sqlstate, outcome.diag.message_primary) == (
        "28S02",
        "the session is unknown, expired or revoked",
    )
    assert session_is_live(auth_db, token) is False
    assert session_times(auth_db) == [(timedelta(hours=12), timedelta(minutes=5))]


def test_a_slide_racing_a_logout_is_refused_with_28S02(auth_db, db_url):
    user_id = make_user(auth_db, "bob")
    token = login(auth_db, "bob")["session_token"]
    age_session(auth_db, user_id, "2 minutes")
    held, outcome = race(
        auth_db,
        db_url,
        lambda conn: call(conn, "auth.logout", token=token),
        lambda conn: call(conn, "auth.validate_session", token=token),
    )
    assert held is True
    assert isinstance(outcome, psycopg.Error)
    assert (outcome.sqlstate, outcome.diag.message_primary) == (
        "28S02",
        "the session is unknown, expired or revoked",
    )


def test_a_grant_racing_a_policy_making_the_role_use_2fa_revokes_the_password_only_session(auth_db, db_url):
    user_id = make_user(auth_db, "bob", "trader")
    token = login(auth_db, "bob")["session_token"]
    _, outcome = race(
        auth_db,
        db_url,
        set_policy("totp_required_roles", "{admin}"),
        lambda conn: call(conn, "auth.grant_role", user_id=user_id, role_name="admin"),
    )
    assert not isinstance(outcome, psycopg.Error)
    assert session_is_live(auth_db, token) is False
    assert auth_db.execute("select revoked_reason from auth.sessions").fetchall() == [("2FA required",)]


def test_a_policy_making_a_role_use_2fa_waits_for_a_grant_of_it_under_way_and_revokes(auth_db, db_url):
    user_id = make_user(auth_db, "bob", "trader")
    token = login(auth_db, "bob")["session_token"]
    _, outcome = race(
        auth_db,
        db_url,
        lambda conn: call(conn, "auth.grant_role", user_id=user_id, role_name="admin"),
        set_policy("totp_required_roles", "{admin}"),
    )
    assert not isinstance(outcome, psycopg.Error)
    assert session_is_live(auth_db, token) is False
    assert auth_db.execute("select revoked_reason from auth.sessions").fetchall() == [("2FA required",)]


# What already held under concurrency (no fix needed), kept as regression tests.


def test_wrong_passwords_in_parallel_each_count_toward_the_lockout(auth_db, db_url):
    auth_db.execute("select auth.set_security_policy(max_failed_logins => 50)")
    make_user(auth_db, "bob")

    def attempt(_: int) -> bool:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return login(conn, "bob", password="Wrong-Horse-42")["success"]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(attempt, range(16))) == {False}
    assert auth_db.execute("select failed_logins from auth.users").fetchone()[0] == 16


def test_a_totp_code_used_by_two_concurrent_logins_logs_in_once(auth_db, db_url):
    _, secret = enrolled(auth_db)
    code = code_at(secret, db_now(auth_db), 0)
    held, outcome = race(
        auth_db,
        db_url,
        lambda conn: login(conn, "alice", totp_code=code),
        lambda conn: login(conn, "alice", totp_code=code),
    )
    assert held["success"] is True
    assert (outcome["success"], outcome["message"]) == (False, "two-factor code is wrong or was already used")


def test_a_login_with_the_old_password_racing_a_password_change_is_refused(auth_db, db_url):
    user_id = make_user(auth_db, "bob")
    _, outcome = race(
        auth_db,
        db_url,
        lambda conn: call(
            conn,
            "auth.change_password",
            user_id=user_id,
            new_password="Other-Horse-43",
            old_password=PASSWORD,
        ),
        lambda conn: login(conn, "bob"),
    )
    assert (outcome["success"], outcome["session_token"]) == (False, None)


def test_an_api_key_revoked_twice_at_once_is_revoked_once(auth_db, db_url):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    _, outcome = race(
        auth_db,
        db_url,
        lambda conn: call(conn, "auth.revoke_api_key", key_id=key_id),
        lambda conn: call(conn, "auth.revoke_api_key", key_id=key_id),
    )
    assert not isinstance(outcome, psycopg.Error)
    assert [e["details"] for e in events(auth_db, "api_key_revoked")] == [{"key_id": key_id}]


def test_a_rotation_waits_for_a_store_under_way_and_re_encrypts_its_key(auth_db, db_url):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    store_key(auth_db, alice)
    stored, outcome = race(
        auth_db,
        db_url,
        lambda conn: store_key(conn, bob, api_key="AKIA-bob"),
        lambda conn: call(
            conn, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY
        ),
        wait_event="advisory",
    )
    assert outcome == 2
    assert reveal_key(auth_db, stored, master_key=OTHER_MASTER_KEY)["api_key"] == "AKIA-bob"
    assert auth_db.execute("select key_version from auth.api_keys order by key_id").fetchall() == [(2,), (2,)]


def test_a_reveal_racing_a_revoke_of_its_key_is_refused_with_23S09(auth_db, db_url):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    _, outcome = race(
        auth_db,
        db_url,
        lambda conn: call(conn, "auth.revoke_api_key", key_id=key_id),
        lambda conn: reveal_key(conn, key_id),
    )
    assert isinstance(outcome, psycopg.Error)
    assert (outcome.sqlstate, outcome.diag.message_primary) == ("23S09", f"API key {key_id} is revoked")
    assert events(auth_db, "api_key_revealed") == []


def test_a_password_change_waits_for_a_login_under_way_and_revokes_its_session(auth_db, db_url):
    user_id = make_user(auth_db, "bob")
    held, outcome = race(
        auth_db,
        db_url,
        lambda conn: login(conn, "bob"),
        lambda conn: call(
            conn,
            "auth.change_password",
            user_id=user_id,
            new_password="Other-Horse-43",
            old_password=PASSWORD,
        ),
    )
    assert not isinstance(outcome, psycopg.Error)
    assert session_is_live(auth_db, held["session_token"]) is False
    assert auth_db.execute("select revoked_reason from auth.sessions").fetchall() == [("password changed",)]
