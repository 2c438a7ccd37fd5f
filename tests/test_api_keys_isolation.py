"""Exchange API keys: stores and rotations outside READ COMMITTED, which take turns through the
master key's advisory lock with a snapshot taken before it."""

from __future__ import annotations

import psycopg
import pytest

from auth_helpers import MASTER_KEY, OTHER_MASTER_KEY, make_user, reveal_key, store_key
from trading_helpers import call, race

ISOLATIONS = ["repeatable read", "serializable"]


def in_isolation(isolation, action):
    """action run in an autocommitted statement of this isolation level."""

    def run(conn: psycopg.Connection):
        conn.execute(psycopg.sql.SQL("set default_transaction_isolation = {}").format(isolation))
        return action(conn)

    return run


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_rotation_outside_read_committed_racing_a_store_is_refused_and_loses_no_key(
    auth_db, db_url, isolation
):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    alice_key = store_key(auth_db, alice)
    bob_key, outcome = race(
        auth_db,
        db_url,
        lambda conn: store_key(conn, bob, api_key="AKIA-bob", api_secret="s3cret-bob"),
        in_isolation(
            isolation,
            lambda conn: call(
                conn, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY
            ),
        ),
        must_wait=False,
    )
    # the old code re-encrypted alice's key only (1) and left bob's under the retired master key
    assert isinstance(outcome, psycopg.errors.DataError)
    assert (outcome.sqlstate, outcome.diag.message_primary) == (
        "22S09",
        f"auth.rotate_master_key must run in a READ COMMITTED transaction, not {isolation.upper()}",
    )
    assert auth_db.execute("select key_version, retired_at from auth.master_keys").fetchall() == [(1, None)]
    assert [reveal_key(auth_db, key)["api_secret"] for key in (alice_key, bob_key)] == [
        "s3cret-binance-0001",
        "s3cret-bob",
    ]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_first_store_outside_read_committed_racing_another_is_refused_with_22S09_not_23505(
    auth_db, db_url, isolation
):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    _, outcome = race(
        auth_db,
        db_url,
        lambda conn: store_key(conn, alice),
        in_isolation(isolation, lambda conn: store_key(conn, bob, api_key="AKIA-bob")),
        must_wait=False,
    )
    assert isinstance(outcome, psycopg.errors.DataError)
    assert (outcome.sqlstate, outcome.diag.message_primary) == (
        "22S09",
        f"auth.store_api_key must run in a READ COMMITTED transaction, not {isolation.upper()}",
    )
    assert auth_db.execute("select user_id, key_version from auth.api_keys").fetchall() == [(alice, 1)]


def test_a_store_of_a_key_stored_meanwhile_outside_read_committed_never_shows_its_fingerprint(
    auth_db, db_url
):
    alice, bob = make_user(auth_db, "alice"), make_user(auth_db, "bob")
    store_key(auth_db, alice, api_key="AKIA-first", label="first")
    _, outcome = race(
        auth_db,
        db_url,
        lambda conn: store_key(conn, alice, api_key="AKIA-shared"),
        in_isolation("repeatable read", lambda conn: store_key(conn, bob, api_key="AKIA-shared")),
        must_wait=False,
    )
    # the old code raised a raw 23505 whose detail quoted (exchange_id, fingerprint)
    assert isinstance(outcome, psycopg.Error)
    assert outcome.sqlstate == "22S09"
    assert "fingerprint" not in str(outcome)
    assert auth_db.execute("select count(*) from auth.api_keys where user_id = %s", [bob]).fetchone() == (0,)


def test_a_store_and_a_rotation_in_read_committed_still_work(auth_db):
    key_id = store_key(auth_db, make_user(auth_db, "alice"))
    assert (
        call(auth_db, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=OTHER_MASTER_KEY)
        == 1
    )
    assert reveal_key(auth_db, key_id, OTHER_MASTER_KEY)["api_secret"] == "s3cret-binance-0001"
