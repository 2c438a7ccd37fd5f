"""Rules of 2FA, lockout, roles and API keys that a plausible slip in their SQL broke without any
other test noticing: a third mutation round on functions/70-74_auth_*.sql, after
tests/test_auth_mutants.py and tests/test_auth_more_mutants.py (none of their mutants repeated).
Each test here kills one mutant.

The run: 45 mutants, weighted to what lets someone in or leaks (a used TOTP code accepted again,
the TOTP window one step wider, a lockout one failure late, an admin reset kept to the permission,
a revoked, expired or disabled user's session accepted, another user's id or key reached, a
password, API key or master key quoted in an error, a rotation leaving the old master key current
or the fingerprints keyed by it). 35 caught by the tests before this file, 8 holes killed here,
2 equivalent, none left open. A mutant survived the 21 auth, session, scope and key test files
before it counted as a hole, or was caught by the one file named as its killer.

Caught include: the lockout at max_failed_logins + 1; a wrong TOTP code not counted as a failed
login; codes one step further ahead; a used step accepted again (at login, or not recorded there);
a session of a disabled user, or an expired one, logged out; validate_session scoping past its
transaction; a trader reaching another's key with keys:manage; a revoked key revealed; a revoke
that kept the passphrase; user_id_of without its scope; a rotation that kept key_version or the
old fingerprint, retired no version, or accepted the same key; the master key verifier dropped;
the fingerprint check of one user only; a 72-byte password never matching; the symbol class not
counted; a trader refused their own revoke_sessions; secrets quoted in three error messages
(each caught by a test asserting the exact message); confirm_totp not ending the password-only
sessions (test_small_gaps_hunt).

Holes, each killed by one test below: confirm_totp not recording the step it used (its code logs
in again); change_password clearing the step last used (a code logs in twice across a password
change); disable_totp without a password asking only self-or-users:manage (a user with a stolen
session drops their own 2FA); the window starting two steps back; disable_totp asking a code for
an enrollment not yet confirmed; grant_role revoking password-only sessions for every role, not
only the policy's 2FA roles; an admin reset keeping the failed-login count (the next wrong
password locks the account at once); revoke_api_key not idempotent (a second revoke rewrote
revoked_at and recorded a second event).

Equivalent: unlock_user leaving failed_logins as it was (last_failed_at is cleared with it, so
the count starts again at one and auth.user_accounts shows 0); a successful login leaving
last_failed_at (failed_logins is set to 0 with it and locked_until cleared, so nothing reads it).

A boundary is tested inside one transaction, where now() stands still."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from auth_helpers import PASSWORD, acting_as, events, login, make_user, store_key
from test_auth_totp import code_at, db_now, enrolled
from trading_helpers import call, rows

NEW_PASSWORD = "Battery-Staple-77"
USED_CODE = "two-factor code is wrong or was already used"


def expect_sqlstate(sqlstate: str, action: Callable[[], object]) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        action()
    assert caught.value.sqlstate == sqlstate, caught.value.diag.message_primary
    return caught.value


def validate(conn: psycopg.Connection, token: str) -> dict[str, object]:
    return rows(conn, "auth.validate_session", token=token)[0]


# -- 2FA: a code is used once --------------------------------------------------------------------


def test_the_code_that_confirmed_2fa_cannot_log_in_again(auth_db):
    user_id = make_user(auth_db, "alice")
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    with auth_db.transaction():
        # one transaction: now() stands still, so the code is the current step's both times
        code = code_at(enrollment["secret"], db_now(auth_db))
        call(auth_db, "auth.confirm_totp", user_id=user_id, password=PASSWORD, totp_code=code)
        replay = login(auth_db, "alice", totp_code=code)

    assert (replay["success"], replay["message"]) == (False, USED_CODE)


def test_a_code_used_at_login_is_still_used_after_the_user_changes_their_password(auth_db):
    user_id, secret = enrolled(auth_db)
    with auth_db.transaction():
        code = code_at(secret, db_now(auth_db))
        assert login(auth_db, "alice", totp_code=code)["success"] is True
        call(
            auth_db, "auth.change_password", user_id=user_id, new_password=NEW_PASSWORD, old_password=PASSWORD
        )
        # the secret is re-encrypted under the new password, and the step last used stays used
        replay = login(auth_db, "alice", NEW_PASSWORD, totp_code=code)

    assert (replay["success"], replay["message"]) == (False, USED_CODE)


def test_a_user_without_users_manage_turning_off_their_own_2fa_without_the_password_is_refused_42S01(auth_db):
    user_id, _ = enrolled(auth_db)

    # without a password it is an admin reset, for users:manage only, even of one's own 2FA
    with acting_as(auth_db, "spreadedge_app", user_id):
        expect_sqlstate("42S01", lambda: call(auth_db, "auth.disable_totp", user_id=user_id))

    assert auth_db.execute("select totp_enabled_at is not null from auth.users").fetchone() == (True,)


def test_confirming_2fa_with_a_code_two_steps_old_is_refused_with_28S01(auth_db):
    user_id = make_user(auth_db, "alice")
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    with auth_db.transaction():
        # the window is the current step and one either side: 60 seconds old is one step too many
        code = code_at(enrollment["secret"], db_now(auth_db), -2)
        expect_sqlstate(
            "28S01",
            lambda: call(auth_db, "auth.confirm_totp", user_id=user_id, password=PASSWORD, totp_code=code),
        )


def test_a_pending_2fa_enrollment_is_dropped_with_the_password_alone(auth_db):
    user_id = make_user(auth_db, "alice")
    rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)

    # not confirmed, so no code was ever asked at login: none is asked to drop it either
    call(auth_db, "auth.disable_totp", user_id=user_id, password=PASSWORD)

    assert auth_db.execute("select totp_secret from auth.users").fetchone() == (None,)


# -- roles and sessions -------------------------------------------------------------------------------------


def test_granting_a_role_that_needs_no_2fa_keeps_the_users_sessions(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]

    # auth_db's policy has no role that must use 2FA: the grant revokes nothing
    call(auth_db, "auth.grant_role", user_id=user_id, role_name="viewer")

    assert validate(auth_db, token)["roles"] == ["trader", "viewer"]


# -- lockout ----------------------------------------------------------------------------------------


def test_an_admin_password_reset_clears_the_failed_login_count(auth_db):
    user_id = make_user(auth_db, "alice")
    for _ in range(4):
        assert login(auth_db, "alice", "wrong")["success"] is False

    call(auth_db, "auth.change_password", user_id=user_id, new_password=NEW_PASSWORD)

    # 4 of the 5 failures counted before; after the reset a wrong password is the first again
    assert login(auth_db, "alice", "wrong")["success"] is False
    assert auth_db.execute("select failed_logins, locked_until from auth.users").fetchone() == (1, None)


# -- API keys -----------------------------------------------------------------------------------------


def test_revoking_a_revoked_api_key_again_changes_nothing_and_records_nothing(auth_db):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    call(auth_db, "auth.revoke_api_key", key_id=key_id)
    revoked_at = auth_db.execute("select revoked_at from auth.api_keys").fetchone()

    # idempotent: the second call, in a later transaction, keeps when the key was revoked
    call(auth_db, "auth.revoke_api_key", key_id=key_id)

    assert auth_db.execute("select revoked_at from auth.api_keys").fetchone() == revoked_at
    assert [e["details"]["key_id"] for e in events(auth_db, "api_key_revoked")] == [key_id]
