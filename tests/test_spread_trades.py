"""Spread trades: both legs placed in one transaction, captured spread, fees, uneven fills."""

import threading
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from market_helpers import RECENT_NOON, quote
from trading_helpers import (
    PERPETUAL_PRICES,
    PERPETUALS,
    call,
    counts,
    fill,
    legs,
    list_binance_eth_btc,
    list_okx_btc_spot,
    list_perpetual,
    list_spot,
    open_spread,
    order,
    rows,
    waits_for_a_lock,
)

T0 = RECENT_NOON


@pytest.fixture
def venues(seeded):
    """BTC/USDT spot on binance (seeded) and okx."""
    list_okx_btc_spot(seeded)
    return seeded


def test_opening_a_spread_trade_places_a_buy_and_a_sell_order_on_the_two_exchanges(venues):
    spread = open_spread(venues)
    placed = venues.execute(
        "select h.exchange, h.symbol, h.side::text, h.quantity, h.price from trading.order_history h"
        " order by h.side"
    ).fetchall()
    assert placed == [
        ("binance", "BTCUSDT", "buy", Decimal("2"), Decimal("100")),
        ("okx", "BTC-USDT", "sell", Decimal("2"), Decimal("101")),
    ]
    assert legs(venues, spread)[0] != legs(venues, spread)[1]


def test_a_leg_that_fails_validation_leaves_nothing_written(venues):
    before = counts(venues)
    with pytest.raises(psycopg.DataError) as caught:
        open_spread(venues, sell_price=Decimal("101.005"))
    assert caught.value.sqlstate == "22S03"
    assert counts(venues) == before
    assert venues.execute("select count(*) from trading.spread_trades").fetchone()[0] == 0


@pytest.mark.parametrize("client_spread_id", ["", "s" * 124])
def test_an_empty_or_overlong_client_spread_id_is_refused_and_nothing_is_written(venues, client_spread_id):
    before = counts(venues)
    with pytest.raises(psycopg.Error) as caught:
        open_spread(venues, client_spread_id=client_spread_id)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"client_spread_id must be 1 to 123 characters, got {len(client_spread_id)}",
    )
    assert counts(venues) == before


def test_both_legs_on_one_exchange_are_refused(venues):
    with pytest.raises(psycopg.DataError) as caught:
        call(
            venues,
            "trading.open_spread_trade",
            strategy="alpha",
            symbol="BTC/USDT",
            buy_exchange="okx",
            sell_exchange="okx",
            quantity=Decimal("1"),
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S20",
        "buy and sell legs are both on okx",
    )


def test_legs_whose_contracts_differ_in_size_are_refused_and_nothing_is_written(seeded):
    list_perpetual(seeded, "bybit", "BTCUSDT", "1")  # okx BTC-USDT-SWAP (seeded) is 0.01 BTC
    before = counts(seeded)
    with pytest.raises(psycopg.DataError) as caught:
        open_spread(seeded, "10", **PERPETUALS, **PERPETUAL_PRICES)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S20",
        "the legs' contracts differ in size: BTC-USDT-SWAP on okx is 0.01 BTC, BTCUSDT on bybit is 1 BTC",
    )
    assert counts(seeded) == before


def test_legs_whose_contracts_are_of_one_size_are_placed(seeded):
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")
    spread = open_spread(seeded, "10", **PERPETUALS, **PERPETUAL_PRICES)
    placed = seeded.execute(
        "select h.exchange, h.symbol, h.side::text, h.quantity from trading.order_history h order by h.side"
    ).fetchall()
    assert spread is not None
    assert placed == [
        ("okx", "BTC-USDT-SWAP", "buy", Decimal("10")),
        ("bybit", "BTCUSDT", "sell", Decimal("10")),
    ]


def test_an_exchange_without_the_pair_is_refused(venues):
    with pytest.raises(psycopg.IntegrityError) as caught:
        call(
            venues,
            "trading.open_spread_trade",
            strategy="alpha",
            symbol="BTC/USDT",
            buy_exchange="binance",
            sell_exchange="kraken",
            quantity=Decimal("1"),
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S02",
        "no spot instrument trades BTC/USDT on kraken",
    )


def test_a_retried_open_with_the_same_client_spread_id_returns_the_same_spread_trade(venues):
    first = open_spread(venues, client_spread_id="arb-1")
    assert open_spread(venues, client_spread_id="arb-1") == first
    assert venues.execute("select count(*) from trading.orders").fetchone()[0] == 2


def test_spread_trade_pnl_reports_captured_spread_fees_and_net(venues):
    spread = open_spread(venues)
    buy, sell = legs(venues, spread)
    fill(venues, buy, "2", "100", fee=Decimal("0.2"), executed_at=T0)
    fill(venues, sell, "2", "101", fee=Decimal("0.202"), executed_at=T0)
    report = rows(venues, "trading.spread_trade_pnl", strategy="alpha")
    assert [
        (r["matched_quantity"], r["captured_spread"], r["fees"], r["net_pnl"], r["residual_quantity"])
        for r in report
    ] == [(Decimal("2"), Decimal("2"), Decimal("0.402"), Decimal("1.598"), Decimal("0"))]


def test_uneven_leg_fills_show_the_residual_exposure_at_the_mark(venues):
    spread = open_spread(venues)
    buy, sell = legs(venues, spread)
    fill(venues, buy, "2", "100", executed_at=T0)
    fill(venues, sell, "0.5", "101", executed_at=T0)
    quote(venues, T0, "99", "101")  # binance mid 100
    (r,) = rows(venues, "trading.spread_trade_pnl")
    assert (r["matched_quantity"], r["captured_spread"], r["residual_quantity"], r["residual_exposure"]) == (
        Decimal("0.5"),
        Decimal("0.5"),
        Decimal("1.5"),
        Decimal("150"),
    )


# bug: the residual was buy filled - sell filled, so a spot buy leg that paid its fee in BTC read
# flat while its position was short of the sale by the fee
def test_a_fee_paid_in_the_base_asset_leaves_a_residual_of_the_fee(venues):
    spread = open_spread(venues)
    buy, sell = legs(venues, spread)
    fill(venues, buy, "2", "100", fee=Decimal("0.002"), fee_currency="BTC", executed_at=T0)
    fill(venues, sell, "2", "101", executed_at=T0)
    quote(venues, T0, "99", "101", exchange="okx", symbol="BTC-USDT")  # okx mid 100
    (r,) = rows(venues, "trading.spread_trade_pnl")
    assert (r["buy_filled"], r["sell_filled"], r["residual_quantity"], r["residual_exposure"]) == (
        Decimal("2"),
        Decimal("2"),
        Decimal("-0.002"),
        Decimal("-0.2"),
    )


def test_the_summary_sums_spread_trades_per_strategy(venues):
    for n, (buy_qty, sell_qty) in enumerate([("2", "2"), ("2", "1")]):
        spread = open_spread(venues, client_spread_id=f"s{n}")
        buy, sell = legs(venues, spread)
        fill(venues, buy, buy_qty, "100", executed_at=T0)
        fill(venues, sell, sell_qty, "101", executed_at=T0)
    summary = rows(venues, "trading.spread_trade_summary")
    assert summary == [
        {
            "strategy_name": "alpha",
            "base_asset": "BTC",
            "quote_asset": "USDT",
            "spread_trades": 2,
            "matched_base_quantity": Decimal("3"),
            "captured_spread": Decimal("3"),
            "fees": Decimal("0"),
            "net_pnl": Decimal("3"),
            "uneven_trades": 1,
        }
    ]


def test_the_summary_sums_spread_trades_of_each_quote_asset_apart(venues):
    list_binance_eth_btc(venues)
    call(venues, "ref.upsert_instrument", exchange="okx", symbol="ETH-BTC", base_asset="ETH", quote_asset="BTC",
         market_type="spot", tick_size=Decimal("0.00001"), lot_size=Decimal("0.001"))  # fmt: skip
    btc = legs(venues, open_spread(venues, client_spread_id="btc"))
    eth = legs(venues, open_spread(venues, symbol="ETH/BTC", buy_price=Decimal("0.05"),
                                   sell_price=Decimal("0.051"), client_spread_id="eth"))  # fmt: skip
    for (buy, sell), (buy_price, sell_price) in zip(
        [btc, eth], [("100", "101"), ("0.05", "0.051")], strict=True
    ):
        fill(venues, buy, "2", buy_price, executed_at=T0)
        fill(venues, sell, "2", sell_price, executed_at=T0)

    summary = rows(venues, "trading.spread_trade_summary")

    assert [(r["quote_asset"], r["spread_trades"], r["captured_spread"]) for r in summary] == [
        ("USDT", 1, Decimal("2")),  # BTC/USDT
        ("BTC", 1, Decimal("0.002")),  # ETH/BTC
    ]


def test_a_concurrent_open_with_the_same_client_spread_id_returns_the_first_spread_trade(venues, seeded_url):
    opened: list[int] = []
    failures: list[psycopg.Error] = []

    def retry(conn):
        try:
            opened.append(open_spread(conn, client_spread_id="arb-race"))
        except psycopg.Error as exc:  # asserted on below
            failures.append(exc)

    with psycopg.connect(seeded_url) as first, psycopg.connect(seeded_url, autocommit=True) as second:
        first_id = open_spread(first, client_spread_id="arb-race")  # not committed yet
        racer = threading.Thread(target=retry, args=(second,))
        racer.start()
        waited = waits_for_a_lock(venues, second.info.backend_pid)
        first.commit()
        racer.join(timeout=30)

    assert waited
    assert [(e.sqlstate, e.diag.message_primary) for e in failures] == []
    assert opened == [first_id]
    assert venues.execute("select count(*) from trading.spread_trades").fetchone()[0] == 1
    assert venues.execute("select count(*) from trading.orders").fetchone()[0] == 2


def leg_statuses(conn, spread_trade_id):
    """(status, status_reason) of the buy leg, then of the sell leg."""
    return [(order(conn, o)["status"], order(conn, o)["status_reason"]) for o in legs(conn, spread_trade_id)]


def kill_switch(conn, exchange):
    call(conn, "monitor.set_kill_switch", strategy="alpha", enabled=True, exchange=exchange)


def test_a_sell_leg_rejected_by_a_risk_limit_rejects_the_buy_leg_too(venues):
    kill_switch(venues, "okx")
    spread = open_spread(venues)
    sell = legs(venues, spread)[1]
    assert leg_statuses(venues, spread) == [
        ("rejected", f"spread trade {spread}: the sell leg (order {sell}) was rejected: kill switch is on"),
        ("rejected", "kill switch is on"),
    ]


def test_a_buy_leg_rejected_by_a_risk_limit_rejects_the_sell_leg_too(venues):
    kill_switch(venues, "binance")
    spread = open_spread(venues)
    buy = legs(venues, spread)[0]
    assert leg_statuses(venues, spread) == [
        ("rejected", "kill switch is on"),
        ("rejected", f"spread trade {spread}: the buy leg (order {buy}) was rejected: kill switch is on"),
    ]


def test_a_spread_leg_rejected_by_a_risk_limit_keeps_its_risk_event(venues):
    kill_switch(venues, "okx")
    spread = open_spread(venues)
    sell = legs(venues, spread)[1]
    events = venues.execute(
        "select order_id, limit_kind::text, reason from monitor.risk_events where order_id is not null"
    ).fetchall()
    assert events == [(sell, "kill_switch", "kill switch is on")]


def test_a_spread_trade_with_a_rejected_leg_records_each_legs_rejection_as_an_order_event(venues):
    kill_switch(venues, "okx")
    spread = open_spread(venues)
    buy, sell = legs(venues, spread)
    events = venues.execute(
        "select order_id, from_status::text, to_status::text, reason from trading.order_events"
        " where to_status = 'rejected' order by order_id",
    ).fetchall()
    assert events == [
        (
            buy,
            "new",
            "rejected",
            f"spread trade {spread}: the sell leg (order {sell}) was rejected: kill switch is on",
        ),
        (sell, "new", "rejected", "kill switch is on"),
    ]


def test_a_spread_trade_whose_second_leg_exceeds_max_open_orders_has_both_legs_rejected(venues):
    call(venues, "monitor.set_risk_limit", strategy="alpha", max_open_orders=1)  # room for one leg
    spread = open_spread(venues)
    sell = legs(venues, spread)[1]
    reason = "2 working orders with this one exceed max_open_orders 1"
    assert leg_statuses(venues, spread) == [
        ("rejected", f"spread trade {spread}: the sell leg (order {sell}) was rejected: {reason}"),
        ("rejected", reason),
    ]


def list_eth_spot(conn):
    list_spot(conn, "binance", "ETHUSDT", base_asset="ETH")
    list_spot(conn, "okx", "ETH-USDT", base_asset="ETH")


@pytest.mark.parametrize(
    ("retried", "detail"),
    [
        ({"strategy": "beta"}, "beta buys 2 BTC/USDT spot on binance @ 100, sells on okx @ 101"),
        (
            {"buy_exchange": "okx", "sell_exchange": "binance"},
            "alpha buys 2 BTC/USDT spot on okx @ 100, sells on binance @ 101",
        ),
        ({"symbol": "ETH/USDT"}, "alpha buys 2 ETH/USDT spot on binance @ 100, sells on okx @ 101"),
        ({"quantity": Decimal("3")}, "alpha buys 3 BTC/USDT spot on binance @ 100, sells on okx @ 101"),
        ({"buy_price": Decimal("99")}, "alpha buys 2 BTC/USDT spot on binance @ 99, sells on okx @ 101"),
        ({"sell_price": None}, "alpha buys 2 BTC/USDT spot on binance @ 100, sells on okx @ market"),
    ],
    ids=["strategy", "exchanges", "symbol", "quantity", "buy_price", "sell_price"],
)
def test_a_client_spread_id_reused_with_different_values_is_a_conflict(venues, retried, detail):
    list_eth_spot(venues)
    first = open_spread(venues, client_spread_id="arb-1")
    args = {
        "strategy": "alpha",
        "symbol": "BTC/USDT",
        "buy_exchange": "binance",
        "sell_exchange": "okx",
        "quantity": Decimal("2"),
        "buy_price": Decimal("100"),
        "sell_price": Decimal("101"),
        "client_spread_id": "arb-1",
    }
    before = counts(venues)
    with pytest.raises(psycopg.IntegrityError) as caught:
        call(venues, "trading.open_spread_trade", **(args | retried))
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_detail) == (
        "23S06",
        f'client spread id "arb-1" is already used by spread trade {first} with different values',
        f"stored: alpha buys 2 BTC/USDT spot on binance @ 100, sells on okx @ 101; retried: {detail}",
    )
    assert counts(venues) == before


def test_another_users_client_spread_id_is_a_conflict_that_does_not_describe_their_spread_trade(auth_db):
    list_okx_btc_spot(auth_db)
    ids = {name: make_user(auth_db, name) for name in ("alice", "bob")}
    for name in ("alice", "bob"):
        with acting_as(auth_db, "spreadedge_app", ids[name]):
            call(auth_db, "trading.create_strategy", name=f"{name}-arb")
    with acting_as(auth_db, "spreadedge_app", ids["alice"]):
        open_spread(auth_db, strategy="alice-arb", client_spread_id="arb-1")
    with acting_as(auth_db, "spreadedge_app", ids["bob"]), pytest.raises(psycopg.IntegrityError) as caught:
        open_spread(auth_db, strategy="bob-arb", client_spread_id="arb-1")
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_detail) == (
        "23S06",
        'client spread id "arb-1" is already used',
        None,
    )


def fill_spread(conn, spread_trade_id, buy_quantity, sell_quantity):
    """Fill the legs of a perpetual spread trade at 60000 and 60100, a fee of 0.6 USDT each."""
    buy, sell = legs(conn, spread_trade_id)
    fill(conn, buy, buy_quantity, "60000", fee=Decimal("0.6"), fee_currency="USDT", executed_at=T0)
    fill(conn, sell, sell_quantity, "60100", fee=Decimal("0.6"), fee_currency="USDT", executed_at=T0)


def test_a_multiplier_change_after_both_legs_filled_leaves_the_captured_spread_and_net_pnl_unchanged(seeded):
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")
    fill_spread(seeded, open_spread(seeded, "10", **PERPETUALS, **PERPETUAL_PRICES), "10", "10")
    list_perpetual(seeded, "okx", "BTC-USDT-SWAP", "0.001")  # okx shrinks its contract
    (r,) = rows(seeded, "trading.spread_trade_pnl")
    assert (r["captured_spread"], r["fees"], r["net_pnl"]) == (Decimal("10"), Decimal("1.2"), Decimal("8.8"))


def test_the_residual_of_a_sell_leg_ahead_is_valued_at_its_own_instruments_multiplier(seeded):
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")
    fill_spread(seeded, open_spread(seeded, "10", **PERPETUALS, **PERPETUAL_PRICES), "4", "10")
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.005")  # bybit halves its contract
    quote(seeded, T0, "60000", "60200", exchange="bybit", symbol="BTCUSDT")  # mid 60100
    (r,) = rows(seeded, "trading.spread_trade_pnl")
    # the positions hold 4 x 0.01 = 0.04 BTC long and 10 x 0.005 = 0.05 BTC short: 0.01 BTC short,
    # 2 of bybit's contracts
    assert (r["captured_spread"], r["residual_quantity"], r["residual_exposure"]) == (
        Decimal("4"),
        Decimal("-2"),
        Decimal("-601"),  # -0.01 x 60100
    )


def test_a_spread_racing_a_change_of_one_legs_contract_size_is_refused_and_nothing_is_written(
    seeded, seeded_url
):
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")  # the size of okx BTC-USDT-SWAP (seeded)
    before = counts(seeded)
    failures: list[psycopg.Error] = []

    def opener(conn):
        try:
            open_spread(conn, "10", **PERPETUALS, **PERPETUAL_PRICES)
        except psycopg.Error as exc:  # asserted on below
            failures.append(exc)

    with psycopg.connect(seeded_url) as changer, psycopg.connect(seeded_url, autocommit=True) as caller:
        list_perpetual(changer, "bybit", "BTCUSDT", "1")  # not committed yet
        racer = threading.Thread(target=opener, args=(caller,))
        racer.start()
        waited = waits_for_a_lock(seeded, caller.info.backend_pid)
        changer.commit()
        racer.join(timeout=30)

    assert waited
    assert [(f.sqlstate, f.diag.message_primary) for f in failures] == [
        (
            "22S20",
            "the legs' contracts differ in size: BTC-USDT-SWAP on okx is 0.01 BTC, BTCUSDT on bybit is 1 BTC",
        )
    ]
    assert {k: v for k, v in counts(seeded).items() if k != "ref.instruments" and k != "audit.log"} == {
        k: v for k, v in before.items() if k != "ref.instruments" and k != "audit.log"
    }


@pytest.mark.parametrize("market_type", ["option", "futures"])
def test_an_option_or_dated_futures_spread_trade_is_refused_and_nothing_is_written(seeded, market_type):
    # instruments keep no strike or expiry: a 100 call on binance and a 150 call on okx would be paired
    for exchange, symbol in (("binance", "BTC-261225-100-X"), ("okx", "BTC-USDT-261225-150-X")):
        call(
            seeded,
            "ref.upsert_instrument",
            exchange=exchange,
            symbol=symbol,
            base_asset="BTC",
            quote_asset="USDT",
            market_type=market_type,
            tick_size=Decimal("0.1"),
            lot_size=Decimal("1"),
            min_notional=Decimal("0"),
        )
    before = counts(seeded)
    with pytest.raises(psycopg.DataError) as caught:
        open_spread(seeded, "1", market_type=market_type, buy_price=Decimal("20"), sell_price=Decimal("4"))
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f'market_type must be spot, margin or perpetual, got "{market_type}"',
    )
    assert counts(seeded) == before


@pytest.mark.parametrize(("market_type", "shown"), [("swap", "swap"), (None, "null")])
def test_an_unknown_or_null_market_type_is_an_invalid_argument(venues, market_type, shown):
    with pytest.raises(psycopg.DataError) as caught:
        open_spread(venues, market_type=market_type)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f'market_type must be spot, margin or perpetual, got "{shown}"',
    )


def test_spread_trade_pnl_refuses_a_period_whose_since_is_after_its_until(venues):
    open_spread(venues, opened_at=T0)
    with pytest.raises(psycopg.DataError) as caught:
        rows(venues, "trading.spread_trade_pnl", since=T0 + timedelta(days=1), until=T0)
    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary.startswith("since ")


def test_a_spread_trade_with_no_fills_and_no_market_price_has_no_residual_exposure(venues):
    open_spread(venues)
    (r,) = rows(venues, "trading.spread_trade_pnl")
    assert (r["residual_quantity"], r["residual_exposure"]) == (Decimal("0"), Decimal("0"))
