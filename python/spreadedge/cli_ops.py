"""Operations commands: ``spreadedge tune|partitions|cleanup|backup|restore|health``.

Each command is a thin driver of a ``spreadedge.ops`` module; nothing is created, dropped or
deleted without the command (and, where it destroys, a confirmation or ``--yes``) saying so.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from spreadedge import db, deadline, masterkey, sqlfiles, textable
from spreadedge.cli_monitor import finite_number
from spreadedge.cluster import Cluster, default_cluster
from spreadedge.ops import (
    OpsError,
    catalog,
    cleanup,
    health,
    invariants,
    logical,
    partitions,
    pgbackrest,
    tune,
)
from spreadedge.ops import schedule as backup_schedules
from spreadedge.pnl import iso_moment
from spreadedge.settings import COMPRESS_TYPES, Settings


def _connect(settings: Settings, actor: str = "ops") -> psycopg.Connection[Any]:
    return db.connect(settings, actor=actor, autocommit=True)


def _size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class GivenPath(click.Path):
    """click.Path that refuses an empty value.

    why: click reads '' as the path '' (the current directory), so `backup logical --out ''`
    wrote the dump where the command ran, and `backup init --repo-path ''` would have put the
    repository there
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value == "":
            self.fail("'' is not a path", param, ctx)
        return super().convert(value, param, ctx)


# -- tune --------------------------------------------------------------------------------------


@click.group(name="tune")
def tune_group() -> None:
    """Index advice from pg_stat_statements and hypopg, and applying it."""


# A number of tune report. why ASCII digits, not str.isdigit(): "²" is a digit to isdigit() that
# int() refuses (a traceback), and an Arabic-Indic one (U+0661) applied advice 1
_ADVICE_NUMBER = re.compile(r"[0-9]+")
_STATEMENTS_OPTION = click.option(
    "--statements",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many of the heaviest statements to examine.",
)
_MIN_SAVING_OPTION = click.option(
    "--min-saving",
    default="0.5",
    show_default=True,
    type=click.FloatRange(0.01, 0.99),
    callback=finite_number(),
    help="Least share of the estimated cost an index must cut.",
)
_GIN_TRIAL_OPTION = click.option(
    "--gin-trial-max-mb",
    default=64,
    show_default=True,
    # why the maximum: ops.index_advice takes an integer, and a larger number found no function to
    # call (42883), reported as a database that is not migrated
    type=click.IntRange(0, 2**31 - 1),
    help="Largest table (MB) a GIN candidate is built on for real, in a rolled-back transaction, to "
    "cost it; writers of that table wait while it builds. 0: no GIN advice.",
)


@tune_group.command(name="report")
@_STATEMENTS_OPTION
@_MIN_SAVING_OPTION
@_GIN_TRIAL_OPTION
@click.pass_obj
def tune_report(settings: Settings, statements: int, min_saving: float, gin_trial_max_mb: int) -> None:
    """Print ops.index_advice(): per heavy statement, the index that would cut its cost most."""
    with _connect(settings) as conn:
        items = tune.advice(conn, statements, Decimal(str(min_saving)), gin_trial_max_mb)
        hidden, grant = tune.hidden_statements(conn)
    # why: as a database owner without pg_read_all_stats, pg_stat_statements hid every other role's
    # statements (the applications', the API's) and the report said "no advice" as if it had
    # examined them
    if hidden:
        click.echo(
            f"note: {hidden} statements of other roles in this database were not examined: "
            "pg_stat_statements shows their text only to pg_read_all_stats; for advice on them, "
            f"ask a superuser to run: {grant}",
            err=True,
        )
    if not items:
        click.echo(
            "no advice: no heavy statement would get at least "
            f"{min_saving:.0%} cheaper with a single- or two-column index"
        )
        return
    for item in items:
        click.echo(f"[{item.advice}] {item.create_index}")
        click.echo(
            f"    saves {item.saving:.1%} of the estimated cost ({item.cost_before} -> {item.cost_after});"
            f" {item.calls} calls, {item.total_exec_ms} ms in total"
        )
        click.echo(f"    statement: {' '.join(item.statement.split())}")
    click.echo(
        "apply one with: spreadedge tune apply N, or with its index name (tune apply NAME), which still "
        "names the same advice once another one is built and the numbers move"
    )


@tune_group.command(name="apply")
@click.argument("advice")
@_STATEMENTS_OPTION
@_MIN_SAVING_OPTION
@_GIN_TRIAL_OPTION
@click.pass_obj
def tune_apply(
    settings: Settings, advice: str, statements: int, min_saving: float, gin_trial_max_mb: int
) -> None:
    """Build the index of ADVICE, a number of tune report or the index's name, without blocking
    writes: CREATE INDEX CONCURRENTLY (a partitioned table: each partition concurrently, then
    attached to the parent's index). The advice is computed again: give the options tune report
    was given, so a number means the same; once an index is built the others' numbers move up, a
    name does not. An invalid index of that name (an interrupted build) is dropped first; a build
    that leaves the index invalid fails (exit status 1)."""
    with _connect(settings) as conn:
        items = tune.advice(conn, statements, Decimal(str(min_saving)), gin_trial_max_mb)
        if _ADVICE_NUMBER.fullmatch(advice.strip()):
            number = int(advice)
            if not 1 <= number <= len(items):
                raise OpsError(f"there is no advice {number}: tune report lists {len(items)}")
            item = items[number - 1]
        else:
            item = tune.advice_named(conn, items, advice)
        steps = tune.build_statements(conn, item)
        click.echo(f"building: {item.create_index}")
        with click.progressbar(length=len(steps), label="index build", show_pos=True) as bar:
            tune.build(conn, item, steps, lambda statement: bar.update(1))
    click.echo(f"built the {item.index_method} index on {item.table_name} ({', '.join(item.columns)})")


@tune_group.command(name="drop-unused")
@click.option(
    "--include-schema-indexes",
    is_flag=True,
    help="Also indexes the schema created (default: only those tune apply built).",
)
@click.option(
    "--min-age",
    default="7d",
    show_default=True,
    metavar="AGE",
    help="Only indexes unused at least this long: since statistics were reset and since tune apply "
    "built them (12h, 7d, 2w).",
)
@click.option("--yes", is_flag=True, help="Drop without asking.")
@click.pass_obj
def tune_drop_unused(settings: Settings, include_schema_indexes: bool, min_age: str, yes: bool) -> None:
    """Drop indexes never scanned since statistics were reset (not unique, backing no constraint),
    unused for --min-age at least."""
    age = cleanup.parse_age(min_age, option="--min-age")
    with _connect(settings) as conn:
        found = tune.unused_indexes(conn, include_schema_indexes=include_schema_indexes, min_age=age)
        unused = [i for i in found if i.old_enough]
        for young in (i for i in found if not i.old_enough):
            click.echo(
                f"kept {young.schema_name}.{young.index_name}: unused only since {_when(young.unused_since)}"
                f" (statistics reset or built), less than {min_age}"
            )
        if not unused:
            click.echo("no unused index to drop")
            return
        click.echo(
            textable.render(
                ["index", "size", "definition"],
                [
                    [f"{i.schema_name}.{i.index_name}", _size(i.size_bytes), i.index_definition]
                    for i in unused
                ],
                [False, True, False],
            )
        )
        if not yes:
            click.confirm(f"Drop these {len(unused)} indexes?", abort=True)
        tune.run_statements(conn, [i.drop_statement for i in unused], lambda statement: click.echo(statement))
    click.echo(f"dropped {len(unused)} indexes")


# -- partitions ----------------------------------------------------------------------------------


@click.group(name="partitions")
def partitions_group() -> None:
    """Partition lifecycle with pg_partman: status, maintenance, default-partition repair."""


def _print_status(rows: list[partitions.PartitionStatus]) -> None:
    click.echo(
        textable.render(
            [
                "table",
                "pg_partman",
                "interval",
                "premake",
                "retention",
                "partitions",
                "oldest",
                "newest end",
                "default rows",
            ],
            [
                [
                    r.parent_table,
                    "yes" if r.registered else "NO",
                    r.partition_interval or "",
                    str(r.premake or ""),
                    r.retention or "keep all",
                    str(r.partitions),
                    _when(r.oldest_start),
                    _when(r.newest_end),
                    str(r.default_rows),
                ]
                for r in rows
            ],
            [False, False, False, True, False, True, False, False, True],
        )
    )


@partitions_group.command(name="status")
@click.pass_obj
def partitions_status(settings: Settings) -> None:
    """Each partitioned table: pg_partman settings, partitions, range, rows in its default partition."""
    with _connect(settings) as conn:
        _print_status(partitions.status(conn))


@partitions_group.command(name="maintain")
@click.pass_obj
def partitions_maintain(settings: Settings) -> None:
    """Apply premake and retention from the settings, then run pg_partman's maintenance (creates
    partitions ahead, drops those past retention) and delete the notifications, sessions and
    pg_cron runs that ended before their retention."""
    with _connect(settings) as conn:
        configured = partitions.configure(conn, settings.render)
        click.echo(f"settings applied to {len(configured)} tables; running pg_partman maintenance")
        partitions.run_maintenance(conn)
        _print_status(partitions.status(conn))


@partitions_group.command(name="repair")
@click.pass_obj
def partitions_repair(settings: Settings) -> None:
    """Move rows stranded in default partitions into proper partitions (created as needed)."""
    with _connect(settings) as conn:
        repaired = partitions.repair(conn)
    if not repaired:
        click.echo("every default partition is empty: nothing to repair")
    for table, rows in repaired:
        click.echo(f"{table}: moved {rows} rows out of the default partition")


# -- cleanup -------------------------------------------------------------------------------------


@click.command(name="cleanup")
@click.argument("target", type=click.Choice(cleanup.TARGETS))
@click.option("--older-than", required=True, metavar="AGE", help="Rows older than this go: 30d, 12h, 2w.")
@click.option("--dry-run", is_flag=True, help="Only show what would go (and, for orders, what stays).")
@click.option(
    "--batch-rows",
    default=10_000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Rows per delete transaction.",
)
@click.pass_obj
def cleanup_command(settings: Settings, target: str, older_than: str, dry_run: bool, batch_rows: int) -> None:
    """Remove old TARGET rows: whole partitions detached and dropped where all of it may go,
    batched deletes otherwise. Orders: only finished ones; never open orders, spread-trade legs or
    orders whose fills make a position still open. Notifications, sessions and cron_runs (pg_cron's
    runs, in the database it serves): only rows that ended before the cutoff (delivered or dead;
    revoked or expired; finished, each job's newest kept); the hourly maintenance deletes them too
    (retention_notifications, retention_sessions, retention_cron_runs). Ticks go by whole UTC
    minutes and candles by whole UTC days (the cutoff rounded down), so rebuilt candles stay whole."""
    age = cleanup.parse_age(older_than)
    with _connect(settings, actor="cleanup") as conn:
        at = cleanup.cutoff(conn, age, target)
        steps = cleanup.plan(conn, target, age, at)
        total = sum(step.row_count for step in steps if step.action != "keep")
        if dry_run or not steps:
            click.echo(
                textable.render(
                    ["action", "object", "rows"],
                    [[s.action, s.object_name, str(s.row_count)] for s in steps],
                    [False, False, True],
                )
                if steps
                else f"nothing older than {older_than} ({_when(at)}) to clean up in {target}"
            )
            if dry_run:
                click.echo(f"dry run: {total} rows older than {_when(at)} would go")
            return
        with click.progressbar(length=total, label=f"cleanup {target}", show_pos=True) as bar:
            outcome = cleanup.run(conn, target, age, at, batch_rows=batch_rows, progress=bar.update)
    click.echo(
        f"{target}: dropped {outcome.partitions_dropped} partitions ({outcome.rows_in_dropped_partitions}"
        f" rows), deleted {outcome.rows_deleted} rows"
    )


# -- backup --------------------------------------------------------------------------------------


@click.group(name="backup")
def backup_group() -> None:
    """Backups: pgBackRest (full, diff, incr, point in time) and pg_dump (logical)."""


@backup_group.command(name="init")
@click.option(
    "--compress-type",
    type=click.Choice(COMPRESS_TYPES),
    default=None,
    help="Compression (default: the [backup] setting, zst).",
)
@click.option(
    "--repo-path",
    type=GivenPath(file_okay=False, path_type=Path),
    default=None,
    help="Repository directory (default: the [backup] setting, backup/repo under the cluster home).",
)
@click.pass_obj
def backup_init(settings: Settings, compress_type: str | None, repo_path: Path | None) -> None:
    """Configure pgBackRest for the cluster: configuration file, stanza, archive_command
    (archive_mode on, restarting the embedded cluster when needed), and a check that WAL reaches
    the repository. With the passphrase variable set, the repository is encrypted. When it fails
    (a wrong passphrase for the repository), the configuration in place is left as it was."""
    backup_settings = settings.backup
    if compress_type is not None:
        backup_settings = replace(backup_settings, compress_type=compress_type)
    if repo_path is not None:
        backup_settings = replace(backup_settings, repo_path=repo_path.resolve())
    repo = replace(pgbackrest.repository(settings), settings=backup_settings)
    secret = pgbackrest.passphrase(backup_settings)
    with _connect(settings, actor="backup") as conn:
        pgbackrest.refuse_non_superuser(conn)
        server = pgbackrest.server_of(conn)

    def start_archiving() -> bool:
        with _connect(settings, actor="backup") as conn:
            must_restart = pgbackrest.enable_archiving(conn, repo)
        if not must_restart:
            return True
        if settings.database_url:
            return False
        click.echo("restarting the embedded cluster to turn WAL archiving on")
        cluster = default_cluster(settings)
        cluster.stop()
        cluster.start()
        return True

    if not pgbackrest.configure(repo, server, secret, start_archiving):
        raise OpsError(
            "archive_mode takes effect when the server restarts: restart it, "
            "then run spreadedge backup init again"
        )
    encrypted = (
        "encrypted (aes-256-cbc)" if secret else f"NOT encrypted (set {backup_settings.passphrase_env})"
    )
    click.echo(
        f"stanza {backup_settings.stanza} ready: repository {repo.repo_path}, "
        f"compress-type {backup_settings.compress_type}, {encrypted}; WAL archiving checked"
    )


def _physical(kind: str) -> Callable[[Settings], None]:
    def command(settings: Settings) -> None:
        repo = pgbackrest.repository(settings)
        with catalog.recorded_run(lambda: _connect(settings, "backup"), kind, repo.compress_type()) as result:
            with click.progressbar(length=100, label=f"backup {kind}") as bar:
                try:
                    taken = pgbackrest.backup(
                        repo, kind, lambda done: bar.update(max(0, int(done) - bar.pos))
                    )
                except OpsError as exc:
                    # why: with WAL archiving failing pgBackRest said only that a segment "was not
                    # archived before the 120000ms timeout", or that an info file could not be
                    # loaded, and nothing said that archiving had been failing meanwhile
                    raise OpsError(f"{exc}{_archiving_failure(settings)}") from exc
                bar.update(100 - bar.pos)
            result.label, result.size_bytes, result.repo_size_bytes = (
                taken.label,
                taken.size_bytes,
                taken.repo_size_bytes,
            )
        # why: pgBackRest makes a full backup when a diff or incr one has no full one to build on;
        # the output said "incr backup" of it
        if taken.type != kind:
            click.echo(f"pgBackRest made a {taken.type} backup instead of {kind}: it had nothing to build on")
        click.echo(
            f"{taken.type} backup {taken.label}: {_size(taken.size_bytes)} of data, "
            f"{_size(taken.repo_size_bytes)} in the repository"
        )
        _record_in_other_databases(settings, kind, repo.compress_type(), result)
        # why: pgBackRest expires old backups after every backup (retention_full, retention_diff)
        _mark_expired(settings, repo)

    command.__doc__ = {
        "full": "Take a full backup (every file of the cluster).",
        "diff": "Take a differential backup (what changed since the last full one; a full one when"
        " the repository has no full backup to build on).",
        "incr": "Take an incremental backup (what changed since the last backup of any type; a full"
        " one when the repository has no full backup to build on).",
    }[kind]
    return command


def _connect_to(settings: Settings) -> Callable[[str], psycopg.Connection[Any]]:
    """Connect as the command does to another database of the same server (autocommit)."""
    url = db.conninfo(settings)

    def connect(dbname: str) -> psycopg.Connection[Any]:
        # why _connect's way: behind a transaction pooler the actor set for the session stayed on
        # the server connection the pooler lent, for its other clients ('backup' in their audit)
        return _connect(settings.with_database_url(make_conninfo(url, dbname=dbname)), "backup")

    return connect


def _record_in_other_databases(
    settings: Settings, kind: str, compress_type: str, result: catalog.RunResult
) -> None:
    """Record a physical backup in the other spreadedge databases of the server (a second
    deployment's), which it holds too; a warning for each it cannot be recorded in (the backup
    succeeded, so the command does not fail for it)."""
    connect_to = _connect_to(settings)
    try:
        with _connect(settings, "backup") as conn:
            row = conn.execute("select pg_catalog.current_database()").fetchone()
        assert row is not None
        others = catalog.other_catalogs(lambda: _connect(settings, "backup"), connect_to)
    except psycopg.Error as exc:
        click.echo(
            f"warning: the backup is not recorded in the server's other databases: {catalog.reason(exc)}",
            err=True,
        )
        return
    for name, reason in others:
        if reason is None:
            try:
                with connect_to(name) as other:
                    catalog.record_taken(other, kind, compress_type, result, row[0])
            except psycopg.Error as exc:
                reason = catalog.reason(exc)
            else:
                click.echo(f"recorded in ops.backup_runs of database {name} too (the backup holds it)")
                continue
        click.echo(
            f"warning: the backup is not recorded in database {name}: {reason}; if it is a spreadedge"
            " database, its health's last_backup does not count it",
            err=True,
        )


def _archiving_failure(settings: Settings) -> str:
    """What a failed backup's error adds when the server's WAL archiving fails too (health's
    wal_archiving check, a WAL file waiting no longer than a backup waits for its WAL), else "";
    "" as well when the server cannot be asked."""
    try:
        with _connect(settings, "backup") as conn:
            ok, detail = health.wal_archiving(conn, pgbackrest.ARCHIVE_TIMEOUT)
    except psycopg.Error:
        return ""
    if ok:
        return ""
    return (
        f"\nno backup can succeed while WAL archiving fails (pgBackRest waits for the backup's WAL to reach"
        f" the repository): {detail}\nfix WAL archiving (spreadedge health: wal_archiving), then take the"
        " backup again"
    )


def _archiving_line(settings: Settings) -> str:
    """`backup list`'s line of the server's WAL archiving (health's wal_archiving check)."""
    try:
        with _connect(settings, "backup") as conn:
            ok, detail = health.wal_archiving(conn, pgbackrest.ARCHIVE_TIMEOUT)
    except psycopg.Error as exc:
        return f"WAL archiving not known: {exc.diag.message_primary or exc}"
    return f"WAL archiving {'ok' if ok else 'FAILING'}: {detail}"


def _mark_expired(settings: Settings, repo: pgbackrest.Repository) -> None:
    """Mark the runs of ops.backup_runs whose backups pgBackRest has expired, in this database and
    in the server's other spreadedge databases (which record its physical backups too); a warning
    when it cannot (the backup or expire itself succeeded, so the command does not fail for it)."""
    connect_to = _connect_to(settings)
    catalogs: list[tuple[str | None, Callable[[], psycopg.Connection[Any]]]] = [
        (None, lambda: _connect(settings, "backup"))
    ]
    try:
        others = catalog.other_catalogs(lambda: _connect(settings, "backup"), connect_to)
    except psycopg.Error:
        others = []  # this database's own marking below says why it cannot be reached
    catalogs += [(name, functools.partial(connect_to, name)) for name, reason in others if reason is None]
    for name, connect in catalogs:
        where = "ops.backup_runs" if name is None else f"ops.backup_runs of database {name}"
        try:
            marked = catalog.mark_expired(connect, lambda: [b.label for b in pgbackrest.info(repo)])
        except (OpsError, psycopg.Error) as exc:
            reason = exc.diag.message_primary if isinstance(exc, psycopg.Error) else None
            click.echo(
                f"warning: the runs of expired backups are not marked in {where}: {reason or exc}", err=True
            )
            continue
        if marked:
            click.echo(f"{where}: {marked} run(s) marked expired (pgBackRest no longer holds the backup)")


for _kind in pgbackrest.BACKUP_TYPES:
    backup_group.command(name=_kind)(click.pass_obj(_physical(_kind)))


@backup_group.command(name="logical")
@click.option("--schema-only", "mode", flag_value="schema", help="Only the schema (DDL).")
@click.option(
    "--data-only", "mode", flag_value="data", help="Only the data (restore it into the same schema)."
)
@click.option("--full", "mode", flag_value="full", default=True, help="Schema and data (the default).")
@click.option(
    "--out",
    "out_dir",
    type=GivenPath(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the dump (default: the [backup] dump_dir, backup/dumps under the cluster home).",
)
@click.option(
    "--compress-type",
    type=click.Choice(COMPRESS_TYPES),
    default=None,
    help="Compression (default: the [backup] setting).",
)
@click.pass_obj
def backup_logical(settings: Settings, mode: str, out_dir: Path | None, compress_type: str | None) -> None:
    """Dump the database with pg_dump (custom format), compressed; recorded in ops.backup_runs."""
    compress = compress_type or settings.backup.compress_type
    directory = out_dir or settings.backup.dump_dir or pgbackrest.repository(settings).work_dir / "dumps"
    url = db.conninfo(settings)
    dbname = str(conninfo_to_dict(url).get("dbname") or "postgres")
    path = logical.dump_path(directory, dbname, mode, compress)
    with catalog.recorded_run(lambda: _connect(settings, "backup"), f"logical_{mode}", compress) as result:
        with _connect(settings, "backup") as conn:
            row = conn.execute("select pg_database_size(current_database())").fetchone()
        result.label, result.size_bytes = path.name, int(row[0]) if row else None
        result.repo_size_bytes = logical.dump(
            url, path, mode, compress, on_table=lambda t: click.echo(f"  {t}")
        )
    click.echo(f"{mode} dump {path} ({_size(result.repo_size_bytes)})")


@backup_group.command(name="list")
@click.pass_obj
def backup_list(settings: Settings) -> None:
    """The repository's backups (pgBackRest info), whether the server's WAL archiving reaches it
    (health's wal_archiving) and the runs of ops.backup_runs."""
    repo = pgbackrest.repository(settings)
    if repo.configured:
        try:
            backups = pgbackrest.info(repo)
        except OpsError:
            # why: a repository that cannot be read is one WAL archiving cannot reach either
            click.echo(_archiving_line(settings))
            raise
        click.echo(f"pgBackRest stanza {repo.settings.stanza} ({repo.repo_path}):")
        click.echo(
            textable.render(
                ["label", "type", "started", "stopped", "size", "in repository", "WAL start", "WAL stop"],
                [
                    [
                        b.label,
                        b.type,
                        _when(b.started_at),
                        _when(b.stopped_at),
                        _size(b.size_bytes),
                        _size(b.repo_size_bytes),
                        b.wal_start,
                        b.wal_stop,
                    ]
                    for b in backups
                ],
                [False, False, False, False, True, True, False, False],
            )
            if backups
            else "  no backups yet"
        )
    else:
        click.echo("pgBackRest is not configured (spreadedge backup init)")
    click.echo(_archiving_line(settings))
    with _connect(settings) as conn:
        runs = catalog.runs(conn)
    click.echo("runs (ops.backup_runs):")
    click.echo(
        textable.render(
            [
                "run",
                "kind",
                "compress",
                "started",
                "finished",
                "status",
                "label",
                "size",
                "stored",
                "expired",
                "detail",
            ],
            [
                [
                    str(r[0]),
                    r[1],
                    r[2],
                    _when(r[3]),
                    _when(r[4]),
                    r[5],
                    r[6] or "",
                    _size(r[7]),
                    _size(r[8]),
                    _when(r[10]),
                    _first_reason(r[9]),
                ]
                for r in runs
            ],
            [True, False, False, False, False, False, False, True, True, False, False],
        )
        if runs
        else "  none"
    )


def _first_reason(detail: str | None) -> str:
    """A run's detail on one line: its first line, with the next when the first only introduces it.

    why: a pgBackRest failure's first line is "pgBackRest backup failed:", and list showed that alone
    for every failed run, never why it failed
    """
    lines = (detail or "").splitlines()
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"
    return lines[0] if lines else ""


@backup_group.command(name="verify")
@click.pass_obj
def backup_verify(settings: Settings) -> None:
    """Check every file of the repository (backups and WAL) against its checksum."""
    repo = pgbackrest.repository(settings)
    output = pgbackrest.verify(repo)
    click.echo(output.strip() or "verified")
    click.echo(f"repository {repo.repo_path}: verify passed")


@backup_group.command(name="expire")
@click.pass_obj
def backup_expire(settings: Settings) -> None:
    """Apply retention: expire full backups beyond retention_full (with the backups and WAL that
    depend on them) and differential backups beyond retention_diff. pgBackRest also does this
    after every backup; the runs of expired backups are marked expired in ops.backup_runs."""
    repo = pgbackrest.repository(settings)
    output = pgbackrest.expire(repo)
    click.echo(output.strip() or "nothing to expire")
    _mark_expired(settings, repo)


@backup_group.command(name="schedule")
@click.option(
    "--cron",
    "schedule",
    required=True,
    metavar="SCHEDULE",
    help='A cron schedule: five fields ("0 3 * * 0") or @daily, @weekly...',
)
@click.option(
    "--type",
    "kind",
    type=click.Choice(["full", "diff", "incr", "logical", "expire"]),
    default="full",
    show_default=True,
    help="What the entry runs.",
)
@click.option(
    "--file",
    "cron_file",
    type=GivenPath(dir_okay=False, path_type=Path),
    default=Path("/etc/cron.d/spreadedge-backup"),
    show_default=True,
    help="The cron file (cron.d format: with a user column).",
)
@click.option("--user", default="root", show_default=True, help="The user the entry runs as.")
@click.pass_obj
def backup_schedule(settings: Settings, schedule: str, kind: str, cron_file: Path, user: str) -> None:
    """Write (or replace) the cron entry that runs `spreadedge backup TYPE` on SCHEDULE."""
    schedule = backup_schedules.check_cron(schedule)
    user = backup_schedules.check_user(user)
    command = "logical --full" if kind == "logical" else kind
    program = Path(sys.executable).parent / "spreadedge"
    environment = " ".join(
        f"{name}={shlex.quote(value)}"
        for name, value in (
            ("SPREADEDGE_PROJECT_DIR", str(settings.project_dir)),
            ("SPREADEDGE_HOME", str(settings.home)),
            ("SPREADEDGE_PORT", str(settings.port)),
        )
    )
    marker = f"# spreadedge backup {kind}"
    line = (
        f"{schedule.strip()} {user} {environment} {shlex.quote(str(program))} backup {command}"
        f" >> {shlex.quote(str(settings.home / 'backup-cron.log'))} 2>&1 {marker}"
    )
    # why OSError as a message: a cron file that cannot be read or written (a path through a
    # regular file, no permission) ended the command with a Python traceback
    try:
        kept = [
            entry
            for entry in (cron_file.read_text().splitlines() if cron_file.exists() else [])
            if not entry.endswith(marker)
        ]
        header = "# Written by spreadedge backup schedule: one line per backup type."
        if header not in kept:
            kept.insert(0, header)
        cron_file.parent.mkdir(parents=True, exist_ok=True)
        cron_file.write_text("\n".join([*kept, line]) + "\n")
    except OSError as exc:
        raise OpsError(f"cannot write the cron file {cron_file}: {exc.strerror}") from None
    if settings.database_url:
        click.echo(
            "note: DATABASE_URL is not written into the cron file (it may hold a password); "
            "set it in the cron environment"
        )
    click.echo(f"{cron_file}: {line}")


# -- restore -------------------------------------------------------------------------------------


@click.group(name="restore", invoke_without_command=True)
@click.option(
    "--to",
    "target",
    type=GivenPath(file_okay=False, path_type=Path),
    default=None,
    help="A new directory: the restored cluster's home (data in DIR/cluster).",
)
@click.option(
    "--target-time",
    default=None,
    metavar="TIME",
    help="Recover to this time, ISO 8601 (UTC unless it has an offset); default: the end of the WAL.",
)
@click.option(
    "--set",
    "backup_set",
    default=None,
    metavar="LABEL",
    help="Restore this backup (default: the newest; with --target-time, the newest that ended before it).",
)
@click.option(
    "--repo",
    "repo_path",
    type=GivenPath(path_type=Path),
    default=None,
    metavar="PATH",
    help="Restore from this pgBackRest repository directory alone (a new machine: the lost home's "
    "pgbackrest.conf is not needed).",
)
@click.option(
    "--master-key",
    "master_key_file",
    type=GivenPath(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="With --repo: the copy of the lost home's master key file (mode 0600), copied into DIR.",
)
@click.pass_context
def restore_group(
    ctx: click.Context,
    target: Path | None,
    target_time: str | None,
    backup_set: str | None,
    repo_path: Path | None,
    master_key_file: Path | None,
) -> None:
    """Restore a pgBackRest backup into a new cluster (point in time with --target-time), or a
    logical dump into a database (restore logical)."""
    if ctx.invoked_subcommand is not None:
        return
    if target is None:
        raise click.UsageError("give --to DIR (a new directory), or use `restore logical`")
    settings: Settings = ctx.obj
    when = _timestamp(target_time) if target_time is not None else None
    cluster = Cluster(target, settings.port)
    if repo_path is not None:
        _restore_from_repository(settings, repo_path, master_key_file, cluster, when, backup_set)
        return
    if master_key_file is not None:
        raise click.UsageError("--master-key goes with --repo (without it, the home's master key is copied)")
    repo = pgbackrest.repository(settings)
    click.echo(f"restoring into {cluster.data_dir}" + (f" to {when.isoformat()}" if when else ""))
    pgbackrest.restore(repo, cluster, when, backup_set)
    if not settings.database_url:
        pgbackrest.copy_password(settings.home, cluster)
    # why: the API keys came back encrypted under the master key, which no backup holds (it never
    # enters the database); the restored home's commands read DIR/master.key, which was missing,
    # and `keys store` said to generate a new key, which cannot decrypt them
    source_key = masterkey.default_key_file(settings)
    try:
        if masterkey.copy_key_file(source_key, cluster.home / masterkey.KEY_FILE_NAME):
            click.echo(
                f"master key {source_key} copied to {cluster.home / masterkey.KEY_FILE_NAME} (mode 0600)"
            )
    except masterkey.MasterKeyError as exc:
        click.echo(f"warning: the master key was not copied: {exc}", err=True)
    click.echo(
        "restored; start it (it recovers, promotes, points its pg_cron jobs at itself and checks the master"
        " key) with:\n"
        f"  SPREADEDGE_HOME={shlex.quote(str(cluster.home))} SPREADEDGE_PORT=<free port> spreadedge db start"
    )


def _restore_from_repository(
    settings: Settings,
    repo_path: Path,
    master_key_file: Path | None,
    cluster: Cluster,
    when: datetime | None,
    backup_set: str | None,
) -> None:
    """restore --repo: from the repository directory alone, with the master key file given."""
    # why before the restore: a key file that is missing, readable by others or too short is
    # refused before anything is written
    key = masterkey.read_key_file(master_key_file) if master_key_file is not None else None
    click.echo(f"restoring {repo_path} into {cluster.data_dir}" + (f" to {when.isoformat()}" if when else ""))
    stanza = pgbackrest.restore_from(repo_path, settings.backup, cluster, when, backup_set)
    click.echo(f"restored stanza {stanza}")
    key_file = cluster.home / masterkey.KEY_FILE_NAME
    if key is not None:
        masterkey.write_key_file(key_file, key)
        click.echo(f"master key {master_key_file} copied to {key_file} (mode 0600)")
    else:
        click.echo(
            f"warning: no --master-key: the restored API keys decrypt only once their master key is in"
            f" {key_file} (mode 0600)",
            err=True,
        )
    click.echo(
        "start it (it recovers, promotes, points its pg_cron jobs at itself and checks the master key)"
        " with:\n"
        f"  SPREADEDGE_HOME={shlex.quote(str(cluster.home))} SPREADEDGE_PORT=<free port> spreadedge db start"
    )


def finish_restore(settings: Settings, cluster: Cluster) -> None:
    """After a start of a restored home (its ``restore-pending`` marker, or the ``restore/`` of a
    restore --repo, still there; the server runs, recovered and promoted): check the master key
    against the restored API keys, then remove the marker and pgBackRest's files of the recovery,
    which hold the repository passphrase. ClickException, keeping them, when the key does not open
    the API keys: the next `db start` checks again."""
    marker = pgbackrest.restore_marker(cluster)
    work_dir = pgbackrest.restore_work_dir(cluster)
    # why the work directory alone too: a home restored with --repo before the marker existed
    if not marker.exists() and not work_dir.exists():
        return
    with deadline.connect(cluster.conninfo(), autocommit=True) as conn:
        try:
            version = masterkey.check(conn, settings)
        except masterkey.MasterKeyError as exc:
            raise click.ClickException(
                f"the restored cluster runs, but its API keys cannot be decrypted: {exc}\n"
                f"hint: put the master key they were stored under into {masterkey.key_file(settings)}"
                " (mode 0600), then run `spreadedge db start` again to check it"
            ) from None
    if version is not None:
        click.echo(f"master key {masterkey.source(settings)} opens the restored API keys (version {version})")
    _check_other_master_keys(settings, cluster)
    if work_dir.exists():
        shutil.rmtree(work_dir)
        click.echo(f"removed {work_dir} (pgBackRest's configuration for the recovery)")
    marker.unlink(missing_ok=True)


def _check_other_master_keys(settings: Settings, cluster: Cluster) -> None:
    """After a restore: whether the master key in use opens the API keys of the server's other
    spreadedge databases too (a second deployment's); a warning for each it does not open.

    why a warning, not a failure: each database may have its own master key (its commands read
    theirs from SPREADEDGE_MASTER_KEY or SPREADEDGE_MASTER_KEY_FILE), and the restored home holds
    one key file; before, only the ``spreadedge`` database's API keys were checked, and a second
    deployment whose keys were stored under another master key learnt it at its first `keys`
    command on the restored server, its key perhaps not kept with the repository.
    """
    with deadline.connect(cluster.conninfo(), autocommit=True) as conn:
        names = [str(row[0]) for row in conn.execute(catalog.OTHER_DATABASES).fetchall()]
    for name in names:
        try:
            with deadline.connect(cluster.conninfo(name), autocommit=True) as conn:
                version = masterkey.check(conn, settings)
        except masterkey.MasterKeyError as exc:
            click.echo(
                f"warning: database {name}: {exc}: its commands need the master key its API keys were"
                f" stored under ({masterkey.ENV_KEY} or {masterkey.ENV_KEY_FILE}); keep it with the"
                " repository",
                err=True,
            )
            continue
        except psycopg.Error as exc:
            # why: a database that cannot be read (one a DROP DATABASE left invalid, say) failed
            # the start after the restore, and every later start, with "connection failed"
            click.echo(
                f"warning: database {name}: its API keys could not be checked against the master key:"
                f" {catalog.reason(exc)}",
                err=True,
            )
            continue
        if version is not None:
            click.echo(
                f"master key {masterkey.source(settings)} opens the restored API keys of database {name}"
                f" too (version {version})"
            )


@restore_group.command(name="logical")
@click.argument("dump_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to-database", required=True, metavar="DB", help="The database to restore into (created if missing)."
)
@click.pass_obj
def restore_logical(settings: Settings, dump_file: Path, to_database: str) -> None:
    """Restore a dump of `backup logical` into database DB of the same server, in one transaction."""
    if not to_database:
        # why: "create database" of an empty name is a syntax error (42601), a traceback
        raise click.BadParameter("'' is not a database name", param_hint="'--to-database'")
    # why before the database is created: a file that is no dump was refused only after its
    # database had been created (and dropped again)
    logical.compress_type_of(dump_file)
    url = db.conninfo(settings)
    target = make_conninfo(url, dbname=to_database)
    with deadline.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", [to_database]).fetchone()
        as_replica = _refuse_restore_privileges(conn, dump_file, to_database, bool(exists))
        if not exists:
            conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(to_database)))
            click.echo(f"created database {to_database}")
        row = conn.execute("select current_setting('cron.database_name', true)").fetchone()
    try:
        logical.restore(
            dump_file, target, keep_cron=bool(row and row[0] == to_database), as_replica=as_replica
        )
    except BaseException:
        if not exists:  # nothing was restored: the database created for it goes again
            with deadline.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
                conn.execute(psycopg.sql.SQL("drop database {}").format(psycopg.sql.Identifier(to_database)))
            click.echo(f"dropped database {to_database} again")
        raise
    # why: a dump carries no ALTER DATABASE ... SET, so the restored database logged bind
    # parameters (passwords, master keys, API secrets) with log_statement on, unlike its source
    with deadline.connect(target, autocommit=True) as conn:
        if sqlfiles.procedure_exists(conn, "internal.apply_database_settings()"):
            try:
                conn.execute("call internal.apply_database_settings()")
            except psycopg.errors.InsufficientPrivilege:
                # why a warning: the data is restored (its own transaction committed); only a
                # superuser may set these, and the operator must know they are missing
                click.echo(
                    f"warning: {to_database} does not keep bind parameters out of the server log nor run"
                    " in UTC: as a superuser, run in it: call internal.apply_database_settings()",
                    err=True,
                )
    click.echo(f"restored {dump_file} into {to_database}")


# the restoring role: name, superuser, CREATEDB, whether it may set session_replication_role, and
# the statements a superuser runs to give it what it lacks (the database %(database)s)
_RESTORER = """
select r.rolname, r.rolsuper, r.rolcreatedb,
       pg_catalog.has_parameter_privilege('session_replication_role', 'SET'),
       format('create database %%I owner %%I;', %(database)s::text, r.rolname),
       format('grant set on parameter session_replication_role to %%I;', r.rolname)
from pg_catalog.pg_roles r
where r.rolname = current_user
"""


def _refuse_restore_privileges(
    conn: psycopg.Connection[Any], dump_file: Path, database: str, exists: bool
) -> bool:
    """Refuse (OpsError, before anything is created) a restore the role may not do; whether the
    restore must set session_replication_role rather than disable triggers (a role that is not a
    superuser restoring a data-only dump).

    why: as a database owner that is not a superuser, a full dump's restore failed in pg_restore
    ("must be member of role ...", CREATE EXTENSION), a data-only one on ALTER TABLE ... DISABLE
    TRIGGER ALL ("... is a system trigger"), and a missing database's CREATE DATABASE with a hint to
    connect as the database owner, which the role was
    """
    row = conn.execute(_RESTORER, {"database": database}).fetchone()
    if row is None or row[1]:
        return False
    role, _, may_create_database, may_set_replica, create_database, grant_set = row
    refused = f"spreadedge restore logical refused, nothing was changed: the role {role} is not a superuser"
    if logical.holds_schema(dump_file):
        raise OpsError(
            f"{refused}, and {dump_file.name} holds the schema (a full or --schema-only dump): restoring it"
            " creates the extensions pg_stat_statements, hypopg and pg_partman, the schema partman"
            " and objects owned by other roles, which only a superuser may\n"
            "restore it with DATABASE_URL naming a superuser (the objects keep their owners)"
        )
    lacking: list[tuple[str, str]] = []
    if not exists and not may_create_database:
        lacking.append((f"CREATEDB (the database {database} does not exist)", create_database))
    if not may_set_replica:
        lacking.append(
            (
                "SET on the parameter session_replication_role (a data-only restore fires no trigger;"
                " disabling them is a superuser's)",
                grant_set,
            )
        )
    if lacking:
        needs = "\n".join(f"  - {need}" for need, _ in lacking)
        statements = "\n".join(statement for _, statement in lacking)
        raise OpsError(f"{refused} and lacks\n{needs}\nAsk a superuser to run:\n{statements}")
    return True


def _timestamp(text: str) -> datetime:
    """An ISO 8601 time (``2026-11-20T08:00:00Z``, ``2026-11-20 08:00:00.123+00``), UTC when bare."""
    try:
        return iso_moment(text)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {text!r}", param_hint="--target-time") from None


# -- health --------------------------------------------------------------------------------------


def _age_option(text: str) -> timedelta:
    """``30s``, ``15m``, ``12h``, ``2d``, ``1w`` (or ``30 seconds``…) as a timedelta; ValueError otherwise."""
    match = _HEALTH_AGE.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"must look like 30s, 15m, 12h, 2d or 1w, got {text!r}")
    return timedelta(**{_AGE_UNITS[match.group(2)[0]]: int(match.group(1))})


_HEALTH_AGE = re.compile(r"([1-9][0-9]{0,5})\s*(s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?|w|weeks?)")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _size_option(text: str) -> int:
    """``1GB``, ``512 MB``, ``64kB``, ``1TB`` as bytes, PostgreSQL's units (1 kB = 1024 bytes);
    ValueError otherwise."""
    match = re.fullmatch(r"([1-9][0-9]{0,5})\s*(kb|mb|gb|tb)", text.strip().lower())
    if not match:
        raise ValueError(f"must look like 512MB, 1GB or 1TB, got {text!r}")
    return int(match.group(1)) * 1024 ** ("kmgt".index(match.group(2)[0]) + 1)


def _health_limit(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, str], Any]:
    """A click callback reading an option's text with ``parse``: a usage error naming the option
    (exit status 2) when it cannot, as click's own types do (--max-disk-used)."""

    def callback(ctx: click.Context, param: click.Parameter, value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None

    return callback


@click.command(name="health")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document of ops.health_report.")
@click.option(
    "--max-backup-age",
    default="26h",
    show_default=True,
    metavar="AGE",
    callback=_health_limit(_age_option),
    help="The last physical backup must be younger: 26h, 2d...",
)
@click.option(
    "--max-replication-lag",
    default="5m",
    show_default=True,
    metavar="AGE",
    callback=_health_limit(_age_option),
    help="No replica may lag further behind (a standby: its replay, when it has not replayed all it "
    "received): 30s, 5m...",
)
@click.option(
    "--max-retained-wal",
    default="1GB",
    show_default=True,
    metavar="SIZE",
    callback=_health_limit(_size_option),
    help="No replication slot may hold back more WAL (an inactive slot keeps it until the disk "
    "fills): 512MB, 1GB...",
)
@click.option(
    "--max-transaction-age",
    default="15m",
    show_default=True,
    metavar="AGE",
    callback=_health_limit(_age_option),
    help="No transaction may be open longer: 15m, 1h...",
)
@click.option(
    "--max-disk-used",
    default=0.9,
    show_default=True,
    type=click.FloatRange(0.01, 1.0),
    callback=finite_number(),
    help="Largest used share of the file systems of the data directory, pg_wal and tablespaces.",
)
@click.option(
    "--max-archive-wait",
    default="10m",
    show_default=True,
    metavar="AGE",
    callback=_health_limit(_age_option),
    help="No WAL file may wait longer to be archived (pg_wal keeps it until archiving succeeds): 5m, 1h...",
)
@click.pass_obj
def health_command(
    settings: Settings,
    as_json: bool,
    max_backup_age: timedelta,
    max_replication_lag: timedelta,
    max_retained_wal: int,
    max_transaction_age: timedelta,
    max_disk_used: float,
    max_archive_wait: timedelta,
) -> None:
    """Check the database (ops.health_report); exit status 1 when any check fails, 2 for an
    option it cannot read."""
    from spreadedge.migrate import MigrationError, check_project, render_migrations

    try:
        # why: outside the project there are no migrations to expect, and every applied one was
        # reported "applied but unknown to this code"
        check_project(settings)
        expected = [m.id for m in render_migrations(settings)]
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from exc
    with _connect(settings) as conn:
        try:
            document = health.report(
                conn,
                expected,
                max_backup_age=max_backup_age,
                max_replication_lag=max_replication_lag,
                max_retained_wal=max_retained_wal,
                max_transaction_age=max_transaction_age,
                max_disk_used_fraction=Decimal(str(max_disk_used)),
                max_archive_wait=max_archive_wait,
            )
        except psycopg.Error as exc:
            # why: invalid_argument (22S09) here is a limit the options gave that the SQL refuses
            # (an age reaching back before the earliest time PostgreSQL stores, 999999w); it exited
            # 1, the status of an unhealthy database, where an option it cannot read is 2
            if exc.sqlstate != "22S09":
                raise
            raise click.UsageError(db.server_message(exc)) from exc
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(f"{document['database']} on PostgreSQL {document['version']} at {document['checked_at']}:")
        for check in document["checks"]:
            click.echo(f"  {'ok  ' if check['ok'] else 'FAIL'}  {check['name']:<25} {check['detail']}")
        click.echo("healthy" if document["healthy"] else "UNHEALTHY")
    if not document["healthy"]:
        raise SystemExit(1)


# -- check ---------------------------------------------------------------------------------------


@click.command(name="check")
@click.option("--json", "as_json", is_flag=True, help="Print the violations as JSON lines.")
@click.pass_obj
def check_command(settings: Settings, as_json: bool) -> None:
    """Check the stored state's invariants (ops.check_invariants); exit status 1 on any violation."""
    with _connect(settings) as conn:
        violations = invariants.check(conn)
    for violation in violations:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "invariant": violation.invariant,
                        "subject": violation.subject,
                        "detail": violation.detail,
                    }
                )
            )
        else:
            click.echo(f"{violation.invariant:<16} {json.dumps(violation.subject)}  {violation.detail}")
    if violations:
        click.echo(f"{len(violations)} violation(s)", err=True)
        raise SystemExit(1)
    if not as_json:
        click.echo(
            "no violations: positions, orders, rollups, snapshots, spread trades and audit log"
            " agree with the trades"
        )


COMMANDS = [
    tune_group,
    partitions_group,
    cleanup_command,
    backup_group,
    restore_group,
    health_command,
    check_command,
]
