"""The operator's restore drill, end to end: a live embedded cluster with trading data, users,
sessions and API keys under a master key is backed up with pgBackRest, trades on, and is restored
into a new home as the README says (`restore --to DIR`, then `SPREADEDGE_HOME=DIR SPREADEDGE_PORT=N
spreadedge db start`) while the source still runs (a drill on the same host); the business must
go on there. A logical dump is restored into a fresh database of the session's cluster too.

One source cluster and one restored cluster for the module; both are stopped at its end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from auth_helpers import login, make_user, reveal_key, store_key
from db_fixtures import _seed
from ops_helpers import PROJECT, archive_current_wal, checksums, cli
from spreadedge import masterkey
from spreadedge.cli import main
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from trading_helpers import fill, place, position, rows

PASSPHRASE = "drill passphrase 38 of the repository"
DRILL_MASTER_KEY = "drill-master-key-0123456789-abcdefghijklmn"
PROJECT_JOBS = (
    "spreadedge-collect-metrics",
    "spreadedge-evaluate-alert-rules",
    "spreadedge-partition-maintenance",
)
# what the restore brings back exactly (the source's pg_cron jobs write metrics and alerts on)
COMPARED = ("ref.", "trading.", "auth.users", "auth.api_keys", "auth.sessions", "auth.user_roles")


@dataclass
class Drill:
    source: Cluster
    restored: Cluster
    source_env: dict[str, str]
    restored_env: dict[str, str]
    restore_output: str
    before: dict[str, tuple[int, str]]
    position: dict[str, Any]
    max_ids: tuple[int, int]
    working_order: int
    session_token: str
    key_id: int


def _ok(*args: str, env: dict[str, str], **kwargs: Any) -> str:
    result = cli(*args, env=env, **kwargs)
    assert result.exit_code == 0, result.output
    return result.output


def _compared(sums: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
    return {table: value for table, value in sums.items() if table.startswith(COMPARED)}


@pytest.fixture(scope="module")
def drill(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Drill]:
    source = make_cluster()
    source.start()
    migrate(source.url(), project_settings, echo=lambda line: None)
    source_env = {
        "SPREADEDGE_HOME": str(source.home),
        "SPREADEDGE_PORT": str(source.port),
        "SPREADEDGE_BACKUP_PASSPHRASE": PASSPHRASE,
    }
    masterkey.write_key_file(source.home / masterkey.KEY_FILE_NAME, DRILL_MASTER_KEY)
    _ok("backup", "init", "--compress-type", "lz4", env=source_env)
    with psycopg.connect(source.url(), autocommit=True) as conn:
        _seed(conn)
        conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
        alice = make_user(conn, "alice", "trader")
        session_token = login(conn, "alice")["session_token"]
        key_id = store_key(conn, alice, master_key=DRILL_MASTER_KEY)
        bought = place(conn, "buy", "0.02", "50000", client_order_id="drill-1")
        fill(conn, bought, "0.02", "50000", fee=Decimal("0.5"))
        _ok("backup", "full", env=source_env)
        # trading goes on after the backup: the restore replays it from the archived WAL
        sold = place(conn, "sell", "0.01", "51000", client_order_id="drill-2")
        fill(conn, sold, "0.01", "51000", fee=Decimal("0.25"))
        working = place(conn, "buy", "0.01", "49000", client_order_id="drill-3")
        before = _compared(checksums(conn))
        held = position(conn, "alpha", "binance", "BTCUSDT", mark_price=Decimal("52000"))
        max_ids = conn.execute(
            "select (select max(order_id) from trading.orders), (select max(trade_id) from trading.trades)"
        ).fetchone()
        archive_current_wal(conn)
    restored = make_cluster()
    restore_output = _ok("restore", "--to", str(restored.home), env=source_env)
    restored_env = {
        "SPREADEDGE_HOME": str(restored.home),
        "SPREADEDGE_PORT": str(restored.port),
        "SPREADEDGE_BACKUP_PASSPHRASE": PASSPHRASE,
    }
    _ok("db", "start", env=restored_env)
    yield Drill(
        source,
        restored,
        source_env,
        restored_env,
        restore_output,
        before,
        held,
        max_ids,
        working,
        session_token,
        key_id,
    )
    restored.stop()
    source.stop()


# -- the business goes on in the restored cluster -----------------------------------------------------


def test_the_restored_cluster_holds_the_trading_and_accounts_at_the_end_of_the_archived_wal(drill):
    with psycopg.connect(drill.restored.url()) as conn:
        assert _compared(checksums(conn)) == drill.before


def test_the_restored_cluster_has_every_migration_applied_and_no_invariant_violated(drill):
    status = _ok("migrate", "--status", env=drill.restored_env)
    check = cli("check", env=drill.restored_env)

    assert status.splitlines()[-1].endswith(" applied, 0 pending")
    assert (check.exit_code, check.output) == (
        0,
        "no violations: positions, orders, rollups, snapshots, spread trades and audit log agree"
        " with the trades\n",
    )


def test_the_restored_position_and_pnl_equal_the_sources(drill):
    with psycopg.connect(drill.restored.url()) as conn:
        held = position(conn, "alpha", "binance", "BTCUSDT", mark_price=Decimal("52000"))

    assert held == drill.position
    assert (held["quantity"], held["realized_pnl"]) == (Decimal("0.01"), Decimal("9.25"))


def test_new_orders_and_fills_in_the_restored_cluster_take_new_ids(drill):
    with psycopg.connect(drill.restored.url(), autocommit=True) as conn:
        order_id = place(conn, "sell", "0.005", "52000", client_order_id="drill-after-restore")
        trade_id = fill(conn, order_id, "0.005", "52000")
        again = place(conn, "buy", "0.01", "49000", client_order_id="drill-3")

    assert order_id > drill.max_ids[0] and trade_id > drill.max_ids[1]
    assert again == drill.working_order  # a retried placement is still the same order


def test_a_user_logs_in_and_a_session_of_before_the_restore_is_still_live(drill):
    with psycopg.connect(drill.restored.url(), autocommit=True) as conn:
        fresh = login(conn, "alice")
        (scope,) = rows(conn, "auth.validate_session", token=drill.session_token)

    assert fresh["success"] is True
    assert (scope["user_id"], scope["username"]) == (fresh["user_id"], "alice")


def test_partition_maintenance_runs_in_the_restored_cluster(drill):
    output = _ok("partitions", "maintain", env=drill.restored_env)

    assert "trading.orders" in output


# -- the master key -----------------------------------------------------------------------------------


# bug: restore --to copied the password file but not master.key; every command of the restored
# home (SPREADEDGE_HOME=DIR) read DIR/master.key and said "no master key: ... run spreadedge keys
# generate", whose new key cannot decrypt the API keys that came back
def test_the_restored_home_has_the_master_key_that_decrypts_the_api_keys(drill):
    key_file = drill.restored.home / masterkey.KEY_FILE_NAME

    assert f"master key {drill.source.home / 'master.key'} copied to {key_file} (mode 0600)" in (
        drill.restore_output
    )
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert masterkey.read_key_file(key_file) == DRILL_MASTER_KEY
    with psycopg.connect(drill.restored.url(), autocommit=True) as conn:
        assert reveal_key(conn, drill.key_id, DRILL_MASTER_KEY)["api_secret"] == "s3cret-binance-0001"


def test_keys_store_in_the_restored_home_uses_the_restored_master_key(drill):
    environment = {"SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": None, **drill.restored_env}
    args = ["keys", "store", "--user", "alice", "--exchange", "okx", "--label", "after-restore"]
    result = CliRunner().invoke(main, args, env=environment, input="AKIA-okx-restored\nsecret-okx-restored\n")

    assert result.exit_code == 0, result.output
    key_id = int(result.output.split("API key ", 1)[1].split()[0])
    with psycopg.connect(drill.restored.url(), autocommit=True) as conn:
        assert reveal_key(conn, key_id, DRILL_MASTER_KEY)["api_key"] == "AKIA-okx-restored"


# -- pg_cron jobs of the restored cluster ---------------------------------------------------------------


def _cron_health(conn: psycopg.Connection) -> tuple[bool, str]:
    return conn.execute("select ok, detail from internal.health_cron_jobs()").fetchone()


# bug: the restored cluster's jobs keep the source's socket directory and port; while the source
# runs, they run there and succeed (the source collected its metrics twice a minute, the restored
# cluster none, and its partition maintenance never ran), and health's cron_jobs said ok. Health
# then failed them (test_cron_schedules_hunt proves that check); now the restored cluster's first
# `db start` points them at itself (test_restore_new_machine_hunt), so health is ok.
def test_the_first_start_points_the_restored_jobs_at_the_restored_server(drill):
    with psycopg.connect(drill.restored.url()) as conn:
        jobs = conn.execute(
            "select jobname, nodename, nodeport from cron.job where database = current_database()"
            " order by jobname"
        ).fetchall()
        health = _cron_health(conn)

    assert jobs == [(job, str(drill.restored.socket_dir), drill.restored.port) for job in PROJECT_JOBS]
    assert health == (True, "3 active jobs, none failed on its last run")


def test_the_readmes_repair_points_the_restored_jobs_at_the_restored_server(drill):
    with psycopg.connect(drill.restored.url()) as conn:
        conn.execute(
            "update cron.job set nodename = current_setting('cron.host'), nodeport ="
            " current_setting('port')::integer where database = current_database();"
        )
        jobs = conn.execute("select jobname, nodename, nodeport from cron.job order by jobname").fetchall()
        health = _cron_health(conn)
        conn.rollback()  # the other tests see the jobs as restored

    assert jobs == [(job, str(drill.restored.socket_dir), drill.restored.port) for job in PROJECT_JOBS]
    assert health == (True, "3 active jobs, none failed on its last run")


# -- a logical restore into a fresh database ------------------------------------------------------------


@pytest.fixture
def logical_copy(
    pg_cluster: Cluster, seeded: psycopg.Connection, db_url: str, tmp_path: Path
) -> Iterator[str]:
    """A full dump of the seeded test database with trades, restored into a new database; its URL."""
    order_id = place(seeded, "buy", "0.02", "50000", client_order_id="logical-1")
    fill(seeded, order_id, "0.02", "50000")
    _ok("backup", "logical", "--full", "--out", str(tmp_path), database_url=db_url, env={})
    (dump,) = tmp_path.iterdir()
    name = "drill_logical"
    _ok("restore", "logical", str(dump), "--to-database", name, database_url=db_url, env={})
    yield pg_cluster.url(name)
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("drop database if exists {} with (force)").format(psycopg.sql.Identifier(name))
        )


# bug: a dump holds no ALTER DATABASE ... SET: the restored database logged bind parameters
# (passwords, master keys, API secrets) in full with log_statement on, which migrate had
# turned off on the source (log_parameter_max_length = 0), and left the database's UTC TimeZone
def test_a_logically_restored_database_keeps_bind_parameters_out_of_the_server_log(logical_copy):
    with psycopg.connect(logical_copy) as conn:
        settings = conn.execute(
            "select current_setting('log_parameter_max_length'),"
            " current_setting('log_parameter_max_length_on_error'),"
            " (select setconfig from pg_db_role_setting where setdatabase ="
            "  (select oid from pg_database where datname = current_database()) and setrole = 0)"
        ).fetchone()

    assert settings == (
        "0",
        "0",
        ["log_parameter_max_length=0", "log_parameter_max_length_on_error=0", "TimeZone=UTC"],
    )


def test_trading_goes_on_in_a_logically_restored_database(logical_copy):
    with psycopg.connect(logical_copy, autocommit=True) as conn:
        again = place(conn, "buy", "0.02", "50000", client_order_id="logical-1")
        order_id = place(conn, "sell", "0.01", "51000", client_order_id="logical-2")
        fill(conn, order_id, "0.01", "51000")
        violations = conn.execute("select count(*) from ops.check_invariants()").fetchone()
        first = conn.execute(
            "select order_id from trading.order_keys where client_order_id = 'logical-1'"
        ).fetchone()

    assert (again, order_id > again, violations) == (first[0], True, (0,))
