"""Market data at its edges: concurrent loads of the same trades, the rejects file of an earlier run,
rollups run ahead of the clock, and partition bounds read under any DateStyle."""

import json
import threading
from datetime import UTC, timedelta

import psycopg
import pytest

from market_helpers import RECENT_NOON
from spreadedge import ingest
from trading_helpers import waits_for_a_lock

DAY = f"{RECENT_NOON:%Y-%m-%d}"


def tick_record(trade_id: str, price: str = "100") -> dict[str, str]:
    return {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "traded_at": f"{DAY}T12:00:00Z",
        "exchange_trade_id": trade_id,
        "price": price,
        "quantity": "1",
    }


def test_two_loads_of_the_same_trades_of_one_time_in_another_order_do_not_deadlock(seeded_url, seeded):
    first = psycopg.connect(seeded_url)
    second = psycopg.connect(seeded_url)
    outcome: dict[str, object] = {}

    def load_second() -> None:
        try:
            outcome["second"] = ingest.Loader(second, "ticks", strict=False).load_batch(
                [(1, tick_record("2")), (2, tick_record("1"))]
            )
            second.commit()
        except psycopg.Error as exc:
            outcome["second"] = exc.sqlstate
            second.rollback()

    try:
        loader = ingest.Loader(first, "ticks", strict=False)
        assert loader.load_batch([(1, tick_record("1"))]) == (1, 0, [])  # not committed yet
        thread = threading.Thread(target=load_second)
        thread.start()
        assert waits_for_a_lock(seeded, second.info.backend_pid)
        try:
            outcome["first"] = loader.load_batch([(2, tick_record("2"))])
            first.commit()
        except psycopg.Error as exc:
            outcome["first"] = exc.sqlstate
            first.rollback()
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        first.close()
        second.close()
    assert outcome == {"first": (1, 0, []), "second": (0, 2, [])}
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 2


def test_a_file_loaded_again_without_rejects_leaves_no_rejects_file_of_the_earlier_run(seeded_url, tmp_path):
    path = tmp_path / "ticks.jsonl"
    path.write_text(json.dumps(tick_record("a")) + "\n" + json.dumps(tick_record("b", price="-1")) + "\n")
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        first = ingest.ingest(conn, "ticks", [path])
        path.write_text(json.dumps(tick_record("a")) + "\n" + json.dumps(tick_record("b", price="1")) + "\n")
        second = ingest.ingest(conn, "ticks", [path])
    rejects = tmp_path / "ticks.jsonl.rejects.csv"
    assert (first.rejected, first.rejects_files) == (1, [rejects])
    assert (second.loaded, second.duplicates, second.rejected, second.rejects_files) == (1, 1, 0, [])
    assert not rejects.exists()


def test_a_rejects_file_that_cannot_be_written_refuses_the_run_before_anything_loads(
    seeded_url, seeded, tmp_path
):
    # it failed with a traceback after the rows had loaded, and the rejected rows' reasons were lost
    path = tmp_path / "ticks.jsonl"
    path.write_text(json.dumps(tick_record("a")) + "\n" + json.dumps(tick_record("b", price="-1")) + "\n")
    (tmp_path / "ticks.jsonl.rejects.csv").mkdir()
    with psycopg.connect(seeded_url, autocommit=True) as conn, pytest.raises(ingest.IngestError) as refused:
        ingest.ingest(conn, "ticks", [path])
    assert str(refused.value) == (
        f"{path}: cannot write its rejects file {path}.rejects.csv: Is a directory; nothing was loaded"
    )
    assert seeded.execute("select count(*) from market.ticks").fetchone()[0] == 0


def test_a_rollup_run_with_an_until_ahead_of_the_clock_leaves_no_later_trade_out_of_the_candles(seeded):
    seeded.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select instrument_id, %s, 'old', 100, 1 from ref.instruments where symbol = 'BTCUSDT'",
        [RECENT_NOON],
    )
    # an until read in the wrong time zone: eight hours ahead
    seeded.execute("select * from market.rollup_candles(until => now() + interval '8 hours')")
    seeded.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select instrument_id, now() - interval '30 seconds', 'new', 101, 1 from ref.instruments"
        " where symbol = 'BTCUSDT'"
    )
    seeded.execute("select * from market.rollup_candles()")
    assert seeded.execute(
        "select c.close, c.trade_count from market.candles c where c.interval = '1m' and c.open_time > %s",
        [RECENT_NOON],
    ).fetchall() == [(101, 1)]


def test_a_tick_in_the_first_hours_of_the_oldest_partition_loads_whatever_the_sessions_date_style(
    seeded_url, seeded
):
    oldest = seeded.execute(
        "select min(lower(r)) from unnest(internal.partition_times('market.ticks')) r"
    ).fetchone()[0]
    record = tick_record("early") | {"traded_at": (oldest + timedelta(hours=1)).astimezone(UTC).isoformat()}
    # the partition bounds are shown as '29/11/2026 05:30:00 IST', and IST reads as Israel time
    with psycopg.connect(seeded_url, options="-c datestyle=SQL,DMY -c timezone=Asia/Kolkata") as conn:
        assert ingest.Loader(conn, "ticks", strict=False).load_batch([(1, record)]) == (1, 0, [])
