"""More edges of the security functions: a TOTP code typed as an authenticator shows it, a role
that needs 2FA granted to a user with password-only sessions, an API key given with white space."""

from __future__ import annotations

import psycopg
import pytest

from auth_helpers import MASTER_KEY, events, login, make_user
from test_auth_totp import code_at, db_now, enrolled
from trading_helpers import call


def test_a_totp_code_typed_in_two_groups_as_authenticators_show_it_is_accepted_at_login(auth_db):
    _, secret = enrolled(auth_db)
    with auth_db.transaction():
        code = code_at(secret, db_now(auth_db), 1)
        result = login(auth_db, "alice", totp_code=f"{code[:3]} {code[3:]}")
    assert (result["success"], result["message"]) == (True, "logged in")
    assert auth_db.execute("select failed_logins from auth.users").fetchone()[0] == 0


def test_a_totp_code_pasted_with_a_newline_is_accepted_at_login(auth_db):
    _, secret = enrolled(auth_db)
    with auth_db.transaction():
        result = login(auth_db, "alice", totp_code=code_at(secret, db_now(auth_db), 1) + "\n")
    assert (result["success"], result["message"]) == (True, "logged in")


def test_a_totp_code_of_white_space_only_is_no_code_and_not_a_failed_login(auth_db):
    enrolled(auth_db)
    result = login(auth_db, "alice", totp_code="\t\n")
    assert (result["success"], result["message"]) == (False, "two-factor code required")
    assert auth_db.execute("select failed_logins from auth.users").fetchone()[0] == 0
    assert [e["details"] for e in events(auth_db, "login_failed")] == [{"reason": "totp required"}]


def session_is_live(conn: psycopg.Connection, token: str) -> bool:
    try:
        with conn.transaction():
            call(conn, "auth.validate_session", token=token)
    except psycopg.Error as exc:
        assert exc.sqlstate == "28S02"
        return False
    return True


def test_granting_a_role_that_must_use_2fa_revokes_the_users_password_only_session(auth_db):
    auth_db.execute("select auth.set_security_policy(totp_required_roles => '{admin}')")
    user_id = make_user(auth_db, "bob")
    token = login(auth_db, "bob")["session_token"]

    call(auth_db, "auth.grant_role", user_id=user_id, role_name="admin")

    assert session_is_live(auth_db, token) is False
    assert auth_db.execute("select revoked_reason from auth.sessions").fetchall() == [("2FA required",)]
    assert [e["details"] for e in events(auth_db, "session_revoked")] == [
        {"sessions": 1, "reason": "2FA required"}
    ]


def test_granting_a_role_that_must_use_2fa_keeps_a_session_logged_in_with_a_code(auth_db):
    auth_db.execute("select auth.set_security_policy(totp_required_roles => '{admin}')")
    user_id, secret = enrolled(auth_db)
    with auth_db.transaction():
        token = login(auth_db, "alice", totp_code=code_at(secret, db_now(auth_db), 1))["session_token"]

    call(auth_db, "auth.grant_role", user_id=user_id, role_name="admin")

    assert session_is_live(auth_db, token) is True
    assert events(auth_db, "session_revoked") == []


def test_a_policy_making_a_role_use_2fa_revokes_its_users_password_only_sessions(auth_db):
    make_user(auth_db, "bob", "trader")
    make_user(auth_db, "vera", "viewer")
    trader_token = login(auth_db, "bob")["session_token"]
    viewer_token = login(auth_db, "vera")["session_token"]

    auth_db.execute("select auth.set_security_policy(totp_required_roles => '{admin,trader}')")

    assert (session_is_live(auth_db, trader_token), session_is_live(auth_db, viewer_token)) == (False, True)
    assert [e["details"] for e in events(auth_db, "session_revoked")] == [
        {"sessions": 1, "reason": "2FA required"}
    ]


def test_an_api_key_ending_in_a_newline_is_refused_with_22S09_not_stored_beside_the_same_key(auth_db):
    user_id = make_user(auth_db, "alice")
    arguments = {
        "user_id": user_id,
        "exchange": "binance",
        "api_secret": "s3cret-0001",
        "master_key": MASTER_KEY,
    }
    call(auth_db, "auth.store_api_key", label="main", api_key="AKIA-binance-0001", **arguments)

    with pytest.raises(psycopg.Error) as caught:
        call(auth_db, "auth.store_api_key", label="copy", api_key="AKIA-binance-0001\n", **arguments)

    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary == "the API key starts or ends with white space"
    assert auth_db.execute("select label from auth.api_keys").fetchall() == [("main",)]
