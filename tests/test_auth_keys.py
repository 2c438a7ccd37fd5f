"""Exchange API keys: encrypted storage, duplicates, reveal by the engine only, master key rotation."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from auth_helpers import MASTER_KEY, OTHER_MASTER_KEY, acting_as, events, make_user, reveal_key, store_key
from trading_helpers import call, race, rows, waits_for_a_lock


def corrupt_a_secret(conn, key_id):
    """Replace a key's secret with one the master key cannot decrypt (a row restored from another
    database, or damaged)."""
    conn.execute(
        "update auth.api_keys set api_secret = pgp_sym_encrypt('x', 'a-key-nobody-uses-0123456789-abcdef')"
        " where key_id = %s",
        [key_id],
    )


def ciphertexts(conn):
    return conn.execute(
        "select api_key, api_secret, passphrase, fingerprint from auth.api_keys order by key_id"
    ).fetchall()


def test_stored_key_is_aes256_ciphertext_that_the_master_key_decrypts(auth_db):
    user_id = make_user(auth_db, "alice")
    store_key(auth_db, user_id, passphrase="pass-phrase-1")
    api_key, api_secret, passphrase, _ = ciphertexts(auth_db)[0]
    assert b"AKIA-binance-0001" not in api_key and b"s3cret-binance-0001" not in api_secret
    decrypted = auth_db.execute(
        "select pgp_sym_decrypt(%s, %s), pgp_sym_decrypt(%s, %s), pgp_sym_decrypt(%s, %s)",
        [api_key, MASTER_KEY, api_secret, MASTER_KEY, passphrase, MASTER_KEY],
    ).fetchone()
    assert decrypted == ("AKIA-binance-0001", "s3cret-binance-0001", "pass-phrase-1")
    # a new-format OpenPGP symmetric-key session packet (tag 3), version 4, cipher 9 = AES-256
    assert (api_secret[0], api_secret[2], api_secret[3]) == (0xC0 | 3, 4, 9)


def test_engine_reveals_the_key_and_the_reveal_is_audited(auth_db):
    user_id = make_user(auth_db, "alice")
    key_id = store_key(auth_db, user_id, passphrase="pass-phrase-1", permissions=["read"])
    assert reveal_key(auth_db, key_id) == {
        "exchange": "binance",
        "label": "main",
        "api_key": "AKIA-binance-0001",
        "api_secret": "s3cret-binance-0001",
        "passphrase": "pass-phrase-1",
        "permissions": ["read"],
    }
    [event] = events(auth_db, "api_key_revealed")
    assert (event["user_id"], event["details"], event["db_role"]) == (
        user_id,
        {"key_id": key_id, "key_version": 1},
        "spreadedge",
    )


def test_app_role_cannot_reveal_keys(auth_db):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    with acting_as(auth_db, "spreadedge_app"), pytest.raises(psycopg.errors.InsufficientPrivilege):
        rows(auth_db, "auth.reveal_api_key", key_id=key_id, master_key=MASTER_KEY)


def test_same_key_twice_on_one_exchange_is_refused_with_23S08(auth_db):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    store_key(auth_db, alice)
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        store_key(auth_db, bob, label="copy")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S08",
        "this API key is already stored for exchange binance",
    )
    assert store_key(auth_db, bob, exchange="okx") > 0


def test_wrong_master_key_on_reveal_is_refused_with_28S03(auth_db):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        reveal_key(auth_db, key_id, OTHER_MASTER_KEY)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S03",
        "the master key is not master key version 1, which the API keys are encrypted under",
    )


def test_wrong_master_key_on_store_is_refused_once_a_key_exists(auth_db):
    user_id = make_user(auth_db, "alice")
    store_key(auth_db, user_id)
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        store_key(auth_db, user_id, api_key="other", label="second", master_key=OTHER_MASTER_KEY)
    assert caught.value.sqlstate == "28S03"
    assert auth_db.execute("select count(*) from auth.api_keys").fetchone()[0] == 1


def test_short_master_key_is_refused_with_22S09(auth_db):
    with pytest.raises(psycopg.errors.DataError) as caught:
        store_key(auth_db, make_user(auth_db, "alice"), master_key="short")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "the master key must be at least 32 characters",
    )


def test_rotation_re_encrypts_every_key_under_the_new_master_key(auth_db):
    user_id = make_user(auth_db, "alice")
    first = store_key(auth_db, user_id)
    second = store_key(auth_db, user_id, api_key="AKIA-okx-0002", exchange="okx", passphrase="okx-pass")
    before = ciphertexts(auth_db)
    assert (
        call(auth_db, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY)
        == 2
    )
    after = ciphertexts(auth_db)
    assert all(
        b != a for old, new in zip(before, after, strict=True) for b, a in zip(old, new, strict=True) if b
    )
    assert reveal_key(auth_db, first, OTHER_MASTER_KEY)["api_key"] == "AKIA-binance-0001"
    assert reveal_key(auth_db, second, OTHER_MASTER_KEY)["passphrase"] == "okx-pass"
    with pytest.raises(psycopg.errors.OperationalError, match="master key version 2"):
        reveal_key(auth_db, first, MASTER_KEY)
    assert auth_db.execute("select array_agg(key_version) from auth.api_keys").fetchone()[0] == [2, 2]
    [event] = events(auth_db, "master_key_rotated")
    assert event["details"] == {"from_version": 1, "to_version": 2, "keys": 2}


def test_rotation_with_a_wrong_old_key_changes_nothing(auth_db):
    store_key(auth_db, make_user(auth_db, "alice"))
    before = ciphertexts(auth_db)
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(
            auth_db,
            "auth.rotate_master_key",
            old_master_key=OTHER_MASTER_KEY,
            new_master_key=OTHER_MASTER_KEY + "x",
        )
    assert caught.value.sqlstate == "28S03"
    assert ciphertexts(auth_db) == before
    assert auth_db.execute("select key_version, retired_at from auth.master_keys").fetchall() == [(1, None)]


def test_duplicate_detection_still_works_after_rotation(auth_db):
    user_id = make_user(auth_db, "alice")
    store_key(auth_db, user_id)
    call(auth_db, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY)
    with pytest.raises(psycopg.errors.IntegrityError, match="already stored"):
        store_key(auth_db, user_id, label="again", master_key=OTHER_MASTER_KEY)


def test_revoked_key_cannot_be_revealed(auth_db):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    call(auth_db, "auth.revoke_api_key", key_id=key_id)
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        reveal_key(auth_db, key_id)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S09",
        f"API key {key_id} is revoked",
    )


def test_a_revoked_keys_ciphertexts_are_wiped_and_its_fingerprint_kept(auth_db):
    # a key revoked here may still be live at its exchange: its ciphertext stayed in every dump
    key_id = store_key(auth_db, make_user(auth_db, "alice"), exchange="okx", passphrase="okx-pass")
    call(auth_db, "auth.revoke_api_key", key_id=key_id)
    assert auth_db.execute(
        "select api_key, api_secret, passphrase, length(fingerprint) from auth.api_keys where key_id = %s",
        [key_id],
    ).fetchone() == (b"", b"", None, 32)


def test_rotation_re_encrypts_the_live_keys_and_passes_a_revoked_one_by(auth_db):
    user_id = make_user(auth_db, "alice")
    live = store_key(auth_db, user_id)
    call(
        auth_db,
        "auth.revoke_api_key",
        key_id=store_key(auth_db, user_id, api_key="AKIA-okx-0002", exchange="okx"),
    )
    assert (
        call(auth_db, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY)
        == 1
    )
    assert reveal_key(auth_db, live, OTHER_MASTER_KEY)["api_key"] == "AKIA-binance-0001"


def test_a_trader_cannot_reveal_or_revoke_another_traders_key(auth_db):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    key_id = store_key(auth_db, alice)
    with acting_as(auth_db, "spreadedge_engine", bob), pytest.raises(psycopg.errors.IntegrityError) as caught:
        rows(auth_db, "auth.reveal_api_key", key_id=key_id, master_key=MASTER_KEY)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S09",
        f"API key {key_id} does not exist",
    )
    with acting_as(auth_db, "spreadedge_app", bob), pytest.raises(psycopg.errors.IntegrityError):
        call(auth_db, "auth.revoke_api_key", key_id=key_id)


def test_a_trader_stores_keys_only_for_themselves(auth_db):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    with acting_as(auth_db, "spreadedge_app", bob):
        assert store_key(auth_db, bob) > 0
        with pytest.raises(psycopg.errors.ProgrammingError) as caught:
            store_key(auth_db, alice, api_key="other", label="x")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {bob} lacks the permission keys:all",
    )


def test_api_key_list_shows_a_trader_only_their_own_keys(auth_db):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    store_key(auth_db, alice)
    store_key(auth_db, bob, api_key="AKIA-bob", label="bob-main")
    with acting_as(auth_db, "spreadedge_app", alice):
        assert auth_db.execute("select user_id, label from auth.api_key_list").fetchall() == [(alice, "main")]
        assert auth_db.execute("select user_id from auth.api_keys").fetchall() == [(alice,)]
    admin = make_user(auth_db, "root", "admin")
    with acting_as(auth_db, "spreadedge_app", admin):
        assert auth_db.execute("select count(*) from auth.api_key_list").fetchone()[0] == 2


def test_a_store_racing_the_first_store_under_another_master_key_is_refused_with_28S03(auth_db, db_url):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    _, outcome = race(
        auth_db,
        db_url,
        lambda conn: store_key(conn, alice),
        lambda conn: store_key(conn, bob, api_key="AKIA-bob", master_key=OTHER_MASTER_KEY),
    )
    assert isinstance(outcome, psycopg.errors.OperationalError)
    assert (outcome.sqlstate, outcome.diag.message_primary) == (
        "28S03",
        "the master key is not master key version 1, which the API keys are encrypted under",
    )
    assert auth_db.execute("select key_version from auth.master_keys").fetchall() == [(1,)]


def test_a_store_racing_the_first_store_under_the_same_master_key_succeeds(auth_db, db_url):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    _, outcome = race(
        auth_db,
        db_url,
        lambda conn: store_key(conn, alice),
        lambda conn: store_key(conn, bob, api_key="AKIA-bob"),
    )
    assert isinstance(outcome, int)
    assert auth_db.execute("select user_id, key_version from auth.api_keys order by key_id").fetchall() == [
        (alice, 1),
        (bob, 1),
    ]


def test_a_store_racing_a_rotation_under_the_old_key_is_refused_with_28S03(auth_db, db_url):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    store_key(auth_db, alice)
    _, outcome = race(
        auth_db,
        db_url,
        lambda conn: call(
            conn, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY
        ),
        lambda conn: store_key(conn, bob, api_key="AKIA-bob"),
    )
    assert isinstance(outcome, psycopg.errors.OperationalError)
    assert (outcome.sqlstate, outcome.diag.message_primary) == (
        "28S03",
        "the master key is not master key version 2, which the API keys are encrypted under",
    )
    assert auth_db.execute("select user_id, key_version from auth.api_keys").fetchall() == [(alice, 2)]


def test_reveal_of_a_key_the_master_key_cannot_decrypt_is_refused_with_28S03(auth_db):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    corrupt_a_secret(auth_db, key_id)
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        reveal_key(auth_db, key_id)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S03",
        f"API key {key_id} cannot be decrypted with this master key",
    )
    assert events(auth_db, "api_key_revealed") == []


def test_rotation_over_a_key_the_old_master_key_cannot_decrypt_is_refused_with_28S03(auth_db):
    user_id = make_user(auth_db, "alice")
    store_key(auth_db, user_id)
    corrupt_a_secret(auth_db, store_key(auth_db, user_id, api_key="AKIA-okx-0002", exchange="okx"))
    before = ciphertexts(auth_db)
    with pytest.raises(psycopg.errors.OperationalError) as caught:
        call(auth_db, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "28S03",
        "a stored API key cannot be decrypted with the old master key; nothing was changed",
    )
    assert ciphertexts(auth_db) == before
    assert auth_db.execute("select key_version, retired_at from auth.master_keys").fetchall() == [(1, None)]


def test_a_key_of_a_disabled_user_is_not_revealed(auth_db):
    user_id = make_user(auth_db, "alice")
    key_id = store_key(auth_db, user_id)
    call(auth_db, "auth.disable_user", user_id=user_id)
    with pytest.raises(psycopg.OperationalError) as caught:
        reveal_key(auth_db, key_id)
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_detail) == (
        "55S04",
        f"user {user_id} is disabled",
        f"API key {key_id} belongs to a disabled user and cannot be revealed.",
    )
    assert events(auth_db, "api_key_revealed") == []


def test_a_reveal_waiting_for_a_rotation_holds_no_key_row_so_the_two_never_deadlock(auth_db, db_url):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    outcome: list[Any] = []

    def reveal_now(conn: psycopg.Connection) -> None:
        try:
            outcome.append(reveal_key(conn, key_id)["api_key"])
        except Exception as exc:  # asserted on below
            outcome.append(exc)

    with psycopg.connect(db_url) as rotation, psycopg.connect(db_url, autocommit=True) as engine:
        # a rotation's order: the master key's locks first, then every key row
        rotation.execute("select pg_advisory_xact_lock(hashtext('spreadedge.master_keys'))")
        rotation.execute("select from auth.master_keys where retired_at is null for update")
        thread = threading.Thread(target=reveal_now, args=(engine,))
        thread.start()
        assert waits_for_a_lock(auth_db, engine.info.backend_pid)
        rotation.execute("update auth.api_keys set rotated_at = now() where key_id = %s", [key_id])
        rotation.commit()
        thread.join(timeout=30)
    assert outcome == ["AKIA-binance-0001"]


def test_a_revoked_keys_label_takes_a_new_key(auth_db):
    user_id = make_user(auth_db, "alice")
    old = store_key(auth_db, user_id, label="main")
    call(auth_db, "auth.revoke_api_key", key_id=old)
    new = store_key(auth_db, user_id, api_key="AKIA-binance-0002", label="main")
    assert reveal_key(auth_db, new)["api_key"] == "AKIA-binance-0002"
    assert auth_db.execute(
        "select key_id, revoked_at is not null from auth.api_keys where label = 'main' order by key_id"
    ).fetchall() == [(old, True), (new, False)]


def test_a_revoked_key_may_be_stored_again_but_not_twice_live(auth_db):
    user_id = make_user(auth_db, "alice")
    call(auth_db, "auth.revoke_api_key", key_id=store_key(auth_db, user_id))
    again = store_key(auth_db, user_id, label="restored")
    assert reveal_key(auth_db, again)["api_key"] == "AKIA-binance-0001"
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        store_key(auth_db, user_id, label="third")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S08",
        "this API key is already stored for exchange binance",
    )


def test_a_live_label_is_still_taken(auth_db):
    user_id = make_user(auth_db, "alice")
    store_key(auth_db, user_id, label="main")
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        store_key(auth_db, user_id, api_key="AKIA-binance-0002", label="main")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S06",
        f'user {user_id} already has an API key labelled "main" on binance',
    )


@pytest.mark.parametrize("master_key", [MASTER_KEY + "\n", " " + MASTER_KEY, MASTER_KEY + "\t"])
def test_a_first_master_key_with_white_space_at_an_end_is_refused_with_22S09(auth_db, master_key):
    with pytest.raises(psycopg.errors.DataError) as caught:
        store_key(auth_db, make_user(auth_db, "alice"), master_key=master_key)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "the master key starts or ends with white space",
    )
    assert auth_db.execute("select count(*) from auth.master_keys").fetchone()[0] == 0


def test_rotation_to_a_new_master_key_with_white_space_at_an_end_is_refused_with_22S09(auth_db):
    store_key(auth_db, make_user(auth_db, "alice"))
    before = ciphertexts(auth_db)
    with pytest.raises(psycopg.errors.DataError) as caught:
        call(
            auth_db,
            "auth.rotate_master_key",
            old_master_key=MASTER_KEY,
            new_master_key=OTHER_MASTER_KEY + "\n",
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "the new master key starts or ends with white space",
    )
    assert ciphertexts(auth_db) == before


def test_rotation_to_a_short_new_master_key_names_the_new_key(auth_db):
    store_key(auth_db, make_user(auth_db, "alice"))
    with pytest.raises(psycopg.errors.DataError) as caught:
        call(auth_db, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key="short")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "the new master key must be at least 32 characters",
    )
