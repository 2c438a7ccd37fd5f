"""Operations edges: a missing current partition fails health; dump and cron paths that cannot be written."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ops_helpers import cli


def _drop_current_partition(conn: psycopg.Connection, table: str) -> str:
    """Drop the partition of ``table`` that holds now(); its end as the health detail writes it."""
    schema, name, end = conn.execute(
        "select sp.partition_schemaname, sp.partition_tablename,"
        " to_char(info.child_end_time at time zone 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"')"
        " from partman.part_config c"
        " cross join lateral partman.show_partitions(c.parent_table, 'ASC') sp"
        " cross join lateral partman.show_partition_info(sp.partition_schemaname || '.' || sp.partition_tablename,"
        "     c.partition_interval, c.parent_table) info"
        " where c.parent_table = %s and info.child_start_time <= now() and info.child_end_time > now()",
        [table],
    ).fetchone()
    conn.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, name)))
    return end


# bug: health looked at the newest partition only, so a missing partition of the current period
# (every write of it refused by the default partition's trigger) still read healthy
def test_health_fails_when_the_partition_of_the_current_period_is_missing(db):
    # one transaction, one now(): the dropped partition is still the current one when health looks
    with db.transaction():
        end = _drop_current_partition(db, "market.quotes")

        row = db.execute("select ok, detail from internal.health_partitions_ahead()").fetchone()
        api = db.execute("select ok from ops.health(null) where check_name = 'partitions_ahead'").fetchone()

    assert row == (False, f"partitions missing: market.quotes (no partition from now to {end})")
    assert api == (False,)


# bug: the check read partition bounds as the catalog shows them in the session's DateStyle and
# TimeZone; in SQL style Asia/Shanghai's CST read back as US Central time, 14 hours off
def test_health_reads_partition_bounds_whatever_the_sessions_date_style_and_time_zone(db):
    with db.transaction():
        end = _drop_current_partition(db, "market.quotes")
        db.execute("set local datestyle = 'SQL, DMY'")
        db.execute("set local timezone = 'Asia/Shanghai'")

        row = db.execute("select ok, detail from internal.health_partitions_ahead()").fetchone()

    assert row == (False, f"partitions missing: market.quotes (no partition from now to {end})")


# bug: a dump directory that cannot be made (here a path through a regular file) ended `backup
# logical` with a NotADirectoryError traceback; the run must fail with a message, be recorded
# failed, and write nothing
def test_a_logical_dump_into_a_directory_that_cannot_be_made_fails_with_a_message(db, db_url, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")

    result = cli("backup", "logical", "--schema-only", "--out", str(blocker / "dumps"), database_url=db_url)

    assert (result.exit_code, result.output) == (
        1,
        f"Error: cannot create the dump directory {blocker / 'dumps'}: Not a directory\n",
    )
    assert db.execute("select kind, status, detail from ops.backup_runs").fetchall() == [
        ("logical_schema", "failed", f"cannot create the dump directory {blocker / 'dumps'}: Not a directory")
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


# bug: `backup schedule --file` through a regular file ended with a NotADirectoryError traceback
def test_a_backup_schedule_into_a_cron_file_that_cannot_be_written_fails_with_a_message(db_url, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")

    result = cli(
        "backup",
        "schedule",
        "--cron",
        "0 3 * * 0",
        "--file",
        str(blocker / "cron.d" / "x"),
        database_url=db_url,
    )

    assert (result.exit_code, result.output) == (
        1,
        f"Error: cannot write the cron file {blocker / 'cron.d' / 'x'}: Not a directory\n",
    )
    assert blocker.read_text() == ""
