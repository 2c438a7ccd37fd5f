"""Users and passwords: bcrypt hashes, the password policy, changes, resets, disable and unlock."""

from __future__ import annotations

import psycopg
import pytest

from auth_helpers import PASSWORD, events, login, make_user
from trading_helpers import call


def user_row(conn, user_id):
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("select * from auth.users where user_id = %s", [user_id]).fetchone()


def test_create_user_stores_a_bcrypt_hash_at_the_policy_cost_never_the_password(auth_db):
    user_id = make_user(auth_db, "alice")
    row = user_row(auth_db, user_id)
    assert row["password_hash"].startswith("$2a$04$")
    assert PASSWORD not in row["password_hash"]
    assert auth_db.execute(
        "select crypt(%s, %s) = %s", [PASSWORD, row["password_hash"], row["password_hash"]]
    ).fetchone()[0]


def test_create_user_grants_the_roles_and_records_an_event(auth_db):
    user_id = make_user(auth_db, "alice", "trader", "viewer")
    assert auth_db.execute("select roles from auth.user_accounts where user_id = %s", [user_id]).fetchone()[
        0
    ] == [
        "trader",
        "viewer",
    ]
    [event] = events(auth_db, "user_created")
    assert (event["user_id"], event["username"], event["details"]) == (
        user_id,
        "alice",
        {"roles": ["trader", "viewer"]},
    )


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Short-1a", "the password is shorter than 12 characters"),
        ("alllowercaseletters", "the password mixes 1 of the 3 character classes the policy asks for"),
        ("lowercase-and-dashes", "the password mixes 2 of the 3 character classes the policy asks for"),
        ("Aa1-" * 19, "the password is longer than 72 bytes, which bcrypt cannot use in full"),
    ],
)
def test_weak_password_is_refused_with_22S11_and_no_user_is_written(auth_db, password, message):
    with pytest.raises(psycopg.errors.DataError) as caught:
        make_user(auth_db, "alice", password=password)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S11", message)
    assert auth_db.execute("select count(*) from auth.users").fetchone()[0] == 0


def test_policy_length_and_classes_are_what_the_policy_table_says(auth_db):
    auth_db.execute("select auth.set_security_policy(password_min_length => 20, password_min_classes => 4)")
    with pytest.raises(psycopg.errors.DataError, match="shorter than 20 characters"):
        make_user(auth_db, "alice", password="Abcdefgh-123456")
    with pytest.raises(psycopg.errors.DataError, match="mixes 3 of the 4"):
        make_user(auth_db, "alice", password="Abcdefghijk123456789")
    assert make_user(auth_db, "alice", password="Abcdefghijk-23456789") > 0


def test_username_is_unique_without_regard_to_case(auth_db):
    make_user(auth_db, "Alice")
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        make_user(auth_db, "alice")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S11",
        'username "alice" is taken',
    )


def test_unknown_role_is_refused_with_23S10(auth_db):
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        make_user(auth_db, "alice", "wizard")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S10",
        'role "wizard" does not exist',
    )
    assert auth_db.execute("select count(*) from auth.users").fetchone()[0] == 0


def test_bad_username_is_refused_with_22S09(auth_db):
    with pytest.raises(psycopg.errors.DataError) as caught:
        make_user(auth_db, "al ice")
    assert caught.value.sqlstate == "22S09"


def test_change_password_with_the_old_one_switches_logins_and_revokes_sessions(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    call(
        auth_db,
        "auth.change_password",
        user_id=user_id,
        new_password="New-Password-77",
        old_password=PASSWORD,
    )
    assert login(auth_db, "alice")["success"] is False
    assert login(auth_db, "alice", "New-Password-77")["success"] is True
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(auth_db, "auth.validate_session", token=token)
    assert caught.value.sqlstate == "28S02"
    assert [e["details"] for e in events(auth_db, "password_changed")] == [{"reset": False}]


def test_change_password_with_a_wrong_old_one_is_refused_with_28S01(auth_db):
    user_id = make_user(auth_db, "alice")
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(
            auth_db,
            "auth.change_password",
            user_id=user_id,
            new_password="New-Password-77",
            old_password="nope",
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S01",
        f"wrong password for user {user_id}",
    )
    assert login(auth_db, "alice")["success"] is True


def test_new_password_equal_to_the_current_one_is_refused(auth_db):
    user_id = make_user(auth_db, "alice")
    with pytest.raises(psycopg.errors.DataError) as caught:
        call(auth_db, "auth.change_password", user_id=user_id, new_password=PASSWORD, old_password=PASSWORD)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S11",
        "the new password is the current one",
    )


def test_disabled_user_cannot_log_in_and_loses_sessions(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    call(auth_db, "auth.disable_user", user_id=user_id)
    assert login(auth_db, "alice")["success"] is False
    with pytest.raises(psycopg.errors.OperationalError, match="unknown, expired or revoked"):
        call(auth_db, "auth.validate_session", token=token)
    call(auth_db, "auth.enable_user", user_id=user_id)
    assert login(auth_db, "alice")["success"] is True


def test_user_id_of_an_unknown_username_raises_23S07(auth_db):
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        call(auth_db, "auth.user_id_of", username="ghost")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S07",
        'user "ghost" does not exist',
    )


def test_policy_change_is_recorded_with_old_and_new_values(auth_db):
    auth_db.execute("select auth.set_security_policy(max_failed_logins => 3)")
    event = events(auth_db, "policy_changed")[-1]
    assert (event["details"]["old"]["max_failed_logins"], event["details"]["new"]["max_failed_logins"]) == (
        5,
        3,
    )


def test_policy_value_out_of_range_is_refused_with_22S09(auth_db):
    with pytest.raises(psycopg.errors.DataError) as caught:
        auth_db.execute("select auth.set_security_policy(bcrypt_cost => 3)")
    assert caught.value.sqlstate == "22S09"
    assert auth_db.execute("select bcrypt_cost from auth.security_policy").fetchone()[0] == 4


def test_policy_minimum_password_length_over_72_is_refused_with_22S09(auth_db):
    with pytest.raises(psycopg.errors.DataError) as caught:
        auth_db.execute("select auth.set_security_policy(password_min_length => 73)")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "security policy value out of range (password_min_length 73 is over 72, the most bcrypt uses)",
    )
    assert auth_db.execute("select password_min_length from auth.security_policy").fetchone()[0] == 12


def test_role_grant_and_revoke_change_permissions_and_are_recorded(auth_db):
    user_id = make_user(auth_db, "alice", "viewer")
    call(auth_db, "auth.grant_role", user_id=user_id, role_name="trader")
    call(auth_db, "auth.grant_role", user_id=user_id, role_name="trader")  # idempotent: no second event
    call(auth_db, "auth.revoke_role", user_id=user_id, role_name="viewer")
    assert auth_db.execute("select roles from auth.user_accounts").fetchone()[0] == ["trader"]
    assert [e["details"] for e in events(auth_db, "role_granted")] == [{"role": "trader"}]
    assert [e["details"] for e in events(auth_db, "role_revoked")] == [{"role": "viewer"}]


def test_a_trader_cannot_manage_users(auth_db):
    trader = make_user(auth_db, "alice")
    auth_db.execute("select set_config('spreadedge.user_id', %s, false)", [str(trader)])
    with pytest.raises(psycopg.errors.ProgrammingError) as caught:
        make_user(auth_db, "mallory", "admin")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {trader} lacks the permission users:manage",
    )


def test_secret_columns_are_left_out_of_the_audit_log(auth_db):
    user_id = make_user(auth_db, "alice")
    [row] = auth_db.execute(
        "select new_row from audit.log where table_name = 'auth.users' and operation = 'INSERT'"
    ).fetchall()
    assert row[0]["user_id"] == user_id
    assert "password_hash" not in row[0] and "totp_secret" not in row[0] and row[0]["username"] == "alice"


def lock_out(conn, username):
    """Fail login as often as the default policy allows (5), which locks the account."""
    for _ in range(5):
        assert login(conn, username, "wrong")["success"] is False


def test_change_password_of_a_locked_account_is_refused_with_28S01_even_with_the_right_old_password(auth_db):
    user_id = make_user(auth_db, "alice")
    lock_out(auth_db, "alice")
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(
            auth_db,
            "auth.change_password",
            user_id=user_id,
            new_password="New-Password-77",
            old_password=PASSWORD,
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S01",
        f"user {user_id} is locked after too many failed logins",
    )
    call(auth_db, "auth.unlock_user", user_id=user_id)
    assert login(auth_db, "alice")["success"] is True


def test_change_password_of_a_disabled_user_is_refused_with_55S04(auth_db):
    user_id = make_user(auth_db, "alice")
    call(auth_db, "auth.disable_user", user_id=user_id)
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(
            auth_db,
            "auth.change_password",
            user_id=user_id,
            new_password="New-Password-77",
            old_password=PASSWORD,
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "55S04",
        f"user {user_id} is disabled",
    )
    call(auth_db, "auth.enable_user", user_id=user_id)
    assert login(auth_db, "alice")["success"] is True
