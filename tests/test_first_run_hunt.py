"""The first-run journey: `make run` (bootstrap, migrate, the demo day, PnL) on what a user may have."""

from __future__ import annotations

import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from spreadedge import errors
from spreadedge.cli import main
from spreadedge.demo import run_demo
from trading_helpers import counts

REPO = Path(__file__).resolve().parent.parent
_REFUSED = (
    "Error: the demo loads only into a database without its strategies, instruments and order ids;"
    " this one has {}: nothing written\n"
    "hint: Load the demo into a database of its own: spreadedge --database-url URL migrate, then"
    " spreadedge --database-url URL demo.\n"
)


def _demo(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--database-url", url, "demo", "--orders", "20"])
    return result.exit_code, result.stderr


def test_demo_refuses_a_database_holding_a_strategy_of_its_name_and_writes_nothing(db, db_url):
    db.execute(
        "select trading.create_strategy(name => 'btc-basis', description => 'my own', capital => 1000)"
    )
    before = counts(db)

    assert _demo(db_url) == (1, _REFUSED.format('strategy "btc-basis"'))
    assert counts(db) == before
    assert db.execute("select description, capital from trading.strategies").fetchall() == [("my own", 1000)]


def test_demo_refuses_a_database_listing_one_of_its_instruments_and_keeps_its_rules(db):
    # in another case: ref.upsert_instrument takes binance btcusdt for BTCUSDT's market
    db.execute(
        "select ref.upsert_instrument(exchange => 'binance', symbol => 'btcusdt', base_asset => 'BTC',"
        " quote_asset => 'USDT', market_type => 'spot', tick_size => 0.1, lot_size => 0.001, min_notional => 10)"
    )

    with pytest.raises(errors.BY_NAME["conflicting_duplicate"]) as raised:
        run_demo(db, orders=20)

    assert raised.value.sqlstate == "23S06"
    assert "this one has instrument binance btcusdt: nothing written" in str(raised.value)
    assert db.execute("select symbol, tick_size, lot_size, min_notional from ref.instruments").fetchall() == [
        ("btcusdt", Decimal("0.1"), Decimal("0.001"), Decimal("10"))
    ]
    assert db.execute("select count(*) from market.quotes").fetchone()[0] == 0


def test_demo_refuses_a_database_with_an_order_under_one_of_its_client_order_ids(db, db_url):
    # the demo places demo-1, demo-2, ... on its exchanges: a user's demo-2 ended the demo with
    # 'client order id "demo-2" is already used by order 1 with different values', an id the user
    # never gave the demo
    db.execute("select trading.create_strategy(name => 'mine')")
    for exchange in ("binance", "bybit", "coinbase", "gateio", "kraken", "okx"):
        db.execute(
            "select ref.upsert_instrument(exchange => %s, symbol => 'SOLUSDT', base_asset => 'SOL',"
            " quote_asset => 'USDT', market_type => 'spot', tick_size => 0.01, lot_size => 0.01)",
            [exchange],
        )
        for ref in ("demo-2", "demo-x"):
            db.execute(
                "select trading.place_order(strategy => 'mine', exchange => %s, symbol => 'SOLUSDT',"
                " side => 'buy', quantity => 1, price => 100, client_order_id => %s)",
                [exchange, ref],
            )
    before = counts(db)

    assert _demo(db_url) == (
        1,
        _REFUSED.format(
            "order demo-2 on binance, order demo-2 on bybit, order demo-2 on coinbase,"
            " order demo-2 on gateio, order demo-2 on kraken and 1 more"
        ),
    )
    assert counts(db) == before


def test_demo_orders_the_named_order_ids_by_number(db, db_url):
    db.execute("select trading.create_strategy(name => 'mine')")
    db.execute(
        "select ref.upsert_instrument(exchange => 'binance', symbol => 'SOLUSDT', base_asset => 'SOL',"
        " quote_asset => 'USDT', market_type => 'spot', tick_size => 0.01, lot_size => 0.01)"
    )
    for ref in ("demo-10", "demo-2"):
        db.execute(
            "select trading.place_order(strategy => 'mine', exchange => 'binance', symbol => 'SOLUSDT',"
            " side => 'buy', quantity => 1, price => 100, client_order_id => %s)",
            [ref],
        )

    assert _demo(db_url) == (1, _REFUSED.format("order demo-2 on binance, order demo-10 on binance"))


def test_demo_names_five_conflicts_and_counts_the_rest(db):
    for name in ("btc-spot-arb", "eth-spot-arb", "btc-basis", "btc-perp-mm"):
        db.execute("select trading.create_strategy(name => %s)", [name])
    for symbol in ("BTCUSDT", "ETHUSDT"):
        db.execute(
            "select ref.upsert_instrument(exchange => 'binance', symbol => %s, base_asset => left(%s, 3),"
            " quote_asset => 'USDT', market_type => 'spot', tick_size => 0.01, lot_size => 0.0001)",
            [symbol, symbol],
        )

    with pytest.raises(errors.BY_NAME["conflicting_duplicate"]) as raised:
        run_demo(db, orders=20)

    assert str(raised.value) == (
        "the demo loads only into a database without its strategies, instruments and order ids; this one"
        ' has strategy "btc-basis", strategy "btc-perp-mm", strategy "btc-spot-arb", strategy "eth-spot-arb",'
        " instrument binance BTCUSDT and 1 more: nothing written"
    )


def test_demo_loads_next_to_a_users_other_strategies_and_instruments_without_touching_them(db, db_url):
    db.execute("select trading.create_strategy(name => 'mine', description => 'my own', capital => 7)")
    db.execute(
        "select ref.upsert_instrument(exchange => 'binance', symbol => 'SOLUSDT', base_asset => 'SOL',"
        " quote_asset => 'USDT', market_type => 'spot', tick_size => 0.01, lot_size => 0.01)"
    )

    result = CliRunner().invoke(main, ["--database-url", db_url, "demo", "--orders", "20"])

    assert result.exit_code == 0, result.output
    mine = db.execute(
        "select s.description, s.capital, (select count(*) from trading.orders o where o.strategy_id = s.strategy_id)"
        " from trading.strategies s where s.name = 'mine'"
    ).fetchone()
    assert mine == ("my own", 7, 0)
    solusdt = db.execute(
        "select tick_size, lot_size from ref.instruments where symbol = 'SOLUSDT'"
    ).fetchone()
    assert solusdt == (Decimal("0.01"), Decimal("0.01"))
    assert db.execute("select count(*) from trading.orders").fetchone()[0] == 20
    assert db.execute("select * from ops.check_invariants()").fetchall() == []


def test_bootstrap_on_a_system_without_apt_says_it_needs_debian(tmp_path):
    # a copy of the script with only bash and coreutils on PATH: no dpkg-query, no apt-get
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "bootstrap.sh", tmp_path / "scripts" / "bootstrap.sh")
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "dirname", "cat", "mkdir"):
        (tools / tool).symlink_to(shutil.which(tool))

    done = subprocess.run(
        [str(tools / "bash"), str(tmp_path / "scripts" / "bootstrap.sh")],
        env={"PATH": str(tools)},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(
        "bootstrap: this script installs with apt on Debian 12, and this system has no apt-get or dpkg-query;"
    )


def test_make_run_with_a_database_url_starts_no_embedded_cluster():
    # -o bootstrap: bootstrap counts as done; SPREADEDGE=echo ...: each command is printed, not run
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "-o", "bootstrap", "run", "SPREADEDGE=echo spreadedge"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": "postgresql://elsewhere/db"},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert (done.returncode, done.stdout.splitlines()) == (
        0,
        ["spreadedge migrate", "spreadedge demo", "spreadedge pnl", "spreadedge serve"],
    )


def test_make_run_without_a_database_url_starts_the_embedded_cluster():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "-o", "bootstrap", "run", "SPREADEDGE=echo spreadedge"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert (done.returncode, done.stdout.splitlines()[0]) == (0, "spreadedge db start")


def test_demo_day_spreads_pay_net_of_taker_fees_now_and_then_on_perpetuals_never_on_spot(db):
    day = run_demo(db, orders=20).day
    paying = db.execute(
        "select o.market_type, count(*) from unnest(array['BTC/USDT', 'BTC/USD', 'ETH/USDT', 'ETH/USD']) p,"
        " market.spread_opportunities(symbol => p, since => %s, until => %s + interval '1 day',"
        " min_net_bps => 0, bucket => interval '1 minute') o group by 1",
        [day, day],
    ).fetchall()
    assert [market_type for market_type, count in paying if count > 0] == ["perpetual"]


# bug: run_demo set spreadedge.actor to "demo" for the caller's whole session, so the caller's
# later writes on that connection were logged as the demo's
def test_the_demo_leaves_the_callers_actor_as_it_was(db):
    db.execute("select set_config('spreadedge.actor', 'desk', false)")

    run_demo(db, orders=10)

    assert db.execute("select current_setting('spreadedge.actor')").fetchone() == ("desk",)
    assert db.execute(
        "select distinct actor from audit.log where table_name = 'trading.orders'"
    ).fetchall() == [("demo",)]
