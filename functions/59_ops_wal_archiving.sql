-- spreadedge functions: WAL archiving, as health and the backup commands judge it
-- With archive_mode on, the server keeps every WAL segment in pg_wal until archive_command
-- (pgBackRest's archive-push) has taken it to the repository. When archiving fails (the
-- repository's disk full, unmounted or deleted, its permissions changed, pgBackRest's configuration
-- or passphrase changed, its host unreachable) pg_wal grows until its disk is full and the server
-- stops (PANIC), and no backup can be restored past the last segment archived; every backup taken
-- meanwhile fails after pgBackRest's archive-timeout. health's wal_archiving and the failure
-- messages of `spreadedge backup` say so.

create or replace function internal.health_wal_archiving(p_max_wait interval)
    returns table (ok boolean, detail text)
    stable
    language plpgsql
as $$
-- With archive_mode on (on a standby: always), the archiver's last attempt did not fail
-- (pg_stat_archiver: last_failed_time after last_archived_time), an archive_command or
-- archive_library is set, and no WAL file has waited in pg_wal to be archived (its .ready file in
-- archive_status) longer than p_max_wait; the detail names the last failed WAL file, when and what
-- was archived last, and what waits. Ok with archive_mode off and on a standby that does not archive.
-- why the waiting files too: an archive_command that hangs (a repository host that does not
-- answer) never fails, and pg_stat_archiver shows nothing wrong while pg_wal grows
-- why fail when the waiting files are hidden: pg_ls_archive_statusdir is for superusers and members
-- of pg_monitor only, and without it a hung archive_command would look healthy
declare
    v_mode text := pg_catalog.current_setting('archive_mode');
    v_archiver pg_catalog.pg_stat_archiver;
    v_failing boolean;
    v_unset boolean;
    v_visible boolean := pg_catalog.has_function_privilege('pg_catalog.pg_ls_archive_statusdir()', 'execute');
    v_waiting bigint;
    v_segments bigint;
    v_oldest timestamptz;
    v_late boolean;
begin
    if v_mode = 'off' then
        return query select true, 'WAL archiving is off (archive_mode off): no point-in-time recovery; '
                                  'spreadedge backup init turns it on';
        return;
    end if;
    if pg_catalog.pg_is_in_recovery() and v_mode <> 'always' then
        return query select true, format('a standby (archive_mode %s): it archives nothing, the primary does '
                                         '(see its health)', v_mode);
        return;
    end if;
    select * into v_archiver from pg_catalog.pg_stat_archiver;
    v_failing := v_archiver.last_failed_time is not null
                 and v_archiver.last_failed_time > coalesce(v_archiver.last_archived_time, '-infinity');
    v_unset := pg_catalog.current_setting('archive_command') = ''
               and pg_catalog.current_setting('archive_library') = '';
    if v_visible then
        select count(*), count(*) filter (where f.name ~ E'^[0-9A-F]{24}\\.ready$'), min(f.modification)
          into v_waiting, v_segments, v_oldest
        from pg_catalog.pg_ls_archive_statusdir() f
        where f.name like '%.ready';
    end if;
    v_late := coalesce(v_oldest < now() - p_max_wait, false);
    return query
        select v_visible and not v_failing and not v_unset and not v_late,
               concat_ws('; ',
                   case when v_unset
                        then 'archive_mode is on but archive_command and archive_library are empty: nothing '
                             'archives WAL (run spreadedge backup init, or turn archive_mode off)' end,
                   case when v_failing
                        then format('archiving %s failed at %s (%s failures since %s)',
                                    v_archiver.last_failed_wal, to_char(v_archiver.last_failed_time at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'),
                                    v_archiver.failed_count, to_char(v_archiver.stats_reset at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')) end,
                   case when v_archiver.last_archived_wal is null
                        then format('nothing archived since %s', to_char(v_archiver.stats_reset at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'))
                        else format('last archived %s at %s', v_archiver.last_archived_wal,
                                    to_char(v_archiver.last_archived_time at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')) end,
                   case when not v_visible
                        then format('the WAL waiting to be archived is hidden from %s: run health as a superuser '
                                    'or a member of pg_monitor', current_user)
                        when v_waiting = 0 then 'nothing waits to be archived'
                        else format('%s WAL files (%s) wait in pg_wal to be archived, the oldest since %s '
                                    '(%s, limit %s)', v_waiting,
                                    pg_catalog.pg_size_pretty(v_segments * pg_catalog.pg_size_bytes(pg_catalog.current_setting('wal_segment_size'))),
                                    to_char(v_oldest at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'), date_trunc('second', now() - v_oldest), p_max_wait) end,
                   case when v_failing or v_unset or v_late
                        then 'pg_wal keeps every file not archived until its disk is full (then the server stops), '
                             'and no backup can be restored past the last one archived: the archive command''s '
                             'error is in the server log' end);
end;
$$;
comment on function internal.health_wal_archiving(interval) is
    'Health check: with archive_mode on (on a standby: always), the archiver''s last attempt did not fail (pg_stat_archiver), archive_command or archive_library is set and no WAL file has waited to be archived (pg_ls_archive_statusdir) longer than the given interval; the detail names the last failed WAL file, the last archived one and what waits; ok with archive_mode off and on a standby that does not archive; fails when the waiting files are hidden from the role (superusers and pg_monitor see them) (ok, detail).';
