-- spreadedge functions: the notification outbox
-- Alert transitions and risk events queue one row per channel; an insert wakes the workers
-- (LISTEN spreadedge_notifications). A worker claims due rows with FOR UPDATE SKIP LOCKED, delivers
-- them and reports each result in the same transaction, so a row is never delivered by two workers
-- at once and a worker that dies leaves its rows pending. A claim committed without a report (a
-- client that claimed in autocommit, or committed and died) is abandoned: once its lease has
-- passed, the next claim takes it again. Delivery is at least once: a message whose send ended
-- without a report is sent again. Failures back off exponentially (or wait as long as a
-- rate-limiting receiver's Retry-After asks, up to the worker's max_backoff) and go to the dead
-- letter after the worker's configured attempts; a refusal no retry would change (a webhook's
-- 404 or 401, an SMTP 5xx: fail_notification's permanent) goes to the dead letter at once. An
-- email the SMTP server takes for some recipients records on its row whom it reached and whom the
-- server refused for good: a retry goes to the recipients still owed it alone, and a requeue of a
-- dead letter to those refused too, never to those who have it. Each row's delivery_id, random and
-- kept across attempts, names the message to receivers (the email's Message-ID, the webhook's
-- signed body), so one that got an attempt whose answer was lost knows the retry.

-- why the drop: fail_notification gained retry_after; the old signature must not linger as an
-- overload (a call without retry_after would be ambiguous between the two)
drop function if exists monitor.fail_notification(bigint, text, text, integer, interval, interval);
-- why the drop: fail_notification gained permanent; the old signature must not linger as an
-- overload (a call without permanent would be ambiguous between the two; the grant is re-applied
-- by functions/99_privileges.sql)
drop function if exists monitor.fail_notification(bigint, text, text, integer, interval, interval, interval);
-- why the drop: claim_notifications returns each row's delivered_to, undeliverable_to and
-- delivery_id too, and CREATE OR REPLACE cannot change the columns a function returns (the grant
-- is re-applied by functions/99_privileges.sql)
drop function if exists monitor.claim_notifications(text, text[], integer);

create or replace function internal.queue_notifications(
    p_channels      monitor.notification_channel[],
    p_payload       jsonb,
    p_risk_event_id bigint
)
    returns void
    volatile
    language sql
as $$
    -- One outbox row per channel for a risk event; the payload carries the subject.
    insert into monitor.notifications (channel, subject, payload, risk_event_id)
    select c.channel, p_payload ->> 'subject', p_payload, p_risk_event_id
    from unnest(p_channels) c(channel)
$$;
comment on function internal.queue_notifications(monitor.notification_channel[], jsonb, bigint) is
    'Queues a risk event''s notification on each channel.';

create or replace function internal.wake_notification_workers()
    returns trigger
    volatile
    language plpgsql
as $$
-- Statement trigger: one NOTIFY per inserting statement, delivered to listeners at commit.
begin
    perform pg_notify('spreadedge_notifications', '');
    return null;
end;
$$;
comment on function internal.wake_notification_workers() is
    'Trigger: NOTIFY spreadedge_notifications when notifications are queued (workers LISTEN on it).';

create or replace trigger _900_wake_workers
    after insert on monitor.notifications
    for each statement execute function internal.wake_notification_workers();

create or replace function internal.distinct_in_order(p_values text[])
    returns text[]
    immutable
    language sql
as $$
    -- The values, each once, in the order they first appear.
    select coalesce(array_agg(v.value order by v.first), '{}')
    from (select u.value, min(u.ord) as first
          from unnest(p_values) with ordinality u(value, ord)
          group by u.value) v
$$;
comment on function internal.distinct_in_order(text[]) is
    'The values of an array each once, in the order they first appear (an outbox row''s recipients).';

create or replace function internal.check_worker_channels(p_channels text[])
    returns void
    stable
    language plpgsql
as $$
-- Raises 22S09 unless p_channels is a list of notification channels (an empty list is one).
-- why: a worker's channels were matched as text, so one spelled otherwise ('{Email}', '{sms}')
-- or none (null) claimed nothing and saw nothing due, silently: in psql the outbox looked empty
-- while its rows waited; set_risk_limit and add_alert_rule refuse such channels too
begin
    if p_channels is null or array_ndims(p_channels) > 1
       or not p_channels <@ enum_range(null::monitor.notification_channel)::text[] then
        raise exception 'channels must be a list of email, slack, discord, webhook, got %',
            coalesce(p_channels::text, 'null')
            using errcode = '22S09',
                  hint = 'Name the channels in lower case, e.g. channels => ''{email,slack}''.';
    end if;
end;
$$;
comment on function internal.check_worker_channels(text[]) is
    'Raises 22S09 unless the channels a worker names are notification channels (monitor.notification_channel).';

create or replace function monitor.claim_notifications(worker text, channels text[], batch_size integer default 10)
    returns table (notification_id bigint, channel monitor.notification_channel, subject text, payload jsonb,
                   attempts integer, delivered_to text[], undeliverable_to text[], delivery_id uuid)
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Claim up to batch_size due pending notifications of the given channels for this worker: they
-- become delivering, with one more attempt and a lease of 5 minutes (next_attempt_at), and stay
-- locked by the caller's transaction, which must report each with monitor.complete_notification or
-- monitor.fail_notification before it commits. Rows another worker holds are skipped, never waited
-- for. A session scoped to a user needs alerts:manage (42S01): a payload may be another user's,
-- and a claim can silence it. delivered_to and undeliverable_to: the email recipients an earlier
-- attempt reached or found refused for good, whom this attempt leaves out; delivery_id: the
-- message's name to receivers, the same at every attempt.
-- why abandoned claims are taken too: a claim committed without a report (psql in autocommit, a
-- client that committed and died) left its row delivering for good: never claimed again, never
-- due, never dead, the alert never sent. A live worker holds its row's lock until it has
-- reported, and SKIP LOCKED passes over it however long the send takes; so a delivering row that
-- is unlocked and whose lease has passed has no one sending it. The lease spares a client that
-- claims, commits, then sends and reports (outside the documented use) a second sender for 5
-- minutes. The attempt counts again, so max_attempts and the dead letter still bound it.
#variable_conflict use_column
declare
    -- why a variable: clock_timestamp() is volatile, and a volatile call in a condition is a
    -- filter on every row the index scan reads, never the scan's bound; the variable bounds it
    v_now timestamptz := clock_timestamp();
begin
    perform internal.require_permission('alerts:manage');
    -- why strategies:all too: the outbox holds every strategy's alerts and risk events (their
    -- reasons and payloads); a user scoped to some strategies must not claim or steer them
    -- (the worker runs unscoped, and passes)
    perform internal.require_permission('strategies:all');
    if claim_notifications.worker is null or claim_notifications.worker = '' then
        raise exception 'worker must be named, got "%"', coalesce(claim_notifications.worker, 'null')
            using errcode = '22S09';
    end if;
    perform internal.check_worker_channels(claim_notifications.channels);
    if claim_notifications.batch_size is null or claim_notifications.batch_size not between 1 and 1000 then
        raise exception 'batch_size must be 1 to 1000, got %', coalesce(claim_notifications.batch_size::text, 'null')
            using errcode = '22S09';
    end if;
    -- why a wait that began later than the clock reads is made due now: the clock stepped back
    -- since (an NTP correction, a VM resumed), and that wait would last the whole step more (a
    -- retry 30 s away, or a lease nearly over, held for hours). A statement of its own, through
    -- notifications_waiting_idx: one index probe that finds nothing while the clock runs forward,
    -- where "or waiting_since > clock_timestamp()" in the claim below read every pending row of a
    -- backlog (50,000 rows, 12 ms) at every claim
    update monitor.notifications n
    set next_attempt_at = v_now, waiting_since = v_now
    where n.notification_id in (select q.notification_id
                                from monitor.notifications q
                                where q.status in ('pending', 'delivering')
                                  -- why a minute over: a failure another worker reports while
                                  -- this claim runs sets waiting_since after v_now, and its
                                  -- backoff (a receiver's Retry-After) was dropped
                                  -- (internal.stamped_ahead_of_clock's tolerance)
                                  and q.waiting_since > v_now + interval '1 minute'
                                  and q.channel::text = any (claim_notifications.channels)
                                for update skip locked);
    return query
    with picked as materialized (
        select q.notification_id
        from monitor.notifications q
        where q.status in ('pending', 'delivering')
          and q.next_attempt_at <= v_now
          and q.channel::text = any (claim_notifications.channels)
        order by q.next_attempt_at, q.notification_id
        limit claim_notifications.batch_size
        for update skip locked
    )
    update monitor.notifications n
    set status = 'delivering', claimed_by = claim_notifications.worker, attempts = n.attempts + 1,
        next_attempt_at = clock_timestamp() + interval '5 minutes', waiting_since = clock_timestamp()
    from picked p
    where n.notification_id = p.notification_id
    returning n.notification_id, n.channel, n.subject, n.payload, n.attempts, n.delivered_to, n.undeliverable_to,
              n.delivery_id;
end;
$$;
comment on function monitor.claim_notifications(text, text[], integer) is
    'A worker claims due notifications of its channels (FOR UPDATE SKIP LOCKED) in its open transaction; report each before committing. Each comes with the email recipients earlier attempts reached (delivered_to) or found refused for good (undeliverable_to), whom the attempt leaves out, and its delivery_id (the same at every attempt: the email''s Message-ID, the webhook''s delivery_id). A claim committed without a report is taken again (the attempt counted) once its 5-minute lease, next_attempt_at, has passed. A row whose wait began more than a minute later than the server''s clock now reads (waiting_since: the clock stepped back) is due at once. Channels that are not notification channels (null, ''{Email}'') are 22S09; a scoped session needs alerts:manage (42S01).';

create or replace function internal.claimed_notification(p_notification_id bigint, p_worker text)
    returns monitor.notifications
    volatile
    language plpgsql
as $$
-- The notification this worker claimed and has not reported yet; 55S06
-- (notification_state) otherwise.
declare
    v_row monitor.notifications;
begin
    select n.* into v_row from monitor.notifications n where n.notification_id = p_notification_id for update;
    if v_row.notification_id is null or v_row.status <> 'delivering' or v_row.claimed_by is distinct from p_worker then
        raise exception 'notification % is not claimed by worker "%"', coalesce(p_notification_id::text, 'null'),
            coalesce(p_worker, 'null')
            using errcode = '55S06',
                  hint = 'Claim it with monitor.claim_notifications and report it in the same transaction.';
    end if;
    return v_row;
end;
$$;
comment on function internal.claimed_notification(bigint, text) is
    'Locks and returns a notification this worker claimed and has not reported; raises 55S06 otherwise.';

create or replace function monitor.complete_notification(notification_id bigint, worker text)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- The claimed notification was delivered. Needs alerts:manage in a scoped session (42S01).
#variable_conflict use_column
declare
    v_row monitor.notifications;
begin
    -- why first: a scoped session without the permission must not even lock the row
    perform internal.require_permission('alerts:manage');
    perform internal.require_permission('strategies:all');
    v_row := internal.claimed_notification(complete_notification.notification_id, complete_notification.worker);
    update monitor.notifications n
    set status = 'delivered', delivered_at = clock_timestamp(), last_error = null
    where n.notification_id = v_row.notification_id;
end;
$$;
comment on function monitor.complete_notification(bigint, text) is
    'Marks a claimed notification delivered; raises 55S06 when this worker has not claimed it, 42S01 for a scoped session without alerts:manage.';

create or replace function monitor.record_notification_recipients(
    notification_id  bigint,
    worker           text,
    delivered_to     text[],
    undeliverable_to text[] default '{}'
)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- An attempt reached some recipients of a claimed notification and not others (an email the SMTP
-- server took for some addresses): add those it reached to delivered_to and those refused for good
-- to undeliverable_to, in the order given, each once. Later attempts leave them out, whichever
-- worker makes them. Called before the attempt's complete_notification or fail_notification, in
-- the claim's transaction: a worker that dies before its commit records nothing. Needs
-- alerts:manage in a scoped session (42S01).
-- why in the row: the recipients still owed the message must outlive the worker (a restart, or
-- another worker taking the retry); kept in memory, a retry went to everyone or to no one
#variable_conflict use_column
declare
    v_row monitor.notifications;
begin
    perform internal.require_permission('alerts:manage');
    perform internal.require_permission('strategies:all');
    v_row := internal.claimed_notification(record_notification_recipients.notification_id,
                                           record_notification_recipients.worker);
    if record_notification_recipients.delivered_to is null
       or record_notification_recipients.undeliverable_to is null
       or array_position(record_notification_recipients.delivered_to
                         || record_notification_recipients.undeliverable_to, null) is not null then
        raise exception 'delivered_to and undeliverable_to must be lists of addresses, got % and %',
            coalesce(record_notification_recipients.delivered_to::text, 'null'),
            coalesce(record_notification_recipients.undeliverable_to::text, 'null')
            using errcode = '22S09', hint = 'Pass ''{}'' for none.';
    end if;
    update monitor.notifications n
    set delivered_to = internal.distinct_in_order(n.delivered_to || record_notification_recipients.delivered_to),
        undeliverable_to = internal.distinct_in_order(n.undeliverable_to
                                                      || record_notification_recipients.undeliverable_to)
    where n.notification_id = v_row.notification_id;
end;
$$;
comment on function monitor.record_notification_recipients(bigint, text, text[], text[]) is
    'Records the email recipients an attempt of a claimed notification reached (delivered_to) and those refused for good (undeliverable_to): later attempts leave them out. Call it before the attempt''s complete_notification or fail_notification, in the claim''s transaction. Raises 55S06 when this worker has not claimed it, 22S09 for a null list or address; a scoped session needs alerts:manage (42S01).';

create or replace function monitor.fail_notification(
    notification_id bigint,
    worker          text,
    error           text,
    max_attempts    integer default 5,
    backoff         interval default '30 seconds',
    max_backoff     interval default '1 hour',
    retry_after     interval default null,
    permanent       boolean default false
)
    returns monitor.notification_status
    volatile
    security definer
    set search_path = ''
    -- why UTC: next_attempt_at is clock_timestamp() + the wait, and a timestamptz plus an interval
    -- counts its days in the session TimeZone, while the wait is seconds (the worker's backoffs
    -- and a receiver's Retry-After arrive as '112 days' and the like): from a Europe/Berlin session
    -- a wait across a DST change came an hour short (a retry sooner than Retry-After asked, which
    -- the receiver refuses again) or an hour long (past max_backoff). In UTC a day is 86,400 s.
    set timezone = 'UTC'
    language plpgsql
as $$
-- The attempt failed: after max_attempts attempts the notification goes to the dead letter (dead);
-- otherwise it is pending again from now + backoff x 2^(attempts - 1), at most max_backoff. A
-- retry_after (the wait a receiver asked for, with HTTP 429 or 503 and Retry-After) delays it to
-- now + retry_after when that is later, still at most max_backoff. permanent: the receiver refused
-- the message for good (a webhook's 404 or 401, an SMTP 5xx), and it goes to the dead letter at
-- once, whatever attempts remain; error says why. Returns the new status. error must hold no
-- secret (it is stored). Needs alerts:manage in a scoped session (42S01).
-- why permanent: a deleted Slack or Discord webhook, a revoked token or a mailbox that does not
-- exist answers every retry as it answered the first; retried, the message sat pending for the
-- whole backoff (hours, at the defaults) before the dead letter showed the operator anything
#variable_conflict use_column
declare
    v_row   monitor.notifications;
    v_delay interval;
begin
    -- why first: a scoped session without the permission must not even lock the row
    perform internal.require_permission('alerts:manage');
    perform internal.require_permission('strategies:all');
    v_row := internal.claimed_notification(fail_notification.notification_id, fail_notification.worker);
    if fail_notification.max_attempts is null or fail_notification.max_attempts < 1
       or fail_notification.backoff is null or fail_notification.backoff < '0'
       or fail_notification.max_backoff is null or fail_notification.max_backoff < '0' then
        raise exception 'max_attempts must be at least 1 and the backoffs zero or more, got %, %, %',
            coalesce(fail_notification.max_attempts::text, 'null'), coalesce(fail_notification.backoff::text, 'null'),
            coalesce(fail_notification.max_backoff::text, 'null')
            using errcode = '22S09';
    end if;
    if fail_notification.permanent is null then
        raise exception 'permanent must be true or false, got null'
            using errcode = '22S09',
                  hint = 'Pass true when the receiver refused the message for good, else false.';
    end if;
    if fail_notification.retry_after < '0' then
        raise exception 'retry_after must be zero or more, got %', fail_notification.retry_after
            using errcode = '22S09',
                  hint = 'Pass null when the receiver asked for no wait, or asked for one that cannot be read.';
    end if;
    -- why: every wait is at most max_backoff, and the next attempt is now + the wait; a max_backoff
    -- past the latest time PostgreSQL stores ('1000000 years') raised a bare 22008 "timestamp out
    -- of range" on every failure of every message, and the worker could report none
    begin
        perform clock_timestamp() + fail_notification.max_backoff;
    exception
        when datetime_field_overflow then
            raise exception 'max_backoff % reaches past the latest time PostgreSQL stores',
                fail_notification.max_backoff
                using errcode = '22S09', hint = 'Give a wait of at most a year, such as 1 hour.';
    end;
    if fail_notification.permanent or v_row.attempts >= fail_notification.max_attempts then
        update monitor.notifications n
        set status = 'dead', dead_at = clock_timestamp(), last_error = left(fail_notification.error, 1000)
        where n.notification_id = v_row.notification_id;
        return 'dead';
    end if;
    -- why compare in numeric seconds first: backoff x 2^(attempts - 1) overflows an interval
    -- (22008) long before a large attempt number is reached ('4 hours' at the 31st attempt), and
    -- that error would roll the claim back and stop the worker on this message for good
    v_delay := case when extract(epoch from fail_notification.backoff)
                         * 2::numeric ^ least(v_row.attempts - 1, 1000)
                         < extract(epoch from fail_notification.max_backoff)
                    then fail_notification.backoff * power(2, least(v_row.attempts - 1, 1000))
                    else fail_notification.max_backoff
               end;
    -- why greatest: a retry sooner than the receiver asked is refused again and burns an attempt;
    -- why least: max_backoff bounds every wait, the receiver's too, so that a hostile or broken
    -- receiver cannot park the message for a year. (Tested for null first: least and greatest
    -- skip a null, so least(null, max_backoff) would be max_backoff.)
    if fail_notification.retry_after is not null then
        v_delay := greatest(v_delay, least(fail_notification.retry_after, fail_notification.max_backoff));
    end if;
    update monitor.notifications n
    set status = 'pending',
        last_error = left(fail_notification.error, 1000),
        next_attempt_at = clock_timestamp() + v_delay,
        waiting_since = clock_timestamp()
    where n.notification_id = v_row.notification_id;
    return 'pending';
end;
$$;
comment on function monitor.fail_notification(bigint, text, text, integer, interval, interval, interval, boolean) is
    'A claimed notification''s attempt failed: retry later with exponential backoff (days of 24 hours, whatever the session TimeZone), no sooner than retry_after (a receiver''s Retry-After) and no later than max_backoff, or dead letter after max_attempts, or at once when permanent (the receiver refused it for good: a webhook''s 400, 401, 403, 404, 405, 410, 413, 422 and the like, an SMTP 5xx; error says why). Returns the new status. Raises 22S09 for a null permanent, a negative retry_after or a max_backoff that reaches past the latest time PostgreSQL stores; a scoped session needs alerts:manage (42S01).';

create or replace function monitor.next_notification_due(channels text[])
    returns timestamptz
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- When the earliest pending notification of these channels that no other worker is sending is due,
-- or the lease of an abandoned claim passes (null: none); a worker sleeps until then unless a
-- NOTIFY wakes it first. Needs alerts:manage in a scoped session (42S01).
-- why skip locked rows: a row a worker has claimed stays pending, and due, to everyone else until
-- that worker commits; counted, it would be due at once to the other workers, which cannot claim
-- it and would loop without sleeping for as long as the send takes (up to timeout_seconds).
-- why FOR KEY SHARE: the weakest lock that a claim's FOR UPDATE conflicts with (so held rows are
-- skipped); it is held for this one statement, and a claim meanwhile just skips that row.
-- (volatile: a row lock is not allowed in a stable function)
#variable_conflict use_column
declare
    -- why a variable: a volatile clock_timestamp() in the condition would be a filter on every
    -- pending row, never the index scan's bound
    v_now timestamptz := clock_timestamp();
begin
    perform internal.require_permission('alerts:manage');
    perform internal.require_permission('strategies:all');
    perform internal.check_worker_channels(next_notification_due.channels);
    -- why now for a wait that began later than the clock reads: the clock stepped back since, and
    -- monitor.claim_notifications takes such a row at once (least ignores a null); each probe
    -- reads its own index (notifications_due_idx, notifications_waiting_idx)
    return least((select n.next_attempt_at
                  from monitor.notifications n
                  where n.status in ('pending', 'delivering')
                    and n.channel::text = any (next_notification_due.channels)
                  order by n.next_attempt_at
                  limit 1
                  for key share of n skip locked),
                 (select v_now
                  from monitor.notifications n
                  where n.status in ('pending', 'delivering')
                    and n.waiting_since > v_now + interval '1 minute'
                    and n.channel::text = any (next_notification_due.channels)
                  limit 1
                  for key share of n skip locked));
end;
$$;
comment on function monitor.next_notification_due(text[]) is
    'Earliest next attempt of the pending notifications of these channels that no other worker is sending (rows locked by a claim are skipped), or end of the lease of an abandoned claim (delivering, committed, unlocked), or now for a row whose wait began more than a minute later than the clock reads (it stepped back); null when there is none. Channels that are not notification channels (null, ''{Email}'') are 22S09; a scoped session needs alerts:manage (42S01).';

create or replace function monitor.requeue_notification(notification_id bigint)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Give a dead letter another round of attempts: dead -> pending, due now, attempts from zero,
-- and wake the workers (at commit), which would otherwise sleep until their next poll. An email
-- goes to the recipients of email_to who do not have it: delivered_to is kept (no one gets it
-- twice), undeliverable_to is emptied (those refused for good are tried again). last_error stays
-- until the next attempt, so the operator still reads why it died.
-- why undeliverable_to emptied: an operator requeues once the cause is fixed (the mailbox made,
-- the relay opened to the sender, the address corrected in email_to); kept, the recipients the
-- server had refused were left out of every later attempt, and a message refused for every
-- recipient was counted delivered, at its requeue, without a single send
#variable_conflict use_column
declare
    v_status monitor.notification_status;
begin
    perform internal.require_permission('alerts:manage');
    perform internal.require_permission('strategies:all');
    update monitor.notifications n
    set status = 'pending', attempts = 0, next_attempt_at = now(), waiting_since = now(), dead_at = null, undeliverable_to = '{}'
    where n.notification_id = requeue_notification.notification_id and n.status = 'dead';
    if not found then
        -- why the status: "not in the dead letter" alone reads the same for a mistyped id, a
        -- message already delivered and one still pending, which an operator handles differently
        select n.status into v_status
        from monitor.notifications n
        where n.notification_id = requeue_notification.notification_id;
        raise exception 'notification % is not in the dead letter: %',
            coalesce(requeue_notification.notification_id::text, 'null'),
            case when v_status is null then 'there is no such notification'
                 else 'it is ' || v_status::text end
            using errcode = '55S06';
    end if;
    perform pg_notify('spreadedge_notifications', '');
end;
$$;
comment on function monitor.requeue_notification(bigint) is
    'Moves a dead-letter notification back to pending (due now, attempts reset) and wakes the workers (NOTIFY spreadedge_notifications); an email then goes to the recipients who do not have it (delivered_to kept), those refused for good included (undeliverable_to emptied). Raises 55S06 otherwise, naming its status or that it does not exist.';
