"""Two-factor authentication: RFC 6238 codes in SQL, enrollment, login with a code, replays."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from auth_helpers import PASSWORD, events, login, make_user
from trading_helpers import call, rows

RFC_SECRETS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
# RFC 6238 appendix B
RFC_VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("unix_time", "sha1", "sha256", "sha512"), RFC_VECTORS)
def test_totp_code_matches_the_rfc_6238_test_vectors(db, unix_time, sha1, sha256, sha512):
    at = datetime.fromtimestamp(unix_time, UTC)
    for algorithm, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        code = call(db, "auth.totp_code", secret=RFC_SECRETS[algorithm], at=at, digits=8, algorithm=algorithm)
        assert code == expected, algorithm


def test_totp_code_matches_an_independent_implementation(db):
    for _ in range(20):
        secret = secrets.token_bytes(20)
        unix_time = secrets.randbelow(4_000_000_000)
        expected = TOTP(secret, 6, hashes.SHA1(), 30).generate(unix_time).decode()
        assert (
            call(db, "auth.totp_code", secret=secret, at=datetime.fromtimestamp(unix_time, UTC)) == expected
        )


def decode32(secret_base32: str) -> bytes:
    return base64.b32decode(secret_base32 + "=" * (-len(secret_base32) % 8))


def code_at(secret_base32: str, at: datetime, offset_steps: int = 0) -> str:
    key = decode32(secret_base32)
    moment = at + timedelta(seconds=30 * offset_steps)
    return TOTP(key, 6, hashes.SHA1(), 30).generate(moment.timestamp()).decode()


def db_now(conn) -> datetime:
    """The transaction's now(): inside one transaction, the time every TOTP check uses."""
    return conn.execute("select now()").fetchone()[0]


def enrolled(conn, username="alice") -> tuple[int, str]:
    """A user with 2FA enrolled and confirmed; returns (user id, base32 secret)."""
    user_id = make_user(conn, username)
    [enrollment] = rows(conn, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    with conn.transaction():
        call(
            conn,
            "auth.confirm_totp",
            user_id=user_id,
            password=PASSWORD,
            totp_code=code_at(enrollment["secret"], db_now(conn), -1),
        )
    return user_id, enrollment["secret"]


def test_enroll_returns_the_secret_once_with_an_otpauth_uri_and_stores_it_encrypted(auth_db):
    user_id = make_user(auth_db, "alice@desk")
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    secret = enrollment["secret"]
    assert len(decode32(secret)) == 20
    assert enrollment["otpauth_uri"] == (
        f"otpauth://totp/spreadedge:alice%40desk?secret={secret}&issuer=spreadedge&algorithm=SHA1&digits=6&period=30"
    )
    stored = auth_db.execute("select totp_secret, totp_enabled_at from auth.users").fetchone()
    assert stored[1] is None
    assert decode32(secret) not in stored[0]
    assert auth_db.execute("select pgp_sym_decrypt_bytea(%s, %s)", [stored[0], PASSWORD]).fetchone()[0] == (
        decode32(secret)
    )


def test_login_needs_the_code_once_2fa_is_confirmed(auth_db):
    enrolled(auth_db)
    result = login(auth_db, "alice")
    assert (result["success"], result["message"]) == (False, "two-factor code required")


def test_login_with_the_current_code_succeeds(auth_db):
    _, secret = enrolled(auth_db)
    with auth_db.transaction():
        result = login(auth_db, "alice", totp_code=code_at(secret, db_now(auth_db)))
    assert result["success"] is True
    assert [e["details"]["totp"] for e in events(auth_db, "login_succeeded")] == [True]


def test_a_used_code_is_refused_as_a_replay(auth_db):
    _, secret = enrolled(auth_db)
    with auth_db.transaction():
        code = code_at(secret, db_now(auth_db), 1)
        assert login(auth_db, "alice", totp_code=code)["success"] is True
    result = login(auth_db, "alice", totp_code=code)
    assert (result["success"], result["message"]) == (False, "two-factor code is wrong or was already used")


def test_codes_one_step_either_side_are_accepted_and_two_steps_are_not(auth_db):
    user_id = make_user(auth_db, "alice")
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    secret = enrollment["secret"]
    with auth_db.transaction():
        now = db_now(auth_db)
        call(
            auth_db,
            "auth.confirm_totp",
            user_id=user_id,
            password=PASSWORD,
            totp_code=code_at(secret, now, -1),
        )
        assert login(auth_db, "alice", totp_code=code_at(secret, now, 2))["success"] is False
        assert login(auth_db, "alice", totp_code=code_at(secret, now, 1))["success"] is True


def test_wrong_code_counts_as_a_failed_login(auth_db):
    enrolled(auth_db)
    login(auth_db, "alice", totp_code="000000")
    assert auth_db.execute("select failed_logins from auth.users").fetchone()[0] == 1


def test_confirm_with_a_wrong_code_is_refused_with_28S01(auth_db):
    user_id = make_user(auth_db, "alice")
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    with auth_db.transaction():
        wrong = code_at(enrollment["secret"], db_now(auth_db), 5)
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(auth_db, "auth.confirm_totp", user_id=user_id, password=PASSWORD, totp_code=wrong)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S01",
        f"wrong two-factor code for user {user_id}",
    )


def test_confirm_without_enrollment_is_refused_with_55S03(auth_db):
    user_id = make_user(auth_db, "alice")
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(auth_db, "auth.confirm_totp", user_id=user_id, password=PASSWORD, totp_code="123456")
    assert caught.value.sqlstate == "55S03"


def test_enroll_again_while_enabled_is_refused_with_55S03(auth_db):
    user_id, _ = enrolled(auth_db)
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    assert caught.value.sqlstate == "55S03"


def test_enroll_with_a_wrong_password_is_refused_with_28S01(auth_db):
    user_id = make_user(auth_db, "alice")
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        rows(auth_db, "auth.enroll_totp", user_id=user_id, password="wrong")
    assert caught.value.sqlstate == "28S01"


def test_disable_with_password_and_code_turns_2fa_off(auth_db):
    user_id, secret = enrolled(auth_db)
    with auth_db.transaction():
        call(
            auth_db,
            "auth.disable_totp",
            user_id=user_id,
            password=PASSWORD,
            totp_code=code_at(secret, db_now(auth_db), 1),
        )
    assert login(auth_db, "alice")["success"] is True
    assert [e["details"]["reason"] for e in events(auth_db, "totp_disabled")] == ["by user"]


def test_changed_password_keeps_2fa_working(auth_db):
    user_id, secret = enrolled(auth_db)
    call(
        auth_db,
        "auth.change_password",
        user_id=user_id,
        new_password="New-Password-77",
        old_password=PASSWORD,
    )
    with auth_db.transaction():
        result = login(auth_db, "alice", "New-Password-77", totp_code=code_at(secret, db_now(auth_db), 1))
    assert result["success"] is True


def test_password_reset_by_an_admin_drops_2fa(auth_db):
    user_id, _ = enrolled(auth_db)
    call(auth_db, "auth.change_password", user_id=user_id, new_password="New-Password-77")
    assert login(auth_db, "alice", "New-Password-77")["success"] is True
    assert [e["details"]["reason"] for e in events(auth_db, "totp_disabled")] == ["password reset"]


LONGEST_PASSWORD = "Aa1-" + "x" * 68  # 72 bytes: all of it counts for bcrypt


def test_a_72_byte_password_with_more_appended_is_refused_at_login_with_2fa(auth_db):
    user_id = make_user(auth_db, "alice", password=LONGEST_PASSWORD)
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=LONGEST_PASSWORD)
    with auth_db.transaction():
        code = code_at(enrollment["secret"], db_now(auth_db), -1)
        call(auth_db, "auth.confirm_totp", user_id=user_id, password=LONGEST_PASSWORD, totp_code=code)
    with auth_db.transaction():
        result = login(
            auth_db,
            "alice",
            LONGEST_PASSWORD + "tail",
            totp_code=code_at(enrollment["secret"], db_now(auth_db)),
        )
    assert (result["success"], result["message"]) == (
        False,
        "login refused: wrong username or password, or the account is locked or disabled",
    )


def test_enroll_with_a_72_byte_password_and_more_appended_is_refused_with_28S01(auth_db):
    user_id = make_user(auth_db, "alice", password=LONGEST_PASSWORD)
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        rows(auth_db, "auth.enroll_totp", user_id=user_id, password=LONGEST_PASSWORD + "tail")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S01",
        f"wrong password for user {user_id}",
    )
    assert auth_db.execute("select totp_secret from auth.users").fetchone()[0] is None


def test_totp_code_with_a_step_of_zero_seconds_is_refused_with_22S09(db):
    with pytest.raises(psycopg.errors.DataError) as caught:
        call(db, "auth.totp_code", secret=b"12345678901234567890", at=datetime.now(UTC), step_seconds=0)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "the TOTP time step must be a positive number of seconds, got 0",
    )


def test_disable_totp_of_an_unknown_user_without_the_permission_is_refused_with_42S01(auth_db):
    trader = make_user(auth_db, "alice")
    auth_db.execute("select set_config('spreadedge.user_id', %s, false)", [str(trader)])
    with pytest.raises(psycopg.errors.ProgrammingError) as caught:
        call(auth_db, "auth.disable_totp", user_id=trader + 1000)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {trader} lacks the permission users:manage",
    )


def lock_out(conn, username):
    """Fail login as often as the default policy allows (5), which locks the account."""
    for _ in range(5):
        assert login(conn, username, "wrong")["success"] is False


def test_confirm_totp_of_a_locked_account_is_refused_with_28S01_even_with_the_right_code(auth_db):
    user_id = make_user(auth_db, "alice")
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    lock_out(auth_db, "alice")
    with pytest.raises(psycopg.errors.OperationalError) as caught, auth_db.transaction():
        call(
            auth_db,
            "auth.confirm_totp",
            user_id=user_id,
            password=PASSWORD,
            totp_code=code_at(enrollment["secret"], db_now(auth_db)),
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S01",
        f"user {user_id} is locked after too many failed logins",
    )
    assert auth_db.execute("select totp_enabled_at from auth.users").fetchone()[0] is None


def test_disable_totp_of_a_locked_account_is_refused_with_28S01_even_with_the_right_code(auth_db):
    user_id, secret = enrolled(auth_db)
    lock_out(auth_db, "alice")
    with pytest.raises(psycopg.errors.OperationalError) as caught, auth_db.transaction():
        call(
            auth_db,
            "auth.disable_totp",
            user_id=user_id,
            password=PASSWORD,
            totp_code=code_at(secret, db_now(auth_db), 1),
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S01",
        f"user {user_id} is locked after too many failed logins",
    )
    assert auth_db.execute("select totp_enabled_at is not null from auth.users").fetchone()[0] is True


def test_enroll_totp_of_a_disabled_user_is_refused_with_55S04(auth_db):
    user_id = make_user(auth_db, "alice")
    call(auth_db, "auth.disable_user", user_id=user_id)
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "55S04",
        f"user {user_id} is disabled",
    )
    assert auth_db.execute("select totp_secret from auth.users").fetchone()[0] is None


def test_confirm_totp_ignores_spaces_around_the_code_as_login_does(auth_db):
    user_id = make_user(auth_db, "alice")
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    with auth_db.transaction():
        code = code_at(enrollment["secret"], db_now(auth_db))
        call(auth_db, "auth.confirm_totp", user_id=user_id, password=PASSWORD, totp_code=f" {code} ")
    assert auth_db.execute("select totp_enabled_at is not null from auth.users").fetchone()[0] is True
