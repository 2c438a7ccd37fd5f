"""Security regressions: a session revived by enabling its user, policy intervals past the
timestamps' range or with a negative part, and a wrong password answered faster for a known user
than for an unknown one."""

from __future__ import annotations

import time

import psycopg
import pytest

from auth_helpers import disable_directly, events, login, make_user
from trading_helpers import call


def test_enabling_a_user_does_not_revive_a_session_that_ended_when_they_were_disabled(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    disable_directly(auth_db, user_id)  # the session stays unrevoked, but is over
    call(auth_db, "auth.enable_user", user_id=user_id)
    with pytest.raises(psycopg.errors.OperationalError, match="unknown, expired or revoked") as error:
        call(auth_db, "auth.validate_session", token=token)
    assert error.value.sqlstate == "28S02"
    assert [e["details"] for e in events(auth_db, "session_revoked")] == [
        {"sessions": 1, "reason": "user disabled"}
    ]


def test_enabling_a_user_keeps_their_new_logins_working(auth_db):
    user_id = make_user(auth_db, "alice")
    call(auth_db, "auth.disable_user", user_id=user_id)
    call(auth_db, "auth.enable_user", user_id=user_id)
    token = login(auth_db, "alice")["session_token"]
    [row] = auth_db.execute("select user_id from auth.validate_session(%s)", [token]).fetchall()
    assert row == (user_id,)


@pytest.mark.parametrize(
    "setting", ["failed_login_window", "lockout_duration", "session_idle_timeout", "session_max_lifetime"]
)
def test_a_policy_interval_over_100_years_is_refused_with_22S09_naming_it(auth_db, setting):
    # '1000000 years' (a lockout meant as "until an admin unlocks it") is past the timestamps'
    # range once added to now(): the fifth wrong password failed with a bare 22008 and rolled its
    # own count back, so the account never locked
    with pytest.raises(psycopg.Error) as error:
        call(auth_db, "auth.set_security_policy", **{setting: "1000000 years"})
    assert error.value.sqlstate == "22S09"
    assert error.value.diag.message_primary == (
        f"security policy value out of range ({setting} 1000000 years is over 100 years or has a negative part)"
    )


# '1 mon -29 days' compares as 1 day but, added to 1 February, ends before it starts: no lockout,
# or a session expired when it was made
@pytest.mark.parametrize(
    "setting", ["failed_login_window", "lockout_duration", "session_idle_timeout", "session_max_lifetime"]
)
def test_a_policy_interval_with_a_negative_part_is_refused_with_22S09_naming_it(auth_db, setting):
    with pytest.raises(psycopg.Error) as error:
        call(auth_db, "auth.set_security_policy", **{setting: "1 mon -29 days"})
    assert (error.value.sqlstate, error.value.diag.message_primary) == (
        "22S09",
        f"security policy value out of range ({setting} 1 mon -29 days is over 100 years or has a negative part)",
    )


def test_a_lockout_of_100_years_locks_the_account_at_the_threshold(auth_db):
    user_id = make_user(auth_db, "alice")
    call(auth_db, "auth.set_security_policy", lockout_duration="100 years")
    for _ in range(5):
        assert login(auth_db, "alice", "Wrong-Horse-42")["success"] is False
    [(is_locked,)] = auth_db.execute(
        "select is_locked from auth.user_accounts where user_id = %s", [user_id]
    ).fetchall()
    assert is_locked is True


def fastest_refusal(conn: psycopg.Connection, username: str) -> float:
    """The shortest of three refused logins of this username with a wrong password, in seconds."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        assert login(conn, username, "Wrong-Horse-42")["success"] is False
        times.append(time.perf_counter() - start)
    return min(times)


def test_a_wrong_password_of_a_hash_older_than_the_policys_cost_takes_as_long_as_an_unknown_user(auth_db):
    make_user(auth_db, "alice")  # hashed at cost 4, the test policy's
    call(auth_db, "auth.set_security_policy", bcrypt_cost=11)
    known, unknown = fastest_refusal(auth_db, "alice"), fastest_refusal(auth_db, "ghost")
    # without padding, alice's cost-4 hash answered in 1/128 of the unknown user's cost-11 bcrypt
    assert known > unknown / 2, (known, unknown)
