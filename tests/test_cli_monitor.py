"""The monitoring commands of the CLI (alerts, risk, metrics, notify) through click, on a test database."""

import os
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import make_conninfo

from market_helpers import quote
from spreadedge.cli import main
from trading_helpers import call, order, place


def invoke(url, *args, env=None):
    return CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False, env=env)


def test_alerts_add_rule_evaluate_list_and_ack(seeded, seeded_url):
    added = invoke(seeded_url, "alerts", "add-rule", "btc-high", "--kind", "price", "--exchange", "binance",
                   "--symbol", "BTCUSDT", "--operator", ">", "--threshold", "70000.5", "--channel", "slack")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert added.output == "alert rule btc-high added (id 1)\n"
    assert "binance/BTCUSDT" in invoke(seeded_url, "alerts", "rules").output
    quote(seeded, datetime.now(UTC) - timedelta(seconds=5), "70999", "71001")
    assert "btc-high: fired" in invoke(seeded_url, "alerts", "evaluate").output
    listed = invoke(seeded_url, "alerts", "list").output
    assert "btc-high" in listed and "no acknowledged alerts" in listed
    assert invoke(seeded_url, "alerts", "ack", "1").output == "alert 1 acknowledged\n"
    assert "no firing alerts" in invoke(seeded_url, "alerts", "list").output


def test_a_broken_rule_is_refused_with_its_message_and_status_1(seeded_url):
    result = invoke(seeded_url, "alerts", "add-rule", "x", "--kind", "system", "--metric", "db.nope",
                    "--operator", ">", "--threshold", "1")  # fmt: skip
    assert result.exit_code == 1
    assert 'metric "db.nope" does not exist' in result.output


def test_risk_set_kill_show_and_unkill(seeded, seeded_url):
    assert (
        invoke(
            seeded_url, "risk", "set", "alpha", "--max-order-notional", "1000", "--max-open-orders", "3"
        ).exit_code
        == 0
    )
    assert invoke(seeded_url, "risk", "kill", "alpha", "--reason", "drill").output == (
        "kill switch of alpha on: every new order is rejected\n"
    )
    assert order(seeded, place(seeded, "buy", "0.01", "60000"))["status"] == "rejected"
    shown = invoke(seeded_url, "risk", "show", "--strategy", "alpha").output
    assert "1000" in shown and "kill switch on: drill" in shown and "kill switch is on" in shown
    assert invoke(seeded_url, "risk", "unkill", "alpha").exit_code == 0
    assert order(seeded, place(seeded, "buy", "0.01", "60000"))["status"] == "new"


def test_metrics_collect_and_show(seeded_url):
    collected = invoke(seeded_url, "metrics", "collect")
    assert collected.output.startswith("recorded ") and collected.output.endswith(" metric values\n")
    shown = invoke(seeded_url, "metrics", "show", "--name", "db.size_bytes").output
    assert shown.splitlines()[0].split() == ["name", "labels", "value", "unit", "recorded_at"]
    assert "db.size_bytes" in shown and "bytes" in shown


def test_notify_worker_without_a_channel_says_what_to_configure(seeded_url):
    result = invoke(seeded_url, "notify", "worker", "--once", env={"SPREADEDGE_SETTINGS": "/dev/null"})
    assert result.exit_code == 1
    assert "no channel is configured" in result.output


def test_notify_worker_once_delivers_what_is_due(seeded, seeded_url, http_receiver):
    invoke(seeded_url, "risk", "set", "alpha", "--channel", "webhook")
    invoke(seeded_url, "risk", "kill", "alpha")
    env = {"SPREADEDGE_SETTINGS": "/dev/null", "SPREADEDGE_WEBHOOK_URL": http_receiver.url("/events"),
           "SPREADEDGE_WEBHOOK_SECRET": "k3y-never-printed"}  # fmt: skip
    result = invoke(seeded_url, "notify", "worker", "--once", env=env)
    assert (result.exit_code, result.output) == (0, "delivered 1, failed 0 (0 to the dead letter)\n")
    assert len(http_receiver.requests) == 1 and "k3y-never-printed" not in result.output


def test_notify_worker_once_exits_1_when_a_message_failed(seeded, seeded_url, http_receiver):
    invoke(seeded_url, "risk", "set", "alpha", "--channel", "webhook")
    invoke(seeded_url, "risk", "kill", "alpha")
    http_receiver.statuses.append(500)
    env = {"SPREADEDGE_SETTINGS": "/dev/null", "SPREADEDGE_WEBHOOK_URL": http_receiver.url("/events"),
           "SPREADEDGE_WEBHOOK_SECRET": "k3y"}  # fmt: skip

    result = invoke(seeded_url, "notify", "worker", "--once", env=env)

    assert (result.exit_code, result.output) == (1, "delivered 0, failed 1 (0 to the dead letter)\n")


def test_notify_worker_with_a_scheme_less_slack_url_exits_1_without_printing_it(seeded, seeded_url):
    invoke(seeded_url, "risk", "set", "alpha", "--channel", "slack")
    invoke(seeded_url, "risk", "kill", "alpha")
    token = "SUPERSECRETtoken"
    env = {"SPREADEDGE_SETTINGS": "/dev/null",
           "SPREADEDGE_SLACK_WEBHOOK_URL": f"hooks.slack.com/services/T0AAA/B0BBB/{token}"}  # fmt: skip
    result = CliRunner().invoke(main, ["--database-url", seeded_url, "notify", "worker", "--once"], env=env)
    # only plain strings in the assertions: a failure report must not print the result's exception
    exit_code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    assert token not in stdout and token not in stderr
    assert (exit_code, stdout, stderr) == (
        1,
        "",
        "Error: SPREADEDGE_SLACK_WEBHOOK_URL is not an http(s) URL: it needs http:// or https://, a host and "
        "no spaces or control characters (the value is not shown)\n",
    )
    assert seeded.execute("select status::text, attempts from monitor.notifications").fetchall() == [
        ("pending", 0)
    ]


def listed_ids(output):
    """The first column of the table rows that start with an id, in printed order."""
    return [
        int(line.split()[0]) for line in output.splitlines() if line.split() and line.split()[0].isdigit()
    ]


def test_alerts_list_all_shows_the_newest_100_alerts_newest_first(seeded, seeded_url):
    call(
        seeded,
        "monitor.record_metric",
        name="app.flap",
        value=0,
        recorded_at=datetime.now(UTC) - timedelta(days=1),
    )
    call(seeded, "monitor.add_alert_rule", name="flap", kind="system", metric="app.flap", operator=">",
         threshold=10, evaluation_window="1 minute", cooldown="0")  # fmt: skip
    # 102 alerts: the metric is 20 (fires) on even minutes and 0 (resolves) on odd ones
    seeded.execute(
        "select monitor.record_metric('app.flap', case when g % 2 = 0 then 20 else 0 end, '{}',"
        " now() - interval '5 hours' + g * interval '1 minute') from generate_series(0, 203) g"
    )
    seeded.execute(
        "select count(*) from generate_series(0, 203) g,"
        " lateral monitor.evaluate_alert_rules(now() - interval '5 hours' + g * interval '1 minute')"
    )
    assert seeded.execute("select count(*) from monitor.alert_list").fetchone() == (102,)
    result = invoke(seeded_url, "alerts", "list", "--all")
    assert listed_ids(result.output) == list(range(102, 2, -1))


def test_risk_show_lists_the_newest_20_risk_events_newest_first(seeded, seeded_url):
    invoke(seeded_url, "risk", "kill", "alpha", "--reason", "drill")  # risk event 1
    for _ in range(21):  # risk events 2 to 22: rejected orders
        place(seeded, "buy", "0.01", "60000")
    shown = invoke(seeded_url, "risk", "show").output
    _limits, events = shown.split("\n\n")
    assert listed_ids(events) == list(range(22, 2, -1))


def test_alerts_ack_of_an_id_beyond_bigint_is_a_usage_error(seeded_url):
    result = invoke(seeded_url, "alerts", "ack", "99999999999999999999")
    assert result.exit_code == 2
    assert "Invalid value for 'ALERT_ID'" in result.output and "not migrated" not in result.output


def test_risk_set_max_open_orders_beyond_integer_is_a_usage_error(seeded_url):
    result = invoke(seeded_url, "risk", "set", "alpha", "--max-open-orders", "2147483648")
    assert result.exit_code == 2
    assert "Invalid value for '--max-open-orders'" in result.output and "not migrated" not in result.output


def test_notify_worker_refuses_a_nan_poll_that_would_spin(seeded_url):
    env = {"SPREADEDGE_SETTINGS": "/dev/null"}
    result = invoke(seeded_url, "notify", "worker", "--poll", "nan", env=env)
    assert result.exit_code == 2
    assert "Invalid value for '--poll': nan is not a finite number of seconds" in result.output


def rule_row(output, name):
    return next(line for line in output.splitlines() if line.startswith(name + " "))


def test_alerts_rules_print_a_small_threshold_as_a_plain_decimal(seeded_url):
    invoke(seeded_url, "alerts", "add-rule", "tiny", "--kind", "price", "--exchange", "binance",
           "--symbol", "BTCUSDT", "--operator", "<", "--threshold", "0.00000001")  # fmt: skip
    row = rule_row(invoke(seeded_url, "alerts", "rules").output, "tiny")
    assert " 0.00000001 " in row and "E-" not in row


def test_alerts_rules_print_intervals_as_postgresql_does(seeded_url):
    invoke(seeded_url, "alerts", "add-rule", "slow", "--kind", "price", "--exchange", "binance",
           "--symbol", "BTCUSDT", "--operator", ">", "--threshold", "1", "--window", "2 days",
           "--cooldown", "1 day 2 hours")  # fmt: skip
    row = rule_row(invoke(seeded_url, "alerts", "rules").output, "slow")
    assert "  2 days  " in row and "  1 day 02:00:00  " in row


def test_yes_no_columns_are_left_aligned_like_text(seeded_url):
    invoke(seeded_url, "risk", "kill", "alpha")
    lines = invoke(seeded_url, "risk", "show").output.splitlines()
    header, row = lines[0], lines[2]
    assert row[header.index("kill_switch") :].startswith("yes ")


def test_alerts_add_rule_refuses_a_label_key_given_twice(seeded, seeded_url):
    result = invoke(seeded_url, "alerts", "add-rule", "twice", "--kind", "risk", "--metric",
                    "pnl.realized_today", "--label", "strategy=alpha", "--label", "strategy=beta",
                    "--operator", "<", "--threshold", "-5000")  # fmt: skip
    assert result.exit_code == 2
    assert "Invalid value for '--label': 'strategy' is given twice" in result.output
    assert seeded.execute("select count(*) from monitor.alert_rule_list").fetchone() == (0,)


def test_alerts_rules_print_channels_as_a_readable_list(seeded_url):
    invoke(seeded_url, "alerts", "add-rule", "loud", "--kind", "price", "--exchange", "binance",
           "--symbol", "BTCUSDT", "--operator", ">", "--threshold", "1", "--channel", "slack",
           "--channel", "email")  # fmt: skip
    row = rule_row(invoke(seeded_url, "alerts", "rules").output, "loud")
    assert "  email, slack  " in row and "{" not in row


def test_risk_show_prints_channels_as_a_readable_list(seeded_url):
    invoke(seeded_url, "risk", "set", "alpha", "--max-open-orders", "3", "--channel", "webhook",
           "--channel", "discord")  # fmt: skip
    lines = invoke(seeded_url, "risk", "show", "--strategy", "alpha").output.splitlines()
    header, row = lines[0], lines[2]
    assert row[header.index("channels") :].rstrip() == "webhook, discord"


def test_alerts_rules_show_a_rules_labels(seeded_url):
    invoke(seeded_url, "alerts", "add-rule", "alpha-loss", "--kind", "risk", "--metric",
           "pnl.realized_today", "--label", "strategy=alpha", "--label", "quote_asset=USDT",
           "--operator", "<", "--threshold", "-5000")  # fmt: skip
    output = invoke(seeded_url, "alerts", "rules").output
    assert output.splitlines()[0].split()[:4] == ["name", "kind", "watching", "labels"]
    assert ' pnl.realized_today  {"strategy": "alpha", "quote_asset": "USDT"}  last ' in rule_row(
        output, "alpha-loss"
    )


def test_alerts_add_rule_with_a_bad_window_names_the_option(seeded, seeded_url):
    result = invoke(seeded_url, "alerts", "add-rule", "w", "--kind", "price", "--exchange", "binance",
                    "--symbol", "BTCUSDT", "--operator", ">", "--threshold", "1", "--window", "5 minuets")  # fmt: skip
    assert result.exit_code == 2
    assert (
        "Error: Invalid value for '--window': invalid input syntax for type interval: \"5 minuets\""
        " (give a PostgreSQL interval such as '10 minutes' or '1 day 2 hours')\n"
    ) in result.output
    assert seeded.execute("select count(*) from monitor.alert_rule_list").fetchone() == (0,)


def test_alerts_add_rule_with_a_cooldown_out_of_range_names_the_option(seeded_url):
    result = invoke(seeded_url, "alerts", "add-rule", "c", "--kind", "price", "--exchange", "binance",
                    "--symbol", "BTCUSDT", "--operator", ">", "--threshold", "1", "--cooldown",
                    "1000000000 years")  # fmt: skip
    assert result.exit_code == 2
    assert "Error: Invalid value for '--cooldown': interval out of range (give a" in result.output


def test_a_threshold_beyond_numeric_is_a_usage_error_naming_the_option(seeded_url):
    result = invoke(seeded_url, "alerts", "add-rule", "big", "--kind", "price", "--exchange", "binance",
                    "--symbol", "BTCUSDT", "--operator", ">", "--threshold", "1e131072")  # fmt: skip
    assert result.exit_code == 2
    assert "Invalid value for '--threshold': '1e131072' is beyond the range of a PostgreSQL numeric" in (
        result.output
    )


def test_a_limit_with_more_decimals_than_numeric_holds_is_a_usage_error_naming_the_option(seeded_url):
    result = invoke(seeded_url, "risk", "set", "alpha", "--max-daily-loss", "1e-16384")
    assert result.exit_code == 2
    assert "Invalid value for '--max-daily-loss': '1e-16384' is beyond the range" in result.output


def test_risk_show_of_an_unknown_strategy_is_an_error_naming_it(seeded_url):
    result = invoke(seeded_url, "risk", "show", "--strategy", "alpah")
    assert (result.exit_code, result.output) == (
        1,
        'Error: strategy "alpah" does not exist\nhint: Create it with trading.create_strategy.\n',
    )


def test_risk_show_of_a_strategy_without_limits_or_events_says_so(seeded_url):
    result = invoke(seeded_url, "risk", "show", "--strategy", "beta")
    assert (result.exit_code, result.output) == (0, "no risk limits\n\nno risk events\n")


def test_metrics_show_of_an_unknown_metric_is_an_error_naming_it(seeded_url):
    result = invoke(seeded_url, "metrics", "show", "--name", "db.size")
    assert result.exit_code == 1
    assert result.output.startswith('Error: metric "db.size" does not exist\nhint: monitor.metric_catalog')


def test_metrics_show_of_a_known_metric_without_recent_values_says_so(seeded_url):
    result = invoke(seeded_url, "metrics", "show", "--name", "db.size_bytes")
    assert (result.exit_code, result.output) == (
        0,
        "no value of db.size_bytes in the last hour (spreadedge metrics collect records it)\n",
    )


def test_alerts_evaluate_prints_a_small_value_as_a_plain_decimal(seeded, seeded_url):
    call(seeded, "monitor.record_metric", name="app.drift", value="0.00000001",
         recorded_at=datetime.now(UTC) - timedelta(seconds=5))  # fmt: skip
    call(seeded, "monitor.add_alert_rule", name="drift", kind="system", metric="app.drift", operator=">",
         threshold=0)  # fmt: skip
    result = invoke(seeded_url, "alerts", "evaluate")
    assert result.output == "alert 1 drift: fired at 0.00000001\n1 transitions\n"


def test_metrics_show_prints_no_labels_as_an_empty_cell(seeded, seeded_url):
    call(seeded, "monitor.record_metric", name="app.lag_ms", value=42)
    header, _rule, row = invoke(seeded_url, "metrics", "show", "--name", "app.lag_ms").output.splitlines()
    assert row[header.index("labels") :].split()[0] == "42" and "{}" not in row


def test_notify_worker_help_gives_the_poll_in_seconds():
    result = CliRunner().invoke(main, ["notify", "worker", "--help"])
    assert "--poll SECONDS" in result.output and "in seconds" in result.output


def test_risk_set_with_a_channel_given_twice_notifies_once_on_it(seeded, seeded_url):
    invoke(
        seeded_url, "risk", "set", "alpha", "--channel", "email", "--channel", "slack", "--channel", "email"
    )
    invoke(seeded_url, "risk", "kill", "alpha")
    assert seeded.execute(
        "select channel::text from monitor.notifications order by notification_id"
    ).fetchall() == [("email",), ("slack",)]


@pytest.fixture
def reader_url(seeded, seeded_url):
    """The test database's URL for a login role of spreadedge_readonly (people, dashboards)."""
    role = f"reader_{seeded.info.dbname}"
    seeded.execute(sql.SQL("create role {} login in role spreadedge_readonly").format(sql.Identifier(role)))
    yield make_conninfo(seeded_url, user=role)
    seeded.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_risk_show_of_a_strategy_for_a_readonly_role_lists_its_limits(seeded_url, reader_url):
    invoke(seeded_url, "risk", "set", "alpha", "--max-open-orders", "3")
    result = invoke(reader_url, "risk", "show", "--strategy", "alpha")
    assert result.exit_code == 0 and result.output.splitlines()[2].split()[:2] == ["alpha", "3"]


def test_risk_show_of_an_unknown_strategy_for_a_readonly_role_is_an_error_naming_it(reader_url):
    result = invoke(reader_url, "risk", "show", "--strategy", "alpah")
    assert result.exit_code == 1 and result.output.startswith('Error: strategy "alpah" does not exist\n')


def test_metrics_show_of_a_metric_for_a_readonly_role_shows_its_values(seeded, reader_url):
    call(seeded, "monitor.record_metric", name="app.lag_ms", value=42)
    result = invoke(reader_url, "metrics", "show", "--name", "app.lag_ms")
    assert result.exit_code == 0 and result.output.splitlines()[2].split()[:2] == ["app.lag_ms", "42"]
    missing = invoke(reader_url, "metrics", "show", "--name", "app.nope")
    assert (missing.exit_code, missing.output) == (0, "no value of app.nope in the last hour\n")


def test_alerts_rules_print_months_and_fractions_of_a_second_as_postgresql_does(seeded_url):
    invoke(seeded_url, "alerts", "add-rule", "odd", "--kind", "price", "--exchange", "binance",
           "--symbol", "BTCUSDT", "--operator", ">", "--threshold", "1", "--window", "1.5 seconds",
           "--cooldown", "1 mon 2 days")  # fmt: skip
    row = rule_row(invoke(seeded_url, "alerts", "rules").output, "odd")
    assert "  00:00:01.5  " in row and "  1 mon 2 days  " in row


def test_a_command_a_readonly_role_may_not_run_is_an_error_naming_the_privilege(reader_url):
    result = invoke(reader_url, "risk", "kill", "alpha")

    assert (result.exit_code, result.output.splitlines()) == (
        1,
        [
            "Error: permission denied for function set_kill_switch",
            "hint: connect as a role that may do this (the database owner, or a member of spreadedge_owner"
            " or the role the function is granted to)",
        ],
    )


def test_monitor_commands_work_for_a_uid_without_a_user_name(seeded, seeded_url, monkeypatch):
    # as in a container run with an arbitrary uid, no passwd entry and no USER or LOGNAME
    def no_name() -> str:
        raise KeyError("getpwuid(): uid not found: 54321")

    monkeypatch.setattr("getpass.getuser", no_name)
    result = invoke(seeded_url, "risk", "kill", "alpha")

    assert result.exit_code == 0, result.output
    assert seeded.execute("select updated_by from monitor.risk_limits").fetchall() == [
        (f"cli:uid {os.getuid()}",)
    ]
