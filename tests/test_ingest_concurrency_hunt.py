"""Market data loads racing one another (a --strict run, one transaction over many batches, and
another load of the same instruments) and racing a partition detach.

Each test forces its interleaving with a lock held by a third session and with each session's
deadlock_timeout (which of two waiting sessions looks for the deadlock, and is aborted), never by
sleeping and hoping."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import psycopg

from market_helpers import DAY, RECENT_NOON, TICKS_HEADER, instrument_id, rejects_of, tick
from spreadedge import ingest
from trading_helpers import waits_for_a_lock

AT = f"{DAY}T12:00:00Z"
# W, X, Y: the instruments of the race (any three)
W, X, Y = ("binance", "BNBUSDT"), ("binance", "BTCUSDT"), ("kraken", "ETHUSD")


def _ticks_file(path: Path, *rows: tuple[tuple[str, str], str, str]) -> Path:
    """A ticks CSV of ((exchange, symbol), trade id, price) rows, all at noon yesterday."""
    path.write_text(
        TICKS_HEADER
        + "".join(
            f"{exchange},{symbol},{AT},{trade_id},{price},1,buy\n"
            for (exchange, symbol), trade_id, price in rows
        )
    )
    return path


def _attempt(action: Any) -> Any:
    try:
        return action()
    except psycopg.Error as exc:  # returned for the test to assert on
        return exc


def _session(url: str, deadlock_timeout: str) -> psycopg.Connection:
    """An autocommit session whose deadlock check runs after deadlock_timeout of waiting."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("select set_config('deadlock_timeout', %s, false)", [deadlock_timeout])
    return conn


def _waits_for(conn: psycopg.Connection, pid: int, blocker_pid: int) -> bool:
    """Whether backend pid comes to wait for a lock held by (or queued behind) blocker_pid within 30 s."""
    for _ in range(300):
        if conn.execute("select %s = any(pg_blocking_pids(%s))", [blocker_pid, pid]).fetchone()[0]:
            return True
        time.sleep(0.1)
    return False


def _a_batch_closing_a_deadlock_with_a_strict_run(seeded, url, tmp_path):
    """A --strict run of X's, W's and Y's ticks (a batch each; deadlock_timeout 60 s) and a
    one-batch run of X's and Y's ticks (deadlock_timeout 100 ms; Y's trade y1 is in both files),
    made to deadlock with the batch closing the circle, so that its deadlock check is the first
    to find it and the batch is the one aborted, however slow the machine: the strict run holds
    X's latest price (its first batch) and waits for trade y1, which the batch has inserted; only
    then does the batch go on to wait for X's latest price. Two other sessions hold trade w1 (to
    stop the strict run after its first batch) and trade y2 (to stop the batch after y1) until
    then."""
    strict_file = _ticks_file(tmp_path / "strict.csv", (X, "a1", "101"), (W, "w1", "600"), (Y, "y1", "3000"))
    batch_file = _ticks_file(tmp_path / "batch.csv", (Y, "y1", "3000"), (X, "b1", "102"), (Y, "y2", "3001"))
    with (
        psycopg.connect(url) as w1_holder,
        psycopg.connect(url) as y2_holder,
        _session(url, "60s") as strict_conn,
        _session(url, "100ms") as batch_conn,
        ThreadPoolExecutor(2) as pool,
    ):
        tick(w1_holder, RECENT_NOON, "600", trade_id="w1", exchange=W[0], symbol=W[1])  # not committed
        tick(y2_holder, RECENT_NOON, "3001", trade_id="y2", exchange=Y[0], symbol=Y[1])  # not committed
        strict = pool.submit(
            _attempt, lambda: ingest.ingest(strict_conn, "ticks", [strict_file], strict=True, batch_rows=1)
        )
        assert waits_for_a_lock(seeded, strict_conn.info.backend_pid, ended=strict.done)  # at w1
        batch = pool.submit(_attempt, lambda: ingest.ingest(batch_conn, "ticks", [batch_file]))
        # at y2, after b1 and y1 (a load inserts its rows in instrument, time and trade id order)
        assert _waits_for(seeded, batch_conn.info.backend_pid, y2_holder.info.backend_pid)
        w1_holder.rollback()
        assert _waits_for(seeded, strict_conn.info.backend_pid, batch_conn.info.backend_pid)  # at y1
        y2_holder.rollback()  # the batch goes on to X's latest price: the circle is closed
        return strict.result(timeout=90), batch.result(timeout=90)


def _a_strict_run_closing_a_deadlock_with_a_batch(seeded, url, tmp_path):
    """A --strict run of X's, W's and Y's ticks (a batch each; deadlock_timeout 100 ms) and a
    one-batch run of X's and Y's ticks (deadlock_timeout 60 s; Y's trade y1 is in both files),
    made to deadlock with the strict run closing the circle, so that its deadlock check is the
    first to find it and the strict run is the one aborted: the strict run holds X's latest price
    (its first batch) and then inserts trade y1, which the batch has inserted, while the batch
    waits for X's latest price. A third session holds trade w1 to stop the strict run after its
    first batch until the batch waits."""
    strict_file = _ticks_file(tmp_path / "strict.csv", (X, "a1", "101"), (W, "w1", "600"), (Y, "y1", "3000"))
    batch_file = _ticks_file(tmp_path / "batch.csv", (Y, "y1", "3000"), (X, "b1", "102"))
    with (
        psycopg.connect(url) as holder,
        _session(url, "100ms") as strict_conn,
        _session(url, "60s") as batch_conn,
        ThreadPoolExecutor(2) as pool,
    ):
        tick(holder, RECENT_NOON, "600", trade_id="w1", exchange=W[0], symbol=W[1])  # not committed
        strict = pool.submit(
            _attempt, lambda: ingest.ingest(strict_conn, "ticks", [strict_file], strict=True, batch_rows=1)
        )
        assert waits_for_a_lock(seeded, strict_conn.info.backend_pid, ended=strict.done)  # at w1
        batch = pool.submit(_attempt, lambda: ingest.ingest(batch_conn, "ticks", [batch_file]))
        assert _waits_for(seeded, batch_conn.info.backend_pid, strict_conn.info.backend_pid)  # at X's price
        holder.rollback()
        return strict.result(timeout=90), batch.result(timeout=90)


def _stored_ticks(conn: psycopg.Connection) -> list[tuple[str, D]]:
    return conn.execute("select exchange_trade_id, price from market.ticks order by 1").fetchall()


def test_a_batch_deadlocked_by_a_strict_run_is_retried_and_loads(seeded, seeded_url, tmp_path, caplog):
    # the batch looks for the deadlock first and is aborted (40P01): the run failed, its trades lost
    strict, batch = _a_batch_closing_a_deadlock_with_a_strict_run(seeded, seeded_url, tmp_path)
    assert not isinstance(batch, psycopg.Error), batch
    assert not isinstance(strict, psycopg.Error), strict
    assert (strict.loaded, strict.duplicates, strict.rejected) == (3, 0, 0)
    assert (batch.loaded, batch.duplicates, batch.rejected) == (2, 1, 0)
    assert "ingest ticks: deadlock with another load, loading the batch of lines 2 to 4 again" in caplog.text
    assert "--strict: deadlock" not in caplog.text
    assert _stored_ticks(seeded) == [
        ("a1", D("101")),
        ("b1", D("102")),
        ("w1", D("600")),
        ("y1", D("3000")),
        ("y2", D("3001")),
    ]
    assert seeded.execute(
        "select last_price from market.latest_prices where instrument_id = %s", [instrument_id(seeded, *X)]
    ).fetchone() == (D("102"),)


def test_a_strict_run_deadlocked_by_a_batch_is_retried_and_loads(seeded, seeded_url, tmp_path, caplog):
    # the strict run looks for the deadlock first and is aborted: the whole run failed
    strict, batch = _a_strict_run_closing_a_deadlock_with_a_batch(seeded, seeded_url, tmp_path)
    assert not isinstance(strict, psycopg.Error), strict
    assert not isinstance(batch, psycopg.Error), batch
    assert (batch.loaded, batch.duplicates, batch.rejected) == (2, 0, 0)
    assert (strict.loaded, strict.duplicates, strict.rejected) == (2, 1, 0)
    assert "ingest ticks --strict: deadlock with another load, loading again" in caplog.text
    assert "loading the batch of lines" not in caplog.text
    assert _stored_ticks(seeded) == [("a1", D("101")), ("b1", D("102")), ("w1", D("600")), ("y1", D("3000"))]


def test_a_load_waiting_for_a_partition_detach_rejects_the_rows_of_the_detached_day(
    seeded, seeded_url, tmp_path
):
    # the loader read the partitions' times before it waited for the detach: the row of the
    # detached day was routed to the default partition, whose trigger aborted the batch with 22S09
    detached_day = RECENT_NOON - timedelta(days=2)
    batch_file = tmp_path / "batch.csv"
    batch_file.write_text(
        TICKS_HEADER
        + f"binance,BTCUSDT,{detached_day:%Y-%m-%dT%H:%M:%SZ},old1,90,1,buy\n"
        + f"binance,BTCUSDT,{AT},new1,100,1,buy\n"
    )
    partition = seeded.execute(
        "select c.oid::regclass::text from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'market.ticks'::regclass"
        "   and pg_get_expr(c.relpartbound, c.oid) like %s",
        [f"FOR VALUES FROM ('{detached_day:%Y-%m-%d}%"],
    ).fetchone()[0]
    with (
        psycopg.connect(seeded_url) as holder,
        psycopg.connect(seeded_url, autocommit=True) as loader,
        ThreadPoolExecutor(1) as pool,
    ):
        # an operator detaching the day to archive it (the name is the catalog's)
        holder.execute(f"alter table market.ticks detach partition {partition}")
        loading = pool.submit(_attempt, lambda: ingest.ingest(loader, "ticks", [batch_file]))
        assert waits_for_a_lock(seeded, loader.info.backend_pid, ended=loading.done)
        holder.commit()
        loaded = loading.result(timeout=30)
    assert not isinstance(loaded, psycopg.Error), loaded
    assert (loaded.loaded, loaded.duplicates, loaded.rejected) == (1, 0, 1)
    assert _stored_ticks(seeded) == [("new1", D("100"))]
    [(line, reason)] = [row.split(",", 1) for row in rejects_of(batch_file)[1:]]
    assert line == "2"
    assert reason.startswith(
        f'"traded_at {detached_day:%Y-%m-%dT%H:%M:%SZ} is outside the partitions of market.ticks'
    )
