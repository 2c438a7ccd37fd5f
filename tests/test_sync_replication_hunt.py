"""A primary whose synchronous standby went away, for real: every commit that writes waits for it.

The cluster of this module has ``synchronous_standby_names = 'nobody'`` and no standby at all, so a
commit is written on the primary and then waits (wait event SyncRep) for ever: statement_timeout
does not end the wait, a cancel does, and PostgreSQL then warns that the transaction "has already
committed locally". Seeding runs with ``synchronous_commit = local``. Every wait is bounded (a hang
is a failure, never a stuck run), and no assertion is about speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from db_fixtures import _seed
from ops_helpers import cli
from spreadedge import managers
from spreadedge.cluster import Cluster
from spreadedge.managers import ManagerConfig, OrderRequest, PersistentOrderManager
from spreadedge.settings import Settings
from syncrep_helpers import CAP, in_thread, stalled_cluster, wait_for, waiting_pid

PROJECT = Path(__file__).resolve().parents[1]
CLI = "from spreadedge.cli import main; main()"
CALL_TIMEOUT = 3.0

ORDER = OrderRequest(
    strategy="alpha",
    exchange="binance",
    symbol="BTCUSDT",
    side="buy",
    quantity=Decimal("0.01"),
    price=Decimal("60000"),
)


@pytest.fixture(scope="module")
def stalled(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated, seeded cluster of this module's own whose commits wait for a standby that never
    comes: every session sees synchronous_standby_names 'nobody' and a write's commit waits; stopped
    at the end of the module."""
    with stalled_cluster(make_cluster, project_settings, _seed) as cluster:
        yield cluster


def _cancel_commit_of(url: str, app: str) -> int:
    """Cancel the wait of the commit of application ``app`` for the standby (it waits for it first)."""
    with psycopg.connect(url, autocommit=True) as conn:
        pid = waiting_pid(conn, None, CAP, app)
        assert pid is not None, f"{app} never waited for the synchronous standby"
        conn.execute("select pg_cancel_backend(%s)", [pid])
        return pid


def _rows(url: str, query: str, params: list[object]) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def _config(url: str, project_settings: Settings, app: str) -> ManagerConfig:
    return ManagerConfig(
        database_url=f"{url}&application_name={app}",
        actor="syncrep",
        settings=project_settings,
        min_connections=1,
        max_connections=1,
        call_timeout=CALL_TIMEOUT,
    )


# --- health -------------------------------------------------------------------------------------


# The commits waiting right now, as the check names them (pg_cron's launcher may be one), read in
# the same statement as the report: a transaction sees one snapshot of pg_stat_activity.
_REPORT_AND_WAITING = (
    "select ops.health_report(), (select coalesce(format('%s commits waiting, committed here but not confirmed"
    " by a standby (pids %s)', count(*), string_agg(pid::text, ', ' order by pid)), 'no commit waiting right"
    " now') from pg_stat_activity where wait_event = 'SyncRep' having count(*) > 0)"
)


def _check_and_waiting(conn: psycopg.Connection) -> tuple[dict[str, object], str]:
    report, waiting = conn.execute(_REPORT_AND_WAITING).fetchone()
    check = next(c for c in report["checks"] if c["name"] == "synchronous_standby")
    return check, waiting or "no commit waiting right now"


def _detail(required: int, names: str, waiting: str) -> str:
    return (
        f"commits wait for a synchronous standby: 0 streaming, {required} required (synchronous_standby_names "
        f"'{names}'); {waiting}. Bring the standby back, or let commits go on without it: ALTER SYSTEM RESET "
        "synchronous_standby_names; SELECT pg_reload_conf()"
    )


def test_health_fails_synchronous_standby_when_commits_wait_for_one_that_is_not_there(
    stalled: Cluster,
) -> None:
    with psycopg.connect(stalled.url()) as conn:
        check, waiting = _check_and_waiting(conn)
    assert check == {"name": "synchronous_standby", "ok": False, "detail": _detail(1, "nobody", waiting)}


def test_health_names_the_commits_waiting_for_the_synchronous_standby(stalled: Cluster) -> None:
    with psycopg.connect(stalled.url(), autocommit=True) as conn, psycopg.connect(stalled.url()) as writer:
        writer.execute("create temp table waiting (x integer)")
        committing = in_thread(writer.commit)
        try:
            pid = waiting_pid(conn, writer.info.backend_pid, CAP)
            assert pid is not None
            with conn.transaction():
                check, waiting = _check_and_waiting(conn)
        finally:
            conn.execute("select pg_cancel_backend(%s)", [writer.info.backend_pid])
            committing.join(CAP)
    assert str(pid) in waiting.split("(pids ")[1].rstrip(")").split(", ")
    assert check["detail"] == _detail(1, "nobody", waiting)


def _standby_names(url: str, names: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("alter system set synchronous_standby_names = {}").format(names))
        conn.execute("select pg_reload_conf()")

        def seen() -> bool:
            with psycopg.connect(url, autocommit=True) as fresh:
                return fresh.execute("show synchronous_standby_names").fetchone() == (names,)

        wait_for(seen, f"synchronous_standby_names never became {names!r}")


def test_health_synchronous_standby_requires_the_n_of_first_n(stalled: Cluster) -> None:
    url = stalled.url()
    _standby_names(url, "FIRST 2 (a, b, c)")
    try:
        with psycopg.connect(url) as conn:
            check, waiting = _check_and_waiting(conn)
    finally:
        _standby_names(url, "nobody")
    assert (check["ok"], check["detail"]) == (False, _detail(2, "FIRST 2 (a, b, c)", waiting))


def test_spreadedge_health_answers_and_fails_while_commits_wait(stalled: Cluster) -> None:
    # health only reads: its transactions commit without waiting for the standby
    result = cli("health", "--json", database_url=stalled.url())
    assert result.exit_code == 1, result.output
    checks = {c["name"]: c["ok"] for c in json.loads(result.output)["checks"]}
    assert (checks["synchronous_standby"], checks["writable"]) == (False, True)


# --- the CLI ------------------------------------------------------------------------------------


def test_ctrl_c_of_a_cli_write_waiting_for_the_standby_says_it_is_committed(stalled: Cluster) -> None:
    # why it matters: it said "any transaction in progress was rolled back" of a risk limit that the
    # server had committed (the cancel ends only the commit's wait for the standby)
    url = stalled.url()
    env = {
        **os.environ,
        "SPREADEDGE_PROJECT_DIR": str(PROJECT),
        "DATABASE_URL": f"{url}&application_name=cli-risk",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "risk", "set", "beta", "--max-open-orders", "7"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        with psycopg.connect(url, autocommit=True) as watcher:
            assert waiting_pid(watcher, None, CAP, "cli-risk") is not None
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        out, err = process.communicate(timeout=CAP)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (process.returncode, out.decode(), err.decode()) == (
        -signal.SIGINT,
        "",
        "\ninterrupted while the commit waited for a synchronous standby (synchronous_standby_names): the "
        "transaction is committed on the database server, but no synchronous standby has confirmed it, so a "
        "failover before one does could lose it; see spreadedge health\n",
    )
    limits = _rows(
        url,
        "select l.max_open_orders from monitor.risk_limits l join trading.strategies s using (strategy_id)"
        " where s.name = 'beta'",
        [],
    )
    assert limits == [(7,)]


# --- the managers -------------------------------------------------------------------------------


def test_a_placement_whose_commit_wait_an_operator_cancels_returns_the_placed_order(
    stalled: Cluster, project_settings: Settings
) -> None:
    url = stalled.url()
    order = replace(ORDER, client_order_id="sync-cancelled-1")

    async def run() -> managers.Order:
        async with PersistentOrderManager(_config(url, project_settings, "mgr-cancel")) as manager:
            call = asyncio.create_task(manager.place_order(order))
            await asyncio.to_thread(_cancel_commit_of, url, "mgr-cancel")
            return await asyncio.wait_for(call, CAP)

    placed = asyncio.run(run())
    assert placed.client_order_id == "sync-cancelled-1"
    assert _rows(
        url, "select order_id from trading.orders where client_order_id = %s", ["sync-cancelled-1"]
    ) == [(placed.order_id,)]


def test_a_placement_given_up_in_its_commit_wait_may_be_committed_and_its_retry_returns_the_one_order(
    stalled: Cluster, project_settings: Settings
) -> None:
    url = stalled.url()
    order = replace(ORDER, client_order_id="sync-retried-1")

    async def run() -> tuple[managers.DatabaseUnavailable, managers.Order]:
        async with PersistentOrderManager(_config(url, project_settings, "mgr-retry")) as manager:
            with pytest.raises(managers.DatabaseUnavailable) as caught:
                await asyncio.wait_for(manager.place_order(order), CALL_TIMEOUT + CAP)
            # the server process still waits for the standby: the operator cancels its wait, and the
            # order, committed all along, is seen; the retry (a read) does not wait for the standby
            await asyncio.to_thread(_cancel_commit_of, url, "mgr-retry")
            retried = await asyncio.wait_for(manager.place_order(order), CAP)
            return caught.value, retried

    error, retried = asyncio.run(run())
    assert (type(error), error.maybe_committed, error.sqlstate) == (managers.DatabaseTimeout, True, None)
    assert _rows(
        url, "select order_id from trading.orders where client_order_id = %s", ["sync-retried-1"]
    ) == [(retried.order_id,)]


def test_a_fill_given_up_in_its_commit_wait_is_maybe_committed_and_is_committed(
    stalled: Cluster, project_settings: Settings
) -> None:
    url = stalled.url()
    with psycopg.connect(url) as conn:
        conn.execute("set synchronous_commit = local")
        order_id = conn.execute(
            "select trading.place_order(strategy => 'alpha', exchange => 'binance', symbol => 'BTCUSDT',"
            " side => 'buy', quantity => 0.02, price => 60000, client_order_id => 'sync-fill-1')"
        ).fetchone()[0]

    async def run() -> managers.DatabaseUnavailable:
        async with PersistentOrderManager(_config(url, project_settings, "mgr-fill")) as manager:
            with pytest.raises(managers.DatabaseUnavailable) as caught:
                fill = manager.record_fill(order_id, "sync-trade-1", Decimal("0.01"), Decimal("60000"))
                await asyncio.wait_for(fill, CALL_TIMEOUT + CAP)
            # the operator cancels the wait of its server process: the fill was committed all along
            await asyncio.to_thread(_cancel_commit_of, url, "mgr-fill")
            return caught.value

    error = asyncio.run(run())
    assert (type(error), error.maybe_committed) == (managers.DatabaseTimeout, True)
    wait_for(
        lambda: bool(_rows(url, "select 1 from trading.trades where exchange_trade_id = 'sync-trade-1'", [])),
        "the fill whose wait was cancelled was never seen",
    )
    assert _rows(url, "select quantity from trading.trades where exchange_trade_id = 'sync-trade-1'", []) == [
        (Decimal("0.01"),)
    ]
