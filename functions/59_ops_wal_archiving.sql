-- spreadedge functions: WAL archiving, as health and the backup commands judge it
-- With archive_mode on, the server keeps every WAL segment in pg_wal until archive_command
-- (pgBackRest's archive-push) has taken it to the repository. When archiving fails (the
-- repository's disk full, unmounted or deleted, its permissions changed, pgBackRest's configuration
-- or passphrase changed, its host unreachable) pg_wal grows until its disk is full and the server
-- stops (PANIC), and no backup can be restored past the last segment archived; every backup taken
-- meanwhile fails after pgBackRest's archive-timeout. health's wal_archiving and the failure
-- messages of `spreadedge backup` say so.

create or replace function internal.wal_archiving_state()
    returns table (archive_mode text, archives boolean, unset boolean, failing boolean,
                   last_failed_wal text, last_failed_time timestamptz, failed_count bigint,
                   last_archived_wal text, last_archived_time timestamptz, stats_reset timestamptz,
                   visible boolean, waiting bigint, segments bigint, oldest timestamptz)
    stable
    language plpgsql
as $$
-- The server's WAL archiving now, always one row: archive_mode; whether this server archives
-- (archive_mode on on a primary, always anywhere); when it does, whether archive_command and
-- archive_library are both empty (unset) and whether the archiver's last attempt failed
-- (pg_stat_archiver: last_failed_time after last_archived_time), with pg_stat_archiver's figures;
-- whether the role may list the WAL waiting to be archived (visible: pg_ls_archive_statusdir is
-- for superusers and members of pg_monitor) and, when it may, the files waiting (their .ready
-- file in archive_status), the WAL segments among them and the oldest one's modification time
-- (null when none waits; the counts null when they are hidden). When this server does not
-- archive, unset and failing are false and nothing waits (0, null), whatever pg_stat_archiver
-- kept from before. Shared by health's
-- wal_archiving and the metrics wal.archive_failing, wal.archive_waiting_files and
-- wal.archive_waiting_seconds.
-- why plpgsql: pg_ls_archive_statusdir raises 42501 for a role that may not run it, and only a
-- branch is sure not to call it
declare
    v_mode text := pg_catalog.current_setting('archive_mode');
    v_archives boolean;
    v_archiver pg_catalog.pg_stat_archiver;
    v_visible boolean := pg_catalog.has_function_privilege('pg_catalog.pg_ls_archive_statusdir()', 'execute');
    v_waiting bigint := 0;
    v_segments bigint := 0;
    v_oldest timestamptz;
begin
    v_archives := v_mode = 'always' or (v_mode = 'on' and not pg_catalog.pg_is_in_recovery());
    select * into v_archiver from pg_catalog.pg_stat_archiver;
    if v_archives and v_visible then
        select count(*), count(*) filter (where f.name ~ E'^[0-9A-F]{24}\\.ready$'), min(f.modification)
          into v_waiting, v_segments, v_oldest
        from pg_catalog.pg_ls_archive_statusdir() f
        where f.name like '%.ready';
    elsif v_archives then  -- hidden: unknown, never a 0 that reads as nothing waiting
        v_waiting := null;
        v_segments := null;
    end if;
    return query
        select v_mode, v_archives,
               v_archives and pg_catalog.current_setting('archive_command') = ''
                          and pg_catalog.current_setting('archive_library') = '',
               v_archives and v_archiver.last_failed_time is not null
                          and v_archiver.last_failed_time > coalesce(v_archiver.last_archived_time, '-infinity'),
               v_archiver.last_failed_wal, v_archiver.last_failed_time, v_archiver.failed_count,
               v_archiver.last_archived_wal, v_archiver.last_archived_time, v_archiver.stats_reset,
               v_visible, v_waiting, v_segments, v_oldest;
end;
$$;
comment on function internal.wal_archiving_state() is
    'The server''s WAL archiving now, one row: archive_mode, whether this server archives (on on a primary, always), whether archive_command and archive_library are empty (unset) and whether the archiver''s last attempt failed (both false when it does not archive), pg_stat_archiver''s last failed and archived WAL, failures and reset time, whether the role may list the WAL waiting to be archived (visible: superusers and pg_monitor) and the files waiting, the segments among them and the oldest one''s time (null counts when hidden from the role; 0 and null when nothing waits or the server does not archive); health''s wal_archiving and the metrics wal.archive_* read it.';

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
-- The state is internal.wal_archiving_state's, which the metrics wal.archive_* read too.
-- why the waiting files too: an archive_command that hangs (a repository host that does not
-- answer) never fails, and pg_stat_archiver shows nothing wrong while pg_wal grows
-- why fail when the waiting files are hidden: pg_ls_archive_statusdir is for superusers and members
-- of pg_monitor only, and without it a hung archive_command would look healthy
declare
    s record;
    v_late boolean;
begin
    select * into s from internal.wal_archiving_state();
    if not s.archives and s.archive_mode = 'off' then
        return query select true, 'WAL archiving is off (archive_mode off): no point-in-time recovery; '
                                  'spreadedge backup init turns it on';
        return;
    end if;
    if not s.archives then
        return query select true, format('a standby (archive_mode %s): it archives nothing, the primary does '
                                         '(see its health)', s.archive_mode);
        return;
    end if;
    v_late := coalesce(s.oldest < now() - p_max_wait, false);
    return query
        select s.visible and not s.failing and not s.unset and not v_late,
               concat_ws('; ',
                   case when s.unset
                        then 'archive_mode is on but archive_command and archive_library are empty: nothing '
                             'archives WAL (run spreadedge backup init, or turn archive_mode off)' end,
                   case when s.failing
                        then format('archiving %s failed at %s (%s failures since %s)',
                                    s.last_failed_wal, to_char(s.last_failed_time at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'),
                                    s.failed_count, to_char(s.stats_reset at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')) end,
                   case when s.last_archived_wal is null
                        then format('nothing archived since %s', to_char(s.stats_reset at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'))
                        else format('last archived %s at %s', s.last_archived_wal,
                                    to_char(s.last_archived_time at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')) end,
                   case when not s.visible
                        then format('the WAL waiting to be archived is hidden from %s: run health as a superuser '
                                    'or a member of pg_monitor', current_user)
                        when s.waiting = 0 then 'nothing waits to be archived'
                        else format('%s WAL files (%s) wait in pg_wal to be archived, the oldest since %s '
                                    '(%s, limit %s)', s.waiting,
                                    pg_catalog.pg_size_pretty(s.segments * pg_catalog.pg_size_bytes(pg_catalog.current_setting('wal_segment_size'))),
                                    to_char(s.oldest at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'), date_trunc('second', now() - s.oldest), p_max_wait) end,
                   case when s.failing or s.unset or v_late
                        then 'pg_wal keeps every file not archived until its disk is full (then the server stops), '
                             'and no backup can be restored past the last one archived: the archive command''s '
                             'error is in the server log' end);
end;
$$;
comment on function internal.health_wal_archiving(interval) is
    'Health check: with archive_mode on (on a standby: always), the archiver''s last attempt did not fail (pg_stat_archiver), archive_command or archive_library is set and no WAL file has waited to be archived (pg_ls_archive_statusdir) longer than the given interval; the detail names the last failed WAL file, the last archived one and what waits; ok with archive_mode off and on a standby that does not archive; fails when the waiting files are hidden from the role (superusers and pg_monitor see them) (ok, detail); reads internal.wal_archiving_state.';
