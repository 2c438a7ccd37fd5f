"""Audit of the trading core's and the monitoring issue's deliverables against what is built.

Each test pins one promise of the issues or of PRODUCT.md that no other test held: the market
types the seeds list per exchange (Coinbase's margin was refused), the fixed SQL API's names,
argument names and defaults, each pre-trade risk limit's notification, the Makefile's one-line
comments that `make help` lists, and `spreadedge pgcli` opening pgcli with the CLI's actor.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import psycopg
import pytest

from db_fixtures import janitor
from monitor_helpers import notifications
from spreadedge.migrate import migrate
from test_migration_upgrades import _added_in, _use_functions_of
from trading_helpers import call, fill, order, place, trade

REPO = Path(__file__).resolve().parents[1]

# The market types the seeds list per exchange (database-development-summary.md, "Support Complet
# des Plateformes"); the issue asks for them "as the seeds list them"
SEEDS_MARKETS = {
    "binance": {"spot", "futures", "margin", "option"},
    "coinbase": {"spot", "margin"},
    "kraken": {"spot", "futures", "margin"},
    "bybit": {"spot", "futures", "perpetual"},
    "gateio": {"spot", "futures", "margin", "perpetual"},
    "okx": {"spot", "futures", "margin", "perpetual", "option"},
}


def _markets(conn: psycopg.Connection) -> dict[str, set[str]]:
    offered: dict[str, set[str]] = {}
    for code, market_type in conn.execute(
        "select e.code, m.market_type::text from ref.exchanges e join ref.exchange_markets m using (exchange_id)"
    ):
        offered.setdefault(code, set()).add(market_type)
    return offered


def test_every_market_type_the_seeds_list_for_an_exchange_is_offered(db):
    offered = _markets(db)
    missing = {code: sorted(types - offered.get(code, set())) for code, types in SEEDS_MARKETS.items()}
    assert {code: types for code, types in missing.items() if types} == {}


def test_a_coinbase_margin_instrument_is_listed_with_coinbase_spot_fee_rates(seeded):
    instrument_id = call(
        seeded, "ref.upsert_instrument", exchange="coinbase", symbol="BTC-USD-MARGIN", base_asset="BTC",
        quote_asset="USD", market_type="margin", tick_size=D("0.01"), lot_size=D("0.00000001"),
    )  # fmt: skip
    assert seeded.execute(
        "select market_type::text, maker_fee, taker_fee, multiplier from ref.instruments where instrument_id = %s",
        [instrument_id],
    ).fetchone() == ("margin", D("0.004"), D("0.006"), D("1"))


def test_migration_0070_keeps_a_coinbase_margin_market_an_operator_added_by_hand(
    pg_cluster, project_settings, tmp_path
):
    root = tmp_path / "project"
    (root / "migrations").mkdir(parents=True)
    for path in sorted((REPO / "migrations").glob("*.sql.j2")):
        if path.name < "0070":
            shutil.copy(path, root / "migrations" / path.name)
    # why the functions of the commit that added 0070: today's read what later migrations add
    # (0075's trading.exchange_fill_kind), as a deployment at 0069 never had them
    _use_functions_of(_added_in("0070_coinbase_margin.sql.j2"), root)
    settings = replace(project_settings, project_dir=root)
    with janitor(pg_cluster, "audit25_upgrade_0070"):
        url = pg_cluster.url("audit25_upgrade_0070")
        migrate(url, settings, echo=lambda line: None)
        with psycopg.connect(url, autocommit=True) as conn:
            assert "margin" not in _markets(conn)["coinbase"]
            conn.execute(
                "insert into ref.exchange_markets (exchange_id, market_type, maker_fee, taker_fee)"
                " select exchange_id, 'margin', 0.003, 0.005 from ref.exchanges where code = 'coinbase'"
            )
        for path in sorted((REPO / "migrations").glob("*.sql.j2")):
            if path.name >= "0070":
                shutil.copy(path, root / "migrations" / path.name)
        shutil.rmtree(root / "functions")
        shutil.copytree(REPO / "functions", root / "functions")
        migrate(url, settings, echo=lambda line: None)
        with psycopg.connect(url) as conn:
            assert conn.execute(
                "select m.maker_fee, m.taker_fee from ref.exchange_markets m join ref.exchanges e using (exchange_id)"
                " where e.code = 'coinbase' and m.market_type = 'margin'"
            ).fetchall() == [(D("0.003"), D("0.005"))]


# PRODUCT.md, "Core SQL API (names and argument names are fixed: applications call them with
# named notation)": each function's leading input arguments, in order, and what it returns (a
# table's leading columns)
FIXED_API = {
    "ref.upsert_instrument": (
        [
            "exchange",
            "symbol",
            "base_asset",
            "quote_asset",
            "market_type",
            "tick_size",
            "lot_size",
            "min_notional",
            "maker_fee",
            "taker_fee",
            "multiplier",
        ],
        "bigint",
    ),
    "trading.create_strategy": (["name"], "bigint"),
    "trading.place_order": (
        ["strategy", "exchange", "symbol", "side", "quantity", "price", "order_type", "client_order_id"],
        "bigint",
    ),
    "trading.cancel_order": (["order_id", "reason"], "void"),
    "trading.record_fill": (
        ["order_id", "exchange_trade_id", "quantity", "price", "fee", "fee_currency", "executed_at"],
        "bigint",
    ),
    "trading.record_funding": (["strategy", "exchange", "symbol", "amount", "paid_at"], None),
    "trading.get_position": (
        ["strategy", "exchange", "symbol", "mark_price"],
        "TABLE(quantity numeric, avg_entry_price numeric, realized_pnl_gross numeric, fees_paid numeric,"
        " funding numeric, realized_pnl numeric, unrealized_pnl numeric",
    ),
    "trading.pnl_summary": (["strategy", "since", "until", "group_by"], None),
    "trading.take_portfolio_snapshot": ([], None),
    "audit.history": (["table_name", "key"], None),
    "monitor.record_metric": (["name", "value", "labels", "recorded_at"], "void"),
    "monitor.collect_metrics": ([], None),
    "monitor.evaluate_alert_rules": ([], None),
    "monitor.acknowledge_alert": (["alert_id"], None),
}
# the input arguments of one function (one overload each), in order
INPUTS = """
    select array(select a.name
                 from unnest(coalesce(p.proargnames, '{}'),
                             coalesce(p.proargmodes, array_fill('i'::"char", array[cardinality(p.proargnames)])))
                      with ordinality a(name, mode, i)
                 where a.mode in ('i', 'b', 'v') order by a.i),
           pg_get_function_result(p.oid)
    from pg_proc p where p.pronamespace::regnamespace::text || '.' || p.proname = %s
"""


@pytest.mark.parametrize("function", list(FIXED_API))
def test_a_fixed_api_function_keeps_its_name_and_argument_names(db, function):
    found = db.execute(INPUTS, [function]).fetchall()
    assert len(found) == 1, f"{function}: {len(found)} overloads"
    names, result = found[0]
    leading, returns = FIXED_API[function]
    assert names[: len(leading)] == leading
    if returns is not None:
        assert result == returns or (returns.startswith("TABLE(") and result.startswith(returns + ", "))


@pytest.mark.parametrize(
    ("function", "defaults"),
    [
        ("trading.place_order", ["price numeric DEFAULT NULL::numeric"]),
        (
            "trading.record_fill",
            [
                "fee numeric DEFAULT 0",
                "fee_currency text DEFAULT NULL::text",
                "executed_at timestamp with time zone DEFAULT now()",
            ],
        ),
    ],
)
def test_the_fixed_api_defaults_are_those_product_md_names(db, function, defaults):
    arguments = (
        db.execute("select pg_get_function_arguments(%s::regproc)", [function]).fetchone()[0].split(", ")
    )
    assert [argument for argument in arguments if argument in defaults] == defaults


def test_record_fill_defaults_fee_to_0_the_fee_currency_to_the_quote_asset_and_the_time_to_now(seeded):
    order_id = place(seeded, "buy", "1", "100")
    with seeded.transaction():
        trade_id = fill(seeded, order_id, "1", "100")
        now = seeded.execute("select now()").fetchone()[0]
    assert seeded.execute(
        "select fee, fee_currency, fee_quote, executed_at from trading.trades where trade_id = %s", [trade_id]
    ).fetchone() == (D("0"), "USDT", D("0"), now)


def test_place_order_without_a_price_is_a_market_order(seeded):
    order_id = call(
        seeded, "trading.place_order", strategy="alpha", exchange="okx", symbol="BTC-USDT-SWAP", side="buy",
        quantity=D("1"),
    )  # fmt: skip
    stored = order(seeded, order_id)
    assert (stored["order_type"], stored["price"]) == ("market", None)


def _risk_events(conn):
    return conn.execute(
        "select order_id, limit_kind::text, limit_value, observed_value, reason from monitor.risk_events"
        " order by risk_event_id"
    ).fetchall()


def _rejected_with_event_and_notification(conn, order_id, kind, limit_value, observed, reason):
    stored = order(conn, order_id)
    assert (stored["status"], stored["status_reason"]) == ("rejected", reason)
    assert _risk_events(conn) == [(order_id, kind, limit_value, observed, reason)]
    assert notifications(conn) == [("email", "pending", f"[RISK] alpha: order {order_id} rejected: {reason}")]


def test_a_breach_of_max_open_orders_stores_the_rejected_order_its_risk_event_and_notification(seeded):
    call(seeded, "monitor.set_risk_limit", strategy="alpha", max_open_orders=1)
    place(seeded, "buy", "0.01", "60000")
    second = place(seeded, "buy", "0.01", "60000")
    reason = "2 working orders with this one exceed max_open_orders 1"
    _rejected_with_event_and_notification(seeded, second, "max_open_orders", D("1"), D("2"), reason)


def test_a_breach_of_max_position_notional_stores_the_rejected_order_its_risk_event_and_notification(seeded):
    trade(seeded, "buy", "0.1", "60000")
    call(seeded, "monitor.set_risk_limit", strategy="alpha", max_position_notional=D("7000"))
    rejected = place(seeded, "buy", "0.02", "60000")
    reason = order(seeded, rejected)["status_reason"]
    assert reason.startswith("position notional 7200")
    _rejected_with_event_and_notification(
        seeded, rejected, "max_position_notional", D("7000"), D("7200.000"), reason
    )


def test_a_breach_of_max_daily_loss_stores_the_rejected_order_its_risk_event_and_notification(seeded):
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "0.1", "60000")
        trade(seeded, "sell", "0.1", "59000")  # a loss of 100
        call(seeded, "monitor.set_risk_limit", strategy="alpha", max_daily_loss=D("100"))
        rejected = place(seeded, "buy", "0.01", "59000")
    reason = "realized loss today 100 reached max_daily_loss 100"
    _rejected_with_event_and_notification(seeded, rejected, "max_daily_loss", D("100"), D("100"), reason)


MAKE_RULE = re.compile(r"^([a-zA-Z_-]+):(?!=)(.*)$")


def test_every_makefile_target_carries_a_one_line_comment_that_make_help_lists():
    targets = {}
    for line in (REPO / "Makefile").read_text().splitlines():
        found = MAKE_RULE.match(line)
        if found and not line.startswith((".", "\t")):
            comment = found.group(2).partition("## ")[2].strip()
            targets[found.group(1)] = comment
    assert targets and {name for name, comment in targets.items() if not comment} == set()
    listed = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "help"], capture_output=True, text=True, check=True
    ).stdout
    shown = {
        line.split(maxsplit=1)[0]: line.split(maxsplit=1)[1] for line in listed.splitlines() if line.strip()
    }
    assert shown == targets
    phony = re.search(r"^\.PHONY:(.*)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1).split()
    assert sorted(phony) == sorted(targets)


def test_spreadedge_pgcli_opens_pgcli_on_the_embedded_cluster_with_the_cli_actor(pg_cluster, tmp_path):
    env = {**os.environ, "SPREADEDGE_HOME": str(pg_cluster.home), "SPREADEDGE_PORT": str(pg_cluster.port)}
    env.pop("DATABASE_URL", None)
    # pgcli keeps its configuration and history under the home directory: a fresh one
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), LOGNAME="desk", USER="desk")
    query = "select current_setting('spreadedge.actor') || '|' || current_setting('port') as shown"

    shown = subprocess.run(
        [sys.executable, "-c", "from spreadedge.cli import main; main()", "pgcli", "--less-chatty", "-t",
         "-c", query],
        env=env, capture_output=True, text=True, check=False, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip

    assert shown.returncode == 0, shown.stderr
    assert f"cli:desk|{pg_cluster.port}" in shown.stdout
