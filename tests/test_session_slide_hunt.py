"""A session's idle slide never makes another request of the session wait.

auth.validate_session slides a session's idle timeout at most once a minute, a write. Every request
of the session due that slide used to wait for the row lock of the one sliding it: while a slide's
transaction stayed open, or its commit waited for a synchronous standby gone, each was cancelled at
the API's statement deadline (a 503), and concurrent requests at the minute serialised. Now they
skip the slide and are answered from the session as read, writing nothing; a revocation, a logout
or a policy change is still waited for, and never undone. Requests run with a lock_timeout, so the
old code fails with 55P03 instead of hanging; every wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from auth_helpers import age_session, login, make_user
from db_fixtures import _seed
from spreadedge.cluster import Cluster
from spreadedge.settings import Settings
from syncrep_helpers import CAP, in_thread, stalled_cluster, waiting_pid
from trading_helpers import call, rows, waits_for_a_lock

# why: a request that waits for another's slide fails at once (55P03) instead of after the bound
REQUEST_OPTIONS = "-c lock_timeout=2s"
REFUSED = ("28S02", "the session is unknown, expired or revoked")


def _due_session(conn: psycopg.Connection, username: str, *roles: str) -> tuple[str, int]:
    """A session token of a new user ``username`` (a trader, or of ``roles``) last used 2 minutes
    ago (its slide is due), and the user's id."""
    user_id = make_user(conn, username, *roles)
    token = login(conn, username)["session_token"]
    age_session(conn, user_id, "2 minutes")
    return token, user_id


def _request(url: str) -> psycopg.Connection:
    """A connection as the API's: autocommit, here with a lock_timeout."""
    return psycopg.connect(url, autocommit=True, options=REQUEST_OPTIONS)


def _validate(conn: psycopg.Connection, token: str) -> dict[str, Any]:
    return rows(conn, "auth.validate_session", token=token)[0]


def _refusal(conn: psycopg.Connection, token: str) -> tuple[str | None, str | None]:
    with pytest.raises(psycopg.Error) as refused:
        _validate(conn, token)
    return refused.value.sqlstate, refused.value.diag.message_primary


def _idle_expiry(conn: psycopg.Connection, token: str) -> datetime:
    return conn.execute(
        "select idle_expires_at from auth.sessions where token_hash = digest(%s, 'sha256')", [token]
    ).fetchone()[0]


def _revocation(conn: psycopg.Connection, token: str) -> tuple[str | None, datetime]:
    return conn.execute(
        "select revoked_reason, idle_expires_at from auth.sessions where token_hash = digest(%s, 'sha256')",
        [token],
    ).fetchone()


def test_a_request_due_its_slide_is_answered_at_once_while_another_request_of_its_session_slides(
    auth_db, db_url
):
    token, user_id = _due_session(auth_db, "bob")
    with psycopg.connect(db_url) as sliding, _request(db_url) as request:
        _validate(sliding, token)  # slides; its transaction stays open
        answered = _validate(request, token)  # was 55P03: it waited for the slide's row lock
        slid = _idle_expiry(sliding, token)
        sliding.commit()
    assert (answered["user_id"], answered["username"]) == (user_id, "bob")
    assert _idle_expiry(auth_db, token) == slid


def test_a_request_that_skips_the_slide_takes_no_transaction_id(auth_db, db_url):
    # a transaction that wrote nothing commits without waiting for a WAL flush or a standby
    token, _ = _due_session(auth_db, "bob")
    with psycopg.connect(db_url) as sliding, _request(db_url) as request:
        _validate(sliding, token)
        with request.transaction():
            _validate(request, token)  # was 55P03
            assigned = request.execute("select pg_current_xact_id_if_assigned()").fetchone()
        sliding.rollback()
    assert assigned == (None,)


def test_a_slide_rolled_back_is_made_by_the_next_request(auth_db, db_url):
    token, _ = _due_session(auth_db, "bob")
    before = _idle_expiry(auth_db, token)
    with psycopg.connect(db_url) as sliding, _request(db_url) as request:
        _validate(sliding, token)
        _validate(request, token)  # skips the slide under way (was 55P03)
        sliding.rollback()
        assert _idle_expiry(request, token) == before
        _validate(request, token)
        assert _idle_expiry(request, token) > before


def test_a_revocation_waiting_behind_a_slide_ends_the_session_when_the_slide_commits(auth_db, db_url):
    token, user_id = _due_session(auth_db, "bob")
    with (
        psycopg.connect(db_url) as sliding,
        psycopg.connect(db_url, autocommit=True) as revoking,
        _request(db_url) as request,
        ThreadPoolExecutor(1) as pool,
    ):
        _validate(sliding, token)
        slid = _idle_expiry(sliding, token)
        revoked = pool.submit(call, revoking, "auth.revoke_sessions", user_id=user_id)
        try:
            assert waits_for_a_lock(auth_db, revoking.info.backend_pid, ended=revoked.done)
            # the revocation is not committed: the request is answered as before it (was 55P03)
            assert _validate(request, token)["username"] == "bob"
        finally:
            sliding.commit()
        assert revoked.result(timeout=30) == 1
        assert _refusal(request, token) == REFUSED
    assert _revocation(auth_db, token) == ("revoked", slid)


def test_a_slide_waiting_for_a_policy_change_never_brings_back_a_session_revoked_meanwhile(auth_db, db_url):
    token, user_id = _due_session(auth_db, "bob")
    before = _idle_expiry(auth_db, token)
    with (
        psycopg.connect(db_url) as changing,
        psycopg.connect(db_url, autocommit=True) as sliding,
        _request(db_url) as request,
        ThreadPoolExecutor(1) as pool,
    ):
        call(changing, "auth.set_security_policy", bcrypt_cost=4)  # holds the policy until commit

        def slide() -> object:
            try:
                return _validate(sliding, token)
            except psycopg.Error as exc:
                return exc

        waiting = pool.submit(slide)
        try:
            assert waits_for_a_lock(auth_db, sliding.info.backend_pid, ended=waiting.done)
            assert _validate(request, token)["username"] == "bob"  # was 55P03: it waited for the policy
            assert call(auth_db, "auth.revoke_sessions", user_id=user_id) == 1
            assert _refusal(request, token) == REFUSED
        finally:
            changing.commit()
        outcome = waiting.result(timeout=30)
    assert isinstance(outcome, psycopg.Error)
    assert (outcome.sqlstate, outcome.diag.message_primary) == REFUSED
    assert _revocation(auth_db, token) == ("revoked", before)


def test_a_transaction_that_slid_its_session_changes_the_policy_while_another_request_of_it_runs(
    auth_db, db_url
):
    # the second request waited for the first's row lock holding the policy's key share lock, which
    # the policy change waits for: PostgreSQL aborted one of the two (40P01)
    token, _ = _due_session(auth_db, "carol", "admin")
    with (
        psycopg.connect(db_url) as changing,
        _request(db_url) as request,
        ThreadPoolExecutor(1) as pool,
    ):
        _validate(changing, token)  # slides; scopes the transaction to carol, who has policy:manage
        answer = pool.submit(_validate, request, token)
        waits_for_a_lock(auth_db, request.info.backend_pid, ended=answer.done)
        call(changing, "auth.set_security_policy", session_idle_timeout="20 minutes")
        changing.commit()
        answered = answer.result(timeout=30)
    assert answered["username"] == "carol"
    assert auth_db.execute(
        "select idle_expires_at - last_seen_at from auth.sessions where token_hash = digest(%s, 'sha256')",
        [token],
    ).fetchone() == (timedelta(minutes=20),)


# --- a slide whose commit waits for a synchronous standby gone -----------------------------------


def _seed_with_cheap_logins(conn: psycopg.Connection) -> None:
    _seed(conn)
    conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")


@pytest.fixture(scope="module")
def stalled(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated, seeded cluster of this module's own whose writes' commits wait for a standby
    that never comes (synchronous_standby_names 'nobody'); stopped at the end of the module."""
    with stalled_cluster(make_cluster, project_settings, _seed_with_cheap_logins) as cluster:
        yield cluster


def _answered_without_waiting_for_the_standby(
    monitor: psycopg.Connection, conn: psycopg.Connection, token: str
) -> dict[str, Any]:
    """The validation of ``token`` on ``conn`` (autocommit); a commit of it that comes to wait for
    the standby is cancelled and fails the test, as does one not answered within CAP."""
    pid = conn.info.backend_pid
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(_validate, conn, token)
        deadline = time.monotonic() + CAP
        waited = False
        while not answer.done() and time.monotonic() < deadline:
            waited = monitor.execute(
                "select exists (select from pg_stat_activity where pid = %s and wait_event = 'SyncRep')",
                [pid],
            ).fetchone()[0]
            if waited:
                break
            time.sleep(0.05)
        if not answer.done():
            monitor.execute("select pg_cancel_backend(%s)", [pid])
        result = answer.result(timeout=CAP)
    assert not waited, "the request's commit waited for the synchronous standby"
    return result


def test_a_request_due_its_slide_is_answered_while_another_slide_of_its_session_waits_for_the_standby(
    stalled: Cluster,
):
    url = stalled.url()
    with psycopg.connect(url, autocommit=True, options="-c synchronous_commit=local") as setup:
        token, user_id = _due_session(setup, "bob")
        before = _idle_expiry(setup, token)
        with psycopg.connect(url, autocommit=True) as sliding, _request(url) as request:
            slide = in_thread(lambda: _validate(sliding, token))
            try:
                # the slide is committed here, but holds the session until a standby confirms it
                assert waiting_pid(setup, sliding.info.backend_pid, CAP) is not None
                # was 55P03: it waited for the slide's row lock (then, sliding itself, for the standby)
                answered = _answered_without_waiting_for_the_standby(setup, request, token)
            finally:
                setup.execute("select pg_cancel_backend(%s)", [sliding.info.backend_pid])
                slide.join(CAP)
        assert (answered["user_id"], answered["username"]) == (user_id, "bob")
        assert _idle_expiry(setup, token) > before  # the waiting slide, committed locally
