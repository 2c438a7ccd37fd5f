"""A pending migration behind a transaction left open on the table it alters, during trading.

A migration altering trading.orders waits for an ACCESS EXCLUSIVE lock, and every fill, placement
and read of the table queues behind that waiting lock. Behind a psql user's ``begin; select ...
from trading.orders`` (then lunch) migrate waited for as long as the transaction stayed open, and
trading stopped with it. Now each lock of a migration waits at most half the deadlock_timeout, the
migration is rolled back whole and tried again, and migrate gives up after a while naming the lock
and its holders, nothing of the migration applied.

The database is the project's, fully migrated (``seeded``); the project migrated here is a copy of
this one with one more migration of the test's, pending: nothing is added to migrations/.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from ops_helpers import PROJECT, cli
from spreadedge import sqlfiles
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from test_held_locks_hunt import _session_line
from trading_helpers import fill, place

# every wait of a test is capped by this many seconds: a hang is a failure, not a stuck run
CAP = 60
PENDING = "9999_alter_orders"
# the test's pending migration: a table of its own, then trading.orders altered, as a migration
# adding a column does (ACCESS EXCLUSIVE on the table and its partitions)
ALTER_ORDERS = """\
-- a migration of the test: a table of its own, then trading.orders altered
create table public.lock_queue_probe (id bigint);
alter table trading.orders add column lock_queue_probe text;
"""


@pytest.fixture
def project(tmp_path: Path, project_settings: Settings) -> Iterator[Settings]:
    """A copy of the project (migrations/ and functions/) with PENDING added: the seeded database,
    migrated with the project's migrations, is one migration behind it."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT / "migrations", root / "migrations")
    shutil.copytree(PROJECT / "functions", root / "functions")
    (root / "migrations" / f"{PENDING}.sql.j2").write_text(ALTER_ORDERS)
    yield replace(project_settings, project_dir=root)


def _waits_for_orders(monitor: psycopg.Connection, ended: Callable[[], bool]) -> bool:
    """Whether a session comes to wait for a lock on trading.orders within 30 s; False as soon as
    ``ended()`` says migrate ended without it."""
    for _ in range(300):
        waiting = monitor.execute(
            "select exists (select from pg_locks where not granted and locktype = 'relation'"
            " and relation = 'trading.orders'::regclass)"
        ).fetchone()[0]
        if waiting:
            return True
        if ended():
            return False
        time.sleep(0.1)
    return False


def _gave_way(lines: list[str], attempts: int, ended: Callable[[], bool]) -> bool:
    """Whether migrate has said within 30 s that this many attempts of PENDING gave way."""
    for _ in range(300):
        if sum(line.startswith(f"{PENDING}: waiting for ") for line in lines) >= attempts:
            return True
        if ended():
            return False
        time.sleep(0.1)
    return False


def _has_probe_column(conn: psycopg.Connection) -> bool:
    return conn.execute(
        "select exists (select from pg_attribute where attrelid = 'trading.orders'::regclass"
        " and attname = 'lock_queue_probe' and not attisdropped)"
    ).fetchone()[0]


def _ledgers(conn: psycopg.Connection) -> tuple[int, int]:
    """How many times PENDING is recorded in the checksum ledger, and in yoyo's table."""
    return conn.execute(
        "select (select count(*) from public._spreadedge_migration_checksum where migration_id = %(id)s),"
        " (select count(*) from public._yoyo_migration where migration_id = %(id)s)",
        {"id": PENDING},
    ).fetchone()


# bug: migrate's ALTER TABLE waited for the lock behind the person's transaction for as long as it
# stayed open, and the fill queued behind migrate's waiting lock: 57014 here, a stopped engine live
def test_a_fill_is_not_queued_behind_a_migration_waiting_for_a_transaction_left_open(
    seeded: psycopg.Connection, seeded_url: str, project: Settings
) -> None:
    order = place(seeded, "buy", "1", "60000")
    with (
        ThreadPoolExecutor(1) as pool,
        psycopg.connect(seeded_url, application_name="lunch") as person,
        psycopg.connect(seeded_url, autocommit=True, application_name="engine") as engine,
    ):
        person.execute("select count(*) from trading.orders").fetchone()
        running = pool.submit(migrate, seeded_url, project, lambda line: None)
        try:
            assert _waits_for_orders(seeded, running.done)
            engine.execute("set statement_timeout = '20s'")  # the cap of a test
            trade_id = fill(
                engine, order, "1", "60000"
            )  # was 57014: canceling statement due to statement timeout
        finally:
            person.rollback()
        running.result(timeout=CAP)
    assert seeded.execute("select trade_id, quantity from trading.trades").fetchall() == [
        (trade_id, Decimal("1"))
    ]
    assert _has_probe_column(seeded)


# bug: nothing said what migrate waited for (it sat silent); it went on only once the person's
# transaction ended, which it now does too, having tried again meanwhile
def test_a_waiting_migration_says_what_it_waits_for_and_is_applied_once_the_transaction_ends(
    seeded: psycopg.Connection, seeded_url: str, project: Settings
) -> None:
    lines: list[str] = []
    with (
        ThreadPoolExecutor(1) as pool,
        psycopg.connect(seeded_url, application_name="lunch") as person,
    ):
        person.execute("select count(*) from trading.orders").fetchone()
        holder = _session_line(seeded, person.info.backend_pid)
        running = pool.submit(migrate, seeded_url, project, lines.append)
        try:
            gave_way = _gave_way(lines, 2, running.done)  # was: no line, for as long as it stayed open
        finally:
            person.commit()
        running.result(timeout=CAP)
    assert gave_way
    waiting = [line for line in lines if line.startswith(f"{PENDING}: waiting for ")]
    attempts = [int(re.fullmatch(r".*; attempt (\d+) gave way", line).group(1)) for line in waiting]
    assert attempts == list(range(1, len(waiting) + 1))
    # the first wait may be over before migrate looks; a later one is named as it was seen
    assert waiting[-1] == (
        f"{PENDING}: waiting for a lock on trading.orders held by {holder}; attempt {len(waiting)} gave way"
    )
    assert lines[lines.index(f"applying {PENDING}") + 1 : lines.index(waiting[-1]) + 1] == waiting
    assert _has_probe_column(seeded)
    assert seeded.execute("select to_regclass('public.lock_queue_probe') is not null").fetchone() == (True,)
    assert _ledgers(seeded) == (1, 1)  # recorded once, by the try that committed


# bug: migrate waited for as long as the transaction stayed open (here: the cap of the test)
def test_migrate_gives_up_on_a_held_table_naming_it_and_its_holder_with_nothing_of_the_migration_applied(
    seeded: psycopg.Connection, seeded_url: str, project: Settings, monkeypatch
) -> None:
    monkeypatch.setattr(sqlfiles, "_LOCK_PATIENCE", 3)
    environment = {"SPREADEDGE_PROJECT_DIR": str(project.project_dir)}
    with (
        ThreadPoolExecutor(1) as pool,
        psycopg.connect(seeded_url, application_name="lunch") as person,
    ):
        person.execute("select count(*) from trading.orders").fetchone()
        holder = _session_line(seeded, person.info.backend_pid)
        running = pool.submit(cli, "migrate", database_url=seeded_url, env=environment)
        try:
            result = running.result(timeout=CAP)
        finally:
            person.rollback()
    assert result.exit_code == 1
    assert result.output.endswith(
        f"Error: migration {PENDING} was not applied, nothing of it: for 3 s it waited for a lock on "
        f"trading.orders held by {holder} and gave way each time, so that the sessions queued behind it "
        "went on (canceling statement due to lock timeout, SQLSTATE 55P03)\n"
        "HINT: end or commit the transactions named (select pg_terminate_backend(pid) ends one), "
        "then run spreadedge migrate again\n"
    ), result.output
    # nothing of it: neither its table nor its column, and no record of it in either ledger
    assert not _has_probe_column(seeded)
    assert seeded.execute("select to_regclass('public.lock_queue_probe') is null").fetchone() == (True,)
    assert _ledgers(seeded) == (0, 0)
    status = cli("migrate", "--status", database_url=seeded_url, env=environment)
    applied = len(list((PROJECT / "migrations").glob("*.sql.j2")))
    width = max(len(path.name.removesuffix(".sql.j2")) for path in (PROJECT / "migrations").glob("*.sql.j2"))
    assert (status.exit_code, status.output.splitlines()[-2:]) == (
        0,
        [f"{PENDING:<{width}}  pending", f"{applied} applied, 1 pending"],
    )
