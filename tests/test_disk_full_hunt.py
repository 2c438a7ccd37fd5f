"""The disk fills up during trading: what the SQL API, the CLI, ingest, the history API and health
do when the server cannot write (53100, disk_full), and when its pg_wal fills (a PANIC).

The module's cluster lives on file systems of its own (tests/disk_helpers.py; root only: the
module skips elsewhere): its data directory on a small ext4 image, its pg_wal on a small tmpfs,
each filled with a ballast file written as the server's user, and unmounted at the end of the
module, whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from api_fixtures import api_login, assert_unavailable, live_server
from auth_helpers import make_user
from db_fixtures import _seed
from disk_helpers import Disks, disk_cluster, requires_root
from spreadedge.cli import main
from spreadedge.ingest import DISK_FULL_HINT, IngestError, ingest
from spreadedge.migrate import render_migrations
from spreadedge.ops import health
from spreadedge.settings import Settings

pytestmark = requires_root

TICKS_HEADER = "exchange,symbol,traded_at,exchange_trade_id,price,quantity,side\n"


def _seed_with_alice(conn: psycopg.Connection) -> None:
    _seed(conn)
    conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
    make_user(conn, "alice", "trader")


@pytest.fixture(scope="module")
def disks(project_settings: Settings) -> Iterator[Disks]:
    with disk_cluster(project_settings, _seed_with_alice) as cluster_disks:
        yield cluster_disks


def _place(conn: psycopg.Connection, client_order_id: str) -> int:
    [order_id] = conn.execute(
        "select trading.place_order(strategy => 'alpha', exchange => 'binance', symbol => 'BTCUSDT',"
        " side => 'buy', quantity => 0.2, price => 100, client_order_id => %s)",
        [client_order_id],
    ).fetchone()
    return order_id


def _fill(conn: psycopg.Connection, order_id: int, trade_id: str) -> int:
    [trade] = conn.execute(
        "select trading.record_fill(order_id => %s, exchange_trade_id => %s, quantity => 0.2, price => 100,"
        " fee => 0.02)",
        [order_id, trade_id],
    ).fetchone()
    return trade


def _counts(conn: psycopg.Connection) -> tuple[int, ...]:
    row = conn.execute(
        "select (select count(*) from trading.trades), (select count(*) from trading.positions),"
        " (select count(*) from trading.daily_pnl), (select count(*) from trading.hourly_pnl),"
        " (select count(*) from audit.log), (select count(*) from trading.orders)"
    ).fetchone()
    return tuple(row)


# -- the SQL API --------------------------------------------------------------------------------


def test_a_fill_on_a_full_disk_writes_nothing_and_records_once_when_space_returns(disks: Disks) -> None:
    with psycopg.connect(disks.url, autocommit=True) as conn:
        order_id = _place(conn, "disk-1")
        before = _counts(conn)
        with disks.full(disks.data), pytest.raises(psycopg.errors.DiskFull) as refused:
            _fill(conn, order_id, "disk-fill-1")
        assert refused.value.sqlstate == "53100"
        assert _counts(conn) == before

        trade_id = _fill(conn, order_id, "disk-fill-1")
        assert _fill(conn, order_id, "disk-fill-1") == trade_id  # delivered again: recorded once
        assert conn.execute(
            "select count(*) from trading.trades where exchange_trade_id = 'disk-fill-1'"
        ).fetchone() == (1,)
        assert conn.execute(
            "select quantity, avg_entry_price, fees_paid, realized_pnl from trading.get_position("
            "strategy => 'alpha', exchange => 'binance', symbol => 'BTCUSDT', mark_price => 100)"
        ).fetchone() == (Decimal("0.2"), Decimal("100"), Decimal("0.02"), Decimal("-0.02"))


# -- the CLI ------------------------------------------------------------------------------------


def _invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database-url", url, *args])


def test_a_cli_write_on_a_full_disk_is_the_servers_message_and_hint(disks: Disks) -> None:
    with disks.full(disks.data):
        result = _invoke(disks.url, "risk", "set", "alpha", "--max-order-notional", "1000")

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    error, hint = result.output.splitlines()[-2:]
    assert error.startswith('Error: could not extend file "') and error.endswith('": No space left on device')
    assert hint == "hint: Check free disk space."


# -- ingest -------------------------------------------------------------------------------------


def _ticks_file(path: Path, rows: int, day: str) -> Path:
    with path.open("w") as out:
        out.write(TICKS_HEADER)
        for i in range(rows):
            out.write(
                f"binance,BTCUSDT,{day}T10:{i // 60 % 60:02d}:{i % 60:02d}.{i // 3600:03d}Z,d{i:06d},100,1,buy\n"
            )
    return path


def test_ingest_that_fills_the_disk_mid_load_says_what_loaded_and_what_to_do(
    disks: Disks, tmp_path: Path
) -> None:
    # the server's "could not extend file ...: No space left on device" alone ended the run: the
    # operator could not tell that its first batch had loaded, nor which lines had not
    day = datetime.now(UTC).date().isoformat()
    path = _ticks_file(tmp_path / "ticks.csv", 6000, day)
    watcher = psycopg.connect(disks.url, autocommit=True)

    def fill_once_a_batch_loaded(nbytes: int) -> None:
        if not disks.filled and watcher.execute("select count(*) from market.ticks").fetchone()[0] > 0:
            disks.fill(disks.data)

    try:
        with psycopg.connect(disks.url, autocommit=True) as conn, pytest.raises(IngestError) as failed:
            ingest(conn, "ticks", [path], batch_rows=2000, progress=fill_once_a_batch_loaded)
        disks.free()
        loaded = watcher.execute("select count(*), max(exchange_trade_id) from market.ticks").fetchone()
    finally:
        disks.free()
        watcher.close()

    assert loaded == (2000, "d001999")
    message = str(failed.value)
    assert message.startswith(f"{path}: the database server's disk is full (could not extend file ")
    assert message.endswith(
        ": No space left on device): the batch of lines 2002 to 4001 was not loaded, nor anything after it,"
        " nor any later file; this run loaded 2,000 rows, skipped 0 duplicates and rejected 0 rows"
    )
    assert failed.value.hint == DISK_FULL_HINT
    assert list(tmp_path.glob("*.rejects.csv")) == []


def test_ingest_on_a_full_disk_exits_1_with_the_hint_and_loads_nothing(disks: Disks, tmp_path: Path) -> None:
    path = _ticks_file(tmp_path / "ticks.csv", 10, "2026-01-05")
    with psycopg.connect(disks.url, autocommit=True) as conn:
        before = conn.execute("select count(*) from market.ticks").fetchone()
        with disks.full(disks.data):
            result = _invoke(disks.url, "ingest", "ticks", "--strict", str(path))
        assert conn.execute("select count(*) from market.ticks").fetchone() == before

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    error, hint = result.output.splitlines()[-2:]
    # the staging table, or the staging of the batch: whichever the server could not write first
    assert error.startswith(
        ("Error: the database server's disk is full (could not extend file ",
         f"Error: {path}: the database server's disk is full (could not extend file ")
    )  # fmt: skip
    assert error.endswith(
        (
            ": No space left on device) (nothing was loaded)",
            ": No space left on device) (--strict: nothing was loaded)",
        )
    )
    assert hint == f"hint: {DISK_FULL_HINT}"


# -- the history API ----------------------------------------------------------------------------


def test_a_login_on_a_full_disk_is_a_503_problem_saying_so(disks: Disks, project_settings: Settings) -> None:
    with live_server(disks.url, [m.id for m in render_migrations(project_settings)]) as base:
        with disks.full(disks.data):
            response = api_login(base, "alice")
        after = api_login(base, "alice")

    assert_unavailable(response, "the database server's disk is full: retry once space is freed", "53100")
    assert after.status_code == 200, after.text


# -- health -------------------------------------------------------------------------------------


def _disk_check(url: str) -> dict[str, object]:
    with psycopg.connect(url, autocommit=True) as conn:
        document = health.report(
            conn,
            [],
            max_backup_age=timedelta(hours=26),
            max_replication_lag=timedelta(minutes=5),
            max_retained_wal=1024**3,
            max_transaction_age=timedelta(minutes=15),
            max_disk_used_fraction=Decimal("0.9"),
            max_archive_wait=timedelta(minutes=10),
        )
    [check] = [c for c in document["checks"] if c["name"] == "disk_usage"]
    return check


def test_health_fails_a_data_directory_whose_disk_is_full_for_the_server(disks: Disks) -> None:
    # used / size counted the blocks ext4 keeps for root, which the server never gets: a disk on
    # which every write of the server failed read "file system 55.x% used" and was healthy
    with disks.full(disks.data):
        check = _disk_check(disks.url)

    assert check["ok"] is False
    assert str(check["detail"]).endswith("; file system 100.0% used (limit 90.0%)")


def test_health_fails_a_full_pg_wal_on_a_disk_of_its_own(disks: Disks) -> None:
    # only the data directory's file system was measured: a pg_wal on a full disk of its own, which
    # stops the server at its next WAL file, was healthy
    with psycopg.connect(disks.url, autocommit=True) as conn:
        conn.execute("select pg_switch_wal()")  # a fresh WAL file: room for what runs meanwhile
    with disks.full(disks.wal):
        check = _disk_check(disks.url)

    assert check["ok"] is False
    assert str(check["detail"]).endswith("; file system 100.0% used (limit 90.0%)")


def test_health_of_disks_with_room_is_ok(disks: Disks) -> None:
    check = _disk_check(disks.url)

    assert check["ok"] is True


# -- pg_wal full: the server PANICs (last: these crash the module's server, and start it again) --


@dataclass
class Crash:
    """The fills acknowledged (committed) before pg_wal filled, and the one whose call failed."""

    acknowledged: list[str]
    unacknowledged: str
    error: psycopg.Error


@pytest.fixture(scope="module")
def wal_crash(disks: Disks) -> Iterator[Crash]:
    """Fills recorded one by one until pg_wal's disk is full and the server PANICs (its start-up
    after the crash fails too, for want of room for WAL); the server is started again at the end."""
    with psycopg.connect(disks.url, autocommit=True) as conn:
        conn.execute("checkpoint")
    disks.fill(disks.wal)
    try:
        acknowledged: list[str] = []
        with psycopg.connect(disks.url, autocommit=True) as conn:
            for n in range(200_000):  # far more WAL than the disk holds
                trade_id = f"wal-{n}"
                try:
                    _fill(conn, _place(conn, trade_id), trade_id)
                except psycopg.Error as exc:
                    error = exc
                    break
                acknowledged.append(trade_id)
            else:
                pytest.fail("pg_wal never filled")
        # the postmaster restarts after the PANIC, and its recovery fails for want of room for WAL
        for _ in range(600):
            if not disks.cluster.status().running:
                break
            time.sleep(0.1)
        yield Crash(acknowledged, trade_id, error)
    finally:
        disks.free()
        disks.cluster.start()


def test_the_fill_that_filled_pg_wal_is_53100_and_the_server_is_down(disks: Disks, wal_crash: Crash) -> None:
    assert wal_crash.error.sqlstate == "53100"
    assert wal_crash.error.diag.severity_nonlocalized == "PANIC"
    assert str(wal_crash.error.diag.message_primary).startswith('could not write to file "pg_wal/xlogtemp.')
    assert disks.cluster.status().running is False


def test_the_cli_says_the_server_is_not_running_while_pg_wal_is_full(disks: Disks, wal_crash: Crash) -> None:
    result = _invoke(disks.url, "pnl")

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert (
        result.output.splitlines()[-1]
        == "\tIs the server running locally and accepting connections on that socket?"
    )


def test_every_fill_acknowledged_before_pg_wal_filled_is_there_after_a_start(
    disks: Disks, wal_crash: Crash
) -> None:
    disks.free()

    assert disks.cluster.start() is True
    with psycopg.connect(disks.url, autocommit=True) as conn:
        recorded = [
            trade_id
            for [trade_id] in conn.execute(
                "select exchange_trade_id from trading.trades where exchange_trade_id like 'wal-%'"
                " order by trade_id"
            )
        ]
        assert recorded == wal_crash.acknowledged
        # the positions add up: every fill bought 0.2 at 100 with a fee of 0.02
        fills = Decimal(len(recorded))
        assert conn.execute(
            "select quantity, fees_paid from trading.get_position(strategy => 'alpha', exchange => 'binance',"
            " symbol => 'BTCUSDT', mark_price => 100)"
        ).fetchone() == (Decimal("0.2") * (fills + 1), Decimal("0.02") * (fills + 1))
