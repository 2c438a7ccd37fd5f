"""Rules of login, lockout, sessions, 2FA, API keys and the scope checks that a plausible slip in
their SQL (a boundary flipped, a condition dropped, a permission check lost) broke without any
other test noticing: each test here kills one such mutant of functions/70-74_auth_*.sql or
05_internal_access.sql.

The mutation run: 60 mutants tried, 34 caught by the tests before this file, 26 survived; 3 of
those are equivalent (no behaviour can tell them apart), the other 23 are killed here:
- session_is_live with "now() <= expires_at", and revoke_user_sessions without
  "now() < expires_at": a session's idle expiry is never later than its expiry (the
  table's check), so the idle-expiry test decides alone;
- auth.login's idle expiry now() + idle_timeout without least(..., lifetime): the policy's check
  keeps the idle timeout at most the lifetime.

A boundary is tested inside one transaction, where now() stands still: a lockout, a session or a
failed-login window that ends at now() itself is over (every rule says "later than now()")."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from auth_helpers import PASSWORD, acting_as, events, login, make_user, reveal_key, store_key
from test_auth_totp import code_at, db_now, enrolled
from trading_helpers import call, list_okx_btc_spot, rows


def expect_sqlstate(sqlstate: str, action) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        action()
    assert caught.value.sqlstate == sqlstate, caught.value.diag.message_primary
    return caught.value


def session_times(conn) -> tuple:
    return conn.execute(
        "select created_at, last_seen_at, idle_expires_at, expires_at from auth.sessions order by session_id"
    ).fetchone()


def validate(conn, token: str) -> dict:
    return rows(conn, "auth.validate_session", token=token)[0]


# -- the security policy -------------------------------------------------------------------------


def test_a_minimum_password_length_of_72_bytes_bcrypts_limit_itself_is_accepted(auth_db):
    # over 72 is refused (test_auth_users); 72 is the longest minimum a password can still meet
    policy = rows(auth_db, "auth.set_security_policy", password_min_length=72)[0]
    assert policy["password_min_length"] == 72


def test_a_longer_session_lifetime_given_with_a_shorter_idle_timeout_extends_no_live_session(auth_db):
    make_user(auth_db, "alice")
    login(auth_db, "alice")
    _, last_seen, _, expires = session_times(auth_db)

    # the shorter idle timeout shortens the session; the longer lifetime must not lengthen it
    call(
        auth_db,
        "auth.set_security_policy",
        session_idle_timeout="10 minutes",
        session_max_lifetime="24 hours",
    )

    assert session_times(auth_db)[2:] == (last_seen + timedelta(minutes=10), expires)


# -- lockout ------------------------------------------------------------------------------------


def test_an_account_whose_lockout_ends_at_this_very_moment_logs_in(auth_db):
    make_user(auth_db, "alice")
    with auth_db.transaction():
        auth_db.execute(
            "update auth.users set locked_until = now(), last_failed_at = now() - interval '30 minutes'"
        )
        assert login(auth_db, "alice")["success"] is True


def test_user_accounts_shows_an_account_whose_lockout_ends_at_this_very_moment_as_unlocked(auth_db):
    make_user(auth_db, "alice")
    with auth_db.transaction():
        auth_db.execute(
            "update auth.users set locked_until = now(), last_failed_at = now() - interval '30 minutes'"
        )
        assert auth_db.execute("select is_locked from auth.user_accounts").fetchone() == (False,)


def test_failures_exactly_one_window_old_no_longer_count_toward_a_lockout(auth_db):
    make_user(auth_db, "alice")
    with auth_db.transaction():
        # 4 failures, the last exactly 15 minutes (the default window) ago: the 5th starts again at 1
        auth_db.execute(
            "update auth.users set failed_logins = 4, last_failed_at = now() - interval '15 minutes'"
        )
        login(auth_db, "alice", "wrong")
        assert auth_db.execute("select failed_logins, locked_until from auth.users").fetchone() == (1, None)


def test_user_accounts_shows_no_failed_logins_exactly_one_window_after_the_last(auth_db):
    make_user(auth_db, "alice")
    with auth_db.transaction():
        auth_db.execute(
            "update auth.users set failed_logins = 4, last_failed_at = now() - interval '15 minutes'"
        )
        assert auth_db.execute("select failed_logins from auth.user_accounts").fetchone() == (0,)


# -- sessions -----------------------------------------------------------------------------------


def test_a_session_whose_idle_timeout_ends_at_this_very_moment_is_refused_with_28S02(auth_db):
    make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]

    def validate_at_the_idle_expiry():
        with auth_db.transaction():
            auth_db.execute("update auth.sessions set idle_expires_at = now()")
            validate(auth_db, token)

    expect_sqlstate("28S02", validate_at_the_idle_expiry)


def test_revoking_a_users_sessions_leaves_a_logged_out_session_as_it_ended(auth_db):
    user_id = make_user(auth_db, "alice")
    call(auth_db, "auth.logout", token=login(auth_db, "alice")["session_token"])
    ended = auth_db.execute("select revoked_at, revoked_reason from auth.sessions").fetchone()

    assert call(auth_db, "auth.revoke_sessions", user_id=user_id) == 0
    assert auth_db.execute("select revoked_at, revoked_reason from auth.sessions").fetchone() == ended


def test_a_trader_revoking_another_users_sessions_is_refused_with_42S01_and_revokes_none(auth_db):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    bobs = login(auth_db, "bob")["session_token"]
    with acting_as(auth_db, "spreadedge_app", alice):
        expect_sqlstate("42S01", lambda: call(auth_db, "auth.revoke_sessions", user_id=bob))
    assert validate(auth_db, bobs)["user_id"] == bob


def test_a_session_logged_in_with_a_code_as_2fa_was_confirmed_survives_a_grant_of_a_2fa_role(auth_db):
    user_id = make_user(auth_db, "alice")
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    call(auth_db, "auth.set_security_policy", totp_required_roles=["viewer"])
    with auth_db.transaction():
        # the confirmation and the login in one transaction: the session is created at the very
        # moment 2FA was confirmed, and was logged in with a code
        now = db_now(auth_db)
        call(
            auth_db,
            "auth.confirm_totp",
            user_id=user_id,
            password=PASSWORD,
            totp_code=code_at(enrollment["secret"], now, -1),
        )
        token = login(auth_db, "alice", totp_code=code_at(enrollment["secret"], now))["session_token"]

    call(auth_db, "auth.grant_role", user_id=user_id, role_name="viewer")

    assert validate(auth_db, token)["roles"] == ["trader", "viewer"]


# -- users ---------------------------------------------------------------------------------------


def test_user_accounts_shows_a_scoped_trader_their_own_account(auth_db):
    alice = make_user(auth_db, "alice")
    make_user(auth_db, "bob")
    with acting_as(auth_db, "spreadedge_app", alice):
        assert auth_db.execute("select user_id, username from auth.user_accounts").fetchall() == [
            (alice, "alice")
        ]


def test_user_id_of_finds_another_user_for_a_session_with_users_manage(auth_db):
    admin = make_user(auth_db, "root1", "admin")
    bob = make_user(auth_db, "bob")
    with acting_as(auth_db, "spreadedge_app", admin):
        assert call(auth_db, "auth.user_id_of", username="BOB") == bob


def test_an_admin_password_reset_lifts_a_lockout(auth_db):
    user_id = make_user(auth_db, "alice")
    for _ in range(5):
        login(auth_db, "alice", "wrong")

    call(auth_db, "auth.change_password", user_id=user_id, new_password="Brand-New-Pass-77")

    assert login(auth_db, "alice", "Brand-New-Pass-77")["success"] is True


# -- 2FA ----------------------------------------------------------------------------------------


def test_confirming_2fa_that_is_already_enabled_is_refused_with_55S03(auth_db):
    user_id, secret = enrolled(auth_db)

    def confirm_again():
        with auth_db.transaction():
            call(
                auth_db,
                "auth.confirm_totp",
                user_id=user_id,
                password=PASSWORD,
                totp_code=code_at(secret, db_now(auth_db), 1),
            )

    expect_sqlstate("55S03", confirm_again)


def test_disabling_2fa_with_the_password_but_no_code_is_refused_with_28S01(auth_db):
    user_id, _ = enrolled(auth_db)
    expect_sqlstate("28S01", lambda: call(auth_db, "auth.disable_totp", user_id=user_id, password=PASSWORD))
    assert auth_db.execute("select totp_enabled_at is not null from auth.users").fetchone() == (True,)


# -- API keys -----------------------------------------------------------------------------------


def test_revealing_a_key_before_any_is_stored_is_refused_with_28S03_and_makes_no_master_key(auth_db):
    expect_sqlstate("28S03", lambda: reveal_key(auth_db, 1))
    assert auth_db.execute("select count(*) from auth.master_keys").fetchone() == (0,)


def test_storing_a_key_for_a_disabled_user_is_refused_with_55S04(auth_db):
    user_id = make_user(auth_db, "alice")
    call(auth_db, "auth.disable_user", user_id=user_id)
    expect_sqlstate("55S04", lambda: store_key(auth_db, user_id))
    assert auth_db.execute("select count(*) from auth.api_keys").fetchone() == (0,)


def test_a_viewer_storing_a_key_of_their_own_is_refused_with_42S01(auth_db):
    # keys:manage is needed for one's own keys too; a viewer has not got it
    viewer = make_user(auth_db, "vera", "viewer")
    with acting_as(auth_db, "spreadedge_app", viewer):
        expect_sqlstate("42S01", lambda: store_key(auth_db, viewer))


def test_a_label_of_101_characters_is_refused_with_22S09_and_one_of_100_is_stored(auth_db):
    user_id = make_user(auth_db, "alice")
    expect_sqlstate("22S09", lambda: store_key(auth_db, user_id, label="L" * 101))
    store_key(auth_db, user_id, label="L" * 100)
    assert auth_db.execute("select length(label) from auth.api_keys").fetchall() == [(100,)]


def test_a_key_may_be_stored_with_the_withdraw_permission(auth_db):
    user_id = make_user(auth_db, "alice")
    store_key(auth_db, user_id, permissions=["withdraw", "read"])
    assert auth_db.execute("select permissions from auth.api_keys").fetchone() == (["read", "withdraw"],)


def test_a_user_with_keys_all_revokes_another_users_key(auth_db):
    alice, admin = make_user(auth_db, "alice"), make_user(auth_db, "root1", "admin")
    key_id = store_key(auth_db, alice)
    with acting_as(auth_db, "spreadedge_app", admin):
        call(auth_db, "auth.revoke_api_key", key_id=key_id)
    assert auth_db.execute("select revoked_at is not null from auth.api_keys").fetchone() == (True,)


# -- scope --------------------------------------------------------------------------------------


def test_a_user_with_strategies_all_reports_every_users_spread_trades(desks, auth_db):
    # strategies:all makes every strategy in scope; a report filtered by the scope check must not
    # read that as "none"
    list_okx_btc_spot(auth_db)
    for name in ("alice", "bob"):
        call(auth_db, "trading.open_spread_trade", strategy=f"{name}-arb", symbol="BTC/USDT",
             buy_exchange="binance", sell_exchange="okx", quantity=1, buy_price=100, sell_price=101)  # fmt: skip
    auditor = make_user(auth_db, "audrey", "auditor")
    with acting_as(auth_db, "spreadedge_readonly", auditor):
        report = sorted(r["strategy_name"] for r in rows(auth_db, "trading.spread_trade_pnl"))
    assert report == ["alice-arb", "bob-arb"]


# -- security events ----------------------------------------------------------------------------


def test_an_empty_actor_setting_records_the_scoped_user_as_the_actor(auth_db):
    # a custom setting set once in a connection reads '' after it is reset: no actor given
    alice = make_user(auth_db, "alice")
    login(auth_db, "alice")
    auth_db.execute("set spreadedge.actor = ''")
    with acting_as(auth_db, "spreadedge_app", alice):
        call(auth_db, "auth.revoke_sessions", user_id=alice)
    assert [e["actor"] for e in events(auth_db, "session_revoked")] == [f"user:{alice}"]
