"""Backups with real pgBackRest and pg_dump, against a cluster this module starts.

One cluster is backed up once for the module (full, then differential, then incremental, each
after more writes), then restored to a point in time into a new cluster; the later tests read
that repository, and the compression tests re-initialize the stanza into repositories of their own.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from db_fixtures import _seed
from ops_helpers import checksums, cli
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.ops.pgbackrest import WRONG_PASSPHRASE
from spreadedge.settings import Settings
from trading_helpers import fill, place

PASSPHRASE = "correct horse battery staple 7"


@dataclass
class BackedUp:
    cluster: Cluster
    env: dict[str, str]
    at_target: dict[str, tuple[int, str]]
    target_time: str
    restored: Cluster


def _cluster_env(cluster: Cluster, passphrase: str = PASSPHRASE) -> dict[str, str]:
    return {
        "SPREADEDGE_HOME": str(cluster.home),
        "SPREADEDGE_PORT": str(cluster.port),
        "SPREADEDGE_BACKUP_PASSPHRASE": passphrase,
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


def _archived_within(conn: psycopg.Connection, seconds: float) -> bool:
    """Switch to a new WAL segment; whether the archiver pushes the old one within ``seconds``."""
    segment = conn.execute("select pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
    conn.execute("select pg_switch_wal()")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        archived = conn.execute("select last_archived_wal from pg_stat_archiver").fetchone()[0]
        if archived is not None and archived >= segment:
            return True
        conn.execute("select pg_sleep(0.1)")
    return False


def _archive_current_wal(conn: psycopg.Connection) -> None:
    """Switch to a new WAL segment and wait until the archiver has pushed the old one."""
    assert _archived_within(conn, 120)


def _digest(path: Path) -> str:
    """A file's SHA-256 (compared instead of its bytes, which hold the passphrase)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def backed_up(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[BackedUp]:
    cluster = make_cluster()
    cluster.start()
    migrate(cluster.url(), project_settings, echo=lambda line: None)
    env = _cluster_env(cluster)
    _ok("backup", "init", "--compress-type", "zst", env=env)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        _seed(conn)
        _trade(conn, 3)
        _ok("backup", "full", env=env)
        _trade(conn, 3)
        _ok("backup", "diff", env=env)
        _trade(conn, 3)
        _ok("backup", "incr", env=env)
        _trade(conn, 3)
        at_target = checksums(conn)
        target_time = conn.execute("select clock_timestamp()::text").fetchone()[0]
        _trade(conn, 3)
        _archive_current_wal(conn)
    restored = make_cluster()
    _ok("restore", "--to", str(restored.home), "--target-time", target_time, env=env)
    restored.start()
    yield BackedUp(cluster, env, at_target, target_time, restored)
    restored.stop()


def test_point_in_time_restore_reproduces_every_table_at_the_target_time(backed_up):
    with psycopg.connect(backed_up.restored.url()) as conn:
        restored = checksums(conn)
    with psycopg.connect(backed_up.cluster.url()) as conn:
        now = checksums(conn)

    assert restored == backed_up.at_target
    assert now["trading.orders"][0] == restored["trading.orders"][0] + 6  # written after the target


def test_the_backup_catalog_records_the_full_diff_and_incr_runs(backed_up):
    with psycopg.connect(backed_up.cluster.url()) as conn:
        runs = conn.execute(
            "select kind, compress_type, status, label is not null, repo_size_bytes > 0"
            " from ops.backup_runs where kind in ('full', 'diff', 'incr') order by run_id"
        ).fetchall()

    assert runs[:3] == [
        ("full", "zst", "succeeded", True, True),
        ("diff", "zst", "succeeded", True, True),
        ("incr", "zst", "succeeded", True, True),
    ]


def test_backup_list_shows_the_repositorys_backups_and_the_runs(backed_up):
    output = _ok("backup", "list", env=backed_up.env)

    lines = output.splitlines()
    assert [line.split()[1] for line in lines[3:6]] == ["full", "diff", "incr"]
    assert "runs (ops.backup_runs):" in output


def test_backup_verify_passes_on_an_intact_repository(backed_up):
    output = _ok("backup", "verify", env=backed_up.env)

    assert "verify passed" in output


def test_a_wrong_passphrase_fails_clearly_and_is_never_shown(backed_up):
    wrong = "not the passphrase 42"
    result = cli("backup", "verify", env={**backed_up.env, "SPREADEDGE_BACKUP_PASSPHRASE": wrong})

    assert result.exit_code == 1
    assert f"pgBackRest verify failed: {WRONG_PASSPHRASE}" in result.output
    assert wrong not in result.output
    assert PASSPHRASE not in result.output


def test_init_with_a_wrong_passphrase_keeps_the_working_configuration_and_wal_archiving(backed_up):
    config = backed_up.cluster.home / "backup" / "pgbackrest.conf"
    working = _digest(config)
    wrong = "typo pass 13"

    result = cli("backup", "init", env={**backed_up.env, "SPREADEDGE_BACKUP_PASSPHRASE": wrong})

    assert result.exit_code == 1
    assert wrong not in result.output
    assert _digest(config) == working
    with psycopg.connect(backed_up.cluster.url(), autocommit=True) as conn:
        assert _archived_within(conn, 30)


def test_init_with_a_wrong_passphrase_says_the_passphrase_is_wrong(backed_up):
    result = cli("backup", "init", env={**backed_up.env, "SPREADEDGE_BACKUP_PASSPHRASE": "typo pass 14"})

    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"Error: pgBackRest stanza-create failed: {WRONG_PASSPHRASE}"


def test_init_refuses_a_passphrase_that_pgbackrest_conf_would_trim(backed_up):
    repo = backed_up.cluster.home.parent / "repo-trimmed"
    config = backed_up.cluster.home / "backup" / "pgbackrest.conf"
    working = _digest(config)
    env = {**backed_up.env, "SPREADEDGE_BACKUP_PASSPHRASE": "trailing space 15 "}

    # written into pgbackrest.conf, it would lose its space: archive-push could not open the repository
    result = cli("backup", "init", "--repo-path", str(repo), env=env)

    assert result.exit_code == 1
    assert result.output == (
        "Error: SPREADEDGE_BACKUP_PASSPHRASE must not begin or end with white space nor hold line breaks"
        " or control characters (pgbackrest.conf cannot keep such a passphrase as it is)\n"
    )
    assert _digest(config) == working
    assert not repo.exists()


def test_the_passphrase_is_only_in_a_configuration_file_of_mode_0600(backed_up):
    config = backed_up.cluster.home / "backup" / "pgbackrest.conf"

    assert config.stat().st_mode & 0o777 == 0o600
    logs = "".join(path.read_text(errors="replace") for path in (config.parent / "log").iterdir())
    assert PASSPHRASE not in logs


def test_health_counts_the_last_backup_as_recent(backed_up):
    with psycopg.connect(backed_up.cluster.url()) as conn:
        row = conn.execute("select ok from internal.health_last_backup('1 hour')").fetchone()

    assert row == (True,)


def test_backup_schedule_writes_one_cron_entry_per_backup_type(backed_up, tmp_path):
    cron_file = tmp_path / "spreadedge-backup"
    env = backed_up.env
    _ok("backup", "schedule", "--cron", "0 3 * * 0", "--type", "full", "--file", str(cron_file), env=env)
    _ok("backup", "schedule", "--cron", "0 3 * * 1-6", "--type", "incr", "--file", str(cron_file), env=env)
    _ok("backup", "schedule", "--cron", "30 2 * * 0", "--type", "full", "--file", str(cron_file), env=env)

    lines = cron_file.read_text().splitlines()
    assert lines[0] == "# Written by spreadedge backup schedule: one line per backup type."
    assert [line.split(" root ")[0] for line in lines[1:]] == ["0 3 * * 1-6", "30 2 * * 0"]
    assert lines[2].endswith(
        "backup full >> " + str(backed_up.cluster.home / "backup-cron.log") + " 2>&1 # spreadedge backup full"
    )


def test_backup_schedule_refuses_a_schedule_that_is_not_cron(backed_up, tmp_path):
    result = cli(
        "backup", "schedule", "--cron", "every day", "--file", str(tmp_path / "cron"), env=backed_up.env
    )

    assert result.exit_code == 1
    assert "--cron must be five cron fields" in result.output


# -- restore: refusals, and nothing left behind ------------------------------------------------------


def test_restore_refuses_a_target_time_in_the_future_and_creates_nothing(backed_up, tmp_path):
    home = tmp_path / "restored"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)

    # recovery could never reach it: the restored cluster would fail to start
    result = cli("restore", "--to", str(home), "--target-time", tomorrow.isoformat(), env=backed_up.env)

    assert result.exit_code == 1
    assert f"Error: --target-time {tomorrow.isoformat()} is in the future" in result.output
    assert not home.exists()


def test_restore_refuses_a_set_that_ended_after_the_target_time(backed_up, tmp_path):
    with psycopg.connect(backed_up.cluster.url()) as conn:
        incr, diff_started = conn.execute(
            "select (select label from ops.backup_runs where kind = 'incr' and status = 'succeeded'"
            "        order by run_id limit 1),"
            "       (select started_at from ops.backup_runs where kind = 'diff' order by run_id limit 1)::text"
        ).fetchone()
    home = tmp_path / "restored"

    # the incremental backup ended after this time: restored, it would be as of its own end
    result = cli(
        "restore", "--to", str(home), "--set", incr, "--target-time", diff_started, env=backed_up.env
    )

    assert result.exit_code == 1
    assert f"Error: backup {incr} ended at " in result.output
    assert "it cannot be restored to an earlier time" in result.output
    assert not home.exists()


def test_restore_refuses_a_directory_that_is_not_empty(backed_up, tmp_path):
    home = tmp_path / "in-use"
    home.mkdir()
    (home / "password").write_text("keep me\n")

    result = cli("restore", "--to", str(home), env=backed_up.env)

    assert result.exit_code == 1
    assert f"Error: {home} is not empty: restore into a new (or empty) directory" in result.output
    assert sorted(path.name for path in home.iterdir()) == ["password"]
    assert (home / "password").read_text() == "keep me\n"


def test_a_failed_restore_removes_the_directory_it_created(backed_up, tmp_path):
    home = tmp_path / "restored"
    env = {**backed_up.env, "SPREADEDGE_BACKUP_PASSPHRASE": "not the passphrase 43"}

    result = cli("restore", "--to", str(home), env=env)

    assert result.exit_code == 1
    assert f"pgBackRest restore failed: {WRONG_PASSPHRASE}" in result.output
    assert not home.exists()


@pytest.mark.parametrize("compress_type", ["gz", "bz2", "lz4", "zst"])
def test_each_compression_type_makes_a_verified_backup_of_compressed_files(backed_up, compress_type):
    # beside the cluster's home: a directory the server's system user can reach
    repo = backed_up.cluster.home.parent / f"repo-{compress_type}"
    env = backed_up.env
    _ok("backup", "init", "--compress-type", compress_type, "--repo-path", str(repo), env=env)

    _ok("backup", "full", env=env)
    _ok("backup", "verify", env=env)

    backups = [path for path in (repo / "backup" / "spreadedge").iterdir() if path.name.endswith("F")]
    assert len(backups) == 1
    assert (backups[0] / "pg_data" / f"PG_VERSION.{compress_type}").exists()


# -- logical ---------------------------------------------------------------------------------------


@pytest.fixture
def restored_db(pg_cluster: Cluster) -> Iterator[tuple[str, str]]:
    """A database name for a restore, and its URL; dropped afterwards."""
    name = "restored_logical"
    yield name, pg_cluster.url(name)
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("drop database if exists {} with (force)").format(psycopg.sql.Identifier(name))
        )


def _dump(db_url: str, flag: str, compress_type: str, out: Path) -> Path:
    result = cli(
        "backup", "logical", flag, "--compress-type", compress_type, "--out", str(out), database_url=db_url
    )
    assert result.exit_code == 0, result.output
    (dump,) = [path for path in out.iterdir() if flag.strip("-").split("-")[0] in path.name]
    return dump


def test_logical_schema_only_and_data_only_dumps_round_trip(seeded, db_url, restored_db, tmp_path):
    _trade(seeded, 2)
    schema_dump = _dump(db_url, "--schema-only", "gz", tmp_path)
    data_dump = _dump(db_url, "--data-only", "zst", tmp_path)
    name, url = restored_db

    for dump in (schema_dump, data_dump):
        result = cli("restore", "logical", str(dump), "--to-database", name, database_url=db_url)
        assert result.exit_code == 0, result.output

    with psycopg.connect(url) as restored:
        copy = checksums(restored)
        functions = restored.execute(
            "select count(*) from pg_proc where pronamespace = 'trading'::regnamespace"
        )
        count = functions.fetchone()
    # the dumps' own catalog rows were written after the data dump was taken
    source = checksums(seeded)
    del copy["ops.backup_runs"], source["ops.backup_runs"]
    assert copy == source
    assert (
        count
        == seeded.execute(
            "select count(*) from pg_proc where pronamespace = 'trading'::regnamespace"
        ).fetchone()
    )
    assert schema_dump.name.endswith(".dump") and data_dump.name.endswith(".dump.zst")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 022, root's: what a program creates without choosing a mode is readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_logical_dump_is_readable_by_its_owner_only(db_url, tmp_path, permissive_umask):
    dump = _dump(db_url, "--schema-only", "gz", tmp_path)

    assert stat.S_IMODE(dump.stat().st_mode) == 0o600


def test_the_dump_directories_backup_logical_creates_are_private(db_url, tmp_path, permissive_umask):
    out = tmp_path / "dumps" / "daily"

    _dump(db_url, "--schema-only", "gz", out)

    assert [stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "dumps", out)] == [0o700, 0o700]


def test_logical_dumps_are_recorded_in_the_backup_catalog(db, db_url, tmp_path):
    _dump(db_url, "--full", "lz4", tmp_path)

    rows = db.execute(
        "select kind, compress_type, status, label like '%%-full-%%.dump.lz4' from ops.backup_runs"
    ).fetchall()

    assert rows == [("logical_full", "lz4", "succeeded", True)]


# -- schedule --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    ["foo bar baz qux quux", "99 * * * *", "0 24 * * *", "0 3 0 * *", "5-1 * * * *", "*/0 * * * *"],
)
def test_backup_schedule_refuses_a_schedule_cron_would_skip(tmp_path, schedule):
    cron_file = tmp_path / "cron"

    result = cli(
        "backup", "schedule", "--cron", schedule, "--file", str(cron_file), env=_schedule_env(tmp_path)
    )

    assert result.exit_code == 1
    assert f"Error: --cron {schedule!r}: " in result.output
    assert not cron_file.exists()


@pytest.mark.parametrize("schedule", ["*/15 0-23/2 1,15 jan-mar mon-fri", "0 3 * * 7", "@midnight"])
def test_backup_schedule_takes_every_kind_of_cron_field(tmp_path, schedule):
    cron_file = tmp_path / "cron"

    _ok("backup", "schedule", "--cron", schedule, "--file", str(cron_file), env=_schedule_env(tmp_path))

    assert cron_file.read_text().splitlines()[1].startswith(f"{schedule} root ")


def test_backup_schedule_refuses_a_user_that_is_not_one_name(tmp_path):
    cron_file = tmp_path / "cron"
    user = "root\n* * * * * root touch /tmp/owned"

    result = cli(
        "backup",
        "schedule",
        "--cron",
        "0 3 * * 0",
        "--user",
        user,
        "--file",
        str(cron_file),
        env=_schedule_env(tmp_path),
    )

    assert result.exit_code == 1
    assert "Error: --user must be a system user name" in result.output
    assert not cron_file.exists()


def _schedule_env(tmp_path: Path) -> dict[str, str]:
    return {"SPREADEDGE_HOME": str(tmp_path / "home"), "SPREADEDGE_PORT": "55599"}


# -- logical: missing compressors, failed restores ---------------------------------------------------


def test_a_dump_whose_compressor_is_missing_fails_clearly(db, db_url, tmp_path):
    result = cli(
        "backup",
        "logical",
        "--full",
        "--compress-type",
        "lz4",
        "--out",
        str(tmp_path / "out"),
        database_url=db_url,
        env={"PATH": str(tmp_path)},
    )

    assert result.exit_code == 1
    assert (
        result.output
        == "Error: lz4 is not installed (needed for lz4 dumps): install it, or use --compress-type gz\n"
    )
    assert db.execute(
        "select kind, status, detail like 'lz4 is not installed%%' from ops.backup_runs"
    ).fetchall() == [("logical_full", "failed", True)]


def test_a_failed_logical_dump_is_recorded_without_a_file_or_size(db, db_url, tmp_path):
    cli(
        "backup",
        "logical",
        "--full",
        "--compress-type",
        "bz2",
        "--out",
        str(tmp_path / "out"),
        database_url=db_url,
        env={"PATH": str(tmp_path)},
    )

    rows = db.execute("select status, label, size_bytes, repo_size_bytes from ops.backup_runs").fetchall()

    assert rows == [("failed", None, None, None)]


def test_restoring_a_dump_whose_decompressor_is_missing_fails_clearly(db_url, restored_db, tmp_path):
    dump = _dump(db_url, "--schema-only", "zst", tmp_path)
    name, _ = restored_db

    result = cli(
        "restore",
        "logical",
        str(dump),
        "--to-database",
        name,
        database_url=db_url,
        env={"PATH": str(tmp_path)},
    )

    assert result.exit_code == 1
    assert (
        "Error: zstd is not installed (needed for zst dumps): install it to restore this dump"
        in result.output
    )


def test_a_failed_logical_restore_drops_the_database_it_created(pg_cluster, db_url, restored_db, tmp_path):
    data_dump = _dump(db_url, "--data-only", "gz", tmp_path)
    name, _ = restored_db

    # data only, into a new database without the tables: pg_restore fails
    result = cli("restore", "logical", str(data_dump), "--to-database", name, database_url=db_url)

    assert result.exit_code == 1
    assert "pg_restore failed, nothing was restored" in result.output
    with psycopg.connect(pg_cluster.url("postgres")) as conn:
        assert conn.execute("select count(*) from pg_database where datname = %s", [name]).fetchone() == (0,)
