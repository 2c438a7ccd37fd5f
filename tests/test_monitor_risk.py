"""Pre-trade risk limits: each limit and the kill switch reject an order in trading.place_order,
with the rejected order, its reason, the risk event and the notification all stored."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, quote
from monitor_helpers import notifications
from trading_helpers import call, order, place, trade, waits_for_a_lock


def limit(conn, strategy="alpha", **limits):
    return call(conn, "monitor.set_risk_limit", strategy=strategy, **limits)


def risk_events(conn):
    return conn.execute(
        "select order_id, limit_kind::text, limit_value, observed_value, reason from monitor.risk_events"
        " order by risk_event_id"
    ).fetchall()


def test_a_channel_given_twice_is_kept_once_where_it_first_appears(seeded):
    limit_id = limit(
        seeded, max_order_notional=Decimal("1000"), channels=["slack", "email", "slack", "email"]
    )

    assert seeded.execute(
        "select channels::text[] from monitor.risk_limits where limit_id = %s", [limit_id]
    ).fetchone() == (["slack", "email"],)


def test_an_order_within_every_limit_is_placed_as_new(seeded):
    limit(
        seeded,
        max_order_notional=Decimal("1000"),
        max_open_orders=5,
        max_position_notional=Decimal("5000"),
        max_daily_loss=Decimal("100"),
    )
    order_id = place(seeded, "buy", "0.01", "60000")
    assert order(seeded, order_id)["status"] == "new"
    assert risk_events(seeded) == []


def test_an_order_above_max_order_notional_is_stored_rejected_with_its_risk_event_and_notification(seeded):
    limit(seeded, max_order_notional=Decimal("1000"))
    order_id = place(seeded, "buy", "0.02", "60000")
    stored = order(seeded, order_id)
    reason = "order notional 1200 exceeds max_order_notional 1000"
    assert (stored["status"], stored["status_reason"]) == ("rejected", reason)
    assert risk_events(seeded) == [
        (order_id, "max_order_notional", Decimal("1000"), Decimal("1200.00"), reason)
    ]
    assert notifications(seeded) == [
        ("email", "pending", f"[RISK] alpha: order {order_id} rejected: {reason}")
    ]
    events = seeded.execute(
        "select from_status::text, to_status::text, reason from trading.order_events where order_id = %s"
        " order by event_id",
        [order_id],
    ).fetchall()
    assert events == [(None, "new", None), ("new", "rejected", reason)]


def test_an_order_beyond_max_open_orders_is_rejected(seeded):
    limit(seeded, max_open_orders=2)
    place(seeded, "buy", "0.01", "60000")
    place(seeded, "buy", "0.01", "60000")
    third = place(seeded, "buy", "0.01", "60000")
    assert order(seeded, third)["status_reason"] == "3 working orders with this one exceed max_open_orders 2"
    assert risk_events(seeded)[0][:4] == (third, "max_open_orders", Decimal("2"), Decimal("3"))


def test_two_placements_at_once_cannot_both_slip_under_max_open_orders(seeded, seeded_url):
    limit(seeded, max_open_orders=1)
    with psycopg.connect(seeded_url) as first, psycopg.connect(seeded_url, autocommit=True) as second:
        first_id = place(first, "buy", "0.01", "60000")  # not committed yet
        placed: list[int] = []
        racer = threading.Thread(target=lambda: placed.append(place(second, "buy", "0.01", "60000")))
        racer.start()
        waited = waits_for_a_lock(seeded, second.info.backend_pid, "advisory")
        first.commit()
        racer.join(timeout=30)

    assert waited
    assert order(seeded, first_id)["status"] == "new"
    assert (
        order(seeded, placed[0])["status_reason"] == "2 working orders with this one exceed max_open_orders 1"
    )


def test_placements_of_a_strategy_without_max_open_orders_do_not_wait_for_each_other(seeded, seeded_url):
    limit(seeded, max_order_notional=Decimal("1000"))
    with psycopg.connect(seeded_url) as first, psycopg.connect(seeded_url, autocommit=True) as second:
        first_id = place(first, "buy", "0.01", "60000")  # not committed: holds no lock second needs
        second.execute("set lock_timeout = '5s'")  # a wait would fail with 55P03 instead of hanging
        second_id = place(second, "buy", "0.01", "60000")
        first.commit()

    assert [order(seeded, o)["status"] for o in (first_id, second_id)] == ["new", "new"]


def test_placements_outside_a_max_open_orders_scope_do_not_wait_for_each_other(seeded, seeded_url):
    limit(seeded, exchange="kraken", max_open_orders=1)
    with psycopg.connect(seeded_url) as first, psycopg.connect(seeded_url, autocommit=True) as second:
        first_id = place(first, "buy", "0.01", "60000")  # on binance, not committed
        second.execute("set lock_timeout = '5s'")  # a wait would fail with 55P03 instead of hanging
        second_id = place(second, "buy", "0.01", "60000")
        first.commit()

    assert [order(seeded, o)["status"] for o in (first_id, second_id)] == ["new", "new"]


def test_an_order_that_would_grow_the_position_beyond_max_position_notional_is_rejected(seeded):
    trade(seeded, "buy", "0.1", "60000")
    limit(seeded, max_position_notional=Decimal("7000"))
    rejected = place(seeded, "buy", "0.02", "60000")
    reducing = place(seeded, "sell", "0.05", "60000")
    assert order(seeded, rejected)["status"] == "rejected"
    assert order(seeded, reducing)["status"] == "new"
    assert risk_events(seeded)[0][:4] == (
        rejected,
        "max_position_notional",
        Decimal("7000"),
        Decimal("7200.000"),
    )


def test_an_order_that_reduces_a_position_beyond_max_position_notional_is_placed(seeded):
    trade(seeded, "buy", "0.2", "60000")
    limit(seeded, max_position_notional=Decimal("7000"))  # the position is 12000 already

    reducing = place(seeded, "sell", "0.05", "60000")  # 9000 after it: still beyond, but smaller
    growing = place(seeded, "buy", "0.01", "60000")

    assert (order(seeded, reducing)["status"], order(seeded, growing)["status"]) == ("new", "rejected")
    assert [event[0] for event in risk_events(seeded)] == [growing]


def test_an_order_that_flips_a_position_is_held_to_max_position_notional(seeded):
    trade(seeded, "buy", "0.1", "60000")
    limit(seeded, max_position_notional=Decimal("7000"))

    rejected = place(seeded, "sell", "0.3", "60000")  # long 0.1 to short 0.2

    assert risk_events(seeded)[0][:4] == (
        rejected,
        "max_position_notional",
        Decimal("7000"),
        Decimal("12000.00"),
    )


def test_an_order_that_adds_to_a_position_counts_the_other_positions_and_one_that_reduces_passes(seeded):
    trade(seeded, "buy", "0.1", "60000")
    trade(seeded, "buy", "1", "600", symbol="BNBUSDT")
    limit(seeded, max_position_notional=Decimal("6500"))  # BTC 6000 + BNB 600 = 6600 already

    bnb = place(seeded, "buy", "0.1", "600", symbol="BNBUSDT")
    btc = place(seeded, "sell", "0.1", "60000")

    assert (order(seeded, bnb)["status"], order(seeded, btc)["status"]) == ("rejected", "new")
    assert risk_events(seeded)[0][::3] == (bnb, Decimal("6660.0"))  # BNB 1.1 x 600 + BTC 0.1 x 60000


def test_a_market_order_without_a_market_price_is_rejected_by_a_position_notional_limit(seeded):
    limit(seeded, max_position_notional=Decimal("1000"))
    order_id = place(seeded, "buy", "0.01")
    assert order(seeded, order_id)["status_reason"] == (
        "max_position_notional: the order has no price and BTCUSDT has no market price to value it"
    )


def test_position_notional_values_the_other_positions_at_their_quote_mid(seeded):
    trade(seeded, "buy", "1", "600", symbol="BNBUSDT")
    quote(seeded, RECENT_NOON, "699.9", "700.1", symbol="BNBUSDT")  # BNB marked at 700, not its entry 600
    trade(seeded, "buy", "0.1", "60000")
    limit(seeded, max_position_notional=Decimal("12000"))

    rejected = place(seeded, "buy", "0.1", "60000")

    assert risk_events(seeded)[0][:4] == (
        rejected,
        "max_position_notional",
        Decimal("12000"),
        Decimal("12700.00"),  # BTC 0.2 x 60000 + BNB 1 x 700
    )


def test_position_notional_values_a_position_without_market_data_at_its_last_fill(seeded):
    trade(seeded, "buy", "1", "600", symbol="BNBUSDT")
    trade(seeded, "buy", "1", "650", symbol="BNBUSDT")  # average entry 625, last fill 650
    limit(seeded, max_position_notional=Decimal("1000"))

    rejected = place(seeded, "buy", "0.01", "60000")

    assert risk_events(seeded)[0][::3] == (rejected, Decimal("1900.00"))  # BTC 0.01 x 60000 + BNB 2 x 650


def test_position_notional_values_a_position_without_market_data_at_a_weeks_old_fill(seeded):
    now = datetime.now(UTC)
    trade(seeded, "buy", "1", "600", symbol="BNBUSDT", executed_at=now - timedelta(days=40))
    trade(seeded, "buy", "1", "650", symbol="BNBUSDT", executed_at=now - timedelta(days=30))
    limit(seeded, max_position_notional=Decimal("1000"))

    rejected = place(seeded, "buy", "0.01", "60000")

    assert risk_events(seeded)[0][::3] == (rejected, Decimal("1900.00"))  # BTC 0.01 x 60000 + BNB 2 x 650


def test_position_notional_values_a_position_without_market_data_at_another_strategys_later_fill(seeded):
    trade(seeded, "buy", "2", "600", symbol="BNBUSDT")
    trade(seeded, "buy", "1", "700", symbol="BNBUSDT", strategy="beta")
    limit(seeded, max_position_notional=Decimal("1000"))

    rejected = place(seeded, "buy", "0.01", "60000")

    assert risk_events(seeded)[0][::3] == (rejected, Decimal("2000.00"))  # BTC 0.01 x 60000 + BNB 2 x 700


def test_position_notional_values_the_other_positions_with_their_instruments_current_multiplier(seeded):
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")  # 10 x 0.01 x 60000 = 6000
    limit(seeded, max_position_notional=Decimal("7000"))
    placed = place(seeded, "buy", "0.01", "60000")  # 600 + 6000
    seeded.execute(
        "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
        " quote_asset => 'USDT', market_type => 'perpetual', tick_size => 0.1, lot_size => 1,"
        " min_notional => 0, multiplier => 0.02)"
    )

    rejected = place(seeded, "buy", "0.01", "60000")  # 600 + 10 x 0.02 x 60000

    assert (order(seeded, placed)["status"], order(seeded, rejected)["status"]) == ("new", "rejected")
    assert risk_events(seeded)[0][::3] == (rejected, Decimal("12600"))


def test_an_exchange_limit_on_position_notional_counts_that_exchanges_other_positions(seeded):
    trade(seeded, "buy", "1", "600", symbol="BNBUSDT")
    trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")
    limit(seeded, exchange="binance", max_position_notional=Decimal("1000"))

    rejected = place(seeded, "buy", "0.01", "60000")

    assert risk_events(seeded)[0][::3] == (rejected, Decimal("1200"))  # BTC 600 + BNB 600, not ETH


def test_an_exchange_limit_on_position_notional_leaves_other_exchanges_positions_out(seeded):
    trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")
    limit(seeded, exchange="binance", max_position_notional=Decimal("1000"))

    placed = place(seeded, "buy", "0.01", "60000")

    assert order(seeded, placed)["status"] == "new"
    assert risk_events(seeded) == []


def test_an_instrument_limit_on_position_notional_leaves_the_strategys_other_positions_out(seeded):
    trade(seeded, "buy", "1", "600", symbol="BNBUSDT")
    limit(seeded, exchange="binance", symbol="BTCUSDT", max_position_notional=Decimal("1000"))

    placed = place(seeded, "buy", "0.01", "60000")  # 600, or 1200 with the BNB position
    rejected = place(seeded, "buy", "0.02", "60000")

    assert (order(seeded, placed)["status"], order(seeded, rejected)["status"]) == ("new", "rejected")
    assert risk_events(seeded)[0][::3] == (rejected, Decimal("1200.00"))


def test_an_exchange_limit_on_daily_loss_counts_only_that_exchanges_losses(seeded):
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")
        trade(seeded, "sell", "1", "1800", exchange="kraken", symbol="ETHUSD")  # a loss of 200 on kraken
        limit(seeded, exchange="binance", max_daily_loss=Decimal("100"))
        limit(seeded, exchange="kraken", max_daily_loss=Decimal("100"))

        on_binance = place(seeded, "buy", "0.01", "60000")
        on_kraken = place(seeded, "buy", "1", "1800", exchange="kraken", symbol="ETHUSD")

    assert (order(seeded, on_binance)["status"], order(seeded, on_kraken)["status"]) == ("new", "rejected")
    assert order(seeded, on_kraken)["status_reason"] == "realized loss today 200 reached max_daily_loss 100"


def test_an_instrument_limit_on_daily_loss_counts_only_that_instruments_losses(seeded):
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "1", "2000", exchange="kraken", symbol="ETHUSD")
        trade(seeded, "sell", "1", "1800", exchange="kraken", symbol="ETHUSD")  # a loss of 200 on ETHUSD
        limit(seeded, exchange="binance", symbol="BTCUSDT", max_daily_loss=Decimal("100"))
        limit(seeded, exchange="kraken", symbol="ETHUSD", max_daily_loss=Decimal("100"))

        btc = place(seeded, "buy", "0.01", "60000")
        eth = place(seeded, "buy", "1", "1800", exchange="kraken", symbol="ETHUSD")

    assert (order(seeded, btc)["status"], order(seeded, eth)["status"]) == ("new", "rejected")
    assert order(seeded, eth)["status_reason"] == "realized loss today 200 reached max_daily_loss 100"


def test_the_narrowest_scope_is_checked_first(seeded):
    strategy_limit = limit(seeded, max_order_notional=Decimal("100"))
    instrument_limit = limit(seeded, exchange="binance", symbol="BTCUSDT", max_order_notional=Decimal("200"))

    rejected = place(seeded, "buy", "0.01", "60000")

    assert seeded.execute(
        "select limit_id, limit_value from monitor.risk_events where order_id = %s", [rejected]
    ).fetchone() == (instrument_limit, Decimal("200"))
    assert strategy_limit != instrument_limit


def test_a_kill_switch_of_a_wider_scope_comes_before_a_narrower_limit(seeded):
    limit(seeded, exchange="binance", symbol="BTCUSDT", max_order_notional=Decimal("100"))
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)

    rejected = place(seeded, "buy", "0.01", "60000")

    assert order(seeded, rejected)["status_reason"] == "kill switch is on"


def test_within_one_limit_order_notional_is_checked_before_open_orders(seeded):
    limit(seeded, max_order_notional=Decimal("100"), max_open_orders=1)
    place(seeded, "buy", "0.001", "60000")

    rejected = place(seeded, "buy", "0.01", "60000")

    assert order(seeded, rejected)["status_reason"] == "order notional 600 exceeds max_order_notional 100"


def test_after_the_daily_loss_limit_is_reached_new_orders_are_rejected(seeded):
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "0.1", "60000")
        trade(seeded, "sell", "0.1", "59000")  # a loss of 100
        limit(seeded, max_daily_loss=Decimal("100"))
        order_id = place(seeded, "buy", "0.01", "59000")
    assert order(seeded, order_id)["status_reason"] == "realized loss today 100 reached max_daily_loss 100"
    assert risk_events(seeded)[0][1] == "max_daily_loss"


def test_after_the_daily_loss_limit_is_reached_an_order_that_reduces_a_position_is_placed(seeded):
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "0.2", "60000")
        trade(seeded, "sell", "0.1", "59000")  # a loss of 100, long 0.1 left
        limit(seeded, max_daily_loss=Decimal("100"))

        closing = place(seeded, "sell", "0.1", "59000")
        flipping = place(seeded, "sell", "0.2", "59000")

    assert (order(seeded, closing)["status"], order(seeded, flipping)["status"]) == ("new", "rejected")
    assert risk_events(seeded)[0][:2] == (flipping, "max_daily_loss")


def test_the_kill_switch_rejects_an_order_that_reduces_a_position(seeded):
    trade(seeded, "buy", "0.1", "60000")
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)

    reducing = place(seeded, "sell", "0.05", "60000")

    assert order(seeded, reducing)["status_reason"] == "kill switch is on"


def test_max_order_notional_holds_an_order_that_reduces_a_position(seeded):
    trade(seeded, "buy", "0.1", "60000")
    limit(seeded, max_order_notional=Decimal("1000"))

    reducing = place(seeded, "sell", "0.05", "60000")

    assert order(seeded, reducing)["status_reason"] == "order notional 3000 exceeds max_order_notional 1000"


def test_with_the_kill_switch_on_every_order_of_the_strategy_is_rejected(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True, reason="exchange outage")
    first = place(seeded, "buy", "0.01", "60000")
    second = place(seeded, "sell", "1", None, exchange="okx", symbol="BTC-USDT-SWAP")
    other_strategy = place(seeded, "buy", "0.01", "60000", strategy="beta")
    assert [order(seeded, o)["status"] for o in (first, second, other_strategy)] == [
        "rejected",
        "rejected",
        "new",
    ]
    assert [event[1] for event in risk_events(seeded)] == ["kill_switch"] * 3
    assert [n[2] for n in notifications(seeded)] == [
        "[RISK] alpha: kill switch on: exchange outage",
        f"[RISK] alpha: order {first} rejected: kill switch is on",
        f"[RISK] alpha: order {second} rejected: kill switch is on",
    ]


def test_turning_the_kill_switch_off_lets_orders_through_again(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=False)
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=False)  # no change: no event
    assert order(seeded, place(seeded, "buy", "0.01", "60000"))["status"] == "new"
    assert [event[4] for event in risk_events(seeded)] == ["kill switch on", "kill switch off"]


def test_two_sessions_turning_a_kill_switch_on_at_once_record_one_change(seeded, seeded_url):
    scope = {"strategy": "alpha", "exchange": "kraken", "symbol": "ETHUSD", "enabled": True}
    with psycopg.connect(seeded_url) as first, psycopg.connect(seeded_url, autocommit=True) as second:
        call(first, "monitor.set_kill_switch", **scope)  # the scope's row, not committed yet
        racer = threading.Thread(target=lambda: call(second, "monitor.set_kill_switch", **scope))
        racer.start()
        waited = waits_for_a_lock(seeded, second.info.backend_pid)
        first.commit()
        racer.join(timeout=30)

    assert waited
    assert [event[4] for event in risk_events(seeded)] == ["kill switch on for kraken/ETHUSD"]
    assert [n[2] for n in notifications(seeded)] == ["[RISK] alpha: kill switch on for kraken/ETHUSD"]


def test_a_limit_of_one_instrument_leaves_the_strategys_other_instruments_alone(seeded):
    limit(seeded, exchange="binance", symbol="BTCUSDT", max_order_notional=Decimal("100"))
    btc = place(seeded, "buy", "0.01", "60000")
    bnb = place(seeded, "buy", "1", "600", symbol="BNBUSDT")
    assert (order(seeded, btc)["status"], order(seeded, bnb)["status"]) == ("rejected", "new")


def test_a_market_order_without_a_market_price_is_rejected_by_a_notional_limit(seeded):
    limit(seeded, max_order_notional=Decimal("1000"))
    order_id = place(seeded, "buy", "0.01")
    assert order(seeded, order_id)["status_reason"] == (
        "max_order_notional: the order has no price and BTCUSDT has no market price to value it"
    )


def test_zero_removes_a_limit(seeded):
    limit(seeded, max_order_notional=Decimal("100"), max_open_orders=5)
    limit(seeded, max_order_notional=Decimal("0"))
    assert seeded.execute(
        "select max_order_notional, max_open_orders from monitor.risk_limits"
    ).fetchone() == (
        None,
        5,
    )
    assert order(seeded, place(seeded, "buy", "0.01", "60000"))["status"] == "new"


def test_invalid_input_still_raises_when_the_strategy_has_limits(seeded):
    limit(seeded, max_order_notional=Decimal("1000"))
    with pytest.raises(psycopg.Error) as caught:
        place(seeded, "buy", "-1", "60000")
    assert caught.value.sqlstate == "22S01"
    assert risk_events(seeded) == []


@pytest.mark.parametrize(
    ("arguments", "sqlstate"),
    [
        ({"max_order_notional": Decimal("-5")}, "22S13"),
        ({"max_daily_loss": Decimal("NaN")}, "22S13"),
        ({"symbol": "BTCUSDT"}, "22S13"),
        ({"channels": ["pager"]}, "22S13"),
        ({"strategy": "nobody"}, "23S03"),
        ({"exchange": "nasdaq"}, "23S01"),
    ],
)
def test_a_bad_risk_limit_is_refused(seeded, arguments, sqlstate):
    with pytest.raises(psycopg.Error) as caught:
        limit(seeded, **{"strategy": "alpha", **arguments})
    assert caught.value.sqlstate == sqlstate


def test_setting_a_limit_and_the_kill_switch_is_audited_with_the_actor(seeded):
    seeded.execute("select set_config('spreadedge.actor', 'risk-desk', false)")
    limit(seeded, max_order_notional=1000)
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True, reason="outage")
    rows = seeded.execute(
        "select operation, old_row ->> 'kill_switch', new_row ->> 'kill_switch', "
        "new_row ->> 'max_order_notional', actor from audit.log "
        "where table_name = 'monitor.risk_limits' order by audit_id"
    ).fetchall()
    assert rows == [
        ("INSERT", None, "false", "1000", "risk-desk"),
        ("UPDATE", "false", "true", "1000", "risk-desk"),
    ]


def test_an_exchange_kill_switch_change_names_its_exchange(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)
    call(seeded, "monitor.set_kill_switch", strategy="alpha", exchange="okx", enabled=True)
    call(seeded, "monitor.set_kill_switch", strategy="alpha", exchange="okx", enabled=False)
    assert [event[4] for event in risk_events(seeded)] == [
        "kill switch on",
        "kill switch on for okx",
        "kill switch off for okx",
    ]
    assert [n[2] for n in notifications(seeded)] == [
        "[RISK] alpha: kill switch on",
        "[RISK] alpha: kill switch on for okx",
        "[RISK] alpha: kill switch off for okx",
    ]


def test_an_instrument_kill_switch_change_names_its_instrument(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", exchange="okx", symbol="BTC-USDT-SWAP",
         enabled=True, reason="funding spike")  # fmt: skip
    assert [event[4] for event in risk_events(seeded)] == [
        "kill switch on for okx/BTC-USDT-SWAP: funding spike"
    ]
    assert [n[2] for n in notifications(seeded)] == [
        "[RISK] alpha: kill switch on for okx/BTC-USDT-SWAP: funding spike"
    ]


def test_a_kill_switch_notification_carries_the_exchange_of_its_scope(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)
    call(seeded, "monitor.set_kill_switch", strategy="alpha", exchange="okx", enabled=True)
    call(
        seeded,
        "monitor.set_kill_switch",
        strategy="beta",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        enabled=True,
    )
    payloads = seeded.execute(
        "select payload ->> 'strategy', payload ->> 'exchange', payload ->> 'instrument'"
        " from monitor.notifications order by notification_id"
    ).fetchall()
    assert payloads == [
        ("alpha", None, None),
        ("alpha", "okx", None),
        ("beta", "okx", "okx/BTC-USDT-SWAP"),
    ]


def test_a_rejected_orders_notification_carries_its_exchange(seeded):
    limit(seeded, max_order_notional=Decimal("1000"))
    place(seeded, "buy", "0.02", "60000")
    assert seeded.execute(
        "select payload ->> 'exchange', payload ->> 'instrument' from monitor.notifications"
    ).fetchall() == [("binance", "binance/BTCUSDT")]


def test_the_risk_event_list_names_the_exchange_of_an_exchange_kill_switch(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", exchange="okx", enabled=True)
    assert seeded.execute(
        "select strategy, exchange, symbol, reason from monitor.risk_event_list"
    ).fetchall() == [("alpha", "okx", None, "kill switch on for okx")]
