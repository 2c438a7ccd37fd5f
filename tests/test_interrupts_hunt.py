"""What operators and service managers see when a CLI command is stopped by a signal, for real:
the command runs as a subprocess, is held at a known moment (a lock another session holds), and is
sent SIGTERM (systemd's stop, ``kill PID``, ``timeout``, ``docker stop``: the command's process
alone) or SIGINT. Every wait is capped: a hang is a failure, not a stuck run.

Ctrl-C at a terminal (SIGINT to the whole process group) is covered by test_cli_journey_hunt.py,
the notify worker's and serve's graceful stops by test_notify_runtime_hunt.py and
test_api_runtime_hunt.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

import test_tls_hunt as tls_hunt
from conftest import new_home
from market_helpers import rejects_of, tick_line
from spreadedge.cluster import PG_BINDIR, Cluster
from tls_helpers import TlsServer

PROJECT = Path(__file__).resolve().parents[1]
CLI = "from spreadedge.cli import main; main()"
CAP = 60
MIGRATE_LOCK = "select pg_advisory_lock(hashtext('spreadedge.migrate'))"
TERMINATED = (
    "terminated by SIGTERM: any transaction in progress was rolled back; what was committed before stays"
)
INTERRUPTED = "interrupted: any transaction in progress was rolled back; what was committed before stays"


def environment(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": url, **extra}


def start(url: str, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    """The CLI with ``args`` in a session of its own (a signal to its process reaches it alone)."""
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        env=environment(url, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


def finish(process: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    """The process's status, output and errors once it ends (killed at CAP seconds: a hang)."""
    try:
        out, err = process.communicate(timeout=CAP)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return -9, out.decode(), err.decode()
    return process.returncode, out.decode(), err.decode()


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Kill whatever of the process's group is left (a test that failed part-way)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def until(conn: psycopg.Connection, process: subprocess.Popen[bytes] | None, query: str) -> None:
    """Wait until ``query`` (one boolean) is true (while ``process`` runs)."""
    for _ in range(CAP * 20):
        row = conn.execute(query).fetchone()
        if row is not None and row[0]:
            return
        assert process is None or process.poll() is None, finish(process)
        time.sleep(0.05)
    raise AssertionError(f"never came true: {query}")


def waits_for(conn: psycopg.Connection, process: subprocess.Popen[bytes], condition: str) -> None:
    """Wait until a backend other than ``conn``'s matches ``condition`` (of pg_stat_activity)."""
    until(
        conn,
        process,
        f"select exists (select from pg_stat_activity where pid <> pg_backend_pid() and {condition})",
    )


def children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ended_within(pids: list[int], seconds: float = 10) -> list[int]:
    """The pids still running ``seconds`` later (they are given that long to end)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(running(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if running(pid)]


def _dump_blocked(db_url: str, tmp_path: Path, sig: signal.Signals) -> tuple[tuple[int, str, str], list[int]]:
    """``backup logical`` into tmp_path/dumps, held by a lock pg_dump waits for, sent ``sig`` (to
    its process alone); its (status, output, errors) and the pids of the programs it had started."""
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as watcher:
        holder.execute("lock table trading.strategies in access exclusive mode")
        process = start(
            db_url, "backup", "logical", "--out", str(tmp_path / "dumps"), "--compress-type", "zst"
        )
        try:
            waits_for(watcher, process, "application_name = 'pg_dump' and wait_event_type = 'Lock'")
            programs = children(process.pid)
            process.send_signal(sig)
            outcome = finish(process)
        finally:
            if process.poll() is None:
                stop_group(process)
    return outcome, programs


def test_sigterm_of_a_logical_backup_says_so_and_ends_it_by_sigterm(db_url: str, tmp_path: Path) -> None:
    # why it matters: Python's default SIGTERM killed the command at once, silently: nothing said
    # what became of the backup, and no cleanup of it ran
    (status, out, err), _ = _dump_blocked(db_url, tmp_path, signal.SIGTERM)

    assert (status, err) == (-signal.SIGTERM, f"\n{TERMINATED}\n"), out


def test_sigterm_of_a_logical_backup_leaves_no_partial_dump_and_no_pg_dump_running(
    db: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    # why it matters: the .partial dump stayed in the dump directory for good, and pg_dump and
    # zstd ran on as orphans, holding pg_dump's snapshot and locks on the database
    _, programs = _dump_blocked(db_url, tmp_path, signal.SIGTERM)

    assert len(programs) == 2  # pg_dump and zstd
    assert ended_within(programs) == []
    assert sorted(os.listdir(tmp_path / "dumps")) == []
    assert db.execute(
        "select count(*) from pg_stat_activity where application_name = 'pg_dump'"
    ).fetchone() == (0,)


def test_sigterm_of_a_logical_backup_records_its_run_failed_as_stopped_by_sigterm(
    db: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    # why it matters: the run stayed 'running' in ops.backup_runs, a backup that looked in progress
    # for ever to backup list and health
    _dump_blocked(db_url, tmp_path, signal.SIGTERM)

    assert db.execute("select kind, status, detail from ops.backup_runs order by run_id").fetchall() == [
        ("logical_full", "failed", "stopped by SIGTERM before it finished")
    ]


def test_sigint_to_a_logical_backup_alone_leaves_no_pg_dump_running(db_url: str, tmp_path: Path) -> None:
    # why it matters: only Ctrl-C at a terminal signals pg_dump too; a SIGINT to the command alone
    # (kill -INT PID) left pg_dump and zstd running on, writing into a dump file already deleted
    (status, _, err), programs = _dump_blocked(db_url, tmp_path, signal.SIGINT)

    assert (status, err) == (-signal.SIGINT, f"\n{INTERRUPTED}\n")
    assert len(programs) == 2
    assert ended_within(programs) == []


def test_sigterm_of_a_migrate_waiting_for_the_lock_ends_by_sigterm_and_leaves_no_temporary_files(
    db_url: str, tmp_path: Path
) -> None:
    # why it matters: killed at once, migrate left its rendered migrations in a temporary
    # directory of its own (one more with every stop) and said nothing
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute(MIGRATE_LOCK)
        process = start(db_url, "migrate", TMPDIR=str(temporary))
        try:
            waits_for(holder, process, "wait_event = 'advisory' and datname = current_database()")
            process.send_signal(signal.SIGTERM)
            status, _, err = finish(process)
        finally:
            if process.poll() is None:
                stop_group(process)

    assert (status, err) == (-signal.SIGTERM, f"\n{TERMINATED}\n")
    assert sorted(os.listdir(temporary)) == []


def test_sigterm_in_a_shell_script_is_status_143(db_url: str) -> None:
    # why it matters: a script (or a supervisor) reads the status: 143 is "stopped by SIGTERM"
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute(MIGRATE_LOCK)
        script = f"{sys.executable} -c '{CLI}' migrate & child=$!; echo $child; wait $child; echo status $?"
        process = subprocess.Popen(
            ["bash", "-c", script],
            env=environment(db_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            child = int(process.stdout.readline())
            waits_for(holder, process, "wait_event = 'advisory' and datname = current_database()")
            os.kill(child, signal.SIGTERM)
            status, out, err = finish(process)
        finally:
            if process.poll() is None:
                stop_group(process)

    assert (status, out, err) == (0, "status 143\n", f"\n{TERMINATED}\n")


def test_sigterm_of_an_ingest_keeps_whole_batches_and_writes_the_rejects_of_those_committed(
    seeded: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    # why it matters: the rejects of the batches already committed are written when a run fails
    # part-way (a lost connection); killed by SIGTERM, the run wrote none, and the rows it had
    # rejected were lost without a trace
    lines = [tick_line("a1"), tick_line("a2", price="not a price")]  # the first batch: one reject
    lines += [tick_line(f"b{n}") for n in range(4000)]
    path = tmp_path / "ticks.jsonl"
    path.write_text("".join(lines))
    with psycopg.connect(db_url) as holder:
        process = start(db_url, "ingest", "ticks", str(path), "--batch-rows", "2")
        try:
            until(seeded, process, "select exists (select from market.ticks where exchange_trade_id = 'a1')")
            # the batch loading now commits, the next one waits
            holder.execute("lock table market.ticks in share mode")
            waits_for(seeded, process, "wait_event_type = 'Lock' and datname = current_database()")
            process.send_signal(signal.SIGTERM)
            status, _, err = finish(process)
        finally:
            if process.poll() is None:
                stop_group(process)

    assert (status, err.splitlines()[-1]) == (-signal.SIGTERM, TERMINATED)
    [(loaded, first)] = seeded.execute(
        "select count(*), bool_or(exchange_trade_id = 'a1') from market.ticks"
    ).fetchall()
    assert first and loaded % 2 == 1 and loaded < 4001  # a1, then whole batches of 2
    assert rejects_of(path) == ["line,reason", rejects_of(path)[1]]
    assert rejects_of(path)[1].startswith("2,")


def test_sigterm_of_a_restore_stops_pg_restore_and_leaves_no_decompressed_copy_of_the_dump(
    db: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    # why it matters: a compressed dump is decompressed next to itself for pg_restore (a copy as
    # large as the database); killed at once, the command left that copy in the dump directory for
    # good, and pg_restore ran on as an orphan, restoring after the operator had stopped the restore
    dumps = tmp_path / "dumps"
    dumped = start(db_url, "backup", "logical", "--data-only", "--out", str(dumps), "--compress-type", "zst")
    assert finish(dumped)[0] == 0
    [dump] = os.listdir(dumps)
    database = db.execute("select current_database()").fetchone()
    assert database is not None
    with psycopg.connect(db_url) as holder:
        holder.execute("lock table audit.log in access exclusive mode")  # the first table restored
        process = start(db_url, "restore", "logical", str(dumps / dump), "--to-database", database[0])
        try:
            waits_for(db, process, "application_name = 'pg_restore' and wait_event_type = 'Lock'")
            programs = children(process.pid)
            process.send_signal(signal.SIGTERM)
            status, _, err = finish(process)
        finally:
            if process.poll() is None:
                stop_group(process)
        assert programs and ended_within(programs) == []
        assert sorted(os.listdir(dumps)) == [dump]
    assert (status, err) == (-signal.SIGTERM, f"\n{TERMINATED}\n")
    # its backend, which waited for the lock, ends once it has it and finds the connection gone
    until(db, None, "select not exists (select from pg_stat_activity where application_name = 'pg_restore')")
    assert db.execute("select count(*) from ops.backup_runs").fetchone() == (1,)  # nothing restored


def program(pid: int) -> str:
    """The command line of process ``pid`` ("" once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """The pids of every process below ``pid``."""
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def test_sigterm_of_a_physical_backup_stops_pgbackrest_and_records_the_run_failed(
    db: psycopg.Connection, db_url: str
) -> None:
    # why it matters: pgBackRest ran on as an orphan after the stop (holding the stanza's lock, so
    # the next backup was refused as "another pgBackRest command is running"), and the run stayed
    # 'running' in ops.backup_runs; a pgBackRest that never ends stands in for a long backup
    home = new_home()  # readable by the server's user, who runs pgBackRest when we are root
    (home / "backup").mkdir(parents=True)
    (home / "backup" / "pgbackrest.conf").write_text("[global]\ncompress-type=zst\n")
    fake = home / "pgbackrest"
    fake.write_text("#!/bin/sh\nexec sleep 300\n")
    fake.chmod(0o755)
    process = start(db_url, "backup", "full", SPREADEDGE_HOME=str(home), SPREADEDGE_PGBACKREST=str(fake))
    try:
        deadline = time.monotonic() + CAP
        while not any(program(pid).startswith("sleep ") for pid in descendants(process.pid)):
            assert process.poll() is None and time.monotonic() < deadline, finish(process)
            time.sleep(0.05)
        programs = descendants(process.pid)
        process.send_signal(signal.SIGTERM)
        status, _, err = finish(process)
    finally:
        if process.poll() is None:
            stop_group(process)
        shutil.rmtree(home.parent, ignore_errors=True)

    leftover = ended_within(programs)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert leftover == []
    assert (status, err.splitlines()[-1]) == (-signal.SIGTERM, TERMINATED)
    assert db.execute("select kind, status, detail from ops.backup_runs").fetchall() == [
        ("full", "failed", "stopped by SIGTERM before it finished")
    ]


def test_sigterm_of_db_start_during_initdb_leaves_no_initdb_running_and_the_next_start_works(
    make_cluster: Callable[..., Cluster],
) -> None:
    # why it matters: initdb ran on as an orphan after the command had ended (killed at once, or as
    # root its runuser killed by subprocess.run), writing a data directory whose PG_VERSION the
    # next start (a service manager's restart, the operator's retry) took for a finished cluster;
    # without root, subprocess.run killed initdb half done, leaving such a directory for good
    cluster = make_cluster()  # not started: its teardown deletes whatever the commands made
    env = {k: v for k, v in environment("").items() if k != "DATABASE_URL"}
    env |= {"SPREADEDGE_HOME": str(cluster.home), "SPREADEDGE_PORT": str(cluster.port)}
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "db", "start"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + CAP
        while not any(program(pid).startswith(f"{PG_BINDIR}/initdb ") for pid in descendants(process.pid)):
            assert process.poll() is None and time.monotonic() < deadline, finish(process)
            time.sleep(0.01)
        programs = descendants(process.pid)
        process.send_signal(signal.SIGTERM)
        status, _, err = finish(process)
    finally:
        if process.poll() is None:
            stop_group(process)
    still = [pid for pid in programs if running(pid)]
    ended_within(still)  # let an orphan finish before the teardown deletes its directory

    assert still == []
    assert (status, err.splitlines()[-1]) == (-signal.SIGTERM, TERMINATED)
    again = subprocess.run(
        [sys.executable, "-c", CLI, "db", "start"], env=env, capture_output=True, text=True, timeout=CAP
    )
    assert (again.returncode, again.stdout) == (
        0,
        f"embedded cluster started on port {cluster.port} ({cluster.data_dir})\n",
    ), again.stderr


# the TLS cluster's fixtures, as tests/test_tls_hunt.py defines them
tls, dbname = tls_hunt.tls, tls_hunt.dbname


def test_sigterm_of_a_backup_leaves_no_file_holding_the_ssl_key_passphrase(
    tls: TlsServer, dbname: str, tmp_path: Path
) -> None:
    # why it matters: the SSL key's passphrase goes to pg_dump in a private service file of a
    # temporary directory, removed when the dump ends; killed at once, the command left it there
    url = tls.cert_url(
        dbname, sslkey=str(tls.certs / "client_encrypted.key"), sslpassword=tls_hunt.PASSPHRASE
    )
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as watcher:
        holder.execute("lock table trading.strategies in access exclusive mode")
        process = start(url, "backup", "logical", "--out", str(tmp_path / "dumps"), TMPDIR=str(temporary))
        try:
            waits_for(watcher, process, "application_name = 'pg_dump' and wait_event_type = 'Lock'")
            assert [path.name for path in temporary.rglob("pg_service.conf")] == ["pg_service.conf"]
            process.send_signal(signal.SIGTERM)
            status, _, err = finish(process)
        finally:
            if process.poll() is None:
                stop_group(process)

    assert sorted(temporary.rglob("*")) == []
    assert (status, err) == (-signal.SIGTERM, f"\n{TERMINATED}\n")
