"""spreadedge ingest rejects: text problems only in the fields it loads, the rejects of a run that
fails part-way, and where an unknown instrument's symbol is listed."""

import json
from decimal import Decimal

import psycopg
import pytest

from market_helpers import DAY, load, rejects_file, tick_line
from spreadedge import ingest


def trade_ids(conn: psycopg.Connection) -> list[str]:
    return [trade_id for (trade_id,) in conn.execute("select exchange_trade_id from market.ticks order by 1")]


# -- 1. a NUL or bytes that are not UTF-8 reject a row only in a field that is loaded ---------------


def test_a_nul_in_a_json_field_that_is_not_loaded_does_not_reject_its_row(seeded_url, seeded, tmp_path):
    # the row was rejected as "a field holds a NUL character", although meta is ignored
    path = tmp_path / "ticks.jsonl"
    path.write_text(tick_line("m1", meta="a\u0000b"))
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.rejected) == (1, 0)
    assert not rejects_file(path).exists()
    assert trade_ids(seeded) == ["m1"]


def test_bytes_that_are_not_utf8_in_an_extra_csv_column_do_not_reject_their_row(seeded_url, seeded, tmp_path):
    path = tmp_path / "ticks.csv"
    path.write_bytes(
        b"exchange,symbol,traded_at,exchange_trade_id,price,quantity,side,note\n"
        b"binance,BTCUSDT," + DAY.encode() + b"T12:00:00Z,c1,100,1,buy,caf\xe9 \x00\n"
    )
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.rejected) == (1, 0)
    assert not rejects_file(path).exists()
    assert trade_ids(seeded) == ["c1"]


def test_a_nul_or_bytes_that_are_not_utf8_in_a_loaded_field_reject_the_row_naming_the_field(
    seeded_url, seeded, tmp_path
):
    path = tmp_path / "ticks.csv"
    path.write_bytes(
        b"exchange,symbol,traded_at,exchange_trade_id,price,quantity,side,note\n"
        b"binance,BTCUSDT," + DAY.encode() + b"T12:00:00Z,n\x001,100,1,buy,\x00\n"
        b"binance,BTCUSDT," + DAY.encode() + b"T12:00:00Z,u1,100,1,b\xffy,\n"
        b"binance,BTCUSDT," + DAY.encode() + b"T12:00:00Z,ok,100,1,buy,\n"
    )
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.rejected) == (1, 2)
    assert rejects_file(path).read_text().splitlines() == [
        "line,reason",
        "2,exchange_trade_id holds a NUL character",
        "3,side is not valid UTF-8",
    ]
    assert trade_ids(seeded) == ["ok"]


# -- 2. a run that fails part-way writes the rejects of the batches it committed --------------------


@pytest.fixture
def connection_lost_at_trade_kill(seeded: psycopg.Connection) -> None:
    """Inserting the trade "kill" terminates the loading backend: the connection is lost in the
    middle of that batch (as when the server restarts or an operator kills the load)."""
    seeded.execute(
        "create function public.lose_connection() returns trigger language plpgsql as $$"
        " begin perform pg_terminate_backend(pg_backend_pid()); return new; end $$"
    )
    seeded.execute(
        "create trigger lose_connection after insert on market.ticks for each row"
        " when (new.exchange_trade_id = 'kill') execute function public.lose_connection()"
    )


def test_a_run_that_loses_its_connection_part_way_writes_the_rejects_of_the_batches_it_committed(
    seeded_url, seeded, tmp_path, connection_lost_at_trade_kill
):
    # the rejects file of the run was removed first and never written: the committed rejects were lost
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        tick_line("t1")  # batch 1: committed
        + "{not json\n"  # read while batch 1 filled
        + tick_line("t3", symbol="NOPE")  # rejected by batch 1
        + tick_line("kill")  # batch 2: the connection is lost
        + tick_line("t5", price="0")  # a reject of batch 2, which never committed
        + tick_line("t6")
    )
    rejects_file(path).write_text("line,reason\n9,a reject of an earlier run\n")
    with pytest.raises(psycopg.OperationalError):
        load(seeded_url, "ticks", path, batch_rows=2)
    assert rejects_file(path).read_text().splitlines() == [
        "line,reason",
        "2,not valid JSON: Expecting property name enclosed in double quotes",
        "3,unknown instrument NOPE on exchange binance",
    ]
    assert trade_ids(seeded) == ["t1"]


def test_a_strict_run_that_loses_its_connection_writes_no_rejects_file(
    seeded_url, seeded, tmp_path, connection_lost_at_trade_kill
):
    # nothing of a strict run was committed, so none of its rejects stands
    path = tmp_path / "ticks.jsonl"
    path.write_text(tick_line("t1") + tick_line("t2", symbol="NOPE") + tick_line("kill"))
    with pytest.raises(psycopg.OperationalError), psycopg.connect(seeded_url, autocommit=True) as conn:
        ingest.ingest(conn, "ticks", [path], strict=True, batch_rows=2)
    assert not rejects_file(path).exists()
    assert trade_ids(seeded) == []


# -- 3. an unknown instrument's reject says on which exchanges its symbol is listed ----------------


@pytest.mark.parametrize("kind", ["quotes", "ticks", "candles"])
def test_a_symbol_listed_only_on_another_exchange_is_rejected_naming_where_it_is_listed(
    seeded_url, seeded, tmp_path, kind
):
    path = tmp_path / f"{kind}.jsonl"
    path.write_text(json.dumps({"exchange": "kraken", "symbol": " BTCUSDT "}) + "\n")
    summary = load(seeded_url, kind, path)
    assert (summary.loaded, summary.rejected) == (0, 1)
    assert rejects_file(path).read_text().splitlines() == [
        "line,reason",
        "1,unknown instrument BTCUSDT on exchange kraken (listed on binance)",
    ]


def test_a_symbol_listed_on_several_other_exchanges_names_them_all_in_order(seeded_url, seeded, tmp_path):
    for exchange in ("okx", "bybit"):
        seeded.execute(
            "select ref.upsert_instrument(exchange => %s, symbol => 'BTCUSDT', base_asset => 'BTC',"
            " quote_asset => 'USDT', market_type => 'spot', tick_size => %s, lot_size => %s)",
            [exchange, Decimal("0.01"), Decimal("0.0001")],
        )
    path = tmp_path / "ticks.jsonl"
    path.write_text(tick_line("k1", exchange="kraken") + tick_line("n1", symbol="NOPE"))
    summary = load(seeded_url, "ticks", path)
    assert (summary.loaded, summary.rejected) == (0, 2)
    assert rejects_file(path).read_text().splitlines() == [
        "line,reason",
        '1,"unknown instrument BTCUSDT on exchange kraken (listed on binance, bybit, okx)"',
        "2,unknown instrument NOPE on exchange binance",
    ]


def test_where_a_symbol_is_listed_is_looked_up_for_its_rejected_rows_alone(seeded):
    # why it matters: a lookup for every valid row would slow every load down
    seeded.execute("set track_functions = 'all'")
    with seeded.transaction():
        seeded.execute("select market.stage_rows('ticks')")
        seeded.execute(
            "insert into pg_temp.staged_ticks (line_no, exchange, symbol, traded_at, exchange_trade_id, price, quantity)"
            " select n, case n when 2 then 'kraken' else 'binance' end, 'BTCUSDT', %s, 'v' || n, '1', '1'"
            " from generate_series(1, 4) n",
            [f"{DAY}T12:00:00Z"],
        )
        loaded, _, rejected, _ = seeded.execute("select * from market.load_staged_ticks()").fetchone()
        [(calls,)] = seeded.execute(
            "select pg_stat_get_xact_function_calls('internal.unknown_instrument_reason(text, text)'::regprocedure)"
        ).fetchall()
    assert (loaded, rejected, calls) == (3, 1, 1)
