"""Crashes (issue 8, item 4): kill -9 the postmaster in the middle of work, restart, lose nothing.

Each test runs on a cluster of its own (``make_cluster``), so a crash disturbs no other test:
- a fill load: every fill a client saw acknowledged survives with its exact values, and a fill that
  was in flight is either absent or wholly present (its order, position and rollups agree);
- a migration: it is all or nothing, and migrate finishes it afterwards;
- a pgBackRest backup: the next backup and a restore from it still succeed.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from db_fixtures import _seed
from ops_helpers import PROJECT, checksums, cli
from reliability import Tally, scaled
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate, render_migrations
from spreadedge.settings import Settings
from test_schema import catalog
from trading_helpers import fill, place

pytestmark = pytest.mark.reliability

SPREADEDGE = Path(sys.executable).parent / "spreadedge"
# a bound on every wait of this file: something that takes longer is stuck, not slow
PATIENCE = 60.0


# -- processes -------------------------------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting after {timeout:.0f} s for {what}")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes(comm: str, where: Callable[[int], bool]) -> list[int]:
    """Live processes named ``comm`` for which ``where(pid)`` holds."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if (entry / "comm").read_text().strip() == comm and _alive(pid) and where(pid):
                found.append(pid)
        except OSError:
            continue  # gone meanwhile
    return found


def _kill_postmaster(cluster: Cluster, tally: Tally) -> None:
    """SIGKILL the postmaster, as an OOM killer or a power cut would, and wait until it is gone."""
    pid = cluster.status().pid
    assert pid is not None, "the cluster is not running"
    os.kill(pid, signal.SIGKILL)
    tally.fault("kill -9 postmaster")
    _wait_for(lambda: not _alive(pid), f"the killed postmaster {pid} to die")


def _restart(cluster: Cluster) -> None:
    """Start the crashed cluster again at once: start itself waits for the orphaned backends to
    exit (PostgreSQL refuses to start while they hold the old shared memory)."""
    assert cluster.status().running is False
    cluster.start()
    assert cluster.status().running is True


# -- 1. a fill load ----------------------------------------------------------------------------------

CLIENTS = 4
FILLS_PER_ORDER = 4
FEE = Decimal("0.01")


@dataclass(frozen=True)
class Fill:
    order_id: int
    exchange_trade_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal


@dataclass
class Client:
    """One trading application: places orders and records their fills, one call a transaction."""

    number: int
    strategy: str
    exchange: str
    symbol: str
    fill_quantity: Decimal
    price: Decimal
    sequence: Iterator[int] = field(default_factory=itertools.count)
    # exchange trade id -> (trade id, the fill), for each record_fill call that returned
    acknowledged: dict[str, tuple[int, Fill]] = field(default_factory=dict)
    orders: list[int] = field(default_factory=list)
    # the fill whose record_fill call was sent but has not returned
    in_flight: Fill | None = None
    error: BaseException | None = None

    def run(self, url: str) -> None:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                while True:
                    n = next(self.sequence)
                    order_id = place(
                        conn,
                        "buy" if n % 2 == 0 else "sell",
                        str(self.fill_quantity * FILLS_PER_ORDER),
                        str(self.price),
                        strategy=self.strategy,
                        exchange=self.exchange,
                        symbol=self.symbol,
                        client_order_id=f"c{self.number}-o{n}",
                    )
                    self.orders.append(order_id)
                    for k in range(FILLS_PER_ORDER):
                        attempt = Fill(
                            order_id, f"c{self.number}-o{n}-f{k}", self.fill_quantity, self.price, FEE
                        )
                        self.in_flight = attempt
                        trade_id = self.record(conn, attempt)
                        self.acknowledged[attempt.exchange_trade_id] = (trade_id, attempt)
                        self.in_flight = None
        except BaseException as exc:  # the test asserts on it: only a lost connection is expected
            self.error = exc

    @staticmethod
    def record(conn: psycopg.Connection, attempt: Fill) -> int:
        return fill(
            conn,
            attempt.order_id,
            str(attempt.quantity),
            str(attempt.price),
            exchange_trade_id=attempt.exchange_trade_id,
            fee=attempt.fee,
        )


def _clients() -> list[Client]:
    # two clients share one position, so the kill also lands among fills waiting for each other's locks
    return [
        Client(0, "alpha", "binance", "BTCUSDT", Decimal("0.001"), Decimal("20000.00")),
        Client(1, "alpha", "binance", "BTCUSDT", Decimal("0.001"), Decimal("20100.00")),
        Client(2, "beta", "kraken", "ETHUSD", Decimal("0.010"), Decimal("2000.00")),
        Client(3, "beta", "okx", "BTC-USDT-SWAP", Decimal("1"), Decimal("50000.0")),
    ]


def _stored_fills(conn: psycopg.Connection) -> dict[str, tuple[int, Fill]]:
    rows = conn.execute(
        "select exchange_trade_id, trade_id, order_id, quantity, price, fee from trading.trades"
    ).fetchall()
    return {row[0]: (row[1], Fill(row[2], row[0], row[3], row[4], row[5])) for row in rows}


def test_kill_9_during_a_fill_load_loses_no_acknowledged_fill(make_cluster, project_settings, tally):
    rng = random.Random(os.environ.get("SPREADEDGE_CRASH_SEED", "8"))
    cluster = make_cluster()
    cluster.start()
    url = cluster.url()
    migrate(url, project_settings, echo=lambda line: None)
    with psycopg.connect(url, autocommit=True) as conn:
        _seed(conn)
        # an acknowledged commit is on disk only with both on; the project must never turn them off
        settings = conn.execute(
            "select current_setting('synchronous_commit'), current_setting('fsync')"
        ).fetchone()
        assert settings == ("on", "on")
    clients = _clients()
    acknowledged_before = 0

    for _ in range(scaled(2, 20)):
        for client in clients:
            client.error = None
        threads = [threading.Thread(target=client.run, args=(url,)) for client in clients]
        for thread in threads:
            thread.start()
        try:
            time.sleep(rng.uniform(1.0, 2.0))
        finally:
            _kill_postmaster(cluster, tally)
            for thread in threads:
                thread.join(PATIENCE)
        assert [thread.is_alive() for thread in threads] == [False] * CLIENTS
        for client in clients:
            assert isinstance(client.error, psycopg.OperationalError), repr(client.error)
            tally.error(client.error)
        _restart(cluster)

        acknowledged = {k: v for client in clients for k, v in client.acknowledged.items()}
        in_flight = {c.in_flight.exchange_trade_id: c.in_flight for c in clients if c.in_flight is not None}
        assert len(acknowledged) > acknowledged_before  # the kill landed in a running load
        tally.op("fills acknowledged", len(acknowledged) - acknowledged_before)
        with psycopg.connect(url, autocommit=True) as conn:
            stored = _stored_fills(conn)
            # every acknowledged fill is there, with its trade id and the values sent
            assert {key: stored.get(key) for key in acknowledged} == acknowledged
            # anything else is the one fill in flight of a client, whole
            extra = {key: value[1] for key, value in stored.items() if key not in acknowledged}
            assert {key: in_flight[key] for key in extra if key in in_flight} == extra
            orders = [order_id for client in clients for order_id in client.orders]
            present = conn.execute(
                "select count(*) from trading.orders where order_id = any(%s)", [orders]
            ).fetchone()
            assert present == (len(orders),)
            # its order, position, rollups and audit rows include it, or nothing does
            assert tally.check(conn) == []
            # the clients retry what they did not see acknowledged: recorded once, either way
            for client in clients:
                attempt = client.in_flight
                if attempt is None:
                    continue
                trade_id = Client.record(conn, attempt)
                if attempt.exchange_trade_id in extra:
                    tally.op("in-flight fills found present")
                    assert trade_id == stored[attempt.exchange_trade_id][0]
                else:
                    tally.op("in-flight fills found absent")
                client.acknowledged[attempt.exchange_trade_id] = (trade_id, attempt)
                client.in_flight = None
            acknowledged_before = sum(len(client.acknowledged) for client in clients)
            assert len(_stored_fills(conn)) == acknowledged_before
            assert tally.check(conn) == []
    cluster.stop()


# -- 2. a migration ----------------------------------------------------------------------------------

# 0005 alters trading.orders, then trading.trades: a lock held on trades stops it half-way
MIGRATED_BEFORE = "0004_history_api"
INTERRUPTED = "0005_fill_path"


def _settings_up_to(settings: Settings, last: str, tmp: Path) -> Settings:
    """The settings of a project with only the migrations up to ``last`` and an empty functions/
    (its files need every migration)."""
    migrations = tmp / "migrations"
    migrations.mkdir()
    (tmp / "functions").mkdir()
    for template in sorted(settings.migrations_dir.glob("*.sql.j2")):
        if template.name.removesuffix(".sql.j2") <= last:
            (migrations / template.name).write_text(template.read_text())
    return replace(settings, project_dir=tmp)


def _ledger(url: str) -> tuple[list[str], list[str]]:
    """The migrations the checksum ledger and yoyo's table record as applied."""
    with psycopg.connect(url) as conn:
        checksummed = conn.execute(
            "select migration_id from public._spreadedge_migration_checksum order by 1"
        ).fetchall()
        marked = conn.execute("select migration_id from public._yoyo_migration order by 1").fetchall()
    return [row[0] for row in checksummed], [row[0] for row in marked]


def _create_database(cluster: Cluster, name: str) -> str:
    cluster.ensure_database(name)
    return cluster.url(name)


def test_kill_9_during_a_migration_leaves_it_all_or_nothing(make_cluster, project_settings, tally, tmp_path):
    cluster = make_cluster()
    cluster.start()
    partial = _settings_up_to(project_settings, MIGRATED_BEFORE, tmp_path)
    url = _create_database(cluster, "crashed")
    migrate(url, partial, echo=lambda line: None)
    # the reference: what the crashed database must look like, whatever happened to it
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("create database reference template crashed")
    reference_url = cluster.url("reference")
    expected_before = [m.id for m in render_migrations(partial)]
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environment["SPREADEDGE_PROJECT_DIR"] = str(PROJECT)
    application = "crash-test-migrate"

    blocker = psycopg.connect(url, autocommit=True)
    # the watcher is a connection of its own: pg_stat_activity is read once per transaction
    watcher = psycopg.connect(url, autocommit=True)
    process = None
    try:
        blocker.execute("begin")
        blocker.execute("lock table trading.trades in access share mode")
        process = subprocess.Popen(
            [str(SPREADEDGE), "--database-url", f"{url}&application_name={application}", "migrate"],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def waiting_inside_0005() -> bool:
            row = watcher.execute(
                "select count(*) from pg_stat_activity where application_name = %s"
                " and wait_event_type = 'Lock' and query ilike %s",
                [application, "%alter table trading.trades%"],
            ).fetchone()
            return row == (1,) or process.poll() is not None

        _wait_for(waiting_inside_0005, f"migrate to wait inside {INTERRUPTED}")
        assert process.poll() is None, process.communicate()[0]
        # 0005's first statement (trading.orders' new checks) ran in the transaction now cut off
        _kill_postmaster(cluster, tally)
        output, _ = process.communicate(timeout=PATIENCE)
    finally:
        blocker.close()
        watcher.close()
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, output
    assert f"applying {INTERRUPTED}" in output
    tally.error("migrate: connection lost")
    _restart(cluster)

    # nothing of 0005 is there, in the ledger or in the catalog
    assert _ledger(url) == (expected_before, expected_before)
    assert catalog(url) == catalog(reference_url)

    migrate(url, project_settings, echo=lambda line: None)
    migrate(reference_url, project_settings, echo=lambda line: None)
    tally.op(
        "migrations applied after the crash", len(render_migrations(project_settings)) - len(expected_before)
    )
    status = cli("migrate", "--status", database_url=url)
    assert status.exit_code == 0, status.output
    everything = [m.id for m in render_migrations(project_settings)]
    assert status.output.splitlines()[-1] == f"{len(everything)} applied, 0 pending"
    assert _ledger(url) == (everything, everything)
    assert catalog(url) == catalog(reference_url)
    with psycopg.connect(url) as conn:
        assert tally.check(conn) == []
    cluster.stop()


# -- 3. a pgBackRest backup --------------------------------------------------------------------------

PASSPHRASE = "crash test passphrase 8"
TRADING_TABLES = "trading."


def _backup_env(cluster: Cluster) -> dict[str, str]:
    return {
        "SPREADEDGE_HOME": str(cluster.home),
        "SPREADEDGE_PORT": str(cluster.port),
        "SPREADEDGE_BACKUP_PASSPHRASE": PASSPHRASE,
    }


def _ok(*args: str, env: dict[str, str]) -> str:
    result = cli(*args, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _trade(conn: psycopg.Connection, n: int) -> None:
    for i in range(n):
        order_id = place(conn, "buy", "0.01", "50000")
        fill(conn, order_id, "0.01", "50000")
        place(conn, "sell", "0.01", f"{51000 + i}")


def _trading_checksums(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    return {table: value for table, value in checksums(conn).items() if table.startswith(TRADING_TABLES)}


def _pgbackrest_processes(config: Path) -> list[int]:
    """pgBackRest processes (the backup and its workers) that use this cluster's configuration."""

    def uses_config(pid: int) -> bool:
        try:
            return f"--config={config}" in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            return False

    return _processes("pgbackrest", uses_config)


def test_kill_9_during_a_pgbackrest_backup_then_backup_and_restore_succeed(
    make_cluster, project_settings, tally
):
    cluster = make_cluster()
    cluster.start()
    migrate(cluster.url(), project_settings, echo=lambda line: None)
    env = _backup_env(cluster)
    _ok("backup", "init", env=env)
    config = cluster.home / "backup" / "pgbackrest.conf"
    backups = cluster.home / "backup" / "repo" / "backup" / "spreadedge"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        _seed(conn)
        _trade(conn, 3)
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    # why the slowest zstd level: it widens the copy phase (a second or so otherwise) so the kill
    # surely lands while files are being copied
    environment |= {**env, "SPREADEDGE_PROJECT_DIR": str(PROJECT), "PGBACKREST_COMPRESS_LEVEL": "19"}

    process = subprocess.Popen(
        [str(SPREADEDGE), "backup", "full"],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:

        def copying() -> bool:
            copied = any(path.is_file() for path in backups.glob("*F/pg_data/**/*"))
            return copied or process.poll() is not None

        _wait_for(copying, "pgBackRest to start copying files")
        assert process.poll() is None, process.communicate()[0]
        _kill_postmaster(cluster, tally)
    finally:
        # the machine goes down with the server: pgBackRest does not talk to the server while it
        # copies, so left alone it would go on copying from a dead cluster for a long while
        for pid in [process.pid, *_pgbackrest_processes(config)]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                tally.fault("kill -9 pgbackrest")
        process.communicate()
        _wait_for(lambda: not _pgbackrest_processes(config), "the aborted backup's processes to exit")
    assert process.returncode == -signal.SIGKILL
    # the aborted backup left its files in the repository
    assert [path.name[-1] for path in backups.iterdir() if path.is_dir()] == ["F"]
    _restart(cluster)

    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        _trade(conn, 2)
        at_backup = _trading_checksums(conn)
    _ok("backup", "full", env=env)
    tally.op("backups after the crash")
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        runs = conn.execute("select kind, status from ops.backup_runs order by run_id").fetchall()
    # the aborted run's end could not be recorded in a dead server; the next successful backup
    # marks it failed (interrupted)
    assert runs == [("full", "failed"), ("full", "succeeded")]

    restored = make_cluster()
    _ok("restore", "--to", str(restored.home), env=env)
    restored.start()
    tally.op("restores after the crash")
    try:
        with psycopg.connect(restored.url()) as conn:
            assert _trading_checksums(conn) == at_backup
            assert at_backup["trading.trades"][0] == 5
            assert tally.check(conn) == []
    finally:
        restored.stop()
        cluster.stop()
