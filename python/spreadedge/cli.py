"""The ``spreadedge`` command: one click group, the settings as its context object.

Add a command with ``@main.command()`` (or a group with ``@main.group()``) taking
``@click.pass_obj`` settings. The errors in ``USER_ERRORS`` become a clean message and exit
status 1 in every command, with no traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from spreadedge import connection_limits, db, deadline, errors, interrupts, pgclients
from spreadedge.cli_monitor import (
    DECIMAL,
    alerts_group,
    check_interval,
    metrics_group,
    notify_group,
    risk_group,
)
from spreadedge.cli_ops import COMMANDS as OPS_COMMANDS
from spreadedge.cli_ops import GivenPath, finish_restore
from spreadedge.cli_security import keys_group, users_group
from spreadedge.cli_serve import serve
from spreadedge.cluster import DATABASE, PG_BINDIR, STOP_PATIENCE, ClusterError, default_cluster
from spreadedge.ingest import DEFAULT_BATCH_ROWS, KINDS, IngestError
from spreadedge.masterkey import MasterKeyError
from spreadedge.ops import OpsError
from spreadedge.pnl import MOMENT
from spreadedge.settings import Settings, SettingsError, load_settings

USER_ERRORS: tuple[type[Exception], ...] = (
    ClusterError,
    SettingsError,
    MasterKeyError,
    IngestError,
    OpsError,
    errors.SpreadedgeError,
)
# psql and pgcli get every argument, --help included.
PASS_THROUGH = {"ignore_unknown_options": True, "allow_interspersed_args": False, "help_option_names": []}


# invalid_schema_name, undefined_table; why not undefined_function (42883): PostgreSQL also
# raises it for arguments of the wrong type (a number beyond bigint), which is no missing migration
# schema, table, column or function missing: 42703 and 42883 are what code newer than the
# database meets (a column or argument a later migration or functions/ added)
_NOT_MIGRATED = frozenset({"3F000", "42P01", "42703", "42883"})


class _Group(click.Group):
    """A click group that reports USER_ERRORS as a message rather than a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            if ctx.parent is not None:
                raise  # the top group reports it, once
            _die_of_interrupt(exc)
        except USER_ERRORS as exc:
            raise click.ClickException(_describe(exc)) from exc
        except UnicodeEncodeError as exc:
            if exc.reason != "surrogates not allowed":
                raise
            # why: under a locale that is not UTF-8 (LC_ALL=C with Python's coercion off), Python
            # reads a non-ASCII argument (a strategy's name) as lone surrogates, which no database
            # text can hold: psycopg's encoding of it ended the command with a traceback
            raise click.ClickException(
                "an argument or environment variable holds bytes that are not text in this locale's "
                f"encoding ({sys.getfilesystemencoding()}): run spreadedge under a UTF-8 locale "
                "(e.g. LC_ALL=C.UTF-8)"
            ) from exc
        except psycopg.Error as exc:
            translated = errors.translate(exc)
            if isinstance(translated, errors.SpreadedgeError):
                raise click.ClickException(_describe(translated)) from exc
            if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
                # why: no SQLSTATE means libpq could not connect (refused, no such host, a wrong
                # password or database) or lost the connection: the operator's to fix, so its
                # message, never a traceback, and never the password of the URL
                settings = ctx.find_object(Settings)
                url = settings.database_url if settings is not None else None
                message = str(exc).strip()
                message = db.redact(message, url) if url else message
                limit = connection_limits.refusal(exc)
                if limit is not None:
                    # why: "sorry, too many clients already" told no operator what to do about it
                    message = f"{message}\nhint: {limit}; {connection_limits.HINT}"
                raise click.ClickException(message) from exc
            if exc.sqlstate in _NOT_MIGRATED:
                # why: a schema, table or function of spreadedge missing is a database that was
                # never migrated (or migrated by older code), which the operator fixes in one step
                raise click.ClickException(
                    f"{exc.diag.message_primary}: this database is not migrated, or not up to date "
                    "with this code\nhint: run spreadedge migrate (with the same --database-url)"
                ) from exc
            if exc.sqlstate == "P0001":
                # why: a plain RAISE EXCEPTION of an extension's PL/pgSQL (pg_partman's maintenance
                # and partition functions): its message is the operator's information, the traceback
                # is not (the project's own errors all have project SQLSTATEs)
                hint = exc.diag.message_hint
                message = exc.diag.message_primary or "the database raised an error"
                raise click.ClickException(f"{message}\nhint: {hint}" if hint else message) from exc
            if exc.sqlstate == "42501":
                # why: a role without the privilege (readonly running a write, a login role not
                # granted spreadedge_owner) is the operator's to fix: which role, not a traceback
                raise click.ClickException(
                    f"{exc.diag.message_primary}\nhint: connect as a role that may do this (the database "
                    "owner, or a member of spreadedge_owner or the role the function is granted to)"
                ) from exc
            if isinstance(exc, psycopg.DataError):
                # a value PostgreSQL's own input refuses (an interval option that is not one, a
                # number beyond numeric): the caller's mistake, so a message, not a traceback; only
                # the primary message, as the context may quote a parameter's value
                raise click.ClickException(exc.diag.message_primary or "invalid value") from exc
            if exc.sqlstate == "25006":
                # why: a database that refuses writes (DATABASE_URL naming a hot standby, or
                # default_transaction_read_only on) is the operator's to fix: where to connect
                raise click.ClickException(
                    f"{exc.diag.message_primary}\nhint: this database is read-only (a standby, or "
                    "default_transaction_read_only is on): connect to the primary"
                ) from exc
            if isinstance(exc, psycopg.OperationalError):
                # why: a statement the server cancelled (statement_timeout, lock_timeout, an
                # administrator), a server shut down under the command, exhausted resources, a
                # deadlock: conditions of the server, not of the code, so a message, not a traceback
                raise click.ClickException(db.server_message(exc)) from exc
            raise


def _die_of_interrupt(exc: BaseException | None = None) -> None:
    """Say that Ctrl-C (or SIGTERM: ``exc`` an interrupts.Terminated) stopped the command, then end
    the process by that signal itself (status 130, or 143 for SIGTERM).

    why not click's "Aborted!" and status 1: a shell waiting for a command that exits normally
    after Ctrl-C takes the interrupt as handled, so `for f in *.csv; do spreadedge ingest ticks
    "$f"; done` went on with the next file after every Ctrl-C; a command ended by SIGINT stops the
    loop (and shows status 130), as any program that does not catch it does. By the time the
    interrupt reaches here, every ``with`` of the command has closed its connection, so the
    transaction in progress is rolled back and nothing half-written remains. A server that did
    not answer the cancel (psycopg gives the connection up 5 to 10 s after the Ctrl-C) is said
    to have not answered: a commit it had already received may still be carried out. A commit
    that waited for a synchronous standby is committed already: the cancel ends only its wait, and
    that is said (see deadline.committed_unconfirmed).
    """
    if deadline.committed_unconfirmed():
        # why first: the cancel ended a commit's wait for a synchronous standby, and PostgreSQL had
        # committed the transaction before that wait began; nothing of it is rolled back
        message = (
            "interrupted while the commit waited for a synchronous standby (synchronous_standby_names):"
            " the transaction is committed on the database server, but no synchronous standby has"
            " confirmed it, so a failover before one does could lose it; see spreadedge health"
        )
    elif deadline.interrupted_unanswered():
        # why: a server that stopped answering (a stalled backend, a frozen host) never ends the
        # statement psycopg asks it to cancel; psycopg gave the connection up (5 to 10 s), and a
        # commit already sent may still be carried out when the server runs again
        message = (
            "interrupted: the database server did not answer, so the connection was closed; the"
            " transaction in progress is rolled back unless its commit had already reached the server"
        )
    else:
        message = "interrupted: any transaction in progress was rolled back; what was committed before stays"
    signum = signal.SIGINT
    if isinstance(exc, interrupts.Terminated):
        # why its own word and signal: a service manager (or kill, timeout) stopped the command,
        # not a person at its terminal, and it judges the stop by the status (143)
        signum = signal.SIGTERM
        message = message.replace("interrupted", "terminated by SIGTERM", 1)
    # why suppressed: output to a pipe closed meanwhile (| head) must not keep the process alive
    with contextlib.suppress(OSError):
        click.echo(f"\n{message}", err=True)
        sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # should the signal not end the process at once


def _quiet_cancel_warnings(record: logging.LogRecord) -> bool:
    """Leave out psycopg's warnings about the cancel of a Ctrl-C (its ``query cancellation ...``
    and ``query not terminated after cancellation ...``) and about the rollback of a connection
    closed while its statement still ran (``error ignored in rollback ...``: another command is
    already in progress): the interrupt's own line, or the command's error, says what became of
    the transaction (see _die_of_interrupt).

    why: with no logging set up they reached the terminal as bare lines of psycopg's own (the
    rollback's in one Ctrl-C of a blocked migrate out of many)
    """
    return not (
        isinstance(record.msg, str)
        and record.msg.startswith(("query cancellation", "query not terminated", "error ignored in rollback"))
    )


def _describe(exc: Exception) -> str:
    """The error's message, with the server's hint on a second line when there is one."""
    hint = getattr(exc, "hint", None)
    return f"{exc}\nhint: {hint}" if hint else str(exc)


@click.group(cls=_Group)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    default=None,
    metavar="URL",
    help="Use this database instead of the embedded cluster under .spreadedge/.",
)
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """spreadedge: the PostgreSQL trading database of CryptoSpreadEdge.

    Without --database-url (or DATABASE_URL) every command uses the embedded cluster,
    created and started on demand under .spreadedge/.
    """
    logging.getLogger("psycopg").addFilter(_quiet_cancel_warnings)
    restore_sigterm = interrupts.terminate_as_interrupt()
    if restore_sigterm is not None:
        ctx.call_on_close(restore_sigterm)
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.obj = settings.with_database_url(database_url or None)


# -- db: the embedded cluster ---------------------------------------------------------------


@main.group(name="db", cls=_Group)
def db_group() -> None:
    """Manage the embedded cluster under .spreadedge/."""


@db_group.command()
@click.pass_obj
def start(settings: Settings) -> None:
    """Create the embedded cluster if needed and start it."""
    cluster = default_cluster(settings)
    db.check_new_cluster(settings, cluster)
    started = cluster.start()
    state = "started" if started else "already running"
    click.echo(f"embedded cluster {state} on port {cluster.port} ({cluster.data_dir})")
    for job, database, host, port in cluster.repointed_cron_jobs:
        # why the database: a second deployment's jobs (cron.schedule_in_database) are pointed too
        of = "" if database == DATABASE else f" of database {database}"
        click.echo(f"pg_cron job {job}{of} connected to host {host} port {port}: pointed at this server")
    finish_restore(settings, cluster)


@db_group.command()
@click.option(
    "--immediate",
    is_flag=True,
    help="Kill the server's processes without a checkpoint (the next start recovers from the WAL, "
    "as after a crash): for a server whose fast shutdown a session holds.",
)
@click.option(
    "--timeout",
    # why the maximum: a number too large for a float (400 digits) ended the command with an
    # OverflowError traceback after the shutdown had begun
    type=click.IntRange(min=1, max=86400),
    default=STOP_PATIENCE,
    show_default=True,
    help="Seconds to wait for the server to shut down before saying which processes hold it.",
)
@click.pass_obj
def stop(settings: Settings, immediate: bool, timeout: int) -> None:
    """Stop the embedded cluster: a fast shutdown ends every session and writes a checkpoint."""
    stopped = default_cluster(settings).stop(immediate=immediate, timeout=timeout)
    if not stopped:
        click.echo("embedded cluster was not running")
    elif immediate:
        click.echo("embedded cluster stopped (immediate shutdown: the next start recovers from the WAL)")
    else:
        click.echo("embedded cluster stopped")


@db_group.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Show whether the embedded cluster exists and runs, and where."""
    cluster = default_cluster(settings)
    state = cluster.status()
    if not state.initialized:
        summary = "not created (`spreadedge db start` creates it)"
    elif state.running:
        summary = f"running (pid {state.pid})"
    else:
        summary = "stopped"
    click.echo(f"embedded cluster: {summary}")
    click.echo(f"  port:       {state.port}")
    click.echo(f"  data dir:   {state.data_dir}")
    click.echo(f"  socket dir: {state.socket_dir}")
    click.echo(f"  url:        {cluster.url()}")
    if state.running and state.port != cluster.port:
        click.echo(
            f"note: SPREADEDGE_PORT is {cluster.port}, so commands refuse this cluster until "
            "`spreadedge db stop` and start it again on that port"
        )
    if settings.database_url:
        click.echo("note: DATABASE_URL is set, so commands use that database, not this cluster")


@db_group.command()
@click.pass_obj
def url(settings: Settings) -> None:
    """Print the connection URL commands use (DATABASE_URL, else the embedded cluster's), its
    password and SSL key passphrase shown as ***."""
    if not settings.database_url:
        default_cluster(settings).check_port()  # a URL with another port would not connect
    url = db.conninfo(settings, start=False)
    # why: what is printed ends up in terminals, logs and CI output; the password is in DATABASE_URL
    click.echo(db.redact(url, url))


@db_group.command()
@click.confirmation_option(prompt="Delete the embedded cluster and all its data?")
@click.pass_obj
def destroy(settings: Settings) -> None:
    """Stop the embedded cluster and delete it with all its data."""
    cluster = default_cluster(settings)
    if cluster.destroy():
        click.echo("embedded cluster destroyed")
    else:
        click.echo(f"no embedded cluster in {cluster.home}: nothing to destroy")


# -- interactive clients --------------------------------------------------------------------


@main.command(context_settings=PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def psql(settings: Settings, args: tuple[str, ...]) -> None:
    """Open psql on the database; ARGS go to psql as they are."""
    program = PG_BINDIR / "psql"
    url = db.conninfo(settings)
    # why: psql loads the system's libpq (PostgreSQL 15's), which ignores the variables of the
    # parameters it does not know (require_auth, sslcertmode): it connected without them
    refusal = pgclients.unsupported(conninfo_to_dict(url), "psql")
    if refusal is not None:
        raise click.ClickException(refusal)
    _exec(program if program.exists() else Path("psql"), url, args)


@main.command(context_settings=PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def pgcli(settings: Settings, args: tuple[str, ...]) -> None:
    """Open pgcli on the database; ARGS go to pgcli as they are."""
    _exec(Path(sys.executable).parent / "pgcli", db.conninfo(settings), args)


def _exec(program: Path, url: str, args: tuple[str, ...]) -> None:
    dbname, env = client_connection(url)
    argv = [program.name, *(["--dbname", dbname] if dbname else []), *args]
    try:
        if program.is_absolute():
            os.execve(program, argv, env)
        os.execvpe(str(program), argv, env)
    except OSError as exc:
        raise click.ClickException(f"cannot run {program}: {exc.strerror}") from exc


def client_connection(url: str) -> tuple[str | None, dict[str, str]]:
    """The ``--dbname`` (None: none) and the environment to start psql or pgcli with on ``url``.

    The connection goes in libpq's environment variables (PGHOST, PGPORT, ...), so that a database
    the caller names (``spreadedge psql -d postgres``) is looked for on the same server: a
    ``--dbname`` URL would be replaced whole by the caller's, and the client would go to the
    default server (port 5432). A parameter without a variable keeps the URL in ``--dbname``.
    Either way the password travels in PGPASSWORD: a command line is readable by every user of
    the machine (ps, /proc/PID/cmdline), the environment only by its own. The session's audit
    actor is the command's (db.cli_actor), added to the connection's options.
    """
    params = {key: str(value) for key, value in conninfo_to_dict(url).items()}
    variables = {
        option.keyword.decode(): option.envvar.decode()
        for option in pq.Conninfo.get_defaults()
        if option.envvar is not None
    }
    env = dict(os.environ)
    if "password" in params:
        env["PGPASSWORD"] = params.pop("password")
    # why: every other command records who acted (spreadedge.actor, cli:<login name>) in the
    # audit log; a person's writes in psql or pgcli were logged with no actor. The server reads
    # -c options with backslash escapes (a space in a name would end the value)
    actor = db.cli_actor().replace("\\", "\\\\").replace(" ", "\\ ")
    params["options"] = " ".join(
        part
        for part in (params.get("options") or env.get("PGOPTIONS"), f"-c spreadedge.actor={actor}")
        if part
    )
    if not set(params) <= set(variables):
        # why refused: a secret without a variable (sslpassword, the SSL key's passphrase) would
        # travel in the --dbname URL, on a command line every user of the machine can read
        exposed = sorted(set(params) & set(db.SECRET_KEYWORDS) - set(variables))
        if exposed:
            raise click.ClickException(
                f"DATABASE_URL holds {', '.join(exposed)}, which psql and pgcli could only be given on "
                "their command line, where every user of this machine can read it; use a key without "
                "a passphrase for them, or run them yourself with the passphrase typed at their prompt"
            )
        return make_conninfo(**params), env
    env.update({variables[key]: value for key, value in params.items()})
    return None, env


# -- migrations -----------------------------------------------------------------------------


@main.command()
@click.option(
    "--render-only",
    type=GivenPath(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Write the rendered migrations to DIR and touch no database.",
)
@click.option("--status", "show_status", is_flag=True, help="List applied and pending migrations.")
@click.pass_obj
def migrate(settings: Settings, render_only: Path | None, show_status: bool) -> None:
    """Apply pending migrations, then re-apply functions/."""
    from spreadedge import migrate as migrations  # imported here: only this command needs it

    if render_only is not None and show_status:
        # why: --render-only touches no database and --status reads one; doing one of them
        # silently (the render) left the caller believing they had seen the status
        raise click.UsageError(
            "--render-only and --status cannot be used together: run them one after the other"
        )
    try:
        # before the embedded cluster starts: outside the project it would be created there
        migrations.check_project(settings)
        # why: --render-only touches no database, so neither DATABASE_URL nor the cluster matters
        url = "" if render_only is not None else db.conninfo(settings)
        migrations.run(settings, url, render_only=render_only, status=show_status, echo=click.echo)
    except migrations.MigrationError as exc:
        raise click.ClickException(str(exc)) from exc


# -- trading ---------------------------------------------------------------------------------


@main.command()
@click.option("--strategy", default=None, help="Only this strategy (default: all).")
@click.option(
    "--since",
    type=MOMENT,
    default=None,
    help="Start of the period (inclusive): an ISO 8601 date or time, UTC unless it has an offset.",
)
@click.option(
    "--until",
    type=MOMENT,
    default=None,
    help="End of the period (exclusive): an ISO 8601 date or time, UTC unless it has an offset.",
)
@click.option(
    "--by",
    "group_by",
    default="strategy",
    show_default=True,
    help="Comma-separated grouping: strategy, exchange, instrument, day, or total.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (exact decimals as strings).")
@click.pass_obj
def pnl(
    settings: Settings,
    strategy: str | None,
    since: datetime | None,
    until: datetime | None,
    group_by: str,
    as_json: bool,
) -> None:
    """Show PnL from trading.pnl_summary: trades, volume, fees, gross, funding, net and unrealized.

    The unrealized PnL is that of the positions open now: shown when the period reaches now.
    """
    from spreadedge import pnl as report

    with db.connect(settings, autocommit=True) as conn:
        rows = report.pnl_rows(conn, strategy=strategy, since=since, until=until, group_by=group_by)
    click.echo(report.as_json(rows) if as_json else report.as_table(rows))


@main.command()
@click.option(
    "--orders",
    default=3000,
    show_default=True,
    type=click.IntRange(10, 1_000_000),
    help="How many orders to place.",
)
@click.pass_obj
def demo(settings: Settings, orders: int) -> None:
    """Load a realistic demo day (yesterday, UTC): six exchanges, four strategies, fills, funding.

    A database holds one demo day: once it is loaded, running the demo again (on any later day,
    with any --orders) writes nothing and says which day is loaded.
    """
    from spreadedge.demo import DemoRun, loaded_demo_day, run_demo

    run: DemoRun | None = None
    with db.connect(settings, actor="demo") as conn:
        # why look first: run_demo looks again under its lock, but no progress bar should show for a
        # demo that is already there
        loaded = loaded_demo_day(conn)
        if loaded is None:
            with click.progressbar(length=orders, label="demo day", show_pos=True) as bar:
                run = run_demo(conn, orders=orders, progress=bar.update)
    if run is None or run.already_loaded:
        day = loaded if run is None else run.day
        click.echo(f"the demo is already loaded (day {day:%Y-%m-%d}): nothing written")
        return
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(run.written.items()))
    click.echo(f"demo day {run.day:%Y-%m-%d} loaded: {summary}")


# -- market data -----------------------------------------------------------------------------


@main.command()
@click.argument("kind", type=click.Choice(KINDS))
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--strict", is_flag=True, help="Load nothing at all if any row is rejected.")
@click.option(
    "--batch-rows",
    default=DEFAULT_BATCH_ROWS,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="Rows per transaction.",
)
@click.pass_obj
def ingest(settings: Settings, kind: str, files: tuple[Path, ...], strict: bool, batch_rows: int) -> None:
    """Load market data FILES (CSV with a header, or JSON Lines; .gz or .zst compressed too) into
    market.KIND (quotes, ticks or candles).

    Valid rows load in batches of one transaction each; rows that fail validation go to
    FILE.rejects.csv with their line number and the reason. Exits with status 1 when --strict
    refused the load.
    """
    from spreadedge import ingest as market_ingest

    total = sum(path.stat().st_size for path in files)
    with (
        db.connect(settings, actor="ingest", autocommit=True) as conn,
        click.progressbar(length=total, label=f"ingest {kind}", show_percent=True) as bar,
    ):
        summary = market_ingest.ingest(
            conn, kind, list(files), strict=strict, batch_rows=batch_rows, progress=bar.update
        )
    click.echo(market_ingest.describe(summary, strict=strict))
    if strict and summary.rejected:
        raise SystemExit(1)


@main.command()
@click.option("--symbol", default=None, help="Only this asset pair, written BASE/QUOTE (e.g. BTC/USDT).")
@click.option(
    "--min-bps", type=DECIMAL, default=None, help="Only spreads at least this many bps net of taker fees."
)
@click.option(
    "--max-age",
    metavar="INTERVAL",
    default=None,
    help="Only quotes younger than this count (e.g. '30 seconds'): an older best bid or ask is not a "
    "price now. Default: every instrument's newest quote.",
)
@click.pass_obj
def spreads(settings: Settings, symbol: str | None, min_bps: Decimal | None, max_age: str | None) -> None:
    """Show current cross-exchange spreads from market.current_spreads, best net spread first."""
    from spreadedge import spreads as report

    with db.connect(settings, autocommit=True) as conn:
        if max_age is not None:
            check_interval(conn, max_age, "max_age", positive=True)
        rows = report.spread_rows(conn, symbol=symbol, min_bps=min_bps, max_age=max_age)
        if not rows and symbol is not None and "/" in symbol:
            # why: "no current spreads" would hide a pair nothing trades (a typo, USD for USDT)
            report.check_pair(conn, symbol)
    click.echo(report.as_table(rows, symbol=symbol))


# -- users and keys: spreadedge.cli_security ------------------------------------------------------

main.add_command(users_group)
main.add_command(keys_group)
main.add_command(serve)

# -- operations: spreadedge.cli_ops (tune, partitions, cleanup, backup, restore, health) ------------

for _command in OPS_COMMANDS:
    main.add_command(_command)
# -- monitoring: spreadedge.cli_monitor -------------------------------------------------------

for _group in (alerts_group, risk_group, metrics_group, notify_group):
    main.add_command(_group)
