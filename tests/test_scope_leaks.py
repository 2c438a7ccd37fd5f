"""Scope leaks: what a trader must not learn about strategies they cannot see, through a conflict's
error (client order ids, exchange trade ids) or through the monitor views that run as their owner."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from monitor_helpers import add_rule, evaluate, metric
from trading_helpers import call, fill, list_okx_btc_spot, place

NOW = datetime.now(UTC).replace(microsecond=0)


def conflict(caught):
    error = caught.value
    return (error.sqlstate, error.diag.message_primary, error.diag.message_detail, error.diag.message_hint)


# ---------------------------------------------------------------------------------------------------
# Conflicts: another user's client order id or exchange trade id is taken, and nothing more is told
# ---------------------------------------------------------------------------------------------------


def test_another_users_client_order_id_is_a_conflict_that_names_no_order(desks, auth_db):
    place(auth_db, "buy", "0.5", "60000", strategy="alice-arb", client_order_id="A-SECRET-1")
    with acting_as(auth_db, "spreadedge_app", desks["bob"]), pytest.raises(psycopg.IntegrityError) as caught:
        place(auth_db, "buy", "0.001", "10000", strategy="bob-arb", client_order_id="A-SECRET-1")
    assert conflict(caught) == (
        "23S06",
        'client order id "A-SECRET-1" is already used',
        None,
        "A client order id names one order; use a new id for a new order.",
    )


def test_another_users_client_order_id_in_a_spread_leg_is_a_conflict_that_names_no_order(desks, auth_db):
    list_okx_btc_spot(auth_db)
    # alice's own order took the client order id that bob's spread trade gives its buy leg
    place(auth_db, "buy", "0.5", "60000", strategy="alice-arb", client_order_id="arb-1-buy")
    with acting_as(auth_db, "spreadedge_app", desks["bob"]), pytest.raises(psycopg.IntegrityError) as caught:
        call(auth_db, "trading.open_spread_trade", strategy="bob-arb", symbol="BTC/USDT", buy_exchange="binance",
             sell_exchange="okx", quantity=Decimal("0.01"), buy_price=Decimal("1000"),
             sell_price=Decimal("1001"), client_spread_id="arb-1")  # fmt: skip
    assert conflict(caught) == (
        "23S06",
        'client order id "arb-1-buy" is already used',
        None,
        "A client order id names one order; use a new id for a new order.",
    )


def test_another_users_exchange_trade_id_is_a_conflict_that_names_no_trade(desks, auth_db):
    alices = place(auth_db, "buy", "0.5", "60000", strategy="alice-arb")
    fill(
        auth_db,
        alices,
        "0.2",
        "59999.5",
        fee=Decimal("0.0002"),
        fee_currency="BTC",
        exchange_trade_id="A-T-1",
    )
    with acting_as(auth_db, "spreadedge_app", desks["bob"]):
        # a buy, as alice's: a sell is the trade's other side, which bob's strategy may be
        bobs = place(auth_db, "buy", "0.1", "61000", strategy="bob-arb")
        with pytest.raises(psycopg.IntegrityError) as caught:
            fill(auth_db, bobs, "0.01", "61000", exchange_trade_id="A-T-1")
    assert conflict(caught) == (
        "23S06",
        'exchange trade id "A-T-1" is already recorded',
        None,
        "An exchange trade id names one fill of its instrument per side; check the id the fill came with.",
    )


# ---------------------------------------------------------------------------------------------------
# The monitor views: a scoped trader sees their own strategies' rows only
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def monitored(desks, auth_db):
    """For each of alice-arb and bob-arb: a risk limit, an order it rejected (risk event and email
    notification), a pnl.unrealized series and a rule on it that fired (alert and slack
    notification). Besides: an unlabelled risk.events series and a rule on it that fired too.
    Returns the rejected orders' ids by strategy."""
    rejected = {}
    for strategy, pnl in (("alice-arb", "120"), ("bob-arb", "-40")):
        call(auth_db, "monitor.set_risk_limit", strategy=strategy, max_order_notional=Decimal("100"))
        rejected[strategy] = place(auth_db, "buy", "0.01", "60000", strategy=strategy)
        metric(
            auth_db, "pnl.unrealized", pnl, NOW - timedelta(minutes=1), strategy=strategy, quote_asset="USDT"
        )
        add_rule(auth_db, f"{strategy}-pnl", "risk", "<>", "0", metric="pnl.unrealized",
                 labels={"strategy": strategy, "quote_asset": "USDT"}, channels=["slack"])  # fmt: skip
    metric(auth_db, "risk.events", "2", NOW - timedelta(minutes=1))
    add_rule(auth_db, "platform-risk", "risk", ">", "0", metric="risk.events", channels=["slack"])
    assert len(evaluate(auth_db, NOW)) == 3
    return rejected


def as_bob(conn, desks, query):
    with acting_as(conn, "spreadedge_app", desks["bob"]):
        return conn.execute(query).fetchall()


def test_risk_limit_list_shows_a_trader_only_their_strategies_limits(monitored, desks, auth_db):
    assert as_bob(auth_db, desks, "select strategy, max_order_notional from monitor.risk_limit_list") == [
        ("bob-arb", Decimal("100"))
    ]


def test_risk_event_list_shows_a_trader_only_their_strategies_events(monitored, desks, auth_db):
    assert as_bob(auth_db, desks, "select strategy, order_id from monitor.risk_event_list") == [
        ("bob-arb", monitored["bob-arb"])
    ]


def test_latest_metrics_shows_a_trader_only_series_labelled_with_their_strategies(monitored, desks, auth_db):
    assert as_bob(auth_db, desks, "select name, labels, value from monitor.latest_metrics") == [
        ("pnl.unrealized", {"strategy": "bob-arb", "quote_asset": "USDT"}, Decimal("-40"))
    ]


def test_alert_rule_list_shows_a_trader_only_rules_on_their_strategies(monitored, desks, auth_db):
    assert as_bob(auth_db, desks, "select name from monitor.alert_rule_list") == [("bob-arb-pnl",)]


def test_alert_list_shows_a_trader_only_alerts_of_rules_on_their_strategies(monitored, desks, auth_db):
    assert as_bob(auth_db, desks, "select rule, status::text from monitor.alert_list") == [
        ("bob-arb-pnl", "firing")
    ]


def test_notification_list_shows_a_trader_only_their_strategies_notifications(monitored, desks, auth_db):
    found = as_bob(auth_db, desks, "select channel::text, subject from monitor.notification_list order by 1")
    assert found == [
        (
            "email",
            f"[RISK] bob-arb: order {monitored['bob-arb']} rejected:"
            " order notional 600 exceeds max_order_notional 100",
        ),
        ("slack", "[WARNING] bob-arb-pnl fired: pnl.unrealized last = -40 (threshold <> 0)"),
    ]


def test_rules_tied_to_no_strategy_show_only_to_users_with_alerts_manage(monitored, auth_db):
    # carol runs the alerting (alerts:manage) and owns no strategy: the platform rule, its alert
    # and its notification, nothing of alice's or bob's
    auth_db.execute(
        "insert into auth.roles (role_name, description) values ('alerting', 'Runs the alerting.')"
    )
    auth_db.execute(
        "insert into auth.role_permissions (role_name, permission) values ('alerting', 'alerts:manage')"
    )
    carol = make_user(auth_db, "carol", "alerting")
    with acting_as(auth_db, "spreadedge_app", carol):
        seen = [
            auth_db.execute(f"select count(*) from monitor.{view}").fetchone()[0]
            for view in ("alert_rule_list", "alert_list", "notification_list", "latest_metrics")
        ]
        rules = auth_db.execute("select name from monitor.alert_rule_list").fetchall()
    assert (rules, seen) == ([("platform-risk",)], [1, 1, 1, 0])


def test_sessions_that_see_every_strategy_see_every_monitor_row(monitored, auth_db):
    views = ("risk_limit_list", "risk_event_list", "latest_metrics", "alert_rule_list", "alert_list",
             "notification_list")  # fmt: skip
    root = make_user(auth_db, "root", "admin")

    def counts():
        return [auth_db.execute(f"select count(*) from monitor.{view}").fetchone()[0] for view in views]

    unscoped = counts()
    with acting_as(auth_db, "spreadedge_readonly"):
        readonly = counts()
    with acting_as(auth_db, "spreadedge_app", root):
        admin = counts()
    assert unscoped == readonly == admin == [2, 2, 3, 3, 3, 5]


def test_a_traders_own_conditions_never_run_on_rows_the_scope_hides(monitored, desks, auth_db):
    # the cast fails on any strategy but bob's: evaluated on alice's row, it would print her name
    query = (
        "select strategy from monitor.risk_limit_list"
        " where case when strategy = 'bob-arb' then true else strategy::integer > 0 end"
    )
    assert as_bob(auth_db, desks, query) == [("bob-arb",)]


# ---------------------------------------------------------------------------------------------------
# Marks: without market data a position is marked at a fill the user may see, never another's
# ---------------------------------------------------------------------------------------------------


def test_a_traders_position_without_market_data_is_marked_at_their_own_latest_fill_not_anothers(
    desks, auth_db
):
    bought = place(auth_db, "buy", "1", "100", strategy="alice-arb")
    fill(auth_db, bought, "1", "100", executed_at=NOW - timedelta(minutes=2))
    bought = place(auth_db, "buy", "1", "137.77", strategy="bob-arb")
    fill(auth_db, bought, "1", "137.77", executed_at=NOW - timedelta(minutes=1))
    query = "select strategy, mark_price, unrealized_pnl from trading.position_summary"
    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        assert auth_db.execute(query).fetchall() == [("alice-arb", Decimal("100"), Decimal("0"))]
    # the engine (unscoped) marks at the instrument's latest fill, whoever made it
    assert auth_db.execute(query + " order by strategy").fetchall() == [
        ("alice-arb", Decimal("137.77"), Decimal("37.77")),
        ("bob-arb", Decimal("137.77"), Decimal("0")),
    ]


# ---------------------------------------------------------------------------------------------------
# Alerts and the audit log: acting on, or reading, another user's rows
# ---------------------------------------------------------------------------------------------------


def alerting_user(conn):
    """carol runs the alerting (alerts:manage) and owns no strategy; returns her user id."""
    conn.execute("insert into auth.roles (role_name, description) values ('alerting', 'Runs the alerting.')")
    conn.execute(
        "insert into auth.role_permissions (role_name, permission) values ('alerting', 'alerts:manage')"
    )
    return make_user(conn, "carol", "alerting")


def alert_of(conn, rule):
    return conn.execute(
        "select a.alert_id from monitor.alerts a join monitor.alert_rules r using (rule_id) where r.name = %s",
        [rule],
    ).fetchone()[0]


def test_an_alert_of_a_rule_on_another_users_strategy_is_unknown_to_acknowledge(monitored, auth_db):
    carol = alerting_user(auth_db)
    bobs = alert_of(auth_db, "bob-arb-pnl")
    with acting_as(auth_db, "spreadedge_app", carol), pytest.raises(psycopg.IntegrityError) as caught:
        call(auth_db, "monitor.acknowledge_alert", alert_id=bobs)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S14",
        f"alert {bobs} does not exist",
    )
    assert auth_db.execute(
        "select status::text from monitor.alerts where alert_id = %s", [bobs]
    ).fetchone() == ("firing",)


def test_a_metric_value_labelled_with_another_users_strategy_is_an_unknown_strategy(desks, auth_db):
    # carol's forged series showed among bob's own in monitor.latest_metrics
    carol = alerting_user(auth_db)
    with acting_as(auth_db, "spreadedge_app", carol), pytest.raises(psycopg.IntegrityError) as caught:
        metric(auth_db, "app.pnl", "-99999", NOW - timedelta(minutes=1), strategy="bob-arb")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S03",
        'strategy "bob-arb" does not exist',
    )
    assert auth_db.execute("select count(*) from monitor.metrics where name = 'app.pnl'").fetchone() == (0,)


def test_a_custom_metric_rule_labelled_with_another_users_strategy_is_an_unknown_strategy(desks, auth_db):
    # bob saw carol's rule (and its alerts and notifications), and carol could no longer see it
    carol = alerting_user(auth_db)
    metric(auth_db, "app.pnl", "1", NOW - timedelta(minutes=1))
    with acting_as(auth_db, "spreadedge_app", carol), pytest.raises(psycopg.IntegrityError) as caught:
        add_rule(auth_db, "carol-on-bob", "trading", "<", "0", metric="app.pnl",
                 labels={"strategy": "bob-arb"}, channels=["slack"])  # fmt: skip
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S03",
        'strategy "bob-arb" does not exist',
    )


def test_a_trader_labels_a_metric_value_with_their_own_strategy(desks, auth_db):
    auth_db.execute(
        "insert into auth.role_permissions (role_name, permission) values ('trader', 'alerts:manage')"
    )
    with acting_as(auth_db, "spreadedge_app", desks["bob"]):
        metric(auth_db, "app.pnl", "5", NOW - timedelta(minutes=1), strategy="bob-arb")
        assert auth_db.execute(
            "select value from monitor.latest_metrics where name = 'app.pnl'"
        ).fetchall() == [(Decimal("5"),)]


def test_a_user_with_alerts_manage_acknowledges_an_alert_of_a_rule_tied_to_no_strategy(monitored, auth_db):
    carol = alerting_user(auth_db)
    platform = alert_of(auth_db, "platform-risk")
    with acting_as(auth_db, "spreadedge_app", carol):
        call(auth_db, "monitor.acknowledge_alert", alert_id=platform, acknowledged_by="carol")
        assert auth_db.execute("select rule, status::text from monitor.alert_list").fetchall() == [
            ("platform-risk", "acknowledged")
        ]


def test_audit_history_refuses_a_session_scoped_to_a_trader_with_42S01(desks, auth_db):
    bobs = place(auth_db, "buy", "0.5", "60000", strategy="bob-arb", client_order_id="B-SECRET-1")
    with acting_as(auth_db, "spreadedge_auditor", desks["alice"]), pytest.raises(psycopg.Error) as caught:
        auth_db.execute("select * from audit.history('trading.orders', %s)", [f'{{"order_id": {bobs}}}'])
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {desks['alice']} lacks the permission audit:read",
    )


def test_audit_history_tells_a_user_with_audit_read_every_users_story(desks, auth_db):
    bobs = place(auth_db, "buy", "0.5", "60000", strategy="bob-arb", client_order_id="B-SECRET-1")
    auditor = make_user(auth_db, "ada", "auditor")
    query = "select operation, new_row ->> 'client_order_id' from audit.history('trading.orders', %s)"
    with acting_as(auth_db, "spreadedge_auditor", auditor):
        story = auth_db.execute(query, [f'{{"order_id": {bobs}}}']).fetchall()
    assert story == [("INSERT", "B-SECRET-1")]


# ---------------------------------------------------------------------------------------------------
# A session scoped to a user id that names no enabled user sees nothing
# ---------------------------------------------------------------------------------------------------

# platform figures, not rows of any strategy: the server's statistics and the project's table sizes
PLATFORM_VIEWS = {"monitor.query_performance", "monitor.disk_usage"}


@pytest.mark.parametrize("who", ["unknown", "disabled"])
def test_a_session_of_an_unknown_or_disabled_user_reads_no_row_of_any_trading_or_monitor_view(
    monitored, desks, auth_db, who
):
    if who == "disabled":
        call(auth_db, "auth.disable_user", user_id=desks["bob"])
    views = [
        name
        for (name,) in auth_db.execute(
            "select c.oid::regclass::text from pg_class c where c.relkind = 'v'"
            " and c.relnamespace::regnamespace::text in ('trading', 'monitor')"
            " and has_table_privilege('spreadedge_app', c.oid, 'select') order by 1"
        ).fetchall()
        if name not in PLATFORM_VIEWS
    ]
    assert len(views) >= 14
    with acting_as(auth_db, "spreadedge_app", 999_999 if who == "unknown" else desks["bob"]):
        seen = {
            view: auth_db.execute(
                psycopg.sql.SQL("select count(*) from {}").format(psycopg.sql.Identifier(*view.split(".")))
            ).fetchone()[0]
            for view in views
        }
    assert seen == dict.fromkeys(views, 0)


def test_a_snapshot_taken_unscoped_marks_a_traders_position_at_their_own_fill_not_anothers(desks, auth_db):
    bought = place(auth_db, "buy", "1", "100", strategy="alice-arb")
    fill(auth_db, bought, "1", "100", executed_at=NOW - timedelta(minutes=2))
    bought = place(auth_db, "buy", "1", "137.77", strategy="bob-arb")
    fill(auth_db, bought, "1", "137.77", executed_at=NOW - timedelta(minutes=1))
    call(auth_db, "trading.take_portfolio_snapshot")  # the engine or pg_cron, unscoped
    query = (
        "select gross_exposure, unrealized_pnl from trading.portfolio_snapshots where strategy_id is not null"
    )
    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        assert auth_db.execute(query).fetchall() == [(Decimal("100"), Decimal("0"))]


def test_a_rule_on_another_users_strategy_is_unknown_to_switch_off(monitored, auth_db):
    carol = alerting_user(auth_db)
    with acting_as(auth_db, "spreadedge_app", carol), pytest.raises(psycopg.IntegrityError) as caught:
        call(auth_db, "monitor.set_alert_rule_enabled", name="bob-arb-pnl", enabled=False)
    assert caught.value.sqlstate == "23S13"
    assert auth_db.execute(
        "select is_enabled from monitor.alert_rules where name = 'bob-arb-pnl'"
    ).fetchone() == (True,)


def test_a_user_scoped_to_some_strategies_may_not_claim_the_outbox(monitored, auth_db):
    carol = alerting_user(auth_db)
    with acting_as(auth_db, "spreadedge_app", carol), pytest.raises(psycopg.ProgrammingError) as caught:
        call(auth_db, "monitor.claim_notifications", worker="w", channels=["email", "slack"])
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {carol} lacks the permission strategies:all",
    )


def test_another_users_id_is_unknown_to_a_trader(desks, auth_db):
    with (
        acting_as(auth_db, "spreadedge_app", desks["alice"]),
        pytest.raises(psycopg.IntegrityError) as caught,
    ):
        call(auth_db, "auth.user_id_of", username="bob")
    assert caught.value.sqlstate == "23S07"
    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        assert call(auth_db, "auth.user_id_of", username="ALICE") == desks["alice"]


def test_collected_metrics_mark_a_traders_position_at_their_own_fill_not_anothers(desks, auth_db):
    bought = place(auth_db, "buy", "1", "100", strategy="alice-arb")
    fill(auth_db, bought, "1", "100", executed_at=NOW - timedelta(minutes=2))
    bought = place(auth_db, "buy", "1", "137.77", strategy="bob-arb")
    fill(auth_db, bought, "1", "137.77", executed_at=NOW - timedelta(minutes=1))
    call(auth_db, "monitor.collect_metrics")  # pg_cron, unscoped

    assert auth_db.execute(
        'select name, value from monitor.metrics where labels = \'{"strategy": "alice-arb", "quote_asset": "USDT"}\''
        " and name in ('exposure.gross', 'pnl.unrealized') order by name"
    ).fetchall() == [("exposure.gross", Decimal("100")), ("pnl.unrealized", Decimal("0"))]
