"""schema/ is the current DDL: applying it gives the same catalog as applying every migration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from db_fixtures import janitor
from spreadedge.migrate import BOOKKEEPING_TABLES, apply_schema, check_functions, migrate, run

SCHEMAS = ("ref", "trading", "market", "auth", "monitor", "audit", "ops", "internal", "partman")
CATALOG_QUERIES = {
    "schemas": """
        select n.nspname, obj_description(n.oid, 'pg_namespace')
        from pg_namespace n where n.nspname = any(%(schemas)s)""",
    "extensions": "select extname, extversion from pg_extension",
    "relations": """
        select c.relnamespace::regnamespace::text, c.relname, c.relkind, c.relispartition, c.reloptions,
               pg_get_partkeydef(c.oid), pg_get_expr(c.relpartbound, c.oid), obj_description(c.oid, 'pg_class')
        from pg_class c
        where c.relnamespace::regnamespace::text = any(%(schemas)s) and c.relkind in ('r', 'p', 'v', 'm', 'S', 'c')
          and not (c.relnamespace::regnamespace::text || '.' || c.relname) = any(%(bookkeeping)s)""",
    "columns": """
        select a.attrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity, col_description(a.attrelid, a.attnum)
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where c.relnamespace::regnamespace::text = any(%(schemas)s) and a.attnum > 0 and not a.attisdropped""",
    "constraints": """
        select conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        from pg_constraint where connamespace::regnamespace::text = any(%(schemas)s)""",
    "indexes": """
        select schemaname, tablename, indexname, indexdef from pg_indexes where schemaname = any(%(schemas)s)""",
    "triggers": """
        select tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
        from pg_trigger where not tgisinternal
          and tgrelid::regclass::text not like 'cron.%%'""",
    "functions": """
        select p.oid::regprocedure::text, pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc')
        from pg_proc p where p.pronamespace::regnamespace::text = any(%(schemas)s) and p.prokind in ('f', 'p')""",
    "types": """
        select t.typnamespace::regnamespace::text, t.typname, t.typtype,
               array(select e.enumlabel from pg_enum e where e.enumtypid = t.oid order by e.enumsortorder)::text,
               obj_description(t.oid, 'pg_type')
        from pg_type t where t.typnamespace::regnamespace::text = any(%(schemas)s) and t.typtype in ('e', 'd')""",
    "privileges": """
        select 'schema', n.nspname, n.nspowner::regrole::text, n.nspacl::text
        from pg_namespace n where n.nspname = any(%(schemas)s)
        union all
        select 'relation', c.oid::regclass::text, c.relowner::regrole::text, c.relacl::text
        from pg_class c
        where c.relnamespace::regnamespace::text = any(%(schemas)s) and c.relkind in ('r', 'p', 'v', 'm', 'S')
          and not (c.relnamespace::regnamespace::text || '.' || c.relname) = any(%(bookkeeping)s)
        union all
        select 'column', a.attrelid::regclass::text || '.' || a.attname, null, a.attacl::text
        from pg_attribute a join pg_class c on c.oid = a.attrelid
        where c.relnamespace::regnamespace::text = any(%(schemas)s) and a.attacl is not null
        union all
        select 'function', p.oid::regprocedure::text, p.proowner::regrole::text, p.proacl::text
        from pg_proc p where p.pronamespace::regnamespace::text = any(%(schemas)s)""",
    "row security": """
        select c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity
        from pg_class c where c.relnamespace::regnamespace::text = any(%(schemas)s) and c.relkind in ('r', 'p')
        union all
        select schemaname || '.' || tablename || ' ' || policyname, permissive = 'PERMISSIVE',
               qual is not null
        from pg_policies where schemaname = any(%(schemas)s)""",
    "policies": """
        select schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check,
               obj_description(p.oid, 'pg_policy')
        from pg_policies
        join pg_policy p on p.polname = pg_policies.policyname
                        and p.polrelid = (schemaname || '.' || tablename)::regclass
        where schemaname = any(%(schemas)s)""",
    "partitioning": """
        select parent_table, control, partition_interval, partition_type, premake, retention, retention_keep_table,
               infinite_time_partitions
        from partman.part_config""",
    "reference data": """
        select e.code, e.name, m.market_type::text, m.maker_fee, m.taker_fee
        from ref.exchanges e join ref.exchange_markets m using (exchange_id)
        union all select sqlstate, name, description, null, null from ops.error_codes""",
}


def catalog(url: str) -> dict[str, list[tuple]]:
    params = {"schemas": list(SCHEMAS), "bookkeeping": list(BOOKKEEPING_TABLES)}
    with psycopg.connect(url) as conn:
        return {
            name: sorted(conn.execute(query, params).fetchall(), key=repr)
            for name, query in CATALOG_QUERIES.items()
        }


@pytest.fixture
def fresh_url(pg_cluster) -> Iterator:
    """Factory of empty databases, dropped after the test."""
    janitors = []

    def make(name: str) -> str:
        j = janitor(pg_cluster, name)
        j.init()
        janitors.append(j)
        return pg_cluster.url(name)

    yield make
    for j in janitors:
        j.drop()


def test_schema_and_migrations_give_the_same_catalog(fresh_url, project_settings):
    from_schema, from_migrations = fresh_url("from_schema"), fresh_url("from_migrations")
    apply_schema(from_schema, project_settings)
    migrate(from_migrations, project_settings, echo=lambda line: None)
    expected, actual = catalog(from_schema), catalog(from_migrations)
    for part in CATALOG_QUERIES:
        assert actual[part] == expected[part], part
    assert len(expected["functions"]) > 30


def test_functions_directory_holds_only_reappliable_statements(project_settings):
    assert check_functions(project_settings.functions_dir) == []


def test_every_table_view_and_api_function_has_a_comment(db):
    missing = db.execute("""
        select c.oid::regclass::text from pg_class c
        where c.relnamespace::regnamespace::text in ('ref', 'trading', 'market', 'auth', 'monitor', 'audit', 'ops', 'internal')
          and c.relkind in ('r', 'p', 'v') and not c.relispartition and obj_description(c.oid, 'pg_class') is null
        union all
        select p.oid::regprocedure::text from pg_proc p
        where p.pronamespace::regnamespace::text in ('ref', 'trading', 'market', 'auth', 'monitor', 'audit', 'ops', 'internal')
          and obj_description(p.oid, 'pg_proc') is null
        union all
        select a.attrelid::regclass::text || '.' || a.attname from pg_attribute a join pg_class c on c.oid = a.attrelid
        where c.relnamespace::regnamespace::text in ('ref', 'trading', 'market', 'auth', 'monitor', 'audit', 'ops', 'internal') and c.relkind in ('r', 'p')
          and not c.relispartition and a.attnum > 0 and not a.attisdropped
          and col_description(a.attrelid, a.attnum) is null
    """).fetchall()
    assert missing == []


def test_the_api_functions_keep_their_fixed_names_and_argument_names(db):
    signatures = dict(
        db.execute("""
        select p.oid::regproc::text, array_to_string(p.proargnames[1:p.pronargs], ',')
        from pg_proc p where p.oid::regproc::text in (
            'ref.upsert_instrument', 'trading.create_strategy', 'trading.place_order', 'trading.cancel_order',
            'trading.record_fill', 'trading.record_funding', 'trading.get_position', 'trading.pnl_summary')
    """).fetchall()
    )
    assert signatures == {
        "ref.upsert_instrument": "exchange,symbol,base_asset,quote_asset,market_type,tick_size,lot_size,"
        "min_notional,maker_fee,taker_fee,multiplier",
        "trading.create_strategy": "name,description,capital,owner_user_id",
        "trading.place_order": "strategy,exchange,symbol,side,quantity,price,order_type,client_order_id,"
        "stop_price,placed_at",
        "trading.cancel_order": "order_id,reason",
        "trading.record_fill": "order_id,exchange_trade_id,quantity,price,fee,fee_currency,executed_at,fee_quote",
        "trading.record_funding": "strategy,exchange,symbol,amount,paid_at",
        "trading.get_position": "strategy,exchange,symbol,mark_price",
        "trading.pnl_summary": "strategy,since,until,group_by",
    }


def test_a_migration_template_renders_the_partition_settings(project_settings, tmp_path):
    settings = replace(
        project_settings,
        render=replace(project_settings.render, partition_premake=6, retention_audit="24 months"),
    )
    run(settings, "", render_only=tmp_path, echo=lambda line: None)
    rendered = (tmp_path / "0001_initial.sql").read_text()
    assert "p_premake => 6," in rendered
    assert (
        "set retention = '24 months', retention_keep_table = false\nwhere parent_table = 'audit.log'"
        in rendered
    )
    assert Path(tmp_path / "0001_initial.sql").exists()


def test_migrating_the_cron_database_schedules_partition_maintenance_and_monitoring(
    pg_cluster, project_settings
):
    # the session cluster's own "spreadedge" database is the one pg_cron serves (cron.database_name)
    url = pg_cluster.url("spreadedge")
    migrate(url, project_settings, echo=lambda line: None)
    with psycopg.connect(url) as conn:
        jobs = conn.execute("select jobname, schedule, command from cron.job order by jobname").fetchall()
    assert jobs == [
        ("spreadedge-collect-metrics", "* * * * *", "select monitor.collect_metrics()"),
        (
            "spreadedge-evaluate-alert-rules",
            "* * * * *",
            "select count(*) from monitor.evaluate_alert_rules()",
        ),
        ("spreadedge-partition-maintenance", "17 * * * *", "call ops.run_partition_maintenance()"),
    ]
