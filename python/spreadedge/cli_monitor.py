"""``spreadedge alerts|risk|metrics|notify …``: thin commands over the ``monitor`` functions and views.

Every rule, limit and check lives in SQL; these commands pass the options as bind parameters to
``monitor.*`` functions and print the monitor views as tables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import click
import psycopg
from psycopg import sql
from psycopg.types import TypeInfo
from psycopg.types.json import Jsonb, set_json_loads
from psycopg.types.string import TextLoader

from spreadedge import db, sqlcall, textable
from spreadedge.settings import Settings

NUMERIC_MAX_ADJUSTED = 131071  # the largest power of ten a numeric holds
NUMERIC_MAX_SCALE = 16383  # the most digits after the decimal point


class DecimalType(click.ParamType):
    """An exact, finite decimal number (thresholds and limits are money or counts, never floats)."""

    name = "decimal"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            number = value
        else:
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                self.fail(f"{value!r} is not a decimal number", param, ctx)
        # why: NaN compares greater than every number in PostgreSQL, so a NaN bound is a filter
        # that silently matches nothing (or everything)
        if not number.is_finite():
            self.fail(f"{value!r} is not a finite decimal number", param, ctx)
        # why: PostgreSQL's numeric holds up to 131072 digits before the point and 16383 after;
        # beyond, the server's "value overflows numeric format" would not say which option
        exponent = number.as_tuple().exponent
        if number.adjusted() > NUMERIC_MAX_ADJUSTED or (
            isinstance(exponent, int) and exponent < -NUMERIC_MAX_SCALE
        ):
            self.fail(f"{value!r} is beyond the range of a PostgreSQL numeric", param, ctx)
        return number


DECIMAL = DecimalType()
# why: a value beyond the parameter's type (bigint alert ids, integer max_open_orders) finds no
# function to call, which PostgreSQL reports as 42883 (undefined_function), a traceback
BIGINT_ID = click.IntRange(min=1, max=2**63 - 1)
INTEGER_COUNT = click.IntRange(min=0, max=2**31 - 1)


def finite_number(what: str = "number") -> Callable[[click.Context, click.Parameter, float], float]:
    """A click callback that refuses NaN and infinities as "VALUE is not a finite WHAT".

    why: FloatRange lets NaN through (every comparison with NaN is false); a NaN poll made the
    notify worker's sleep 0 and it spun on the database, inf never woke it to retry a due row, and
    health read a NaN --max-disk-used as an unhealthy database (exit 1) instead of a usage error
    """

    def check(ctx: click.Context, param: click.Parameter, value: float) -> float:
        if not math.isfinite(value):
            raise click.BadParameter(f"{value!r} is not a finite {what}", ctx, param)
        return value

    return check


_finite_seconds = finite_number("number of seconds")


CHANNELS = click.Choice(["email", "slack", "discord", "webhook"])


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    conn = db.connect(settings, actor=db.cli_actor(), autocommit=True)
    # why text: an interval is shown as PostgreSQL prints it; a timedelta has no months (1 mon
    # would read 30 days, 100 years 36500 days) and the table would have to round its fractions
    conn.adapters.register_loader("interval", TextLoader)
    # why exact: labels are any JSON object a recorder gave (monitor.record_metric), and json.loads
    # showed a label of 12345678901234567890.5 as 1.2345678901234567e+19, and one of 1e5000 made
    # metrics show fail with a traceback for every series
    set_json_loads(textable.load_exact_json, conn)
    try:
        # why: psycopg does not know the enum's array type and would hand over PostgreSQL's array
        # text ({email,slack}); registered, a channels column reads as a list of names. None: the
        # database is not migrated, which the first query of a monitor view then reports
        info = TypeInfo.fetch(conn, "monitor.notification_channel")
        if info is not None:
            info.register(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _call(conn: psycopg.Connection[Any], function: str, **arguments: Any) -> Any:
    """Call ``monitor.function(name => value, ...)``; the first value of the first row."""
    row = conn.execute(sqlcall.select_value(function, arguments), arguments).fetchone()
    return None if row is None else row[0]


def _cell(value: Any) -> str:
    # why escaped (textable.shown): a kill switch's reason (or a strategy name) with a line break
    # split its row in two, and the second line read as a row of its own, under another row's columns
    return textable.shown(_plain_cell(value))


def _plain_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, Decimal):
        # why: str() writes 0.00000001 as 1E-8 and 0.000000000000 as 0E-12
        return format(value, "f")
    if isinstance(value, dict):
        # why JSON: labels are given as JSON (record_metric, alerts add-rule); Python's repr is not.
        # No labels (every series, a platform-wide metric) is an empty cell, like no channels.
        # why ensure_ascii off: a label in another script (a strategy named in Chinese or Russian)
        # was shown as "\u4e1c\u4eac"; a control or bidirectional character is still
        # escaped, by JSON or by _cell. why exact: see _connect
        return textable.exact_json(value, ensure_ascii=False) if value else ""
    if isinstance(value, datetime) and value.tzinfo is not None:
        # why: psycopg gives a timestamptz in the session's TimeZone, which is the server's
        # setting; times are shown in UTC whatever the server's zone
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _option(name: str) -> tuple[click.Context, click.Parameter]:
    """The current command's context and its parameter ``name`` (for errors that name the option)."""
    ctx = click.get_current_context()
    return ctx, next(param for param in ctx.command.params if param.name == name)


def check_interval(conn: psycopg.Connection[Any], value: str, name: str, *, positive: bool = False) -> None:
    """Refuse a value PostgreSQL does not read as an interval, naming the option it came from.

    The server parses it, exactly as it will parse the function's argument; its own error would
    not say which of the interval options was wrong.
    """
    try:
        row = conn.execute("select %s::interval > interval '0'", (value,)).fetchone()
    except psycopg.DataError as exc:
        ctx, param = _option(name)
        message = exc.diag.message_primary or "not an interval"
        raise click.BadParameter(
            f"{message} (give a PostgreSQL interval such as '10 minutes' or '1 day 2 hours')", ctx, param
        ) from exc
    if positive and not (row and row[0]):
        raise click.BadParameter(f"{value!r} is not a positive interval", *_option(name))


def _show(
    conn: psycopg.Connection[Any],
    view: str,
    columns: Sequence[str],
    *,
    where: dict[str, Any] | None = None,
    order_by: str,
    descending: bool = False,
    limit: int | None = None,
    empty: str,
) -> None:
    """Print columns of ``monitor.view`` (rows equal to ``where``'s values) as a table.

    ``order_by`` names the sort columns (comma-separated), all descending with ``descending``:
    ``limit`` then keeps the newest rows of an id or a time, printed newest first.
    """
    query = sql.SQL("select {} from {}").format(
        sql.SQL(", ").join(sql.Identifier(column) for column in columns), sql.Identifier("monitor", view)
    )
    filters = {key: value for key, value in (where or {}).items() if value is not None}
    if filters:
        query += sql.SQL(" where ") + sql.SQL(" and ").join(
            sql.SQL("{} = {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in filters
        )
    direction = sql.SQL(" desc" if descending else "")
    query += sql.SQL(" order by {}").format(
        sql.SQL(", ").join(sql.Identifier(c) + direction for c in order_by.split(","))
    )
    if limit is not None:
        query += sql.SQL(" limit {}").format(sql.Literal(limit))
    rows = conn.execute(query, filters).fetchall()
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(value) for value in row] for row in rows]
    right = [
        # why not bool: it is an int in Python, but yes/no is text
        all(
            isinstance(row[i], int | Decimal) and not isinstance(row[i], bool)
            for row in rows
            if row[i] is not None
        )
        for i in range(len(columns))
    ]
    click.echo(textable.render(list(columns), cells, right))


# -- alerts ----------------------------------------------------------------------------------------


@click.group(name="alerts")
def alerts_group() -> None:
    """Alert rules and the alerts they open: list, ack, rules, add-rule, disable, enable, evaluate."""


@alerts_group.command(name="list")
@click.option("--all", "show_all", is_flag=True, help="Resolved alerts too (the newest 100, newest first).")
@click.pass_obj
def list_alerts(settings: Settings, show_all: bool) -> None:
    """List open alerts (firing and acknowledged), newest first."""
    columns = ["alert_id", "rule", "severity", "status", "opened_value", "operator", "threshold", "opened_at"]
    with _connect(settings) as conn:
        if show_all:
            _show(
                conn,
                "alert_list",
                [*columns, "resolved_at"],
                order_by="alert_id",
                descending=True,
                limit=100,
                empty="no alerts",
            )
        else:
            for status in ("firing", "acknowledged"):
                _show(
                    conn,
                    "alert_list",
                    columns,
                    where={"status": status},
                    order_by="alert_id",
                    descending=True,
                    empty=f"no {status} alerts",
                )


@alerts_group.command(name="ack")
@click.argument("alert_id", type=BIGINT_ID)
@click.option("--by", "acknowledged_by", default=None, help="Who acknowledges (default: cli:<user>).")
@click.pass_obj
def ack(settings: Settings, alert_id: int, acknowledged_by: str | None) -> None:
    """Acknowledge a firing alert (it still resolves by itself when its condition clears)."""
    with _connect(settings) as conn:
        _call(
            conn,
            "monitor.acknowledge_alert",
            alert_id=alert_id,
            acknowledged_by=acknowledged_by or db.cli_actor(),
        )
    click.echo(f"alert {alert_id} acknowledged")


@alerts_group.command(name="rules")
@click.pass_obj
def rules(settings: Settings) -> None:
    """List the alert rules."""
    columns = ["name", "kind", "watching", "labels", "aggregate", "operator", "threshold",
               "evaluation_window", "severity", "cooldown", "channels", "is_enabled"]  # fmt: skip
    with _connect(settings) as conn:
        _show(conn, "alert_rule_list", columns, order_by="name", empty="no alert rules")


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, label = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", *_option("labels"))
        if key in labels:
            # why: a second value of a key would silently replace the first, a rule watching
            # another series than the operator meant
            raise click.BadParameter(f"{key!r} is given twice", *_option("labels"))
        labels[key] = label
    return labels


@alerts_group.command(name="add-rule")
@click.argument("name")
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["price", "volume", "risk", "system", "trading"]),
    help="What it watches.",
)
@click.option(
    "--metric", default=None, help="The metric (risk, system, trading rules): monitor.metric_catalog."
)
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Only this metric series (repeatable)."
)
@click.option("--exchange", default=None, help="Exchange of the instrument (price and volume rules).")
@click.option("--symbol", default=None, help="Symbol of the instrument (price and volume rules).")
@click.option(
    "--aggregate",
    default=None,
    help="price rules: last, avg, min, max or change_pct; volume rules: sum or count; metric rules: any "
    "of these, or increase (how much a counter such as db.rollbacks rose in the window) (default: last; "
    "sum for volume rules).",
)
@click.option("--operator", "operator", required=True, help="One of > >= < <= = <>.")
@click.option("--threshold", required=True, type=DECIMAL, help="The value compared with.")
@click.option(
    "--window",
    "evaluation_window",
    default="5 minutes",
    show_default=True,
    metavar="INTERVAL",
    help="Aggregate the values of this last span (more than 0, at most 31 days).",
)
@click.option(
    "--severity",
    default="warning",
    show_default=True,
    type=click.Choice(["info", "warning", "critical"]),
    help="How urgent its alerts are: in the notification's subject and in alerts list.",
)
@click.option(
    "--cooldown",
    default="15 minutes",
    show_default=True,
    metavar="INTERVAL",
    help="No new notification of a firing within this after the last one (at most 1 year).",
)
@click.option(
    "--channel",
    "channels",
    multiple=True,
    type=CHANNELS,
    help="Notify here (repeatable; none: never notified).",
)
@click.option("--description", default=None, help="What the rule is for.")
@click.pass_obj
def add_rule(
    settings: Settings,
    name: str,
    kind: str,
    metric: str | None,
    labels: tuple[str, ...],
    exchange: str | None,
    symbol: str | None,
    aggregate: str | None,
    operator: str,
    threshold: Decimal,
    evaluation_window: str,
    severity: str,
    cooldown: str,
    channels: tuple[str, ...],
    description: str | None,
) -> None:
    """Add an alert rule NAME; it is checked completely now, never at evaluation time."""
    with _connect(settings) as conn:
        check_interval(conn, evaluation_window, "evaluation_window")
        check_interval(conn, cooldown, "cooldown")
        rule_id = _call(
            conn,
            "monitor.add_alert_rule",
            name=name,
            kind=kind,
            operator=operator,
            threshold=threshold,
            metric=metric,
            exchange=exchange,
            symbol=symbol,
            aggregate=aggregate,
            labels=Jsonb(_labels(labels)),
            evaluation_window=evaluation_window,
            severity=severity,
            cooldown=cooldown,
            channels=list(channels),
            description=description,
        )
    click.echo(f"alert rule {name} added (id {rule_id})")


def _set_rule_enabled(settings: Settings, name: str, enabled: bool) -> None:
    # why the CLI actor on the session (_connect): the resolution of the rule's open alert, and
    # its notification, name who disabled it
    with _connect(settings) as conn:
        _call(conn, "monitor.set_alert_rule_enabled", name=name, enabled=enabled)


@alerts_group.command(name="disable")
@click.argument("name")
@click.pass_obj
def disable_rule(settings: Settings, name: str) -> None:
    """Disable the alert rule NAME: it is no longer evaluated, and its open alert (firing or
    acknowledged) resolves now, notified when its firing was."""
    _set_rule_enabled(settings, name, False)
    click.echo(f"alert rule {name} disabled")


@alerts_group.command(name="enable")
@click.argument("name")
@click.pass_obj
def enable_rule(settings: Settings, name: str) -> None:
    """Enable the alert rule NAME again: the next evaluation may open a new alert."""
    _set_rule_enabled(settings, name, True)
    click.echo(f"alert rule {name} enabled")


@alerts_group.command(name="evaluate")
@click.pass_obj
def evaluate(settings: Settings) -> None:
    """Evaluate every rule now (pg_cron does it every minute) and print the transitions."""
    with _connect(settings) as conn:
        rows = conn.execute(sqlcall.select_rows("monitor.evaluate_alert_rules", [])).fetchall()
    for alert_id, rule, transition, value, notified in rows:
        # why: a resolution without a value is that of a disabled rule's alert (an evaluation
        # resolves only on data); "resolved at no data" would read as a feed that stopped
        if transition == "resolved" and value is None:
            happened = "resolved (the rule is disabled)"
        else:
            happened = f"{transition} at {'no data' if value is None else _cell(value)}"
        click.echo(f"alert {alert_id} {rule}: {happened}{' (notified)' if notified else ''}")
    click.echo(f"{len(rows)} transitions")


# -- risk ------------------------------------------------------------------------------------------


@click.group(name="risk")
def risk_group() -> None:
    """Pre-trade risk limits and kill switches: show, set, kill, unkill."""


@risk_group.command(name="show")
@click.option("--strategy", default=None, help="Only this strategy.")
@click.pass_obj
def show_risk(settings: Settings, strategy: str | None) -> None:
    """List the risk limits (empty exchange or symbol: every one), then the newest 20 risk events,
    newest first."""
    limits = ["strategy", "exchange", "symbol", "limit_asset", "max_order_notional", "max_position_notional",
              "max_open_orders", "max_daily_loss", "kill_switch", "channels"]  # fmt: skip
    events = ["risk_event_id", "occurred_at", "strategy", "exchange", "symbol", "order_id", "reason"]
    with _connect(settings) as conn:
        if strategy is not None:
            # why: a misspelt name would print "no risk limits" and "no risk events", which reads
            # as a strategy trading without limits. trading.strategies, not internal.find_strategy:
            # readonly (people, dashboards) reads it, scoped by row-level security, and may not
            # call internal functions
            found = conn.execute(
                "select exists (select from trading.strategies s where s.name = %s)", (strategy,)
            ).fetchone()
            if not (found and found[0]):
                raise click.ClickException(
                    f'strategy "{strategy}" does not exist\nhint: Create it with trading.create_strategy.'
                )
        _show(
            conn,
            "risk_limit_list",
            limits,
            where={"strategy": strategy},
            order_by="limit_id",
            empty="no risk limits",
        )
        click.echo("")
        _show(
            conn,
            "risk_event_list",
            events,
            where={"strategy": strategy},
            order_by="risk_event_id",
            descending=True,
            limit=20,
            empty="no risk events",
        )


def _scope_options(command: Any) -> Any:
    command = click.option("--symbol", default=None, help="Only this instrument (with --exchange).")(command)
    return click.option("--exchange", default=None, help="Only orders on this exchange.")(command)


@risk_group.command(name="set")
@click.argument("strategy")
@_scope_options
@click.option(
    "--limit-asset",
    default=None,
    help="The asset the notional and loss limits are in, e.g. USDT ('' for each instrument's quote asset).",
)
@click.option("--max-order-notional", type=DECIMAL, default=None, help="Per order, limit asset (0 removes).")
@click.option("--max-position-notional", type=DECIMAL, default=None, help="Positions in scope (0 removes).")
@click.option("--max-open-orders", type=INTEGER_COUNT, default=None, help="Working orders (0 removes).")
@click.option("--max-daily-loss", type=DECIMAL, default=None, help="Realized loss today, UTC (0 removes).")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    type=CHANNELS,
    help="Notify breaches here (repeatable; replaces the channels; none given: kept, email for a new scope).",
)
@click.pass_obj
def set_risk(
    settings: Settings,
    strategy: str,
    exchange: str | None,
    symbol: str | None,
    max_order_notional: Decimal | None,
    max_position_notional: Decimal | None,
    max_open_orders: int | None,
    max_daily_loss: Decimal | None,
    channels: tuple[str, ...],
    limit_asset: str | None,
) -> None:
    """Set STRATEGY's limits (a limit not given keeps its value; 0 removes it). Amounts are in
    --limit-asset, converted at market prices; without one, in each instrument's quote asset, adding
    up only positions and losses in the order's quote asset."""
    with _connect(settings) as conn:
        _call(
            conn,
            "monitor.set_risk_limit",
            strategy=strategy,
            exchange=exchange,
            symbol=symbol,
            max_order_notional=max_order_notional,
            max_position_notional=max_position_notional,
            max_open_orders=max_open_orders,
            max_daily_loss=max_daily_loss,
            channels=list(channels) or None,
            limit_asset=limit_asset,
        )
    click.echo(f"risk limits of {strategy} set")


def _kill_switch(
    settings: Settings,
    strategy: str,
    enabled: bool,
    exchange: str | None,
    symbol: str | None,
    reason: str | None = None,
) -> None:
    scope = {"exchange": exchange, "symbol": symbol}
    with _connect(settings) as conn:
        _call(conn, "monitor.set_kill_switch", strategy=strategy, enabled=enabled, **scope, reason=reason)
    # why the scope: "every new order is rejected" after `kill --exchange okx` told the operator
    # that the whole strategy had stopped while it went on trading everywhere else
    named = "/".join(name for name in scope.values() if name is not None)
    if not named:
        click.echo(f"kill switch of {strategy} {'on: every new order is rejected' if enabled else 'off'}")
    elif enabled:
        click.echo(f"kill switch of {strategy} for {named} on: every new order on {named} is rejected")
    else:
        click.echo(f"kill switch of {strategy} for {named} off")


@risk_group.command(name="kill")
@click.argument("strategy")
@_scope_options
@click.option("--reason", default=None, help="Why (in the risk event and its notification).")
@click.pass_obj
def kill(
    settings: Settings, strategy: str, exchange: str | None, symbol: str | None, reason: str | None
) -> None:
    """Turn STRATEGY's kill switch on: every new order is stored as rejected."""
    _kill_switch(settings, strategy, True, exchange, symbol, reason=reason)


@risk_group.command(name="unkill")
@click.argument("strategy")
@_scope_options
@click.pass_obj
def unkill(settings: Settings, strategy: str, exchange: str | None, symbol: str | None) -> None:
    """Turn STRATEGY's kill switch off."""
    _kill_switch(settings, strategy, False, exchange, symbol)


# -- metrics ---------------------------------------------------------------------------------------


@click.group(name="metrics")
def metrics_group() -> None:
    """Metrics: collect, show."""


@metrics_group.command(name="collect")
@click.pass_obj
def collect(settings: Settings) -> None:
    """Collect every metric now (pg_cron does it every minute)."""
    with _connect(settings) as conn:
        count = _call(conn, "monitor.collect_metrics")
    click.echo(f"recorded {count} metric values")


def _reads_metric_catalog(conn: psycopg.Connection[Any]) -> bool:
    """Whether the session may read monitor.metric_catalog (private: the owner's, not readonly's)."""
    row = conn.execute("select has_table_privilege('monitor.metric_catalog', 'select')").fetchone()
    return bool(row and row[0])


@metrics_group.command(name="show")
@click.option("--name", default=None, help="Only this metric.")
@click.pass_obj
def show_metrics(settings: Settings, name: str | None) -> None:
    """Show the newest value of every metric series of the last hour."""
    empty = (
        "no metrics in the last hour (spreadedge metrics collect records them)"
        if name is None
        else f"no value of {name} in the last hour"
    )
    with _connect(settings) as conn:
        # why the privilege test: the catalog is private to the owner; a readonly session cannot
        # tell an unknown name from a quiet one and gets the empty result
        if name is not None and _reads_metric_catalog(conn):
            row = conn.execute(
                "select c.category from monitor.metric_catalog c where c.name = %s", (name,)
            ).fetchone()
            if row is None:
                # why: a misspelt name would read as a metric with no recent value
                raise click.ClickException(
                    f'metric "{name}" does not exist\nhint: monitor.metric_catalog lists the metrics; '
                    "spreadedge metrics show (without --name) shows every recent one"
                )
            recorder = "monitor.record_metric" if row[0] == "custom" else "spreadedge metrics collect"
            empty = f"no value of {name} in the last hour ({recorder} records it)"
        _show(
            conn,
            "latest_metrics",
            ["name", "labels", "value", "unit", "recorded_at"],
            where={"name": name},
            order_by="name,labels",
            empty=empty,
        )


# -- notify ----------------------------------------------------------------------------------------


@click.group(name="notify")
def notify_group() -> None:
    """Deliver the notification outbox."""


@notify_group.command(name="worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option(
    "--poll",
    "poll_seconds",
    type=click.FloatRange(min=0.1),
    callback=_finite_seconds,
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest sleep between checks, in seconds.",
)
@click.pass_obj
def worker(settings: Settings, once: bool, poll_seconds: float) -> None:
    """Deliver notifications by the channels configured in [notify] (several workers are safe).

    Runs until interrupted, woken by NOTIFY when notifications are queued. A failed attempt is
    retried with backoff, and after max_attempts the message is dead (the dead letter). A refusal
    no retry would change is dead at once, its last_error ending "(refused for good: not
    retried)": an HTTP 400, 401, 403, 404, 405, 410, 413, 414, 415, 422, 431, 301 or 308 (a
    deleted webhook, a revoked token), or an SMTP 5xx to the login, MAIL FROM, DATA or every
    recipient. See monitor.notification_list; once the cause is fixed, requeue with
    monitor.requeue_notification.
    """
    from spreadedge.notify import Worker, configured_channels
    from spreadedge.notify.channels import ChannelSettingsError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        channels = configured_channels(settings.notify)
    except ChannelSettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    if not channels:
        raise click.ClickException("no channel is configured: see [notify] in spreadedge.toml.example")
    with Worker(db.conninfo(settings), settings.notify, channels) as delivery:
        if once:
            delivery.drain()
            done = delivery.outcomes
            click.echo(
                f"delivered {done['delivered']}, failed {done['failed'] + done['dead']}"
                f" ({done['dead']} to the dead letter)"
            )
            # why: a cron or CI job running --once must see that messages did not go out
            if done["failed"] or done["dead"]:
                raise SystemExit(1)
            return
        try:
            delivery.run(poll_seconds=poll_seconds)
        except KeyboardInterrupt:
            click.echo("stopped")
