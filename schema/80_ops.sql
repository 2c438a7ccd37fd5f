-- spreadedge schema: operations
-- The catalog of backup runs (spreadedge backup records every pgBackRest and pg_dump run here, so
-- health can tell how old the last good backup is from SQL), the record of finished migrate runs
-- (health judges pg_cron jobs only by their runs since the last one), the row retention of the
-- tables with no partitions to drop, and the SQLSTATEs of the ops functions.
-- The tuning views, index advice, partition and cleanup functions are in functions/60_*-64_*.

-- ============================================================================
-- Backup runs
-- ============================================================================
create table ops.backup_runs (
    run_id          bigint generated always as identity primary key,
    kind            text not null
        check (kind in ('full', 'diff', 'incr', 'logical_schema', 'logical_data', 'logical_full')),
    compress_type   text not null
        check (compress_type in ('gz', 'bz2', 'lz4', 'zst', 'none')),
    started_at      timestamptz not null default now(),
    finished_at     timestamptz,
    status          text not null default 'running'
        check (status in ('running', 'succeeded', 'failed')),
    label           text,
    size_bytes      bigint check (size_bytes >= 0),
    repo_size_bytes bigint check (repo_size_bytes >= 0),
    detail          text,
    expired_at      timestamptz,
    -- why: a run is finished exactly when it has an end time
    check ((status = 'running') = (finished_at is null)),
    check (finished_at >= started_at),
    -- why: only a successful backup leaves something in the repository to expire
    constraint backup_runs_expired_succeeded_check check (expired_at is null or status = 'succeeded')
);
comment on table ops.backup_runs is
    'Every backup spreadedge ran (pgBackRest full/diff/incr, pg_dump logical): what, when, how big, and whether it succeeded.';
comment on column ops.backup_runs.run_id is 'Identity of the run.';
comment on column ops.backup_runs.kind is 'full, diff or incr (pgBackRest), or logical_schema, logical_data, logical_full (pg_dump).';
comment on column ops.backup_runs.compress_type is 'Compression: gz, bz2, lz4, zst, or none.';
comment on column ops.backup_runs.started_at is 'When the run started (UTC).';
comment on column ops.backup_runs.finished_at is 'When the run ended, successfully or not (UTC); null while it runs.';
comment on column ops.backup_runs.status is 'running, succeeded or failed.';
comment on column ops.backup_runs.label is 'The pgBackRest backup label, or the file name of the dump.';
comment on column ops.backup_runs.size_bytes is 'Size of what was backed up (the database or cluster, uncompressed).';
comment on column ops.backup_runs.repo_size_bytes is 'Size the backup takes in the repository (or the dump file), compressed.';
comment on column ops.backup_runs.detail is 'Why a failed run failed (never a secret).';
comment on column ops.backup_runs.expired_at is
    'When the catalog found the run''s pgBackRest backup expired (no longer listed by pgBackRest info: retention_full, retention_diff); null while the repository holds it, and for logical dumps.';
create index backup_runs_kind_finished_idx on ops.backup_runs (kind, finished_at desc) where status = 'succeeded';
comment on index ops.backup_runs_kind_finished_idx is 'The newest successful backup of a kind (health: last backup age).';

-- ============================================================================
-- Migrate runs
-- ============================================================================
create table ops.migrate_runs (
    run_id      bigint generated always as identity primary key,
    finished_at timestamptz not null default clock_timestamp(),
    role_name   name not null default current_user
);
comment on table ops.migrate_runs is
    'Every spreadedge migrate (or schema/ apply) that finished: written in the transaction that re-applies functions/, so a row means the database runs the code of that migrate.';
comment on column ops.migrate_runs.run_id is 'Identity of the migrate run.';
comment on column ops.migrate_runs.finished_at is 'When functions/ had been re-applied, just before the commit (UTC).';
comment on column ops.migrate_runs.role_name is 'The role that ran the migrate.';

-- ============================================================================
-- Row retention of the tables that have no partitions to drop
-- ============================================================================
-- why: monitor.notifications, auth.sessions and pg_cron's cron.job_run_details grew with no
-- limit; ops.run_partition_maintenance deletes their rows that ended longer ago than this
-- (functions/63_ops_row_retention.sql), spreadedge partitions maintain writes the settings here
create table ops.row_retention (
    table_name text primary key
        check (table_name in ('monitor.notifications', 'auth.sessions', 'cron.job_run_details')),
    -- why positive: '-1 day' would delete every row that has ended, the last minute's too
    retention  interval check (retention > interval '0')
);
comment on table ops.row_retention is
    'How long the tables with no partitions keep a row once it has ended (a notification delivered or dead, a session revoked or expired, a finished pg_cron run of this database but each job''s newest); the hourly ops.run_partition_maintenance deletes older ones. Set with ops.configure_row_retention (spreadedge partitions maintain: retention_notifications, retention_sessions, retention_cron_runs).';
comment on column ops.row_retention.table_name is 'monitor.notifications, auth.sessions or cron.job_run_details.';
comment on column ops.row_retention.retention is 'How long a row is kept after it ended; null keeps every row.';
insert into ops.row_retention (table_name, retention) values
    ('monitor.notifications', '30 days'),
    ('auth.sessions', '30 days'),
    ('cron.job_run_details', '14 days');

-- ============================================================================
-- Project SQLSTATEs of the ops functions (the table is in 00_foundation.sql)
-- ============================================================================
insert into ops.error_codes (sqlstate, name, description) values
    ('22S21', 'invalid_cleanup_target', 'A cleanup target is not one of orders, quotes, ticks, candles, indicators, metrics, notifications, sessions, cron_runs, or its table does not exist (cron_runs where pg_cron does not run); or a row retention names a table that has none.'),
    ('22S22', 'invalid_index_candidate', 'An index to create names a column the table does not have, or an access method that is not btree, brin, hash or gin.'),
    ('23S21', 'unknown_backup_run', 'No backup run has this id.'),
    ('55S10', 'backup_run_finished', 'The backup run was already recorded as finished.'),
    ('55S11', 'partition_not_managed', 'The table is not a partitioned table registered with pg_partman.'),
    ('55S12', 'partition_maintenance_failed', 'Partition maintenance or row retention failed for some tables; the others were maintained.');
