"""Edges of alert rules, their evaluation, the monitor views and the risk commands of the CLI."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner, Result

from monitor_helpers import add_rule, evaluate, metric
from spreadedge.cli import main
from trading_helpers import call

NOW = datetime.now(UTC).replace(microsecond=0)


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False)


# A rule on the trades of a period without its period (bug: accepted, and it watched the hour's
# series plus the day's, which holds the hour's trades again: 3 fills this hour read as 6)
@pytest.mark.parametrize(
    ("metric_name", "labels", "shown"),
    [
        ("trades.count", {}, "{}"),
        ("trades.volume", {"base_asset": "BTC"}, '{"base_asset": "BTC"}'),
        ("trades.notional", {"quote_asset": "USDT"}, '{"quote_asset": "USDT"}'),
    ],
)
def test_a_rule_on_trades_without_a_period_is_refused_when_added(seeded, metric_name, labels, shown):
    with pytest.raises(psycopg.Error) as caught:
        add_rule(seeded, "busy", "trading", ">", "100", metric=metric_name, labels=labels)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S12",
        f"the labels of {metric_name} must be an object naming its period, hour or day"
        f" (the day's trades include the hour's), got \"{shown}\"",
    )
    assert seeded.execute("select count(*) from monitor.alert_rules").fetchone()[0] == 0


# Two values of a series at one time (bug: latest_metrics showed the one inserted first, while
# alert rules read the larger: the dashboard read 50 beside an alert that fired at 150)
def test_latest_metrics_shows_the_larger_of_two_values_recorded_at_one_time(seeded):
    metric(seeded, "app.queue_depth", "50", NOW - timedelta(minutes=1))
    metric(seeded, "app.queue_depth", "150", NOW - timedelta(minutes=1))
    assert seeded.execute(
        "select value from monitor.latest_metrics where name = 'app.queue_depth'"
    ).fetchall() == [(Decimal("150"),)]


# A sum rule over a window without values (bug: no value, so once an event metric stopped its
# alert stayed firing for ever, and the next burst was never notified; count read 0 there)
def test_a_sum_rule_alert_resolves_when_its_window_has_no_values_left(seeded):
    for second in range(12):
        metric(seeded, "app.errors", "1", NOW - timedelta(minutes=10, seconds=second))
    add_rule(seeded, "error-burst", "system", ">", "10", metric="app.errors", aggregate="sum",
             evaluation_window=timedelta(minutes=5))  # fmt: skip
    assert evaluate(seeded, NOW - timedelta(minutes=9)) == [("error-burst", "fired", Decimal("12"), False)]
    assert evaluate(seeded, NOW) == [("error-burst", "resolved", Decimal("0"), False)]


# A line break in a kill switch's reason (bug: `risk show` printed the rest of the reason as a line
# of its own, under the columns of the rows, where it read as another risk event)
def test_risk_show_prints_a_reason_with_a_line_break_on_its_events_own_line(seeded_url):
    killed = invoke(seeded_url, "risk", "kill", "alpha", "--reason", "outage\n2  beta  kill switch off")
    assert killed.exit_code == 0, killed.output
    shown = invoke(seeded_url, "risk", "show", "--strategy", "alpha").output.splitlines()
    events = shown[shown.index("") + 1 :]
    assert len(events) == 3
    assert events[2].rstrip().endswith("kill switch on: outage\\n2  beta  kill switch off")


# bug: a new scope given nothing made a limit row that limits nothing, and `risk set alpha` said
# the limits were set
# (an empty channel list too: it is nowhere to notify)
@pytest.mark.parametrize(
    "nothing", [{"max_order_notional": Decimal("0")}, {"channels": []}], ids=["0", "no channels"]
)
def test_setting_nothing_on_a_scope_without_limits_is_refused_and_writes_nothing(seeded, nothing):
    with pytest.raises(psycopg.Error) as caught:
        call(seeded, "monitor.set_risk_limit", strategy="alpha", **nothing)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S13",
        "nothing to set: this scope has no risk limits yet, and no limit, channel or limit_asset was given",
    )
    assert seeded.execute("select count(*) from monitor.risk_limits").fetchone() == (0,)


# bug: an empty reason left a dangling "kill switch on: " in the risk event
def test_a_kill_switch_with_an_empty_reason_records_no_dangling_colon(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True, reason="")
    assert seeded.execute("select reason from monitor.risk_events").fetchall() == [("kill switch on",)]
