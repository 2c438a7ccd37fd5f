"""Login, lockout and sessions: auth.login, auth.validate_session, auth.logout, auth.revoke_sessions."""

from __future__ import annotations

import hashlib

import httpx
import psycopg
import pytest

from api_fixtures import Api, api_login
from auth_helpers import PASSWORD, age_session, disable_directly, events, login, make_user
from trading_helpers import call, rows

REFUSED = "login refused: wrong username or password, or the account is locked or disabled"


def test_login_returns_a_32_byte_token_and_stores_only_its_sha256(auth_db):
    user_id = make_user(auth_db, "alice")
    result = login(auth_db, "alice", ip_address="192.0.2.7", user_agent="CryptoSpreadEdge/1.0")
    assert (result["success"], result["user_id"], result["message"]) == (True, user_id, "logged in")
    token = result["session_token"]
    assert len(bytes.fromhex(token)) == 32
    stored = auth_db.execute("select token_hash, host(ip_address), user_agent from auth.sessions").fetchall()
    assert stored == [(hashlib.sha256(token.encode()).digest(), "192.0.2.7", "CryptoSpreadEdge/1.0")]


def test_unknown_user_and_wrong_password_get_the_same_answer(auth_db):
    make_user(auth_db, "alice")
    unknown = login(auth_db, "nobody", "whatever")
    wrong = login(auth_db, "alice", "whatever")
    assert (
        unknown
        == wrong
        == {
            "success": False,
            "session_token": None,
            "user_id": None,
            "expires_at": None,
            "message": REFUSED,
        }
    )
    assert [e["details"]["reason"] for e in events(auth_db, "login_failed")] == [
        "unknown user",
        "wrong password",
    ]


def test_account_locks_at_the_threshold_and_refuses_the_right_password(auth_db):
    user_id = make_user(auth_db, "alice")
    for _ in range(5):
        assert login(auth_db, "alice", "wrong")["success"] is False
    assert login(auth_db, "alice")["message"] == REFUSED
    [locked] = events(auth_db, "account_locked")
    assert (locked["user_id"], locked["details"]["failed_logins"]) == (user_id, 5)
    assert [e["details"]["reason"] for e in events(auth_db, "login_failed")][-1] == "locked"


def test_failures_below_the_threshold_do_not_lock(auth_db):
    make_user(auth_db, "alice")
    for _ in range(4):
        login(auth_db, "alice", "wrong")
    assert login(auth_db, "alice")["success"] is True
    assert auth_db.execute("select failed_logins from auth.users").fetchone()[0] == 0


def test_lock_lifts_after_the_lockout_duration(auth_db):
    make_user(auth_db, "alice")
    for _ in range(5):
        login(auth_db, "alice", "wrong")
    # 30 minutes (the default lockout) and a second later
    auth_db.execute("update auth.users set locked_until = locked_until - interval '30 minutes 1 second'")
    assert login(auth_db, "alice")["success"] is True


def test_failures_outside_the_window_are_not_counted_together(auth_db):
    make_user(auth_db, "alice")
    for _ in range(4):
        login(auth_db, "alice", "wrong")
    auth_db.execute("update auth.users set last_failed_at = last_failed_at - interval '16 minutes'")
    login(auth_db, "alice", "wrong")
    assert auth_db.execute("select failed_logins, locked_until from auth.users").fetchone() == (1, None)


def test_unlock_user_lifts_a_lock_at_once(auth_db):
    user_id = make_user(auth_db, "alice")
    for _ in range(5):
        login(auth_db, "alice", "wrong")
    call(auth_db, "auth.unlock_user", user_id=user_id)
    assert login(auth_db, "alice")["success"] is True
    assert [e["details"] for e in events(auth_db, "account_unlocked")] == [{"was_locked": True}]


def test_validate_session_returns_user_roles_permissions_and_scopes_the_transaction(auth_db):
    user_id = make_user(auth_db, "alice", "viewer")
    token = login(auth_db, "alice")["session_token"]
    with auth_db.transaction():
        [session] = rows(auth_db, "auth.validate_session", token=token)
        scoped = auth_db.execute("select current_setting('spreadedge.user_id')").fetchone()[0]
    assert (session["user_id"], session["username"], session["roles"]) == (user_id, "alice", ["viewer"])
    assert session["permissions"] == ["orders:read", "pnl:read", "positions:read"]
    assert scoped == str(user_id)


def test_session_expires_after_the_idle_timeout(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    age_session(auth_db, user_id, "31 minutes")
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(auth_db, "auth.validate_session", token=token)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S02",
        "the session is unknown, expired or revoked",
    )


def test_validation_slides_the_idle_timeout(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    age_session(auth_db, user_id, "29 minutes")
    call(auth_db, "auth.validate_session", token=token)
    age_session(auth_db, user_id, "29 minutes")
    assert call(auth_db, "auth.validate_session", token=token) is not None


def test_validation_slides_an_idle_timeout_shorter_than_a_minute(auth_db):
    auth_db.execute("select auth.set_security_policy(session_idle_timeout => '30 seconds')")
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    age_session(auth_db, user_id, "20 seconds")
    call(auth_db, "auth.validate_session", token=token)
    age_session(auth_db, user_id, "20 seconds")
    assert call(auth_db, "auth.validate_session", token=token) is not None


def test_validation_within_a_minute_of_the_last_use_writes_nothing(auth_db):
    make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    with auth_db.transaction():
        call(auth_db, "auth.validate_session", token=token)
        assert auth_db.execute("select txid_current_if_assigned()").fetchone()[0] is None


def test_session_expires_at_its_absolute_lifetime_even_when_used(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    used = 0
    with pytest.raises(psycopg.errors.OperationalError, match="unknown, expired or revoked"):
        while used < 30:
            age_session(auth_db, user_id, "29 minutes")  # never idle for 30 minutes
            call(auth_db, "auth.validate_session", token=token)
            used += 1
    # 24 x 29 minutes = 11h36m of use; the 25th step passes the 12-hour lifetime
    assert used == 24


def test_a_shorter_session_lifetime_ends_a_live_session_that_outlived_it(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    for _ in range(6):  # two hours in use, never idle for long
        age_session(auth_db, user_id, "20 minutes")
        call(auth_db, "auth.validate_session", token=token)

    auth_db.execute("select auth.set_security_policy(session_max_lifetime => '1 hour')")

    with pytest.raises(psycopg.errors.OperationalError, match="unknown, expired or revoked") as refused:
        call(auth_db, "auth.validate_session", token=token)
    assert refused.value.sqlstate == "28S02"


def test_a_shorter_idle_timeout_ends_a_live_session_idle_longer_than_it(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    age_session(auth_db, user_id, "20 minutes")

    auth_db.execute("select auth.set_security_policy(session_idle_timeout => '10 minutes')")

    with pytest.raises(psycopg.errors.OperationalError, match="unknown, expired or revoked"):
        call(auth_db, "auth.validate_session", token=token)


def test_a_longer_session_lifetime_extends_no_live_session(auth_db):
    make_user(auth_db, "alice")
    login(auth_db, "alice")
    before = auth_db.execute("select expires_at, idle_expires_at from auth.sessions").fetchone()

    auth_db.execute("select auth.set_security_policy(session_max_lifetime => '2 days')")

    assert auth_db.execute("select expires_at, idle_expires_at from auth.sessions").fetchone() == before


def test_logout_ends_the_session_once(auth_db):
    make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    assert call(auth_db, "auth.logout", token=token) is True
    assert call(auth_db, "auth.logout", token=token) is False
    with pytest.raises(psycopg.errors.OperationalError, match="unknown, expired or revoked"):
        call(auth_db, "auth.validate_session", token=token)


def test_logout_of_a_session_past_its_lifetime_is_refused_and_records_nothing(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    age_session(auth_db, user_id, "13 hours")  # the lifetime is 12 hours
    assert call(auth_db, "auth.logout", token=token) is False
    assert (events(auth_db, "logout"), live_session_count(auth_db, user_id)) == ([], 1)


def test_logout_of_an_idle_expired_session_is_refused_and_records_nothing(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    age_session(auth_db, user_id, "31 minutes")  # the idle timeout is 30 minutes
    assert call(auth_db, "auth.logout", token=token) is False
    assert (events(auth_db, "logout"), live_session_count(auth_db, user_id)) == ([], 1)


def test_logout_of_a_disabled_users_session_is_refused_and_records_nothing(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    disable_directly(auth_db, user_id)
    assert call(auth_db, "auth.logout", token=token) is False
    assert (events(auth_db, "logout"), live_session_count(auth_db, user_id)) == ([], 1)


def live_session_count(conn, user_id):
    """Sessions of the user that nothing revoked (expired ones included)."""
    return conn.execute(
        "select count(*) from auth.sessions where user_id = %s and revoked_at is null", [user_id]
    ).fetchone()[0]


def api_logout(api: Api, token: str) -> httpx.Response:
    return httpx.post(
        f"{api.url}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_api_logout_of_an_expired_session_is_unauthorized_and_records_nothing(api, history_db):
    url, ids = history_db
    token = api_login(api.url, "bob").json()["token"]
    with psycopg.connect(url, autocommit=True) as conn:
        age_session(conn, ids["bob"], "13 hours")
        response = api_logout(api, token)
        logouts = events(conn, "logout")
    assert (response.status_code, logouts) == (401, [])
    assert response.json()["detail"] == "the session is unknown, expired or already ended"


def test_api_logout_of_a_disabled_users_session_is_unauthorized_and_records_nothing(api, history_db):
    url, ids = history_db
    token = api_login(api.url, "nobody").json()["token"]
    with psycopg.connect(url, autocommit=True) as conn:
        disable_directly(conn, ids["nobody"])
        response = api_logout(api, token)
        logouts = events(conn, "logout")
    assert (response.status_code, logouts) == (401, [])
    assert response.json()["detail"] == "the session is unknown, expired or already ended"


def test_revoke_sessions_ends_every_session_of_the_user(auth_db):
    user_id = make_user(auth_db, "alice")
    tokens = [login(auth_db, "alice")["session_token"] for _ in range(3)]
    assert call(auth_db, "auth.revoke_sessions", user_id=user_id) == 3
    for token in tokens:
        with pytest.raises(psycopg.errors.OperationalError, match="unknown, expired or revoked"):
            call(auth_db, "auth.validate_session", token=token)
    assert [e["details"] for e in events(auth_db, "session_revoked")] == [
        {"sessions": 3, "reason": "revoked"}
    ]


def test_unknown_token_is_refused_with_28S02(auth_db):
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(auth_db, "auth.validate_session", token="00" * 32)
    assert caught.value.sqlstate == "28S02"


def test_role_that_must_use_2fa_cannot_log_in_without_enrolling(auth_db):
    auth_db.execute("select auth.set_security_policy(totp_required_roles => '{admin}')")
    make_user(auth_db, "root", "admin")
    result = login(auth_db, "root")
    assert (result["success"], result["message"]) == (
        False,
        "two-factor authentication is required for this account's role: enroll first",
    )


def test_login_upgrades_a_hash_made_at_an_older_cost(auth_db):
    make_user(auth_db, "alice")
    auth_db.execute("select auth.set_security_policy(bcrypt_cost => 5)")
    assert login(auth_db, "alice")["success"] is True
    assert auth_db.execute("select substr(password_hash, 1, 7) from auth.users").fetchone()[0] == "$2a$05$"
    assert login(auth_db, "alice")["success"] is True


def test_successful_login_is_recorded_with_ip_and_user_agent(auth_db):
    user_id = make_user(auth_db, "alice")
    login(auth_db, "alice", ip_address="192.0.2.7", user_agent="ua/1")
    [event] = events(auth_db, "login_succeeded")
    assert (event["user_id"], str(event["ip_address"]), event["user_agent"]) == (user_id, "192.0.2.7", "ua/1")
    assert PASSWORD not in str(event)


def test_a_72_byte_password_with_more_appended_is_refused(auth_db):
    longest = "Aa1-" + "x" * 68  # 72 bytes: all of it counts for bcrypt
    make_user(auth_db, "alice", password=longest)
    assert login(auth_db, "alice", longest)["success"] is True
    result = login(auth_db, "alice", longest + "tail")
    assert (result["success"], result["message"]) == (False, REFUSED)
    assert [e["details"]["reason"] for e in events(auth_db, "login_failed")] == ["wrong password"]
