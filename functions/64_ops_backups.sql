-- spreadedge functions: the backup catalog
-- spreadedge backup records each run in ops.backup_runs: started before pgBackRest or pg_dump
-- runs, finished after, so a crashed run stays visibly 'running' (until a later physical backup
-- succeeds and marks it failed) and health reads the age of the last successful physical backup
-- from SQL. After every backup and expire the CLI compares the catalog with pgBackRest info and
-- marks the runs whose backups pgBackRest has expired (expired_at).

-- why the checks here: the table's checks refused a bad value with a bare 23514 naming a
-- constraint, not the value or what is allowed
create or replace function ops.start_backup_run(kind text, compress_type text)
    returns bigint
    volatile
    language plpgsql
as $$
-- kind: full, diff, incr, logical_schema, logical_data or logical_full; compress_type: gz, bz2,
-- lz4, zst or none (anything else: 22S09 naming it); returns the run id to finish it with
#variable_conflict use_variable
declare
    v_id bigint;
begin
    if kind is null or kind not in ('full', 'diff', 'incr', 'logical_schema', 'logical_data', 'logical_full') then
        raise exception 'backup kind must be full, diff, incr, logical_schema, logical_data or logical_full, got %',
            coalesce(kind, 'null')
            using errcode = '22S09';
    end if;
    if compress_type is null or compress_type not in ('gz', 'bz2', 'lz4', 'zst', 'none') then
        raise exception 'compress_type must be gz, bz2, lz4, zst or none, got %', coalesce(compress_type, 'null')
            using errcode = '22S09';
    end if;
    insert into ops.backup_runs (kind, compress_type) values (kind, compress_type) returning run_id into v_id;
    return v_id;
end;
$$;
comment on function ops.start_backup_run(text, text) is
    'Records that a backup run starts (a kind or compress_type the table does not take: 22S09 naming it); returns its run id.';

create or replace function ops.finish_backup_run(run_id bigint, succeeded boolean, label text default null,
                                                 size_bytes bigint default null, repo_size_bytes bigint default null,
                                                 detail text default null)
    returns void
    volatile
    language plpgsql
as $$
-- records the end of a run: its outcome, the backup label (or dump file), sizes, and why it failed;
-- a successful physical run's kind becomes the type its pgBackRest label shows
declare
    v_status text;
    v_kind   text;
begin
    select b.status, b.kind into v_status, v_kind
    from ops.backup_runs b where b.run_id = finish_backup_run.run_id for update;
    if not found then
        raise exception 'backup run % does not exist', coalesce(finish_backup_run.run_id::text, 'null')
            using errcode = '23S21';
    end if;
    if v_status <> 'running' then
        raise exception 'backup run % is already finished (%)', finish_backup_run.run_id, v_status
            using errcode = '55S10';
    end if;
    -- why: a null outcome was recorded as failed without a word, and a negative size reached the
    -- table's checks, a bare 23514 naming a constraint
    if finish_backup_run.succeeded is null then
        raise exception 'succeeded must be true or false, got null' using errcode = '22S09';
    end if;
    -- why: an empty or blank label was stored, and the catalog named no backup (a physical run's
    -- label is what restore and mark_expired_backup_runs look it up by); null means none
    if btrim(finish_backup_run.label, E' \t\n\r') = '' then
        raise exception 'label must name the backup (or be null), got "%"', finish_backup_run.label
            using errcode = '22S09';
    end if;
    if finish_backup_run.size_bytes < 0 or finish_backup_run.repo_size_bytes < 0 then
        raise exception 'size_bytes and repo_size_bytes must be zero or more (or null), got % and %',
            coalesce(finish_backup_run.size_bytes::text, 'null'), coalesce(finish_backup_run.repo_size_bytes::text, 'null')
            using errcode = '22S09';
    end if;
    -- why: pgBackRest makes a full backup when asked for a diff or incr one it cannot base on an
    -- earlier full one (an empty repository, a new PostgreSQL version): the run recorded the type
    -- asked for, so the catalog said incr of a full backup. The label pgBackRest gives says what
    -- it made (F, F_D, F_I), so a successful physical run takes its kind from there.
    if finish_backup_run.succeeded and v_kind in ('full', 'diff', 'incr')
       and finish_backup_run.label ~ '^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$' then
        v_kind := case right(finish_backup_run.label, 1) when 'D' then 'diff' when 'I' then 'incr' else 'full' end;
    end if;
    update ops.backup_runs b
    set finished_at = greatest(now(), b.started_at),
        kind = v_kind,
        status = case when succeeded then 'succeeded' else 'failed' end,
        label = finish_backup_run.label,
        size_bytes = finish_backup_run.size_bytes,
        repo_size_bytes = finish_backup_run.repo_size_bytes,
        detail = finish_backup_run.detail
    where b.run_id = finish_backup_run.run_id;
    -- why: pgBackRest holds the stanza's backup lock while it backs up, so a physical run begun
    -- before this one that is still 'running' when this one succeeds was killed with its CLI
    if finish_backup_run.succeeded and v_kind in ('full', 'diff', 'incr') then
        update ops.backup_runs b
        set finished_at = now(),
            status = 'failed',
            detail = format('interrupted: backup run %s of the cluster succeeded after it began, so no process was running it',
                            finish_backup_run.run_id)
        where b.status = 'running' and b.kind in ('full', 'diff', 'incr')
          and b.run_id < finish_backup_run.run_id;
    end if;
end;
$$;
comment on function ops.finish_backup_run(bigint, boolean, text, bigint, bigint, text) is
    'Records the end of a backup run: succeeded or failed, label, sizes, and why it failed; a successful physical run takes the kind its pgBackRest label shows (an incr or diff that pgBackRest made full is recorded full) and marks earlier physical runs still running as failed (interrupted). A null succeeded, an empty or blank label or a negative size raises 22S09.';

-- why: pgBackRest expires old backups (retention_full, retention_diff) after every backup and on
-- `spreadedge backup expire`; their runs stayed 'succeeded' with labels the repository no longer
-- held, so `backup list` and health's last_backup pointed at backups that were gone
create or replace function ops.mark_expired_backup_runs(labels text[], listed_at timestamptz)
    returns integer
    volatile
    language plpgsql
as $$
-- labels: every backup label pgBackRest info listed; listed_at: the time (of this server's clock)
-- just before info ran. Marks the successful physical runs that finished before listed_at whose
-- label is not listed; returns how many it marked.
#variable_conflict use_variable
declare
    v_marked integer;
begin
    -- why: a null list would read as "nothing listed" and expire every run
    if labels is null or listed_at is null then
        raise exception 'labels and listed_at must not be null, got % and %',
            coalesce(labels::text, 'null'), coalesce(listed_at::text, 'null')
            using errcode = '22S09';
    end if;
    -- why finished before listed_at: a backup whose run finished after info ran (one taken while
    -- an expire ran) is missing from that list without being expired
    update ops.backup_runs b
    set expired_at = now()
    where b.status = 'succeeded' and b.kind in ('full', 'diff', 'incr') and b.expired_at is null
      and b.label is not null and b.finished_at < listed_at
      and not b.label = any (array_remove(labels, null));
    get diagnostics v_marked = row_count;
    -- a label listed again (the catalog was once compared with another repository) is no longer
    -- expired
    update ops.backup_runs b
    set expired_at = null
    where b.expired_at is not null and b.label = any (labels);
    return v_marked;
end;
$$;
comment on function ops.mark_expired_backup_runs(text[], timestamptz) is
    'Marks as expired (expired_at) the successful physical backup runs that finished before listed_at whose label is not among labels (the backups pgBackRest info listed, read at listed_at), clears the mark of runs listed again, and returns how many it marked; a null argument raises 22S09.';
