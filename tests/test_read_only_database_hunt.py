"""A database that refuses writes, as a real hot standby does (25006, read_only_sql_transaction):
what the history API, the CLI and the notification worker do against one.

The module's primary is a cluster of its own, migrated and seeded with the API's history; the
standby is a ``pg_basebackup -R`` of it on loopback (standby_helpers.hot_standby). A change made on
the primary is waited for on the standby (its replay position) before it is read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from click.testing import CliRunner, Result

from api_fixtures import api_login, assert_unavailable, live_server, seed_history
from auth_helpers import MASTER_KEY
from spreadedge.cli import main
from spreadedge.cluster import Cluster
from spreadedge.migrate import render_migrations
from spreadedge.notify import Worker, configured_channels
from spreadedge.settings import NotifySettings, Settings
from standby_helpers import Standby, hot_standby

READ_ONLY_HINT = "hint: this database is read-only (a standby, or default_transaction_read_only is on): connect to the primary"


@pytest.fixture(scope="module")
def standby(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Standby]:
    """A migrated primary with the API's seeded history, and a hot standby of it (pg_basebackup -R)."""
    with hot_standby(make_cluster, project_settings, seed=seed_history) as replica:
        yield replica


@pytest.fixture(scope="module")
def standby_api(standby: Standby, project_settings: Settings) -> Iterator[str]:
    """The history API served over the standby."""
    with live_server(standby.url, [m.id for m in render_migrations(project_settings)]) as base:
        yield base


def _session(standby: Standby, username: str, *, aged: str | None = None, idle_expired: bool = False) -> str:
    """A session token of ``username`` made on the primary (last used ``aged`` ago, or past its idle
    timeout), replayed on the standby."""
    with psycopg.connect(standby.primary, autocommit=True) as conn:
        [token] = conn.execute(
            "select session_token from auth.login(username => %s, password => 'Correct-Horse-42')", [username]
        ).fetchone()
        if aged is not None:
            conn.execute(
                "update auth.sessions set last_seen_at = last_seen_at - %s::interval"
                " where token_hash = digest(%s, 'sha256')",
                [aged, token],
            )
        if idle_expired:
            conn.execute(
                "update auth.sessions set idle_expires_at = now() - interval '1 second'"
                " where token_hash = digest(%s, 'sha256')",
                [token],
            )
    standby.replay()
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _idle_expiry(url: str, token: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "select idle_expires_at from auth.sessions where token_hash = digest(%s, 'sha256')", [token]
        ).fetchone()


# -- the history API ----------------------------------------------------------------------------


def test_a_read_whose_session_is_due_its_idle_slide_is_answered_on_a_standby(
    standby: Standby, standby_api: str
) -> None:
    # auth.validate_session slides the idle timeout at most once a minute, and the slide's write
    # made every read of a session used for over a minute a 503: after a failover to a standby,
    # or with writes switched off, the API served no reads at all
    token = _session(standby, "alice", aged="2 minutes")
    before = _idle_expiry(standby.url, token)

    response = httpx.get(f"{standby_api}/api/v1/historical/orders", headers=_bearer(token), timeout=30)

    assert response.status_code == 200, response.text
    assert [order["order_id"] for order in response.json()["items"]] == [
        standby.ids[name] for name in ("a4", "a3", "a2", "a1")
    ]
    assert _idle_expiry(standby.url, token) == before


def test_a_session_past_its_idle_timeout_is_still_refused_on_a_standby(
    standby: Standby, standby_api: str
) -> None:
    # the slide skipped on a read-only database must not keep a session alive past its timeout
    token = _session(standby, "bob", aged="2 minutes", idle_expired=True)

    response = httpx.get(f"{standby_api}/api/v1/historical/orders", headers=_bearer(token), timeout=30)

    assert (response.status_code, response.json()["sqlstate"]) == (401, "28S02")


def test_a_login_on_a_standby_is_a_503_problem_with_retry_after(standby_api: str) -> None:
    response = api_login(standby_api, "alice")

    assert_unavailable(
        response,
        "the database is read-only (a standby, or writes are switched off): retry when it takes writes",
        "25006",
    )


def test_a_logout_on_a_standby_is_a_503_and_the_session_stays_live(
    standby: Standby, standby_api: str
) -> None:
    token = _session(standby, "root")

    response = httpx.post(f"{standby_api}/api/v1/auth/logout", headers=_bearer(token), timeout=30)

    assert (response.status_code, response.json()["sqlstate"]) == (503, "25006")
    with psycopg.connect(standby.primary, autocommit=True) as conn:
        assert conn.execute(
            "select revoked_at from auth.sessions where token_hash = digest(%s, 'sha256')", [token]
        ).fetchone() == (None,)


def test_health_of_a_standby_is_503_its_writable_check_saying_reads_go_on(standby_api: str) -> None:
    response = httpx.get(f"{standby_api}/api/v1/historical/health", timeout=30)

    assert response.status_code == 503
    assert {c["name"]: c["detail"] for c in response.json()["checks"] if not c["ok"]} == {
        "writable": "the database is read-only (a standby, or writes are switched off): logins and logouts "
        "fail; reads of live sessions are served"
    }


# -- the CLI ------------------------------------------------------------------------------------


def _invoke(url: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        main, ["--database-url", url, *args], input=input, env={"SPREADEDGE_MASTER_KEY": MASTER_KEY}
    )


def test_pnl_reads_a_standby(standby: Standby) -> None:
    result = _invoke(standby.url, "pnl", "--by", "total")

    assert result.exit_code == 0, result.output
    # unrealized: alice's long 0.2 is marked at the latest fill (no market data), her own 59000
    assert result.output.splitlines()[2].split() == [
        "USDT", "6", "4.2", "249,800.00", "12.10", "0.00", "0.00", "-12.10", "0.00"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        (("metrics", "collect"), "cannot execute INSERT in a read-only transaction"),
        (("alerts", "evaluate"), "cannot execute SELECT in a read-only transaction"),
        (("risk", "set", "alice-arb", "--max-order-notional", "1000"), "cannot execute INSERT in a read-only transaction"),
        (("partitions", "maintain"), "cannot execute UPDATE in a read-only transaction"),
        (("keys", "store", "--user", "alice", "--exchange", "binance", "--label", "main"),
         "cannot execute SELECT FOR UPDATE in a read-only transaction"),
    ],
    ids=["metrics-collect", "alerts-evaluate", "risk-set", "partitions-maintain", "keys-store"],
)  # fmt: skip
def test_a_write_command_on_a_standby_is_one_line_with_the_read_only_hint(
    standby: Standby, args: tuple[str, ...], refused: str
) -> None:
    result = _invoke(standby.url, *args, input="AKIA-key\nthe-secret\n")

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output.splitlines()[-2:] == [f"Error: {refused}", READ_ONLY_HINT]


def test_ingest_on_a_standby_is_one_line_with_the_read_only_hint(standby: Standby, tmp_path) -> None:
    path = tmp_path / "quotes.csv"
    path.write_text(
        "exchange,symbol,quoted_at,bid,bid_size,ask,ask_size\nbinance,BTCUSDT,2026-12-05T12:00:00Z,100,1,101,2\n"
    )

    result = _invoke(standby.url, "ingest", "quotes", str(path))

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output.splitlines()[-2:] == [
        "Error: cannot execute CREATE TABLE in a read-only transaction",
        READ_ONLY_HINT,
    ]


def test_migrate_on_a_standby_says_the_database_is_read_only(standby: Standby) -> None:
    # it said "cannot execute CREATE TABLE in a read-only transaction (SQLSTATE 25006)" alone,
    # where every other command says what to do about it
    result = _invoke(standby.url, "migrate")

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output.splitlines()[-2:] == [
        "Error: spreadedge migrate failed, nothing more was applied: cannot execute CREATE TABLE in a "
        "read-only transaction (SQLSTATE 25006)",
        "HINT: this database is read-only (a standby, or default_transaction_read_only is on): connect to "
        "the primary",
    ]


# -- the notification worker --------------------------------------------------------------------


def test_the_notify_worker_on_a_standby_backs_off_and_keeps_running(
    standby: Standby, caplog: pytest.LogCaptureFixture
) -> None:
    # it raised the LISTEN's 25006 and exited: under a service manager that restarts it, a
    # worker exiting over and over while the database refuses writes
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    settings = NotifySettings(
        webhook_url="http://127.0.0.1:9/hook", webhook_secret="s3cr3t-hmac-key-do-not-log"
    )
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            Worker(standby.url, settings, configured_channels(settings), name="w1").run(
                stop, poll_seconds=0.1
            )
        except BaseException as exc:  # the thread's outcome, asserted below
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for _ in range(600):
            if len(caplog.records) >= 3 or not thread.is_alive():
                break
            threading.Event().wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and failures == []
    assert [record.getMessage() for record in caplog.records[:3]] == [
        "worker w1 cannot claim notifications (cannot execute LISTEN during recovery): the database refuses "
        f"writes (a standby, or default_transaction_read_only is on); trying again in {pause} s"
        for pause in ("0.1", "0.2", "0.4")
    ]
