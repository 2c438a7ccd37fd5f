"""Migrations 0014, 0015, 0022, 0032, 0033, 0035 and 0037 on a database that has history.

0014: every order key gets its order's strategy and instrument (from the order, or from its trades
when cleanup removed the order), a key nothing refers to any more goes, and from then on a trade is
held to its order's strategy and instrument. 0015: every trade gets the multiplier it was realized
at, without an audit row, and trades stay append-only. 0022: every trade gets the quantity it
closed, worked back from its position's quantity. 0032: a rule on an amount gets the one quote
asset its series can have. 0033: every trade key gets its trade's instrument. 0035: and its side.
0037: a rule on trades.volume gets the one base asset its series can have.

Each database is migrated as a deployment was: to a migration with the functions/ of the commit
that added it (from git), not with today's, whose views may read columns a later migration adds.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from db_fixtures import janitor
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from spreadedge.sqlfiles import MigrationError

REPO = Path(__file__).resolve().parents[1]
MIGRATION = "0014_order_key_scope.sql.j2"
# the history a 0013 database can hold: order 1 with its trade, order 2 removed by orders cleanup
# while its trade stays, and the key of order 3, whose order and trades cleanup both removed
HISTORY = """
insert into trading.order_keys (order_id, created_at, exchange_id)
select n, now() - interval '1 hour', e.exchange_id
from generate_series(1, 3) n, ref.exchanges e where e.code = 'binance';
insert into trading.orders
    (order_id, created_at, strategy_id, instrument_id, side, order_type, quantity, price, status,
     filled_quantity, avg_fill_price)
select 1, now() - interval '1 hour', s.strategy_id, i.instrument_id, 'buy', 'limit', 1, 100, 'filled', 1, 100
from trading.strategies s, ref.instruments i where s.name = 'alpha' and i.symbol = 'BTCUSDT';
insert into trading.trades
    (trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity, price, fee,
     fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id)
select t.trade_id, now() - interval '1 hour', t.trade_id, s.strategy_id, i.instrument_id, 'buy', 1, 100, 0,
       'USDT', 0, 1, 0, 'x' || t.trade_id
from (values (1, 'alpha'), (2, 'beta')) t (trade_id, strategy), trading.strategies s, ref.instruments i
where s.name = t.strategy and i.symbol = 'BTCUSDT';
"""


def _added_in(migration: str) -> str:
    """The commit that added a migration."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--", f"migrations/{migration}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert found, f"git knows no commit that added migrations/{migration}"
    return found[-1]


def _use_functions_of(revision: str, project: Path) -> None:
    """Make project's functions/ those of a git revision."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision, "functions"],
        capture_output=True,
        check=True,
    ).stdout
    shutil.rmtree(project / "functions", ignore_errors=True)
    subprocess.run(["tar", "-x", "-C", str(project)], input=archive, check=True)


@pytest.fixture
def database_at_0013(
    pg_cluster, project_settings: Settings, tmp_path: Path
) -> Iterator[tuple[str, Settings]]:
    """A database migrated to 0013 with HISTORY, and the settings of a project whose migrations
    stop at 0013 (copy MIGRATION into it to upgrade)."""
    root = tmp_path / "project"
    (root / "migrations").mkdir(parents=True)
    for path in sorted((REPO / "migrations").glob("*.sql.j2")):
        if path.name < MIGRATION:
            shutil.copy(path, root / "migrations" / path.name)
    _use_functions_of(_added_in(MIGRATION) + "~1", root)
    settings = replace(project_settings, project_dir=root)
    db = janitor(pg_cluster, "upgrade_0014")
    db.init()
    url = pg_cluster.url("upgrade_0014")
    migrate(url, settings, echo=lambda line: None)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select ref.upsert_instrument(exchange => 'binance', symbol => 'BTCUSDT', base_asset => 'BTC',"
            " quote_asset => 'USDT', market_type => 'spot', tick_size => 0.01, lot_size => 0.0001,"
            " min_notional => 5)"
        )
        conn.execute("select trading.create_strategy(name => 'alpha')")
        conn.execute("select trading.create_strategy(name => 'beta')")
        conn.execute(HISTORY)
    try:
        yield url, settings
    finally:
        db.drop()


def upgrade(url: str, settings: Settings, *migrations: str) -> None:
    """Apply migrations (MIGRATION by default) with the functions/ of the commit that added the last."""
    names = migrations or (MIGRATION,)
    for name in names:
        shutil.copy(REPO / "migrations" / name, settings.project_dir / "migrations" / name)
    _use_functions_of(_added_in(names[-1]), settings.project_dir)
    migrate(url, settings, echo=lambda line: None)


def test_migration_0014_gives_each_kept_key_its_orders_strategy_and_instrument(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings)
    with psycopg.connect(url) as conn:
        keys = conn.execute(
            "select k.order_id, s.name, i.symbol from trading.order_keys k"
            " join trading.strategies s using (strategy_id) join ref.instruments i using (instrument_id)"
            " order by k.order_id"
        ).fetchall()
    assert keys == [(1, "alpha", "BTCUSDT"), (2, "beta", "BTCUSDT")]


def test_after_migration_0014_a_trade_of_another_strategy_than_its_orders_is_refused(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings)
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(
            "insert into trading.trades"
            " (trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity, price, fee,"
            "  fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id)"
            " select 3, executed_at, order_id, s.strategy_id, instrument_id, side, quantity, price, fee,"
            "  fee_currency, fee_quote, position_delta, realized_pnl_gross, 'x3'"
            " from trading.trades, trading.strategies s where trade_id = 1 and s.name = 'beta'"
        )


def test_migration_0014_names_the_keys_it_cannot_fill_and_changes_nothing(database_at_0013):
    url, settings = database_at_0013
    with psycopg.connect(url, autocommit=True) as conn:
        # a risk event of order 3, whose order and trades cleanup removed: its key must stay
        conn.execute(
            "insert into monitor.risk_events (strategy_id, order_id, limit_kind, reason)"
            " select strategy_id, 3, 'kill_switch', 'kill switch is on' from trading.strategies where name = 'alpha'"
        )
    with pytest.raises(
        MigrationError, match=r"nothing of it is applied: migration 0014: order keys 3 \(at most"
    ):
        upgrade(url, settings)
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "select count(*) from information_schema.columns"
            " where table_schema = 'trading' and table_name = 'order_keys' and column_name = 'strategy_id'"
        ).fetchone()
    assert columns == (0,)


def test_migration_0015_gives_each_trade_its_instruments_multiplier_without_an_audit_row(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings, MIGRATION, "0015_trade_multiplier.sql.j2")
    with psycopg.connect(url) as conn:
        trades = conn.execute("select trade_id, multiplier from trading.trades order by trade_id").fetchall()
        audited = conn.execute(
            "select count(*) from audit.log where table_name = 'trading.trades' and operation = 'UPDATE'"
        ).fetchone()
    assert (trades, audited) == ([(1, Decimal("1")), (2, Decimal("1"))], (0,))


def test_after_migration_0015_a_trade_is_still_append_only(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings, MIGRATION, "0015_trade_multiplier.sql.j2")
    with psycopg.connect(url) as conn, pytest.raises(psycopg.Error, match="append-only") as refused:
        conn.execute("update trading.trades set multiplier = 2")
    assert refused.value.sqlstate == "55S02"


def _migrations_between(first: str, last: str) -> list[str]:
    return sorted(p.name for p in (REPO / "migrations").glob("*.sql.j2") if first <= p.name[:4] <= last)


def test_migration_0022_gives_each_trade_the_quantity_it_closed_from_its_position(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings, *_migrations_between("0014", "0021"))
    with psycopg.connect(url, autocommit=True) as conn:
        # alpha: trade 1 bought 1 (HISTORY), 10 sells 3 (closes 1, opens 2 short), 11 buys 0.5
        # back (closes 0.5); its position holds -1.5. beta's trade 2 has no position row.
        conn.execute(
            "insert into trading.trades"
            " (trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity, price, fee,"
            "  fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id, multiplier)"
            " select t.trade_id, now() - interval '1 hour', 1, s.strategy_id, i.instrument_id, t.side, t.quantity,"
            "  100, 0, 'USDT', 0, t.delta, 0, 'x' || t.trade_id, 1"
            " from (values (10, 'sell'::trading.order_side, 3, -3), (11, 'buy', 0.5, 0.5))"
            "  t (trade_id, side, quantity, delta), trading.strategies s, ref.instruments i"
            " where s.name = 'alpha' and i.symbol = 'BTCUSDT'"
        )
        conn.execute(
            "insert into trading.positions (strategy_id, instrument_id, quantity, avg_entry_price, opened_at,"
            "  multiplier)"
            " select s.strategy_id, i.instrument_id, -1.5, 100, now(), 1"
            " from trading.strategies s, ref.instruments i where s.name = 'alpha' and i.symbol = 'BTCUSDT'"
        )
    upgrade(url, settings, "0022_trade_closed_quantity.sql.j2")
    with psycopg.connect(url) as conn:
        trades = conn.execute(
            "select trade_id, closed_quantity from trading.trades order by trade_id"
        ).fetchall()
        audited = conn.execute(
            "select count(*) from audit.log where table_name = 'trading.trades' and operation = 'UPDATE'"
        ).fetchone()
    assert (trades, audited) == (
        [(1, Decimal("0")), (2, Decimal("0")), (10, Decimal("1")), (11, Decimal("0.5"))],
        (0,),
    )


def _hold(conn: psycopg.Connection, *holdings: tuple[str, str]) -> None:
    """A position of 1 at 100 for each (strategy, symbol), written as a 0031 database holds it."""
    conn.execute(
        "insert into trading.positions (strategy_id, instrument_id, quantity, avg_entry_price, opened_at,"
        "  multiplier, quote_asset)"
        " select s.strategy_id, i.instrument_id, 1, 100, now(), 1, i.quote_asset"
        " from unnest(%s::text[], %s::text[]) p (strategy, symbol)"
        " join trading.strategies s on s.name = p.strategy join ref.instruments i on i.symbol = p.symbol",
        [[h[0] for h in holdings], [h[1] for h in holdings]],
    )


def test_migration_0032_gives_a_rule_on_an_amount_the_one_quote_asset_its_series_can_have(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings, *_migrations_between("0014", "0031"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select ref.upsert_instrument(exchange => 'binance', symbol => 'ETHBTC', base_asset => 'ETH',"
            " quote_asset => 'BTC', market_type => 'spot', tick_size => 0.00001, lot_size => 0.001,"
            " min_notional => 0)"
        )
        # alpha holds BTC/USDT only, beta ETH/BTC only
        _hold(conn, ("alpha", "BTCUSDT"), ("beta", "ETHBTC"))
        for name, labels in (("alpha-exposure", {"strategy": "alpha"}), ("all-exposure", {})):
            conn.execute(
                "select monitor.add_alert_rule(name => %s, kind => 'risk', operator => '>', threshold => 1,"
                " metric => 'exposure.gross', labels => %s)",
                [name, Jsonb(labels)],
            )
    upgrade(url, settings, "0032_metric_quote_asset.sql.j2")
    with psycopg.connect(url) as conn:
        rules = conn.execute("select name, labels from monitor.alert_rules order by name").fetchall()
    assert rules == [
        ("all-exposure", {}),
        ("alpha-exposure", {"strategy": "alpha", "quote_asset": "USDT"}),
    ]


def test_migration_0032_deletes_the_amounts_collected_at_par_and_keeps_the_others(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings, *_migrations_between("0014", "0031"))
    with psycopg.connect(url, autocommit=True) as conn:
        _hold(conn, ("alpha", "BTCUSDT"))
        conn.execute("select monitor.collect_metrics()")
        conn.execute(
            "select monitor.record_metric(name => 'exposure.gross', value => 5,"
            ' labels => \'{"strategy": "alpha", "desk": "x"}\')'
        )
    upgrade(url, settings, "0032_metric_quote_asset.sql.j2")
    with psycopg.connect(url) as conn:
        left = conn.execute(
            "select name, labels, value from monitor.metrics"
            " where name in ('exposure.gross', 'pnl.realized', 'trades.notional') order by name, labels::text"
        ).fetchall()
        orders = conn.execute("select count(*) from monitor.metrics where name = 'orders.working'").fetchone()
    assert left == [("exposure.gross", {"desk": "x", "strategy": "alpha"}, 5)]
    assert orders == (2,)


# a trade key of each trade, in the shape trading.trade_keys has before 0033 (keyed per exchange)
KEYS_OF_THE_TRADES = (
    "insert into trading.trade_keys (exchange_id, exchange_trade_id, trade_id, executed_at)"
    " select i.exchange_id, t.exchange_trade_id, t.trade_id, t.executed_at"
    " from trading.trades t join ref.instruments i using (instrument_id)"
)


def _trade_key_columns(conn: psycopg.Connection) -> list[tuple[str]]:
    """The columns of trading.trade_keys, in order."""
    return conn.execute(
        "select column_name from information_schema.columns"
        " where table_schema = 'trading' and table_name = 'trade_keys' order by ordinal_position"
    ).fetchall()


def test_migration_0033_gives_each_trade_key_its_trades_instrument(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings, *_migrations_between("0014", "0032"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(KEYS_OF_THE_TRADES)
    upgrade(url, settings, "0033_trade_keys_per_instrument.sql.j2")
    with psycopg.connect(url) as conn:
        keys = conn.execute(
            "select k.trade_id, k.exchange_trade_id, i.symbol from trading.trade_keys k"
            " join ref.instruments i using (instrument_id) order by k.trade_id"
        ).fetchall()
    assert keys == [(1, "x1", "BTCUSDT"), (2, "x2", "BTCUSDT")]


def test_migration_0033_names_the_trade_keys_without_a_trade_and_changes_nothing(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings, *_migrations_between("0014", "0032"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into trading.trade_keys (exchange_id, exchange_trade_id, trade_id, executed_at)"
            " select exchange_id, 'x9', 9, now() from ref.exchanges where code = 'binance'"
        )
    with pytest.raises(
        MigrationError, match=r"migration 0033: trade keys 9 \(at most ten shown\) have no trade"
    ):
        upgrade(url, settings, "0033_trade_keys_per_instrument.sql.j2")
    with psycopg.connect(url) as conn:
        columns = _trade_key_columns(conn)
    assert columns == [("exchange_id",), ("exchange_trade_id",), ("trade_id",), ("executed_at",)]


def test_migration_0035_gives_each_trade_key_its_trades_side(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings, *_migrations_between("0014", "0032"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(KEYS_OF_THE_TRADES)
        # trades are append-only: the trigger that says so is off for this one history edit
        conn.execute("set session_replication_role = replica")
        conn.execute("update trading.trades set side = 'sell' where trade_id = 2")
        conn.execute("reset session_replication_role")
    upgrade(url, settings, *_migrations_between("0033", "0035"))
    with psycopg.connect(url) as conn:
        keys = conn.execute(
            "select k.trade_id, k.exchange_trade_id, k.side::text from trading.trade_keys k order by k.trade_id"
        ).fetchall()
        primary_key = conn.execute(
            "select pg_get_constraintdef(oid) from pg_constraint where conname = 'trade_keys_pkey'"
        ).fetchone()
    assert keys == [(1, "x1", "buy"), (2, "x2", "sell")]
    assert primary_key == ("PRIMARY KEY (instrument_id, exchange_trade_id, side)",)


def test_migration_0035_names_the_trade_keys_without_a_trade_and_changes_nothing(database_at_0013):
    url, settings = database_at_0013
    upgrade(url, settings, *_migrations_between("0014", "0034"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into trading.trade_keys (instrument_id, exchange_trade_id, trade_id, executed_at)"
            " select instrument_id, 'x9', 9, now() from ref.instruments where symbol = 'BTCUSDT'"
        )
    with pytest.raises(
        MigrationError, match=r"migration 0035: trade keys 9 \(at most ten shown\) have no trade"
    ):
        upgrade(url, settings, "0035_trade_keys_per_side.sql.j2")
    with psycopg.connect(url) as conn:
        columns = _trade_key_columns(conn)
    assert columns == [("exchange_trade_id",), ("trade_id",), ("executed_at",), ("instrument_id",)]


def test_migration_0037_gives_a_rule_on_trades_volume_its_one_base_asset_and_deletes_the_summed_series(
    database_at_0013,
):
    url, settings = database_at_0013
    upgrade(url, settings, *_migrations_between("0014", "0036"))
    with psycopg.connect(url, autocommit=True) as conn:
        _hold(conn, ("alpha", "BTCUSDT"))
        conn.execute("select monitor.collect_metrics()")  # trades.volume, labelled period only
        conn.execute(
            "select monitor.add_alert_rule(name => 'busy', kind => 'trading', operator => '>', threshold => 1,"
            " metric => 'trades.volume', labels => %s)",
            [Jsonb({"period": "hour"})],
        )
    upgrade(url, settings, "0037_metric_volume_base_asset.sql.j2")
    with psycopg.connect(url) as conn:
        rules = conn.execute("select name, labels from monitor.alert_rules").fetchall()
        volume = conn.execute("select count(*) from monitor.metrics where name = 'trades.volume'").fetchone()
    assert rules == [("busy", {"period": "hour", "base_asset": "BTC"})]
    assert volume == (0,)
