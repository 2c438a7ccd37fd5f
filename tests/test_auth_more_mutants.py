"""Rules of the security policy, users, 2FA, sessions and API keys that a plausible slip in their
SQL broke without any other test noticing: a second mutation round on functions/70-74_auth_*.sql and
05_internal_access.sql, after the first (tests/test_auth_mutants.py). Each test here kills one mutant
(the 32-character master key one kills two: the same rule in internal.check_new_master_key and
internal.current_master_key_version).

The mutation run: 38 mutants tried, 23 caught by the tests before this file (2 of them only by
test_sql_api_fuzz_hunt), 15 survived; 1 of those is equivalent, the other 14 are killed here:
- internal.matching_totp_step accepting codes of 6 or more digits ('^[0-9]{6,}$'): a code of 7
  digits or more still matches no step, since auth.hotp_code makes codes of 6 digits.

A boundary is tested inside one transaction, where now() stands still."""

from __future__ import annotations

import psycopg
import pytest

from auth_helpers import (
    MASTER_KEY,
    OTHER_MASTER_KEY,
    PASSWORD,
    events,
    login,
    make_user,
    reveal_key,
    store_key,
)
from trading_helpers import call, rows


def expect_sqlstate(sqlstate: str, action) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        action()
    assert caught.value.sqlstate == sqlstate, caught.value.diag.message_primary
    return caught.value


def session_expiries(conn) -> list[tuple]:
    return conn.execute(
        "select idle_expires_at, expires_at from auth.sessions order by session_id"
    ).fetchall()


# -- the security policy -------------------------------------------------------------------------


def test_a_shorter_session_lifetime_leaves_a_logged_out_sessions_expiries_as_they_were(auth_db):
    make_user(auth_db, "alice")
    call(auth_db, "auth.logout", token=login(auth_db, "alice")["session_token"])
    ended = session_expiries(auth_db)

    call(auth_db, "auth.set_security_policy", session_idle_timeout="5 minutes", session_max_lifetime="1 hour")

    assert session_expiries(auth_db) == ended


def test_a_null_among_the_roles_that_must_use_2fa_is_refused_with_23S10_and_changes_nothing(auth_db):
    expect_sqlstate(
        "23S10",
        lambda: auth_db.execute(
            "select auth.set_security_policy(totp_required_roles => array['admin', null])"
        ),
    )
    assert auth_db.execute("select totp_required_roles from auth.security_policy").fetchone() == ([],)


# -- users ---------------------------------------------------------------------------------------


def test_a_username_of_64_characters_is_refused_with_22S09_and_one_of_63_is_created(auth_db):
    expect_sqlstate("22S09", lambda: make_user(auth_db, "a" * 64))
    make_user(auth_db, "a" * 63)
    assert auth_db.execute("select length(username) from auth.users").fetchall() == [(63,)]


def test_a_user_with_an_empty_list_of_roles_is_refused_with_22S09_and_not_created(auth_db):
    expect_sqlstate(
        "22S09", lambda: call(auth_db, "auth.create_user", username="alice", password=PASSWORD, roles=[])
    )
    assert auth_db.execute("select count(*) from auth.users").fetchone() == (0,)


# -- lockout ------------------------------------------------------------------------------------


def test_the_failures_that_locked_an_account_do_not_count_toward_the_next_lockout(auth_db):
    make_user(auth_db, "alice")
    for _ in range(5):
        login(auth_db, "alice", "wrong")
    with auth_db.transaction():
        # the lockout over while its failures are still inside the window (a lockout shorter than
        # the window): one more wrong password is the first of a new count, not the sixth
        auth_db.execute("update auth.users set locked_until = now()")
        login(auth_db, "alice", "wrong")
        assert auth_db.execute("select failed_logins, locked_until = now() from auth.users").fetchone() == (
            1,
            True,
        )


def test_unlocking_an_account_that_is_not_locked_records_that_it_was_not(auth_db):
    user_id = make_user(auth_db, "alice")
    call(auth_db, "auth.unlock_user", user_id=user_id)
    assert [e["details"] for e in events(auth_db, "account_unlocked")] == [{"was_locked": False}]


# -- 2FA ----------------------------------------------------------------------------------------


def test_a_hotp_code_of_11_digits_is_refused_with_22S09_and_one_of_10_is_made(auth_db):
    hotp = "select auth.hotp_code(%s, 0, %s)"
    expect_sqlstate("22S09", lambda: auth_db.execute(hotp, [b"12345678901234567890", 11]))
    assert len(auth_db.execute(hotp, [b"12345678901234567890", 10]).fetchone()[0]) == 10


# -- sessions -----------------------------------------------------------------------------------


def test_a_session_carries_its_own_users_permissions_and_not_another_users(auth_db):
    make_user(auth_db, "root1", "admin")
    make_user(auth_db, "vera", "viewer")
    session = rows(auth_db, "auth.validate_session", token=login(auth_db, "vera")["session_token"])[0]
    assert (session["roles"], session["permissions"]) == (
        ["viewer"],
        ["orders:read", "pnl:read", "positions:read"],
    )


# -- API keys -----------------------------------------------------------------------------------


def test_a_master_key_of_exactly_32_characters_stores_and_reveals_a_key(auth_db):
    # 32 is the shortest master key allowed (test_auth_keys refuses shorter ones)
    master_key = "k" * 32
    key_id = store_key(auth_db, make_user(auth_db, "alice"), master_key=master_key)
    assert reveal_key(auth_db, key_id, master_key)["api_key"] == "AKIA-binance-0001"


def test_a_rotation_to_the_same_master_key_is_refused_with_22S09_and_changes_nothing(auth_db):
    store_key(auth_db, make_user(auth_db, "alice"))
    expect_sqlstate(
        "22S09",
        lambda: call(auth_db, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=MASTER_KEY),
    )
    assert auth_db.execute("select key_version, retired_at from auth.master_keys").fetchall() == [(1, None)]


def test_a_session_scoped_to_a_trader_rotating_the_master_key_is_refused_with_42S01(auth_db):
    # keys:manage (a trader's own keys) is not enough: a rotation re-encrypts every user's keys.
    # The function is no application role's; an operator's session scoped to a user is checked
    trader = make_user(auth_db, "alice")
    store_key(auth_db, trader)
    auth_db.execute("select set_config('spreadedge.user_id', %s, false)", [str(trader)])
    try:
        expect_sqlstate(
            "42S01",
            lambda: call(
                auth_db, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY
            ),
        )
    finally:
        auth_db.execute("reset spreadedge.user_id")
    assert auth_db.execute("select key_version from auth.api_keys").fetchall() == [(1,)]


def test_revealing_a_key_stamps_when_it_was_last_revealed(auth_db):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    assert auth_db.execute("select last_revealed_at from auth.api_keys").fetchone() == (None,)
    reveal_key(auth_db, key_id)
    assert auth_db.execute("select last_revealed_at is not null from auth.api_keys").fetchone() == (True,)


def test_an_empty_passphrase_is_stored_as_none_and_revealed_as_none(auth_db):
    # '' is no passphrase: revealed as None, like a key stored without one, not as ''
    key_id = store_key(auth_db, make_user(auth_db, "alice"), passphrase="")
    assert auth_db.execute("select passphrase from auth.api_keys").fetchone() == (None,)
    assert reveal_key(auth_db, key_id)["passphrase"] is None
