"""Promises of the market data and history API issues that no test held: BRIN on each market
table's time column (on every partition), months of candle and indicator partitions made ahead,
and a retention per market table, each from its own setting (in the migration and in maintain)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ops_helpers import cli
from spreadedge.migrate import run

# each market table and its time column (the partition key)
MARKET_TIMES = {
    "market.candles": "open_time",
    "market.quotes": "quoted_at",
    "market.technical_indicators": "open_time",
    "market.ticks": "traded_at",
}
# a distinct retention per market table, so that a setting read for the wrong table shows
RETENTIONS = {
    "market.quotes": ("retention_quotes", "2 days"),
    "market.ticks": ("retention_ticks", "3 days"),
    "market.candles": ("retention_candles", "5 months"),
    "market.technical_indicators": ("retention_indicators", "6 months"),
}

BRIN_COLUMNS = """
select pg_catalog.array_agg(a.attname::text order by a.attname)
from pg_catalog.pg_index x
join pg_catalog.pg_class ix on ix.oid = x.indexrelid
join pg_catalog.pg_am am on am.oid = ix.relam
join pg_catalog.pg_attribute a on a.attrelid = x.indrelid and a.attnum = any (x.indkey)
where x.indrelid = %s::regclass and am.amname = 'brin'
"""


@pytest.mark.parametrize("table", sorted(MARKET_TIMES))
def test_each_market_table_has_a_brin_index_on_its_time_column_alone(db, table):
    assert db.execute(BRIN_COLUMNS, [table]).fetchone()[0] == [MARKET_TIMES[table]]


@pytest.mark.parametrize("table", sorted(MARKET_TIMES))
def test_every_partition_of_a_market_table_has_the_brin_index_on_its_time_column(db, table):
    partitions = [
        f"{schema}.{name}"
        for schema, name in db.execute(
            "select partition_schemaname, partition_tablename from partman.show_partitions(%s)", [table]
        ).fetchall()
    ] + [f"{table}_default"]
    assert len(partitions) > 2

    columns = {p: db.execute(BRIN_COLUMNS, [p]).fetchone()[0] for p in partitions}

    assert columns == {p: [MARKET_TIMES[table]] for p in partitions}


@pytest.mark.parametrize("table", ["market.candles", "market.technical_indicators"])
def test_monthly_market_tables_have_premake_months_of_partitions_ahead_of_the_migrate(db, table):
    # 4 months ahead (partition_premake) of the month of the migrate that made them (the test
    # template's, not today's: a run may cross a month's end)
    newest, expected = db.execute(
        "select (select max(partition_tablename) from partman.show_partitions(%s)),"
        " split_part(%s, '.', 2) || '_p' || to_char(m + interval '4 months', 'YYYY_MM')"
        " from (select date_trunc('month', max(finished_at) at time zone 'UTC') as m from ops.migrate_runs) r",
        [table, table],
    ).fetchone()
    assert newest == expected


def test_quotes_have_premake_days_of_partitions_ahead_of_the_migrate(db):
    newest, expected = db.execute(
        "select (select max(partition_tablename) from partman.show_partitions('market.quotes')),"
        " 'quotes_p' || to_char(d + 4, 'YYYY_MM_DD')"
        " from (select (max(finished_at) at time zone 'UTC')::date as d from ops.migrate_runs) r"
    ).fetchone()
    assert newest == expected


def test_a_migration_renders_each_market_tables_retention_from_its_own_setting(project_settings, tmp_path):
    render = replace(project_settings.render, **dict(RETENTIONS.values()))
    run(replace(project_settings, render=render), "", render_only=tmp_path, echo=lambda line: None)
    rendered = (tmp_path / "0003_market_data.sql").read_text()

    for table, (_setting, retention) in RETENTIONS.items():
        assert (
            f"set retention = '{retention}', retention_keep_table = false\nwhere parent_table = '{table}'"
            in rendered
        ), table


def test_partitions_maintain_gives_each_market_table_the_retention_of_its_own_setting(db, db_url):
    env = {f"SPREADEDGE_{setting.upper()}": retention for setting, retention in RETENTIONS.values()}

    result = cli("partitions", "maintain", database_url=db_url, env=env)

    assert result.exit_code == 0, result.output
    rows = db.execute(
        "select parent_table, retention, retention_keep_table from partman.part_config"
        " where parent_table like 'market.%' order by 1"
    ).fetchall()
    # as PostgreSQL writes the intervals back
    assert rows == [
        ("market.candles", "5 mons", False),
        ("market.quotes", "2 days", False),
        ("market.technical_indicators", "6 mons", False),
        ("market.ticks", "3 days", False),
    ]
