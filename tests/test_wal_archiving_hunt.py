"""WAL archiving that fails: health's wal_archiving, `spreadedge backup` and `backup list` while
the server's archive_command (pgBackRest's archive-push) cannot reach the repository.

One cluster of this module's own, pgBackRest configured (an encrypted repository) and a full backup
taken. Archiving is broken for real: the repository's WAL directory made read-only for the server's
user (archive-push cannot write a segment) or its archive directory closed to it (archive.info
cannot be read); every break is undone, and the WAL left waiting archived, after its test.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ops_helpers import archive_current_wal, backed_up, cli
from spreadedge.cluster import Cluster
from spreadedge.ops.pgbackrest import WRONG_PASSPHRASE
from spreadedge.settings import Settings

PASSPHRASE = "archiving hunt passphrase 54 of the repo"
CONSEQUENCE = (
    "pg_wal keeps every file not archived until its disk is full (then the server stops), and no backup can"
    " be restored past the last one archived: the archive command's error is in the server log"
)
HIDDEN = "run health as a superuser or a member of pg_monitor"


@dataclass
class Archiving:
    cluster: Cluster
    env: dict[str, str]
    repo: Path
    label: str

    @property
    def wal_dir(self) -> Path:
        """The repository's directory of the timeline's WAL segments (archive-push writes there)."""
        [directory] = (self.repo / "archive" / "spreadedge").glob("15-*/0000000100000000")
        return directory


@pytest.fixture(scope="module")
def archiving(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Archiving]:
    with backed_up(make_cluster, project_settings, "full", PASSPHRASE) as (cluster, env, _):
        with psycopg.connect(cluster.url()) as conn:
            [label] = conn.execute("select label from ops.backup_runs where status = 'succeeded'").fetchone()
        yield Archiving(cluster, env, cluster.home / "backup" / "repo", label)


def _fails_now(conn: psycopg.Connection, segment: str) -> bool:
    row = conn.execute(
        "select last_failed_wal >= %s and last_failed_time > coalesce(last_archived_time, '-infinity')"
        " from pg_stat_archiver",
        [segment],
    ).fetchone()
    return bool(row[0])


@contextmanager
def _closed(archiving: Archiving, path: Path, mode: int) -> Iterator[str]:
    """``path`` of the repository given ``mode`` and a WAL segment switched, waiting (at most 60 s)
    until the archiver has failed to archive it; the segment's name. Afterwards the mode is put
    back and the waiting WAL archived, whatever happened."""
    before = path.stat().st_mode & 0o7777
    path.chmod(mode)
    try:
        with psycopg.connect(archiving.cluster.url(), autocommit=True) as conn:
            conn.execute("create table if not exists public.ballast (n integer)")
            conn.execute("insert into public.ballast select generate_series(1, 1000)")
            [segment] = conn.execute("select pg_walfile_name(pg_current_wal_lsn())").fetchone()
            conn.execute("select pg_switch_wal()")
            deadline = time.monotonic() + 60
            while not _fails_now(conn, segment):
                assert time.monotonic() < deadline, f"archiving {segment} never failed"
                time.sleep(0.1)
        yield segment
    finally:
        path.chmod(before)
        with psycopg.connect(archiving.cluster.url(), autocommit=True) as conn:
            archive_current_wal(conn)


@pytest.fixture
def unwritable(archiving: Archiving) -> Iterator[str]:
    """archive-push cannot write into the repository (its WAL directory read-only for the server's
    user, as after a chown or a read-only remount); the segment that failed."""
    with _closed(archiving, archiving.wal_dir, 0o500) as segment:
        yield segment


@pytest.fixture
def unreadable(archiving: Archiving) -> Iterator[str]:
    """The repository's archive directory closed to the server's user (chmod 000): archive.info
    cannot be read; the segment that failed."""
    with _closed(archiving, archiving.repo / "archive", 0) as segment:
        yield segment


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _wal_check(conn: psycopg.Connection) -> tuple[dict[str, Any], dict[str, Any]]:
    """The wal_archiving check of ops.health_report and, read in the same statement, the archiver's
    state and what waits to be archived."""
    report, state = conn.execute(
        "select ops.health_report(),"
        " (select jsonb_build_object('archived', a.last_archived_wal, 'archived_at', a.last_archived_time,"
        "         'failed', a.last_failed_wal, 'failed_at', a.last_failed_time, 'failures', a.failed_count,"
        "         'reset', a.stats_reset, 'waiting', w.n, 'segments', w.segments, 'oldest', w.oldest,"
        "         'waited', date_trunc('second', now() - w.oldest)::text)"
        "  from pg_stat_archiver a,"
        "       (select count(*) as n, count(*) filter (where name ~ '^[0-9A-F]{24}[.]ready$') as segments,"
        "               min(modification) as oldest"
        "        from pg_ls_archive_statusdir() where name like '%.ready') w)"
    ).fetchone()
    [check] = [c for c in report["checks"] if c["name"] == "wal_archiving"]
    for key in ("archived_at", "failed_at", "reset", "oldest"):
        if state[key] is not None:
            state[key] = datetime.fromisoformat(state[key])
    return check, state


def _failing_detail(state: dict[str, Any], limit: str = "00:10:00") -> str:
    return (
        f"archiving {state['failed']} failed at {_utc(state['failed_at'])} ({state['failures']} failures since"
        f" {_utc(state['reset'])}); last archived {state['archived']} at {_utc(state['archived_at'])};"
        f" {state['waiting']} WAL files ({state['segments'] * 16} MB) wait in pg_wal to be archived, the oldest"
        f" since {_utc(state['oldest'])} ({state['waited']}, limit {limit}); {CONSEQUENCE}"
    )


# -- health: wal_archiving -----------------------------------------------------------------------


def test_wal_archiving_is_ok_and_names_the_last_segment_archived(archiving: Archiving) -> None:
    with psycopg.connect(archiving.cluster.url(), autocommit=True) as conn:
        archive_current_wal(conn)
        check, state = _wal_check(conn)

    assert state["waiting"] == 0
    assert check == {
        "name": "wal_archiving",
        "ok": True,
        "detail": f"last archived {state['archived']} at {_utc(state['archived_at'])}; nothing waits to be archived",
    }


# bug: with archive-push failing, pg_wal grew until the disk was full and no backup could be
# restored past the last segment archived, while every check of spreadedge health was ok
def test_wal_archiving_fails_naming_the_segment_that_cannot_be_archived(
    archiving: Archiving, unwritable: str
) -> None:
    with psycopg.connect(archiving.cluster.url(), autocommit=True) as conn:
        check, state = _wal_check(conn)

    assert (state["failed"], state["waiting"] >= 1) == (unwritable, True)
    assert check == {"name": "wal_archiving", "ok": False, "detail": _failing_detail(state)}


def test_health_cli_fails_and_exits_1_while_archiving_fails(archiving: Archiving, unwritable: str) -> None:
    result = cli("health", env=archiving.env)

    [line] = [line for line in result.output.splitlines() if line[8:].startswith("wal_archiving ")]
    assert result.exit_code == 1
    assert line.startswith(f"  FAIL  wal_archiving             archiving {unwritable} failed at ")
    assert line.endswith(CONSEQUENCE)


def test_wal_archiving_fails_when_archive_mode_is_on_without_an_archive_command(archiving: Archiving) -> None:
    with psycopg.connect(archiving.cluster.url(), autocommit=True) as conn:
        [command] = conn.execute("show archive_command").fetchone()
        conn.execute("alter system set archive_command = ''")
        conn.execute("select pg_reload_conf()")
        try:
            deadline = time.monotonic() + 60
            while conn.execute("show archive_command").fetchone() != ("",):
                assert time.monotonic() < deadline, "archive_command was never reloaded"
                time.sleep(0.1)
            conn.execute("create table if not exists public.ballast (n integer)")
            conn.execute("insert into public.ballast select generate_series(1, 10)")
            conn.execute("select pg_switch_wal()")
            check, state = _wal_check(conn)
        finally:
            conn.execute(sql.SQL("alter system set archive_command = {}").format(sql.Literal(command)))
            conn.execute("select pg_reload_conf()")
            deadline = time.monotonic() + 60
            while conn.execute("show archive_command").fetchone() != (command,):
                assert time.monotonic() < deadline, "archive_command was never reloaded"
                time.sleep(0.1)
            archive_current_wal(conn)

    assert check == {
        "name": "wal_archiving",
        "ok": False,
        "detail": "archive_mode is on but archive_command and archive_library are empty: nothing archives WAL"
        " (run spreadedge backup init, or turn archive_mode off);"
        f" last archived {state['archived']} at {_utc(state['archived_at'])};"
        f" {state['waiting']} WAL files ({state['segments'] * 16} MB) wait in pg_wal to be archived, the oldest"
        f" since {_utc(state['oldest'])} ({state['waited']}, limit 00:10:00); {CONSEQUENCE}",
    }


def test_wal_archiving_fails_for_a_role_the_waiting_wal_is_hidden_from(archiving: Archiving) -> None:
    # pg_ls_archive_statusdir is for superusers and pg_monitor: without it an archive_command that
    # hangs (and so never fails) would look healthy
    with psycopg.connect(archiving.cluster.url(), autocommit=True) as conn:
        archive_current_wal(conn)
        conn.execute("set role spreadedge_owner")
        ok, detail = conn.execute(
            "select ok, detail from internal.health_wal_archiving('10 minutes')"
        ).fetchone()
        archived, at = conn.execute(
            "select last_archived_wal, last_archived_time from pg_stat_archiver"
        ).fetchone()

    assert (ok, detail) == (
        False,
        f"last archived {archived} at {_utc(at)}; the WAL waiting to be archived is hidden from spreadedge_owner: "
        + HIDDEN,
    )


@pytest.fixture
def hung(archiving: Archiving) -> Iterator[None]:
    """The server's archiver stopped (SIGSTOP), as behind an archive_command that hangs and so never
    fails, with a WAL segment switched and waiting at least 2 s; the archiver goes on and the waiting
    WAL is archived afterwards, whatever happened."""
    with psycopg.connect(archiving.cluster.url(), autocommit=True) as conn:
        archive_current_wal(conn)
        [pid] = conn.execute("select pid from pg_stat_activity where backend_type = 'archiver'").fetchone()
        os.kill(pid, signal.SIGSTOP)
        try:
            conn.execute("create table if not exists public.ballast (n integer)")
            conn.execute("insert into public.ballast select generate_series(1, 10)")
            conn.execute("select pg_switch_wal()")
            deadline = time.monotonic() + 60
            while not conn.execute(
                "select coalesce(min(modification) < now() - interval '2 seconds', false)"
                " from pg_ls_archive_statusdir() where name like '%.ready'"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "no WAL file waited to be archived"
                time.sleep(0.1)
            yield
        finally:
            os.kill(pid, signal.SIGCONT)
            archive_current_wal(conn)


def _wal_check_within(conn: psycopg.Connection, limit: str) -> tuple[tuple[bool, str], dict[str, Any]]:
    """internal.health_wal_archiving at ``limit`` and, read in the same statement, what _wal_check reads."""
    ok, detail, waiting, segments, oldest, waited, archived, archived_at = conn.execute(
        "select h.ok, h.detail, w.n, w.segments, w.oldest, date_trunc('second', now() - w.oldest)::text,"
        "       a.last_archived_wal, a.last_archived_time"
        " from internal.health_wal_archiving(%s::interval) h, pg_stat_archiver a,"
        "      (select count(*) as n, count(*) filter (where name ~ '^[0-9A-F]{24}[.]ready$') as segments,"
        "              min(modification) as oldest"
        "       from pg_ls_archive_statusdir() where name like '%%.ready') w",
        [limit],
    ).fetchone()
    state = {"waiting": waiting, "segments": segments, "oldest": oldest, "waited": waited,
             "archived": archived, "archived_at": archived_at}  # fmt: skip
    return (ok, detail), state


def _waiting_detail(state: dict[str, Any], limit: str) -> str:
    """What wal_archiving says of the last segment archived and of the WAL waiting, at ``limit``."""
    return (
        f"last archived {state['archived']} at {_utc(state['archived_at'])};"
        f" {state['waiting']} WAL files ({state['segments'] * 16} MB) wait in pg_wal to be archived, the oldest"
        f" since {_utc(state['oldest'])} ({state['waited']}, limit {limit})"
    )


# a hung archive_command never fails: the age of the oldest WAL file waiting is all that shows it
def test_wal_archiving_fails_when_a_wal_file_waits_longer_than_the_limit(
    archiving: Archiving, hung: None
) -> None:
    with psycopg.connect(archiving.cluster.url(), autocommit=True) as conn:
        check, state = _wal_check_within(conn, "1 second")

    assert check == (False, f"{_waiting_detail(state, '00:00:01')}; {CONSEQUENCE}")


def test_wal_archiving_is_ok_while_the_wal_waiting_is_younger_than_the_limit(
    archiving: Archiving, hung: None
) -> None:
    with psycopg.connect(archiving.cluster.url(), autocommit=True) as conn:
        check, state = _wal_check_within(conn, "1 hour")

    assert check == (True, _waiting_detail(state, "01:00:00"))


def test_wal_archiving_is_ok_with_archive_mode_off(db: psycopg.Connection) -> None:
    row = db.execute("select ok, detail from internal.health_wal_archiving('10 minutes')").fetchone()

    assert row == (
        True,
        "WAL archiving is off (archive_mode off): no point-in-time recovery; spreadedge backup init turns it on",
    )


def test_health_report_refuses_a_max_archive_wait_that_is_not_positive(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select ops.health_report(max_archive_wait => '0 seconds')")

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "max_archive_wait must be a positive interval with no negative part, got 00:00:00",
    )


def test_health_cli_takes_the_archive_wait_limit(db_url: str) -> None:
    result = cli("health", "--max-archive-wait", "ten minutes", database_url=db_url)

    assert result.exit_code == 2
    assert "Invalid value for '--max-archive-wait': must look like 30s, 15m, 12h, 2d or 1w" in result.output


# -- backups while archiving fails -----------------------------------------------------------------


def _last_run(archiving: Archiving) -> tuple[str, str, str]:
    with psycopg.connect(archiving.cluster.url()) as conn:
        return conn.execute(
            "select kind, status, detail from ops.backup_runs order by run_id desc limit 1"
        ).fetchone()


# bug: the backup failed after pgBackRest's archive-timeout saying only that a segment "was not
# archived before the 120000ms timeout": nothing said that archiving itself had been failing
def test_a_backup_while_archiving_fails_names_archiving_as_the_cause(
    archiving: Archiving, unwritable: str
) -> None:
    result = cli("backup", "diff", env={**archiving.env, "PGBACKREST_ARCHIVE_TIMEOUT": "1"})

    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert lines[1] == "Error: pgBackRest backup failed:"
    assert lines[2].startswith("ERROR: [082]: WAL segment ") and lines[2].endswith(
        " was not archived before the 1000ms timeout"
    )
    assert lines[3].startswith(
        "no backup can succeed while WAL archiving fails (pgBackRest waits for the backup's WAL to reach the"
        f" repository): archiving {unwritable} failed at "
    )
    assert lines[3].endswith(CONSEQUENCE)
    assert lines[4:] == ["fix WAL archiving (spreadedge health: wal_archiving), then take the backup again"]


def test_a_backup_while_archiving_fails_is_recorded_failed_with_the_cause(
    archiving: Archiving, unwritable: str
) -> None:
    result = cli("backup", "diff", env={**archiving.env, "PGBACKREST_ARCHIVE_TIMEOUT": "1"})

    kind, status, detail = _last_run(archiving)
    assert (kind, status) == ("diff", "failed")
    assert detail == result.output.split("Error: ", 1)[1].rstrip("\n")
    assert (
        f"WAL archiving fails (pgBackRest waits for the backup's WAL to reach the repository): archiving {unwritable}"
        in detail
    )


def test_last_backup_still_names_the_last_backup_that_succeeded(
    archiving: Archiving, unwritable: str
) -> None:
    cli("backup", "diff", env={**archiving.env, "PGBACKREST_ARCHIVE_TIMEOUT": "1"})
    with psycopg.connect(archiving.cluster.url()) as conn:
        [report] = conn.execute("select ops.health_report()").fetchone()

    [check] = [c for c in report["checks"] if c["name"] == "last_backup"]
    assert (check["ok"], check["detail"].split(" finished ")[0]) == (
        True,
        f"last physical backup {archiving.label} (full)",
    )


# bug: archive.info that the server's user may not read failed the backup with "unable to load
# info file '...' or '...':", the reason (Permission denied) on the lines it left out
def test_a_backup_of_a_repository_the_server_cannot_read_names_the_reason(
    archiving: Archiving, unreadable: str
) -> None:
    result = cli("backup", "full", env=archiving.env)

    info = archiving.repo / "archive" / "spreadedge" / "archive.info"
    assert result.exit_code == 1
    assert (
        f"FileOpenError: unable to open file '{info}' for read: [13] Permission denied"
        in result.output.splitlines()
    )


# -- backup list -----------------------------------------------------------------------------------


def test_backup_list_says_that_archiving_fails(archiving: Archiving, unwritable: str) -> None:
    result = cli("backup", "list", env=archiving.env)

    [line] = [line for line in result.output.splitlines() if line.startswith("WAL archiving ")]
    assert result.exit_code == 0, result.output
    assert line.startswith(f"WAL archiving FAILING: archiving {unwritable} failed at ")


def test_backup_list_shows_why_a_pgbackrest_run_failed(archiving: Archiving, unwritable: str) -> None:
    cli("backup", "diff", env={**archiving.env, "PGBACKREST_ARCHIVE_TIMEOUT": "1"})
    result = cli("backup", "list", env=archiving.env)

    runs = result.output.splitlines()
    failed = next(line for line in runs[runs.index("runs (ops.backup_runs):") :] if " failed " in line)
    assert "pgBackRest backup failed: ERROR: [082]: WAL segment " in failed


# bug: a repository whose archive directory the server's user may not read was reported as "the
# repository passphrase is wrong or missing"
def test_backup_list_of_a_repository_the_server_cannot_read_does_not_blame_the_passphrase(
    archiving: Archiving, unreadable: str
) -> None:
    result = cli("backup", "list", env=archiving.env)

    assert result.exit_code == 1
    assert WRONG_PASSPHRASE not in result.output
    assert "for read: [13] Permission denied" in result.output
    assert result.output.splitlines()[0].startswith(
        f"WAL archiving FAILING: archiving {unreadable} failed at "
    )


# -- secrets ---------------------------------------------------------------------------------------


def test_the_passphrase_is_in_no_log_detail_or_message_of_failed_archiving(
    archiving: Archiving, unwritable: str
) -> None:
    backup = cli("backup", "diff", env={**archiving.env, "PGBACKREST_ARCHIVE_TIMEOUT": "1"})
    health = cli("health", "--json", env=archiving.env)
    logs = [archiving.cluster.log_file.resolve(), *(archiving.cluster.home / "backup" / "log").iterdir()]

    with psycopg.connect(archiving.cluster.url()) as conn:
        details = conn.execute(
            "select string_agg(coalesce(detail, ''), ' ') from ops.backup_runs"
        ).fetchone()[0]
    seen = {
        "backup": PASSPHRASE in backup.output,
        "health": PASSPHRASE in health.output,
        "ops.backup_runs": PASSPHRASE in details,
        **{path.name: PASSPHRASE in path.read_text(errors="replace") for path in logs},
    }
    assert seen == dict.fromkeys(seen, False)
    assert (
        "spreadedge-backup.log" in seen
        and "--repo1-cipher-pass=<redacted>"
        in (archiving.cluster.home / "backup" / "log" / "spreadedge-backup.log").read_text()
    )
