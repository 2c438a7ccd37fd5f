-- spreadedge functions: the sessions an operator looks for
-- A transaction left open in psql (a BEGIN, then lunch) holds its locks until it ends: partition
-- maintenance that gives up on them (ops.run_partition_maintenance) and health's blocking_sessions
-- name such sessions the same way, so that an operator can find the person and end it.

create or replace function internal.session_line(p_session pg_catalog.pg_stat_activity)
    returns text
    stable
    language sql
as $$
    -- How health and maintenance name a session, so an operator can find it:
    -- pid 123 (alice, application psql, idle in transaction, transaction open since 2026-01-01 12:00:00Z)
    select format('pid %s (%s, application %s, %s, transaction open since %s)', p_session.pid,
                  coalesce(p_session.usename::text, 'no role'), coalesce(nullif(p_session.application_name, ''), 'unnamed'),
                  coalesce(p_session.state, 'state hidden'),
                  coalesce(to_char(p_session.xact_start at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'), 'none'));
$$;
comment on function internal.session_line(pg_catalog.pg_stat_activity) is
    'A session as health and maintenance name it: pid, role, application, state and since when its transaction is open (UTC).';

create or replace function internal.lock_holders(p_relation regclass)
    returns text
    stable
    language sql
as $$
    -- The other sessions holding a lock on a relation, oldest transaction first: pid, role,
    -- application, state and since when its transaction is open (null when none holds one).
    select string_agg(internal.session_line(a), ', ' order by a.xact_start nulls last, a.pid)
    from pg_catalog.pg_stat_activity a
    where a.pid in (select l.pid from pg_catalog.pg_locks l
                    where l.granted and l.locktype = 'relation' and l.relation = p_relation
                      and l.database = (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database()))
      and a.pid <> pg_catalog.pg_backend_pid();
$$;
comment on function internal.lock_holders(regclass) is
    'The other sessions holding a lock on a relation, each as internal.session_line shows it; null when none.';

create or replace function internal.lock_waits()
    returns table (pid integer, waited interval, blockers integer[])
    stable
    language sql
as $$
    -- The sessions of this database waiting for a lock now: since when (pg_locks.waitstart, read
    -- at the clock) and the pids they wait for (pg_blocking_pids). Shared by health's
    -- blocking_sessions and the metrics db.lock_waits and db.lock_wait_max_seconds.
    -- why pg_locks, not pg_stat_activity's wait event and statement start: pg_stat_activity shows
    -- another role's wait event and times only to superusers and members of pg_read_all_stats, so
    -- `spreadedge metrics collect` or health run as the database owner saw no session waiting
    -- (a superuser's psql holding the fills); pg_locks shows every lock to every role
    select l.pid,
           -- why the clock, not now(): a wait that began after this transaction did read negative;
           -- waitstart is null for a moment as a wait begins
           pg_catalog.clock_timestamp() - coalesce(min(l.waitstart), pg_catalog.clock_timestamp()),
           pg_catalog.pg_blocking_pids(l.pid)
    from pg_catalog.pg_locks l
    where not l.granted
      and l.pid <> pg_catalog.pg_backend_pid()
      and l.pid in (select a.pid from pg_catalog.pg_stat_activity a where a.datname = pg_catalog.current_database())
    group by l.pid
$$;
comment on function internal.lock_waits() is
    'The sessions of this database waiting for a lock now, how long since the wait began (pg_locks.waitstart) and the pids they wait for; every role sees every wait (health''s blocking_sessions, the metrics db.lock_waits and db.lock_wait_max_seconds).';

create or replace function internal.health_blocking_sessions(p_max_wait interval)
    returns table (ok boolean, detail text)
    stable
    language sql
as $$
    -- Health check: no session has waited for a lock longer than p_max_wait (counted from the start
    -- of its wait, internal.lock_waits); failing, each session the waiters wait for is named (internal.session_line)
    -- with how many wait for it and the longest wait, oldest transaction first, so the operator
    -- finds the transaction left open in psql that holds them (one itself waiting, such as a
    -- migrate or an ALTER queued behind it, is named too, and says so).
    -- why: long_transactions names a transaction only after 15 minutes and not whether anything
    -- waits for it; fills waiting behind a person's `begin; select ... for update` were not seen.
    -- why only sessions waiting that long: pg_blocking_pids takes the lock manager's locks, and fills
    -- of one position wait for each other by design (milliseconds)
    with waiting as (
        select w.pid, w.waited, w.blockers
        from internal.lock_waits() w
        where w.waited > p_max_wait
    ),
    blocking as (
        select b.pid, count(*) as waiters, max(w.waited) as longest
        from waiting w cross join lateral unnest(w.blockers) as b(pid)
        group by b.pid
    )
    select not exists (select from waiting),
           coalesce(format('sessions waiting for a lock longer than %s wait for: ', p_max_wait)
                        || string_agg(format('%s%s, blocking %s (the longest for %s)',
                                             coalesce(internal.session_line(a), format('pid %s (a prepared transaction)', b.pid)),
                                             case when a.wait_event_type = 'Lock' then ' itself waiting for a lock' else '' end,
                                             b.waiters, date_trunc('second', b.longest)),
                                      '; ' order by a.xact_start nulls last, b.pid),
                    format('no session waiting for a lock longer than %s', p_max_wait))
    from blocking b
    left join pg_catalog.pg_stat_activity a on a.pid = b.pid;
$$;
comment on function internal.health_blocking_sessions(interval) is
    'Health check: no session has waited for a lock longer than the given interval (since its wait began, internal.lock_waits); else the sessions they wait for, each with role, application, state, since when its transaction is open and how many wait for it (ok, detail).';
