"""What ``spreadedge migrate`` needs of a role that is not a superuser, checked before it changes anything.

On a server of yours (a managed service, or a database a DBA hands out with its ownership), the
migrating role is the database owner, not a superuser. The migrations and functions/ then need a
superuser to have made a few things beforehand: the extensions that only a superuser may create,
pg_partman's schema opened to the owner, CREATEROLE for the migration that makes the roles, and the
settings only a superuser may set. Without them migrate failed part-way with a raw 42501, once with
every migration committed and functions/ refused (``set session_replication_role``, ``alter
database ... set log_parameter_max_length``): a database half migrated. ``refuse_missing`` asks
the server what is missing and refuses with the statements for a superuser to run, before the
bookkeeping tables, the lock or any migration. For a superuser nothing is ever missing.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.errors

from spreadedge.sqlfiles import MigrationError

__all__ = ["ROLES_MIGRATION", "missing", "refuse_missing"]

# The migration that creates the spreadedge roles and grants them to each other (migrations/0002).
ROLES_MIGRATION = "0002_security"

# One row per thing missing, in the order a superuser runs the statements: (need, statement).
# why each check: the statement that failed without it, in migrations/ or functions/ (see the
# README, "Using your own PostgreSQL server").
_MISSING = """
with me as (
    select r.rolname, r.rolsuper, r.rolcreaterole
    from pg_catalog.pg_roles r
    where r.rolname = current_user
),
wanted (ord, name, schema_name) as (
    values (10, 'pgcrypto', 'public'), (11, 'pg_stat_statements', 'public'), (12, 'hypopg', 'public'),
           (13, 'pg_partman', 'partman')
),
partman as (
    select to_regnamespace('partman') as oid
),
needs (ord, need, statement) as (
    select 1, 'CREATE on this database (migrate creates its schemas)',
           format('grant create on database %%I to %%I;', current_database(), me.rolname)
    from me
    where not pg_catalog.has_database_privilege(current_database(), 'CREATE')
    union all
    select 2, 'CREATE on schema public (migrate keeps its ledger and yoyo''s tables there)',
           format('grant usage, create on schema public to %%I;', me.rolname)
    from me
    where not pg_catalog.has_schema_privilege('public', 'CREATE')
    union all
    -- why: CREATE EXTENSION of an untrusted extension is a superuser's (0001: "must be superuser
    -- to create this extension"); a trusted one (pgcrypto) the database owner creates itself
    select w.ord, format('the extension %%s (%%s may create it)', w.name,
                         case when exists (select from pg_catalog.pg_available_extension_versions v
                                           where v.name = w.name and v.trusted)
                              then 'only a superuser or a role with CREATE on the database'
                              else 'only a superuser' end),
           case when w.name = 'pg_partman'
                then 'create schema if not exists partman;' || E'\n'
                     || 'create extension if not exists pg_partman schema partman;'
                else format('create extension if not exists %%s;', w.name) end
    from wanted w, me
    where not me.rolsuper
      and not exists (select from pg_catalog.pg_extension x where x.extname = w.name)
      and not (pg_catalog.has_database_privilege(current_database(), 'CREATE')
               and exists (select from pg_catalog.pg_available_extension_versions v
                           where v.name = w.name and v.trusted))
    union all
    -- why: pg_partman's functions are not security definer: partman.create_parent (0001) writes
    -- partman.part_config and creates its template tables in the schema as the caller, and
    -- functions/ grants spreadedge_owner (ops.health) USAGE on the schema and SELECT on
    -- part_config, which without the grant option only warned "no privileges were granted": the
    -- REST API's health then failed with "permission denied for schema partman"
    select 20, 'USAGE and CREATE on schema partman, with the grant option',
           format('grant usage, create on schema partman to %%I with grant option;', me.rolname)
    from me, partman
    where not me.rolsuper and (partman.oid is null
       or not (pg_catalog.has_schema_privilege(partman.oid, 'USAGE WITH GRANT OPTION')
               and pg_catalog.has_schema_privilege(partman.oid, 'CREATE')))
    union all
    select 21, 'SELECT, INSERT, UPDATE and DELETE on pg_partman''s tables, with the grant option',
           format('grant select, insert, update, delete on all tables in schema partman to %%I '
                  'with grant option;', me.rolname)
    from me, partman
    where not me.rolsuper and (partman.oid is null
       or exists (select from pg_catalog.pg_class c
                  where c.relnamespace = partman.oid and c.relkind in ('r', 'p')
                    and not (pg_catalog.has_table_privilege(c.oid, 'SELECT WITH GRANT OPTION')
                             and pg_catalog.has_table_privilege(c.oid, 'INSERT')
                             and pg_catalog.has_table_privilege(c.oid, 'UPDATE')
                             and pg_catalog.has_table_privilege(c.oid, 'DELETE'))))
    union all
    select 22, 'EXECUTE on pg_partman''s functions and procedures',
           format('grant execute on all routines in schema partman to %%I;', me.rolname)
    from me, partman
    where not me.rolsuper and (partman.oid is null
       or exists (select from pg_catalog.pg_proc p
                  where p.pronamespace = partman.oid
                    and not pg_catalog.has_function_privilege(p.oid, 'EXECUTE')))
    union all
    -- why: 0001 and 0006 read cron.database_name, a setting pg_cron keeps from all but superusers
    -- and pg_read_all_settings ("must be superuser or have privileges of pg_read_all_settings")
    select 30, 'reading pg_cron''s cron.database_name (pg_read_all_settings)',
           format('grant pg_read_all_settings to %%I;', me.rolname)
    from me
    where %(cron_hidden)s
    union all
    -- why: where pg_cron serves this database, 0001 creates it (a superuser's) and schedules the jobs
    select 31, 'the extension pg_cron (pg_cron serves this database; only a superuser may create it)',
           'create extension if not exists pg_cron;'
    from me
    where %(cron_database)s = current_database()
      and not me.rolsuper
      and not exists (select from pg_catalog.pg_extension x where x.extname = 'pg_cron')
    union all
    -- why: migration 0002 creates the five spreadedge roles, grants them to each other and
    -- comments on them, all of which PostgreSQL 15 allows only a superuser or a role with
    -- CREATEROLE ("must have CREATEROLE privilege"), pre-created roles or not; CREATEROLE may be
    -- taken back once it is applied
    select 40, 'CREATEROLE (migration 0002 creates the spreadedge roles and comments on them)',
           format('alter role %%I createrole;', me.rolname)
    from me
    where %(roles_pending)s and not me.rolsuper and not me.rolcreaterole
    union all
    -- why: migrate gives every object to spreadedge_owner (internal.claim_ownership), and ALTER
    -- ... OWNER needs membership in the new owner; with CREATEROLE claim_ownership grants it itself
    select 41, 'membership in spreadedge_owner (migrate makes it the owner of every object)',
           format('grant spreadedge_owner to %%I;', me.rolname)
    from me
    where not %(roles_pending)s and not me.rolsuper and not me.rolcreaterole
      and not (to_regrole('spreadedge_owner') is not null
               and pg_catalog.pg_has_role('spreadedge_owner', 'MEMBER'))
    union all
    -- why: functions/ creates ops.repair_default_partitions with SET session_replication_role,
    -- which CREATE FUNCTION refuses to a role that may not set it
    select 50, 'SET on the parameter session_replication_role (ops.repair_default_partitions)',
           format('grant set on parameter session_replication_role to %%I;', me.rolname)
    from me
    where not pg_catalog.has_parameter_privilege('session_replication_role', 'SET')
    union all
    -- why: every migrate keeps bind parameters (secrets) out of this database's server log
    -- (internal.apply_database_settings), settings only a superuser may set; set beforehand, they
    -- are left as they are
    select 51 + s.ord, format('%%s = 0 on this database (keeps secrets out of the server log)', s.name),
           format('alter database %%I set %%s = 0;', current_database(), s.name)
    from (values (0, 'log_parameter_max_length'), (1, 'log_parameter_max_length_on_error')) s (ord, name)
    where not pg_catalog.has_parameter_privilege(s.name, 'SET')
      and not exists (select from pg_catalog.pg_db_role_setting d
                      cross join lateral unnest(d.setconfig) c (item)
                      where d.setdatabase = (select oid from pg_catalog.pg_database
                                             where datname = current_database())
                        and d.setrole = 0
                        and c.item = s.name || '=0')
)
select need, statement from needs order by ord
"""

# why a probe of its own: cron.database_name is readable by superusers and pg_read_all_settings
# only where pg_cron is loaded (a placeholder, or nothing, elsewhere), and no catalog says which
_CRON_DATABASE = "select current_setting('cron.database_name', true)"


def missing(conn: psycopg.Connection[Any], pending: list[str]) -> list[tuple[str, str]]:
    """What the migrating role lacks for the pending migrations and functions/: (need, statement)."""
    try:
        row = conn.execute(_CRON_DATABASE).fetchone()
        cron_database, cron_hidden = (row[0] if row else None), False
    except psycopg.errors.InsufficientPrivilege:
        cron_database, cron_hidden = None, True
    params = {
        "cron_hidden": cron_hidden,
        "cron_database": cron_database,
        "roles_pending": ROLES_MIGRATION in pending,
    }
    return [(need, statement) for need, statement in conn.execute(_MISSING, params).fetchall()]


def refuse_missing(conn: psycopg.Connection[Any], pending: list[str]) -> None:
    """Refuse (MigrationError) when the role lacks anything the migrate needs, naming each thing
    and the statements a superuser runs to give it; nothing has been changed."""
    lacking = missing(conn, pending)
    if not lacking:
        return
    role, database = conn.execute("select current_user, current_database()").fetchone() or ("", "")
    needs = "\n".join(f"  - {need}" for need, _ in lacking)
    statements = "\n".join(statement for _, statement in lacking)
    raise MigrationError(
        f"spreadedge migrate refused, nothing was changed: the role {role} is not a superuser and lacks\n"
        f"{needs}\n"
        f"Ask a superuser to run, connected to the database {database}:\n"
        f"{statements}\n"
        'then run spreadedge migrate again (README: "Using your own PostgreSQL server")'
    )
